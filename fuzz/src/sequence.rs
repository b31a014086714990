//! The `engine_sequence` target: an arbitrary sequence of inputs from a few agents, users and
//! admins, with time jumps, applied to one engine as a shell would apply them.
//!
//! The bytes decode into a [`Scenario`] here; it is run by `testkit`'s simulation harness, not
//! strict: every input goes to the engine as generated, and the harness checks the safety
//! invariants after every step (nothing panicked; no resource or allocation listed twice; no
//! resource held by two live allocations, and every holder and held resource name each other;
//! no `ready` allocation outlives its lease; the next deadline is in the future; agents are only
//! asked about their own resources, while connected; stats agree with the snapshot; a refused
//! input changed nothing but the time). At the end the engine is driven until idle (every
//! request has ended), and replaying the recorded inputs over the snapshot taken at a chosen
//! step gives the same outputs and the same final snapshot.

use crate::vocab::{self, Num, Text};
use arbitrary::{Arbitrary, Unstructured};
use testkit::policy::Policy;
use testkit::sim::{self, Action, Answer, Sim};
use uuid::Uuid;

/// Agents in a scenario.
const AGENTS: usize = 3;
/// Most steps in a scenario, and resources in a registration.
const STEPS_MAX: usize = 64;
const RESOURCES_MAX: usize = 4;

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

/// Runs the scenario that `data` describes (read as libFuzzer's typed targets read it).
pub fn engine_sequence(data: &[u8]) {
    if let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(data)) {
        run_scenario(&scenario);
    }
}

/// Runs a scenario and checks it.
pub fn run_scenario(scenario: &Scenario) {
    let steps = &scenario.steps[..scenario.steps.len().min(STEPS_MAX)];
    let run = sim::Scenario {
        config: scenario.knobs.config(),
        seed: scenario.seed,
        agents: AGENTS,
        policy: scenario.policy.then_some(Policy::Quirky),
        strict: false,
        quotas: None,
        replay_at: usize::from(scenario.replay_at) % (steps.len() + 1),
        ops: steps.iter().map(Step::op).collect(),
    };
    Sim::run(&run, true);
}

impl Expires {
    fn sim(self) -> sim::Expires {
        match self {
            Expires::Default => sim::Expires::Default,
            Expires::InSecs(secs) => sim::Expires::InSecs(u64::from(secs)),
            Expires::Past => sim::Expires::Past,
            Expires::Any(secs) => sim::Expires::At(secs),
        }
    }
}

impl Step {
    /// The step as the harness's op.
    fn op(&self) -> sim::Op {
        sim::Op {
            action: self.op.action(),
            lag_ms: u64::from(self.lag_ms),
        }
    }
}

impl Op {
    fn action(&self) -> Action {
        match self {
            Op::Register { agent, resources } => Action::Register {
                agent: usize::from(*agent),
                resources: resources
                    .iter()
                    .take(RESOURCES_MAX)
                    .map(|(r, own)| {
                        let mut spec = r.spec();
                        spec.inventory_id =
                            own.map(|n| Uuid::from_u128(0x1D00 + u128::from(n % 3)));
                        spec
                    })
                    .collect(),
            },
            Op::Reconnect { agent } => Action::Reconnect {
                agent: usize::from(*agent),
            },
            Op::Disconnect { agent } => Action::Disconnect {
                agent: usize::from(*agent),
            },
            Op::Request { request, expires } => Action::Request {
                requirements: request.requirements(None),
                expires: expires.sim(),
            },
            Op::RequestReusingId { pick, request } => Action::Replayed {
                pick: usize::from(*pick),
                requirements: request.requirements(None),
            },
            Op::Provisioned {
                pick,
                from,
                ok,
                keep,
            } => Action::AnswerProvision {
                pick: usize::from(*pick),
                answer: if *ok { Answer::Ok } else { Answer::Fail },
                keep: *keep,
                from: from.map(usize::from),
            },
            Op::ReleaseAcknowledged { pick, from, keep } => Action::AckRelease {
                pick: usize::from(*pick),
                keep: *keep,
                from: from.map(usize::from),
            },
            Op::Release { pick } => Action::Delete {
                pick: usize::from(*pick),
            },
            Op::ClientGone { pick } => Action::ClientGone {
                pick: usize::from(*pick),
            },
            Op::SetExpires { pick, expires } => Action::SetExpires {
                pick: usize::from(*pick),
                expires: expires.sim(),
            },
            Op::Maintenance { pick, reason } => Action::Maintenance {
                pick: usize::from(*pick),
                reason: reason.as_ref().map(Text::text),
            },
            Op::Advance { ms } => Action::Sleep { ms: ms.get() },
            Op::JumpToTimeout => Action::JumpToTimeout,
            Op::JustBeforeTimeout => Action::JustBeforeTimeout,
            Op::RoundTrip => Action::RoundTrip,
        }
    }
}
