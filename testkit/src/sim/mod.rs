//! A simulated shell around the engine, in the manner of quinn's test harness: it feeds
//! generated inputs, answers the engine's outputs as a (random) agent would, jumps the clock
//! to the engine's next deadline, and checks the engine's invariants after every step.
//!
//! One harness serves two drivers: the property tests (`allocate-core/tests/properties.rs`)
//! run *strict* scenarios, where the world behaves as a real shell and every invariant below
//! is checked; the fuzz target `engine_sequence` runs scenarios that are not strict: inputs
//! go to the engine exactly as generated (agents answer on closed sockets, a request meets
//! deadlines that are due, the policy may be [`Policy::Quirky`], whose choices nothing
//! predicts) and only the safety invariants are checked.
//!
//! The invariants checked after every step (see [`crate::invariants`]); the safety ones, which
//! every scenario checks, are marked (S):
//! - (S) no resource or allocation is listed twice; no resource is held by two live
//!   allocations, and a held resource shows `allocated` or `offline`; every occupied resource
//!   names a live holder or a pending release; stats agree with the snapshot;
//! - a client gets nothing after its final output (or after it was cancelled), at most one
//!   `ready`, and each ended allocation ends in exactly one terminal state that never changes,
//!   with the final output that state calls for;
//! - (S) nothing fires before its deadline, no `ready` allocation outlives its lease, and
//!   `poll_timeout()` is always in the future after a step; everything fires at its deadline:
//!   `expired` only once the lease end has passed;
//! - (S) agents are only asked about their own resources, and only while they are connected;
//! - a fresh request gets the contract's best fit (checked against [`reference`], with or
//!   without a matching policy), a resource freed for the queue goes to the earliest waiting
//!   request it suits, no request waits while a free resource suits it, and `queued` outputs
//!   carry the arrival rank, the matching count and the earliest lease end;
//! - `offline` and `online` only come with an agent's disconnect and return;
//! - (S) no user ever holds more than a quota allows (allocations, resources, GPUs);
//! - (S) a refused input changes nothing (the state equals a restored copy given only the
//!   time); a snapshot survives JSON and restore.
//!
//! After the run, [`Sim::finish`] drives the engine until idle and checks that every request
//! ended, and [`Sim::check_replay`] replays the recorded inputs from a mid-run snapshot.

mod garbage;

