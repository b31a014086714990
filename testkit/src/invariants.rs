//! The invariants that [`Sim`] checks after every step: the safety ones in every scenario, the
//! contract's (best fit, queue order, outlook, endings) in strict ones (see [`crate::sim`]).

mod order;

use crate::reference;
use crate::sim::{drain, Action, Ctx, Garbage, Op, Sim};
use allocate_core::{
    AllocationSnapshot, AllocationState, Error, GrantedResource, InventoryEntry, Order, Output,
    QuotaLimits, Recipient, Requirements, ResourceSnapshot, ResourceState, Snapshot, Timestamp,
};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// The engine's state after a step, indexed for the checks.
struct View<'a> {
    now: Timestamp,
    allocations: BTreeMap<Uuid, &'a AllocationSnapshot>,
    /// Each resource with its agent and whether that agent is online.
    resources: BTreeMap<Uuid, (Uuid, bool, &'a ResourceSnapshot)>,
    inventory: Vec<InventoryEntry>,
    /// Whether the step's outputs span several instants (a late timer), which voids the
    /// checks that compare an output with the state at the end of the step.
    late: bool,
    /// Whether the policy is [`crate::policy::Picky`].
    picky: bool,
}

impl<'a> View<'a> {
    /// Indexes `snap`; no resource and no allocation may be listed twice.
    fn new(sim: &Sim, snap: &'a Snapshot, op: &Op) -> Self {
        let mut allocations = BTreeMap::new();
        for a in &snap.allocations {
            let twice = allocations.insert(a.allocation_id, a).is_some();
            assert!(!twice, "allocation {} is listed twice", a.allocation_id);
        }
        let mut resources = BTreeMap::new();
        for agent in &snap.agents {
            for r in &agent.resources {
                let id = r.spec.inventory_id.expect("a snapshot names each resource");
                let twice = resources
                    .insert(id, (agent.agent_id, agent.online, r))
                    .is_some();
                assert!(!twice, "resource {id} is listed twice");
            }
        }
        View {
            now: snap.now,
            allocations,
            resources,
            inventory: sim.engine.inventory().collect(),
            late: matches!(op.action, Action::Sleep { .. }),
            picky: sim.picky,
        }
    }

    fn entry(&self, inventory_id: Uuid) -> &InventoryEntry {
        self.inventory
            .iter()
            .find(|e| e.inventory_id == inventory_id)
            .unwrap_or_else(|| panic!("{inventory_id} is not in inventory"))
    }

    /// Every (allocation, agent) pair where the agent owes the release of a provision of the
    /// allocation it abandoned (the engine does not place the allocation on that agent's
    /// resources until it is acknowledged).
    fn cleaning(&self) -> BTreeSet<(Uuid, Uuid)> {
        self.resources
            .values()
            .filter(|(_, _, r)| r.abandoned)
            .filter_map(|(owner, _, r)| r.occupant.map(|id| (id, *owner)))
            .collect()
    }

    /// Whether `agent` owes the release of a provision of `id` it abandoned.
    fn cleaning_up(&self, id: Uuid, agent: Uuid) -> bool {
        self.resources
            .values()
            .any(|(owner, _, r)| *owner == agent && r.abandoned && r.occupant == Some(id))
    }

    /// Whether `inventory_id` is free (or held for `req` itself, the front) and the policy
    /// lets `req` have it.
    fn free_for(&self, req: &Requirements, r: &InventoryEntry, front: bool) -> bool {
        let free = r.state == ResourceState::Free || (front && r.state == ResourceState::Reserved);
        free && reference::eligible(req, r, self.picky)
    }

    /// How many resources request `id` (the front, or not) could be given at once now: the
    /// free ones it may have, those that need provisioning counted once per agent (an
    /// agent's answers name only the allocation, so the engine takes one of them per agent).
    fn could_gather(&self, id: Uuid, req: &Requirements, front: bool) -> usize {
        let mut agents = BTreeSet::new();
        let mut statics = 0;
        for r in &self.inventory {
            if !self.free_for(req, r, front) || self.cleaning_up(id, r.agent_id) {
                continue;
            }
            let (_, _, snap) = self.resources[&r.inventory_id];
            if snap.spec.connection.is_some() {
                statics += 1;
            } else {
                agents.insert(r.agent_id);
            }
        }
        statics + agents.len()
    }
}

