//! Requests for several resources at once (`count`): all or none, provisioned in parallel.

use super::*;

/// An engine with `n` agents, each with one resource tagged `x` that it provisions.
fn agents_with_one_each(n: u128) -> (Engine, Vec<Uuid>) {
    let mut e = engine();
    let ids = (1..=n)
        .map(|i| {
            e.register_agent(at(0), agent(i), vec![res(&["x"], 4, &[], None)])
                .unwrap()[0]
        })
        .collect();
    (e, ids)
}

/// Agent `n` answers its provision of `a` with host `h<n>`.
fn answer(e: &mut Engine, secs: u64, n: u128, a: Uuid) {
    let connection = ProvisionResult::Connection(conn(&format!("h{n}")));
    e.provisioned(at(secs), agent(n), a, connection).unwrap();
}

/// Two agents with one resource each, both being provisioned for one request of two.
fn two_provisioning() -> (Engine, Vec<Uuid>, Uuid) {
    let (mut e, ids) = agents_with_one_each(2);
    let a = e.request(at(0), several(2, 60)).unwrap();
    drain(&mut e);
    (e, ids, a)
}

fn several(count: u32, timeout: u64) -> Requirements {
    Requirements {
        count,
        ..want(&["x"], timeout)
    }
}

/// The provision orders among `outputs`, as (agent, resource).
fn provisions(outputs: &[Output]) -> Vec<(Uuid, Uuid)> {
    orders(outputs, false)
}

/// The release orders among `outputs`, as (agent, resource).
fn releases(outputs: &[Output]) -> Vec<(Uuid, Uuid)> {
    orders(outputs, true)
}

/// The release (or else provision) orders among `outputs`, as (agent, resource).
fn orders(outputs: &[Output], release: bool) -> Vec<(Uuid, Uuid)> {
    let order = |o: &Output| match o {
        Output::Provision {
            agent_id,
            inventory_id,
            ..
        } if !release => Some((*agent_id, *inventory_id)),
        Output::Release {
            agent_id,
            inventory_id,
            ..
        } if release => Some((*agent_id, *inventory_id)),
        _ => None,
    };
    outputs.iter().filter_map(order).collect()
}

fn state(e: &Engine, id: &Uuid) -> ResourceState {
    e.resource(id).unwrap().state
}

#[test]
fn count_is_refused_out_of_its_limits_naming_it() {
    let mut e = engine();
    for count in [0, 65] {
        let err = e.request(at(0), several(count, 0)).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::InvalidRequest);
        assert_eq!(
            err.to_string(),
            format!("requirements.count must be between 1 and 64, got {count}")
        );
    }
}

#[test]
fn several_are_provisioned_in_parallel_and_ready_together() {
    let (mut e, ids) = agents_with_one_each(3);
    let a = e.request(at(0), several(3, 60)).unwrap();
    let out = drain(&mut e);
    assert_eq!(
        provisions(&out),
        vec![(agent(1), ids[0]), (agent(2), ids[1]), (agent(3), ids[2])],
        "one order per resource, all at once"
    );
    for (n, id) in [(2, ids[1]), (1, ids[0])] {
        answer(&mut e, 1, n, a);
        assert!(drain(&mut e).is_empty(), "no ready before all are");
        assert_eq!(state(&e, &id), ResourceState::Allocated);
    }
    let info = e.allocation(&a).unwrap();
    assert_eq!(info.state, AllocationState::Provisioning);
    assert_eq!(info.connection, None, "no connection shown before all are");
    let twice = e.provisioned(at(1), agent(1), a, ProvisionResult::Connection(conn("h1")));
    assert_eq!(twice.unwrap_err().code(), crate::ErrorCode::Forbidden);
    answer(&mut e, 2, 3, a);
    let out = drain(&mut e);
    let [Output::Ready {
        inventory_id,
        connection,
        resources,
        ..
    }] = &out[..]
    else {
        panic!("one ready: {out:?}");
    };
    assert_eq!((*inventory_id, &**connection), (ids[0], &conn("h1")));
    let granted: Vec<(Uuid, &str)> = resources
        .iter()
        .map(|g| (g.inventory_id, g.connection.host.as_str()))
        .collect();
    assert_eq!(
        granted,
        vec![(ids[0], "h1"), (ids[1], "h2"), (ids[2], "h3")]
    );
    let info = e.allocation(&a).unwrap();
    assert_eq!(info.inventory_ids, ids);
    assert_eq!(info.inventory_id, Some(ids[0]));
    assert_eq!(e.current_outputs(&a), out, "a follower sees the same ready");
}

