//! Holding back what a change makes visible (a `ready`, a release, an HTTP 200) until the
//! journal records of that change are on disk.

use std::collections::VecDeque;

/// Deliveries in the order they were made, each waiting for the records appended before it.
///
/// Without a journal nothing is ever appended, so every delivery passes straight through.
#[derive(Debug)]
pub struct Holdback<T> {
    queue: VecDeque<(u64, T)>,
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
            appended: seq,
            durable: seq,
        }
    }

    /// Records up to `seq` are appended: deliveries from now on wait for them.
    pub fn appended(&mut self, seq: u64) {
        self.appended = self.appended.max(seq);
    }

    /// Hands `item` back when it may be delivered now (nothing it depends on is pending and
    /// nothing is ahead of it); otherwise keeps it.
    pub fn pass(&mut self, item: T) -> Option<T> {
        if self.queue.is_empty() && self.durable >= self.appended {
            Some(item)
        } else {
            self.queue.push_back((self.appended, item));
            None
        }
    }

    /// Records up to `seq` are on disk.
    pub fn durable(&mut self, seq: u64) {
        self.durable = self.durable.max(seq);
    }

    /// The next held delivery whose records are on disk, in order.
    pub fn pop_ready(&mut self) -> Option<T> {
        match self.queue.front() {
            Some(&(seq, _)) if seq <= self.durable => self.queue.pop_front().map(|(_, item)| item),
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
        assert_eq!(hold.pass("early"), Some("early"), "nothing pending");
        hold.appended(6);
        assert_eq!(hold.pass("a"), None);
        hold.appended(8);
        assert_eq!(hold.pass("b"), None);
        assert_eq!(hold.in_flight(), 3);
        hold.durable(7);
        assert_eq!(hold.pop_ready(), Some("a"));
        assert_eq!(hold.pop_ready(), None, "b waits for record 8");
        assert_eq!(hold.pass("c"), None, "c may not overtake b");
        hold.durable(8);
        assert_eq!(hold.pop_ready(), Some("b"));
        assert_eq!(hold.pop_ready(), Some("c"));
        assert_eq!(hold.len(), 0);
        assert_eq!(hold.pass("d"), Some("d"));
    }
}