use crate::labs::T0;
use crate::policy::Policy;
use crate::reference;
use allocate_core::{
    AllocationState, Config, Connection, Engine, Error, Input, MatchPolicy, Output,
    Policy as QuotaPolicy, ProvisionResult, Record, Requirements, ResourceSpec, SeededIds,
    Snapshot, Timestamp,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

/// Where the simulated clock starts (unix milliseconds).
pub const T0_MS: u64 = T0.as_millis();

/// Most deadline jumps when driving the engine until idle; far more than any run needs.
const IDLE_STEPS_MAX: usize = 10_000;

/// A string longer than the default limit of 256 characters.
fn overlong() -> String {
    "x".repeat(300)
}

/// How an `expires` is chosen, relative to the time it is sent.
#[derive(Clone, Debug)]
pub enum Expires {
    /// No value: the default lease (for `set_expires`: `u64::MAX`, capped to the maximum).
    Default,
    /// This many seconds after the input's time (capped by the maximum lease).
    InSecs(u64),
    /// The input's own second: not in the future, so refused.
    Past,
    /// This unix second, whatever it is.
    At(u64),
}

/// How an agent answers a provision.
#[derive(Clone, Debug)]
pub enum Answer {
    /// With connection details.
    Ok,
    /// With an error.
    Fail,
}

/// Inputs that the engine must refuse (or take without harm).
///
/// In these and in [`Action`], a `pick` chooses among the items the world knows of (taken
/// modulo their count; nothing happens when there are none) and an `agent` is an agent number
/// (taken modulo [`Scenario::agents`]).
#[derive(Clone, Debug)]
pub enum Garbage {
    /// DELETE, client_gone, set_expires, a provision answer or a release ack for an unknown id.
    UnknownAllocation {
        /// Which of the five inputs, and which unknown id.
        input: u8,
    },
    /// A provision answer (or release ack) from an agent that does not own the resource.
    WrongAgent {
        /// Which provision (or release) sent.
        pick: usize,
        /// A release ack rather than a provision answer.
        ack: bool,
    },
    /// A provision answer whose connection breaks the string limit.
    OversizedConnection {
        /// Which provision sent.
        pick: usize,
    },
    /// A request breaking one rule (empty username, huge wait, past expires, bad tags, ...).
    BadRequest {
        /// Which rule.
        rule: u8,
    },
    /// A request that is valid but absurd (needs that nothing can meet).
    AbsurdRequest {
        /// Which need.
        rule: u8,
    },
    /// A registration breaking one rule (empty label, too many labels, an id twice, ...).
    BadRegistration {
        /// Who registers.
        agent: usize,
        /// Which rule.
        rule: u8,
    },
    /// A registration that is valid but absurd (huge CPU and GPU memory numbers).
    AbsurdRegistration {
        /// Who registers.
        agent: usize,
    },
    /// Disconnect of an agent that never registered.
    UnknownAgent,
    /// Maintenance on an unknown resource, or with an overlong reason.
    BadMaintenance {
        /// Which resource.
        pick: usize,
        /// An overlong reason on a known resource rather than an unknown resource.
        long_reason: bool,
    },
    /// `set_expires` with 0, `u64::MAX` or the current second on a known allocation.
    WildExpires {
        /// Which allocation.
        pick: usize,
        /// Which value.
        which: u8,
    },
}

/// One thing the simulated world does (see [`Garbage`] for `pick` and `agent`).
#[derive(Clone, Debug)]
pub enum Action {
    /// An agent registers (or replaces) its resource list.
    Register {
        /// Who registers.
        agent: usize,
        /// Its list.
        resources: Vec<ResourceSpec>,
    },
    /// An agent reconnects with the list it registered last (in a scenario that is not
    /// strict, only one that has had a list accepted).
    Reconnect {
        /// Who reconnects.
        agent: usize,
    },
    /// An agent's socket closes.
    Disconnect {
        /// Whose.
        agent: usize,
    },
    /// A client asks for an allocation.
    Request {
        /// What it asks for (`expires` is replaced).
        requirements: Requirements,
        /// Its lease end.
        expires: Expires,
    },
    /// A recorded request replayed with the id of one the engine already accepted.
    Replayed {
        /// Which accepted allocation's id.
        pick: usize,
        /// What it asks for.
        requirements: Requirements,
    },
    /// An agent answers one of the provisions it was sent (or agent `from` answers it).
    AnswerProvision {
        /// Which provision sent.
        pick: usize,
        /// How it answers.
        answer: Answer,
        /// Whether the provision stays on the list, to be answered again.
        keep: bool,
        /// Another agent answering, if any.
        from: Option<usize>,
    },
    /// An agent acknowledges one of the releases it was sent (or agent `from` does).
    AckRelease {
        /// Which release sent.
        pick: usize,
        /// Whether the release stays on the list, to be acknowledged again.
        keep: bool,
        /// Another agent acknowledging, if any.
        from: Option<usize>,
    },
    /// Someone calls DELETE on a known allocation.
    Delete {
        /// Which allocation.
        pick: usize,
    },
    /// A client's socket closes.
    ClientGone {
        /// Whose allocation.
        pick: usize,
    },
    /// Someone moves a lease end.
    SetExpires {
        /// Which allocation.
        pick: usize,
        /// The new lease end.
        expires: Expires,
    },
    /// An admin takes a resource out of service (with a reason) or returns it.
    Maintenance {
        /// Which resource.
        pick: usize,
        /// The reason, or none to return it.
        reason: Option<String>,
    },
    /// Time passes; the shell's timer fires at each deadline on the way (one checked step each).
    Advance {
        /// How long.
        ms: u64,
    },
    /// Time passes and a late timer fires once for all that came due (outputs of one step
    /// then span several instants, so checks that depend on an output's instant are skipped).
    Sleep {
        /// How long.
        ms: u64,
    },
    /// The clock jumps exactly to `poll_timeout()`.
    JumpToTimeout,
    /// The timer fires a millisecond early: nothing may happen.
    JustBeforeTimeout,
    /// The engine is replaced by one restored from its snapshot's JSON.
    RoundTrip,
    /// Input that should be refused.
    Garbage(Garbage),
}

/// An action, sent with a time `lag_ms` behind the simulated clock (the engine must treat
/// an older time as the latest it has seen).
#[derive(Clone, Debug)]
pub struct Op {
    /// What happens.
    pub action: Action,
    /// How far behind the clock the input's time is.
    pub lag_ms: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct AgentModel {
    pub(crate) id: Uuid,
    pub(crate) online: bool,
    /// The list it registered last, and the ids it got for it.
    pub(crate) resources: Vec<ResourceSpec>,
    pub(crate) ids: Option<Vec<Uuid>>,
}

/// What one step did that the checks need to know.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    /// A request made in this step, and the resource the contract says it should get now.
    pub(crate) fresh: Option<(Uuid, Option<Uuid>)>,
    /// An allocation this step DELETEd.
    pub(crate) deleted: Option<Uuid>,
    /// An allocation whose client left in this step.
    pub(crate) gone: Option<Uuid>,
}

/// One generated run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The engine's settings.
    pub config: Config,
    /// The seed of its allocation ids.
    pub seed: u64,
    /// How many agents the world has (agent numbers in actions are taken modulo this).
    pub agents: usize,
    /// The matching policy installed, if any.
    pub policy: Option<Policy>,
    /// Whether the world behaves as a real shell and every invariant is checked (see the
    /// module doc); needs no policy or [`Policy::Picky`], and the default
    /// `policy_candidates_max`, which [`reference`] assumes.
    pub strict: bool,
    /// Quotas set before the first op, if any; only in a scenario that is not strict (the
    /// contract's placement checks do not know quotas). Every scenario checks that no user is
    /// ever over a limit.
    pub quotas: Option<QuotaPolicy>,
    /// What happens, in order.
    pub ops: Vec<Op>,
    /// The op before which the snapshot that the journal is replayed from is taken.
    pub replay_at: usize,
}

