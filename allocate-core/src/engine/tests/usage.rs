//! Usage over time: what ended allocations held is kept for the retention period, in the
//! snapshot too, and summed per user, label or resource.

use super::*;
use crate::usage::{UsageBy, UsageQuery};

fn by(by: UsageBy) -> UsageQuery {
    UsageQuery {
        by,
        ..UsageQuery::default()
    }
}

/// An engine with one static resource (`x`, `gpu`; two T4s) and one without a GPU (`x`).
fn lab() -> Engine {
    let mut e = engine();
    let resources = vec![
        res(
            &["x", "gpu"],
            8,
            &[("Tesla T4", 16), ("Tesla T4", 16)],
            Some("g"),
        ),
        res(&["x"], 4, &[], Some("c")),
    ];
    e.register_agent(at(0), agent(1), resources).unwrap();
    e
}

#[test]
fn ended_and_held_allocations_count_from_ready_clipped_to_the_window() {
    let mut e = lab();
    let gpu = e.request(at(10), want(&["gpu"], 0)).unwrap();
    let mut bob = want(&["x"], 0);
    bob.username = "bob".into();
    e.request(at(20), bob).unwrap();
    e.release(at(110), gpu).unwrap();
    e.handle_timeout(at(120));
    let rows = e.usage(at(120), &by(UsageBy::User), None);
    let summary: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.key.as_str(),
                r.allocations,
                r.resource_seconds,
                r.gpu_seconds,
            )
        })
        .collect();
    // bob's is still held: counted up to now.
    assert_eq!(summary, [("bob", 1, 100, 0), ("ci", 1, 100, 200)]);
    let window = UsageQuery {
        from: Some(T0 + 60),
        to: Some(T0 + 90),
        by: UsageBy::Label,
    };
    let labels: Vec<_> = e
        .usage(at(120), &window, None)
        .iter()
        .map(|r| (r.key.clone(), r.resource_seconds, r.gpu_seconds))
        .collect();
    assert_eq!(
        labels,
        [("x".to_owned(), 60, 60), ("gpu".to_owned(), 30, 60)]
    );
    assert_eq!(e.usage(at(120), &by(UsageBy::User), Some("bob")).len(), 1);
    assert!(e.usage(at(120), &by(UsageBy::User), Some("eve")).is_empty());
}

#[test]
fn usage_is_kept_for_the_retention_period_and_in_the_snapshot() {
    let mut e = lab();
    e.set_usage_retention_secs(100);
    let first = e.request(at(0), want(&["gpu"], 0)).unwrap();
    e.release(at(10), first).unwrap();
    let snap = e.snapshot();
    assert_eq!(snap.usage.len(), 1);
    assert_eq!(snap.usage[0].gpu, ["Tesla T4", "Tesla T4"]);
    assert_eq!(snap.usage[0].outcome, AllocationState::Released);
    let mut restored = Engine::restore(&snap, Box::new(SeededIds::new(7))).unwrap();
    assert_eq!(restored.snapshot(), snap);
    assert_eq!(
        restored.usage(at(120), &by(UsageBy::Resource), None).len(),
        1
    );
    // 150 s after the first ended, a second ends: the first is past the retention.
    let second = restored.request(at(150), want(&["x"], 0)).unwrap();
    restored.handle_timeout(at(155));
    restored.release(at(160), second).unwrap();
    let kept = restored.snapshot().usage;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].allocation_id, second);
    // Never past the retention, even before the next end prunes.
    restored.handle_timeout(at(300));
    assert!(restored.usage(at(120), &by(UsageBy::User), None).is_empty());
}

#[test]
fn a_request_that_never_became_ready_leaves_no_usage() {
    let mut e = lab();
    let mut wants = want(&["nothing-has-this"], 60);
    wants.username = "waits".into();
    let id = e.request(at(0), wants).unwrap();
    e.release(at(5), id).unwrap();
    assert!(e.usage(at(120), &by(UsageBy::User), None).is_empty());
    assert!(e.snapshot().usage.is_empty());
}

#[test]
fn records_of_a_resource_share_its_spec_which_goes_with_the_last_of_them() {
    let mut e = lab();
    e.set_usage_retention_secs(100);
    for t in [0, 20] {
        let id = e.request(at(t), want(&["gpu"], 0)).unwrap();
        e.release(at(t + 10), id).unwrap();
    }
    let (specs, usernames) = e.usage_interned();
    assert_eq!((specs.len(), usernames), (2, 1));
    assert!(Arc::ptr_eq(&specs[0], &specs[1]));
    let gpu = specs[0].inventory_id.unwrap();
    let registered =
        |e: &Engine| Arc::clone(&e.inventory.get(e.inventory.slot_of(&gpu).unwrap()).spec);
    assert!(Arc::ptr_eq(&specs[0], &registered(&e)));
    // A restored engine's records share the restored inventory's spec likewise.
    let restored = Engine::restore(&e.snapshot(), Box::new(SeededIds::new(7))).unwrap();
    let (again, usernames) = restored.usage_interned();
    assert_eq!(usernames, 1);
    assert!(Arc::ptr_eq(&again[0], &again[1]));
    assert!(Arc::ptr_eq(&again[0], &registered(&restored)));
    let spec = Arc::downgrade(&specs[0]);
    drop(specs);
    // The agent drops the resource: its spec stays while records refer to it...
    e.register_agent(at(40), agent(1), vec![res(&["x"], 4, &[], Some("c"))])
        .unwrap();
    assert!(e.inventory.slot_of(&gpu).is_none());
    assert!(spec.upgrade().is_some());
    assert_eq!(e.usage_interned().0.len(), 2);
    // Restored, the records of a resource no longer registered share one spec made for them.
    let snap = e.snapshot();
    let restored = Engine::restore(&snap, Box::new(SeededIds::new(7))).unwrap();
    let (made, _) = restored.usage_interned();
    assert!(Arc::ptr_eq(&made[0], &made[1]));
    assert_eq!(restored.snapshot(), snap);
    // ...and goes with the last of them, and so does the username they carried.
    e.handle_timeout(at(200));
    e.set_usage_retention_secs(100);
    assert!(spec.upgrade().is_none());
    assert_eq!(e.usage_interned(), (vec![], 0));
}
