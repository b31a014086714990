//! Quotas: requests over a limit wait without blocking others, impossible ones are refused.

use super::*;
use crate::output::Recipient;
use crate::quota::{Group, Policy, QuotaLimit, QuotaLimits};

/// An engine with `n` static resources tagged `x`, each with `gpus` GPUs, ready at once.
fn static_resources(n: usize, gpus: usize) -> Engine {
    let mut e = engine();
    let gpus = vec![("T4", 16); gpus];
    let specs = (0..n).map(|_| res(&["x"], 4, &gpus, Some("h"))).collect();
    e.register_agent(at(0), agent(1), specs).unwrap();
    e
}

/// [`static_resources`] with `limits` for everyone.
fn limited(n: usize, gpus: usize, limits: QuotaLimits) -> Engine {
    let mut e = static_resources(n, gpus);
    let policy = Policy {
        default: limits,
        ..Policy::default()
    };
    e.set_quotas(at(0), Some(policy)).unwrap();
    e
}

/// Limits that set only `limit`, to `max`.
fn only(limit: QuotaLimit, max: u32) -> QuotaLimits {
    let mut limits = QuotaLimits::default();
    match limit {
        QuotaLimit::Allocations => limits.allocations_max = Some(max),
        QuotaLimit::Resources => limits.resources_max = Some(max),
        QuotaLimit::Gpus => limits.gpus_max = Some(max),
        QuotaLimit::Lease => limits.lease_secs_max = Some(u64::from(max)),
    }
    limits
}

fn ask(user: &str) -> Requirements {
    Requirements {
        username: user.into(),
        ..want(&["x"], 600)
    }
}

/// The quota limit named by the last `queued` message of `id` among `outputs`.
fn queued_for(outputs: &[Output], id: Uuid) -> Option<Option<QuotaLimit>> {
    outputs.iter().rev().find_map(|o| match o {
        Output::Queued {
            allocation_id,
            quota,
            ..
        } if *allocation_id == id => Some(*quota),
        _ => None,
    })
}

fn refused_on(e: &mut Engine, req: Requirements) -> QuotaLimit {
    match e.request(at(1), req) {
        Err(Error::QuotaExceeded(refused)) => refused.limit,
        other => panic!("expected a quota refusal, got {other:?}"),
    }
}

#[test]
fn over_the_allocation_limit_waits_without_blocking_others_and_is_placed_when_one_ends() {
    let mut e = limited(3, 0, only(QuotaLimit::Allocations, 1));
    let a = e.request(at(1), ask("ann")).unwrap();
    let a2 = e.request(at(1), ask("ann")).unwrap();
    let b = e.request(at(1), ask("bob")).unwrap();
    let out = drain(&mut e);
    assert!(ready_on(&out, a).is_some());
    assert_eq!(queued_for(&out, a2), Some(Some(QuotaLimit::Allocations)));
    assert!(ready_on(&out, b).is_some(), "bob is not held behind ann");
    assert_eq!(e.current_outputs(&a2).len(), 1);
    e.release(at(2), a).unwrap();
    let out = drain(&mut e);
    assert!(ready_on(&out, a2).is_some(), "placed once ann holds less");
}

#[test]
fn a_waiting_request_over_quota_is_no_barrier_for_a_freed_resource() {
    let mut e = limited(1, 0, only(QuotaLimit::Resources, 1));
    let held = e.request(at(1), ask("ann")).unwrap();
    let b = e.request(at(1), ask("bob")).unwrap();
    let a2 = e.request(at(1), ask("ann")).unwrap();
    let c = e.request(at(1), ask("cat")).unwrap();
    drain(&mut e);
    e.release(at(2), held).unwrap();
    let out = drain(&mut e);
    assert!(ready_on(&out, b).is_some(), "bob was first in line");
    e.release(at(3), b).unwrap();
    let out = drain(&mut e);
    assert!(ready_on(&out, a2).is_some(), "ann holds nothing now");
    assert!(ready_on(&out, c).is_none());
}

