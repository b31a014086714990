//! Requests waiting for a resource: arrival order overall, grouped by what they need.

use crate::criteria::Criteria;
use crate::hash::FxMap;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// The waiting requests.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// Arrival order -> (request, the position it was last told).
    order: BTreeMap<u64, (Uuid, u32)>,
    /// Requests with equal needs, by arrival order. Groups are never empty.
    groups: FxMap<Criteria, BTreeSet<(u64, Uuid)>>,
    /// The earliest arrival order whose position may have changed since positions were
    /// last reported: every request before it has been told its current position.
    dirty_from: Option<u64>,
    /// Requests never told a position, by arrival order.
    untold: BTreeSet<u64>,
}

impl Queue {
    /// Number of waiting requests.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Adds a request; `seq` is its arrival order, kept across a failed provision so it goes back in front.
    pub fn push(&mut self, seq: u64, id: Uuid, criteria: &Criteria, position_sent: u32) {
        self.order.insert(seq, (id, position_sent));
        if position_sent == 0 {
            self.untold.insert(seq);
        }
        self.groups
            .entry(criteria.clone())
            .or_default()
            .insert((seq, id));
        self.touch(seq);
    }

    /// Removes a request.
    pub fn remove(&mut self, seq: u64, id: Uuid, criteria: &Criteria) {
        self.order.remove(&seq);
        self.untold.remove(&seq);
        if let Some(group) = self.groups.get_mut(criteria) {
            group.remove(&(seq, id));
            if group.is_empty() {
                self.groups.remove(criteria);
            }
        }
        self.touch(seq);
    }

    /// The positions from arrival order `seq` on may have changed.
    fn touch(&mut self, seq: u64) {
        self.dirty_from = Some(self.dirty_from.map_or(seq, |d| d.min(seq)));
    }

    /// The earliest waiting request whose needs pass `fits` and that `accept` takes.
    pub fn first_waiting(
        &self,
        fits: impl Fn(&Criteria) -> bool,
        mut accept: impl FnMut(Uuid) -> bool,
    ) -> Option<(u64, Uuid, &Criteria)> {
        let mut best: Option<(u64, Uuid, &Criteria)> = None;
        for (criteria, group) in &self.groups {
            if !fits(criteria) {
                continue;
            }
            let bound = best.map_or(u64::MAX, |b| b.0);
            let first = group
                .iter()
                .take_while(|(seq, _)| *seq < bound)
                .find(|(_, id)| accept(*id));
            if let Some(&(seq, id)) = first {
                best = Some((seq, id, criteria));
            }
        }
        best
    }

