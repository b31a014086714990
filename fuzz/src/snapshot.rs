//! The `snapshot_restore` target: a snapshot read from arbitrary JSON (or built from arbitrary
//! bytes over small pools of ids, so that its parts refer to each other) is restored; restoring
//! must never panic, and an engine it gives must work.

use crate::vocab::{self, Text};
use allocate_core::{
    AgentSnapshot, AllocationSnapshot, AllocationState, Connection, Engine, ResourceSnapshot,
    SeededIds, Snapshot, Timestamp,
};
use arbitrary::{Arbitrary, Unstructured};
use uuid::Uuid;

/// Most timer firings driven after a restore; each firing ends or changes at least one thing.
const FIRINGS_MAX: usize = 1_000;

/// Reads `data` as a snapshot's JSON when it starts with `{`, else builds a snapshot from it.
pub fn snapshot_restore(data: &[u8]) {
    if data.first() == Some(&b'{') {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(snapshot) = serde_json::from_str::<Snapshot>(text) {
            check_restore(&snapshot);
        }
        return;
    }
    let Ok(built) = BuiltSnapshot::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let snapshot = built.snapshot();
    let text = serde_json::to_string(&snapshot).expect("a snapshot serialises");
    let back: Snapshot = serde_json::from_str(&text).expect("a snapshot deserialises");
    assert_eq!(back, snapshot, "snapshot -> JSON -> snapshot");
    check_restore(&snapshot);
}

/// Restores `snapshot`. When that works: the engine's own snapshot restores to itself, its
/// listings agree with it, and the engine keeps working: every deadline fires, every
/// allocation can be released, every agent can leave and register its list again.
pub fn check_restore(snapshot: &Snapshot) {
    let Ok(mut engine) = Engine::restore(snapshot, Box::new(SeededIds::new(1))) else {
        return;
    };
    let own = engine.snapshot();
    let again = Engine::restore(&own, Box::new(SeededIds::new(1)))
        .unwrap_or_else(|e| panic!("a restored engine's snapshot does not restore: {e}"));
    assert_eq!(again.snapshot(), own, "restore is not idempotent");
    assert_eq!(again.poll_timeout(), engine.poll_timeout());
    let resources: usize = own.agents.iter().map(|a| a.resources.len()).sum();
    assert_eq!(
        engine.inventory().count(),
        resources,
        "inventory lists every resource"
    );
    let stats = engine.stats();
    assert_eq!(
        stats.resources_by_state.iter().sum::<u64>(),
        resources as u64
    );
    assert_eq!(engine.allocations().len(), own.allocations.len());
    fire_all(&mut engine);
    let now = engine.now();
    for a in engine.allocations() {
        let _ = engine.release(now, a.allocation_id);
    }
    for agent in &own.agents {
        let _ = engine.disconnect_agent(now, agent.agent_id);
        let specs: Vec<_> = agent.resources.iter().map(|r| r.spec.clone()).collect();
        let _ = engine.register_agent(now, agent.agent_id, specs);
    }
    fire_all(&mut engine);
    let _ = (engine.snapshot(), engine.stats());
}

/// Fires every deadline in order, draining outputs.
fn fire_all(engine: &mut Engine) {
    for _ in 0..FIRINGS_MAX {
        let Some(t) = engine.poll_timeout() else {
            break;
        };
        engine.handle_timeout(t);
        while engine.poll_output().is_some() {}
        if let Some(next) = engine.poll_timeout() {
            assert!(next > t, "deadline {next} is due after firing {t}");
        }
    }
}

/// Agent ids come from a pool of three, so that an agent may appear twice.
const AGENT_IDS: u8 = 3;
/// Pooled resource and allocation ids, so that ids may clash.
const RESOURCE_IDS: u8 = 4;
const ALLOCATION_IDS: u8 = 4;
/// Most agents, resources per agent and allocations in a built snapshot.
const AGENTS_MAX: usize = 4;
const RESOURCES_MAX: usize = 4;
const ALLOCATIONS_MAX: usize = 8;

fn agent_id(n: u8) -> Uuid {
    Uuid::from_u128(0xA6E0_0000 + u128::from(n % AGENT_IDS))
}

/// A pooled id (`Some`), or one of its own from its place in the snapshot (`None`).
fn id_of(base: u128, pool: u8, n: Option<u8>, place: usize) -> Uuid {
    match n {
        Some(n) => Uuid::from_u128(base + u128::from(n % pool)),
        None => Uuid::from_u128(base + 0x1_0000 + place as u128),
    }
}

/// A time near a fixed instant, or anywhere.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum When {
    Near(u16),
    Any(u64),
}

const T0_MS: u64 = 1_700_000_000_000;

