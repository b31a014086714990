"""The client against the real server, started from Python."""

from __future__ import annotations

import _thread
import http.server
import json
import logging
import threading
import time

import pytest

import allocate
from helpers import eventually, machine


def test_inventory_lists_and_filters(server: allocate.Server, client: allocate.Client, tag: str) -> None:
    gpu = machine(tag, 1, labels=[tag, "nvidia"], gpu=[allocate.Gpu("RTX 2080", 8)])
    with server.add_agent([gpu, machine(tag, 2)]) as agent:
        ids = agent.inventory_ids
        assert len(ids) == 2
        mine = [e for e in client.inventory() if tag in e.labels]
        assert [e.inventory_id for e in mine] == ids
        assert [e.inventory_id for e in client.inventory(tags=[tag, "nvidia"])] == ids[:1]
        entry = client.resource(ids[0])
        assert (entry.state, entry.type, entry.agent_id) == ("free", "VM", agent.agent_id)
        assert entry.gpu == [allocate.Gpu("RTX 2080", 8)]
        assert "pw-1" not in repr(entry)
        assert ids[0] in {e.inventory_id for e in client.inventory(state="free")}
    assert client.resource(ids[0]).state == "offline"
    with pytest.raises(allocate.NotFound):
        client.resource("8a526e72-bcde-45e6-8a5f-f598b350f093")
    with pytest.raises(allocate.InvalidRequest, match="state"):
        client.inventory(state="sleeping")


def test_allocation_lifecycle(server: allocate.Server, client: allocate.Client, tag: str) -> None:
    with server.add_agent([machine(tag, 3)]) as agent:
        request = client.allocate(tags=[tag], timeout=5)
        assert request.state == "new"
        with request as held:
            assert held is request
            assert held.state == "ready"
            assert held.inventory_id == agent.inventory_ids[0]
            assert held.connection == allocate.Connection("10.0.0.3", "lab", "pw-3")
            assert "pw-3" not in repr(held) and "ready" in repr(held)
            assert held.expires is not None and held.expires > time.time()
            assert client.resource(agent.inventory_ids[0]).state == "allocated"
            info = held.info()
            assert (info.state, info.username) == ("ready", "tester")
            later = held.extend(seconds=60)
            assert later == held.expires == client.allocation(held.allocation_id or "").expires
            assert client.extend(held.allocation_id or "", later + 60).expires == later + 60
        assert held.state == "released"
        assert client.resource(agent.inventory_ids[0]).state == "free"
        assert client.allocation(held.allocation_id or "").state == "released"
        with pytest.raises(allocate.NotFound):
            client.release(held.allocation_id or "")
        held.release()  # already ended: harmless


def test_wait_times_out_with_allocation_timeout(
    server: allocate.Server, client: allocate.Client, tag: str
) -> None:
    with server.add_agent([machine(tag, 4)]), client.allocate(tags=[tag]) as holder:
        started = time.monotonic()
        waiting = client.allocate(tags=[tag], timeout=1)
        with pytest.raises(allocate.AllocationTimeout) as raised:
            waiting.wait()
        assert 0.9 < time.monotonic() - started < 4
        assert raised.value.code == "allocation_timeout"
        assert isinstance(raised.value, allocate.AllocateError)
        assert waiting.state == "timed_out"
        assert holder.state == "ready"


def test_typo_in_a_requirement_raises_invalid_request(client: allocate.Client) -> None:
    with pytest.raises(allocate.InvalidRequest, match="unknown field `tag` in requirements") as raised:
        with client.allocate(tag=["nvidia"]):  # type: ignore[call-arg]
            pytest.fail("a typo must never match")
    assert raised.value.code == "invalid_request"
    with pytest.raises(allocate.InvalidRequest, match=r"requirements\.gpu"):
        client.allocate(gpu={"cnt": 1}, timeout=1).wait()  # type: ignore[typeddict-unknown-key]
    with pytest.raises(allocate.InvalidRequest, match=r"requirements\.min_cpu_count"):
        client.allocate(min_cpu_count=1.5, timeout=1).wait()  # type: ignore[typeddict-item]


