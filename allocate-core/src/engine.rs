//! The engine: a deterministic state machine fed with `now` and inputs, drained of outputs.
//!
//! Every mutator takes `now`, first fires the deadlines that are due by then, then applies its
//! input. Outputs accumulate until drained with [`Engine::poll_output`]; [`Engine::poll_timeout`]
//! says when to call [`Engine::handle_timeout`] next. A refused input changes nothing. Queue
//! positions are computed when the outputs are drained (see [`Engine::poll_output`]), so a
//! batch of inputs costs one report per request that moved, not one per input.

mod lifecycle;
mod order;
mod quotas;
mod session;
mod shutdown;
pub(crate) mod snapshot;
mod timers;
mod usage;

use crate::config::Config;
use crate::criteria::Criteria;
use crate::error::{Error, Result};
use crate::explain::{self, Availability, Explanation, Reason};
use crate::filter::InventoryFilter;
use crate::hash::FxMap;
use crate::ids::IdSource;
use crate::inventory::{Inventory, Resource};
use crate::model::{Connection, GrantedResource, HeldResource, Requirements, ResourceSpec};
use crate::output::Output;
use crate::policy::MatchPolicy;
use crate::queue::Queue;
use crate::quota::{Policy, Quotas};
use crate::record::{Input, ProvisionResult, Record};
use crate::time::Timestamp;
use crate::view::{
    AllocationInfo, AllocationState, InventoryEntry, InventoryEntryRef, ResourceState,
};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use timers::{Deadline, Timers};
use uuid::Uuid;

pub use session::{Registered, SessionId};
pub use snapshot::Snapshot;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    /// The allocation's wait, provision or lease deadline (which one follows from its state).
    Allocation(Uuid),
    /// An unacknowledged release of this resource gives up.
    Release(Uuid),
}

/// Whether a deadline in [`Timers`] is still pending: its allocation, or the resource whose
/// release it ends, still has it.
fn pending<'a>(
    allocations: &'a FxMap<Uuid, Box<Allocation>>,
    inventory: &'a Inventory,
) -> impl Fn(&Deadline) -> bool + 'a {
    move |&(t, timer)| match timer {
        Timer::Allocation(id) => allocations.get(&id).is_some_and(|a| a.deadline == Some(t)),
        Timer::Release(id) => inventory
            .slot_of(&id)
            .is_some_and(|slot| inventory.get(slot).release_deadline == Some(t)),
    }
}

/// A request or allocation and where it stands.
#[derive(Clone, Debug)]
struct Allocation {
    id: Uuid,
    requirements: Requirements,
    criteria: Criteria,
    /// Arrival order: its place in the queue, kept when it goes back after a failed provision.
    seq: u64,
    created: Timestamp,
    /// The lease end (effective, after capping). For a lease counted from `ready`, an upper
    /// bound until then: it is set again when the allocation becomes ready.
    expires: Timestamp,
    /// The lease length counted from `ready` (capped), when no absolute `expires` was asked
    /// (`duration_seconds` or the default lease); `None` once the lease end is absolute.
    lease_secs: Option<u64>,
    /// When waiting in the queue gives up.
    wait_until: Timestamp,
    state: AllocationState,
    /// The resource it holds (the first of several).
    inventory_id: Option<Uuid>,
    /// How to reach that resource: set when ready (for several, as soon as it is known).
    connection: Option<Arc<Connection>>,
    /// When it became ready.
    ready_at: Option<Timestamp>,
    /// The other resources of a request for several (`count`), in the order chosen; empty
    /// for a single resource.
    others: Vec<HeldResource>,
    /// The pending timer of this allocation, if any.
    deadline: Option<Timestamp>,
}

/// Counts for metrics and dashboards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Resources in each state, in the order of [`ResourceState::ALL`].
    pub resources_by_state: [u64; 6],
    /// Requests waiting in the queue.
    pub queued: u64,
    /// Allocations being provisioned.
    pub provisioning: u64,
    /// Allocations that are ready.
    pub ready: u64,
    /// Agents with an open socket.
    pub agents_online: u64,
    /// Allocations ended since the engine was created (counters), in the order of
    /// [`AllocationState::ENDED`].
    pub ended_by_state: [u64; 4],
    /// Failed provisions and releases since the engine was created, by agent (only agents
    /// that failed at least once).
    pub failures_by_agent: BTreeMap<Uuid, AgentFailures>,
}

