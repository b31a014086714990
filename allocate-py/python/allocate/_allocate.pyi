"""The compiled half of ``allocate`` (written in Rust with pyo3); import from ``allocate``.

Hand-written, and checked against the built module by mypy's stubtest (``make test-py``).
"""

import asyncio
import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, ClassVar, final
from uuid import UUID

from typing_extensions import Self, TypeAlias, Unpack

from allocate._types import (
    AllocationState,
    EngineConfigDict,
    MatchPolicy,
    RequirementsDict,
    ResourceState,
)

_Id: TypeAlias = str | UUID
_Output: TypeAlias = (
    Queued
    | Ready
    | TimedOut
    | QuotaRefused
    | Expired
    | Released
    | Offline
    | Online
    | Provision
    | Release
)
_Event: TypeAlias = Queued | Ready | TimedOut | Expired | Released | Offline | Online

__all__ = [
    "__version__",
    "AllocateError",
    "InvalidRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AllocationTimeout",
    "Conflict",
    "InternalError",
    "ShuttingDown",
    "Overloaded",
    "NotLeader",
    "QuotaExceeded",
    "ConnectionLost",
    "Gpu",
    "Connection",
    "Resource",
    "InventoryEntry",
    "AllocationInfo",
    "GpuRequirement",
    "Requirements",
    "Candidate",
    "Finding",
    "Explanation",
    "Queued",
    "Ready",
    "TimedOut",
    "QuotaRefused",
    "Expired",
    "Released",
    "Offline",
    "Online",
    "Provision",
    "Release",
    "ManualClock",
    "Engine",
    "Client",
    "Allocation",
    "Follower",
    "Server",
    "Agent",
    "_bench_rust_cycles",
    "_cli_main",
]

__version__: str

# ---- errors -------------------------------------------------------------------------------

class AllocateError(Exception):
    """Base class of every error the allocate package raises; `code` names the contract's error code."""

    code: ClassVar[str]

class InvalidRequest(AllocateError):
    """A malformed or out-of-range request or field (400 invalid_request); the message names the field."""

class Unauthorized(AllocateError):
    """No bearer token, or one the server does not know (401 unauthorized)."""

class Forbidden(AllocateError):
    """The token's role may not do this (403 forbidden)."""

class NotFound(AllocateError):
    """An unknown or already ended allocation or resource (404 not_found)."""

class AllocationTimeout(AllocateError):
    """Nothing matching became ready before the wait ended (408 allocation_timeout)."""

class Conflict(AllocateError):
    """The request clashes with the current state, such as an id another agent owns (409 conflict)."""

class InternalError(AllocateError):
    """A fault in the server; its log has the details (500 internal)."""

class ShuttingDown(AllocateError):
    """The server is stopping (503 shutting_down)."""

class Overloaded(AllocateError):
    """The server holds as many connections as it allows, in all or from this address (503 overloaded)."""

class NotLeader(AllocateError):
    """This server is a standby of a shared store; another one leads (503 not_leader)."""

class QuotaExceeded(AllocateError):
    """The request could never fit its user's quota; the message names the limit (403 quota_exceeded)."""

class ConnectionLost(AllocateError):
    """The server could not be reached, or the connection to it dropped or stopped answering."""

# ---- the contract's data ------------------------------------------------------------------

@final
class Gpu:
    """One GPU of a resource."""

    def __new__(cls, label: str, memory_gb: int) -> Self: ...
    @property
    def label(self) -> str:
        """The model name, such as `NVIDIA GeForce RTX 2080`."""
    @property
    def memory_gb(self) -> int:
        """Its memory in GB."""

@final
class Connection:
    """How to reach an allocated resource. `repr` never shows the password."""

    def __new__(
        cls, host: str, username: str, password: str | None = None, port: int | None = None
    ) -> Self: ...
    @property
    def host(self) -> str:
        """Host name or address."""
    @property
    def username(self) -> str:
        """Login name."""
    @property
    def password(self) -> str | None:
        """Password or other secret; None for a key login."""
    @property
    def port(self) -> int | None:
        """The SSH port, None for the default."""