/// A `ready` agrees with the allocation `a` it makes: its lease, and every resource it holds
/// listed when it asked for several.
fn check_ready(
    o: &Output,
    a: &AllocationSnapshot,
    expires: u64,
    resources: &[GrantedResource],
    now: Timestamp,
) {
    assert!(a.expires > now, "{o:?} with its lease over at {now}");
    assert_eq!(expires, a.expires.as_secs());
    let listed: Vec<Uuid> = resources.iter().map(|g| g.inventory_id).collect();
    let several = a.requirements.count > 1;
    let want: Vec<Uuid> = if several { holds(a).collect() } else { vec![] };
    assert_eq!(listed, want, "{o:?} lists every resource it holds");
}

/// Every resource `a` holds or held, the first one first.
fn holds(a: &AllocationSnapshot) -> impl Iterator<Item = Uuid> + '_ {
    a.inventory_id
        .into_iter()
        .chain(a.others.iter().map(|h| h.inventory_id))
}

impl Sim {
    /// A snapshot survives JSON and restore unchanged, with the same next deadline.
    pub(crate) fn check_round_trip(&self, snapshot: &Snapshot) {
        let json = serde_json::to_string(snapshot).expect("a snapshot serialises");
        let back: Snapshot = serde_json::from_str(&json).expect("a snapshot deserialises");
        assert_eq!(&back, snapshot, "snapshot -> JSON -> snapshot");
        let restored = self.restore(&back, 0);
        assert_eq!(
            &restored.snapshot(),
            snapshot,
            "snapshot -> restore -> snapshot"
        );
        assert_eq!(restored.poll_timeout(), self.engine.poll_timeout());
    }

    /// A refused input must leave the state as if only its time had been given.
    pub(crate) fn check_refused(
        &self,
        before: &Snapshot,
        t: Timestamp,
        outputs: &[Output],
        err: &Error,
    ) {
        let mut expected = self.restore(before, 0);
        expected.handle_timeout(t);
        assert_eq!(
            outputs,
            drain(&mut expected),
            "outputs of refused input ({err})"
        );
        assert_eq!(
            self.engine.snapshot(),
            expected.snapshot(),
            "a refused input ({err}) changed the state"
        );
    }

    /// Checks every invariant after a step that produced `outputs`: the safety ones, and in a
    /// strict scenario the contract's.
    pub(crate) fn check(&mut self, outputs: &[Output], ctx: &Ctx, op: &Op) {
        let snap = self.engine.snapshot();
        let view = View::new(self, &snap, op);
        if let Some(t) = self.engine.poll_timeout() {
            assert!(
                t > view.now,
                "deadline {t} is due at {} after {op:?}",
                view.now
            );
        }
        if self.strict {
            let config = self.engine.config();
            let (order, provision_timeout_ms) = (config.order, config.provision_timeout_ms);
            let front = view.front(order, provision_timeout_ms);
            view.check_reserved(front);
            let placed = self.check_outputs(outputs, ctx, op, &view);
            if let Some((id, want)) = ctx.fresh {
                // Or a backfill, onto a resource held for the front.
                let got = placed.get(&id).copied();
                let backfill = got.is_some_and(|g| self.reserved.contains(&g));
                assert!(
                    got == want || backfill,
                    "request {id} gets the best free fit at once: {got:?}, not {want:?}"
                );
            }
            // Only over a step that can only lower when the front could start: one input, no
            // deadline passing, nothing leaving service or lengthening a lease.
            let lowers = matches!(
                op.action,
                Action::Request { .. }
                    | Action::Delete { .. }
                    | Action::ClientGone { .. }
                    | Action::AckRelease { .. }
            );
            let before = self
                .front
                .map(|(id, could_start)| order::Front { id, could_start });
            if !view.late && op.lag_ms == 0 && lowers {
                let steady = view.front_steady(front, &placed, &self.held, &self.queued, order);
                if steady {
                    view.check_backfills(&placed, &self.reserved, order, (before, front));
                }
            }
            if order == Order::Arrival {
                self.check_arrival_order(&placed, &view, [before, front]);
            }
            self.check_allocations(&snap, ctx, &view, front.map(|f| f.id));
            self.front = front.map(|f| (f.id, f.could_start));
            self.held = view
                .held_by_user()
                .into_iter()
                .map(|(user, n)| (user.to_owned(), n))
                .collect();
            self.reserved = view
                .inventory
                .iter()
                .filter(|e| e.state == ResourceState::Reserved)
                .map(|e| e.inventory_id)
                .collect();
        } else {
            for o in outputs {
                if let Recipient::Agent(agent) = o.recipient() {
                    Self::check_owner(o, agent, &view);
                }
            }
        }
        self.check_holders(&view);
        self.check_quotas(&snap, &view);
        self.cleaning = view.cleaning();
        let stats = self.engine.stats();
        let count = |s| view.allocations.values().filter(|a| a.state == s).count() as u64;
        assert_eq!(stats.queued, count(AllocationState::Queued));
        assert_eq!(stats.provisioning, count(AllocationState::Provisioning));
        assert_eq!(stats.ready, count(AllocationState::Ready));
        let resources: u64 = stats.resources_by_state.iter().sum();
        assert_eq!(resources, view.inventory.len() as u64);
    }

