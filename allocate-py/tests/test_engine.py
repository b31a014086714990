"""The engine binding: a manual clock, typed outputs, and a Python matching policy."""

from __future__ import annotations

import threading
from typing import Optional

import pytest

import allocate

T0 = 1_700_000_000.0
AGENT = "d4863713-1388-4297-a479-a582b306f5cb"
STATIC = allocate.Connection("10.0.0.7", "lab", "hunter2")


def small_and_big() -> list[allocate.Resource]:
    """Two GPU machines: best fit picks the small one for a 1-GPU request."""
    return [
        allocate.Resource(labels=["nvidia"], cpu_count=8, memory_gb=32, type="VM",
                          gpu=[allocate.Gpu("RTX 2080", 8)], connection=STATIC),
        allocate.Resource(labels=["nvidia"], cpu_count=64, memory_gb=512, type="server-onsite",
                          gpu=[allocate.Gpu("A100", 80)] * 4, connection=STATIC),
    ]


def engine(**kwargs: object) -> allocate.Engine:
    return allocate.Engine(clock=allocate.ManualClock(T0), **kwargs)  # type: ignore[arg-type]


def test_lifecycle_with_a_manual_clock() -> None:
    e = engine(config={"lease_secs_default": 600})
    small, big = e.register_agent(AGENT, small_and_big())
    first = e.request(username="ci", tags=["nvidia"])
    [ready] = e.drain()
    assert isinstance(ready, allocate.Ready)
    assert (ready.allocation_id, ready.inventory_id, ready.expires) == (first, small, T0 + 600)
    assert ready.connection == STATIC and "hunter2" not in repr(ready)
    assert e.poll_output() is None
    info = e.allocation(first)
    assert info is not None and (info.state, info.username, info.created) == ("ready", "ci", T0)
    assert e.poll_timeout() == T0 + 600
    e.advance(599)
    assert e.drain() == []
    e.advance(1)
    assert e.drain() == [allocate.Expired(allocation_id=first)]
    entry = e.resource(small)
    assert entry is not None and entry.state == "free"
    assert e.now == T0 + 600 and e.clock.now == T0 + 600


def test_expiry_outputs_are_typed() -> None:
    e = engine(config={"lease_secs_default": 60})
    e.register_agent(AGENT, small_and_big()[:1])
    first = e.request(username="ci")
    e.drain()
    e.advance(60)
    [expired] = e.drain()
    assert isinstance(expired, allocate.Expired) and expired.allocation_id == first
    assert repr(expired) == f"Expired(allocation_id='{first}')"


def test_quotas_refuse_what_could_never_fit_and_a_bad_policy_names_its_field() -> None:
    e = engine(config={"order": "fair-share"})
    e.register_agent(AGENT, small_and_big()[:1])
    with pytest.raises(allocate.InvalidRequest, match="^policy: field default.gpu_max: unknown field"):
        e.set_quotas({"default": {"gpu_max": 1}})
    e.set_quotas({"default": {"resources_max": 1}})
    with pytest.raises(allocate.QuotaExceeded, match="resources held"):
        e.request(username="ann", count=2)
    first = e.request(username="ann")
    second = e.request(username="ann", now=T0 + 1)
    ready, queued = e.drain()
    assert isinstance(ready, allocate.Ready) and ready.allocation_id == first
    assert isinstance(queued, allocate.Queued) and queued.allocation_id == second
    # A tighter policy ends the waiting request it could never fit, naming the limit.
    e.set_quotas({"users": {"ann": {"allocations_max": 0}}}, now=T0 + 2)
    [refused] = e.drain()
    assert refused == allocate.QuotaRefused(
        allocation_id=second, user="ann", limit="concurrent allocations", max=0, asked=1
    )
    assert repr(refused).startswith("QuotaRefused(allocation_id=")
    assert [a.state for a in e.allocations()] == ["ready", "cancelled"]
    e.set_quotas(None)


