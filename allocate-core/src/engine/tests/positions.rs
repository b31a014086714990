//! Queue positions are reported once per drain: a batch of inputs tells each moved request
//! its latest position, once.

use super::*;

/// An engine whose one resource is held, with `n` requests waiting behind it.
fn waiting(n: u64) -> (Engine, Vec<Uuid>) {
    let mut e = engine();
    e.register_agent(at(0), agent(1), vec![res(&["x"], 4, &[], Some("h"))])
        .unwrap();
    e.request(at(0), want(&["x"], 600)).unwrap();
    let ids = (0..n)
        .map(|_| e.request(at(1), want(&["x"], 600)).unwrap())
        .collect();
    (e, ids)
}

#[test]
fn a_batch_of_departures_tells_each_remaining_request_its_latest_position_once() {
    let (mut e, w) = waiting(1_000);
    let first = positions(&drain(&mut e));
    assert_eq!(
        first.len(),
        1_000,
        "each new request hears its position once"
    );
    assert_eq!(first[999], (w[999], 1_000));
    // Every other request leaves, front first: without coalescing, each leaving would
    // re-send the position of everyone behind it (about 250,000 messages).
    for id in w.iter().step_by(2) {
        e.client_gone(at(2), *id).unwrap();
    }
    let out = drain(&mut e);
    let moved = positions(&out);
    let expected: Vec<(Uuid, u32)> = w.iter().skip(1).step_by(2).copied().zip(1..).collect();
    assert_eq!(
        moved, expected,
        "one message per moved request, its final position"
    );
    let released = out
        .iter()
        .filter(|o| matches!(o, Output::Released { .. }))
        .count();
    assert_eq!(released, 500);
    let queued_at = out.iter().position(|o| matches!(o, Output::Queued { .. }));
    assert_eq!(
        queued_at,
        Some(500),
        "positions come after the batch's other outputs"
    );
    assert_eq!(e.allocation(&w[999]).unwrap().position, Some(500));
    assert!(positions(&drain(&mut e)).is_empty(), "nothing moved since");
}

#[test]
fn requests_that_leave_before_the_drain_hear_nothing_and_a_late_one_moves_alone() {
    let (mut e, w) = waiting(10_000);
    drain(&mut e);
    for id in &w[..9_999] {
        e.client_gone(at(2), *id).unwrap();
    }
    let moved = positions(&drain(&mut e));
    assert_eq!(moved, vec![(w[9_999], 1)]);
    let late = e.request(at(3), want(&["x"], 600)).unwrap();
    e.client_gone(at(3), w[9_999]).unwrap();
    assert_eq!(positions(&drain(&mut e)), vec![(late, 1)]);
}

#[test]
fn a_request_placed_or_timed_out_within_the_batch_is_never_told_a_position() {
    let (mut e, w) = waiting(2);
    drain(&mut e);
    let third = e.request(at(2), want(&["x"], 1)).unwrap();
    e.client_gone(at(2), w[0]).unwrap();
    e.handle_timeout(at(3));
    let out = drain(&mut e);
    assert!(out.contains(&Output::TimedOut {
        allocation_id: third,
        explain: None
    }));
    assert_eq!(positions(&out), vec![(w[1], 1)]);
}

#[test]
fn with_an_interval_moves_wait_for_its_end_and_a_new_request_hears_its_place_at_once() {
    let (mut e, w) = waiting(4);
    e.set_position_report_ms(1_000);
    let start = at(1);
    let ms = |n: u64| start.add_millis(n);
    assert_eq!(
        positions(&drain(&mut e)).len(),
        4,
        "first positions at once"
    );
    let deadline = e.poll_timeout();

    e.client_gone(ms(100), w[0]).unwrap();
    assert!(positions(&drain(&mut e)).is_empty(), "the move waits");
    assert_eq!(e.poll_timeout(), Some(ms(1_000)));
    let late = e.request(ms(200), want(&["x"], 600)).unwrap();
    assert_eq!(
        positions(&drain(&mut e)),
        vec![(late, 4)],
        "a new request is told its place at once, the others still wait"
    );
    e.client_gone(ms(300), w[1]).unwrap();
    assert!(positions(&drain(&mut e)).is_empty());

    e.handle_timeout(ms(1_000));
    assert_eq!(
        positions(&drain(&mut e)),
        vec![(w[2], 1), (w[3], 2), (late, 3)],
        "each moved request hears its latest place, once"
    );
    assert_eq!(e.allocation(&w[3]).unwrap().position, Some(2));
    assert_eq!(e.poll_timeout(), deadline, "nothing held back any more");

    // The next interval counts from that report.
    e.client_gone(ms(1_500), w[2]).unwrap();
    assert!(positions(&drain(&mut e)).is_empty());
    assert_eq!(e.poll_timeout(), Some(ms(2_000)));
    e.handle_timeout(ms(2_000));
    assert_eq!(positions(&drain(&mut e)), vec![(w[3], 1), (late, 2)]);
}

#[test]
fn with_an_interval_a_move_after_a_quiet_spell_is_told_at_once() {
    let (mut e, w) = waiting(2);
    e.set_position_report_ms(1_000);
    drain(&mut e);
    e.client_gone(at(5), w[0]).unwrap();
    assert_eq!(positions(&drain(&mut e)), vec![(w[1], 1)]);
}
