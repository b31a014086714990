//! Deterministic labs and request streams, and engines set up from them.
//!
//! - [`catalogue`]: a realistic lab of racks built from a catalogue of hardware models, and a
//!   catalogue of needs a harness asks for over and over;
//! - [`diverse`]: a lab where nearly every resource is its own shape and nearly every request
//!   is new;
//! - [`vocab`]: the small vocabulary (labels, types, GPU models, users) that generated
//!   resources and requests draw from in the property tests and the fuzz targets, so that
//!   they often match each other.
//!
//! Agents own [`RESOURCES_PER_AGENT`] resources each and register at [`T0`].

pub mod catalogue;
pub mod diverse;
pub mod vocab;

pub use catalogue::{agent_resources, fill, half_allocated_catalogue, lab_engine, request_mix};
pub use diverse::{diverse_engine, diverse_resources, half_allocated_diverse, DiverseRequests};

use crate::reference::LinearScan;
use allocate_core::{
    Config, Connection, Engine, Output, Requirements, ResourceSpec, SeededIds, Timestamp,
};
use uuid::Uuid;

/// When the labs are registered and their requests made.
pub const T0: Timestamp = Timestamp::from_secs(1_700_000_000);

/// Resources per agent (so 100,000 resources come from 10,000 agents).
pub const RESOURCES_PER_AGENT: usize = 10;

/// The id of agent `i`.
pub fn agent_id(i: usize) -> Uuid {
    Uuid::from_u128(0xA6E0_0000_0000 + i as u128)
}

/// The static connection of resource `n` of agent `i`, so an allocation is ready at once.
fn connection(i: usize, n: usize) -> Connection {
    Connection {
        host: format!("10.{}.{}.{}", i >> 12, (i >> 4) & 0xff, (i & 0xf) * 16 + n),
        username: "lab".to_owned(),
        password: Some(format!("pw-{i:x}-{n}")),
        port: None,
    }
}

/// The resources of the first `resources / RESOURCES_PER_AGENT` agents (rounded up; the last
/// one cut short), agent `i` owning `agent_resources(i)`.
pub fn lab_agents(
    resources: usize,
    agent_resources: fn(usize) -> Vec<ResourceSpec>,
) -> impl Iterator<Item = Vec<ResourceSpec>> {
    (0..resources.div_ceil(RESOURCES_PER_AGENT)).map(move |i| {
        let mut specs = agent_resources(i);
        specs.truncate(resources - i * RESOURCES_PER_AGENT);
        specs
    })
}

/// An engine (default settings, no journal) with each agent's resources registered at [`T0`],
/// the `i`th as [`agent_id`]`(i)`.
pub fn engine_with(agents: impl IntoIterator<Item = Vec<ResourceSpec>>) -> Engine {
    let mut engine = Engine::new(Config::default(), Box::new(SeededIds::new(1)));
    for (i, specs) in agents.into_iter().enumerate() {
        engine
            .register_agent(T0, agent_id(i), specs)
            .expect("the lab registers");
    }
    engine
}

/// Requests `r` and returns the resource it was given at once, if any. Drains the outputs.
pub fn allocate(engine: &mut Engine, r: Requirements) -> Option<(Uuid, Uuid)> {
    let id = engine.request(T0, r).expect("a valid request");
    let mut got = None;
    while let Some(o) = engine.poll_output() {
        if let Output::Ready { inventory_id, .. } = o {
            got = Some((id, inventory_id));
        }
    }
    got
}

/// Releases an allocation and drains the outputs.
pub fn release(engine: &mut Engine, id: Uuid) {
    engine.release(T0, id).expect("a live allocation");
    while engine.poll_output().is_some() {}
}

/// The scan must choose exactly what the engine chooses, request by request (each allocated
/// and released again, so both stay as they were).
pub fn assert_same_choices(engine: &mut Engine, scan: &LinearScan, requests: &[Requirements]) {
    for r in requests {
        let engine_pick = allocate(engine, r.clone());
        let scan_pick = scan.best_free(r).map(|i| scan.id(i));
        assert_eq!(
            engine_pick.map(|(_, inventory_id)| inventory_id),
            scan_pick,
            "{r:?}"
        );
        if let Some((id, _)) = engine_pick {
            release(engine, id);
        }
    }
}

/// Allocates resources until `count` are held: `requests` in turn until `patience` of them in
/// a row find nothing, then anything. Returns the allocation ids in order.
pub fn fill_with(
    engine: &mut Engine,
    count: usize,
    requests: impl IntoIterator<Item = Requirements>,
    patience: usize,
) -> Vec<Uuid> {
    let mut held = Vec::with_capacity(count);
    let mut misses = 0;
    let mut requests = requests.into_iter();
    while held.len() < count && misses < patience {
        let Some(r) = requests.next() else { break };
        match allocate(engine, r) {
            Some((id, _)) => {
                held.push(id);
                misses = 0;
            }
            None => misses += 1,
        }
    }
    let anything = Requirements::for_user("filler");
    while held.len() < count {
        let (id, _) = allocate(engine, anything.clone()).expect("a free resource is left");
        held.push(id);
    }
    held
}
