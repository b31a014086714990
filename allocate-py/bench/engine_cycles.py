"""Allocate+release cycles per second through the Python engine binding against the same in Rust.

    make bench-py        (builds the release wheel into .venv, then runs this)

Each cycle asks for a resource (free ones exist), takes the `Ready` output, releases it and
takes the `Released` output, on an engine holding 10,000 static resources: the cycle of the
C API's benchmark (allocate-c/benches/c_vs_rust.rs). The Rust side runs the same loop in this
process (`allocate._allocate._bench_rust_cycles`), so both numbers come from one run on one
machine. The paths take turns, round after round, and each figure is the best round of its
path: on a busy machine the best round is the one least disturbed. Setup is outside the timed part.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import allocate
from allocate._allocate import _bench_rust_cycles

NOW = 1_700_000_000.0
RESOURCES = 10_000
ROUNDS = 7
PYTHON_CYCLES = 50_000
RUST_CYCLES = 500_000


def resources() -> list[allocate.Resource]:
    """The C benchmark's inventory: a few shapes of GPU VMs with static connections."""
    return [
        allocate.Resource(
            labels=["lab", f"rack-{i % 16}"],
            cpu_count=8 << (i % 3),
            memory_gb=64,
            gpu=[allocate.Gpu(f"RTX {2080 + (i % 4) * 10}", 8)],
            type="VM",
            connection=allocate.Connection(f"10.0.{i // 256}.{i % 256}", "lab", "pw"),
        )
        for i in range(RESOURCES)
    ]


def best_seconds_per_cycle(paths: list[tuple[str, Callable[[int], float], int]]) -> list[float]:
    """Runs each `(name, run, cycles)` path ROUNDS times, in turns (`run(cycles)` returns the
    seconds it took); returns the best seconds per cycle of each path."""
    for _, run, cycles in paths:
        run(cycles // 10)  # warm up
    best = [float("inf")] * len(paths)
    for _ in range(ROUNDS):
        for i, (_, run, cycles) in enumerate(paths):
            best[i] = min(best[i], run(cycles) / cycles)
    return best


def main() -> None:
    """Measures and prints a Markdown table."""
    inventory = resources()
    wants = allocate.Requirements(username="ci", tags=["lab"], min_cpu_count=16)
    engine = allocate.Engine(clock=allocate.ManualClock(NOW), seed=1)
    engine.register_agent("00000000-0000-0000-0000-000000000001", inventory)

    def python_object(cycles: int) -> float:
        request, release, poll = engine.request, engine.release, engine.poll_output
        start = time.perf_counter()
        for _ in range(cycles):
            allocation_id = request(wants)
            while poll() is not None:
                pass
            release(allocation_id)
            while poll() is not None:
                pass
        return time.perf_counter() - start

    def python_keywords(cycles: int) -> float:
        request, release, poll = engine.request, engine.release, engine.poll_output
        start = time.perf_counter()
        for _ in range(cycles):
            allocation_id = request(username="ci", tags=["lab"], min_cpu_count=16)
            while poll() is not None:
                pass
            release(allocation_id)
            while poll() is not None:
                pass
        return time.perf_counter() - start

    def rust(cycles: int) -> float:
        return _bench_rust_cycles(inventory, wants, cycles, NOW)

    paths = [
        ("Rust (`Engine` directly, same process)", rust, RUST_CYCLES),
        ("Python, a `Requirements` object", python_object, PYTHON_CYCLES),
        ("Python, requirements as keywords", python_keywords, PYTHON_CYCLES),
    ]
    results = list(zip((name for name, _, _ in paths), best_seconds_per_cycle(paths)))
    baseline = results[0][1]
    print(f"Python {sys.version.split()[0]}, allocate {allocate.__version__}, {RESOURCES} resources")
    print()
    print("| path | time per cycle | cycles/s | vs Rust |")
    print("| --- | --- | --- | --- |")
    for name, seconds in results:
        print(
            f"| {name} | {seconds * 1e6:.2f} µs | {1 / seconds / 1e6:.2f} M "
            f"| {baseline / seconds:.0%} |"
        )


if __name__ == "__main__":
    main()
