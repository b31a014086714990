//! How requests become allocations and end: placement, provisioning, leases, releases.

use super::order::{Front, Hold};
use super::quotas::gpus_of;
use super::{held_ids, Allocation, Engine};
use crate::config::Order;
use crate::criteria::Criteria;
use crate::error::{Error, Result};
use crate::hash::FxMap;
use crate::inventory::{off, Inventory, Resource, Slot};
use crate::model::{Connection, HeldResource, Requirements, ResourceSpec};
use crate::output::Output;
use crate::policy::{Candidate, MatchPolicy};
use crate::record::ProvisionResult;
use crate::time::Timestamp;
use crate::validate;
use crate::view::AllocationState;
use std::sync::Arc;
use uuid::Uuid;

impl Engine {
    pub(super) fn do_register(
        &mut self,
        agent_id: Uuid,
        specs: Vec<ResourceSpec>,
    ) -> Result<Vec<Uuid>> {
        validate::registration(&specs, &self.config.limits)?;
        let was_online = self.inventory.agent(&agent_id).is_some_and(|a| a.online);
        let held_gpus_before = self.held_gpus_of(agent_id);
        let registered = self
            .inventory
            .register(agent_id, specs, &mut self.next_seq)?;
        if self.held_gpus_of(agent_id) != held_gpus_before {
            // A held resource came back with other GPUs: its holder holds what it has now.
            self.count_holdings();
        }
        let slots = self.inventory.set_agent_online(agent_id, true);
        for slot in slots {
            if !was_online {
                self.came_online(slot);
            }
            self.inventory.settle(slot);
            self.offer(slot);
        }
        Ok(registered.ids)
    }

    /// With quotas: the GPU count of each held resource of `agent_id`, in slot order (empty
    /// without quotas, which need no recount).
    fn held_gpus_of(&self, agent_id: Uuid) -> Vec<(Slot, usize)> {
        // The quotas first: without them, not even the agent is looked up.
        if self.quotas.is_none() {
            return Vec::new();
        }
        let Some(agent) = self.inventory.agent(&agent_id) else {
            return Vec::new();
        };
        agent
            .slots
            .iter()
            .map(|&slot| (slot, self.inventory.get(slot)))
            .filter(|(_, r)| r.occupant.is_some())
            .map(|(slot, r)| (slot, r.spec.gpu.len()))
            .collect()
    }

    /// A resource's agent is back: tell its holder, and resend a release it never answered.
    fn came_online(&mut self, slot: Slot) {
        let r = self.inventory.get(slot);
        let Some(occupant) = r.occupant else { return };
        if r.releasing {
            let (agent_id, inventory_id) = (r.agent_id, r.id);
            self.send_release(slot, agent_id, occupant, inventory_id);
        } else if self
            .allocations
            .get(&occupant)
            .is_some_and(|a| a.state == AllocationState::Ready)
        {
            self.outputs.push_back(Output::Online {
                allocation_id: occupant,
            });
        }
    }

