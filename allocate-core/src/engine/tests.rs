//! Scenario tests of the engine's lifecycle rules.

use super::*;
use crate::ids::SeededIds;
use crate::model::{test_spec, GpuRequirement};
use crate::policy::Candidate;
use std::collections::BTreeSet;

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn engine() -> Engine {
    let config = Config {
        provision_timeout_ms: 5_000,
        release_timeout_ms: 5_000,
        record_inputs: true,
        ..Config::default()
    };
    Engine::new(config, Box::new(SeededIds::new(42)))
}

fn conn(host: &str) -> Connection {
    Connection {
        host: host.into(),
        username: "lab".into(),
        password: Some("secret".into()),
        port: None,
    }
}

fn res(labels: &[&str], cpu: u64, gpus: &[(&str, u64)], static_host: Option<&str>) -> ResourceSpec {
    ResourceSpec {
        connection: static_host.map(|h| conn(h).into()),
        ..test_spec(labels, cpu, 16, gpus, "VM")
    }
}

fn want(tags: &[&str], timeout: u64) -> Requirements {
    let mut r = Requirements::for_user("ci");
    r.tags = tags.iter().map(|s| s.to_string()).collect();
    r.allocation_timeout_seconds = timeout;
    r
}

/// An engine with one resource tagged `x` whose agent provisions it.
fn one_provisioned_resource() -> Engine {
    let mut e = engine();
    e.register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], None)])
        .unwrap();
    e
}

fn drain(e: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn agent(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn ready_on(outputs: &[Output], id: Uuid) -> Option<Uuid> {
    outputs.iter().find_map(|o| match o {
        Output::Ready {
            allocation_id,
            inventory_id,
            ..
        } if *allocation_id == id => Some(*inventory_id),
        _ => None,
    })
}

#[test]
fn static_resource_is_ready_at_once_with_best_fit_and_earliest_tie() {
    let mut e = engine();
    let ids = e
        .register_agent(
            at(0),
            agent(1),
            vec![
                res(&["nvidia"], 32, &[("RTX 4090", 24)], Some("big")),
                res(&["nvidia"], 8, &[("RTX 2080", 8)], Some("small-a")),
                res(&["nvidia"], 8, &[("RTX 2080", 8)], Some("small-b")),
            ],
        )
        .unwrap();
    let mut r = want(&["nvidia"], 0);
    r.gpu = Some(GpuRequirement {
        label: None,
        min_memory_gb: 8,
        count: 1,
    });
    let a = e.request(at(0), r.clone()).unwrap();
    let out = drain(&mut e);
    assert_eq!(out.len(), 1, "no queued message before ready: {out:?}");
    assert_eq!(
        ready_on(&out, a),
        Some(ids[1]),
        "least excess GPU memory, earliest registered"
    );
    let b = e.request(at(0), r.clone()).unwrap();
    assert_eq!(ready_on(&drain(&mut e), b), Some(ids[2]));
    let c = e.request(at(0), r).unwrap();
    assert_eq!(
        ready_on(&drain(&mut e), c),
        Some(ids[0]),
        "the big one only when the small are taken"
    );
    assert_eq!(e.resource(&ids[0]).unwrap().state, ResourceState::Allocated);
}

#[test]
fn zero_timeout_answers_408_at_once_and_unknown_tags_wait_with_zero_matching() {
    let mut e = engine();
    e.register_agent(at(0), agent(1), vec![res(&["cpu"], 4, &[], Some("h"))])
        .unwrap();
    let why = e.explain(&want(&["nvidia"], 0)).unwrap();
    assert_eq!(why.findings[0].reason, crate::Reason::Tags);
    let a = e.request(at(0), want(&["nvidia"], 0)).unwrap();
    assert_eq!(
        drain(&mut e),
        vec![Output::TimedOut {
            allocation_id: a,
            explain: Some(why.clone())
        }]
    );
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::TimedOut);
    let b = e.request(at(0), want(&["nvidia"], 20)).unwrap();
    assert_eq!(
        drain(&mut e),
        vec![Output::Queued {
            allocation_id: b,
            position: 1,
            matching_resources: 0,
            eta: None,
            explain: Some(why.clone()),
            quota: None,
        }]
    );
    let followed = e.current_outputs(&b);
    assert!(
        matches!(&followed[..], [Output::Queued { explain: Some(x), .. }] if *x == why),
        "a follower's first message says why too: {followed:?}"
    );
    assert_eq!(e.explain_allocation(&b).unwrap(), why);
    assert!(e.explain_allocation(&a).is_err(), "an ended request");
}

#[test]
fn wait_times_out_exactly_at_its_deadline() {
    let mut e = engine();
    let a = e.request(at(0), want(&["x"], 20)).unwrap();
    drain(&mut e);
    assert_eq!(e.poll_timeout(), Some(at(20)));
    e.handle_timeout(Timestamp::from_millis(at(20).as_millis() - 1));
    assert!(
        drain(&mut e).is_empty(),
        "nothing fires before the deadline"
    );
    e.handle_timeout(at(20));
    assert_eq!(
        drain(&mut e),
        vec![Output::TimedOut {
            allocation_id: a,
            // Nothing is registered: nothing could ever serve it, and no finding says more.
            explain: Some(crate::Explanation::default())
        }]
    );
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn wait_ends_when_expires_passes_first() {
    let mut e = engine();
    let mut r = want(&["x"], 600);
    r.expires = Some(T0 + 30);
    let a = e.request(at(0), r).unwrap();
    drain(&mut e);
    assert_eq!(e.poll_timeout(), Some(at(30)));
    e.handle_timeout(at(30));
    assert_eq!(
        drain(&mut e),
        vec![Output::TimedOut {
            allocation_id: a,
            // Nothing is registered: nothing could ever serve it, and no finding says more.
            explain: Some(crate::Explanation::default())
        }]
    );
}

#[test]
fn lease_expires_exactly_at_expires_and_the_queue_gets_the_resource() {
    let mut e = engine();
    let ids = e
        .register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], Some("h"))])
        .unwrap();
    let mut r = want(&["x"], 600);
    r.expires = Some(T0 + 100);
    let a = e.request(at(0), r).unwrap();
    let b = e.request(at(1), want(&["x"], 600)).unwrap();
    let out = drain(&mut e);
    assert!(
        matches!(out[1], Output::Queued { allocation_id, position: 1, matching_resources: 1, eta: Some(eta), explain: None, quota: None }
        if allocation_id == b && eta == T0 + 100),
        "{out:?}"
    );
    e.handle_timeout(at(99));
    assert!(drain(&mut e).is_empty());
    e.handle_timeout(at(100));
    let out = drain(&mut e);
    assert_eq!(out[0], Output::Expired { allocation_id: a });
    assert_eq!(ready_on(&out, b), Some(ids[0]));
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::Expired);
}

