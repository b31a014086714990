"""A test harness's first step: get an NVIDIA machine, show how to reach it, give it back.

    python examples/python/harness.py [--url http://127.0.0.1:8080] [--token TOKEN]

Without --url (or $ALLOCATE_URL) it starts an allocate server in this process with one demo
machine, so it runs anywhere. The machine is released when the `with` block ends, also when
the block raises or Ctrl-C interrupts it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import allocate

DEMO_MACHINE = allocate.Resource(
    labels=["nvidia", "cuda"],
    cpu_count=12,
    memory_gb=32,
    gpu=[allocate.Gpu("NVIDIA GeForce RTX 2080", 8)],
    type="server-onsite",
    connection=allocate.Connection("10.0.0.7", "lab", "demo-password"),
)


def show_progress(queued: allocate.Queued) -> None:
    """Prints the place in the queue while waiting."""
    print(f"waiting: position {queued.position} in the queue", file=sys.stderr)


def main(argv: list[str]) -> int:
    """Runs the harness; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("ALLOCATE_URL"))
    parser.add_argument("--token", default=os.environ.get("ALLOCATE_TOKEN"))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait in the queue")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        url: str | None = args.url
        if not url:
            server = stack.enter_context(allocate.Server())
            server.add_agent([DEMO_MACHINE])
            url = server.url
            print(f"started a demo server at {url}", file=sys.stderr)
        client = allocate.Client(url, token=args.token)
        try:
            request = client.allocate(tags=["nvidia"], timeout=args.timeout, on_queued=show_progress)
            with request as machine:
                connection = machine.connection
                assert connection is not None, "a ready allocation has its connection"
                print(f"allocation {machine.allocation_id} on resource {machine.inventory_id}")
                print(f"connect:    ssh {connection.username}@{connection.host}")
                print(f"details:    {connection!r}")
                print(f"lease ends: {time.ctime(machine.expires or 0)}")
        except allocate.AllocationTimeout as e:
            print(f"no NVIDIA machine became free in time: {e}", file=sys.stderr)
            return 1
    print(f"released ({machine.state})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
