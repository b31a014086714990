"""allocate: dedicated lab hardware on demand.

- ``Client``: a client of a running allocate server. ``with client.allocate(tags=["nvidia"])
  as a:`` waits in the queue until a matching resource is ready, gives its ``connection``,
  ``inventory_id`` and ``expires``, and releases it when the block ends, also when it raises.
- ``AsyncClient``: the same for asyncio. ``async with client.allocate(...) as a:`` waits
  without blocking the loop; ``await client.inventory()``, ``await a.extend(seconds=60)``.
- ``Server``: the real server (allocate-http) in this process on an ephemeral port, and
  ``Agent`` (or ``Server.add_agent``) to register resources with it.
- ``Engine``: the engine itself with a ``ManualClock``, for simulations and fast
  deterministic tests, with a Python matching policy (``veto`` / ``score``).
- A pytest plugin (``allocate.pytest_plugin``, loaded automatically): fixtures
  ``allocate_server``, ``allocate_client`` and ``allocation`` with ``@pytest.mark.allocate``.

Every error subclasses ``AllocateError``; each has the contract's error ``code``.
"""

from typing import Union

from allocate._allocate import (
    AllocateError,
    Agent,
    Allocation,
    AllocationInfo,
    AllocationTimeout,
    Candidate,
    Client,
    Conflict,
    Connection,
    ConnectionLost,
    Engine,
    Expired,
    Explanation,
    Finding,
    Follower,
    Forbidden,
    Gpu,
    GpuRequirement,
    InternalError,
    InvalidRequest,
    InventoryEntry,
    ManualClock,
    NotFound,
    Offline,
    Online,
    Provision,
    Queued,
    Ready,
    Release,
    Released,
    Requirements,
    Resource,
    Server,
    ShuttingDown,
    NotLeader,
    QuotaExceeded,
    QuotaRefused,
    Overloaded,
    TimedOut,
    Unauthorized,
    __version__,
)
from allocate._aio import AsyncAllocation, AsyncClient, AsyncFollower
from allocate._types import (
    AllocationState,
    EngineConfigDict,
    GpuRequirementDict,
    LimitsDict,
    MatchPolicy,
    RequirementsDict,
    ResourceState,
    ScorePolicy,
    VetoPolicy,
)

#: One event of a followed allocation (``Client.follow``).
Event = Union[Queued, Ready, TimedOut, Expired, Released, Offline, Online]

#: One output of ``Engine.poll_output()``.
Output = Union[
    Queued, Ready, TimedOut, QuotaRefused, Expired, Released, Offline, Online, Provision, Release
]

__all__ = [
    "Agent",
    "AllocateError",
    "AsyncAllocation",
    "AsyncClient",
    "AsyncFollower",
    "Allocation",
    "AllocationInfo",
    "AllocationState",
    "AllocationTimeout",
    "Candidate",
    "Client",
    "Conflict",
    "Connection",
    "ConnectionLost",
    "Engine",
    "EngineConfigDict",
    "Event",
    "Expired",
    "Explanation",
    "Finding",
    "Follower",
    "Forbidden",
    "Gpu",
    "GpuRequirement",
    "GpuRequirementDict",
    "InternalError",
    "InvalidRequest",
    "InventoryEntry",
    "LimitsDict",
    "ManualClock",
    "MatchPolicy",
    "NotFound",
    "Offline",
    "Online",
    "Output",
    "Provision",
    "Queued",
    "Ready",
    "Release",
    "Released",
    "Requirements",
    "RequirementsDict",
    "Resource",
    "ResourceState",
    "ScorePolicy",
    "Server",
    "ShuttingDown",
    "Overloaded",
    "NotLeader",
    "QuotaExceeded",
    "QuotaRefused",
    "TimedOut",
    "Unauthorized",
    "VetoPolicy",
    "__version__",
]