#[test]
fn expires_is_capped_defaulted_and_refused_in_the_past() {
    let mut e = engine();
    e.register_agent(at(0), agent(1), vec![res(&[], 4, &[], Some("h"))])
        .unwrap();
    let mut r = want(&[], 0);
    r.expires = Some(T0);
    let err = e.request(at(0), r.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("requirements.expires {T0} is in the past (now is {T0})")
    );
    r.expires = Some(T0 + 10 * 24 * 3600);
    let a = e.request(at(0), r).unwrap();
    let max = e.config().lease_secs_max;
    assert!(matches!(drain(&mut e)[0], Output::Ready { expires, .. } if expires == T0 + max));
    e.release(at(1), a).unwrap();
    let b = e.request(at(1), want(&[], 0)).unwrap();
    assert_eq!(
        e.allocation(&b).unwrap().expires,
        T0 + 1 + e.config().lease_secs_default
    );
}

#[test]
fn a_big_waiting_request_does_not_block_a_small_one() {
    let mut e = engine();
    e.register_agent(
        at(0),
        agent(1),
        vec![
            res(&["gpu"], 4, &[("T4", 16)], Some("g")),
            res(&["cpu"], 4, &[], Some("c")),
        ],
    )
    .unwrap();
    let g1 = e.request(at(0), want(&["gpu"], 60)).unwrap();
    let g2 = e.request(at(0), want(&["gpu"], 60)).unwrap();
    let c = e.request(at(0), want(&["cpu"], 60)).unwrap();
    let out = drain(&mut e);
    assert!(ready_on(&out, g1).is_some());
    assert!(ready_on(&out, g2).is_none());
    assert!(
        ready_on(&out, c).is_some(),
        "the CPU request is served past the waiting GPU one"
    );
    e.release(at(1), c).unwrap();
    let out = drain(&mut e);
    assert_eq!(
        out,
        vec![Output::Released { allocation_id: c }],
        "a freed CPU box does not suit g2"
    );
    e.release(at(2), g1).unwrap();
    assert!(ready_on(&drain(&mut e), g2).is_some());
}

#[test]
fn fifo_among_waiters_and_positions_are_resent_when_they_change() {
    let mut e = engine();
    e.register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], Some("h"))])
        .unwrap();
    let holder = e.request(at(0), want(&["x"], 60)).unwrap();
    let w: Vec<Uuid> = (0..3)
        .map(|i| e.request(at(i), want(&["x"], 60)).unwrap())
        .collect();
    drain(&mut e);
    e.client_gone(at(5), w[0]).unwrap();
    let out = drain(&mut e);
    assert_eq!(positions(&out), vec![(w[1], 1), (w[2], 2)]);
    assert_eq!(
        e.allocation(&w[0]).unwrap().state,
        AllocationState::Cancelled
    );
    e.release(at(6), holder).unwrap();
    let out = drain(&mut e);
    assert!(ready_on(&out, w[1]).is_some());
    assert!(out.contains(&Output::Queued {
        allocation_id: w[2],
        position: 1,
        matching_resources: 1,
        // w[1]'s default lease counts from its `ready` at 6 (API.md, "Lease length").
        eta: Some(T0 + 6 + 3600),
        explain: None,
        quota: None,
    }));
}

#[test]
fn provisioning_round_trip_and_failure_requeues_in_front() {
    let mut e = engine();
    let ids = e
        .register_agent(
            at(0),
            agent(1),
            vec![res(&["x"], 4, &[], None), res(&["x"], 4, &[], None)],
        )
        .unwrap();
    let a = e.request(at(0), want(&["x"], 60)).unwrap();
    let out = drain(&mut e);
    assert!(
        matches!(&out[0], Output::Provision { agent_id, allocation_id, inventory_id, username, .. }
        if *agent_id == agent(1) && *allocation_id == a && *inventory_id == ids[0] && username == "ci")
    );
    assert_eq!(
        e.allocation(&a).unwrap().state,
        AllocationState::Provisioning
    );
    let err = e
        .provisioned(at(1), agent(2), a, ProvisionResult::Failed("x".into()))
        .unwrap_err();
    assert_eq!(
        err.code(),
        crate::ErrorCode::Forbidden,
        "only the owning agent may answer"
    );
    e.provisioned(
        at(1),
        agent(1),
        a,
        ProvisionResult::Failed("disk full".into()),
    )
    .unwrap();
    let out = drain(&mut e);
    assert!(matches!(&out[0], Output::Provision { inventory_id, .. } if *inventory_id == ids[1]));
    let failed = e.resource(&ids[0]).unwrap();
    assert_eq!(failed.state, ResourceState::Error);
    let failures = e.stats().failures_by_agent;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[&agent(1)].provision, 1);
    assert_eq!(
        failed.reason.as_deref(),
        Some("provisioning failed: disk full")
    );
    e.provisioned(at(2), agent(1), a, ProvisionResult::Connection(conn("h2")))
        .unwrap();
    assert_eq!(ready_on(&drain(&mut e), a), Some(ids[1]));
    assert_eq!(
        e.allocation(&a).unwrap().connection,
        Some(conn("h2").into())
    );
    let again = e.provisioned(at(2), agent(1), a, ProvisionResult::Connection(conn("h2")));
    assert_eq!(again.unwrap_err().code(), crate::ErrorCode::Conflict);
}

