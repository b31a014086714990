//! Quotas: requests over a limit wait without blocking others, impossible ones are refused.

use super::*;
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
        Err(Error::QuotaExceeded { limit, .. }) => limit,
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
            Error::QuotaExceeded {
                limit: QuotaLimit::Lease,
                ..
            }
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