/// What a run produced: every output with the time of its step, and the final state.
#[derive(Debug)]
pub struct Run {
    /// Every output, in order.
    pub outputs: Vec<(Timestamp, Output)>,
    /// The final snapshot.
    pub snapshot: Snapshot,
}

pub(crate) struct ReplayPoint {
    pub(crate) snapshot: Snapshot,
    pub(crate) log_len: usize,
}

/// The simulated world around one engine.
pub struct Sim {
    pub(crate) engine: Engine,
    pub(crate) policy: Option<Arc<dyn MatchPolicy>>,
    /// Whether the policy is [`Policy::Picky`], which [`reference`] applies too.
    pub(crate) picky: bool,
    /// Whether to check the invariants (off for the second run of a determinism check).
    pub(crate) checked: bool,
    /// See [`Scenario::strict`].
    pub(crate) strict: bool,
    pub(crate) seed: u64,
    /// Snapshot round trips so far; each restored engine gets ids from another stream.
    pub(crate) round_trips: u64,
    pub(crate) clock_ms: u64,
    pub(crate) agents: Vec<AgentModel>,
    /// Every allocation id the engine accepted, in order.
    pub(crate) requests: Vec<Uuid>,
    /// Provisions and releases sent to agents and not yet answered: (agent, allocation).
    pub(crate) provisions: Vec<(Uuid, Uuid)>,
    pub(crate) releases: Vec<(Uuid, Uuid)>,
    pub(crate) ready: BTreeSet<Uuid>,
    pub(crate) finals: BTreeMap<Uuid, Output>,
    pub(crate) terminal: BTreeMap<Uuid, AllocationState>,
    /// Clients that must get no more outputs.
    pub(crate) closed: BTreeSet<Uuid>,
    /// The last known effective lease end of each allocation.
    pub(crate) expires: BTreeMap<Uuid, Timestamp>,
    /// The requests waiting after the last step: arrival order and requirements.
    pub(crate) queued: BTreeMap<Uuid, (u64, Requirements)>,
    /// The front of the queue after the last step and the latest time it could start, as
    /// the invariants work them out (strict scenarios only).
    pub(crate) front: Option<(Uuid, Option<Timestamp>)>,
    /// The resources shown `reserved` after the last step (strict scenarios only).
    pub(crate) reserved: BTreeSet<Uuid>,
    /// The resources each user's live allocations held after the last step (strict
    /// scenarios only).
    pub(crate) held: BTreeMap<String, u32>,
    /// The (request, agent) pairs whose abandoned provision was being cleaned up after the
    /// last step.
    pub(crate) cleaning: BTreeSet<(Uuid, Uuid)>,
    /// The GPUs of each resource a live allocation holds, as they were when it was first
    /// seen holding it (a quota limits what is taken, not what a resource grows into).
    pub(crate) gpus_taken: BTreeMap<(Uuid, Uuid), u64>,
    pub(crate) log: Vec<(Timestamp, Output)>,
    /// Records taken from engines since replaced by a round trip.
    pub(crate) journal: Vec<Record>,
    pub(crate) replay: Option<ReplayPoint>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("clock_ms", &self.clock_ms)
            .field("requests", &self.requests.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn drain(engine: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| engine.poll_output()).collect()
}

fn agent_id(i: usize) -> Uuid {
    Uuid::from_u128(0xA6E0_0000 + i as u128)
}

impl Sim {
    /// A world with an empty engine; `checked` turns the invariant checks on.
    pub fn new(scenario: &Scenario, checked: bool) -> Self {
        assert!(
            !scenario.strict || scenario.policy != Some(Policy::Quirky),
            "a strict scenario needs a policy that the reference predicts"
        );
        let mut config = scenario.config.clone();
        config.record_inputs = true;
        let mut engine = Engine::new(config, Box::new(SeededIds::new(scenario.seed)));
        let policy = scenario.policy.map(Policy::install);
        engine.set_policy(policy.clone());
        assert!(
            !scenario.strict || scenario.quotas.is_none(),
            "a strict scenario cannot have quotas"
        );
        if let Some(quotas) = &scenario.quotas {
            let at = Timestamp::from_millis(T0_MS);
            engine
                .set_quotas(at, Some(quotas.clone()))
                .expect("quotas are taken");
        }
        Sim {
            engine,
            policy,
            picky: scenario.policy == Some(Policy::Picky),
            checked,
            strict: scenario.strict,
            seed: scenario.seed,
            round_trips: 0,
            clock_ms: T0_MS,
            agents: (0..scenario.agents.max(1))
                .map(|i| AgentModel {
                    id: agent_id(i),
                    online: false,
                    resources: Vec::new(),
                    ids: None,
                })
                .collect(),
            requests: Vec::new(),
            provisions: Vec::new(),
            releases: Vec::new(),
            ready: BTreeSet::new(),
            finals: BTreeMap::new(),
            terminal: BTreeMap::new(),
            closed: BTreeSet::new(),
            expires: BTreeMap::new(),
            queued: BTreeMap::new(),
            front: None,
            reserved: BTreeSet::new(),
            held: BTreeMap::new(),
            gpus_taken: BTreeMap::new(),
            cleaning: BTreeSet::new(),
            log: Vec::new(),
            journal: Vec::new(),
            replay: None,
        }
    }