#[test]
fn a_client_leaving_while_provisioning_cancels_it_and_the_agent_releases() {
    let mut e = one_provisioned_resource();
    let a = e.request(at(0), want(&["x"], 60)).unwrap();
    let next = e.request(at(0), want(&["x"], 60)).unwrap();
    drain(&mut e);
    e.client_gone(at(1), a).unwrap();
    let inventory_id = e.inventory().next().unwrap().inventory_id;
    let release = Output::Release {
        agent_id: agent(1),
        allocation_id: a,
        inventory_id,
    };
    let out = drain(&mut e);
    assert!(
        out.contains(&Output::Released { allocation_id: a }),
        "{out:?}"
    );
    assert!(out.contains(&release), "{out:?}");
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::Cancelled);
    // The provision's late answer is taken and changes nothing, from its agent only.
    let late = ProvisionResult::Connection(conn("h"));
    let other = e.provisioned(at(2), agent(2), a, late.clone());
    assert_eq!(other.unwrap_err().code(), crate::ErrorCode::NotFound);
    e.provisioned(at(2), agent(1), a, late.clone()).unwrap();
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::Cancelled);
    // Released: the machine goes to the next request.
    e.release_acknowledged(at(3), agent(1), a).unwrap();
    let out = drain(&mut e);
    assert!(
        matches!(&out[..], [Output::Provision { allocation_id, .. }] if *allocation_id == next),
        "{out:?}"
    );
    let after = e.provisioned(at(4), agent(1), a, late);
    assert_eq!(after.unwrap_err().code(), crate::ErrorCode::NotFound);
}

#[test]
fn unanswered_provision_times_out_and_the_request_keeps_its_deadline() {
    let mut e = engine();
    let ids = e
        .register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], None)])
        .unwrap();
    let a = e.request(at(0), want(&["x"], 8)).unwrap();
    drain(&mut e);
    e.handle_timeout(at(5));
    let out = drain(&mut e);
    assert_eq!(out.len(), 2, "{out:?}");
    // The abandoned provision is released, so that what it created is cleaned up.
    assert_eq!(
        out[0],
        Output::Release {
            agent_id: agent(1),
            allocation_id: a,
            inventory_id: ids[0]
        }
    );
    assert!(matches!(out[1], Output::Queued { position: 1, .. }));
    assert_eq!(e.resource(&ids[0]).unwrap().state, ResourceState::Error);
    e.set_maintenance(at(6), ids[0], None).unwrap();
    assert!(
        drain(&mut e).is_empty(),
        "not placed again before the agent has cleaned up"
    );
    // A late answer to the abandoned provision is taken and changes nothing.
    e.provisioned(
        at(6),
        agent(1),
        a,
        ProvisionResult::Connection(conn("late")),
    )
    .unwrap();
    assert!(drain(&mut e).is_empty());
    e.release_acknowledged(at(6), agent(1), a).unwrap();
    assert!(
        matches!(drain(&mut e)[0], Output::Provision { .. }),
        "clearing the error serves the queue"
    );
    e.handle_timeout(at(8));
    assert_eq!(
        e.allocation(&a).unwrap().state,
        AllocationState::Provisioning,
        "its wait is over, its provision is not"
    );
    e.handle_timeout(at(11));
    // The provision failed again at 11, past the wait deadline of 8: the request times out.
    assert!(drain(&mut e).contains(&Output::TimedOut {
        allocation_id: a,
        explain: None
    }));
}

#[test]
fn an_abandoned_provision_is_released_and_its_request_served_by_another_agent_meanwhile() {
    let mut e = engine();
    let slow = e
        .register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], None)])
        .unwrap();
    let a = e.request(at(0), want(&["x"], 60)).unwrap();
    drain(&mut e);
    e.handle_timeout(at(5));
    drain(&mut e);
    // A second agent of the same machines, and more on the first: the request goes to the
    // second, not to the first while its cleanup is pending.
    let other = e
        .register_agent(at(6), agent(2), vec![res(&["x"], 8, &[], None)])
        .unwrap();
    let out = drain(&mut e);
    assert!(
        matches!(&out[..], [Output::Provision { agent_id, allocation_id, .. }] if *agent_id == agent(2) && *allocation_id == a),
        "{out:?}"
    );
    // The first agent's late answer is taken and changes nothing; an acknowledgement from an
    // agent that owes none is refused; the first agent's acknowledgement ends the cleanup.
    e.provisioned(
        at(7),
        agent(1),
        a,
        ProvisionResult::Connection(conn("late")),
    )
    .unwrap();
    assert_eq!(
        e.allocation(&a).unwrap().state,
        AllocationState::Provisioning
    );
    assert!(e.release_acknowledged(at(7), agent(3), a).is_err());
    let snapshot = e.snapshot();
    let mut restored = Engine::restore(&snapshot, Box::new(SeededIds::new(0))).unwrap();
    assert_eq!(
        restored.snapshot(),
        snapshot,
        "the cleanup survives a restart"
    );
    for e in [&mut e, &mut restored] {
        e.release_acknowledged(at(8), agent(1), a).unwrap();
        let r = e.resource(&slow[0]).unwrap();
        assert_eq!(
            r.state,
            ResourceState::Error,
            "the provision's failure stays"
        );
        assert!(
            e.release_acknowledged(at(8), agent(1), a).is_err(),
            "acknowledged once"
        );
        e.provisioned(at(9), agent(2), a, ProvisionResult::Connection(conn("h2")))
            .unwrap();
        assert!(drain(e)
            .iter()
            .any(|o| matches!(o, Output::Ready { inventory_id, .. } if *inventory_id == other[0])));
    }
}

#[test]
fn release_waits_for_the_agent_and_gives_up_into_error() {
    let mut e = engine();
    let ids = e
        .register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], None)])
        .unwrap();
    let a = e.request(at(0), want(&["x"], 60)).unwrap();
    e.provisioned(at(0), agent(1), a, ProvisionResult::Connection(conn("h")))
        .unwrap();
    let b = e.request(at(0), want(&["x"], 60)).unwrap();
    drain(&mut e);
    e.release(at(1), a).unwrap();
    let out = drain(&mut e);
    assert_eq!(out[0], Output::Released { allocation_id: a });
    assert!(matches!(out[1], Output::Release { allocation_id, .. } if allocation_id == a));
    assert_eq!(
        e.resource(&ids[0]).unwrap().state,
        ResourceState::Allocated,
        "busy until acknowledged"
    );
    e.release_acknowledged(at(2), agent(1), a).unwrap();
    assert!(
        matches!(drain(&mut e)[0], Output::Provision { allocation_id, .. } if allocation_id == b)
    );
    e.provisioned(at(2), agent(1), b, ProvisionResult::Connection(conn("h")))
        .unwrap();
    e.release(at(3), b).unwrap();
    drain(&mut e);
    e.handle_timeout(at(8));
    let r = e.resource(&ids[0]).unwrap();
    assert_eq!(r.state, ResourceState::Error);
    let failures = e.stats().failures_by_agent[&agent(1)];
    assert_eq!((failures.provision, failures.release), (0, 1));
    assert!(r
        .reason
        .unwrap()
        .contains("did not acknowledge the release"));
    assert!(
        e.release_acknowledged(at(9), agent(1), b).is_err(),
        "too late"
    );
}

