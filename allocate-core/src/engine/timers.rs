//! The engine's pending deadlines, earliest first.

use super::Timer;
use crate::hash::FxSet;
use crate::time::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A deadline: when, and what for.
type Deadline = (Timestamp, Timer);

/// Pending deadlines, each at most once, in the order of `(instant, timer)`: a set with the
/// earliest at hand.
///
/// A binary heap with lazy removal, so that adding a deadline (one per request) is a push onto
/// an array, not an insert into a tree of every pending deadline: a removed deadline stays in
/// the heap, no longer in `pending`, until it comes to the top and is dropped there. The top is
/// always pending, and the heap is rebuilt once most of it is stale.
#[derive(Debug, Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Deadline>>,
    pending: FxSet<Deadline>,
}

impl Timers {
    /// Adds a deadline (nothing if it is pending already).
    pub fn insert(&mut self, deadline: Deadline) {
        if self.pending.insert(deadline) {
            self.heap.push(Reverse(deadline));
        }
    }

    /// Takes a deadline out (nothing if it is not pending).
    pub fn remove(&mut self, deadline: &Deadline) {
        if self.pending.remove(deadline) {
            self.drop_stale();
        }
    }

    /// The earliest pending deadline.
    pub fn first(&self) -> Option<&Deadline> {
        self.heap.peek().map(|Reverse(deadline)| deadline)
    }

    /// Takes out the earliest pending deadline.
    pub fn pop_first(&mut self) -> Option<Deadline> {
        let Reverse(first) = self.heap.pop()?;
        self.pending.remove(&first);
        self.drop_stale();
        Some(first)
    }

    /// Drops removed deadlines from the top, and rebuilds the heap once they are most of it.
    fn drop_stale(&mut self) {
        if self.heap.len() > 2 * self.pending.len() + 64 {
            self.heap = self.pending.iter().copied().map(Reverse).collect();
        }
        while let Some(Reverse(top)) = self.heap.peek() {
            if self.pending.contains(top) {
                break;
            }
            self.heap.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use uuid::Uuid;

    /// Random inserts, removals and pops agree with a `BTreeSet`, through rebuilds.
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
                    timers.insert((at, timer));
                    set.insert((at, timer));
                }
                2 => {
                    timers.remove(&(at, timer));
                    set.remove(&(at, timer));
                }
                _ => assert_eq!(timers.pop_first(), set.pop_first()),
            }
            assert_eq!(timers.first(), set.first());
        }
        while let Some(first) = set.pop_first() {
            assert_eq!(timers.pop_first(), Some(first));
        }
        assert_eq!(timers.pop_first(), None);
    }
}
