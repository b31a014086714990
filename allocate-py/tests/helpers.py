"""Helpers for the tests: resources unique to a test, and waiting for a condition."""

from __future__ import annotations

import time
from typing import Callable

import pytest

import allocate


def machine(tag: str, number: int, **fields: object) -> allocate.Resource:
    """A resource labelled `tag` with a static connection to 10.0.<number>."""
    kwargs: dict[str, object] = {
        "labels": [tag],
        "cpu_count": 8,
        "memory_gb": 16,
        "type": "VM",
        "connection": allocate.Connection(f"10.0.0.{number}", "lab", f"pw-{number}"),
    }
    kwargs.update(fields)
    return allocate.Resource(**kwargs)  # type: ignore[arg-type]


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """Waits until `check()` is true, failing the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {seconds} s: {check}")
        time.sleep(0.02)