#[test]
fn agent_disconnect_and_reconnect() {
    let mut e = engine();
    let ids = e
        .register_agent(
            at(0),
            agent(1),
            vec![res(&["x"], 4, &[], Some("h")), res(&["x"], 4, &[], None)],
        )
        .unwrap();
    let a = e.request(at(0), want(&["x"], 60)).unwrap();
    let b = e.request(at(0), want(&["x"], 60)).unwrap();
    drain(&mut e);
    assert_eq!(
        e.allocation(&b).unwrap().state,
        AllocationState::Provisioning
    );
    e.disconnect_agent(at(1), agent(1)).unwrap();
    let out = drain(&mut e);
    assert!(out.contains(&Output::Offline { allocation_id: a }));
    assert!(out.iter().any(
        |o| matches!(o, Output::Queued { allocation_id, position: 1, .. } if *allocation_id == b)
    ));
    assert_eq!(e.resource(&ids[1]).unwrap().state, ResourceState::Offline);
    assert_eq!(
        e.allocation(&a).unwrap().state,
        AllocationState::Ready,
        "the lease lives on"
    );
    let again = e.register_agent(
        at(2),
        agent(1),
        vec![res(&["x"], 4, &[], Some("h")), res(&["x"], 4, &[], None)],
    );
    assert_eq!(again.unwrap(), ids, "same agent, same list, same ids");
    let out = drain(&mut e);
    assert!(out.contains(&Output::Online { allocation_id: a }));
    // The provision the disconnect abandoned is released first; b waits for it.
    let cleanup = Output::Release {
        agent_id: agent(1),
        allocation_id: b,
        inventory_id: ids[1],
    };
    assert!(out.contains(&cleanup), "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::Provision { .. })));
    e.release_acknowledged(at(3), agent(1), b).unwrap();
    let out = drain(&mut e);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Provision { allocation_id, .. } if *allocation_id == b)));
}

#[test]
fn reregistration_keeps_ids_and_retires_held_resources_after_release() {
    let mut e = engine();
    let ids = e
        .register_agent(
            at(0),
            agent(1),
            vec![
                res(&["a"], 4, &[], Some("h")),
                res(&["b"], 4, &[], Some("h")),
            ],
        )
        .unwrap();
    let a = e.request(at(0), want(&["a"], 0)).unwrap();
    drain(&mut e);
    let new = e
        .register_agent(at(1), agent(1), vec![res(&["b"], 4, &[], Some("h"))])
        .unwrap();
    assert_eq!(new, vec![ids[1]]);
    assert_eq!(e.resource_count(), 2, "held resource stays until released");
    assert!(e.request(at(1), want(&["a"], 0)).is_ok());
    assert!(
        matches!(drain(&mut e)[0], Output::TimedOut { .. }),
        "a retiring resource takes no one new"
    );
    e.release(at(2), a).unwrap();
    assert_eq!(e.resource_count(), 1);
    assert!(e.resource(&ids[0]).is_none());
}

#[test]
fn agents_may_choose_ids_but_not_take_another_agents() {
    let mut e = engine();
    let mut spec = res(&[], 1, &[], Some("h"));
    let mine = Uuid::from_u128(99);
    spec.inventory_id = Some(mine);
    assert_eq!(
        e.register_agent(at(0), agent(1), vec![spec.clone()])
            .unwrap(),
        vec![mine]
    );
    let err = e
        .register_agent(at(0), agent(2), vec![spec.clone()])
        .unwrap_err();
    assert_eq!(err.code(), crate::ErrorCode::Conflict);
    let err = e
        .register_agent(at(0), agent(1), vec![spec.clone(), spec])
        .unwrap_err();
    assert!(err.to_string().contains("appears twice"));
    assert_eq!(
        e.resource_count(),
        1,
        "a refused registration changes nothing"
    );
}

#[test]
fn maintenance_waits_for_the_lease_and_clearing_returns_the_resource() {
    let mut e = engine();
    let ids = e
        .register_agent(at(0), agent(1), vec![res(&[], 4, &[], Some("h"))])
        .unwrap();
    let a = e.request(at(0), want(&[], 0)).unwrap();
    e.set_maintenance(at(1), ids[0], Some("fan broken".into()))
        .unwrap();
    assert_eq!(e.resource(&ids[0]).unwrap().state, ResourceState::Allocated);
    e.release(at(2), a).unwrap();
    let r = e.resource(&ids[0]).unwrap();
    assert_eq!(
        (r.state, r.reason.as_deref()),
        (ResourceState::Maintenance, Some("fan broken"))
    );
    let b = e.request(at(3), want(&[], 60)).unwrap();
    e.set_maintenance(at(4), ids[0], None).unwrap();
    assert!(ready_on(&drain(&mut e), b).is_some());
    assert!(e.set_maintenance(at(4), Uuid::nil(), None).is_err());
}

#[test]
fn deleting_a_queued_request_tells_it_released_and_client_gone_respects_release_on_disconnect() {
    let mut e = engine();
    let ids = e
        .register_agent(at(0), agent(1), vec![res(&[], 4, &[], Some("h"))])
        .unwrap();
    let mut r = want(&[], 60);
    r.release_on_disconnect = true;
    let holder = e.request(at(0), r).unwrap();
    let waiter = e.request(at(0), want(&[], 60)).unwrap();
    drain(&mut e);
    e.release(at(1), waiter).unwrap();
    assert_eq!(
        drain(&mut e),
        vec![Output::Released {
            allocation_id: waiter
        }]
    );
    assert_eq!(
        e.release(at(1), waiter).unwrap_err().code(),
        crate::ErrorCode::NotFound
    );
    e.client_gone(at(2), holder).unwrap();
    assert_eq!(
        e.allocation(&holder).unwrap().state,
        AllocationState::Released
    );
    assert_eq!(e.resource(&ids[0]).unwrap().state, ResourceState::Free);
    let keep = e.request(at(3), want(&[], 60)).unwrap();
    e.client_gone(at(4), keep).unwrap();
    assert_eq!(e.allocation(&keep).unwrap().state, AllocationState::Ready);
}