    /// Runs the scenario's ops, marks a replay point before op `replay_at`, drives until
    /// idle, and (when checked) replays the journal from the replay point.
    pub fn run(scenario: &Scenario, checked: bool) -> Run {
        let mut sim = Sim::new(scenario, checked);
        for (i, op) in scenario.ops.iter().enumerate() {
            if i == scenario.replay_at {
                sim.mark_replay_point();
            }
            sim.step(op);
        }
        if scenario.replay_at >= scenario.ops.len() {
            sim.mark_replay_point();
        }
        sim.finish();
        if checked {
            sim.check_replay();
        }
        Run {
            outputs: sim.log,
            snapshot: sim.engine.snapshot(),
        }
    }

    /// An engine restored from `snapshot`, with this world's policy and ids seeded `seed`.
    pub(crate) fn restore(&self, snapshot: &Snapshot, seed: u64) -> Engine {
        let mut engine = Engine::restore(snapshot, Box::new(SeededIds::new(seed)))
            .unwrap_or_else(|e| panic!("an engine's own snapshot does not restore: {e}"));
        engine.set_policy(self.policy.clone());
        engine
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.clock_ms)
    }

    pub(crate) fn agent_online(&self, id: Uuid) -> bool {
        self.agents.iter().any(|a| a.id == id && a.online)
    }

