"""The asyncio API: ``AsyncClient`` and ``AsyncAllocation``, beside the blocking ``Client``.

Each call runs on the module's tokio runtime, never on the event loop's thread, and its result
comes back to the loop through ``loop.call_soon_threadsafe``: awaiting never blocks the loop.
Cancelling an await cancels what it was doing; cancelling a wait for ``ready`` gives the request
up (deleted on the server, its socket closed), so nothing is left queued or held.
"""

from __future__ import annotations

import asyncio
import os
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Generator, Optional, Sequence, Type
from uuid import UUID

from allocate._allocate import (
    Allocation,
    AllocationInfo,
    Client,
    Connection,
    Expired,
    Explanation,
    Follower,
    InventoryEntry,
    Offline,
    Online,
    Queued,
    Ready,
    Released,
    TimedOut,
)
from allocate._types import AllocationState, ResourceState

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from allocate._types import RequirementsDict

__all__ = ["AsyncAllocation", "AsyncClient", "AsyncFollower"]


class AsyncAllocation:
    """One allocation request for asyncio. ``async with client.allocate(...) as a:`` sends it,
    waits in the queue without blocking the loop, and releases it when the block ends, also when
    the block raises or is cancelled. Outside ``async with``: ``await a.wait()``,
    ``await a.release()``."""

    __slots__ = ("_allocation",)

    def __init__(self, allocation: Allocation) -> None:
        self._allocation = allocation

    @property
    def blocking(self) -> Allocation:
        """The same request as a blocking ``Allocation``."""
        return self._allocation

    async def wait(self) -> Self:
        """Sends the request unless it was sent and waits until it is ready; returns it.

        Raises ``AllocationTimeout`` when nothing became ready in time, or the server's refusal.
        ``on_queued`` is called on the loop's thread with each new queue position. When the
        wait is cancelled (or raises), the request is released before the exception goes on.
        """
        try:
            await self._allocation._wait_async()
        except BaseException:
            await _finish(self._allocation._release_async())
            raise
        return self

    async def release(self) -> None:
        """Ends the allocation (or cancels the waiting request). Harmless when it has ended."""
        await _finish(self._allocation._release_async())

    async def extend(self, expires: Optional[int] = None, *, seconds: Optional[int] = None) -> int:
        """Moves the lease end: to ``expires`` (unix seconds), or ``seconds`` later than it is
        now. Returns the new end, which the server caps at its maximum lease."""
        return await self._allocation._extend_async(expires, seconds=seconds)

    async def info(self) -> AllocationInfo:
        """The server's record of this allocation."""
        return await self._allocation._info_async()

    @property
    def allocation_id(self) -> Optional[str]:
        """The allocation's id (None until the server has answered)."""
        return self._allocation.allocation_id

    @property
    def inventory_id(self) -> Optional[str]:
        """The resource it holds (None until ready)."""
        return self._allocation.inventory_id

    @property
    def connection(self) -> Optional[Connection]:
        """How to reach the resource (None until ready)."""
        return self._allocation.connection

    @property
    def expires(self) -> Optional[int]:
        """When the lease ends (unix seconds; None until ready)."""
        return self._allocation.expires

    @property
    def position(self) -> Optional[int]:
        """The latest place in the queue while queued."""
        return self._allocation.position

    @property
    def state(self) -> AllocationState:
        """Where the allocation stands (as ``Allocation.state``)."""
        return self._allocation.state

    def __await__(self) -> Generator[object, None, Self]:
        """``await client.allocate(...)`` is ``await client.allocate(...).wait()``."""
        return self.wait().__await__()

    async def __aenter__(self) -> Self:
        return await self.wait()

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.release()

    def __repr__(self) -> str:
        return f"Async{self._allocation!r}"


async def _finish(release: asyncio.Future[None]) -> None:
    """Awaits a release to its end even if the awaiting task is cancelled meanwhile (the
    cancellation goes on after it)."""
    try:
        await asyncio.shield(release)
    except asyncio.CancelledError:
        await asyncio.wait([release])
        raise