#[test]
fn leases_can_be_extended_and_shortened() {
    let mut e = engine();
    e.register_agent(at(0), agent(1), vec![res(&[], 4, &[], Some("h"))])
        .unwrap();
    let a = e.request(at(0), want(&[], 0)).unwrap();
    assert_eq!(e.set_expires(at(1), a, T0 + 7200).unwrap(), T0 + 7200);
    assert_eq!(e.poll_timeout(), Some(at(7200)));
    assert_eq!(e.set_expires(at(1), a, T0 + 10).unwrap(), T0 + 10);
    assert!(
        e.set_expires(at(20), a, T0 + 15).is_err()
            || e.allocation(&a).unwrap().state == AllocationState::Expired
    );
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::Expired);
    assert_eq!(
        e.set_expires(at(21), a, T0 + 100).unwrap_err().code(),
        crate::ErrorCode::NotFound
    );
}

#[derive(Debug)]
struct PreferHost(&'static str);

impl MatchPolicy for PreferHost {
    fn veto(&self, request: &Requirements, candidate: &Candidate<'_>) -> bool {
        request.username == "banned" && candidate.spec.cpu_count > 0
    }

    fn score(&self, _request: &Requirements, candidate: &Candidate<'_>) -> Option<i64> {
        let host = &candidate.spec.connection.as_ref()?.host;
        Some(i64::from(host == self.0))
    }
}

#[test]
fn a_policy_can_veto_and_reorder() {
    let mut e = engine();
    let ids = e
        .register_agent(
            at(0),
            agent(1),
            vec![res(&[], 4, &[], Some("a")), res(&[], 64, &[], Some("b"))],
        )
        .unwrap();
    e.set_policy(Some(Arc::new(PreferHost("b"))));
    let a = e.request(at(0), want(&[], 0)).unwrap();
    assert_eq!(
        ready_on(&drain(&mut e), a),
        Some(ids[1]),
        "score beats best fit"
    );
    let mut banned = want(&[], 0);
    banned.username = "banned".into();
    let b = e.request(at(0), banned).unwrap();
    assert_eq!(
        drain(&mut e),
        vec![Output::TimedOut {
            allocation_id: b,
            explain: None
        }]
    );
    e.set_policy(None);
    let c = e.request(at(0), want(&[], 0)).unwrap();
    assert_eq!(ready_on(&drain(&mut e), c), Some(ids[0]));
}

#[test]
fn snapshot_restore_and_replay_reproduce_the_state() {
    let mut e = engine();
    e.register_agent(
        at(0),
        agent(1),
        vec![res(&["x"], 4, &[], None), res(&["x"], 8, &[], Some("h"))],
    )
    .unwrap();
    let before = e.snapshot();
    let start_records = e.take_records();
    assert_eq!(start_records.len(), 1);
    let a = e.request(at(1), want(&["x"], 60)).unwrap();
    let _b = e.request(at(1), want(&["x"], 60)).unwrap();
    let _c = e.request(at(2), want(&["x"], 60)).unwrap();
    e.provisioned(at(3), agent(1), a, ProvisionResult::Connection(conn("p")))
        .unwrap();
    e.disconnect_agent(at(4), agent(1)).unwrap();
    e.handle_timeout(at(70));
    drain(&mut e);
    let records = e.take_records();
    let mut replayed = Engine::restore(&before, Box::new(SeededIds::new(0))).unwrap();
    for r in &records {
        replayed.apply(r).unwrap();
    }
    assert_eq!(replayed.snapshot(), e.snapshot());
    let json = serde_json::to_string(&e.snapshot()).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    let restored = Engine::restore(&back, Box::new(SeededIds::new(0))).unwrap();
    assert_eq!(restored.snapshot(), e.snapshot());
    assert_eq!(restored.poll_timeout(), e.poll_timeout());
}

#[test]
fn a_corrupt_snapshot_is_refused() {
    let mut e = engine();
    let ids = e
        .register_agent(at(0), agent(1), vec![res(&[], 4, &[], Some("h"))])
        .unwrap();
    e.request(at(0), want(&[], 0)).unwrap();
    let mut snap = e.snapshot();
    snap.agents[0].resources[0].occupant = None;
    assert!(Engine::restore(&snap, Box::new(SeededIds::new(0))).is_err());
    let mut snap = e.snapshot();
    let dup = snap.agents[0].resources[0].clone();
    snap.agents[0].resources.push(dup);
    let err = Engine::restore(&snap, Box::new(SeededIds::new(0))).unwrap_err();
    assert!(err
        .to_string()
        .contains(&format!("resource {} appears twice", ids[0])));
}

// Found by the fuzz target engine_sequence: with ended allocations forgotten at once, a
// replayed request took the id of one whose release was still pending; the resource then named
// a live request as the allocation it was releasing, and the engine's snapshot did not restore.
#[test]
fn an_id_with_a_pending_release_is_not_reused() {
    let config = Config {
        ended_allocations_max: 0,
        record_inputs: true,
        ..Config::default()
    };
    let mut e = Engine::new(config, Box::new(SeededIds::new(42)));
    e.register_agent(at(0), agent(1), vec![res(&[], 4, &[], None)])
        .unwrap();
    let id = e.request(at(0), want(&[], 0)).unwrap();
    e.release(at(1), id).unwrap();
    assert!(e.allocation(&id).is_none(), "forgotten at once");
    let replayed = Record {
        now: at(2),
        input: Input::Request {
            allocation_id: id,
            requirements: want(&[], 60),
        },
    };
    let err = e.apply(&replayed).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    Engine::restore(&e.snapshot(), Box::new(SeededIds::new(0))).unwrap();
    e.release_acknowledged(at(3), agent(1), id).unwrap();
}

#[test]
fn time_never_goes_backwards() {
    let mut e = engine();
    e.handle_timeout(at(10));
    e.request(at(5), want(&[], 30)).unwrap();
    assert_eq!(e.now(), at(10));
    assert_eq!(e.poll_timeout(), Some(at(40)));
}

#[test]
fn stats_count_allocations_by_how_they_ended() {
    let mut e = engine();
    e.register_agent(at(0), agent(1), vec![res(&["a"], 1, &[], Some("h"))])
        .unwrap();
    let held = e.request(at(0), want(&["a"], 0)).unwrap();
    e.request(at(0), want(&["a"], 0)).unwrap(); // nothing free: timed out
    let waiting = e.request(at(0), want(&["a"], 10)).unwrap();
    e.client_gone(at(1), waiting).unwrap(); // cancelled
    e.release(at(2), held).unwrap();
    let mut short = want(&["a"], 0);
    short.expires = Some(T0 + 5);
    e.request(at(3), short).unwrap();
    e.handle_timeout(at(5)); // expired
    let stats = e.stats();
    let by_state: Vec<(&str, u64)> = AllocationState::ENDED
        .iter()
        .map(|s| s.as_str())
        .zip(stats.ended_by_state)
        .collect();
    assert_eq!(
        by_state,
        [
            ("released", 1),
            ("expired", 1),
            ("timed_out", 1),
            ("cancelled", 1)
        ]
    );
    assert_eq!(stats.resources_by_state[0], 1);
}

// Regressions found by the property tests (tests/properties.rs).

#[test]
fn replay_ends_at_the_same_now_after_a_quiet_timer_call_and_a_refused_input() {
    let mut e = engine();
    let before = e.snapshot();
    e.handle_timeout(at(5));
    assert!(e.release(at(9), Uuid::nil()).is_err());
    let records = e.take_records();
    assert_eq!(
        records.len(),
        2,
        "each move of time is recorded: {records:?}"
    );
    let mut replayed = Engine::restore(&before, Box::new(SeededIds::new(0))).unwrap();
    for r in &records {
        replayed.apply(r).unwrap();
    }
    assert_eq!(replayed.now(), at(9));
    assert_eq!(replayed.snapshot(), e.snapshot());
}

#[test]
fn a_provision_failing_after_the_lease_ended_is_not_placed_again() {
    let mut e = engine();
    e.register_agent(
        at(0),
        agent(1),
        vec![res(&["x"], 4, &[], None), res(&["x"], 4, &[], None)],
    )
    .unwrap();
    let mut r = want(&["x"], 60);
    r.expires = Some(T0 + 3);
    let a = e.request(at(0), r).unwrap();
    drain(&mut e);
    e.handle_timeout(at(5));
    let out = drain(&mut e);
    assert!(
        matches!(out[0], Output::Release { allocation_id, .. } if allocation_id == a),
        "{out:?}"
    );
    assert_eq!(
        out[1..],
        [Output::TimedOut {
            allocation_id: a,
            explain: None
        }],
        "no second provision for a lease that is already over"
    );
}

#[test]
fn a_provision_answered_after_the_lease_ended_times_out_and_is_released() {
    let mut e = engine();
    let ids = e
        .register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], None)])
        .unwrap();
    let mut r = want(&["x"], 60);
    r.expires = Some(T0 + 3);
    let a = e.request(at(0), r).unwrap();
    drain(&mut e);
    e.provisioned(
        at(4),
        agent(1),
        a,
        ProvisionResult::Connection(conn("late")),
    )
    .unwrap();
    let out = drain(&mut e);
    assert_eq!(
        out[0],
        Output::TimedOut {
            allocation_id: a,
            explain: None
        },
        "{out:?}"
    );
    assert!(
        matches!(out[1], Output::Release { allocation_id, inventory_id, .. }
        if allocation_id == a && inventory_id == ids[0]),
        "the agent cleans up what it prepared: {out:?}"
    );
    assert_eq!(out.len(), 2, "no ready: {out:?}");
}

