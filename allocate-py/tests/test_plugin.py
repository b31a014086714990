"""The pytest plugin's fixtures and marker, in this session and in a fresh one (pytester)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import allocate


def test_server_and_client_fixtures(
    allocate_server: allocate.Server, allocate_client: allocate.Client, allocate_url: str
) -> None:
    assert allocate_server.running and allocate_url == allocate_server.url
    assert allocate_client.url == allocate_url
    plugin = allocate_client.inventory(tags=["plugin"])
    assert sorted(e.type for e in plugin) == ["VM", "server-onsite"]


@pytest.mark.allocate(tags=["plugin", "nvidia"], timeout=10)
def test_allocation_marker_picks_a_matching_resource(
    allocation: allocate.Allocation, allocate_client: allocate.Client
) -> None:
    assert allocation.state == "ready"
    assert allocation.connection == allocate.Connection("10.0.0.20", "lab", "gpu-secret")
    assert allocate_client.resource(allocation.inventory_id or "").state == "allocated"


@pytest.mark.allocate(tags=["plugin"], type="VM")
def test_allocation_marker_takes_any_requirement(allocation: allocate.Allocation) -> None:
    assert allocation.connection is not None and allocation.connection.host == "10.0.0.21"


@pytest.mark.allocate(tags=["plugin", "nvidia"], timeout=10)
def test_the_async_client_fixture_with_the_marker(
    allocate_async_client: allocate.AsyncClient,
    allocate_requirements: dict[str, Any],
    allocate_client: allocate.Client,
) -> None:
    assert allocate_requirements == {"tags": ["plugin", "nvidia"], "timeout": 10}
    assert allocate_async_client.url == allocate_client.url

    async def body() -> str:
        async with allocate_async_client.allocate(**allocate_requirements) as held:
            assert held.connection == allocate.Connection("10.0.0.20", "lab", "gpu-secret")
            entry = await allocate_async_client.resource(held.inventory_id or "")
            assert entry.state == "allocated"
            return entry.inventory_id

    inventory_id = asyncio.run(body())
    assert allocate_client.resource(inventory_id).state == "free"


def test_the_plugin_in_a_fresh_session(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest, allocate

        @pytest.fixture(scope="session")
        def allocate_resources():
            return [allocate.Resource(labels=["nvidia"], cpu_count=4, memory_gb=8, type="VM",
                                      connection=allocate.Connection("10.1.1.1", "lab", "pw"))]
        """
    )
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        @pytest.mark.allocate(tags=["nvidia"], timeout=5)
        def test_gets_the_gpu(allocation):
            assert allocation.connection.host == "10.1.1.1"

        def test_then_it_is_free(allocate_client):
            assert [e.state for e in allocate_client.inventory()] == ["free"]

        @pytest.mark.allocate("nvidia")
        def test_marker_arguments_must_be_keywords(allocation):
            pass

        @pytest.mark.allocate(tags=["nvidia"], tag=["typo"])
        def test_a_typo_fails_the_test(allocation):
            pass

        @pytest.mark.allocate(tags=["nvidia"], timeout=5)
        def test_the_async_client(allocate_async_client, allocate_requirements):
            async def body():
                async with allocate_async_client.allocate(**allocate_requirements) as held:
                    return held.connection.host
            assert asyncio.run(body()) == "10.1.1.1"
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.allocate(**requirements)*"])
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(["*keyword arguments only*", "*InvalidRequest*unknown field `tag`*"])