    /// Checks this step's outputs; returns the first resource each allocation was given.
    fn check_outputs(
        &mut self,
        outputs: &[Output],
        ctx: &Ctx,
        op: &Op,
        view: &View<'_>,
    ) -> BTreeMap<Uuid, Uuid> {
        let mut placed = BTreeMap::new();
        for o in outputs {
            let placement = match o.recipient() {
                Recipient::Client(id) => self.check_client_output(o, id, ctx, op, view),
                Recipient::Agent(agent) => self.check_agent_output(o, agent, view),
            };
            if let Some((id, inventory_id)) = placement {
                placed.entry(id).or_insert(inventory_id);
            }
        }
        placed
    }

    /// Returns the placement a `ready` output makes.
    fn check_client_output(
        &mut self,
        o: &Output,
        id: Uuid,
        ctx: &Ctx,
        op: &Op,
        view: &View<'_>,
    ) -> Option<(Uuid, Uuid)> {
        assert!(!self.closed.contains(&id), "{o:?} after the client's end");
        let now = view.now;
        let a = view.allocations.get(&id).filter(|_| !view.late);
        let mut placement = None;
        match o {
            Output::Ready {
                inventory_id,
                expires,
                resources,
                ..
            } => {
                assert!(self.ready.insert(id), "a second ready for {id}");
                placement = Some((id, *inventory_id));
                if let Some(a) = a {
                    check_ready(o, a, *expires, resources, now);
                }
            }
            Output::Expired { .. } => {
                let lease = view.allocations.get(&id).map(|a| a.expires);
                if let Some(lease) = lease.or(self.expires.get(&id).copied()) {
                    assert!(now >= lease, "{o:?} at {now} before its lease end {lease}");
                }
            }
            Output::Released { .. } => assert!(
                ctx.deleted == Some(id) || ctx.gone == Some(id),
                "released without a DELETE or its client leaving"
            ),
            Output::Queued {
                matching_resources,
                eta,
                ..
            } => {
                if let Some(a) = a {
                    self.check_outlook(&a.requirements, *matching_resources, *eta, view);
                }
            }
            Output::Offline { .. } => {
                assert!(matches!(op.action, Action::Disconnect { .. }), "{o:?}");
                assert_eq!(a.map(|a| a.state), Some(AllocationState::Ready));
            }
            Output::Online { .. } => {
                let registers = matches!(
                    op.action,
                    Action::Register { .. }
                        | Action::Reconnect { .. }
                        | Action::Garbage(Garbage::AbsurdRegistration { .. })
                );
                assert!(registers, "{o:?} in {op:?}");
                assert_eq!(a.map(|a| a.state), Some(AllocationState::Ready));
            }
            _ => {}
        }
        if o.is_final() {
            assert!(self.finals.insert(id, o.clone()).is_none());
            self.closed.insert(id);
        }
        placement
    }