/// An agent's failures since the engine was created (counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentFailures {
    /// Provisions that the agent answered with a failure or did not answer in time.
    pub provision: u64,
    /// Releases that the agent did not acknowledge in time.
    pub release: u64,
}

/// The allocation engine. See the module docs for how to drive it.
pub struct Engine {
    config: Config,
    now: Timestamp,
    next_seq: u64,
    inventory: Inventory,
    /// Boxed, so that the map's growth moves pointers and not whole allocations: a resize of
    /// tens of thousands of entries would otherwise hold the engine for milliseconds.
    allocations: FxMap<Uuid, Box<Allocation>>,
    /// Ended allocations, oldest first, kept for queries up to `ended_allocations_max`.
    ended: VecDeque<Uuid>,
    /// Usage of ended allocations, oldest end first, kept for `usage_retention_secs`.
    usage: usage::UsageLog,
    /// Allocation -> its resources whose release waits on an agent's acknowledgement (several
    /// only for an allocation of several resources, on one agent only after a re-registration
    /// made static ones need releasing), in no order that may matter: a restored engine lists
    /// them in its agents' order, not in the order the releases began.
    releases: FxMap<Uuid, Vec<Uuid>>,
    /// Allocation -> the agents still to acknowledge the release of a provision of it they
    /// abandoned: it is not placed on their resources until they do.
    abandoned: FxMap<Uuid, Vec<Uuid>>,
    queue: Queue,
    timers: Timers,
    outputs: VecDeque<Output>,
    records: Vec<Record>,
    ids: Box<dyn IdSource>,
    policy: Option<Arc<dyn MatchPolicy>>,
    /// The quotas in force and what each user holds; `None` (no quotas) costs placement nothing.
    quotas: Option<Box<Quotas>>,
    /// Allocations ended so far, in the order of [`AllocationState::ENDED`].
    ended_total: [u64; 4],
    /// Failures so far, by agent (bounded by the agents ever registered).
    failures: BTreeMap<Uuid, AgentFailures>,
    /// See [`Engine::changes`].
    changes: u64,
    /// Set by [`Engine::shut_down`]: new work is refused.
    shutting_down: bool,
    /// The agent that each registered connection registered (see [`session`]).
    sessions: FxMap<SessionId, Uuid>,
    /// The connection of each agent that currently speaks for it.
    agent_sessions: FxMap<Uuid, SessionId>,
    /// Moves in the queue are reported at most this often (ms); 0: at every drain.
    position_report_ms: u64,
    /// When moves in the queue were last reported.
    positions_reported: Option<Timestamp>,
    /// Resources held by each user's live allocations, for fair-share order (empty in
    /// arrival order; users holding none are absent).
    held: FxMap<String, u32>,
    /// The front of the queue as of the end of the last input (see [`order`]), which views
    /// read; derived, never stored.
    front: Option<order::Front>,
    /// Whether each waiting request could be served by the registered resources, remembered
    /// for one [`Inventory::generation`].
    feasible: (u64, FxMap<Uuid, bool>),
    /// The needs of fronts that, within the current input, had resources left held for them
    /// although they are not [`Engine::front`]; empty between inputs.
    interim: Vec<Criteria>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("now", &self.now)
            .field("resources", &self.inventory.len())
            .field("allocations", &self.allocations.len())
            .field("queued", &self.queue.len())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What applying an input returned.
enum Reply {
    Nothing,
    InventoryIds(Vec<Uuid>),
    Expires(u64),
}

impl Allocation {
    /// When waiting (in the queue or for a provision) gives up: the wait's deadline, or the
    /// lease end if that is absolute and earlier. A lease counted from `ready` cannot end first.
    fn give_up(&self) -> Timestamp {
        match self.lease_secs {
            Some(_) => self.wait_until,
            None => self.wait_until.min(self.expires),
        }
    }
}

impl Engine {
    /// An empty engine with these settings, drawing allocation ids from `ids`.
    pub fn new(config: Config, ids: Box<dyn IdSource>) -> Self {
        Engine {
            config,
            now: Timestamp::default(),
            next_seq: 0,
            inventory: Inventory::default(),
            allocations: FxMap::default(),
            ended: VecDeque::new(),
            usage: usage::UsageLog::default(),
            releases: FxMap::default(),
            abandoned: FxMap::default(),
            queue: Queue::default(),
            timers: Timers::default(),
            outputs: VecDeque::new(),
            records: Vec::new(),
            ids,
            policy: None,
            quotas: None,
            ended_total: [0; 4],
            failures: BTreeMap::new(),
            changes: 0,
            shutting_down: false,
            sessions: FxMap::default(),
            agent_sessions: FxMap::default(),
            position_report_ms: 0,
            positions_reported: None,
            held: FxMap::default(),
            front: None,
            feasible: (0, FxMap::default()),
            interim: Vec::new(),
        }
    }