#[test]
fn a_disconnect_sends_no_provision_to_the_agent_going_away() {
    let mut e = engine();
    e.register_agent(
        at(0),
        agent(1),
        vec![res(&["x"], 4, &[], None), res(&["x"], 4, &[], None)],
    )
    .unwrap();
    let a = e.request(at(0), want(&["x"], 60)).unwrap();
    drain(&mut e);
    e.disconnect_agent(at(1), agent(1)).unwrap();
    let out = drain(&mut e);
    assert!(
        out.iter().all(|o| !matches!(o, Output::Provision { .. })),
        "{out:?}"
    );
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::Queued);
}

/// Allocation ids in ascending order, so that timers due at the same instant fire in the
/// order the allocations were made.
#[derive(Debug)]
struct Ascending(u128);

impl IdSource for Ascending {
    fn next_id(&mut self) -> Uuid {
        self.0 += 1;
        Uuid::from_u128(self.0)
    }
}

#[test]
fn a_lease_ending_as_a_wait_ends_hands_no_one_a_lease_already_over() {
    // Both deadlines fall at 30 s and the holder's fires first: the freed resource must not go
    // to the waiter, whose wait (and lease) ends at that very instant.
    let mut e = Engine::new(engine().config().clone(), Box::new(Ascending(0)));
    e.register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], Some("h"))])
        .unwrap();
    let mut r = want(&["x"], 0);
    r.expires = Some(T0 + 30);
    let holder = e.request(at(0), r).unwrap();
    let mut r = want(&["x"], 600);
    r.expires = Some(T0 + 30);
    let waiter = e.request(at(0), r).unwrap();
    drain(&mut e);
    e.handle_timeout(at(30));
    assert_eq!(
        drain(&mut e),
        vec![
            Output::Expired {
                allocation_id: holder
            },
            Output::TimedOut {
                allocation_id: waiter,
                explain: None
            }
        ]
    );
}

#[test]
fn changes_moves_with_every_input_and_firing_and_requirements_are_kept() {
    let mut e = engine();
    let start = e.changes();
    e.register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], Some("h"))])
        .unwrap();
    let registered = e.changes();
    assert!(registered > start);
    let _ = e.inventory().count();
    let _ = e.allocations();
    assert_eq!(e.changes(), registered, "queries change nothing");
    let mut wants = want(&["x"], 0);
    wants.min_cpu_count = Some(2);
    wants.expires = Some(T0 + 30);
    let id = e.request(at(0), wants.clone()).unwrap();
    let requested = e.changes();
    assert!(requested > registered);
    assert_eq!(e.requirements(&id), Some(&wants));
    assert_eq!(e.requirements(&Uuid::from_u128(7)), None);
    e.handle_timeout(at(10));
    assert_eq!(e.changes(), requested, "a timer call that fires nothing");
    e.handle_timeout(at(30));
    assert!(e.changes() > requested, "the lease expired");
    assert_eq!(e.allocation(&id).unwrap().state, AllocationState::Expired);
    assert_eq!(
        e.requirements(&id),
        Some(&wants),
        "ended ones are remembered"
    );
    let before = e.changes();
    assert!(e.release(at(31), id).is_err());
    assert!(e.changes() > before, "a refused input may have moved time");
}