    /// `matching_resources` counts every registered resource that satisfies the request; `eta`
    /// is the earliest lease end among them.
    fn check_outlook(&self, req: &Requirements, matching: u64, eta: Option<u64>, view: &View<'_>) {
        let suits = |inventory_id: Uuid| reference::satisfies(req, view.entry(inventory_id));
        let count = view
            .inventory
            .iter()
            .filter(|r| reference::satisfies(req, r))
            .count();
        assert_eq!(matching, count as u64, "matching_resources for {req:?}");
        let earliest = view
            .allocations
            .values()
            .filter(|a| a.state == AllocationState::Ready)
            .filter(|a| holds(a).any(suits))
            .map(|a| a.expires.as_secs())
            .min();
        assert_eq!(eta, earliest, "eta for {req:?}");
    }

    /// An output to an agent names a resource of that agent, which is connected; returns the
    /// allocation, the resource and its snapshot (`None` for a resource no longer listed).
    fn check_owner<'v>(
        o: &Output,
        agent: Uuid,
        view: &View<'v>,
    ) -> Option<(Uuid, Uuid, &'v ResourceSnapshot)> {
        let (id, inventory_id) = match o {
            Output::Provision {
                allocation_id,
                inventory_id,
                ..
            }
            | Output::Release {
                allocation_id,
                inventory_id,
                ..
            } => (*allocation_id, *inventory_id),
            _ => unreachable!("only provisions and releases go to agents"),
        };
        let (owner, online, r) = view.resources.get(&inventory_id)?;
        assert_eq!(*owner, agent, "{o:?} sent to an agent that does not own it");
        assert!(*online, "{o:?} sent to an offline agent");
        Some((id, inventory_id, r))
    }

    /// Returns the placement a `provision` output makes.
    fn check_agent_output(&self, o: &Output, agent: Uuid, view: &View<'_>) -> Option<(Uuid, Uuid)> {
        assert!(self.agent_online(agent), "{o:?} sent to an offline agent");
        let (id, inventory_id, r) = Self::check_owner(o, agent, view)
            .unwrap_or_else(|| panic!("{o:?} names an unknown resource"));
        if view.late {
            return matches!(o, Output::Provision { .. }).then_some((id, inventory_id));
        }
        match o {
            Output::Provision { expires, .. } => {
                let a = view
                    .allocations
                    .get(&id)
                    .expect("a provisioned allocation is live");
                assert_eq!(a.state, AllocationState::Provisioning, "{o:?}");
                assert!(holds(a).any(|i| i == inventory_id), "{o:?} for {a:?}");
                assert!(
                    a.expires > view.now,
                    "{o:?} with its lease over at {}",
                    view.now
                );
                assert_eq!(*expires, a.expires.as_secs());
                Some((id, inventory_id))
            }
            _ => {
                assert!(r.releasing && r.occupant == Some(id), "{o:?} for {r:?}");
                None
            }
        }
    }

    /// A resource given to a request that was waiting goes to the earliest waiting request it
    /// suits: no earlier one that it suits is still waiting (in arrival order; a resource held
    /// for the front may go to a later request as a backfill, checked apart).
    fn check_arrival_order(
        &self,
        placed: &BTreeMap<Uuid, Uuid>,
        view: &View<'_>,
        fronts: [Option<order::Front>; 2],
    ) {
        if view.late {
            return;
        }
        for (id, inventory_id) in placed {
            let Some((seq, _)) = self.queued.get(id) else {
                continue; // a fresh request, or one whose provision failed in this step
            };
            if self.reserved.contains(inventory_id) || view.backfilled(*id, *inventory_id, fronts) {
                continue;
            }
            let r = view.entry(*inventory_id);
            // A request for several that still waits could not have enough at once: that
            // is checked where it waits.
            let singles = self.queued.iter().filter(|(_, (_, req))| req.count == 1);
            for (other, (other_seq, req)) in singles {
                let still_waiting = view
                    .allocations
                    .get(other)
                    .is_some_and(|a| a.state == AllocationState::Queued);
                // A cleanup that ended in this step may have ended after the resource was
                // given (two abandoned releases on one agent giving up at the same instant,
                // in timer order): the request could not have it then.
                let cleaned = self.cleaning.contains(&(*other, r.agent_id));
                let eligible = reference::eligible(req, r, view.picky)
                    && !view.cleaning_up(*other, r.agent_id)
                    && !cleaned;
                assert!(
                    !(still_waiting && other_seq < seq && eligible),
                    "{inventory_id} went to {id} although the earlier {other} waits for it"
                );
            }
        }
    }

    /// A live holder holds as many resources as it asked for, none of them held by another
    /// (`held` so far), each naming it and showing it is held.
    fn check_holder(a: &AllocationSnapshot, view: &View<'_>, held: &mut BTreeSet<Uuid>) {
        let id = a.allocation_id;
        assert!(a.inventory_id.is_some(), "a holder names its resource");
        let count = holds(a).count();
        assert_eq!(count, a.requirements.count as usize, "{id} holds {count}");
        for inventory_id in holds(a) {
            assert!(held.insert(inventory_id), "{inventory_id} is held twice");
            let (_, _, r) = view
                .resources
                .get(&inventory_id)
                .unwrap_or_else(|| panic!("{id} holds unknown resource {inventory_id}"));
            assert_eq!(r.occupant, Some(id), "holder and resource disagree");
            assert!(!r.releasing, "a live holder's resource is being released");
            let state = view.entry(inventory_id).state;
            assert!(
                matches!(state, ResourceState::Allocated | ResourceState::Offline),
                "held resource shows {state:?}"
            );
        }
        if a.state == AllocationState::Ready {
            assert!(a.expires > view.now, "{id} is ready past its lease end");
        }
    }

    /// Each resource has at most one holder, and what holds it agrees with what it shows.
    fn check_holders(&self, view: &View<'_>) {
        let mut held = BTreeSet::new();
        for a in view.allocations.values() {
            if !matches!(
                a.state,
                AllocationState::Provisioning | AllocationState::Ready
            ) {
                continue;
            }
            Self::check_holder(a, view, &mut held);
        }
        for (id, (_, online, r)) in &view.resources {
            let Some(occupant) = r.occupant else {
                assert!(!r.releasing && r.release_deadline.is_none());
                assert!(!r.retiring, "{id} retires with no holder");
                continue;
            };
            if r.releasing {
                let a = view.allocations.get(&occupant);
                let ended = a.is_none_or(|a| a.state.is_terminal());
                // A release after an abandoned provision: its request waits again, or holds
                // another resource, never this one.
                let elsewhere = a.is_none_or(|a| holds(a).all(|i| i != *id));
                assert!(
                    ended || (r.abandoned && elsewhere),
                    "released {id} has a live holder"
                );
                assert_eq!(
                    r.release_deadline.is_some(),
                    *online,
                    "{id} release deadline"
                );
            } else {
                assert!(
                    held.contains(id),
                    "{id} names {occupant}, which does not hold it"
                );
            }
        }
    }

    /// Deadlines, terminal states, queue positions and work conservation.
    fn check_allocations(
        &mut self,
        snap: &Snapshot,
        ctx: &Ctx,
        view: &View<'_>,
        front: Option<Uuid>,
    ) {
        let mut rank = 0;
        self.queued.clear();
        for a in &snap.allocations {
            let id = a.allocation_id;
            self.expires.insert(id, a.expires);
            match a.state {
                AllocationState::Queued => {
                    rank += 1;
                    let give_up = a.wait_until.min(a.expires);
                    assert_eq!(a.deadline, Some(give_up), "{id} waits until {give_up}");
                    assert_eq!(a.position, Some(rank), "{id}'s position");
                    let count = a.requirements.count as usize;
                    let could = view.could_gather(id, &a.requirements, front == Some(id));
                    assert!(
                        could < count,
                        "{id} waits for {count} although {could} are free"
                    );
                    self.queued.insert(id, (a.seq, a.requirements.clone()));
                }
                AllocationState::Provisioning => assert!(a.deadline.is_some()),
                AllocationState::Ready => {
                    assert_eq!(a.deadline, Some(a.expires));
                    assert!(a.expires > view.now, "{id} is ready past its lease end");
                    assert!(self.ready.contains(&id), "{id} is ready and was never told");
                }
                state => {
                    assert_eq!(a.deadline, None);
                    match self.terminal.get(&id) {
                        Some(seen) => assert_eq!(*seen, state, "{id} ended twice"),
                        None => {
                            self.check_ending(id, state, ctx);
                            self.terminal.insert(id, state);
                            self.closed.insert(id);
                        }
                    }
                    continue;
                }
            }
            assert!(
                !self.terminal.contains_key(&id),
                "{id} came back after ending"
            );
            assert!(
                !self.finals.contains_key(&id),
                "{id} is live after its final output"
            );
        }
    }

    /// An allocation that just ended did so in the way its final output (or none) says.
    fn check_ending(&self, id: Uuid, state: AllocationState, ctx: &Ctx) {
        let fin = self.finals.get(&id);
        match state {
            AllocationState::TimedOut => {
                assert!(
                    matches!(fin, Some(Output::TimedOut { allocation_id, .. }) if *allocation_id == id),
                    "timed out without its 408: {fin:?}"
                )
            }
            AllocationState::Expired => {
                assert_eq!(fin, Some(&Output::Expired { allocation_id: id }))
            }
            AllocationState::Released if ctx.deleted == Some(id) => {
                assert_eq!(fin, Some(&Output::Released { allocation_id: id }))
            }
            // Refused while it waited by a policy that it could never fit: its 403 said so.
            AllocationState::Cancelled if matches!(fin, Some(Output::QuotaRefused { allocation_id, .. }) if *allocation_id == id) =>
                {}
            AllocationState::Released | AllocationState::Cancelled => {
                let why = format!("{id} ended {state:?} without its client leaving");
                assert_eq!(ctx.gone, Some(id), "{why}");
                let said = "its followers hear `released` after its client left";
                assert_eq!(
                    fin,
                    Some(&Output::Released { allocation_id: id }),
                    "{id}: {said}"
                );
            }
            live => unreachable!("{live:?} is not terminal"),
        }
    }
}

