//! The diverse lab of issue #18, where nearly every resource is its own shape and nearly
//! every request is new.
//!
//! Resources come in four types with 1 to 256 CPUs and 1 to 2048 GB (uneven steps, memory
//! between half and sixteen times the CPU count); 44% have no GPU, the rest 1, 2, 4 or 8
//! identical GPUs of one of twelve models. Each carries 3 to 11 labels: its architecture, OS
//! and site (one per agent), `nvidia`/`amd` and `cuda`/`rocm` when it has GPUs, and extras
//! drawn, skewed towards the first, from a pool of 320. Agents own [`RESOURCES_PER_AGENT`]
//! resources each, with static connections, so an allocation is ready in one call.
//!
//! Each request is derived from one resource, so that this resource satisfies it: one to three
//! of its labels as tags, and often a GPU need (at most its count, a memory floor at or below
//! its GPUs', now and then part of its model's name in any case), CPU and memory floors at or
//! below its own, or its type. The floors are random, so requests hardly ever repeat; none
//! waits, so a miss answers at once.

use super::{
    assert_same_choices, connection, engine_with, fill_with, lab_agents, RESOURCES_PER_AGENT,
};
use crate::reference::LinearScan;
use crate::rng::Rng;
use allocate_core::{Engine, Gpu, GpuRequirement, Requirements, ResourceSpec};

/// Requests on which the engine is checked to pick what the linear scan picks.
const CHECKED_REQUESTS: usize = 300;

/// Sites; every resource of an agent is at the agent's site.
const SITES: [&str; 12] = [
    "lab-a",
    "lab-b",
    "lab-c",
    "lab-d",
    "lab-e",
    "edge-berlin",
    "edge-austin",
    "cloud-eu-west",
    "cloud-eu-north",
    "cloud-us-east",
    "cloud-us-west",
    "cloud-ap-south",
];

/// Operating systems, the first the most common.
const SYSTEMS: [&str; 10] = [
    "ubuntu-22.04",
    "ubuntu-24.04",
    "rhel-9",
    "debian-12",
    "windows-11",
    "ubuntu-20.04",
    "rhel-8",
    "rocky-9",
    "windows-10",
    "macos-14",
];

/// Architectures with their weights.
const ARCHITECTURES: [(&str, usize); 4] = [
    ("x86_64", 70),
    ("aarch64", 22),
    ("ppc64le", 5),
    ("riscv64", 3),
];

/// Types with their weights.
const KINDS: [(&str, usize); 4] = [
    ("VM", 35),
    ("server-onsite", 30),
    ("server-cloud", 20),
    ("device", 15),
];

/// GPUs per resource with their weights: 44% have none.
const GPU_COUNTS: [(usize, usize); 5] = [(0, 44), (1, 22), (2, 14), (4, 11), (8, 9)];

/// GPU models: (label, memory in GB, vendor label, compute label).
const GPUS: [(&str, u64, &str, &str); 12] = [
    ("NVIDIA GeForce RTX 2080", 8, "nvidia", "cuda"),
    ("NVIDIA GeForce RTX 3060", 12, "nvidia", "cuda"),
    ("NVIDIA GeForce RTX 3090", 24, "nvidia", "cuda"),
    ("NVIDIA GeForce RTX 4090", 24, "nvidia", "cuda"),
    ("NVIDIA Tesla T4", 16, "nvidia", "cuda"),
    ("NVIDIA Tesla V100", 32, "nvidia", "cuda"),
    ("NVIDIA A10", 24, "nvidia", "cuda"),
    ("NVIDIA L40S", 48, "nvidia", "cuda"),
    ("NVIDIA A100", 80, "nvidia", "cuda"),
    ("NVIDIA H100", 80, "nvidia", "cuda"),
    ("AMD Radeon VII", 16, "amd", "rocm"),
    ("AMD Instinct MI250", 128, "amd", "rocm"),
];

/// CPU counts, in uneven steps.
const CPUS: [u64; 32] = [
    1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 18, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 72, 80, 96, 112,
    128, 144, 160, 176, 192, 224, 256,
];

/// Memory sizes in GB, in uneven steps.
const MEMORY: [u64; 22] = [
    1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
];

/// The kinds of extra label; the pool holds 40 of each.
const EXTRA_KINDS: [&str; 8] = [
    "team", "project", "pool", "rack", "net", "disk", "feature", "cert",
];