def test_release_on_exception(server: allocate.Server, client: allocate.Client, tag: str) -> None:
    with server.add_agent([machine(tag, 5)]) as agent:
        with pytest.raises(RuntimeError, match="test body failed"):
            with client.allocate(tags=[tag]) as held:
                raise RuntimeError("test body failed")
        assert held.state == "released"
        assert client.resource(agent.inventory_ids[0]).state == "free"
        assert client.allocation(held.allocation_id or "").state == "released"


def test_queue_positions_are_reported(server: allocate.Server, client: allocate.Client, tag: str) -> None:
    with server.add_agent([machine(tag, 6)]):
        first = client.allocate(tags=[tag]).wait()
        second_seen: list[int] = []
        third_seen: list[int] = []
        second = client.allocate(tags=[tag], on_queued=lambda q: second_seen.append(q.position))
        third = client.allocate(tags=[tag], on_queued=lambda q: third_seen.append(q.position))
        waiters = [threading.Thread(target=a.wait) for a in (second.start(), third)]
        waiters[0].start()
        eventually(lambda: second_seen == [1])
        waiters[1].start()
        eventually(lambda: third_seen == [2])
        assert third.position == 2 and "queued" in repr(third)
        first.release()
        waiters[0].join(5)
        assert second.state == "ready"
        eventually(lambda: third_seen == [2, 1])
        second.release()
        waiters[1].join(5)
        assert third.state == "ready"
        assert (second_seen, third_seen) == ([1], [2, 1])
        third.release()


def test_queue_position_is_logged_without_a_callback(
    server: allocate.Server, client: allocate.Client, tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="allocate")
    with server.add_agent([machine(tag, 7)]), client.allocate(tags=[tag]) as holder:
        waiting = client.allocate(tags=[tag], timeout=3).start()
        threading.Timer(0.3, holder.release).start()
        waiting.wait()
        waiting.release()
    lines = [r.getMessage() for r in caplog.records if r.name == "allocate"]
    assert any("at position 1 in the queue" in line for line in lines), lines


def test_ctrl_c_while_waiting_cancels_the_request(
    server: allocate.Server, client: allocate.Client, tag: str
) -> None:
    with server.add_agent([machine(tag, 8)]), client.allocate(tags=[tag]):
        waiting = client.allocate(tags=[tag], timeout=30)
        threading.Timer(0.3, _thread.interrupt_main).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            waiting.wait()
        assert time.monotonic() - started < 5
        assert waiting.state == "released"
        info = client.allocation(waiting.allocation_id or "")
        assert info.state in ("released", "cancelled")


def test_provision_and_release_callbacks(server: allocate.Server, client: allocate.Client, tag: str) -> None:
    orders: list[object] = []

    def provision(order: allocate.Provision) -> allocate.Connection:
        orders.append(order)
        return allocate.Connection("10.9.9.9", order.username, "fresh")

    def release(order: allocate.Release) -> None:
        orders.append(order)

    dynamic = allocate.Resource(labels=[tag], cpu_count=2, memory_gb=4, type="device")
    with server.add_agent([dynamic], provision=provision, release=release) as agent:
        with client.allocate(tags=[tag]) as held:
            assert held.connection == allocate.Connection("10.9.9.9", "tester", "fresh")
        eventually(lambda: len(orders) == 2)
        provisioned, released = orders
        assert isinstance(provisioned, allocate.Provision)
        assert provisioned.agent_id == agent.agent_id
        assert provisioned.inventory_id == agent.inventory_ids[0]
        assert isinstance(released, allocate.Release)
        assert released.allocation_id == held.allocation_id


