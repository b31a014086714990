"""The asyncio API (AsyncClient, AsyncAllocation) against the real server, started from Python.

Each test runs its own loop with asyncio.run, so no asyncio plugin for pytest is needed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

import pytest

import allocate
from helpers import eventually, machine

T = TypeVar("T")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"


def run(test: Callable[[], Awaitable[T]]) -> T:
    """Runs one async test body on a fresh loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(test(), 20)

    return asyncio.run(bounded())


@pytest.fixture
def aclient(client: allocate.Client) -> allocate.AsyncClient:
    """An asyncio client of the module's server, as the blocking `client`."""
    return allocate.AsyncClient.from_client(client)


def test_allocate_ready_extend_release(
    server: allocate.Server, client: allocate.Client, aclient: allocate.AsyncClient, tag: str
) -> None:
    async def body() -> None:
        with server.add_agent([machine(tag, 31)]) as agent:
            [entry] = await aclient.inventory(tags=[tag])
            assert (entry.inventory_id, entry.state) == (agent.inventory_ids[0], "free")
            assert (await aclient.resource(entry.inventory_id)).state == "free"
            request = aclient.allocate(tags=[tag], timeout=5)
            assert request.state == "new"
            async with request as held:
                assert held is request and held.state == "ready"
                assert held.connection == allocate.Connection("10.0.0.31", "lab", "pw-31")
                assert held.inventory_id == entry.inventory_id
                assert held.expires is not None and held.expires > time.time()
                assert (await held.info()).username == "tester"
                later = await held.extend(seconds=60)
                assert later == held.expires
                allocation_id = held.allocation_id or ""
                assert (await aclient.allocation(allocation_id)).expires == later
                assert (await aclient.extend(allocation_id, later + 60)).expires == later + 60
                assert allocation_id in {a.allocation_id for a in await aclient.allocations()}
                assert client.resource(entry.inventory_id).state == "allocated"
            assert held.state == "released"
            assert (await aclient.allocation(allocation_id)).state == "released"
            assert (await aclient.resource(entry.inventory_id)).state == "free"
            with pytest.raises(allocate.NotFound):
                await aclient.release(allocation_id)
            await held.release()  # already ended: harmless

    run(body)


def test_await_allocate_and_release_by_id(
    server: allocate.Server, aclient: allocate.AsyncClient, tag: str
) -> None:
    async def body() -> None:
        with server.add_agent([machine(tag, 32)]):
            held = await aclient.allocate(tags=[tag], timeout=5)
            assert held.state == "ready"
            await aclient.release(held.allocation_id or "")
            assert (await aclient.allocation(held.allocation_id or "")).state == "released"
            await held.release()

    run(body)


def test_errors_are_the_blocking_api_classes(
    server: allocate.Server, client: allocate.Client, aclient: allocate.AsyncClient, tag: str
) -> None:
    async def body() -> None:
        with pytest.raises(allocate.NotFound):
            await aclient.resource("8a526e72-bcde-45e6-8a5f-f598b350f093")
        with pytest.raises(allocate.InvalidRequest, match="state"):
            await aclient.inventory(state="sleeping")  # type: ignore[arg-type]
        with pytest.raises(allocate.InvalidRequest, match="unknown field `tag`"):
            async with aclient.allocate(tag=["x"], timeout=1):  # type: ignore[call-arg]
                pytest.fail("a typo must never match")
        with server.add_agent([machine(tag, 33)]):
            async with aclient.allocate(tags=[tag]) as holder:
                started = time.monotonic()
                waiting = aclient.allocate(tags=[tag], timeout=1)
                with pytest.raises(allocate.AllocationTimeout) as raised:
                    await waiting
                assert 0.9 < time.monotonic() - started < 4
                assert raised.value.code == "allocation_timeout"
                assert waiting.state == "timed_out"
                assert holder.state == "ready"

    run(body)
    with server.add_agent([machine(tag, 34)]), client.allocate(tags=[tag]):
        with pytest.raises(allocate.AllocationTimeout):
            client.allocate(tags=[tag], timeout=1).wait()


def test_release_when_the_block_raises(
    server: allocate.Server, client: allocate.Client, aclient: allocate.AsyncClient, tag: str
) -> None:
    async def body() -> allocate.AsyncAllocation:
        with pytest.raises(RuntimeError, match="test body failed"):
            async with aclient.allocate(tags=[tag], timeout=5) as held:
                raise RuntimeError("test body failed")
        return held

    with server.add_agent([machine(tag, 35)]) as agent:
        held = run(body)
        assert held.state == "released"
        assert client.resource(agent.inventory_ids[0]).state == "free"