class AsyncFollower:
    """An allocation followed, for asyncio: ``async for event in await client.follow(id)``
    gives its current state, then each event up to the final one (``Released``, ``Expired``,
    ``TimedOut``). Closing it (``close()``, the end of ``async with``) leaves the allocation as
    it is."""

    __slots__ = ("_follower",)

    def __init__(self, follower: Follower) -> None:
        self._follower = follower

    @property
    def allocation_id(self) -> str:
        """The allocation followed."""
        return self._follower.allocation_id

    def __aiter__(self) -> AsyncFollower:
        return self

    async def __anext__(self) -> Queued | Ready | TimedOut | Expired | Released | Offline | Online:
        event = await self._follower._next_async()
        if event is None:
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        """Stops following. Harmless when already closed."""
        self._follower.close()

    async def __aenter__(self) -> AsyncFollower:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Async{self._follower!r}"


class AsyncClient:
    """A client of a running allocate server for asyncio; the arguments are ``Client``'s.

    ``async with client.allocate(tags=["nvidia"]) as a:`` waits for a resource; ``await
    client.inventory()``, ``allocation(id)``, ``extend(id, expires)``, ``release(id)`` are the
    contract's HTTP calls. ``AsyncClient.from_client(client)`` shares a blocking ``Client``'s
    settings; ``blocking`` is the other way round.
    """

    __slots__ = ("_client",)

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: Optional[str] = None,
        username: Optional[str] = None,
        timeout: float = 30.0,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._client = Client(url, token=token, username=username, timeout=timeout, ca_file=ca_file)

    @classmethod
    def from_client(cls, client: Client) -> AsyncClient:
        """An asyncio client with the settings (and connections) of ``client``."""
        made = cls.__new__(cls)
        made._client = client
        return made

    @property
    def blocking(self) -> Client:
        """The same client with the blocking API."""
        return self._client

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._client.url

    @property
    def username(self) -> str:
        """Whom allocations are for unless a request names a ``username``."""
        return self._client.username

    async def inventory(
        self, *, tags: Optional[Sequence[str]] = None, state: Optional[ResourceState] = None
    ) -> list[InventoryEntry]:
        """The registered resources, optionally only those with every tag in ``tags`` and in
        ``state``."""
        return await self._client._inventory_async(tags=tags, state=state)

    async def resource(self, inventory_id: str | UUID) -> InventoryEntry:
        """One resource; raises NotFound for an unknown id."""
        return await self._client._resource_async(inventory_id)

    async def allocations(self) -> list[AllocationInfo]:
        """The caller's allocations (every allocation, for an admin)."""
        return await self._client._allocations_async()

    async def allocation(self, allocation_id: str | UUID) -> AllocationInfo:
        """One allocation; raises NotFound for an unknown id."""
        return await self._client._allocation_async(allocation_id)

    async def extend(self, allocation_id: str | UUID, expires: int) -> AllocationInfo:
        """Moves an allocation's lease end to ``expires`` (unix seconds, capped by the server)."""
        return await self._client._extend_async(allocation_id, expires)

    async def release(self, allocation_id: str | UUID) -> None:
        """Frees an allocation or cancels a waiting request; raises NotFound when it has ended."""
        await self._client._release_async(allocation_id)

    async def match(self, **requirements: Unpack[RequirementsDict]) -> Explanation:
        """Why a request with these requirements would or would not be served now (as
        ``Client.match``; a dry run)."""
        return await self._client._match_async(**requirements)

    async def explain(self, allocation_id: str | UUID) -> Explanation:
        """Why a live request is or is not served now (as ``Client.explain``)."""
        return await self._client._explain_async(allocation_id)

    async def follow(self, allocation_id: str | UUID) -> AsyncFollower:
        """Follows an existing allocation (as ``Client.follow``); raises NotFound for an ended or
        unknown one."""
        return AsyncFollower(await self._client._follow_async(allocation_id))

    def allocate(
        self,
        *,
        timeout: Optional[float] = None,
        on_queued: Optional[Callable[[Queued], object]] = None,
        **requirements: Unpack[RequirementsDict],
    ) -> AsyncAllocation:
        """An allocation request with the contract's requirements as keywords (as
        ``Client.allocate``); use it in ``async with``, or ``await`` it."""
        return AsyncAllocation(
            self._client.allocate(timeout=timeout, on_queued=on_queued, **requirements)
        )

    def __repr__(self) -> str:
        return f"Async{self._client!r}"