/// Extra labels in the pool.
const EXTRAS: usize = 40 * EXTRA_KINDS.len();

/// Resource `index` of the diverse lab (deterministic in `index`).
fn diverse_resource(index: usize) -> ResourceSpec {
    let agent = index / RESOURCES_PER_AGENT;
    // Agents' streams are kept apart from resources' by the top bit.
    let site = SITES[Rng::new(agent as u64 | 1 << 63).below(SITES.len())];
    let mut rng = Rng::new(index as u64);
    let os = SYSTEMS[rng.below(SYSTEMS.len()).min(rng.below(SYSTEMS.len()))];
    let mut labels = vec![
        rng.weighted(&ARCHITECTURES).to_owned(),
        os.to_owned(),
        site.to_owned(),
    ];
    let kind = rng.weighted(&KINDS);
    let cpu_count = CPUS[rng.below(CPUS.len())];
    let memory: Vec<u64> = MEMORY
        .into_iter()
        .filter(|&m| 2 * m >= cpu_count && m <= 16 * cpu_count)
        .collect();
    let memory_gb = memory[rng.below(memory.len())];
    let mut gpu = Vec::new();
    let count = rng.weighted(&GPU_COUNTS);
    if count > 0 {
        let (label, memory_gb, vendor, compute) = GPUS[rng.below(GPUS.len())];
        let model = Gpu {
            label: label.to_owned(),
            memory_gb,
        };
        gpu = vec![model; count];
        labels.extend([vendor.to_owned(), compute.to_owned()]);
    }
    let wanted = 3 + rng.below(9);
    while labels.len() < wanted {
        // Below a random bound: the first extras are common, the last rare.
        let bound = 1 + rng.below(EXTRAS);
        let k = rng.below(bound);
        let extra = format!(
            "{}-{}",
            EXTRA_KINDS[k % EXTRA_KINDS.len()],
            k / EXTRA_KINDS.len()
        );
        // A label it already has is drawn again.
        if !labels.contains(&extra) {
            labels.push(extra);
        }
    }
    ResourceSpec {
        inventory_id: None,
        labels,
        cpu_count,
        memory_gb,
        gpu,
        kind: kind.to_owned(),
        connection: Some(connection(agent, index % RESOURCES_PER_AGENT).into()),
    }
}

/// The resources of agent `agent` of the diverse lab (deterministic in `agent`).
pub fn diverse_resources(agent: usize) -> Vec<ResourceSpec> {
    (agent * RESOURCES_PER_AGENT..(agent + 1) * RESOURCES_PER_AGENT)
        .map(diverse_resource)
        .collect()
}

/// An engine (default settings, no journal) with `resources` of the diverse lab registered
/// from `resources / RESOURCES_PER_AGENT` agents.
pub fn diverse_engine(resources: usize) -> Engine {
    engine_with(lab_agents(resources, diverse_resources))
}

/// A diverse lab of `n` resources, half of them held by diverse requests, and the linear scan
/// of it, checked to pick what the engine picks for [`CHECKED_REQUESTS`] fresh requests (the
/// fill and the check each draw from a stream of their own).
pub fn half_allocated_diverse(n: usize) -> (Engine, LinearScan) {
    let mut engine = diverse_engine(n);
    fill_with(&mut engine, n / 2, DiverseRequests::new(n, u64::MAX), 100);
    let scan = LinearScan::of(&engine);
    let requests: Vec<Requirements> = DiverseRequests::new(n, u64::MAX - 1)
        .take(CHECKED_REQUESTS)
        .collect();
    assert_same_choices(&mut engine, &scan, &requests);
    (engine, scan)
}

/// An endless stream of fresh requests for a diverse lab of `resources`, each derived from a
/// random one of them.
#[derive(Debug, Clone)]
pub struct DiverseRequests {
    resources: usize,
    rng: Rng,
}

impl DiverseRequests {
    /// The stream numbered `seed` (the same seed, the same requests).
    pub fn new(resources: usize, seed: u64) -> Self {
        DiverseRequests {
            resources,
            rng: Rng::new(seed),
        }
    }

    /// The next request, derived from resource `index`, so that it satisfies it.
    pub fn for_resource(&mut self, index: usize) -> Requirements {
        request_for(&diverse_resource(index), &mut self.rng)
    }
}