impl When {
    fn at(self) -> Timestamp {
        match self {
            When::Near(ms) => Timestamp::from_millis(T0_MS + u64::from(ms) * 10),
            When::Any(ms) => Timestamp::from_millis(ms),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct BuiltResource {
    id: Option<u8>,
    spec: vocab::Resource,
    seq: u8,
    /// The allocation (by its place in the list) that holds it.
    occupant: Option<u8>,
    releasing: bool,
    release_deadline: Option<When>,
    error: Option<Text>,
    maintenance: Option<Text>,
    retiring: bool,
}

#[derive(Arbitrary, Debug)]
struct BuiltAgent {
    id: u8,
    online: bool,
    resources: Vec<BuiltResource>,
}

#[derive(Arbitrary, Debug)]
struct BuiltAllocation {
    id: Option<u8>,
    requirements: vocab::Request,
    seq: u8,
    created: When,
    expires: When,
    wait_until: When,
    state: u8,
    /// The resource (by its place among all resources) it holds or held.
    inventory_id: Option<u8>,
    connection: bool,
    deadline: Option<When>,
    position: Option<u8>,
}

/// A snapshot whose parts name each other.
#[derive(Arbitrary, Debug)]
struct BuiltSnapshot {
    config: vocab::Knobs,
    now: When,
    next_seq: u8,
    /// Make every holder and held resource name each other, as restore requires.
    coherent: bool,
    agents: Vec<BuiltAgent>,
    allocations: Vec<BuiltAllocation>,
}

const STATES: [AllocationState; 7] = [
    AllocationState::Queued,
    AllocationState::Provisioning,
    AllocationState::Ready,
    AllocationState::Released,
    AllocationState::Expired,
    AllocationState::TimedOut,
    AllocationState::Cancelled,
];

fn nth<T: Copy>(list: &[T], n: u8) -> Option<T> {
    (!list.is_empty()).then(|| list[usize::from(n) % list.len()])
}

impl BuiltSnapshot {
    fn snapshot(&self) -> Snapshot {
        let agents = &self.agents[..self.agents.len().min(AGENTS_MAX)];
        let built = &self.allocations[..self.allocations.len().min(ALLOCATIONS_MAX)];
        let allocation_ids: Vec<Uuid> = built
            .iter()
            .enumerate()
            .map(|(i, a)| id_of(0xA110_0000, ALLOCATION_IDS, a.id, i))
            .collect();
        let mut place = 0;
        let mut agents: Vec<AgentSnapshot> = agents
            .iter()
            .map(|a| AgentSnapshot {
                agent_id: agent_id(a.id),
                online: a.online,
                resources: a.resources[..a.resources.len().min(RESOURCES_MAX)]
                    .iter()
                    .map(|r| {
                        place += 1;
                        r.snapshot(place, &allocation_ids)
                    })
                    .collect(),
            })
            .collect();
        let resource_ids: Vec<Uuid> = agents
            .iter()
            .flat_map(|a| &a.resources)
            .filter_map(|r| r.spec.inventory_id)
            .collect();
        let allocations: Vec<AllocationSnapshot> = built
            .iter()
            .zip(&allocation_ids)
            .map(|(a, &id)| a.snapshot(id, &resource_ids))
            .collect();
        if self.coherent {
            cohere(&mut agents, &allocations);
        }
        Snapshot {
            schema: allocate_core::SCHEMA,
            config: self.config.config(),
            now: self.now.at(),
            next_seq: u64::from(self.next_seq),
            agents,
            allocations,
            usage: Vec::new(),
            quotas: None,
        }
    }
}

/// Makes resources name the allocations that hold them, and only those.
fn cohere(agents: &mut [AgentSnapshot], allocations: &[AllocationSnapshot]) {
    for r in agents.iter_mut().flat_map(|a| &mut a.resources) {
        let holder = allocations.iter().find(|a| {
            a.inventory_id == r.spec.inventory_id
                && matches!(
                    a.state,
                    AllocationState::Provisioning | AllocationState::Ready
                )
        });
        match holder {
            Some(a) => {
                r.occupant = Some(a.allocation_id);
                r.releasing = false;
            }
            None if !r.releasing => r.occupant = None,
            None => {}
        }
    }
}

impl BuiltResource {
    fn snapshot(&self, place: usize, allocations: &[Uuid]) -> ResourceSnapshot {
        let mut spec = self.spec.spec();
        spec.inventory_id = Some(id_of(0x1D00_0000, RESOURCE_IDS, self.id, place));
        ResourceSnapshot {
            spec,
            seq: u64::from(self.seq),
            occupant: self.occupant.and_then(|n| nth(allocations, n)),
            releasing: self.releasing,
            // Neither an abandoned provision's cleanup nor several resources per allocation
            // is varied here yet: the restore checks of both are the engine's own tests'.
            abandoned: false,
            release_deadline: self.release_deadline.map(When::at),
            error: self.error.as_ref().map(Text::text),
            maintenance: self.maintenance.as_ref().map(Text::text),
            retiring: self.retiring,
        }
    }
}

impl BuiltAllocation {
    fn snapshot(&self, id: Uuid, resources: &[Uuid]) -> AllocationSnapshot {
        AllocationSnapshot {
            allocation_id: id,
            requirements: self.requirements.requirements(None),
            seq: u64::from(self.seq),
            created: self.created.at(),
            expires: self.expires.at(),
            // A lease length of its own is not varied here: the fixed end is what restores.
            lease_secs: None,
            wait_until: self.wait_until.at(),
            state: STATES[usize::from(self.state) % STATES.len()],
            inventory_id: self.inventory_id.and_then(|n| nth(resources, n)),
            connection: self.connection.then(|| {
                std::sync::Arc::new(Connection {
                    host: "h".into(),
                    username: "u".into(),
                    password: Some("p".into()),
                    port: None,
                })
            }),
            ready_at: None,
            others: Vec::new(),
            deadline: self.deadline.map(When::at),
            position: self.position.map(u32::from),
        }
    }
}
