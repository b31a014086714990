"""The allocate pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``allocate_server`` (session): an allocate ``Server`` running in this process, with the
  resources of the ``allocate_resources`` fixture registered by an ``Agent``.
- ``allocate_resources`` (session): the resources that server registers; none unless a
  ``conftest.py`` overrides it.
- ``allocate_url`` (session): ``--allocate-url`` (or ``$ALLOCATE_URL``) when given, so tests run
  against a real lab server; otherwise the in-process server's URL.
- ``allocate_client`` (session): a ``Client`` of ``allocate_url`` (``--allocate-token`` /
  ``$ALLOCATE_TOKEN``, ``--allocate-username``).
- ``allocate_async_client`` (session): an ``AsyncClient`` with ``allocate_client``'s settings.
  It is tied to no event loop, so it serves every test's loop: pytest-asyncio's, or a plain
  ``asyncio.run``.
- ``allocate_requirements``: the keywords of the test's ``@pytest.mark.allocate(...)`` marker
  (``{}`` without one), for ``async with allocate_async_client.allocate(**allocate_requirements)``.
- ``allocation``: a resource held for one test, released after it. Its requirements come from
  the test's ``@pytest.mark.allocate(tags=["nvidia"], timeout=30, ...)`` marker (keywords of
  ``Client.allocate``); without the marker, any resource.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, List

import pytest

import allocate

MARKER = "allocate"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Adds ``--allocate-url``, ``--allocate-token`` and ``--allocate-username``."""
    group = parser.getgroup("allocate", "allocate: dedicated lab hardware for tests")
    group.addoption(
        "--allocate-url",
        default=os.environ.get("ALLOCATE_URL"),
        help="allocate server to use (default: $ALLOCATE_URL, else a server started in-process)",
    )
    group.addoption(
        "--allocate-token",
        default=os.environ.get("ALLOCATE_TOKEN"),
        help="bearer token for the allocate server (default: $ALLOCATE_TOKEN)",
    )
    group.addoption(
        "--allocate-username",
        default=None,
        help="username allocations are made for (default: $ALLOCATE_USERNAME or the login name)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Registers the ``allocate`` marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**requirements): what the `allocation` fixture asks for "
        "(keywords of allocate.Client.allocate, e.g. tags=['nvidia'], timeout=30)",
    )


@pytest.fixture(scope="session")
def allocate_resources() -> List[allocate.Resource]:
    """Resources the in-process server registers; override it in a ``conftest.py``."""
    return []


@pytest.fixture(scope="session")
def allocate_server(allocate_resources: List[allocate.Resource]) -> Iterator[allocate.Server]:
    """An allocate server in this process with ``allocate_resources`` registered."""
    with allocate.Server() as server:
        if allocate_resources:
            with server.add_agent(allocate_resources):
                yield server
        else:
            yield server


@pytest.fixture(scope="session")
def allocate_url(request: pytest.FixtureRequest) -> str:
    """The server under test: ``--allocate-url`` when given, else the in-process server."""
    url: str | None = request.config.getoption("--allocate-url")
    if url:
        return url
    server: allocate.Server = request.getfixturevalue("allocate_server")
    return server.url


@pytest.fixture(scope="session")
def allocate_client(request: pytest.FixtureRequest, allocate_url: str) -> allocate.Client:
    """A client of the server under test."""
    return allocate.Client(
        allocate_url,
        token=request.config.getoption("--allocate-token"),
        username=request.config.getoption("--allocate-username"),
    )


@pytest.fixture(scope="session")
def allocate_async_client(allocate_client: allocate.Client) -> allocate.AsyncClient:
    """An asyncio client of the server under test (usable from any event loop)."""
    return allocate.AsyncClient.from_client(allocate_client)


@pytest.fixture
def allocate_requirements(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The requirements of this test's ``allocate`` marker (keywords only)."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None and marker.args:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER} takes keyword arguments only, got {marker.args!r}"
        )
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
def allocation(
    allocate_requirements: dict[str, Any], allocate_client: allocate.Client
) -> Iterator[allocate.Allocation]:
    """A resource held for this test (see the ``allocate`` marker), released afterwards."""
    with allocate_client.allocate(**allocate_requirements) as held:
        yield held