#[test]
fn filtered_listing_answers_through_the_index_as_a_scan_would() {
    let mut e = engine();
    let labels = ["nvidia", "cuda", "lab-a", "lab-b", "arm"];
    let mut ids = Vec::new();
    // Enough resources for the index to lay itself out, then more in its tail.
    for agent in 0..70u128 {
        let specs = (0..10u64)
            .map(|n| {
                let picked: Vec<&str> = labels
                    .iter()
                    .copied()
                    .filter(|l| (agent as u64 * 7 + n * 3 + l.len() as u64) % 3 == 0)
                    .collect();
                let host = format!("10.0.{agent}.{n}");
                res(&picked, 1 + n, &[], Some(host.as_str()))
            })
            .collect();
        ids.extend(
            e.register_agent(at(0), Uuid::from_u128(agent + 1), specs)
                .unwrap(),
        );
        if agent == 40 {
            // A query lays the index out; later registrations land in its tail.
            e.request(at(0), want(&["nvidia"], 0)).unwrap();
        }
    }
    for id in ids.iter().step_by(9) {
        e.set_maintenance(at(1), *id, Some("fan".into())).unwrap();
    }
    for _ in 0..150 {
        e.request(at(1), want(&["lab-a"], 0)).unwrap();
    }
    e.disconnect_agent(at(2), Uuid::from_u128(3)).unwrap();
    drain(&mut e);
    let all: Vec<InventoryEntry> = e.inventory().collect();
    let states: BTreeSet<ResourceState> = all.iter().map(|r| r.state).collect();
    assert!(
        states.len() >= 4,
        "the lab has resources in most states: {states:?}"
    );
    for tags in [
        vec![],
        vec!["nvidia"],
        vec!["cuda", "lab-a"],
        vec!["arm", "lab-b", "nvidia"],
        vec!["none"],
    ] {
        for state in [
            None,
            Some(ResourceState::Free),
            Some(ResourceState::Allocated),
            Some(ResourceState::Offline),
            Some(ResourceState::Maintenance),
        ] {
            let filter = InventoryFilter {
                tags: tags.iter().map(|t| t.to_string()).collect(),
                state,
            };
            let want: Vec<Uuid> = all
                .iter()
                .filter(|r| filter.matches(r))
                .map(|r| r.inventory_id)
                .collect();
            let got: Vec<Uuid> = e
                .inventory_filtered(&filter)
                .map(|r| r.inventory_id)
                .collect();
            assert_eq!(got, want, "{filter:?}");
        }
    }
}

#[test]
fn a_request_that_waited_gets_its_full_default_lease_from_ready() {
    let mut e = engine();
    e.register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], Some("h"))])
        .unwrap();
    let default = e.config().lease_secs_default;
    let mut long = want(&["x"], 0);
    long.duration_seconds = Some(10 * default);
    let holder = e.request(at(0), long).unwrap();
    // It waits longer than the default lease: the wait is bounded by its timeout alone.
    let waiter = e.request(at(1), want(&["x"], 2 * default)).unwrap();
    drain(&mut e);
    let later = default + 50;
    e.handle_timeout(at(later));
    drain(&mut e);
    assert_eq!(
        e.allocation(&waiter).unwrap().state,
        AllocationState::Queued,
        "a wait longer than the default lease is not cut short"
    );
    e.release(at(later), holder).unwrap();
    let out = drain(&mut e);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Ready { allocation_id, expires, .. }
            if *allocation_id == waiter && *expires == T0 + later + default)),
        "{out:?}"
    );
    assert_eq!(e.allocation(&waiter).unwrap().expires, T0 + later + default);
}

#[test]
fn duration_seconds_counts_from_ready_through_a_provision_and_is_capped() {
    let mut e = one_provisioned_resource();
    let mut r = want(&["x"], 60);
    r.duration_seconds = Some(7200);
    let a = e.request(at(0), r.clone()).unwrap();
    let out = drain(&mut e);
    assert!(
        matches!(out[0], Output::Provision { expires, .. } if expires == T0 + 7200),
        "{out:?}"
    );
    e.provisioned(at(4), agent(1), a, ProvisionResult::Connection(conn("h")))
        .unwrap();
    let out = drain(&mut e);
    assert!(matches!(out[0], Output::Ready { expires, .. } if expires == T0 + 4 + 7200));
    e.handle_timeout(at(4 + 7199));
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::Ready);
    e.handle_timeout(at(4 + 7200));
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::Expired);
    drain(&mut e);
    e.release_acknowledged(at(4 + 7200), agent(1), a).unwrap();
    r.duration_seconds = Some(10 * 24 * 3600);
    let b = e.request(at(8000), r).unwrap();
    let out = drain(&mut e);
    e.provisioned(
        at(8000),
        agent(1),
        b,
        ProvisionResult::Connection(conn("h")),
    )
    .unwrap();
    let max = e.config().lease_secs_max;
    assert_eq!(
        e.allocation(&b).unwrap().expires,
        T0 + 8000 + max,
        "{out:?}"
    );
}

#[test]
fn duration_seconds_is_refused_with_expires_or_zero() {
    let mut e = engine();
    let mut r = want(&[], 0);
    r.duration_seconds = Some(60);
    r.expires = Some(T0 + 100);
    let err = e.request(at(0), r.clone()).unwrap_err();
    assert_eq!(err.code(), crate::ErrorCode::InvalidRequest);
    assert!(
        err.to_string().contains("requirements.duration_seconds"),
        "{err}"
    );
    r.expires = None;
    r.duration_seconds = Some(0);
    let err = e.request(at(0), r).unwrap_err();
    assert_eq!(
        err.to_string(),
        "requirements.duration_seconds must be more than 0"
    );
}