    pub(super) fn do_disconnect(&mut self, agent_id: Uuid) -> Result<()> {
        let agent = self
            .inventory
            .agent(&agent_id)
            .ok_or_else(|| Error::not_found("agent", agent_id))?;
        if !agent.online {
            return Ok(());
        }
        let slots = self.inventory.set_agent_online(agent_id, false);
        // All of them leave the free lists first, so that a request whose provision fails
        // below is not placed again on another resource of this agent.
        for &slot in &slots {
            self.inventory.settle(slot);
        }
        for slot in slots {
            // A failed provision of several may have removed another of its resources here
            // (one with a static connection that had left the agent's list).
            if !self.inventory.is_live(slot) {
                continue;
            }
            let r = self.inventory.get_mut(slot);
            let Some(occupant) = r.occupant else { continue };
            // A resource with a static connection among several needs no answer of its agent.
            let (inventory_id, provisioned) = (r.id, r.connection.is_none());
            if r.releasing {
                // The release is resent, with a fresh deadline, when the agent is back.
                if r.release_deadline.take().is_some() {
                    self.deadline_given_up();
                }
                continue;
            }
            match self.allocations.get(&occupant).map(|a| a.state) {
                Some(AllocationState::Provisioning) if provisioned => {
                    self.provision_failed(occupant, Some(inventory_id), None, true)
                }
                Some(AllocationState::Ready) => self.outputs.push_back(Output::Offline {
                    allocation_id: occupant,
                }),
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) fn do_request(&mut self, id: Uuid, req: Requirements) -> Result<()> {
        // A forgotten ended allocation may still be named by a release its agent has not
        // acknowledged: the id stays taken until then.
        if self.allocations.contains_key(&id) || self.releases.contains_key(&id) {
            return Err(Error::Conflict(format!(
                "allocation id {id} is already in use"
            )));
        }
        validate::requirements(&req, &self.config.limits)?;
        if req.allocation_timeout_seconds > self.config.wait_secs_max {
            return Err(Error::invalid(format!(
                "requirements.allocation_timeout_seconds {} is more than the limit of {}",
                req.allocation_timeout_seconds, self.config.wait_secs_max
            )));
        }
        let lease_quota = self.check_quota(&req)?;
        let wait_until = self.now.add_secs(req.allocation_timeout_seconds);
        let (expires, lease_secs) = match req.expires {
            Some(_) => (self.lease_end(req.expires, "requirements.expires")?, None),
            None => {
                let secs = match req.duration_seconds {
                    Some(secs) => secs
                        .min(self.config.lease_secs_max)
                        .min(lease_quota.unwrap_or(u64::MAX)),
                    None => self.default_lease(lease_quota),
                };
                (wait_until.add_secs(secs), Some(secs))
            }
        };
        self.next_seq += 1;
        let allocation = Box::new(Allocation {
            id,
            criteria: Criteria::of(&req),
            requirements: req,
            seq: self.next_seq,
            created: self.now,
            expires,
            lease_secs,
            wait_until,
            state: AllocationState::Queued,
            inventory_id: None,
            connection: None,
            ready_at: None,
            others: Vec::new(),
            deadline: None,
        });
        self.allocations.insert(id, allocation);
        self.place_or_queue(id);
        Ok(())
    }

    /// The effective lease end for a requested one: in the future, capped by the maximum lease.
    fn lease_end(&self, expires: Option<u64>, field: &str) -> Result<Timestamp> {
        let max = self.now.add_secs(self.config.lease_secs_max);
        let Some(secs) = expires else {
            return Ok(self.now.add_secs(self.config.lease_secs_default).min(max));
        };
        let at = Timestamp::from_secs(secs);
        if at <= self.now {
            return Err(Error::invalid(format!(
                "{field} {secs} is in the past (now is {})",
                self.now.as_secs()
            )));
        }
        Ok(at.min(max))
    }

    /// Places a waiting request on the best free resource (or the best several, for a
    /// `count` above 1), or queues it, or times it out.
    fn place_or_queue(&mut self, id: Uuid) {
        if self.try_place(id, false) {
            return;
        }
        let a = &self.allocations[&id];
        let give_up = a.give_up();
        if give_up <= self.now {
            return self.end(id, AllocationState::TimedOut, true);
        }
        let (seq, criteria) = (a.seq, a.criteria.clone());
        self.queue.push(seq, id, &criteria, 0);
        self.set_timer(id, Some(give_up));
    }

    /// Places request `id` on free resources if they are free now and its quota allows it,
    /// first taking it out of the queue if it is `queued`; returns whether it did. Resources
    /// held for the front of the queue are taken only by backfill, and only when no others
    /// will do.
    pub(super) fn try_place(&mut self, id: Uuid, queued: bool) -> bool {
        if self
            .quota_block(&self.allocations[&id].requirements)
            .is_some()
        {
            return false;
        }
        let front = self.front_before(id);
        if self.try_place_beside(id, queued, front.as_ref()) {
            return true;
        }
        match front {
            Some(front) if self.may_backfill(&front, id) => self.try_place_beside(id, queued, None),
            _ => false,
        }
    }

    /// [`Engine::try_place`] on resources other than those held for `front`, if given.
    fn try_place_beside(&mut self, id: Uuid, queued: bool, front: Option<&Front>) -> bool {
        if self.allocations[&id].requirements.count > 1 {
            let Some(slots) = self.gather(id, front) else {
                return false;
            };
            if queued {
                self.dequeue(id);
            }
            self.assign_several(id, &slots);
            return true;
        }
        let a = &self.allocations[&id];
        let gpus_left = self.gpus_left(&a.requirements);
        let (policy, quotas) = (self.policy.as_deref(), self.quotas.as_deref());
        let hold = front.map(|f| Hold::new(f, &self.allocations, policy, quotas, &self.abandoned));
        let chosen = {
            let avoid = off(avoided(&self.abandoned, id));
            let keep = |r: &Resource| {
                avoid(r)
                    && gpus_left.is_none_or(|left| gpus_of(r) <= left)
                    && hold.as_ref().is_none_or(|h| !h.holds(r))
            };
            let policy = self.policy.as_deref();
            let limit = self.config.policy_candidates_max;
            choose(&mut self.inventory, policy, limit, a, keep)
        };
        let Some(slot) = chosen else {
            return false;
        };
        if queued {
            self.dequeue(id);
        }
        self.assign(id, slot);
        true
    }

    /// Gives `slot` to request `id`: ready at once with static details, else provision.
    fn assign(&mut self, id: Uuid, slot: Slot) {
        let r = self.inventory.get_mut(slot);
        r.occupant = Some(id);
        let (inventory_id, agent_id, connection) = (r.id, r.agent_id, r.connection.clone());
        self.inventory.settle(slot);
        let a = self
            .allocations
            .get_mut(&id)
            .expect("assigned allocation exists");
        a.inventory_id = Some(inventory_id);
        self.quota_change(id, true);
        match connection {
            Some(connection) => self.make_ready(id, slot, connection),
            None => {
                let order = (agent_id, inventory_id);
                self.start_provisioning(id, std::slice::from_ref(&order));
            }
        }
    }

    /// Takes `count` free resources for request `id` at once, each the best one left for it
    /// (refined by the policy), those that need provisioning on distinct agents (an agent's
    /// answers name only the allocation), none held for `front` if given; `None`, with
    /// nothing taken, when that many are not free now.
    fn gather(&mut self, id: Uuid, front: Option<&Front>) -> Option<Vec<Slot>> {
        let a = &self.allocations[&id];
        let count = a.requirements.count as usize;
        let avoid = avoided(&self.abandoned, id);
        let (policy, quotas) = (self.policy.as_deref(), self.quotas.as_deref());
        let hold = front.map(|f| Hold::new(f, &self.allocations, policy, quotas, &self.abandoned));
        let unheld = |r: &Resource| off(avoid)(r) && hold.as_ref().is_none_or(|h| !h.holds(r));
        // Fewer free resources than asked, whatever their agents: nothing to try.
        if self.inventory.candidates(&a.criteria, count, unheld).len() < count {
            return None;
        }
        // The agents already provisioning one of them.
        let mut busy: Vec<Uuid> = Vec::new();
        let mut taken = Vec::with_capacity(count);
        let mut gpus_left = self.gpus_left(&a.requirements);
        while taken.len() < count {
            let keep = |r: &Resource| {
                unheld(r)
                    && (r.connection.is_some() || !busy.contains(&r.agent_id))
                    && gpus_left.is_none_or(|left| gpus_of(r) <= left)
            };
            let policy = self.policy.as_deref();
            let limit = self.config.policy_candidates_max;
            let Some(slot) = choose(&mut self.inventory, policy, limit, a, keep) else {
                break;
            };
            // Taken at once, so that the next choice is among the others.
            let r = self.inventory.get_mut(slot);
            r.occupant = Some(id);
            if r.connection.is_none() {
                busy.push(r.agent_id);
            }
            gpus_left = gpus_left.map(|left| left - gpus_of(r));
            self.inventory.settle(slot);
            taken.push(slot);
        }
        if taken.len() == count {
            return Some(taken);
        }
        for slot in taken {
            self.inventory.get_mut(slot).occupant = None;
            self.inventory.settle(slot);
        }
        None
    }

    /// Gives the resources in `slots` (already taken by [`Engine::gather`]) to request `id`:
    /// ready at once if all have static details, else each of the others provisioned at once.
    fn assign_several(&mut self, id: Uuid, slots: &[Slot]) {
        let mut orders = Vec::new();
        let mut held: Vec<HeldResource> = slots
            .iter()
            .map(|&slot| {
                let r = self.inventory.get(slot);
                if r.connection.is_none() {
                    orders.push((r.agent_id, r.id));
                }
                HeldResource {
                    inventory_id: r.id,
                    connection: r.connection.clone(),
                }
            })
            .collect();
        let first = held.remove(0);
        let a = self
            .allocations
            .get_mut(&id)
            .expect("assigned allocation exists");
        a.inventory_id = Some(first.inventory_id);
        a.connection = first.connection;
        a.others = held;
        let connection = a.connection.clone();
        self.quota_change(id, true);
        match (orders.is_empty(), connection) {
            (true, Some(connection)) => self.make_ready(id, slots[0], connection),
            _ => self.start_provisioning(id, &orders),
        }
    }

    /// Sends the provision orders of `id`, one per (agent, resource), with one deadline.
    fn start_provisioning(&mut self, id: Uuid, orders: &[(Uuid, Uuid)]) {
        let a = self
            .allocations
            .get_mut(&id)
            .expect("provisioning allocation exists");
        a.state = AllocationState::Provisioning;
        if let Some(secs) = a.lease_secs {
            // What the agent is told; counted again from `ready`.
            a.expires = self.now.add_secs(secs);
        }
        for &(agent_id, inventory_id) in orders {
            let order = provision_order(a, agent_id, inventory_id);
            self.outputs.push_back(order);
        }
        let at = self.now.add_millis(self.config.provision_timeout_ms);
        self.set_timer(id, Some(at));
    }

    /// Sends again, on the agent's connection that took over from another, the orders still
    /// in flight on its resources: each unanswered provision and each unacknowledged release,
    /// as they were first sent and with their deadlines unchanged (what the older connection
    /// carried may be lost; answers are the agent's whatever connection carries them).
    pub(super) fn resend_orders(&mut self, agent_id: Uuid) {
        let Some(agent) = self.inventory.agent(&agent_id) else {
            return;
        };
        for &slot in &agent.slots {
            let r = self.inventory.get(slot);
            let Some(occupant) = r.occupant else { continue };
            if r.releasing {
                self.outputs.push_back(Output::Release {
                    agent_id,
                    allocation_id: occupant,
                    inventory_id: r.id,
                });
                continue;
            }
            let provisioning = self
                .allocations
                .get(&occupant)
                .filter(|a| a.state == AllocationState::Provisioning && awaits(a, r.id));
            if let Some(a) = provisioning {
                self.outputs.push_back(provision_order(a, agent_id, r.id));
            }
        }
    }

    fn make_ready(&mut self, id: Uuid, slot: Slot, connection: Arc<Connection>) {
        let a = self
            .allocations
            .get_mut(&id)
            .expect("ready allocation exists");
        a.state = AllocationState::Ready;
        a.connection = Some(connection);
        a.ready_at = Some(self.now);
        if let Some(secs) = a.lease_secs.take() {
            a.expires = self.now.add_secs(secs);
        }
        let expires = a.expires;
        self.inventory.set_lease(slot, Some(expires));
        for h in &a.others {
            if let Some(other) = self.inventory.slot_of(&h.inventory_id) {
                self.inventory.set_lease(other, Some(expires));
            }
        }
        let ready = super::ready_output(a).expect("a ready allocation knows its connections");
        self.set_timer(id, Some(expires));
        self.outputs.push_back(ready);
    }

    /// Offers a resource that may have become free to the first waiting request, in the
    /// order, that it suits (README, "Order and starvation").
    ///
    /// A resource held for the front of the queue goes to the front, or else (backfill) to
    /// the first other request whose lease ends by the time the front could start. Any other
    /// goes to the first request it suits. A request for several resources (`count`) is
    /// served when that many suitable ones are free at once (the best ones, which need not
    /// include this one); until then it keeps its place and the resource goes on down the
    /// order. Each request for several is tried at most once per offer.
    pub(super) fn offer(&mut self, slot: Slot) {
        let mut passed: Vec<Uuid> = Vec::new();
        while self.queue.len() > 0 && self.inventory.get(slot).placeable() {
            let front = self.front();
            let held = front
                .clone()
                .filter(|f| self.hold(f).holds(self.inventory.get(slot)));
            // Beyond the front, only a lease that ends by the time it could start.
            let mut until = None;
            let chosen = match held {
                Some(f) if !passed.contains(&f.id) => Some((f.id, f.count > 1)),
                Some(f) => {
                    let start = self.could_start(&f).filter(|_| f.count > 1);
                    let chosen = start.and_then(|t| self.first_suited(slot, &passed, Some(t)));
                    if chosen.is_none() {
                        // Left held for it.
                        return self.held_for_interim(f);
                    }
                    until = start;
                    chosen
                }
                None => self.first_suited(slot, &passed, None),
            };
            let Some((id, several)) = chosen else {
                return;
            };
            if !several {
                self.dequeue(id);
                return self.assign(id, slot);
            }
            let beside = front.filter(|f| f.id != id && until.is_none());
            match self.gather(id, beside.as_ref()) {
                Some(slots) => {
                    self.dequeue(id);
                    self.assign_several(id, &slots);
                }
                None => passed.push(id),
            }
        }
    }

    /// Takes a request out of the queue, with its wait deadline.
    fn dequeue(&mut self, id: Uuid) {
        let a = &self.allocations[&id];
        let (seq, criteria) = (a.seq, a.criteria.clone());
        self.queue.remove(seq, id, &criteria);
        self.set_timer(id, None);
    }

    /// The first waiting request, in the order, that `slot` suits, other than those `passed`
    /// and, given `until`, those whose lease may end later; and whether it asks for several.
    fn first_suited(
        &mut self,
        slot: Slot,
        passed: &[Uuid],
        until: Option<Timestamp>,
    ) -> Option<(Uuid, bool)> {
        let (inventory, allocations, policy) = (&self.inventory, &self.allocations, &self.policy);
        let r = inventory.get(slot);
        let candidate = Candidate {
            inventory_id: r.id,
            agent_id: r.agent_id,
            spec: &r.spec,
        };
        let (now, abandoned, quotas) = (self.now, &self.abandoned, self.quotas.as_deref());
        let accept = |id: Uuid| {
            let a = &allocations[&id];
            // A request whose wait ends at this very instant is left to its timer (408): it
            // must not get a lease that is already over. One its quota holds back is passed
            // over: it is no barrier to the requests behind it.
            a.give_up() > now
                && !passed.contains(&id)
                && until.is_none_or(|t| self.latest_end(a) <= t)
                && !avoided(abandoned, id).contains(&candidate.agent_id)
                && policy
                    .as_ref()
                    .is_none_or(|p| !p.veto(&a.requirements, &candidate))
                && quotas.is_none_or(|q| q.allows(&a.requirements, gpus_of(r)))
        };
        let fits = |c: &Criteria| inventory.satisfies(slot, c);
        let id = match self.config.order {
            Order::Arrival => self.queue.first_waiting(fits, accept).map(|(_, id, _)| id),
            Order::FairShare => {
                let rank = |_, id| self.rank(&allocations[&id]);
                self.queue
                    .least_ranked(fits, accept, rank)
                    .map(|(_, id)| id)
            }
        }?;
        Some((id, allocations[&id].requirements.count > 1))
    }

    /// Ends a live allocation in `state`, starting the release of whatever it held.
    pub(super) fn end(&mut self, id: Uuid, state: AllocationState, notify: bool) {
        let explain = (notify && state == AllocationState::TimedOut)
            .then(|| self.explain_if_hopeless(id))
            .flatten();
        self.set_timer(id, None);
        let a = self
            .allocations
            .get_mut(&id)
            .expect("ended allocation exists");
        let prior = std::mem::replace(&mut a.state, state);
        let (seq, criteria, first) = (a.seq, a.criteria.clone(), a.inventory_id);
        // Empty for a single resource: no allocation on its path.
        let others: Vec<Uuid> = a.others.iter().map(|h| h.inventory_id).collect();
        // Given back before its resources are offered to the queue, its user's requests included.
        if super::quotas::holds(prior) {
            self.quota_change(id, false);
        }
        let gave_back = self
            .holds_quota(prior)
            .then(|| self.allocations[&id].requirements.username.clone());
        if prior == AllocationState::Queued {
            self.queue.remove(seq, id, &criteria);
        }
        if notify {
            self.outputs.push_back(match state {
                AllocationState::TimedOut => Output::TimedOut {
                    allocation_id: id,
                    explain,
                },
                AllocationState::Expired => Output::Expired { allocation_id: id },
                _ => Output::Released { allocation_id: id },
            });
        }
        for inventory_id in first.iter().chain(&others) {
            let Some(slot) = self.inventory.slot_of(inventory_id) else {
                continue;
            };
            if self.inventory.get(slot).occupant == Some(id) {
                self.inventory.set_lease(slot, None);
                self.begin_release(slot, id);
            }
        }
        if let Some(i) = AllocationState::ENDED.iter().position(|s| *s == state) {
            self.ended_total[i] += 1;
        }
        self.record_usage(&id, prior);
        self.remember_ended(id);
        if let Some(user) = gave_back {
            self.retry_waiting(Some(&user));
        }
    }

    fn remember_ended(&mut self, id: Uuid) {
        self.ended.push_back(id);
        while self.ended.len() > self.config.ended_allocations_max {
            let Some(old) = self.ended.pop_front() else {
                break;
            };
            self.allocations.remove(&old);
        }
    }

    fn begin_release(&mut self, slot: Slot, id: Uuid) {
        let r = self.inventory.get_mut(slot);
        if r.connection.is_some() {
            return self.free(slot);
        }
        r.releasing = true;
        let (agent_id, inventory_id, online) = (r.agent_id, r.id, r.online);
        self.releases.entry(id).or_default().push(inventory_id);
        if online {
            self.send_release(slot, agent_id, id, inventory_id);
        }
    }

    fn send_release(
        &mut self,
        slot: Slot,
        agent_id: Uuid,
        allocation_id: Uuid,
        inventory_id: Uuid,
    ) {
        let at = self.now.add_millis(self.config.release_timeout_ms);
        if self
            .inventory
            .get_mut(slot)
            .release_deadline
            .replace(at)
            .is_some()
        {
            self.deadline_given_up();
        }
        self.timers
            .insert((at, super::Timer::Release(inventory_id)));
        self.outputs.push_back(Output::Release {
            agent_id,
            allocation_id,
            inventory_id,
        });
    }

    /// The resource no longer belongs to anyone: retire it, or offer it to the queue.
    fn free(&mut self, slot: Slot) {
        let r = self.inventory.get_mut(slot);
        let (abandoned, agent_id, inventory_id) =
            (std::mem::take(&mut r.abandoned), r.agent_id, r.id);
        let occupant = r.occupant.take();
        r.releasing = false;
        if r.release_deadline.take().is_some() {
            self.deadline_given_up();
        }
        if let Some(id) = occupant.filter(|_| abandoned) {
            // Before the offer: the request that abandoned it may be first in line for it.
            forget(&mut self.abandoned, id, agent_id);
        }
        if self.inventory.get(slot).retiring {
            self.inventory.remove(slot);
        } else {
            self.inventory.settle(slot);
            self.offer(slot);
        }
        match occupant {
            Some(id) if abandoned => self.cleaned_up(id, agent_id),
            Some(id) => forget(&mut self.releases, id, inventory_id),
            None => {}
        }
    }

    /// `agent_id` is done with its abandoned provision of `id` (acknowledged, or given up on;
    /// the caller has forgotten it): `id`, if it still waits, may now have that agent's free
    /// resources.
    fn cleaned_up(&mut self, id: Uuid, agent_id: Uuid) {
        let waits = self
            .allocations
            .get(&id)
            .is_some_and(|a| a.state == AllocationState::Queued);
        if !waits {
            return;
        }
        let slots = self
            .inventory
            .agent(&agent_id)
            .map(|a| a.slots.clone())
            .unwrap_or_default();
        for slot in slots {
            self.offer(slot);
        }
    }

    /// Provisioning did not work out: mark the resource (`Some(reason)`: error; `None`: it went
    /// offline) and put the request back in front, or time it out if its wait is over. An
    /// `abandoned` provision (unanswered in time, or its agent went away) is followed by a
    /// release of it, now or when the agent is back, so that what it created is cleaned up;
    /// until the agent acknowledges it, the resource stays held and the request is not placed
    /// on that agent's resources (its answers name only the allocation).
    ///
    /// For a request of several resources, `failed` names the one that failed (`None`: every
    /// one not answered yet, as when the deadline passes); the others are let go as well:
    /// each provisioned one (answered or not) is released as an abandoned provision, without
    /// an error, and one with a static connection is free again at once.
    fn provision_failed(
        &mut self,
        id: Uuid,
        failed: Option<Uuid>,
        reason: Option<String>,
        abandoned: bool,
    ) {
        self.quota_change(id, false);
        let a = self
            .allocations
            .get_mut(&id)
            .expect("provisioning allocation exists");
        a.state = AllocationState::Queued;
        let first = a.inventory_id.take().map(|i| (i, a.connection.take()));
        let others = std::mem::take(&mut a.others);
        self.set_timer(id, None);
        let held = first
            .into_iter()
            .chain(others.into_iter().map(|h| (h.inventory_id, h.connection)));
        let mut freed = Vec::new();
        let avoided_before = avoided(&self.abandoned, id).len();
        for (inventory_id, connection) in held {
            let Some(slot) = self.inventory.slot_of(&inventory_id) else {
                continue;
            };
            let provisioned = self.inventory.get(slot).connection.is_none();
            let failing = failed.map_or(connection.is_none(), |f| f == inventory_id);
            let error = failing.then(|| reason.clone()).flatten();
            let kept = self.let_go(id, slot, error, provisioned && (abandoned || !failing));
            if kept && !provisioned {
                freed.push(slot);
            }
        }
        // Back in front with its original deadline: once that has passed, the wait is over.
        let a = self
            .allocations
            .get_mut(&id)
            .expect("failed allocation exists");
        if let Some(secs) = a.lease_secs {
            // Waiting again: the same upper bound as when it was first queued.
            a.expires = a.wait_until.add_secs(secs);
        }
        if a.give_up() <= self.now {
            self.end(id, AllocationState::TimedOut, true);
        } else {
            self.place_or_queue(id);
        }
        for slot in freed {
            self.offer(slot);
        }
        // The agents it now avoids: their free resources are no longer held for it, should it
        // be the front of the queue, so they go to the others (README, "Order and starvation").
        let newly: Vec<Uuid> = avoided(&self.abandoned, id)[avoided_before..].to_vec();
        for agent_id in newly {
            let slots = self.inventory.agent(&agent_id).map(|a| a.slots.clone());
            for slot in slots.unwrap_or_default() {
                if self.inventory.is_live(slot) {
                    self.offer(slot);
                }
            }
        }
    }

    /// `id` no longer holds `slot` after a failed provision: mark it in `error` if given, and
    /// `clean_up` (release it as an abandoned provision) or free it; returns whether it is
    /// still registered (a freed one that left its agent's list is removed).
    fn let_go(&mut self, id: Uuid, slot: Slot, error: Option<String>, clean_up: bool) -> bool {
        let r = self.inventory.get_mut(slot);
        if error.is_some() {
            r.error = error.map(String::into_boxed_str);
            self.failures.entry(r.agent_id).or_default().provision += 1;
        }
        let retired = r.retiring && !clean_up;
        if clean_up {
            (r.releasing, r.abandoned) = (true, true);
            let (agent_id, inventory_id, online) = (r.agent_id, r.id, r.online);
            self.abandoned.entry(id).or_default().push(agent_id);
            if online {
                self.send_release(slot, agent_id, id, inventory_id);
            }
        } else {
            r.occupant = None;
        }
        if retired {
            self.inventory.remove(slot);
        } else {
            self.inventory.settle(slot);
        }
        !retired
    }

    pub(super) fn allocation_deadline(&mut self, id: Uuid) {
        match self.allocations.get(&id).map(|a| a.state) {
            Some(AllocationState::Queued) => self.end(id, AllocationState::TimedOut, true),
            Some(AllocationState::Ready) => self.end(id, AllocationState::Expired, true),
            Some(AllocationState::Provisioning) => {
                let reason = format!(
                    "agent did not answer the provision of allocation {id} within {} ms",
                    self.config.provision_timeout_ms
                );
                self.provision_failed(id, None, Some(reason), true);
            }
            _ => {}
        }
    }

    pub(super) fn release_deadline(&mut self, inventory_id: Uuid) {
        let Some(slot) = self.inventory.slot_of(&inventory_id) else {
            return;
        };
        let r = self.inventory.get_mut(slot);
        r.release_deadline = None;
        let abandoned = std::mem::take(&mut r.abandoned);
        let mut cleaned = None;
        if let Some(occupant) = r.occupant.take() {
            let why = format!(
                "agent did not acknowledge the release of allocation {occupant} within {} ms",
                self.config.release_timeout_ms
            );
            self.failures.entry(r.agent_id).or_default().release += 1;
            // An abandoned provision's error says why the provision failed; it stays.
            r.error.get_or_insert(why.into_boxed_str());
            if abandoned {
                forget(&mut self.abandoned, occupant, r.agent_id);
                cleaned = Some((occupant, r.agent_id));
            } else {
                forget(&mut self.releases, occupant, inventory_id);
            }
        }
        r.releasing = false;
        if r.retiring {
            self.inventory.remove(slot);
        } else {
            self.inventory.settle(slot);
        }
        if let Some((id, agent_id)) = cleaned {
            self.cleaned_up(id, agent_id);
        }
    }

    pub(super) fn do_provisioned(
        &mut self,
        agent_id: Uuid,
        id: Uuid,
        result: &ProvisionResult,
    ) -> Result<()> {
        // A malformed answer is refused whatever became of the allocation meanwhile.
        if let ProvisionResult::Connection(connection) = result {
            validate::connection(connection, "connection", &self.config.limits)?;
        }
        if self.release_supersedes(agent_id, id) {
            return Ok(());
        }
        let a = self.live(id)?;
        if a.state != AllocationState::Provisioning {
            return Err(Error::Conflict(format!(
                "allocation {id} is not being provisioned (it is {})",
                a.state.as_str()
            )));
        }
        let lease_over = a.lease_secs.is_none() && a.expires <= self.now;
        let several = !a.others.is_empty();
        let slot = self.awaiting_answer(a, agent_id)?;
        match result {
            ProvisionResult::Connection(_) if lease_over => {
                // The lease ended while the agent prepared the resource: the wait is over
                // (408), and the agent is asked to clean up what it prepared.
                self.end(id, AllocationState::TimedOut, true);
            }
            ProvisionResult::Connection(connection) if several => {
                self.answered(id, slot, connection.clone())
            }
            ProvisionResult::Connection(connection) => {
                self.make_ready(id, slot, Arc::new(connection.clone()))
            }
            ProvisionResult::Failed(why) => {
                let why = validate::clip(why, self.config.limits.string_chars_max);
                let (failed, reason) = (
                    self.inventory.get(slot).id,
                    format!("provisioning failed: {why}"),
                );
                self.provision_failed(id, Some(failed), Some(reason), false);
            }
        }
        Ok(())
    }

    /// The resource of `agent_id` whose provision for `a` is not answered yet.
    fn awaiting_answer(&self, a: &Allocation, agent_id: Uuid) -> Result<Slot> {
        let first = a.inventory_id.filter(|_| a.connection.is_none());
        let others = a.others.iter().filter(|h| h.connection.is_none());
        first
            .into_iter()
            .chain(others.map(|h| h.inventory_id))
            .filter_map(|i| self.inventory.slot_of(&i))
            .find(|&slot| self.inventory.get(slot).agent_id == agent_id)
            .ok_or_else(|| {
                Error::Forbidden(format!(
                    "allocation {} is not on a resource of agent {agent_id}",
                    a.id
                ))
            })
    }

    /// One of several resources being provisioned for `id` is ready: once all are, so is `id`.
    fn answered(&mut self, id: Uuid, slot: Slot, connection: Connection) {
        let inventory_id = self.inventory.get(slot).id;
        let a = self
            .allocations
            .get_mut(&id)
            .expect("provisioning allocation exists");
        let connection = Some(Arc::new(connection));
        if a.inventory_id == Some(inventory_id) {
            a.connection = connection;
        } else if let Some(h) = a.others.iter_mut().find(|h| h.inventory_id == inventory_id) {
            h.connection = connection;
        }
        if a.others.iter().any(|h| h.connection.is_none()) {
            return;
        }
        let first = a.inventory_id.and_then(|i| self.inventory.slot_of(&i));
        if let (Some(first), Some(connection)) = (first, a.connection.clone()) {
            self.make_ready(id, first, connection);
        }
    }

    /// Whether `id` ended while `agent_id` provisioned it (its client left, or its lease ran
    /// out) and the release sent since is still pending: the provision's answer then changes
    /// nothing and is taken without complaint.
    fn release_supersedes(&self, agent_id: Uuid, id: Uuid) -> bool {
        let ended = self
            .allocations
            .get(&id)
            .is_none_or(|a| a.state.is_terminal());
        let on_agent = self.pending_release(agent_id, id).is_some();
        (ended && on_agent) || avoided(&self.abandoned, id).contains(&agent_id)
    }

    /// The resource of `agent_id` whose release of `id` waits on the agent's acknowledgement;
    /// of several (a re-registration made static resources of one request need releasing),
    /// the earliest registered.
    fn pending_release(&self, agent_id: Uuid, id: Uuid) -> Option<Slot> {
        // Not the first listed: `releases` lists them in the order the releases began, which
        // a restored engine does not know (it lists them in its agents' order), so a replay
        // would free the other one.
        self.releases
            .get(&id)?
            .iter()
            .filter_map(|i| self.inventory.slot_of(i))
            .filter(|&slot| self.inventory.get(slot).agent_id == agent_id)
            .min_by_key(|&slot| self.inventory.get(slot).seq)
    }

    /// The resource of `agent_id` being cleaned up after its abandoned provision of `id`.
    fn abandoned_slot(&self, agent_id: Uuid, id: Uuid) -> Option<Slot> {
        if !avoided(&self.abandoned, id).contains(&agent_id) {
            return None;
        }
        let agent = self.inventory.agent(&agent_id)?;
        agent.slots.iter().copied().find(|&slot| {
            let r = self.inventory.get(slot);
            r.abandoned && r.occupant == Some(id)
        })
    }

    pub(super) fn do_release_acknowledged(&mut self, agent_id: Uuid, id: Uuid) -> Result<()> {
        let pending = self.pending_release(agent_id, id);
        if let Some(slot) = pending.or_else(|| self.abandoned_slot(agent_id, id)) {
            self.free(slot);
            return Ok(());
        }
        if !self.releases.contains_key(&id) {
            return Err(Error::not_found("pending release of allocation", id));
        }
        Err(Error::Forbidden(format!(
            "allocation {id} is not on a resource of agent {agent_id}"
        )))
    }

    pub(super) fn do_release(&mut self, id: Uuid) -> Result<()> {
        self.live(id)?;
        self.end(id, AllocationState::Released, true);
        Ok(())
    }

    pub(super) fn do_client_gone(&mut self, id: Uuid) -> Result<()> {
        let a = self
            .allocations
            .get(&id)
            .ok_or_else(|| Error::not_found("allocation", id))?;
        // Said as `released`, the contract's end of both: the creator is gone, but whoever
        // follows the allocation hears it. Nobody else has the credentials of a provision in
        // progress, so it is cancelled too: its agent is told to release.
        match a.state {
            AllocationState::Queued | AllocationState::Provisioning => {
                self.end(id, AllocationState::Cancelled, true)
            }
            AllocationState::Ready if a.requirements.release_on_disconnect => {
                self.end(id, AllocationState::Released, true)
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn do_set_expires(&mut self, id: Uuid, expires: u64) -> Result<u64> {
        let a = self.live(id)?;
        let at = self.lease_end(Some(expires), "expires")?;
        self.check_lease_quota(a, at)?;
        let a = self.allocations.get_mut(&id).expect("live allocation");
        a.expires = at;
        // An explicit lease end replaces one counted from `ready`.
        a.lease_secs = None;
        match a.state {
            AllocationState::Queued => {
                let give_up = a.wait_until.min(at);
                self.set_timer(id, Some(give_up));
            }
            AllocationState::Ready => {
                for inventory_id in held_ids(a) {
                    if let Some(slot) = self.inventory.slot_of(&inventory_id) {
                        self.inventory.set_lease(slot, Some(at));
                    }
                }
                self.set_timer(id, Some(at));
            }
            _ => {}
        }
        Ok(at.as_secs())
    }

    pub(super) fn do_set_maintenance(
        &mut self,
        inventory_id: Uuid,
        reason: Option<&str>,
    ) -> Result<()> {
        if let Some(reason) = reason {
            validate::text(reason, "reason", &self.config.limits)?;
        }
        let slot = self
            .inventory
            .slot_of(&inventory_id)
            .ok_or_else(|| Error::not_found("resource", inventory_id))?;
        let r = self.inventory.get_mut(slot);
        match reason {
            Some(reason) => r.maintenance = Some(reason.into()),
            None => {
                r.maintenance = None;
                r.error = None;
            }
        }
        self.inventory.settle(slot);
        self.offer(slot);
        Ok(())
    }
}

/// The order to provision `a` on `inventory_id`, as `agent_id` is told it.
fn provision_order(a: &Allocation, agent_id: Uuid, inventory_id: Uuid) -> Output {
    Output::Provision {
        agent_id,
        allocation_id: a.id,
        inventory_id,
        username: a.requirements.username.clone(),
        expires: a.expires.as_secs(),
        ssh_keys: a.requirements.ssh_keys.clone(),
        provision: a.requirements.provision.clone(),
    }
}

/// The agents whose resources `id` is not placed on: those still to acknowledge the release
/// of a provision of it they abandoned.
pub(super) fn avoided(abandoned: &FxMap<Uuid, Vec<Uuid>>, id: Uuid) -> &[Uuid] {
    abandoned.get(&id).map_or(&[], Vec::as_slice)
}

/// Whether `a`, being provisioned, still waits for the answer about `inventory_id`.
fn awaits(a: &Allocation, inventory_id: Uuid) -> bool {
    match a.inventory_id {
        Some(first) if first == inventory_id => a.connection.is_none(),
        _ => a
            .others
            .iter()
            .any(|h| h.inventory_id == inventory_id && h.connection.is_none()),
    }
}

/// Drops one `value` from what `map` lists for `id` (a release acknowledged, or given up
/// on), and `id` with it once it lists nothing. One: an agent is listed once per resource of
/// it being cleaned up for `id` (two, when a re-registration made two static resources of a
/// request for several need provisioning), and each acknowledgement ends one cleanup.
fn forget(map: &mut FxMap<Uuid, Vec<Uuid>>, id: Uuid, value: Uuid) {
    if let Some(values) = map.get_mut(&id) {
        if let Some(i) = values.iter().position(|v| *v == value) {
            values.remove(i);
        }
        if values.is_empty() {
            map.remove(&id);
        }
    }
}

/// The free resource a request should get: best fit, refined by the policy if one is set,
/// among those that `keep` accepts.
fn choose(
    inventory: &mut Inventory,
    policy: Option<&dyn MatchPolicy>,
    limit: usize,
    a: &Allocation,
    keep: impl Fn(&Resource) -> bool,
) -> Option<Slot> {
    let Some(policy) = policy else {
        return inventory.candidates(&a.criteria, 1, keep).first().copied();
    };
    let mut best: Option<(Option<i64>, Slot)> = None;
    for slot in inventory.candidates(&a.criteria, limit, keep) {
        let r = inventory.get(slot);
        let candidate = Candidate {
            inventory_id: r.id,
            agent_id: r.agent_id,
            spec: &r.spec,
        };
        if policy.veto(&a.requirements, &candidate) {
            continue;
        }
        let score = policy.score(&a.requirements, &candidate);
        // Candidates come best fit first, so only a strictly higher score displaces.
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, slot));
        }
    }
    best.map(|(_, slot)| slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_drops_one_listing_of_a_value_and_the_key_with_the_last() {
        let (id, agent, other) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut map = FxMap::default();
        map.insert(id, vec![agent, other, agent]);
        forget(&mut map, id, agent);
        assert_eq!(
            map[&id],
            vec![other, agent],
            "one cleanup ended, one still runs"
        );
        forget(&mut map, id, Uuid::from_u128(9));
        assert_eq!(
            map[&id],
            vec![other, agent],
            "an unknown value changes nothing"
        );
        forget(&mut map, id, agent);
        forget(&mut map, id, other);
        assert!(map.is_empty());
    }
}