@final
class Resource:
    """A resource as an agent registers it."""

    def __new__(
        cls,
        *,
        labels: Sequence[str] = ...,
        cpu_count: int = 0,
        memory_gb: int = 0,
        gpu: Sequence[Gpu] = ...,
        type: str = ...,
        connection: Connection | None = None,
        inventory_id: _Id | None = None,
    ) -> Self: ...
    @property
    def labels(self) -> list[str]:
        """Labels that requests' `tags` match."""
    @property
    def cpu_count(self) -> int:
        """Number of CPUs."""
    @property
    def memory_gb(self) -> int:
        """Memory in GB."""
    @property
    def gpu(self) -> list[Gpu]:
        """Its GPUs, possibly none."""
    @property
    def type(self) -> str:
        """Free text such as `VM`, `device`, `server-onsite`."""
    @property
    def connection(self) -> Connection | None:
        """Fixed connection details: the server then hands them out without asking the agent."""
    @property
    def inventory_id(self) -> str | None:
        """The agent's own id for it, if it chose one."""

@final
class InventoryEntry:
    """One inventory entry as the server shows it (never with credentials)."""

    @property
    def inventory_id(self) -> str:
        """The resource's id."""
    @property
    def labels(self) -> list[str]:
        """Its labels."""
    @property
    def cpu_count(self) -> int:
        """Number of CPUs."""
    @property
    def memory_gb(self) -> int:
        """Memory in GB."""
    @property
    def gpu(self) -> list[Gpu]:
        """Its GPUs."""
    @property
    def type(self) -> str:
        """Free-text type."""
    @property
    def agent_id(self) -> str:
        """The agent that owns it."""
    @property
    def state(self) -> ResourceState:
        """`free`, `allocated`, `offline`, `error` or `maintenance`."""
    @property
    def reason(self) -> str | None:
        """Why it is in `error` or `maintenance`."""

@final
class AllocationInfo:
    """One allocation as the server or engine records it."""

    @property
    def allocation_id(self) -> str:
        """The allocation's id."""
    @property
    def inventory_id(self) -> str | None:
        """The resource it holds or held, if any (the first of several)."""
    @property
    def inventory_ids(self) -> list[str]:
        """Every resource it holds or held, the first one first."""
    @property
    def username(self) -> str:
        """Who asked."""
    @property
    def state(self) -> str:
        """`queued`, `provisioning`, `ready`, `released`, `expired`, `timed_out` or `cancelled`."""
    @property
    def created(self) -> int:
        """When it was requested (unix seconds)."""
    @property
    def expires(self) -> int:
        """When its lease ends or ended (unix seconds)."""
    @property
    def connection(self) -> Connection | None:
        """Connection details once ready (shown to its owner or an admin only)."""
    @property
    def position(self) -> int | None:
        """1-based place in the queue while queued."""

@final
class GpuRequirement:
    """What a request needs of its GPUs."""

    @property
    def label(self) -> str | None:
        """A GPU's label must contain this, ignoring case."""
    @property
    def min_memory_gb(self) -> int:
        """Each matching GPU has at least this much memory (GB)."""
    @property
    def count(self) -> int:
        """How many GPUs must match."""