def test_cancelling_a_waiting_block_leaves_nothing_queued_or_held(
    server: allocate.Server, client: allocate.Client, aclient: allocate.AsyncClient, tag: str
) -> None:
    async def body() -> allocate.AsyncAllocation:
        queued = asyncio.Event()
        waiting = aclient.allocate(tags=[tag], timeout=30, on_queued=lambda q: queued.set())

        async def hold_it() -> None:
            async with waiting:
                pytest.fail("the resource is held by someone else")

        task = asyncio.create_task(hold_it())
        await asyncio.wait_for(queued.wait(), 5)
        assert waiting.state == "queued" and waiting.position == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return waiting

    with server.add_agent([machine(tag, 36)]) as agent:
        with client.allocate(tags=[tag]) as holder:
            waiting = run(body)
            assert waiting.state == "released"
            info = client.allocation(waiting.allocation_id or "")
            assert info.state in ("released", "cancelled")
        assert holder.state == "released"
        # Nobody was waiting any more, so the freed resource stays free.
        eventually(lambda: client.resource(agent.inventory_ids[0]).state == "free")
        time.sleep(0.2)
        assert client.resource(agent.inventory_ids[0]).state == "free"
        mine = [a for a in client.allocations() if a.allocation_id == waiting.allocation_id]
        assert [a.state for a in mine] == [info.state]


def test_cancelling_a_task_that_holds_a_resource_releases_it(
    server: allocate.Server, client: allocate.Client, aclient: allocate.AsyncClient, tag: str
) -> None:
    async def body() -> allocate.AsyncAllocation:
        ready = asyncio.Event()
        request = aclient.allocate(tags=[tag], timeout=5)

        async def use_it() -> None:
            async with request:
                ready.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(use_it())
        await asyncio.wait_for(ready.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return request

    with server.add_agent([machine(tag, 38)]) as agent:
        held = run(body)
        assert held.state == "released"
        assert client.allocation(held.allocation_id or "").state == "released"
        assert client.resource(agent.inventory_ids[0]).state == "free"


def test_two_allocations_wait_together_on_one_loop(
    server: allocate.Server, client: allocate.Client, aclient: allocate.AsyncClient, tag: str
) -> None:
    async def body() -> tuple[list[str], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async def job() -> str:
            async with aclient.allocate(tags=[tag], timeout=10) as held:
                await asyncio.sleep(0.3)  # the job; the other one waits in the queue meanwhile
                return held.inventory_id or ""

        ticking = asyncio.create_task(ticker())
        held_by = list(await asyncio.gather(job(), job()))
        ticking.cancel()
        return held_by, ticks

    with server.add_agent([machine(tag, 37)]) as agent:
        # One machine for two jobs: the second waits for the first's release, and the loop
        # keeps running (the ticker ticks) while both wait.
        held_by, ticks = run(body)
        assert held_by == agent.inventory_ids * 2
        assert ticks >= 20
        assert client.resource(agent.inventory_ids[0]).state == "free"


def test_awaiting_outside_a_running_loop_is_an_error(aclient: allocate.AsyncClient) -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        aclient.blocking._allocations_async()


def test_the_async_example_runs() -> None:
    # Without --url it starts a server in its process, with two machines.
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "harness_async.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ran on 10.0.0.7, 10.0.0.8; both released" in done.stdout


EXIT_RIGHT_AFTER_AWAITS = """
import asyncio, allocate
server = allocate.Server().__enter__()
client = allocate.AsyncClient(server.url)
async def main():
    await asyncio.gather(*[client.inventory() for _ in range(50)])
asyncio.run(main())
"""


def test_the_interpreter_exits_cleanly_right_after_awaits() -> None:
    # The runtime thread that handed a result over may still hold the GIL when the program
    # ends; the atexit hook waits for it, else CPython aborts while finalizing.
    for _ in range(5):
        done = subprocess.run(
            [sys.executable, "-c", EXIT_RIGHT_AFTER_AWAITS],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")


def test_async_follow_until_the_end(
    server: allocate.Server, aclient: allocate.AsyncClient, tag: str
) -> None:
    async def body() -> None:
        with server.add_agent([machine(tag, 44)]):
            async with aclient.allocate(tags=[tag], timeout=5) as held:
                assert held.allocation_id is not None
                async with await aclient.follow(held.allocation_id) as follower:
                    first = await follower.__anext__()
                    assert isinstance(first, allocate.Ready)
                    assert first.connection.host == "10.0.0.44"
                    await held.release()
                    assert [type(e) async for e in follower] == [allocate.Released]
            with pytest.raises(allocate.NotFound):
                await aclient.follow(held.allocation_id)

    run(body)