@pytest.mark.parametrize("order", ["fair-share", "arrival"])
def test_the_order_decides_who_of_two_waiting_users_is_served_first(order: str) -> None:
    e = engine(config={"order": order})
    e.register_agent(AGENT, small_and_big())
    e.request(username="ann", type="server-onsite")
    held = e.request(username="carol", type="VM")
    e.drain()
    # Both wait for the VM, ann first; ann already holds a machine, bob none.
    ann = e.request(username="ann", type="VM", now=T0 + 1)
    bob = e.request(username="bob", type="VM", now=T0 + 2)
    e.drain()
    e.release(held, now=T0 + 3)
    ready = [o.allocation_id for o in e.drain() if isinstance(o, allocate.Ready)]
    assert ready == ([bob] if order == "fair-share" else [ann])


def test_queue_and_release() -> None:
    e = engine()
    [only] = e.register_agent(AGENT, small_and_big()[:1])
    first = e.request(username="a", tags=["nvidia"])
    second = e.request(username="b", tags=["nvidia"], now=T0 + 1)
    ready, queued = e.drain()
    assert isinstance(ready, allocate.Ready) and ready.allocation_id == first
    assert isinstance(queued, allocate.Queued)
    assert (queued.allocation_id, queued.position, queued.matching_resources) == (second, 1, 1)
    assert queued.eta == T0 + 3600
    # What a follower sees first: the last word each creating socket heard.
    assert e.current(first) == [ready] and e.current(second) == [queued]
    e.release(first)
    released, ready2 = e.drain()
    assert isinstance(released, allocate.Released) and released.allocation_id == first
    assert isinstance(ready2, allocate.Ready) and ready2.allocation_id == second
    assert ready2.inventory_id == only
    assert [a.state for a in e.allocations()] == ["ready", "released"]
    assert e.current(first) == [] and e.current(second) == [ready2]
    with pytest.raises(allocate.NotFound, match=first):
        e.release(first)


def test_waiting_times_out() -> None:
    e = engine()
    e.register_agent(AGENT, small_and_big()[:1])
    e.request(username="a")
    waiting = e.request(username="b", allocation_timeout_seconds=10)
    e.drain()
    e.advance(9.999)
    assert e.drain() == []
    e.advance(0.001)
    assert e.drain() == [allocate.TimedOut(allocation_id=waiting)]


def test_same_seed_same_run() -> None:
    def run(seed: int) -> list[str]:
        e = engine(seed=seed)
        e.register_agent(AGENT, small_and_big())
        ids = [e.request(username=f"u{i}", tags=["nvidia"]) for i in range(3)]
        e.advance(3600)
        return ids + [repr(o) for o in e.drain()]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_requirements_are_checked_like_the_server_does() -> None:
    e = engine()
    with pytest.raises(allocate.InvalidRequest, match="unknown field `tag` in requirements"):
        e.request(username="ci", tag=["nvidia"])  # type: ignore[call-arg]
    with pytest.raises(allocate.InvalidRequest, match="requirements.username is required"):
        e.request()
    wants = allocate.Requirements(username="ci", tags=["nvidia"], gpu={"label": "RTX", "count": 1})
    assert wants.gpu is not None and (wants.gpu.label, wants.gpu.count) == ("RTX", 1)
    assert repr(wants).startswith("Requirements(username='ci', tags=['nvidia']")
    with pytest.raises(TypeError, match="not both"):
        e.request(wants, username="other")
    with pytest.raises(allocate.InvalidRequest, match="config"):
        allocate.Engine(config={"lease_secs": 1})  # type: ignore[typeddict-unknown-key]
    with pytest.raises(ValueError, match="never goes backwards"):
        e.clock.set(T0 - 1)