@final
class Requirements:
    """What a request asks for: the contract's `requirements`, checked as the server checks them."""

    def __new__(cls, **fields: Unpack[RequirementsDict]) -> Self: ...
    @property
    def tags(self) -> list[str]:
        """Every tag must be among the resource's labels."""
    @property
    def username(self) -> str:
        """Who holds the allocation."""
    @property
    def allocation_timeout_seconds(self) -> int:
        """How long to wait in the queue (seconds); 0 means only if something is free now."""
    @property
    def expires(self) -> int | None:
        """When the lease should end (unix seconds), or None for the default lease."""
    @property
    def type(self) -> str | None:
        """The resource's `type` must equal this."""
    @property
    def min_cpu_count(self) -> int | None:
        """At least this many CPUs."""
    @property
    def min_memory_gb(self) -> int | None:
        """At least this much memory (GB)."""
    @property
    def gpu(self) -> GpuRequirement | None:
        """GPU needs."""
    @property
    def exclude_tags(self) -> list[str]:
        """None of these may be among the resource's labels."""
    @property
    def count(self) -> int:
        """How many distinct resources are granted together (1 unless asked)."""
    @property
    def release_on_disconnect(self) -> bool:
        """End the allocation when the requesting client disconnects."""

@final
class Candidate:
    """A resource the engine is considering for a request (what a matching policy sees)."""

    @property
    def inventory_id(self) -> str:
        """The resource's id."""
    @property
    def agent_id(self) -> str:
        """The agent that owns it."""
    @property
    def labels(self) -> list[str]:
        """Its labels."""
    @property
    def cpu_count(self) -> int:
        """Number of CPUs."""
    @property
    def memory_gb(self) -> int:
        """Memory in GB."""
    @property
    def gpu(self) -> list[Gpu]:
        """Its GPUs."""
    @property
    def type(self) -> str:
        """Free-text type."""

# ---- why not ------------------------------------------------------------------------------

@final
class Finding:
    """One reason some resources cannot serve a request: its `reason` code, how many resources it
    concerns (`count`) and a sentence (`message`)."""

    @property
    def reason(self) -> str:
        """The reason code: a requirement (`tags`, `gpu_label`, ...) or a state (`allocated`, ...)."""
    @property
    def count(self) -> int:
        """How many resources it concerns."""
    @property
    def message(self) -> str:
        """One sentence saying it."""

@final
class Explanation:
    """Why a request is or is not served now: how many registered resources match it, how many
    of those are free, and the findings (`explain`)."""

    @property
    def matching_resources(self) -> int:
        """Registered resources that could ever satisfy the request."""
    @property
    def free(self) -> int:
        """Matching resources that could be allocated now."""
    @property
    def explain(self) -> list[Finding]:
        """The findings, requirements first (most first), then states."""

# ---- outputs ------------------------------------------------------------------------------

@final
class Queued:
    """A waiting request's place in the queue (sent again whenever it changes)."""

    def __new__(cls, allocation_id: str, position: int, matching_resources: int, eta: int | None = None) -> Self: ...
    @property
    def allocation_id(self) -> str:
        """The request."""
    @property
    def position(self) -> int:
        """1-based place among all waiting requests."""
    @property
    def matching_resources(self) -> int:
        """Registered resources that could ever satisfy it (0: it waits for one to be registered)."""
    @property
    def eta(self) -> int | None:
        """The earliest known lease end (unix seconds) among matching resources that are held."""
    @property
    def explain(self) -> list[Finding] | None:
        """Why it could never be satisfied (no registered resource matches, or fewer than its count): in the first message of such a request only, else None."""
    @property
    def limit(self) -> str | None:
        """The quota limit that holds it back, in words (`"GPUs held"`), or None."""

@final
class Ready:
    """The allocation is ready: its resource and how to reach it."""

    def __new__(
        cls,
        allocation_id: str,
        inventory_id: str,
        connection: Connection,
        expires: int,
        resources: list[tuple[str, Connection]] = ...,
    ) -> Self: ...
    @property
    def allocation_id(self) -> str:
        """The allocation."""
    @property
    def inventory_id(self) -> str:
        """The resource it holds."""
    @property
    def connection(self) -> Connection:
        """How to reach it."""
    @property
    def expires(self) -> int:
        """When the lease ends (unix seconds)."""
    @property
    def resources(self) -> list[tuple[str, Connection]]:
        """Every resource granted, the first one first, as (inventory id, connection), for a
        request of several (`count`); empty for one."""