    /// Whether no deadline is due by `t`, so the engine's state before the input is the
    /// state the input meets (used before asserting whether an input must be accepted).
    fn nothing_due(&self, t: Timestamp) -> bool {
        self.engine.poll_timeout().is_none_or(|d| d > t)
    }

    fn pick<T: Copy>(list: &[T], pick: usize) -> Option<T> {
        (!list.is_empty()).then(|| list[pick % list.len()])
    }

    fn take(list: &mut Vec<(Uuid, Uuid)>, pick: usize, keep: bool) -> Option<(Uuid, Uuid)> {
        if list.is_empty() {
            return None;
        }
        let i = pick % list.len();
        Some(if keep { list[i] } else { list.remove(i) })
    }

    fn live_state(&self, id: Uuid) -> Option<AllocationState> {
        self.engine
            .allocation(&id)
            .map(|a| a.state)
            .filter(|s| !s.is_terminal())
    }

    fn expires_value(&self, t: Timestamp, expires: &Expires) -> u64 {
        match expires {
            Expires::Default => u64::MAX,
            Expires::InSecs(s) => t.as_secs().saturating_add(*s),
            Expires::Past => t.as_secs(),
            Expires::At(secs) => *secs,
        }
    }

    /// Agent number `n` (modulo the world's agents).
    fn agent(&self, n: usize) -> usize {
        n % self.agents.len()
    }

    /// Applies one op and checks the invariants.
    pub fn step(&mut self, op: &Op) {
        if let Action::Advance { ms } = op.action {
            let target = self.clock_ms.saturating_add(ms);
            let jump = Op {
                action: Action::JumpToTimeout,
                lag_ms: 0,
            };
            for _ in 0..IDLE_STEPS_MAX {
                match self.engine.poll_timeout() {
                    Some(d) if d.as_millis() <= target => self.step(&jump),
                    _ => break,
                }
            }
            let rest = target.saturating_sub(self.clock_ms);
            let sleep = Op {
                action: Action::Sleep { ms: rest },
                lag_ms: 0,
            };
            return self.step(&sleep);
        }
        let t = Timestamp::from_millis(self.clock_ms.saturating_sub(op.lag_ms).max(T0_MS));
        let mut ctx = Ctx::default();
        let mut outputs = Vec::new();
        if let (Action::Request { .. }, true) = (&op.action, self.strict) {
            // Fire what is due first, so the best fit can be computed from the state the
            // request meets.
            self.engine.handle_timeout(t);
            outputs = drain(&mut self.engine);
        }
        let before = self.checked.then(|| self.engine.snapshot());
        let result = self.act(&op.action, t, &mut ctx);
        let step_outputs = drain(&mut self.engine);
        if let (Err(err), Some(before)) = (&result, &before) {
            self.check_refused(before, t, &step_outputs, err);
        }
        outputs.extend(step_outputs);
        if self.checked {
            self.check(&outputs, &ctx, op);
        }
        self.learn(outputs);
    }