impl Iterator for DiverseRequests {
    type Item = Requirements;

    fn next(&mut self) -> Option<Requirements> {
        let index = self.rng.below(self.resources);
        Some(self.for_resource(index))
    }
}

/// A random request that `spec` satisfies.
fn request_for(spec: &ResourceSpec, rng: &mut Rng) -> Requirements {
    let mut r = Requirements::for_user("diverse-harness");
    r.allocation_timeout_seconds = 0;
    let mut tags = spec.labels.clone();
    rng.shuffle(&mut tags);
    tags.truncate(1 + rng.below(3));
    r.tags = tags;
    if let Some(g) = spec.gpu.first().filter(|_| rng.below(10) < 6) {
        let label = (rng.below(10) < 6).then(|| {
            // A tail of the model's name ("a100", "rtx 4090", ...) in one of three cases.
            let words: Vec<&str> = g.label.split(' ').collect();
            let tail = words[rng.below(words.len())..].join(" ");
            match rng.below(3) {
                0 => tail.to_lowercase(),
                1 => tail.to_uppercase(),
                _ => tail,
            }
        });
        r.gpu = Some(GpuRequirement {
            label,
            min_memory_gb: rng.below(g.memory_gb as usize + 1) as u64,
            count: 1 + rng.below(spec.gpu.len()) as u32,
        });
    }
    if rng.below(4) < 3 {
        r.min_cpu_count = Some(1 + rng.below(spec.cpu_count as usize) as u64);
    }
    if rng.below(4) < 3 {
        r.min_memory_gb = Some(1 + rng.below(spec.memory_gb as usize) as u64);
    }
    if rng.below(10) < 3 {
        r.kind = Some(spec.kind.clone());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labs::allocate;
    use std::collections::HashSet;

    /// What matching sees of a resource, labels sorted.
    fn shape(spec: &ResourceSpec) -> String {
        let mut labels = spec.labels.clone();
        labels.sort();
        format!(
            "{labels:?} {} {} {} {:?}",
            spec.kind, spec.cpu_count, spec.memory_gb, spec.gpu
        )
    }

    #[test]
    fn the_lab_is_diverse() {
        let specs: Vec<ResourceSpec> = (0..10_000).map(diverse_resource).collect();
        let shapes: HashSet<String> = specs.iter().map(shape).collect();
        assert!(shapes.len() >= 9_500, "{} shapes", shapes.len());
        let without_gpu = specs.iter().filter(|s| s.gpu.is_empty()).count();
        assert!((4_000..4_800).contains(&without_gpu), "{without_gpu}");
        let models: HashSet<&str> = specs
            .iter()
            .flat_map(|s| s.gpu.first())
            .map(|g| g.label.as_str())
            .collect();
        assert_eq!(models.len(), GPUS.len());
        let kinds: HashSet<&str> = specs.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds.len(), KINDS.len());
        let extras: HashSet<&String> = specs.iter().flat_map(|s| &s.labels[3..]).collect();
        assert!(
            extras.len() > 300,
            "{} labels beyond the first three",
            extras.len()
        );
        for s in &specs {
            assert!((3..=11).contains(&s.labels.len()), "{s:?}");
            assert!([0, 1, 2, 4, 8].contains(&s.gpu.len()), "{s:?}");
            assert!(s.gpu.iter().all(|g| *g == s.gpu[0]), "{s:?}");
            assert!((1..=256).contains(&s.cpu_count), "{s:?}");
            assert!((1..=2048).contains(&s.memory_gb), "{s:?}");
        }
    }

    #[test]
    fn every_request_is_satisfied_by_its_resource() {
        let mut requests = DiverseRequests::new(1_000, 7);
        for index in 0..2_000 {
            let r = requests.for_resource(index);
            let mut engine = engine_with([vec![diverse_resource(index)]]);
            assert!(allocate(&mut engine, r.clone()).is_some(), "{r:?}");
        }
    }

    #[test]
    fn nearly_every_request_is_new() {
        let requests: HashSet<String> = DiverseRequests::new(100_000, 7)
            .take(10_000)
            .map(|r| format!("{r:?}"))
            .collect();
        assert!(requests.len() >= 9_800, "{} distinct", requests.len());
    }
}