#[test]
fn nothing_is_taken_until_enough_are_free_and_what_frees_meanwhile_is_held() {
    let mut e = engine();
    let statics = vec![
        res(&["x"], 4, &[], Some("s1")),
        res(&["x"], 4, &[], Some("s2")),
    ];
    let ids = e.register_agent(at(0), agent(1), statics).unwrap();
    let first = e.request(at(0), want(&["x"], 60)).unwrap();
    assert_eq!(ready_on(&drain(&mut e), first), Some(ids[0]));
    let big = e.request(at(1), several(2, 60)).unwrap();
    let out = drain(&mut e);
    assert!(
        matches!(
            &out[..],
            [Output::Queued {
                position: 1,
                matching_resources: 2,
                ..
            }]
        ),
        "{out:?}"
    );
    assert_eq!(state(&e, &ids[1]), ResourceState::Reserved, "held for it");
    // Its default lease, counted from `ready`, may end after `first`'s: no backfill.
    let small = e.request(at(2), want(&["x"], 60)).unwrap();
    assert!(ready_on(&drain(&mut e), small).is_none(), "it waits behind");
    e.release(at(3), first).unwrap();
    let out = drain(&mut e);
    assert_eq!(
        ready_on(&out, big),
        Some(ids[0]),
        "static resources of one agent: no round trip, so one agent may give both"
    );
    assert!(ready_on(&out, small).is_none());
    assert_eq!(e.allocation(&big).unwrap().inventory_ids, ids);
    e.release(at(4), big).unwrap();
    assert_eq!(ready_on(&drain(&mut e), small), Some(ids[0]));
}

#[test]
fn resources_that_need_provisioning_come_from_distinct_agents() {
    let mut e = engine();
    let two = vec![res(&["x"], 4, &[], None), res(&["x"], 4, &[], None)];
    let ids = e.register_agent(at(0), agent(1), two).unwrap();
    let a = e.request(at(0), several(2, 60)).unwrap();
    assert!(matches!(&drain(&mut e)[..], [Output::Queued { .. }]));
    assert_eq!(state(&e, &ids[0]), ResourceState::Free);
    let other = e
        .register_agent(at(1), agent(2), vec![res(&["x"], 4, &[], None)])
        .unwrap();
    let out = drain(&mut e);
    assert_eq!(
        provisions(&out),
        vec![(agent(1), ids[0]), (agent(2), other[0])]
    );
    assert_eq!(e.allocation(&a).unwrap().inventory_ids, [ids[0], other[0]]);
}

#[test]
fn a_failed_provision_releases_the_others_and_requeues_in_front() {
    let (mut e, ids) = agents_with_one_each(3);
    let a = e.request(at(0), several(2, 60)).unwrap();
    drain(&mut e);
    let b = e.request(at(1), several(2, 60)).unwrap();
    drain(&mut e);
    answer(&mut e, 2, 1, a);
    e.provisioned(
        at(3),
        agent(2),
        a,
        ProvisionResult::Failed("no disk".into()),
    )
    .unwrap();
    let out = drain(&mut e);
    assert_eq!(
        releases(&out),
        vec![(agent(1), ids[0])],
        "the one provisioned is cleaned up"
    );
    assert_eq!(positions(&out), vec![(a, 1), (b, 2)], "back in front");
    assert_eq!(state(&e, &ids[1]), ResourceState::Error);
    assert_eq!(
        state(&e, &ids[0]),
        ResourceState::Allocated,
        "until released"
    );
    let info = e.allocation(&a).unwrap();
    assert_eq!(
        (info.state, info.inventory_ids.len()),
        (AllocationState::Queued, 0)
    );
    e.release_acknowledged(at(4), agent(1), a).unwrap();
    let out = drain(&mut e);
    assert_eq!(
        provisions(&out),
        vec![(agent(1), ids[0]), (agent(3), ids[2])],
        "the first in line gets the two free ones"
    );
    assert_eq!(positions(&out), vec![(b, 1)]);
    assert_eq!(e.stats().failures_by_agent[&agent(2)].provision, 1);
}