    fn act(&mut self, action: &Action, t: Timestamp, ctx: &mut Ctx) -> Result<(), Error> {
        match action {
            Action::Register { agent, resources } => self.register(*agent, resources.clone(), t),
            Action::Reconnect { agent } => {
                let a = self.agent(*agent);
                let (resources, ids) =
                    (self.agents[a].resources.clone(), self.agents[a].ids.clone());
                if ids.is_none() && !self.strict {
                    return Ok(()); // it has no accepted list to register again
                }
                let got = self.register(a, resources, t);
                if let (Ok(()), Some(ids)) = (&got, ids) {
                    let now_ids = self.agents[a].ids.clone();
                    assert_eq!(now_ids, Some(ids), "the same list again gets the same ids");
                }
                got
            }
            Action::Disconnect { agent } => {
                let a = self.agent(*agent);
                let got = self.engine.disconnect_agent(t, self.agents[a].id);
                if got.is_ok() {
                    self.agents[a].online = false;
                }
                got
            }
            Action::Request {
                requirements,
                expires,
            } => {
                let mut req = requirements.clone();
                req.expires = match expires {
                    Expires::Default => None,
                    e => Some(self.expires_value(t, e)),
                };
                // The best fit of a request for several is not checked here: that it is
                // served as soon as enough are free is (see the invariants).
                let want = (self.strict && req.count == 1).then(|| {
                    let inventory: Vec<_> = self.engine.inventory().collect();
                    reference::best_free(&req, &inventory, self.picky)
                });
                let got = self.engine.request(t, req);
                if matches!(expires, Expires::Past) {
                    assert!(got.is_err(), "a past expires is refused");
                }
                got.map(|id| {
                    self.requests.push(id);
                    ctx.fresh = want.map(|want| (id, want));
                })
            }
            Action::Replayed { pick, requirements } => {
                let Some(id) = Self::pick(&self.requests, *pick) else {
                    return Ok(());
                };
                let record = Record {
                    now: t,
                    input: Input::Request {
                        allocation_id: id,
                        requirements: requirements.clone(),
                    },
                };
                self.engine.apply(&record)
            }
            Action::AnswerProvision {
                pick,
                answer,
                keep,
                from,
            } => {
                let Some((agent, id)) = Self::take(&mut self.provisions, *pick, *keep) else {
                    return Ok(());
                };
                let agent = from.map_or(agent, |n| self.agents[self.agent(n)].id);
                if self.strict && !self.agent_online(agent) {
                    return Ok(()); // its socket is closed: it cannot answer
                }
                let valid = self.strict
                    && self.nothing_due(t)
                    && self.live_state(id) == Some(AllocationState::Provisioning)
                    && self.owes_answer(id, agent);
                let result = match answer {
                    Answer::Ok => ProvisionResult::Connection(Connection {
                        host: format!("host-{}", id.simple()),
                        username: "lab".into(),
                        password: Some("pw".into()),
                        port: None,
                    }),
                    Answer::Fail => ProvisionResult::Failed("disk full".into()),
                };
                let got = self.engine.provisioned(t, agent, id, result);
                if valid {
                    assert!(got.is_ok(), "a valid provision answer is taken: {got:?}");
                }
                got
            }
            Action::AckRelease { pick, keep, from } => {
                let Some((agent, id)) = Self::take(&mut self.releases, *pick, *keep) else {
                    return Ok(());
                };
                let agent = from.map_or(agent, |n| self.agents[self.agent(n)].id);
                if !self.strict {
                    return self.engine.release_acknowledged(t, agent, id);
                }
                if !self.agent_online(agent) {
                    return Ok(());
                }
                let pending = self.owes_release(id, agent);
                let got = self.engine.release_acknowledged(t, agent, id);
                if self.nothing_due(t) {
                    assert_eq!(got.is_ok(), pending, "ack of {id}: {got:?}");
                }
                got
            }
            Action::Delete { pick } => {
                let Some(id) = Self::pick(&self.requests, *pick) else {
                    return Ok(());
                };
                let live = self.live_state(id).is_some();
                let got = self.engine.release(t, id);
                if self.strict && self.nothing_due(t) {
                    assert_eq!(got.is_ok(), live, "DELETE {id}: {got:?}");
                }
                if got.is_ok() {
                    ctx.deleted = Some(id);
                }
                got
            }
            Action::ClientGone { pick } => {
                let Some(id) = Self::pick(&self.requests, *pick) else {
                    return Ok(());
                };
                ctx.gone = Some(id);
                self.engine.client_gone(t, id)
            }
            Action::SetExpires { pick, expires } => {
                let Some(id) = Self::pick(&self.requests, *pick) else {
                    return Ok(());
                };
                let value = self.expires_value(t, expires);
                let got = self.engine.set_expires(t, id, value);
                if let Ok(effective) = got {
                    assert!(effective <= value, "set_expires never lengthens a request");
                }
                got.map(drop)
            }
            Action::Maintenance { pick, reason } => {
                let ids: Vec<Uuid> = self.engine.inventory().map(|r| r.inventory_id).collect();
                let Some(id) = Self::pick(&ids, *pick) else {
                    return Ok(());
                };
                let got = self.engine.set_maintenance(t, id, reason.clone());
                if self.strict {
                    assert!(got.is_ok(), "maintenance on a registered resource: {got:?}");
                }
                got
            }
            Action::Advance { .. } => unreachable!("advances are split into jumps"),
            Action::Sleep { ms } => {
                self.clock_ms = self.clock_ms.saturating_add(*ms);
                self.engine.handle_timeout(self.now());
                Ok(())
            }
            Action::JumpToTimeout => {
                if let Some(d) = self.engine.poll_timeout() {
                    self.clock_ms = self.clock_ms.max(d.as_millis());
                    self.engine.handle_timeout(d);
                }
                Ok(())
            }
            Action::JustBeforeTimeout => {
                if let Some(d) = self.engine.poll_timeout() {
                    let early = Timestamp::from_millis(d.as_millis().saturating_sub(1));
                    self.clock_ms = self.clock_ms.max(early.as_millis());
                    let before = self.checked.then(|| self.engine.snapshot());
                    self.engine.handle_timeout(early);
                    if let Some(before) = before {
                        let after = self.engine.snapshot();
                        assert_eq!(
                            after.allocations, before.allocations,
                            "nothing fires before its deadline"
                        );
                        assert_eq!(after.agents, before.agents);
                    }
                }
                Ok(())
            }
            Action::RoundTrip => {
                let records = self.engine.take_records();
                self.journal.extend(records);
                let snapshot = self.engine.snapshot();
                self.check_round_trip(&snapshot);
                // New ids must not repeat earlier ones: another seed, another stream.
                self.round_trips += 1;
                let seed = self.seed ^ self.round_trips.wrapping_mul(0xD1B5_4A32_D192_ED03);
                self.engine = self.restore(&snapshot, seed);
                Ok(())
            }
            Action::Garbage(g) => self.garbage(g, t),
        }
    }

