//! Order and starvation (README, "Order and starvation"): which waiting request comes first,
//! the front of the queue, the resources held for it, and backfill.
//!
//! Nothing here is stored: the front follows from the queue, the inventory, the quotas and
//! the time, so a restored or replayed engine has the same front and the same reservations.

use super::quotas::gpus_of;
use super::{lifecycle::avoided, Allocation, Engine};
use crate::config::Order;
use crate::criteria::Criteria;
use crate::hash::FxMap;
use crate::inventory::{Resource, Slot};
use crate::policy::{Candidate, MatchPolicy};
use crate::quota::Quotas;
use crate::time::Timestamp;
use crate::view::AllocationState;
use uuid::Uuid;

/// A waiting request's place in the order: resources its user holds (0 in arrival order),
/// then arrival. Ranks never tie.
pub(super) type Rank = (u32, u64);

/// The front of the queue: the first waiting request, in the order, that the registered
/// resources could serve, whose quota lets it be placed now and whose wait is not over.
#[derive(Clone, Debug)]
pub(super) struct Front {
    pub id: Uuid,
    pub rank: Rank,
    pub count: u32,
    pub criteria: Criteria,
}

/// What deciding whether a resource is held for the front reads.
pub(super) struct Hold<'a> {
    front: &'a Front,
    a: &'a Allocation,
    policy: Option<&'a dyn MatchPolicy>,
    quotas: Option<&'a Quotas>,
    abandoned: &'a FxMap<Uuid, Vec<Uuid>>,
}

impl<'a> Hold<'a> {
    /// What deciding whether a resource is held for `front` reads, from the engine's parts
    /// (so that the inventory stays free to borrow mutably).
    pub fn new(
        front: &'a Front,
        allocations: &'a FxMap<Uuid, Box<Allocation>>,
        policy: Option<&'a dyn MatchPolicy>,
        quotas: Option<&'a Quotas>,
        abandoned: &'a FxMap<Uuid, Vec<Uuid>>,
    ) -> Self {
        Hold {
            front,
            a: &allocations[&front.id],
            policy,
            quotas,
            abandoned,
        }
    }

    /// Whether free `r` is held for the front: it suits the front, which may have it (its
    /// policy, its cleanups and its user's GPU quota allow it).
    pub fn holds(&self, r: &Resource) -> bool {
        let a = self.a;
        let candidate = Candidate {
            inventory_id: r.id,
            agent_id: r.agent_id,
            spec: &r.spec,
        };
        self.front.criteria.matches(&r.spec)
            && !avoided(self.abandoned, a.id).contains(&r.agent_id)
            && self
                .policy
                .is_none_or(|p| !p.veto(&a.requirements, &candidate))
            && self
                .quotas
                .is_none_or(|q| q.allows(&a.requirements, gpus_of(r)))
    }
}

impl Engine {
    /// The rank of `a` in the order in force.
    pub(super) fn rank(&self, a: &Allocation) -> Rank {
        match self.config.order {
            Order::Arrival => (0, a.seq),
            Order::FairShare => {
                let held = self.held.get(&a.requirements.username).copied();
                (held.unwrap_or(0), a.seq)
            }
        }
    }

    /// Counts what `a` holds (`resources` of them) as taken or given back by its user, for
    /// fair-share order (nothing is counted in arrival order).
    pub(super) fn held_change(&mut self, user: &str, resources: u32, taken: bool) {
        if self.config.order != Order::FairShare {
            return;
        }
        let held = self.held.entry(user.to_owned()).or_default();
        *held = if taken {
            held.saturating_add(resources)
        } else {
            held.saturating_sub(resources)
        };
        if *held == 0 {
            self.held.remove(user);
        }
    }

    /// The front of the queue now (see [`Front`]). In arrival order a walk from the queue's
    /// start, which mostly stops at its first request; in fair-share order a pass over the
    /// queue for the least rank (one more for each request passed over).
    pub(super) fn front(&mut self) -> Option<Front> {
        if self.config.order == Order::FairShare {
            let mut waiting: Vec<(Rank, Uuid)> = self
                .queue
                .in_order()
                .map(|id| (self.rank(&self.allocations[&id]), id))
                .collect();
            // The least rank first, taken out until one may be the front: one pass over the
            // queue when the first may (no sort of the whole queue).
            while let Some(i) = (0..waiting.len()).min_by_key(|&i| waiting[i].0) {
                let (_, id) = waiting.swap_remove(i);
                if let Some(front) = self.front_if(id) {
                    return Some(front);
                }
            }
            return None;
        }
        let mut seq = 0;
        while let Some((next, id)) = self.queue.next_after(seq) {
            if let Some(front) = self.front_if(id) {
                return Some(front);
            }
            seq = next;
        }
        None
    }

