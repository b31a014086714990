"""harness.py for asyncio: get two machines at once, use them side by side, give them back.

    python examples/python/harness_async.py [--url http://127.0.0.1:8080] [--token TOKEN]

Without --url (or $ALLOCATE_URL) it starts an allocate server in this process with two demo
machines, so it runs anywhere. Both requests wait in the queue together without blocking the
event loop, and each machine is released when its `async with` block ends, also when the block
raises or the task is cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

import allocate

DEMO_MACHINES = [
    allocate.Resource(
        labels=["nvidia", "cuda"],
        cpu_count=12,
        memory_gb=32,
        gpu=[allocate.Gpu("NVIDIA GeForce RTX 2080", 8)],
        type="server-onsite",
        connection=allocate.Connection(f"10.0.0.{number}", "lab", "demo-password"),
    )
    for number in (7, 8)
]


def show_progress(queued: allocate.Queued) -> None:
    """Prints the place in the queue while waiting (called on the event loop's thread)."""
    print(f"{queued.allocation_id}: position {queued.position} in the queue", file=sys.stderr)


async def run_job(client: allocate.AsyncClient, name: str, timeout: float) -> str:
    """Holds one NVIDIA machine while the job "runs"; returns the host it ran on."""
    async with client.allocate(tags=["nvidia"], timeout=timeout, on_queued=show_progress) as machine:
        connection = machine.connection
        assert connection is not None, "a ready allocation has its connection"
        print(f"{name}: allocation {machine.allocation_id}, ssh {connection.username}@{connection.host}")
        expires = await machine.extend(seconds=600)
        print(f"{name}: lease extended to {expires}")
        await asyncio.sleep(0.1)  # the job
        return connection.host


async def run(url: str, token: str | None, timeout: float) -> int:
    """Runs two jobs at once; returns the exit status."""
    client = allocate.AsyncClient(url, token=token)
    free = await client.inventory(tags=["nvidia"], state="free")
    print(f"{len(free)} NVIDIA machine(s) free")
    try:
        hosts = await asyncio.gather(run_job(client, "job-1", timeout), run_job(client, "job-2", timeout))
    except allocate.AllocationTimeout as e:
        print(f"no NVIDIA machine became free in time: {e}", file=sys.stderr)
        return 1
    print(f"ran on {', '.join(sorted(hosts))}; both released")
    return 0


def main(argv: list[str]) -> int:
    """Parses the arguments, starts a demo server without --url, and runs the jobs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("ALLOCATE_URL"))
    parser.add_argument("--token", default=os.environ.get("ALLOCATE_TOKEN"))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait in the queue")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        url: str | None = args.url
        if not url:
            server = stack.enter_context(allocate.Server())
            stack.enter_context(server.add_agent(DEMO_MACHINES))
            url = server.url
            print(f"started a demo server at {url}", file=sys.stderr)
        return asyncio.run(run(url, args.token, args.timeout))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