#[test]
fn an_unanswered_provision_times_out_and_releases_every_one() {
    let (mut e, ids, a) = two_provisioning();
    answer(&mut e, 1, 1, a);
    e.handle_timeout(at(5));
    let out = drain(&mut e);
    assert_eq!(releases(&out), vec![(agent(1), ids[0]), (agent(2), ids[1])]);
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::Queued);
    let late = e.resource(&ids[1]).unwrap();
    assert_eq!(late.state, ResourceState::Error);
    assert!(late.reason.unwrap().contains("did not answer"));
    assert_eq!(
        state(&e, &ids[0]),
        ResourceState::Allocated,
        "answered: no error"
    );
    // The late answer is taken without effect.
    answer(&mut e, 6, 2, a);
    for n in [1, 2] {
        e.release_acknowledged(at(7), agent(n), a).unwrap();
    }
    assert!(provisions(&drain(&mut e)).is_empty(), "one is not enough");
    assert_eq!(
        state(&e, &ids[0]),
        ResourceState::Reserved,
        "answered: free again, held for the waiting request"
    );
    assert_eq!(state(&e, &ids[1]), ResourceState::Error, "until cleared");
    e.set_maintenance(at(8), ids[1], None).unwrap();
    assert_eq!(
        provisions(&drain(&mut e)),
        vec![(agent(1), ids[0]), (agent(2), ids[1])]
    );
}

#[test]
fn an_agent_going_away_mid_provision_fails_the_whole_request() {
    let (mut e, ids) = agents_with_one_each(3);
    let a = e.request(at(0), several(2, 60)).unwrap();
    drain(&mut e);
    e.disconnect_agent(at(1), agent(2)).unwrap();
    let out = drain(&mut e);
    assert_eq!(
        releases(&out),
        vec![(agent(1), ids[0])],
        "the other one is released now; the gone agent's when it is back"
    );
    assert_eq!(
        state(&e, &ids[2]),
        ResourceState::Reserved,
        "one is not enough: it is held for the waiting request"
    );
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::Queued);
}

#[test]
fn a_client_leaving_mid_provision_releases_every_one() {
    let (mut e, ids, a) = two_provisioning();
    answer(&mut e, 1, 2, a);
    e.client_gone(at(2), a).unwrap();
    let out = drain(&mut e);
    assert_eq!(releases(&out), vec![(agent(1), ids[0]), (agent(2), ids[1])]);
    assert_eq!(e.allocation(&a).unwrap().state, AllocationState::Cancelled);
    // The unanswered provision's late answer changes nothing.
    answer(&mut e, 3, 1, a);
    e.release_acknowledged(at(3), agent(2), a).unwrap();
    assert_eq!(state(&e, &ids[1]), ResourceState::Free);
    assert_eq!(state(&e, &ids[0]), ResourceState::Allocated);
    e.release_acknowledged(at(4), agent(1), a).unwrap();
    assert_eq!(state(&e, &ids[0]), ResourceState::Free);
    let again = e.release_acknowledged(at(4), agent(1), a).unwrap_err();
    assert_eq!(again.code(), crate::ErrorCode::NotFound);
}

#[test]
fn expiry_releases_every_one_and_leases_move_together() {
    let mut e = engine();
    let statics = vec![res(&["x"], 4, &[], Some("s1"))];
    let s = e.register_agent(at(0), agent(1), statics).unwrap();
    let p = e
        .register_agent(at(0), agent(2), vec![res(&["x"], 8, &[], None)])
        .unwrap();
    let mut r = several(2, 60);
    r.expires = Some(T0 + 100);
    let a = e.request(at(0), r).unwrap();
    let out = drain(&mut e);
    assert_eq!(
        provisions(&out),
        vec![(agent(2), p[0])],
        "the static one needs none"
    );
    e.provisioned(at(1), agent(2), a, ProvisionResult::Connection(conn("p")))
        .unwrap();
    let out = drain(&mut e);
    assert!(matches!(&out[..], [Output::Ready { resources, .. }] if resources.len() == 2));
    e.set_expires(at(2), a, T0 + 50).unwrap();
    e.handle_timeout(at(50));
    let out = drain(&mut e);
    assert_eq!(out[0], Output::Expired { allocation_id: a });
    assert_eq!(releases(&out), vec![(agent(2), p[0])]);
    assert_eq!(
        state(&e, &s[0]),
        ResourceState::Free,
        "static: free at once"
    );
    e.release_acknowledged(at(51), agent(2), a).unwrap();
    assert_eq!(state(&e, &p[0]), ResourceState::Free);
}