    /// The first waiting request to arrive after arrival order `seq` (from the start: 0).
    pub fn next_after(&self, seq: u64) -> Option<(u64, Uuid)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let mut after = self.order.range((Excluded(seq), Unbounded));
        after.next().map(|(&seq, &(id, _))| (seq, id))
    }

    /// The waiting request whose needs pass `fits`, that `accept` takes, and whose `rank`
    /// (arrival order last in it, so ranks never tie) is the least; unlike
    /// [`Queue::first_waiting`] it visits every such request, since ranks need not follow
    /// arrival order.
    pub fn least_ranked<R: Ord>(
        &self,
        fits: impl Fn(&Criteria) -> bool,
        mut accept: impl FnMut(Uuid) -> bool,
        rank: impl Fn(u64, Uuid) -> R,
    ) -> Option<(u64, Uuid)> {
        let mut best: Option<(R, u64, Uuid)> = None;
        for (criteria, group) in &self.groups {
            if !fits(criteria) {
                continue;
            }
            for &(seq, id) in group {
                let r = rank(seq, id);
                if best.as_ref().is_some_and(|b| b.0 <= r) || !accept(id) {
                    continue;
                }
                best = Some((r, seq, id));
            }
        }
        best.map(|(_, seq, id)| (seq, id))
    }

    /// The requests whose position changed since the last call, with their new position and
    /// whether it is the first one they are told.
    /// Only the requests from the earliest change on are visited: those before it were told
    /// their position by an earlier call and it has not moved since.
    pub fn position_changes(&mut self) -> Vec<(Uuid, u32, bool)> {
        self.untold.clear();
        let Some(from) = self.dirty_from.take() else {
            return Vec::new();
        };
        let before = self.order.range(..from).next_back();
        let mut position = before.map_or(0, |(_, &(_, sent))| sent);
        let mut changes = Vec::new();
        for (id, sent) in self.order.range_mut(from..).map(|(_, entry)| entry) {
            position = position.saturating_add(1);
            if *sent != position {
                changes.push((*id, position, *sent == 0));
                *sent = position;
            }
        }
        changes
    }

    /// The requests never told a position, with their current one (and `true`: it is their
    /// first), leaving the moves of the others for [`Queue::position_changes`]. Counted from
    /// the back: a new request is usually the last.
    pub fn first_positions(&mut self) -> Vec<(Uuid, u32, bool)> {
        let untold = std::mem::take(&mut self.untold);
        let len = self.order.len();
        untold
            .into_iter()
            .filter_map(|seq| {
                let behind = self.order.range(seq + 1..).count();
                let (id, sent) = self.order.get_mut(&seq)?;
                *sent = u32::try_from(len - behind).unwrap_or(u32::MAX);
                Some((*id, *sent, true))
            })
            .collect()
    }

    /// The waiting requests in arrival order.
    pub fn in_order(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.order.values().map(|&(id, _)| id)
    }

    /// Whether some request may have moved since positions were last reported.
    pub fn moved(&self) -> bool {
        self.dirty_from.is_some()
    }

    /// The position last reported to a request.
    pub fn position_sent(&self, seq: u64) -> Option<u32> {
        self.order.get(&seq).map(|&(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Requirements;

    fn criteria(tag: &str) -> Criteria {
        let mut r = Requirements::for_user("u");
        r.tags = vec![tag.into()];
        Criteria::of(&r)
    }

    #[test]
    fn earliest_fitting_request_wins_across_groups() {
        let mut q = Queue::default();
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        q.push(1, a, &criteria("big"), 0);
        q.push(2, b, &criteria("small"), 0);
        q.push(3, c, &criteria("small"), 0);
        let hit = q.first_waiting(|c| c.tags == ["small"], |_| true).unwrap();
        assert_eq!((hit.0, hit.1), (2, b));
        let hit = q.first_waiting(|_| true, |id| id != a).unwrap();
        assert_eq!(hit.1, b, "a vetoed request is skipped");
        assert_eq!(q.first_waiting(|_| true, |_| true).unwrap().1, a);
    }

    #[test]
    fn positions_are_reported_once_per_change() {
        let mut q = Queue::default();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        q.push(1, a, &criteria("x"), 0);
        q.push(2, b, &criteria("x"), 0);
        assert_eq!(q.position_changes(), vec![(a, 1, true), (b, 2, true)]);
        assert!(q.position_changes().is_empty());
        q.remove(1, a, &criteria("x"));
        assert_eq!(q.position_changes(), vec![(b, 1, false)]);
        assert_eq!(q.len(), 1);
        q.remove(2, b, &criteria("x"));
        assert!(q.first_waiting(|_| true, |_| true).is_none());
        assert!(q.groups.is_empty());
    }

    #[test]
    fn only_requests_behind_the_earliest_change_are_visited() {
        let mut q = Queue::default();
        let ids: Vec<Uuid> = (1..=5).map(Uuid::from_u128).collect();
        for (seq, id) in (1..).zip(&ids) {
            q.push(seq, *id, &criteria("x"), 0);
        }
        assert_eq!(q.position_changes().len(), 5);
        q.remove(4, ids[3], &criteria("x"));
        q.remove(2, ids[1], &criteria("x"));
        assert_eq!(q.dirty_from, Some(2));
        assert_eq!(
            q.position_changes(),
            vec![(ids[2], 2, false), (ids[4], 3, false)]
        );
        q.push(6, Uuid::from_u128(6), &criteria("x"), 0);
        assert_eq!(q.position_changes(), vec![(Uuid::from_u128(6), 4, true)]);
        q.remove(6, Uuid::from_u128(6), &criteria("x"));
        assert!(
            q.position_changes().is_empty(),
            "nobody behind the last one"
        );
        assert_eq!(q.position_sent(5), Some(3));
    }
}