#[test]
fn a_snapshot_written_before_lease_lengths_still_restores() {
    let mut e = engine();
    e.register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], Some("h"))])
        .unwrap();
    e.request(at(0), want(&["x"], 0)).unwrap();
    let mut r = want(&["x"], 60);
    r.duration_seconds = Some(600);
    e.request(at(1), r).unwrap();
    let mut json = serde_json::to_value(e.snapshot()).unwrap();
    let waiting = &mut json["allocations"][1];
    assert_eq!(waiting["lease_secs"], 600);
    assert_eq!(waiting["requirements"]["duration_seconds"], 600);
    // What an older engine wrote: neither field (an absolute lease end instead).
    waiting.as_object_mut().unwrap().remove("lease_secs");
    waiting["requirements"]
        .as_object_mut()
        .unwrap()
        .remove("duration_seconds");
    let old: Snapshot = serde_json::from_value(json).unwrap();
    let restored = Engine::restore(&old, Box::new(SeededIds::new(0))).unwrap();
    assert_eq!(restored.snapshot().allocations.len(), 2);
    assert_eq!(restored.snapshot().allocations[1].lease_secs, None);
}

#[test]
fn current_outputs_say_what_the_creating_socket_saw_last() {
    let mut e = engine();
    let ids = e
        .register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], Some("h"))])
        .unwrap();
    let a = e.request(at(0), want(&["x"], 60)).unwrap();
    let b = e.request(at(0), want(&["x"], 60)).unwrap();
    let out = drain(&mut e);
    let ready = out.iter().find(|o| ready_on(&[(*o).clone()], a).is_some());
    assert_eq!(e.current_outputs(&a), vec![ready.unwrap().clone()]);
    let queued = e.current_outputs(&b);
    assert!(
        matches!(&queued[..], [Output::Queued { allocation_id, position: 1, matching_resources: 1, .. }] if *allocation_id == b),
        "{queued:?}"
    );
    e.disconnect_agent(at(1), agent(1)).unwrap();
    drain(&mut e);
    let current = e.current_outputs(&a);
    assert_eq!(current.len(), 2, "{current:?}");
    assert_eq!(current[1], Output::Offline { allocation_id: a });
    assert!(drain(&mut e).is_empty(), "a query sends nothing");
    e.release(at(2), a).unwrap();
    assert!(e.current_outputs(&a).is_empty(), "ended");
    assert!(e.current_outputs(&Uuid::nil()).is_empty(), "unknown");
    assert_eq!(e.resource(&ids[0]).unwrap().state, ResourceState::Offline);
}

#[test]
fn keys_and_provision_data_reach_the_agent_and_survive_a_snapshot() {
    let mut e = one_provisioned_resource();
    let mut r = want(&["x"], 60);
    r.ssh_keys = vec!["ssh-ed25519 AAAAC3Nza ci@laptop".into()];
    r.provision = serde_json::json!({"image": "ubuntu-24.04"})
        .as_object()
        .cloned();
    let a = e.request(at(0), r.clone()).unwrap();
    let out = drain(&mut e);
    assert!(
        matches!(&out[0], Output::Provision { allocation_id, ssh_keys, provision, .. }
        if *allocation_id == a && *ssh_keys == r.ssh_keys && *provision == r.provision)
    );
    let json = serde_json::to_value(e.snapshot()).unwrap();
    let back: Snapshot = serde_json::from_value(json).unwrap();
    let restored = Engine::restore(&back, Box::new(SeededIds::new(0))).unwrap();
    assert_eq!(restored.snapshot().allocations[0].requirements, r);
    let mut bad = want(&["x"], 60);
    bad.ssh_keys = vec!["ssh-ed25519 A\nssh-rsa B".into()];
    let err = e.request(at(1), bad).unwrap_err();
    assert!(
        err.to_string().contains("requirements.ssh_keys[0]"),
        "{err}"
    );
}

#[test]
fn a_snapshot_written_before_keys_and_provision_data_still_restores() {
    let mut e = one_provisioned_resource();
    e.request(at(0), want(&["x"], 60)).unwrap();
    let json = serde_json::to_value(e.snapshot()).unwrap();
    let requirements = json["allocations"][0]["requirements"].as_object().unwrap();
    // Absent when empty, so what this engine writes is what an older one wrote.
    assert!(!requirements.contains_key("ssh_keys"));
    assert!(!requirements.contains_key("provision"));
    let old: Snapshot = serde_json::from_value(json).unwrap();
    let restored = Engine::restore(&old, Box::new(SeededIds::new(0))).unwrap();
    let r = &restored.snapshot().allocations[0].requirements;
    assert!(r.ssh_keys.is_empty() && r.provision.is_none());
}

/// The `queued` outputs among `outputs`: each request and the position it is told.
fn positions(outputs: &[Output]) -> Vec<(Uuid, u32)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Queued {
                allocation_id,
                position,
                ..
            } => Some((*allocation_id, *position)),
            _ => None,
        })
        .collect()
}

mod order;
mod positions;
mod quotas;
mod several;
mod usage;

#[test]
fn explanations_name_the_labels_and_types_the_index_knows_as_a_scan_of_every_resource_would() {
    let mut e = engine();
    let lab = |n: u64, kind: &str, labels: &[&str]| ResourceSpec {
        kind: kind.into(),
        ..res(labels, n, &[("Tesla T4", 16)], Some("h"))
    };
    let first = vec![lab(2, "VM", &["x86", "cuda"]), lab(4, "device", &["arm"])];
    e.register_agent(at(0), agent(1), first).unwrap();
    let second = vec![
        lab(8, "VM", &["x86", "site-a"]),
        lab(16, "server", &["rocm"]),
    ];
    e.register_agent(at(0), agent(2), second).unwrap();
    e.request(at(0), want(&["x86"], 60)).unwrap();
    // A label no longer carried by anyone is not named.
    e.register_agent(at(1), agent(2), vec![lab(8, "VM", &["x86"])])
        .unwrap();
    let mut typo = want(&["x68"], 60);
    typo.kind = Some("vm".into());
    typo.gpu = Some(GpuRequirement {
        label: Some("t5".into()),
        min_memory_gb: 0,
        count: 1,
    });
    for r in [typo, want(&["x86"], 60), want(&["rocm"], 60)] {
        let scanned = crate::explain::explain(
            &r,
            e.inventory
                .iter()
                .map(|res| (&*res.spec, || e.availability(res))),
        );
        let got = e.explain(&r).unwrap();
        assert_eq!(got, scanned, "{r:?}");
    }
    let got = e.explain(&want(&["x68"], 60)).unwrap();
    assert!(
        got.findings[0]
            .message
            .ends_with("labels seen: arm, cuda, x86"),
        "{got:?}"
    );
}