@final
class TimedOut:
    """Nothing became free before the request's wait ended (the contract's 408)."""

    def __new__(cls, allocation_id: str) -> Self: ...
    @property
    def allocation_id(self) -> str:
        """The request."""

@final
class QuotaRefused:
    """A new quota policy refused the waiting request: it could never fit its user's limit (the
    contract's 403 `quota_exceeded`)."""

    def __new__(cls, allocation_id: str, user: str, limit: str, max: int, asked: int) -> Self: ...
    @property
    def allocation_id(self) -> str:
        """The request."""
    @property
    def user(self) -> str:
        """The user whose quota it is."""
    @property
    def limit(self) -> str:
        """The limit it could never fit, in words (`"resources held"`)."""
    @property
    def max(self) -> int:
        """The limit's value."""
    @property
    def asked(self) -> int:
        """What the request needs of it."""

@final
class Expired:
    """The lease ended."""

    def __new__(cls, allocation_id: str) -> Self: ...
    @property
    def allocation_id(self) -> str:
        """The allocation."""

@final
class Released:
    """The allocation was released (or the waiting request cancelled)."""

    def __new__(cls, allocation_id: str) -> Self: ...
    @property
    def allocation_id(self) -> str:
        """The allocation."""

@final
class Offline:
    """The resource's agent went away during the lease."""

    def __new__(cls, allocation_id: str) -> Self: ...
    @property
    def allocation_id(self) -> str:
        """The allocation."""

@final
class Online:
    """The resource's agent came back during the lease."""

    def __new__(cls, allocation_id: str) -> Self: ...
    @property
    def allocation_id(self) -> str:
        """The allocation."""

@final
class Provision:
    """An order to an agent: prepare a resource for a user."""

    def __new__(cls, agent_id: str, allocation_id: str, inventory_id: str, username: str, expires: int) -> Self: ...
    @property
    def agent_id(self) -> str:
        """The agent to ask."""
    @property
    def allocation_id(self) -> str:
        """The allocation being prepared."""
    @property
    def inventory_id(self) -> str:
        """The resource."""
    @property
    def username(self) -> str:
        """Who will hold it."""
    @property
    def expires(self) -> int:
        """When the lease ends (unix seconds)."""

@final
class Release:
    """An order to an agent: clean up a resource after an allocation."""

    def __new__(cls, agent_id: str, allocation_id: str, inventory_id: str) -> Self: ...
    @property
    def agent_id(self) -> str:
        """The agent to ask."""
    @property
    def allocation_id(self) -> str:
        """The allocation that ended."""
    @property
    def inventory_id(self) -> str:
        """The resource."""

# ---- the engine ---------------------------------------------------------------------------

@final
class ManualClock:
    """A clock that stands still until advanced; an `Engine` reads it when a call names no `now`."""

    def __new__(cls, now: float = 0.0) -> Self: ...
    @property
    def now(self) -> float:
        """The current time (unix seconds)."""
    def advance(self, seconds: float) -> float:
        """Moves the clock forward by `seconds` (not negative); returns the new time."""
    def set(self, now: float) -> None:
        """Sets the clock to `now` (unix seconds), which must not be earlier than the current time."""

