//! Order and starvation: the front of the queue, the resources held for it, backfill, and
//! fair-share order.

use super::*;
use crate::config::{Limits, Order};

/// Two resources tagged `x` with static connections, on one agent.
fn two_statics(order: Order) -> (Engine, Vec<Uuid>) {
    let mut e = engine();
    e.config.order = order;
    let statics = vec![
        res(&["x"], 4, &[], Some("s1")),
        res(&["x"], 4, &[], Some("s2")),
    ];
    let ids = e.register_agent(at(0), agent(1), statics).unwrap();
    (e, ids)
}

/// A request of `user` for one `x` whose lease ends at `at(end)`, waiting up to an hour.
fn until(user: &str, end: u64) -> Requirements {
    Requirements {
        username: user.into(),
        expires: Some(T0 + end),
        ..want(&["x"], 3600)
    }
}

/// A request for `count` resources tagged `x`, waiting up to an hour.
fn several(count: u32) -> Requirements {
    Requirements {
        count,
        ..want(&["x"], 3600)
    }
}

fn state(e: &Engine, id: &Uuid) -> ResourceState {
    e.resource(id).unwrap().state
}

/// `s1` held until 100 and `s2` until 200; then a request for both waits (its bound: 200).
fn both_held_and_two_wanted() -> (Engine, Vec<Uuid>, Uuid) {
    let (mut e, ids) = two_statics(Order::Arrival);
    e.request(at(0), until("a", 100)).unwrap();
    e.request(at(0), until("b", 200)).unwrap();
    let big = e.request(at(1), several(2)).unwrap();
    drain(&mut e);
    (e, ids, big)
}

#[test]
fn a_request_for_two_is_served_by_its_bound_while_single_requests_keep_arriving() {
    let (mut e, ids, big) = both_held_and_two_wanted();
    let front = e.front().unwrap();
    assert_eq!((front.id, e.could_start(&front)), (big, Some(at(200))));
    // A single request every 5 seconds, each with a lease longer than the bound.
    let mut singles = Vec::new();
    for t in (2..=300).step_by(5) {
        singles.push(e.request(at(t), until("c", t + 500)).unwrap());
        let out = drain(&mut e);
        if t < 200 {
            assert!(singles.iter().all(|s| ready_on(&out, *s).is_none()), "{t}");
        }
        if (100..200).contains(&t) {
            assert_eq!(state(&e, &ids[0]), ResourceState::Reserved, "{t}");
        }
        if let Some(first) = ready_on(&out, big) {
            assert_eq!(first, ids[0]);
            assert_eq!(t, 202, "ready when the second lease ended (at 200)");
        }
    }
    let info = e.allocation(&big).unwrap();
    assert_eq!(info.state, AllocationState::Ready);
    assert_eq!(info.inventory_ids, ids);
}

#[test]
fn without_a_front_nothing_is_held_and_a_request_nothing_could_serve_is_no_front() {
    let (mut e, ids) = two_statics(Order::Arrival);
    e.request(at(0), until("a", 100)).unwrap();
    let three = e.request(at(1), several(3)).unwrap();
    assert!(
        e.front().is_none(),
        "two registered resources never serve three"
    );
    assert_eq!(state(&e, &ids[1]), ResourceState::Free);
    let single = e.request(at(2), until("c", 900)).unwrap();
    assert_eq!(ready_on(&drain(&mut e), single), Some(ids[1]));
    assert_eq!(e.allocation(&three).unwrap().state, AllocationState::Queued);
}

#[test]
fn reserved_resources_show_in_the_inventory_explain_and_stats_until_their_request_leaves() {
    let (mut e, ids, big) = both_held_and_two_wanted();
    e.handle_timeout(at(100));
    drain(&mut e);
    assert_eq!(state(&e, &ids[0]), ResourceState::Reserved);
    assert_eq!(e.stats().resources_by_state, [0, 1, 0, 0, 0, 1]);
    let filter = InventoryFilter::from_query([("state", "reserved")], &Limits::default()).unwrap();
    let listed: Vec<Uuid> = e
        .inventory_filtered(&filter)
        .map(|r| r.inventory_id)
        .collect();
    assert_eq!(listed, [ids[0]]);
    let filter = InventoryFilter::from_query([("state", "free")], &Limits::default()).unwrap();
    assert_eq!(
        e.inventory_filtered(&filter).count(),
        0,
        "reserved is not free"
    );
    let why = e.explain(&want(&["x"], 0)).unwrap();
    let reserved = why
        .findings
        .iter()
        .find(|f| f.reason == crate::Reason::Reserved);
    assert_eq!(reserved.map(|f| f.count), Some(1), "{why:?}");
    assert_eq!(why.free, 0);
    let waiting = e.request(at(101), until("c", 900)).unwrap();
    assert!(ready_on(&drain(&mut e), waiting).is_none());
    e.client_gone(at(102), big).unwrap();
    assert_eq!(
        ready_on(&drain(&mut e), waiting),
        Some(ids[0]),
        "once the front leaves, what was held for it goes to the next in line"
    );
}

