//! The engine's pending deadlines, earliest first.

use super::Timer;
use crate::time::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A deadline: when, and what for.
pub(super) type Deadline = (Timestamp, Timer);

/// Pending deadlines, each at most once, in the order of `(instant, timer)`: the earliest at
/// hand.
///
/// A binary heap with lazy removal, so that adding a deadline (one per request) is a push onto
/// an array, not an insert into a tree or a set of every pending deadline: a removed deadline
/// stays in the heap until it comes to the top and is dropped there. Whether a deadline is
/// still pending is asked of its owner (the allocation's or the resource's own deadline,
/// through `pending`), so no second record of them is kept. The top is always pending, and
/// the heap is rebuilt once most of it is stale.
#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Deadline>>,
    /// How many deadlines in the heap are pending.
    pending: usize,
}

impl Timers {
    /// Adds a deadline that is not pending.
    pub fn insert(&mut self, deadline: Deadline) {
        self.heap.push(Reverse(deadline));
        self.pending += 1;
    }

    /// Takes out a deadline that its owner has just given up, so that `pending` no longer
    /// holds it.
    pub fn remove(&mut self, pending: impl Fn(&Deadline) -> bool) {
        self.pending -= 1;
        self.drop_stale(pending);
    }

    /// The earliest pending deadline.
    pub fn first(&self) -> Option<&Deadline> {
        self.heap.peek().map(|Reverse(deadline)| deadline)
    }

    /// Takes out the earliest pending deadline, and any stale copy of it (one removed, then
    /// set again).
    pub fn pop_first(&mut self, pending: impl Fn(&Deadline) -> bool) -> Option<Deadline> {
        let Reverse(first) = self.heap.pop()?;
        self.pending -= 1;
        while self.heap.peek().is_some_and(|Reverse(top)| *top == first) {
            self.heap.pop();
        }
        self.drop_stale(pending);
        Some(first)
    }

    /// Drops removed deadlines from the top, and rebuilds the heap once they are most of it.
    fn drop_stale(&mut self, pending: impl Fn(&Deadline) -> bool) {
        if self.heap.len() > 2 * self.pending + 64 {
            self.rebuild(&pending);
        }
        while let Some(Reverse(top)) = self.heap.peek() {
            if pending(top) {
                break;
            }
            self.heap.pop();
        }
    }

    /// Keeps only the pending deadlines, each once (a deadline removed and set again left a
    /// copy behind that its owner also calls pending), and counts them again.
    fn rebuild(&mut self, pending: impl Fn(&Deadline) -> bool) {
        let mut kept = std::mem::take(&mut self.heap).into_vec();
        kept.retain(|Reverse(deadline)| pending(deadline));
        kept.sort_unstable();
        kept.dedup();
        self.pending = kept.len();
        self.heap = BinaryHeap::from(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use uuid::Uuid;

    /// Random inserts, removals and pops agree with a `BTreeSet` (which is also what tells a
    /// pending deadline), through rebuilds.
    #[test]
    fn timers_behave_as_an_ordered_set() {
        let (mut timers, mut set) = (Timers::default(), BTreeSet::new());
        let mut x: u64 = 1;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = Timestamp::from_secs(x % 50);
            let id = Uuid::from_u128(u128::from((x >> 8) % 40));
            let timer = if x & 1 == 0 {
                Timer::Allocation(id)
            } else {
                Timer::Release(id)
            };
            match (x >> 20) % 4 {
                0 | 1 => {
                    if set.insert((at, timer)) {
                        timers.insert((at, timer));
                    }
                }
                2 => {
                    if set.remove(&(at, timer)) {
                        timers.remove(|d| set.contains(d));
                    }
                }
                _ => {
                    let first = set.pop_first();
                    assert_eq!(timers.pop_first(|d| set.contains(d)), first);
                }
            }
            assert_eq!(timers.first(), set.first());
        }
        while let Some(first) = set.pop_first() {
            assert_eq!(timers.pop_first(|d| set.contains(d)), Some(first));
        }
        assert_eq!(timers.pop_first(|_| false), None);
    }

    /// A deadline given up and set again many times leaves copies that its owner calls
    /// pending; a rebuild keeps one of them and counts the pending ones again, so the heap
    /// shrinks back to what is pending.
    #[test]
    fn a_rebuild_keeps_one_copy_of_each_pending_deadline() {
        let mut timers = Timers::default();
        let early = (
            Timestamp::from_secs(1),
            Timer::Allocation(Uuid::from_u128(1)),
        );
        let late = (
            Timestamp::from_secs(9),
            Timer::Allocation(Uuid::from_u128(2)),
        );
        timers.insert(early);
        // `late` is never at the top, so each removal leaves its copy in the heap.
        for _ in 0..500 {
            timers.insert(late);
            timers.remove(|d| *d == early);
        }
        timers.insert(late);
        let pending = |d: &Deadline| *d == early || *d == late;
        timers.rebuild(pending);
        assert_eq!((timers.heap.len(), timers.pending), (2, 2));
        assert_eq!(timers.pop_first(pending), Some(early));
        assert_eq!(timers.pop_first(|d| *d == late), Some(late));
        assert_eq!(timers.pop_first(|_| false), None);
    }
}