    /// Waiting request `id` as the front, if it may be one: the registered resources could
    /// serve it, its quota lets it be placed now, and its wait is not over.
    fn front_if(&mut self, id: Uuid) -> Option<Front> {
        let a = &self.allocations[&id];
        if a.give_up() <= self.now || self.quota_block(&a.requirements).is_some() {
            return None;
        }
        if !self.feasible(id) {
            return None;
        }
        let a = &self.allocations[&id];
        Some(Front {
            id,
            rank: self.rank(a),
            count: a.requirements.count,
            criteria: a.criteria.clone(),
        })
    }

    /// Whether the registered resources could ever serve waiting request `id` (remembered
    /// while the registered resources stay the same).
    fn feasible(&mut self, id: Uuid) -> bool {
        let generation = self.inventory.generation();
        if self.feasible.0 != generation {
            self.feasible = (generation, FxMap::default());
        }
        if let Some(&known) = self.feasible.1.get(&id) {
            return known;
        }
        let a = &self.allocations[&id];
        let could = self
            .inventory
            .could_serve(&a.criteria, a.requirements.count);
        // Bounded: forgotten in full rather than grown past the waiting requests.
        if self.feasible.1.len() > self.queue.len().max(64) {
            self.feasible.1.clear();
        }
        self.feasible.1.insert(id, could);
        could
    }

    /// What deciding whether a resource is held for `front` reads.
    pub(super) fn hold<'a>(&'a self, front: &'a Front) -> Hold<'a> {
        let (policy, quotas) = (self.policy.as_deref(), self.quotas.as_deref());
        Hold::new(front, &self.allocations, policy, quotas, &self.abandoned)
    }

    /// The front, if it comes before request `id` in the order: the resources held for it are
    /// not `id`'s (but by backfill).
    pub(super) fn front_before(&mut self, id: Uuid) -> Option<Front> {
        let front = self.front()?;
        let rank = self.rank(&self.allocations[&id]);
        (front.id != id && front.rank < rank).then_some(front)
    }

    /// The latest time by which request `a`'s lease ends if it is placed now: its `expires`,
    /// or for a lease counted from `ready`, the provision deadline plus its length.
    pub(super) fn latest_end(&self, a: &Allocation) -> Timestamp {
        match a.lease_secs {
            Some(secs) => self
                .now
                .add_millis(self.config.provision_timeout_ms)
                .add_secs(secs),
            None => a.expires,
        }
    }

    /// Whether request `id` may backfill the resources held for `front`: `front` asks for
    /// several, and `id`'s lease ends by the time the front could start.
    pub(super) fn may_backfill(&mut self, front: &Front, id: Uuid) -> bool {
        if front.count <= 1 {
            return false;
        }
        let Some(start) = self.could_start(front) else {
            return false;
        };
        self.latest_end(&self.allocations[&id]) <= start
    }

    /// When the front could start at the latest, as the leases stand: with `missing` the
    /// resources it still lacks (`count` less the free ones held for it), the `missing`-th
    /// earliest end among the leases on the other resources it could use that are in service
    /// (online, not in error or maintenance, not retiring). `None` when fewer leases than
    /// that will end.
    pub(super) fn could_start(&mut self, front: &Front) -> Option<Timestamp> {
        let slots = self.inventory.matching(&front.criteria);
        let hold = self.hold(front);
        let mut free = 0u32;
        let mut ends = Vec::new();
        for slot in slots {
            let r = self.inventory.get(slot);
            if !r.online || r.error.is_some() || r.maintenance.is_some() || r.retiring {
                continue;
            }
            match r.occupant {
                None => free += u32::from(hold.holds(r)),
                Some(occupant) => ends.push(self.lease_end_of(r, occupant)),
            }
        }
        let missing = front.count.saturating_sub(free) as usize;
        if missing == 0 {
            return Some(self.now);
        }
        ends.sort_unstable();
        ends.get(missing - 1).copied()
    }