#[test]
fn backfill_takes_a_held_resource_exactly_when_its_lease_ends_by_the_front_could_start() {
    let (mut e, ids) = two_statics(Order::Arrival);
    e.request(at(0), until("a", 100)).unwrap();
    let big = e.request(at(1), several(2)).unwrap();
    drain(&mut e);
    assert_eq!(state(&e, &ids[1]), ResourceState::Reserved);
    // Ends at 101, after the front could start (100): it waits.
    let late = e.request(at(2), until("c", 101)).unwrap();
    assert!(ready_on(&drain(&mut e), late).is_none());
    // Ends at 100 exactly: it may have the held resource.
    let fits = e.request(at(3), until("d", 100)).unwrap();
    assert_eq!(ready_on(&drain(&mut e), fits), Some(ids[1]));
    e.release(at(4), fits).unwrap();
    assert_eq!(state(&e, &ids[1]), ResourceState::Reserved, "held again");
    assert!(ready_on(&drain(&mut e), late).is_none());
    // A lease counted from `ready` ends at the latest at now + provision timeout (5 s) +
    // its length: 10 + 5 + 85 = 100 fits, one second more does not.
    let long = Requirements {
        duration_seconds: Some(86),
        ..until("e", 0)
    };
    let long = e
        .request(
            at(10),
            Requirements {
                expires: None,
                ..long
            },
        )
        .unwrap();
    assert!(ready_on(&drain(&mut e), long).is_none());
    let short = Requirements {
        duration_seconds: Some(85),
        expires: None,
        ..until("f", 0)
    };
    let short = e.request(at(10), short).unwrap();
    assert_eq!(ready_on(&drain(&mut e), short), Some(ids[1]));
    // When the first lease ends, the front gets both; the backfill is not in its way.
    e.release(at(20), short).unwrap();
    e.handle_timeout(at(100));
    let out = drain(&mut e);
    assert_eq!(ready_on(&out, big), Some(ids[0]));
    assert_eq!(e.allocation(&big).unwrap().inventory_ids, ids);
}

#[test]
fn a_backfill_does_not_delay_the_front_past_its_bound() {
    let (mut e, ids, big) = both_held_and_two_wanted();
    e.handle_timeout(at(100));
    drain(&mut e);
    let front = e.front().unwrap();
    assert_eq!(e.could_start(&front), Some(at(200)));
    let fill = e.request(at(101), until("c", 200)).unwrap();
    assert_eq!(ready_on(&drain(&mut e), fill), Some(ids[0]));
    assert_eq!(
        e.could_start(&front),
        Some(at(200)),
        "unchanged by the backfill"
    );
    e.handle_timeout(at(200));
    assert_eq!(ready_on(&drain(&mut e), big), Some(ids[0]));
}

#[test]
fn a_provision_timing_out_at_the_same_instant_is_no_lease_to_backfill_on() {
    // Two provisions time out at 5 s; the front's fires first (ids ascend), and frees its two
    // static resources, held for it again. The other holder's lease (to 200) is not one it
    // waits on: its provision is due to fail at that very instant, so nothing backfills.
    let mut e = Engine::new(engine().config().clone(), Box::new(Ascending(0)));
    let statics = vec![
        res(&["x"], 4, &[], Some("s1")),
        res(&["x"], 4, &[], Some("s2")),
    ];
    let ids = e.register_agent(at(0), agent(1), statics).unwrap();
    e.register_agent(at(0), agent(2), vec![res(&["x"], 4, &[], None)])
        .unwrap();
    let big = e.request(at(0), several(3)).unwrap();
    e.register_agent(at(0), agent(3), vec![res(&["x"], 4, &[], None)])
        .unwrap();
    let other = e.request(at(0), until("b", 200)).unwrap();
    let waiter = e.request(at(0), until("c", 100)).unwrap();
    drain(&mut e);
    for id in [big, other] {
        assert_eq!(
            e.allocation(&id).unwrap().state,
            AllocationState::Provisioning
        );
    }
    e.handle_timeout(at(5));
    assert!(ready_on(&drain(&mut e), waiter).is_none());
    assert_eq!(
        e.allocation(&waiter).unwrap().state,
        AllocationState::Queued
    );
    for id in &ids {
        assert_eq!(state(&e, id), ResourceState::Reserved);
    }
}

