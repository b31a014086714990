"""A deterministic simulation with the engine: a day of requests on a small lab, with a matching
policy that keeps the big GPU servers for those who ask for big GPUs.

    python examples/python/simulate.py
"""

from __future__ import annotations

import random
from typing import Optional

import allocate

AGENT = "d4863713-1388-4297-a479-a582b306f5cb"


class KeepBigGpusFree:
    """Scores a candidate lower the more GPU memory it would leave unused (a policy)."""

    def score(self, request: allocate.Requirements, candidate: allocate.Candidate) -> Optional[int]:
        wanted = request.gpu.min_memory_gb if request.gpu is not None else 0
        return -sum(g.memory_gb - wanted for g in candidate.gpu)

    def veto(self, request: allocate.Requirements, candidate: allocate.Candidate) -> bool:
        return "broken" in candidate.labels


def lab() -> list[allocate.Resource]:
    """Four small GPU VMs and two big GPU servers."""
    small = [
        allocate.Resource(labels=["nvidia"], cpu_count=8, memory_gb=32, type="VM",
                          gpu=[allocate.Gpu("RTX 2080", 8)],
                          connection=allocate.Connection(f"10.0.1.{i}", "lab", "pw"))
        for i in range(4)
    ]
    big = [
        allocate.Resource(labels=["nvidia"], cpu_count=64, memory_gb=512, type="server-onsite",
                          gpu=[allocate.Gpu("A100", 80)] * 4,
                          connection=allocate.Connection(f"10.0.2.{i}", "lab", "pw"))
        for i in range(2)
    ]
    return small + big


def main() -> None:
    """Runs the day and prints what happened."""
    rng = random.Random(7)
    engine = allocate.Engine(seed=7, clock=allocate.ManualClock(1_700_000_000.0),
                             policy=KeepBigGpusFree())
    engine.register_agent(AGENT, lab())
    counts: dict[str, int] = {}
    for _ in range(200):
        big = rng.random() < 0.2
        engine.request(
            username=f"user{rng.randrange(10)}",
            tags=["nvidia"],
            gpu={"min_memory_gb": 40 if big else 8, "count": 1},
            expires=int(engine.clock.now) + rng.randrange(600, 7200),
            allocation_timeout_seconds=1800,
        )
        engine.advance(rng.uniform(0, 300))
        for output in engine.drain():
            name = type(output).__name__
            counts[name] = counts.get(name, 0) + 1
    print(repr(engine))
    for name, count in sorted(counts.items()):
        print(f"{name:>10}: {count}")


if __name__ == "__main__":
    main()