#[test]
fn several_survive_a_snapshot_and_a_replay() {
    let (mut e, ids) = agents_with_one_each(3);
    let before = e.snapshot();
    e.take_records();
    let a = e.request(at(1), several(2, 60)).unwrap();
    let b = e.request(at(1), several(3, 60)).unwrap();
    answer(&mut e, 2, 1, a);
    drain(&mut e);
    let stored = e.snapshot().to_stored().unwrap();
    let snapshot = Snapshot::from_stored(stored.as_bytes()).unwrap();
    assert_eq!(snapshot, e.snapshot());
    let mut restored = Engine::restore(&snapshot, Box::new(SeededIds::new(0))).unwrap();
    assert_eq!(restored.snapshot(), e.snapshot());
    let mut replayed = Engine::restore(&before, Box::new(SeededIds::new(0))).unwrap();
    for r in &e.take_records() {
        replayed.apply(r).unwrap();
    }
    drain(&mut replayed);
    assert_eq!(replayed.snapshot(), e.snapshot());
    for engine in [&mut e, &mut restored] {
        engine
            .provisioned(at(3), agent(2), a, ProvisionResult::Connection(conn("h2")))
            .unwrap();
        let out = drain(engine);
        assert!(matches!(&out[..], [Output::Ready { resources, .. }] if resources.len() == 2));
    }
    assert_eq!(restored.snapshot(), e.snapshot());
    assert_eq!(e.allocation(&a).unwrap().inventory_ids, ids[..2]);
    let mut holding = e.snapshot();
    let held = holding
        .allocations
        .iter_mut()
        .find(|s| s.allocation_id == a)
        .unwrap();
    held.others[0].inventory_id = ids[2];
    let err = Engine::restore(&holding, Box::new(SeededIds::new(0))).unwrap_err();
    assert!(err.to_string().contains("does not name it"), "{err}");
    assert_eq!(e.allocation(&b).unwrap().state, AllocationState::Queued);
}

#[test]
fn fewer_matching_than_count_is_explained_with_a_count_finding() {
    let (mut e, _) = agents_with_one_each(2);
    let sentence = "2 of 2 registered resources satisfy every requirement, fewer than the 3 the \
                    request asks for together";
    let dry = e.explain(&several(3, 60)).unwrap();
    assert_eq!((dry.matching_resources, dry.free), (2, 2));
    let first = dry.first().expect("a finding");
    assert_eq!(first.reason, crate::Reason::Count);
    assert_eq!((first.count, first.message.as_str()), (2, sentence));
    assert!(
        e.explain(&several(2, 60)).unwrap().findings.is_empty(),
        "enough match"
    );

    let a = e.request(at(0), several(3, 60)).unwrap();
    let out = drain(&mut e);
    let queued = out.iter().find_map(|o| match o {
        Output::Queued {
            allocation_id,
            explain,
            matching_resources,
            ..
        } if *allocation_id == a => Some((*matching_resources, explain.clone())),
        _ => None,
    });
    assert_eq!(queued, Some((2, Some(dry.clone()))), "{out:?}");
    assert_eq!(e.explain_allocation(&a).unwrap(), dry);

    e.handle_timeout(at(60));
    let out = drain(&mut e);
    assert!(
        out.contains(&Output::TimedOut {
            allocation_id: a,
            explain: Some(dry)
        }),
        "{out:?}"
    );
}

// Found by the diverse-lab property (a replay placed a request on the other resource): two
// static resources of one request came back from a re-registration needing provisioning,
// listed the other way round, so both releases wait on one agent. Which one its
// acknowledgement ends was the first in the order the releases began, which a restored
// engine does not know (it rebuilds them in the agent's list order).
#[test]
fn an_acknowledgement_ends_the_same_release_after_a_restore() {
    let mut e = engine();
    let statics = vec![
        res(&["x"], 4, &[], Some("s1")),
        res(&["x"], 8, &[], Some("s2")),
    ];
    let ids = e.register_agent(at(0), agent(1), statics).unwrap();
    let a = e.request(at(0), several(2, 60)).unwrap();
    drain(&mut e);
    assert_eq!(e.allocation(&a).unwrap().inventory_ids, ids);
    let provisioned = |cpu, id| ResourceSpec {
        inventory_id: Some(id),
        ..res(&["x"], cpu, &[], None)
    };
    let reversed = vec![provisioned(8, ids[1]), provisioned(4, ids[0])];
    e.register_agent(at(1), agent(1), reversed).unwrap();
    let waiting = e.request(at(1), want(&["x"], 60)).unwrap();
    e.release(at(2), a).unwrap();
    assert_eq!(releases(&drain(&mut e)).len(), 2);
    let mut restored = Engine::restore(&e.snapshot(), Box::new(SeededIds::new(0))).unwrap();
    let mut placed = Vec::new();
    for engine in [&mut e, &mut restored] {
        engine.release_acknowledged(at(3), agent(1), a).unwrap();
        placed.push(provisions(&drain(engine)));
        assert_eq!(
            engine.allocation(&waiting).unwrap().state,
            AllocationState::Provisioning
        );
    }
    assert_eq!(
        placed[0],
        vec![(agent(1), ids[0])],
        "the earliest registered is freed, and goes to the request"
    );
    assert_eq!(placed[1], placed[0]);
    assert_eq!(restored.snapshot(), e.snapshot());
}