#[test]
fn fair_share_serves_the_user_holding_least_and_arrival_the_earliest() {
    for order in [Order::Arrival, Order::FairShare] {
        let (mut e, ids) = two_statics(order);
        let a1 = e.request(at(0), until("alice", 100)).unwrap();
        e.request(at(0), until("alice", 200)).unwrap();
        let alice = e.request(at(1), until("alice", 900)).unwrap();
        let bob = e.request(at(2), until("bob", 900)).unwrap();
        drain(&mut e);
        e.release(at(3), a1).unwrap();
        let out = drain(&mut e);
        let (first, second) = match order {
            Order::Arrival => (alice, bob),
            Order::FairShare => (bob, alice),
        };
        assert_eq!(ready_on(&out, first), Some(ids[0]), "{order:?}");
        assert!(ready_on(&out, second).is_none(), "{order:?}");
        let position = e.allocation(&second).unwrap().position;
        assert_eq!(position, Some(1), "{order:?}");
    }
}

#[test]
fn fair_share_holds_for_the_front_in_its_order() {
    let (mut e, ids) = two_statics(Order::FairShare);
    let a1 = e.request(at(0), until("alice", 100)).unwrap();
    let a2 = e.request(at(0), until("alice", 200)).unwrap();
    let bob = e.request(at(1), several(2)).unwrap();
    let alice = e.request(at(1), until("alice", 900)).unwrap();
    drain(&mut e);
    e.release(at(2), a1).unwrap();
    assert!(ready_on(&drain(&mut e), alice).is_none());
    assert_eq!(state(&e, &ids[0]), ResourceState::Reserved, "held for bob");
    e.release(at(3), a2).unwrap();
    let out = drain(&mut e);
    assert_eq!(ready_on(&out, bob), Some(ids[0]));
    assert!(ready_on(&out, alice).is_none());
}

#[test]
fn reservations_are_the_same_after_a_snapshot_a_restore_and_a_replay() {
    for order in [Order::Arrival, Order::FairShare] {
        let (mut e, _) = two_statics(order);
        let before = e.snapshot();
        e.take_records();
        e.request(at(0), until("a", 100)).unwrap();
        e.request(at(0), until("b", 200)).unwrap();
        e.request(at(1), several(2)).unwrap();
        e.request(at(2), until("c", 900)).unwrap();
        e.handle_timeout(at(100));
        drain(&mut e);
        let listed = |e: &Engine| e.inventory().collect::<Vec<_>>();
        assert!(listed(&e)
            .iter()
            .any(|r| r.state == ResourceState::Reserved));
        let snapshot = e.snapshot();
        let stored = Snapshot::from_stored(snapshot.to_stored().unwrap().as_bytes()).unwrap();
        let mut restored = Engine::restore(&stored, Box::new(SeededIds::new(0))).unwrap();
        let mut replayed = Engine::restore(&before, Box::new(SeededIds::new(0))).unwrap();
        for r in &e.take_records() {
            replayed.apply(r).unwrap();
        }
        drain(&mut replayed);
        for other in [&mut restored, &mut replayed] {
            assert_eq!(listed(other), listed(&e), "{order:?}");
            assert_eq!(other.snapshot(), e.snapshot());
        }
        // And they go on alike: the same request is a backfill in each.
        let single = e.request(at(150), until("d", 200)).unwrap();
        assert!(ready_on(&drain(&mut e), single).is_some(), "{order:?}");
        let records = e.take_records();
        for other in [&mut restored, &mut replayed] {
            for r in &records {
                other.apply(r).unwrap();
            }
            assert!(ready_on(&drain(other), single).is_some(), "{order:?}");
            assert_eq!(other.snapshot(), e.snapshot());
        }
    }
}

#[test]
fn fair_share_counts_what_users_give_back_and_ties_go_by_arrival() {
    let mut e = engine();
    e.config.order = Order::FairShare;
    let statics = ["s1", "s2", "s3"].map(|h| res(&["x"], 4, &[], Some(h)));
    let ids = e.register_agent(at(0), agent(1), statics.to_vec()).unwrap();
    let a1 = e.request(at(0), until("alice", 100)).unwrap();
    e.request(at(0), until("alice", 100)).unwrap();
    e.request(at(0), until("bob", 100)).unwrap();
    let alice = e.request(at(1), until("alice", 900)).unwrap();
    let bob = e.request(at(2), until("bob", 900)).unwrap();
    drain(&mut e);
    // alice gives one back: she and bob hold one each, and she asked first.
    e.release(at(3), a1).unwrap();
    let out = drain(&mut e);
    assert_eq!(ready_on(&out, alice), Some(ids[0]));
    assert!(ready_on(&out, bob).is_none());
    let restored = Engine::restore(&e.snapshot(), Box::new(SeededIds::new(0))).unwrap();
    assert_eq!(
        restored.held, e.held,
        "holdings are counted again on restore"
    );
    assert_eq!(e.held.get("alice"), Some(&2));
}
