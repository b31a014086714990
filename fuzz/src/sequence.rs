//! The `engine_sequence` target: an arbitrary sequence of inputs from a few agents, users and
//! admins, with time jumps, applied to one engine as a shell would apply them.
//!
//! After every step: nothing panicked; no resource is held by two live allocations, and every
//! holder and held resource name each other; no `ready` allocation outlives its lease; the next
//! deadline is in the future; agents are only asked about their own resources; a refused input
//! changed nothing but the time. At the end the engine is driven until idle (every request has
//! ended), and replaying the recorded inputs over the snapshot taken at a chosen step gives the
//! same outputs and the same final snapshot.

use crate::vocab::{self, Num, Text};
use allocate_core::{
    AllocationState, Candidate, Connection, Engine, Error, Input, MatchPolicy, Output,
    ProvisionResult, Record, Requirements, ResourceSpec, SeededIds, Snapshot, Timestamp,
};
use arbitrary::{Arbitrary, Unstructured};
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// Agents in a scenario.
const AGENTS: u8 = 3;
/// Most steps in a scenario, and resources in a registration.
const STEPS_MAX: usize = 64;
const RESOURCES_MAX: usize = 4;
/// Most deadline firings when driving the engine until idle; far more than a scenario needs.
const IDLE_FIRINGS_MAX: usize = 10_000;
/// Where the clock starts (unix milliseconds).
const T0_MS: u64 = 1_700_000_000_000;

/// A generated run (the target's input; its `Debug` form is what `cargo fuzz fmt` shows).
#[derive(Arbitrary, Debug)]
pub struct Scenario {
    knobs: vocab::Knobs,
    seed: u64,
    policy: bool,
    /// The step before which the snapshot that the journal is replayed over is taken.
    replay_at: u8,
    steps: Vec<Step>,
}

/// An input sent `lag_ms` behind the clock (the engine must treat an older time as the latest
/// it has seen).
#[derive(Arbitrary, Debug)]
struct Step {
    op: Op,
    lag_ms: u8,
}

/// A lease end, relative to the input's time.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Expires {
    Default,
    InSecs(u16),
    /// The input's own second: not in the future.
    Past,
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// An agent registers (or replaces) its list; resources may name their own id (from a pool
    /// of three, so that lists clash).
    Register {
        agent: u8,
        resources: Vec<(vocab::Resource, Option<u8>)>,
    },
    /// An agent registers its last accepted list again.
    Reconnect {
        agent: u8,
    },
    Disconnect {
        agent: u8,
    },
    Request {
        request: vocab::Request,
        expires: Expires,
    },
    /// A replayed request that names an id the engine already gave out.
    RequestReusingId {
        pick: u8,
        request: vocab::Request,
    },
    /// The answer to a provision the engine sent, from its agent or from `from`.
    Provisioned {
        pick: u8,
        from: Option<u8>,
        ok: bool,
        keep: bool,
    },
    /// The acknowledgement of a release the engine sent, from its agent or from `from`.
    ReleaseAcknowledged {
        pick: u8,
        from: Option<u8>,
        keep: bool,
    },
    Release {
        pick: u8,
    },
    ClientGone {
        pick: u8,
    },
    SetExpires {
        pick: u8,
        expires: Expires,
    },
    Maintenance {
        pick: u8,
        reason: Option<Text>,
    },
    /// Time passes and a late timer fires once for everything due.
    Advance {
        ms: Num,
    },
    /// The timer fires exactly at the next deadline.
    JumpToTimeout,
    /// The timer fires a millisecond early: nothing may change.
    JustBeforeTimeout,
    /// The engine is replaced by one restored from its snapshot's JSON.
    RoundTrip,
}

/// A deterministic policy with opinions, so that vetoes and scores are exercised.
#[derive(Debug)]
struct Quirky;

impl MatchPolicy for Quirky {
    fn veto(&self, request: &Requirements, candidate: &Candidate<'_>) -> bool {
        (candidate.inventory_id.as_u128() % 7) as usize == request.username.len() % 7
    }