    fn register(
        &mut self,
        agent: usize,
        resources: Vec<ResourceSpec>,
        t: Timestamp,
    ) -> Result<(), Error> {
        let a = self.agent(agent);
        let got = self
            .engine
            .register_agent(t, self.agents[a].id, resources.clone());
        if let Ok(ids) = &got {
            assert_eq!(ids.len(), resources.len(), "one id per resource");
            for (id, spec) in ids.iter().zip(&resources) {
                let entry = self
                    .engine
                    .resource(id)
                    .expect("a registered id is in inventory");
                assert_eq!(entry.agent_id, self.agents[a].id);
                assert_eq!(
                    (entry.cpu_count, &entry.labels),
                    (spec.cpu_count, &spec.labels)
                );
                if let Some(own) = spec.inventory_id {
                    assert_eq!(*id, own, "an agent's own id is kept");
                }
            }
            let model = &mut self.agents[a];
            model.online = true;
            model.resources = resources;
            model.ids = Some(ids.clone());
        }
        got.map(drop)
    }

    /// Whether `agent` has a resource that allocation `id` holds (or last held).
    pub(crate) fn holds_on(&self, id: Uuid, agent: Uuid) -> bool {
        let held = self.engine.allocation(&id).map(|a| a.inventory_ids);
        held.into_iter().flatten().any(|i| {
            self.engine
                .resource(&i)
                .is_some_and(|r| r.agent_id == agent)
        })
    }

