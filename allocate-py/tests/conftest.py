"""Shared fixtures: a real server started from Python, and resources unique to each test."""

from __future__ import annotations

import uuid
from typing import Iterator, List

import pytest

import allocate

# The plugin's own tests run in a fresh session through pytester.
pytest_plugins = ["pytester"]

#: Resources the plugin's session server registers (see test_plugin.py).
PLUGIN_RESOURCES = [
    allocate.Resource(
        labels=["plugin", "nvidia"],
        cpu_count=16,
        memory_gb=64,
        gpu=[allocate.Gpu("NVIDIA GeForce RTX 2080", 8)],
        type="server-onsite",
        connection=allocate.Connection("10.0.0.20", "lab", "gpu-secret"),
    ),
    allocate.Resource(
        labels=["plugin", "cpu"],
        cpu_count=4,
        memory_gb=8,
        type="VM",
        connection=allocate.Connection("10.0.0.21", "lab", "cpu-secret"),
    ),
]


@pytest.fixture(scope="session")
def allocate_resources() -> List[allocate.Resource]:
    """Overrides the plugin's fixture: its session server gets two resources."""
    return PLUGIN_RESOURCES


@pytest.fixture(scope="module")
def server() -> Iterator[allocate.Server]:
    """A server of this test module, with short shutdown waits."""
    with allocate.Server(shutdown_grace=1.0) as running:
        yield running


@pytest.fixture
def client(server: allocate.Server) -> allocate.Client:
    """A client of the module's server."""
    return server.client(username="tester")


@pytest.fixture
def tag() -> str:
    """A label no other test uses, so each test has resources of its own."""
    return f"t-{uuid.uuid4().hex[:12]}"