    /// Installs a matching policy (replacing any earlier one); `None` restores plain best fit.
    pub fn set_policy(&mut self, policy: Option<Arc<dyn MatchPolicy>>) {
        self.policy = policy;
    }

    /// Sets the quotas (API.md, "Quotas and order"; `None`: no quotas), a recorded input:
    /// waiting requests that the new limits allow are placed at once. The policy in force
    /// already (a reload that changed nothing) records nothing; time still moves to `now`.
    pub fn set_quotas(&mut self, now: Timestamp, policy: Option<Policy>) -> Result<()> {
        if self.quotas() == policy.as_ref() {
            self.handle_timeout(now);
            return Ok(());
        }
        self.handle(now, Input::SetQuotas { policy }).map(drop)
    }

    /// The quotas in force, if any.
    pub fn quotas(&self) -> Option<&Policy> {
        self.quotas.as_deref().map(|q| &q.policy)
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The latest time the engine has been given.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    // ---- inputs -------------------------------------------------------------------------

    /// An agent registers (or replaces) its resource list; returns their ids in order.
    pub fn register_agent(
        &mut self,
        now: Timestamp,
        agent_id: Uuid,
        resources: Vec<ResourceSpec>,
    ) -> Result<Vec<Uuid>> {
        match self.handle(
            now,
            Input::Register {
                agent_id,
                resources,
            },
        )? {
            Reply::InventoryIds(ids) => Ok(ids),
            _ => unreachable!("register replies with ids"),
        }
    }

    /// An agent's socket closed: its resources go offline.
    pub fn disconnect_agent(&mut self, now: Timestamp, agent_id: Uuid) -> Result<()> {
        self.handle(now, Input::Disconnect { agent_id }).map(drop)
    }

    /// A user asks for an allocation; returns its id. Outputs say what became of it.
    pub fn request(&mut self, now: Timestamp, requirements: Requirements) -> Result<Uuid> {
        let allocation_id = self.ids.next_id();
        self.handle(
            now,
            Input::Request {
                allocation_id,
                requirements,
            },
        )?;
        Ok(allocation_id)
    }

    /// An agent answers a provision.
    pub fn provisioned(
        &mut self,
        now: Timestamp,
        agent_id: Uuid,
        allocation_id: Uuid,
        result: ProvisionResult,
    ) -> Result<()> {
        let input = Input::Provisioned {
            agent_id,
            allocation_id,
            result,
        };
        self.handle(now, input).map(drop)
    }

    /// An agent acknowledges a release: the resource is free again.
    pub fn release_acknowledged(
        &mut self,
        now: Timestamp,
        agent_id: Uuid,
        allocation_id: Uuid,
    ) -> Result<()> {
        self.handle(
            now,
            Input::ReleaseAcknowledged {
                agent_id,
                allocation_id,
            },
        )
        .map(drop)
    }

    /// Frees an allocation or cancels a waiting request (the contract's DELETE).
    pub fn release(&mut self, now: Timestamp, allocation_id: Uuid) -> Result<()> {
        self.handle(now, Input::Release { allocation_id }).map(drop)
    }

    /// The requesting client's socket closed: cancels a waiting request or one being
    /// provisioned (its agent is told to release; its late answer is taken and changes
    /// nothing), and ends a held allocation that asked for `release_on_disconnect`. An ended
    /// allocation is left as it is.
    pub fn client_gone(&mut self, now: Timestamp, allocation_id: Uuid) -> Result<()> {
        self.handle(now, Input::ClientGone { allocation_id })
            .map(drop)
    }

    /// Moves a live allocation's lease end (unix seconds); returns the effective, capped value.
    pub fn set_expires(
        &mut self,
        now: Timestamp,
        allocation_id: Uuid,
        expires: u64,
    ) -> Result<u64> {
        match self.handle(
            now,
            Input::SetExpires {
                allocation_id,
                expires,
            },
        )? {
            Reply::Expires(e) => Ok(e),
            _ => unreachable!("set_expires replies with the lease end"),
        }
    }

    /// Takes a resource out of service once its lease ends (`Some(reason)`), or returns it
    /// to service and clears any error (`None`).
    pub fn set_maintenance(
        &mut self,
        now: Timestamp,
        inventory_id: Uuid,
        reason: Option<String>,
    ) -> Result<()> {
        self.handle(
            now,
            Input::SetMaintenance {
                inventory_id,
                reason,
            },
        )
        .map(drop)
    }

    /// Fires every deadline due by `now`. Calling it early or twice is harmless.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let (before, recorded) = (self.now, self.records.len());
        self.advance(now);
        self.record_time_moved(before, recorded);
    }