def test_provisioning_round_trip() -> None:
    e = engine()
    bare = allocate.Resource(labels=["dev"], cpu_count=2, memory_gb=4, type="device")
    [inv] = e.register_agent(AGENT, [bare])
    first = e.request(username="ci")
    [order] = e.drain()
    assert isinstance(order, allocate.Provision)
    assert (order.agent_id, order.allocation_id, order.inventory_id, order.username) == (
        AGENT, first, inv, "ci")
    e.provisioned(AGENT, first, error="disk full")
    entry = e.resource(inv)
    assert entry is not None and (entry.state, entry.reason) == ("error", "provisioning failed: disk full")
    e.set_maintenance(inv, None)
    [order] = [o for o in e.drain() if isinstance(o, allocate.Provision)]
    e.provisioned(AGENT, first, allocate.Connection("h", "ci", "pw"))
    [ready] = e.drain()
    assert isinstance(ready, allocate.Ready) and ready.connection.host == "h"
    e.release(first)
    released, release = e.drain()
    assert released == allocate.Released(allocation_id=first)
    assert isinstance(release, allocate.Release) and release.inventory_id == inv
    e.release_acknowledged(AGENT, first)
    assert e.resource(inv) is not None and e.resource(inv).state == "free"  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        e.provisioned(AGENT, first)


