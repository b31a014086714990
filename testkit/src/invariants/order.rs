//! The order-and-starvation invariants (README, "Order and starvation"), checked against a
//! model of the rule worked out here from the snapshot, apart from the engine's own code:
//! the front of the queue, the resources held for it, and when it could start.

use super::{holds, View};
use crate::reference;
use allocate_core::{
    AllocationSnapshot, AllocationState, Order, Requirements, ResourceState, Timestamp,
};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// The front of the queue and the latest time it could start (`None`: not known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Front {
    pub(crate) id: Uuid,
    pub(crate) could_start: Option<Timestamp>,
}

/// When waiting `a` gives up: its wait, or an absolute lease end if earlier.
fn give_up(a: &AllocationSnapshot) -> Timestamp {
    match a.lease_secs {
        Some(_) => a.wait_until,
        None => a.wait_until.min(a.expires),
    }
}

impl View<'_> {
    /// Whether resource `id` is in service: online, not in error or maintenance, not retiring.
    fn in_service(&self, id: Uuid) -> bool {
        let (_, online, r) = self.resources[&id];
        online && r.error.is_none() && r.maintenance.is_none() && !r.retiring
    }

    /// Whether the registered resources (but retiring ones) could ever serve `a`: those with
    /// a static connection, plus one per agent of the others.
    fn feasible(&self, a: &AllocationSnapshot) -> bool {
        let (mut statics, mut agents) = (0, BTreeSet::new());
        for e in &self.inventory {
            let (agent, _, r) = self.resources[&e.inventory_id];
            if r.retiring || !reference::satisfies(&a.requirements, e) {
                continue;
            }
            if r.spec.connection.is_some() {
                statics += 1;
            } else {
                agents.insert(agent);
            }
        }
        statics + agents.len() >= a.requirements.count as usize
    }

    /// Resources held by each user's live allocations.
    pub(crate) fn held_by_user(&self) -> BTreeMap<&str, u32> {
        let mut held = BTreeMap::new();
        for a in self.allocations.values() {
            if matches!(
                a.state,
                AllocationState::Provisioning | AllocationState::Ready
            ) {
                *held.entry(a.requirements.username.as_str()).or_default() +=
                    holds(a).count() as u32;
            }
        }
        held
    }

    /// The front: the first waiting request in `order` that the registered resources could
    /// serve and whose wait is not over (strict scenarios have no quotas).
    pub(crate) fn front(&self, order: Order, provision_timeout_ms: u64) -> Option<Front> {
        let held = self.held_by_user();
        let rank = |a: &AllocationSnapshot| match order {
            Order::Arrival => (0, a.seq),
            Order::FairShare => (
                held.get(a.requirements.username.as_str())
                    .copied()
                    .unwrap_or(0),
                a.seq,
            ),
        };
        let a = self
            .allocations
            .values()
            .filter(|a| a.state == AllocationState::Queued && give_up(a) > self.now)
            .filter(|a| self.feasible(a))
            .min_by_key(|a| rank(a))?;
        Some(Front {
            id: a.allocation_id,
            could_start: self.could_start(a, provision_timeout_ms),
        })
    }

    /// Whether free resource `id` is one the front `a` may have.
    fn held_for(&self, a: &AllocationSnapshot, id: Uuid) -> bool {
        let e = self.entry(id);
        let (agent, _, r) = self.resources[&id];
        r.occupant.is_none()
            && self.in_service(id)
            && reference::eligible(&a.requirements, e, self.picky)
            && !self.cleaning_up(a.allocation_id, agent)
    }

    /// The `missing`-th earliest end among the leases on the in-service resources `a` could
    /// use, `missing` being its count less the free ones it may have.
    fn could_start(&self, a: &AllocationSnapshot, provision_timeout_ms: u64) -> Option<Timestamp> {
        let (mut free, mut ends) = (0u32, Vec::new());
        for e in &self.inventory {
            let id = e.inventory_id;
            if !reference::satisfies(&a.requirements, e) || !self.in_service(id) {
                continue;
            }
            let (_, _, r) = self.resources[&id];
            let Some(occupant) = r.occupant else {
                free += u32::from(self.held_for(a, id));
                continue;
            };
            let holder = self.allocations.get(&occupant).filter(|_| !r.releasing);
            ends.push(match holder.map(|h| (h.state, h.lease_secs, h.expires)) {
                Some((AllocationState::Provisioning, Some(_), end)) => {
                    end.add_millis(provision_timeout_ms)
                }
                Some((AllocationState::Provisioning | AllocationState::Ready, _, end)) => end,
                _ => self.now,
            });
        }
        let missing = a.requirements.count.saturating_sub(free) as usize;
        if missing == 0 {
            return Some(self.now);
        }
        ends.sort_unstable();
        ends.get(missing - 1).copied()
    }

    /// Whether giving resource `inventory_id` to request `id` was a backfill for one of the
    /// `fronts` (before and after the step): the resource suits that front, which may have
    /// it, and `id`'s lease ends by the time the front could start.
    pub(crate) fn backfilled(
        &self,
        id: Uuid,
        inventory_id: Uuid,
        fronts: [Option<Front>; 2],
    ) -> bool {
        let Some(a) = self.allocations.get(&id) else {
            return false;
        };
        let (agent, _, _) = self.resources[&inventory_id];
        fronts.into_iter().flatten().any(|f| {
            let Some(front) = self.allocations.get(&f.id).filter(|_| f.id != id) else {
                return false;
            };
            front.requirements.count > 1
                && reference::eligible(&front.requirements, self.entry(inventory_id), self.picky)
                && !self.cleaning_up(f.id, agent)
                && f.could_start.is_some_and(|t| a.expires <= t)
        })
    }

    /// The resources shown `reserved` are exactly the free ones the front may have, and then
    /// only while the front asks for several (a single one takes what it may have).
    pub(crate) fn check_reserved(&self, front: Option<Front>) {
        let front = front.map(|f| self.allocations[&f.id]);
        for e in &self.inventory {
            let (_, _, r) = self.resources[&e.inventory_id];
            let held = front.is_some_and(|a| self.held_for(a, e.inventory_id));
            if e.state == ResourceState::Reserved {
                assert!(r.occupant.is_none(), "reserved {} is held", e.inventory_id);
            }
            if e.state == ResourceState::Reserved || e.state == ResourceState::Free {
                assert_eq!(
                    e.state == ResourceState::Reserved,
                    held,
                    "{} shows {:?}; front {:?}",
                    e.inventory_id,
                    e.state,
                    front.map(|a| a.allocation_id)
                );
            }
        }
        if let Some(a) = front.filter(|a| a.requirements.count == 1) {
            let free = self
                .inventory
                .iter()
                .any(|e| self.held_for(a, e.inventory_id));
            assert!(
                !free,
                "single front {} waits beside a resource for it",
                a.allocation_id
            );
        }
    }

    /// Whether `front`, the front after the step, was the front all through it: no other
    /// request that waited before or after it (`queued`: those waiting before) could have
    /// ranked before it at any moment of it. Only fair-share ranks move within a step: a
    /// placement raises what its user holds, so the front may pass to another request and
    /// back (README, "Order and starvation": it "may lose the front"), and what was held for
    /// it goes on down the order meanwhile. What a user holds at any moment of the step lies
    /// between what it holds after, less what it was given in the step (`placed`), and what
    /// it held before (`held`), plus that (each placement gives `count`). Arrival ranks never
    /// move.
    pub(crate) fn front_steady(
        &self,
        front: Option<Front>,
        placed: &BTreeMap<Uuid, Uuid>,
        held: &BTreeMap<String, u32>,
        queued: &BTreeMap<Uuid, (u64, Requirements)>,
        order: Order,
    ) -> bool {
        let front = front.and_then(|f| self.allocations.get(&f.id));
        let Some(f) = front.filter(|_| order == Order::FairShare) else {
            return true;
        };
        let mut given: BTreeMap<&str, u32> = BTreeMap::new();
        for a in placed.keys().filter_map(|id| self.allocations.get(id)) {
            *given.entry(a.requirements.username.as_str()).or_default() += a.requirements.count;
        }
        let after = self.held_by_user();
        let of = |m: &BTreeMap<&str, u32>, user: &str| m.get(user).copied().unwrap_or(0);
        let least = |user: &str| of(&after, user).saturating_sub(of(&given, user));
        let most = |user: &str| held.get(user).copied().unwrap_or(0) + of(&given, user);
        let latest = (most(&f.requirements.username), f.seq);
        let waiting = self.allocations.values().filter(|a| {
            a.state == AllocationState::Queued || queued.contains_key(&a.allocation_id)
        });
        waiting
            .filter(|a| a.allocation_id != f.allocation_id)
            .filter(|a| give_up(a) > self.now && self.feasible(a))
            .all(|a| (least(&a.requirements.username), a.seq) > latest)
    }

    /// A resource that was held for the front `before` the step went to that front, to a
    /// request before it in the order (fair-share: a user holding less), or to a request
    /// whose lease ends by the time it could start (backfill), while it stays the front
    /// (`after`) and waits.
    pub(crate) fn check_backfills(
        &self,
        placed: &BTreeMap<Uuid, Uuid>,
        reserved: &BTreeSet<Uuid>,
        order: Order,
        (before, after): (Option<Front>, Option<Front>),
    ) {
        let Some(front) = before.filter(|b| after.is_some_and(|a| a.id == b.id)) else {
            return;
        };
        let until = front.could_start.max(after.and_then(|a| a.could_start));
        let held = self.held_by_user();
        let holding = |a: &AllocationSnapshot| {
            held.get(a.requirements.username.as_str())
                .copied()
                .unwrap_or(0)
        };
        let f = self.allocations[&front.id];
        for id in placed.keys().filter(|id| **id != front.id) {
            // Forgotten already (a small `ended_allocations_max`): nothing left to check.
            let Some(a) = self.allocations.get(id) else {
                continue;
            };
            // Its rank when it was placed: what its user holds, less what it got.
            let rank = (holding(a) - holds(a).count() as u32, a.seq);
            if order == Order::FairShare && rank < (holding(f), f.seq) {
                continue;
            }
            for inventory_id in holds(a).filter(|i| reserved.contains(i)) {
                let end = a.expires;
                assert!(
                    until.is_some_and(|t| end <= t),
                    "{inventory_id}, held for {}, went to {id} whose lease ends at {end}, \
                     after {until:?}",
                    front.id
                );
            }
        }
    }
}