    /// Applies a recorded input (replay from a journal). Its time must not go backwards.
    pub fn apply(&mut self, record: &Record) -> Result<()> {
        self.handle(record.now, record.input.clone()).map(drop)
    }

    // ---- outputs ------------------------------------------------------------------------

    /// The next thing to tell a client or agent, if any.
    ///
    /// Queue positions are reported when everything else has been drained: each waiting
    /// request whose position moved since the last report is told its current one once,
    /// after the other outputs, however often it moved in between. A shell that applies many
    /// inputs before draining (a batch) thus sends one `queued` per moved request, not one
    /// per move. With [`Engine::set_position_report_ms`], moves are reported at most that
    /// often: a request's first position is told at once, later moves at the end of the
    /// interval (see [`Engine::poll_timeout`]).
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.report_positions();
        }
        self.outputs.pop_front()
    }

    /// When [`Engine::handle_timeout`] should next be called, if anything is pending: the
    /// first deadline, or the end of the interval that holds back moves in the queue.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let deadline = self.timers.first().map(|&(t, _)| t);
        let positions = self
            .positions_due()
            .filter(|&due| due > self.now && self.queue.moved());
        match (deadline, positions) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Reports moves in the queue at most every `ms` milliseconds (0, the default: whenever
    /// outputs are drained). When thousands of waiting clients leave within a moment, each
    /// one left behind then hears one position per interval instead of one per drain, and
    /// the engine walks the queue once per interval. Not part of the state: the shell sets
    /// it after creating or restoring the engine.
    pub fn set_position_report_ms(&mut self, ms: u64) {
        self.position_report_ms = ms;
    }

    /// When moves in the queue may next be reported, if they are held back at all.
    fn positions_due(&self) -> Option<Timestamp> {
        let last = self.positions_reported?;
        (self.position_report_ms > 0).then(|| last.add_millis(self.position_report_ms))
    }

    /// The inputs accepted since the last call (only when `record_inputs` is on).
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }

    // ---- queries ------------------------------------------------------------------------

    /// Every resource, in registration order.
    pub fn inventory(&self) -> impl Iterator<Item = InventoryEntry> + '_ {
        self.inventory_refs().map(|e| e.to_entry())
    }

    /// Every resource, in registration order, borrowed rather than copied.
    pub fn inventory_refs(&self) -> impl Iterator<Item = InventoryEntryRef<'_>> + '_ {
        self.inventory.iter().map(|r| self.entry_of(r))
    }

    /// The resources a listing filter shows, in registration order. Tags and `state=free` are
    /// answered by the matching index, not by a scan.
    pub fn inventory_filtered<'a>(
        &'a mut self,
        filter: &'a InventoryFilter,
    ) -> impl Iterator<Item = InventoryEntryRef<'a>> + 'a {
        let free_only = filter.state == Some(ResourceState::Free);
        let slots = if filter.tags.is_empty() && !free_only {
            self.inventory.slots_in_order().collect()
        } else {
            self.inventory.with_tags(&filter.tags, free_only)
        };
        let this = &*self;
        slots
            .into_iter()
            .map(move |slot| this.entry_of(this.inventory.get(slot)))
            .filter(move |e| filter.state.is_none_or(|s| s == e.state))
    }

    /// One resource.
    pub fn resource(&self, inventory_id: &Uuid) -> Option<InventoryEntry> {
        self.inventory
            .slot_of(inventory_id)
            .map(|s| self.entry_of(self.inventory.get(s)).to_entry())
    }

    /// Number of registered resources.
    pub fn resource_count(&self) -> usize {
        self.inventory.len()
    }

    /// Number of requests waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// One allocation (live, or ended and still remembered).
    pub fn allocation(&self, allocation_id: &Uuid) -> Option<AllocationInfo> {
        self.allocations.get(allocation_id).map(|a| self.info_of(a))
    }

    /// What a socket that starts following `allocation_id` is told first: its current state
    /// as the creating socket saw it last (API.md, "Following an allocation"): `queued` with
    /// its current position, or `ready` with its connection and lease end, then `offline`
    /// while its resource's agent is away. Empty while it is being provisioned (its `ready`
    /// follows) and for an ended or unknown allocation. Changes nothing (`&mut` only for the
    /// matcher's scratch space).
    pub fn current_outputs(&mut self, allocation_id: &Uuid) -> Vec<Output> {
        let Some(a) = self.allocations.get(allocation_id) else {
            return Vec::new();
        };
        match a.state {
            AllocationState::Queued => {
                let Some(position) = self.queue.position_sent(a.seq).filter(|&p| p > 0) else {
                    return Vec::new();
                };
                let (matching_resources, eta) = self.inventory.outlook(&a.criteria);
                // A follower's first message is its first too: it says why, as the creator's did.
                let explain = (matching_resources == 0).then(|| self.explanation(&a.requirements));
                vec![Output::Queued {
                    allocation_id: a.id,
                    position,
                    matching_resources,
                    eta: eta.map(Timestamp::as_secs),
                    explain,
                    quota: quotas::quota_reason(self.quotas.as_deref(), &mut self.inventory, a),
                }]
            }
            AllocationState::Ready => {
                let Some(ready) = ready_output(a) else {
                    return Vec::new();
                };
                let mut out = vec![ready];
                let offline = held_ids(a)
                    .filter_map(|id| self.inventory.slot_of(&id))
                    .any(|s| !self.inventory.get(s).online);
                if offline {
                    out.push(Output::Offline {
                        allocation_id: a.id,
                    });
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// Every remembered allocation, live ones first by arrival, then ended ones oldest first.
    pub fn allocations(&self) -> Vec<AllocationInfo> {
        self.remembered().map(|a| self.info_of(a)).collect()
    }

    /// Every remembered allocation, live ones first by arrival, then ended ones oldest first.
    fn remembered(&self) -> impl Iterator<Item = &Allocation> {
        let mut live: Vec<&Allocation> = self
            .allocations
            .values()
            .map(Box::as_ref)
            .filter(|a| !a.state.is_terminal())
            .collect();
        live.sort_unstable_by_key(|a| a.seq);
        let ended = self.ended.iter().filter_map(|id| self.allocations.get(id));
        live.into_iter().chain(ended.map(Box::as_ref))
    }

    /// What a live or remembered allocation asked for (read-only; shells show it, as the
    /// dashboard's queue does, without the connection details that [`AllocationInfo`] has).
    pub fn requirements(&self, allocation_id: &Uuid) -> Option<&Requirements> {
        self.allocations.get(allocation_id).map(|a| &a.requirements)
    }

    /// Why `req` is or is not served now (API.md, "Why not"): how many registered resources
    /// match it, how many of those are free, and the findings. A dry run: nothing changes, and
    /// neither `username` nor the lease is read. Refused (naming the field) when the parts
    /// that matching reads are beyond the limits.
    pub fn explain(&self, req: &Requirements) -> Result<Explanation> {
        crate::validate::matching(req, &self.config.limits)?;
        Ok(self.explanation(req))
    }

    /// The explanation of what a live request (queued, provisioning or ready) asks for;
    /// `not_found` for an unknown or ended one.
    pub fn explain_allocation(&self, allocation_id: &Uuid) -> Result<Explanation> {
        Ok(self.explanation(&self.live(*allocation_id)?.requirements))
    }

    /// The explanation of `req`, already validated: with a `quota` finding for the free
    /// matching resources that its user's quota keeps from it (none without a username).
    fn explanation(&self, req: &Requirements) -> Explanation {
        let quota = &self.quota_check(req);
        let resources = self.inventory.iter_unordered().map(move |r| {
            let availability = move || {
                self.availability(r)
                    .or_else(|| quota.as_ref()?.keeps(r).then_some(Reason::Quota))
            };
            (&*r.spec, availability)
        });
        let hold = quota.as_ref().map(|q| &q.hold);
        explain::explain_known(req, resources, Some(self.inventory.known()), hold)
    }

    /// Why a request that the registered resources could never satisfy (none matches, or
    /// fewer than its `count`) is not served (`None` when they could): what its first
    /// `queued` message and its `408` carry.
    fn explain_if_hopeless(&mut self, id: Uuid) -> Option<Explanation> {
        let a = &self.allocations[&id];
        let hopeless = match a.requirements.count {
            1 => !self.inventory.could_satisfy(&a.criteria),
            count => self.inventory.outlook(&a.criteria).0 < u64::from(count),
        };
        hopeless.then(|| self.explanation(&a.requirements))
    }

    /// What a resource is doing, as a finding names it: `None` when it could be placed on now.
    fn availability(&self, r: &Resource) -> Availability {
        if !r.online {
            Some(Reason::Offline)
        } else if let Some(occupant) = r.occupant {
            let provisioning = self
                .allocations
                .get(&occupant)
                .is_some_and(|a| a.state == AllocationState::Provisioning);
            Some(if provisioning {
                Reason::Provisioning
            } else {
                Reason::Allocated
            })
        } else if r.maintenance.is_some() {
            Some(Reason::Maintenance)
        } else if r.error.is_some() {
            Some(Reason::Error)
        } else if self.reserved(r) {
            Some(Reason::Reserved)
        } else {
            None
        }
    }

    /// A counter that grows whenever what the queries show may have changed: on every input
    /// (accepted or refused) and every timer call that fired a deadline. Equal values mean
    /// nothing changed, so a shell can poll it cheaply and rebuild a view only when it
    /// moved (the dashboard feed does). It is not part of snapshots: it starts at 0 in every
    /// engine, restored ones included.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Counts of resources and allocations by state.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for r in self.inventory.iter() {
            let i = ResourceState::ALL
                .iter()
                .position(|s| *s == self.state_of(r))
                .unwrap_or(0);
            stats.resources_by_state[i] += 1;
        }
        for a in self.allocations.values() {
            match a.state {
                AllocationState::Queued => stats.queued += 1,
                AllocationState::Provisioning => stats.provisioning += 1,
                AllocationState::Ready => stats.ready += 1,
                _ => {}
            }
        }
        stats.ended_by_state = self.ended_total;
        stats.failures_by_agent = self.failures.clone();
        stats.agents_online = self
            .inventory
            .agent_ids()
            .iter()
            .filter(|id| self.inventory.agent(id).is_some_and(|a| a.online))
            .count() as u64;
        stats
    }

    fn info_of(&self, a: &Allocation) -> AllocationInfo {
        AllocationInfo {
            allocation_id: a.id,
            inventory_id: a.inventory_id,
            inventory_ids: held_ids(a).collect(),
            username: a.requirements.username.clone(),
            state: a.state,
            created: a.created.as_secs(),
            expires: a.expires.as_secs(),
            // Several resources' connections arrive one by one: none is shown before all are.
            connection: a
                .connection
                .clone()
                .filter(|_| a.state != AllocationState::Provisioning),
            position: (a.state == AllocationState::Queued)
                .then(|| self.queue.position_sent(a.seq))
                .flatten(),
            created_at: a.created,
        }
    }

    // ---- the loop -----------------------------------------------------------------------

    fn handle(&mut self, now: Timestamp, input: Input) -> Result<Reply> {
        if self.shutting_down && shutdown::is_new_work(&input) {
            return Err(Error::ShuttingDown);
        }
        self.changes = self.changes.wrapping_add(1);
        let (before, recorded) = (self.now, self.records.len());
        let now = self.advance(now);
        // The input itself is handed over, so that what it carries is moved, not copied, into
        // the engine; a copy is kept only when inputs are recorded.
        let kept = self.config.record_inputs.then(|| input.clone());
        let reply = self.apply_input(input).inspect_err(|_| {
            self.record_time_moved(before, recorded);
        })?;
        self.settle_front();
        self.fire_due();
        if let Some(input) = kept {
            self.records.push(Record { now, input });
        }
        Ok(reply)
    }

    /// Moves time forward (never back) and fires what is due; a firing is recorded as a tick.
    fn advance(&mut self, now: Timestamp) -> Timestamp {
        self.now = self.now.max(now);
        if self.fire_due() {
            self.changes = self.changes.wrapping_add(1);
            if self.config.record_inputs {
                self.records.push(Record {
                    now: self.now,
                    input: Input::Tick,
                });
            }
        }
        self.now
    }

    /// Records a tick when time moved past `before` and nothing since `recorded` says so (a
    /// timer call that fired nothing, a refused input), so that a replay ends at the same `now`.
    fn record_time_moved(&mut self, before: Timestamp, recorded: usize) {
        if self.config.record_inputs && self.now > before && self.records.len() == recorded {
            self.records.push(Record {
                now: self.now,
                input: Input::Tick,
            });
        }
    }

    /// Fires due timers in deadline order; returns whether any fired.
    fn fire_due(&mut self) -> bool {
        let mut fired = false;
        while let Some(&(t, timer)) = self.timers.first() {
            if t > self.now {
                break;
            }
            self.timers
                .pop_first(pending(&self.allocations, &self.inventory));
            fired = true;
            match timer {
                Timer::Allocation(id) => {
                    if let Some(a) = self.allocations.get_mut(&id) {
                        a.deadline = None;
                    }
                    self.allocation_deadline(id);
                }
                Timer::Release(inventory_id) => self.release_deadline(inventory_id),
            }
        }
        if fired {
            self.settle_front();
        }
        fired
    }

    fn apply_input(&mut self, input: Input) -> Result<Reply> {
        match input {
            Input::Register {
                agent_id,
                resources,
            } => self
                .do_register(agent_id, resources)
                .map(Reply::InventoryIds),
            Input::Disconnect { agent_id } => self.do_disconnect(agent_id).map(|()| Reply::Nothing),
            Input::Request {
                allocation_id,
                requirements,
            } => self
                .do_request(allocation_id, requirements)
                .map(|()| Reply::Nothing),
            Input::Provisioned {
                agent_id,
                allocation_id,
                result,
            } => self
                .do_provisioned(agent_id, allocation_id, &result)
                .map(|()| Reply::Nothing),
            Input::ReleaseAcknowledged {
                agent_id,
                allocation_id,
            } => self
                .do_release_acknowledged(agent_id, allocation_id)
                .map(|()| Reply::Nothing),
            Input::Release { allocation_id } => {
                self.do_release(allocation_id).map(|()| Reply::Nothing)
            }
            Input::ClientGone { allocation_id } => {
                self.do_client_gone(allocation_id).map(|()| Reply::Nothing)
            }
            Input::SetExpires {
                allocation_id,
                expires,
            } => self
                .do_set_expires(allocation_id, expires)
                .map(Reply::Expires),
            Input::SetMaintenance {
                inventory_id,
                reason,
            } => self
                .do_set_maintenance(inventory_id, reason.as_deref())
                .map(|()| Reply::Nothing),
            Input::SetQuotas { policy } => {
                self.do_set_quotas(policy);
                Ok(Reply::Nothing)
            }
            Input::Tick => Ok(Reply::Nothing),
        }
    }

    /// An allocation or resource has just given up its pending deadline (cleared its own
    /// field): the timers take it out.
    fn deadline_given_up(&mut self) {
        self.timers
            .remove(pending(&self.allocations, &self.inventory));
    }

    fn set_timer(&mut self, id: Uuid, at: Option<Timestamp>) {
        let a = self
            .allocations
            .get_mut(&id)
            .expect("timer for a known allocation");
        if a.deadline == at {
            return;
        }
        if std::mem::replace(&mut a.deadline, at).is_some() {
            self.deadline_given_up();
        }
        if let Some(at) = at {
            self.timers.insert((at, Timer::Allocation(id)));
        }
    }

    fn live(&self, id: Uuid) -> Result<&Allocation> {
        self.allocations
            .get(&id)
            .map(Box::as_ref)
            .filter(|a| !a.state.is_terminal())
            .ok_or_else(|| Error::not_found("allocation", id))
    }

    fn report_positions(&mut self) {
        let changes = if self.positions_due().is_some_and(|due| self.now < due) {
            // Moves wait for the interval's end; a new request hears its place at once.
            self.queue.first_positions()
        } else {
            let changes = self.queue.position_changes();
            if !changes.is_empty() {
                self.positions_reported = Some(self.now);
            }
            changes
        };
        // One placement moves every request behind it: requests with equal needs share one
        // outlook per report instead of walking the matching shapes once each.
        let mut outlooks: FxMap<&Criteria, (u64, Option<Timestamp>)> = FxMap::default();
        for (id, position, first) in changes {
            let a = &self.allocations[&id];
            let (matching_resources, eta) = *outlooks
                .entry(&a.criteria)
                .or_insert_with(|| self.inventory.outlook(&a.criteria));
            let hopeless = matching_resources < u64::from(a.requirements.count);
            let explain = (first && hopeless).then(|| self.explanation(&a.requirements));
            let quota = quotas::quota_reason(self.quotas.as_deref(), &mut self.inventory, a);
            self.outputs.push_back(Output::Queued {
                allocation_id: id,
                position,
                matching_resources,
                eta: eta.map(Timestamp::as_secs),
                explain,
                quota,
            });
        }
    }
}

/// The resources `a` holds or held, the first one first.
fn held_ids(a: &Allocation) -> impl Iterator<Item = Uuid> + '_ {
    a.inventory_id
        .into_iter()
        .chain(a.others.iter().map(|h| h.inventory_id))
}