    fn score(&self, _request: &Requirements, candidate: &Candidate<'_>) -> Option<i64> {
        (!candidate.spec.cpu_count.is_multiple_of(3))
            .then_some((candidate.spec.memory_gb % 5) as i64)
    }
}

fn agent_id(n: u8) -> Uuid {
    Uuid::from_u128(0xA6E0_0000 + u128::from(n % AGENTS))
}

fn drain(engine: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| engine.poll_output()).collect()
}

fn pick<T: Copy>(list: &[T], n: u8) -> Option<T> {
    (!list.is_empty()).then(|| list[usize::from(n) % list.len()])
}

fn take(list: &mut Vec<(Uuid, Uuid)>, n: u8, keep: bool) -> Option<(Uuid, Uuid)> {
    let i = usize::from(n) % list.len().max(1);
    match keep {
        true => list.get(i).copied(),
        false => (i < list.len()).then(|| list.remove(i)),
    }
}

/// The world around one engine.
struct World {
    engine: Engine,
    policy: Option<Arc<dyn MatchPolicy>>,
    seed: u64,
    round_trips: u64,
    clock_ms: u64,
    /// Each agent's last accepted list and the ids it got.
    lists: BTreeMap<Uuid, (Vec<ResourceSpec>, Vec<Uuid>)>,
    /// Every allocation id the engine accepted.
    requests: Vec<Uuid>,
    /// Provisions and releases sent: (agent, allocation).
    provisions: Vec<(Uuid, Uuid)>,
    releases: Vec<(Uuid, Uuid)>,
    /// Records taken from engines since replaced by a round trip.
    journal: Vec<Record>,
    replay: Option<(Snapshot, usize)>,
    log: Vec<Output>,
}

/// Runs the scenario that `data` describes (read as libFuzzer's typed targets read it).
pub fn engine_sequence(data: &[u8]) {
    if let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(data)) {
        run_scenario(&scenario);
    }
}

/// Runs a scenario and checks it.
pub fn run_scenario(scenario: &Scenario) {
    let mut config = scenario.knobs.config();
    config.record_inputs = true;
    let mut engine = Engine::new(config, Box::new(SeededIds::new(scenario.seed)));
    let policy: Option<Arc<dyn MatchPolicy>> = scenario.policy.then(|| Arc::new(Quirky) as _);
    engine.set_policy(policy.clone());
    let mut world = World {
        engine,
        policy,
        seed: scenario.seed,
        round_trips: 0,
        clock_ms: T0_MS,
        lists: BTreeMap::new(),
        requests: Vec::new(),
        provisions: Vec::new(),
        releases: Vec::new(),
        journal: Vec::new(),
        replay: None,
        log: Vec::new(),
    };
    let steps = &scenario.steps[..scenario.steps.len().min(STEPS_MAX)];
    let replay_at = usize::from(scenario.replay_at) % (steps.len() + 1);
    for (i, step) in steps.iter().enumerate() {
        if i == replay_at {
            world.mark_replay_point();
        }
        world.step(step);
    }
    if replay_at == steps.len() {
        world.mark_replay_point();
    }
    world.finish();
    world.check_replay();
}

impl World {
    fn restore(&self, snapshot: &Snapshot, seed: u64) -> Engine {
        let mut engine = Engine::restore(snapshot, Box::new(SeededIds::new(seed)))
            .unwrap_or_else(|e| panic!("an engine's own snapshot does not restore: {e}"));
        engine.set_policy(self.policy.clone());
        engine
    }

    fn step(&mut self, step: &Step) {
        let t = Timestamp::from_millis(
            self.clock_ms
                .saturating_sub(u64::from(step.lag_ms))
                .max(T0_MS),
        );
        let before = self.engine.snapshot();
        let result = self.act(&step.op, t);
        let outputs = drain(&mut self.engine);
        if let Err(err) = &result {
            self.check_refused(&before, t, &outputs, err);
        }
        self.check(&outputs, &step.op);
        self.learn(outputs);
    }