class PreferBig:
    """Scores candidates by GPU memory, so the biggest machine wins, and vetoes VMs for root."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, request: allocate.Requirements, candidate: allocate.Candidate) -> Optional[int]:
        self.calls += 1
        return sum(g.memory_gb for g in candidate.gpu)

    def veto(self, request: allocate.Requirements, candidate: allocate.Candidate) -> bool:
        return request.username == "root" and candidate.type == "VM"


def test_a_python_policy_changes_the_choice() -> None:
    plain = engine()
    small, big = plain.register_agent(AGENT, small_and_big())
    plain.request(username="ci", tags=["nvidia"])
    [ready] = plain.drain()
    assert isinstance(ready, allocate.Ready) and ready.inventory_id == small

    policy = PreferBig()
    scored = engine(policy=policy)
    assert scored.register_agent(AGENT, small_and_big()) == [small, big]
    scored.request(username="ci", tags=["nvidia"])
    [ready] = scored.drain()
    assert isinstance(ready, allocate.Ready) and ready.inventory_id == big
    assert policy.calls >= 2 and "policy=python" in repr(scored)

    vetoed = engine()
    vetoed.set_policy(PreferBig())
    vetoed.register_agent(AGENT, small_and_big()[:1])
    vetoed.request(username="root", allocation_timeout_seconds=0)
    assert [type(o).__name__ for o in vetoed.drain()] == ["TimedOut"]
    vetoed.set_policy(None)
    vetoed.request(username="root", allocation_timeout_seconds=0)
    assert [type(o).__name__ for o in vetoed.drain()] == ["Ready"]


def test_policy_errors_are_raised_after_the_call() -> None:
    class Broken:
        def score(self, request: allocate.Requirements, candidate: allocate.Candidate) -> int:
            raise ZeroDivisionError("bad policy")

    e = engine(policy=Broken())
    e.register_agent(AGENT, small_and_big())
    with pytest.raises(ZeroDivisionError, match="bad policy"):
        e.request(username="ci")
    # The input was applied, with the hook counted as having no opinion.
    assert [type(o).__name__ for o in e.drain()] == ["Ready"]
    with pytest.raises(TypeError, match="veto"):
        e.set_policy(object())  # type: ignore[arg-type]


def test_a_policy_cannot_reenter_its_engine() -> None:
    holder: list[allocate.Engine] = []

    class Reentrant:
        def veto(self, request: allocate.Requirements, candidate: allocate.Candidate) -> bool:
            holder[0].inventory()
            return False

    e = engine(policy=Reentrant())
    holder.append(e)
    e.register_agent(AGENT, small_and_big())
    with pytest.raises(RuntimeError, match="inside a matching policy"):
        e.request(username="ci")


def test_threads_share_an_engine() -> None:
    """Calls from many threads run one at a time, the policy's GIL taken inside each."""
    e = engine(policy=PreferBig())
    e.register_agent(AGENT, [small_and_big()[0]] * 50)

    def work() -> None:
        for _ in range(20):
            e.release(e.request(username="ci", tags=["nvidia"]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(o, allocate.Ready) for o in e.drain()) == 80


def test_ssh_keys_and_provision_data_are_checked_like_the_server_does() -> None:
    allocate.Requirements(
        username="ci", ssh_keys=["ssh-ed25519 AAAAC3Nza ci@laptop"], provision={"image": "ubuntu-24.04"}
    )
    with pytest.raises(allocate.InvalidRequest, match=r"requirements\.ssh_keys has 17 entries"):
        allocate.Requirements(username="ci", ssh_keys=["ssh-ed25519 A"] * 17)
    with pytest.raises(allocate.InvalidRequest, match=r"requirements\.provision must be an object"):
        allocate.Requirements(username="ci", provision=["image"])  # type: ignore[typeddict-item]


def test_explain_is_a_dry_run_naming_what_rules_resources_out() -> None:
    e = engine()
    e.register_agent(AGENT, small_and_big())
    held = e.request(username="ci", tags=["nvidia"])
    e.drain()
    why = e.explain(gpu={"label": "RTX 2090"})
    assert isinstance(why, allocate.Explanation)
    assert (why.matching_resources, why.free) == (0, 0)
    [finding] = why.explain
    assert (finding.reason, finding.count) == ("gpu_label", 2)
    assert finding.message == (
        '0 of 2 registered resources have a GPU whose label contains "RTX 2090"; '
        "GPU labels seen: A100, RTX 2080"
    )
    busy = e.explain(allocate.Requirements(username="u", tags=["nvidia"]))
    assert (busy.matching_resources, busy.free) == (2, 1)
    assert [(f.reason, f.count) for f in busy.explain] == [("allocated", 1)]
    assert e.drain() == [] and e.allocation(held) is not None
    hopeless = e.request(username="ci", gpu={"label": "RTX 2090"}, allocation_timeout_seconds=30)
    [queued] = e.drain()
    assert isinstance(queued, allocate.Queued) and queued.allocation_id == hopeless
    assert queued.matching_resources == 0 and queued.explain == why.explain
    assert e.current(hopeless)[0] == queued, "a follower's first message says why too"
    with pytest.raises(allocate.InvalidRequest, match="gpu.count"):
        e.explain(gpu={"count": 0})
    with pytest.raises(allocate.InvalidRequest, match="`tag`"):
        e.explain(tag=["nvidia"])  # type: ignore[call-arg]


def test_every_contract_code_has_its_exception() -> None:
    classes = {
        "invalid_request": allocate.InvalidRequest,
        "unauthorized": allocate.Unauthorized,
        "forbidden": allocate.Forbidden,
        "not_found": allocate.NotFound,
        "allocation_timeout": allocate.AllocationTimeout,
        "conflict": allocate.Conflict,
        "internal": allocate.InternalError,
        "shutting_down": allocate.ShuttingDown,
        "overloaded": allocate.Overloaded,
        "not_leader": allocate.NotLeader,
        "quota_exceeded": allocate.QuotaExceeded,
    }
    for code, cls in classes.items():
        assert issubclass(cls, allocate.AllocateError)
        assert cls.code == code, cls


def test_several_resources_are_granted_together() -> None:
    e = engine()
    small, big = e.register_agent(AGENT, small_and_big())
    with pytest.raises(allocate.InvalidRequest, match="requirements.count"):
        e.request(username="ci", count=65)
    first = e.request(username="ci", tags=["nvidia"], count=2)
    [ready] = e.drain()
    assert isinstance(ready, allocate.Ready)
    assert ready.inventory_id == small
    assert [inventory_id for inventory_id, _ in ready.resources] == [small, big]
    assert all(connection == STATIC for _, connection in ready.resources)
    info = e.allocation(first)
    assert info is not None and info.inventory_ids == [small, big]
    wants = allocate.Requirements(username="ci", count=2)
    assert wants.count == 2 and "count=2" in repr(wants)