def test_a_failed_provision_leaves_the_resource_in_error(
    server: allocate.Server, client: allocate.Client, tag: str
) -> None:
    def refuse(order: allocate.Provision) -> allocate.Connection:
        raise RuntimeError("disk full")

    dynamic = allocate.Resource(labels=[tag], cpu_count=2, memory_gb=4, type="device")
    with server.add_agent([dynamic], provision=refuse) as agent:
        with pytest.raises(allocate.AllocationTimeout):
            client.allocate(tags=[tag], timeout=1).wait()
        entry = client.resource(agent.inventory_ids[0])
        assert entry.state == "error"
        assert entry.reason is not None and "disk full" in entry.reason


def test_agent_going_away_marks_the_allocation_offline(
    server: allocate.Server, client: allocate.Client, tag: str
) -> None:
    agent_id = "d4863713-1388-4297-a479-a582b306f5cb"
    resources = [machine(tag, 9)]
    agent = server.add_agent(resources, agent_id=agent_id)
    with client.allocate(tags=[tag]) as held:
        agent.stop()
        eventually(lambda: held.state == "offline")
        with server.add_agent(resources, agent_id=agent_id):
            eventually(lambda: held.state == "ready")


def test_agent_registration_errors_name_the_field(server: allocate.Server) -> None:
    bad = allocate.Resource(labels=[""], cpu_count=1, memory_gb=1)
    with pytest.raises(allocate.InvalidRequest, match=r"resources\[0\]\.labels\[0\]"):
        server.add_agent([bad])


def test_unreachable_server_raises_connection_lost() -> None:
    nobody = allocate.Client("http://127.0.0.1:9", timeout=2)
    with pytest.raises(allocate.ConnectionLost):
        nobody.inventory()
    with pytest.raises(allocate.ConnectionLost):
        nobody.allocate(timeout=1).wait()
    with pytest.raises(ValueError, match="scheme"):
        allocate.Client("ftp://lab.example")
    # https is spoken (rustls, the system's roots): no TLS proxy needed in front.
    assert allocate.Client("https://lab.example").url == "https://lab.example"
    with pytest.raises(ValueError, match="no-such-ca.pem"):
        allocate.Client("https://lab.example", ca_file="no-such-ca.pem")


def test_a_list_of_servers_reaches_the_one_that_is_up(server: allocate.Server, tag: str) -> None:
    dead = "http://127.0.0.1:9"
    for urls in ([dead, server.url], f"{dead},{server.url}", (dead, server.url)):
        client = allocate.Client(urls, timeout=5)
        with server.add_agent([machine(tag, 11)]) as agent:
            assert client.resource(agent.inventory_ids[0]).state == "free"
        assert client.url == server.url
    agent = allocate.Agent([dead, server.url], [machine(tag, 12)])
    with agent.start():
        assert len(agent.inventory_ids) == 1
    with pytest.raises(ValueError, match="ftp://lab.example"):
        allocate.Client([server.url, "ftp://lab.example"])
    with pytest.raises(ValueError, match="no server URL"):
        allocate.Client([])
    with pytest.raises(TypeError, match="url must be a str or a list of str"):
        allocate.Client(8080)  # type: ignore[arg-type]


def test_waiting_clients_get_shutting_down(tag: str) -> None:
    with allocate.Server(shutdown_grace=1.0) as server:
        client = server.client()
        server.add_agent([machine(tag, 10)])
        holder = client.allocate(tags=[tag]).wait()
        waiting = client.allocate(tags=[tag], timeout=30).start()
        eventually(lambda: waiting.state == "queued")
        threading.Timer(0.2, server.stop).start()
        with pytest.raises(allocate.ShuttingDown):
            waiting.wait()
        assert holder.state == "ready"
    assert not server.running and repr(server) == "Server(stopped)"