    fn expires_value(t: Timestamp, expires: Expires) -> Option<u64> {
        match expires {
            Expires::Default => None,
            Expires::InSecs(s) => Some(t.as_secs() + u64::from(s)),
            Expires::Past => Some(t.as_secs()),
            Expires::Any(secs) => Some(secs),
        }
    }

    fn act(&mut self, op: &Op, t: Timestamp) -> Result<(), Error> {
        match op {
            Op::Register { agent, resources } => {
                let specs = resources
                    .iter()
                    .take(RESOURCES_MAX)
                    .map(|(r, own)| {
                        let mut spec = r.spec();
                        spec.inventory_id =
                            own.map(|n| Uuid::from_u128(0x1D00 + u128::from(n % 3)));
                        spec
                    })
                    .collect();
                self.register(agent_id(*agent), specs, t)
            }
            Op::Reconnect { agent } => {
                let agent = agent_id(*agent);
                let Some((specs, ids)) = self.lists.get(&agent).cloned() else {
                    return Ok(());
                };
                let got = self.register(agent, specs, t);
                if got.is_ok() {
                    assert_eq!(
                        self.lists[&agent].1, ids,
                        "the same list again gets the same ids"
                    );
                }
                got
            }
            Op::Disconnect { agent } => self.engine.disconnect_agent(t, agent_id(*agent)),
            Op::Request { request, expires } => {
                let mut req = request.requirements(None);
                req.expires = Self::expires_value(t, *expires);
                let got = self.engine.request(t, req);
                if matches!(expires, Expires::Past) {
                    assert!(got.is_err(), "an expires in the past is refused");
                }
                got.map(|id| self.requests.push(id))
            }
            Op::RequestReusingId { pick: n, request } => {
                let Some(id) = pick(&self.requests, *n) else {
                    return Ok(());
                };
                let record = Record {
                    now: t,
                    input: Input::Request {
                        allocation_id: id,
                        requirements: request.requirements(None),
                    },
                };
                self.engine.apply(&record)
            }
            Op::Provisioned {
                pick: n,
                from,
                ok,
                keep,
            } => {
                let Some((agent, id)) = take(&mut self.provisions, *n, *keep) else {
                    return Ok(());
                };
                let agent = from.map_or(agent, agent_id);
                let result = match ok {
                    true => ProvisionResult::Connection(Connection {
                        host: format!("host-{}", id.simple()),
                        username: "lab".into(),
                        password: "pw".into(),
                    }),
                    false => ProvisionResult::Failed("disk full".into()),
                };
                self.engine.provisioned(t, agent, id, result)
            }
            Op::ReleaseAcknowledged {
                pick: n,
                from,
                keep,
            } => {
                let Some((agent, id)) = take(&mut self.releases, *n, *keep) else {
                    return Ok(());
                };
                let agent = from.map_or(agent, agent_id);
                self.engine.release_acknowledged(t, agent, id)
            }
            Op::Release { pick: n } => match pick(&self.requests, *n) {
                Some(id) => self.engine.release(t, id),
                None => Ok(()),
            },
            Op::ClientGone { pick: n } => match pick(&self.requests, *n) {
                Some(id) => self.engine.client_gone(t, id),
                None => Ok(()),
            },
            Op::SetExpires { pick: n, expires } => {
                let Some(id) = pick(&self.requests, *n) else {
                    return Ok(());
                };
                let value = Self::expires_value(t, *expires).unwrap_or(u64::MAX);
                let effective = self.engine.set_expires(t, id, value)?;
                assert!(
                    effective <= value,
                    "set_expires never lengthens the lease asked for"
                );
                Ok(())
            }
            Op::Maintenance { pick: n, reason } => {
                let ids: Vec<Uuid> = self.engine.inventory().map(|r| r.inventory_id).collect();
                let Some(id) = pick(&ids, *n) else {
                    return Ok(());
                };
                self.engine
                    .set_maintenance(t, id, reason.as_ref().map(Text::text))
            }
            Op::Advance { ms } => {
                self.clock_ms = self.clock_ms.saturating_add(ms.get());
                self.engine
                    .handle_timeout(Timestamp::from_millis(self.clock_ms));
                Ok(())
            }
            Op::JumpToTimeout => {
                if let Some(d) = self.engine.poll_timeout() {
                    self.clock_ms = self.clock_ms.max(d.as_millis());
                    self.engine.handle_timeout(d);
                }
                Ok(())
            }
            Op::JustBeforeTimeout => {
                if let Some(d) = self.engine.poll_timeout() {
                    let early = d.as_millis().saturating_sub(1);
                    self.clock_ms = self.clock_ms.max(early);
                    let before = self.engine.snapshot();
                    self.engine.handle_timeout(Timestamp::from_millis(early));
                    let after = self.engine.snapshot();
                    assert_eq!(after.allocations, before.allocations, "fired early");
                    assert_eq!(after.agents, before.agents, "fired early");
                }
                Ok(())
            }
            Op::RoundTrip => {
                let records = self.engine.take_records();
                self.journal.extend(records);
                let snapshot = self.engine.snapshot();
                let text = serde_json::to_string(&snapshot).expect("a snapshot serialises");
                let back: Snapshot = serde_json::from_str(&text).expect("a snapshot deserialises");
                assert_eq!(back, snapshot, "snapshot -> JSON -> snapshot");
                // New ids must not repeat earlier ones: another seed, another stream.
                self.round_trips += 1;
                let seed = self.seed ^ self.round_trips.wrapping_mul(0xD1B5_4A32_D192_ED03);
                let restored = self.restore(&back, seed);
                assert_eq!(
                    restored.snapshot(),
                    snapshot,
                    "snapshot -> restore -> snapshot"
                );
                assert_eq!(restored.poll_timeout(), self.engine.poll_timeout());
                self.engine = restored;
                Ok(())
            }
        }
    }