/// No user holds more than the quotas in force allow. The limits are worked out here from the
/// policy by the documented rule (the user's own, else the smallest of their groups', else
/// the default), apart from the engine's own reckoning.
impl Sim {
    /// No user holds more than a limit allows. GPUs count as the resource had them when the
    /// allocation took it: one that an agent registers again with more GPUs while it is held
    /// does not put its holder over (the engine then counts it as it is now, so that the user
    /// gets no more until below the limit).
    fn check_quotas(&mut self, snap: &Snapshot, view: &View<'_>) {
        let Some(policy) = &snap.quotas else {
            self.gpus_taken.clear();
            return;
        };
        let mut held: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
        let mut taken = BTreeMap::new();
        for a in view.allocations.values() {
            if !matches!(
                a.state,
                AllocationState::Provisioning | AllocationState::Ready
            ) {
                continue;
            }
            let ids = a.inventory_id.into_iter();
            let ids = ids.chain(a.others.iter().map(|h| h.inventory_id));
            let mut gpus = 0;
            for id in ids {
                let Some((_, _, r)) = view.resources.get(&id) else {
                    continue;
                };
                let now = r.spec.gpu.len() as u64;
                let first = *self.gpus_taken.get(&(a.allocation_id, id)).unwrap_or(&now);
                taken.insert((a.allocation_id, id), first);
                gpus += now.min(first);
            }
            let mine = held.entry(&a.requirements.username).or_default();
            mine[0] += 1;
            mine[1] += 1 + a.others.len() as u64;
            mine[2] += gpus;
        }
        for (user, [allocations, resources, gpus]) in held {
            let limit = |of: fn(&QuotaLimits) -> Option<u32>| {
                of(policy.users.get(user).unwrap_or(&QuotaLimits::default()))
                    .or_else(|| {
                        let groups = policy.groups.values();
                        let mine = groups.filter(|g| g.members.iter().any(|m| m == user));
                        mine.filter_map(|g| of(&g.limits)).min()
                    })
                    .or_else(|| of(&policy.default))
                    .map_or(u64::MAX, u64::from)
            };
            assert!(
                allocations <= limit(|l| l.allocations_max),
                "{user} holds {allocations} allocations"
            );
            assert!(
                resources <= limit(|l| l.resources_max),
                "{user} holds {resources} resources"
            );
            assert!(gpus <= limit(|l| l.gpus_max), "{user} holds {gpus} GPUs");
        }
        self.gpus_taken = taken;
    }
}