/// The `ready` that `a` is (or was) told, once every resource it holds has its connection.
fn ready_output(a: &Allocation) -> Option<Output> {
    let (inventory_id, connection) = (a.inventory_id?, a.connection.clone()?);
    let mut resources = Vec::new();
    if !a.others.is_empty() {
        resources.reserve(a.others.len() + 1);
        resources.push(GrantedResource {
            inventory_id,
            connection: connection.clone(),
        });
        for h in &a.others {
            resources.push(GrantedResource {
                inventory_id: h.inventory_id,
                connection: h.connection.clone()?,
            });
        }
    }
    Some(Output::Ready {
        allocation_id: a.id,
        inventory_id,
        connection,
        expires: a.expires.as_secs(),
        resources,
    })
}

impl Engine {
    /// Where `r` stands, as inventory shows it.
    fn state_of(&self, r: &Resource) -> ResourceState {
        if !r.online {
            ResourceState::Offline
        } else if r.occupant.is_some() && !(r.abandoned && r.error.is_some()) {
            // Cleaning up after a provision that failed says `error`, as the failure does.
            ResourceState::Allocated
        } else if r.maintenance.is_some() {
            ResourceState::Maintenance
        } else if r.error.is_some() {
            ResourceState::Error
        } else if self.reserved(r) {
            ResourceState::Reserved
        } else {
            ResourceState::Free
        }
    }

    fn entry_of<'a>(&self, r: &'a Resource) -> InventoryEntryRef<'a> {
        let state = self.state_of(r);
        let reason = match state {
            ResourceState::Maintenance => r.maintenance.as_deref(),
            ResourceState::Error => r.error.as_deref(),
            _ => None,
        };
        InventoryEntryRef {
            inventory_id: r.id,
            labels: &r.spec.labels,
            cpu_count: r.spec.cpu_count,
            memory_gb: r.spec.memory_gb,
            gpu: &r.spec.gpu,
            kind: &r.spec.kind,
            agent_id: r.agent_id,
            state,
            reason,
        }
    }
}

#[cfg(test)]
mod tests;