    fn register(
        &mut self,
        agent: Uuid,
        specs: Vec<ResourceSpec>,
        t: Timestamp,
    ) -> Result<(), Error> {
        let ids = self.engine.register_agent(t, agent, specs.clone())?;
        assert_eq!(ids.len(), specs.len(), "one id per resource");
        for (id, spec) in ids.iter().zip(&specs) {
            if let Some(own) = spec.inventory_id {
                assert_eq!(*id, own, "an agent's own id is kept");
            }
            let entry = self
                .engine
                .resource(id)
                .expect("a registered id is in inventory");
            assert_eq!(entry.agent_id, agent);
        }
        self.lists.insert(agent, (specs, ids));
        Ok(())
    }

    /// A refused input leaves the state as if only its time had been given.
    fn check_refused(&self, before: &Snapshot, t: Timestamp, outputs: &[Output], err: &Error) {
        let mut expected = self.restore(before, 0);
        expected.handle_timeout(t);
        assert_eq!(
            outputs,
            drain(&mut expected),
            "outputs of a refused input ({err})"
        );
        assert_eq!(
            self.engine.snapshot(),
            expected.snapshot(),
            "a refused input ({err}) changed the state"
        );
    }

    /// The invariants after a step that produced `outputs`.
    fn check(&self, outputs: &[Output], op: &Op) {
        let snap = self.engine.snapshot();
        let now = snap.now;
        if let Some(d) = self.engine.poll_timeout() {
            assert!(d > now, "deadline {d} is due at {now} after {op:?}");
        }
        let mut resources = BTreeMap::new();
        for agent in &snap.agents {
            for r in &agent.resources {
                let id = r.spec.inventory_id.expect("a snapshot names each resource");
                assert!(
                    resources.insert(id, (agent.agent_id, r)).is_none(),
                    "resource {id} is listed twice"
                );
            }
        }
        let mut holders: BTreeMap<Uuid, Uuid> = BTreeMap::new();
        let mut allocations = BTreeMap::new();
        for a in &snap.allocations {
            assert!(
                allocations.insert(a.allocation_id, a).is_none(),
                "allocation {} is listed twice",
                a.allocation_id
            );
            if !matches!(
                a.state,
                AllocationState::Provisioning | AllocationState::Ready
            ) {
                continue;
            }
            let held = a.inventory_id.expect("a holder names its resource");
            if let Some(other) = holders.insert(held, a.allocation_id) {
                panic!("resource {held} is held by {other} and {}", a.allocation_id);
            }
            let (_, r) = resources
                .get(&held)
                .unwrap_or_else(|| panic!("{} holds unknown resource {held}", a.allocation_id));
            assert_eq!(
                r.occupant,
                Some(a.allocation_id),
                "holder and resource disagree"
            );
            assert!(!r.releasing, "a live holder's resource is being released");
            if a.state == AllocationState::Ready {
                assert!(
                    a.expires > now,
                    "{} is ready past its lease",
                    a.allocation_id
                );
            }
        }
        for (id, (_, r)) in &resources {
            if let (Some(occupant), false) = (r.occupant, r.releasing) {
                assert_eq!(
                    holders.get(id),
                    Some(&occupant),
                    "{id} names a holder that is not live"
                );
            }
        }
        for o in outputs {
            if let Output::Provision {
                agent_id,
                inventory_id,
                ..
            }
            | Output::Release {
                agent_id,
                inventory_id,
                ..
            } = o
            {
                if let Some((owner, _)) = resources.get(inventory_id) {
                    assert_eq!(
                        owner, agent_id,
                        "an agent is asked about another's resource"
                    );
                }
            }
        }
        let stats = self.engine.stats();
        let count = |s| snap.allocations.iter().filter(|a| a.state == s).count() as u64;
        assert_eq!(stats.queued, count(AllocationState::Queued));
        assert_eq!(stats.provisioning, count(AllocationState::Provisioning));
        assert_eq!(stats.ready, count(AllocationState::Ready));
        let total: u64 = stats.resources_by_state.iter().sum();
        assert_eq!(total, resources.len() as u64);
    }