@final
class Engine:
    """The allocation engine: inventory, matching, queue and leases, with no IO and no clock of its own."""

    def __new__(
        cls,
        config: EngineConfigDict | None = None,
        *,
        seed: int = 0,
        clock: ManualClock | None = None,
        policy: MatchPolicy | None = None,
    ) -> Self: ...
    @property
    def clock(self) -> ManualClock:
        """The clock read by calls that name no `now`."""
    @property
    def now(self) -> float:
        """The latest time the engine has been given (unix seconds)."""
    def set_policy(self, policy: MatchPolicy | None) -> None:
        """Installs a matching policy (an object with `veto` and/or `score`), or restores plain best fit with None."""
    def set_quotas(
        self, policy: dict[str, Any] | None, *, now: float | None = None
    ) -> None:
        """Sets the quotas (a dict: `default`, `groups`, `users`, as the server's policy file has them), or removes them with None."""
    def register_agent(
        self, agent_id: _Id, resources: Sequence[Resource], *, now: float | None = None
    ) -> list[str]:
        """An agent registers (or replaces) its resource list; returns their inventory ids in order."""
    def disconnect_agent(self, agent_id: _Id, *, now: float | None = None) -> None:
        """An agent's socket closed: its resources go offline."""
    def request(
        self,
        requirements: Requirements | None = None,
        /,
        *,
        now: float | None = None,
        **fields: Unpack[RequirementsDict],
    ) -> str:
        """Asks for an allocation; returns its id."""
    def provisioned(
        self,
        agent_id: _Id,
        allocation_id: _Id,
        connection: Connection | None = None,
        *,
        error: str | None = None,
        now: float | None = None,
    ) -> None:
        """An agent answers a provision: with connection details, or with an `error` saying why not."""
    def release_acknowledged(
        self, agent_id: _Id, allocation_id: _Id, *, now: float | None = None
    ) -> None:
        """An agent acknowledges a release: the resource is free again."""
    def release(self, allocation_id: _Id, *, now: float | None = None) -> None:
        """Frees an allocation or cancels a waiting request (the contract's DELETE)."""
    def client_gone(self, allocation_id: _Id, *, now: float | None = None) -> None:
        """The requesting client went away."""
    def set_expires(self, allocation_id: _Id, expires: int, *, now: float | None = None) -> int:
        """Moves a live allocation's lease end (unix seconds); returns the effective, capped value."""
    def set_maintenance(
        self, inventory_id: _Id, reason: str | None, *, now: float | None = None
    ) -> None:
        """Takes a resource out of service once its lease ends, or returns it to service (None)."""
    def handle_timeout(self, *, now: float | None = None) -> None:
        """Fires every deadline due by `now` (default: the clock)."""
    def advance(self, seconds: float) -> None:
        """Moves the clock forward by `seconds` and fires the deadlines that became due."""
    def poll_timeout(self) -> float | None:
        """When `handle_timeout` should next be called (unix seconds), or None if nothing is pending."""
    def poll_output(self) -> _Output | None:
        """The next output (`Queued`, `Ready`, `Provision`, ...), or None when there is none."""
    def drain(self) -> list[_Output]:
        """Every pending output, oldest first."""
    def inventory(self) -> list[InventoryEntry]:
        """Every resource, in registration order."""
    def resource(self, inventory_id: _Id) -> InventoryEntry | None:
        """One resource, or None."""
    def allocation(self, allocation_id: _Id) -> AllocationInfo | None:
        """One allocation (live, or ended and still remembered), or None."""
    def current(self, allocation_id: _Id) -> list[_Output]:
        """What following an allocation sees first: the outputs its creating socket saw last (`Queued`, or `Ready` with its connection); empty when ended or unknown."""
    def allocations(self) -> list[AllocationInfo]:
        """Every remembered allocation: live ones by arrival, then ended ones oldest first."""
    def explain(
        self, requirements: Requirements | None = None, /, **fields: Unpack[RequirementsDict]
    ) -> Explanation:
        """Why a request would or would not be served now (a dry run: nothing changes)."""

# ---- the client ---------------------------------------------------------------------------