def test_the_token_is_sent_and_refusals_raise_their_class() -> None:
    """Against a stand-in server that records the Authorization header and refuses."""
    seen: list[str] = []

    class Refusing(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            upgrade = self.headers.get("Upgrade") is not None
            status, code = (403, "forbidden") if upgrade else (401, "unauthorized")
            body = json.dumps({"status": status, "error": {"code": code, "message": f"{code} here"}})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass

    stand_in = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=stand_in.serve_forever, daemon=True).start()
    try:
        client = allocate.Client(f"http://127.0.0.1:{stand_in.server_port}", token="s3cret")
        with pytest.raises(allocate.Unauthorized, match="unauthorized here"):
            client.inventory()
        with pytest.raises(allocate.Forbidden):
            client.allocate(timeout=1).wait()
        assert seen == ["Bearer s3cret", "Bearer s3cret"]
    finally:
        stand_in.shutdown()
        stand_in.server_close()


def test_follow_gives_the_state_then_each_event_until_the_end(
    server: allocate.Server, client: allocate.Client, tag: str
) -> None:
    with server.add_agent([machine(tag, 43)]):
        held = client.allocate(tags=[tag], timeout=5).wait()
        follower = client.follow(held.allocation_id)
        assert follower.allocation_id == held.allocation_id
        first = next(follower)
        assert isinstance(first, allocate.Ready)
        assert (first.allocation_id, first.connection.host) == (held.allocation_id, "10.0.0.43")

        waiting = client.allocate(tags=[tag], timeout=10).start()
        eventually(lambda: waiting.position == 1)
        with client.follow(str(waiting.allocation_id)) as queued:
            place = next(queued)
            assert isinstance(place, allocate.Queued)
            assert (place.position, place.matching_resources) == (1, 1)
        # A follower closing changes nothing: only the creating socket's close counts.
        assert client.allocation(str(waiting.allocation_id)).state == "queued"

        held.release()
        assert [type(e) for e in follower] == [allocate.Released]
        with pytest.raises(allocate.NotFound):
            client.follow(str(held.allocation_id))
        waiting.wait()
        waiting.release()


def test_match_and_explain_say_why_not(server: allocate.Server, client: allocate.Client, tag: str) -> None:
    with server.add_agent([machine(tag, 1, gpu=[allocate.Gpu("GeForce RTX 2080", 8)])]):
        why = client.match(tags=[tag], gpu={"label": "RTX 2090"})
        assert (why.matching_resources, why.free) == (0, 0)
        label = [f for f in why.explain if f.reason == "gpu_label"]
        assert len(label) == 1 and 'contains "RTX 2090"' in label[0].message, why.explain
        with client.allocate(tags=[tag], timeout=5) as held:
            mine = client.match(tags=[tag])
            assert (mine.matching_resources, mine.free) == (1, 0)
            states = [(f.reason, f.count) for f in mine.explain if f.reason == "allocated"]
            assert states == [("allocated", 1)], mine.explain
            live = client.explain(held.allocation_id or "")
            assert live == mine and "Explanation(" in repr(live)
        with pytest.raises(allocate.NotFound):
            client.explain(held.allocation_id or "")
        with pytest.raises(allocate.InvalidRequest, match="gpu.count"):
            client.match(gpu={"count": 0})


def test_a_hopeless_request_says_why_first_and_in_its_timeout(
    server: allocate.Server, client: allocate.Client, tag: str
) -> None:
    seen: list[allocate.Queued] = []
    with server.add_agent([machine(tag, 7, gpu=[allocate.Gpu("GeForce RTX 2080", 8)])]):
        waiting = client.allocate(tags=[tag], gpu={"label": "RTX 2090"}, timeout=2, on_queued=seen.append)
        with pytest.raises(allocate.AllocationTimeout, match="no registered resource could ever satisfy it"):
            waiting.wait()
    assert seen and seen[0].matching_resources == 0
    reasons = [f.reason for f in seen[0].explain or []]
    assert "gpu_label" in reasons, seen