    /// The latest time occupied `r` is given back, as far as leases say: now while it is
    /// being released or its holder's deadline has come (a provision timing out at this very
    /// instant whose timer is yet to fire), else the end of its holder's lease (for one being
    /// provisioned with a lease counted from `ready`, that lease's latest end).
    fn lease_end_of(&self, r: &Resource, occupant: Uuid) -> Timestamp {
        let Some(a) = self.allocations.get(&occupant).filter(|_| !r.releasing) else {
            return self.now;
        };
        if a.deadline.is_some_and(|d| d <= self.now) {
            return self.now;
        }
        match a.state {
            AllocationState::Provisioning if a.lease_secs.is_some() => {
                a.expires.add_millis(self.config.provision_timeout_ms)
            }
            AllocationState::Provisioning | AllocationState::Ready => a.expires,
            _ => self.now,
        }
    }

    /// `front` had a resource left held for it although it is not the front the last input
    /// ended with: remembered until the input ends (see [`Engine::settle_front`]).
    pub(super) fn held_for_interim(&mut self, front: Front) {
        let settled = self.front.as_ref().map(|f| f.id);
        if settled != Some(front.id) && !self.interim.contains(&front.criteria) {
            self.interim.push(front.criteria);
        }
    }

    /// Whether free `r` is held for the front, as the last settled front says (for views).
    pub(super) fn reserved(&self, r: &Resource) -> bool {
        // Asked in the middle of an input too (a 408's explanation), when the front may have
        // ended since, and even been forgotten.
        let waits = |f: &Front| {
            self.allocations
                .get(&f.id)
                .is_some_and(|a| a.state == AllocationState::Queued)
        };
        self.front
            .as_ref()
            .filter(|f| waits(f))
            .is_some_and(|f| r.placeable() && self.hold(f).holds(r))
    }

    /// Keeps the front's reservations true after an input: while the front changes (it was
    /// served or left, or fair-share ranks moved), the free resources held for the old front
    /// and those that suit the new one are offered again, in registration order. A front that
    /// stayed (or came back to) the same within the input is offered what it may have once
    /// enough is free for it: it may have moved away and back while that freed. At most one
    /// round per waiting request, plus one.
    pub(super) fn settle_front(&mut self) {
        for _ in 0..=self.queue.len() {
            let front = self.front();
            let same = front.as_ref().map(|f| f.id) == self.front.as_ref().map(|f| f.id);
            let old = std::mem::replace(&mut self.front, front);
            let mut slots: Vec<(u64, Slot)> = Vec::new();
            // What was left held for a front of a moment within the input goes round again.
            for criteria in std::mem::take(&mut self.interim) {
                for slot in self.inventory.candidates(&criteria, usize::MAX, |_| true) {
                    slots.push((self.inventory.get(slot).seq, slot));
                }
            }
            if same && slots.is_empty() {
                let Some(f) = &self.front else {
                    return;
                };
                let (policy, quotas) = (self.policy.as_deref(), self.quotas.as_deref());
                let hold = Hold::new(f, &self.allocations, policy, quotas, &self.abandoned);
                let count = f.count as usize;
                let free = self
                    .inventory
                    .candidates(&f.criteria, count, |r| hold.holds(r));
                if free.len() < count {
                    return;
                }
                slots.extend(free.into_iter().map(|s| (self.inventory.get(s).seq, s)));
            }
            if !same {
                for f in old.iter().chain(&self.front) {
                    for slot in self.inventory.candidates(&f.criteria, usize::MAX, |_| true) {
                        slots.push((self.inventory.get(slot).seq, slot));
                    }
                }
            }
            slots.sort_unstable();
            slots.dedup();
            for (_, slot) in slots {
                if self.inventory.is_live(slot) {
                    self.offer(slot);
                }
            }
            let stays = self.front().map(|f| f.id) == self.front.as_ref().map(|f| f.id);
            if same && stays && self.interim.is_empty() {
                // Offered once: what is left, it cannot take together (one per agent).
                return;
            }
        }
        self.front = self.front();
        self.interim.clear();
    }
}