    fn learn(&mut self, outputs: Vec<Output>) {
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
            self.log.push(o);
        }
    }

    fn mark_replay_point(&mut self) {
        self.engine.take_records();
        self.journal.clear();
        self.replay = Some((self.engine.snapshot(), self.log.len()));
    }

    /// Drives the engine until nothing is pending (agents answer nothing any more); every
    /// request has then ended.
    fn finish(&mut self) {
        for _ in 0..IDLE_FIRINGS_MAX {
            if self.engine.poll_timeout().is_none() {
                break;
            }
            self.step(&Step {
                op: Op::JumpToTimeout,
                lag_ms: 0,
            });
        }
        assert_eq!(
            self.engine.poll_timeout(),
            None,
            "not idle after {IDLE_FIRINGS_MAX} firings"
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

    /// Replays the inputs recorded since the replay point over its snapshot.
    fn check_replay(&mut self) {
        let Some((snapshot, log_len)) = self.replay.take() else {
            return;
        };
        let mut records = std::mem::take(&mut self.journal);
        records.extend(self.engine.take_records());
        let mut replayed = self.restore(&snapshot, 0);
        let mut outputs = Vec::new();
        for record in &records {
            replayed
                .apply(record)
                .unwrap_or_else(|e| panic!("recorded {record:?} does not replay: {e}"));
            outputs.extend(drain(&mut replayed));
        }
        assert_eq!(outputs, self.log[log_len..], "replayed outputs");
        assert_eq!(
            replayed.snapshot(),
            self.engine.snapshot(),
            "replayed state"
        );
    }
}