#[test]
fn gpus_held_count_the_resources_gpus_and_an_impossible_request_is_refused() {
    let limits = QuotaLimits {
        gpus_max: Some(3),
        ..only(QuotaLimit::Resources, 2)
    };
    let mut e = limited(3, 2, limits);
    let a = e.request(at(1), ask("ann")).unwrap();
    let a2 = e.request(at(1), ask("ann")).unwrap();
    let out = drain(&mut e);
    assert!(ready_on(&out, a).is_some());
    assert_eq!(queued_for(&out, a2), Some(Some(QuotaLimit::Gpus)));
    let gpus = Requirements {
        gpu: Some(GpuRequirement {
            label: None,
            min_memory_gb: 0,
            count: 4,
        }),
        ..ask("ann")
    };
    assert_eq!(refused_on(&mut e, gpus), QuotaLimit::Gpus);
    let many = Requirements {
        count: 3,
        ..ask("ann")
    };
    assert_eq!(refused_on(&mut e, many), QuotaLimit::Resources);
    let err = e
        .request(
            at(1),
            Requirements {
                count: 3,
                ..ask("ann")
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), crate::ErrorCode::QuotaExceeded);
    assert!(err.to_string().contains("resources held"), "{err}");
}

#[test]
fn a_lease_over_the_limit_is_refused_and_the_default_lease_is_capped() {
    let mut e = limited(1, 0, only(QuotaLimit::Lease, 600));
    let long = Requirements {
        duration_seconds: Some(3600),
        ..ask("ann")
    };
    assert_eq!(refused_on(&mut e, long), QuotaLimit::Lease);
    let later = Requirements {
        expires: Some(T0 + 1 + 601),
        ..ask("ann")
    };
    assert_eq!(refused_on(&mut e, later), QuotaLimit::Lease);
    let a = e.request(at(1), ask("ann")).unwrap();
    assert_eq!(e.allocation(&a).unwrap().expires, T0 + 1 + 600);
    let err = e.set_expires(at(2), a, T0 + 1 + 601).unwrap_err();
    assert!(
        matches!(
            err,
            Error::QuotaExceeded(crate::quota::QuotaExceeded {
                limit: QuotaLimit::Lease,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(e.set_expires(at(2), a, T0 + 1 + 300), Ok(T0 + 1 + 300));
}

#[test]
fn a_users_own_limits_win_over_groups_and_groups_over_the_default() {
    let mut e = static_resources(6, 0);
    let one = |n| only(QuotaLimit::Allocations, n);
    let policy = Policy {
        default: one(3),
        groups: [(
            "students".to_owned(),
            Group {
                members: vec!["ann".into(), "bob".into()],
                limits: one(1),
            },
        )]
        .into(),
        users: [("bob".to_owned(), one(2))].into(),
    };
    e.set_quotas(at(0), Some(policy)).unwrap();
    let placed = |e: &mut Engine, user: &str| {
        let ids: Vec<Uuid> = (0..4)
            .map(|_| e.request(at(1), ask(user)).unwrap())
            .collect();
        let out = drain(e);
        ids.iter()
            .filter(|id| ready_on(&out, **id).is_some())
            .count()
    };
    assert_eq!(placed(&mut e, "ann"), 1);
    assert_eq!(placed(&mut e, "bob"), 2);
    assert_eq!(placed(&mut e, "cat"), 3);
}

#[test]
fn loosening_the_policy_places_waiting_requests_and_replay_reproduces_it() {
    let mut e = static_resources(2, 0);
    let before = e.snapshot();
    e.take_records();
    let one = only(QuotaLimit::Allocations, 1);
    let policy = Policy {
        default: one,
        ..Policy::default()
    };
    e.set_quotas(at(0), Some(policy)).unwrap();
    e.request(at(1), ask("ann")).unwrap();
    let a2 = e.request(at(1), ask("ann")).unwrap();
    drain(&mut e);
    let json = serde_json::to_string(&e.snapshot()).unwrap();
    let mut restored = Engine::restore(
        &serde_json::from_str(&json).unwrap(),
        Box::new(SeededIds::new(0)),
    )
    .unwrap();
    assert_eq!(restored.snapshot(), e.snapshot());
    assert_eq!(
        queued_for(&restored.current_outputs(&a2), a2),
        Some(Some(QuotaLimit::Allocations)),
        "holdings are counted again on restore"
    );
    e.set_quotas(at(2), None).unwrap();
    assert!(ready_on(&drain(&mut e), a2).is_some());
    let mut replayed = Engine::restore(&before, Box::new(SeededIds::new(0))).unwrap();
    for r in &e.take_records() {
        replayed.apply(r).unwrap();
    }
    assert_eq!(replayed.snapshot(), e.snapshot());
}

/// The `quota` finding of `why`, if any: its count and sentence.
fn quota_finding(why: &crate::Explanation) -> Option<(u64, &str)> {
    why.findings
        .iter()
        .find(|f| f.reason == crate::Reason::Quota)
        .map(|f| (f.count, f.message.as_str()))
}

#[test]
fn free_resources_a_limit_keeps_from_a_user_are_a_quota_finding() {
    let mut e = limited(3, 0, only(QuotaLimit::Allocations, 1));
    let a = e.request(at(1), ask("ann")).unwrap();
    let a2 = e.request(at(1), ask("ann")).unwrap();
    drain(&mut e);
    let why = e.explain_allocation(&a2).unwrap();
    assert_eq!((why.matching_resources, why.free), (3, 0), "{why:?}");
    assert_eq!(
        quota_finding(&why),
        Some((
            2,
            "2 of 3 matching resources are free but would put ann over the limit of concurrent allocations (1)"
        ))
    );
    let reasons: Vec<_> = why.findings.iter().map(|f| f.reason).collect();
    assert_eq!(reasons, [crate::Reason::Quota, crate::Reason::Allocated]);
    assert_eq!(e.explain(&ask("ann")).unwrap(), why, "a dry run as ann");
    let bob = e.explain(&ask("bob")).unwrap();
    assert_eq!((bob.free, quota_finding(&bob)), (2, None));
    let anyone = e.explain(&ask("")).unwrap();
    assert_eq!(
        (anyone.free, quota_finding(&anyone)),
        (2, None),
        "no username"
    );
    e.release(at(2), a).unwrap();
    assert!(ready_on(&drain(&mut e), a2).is_some());
    e.release(at(3), a2).unwrap();
    drain(&mut e);
    assert_eq!(quota_finding(&e.explain(&ask("ann")).unwrap()), None);
}

#[test]
fn free_resources_with_more_gpus_than_a_user_has_left_are_a_quota_finding() {
    let mut e = static_resources(3, 2);
    let policy = Policy {
        default: only(QuotaLimit::Gpus, 3),
        ..Policy::default()
    };
    e.set_quotas(at(0), Some(policy)).unwrap();
    e.request(at(1), ask("ann")).unwrap();
    drain(&mut e);
    let why = e.explain(&ask("ann")).unwrap();
    assert_eq!(why.free, 0, "{why:?}");
    assert_eq!(
        quota_finding(&why),
        Some((
            2,
            "2 of 3 matching resources are free but would put ann over the limit of GPUs held (3)"
        ))
    );
}

/// The quota refusal told to `id` among `outputs`, if any: its limit, the limit's value and
/// what the request needs of it.
fn quota_refused(outputs: &[Output], id: Uuid) -> Option<(QuotaLimit, u64, u64)> {
    outputs.iter().find_map(|o| match o {
        Output::QuotaRefused {
            allocation_id,
            refusal,
        } if *allocation_id == id => Some((refusal.limit, refusal.max, refusal.asked)),
        _ => None,
    })
}

/// [`ask`] for `count` resources at once.
fn ask_many(user: &str, count: u32) -> Requirements {
    Requirements { count, ..ask(user) }
}

/// Sets `policy` a second after the requests and drains what that said.
fn change_policy(e: &mut Engine, policy: Policy) -> Vec<Output> {
    e.set_quotas(at(2), Some(policy)).unwrap();
    drain(e)
}

#[test]
fn tightening_the_policy_refuses_waiting_requests_that_could_never_fit_and_replay_reproduces_it() {
    let mut e = static_resources(2, 0);
    let before = e.snapshot();
    e.take_records();
    let bob = e.request(at(1), ask_many("bob", 2)).unwrap();
    let four = e.request(at(1), ask_many("ann", 4)).unwrap();
    let two = e.request(at(1), ask_many("ann", 2)).unwrap();
    let cat = e.request(at(1), ask_many("cat", 4)).unwrap();
    let dan = e.request(at(1), ask("dan")).unwrap();
    let gpus = Requirements {
        gpu: Some(GpuRequirement {
            label: None,
            min_memory_gb: 0,
            count: 2,
        }),
        ..ask("eve")
    };
    let eve = e.request(at(1), gpus).unwrap();
    assert!(ready_on(&drain(&mut e), bob).is_some());
    let users = [
        ("ann".to_owned(), only(QuotaLimit::Resources, 2)),
        ("dan".to_owned(), only(QuotaLimit::Allocations, 0)),
        ("eve".to_owned(), only(QuotaLimit::Gpus, 1)),
    ];
    let out = change_policy(
        &mut e,
        Policy {
            users: users.into(),
            ..Policy::default()
        },
    );
    let refused = [
        (four, QuotaLimit::Resources, 2, 4),
        (dan, QuotaLimit::Allocations, 0, 1),
        (eve, QuotaLimit::Gpus, 1, 2),
    ];
    for (id, limit, max, asked) in refused {
        assert_eq!(quota_refused(&out, id), Some((limit, max, asked)));
        let a = e.allocation(&id).unwrap();
        assert_eq!(a.state, AllocationState::Cancelled, "{id} ended");
        let mine = |o: &&Output| o.recipient() == Recipient::Client(id);
        let last = out.iter().rev().find(mine);
        assert!(last.is_some_and(Output::is_final), "{id}: {last:?}");
    }
    for id in [two, cat] {
        assert_eq!(quota_refused(&out, id), None, "{id} could still fit");
        assert_eq!(e.allocation(&id).unwrap().state, AllocationState::Queued);
    }
    e.release(at(3), bob).unwrap();
    let served = drain(&mut e);
    assert!(ready_on(&served, two).is_some(), "ann's count 2 fits");
    let mut replayed = Engine::restore(&before, Box::new(SeededIds::new(0))).unwrap();
    for r in &e.take_records() {
        replayed.apply(r).unwrap();
    }
    // Draining reports the positions, as it did for the engine replayed.
    let again = drain(&mut replayed);
    assert_eq!(quota_refused(&again, four), quota_refused(&out, four));
    assert_eq!(replayed.snapshot(), e.snapshot());
}

#[test]
fn a_waiting_request_asking_a_lease_over_a_new_limit_is_refused_and_a_default_one_is_capped() {
    let mut e = static_resources(1, 0);
    let bob = e.request(at(1), ask("bob")).unwrap();
    let lasting = |secs| Requirements {
        duration_seconds: Some(secs),
        ..ask("ann")
    };
    let long = e.request(at(1), lasting(3600)).unwrap();
    let short = e.request(at(1), lasting(900)).unwrap();
    let until = Requirements {
        expires: Some(T0 + 1 + 2000),
        ..ask("ann")
    };
    let until = e.request(at(1), until).unwrap();
    let default = e.request(at(1), ask("ann")).unwrap();
    drain(&mut e);
    let lease = Policy {
        default: only(QuotaLimit::Lease, 1000),
        ..Policy::default()
    };
    let out = change_policy(&mut e, lease);
    let long_refused = quota_refused(&out, long);
    assert_eq!(long_refused, Some((QuotaLimit::Lease, 1000, 3600)));
    let until_refused = quota_refused(&out, until);
    let counted = "an absolute end counts from now";
    assert_eq!(
        until_refused,
        Some((QuotaLimit::Lease, 1000, 1999)),
        "{counted}"
    );
    for id in [short, default] {
        assert_eq!(quota_refused(&out, id), None, "{id} fits");
    }
    // Served in turn: the default lease is capped to the new limit, as for a new request.
    let ready_after = |e: &mut Engine, held: Uuid, secs: u64, id: Uuid| {
        e.release(at(secs), held).unwrap();
        assert!(ready_on(&drain(e), id).is_some(), "{id} is served");
        e.allocation(&id).unwrap().expires - (T0 + secs)
    };
    assert_eq!(ready_after(&mut e, bob, 3, short), 900);
    assert_eq!(ready_after(&mut e, short, 4, default), 1000);
}

/// Setting the policy in force again records nothing (a reload of an unchanged file), but
/// time still moves: a lease that ended meanwhile expires.
#[test]
fn the_same_policy_again_records_nothing_and_time_still_moves() {
    let mut e = limited(1, 0, only(QuotaLimit::Allocations, 2));
    let policy = e.quotas().cloned();
    let id = e
        .request(
            at(1),
            Requirements {
                duration_seconds: Some(10),
                ..ask("ann")
            },
        )
        .unwrap();
    drain(&mut e);
    e.take_records();
    e.set_quotas(at(20), policy.clone()).unwrap();
    assert!(
        !e.take_records()
            .iter()
            .any(|r| matches!(r.input, Input::SetQuotas { .. })),
        "an unchanged policy is not recorded"
    );
    assert!(drain(&mut e)
        .iter()
        .any(|o| matches!(o, Output::Expired { allocation_id } if *allocation_id == id)));
    assert_eq!(e.quotas(), policy.as_ref());
    e.set_quotas(at(21), None).unwrap();
    assert!(e
        .take_records()
        .iter()
        .any(|r| matches!(r.input, Input::SetQuotas { policy: None })));
}