    /// Whether `agent` has yet to answer a provision of a resource that allocation `id`
    /// holds (of several, some may be answered already).
    pub(crate) fn owes_answer(&self, id: Uuid, agent: Uuid) -> bool {
        let snapshot = self.engine.snapshot();
        let Some(a) = snapshot.allocations.iter().find(|a| a.allocation_id == id) else {
            return false;
        };
        let first = a.inventory_id.filter(|_| a.connection.is_none());
        let others = a.others.iter().filter(|h| h.connection.is_none());
        first
            .into_iter()
            .chain(others.map(|h| h.inventory_id))
            .any(|i| {
                self.engine
                    .resource(&i)
                    .is_some_and(|r| r.agent_id == agent)
            })
    }

    /// Whether `agent` owes a release acknowledgement for allocation `id` (after it ended, or
    /// after `agent` abandoned a provision of it: it may owe one to each of several agents).
    pub(crate) fn owes_release(&self, id: Uuid, agent: Uuid) -> bool {
        let snapshot = self.engine.snapshot();
        snapshot.agents.iter().any(|a| {
            a.agent_id == agent
                && a.resources
                    .iter()
                    .any(|r| r.releasing && r.occupant == Some(id))
        })
    }

    /// Remembers outputs: pending provisions and releases, and the log.
    fn learn(&mut self, outputs: Vec<Output>) {
        let now = self.engine.now();
        for o in outputs {
            match &o {
                Output::Provision {
                    agent_id,
                    allocation_id,
                    ..
                } => self.provisions.push((*agent_id, *allocation_id)),
                Output::Release {
                    agent_id,
                    allocation_id,
                    ..
                } => self.releases.push((*agent_id, *allocation_id)),
                _ => {}
            }
            self.log.push((now, o));
        }
    }

    /// Takes a snapshot to replay the journal from at the end, and checks it round-trips.
    fn mark_replay_point(&mut self) {
        self.engine.take_records();
        self.journal.clear();
        let snapshot = self.engine.snapshot();
        if self.checked {
            self.check_round_trip(&snapshot);
        }
        self.replay = Some(ReplayPoint {
            snapshot,
            log_len: self.log.len(),
        });
    }

    /// Drives the engine until nothing is pending (agents answer nothing any more), then
    /// checks that every request has ended.
    pub fn finish(&mut self) {
        let jump = Op {
            action: Action::JumpToTimeout,
            lag_ms: 0,
        };
        for _ in 0..IDLE_STEPS_MAX {
            if self.engine.poll_timeout().is_none() {
                break;
            }
            self.step(&jump);
        }
        assert_eq!(
            self.engine.poll_timeout(),
            None,
            "idle within {IDLE_STEPS_MAX} jumps"
        );
        for id in &self.requests {
            if let Some(a) = self.engine.allocation(id) {
                assert!(
                    a.state.is_terminal(),
                    "{id} is still {:?} when idle",
                    a.state
                );
            }
        }
    }

    /// Replays the journal recorded since the replay point over its snapshot: same outputs,
    /// same final state, and the final state round-trips.
    pub fn check_replay(&mut self) {
        let Some(point) = self.replay.take() else {
            return;
        };
        let mut records = std::mem::take(&mut self.journal);
        records.extend(self.engine.take_records());
        let mut replayed = self.restore(&point.snapshot, 0);
        let mut outputs = Vec::new();
        for record in &records {
            replayed
                .apply(record)
                .unwrap_or_else(|e| panic!("recorded {record:?} does not replay: {e}"));
            outputs.extend(drain(&mut replayed));
        }
        let logged: Vec<Output> = self.log[point.log_len..]
            .iter()
            .map(|(_, o)| o.clone())
            .collect();
        assert_eq!(outputs, logged, "replayed outputs");
        let snapshot = self.engine.snapshot();
        assert_eq!(replayed.snapshot(), snapshot, "replayed state");
        self.check_round_trip(&snapshot);
    }
}