@final
class Allocation:
    """One allocation request; in a `with` block it waits until ready and releases on exit."""

    def start(self) -> Self:
        """Sends the request without waiting; returns the allocation."""
    def wait(self) -> Self:
        """Waits until the allocation is ready; returns it."""
    def release(self) -> None:
        """Ends the allocation (or cancels the waiting request). Harmless when it has already ended."""
    def extend(self, expires: int | None = None, *, seconds: int | None = None) -> int:
        """Moves the lease end: to `expires`, or `seconds` later than it is now. Returns the new end."""
    def info(self) -> AllocationInfo:
        """The server's record of this allocation."""
    # The awaitables under `allocate.AsyncAllocation`: asyncio futures of the running loop.
    def _wait_async(self) -> asyncio.Future[None]: ...
    def _release_async(self) -> asyncio.Future[None]: ...
    def _extend_async(
        self, expires: int | None = None, *, seconds: int | None = None
    ) -> asyncio.Future[int]: ...
    def _info_async(self) -> asyncio.Future[AllocationInfo]: ...
    @property
    def allocation_id(self) -> str | None:
        """The allocation's id (None until the server has answered)."""
    @property
    def inventory_id(self) -> str | None:
        """The resource it holds (None until ready)."""
    @property
    def connection(self) -> Connection | None:
        """How to reach the resource (None until ready)."""
    @property
    def expires(self) -> int | None:
        """When the lease ends (unix seconds; None until ready)."""
    @property
    def position(self) -> int | None:
        """The latest place in the queue while queued."""
    @property
    def state(self) -> AllocationState:
        """Where the allocation stands."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...

@final
class Client:
    """A client of a running allocate server at `url` (`http://host:port` or `https://...`;
    `ca_file`, a PEM file, is trusted besides the system's roots). The replicas of one store:
    a list of URLs (or one string with commas); calls go to whichever leads."""

    def __new__(
        cls,
        url: str | Sequence[str],
        *,
        token: str | None = None,
        username: str | None = None,
        timeout: float = 30.0,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> Self: ...
    @property
    def url(self) -> str:
        """The base URL of the server that leads (of those given, the one last found leading)."""
    @property
    def username(self) -> str:
        """Whom allocations are for unless a request names a `username`."""
    def inventory(
        self, *, tags: Sequence[str] | None = None, state: ResourceState | None = None
    ) -> list[InventoryEntry]:
        """The registered resources, optionally only those with every tag in `tags` and in `state`."""
    def resource(self, inventory_id: _Id) -> InventoryEntry:
        """One resource; raises NotFound for an unknown id."""
    def allocations(self) -> list[AllocationInfo]:
        """The caller's allocations (every allocation, for an admin)."""
    def allocation(self, allocation_id: _Id) -> AllocationInfo:
        """One allocation; raises NotFound for an unknown id."""
    def extend(self, allocation_id: _Id, expires: int) -> AllocationInfo:
        """Moves an allocation's lease end to `expires` (unix seconds, capped by the server)."""
    def release(self, allocation_id: _Id) -> None:
        """Frees an allocation or cancels a waiting request; raises NotFound when it has ended."""
    def match(self, **requirements: Unpack[RequirementsDict]) -> Explanation:
        """Why a request with these requirements would or would not be served now (`POST /match`, a dry run; `username` may be left out)."""
    def explain(self, allocation_id: _Id) -> Explanation:
        """Why a live request is or is not served now; raises NotFound for an ended or unknown one."""
    # The awaitables under `allocate.AsyncClient`: asyncio futures of the running loop.
    def _inventory_async(
        self, *, tags: Sequence[str] | None = None, state: ResourceState | None = None
    ) -> asyncio.Future[list[InventoryEntry]]: ...
    def _resource_async(self, inventory_id: _Id) -> asyncio.Future[InventoryEntry]: ...
    def _allocations_async(self) -> asyncio.Future[list[AllocationInfo]]: ...
    def _allocation_async(self, allocation_id: _Id) -> asyncio.Future[AllocationInfo]: ...
    def _extend_async(self, allocation_id: _Id, expires: int) -> asyncio.Future[AllocationInfo]: ...
    def _release_async(self, allocation_id: _Id) -> asyncio.Future[None]: ...
    def _match_async(self, **requirements: Unpack[RequirementsDict]) -> asyncio.Future[Explanation]: ...
    def _explain_async(self, allocation_id: _Id) -> asyncio.Future[Explanation]: ...
    def allocate(
        self,
        *,
        timeout: float | None = None,
        on_queued: Callable[[Queued], object] | None = None,
        **requirements: Unpack[RequirementsDict],
    ) -> Allocation:
        """An allocation request with the contract's requirements as keywords."""
    def follow(self, allocation_id: _Id) -> Follower:
        """Follows an existing allocation: its current state, then each event up to the final one; raises NotFound for an ended or unknown one."""
    def _follow_async(self, allocation_id: _Id) -> asyncio.Future[Follower]: ...

@final
class Follower:
    """An allocation followed: iterate for its current state, then each event up to the final one."""

    @property
    def allocation_id(self) -> str:
        """The allocation followed."""
    def __iter__(self) -> Self: ...
    def __next__(self) -> _Event: ...
    def _next_async(self) -> asyncio.Future[_Event | None]: ...
    def close(self) -> None:
        """Stops following (the allocation is left as it is). Harmless when already closed."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...

# ---- the server in-process ----------------------------------------------------------------

@final
class Agent:
    """An agent that registers `resources` with the server at `url` and answers its orders; the
    replicas of one store as a list of URLs (or one string with commas): it registers with
    whichever leads."""

    def __new__(
        cls,
        url: str | Sequence[str],
        resources: Sequence[Resource],
        *,
        agent_id: _Id | None = None,
        token: str | None = None,
        provision: Callable[[Provision], Connection] | None = None,
        release: Callable[[Release], object] | None = None,
    ) -> Self: ...
    def start(self) -> Self:
        """Connects and registers the resources; returns the agent."""
    def register(self, resources: Sequence[Resource]) -> list[str]:
        """Replaces the registered resources with `resources`; returns their inventory ids."""
    def stop(self) -> None:
        """Closes the connection; the agent's resources go `offline`. Harmless when stopped."""
    @property
    def agent_id(self) -> str:
        """The agent's id."""
    @property
    def inventory_ids(self) -> list[str]:
        """The inventory ids of the registered resources, in the order they were given."""
    @property
    def connected(self) -> bool:
        """Whether the socket is open."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...

@final
class Server:
    """The allocate server in this process, on 127.0.0.1 and an ephemeral port."""

    def __new__(
        cls,
        *,
        port: int = 0,
        config: EngineConfigDict | None = None,
        ping_interval: float = 5.0,
        idle_timeout: float = 15.0,
        shutdown_grace: float = 5.0,
    ) -> Self: ...
    def start(self) -> Self:
        """Starts listening (harmless when running); returns the server."""
    def stop(self) -> None:
        """Shuts down as the real server does and waits until it has. Harmless when stopped."""
    @property
    def url(self) -> str:
        """The base URL, such as `http://127.0.0.1:40123`."""
    @property
    def running(self) -> bool:
        """Whether the server is listening."""
    def client(
        self, *, token: str | None = None, username: str | None = None, timeout: float = 30.0
    ) -> Client:
        """A `Client` of this server."""
    def add_agent(
        self,
        resources: Sequence[Resource],
        *,
        agent_id: _Id | None = None,
        token: str | None = None,
        provision: Callable[[Provision], Connection] | None = None,
        release: Callable[[Release], object] | None = None,
    ) -> Agent:
        """Starts an `Agent` of this server with `resources` (registered when this returns)."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...

def _bench_rust_cycles(
    resources: Sequence[Resource], requirements: Requirements, cycles: int, now: float
) -> float:
    """Times `cycles` allocate+release cycles in Rust (the benchmark's baseline); returns seconds."""

def _cli_main(argv: Sequence[str]) -> int:
    """Runs the `allocate` command line `argv` (the program's name first); returns its exit status."""
