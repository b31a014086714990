//! Holding back what a change makes visible (a `ready`, a release, an HTTP 200) until the
//! journal records of that change are on disk.

use std::collections::VecDeque;

/// Deliveries in the order they were made, each waiting for the records appended before it.
///
/// Without a journal nothing is ever appended, so every delivery passes straight through.
#[derive(Debug)]
pub struct Holdback<T> {
    queue: VecDeque<(u64, T)>,
    /// Deliveries popped so far: the ticket of the one at the front of `queue`.
    popped: u64,
    /// The sequence number of the last record appended.
    appended: u64,
    /// The sequence number of the last record on disk.
    durable: u64,
}

impl<T> Holdback<T> {
    /// An empty holdback after record `seq`, which is on disk.
    pub fn new(seq: u64) -> Self {
        Holdback {
            queue: VecDeque::new(),
            popped: 0,
            appended: seq,
            durable: seq,
        }
    }

    /// Records up to `seq` are appended: deliveries from now on wait for them.
    pub fn appended(&mut self, seq: u64) {
        self.appended = self.appended.max(seq);
    }

    /// Hands `item` back when it may be delivered now (nothing it depends on is pending and
    /// nothing is ahead of it); otherwise keeps it and returns its ticket (see
    /// [`Holdback::held_mut`]).
    pub fn pass(&mut self, item: T) -> Result<T, u64> {
        if self.queue.is_empty() && self.durable >= self.appended {
            Ok(item)
        } else {
            self.queue.push_back((self.appended, item));
            Err(self.popped + self.queue.len() as u64 - 1)
        }
    }

    /// The held delivery with this ticket, while it is still held.
    pub fn held_mut(&mut self, ticket: u64) -> Option<&mut T> {
        let index = usize::try_from(ticket.checked_sub(self.popped)?).ok()?;
        self.queue.get_mut(index).map(|(_, item)| item)
    }

    /// Records up to `seq` are on disk.
    pub fn durable(&mut self, seq: u64) {
        self.durable = self.durable.max(seq);
    }

    /// The next held delivery whose records are on disk, in order.
    pub fn pop_ready(&mut self) -> Option<T> {
        match self.queue.front() {
            Some(&(seq, _)) if seq <= self.durable => {
                self.popped += 1;
                self.queue.pop_front().map(|(_, item)| item)
            }
            _ => None,
        }
    }

    /// How many deliveries wait.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// How many appended records are not on disk yet.
    pub fn in_flight(&self) -> u64 {
        self.appended - self.durable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_wait_for_their_records_and_keep_their_order() {
        let mut hold = Holdback::new(5);
        assert_eq!(hold.pass("early"), Ok("early"), "nothing pending");
        hold.appended(6);
        assert_eq!(hold.pass("a"), Err(0));
        hold.appended(8);
        assert_eq!(hold.pass("b"), Err(1));
        assert_eq!(hold.in_flight(), 3);
        hold.durable(7);
        assert_eq!(hold.pop_ready(), Some("a"));
        assert_eq!(hold.pop_ready(), None, "b waits for record 8");
        assert_eq!(hold.pass("c"), Err(2), "c may not overtake b");
        hold.durable(8);
        assert_eq!(hold.pop_ready(), Some("b"));
        assert_eq!(hold.pop_ready(), Some("c"));
        assert_eq!(hold.len(), 0);
        assert_eq!(hold.pass("d"), Ok("d"));
    }

    #[test]
    fn a_held_delivery_can_be_replaced_in_place_until_it_is_popped() {
        let mut hold = Holdback::new(0);
        hold.appended(1);
        assert_eq!(hold.pass("a"), Err(0));
        assert_eq!(hold.pass("b"), Err(1));
        *hold.held_mut(1).unwrap() = "b2";
        hold.durable(1);
        assert_eq!(hold.pop_ready(), Some("a"));
        assert_eq!(hold.held_mut(0), None, "popped");
        assert_eq!(hold.pop_ready(), Some("b2"));
        assert_eq!(hold.held_mut(1), None);
        assert_eq!(hold.held_mut(7), None, "never held");
    }
}
