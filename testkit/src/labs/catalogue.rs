//! The catalogue lab: a realistic lab and the requests a test harness sends.
//!
//! The lab is generated deterministically. Agents are racks in one of six sites, each serving
//! one pool (`ci`, `dev`, `perf`, `release`) of one team, running one OS; their machines come
//! from a catalogue of hardware models (VMs, on-site servers, cloud servers and devices, with
//! 4 to 128 CPUs, 8 to 1024 GB and 0 to 8 GPUs of eight models). Each resource carries five to
//! eight of 29 labels and a static connection, so an allocation is ready in one call; 100,000
//! resources make about 2,500 distinct shapes. Requests come from a catalogue of 56 needs
//! (tags, type, CPU, memory, GPU model, memory and count, exclusions) that a harness asks for
//! over and over.
//!
//! The diverse lab ([`super::diverse`]) is the opposite: nearly every resource is its own
//! shape and nearly every request is new.

use super::RESOURCES_PER_AGENT;
use super::{assert_same_choices, connection, engine_with, fill_with, lab_agents};
use crate::reference::LinearScan;
use crate::rng::Rng;
use allocate_core::{Engine, Gpu, GpuRequirement, Requirements, ResourceSpec};
use uuid::Uuid;

const SITES: [&str; 6] = ["lab-a", "lab-b", "lab-c", "lab-d", "cloud-eu", "cloud-us"];
const POOLS: [(&str, &str, &str); 4] = [
    ("ci", "team-qa", "ubuntu-22.04"),
    ("dev", "team-ml", "ubuntu-24.04"),
    ("perf", "team-hpc", "rhel-9"),
    ("release", "team-infra", "windows-11"),
];
const EXTRAS: [&str; 4] = ["nvme", "10gbe", "infiniband", "sriov"];
const TEAM_GRAPHICS: &str = "team-graphics";

/// GPU models: (label, memory in GB, vendor label, compute label).
const GPUS: [(&str, u64, &str, &str); 8] = [
    ("NVIDIA GeForce RTX 2080", 8, "nvidia", "cuda"),
    ("NVIDIA GeForce RTX 3090", 24, "nvidia", "cuda"),
    ("NVIDIA GeForce RTX 4090", 24, "nvidia", "cuda"),
    ("NVIDIA Tesla T4", 16, "nvidia", "cuda"),
    ("NVIDIA A100", 80, "nvidia", "cuda"),
    ("NVIDIA H100", 80, "nvidia", "cuda"),
    ("AMD Radeon VII", 16, "amd", "rocm"),
    ("AMD Instinct MI250", 128, "amd", "rocm"),
];

/// A hardware model: type, CPUs, memory, and its GPUs as (model index, count).
struct Model {
    kind: &'static str,
    cpu_count: u64,
    memory_gb: u64,
    arch: &'static str,
    gpus: Option<(usize, usize)>,
}

const fn model(
    kind: &'static str,
    cpu_count: u64,
    memory_gb: u64,
    arch: &'static str,
    gpus: Option<(usize, usize)>,
) -> Model {
    Model {
        kind,
        cpu_count,
        memory_gb,
        arch,
        gpus,
    }
}

const MODELS: [Model; 24] = [
    model("VM", 4, 8, "x86_64", None),
    model("VM", 4, 16, "x86_64", None),
    model("VM", 8, 32, "x86_64", None),
    model("VM", 16, 64, "x86_64", None),
    model("VM", 8, 32, "x86_64", Some((3, 1))),
    model("VM", 16, 64, "x86_64", Some((0, 1))),
    model("server-onsite", 16, 64, "x86_64", Some((0, 2))),
    model("server-onsite", 32, 128, "x86_64", Some((1, 2))),
    model("server-onsite", 32, 128, "x86_64", Some((2, 1))),
    model("server-onsite", 64, 256, "x86_64", Some((2, 4))),
    model("server-onsite", 64, 512, "x86_64", Some((4, 4))),
    model("server-onsite", 128, 1024, "x86_64", Some((5, 8))),
    model("server-onsite", 64, 256, "x86_64", Some((6, 2))),
    model("server-onsite", 128, 512, "x86_64", Some((7, 4))),
    model("server-onsite", 32, 128, "x86_64", None),
    model("server-onsite", 64, 256, "aarch64", None),
    model("server-cloud", 16, 64, "x86_64", Some((3, 1))),
    model("server-cloud", 32, 128, "x86_64", Some((4, 1))),
    model("server-cloud", 96, 768, "x86_64", Some((5, 8))),
    model("server-cloud", 8, 32, "aarch64", None),
    model("device", 4, 8, "aarch64", None),
    model("device", 8, 16, "aarch64", Some((0, 1))),
    model("device", 6, 12, "x86_64", Some((3, 1))),
    model("device", 12, 32, "x86_64", Some((2, 1))),
];

/// The resources of agent `i` (deterministic in `i`).
pub fn agent_resources(i: usize) -> Vec<ResourceSpec> {
    let mut rng = Rng::new(i as u64);
    let site = SITES[rng.below(SITES.len())];
    let (pool, team, os) = POOLS[rng.below(POOLS.len())];
    // A rack holds two or three hardware models, skewed towards the common ones.
    let models: Vec<&Model> = (0..2 + rng.below(2))
        .map(|_| &MODELS[rng.below(MODELS.len()).min(rng.below(MODELS.len()))])
        .collect();
    let extra = (rng.below(3) == 0).then(|| EXTRAS[rng.below(EXTRAS.len())]);
    (0..RESOURCES_PER_AGENT)
        .map(|n| {
            let m = models[rng.below(models.len())];
            let mut labels = vec![site.to_owned(), pool.to_owned(), os.to_owned()];
            labels.push(m.arch.to_owned());
            let mut gpu = Vec::new();
            if let Some((g, count)) = m.gpus {
                let (label, memory_gb, vendor, compute) = GPUS[g];
                gpu = vec![
                    Gpu {
                        label: label.to_owned(),
                        memory_gb,
                    };
                    count
                ];
                labels.extend([vendor.to_owned(), compute.to_owned()]);
            }
            let team = if m.kind == "device" && m.gpus.is_some() {
                TEAM_GRAPHICS
            } else {
                team
            };
            labels.push(team.to_owned());
            labels.extend(extra.map(str::to_owned));
            ResourceSpec {
                inventory_id: None,
                labels,
                cpu_count: m.cpu_count,
                memory_gb: m.memory_gb,
                gpu,
                kind: m.kind.to_owned(),
                connection: Some(connection(i, n).into()),
            }
        })
        .collect()
}

fn gpu(label: Option<&str>, min_memory_gb: u64, count: u32) -> Option<GpuRequirement> {
    Some(GpuRequirement {
        label: label.map(str::to_owned),
        min_memory_gb,
        count,
    })
}

/// The catalogue of needs a harness sends, varied but repeating; each has no wait, so a
/// miss answers at once.
pub fn request_mix() -> Vec<Requirements> {
    let mut mix = Vec::new();
    let mut add = |tags: &[&str], f: &dyn Fn(&mut Requirements)| {
        let mut r = Requirements::for_user("ci-runner-7");
        r.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        r.allocation_timeout_seconds = 0;
        f(&mut r);
        mix.push(r);
    };
    let none = |_: &mut Requirements| {};
    for site in SITES {
        add(&[site], &none);
        add(&[site, "nvidia"], &|r| r.gpu = gpu(None, 8, 1));
        add(&[site, "x86_64"], &|r| r.min_cpu_count = Some(16));
    }
    for (pool, _, os) in POOLS {
        add(&[pool], &none);
        add(&[pool, os], &|r| r.kind = Some("VM".into()));
        add(&[pool, "cuda"], &|r| r.gpu = gpu(Some("rtx"), 8, 1));
    }
    for (label, memory_gb, vendor, _) in GPUS {
        add(&[vendor], &|r| r.gpu = gpu(Some(label), memory_gb, 1));
    }
    add(&["nvidia"], &|r| r.gpu = gpu(Some("RTX 4090"), 24, 2));
    add(&["nvidia"], &|r| r.gpu = gpu(Some("a100"), 40, 4));
    add(&["nvidia"], &|r| r.gpu = gpu(None, 80, 8));
    add(&["amd"], &|r| r.gpu = gpu(Some("instinct"), 64, 2));
    add(&["cuda", "ci"], &|r| r.gpu = gpu(Some("t4"), 16, 1));
    add(&[], &|r| r.min_memory_gb = Some(256));
    add(&[], &|r| r.min_cpu_count = Some(64));
    add(&["aarch64"], &none);
    add(&["aarch64"], &|r| r.kind = Some("device".into()));
    add(&["team-graphics"], &|r| r.kind = Some("device".into()));
    add(&["x86_64"], &|r| {
        r.exclude_tags = vec!["nvidia".into(), "amd".into()]
    });
    add(&["nvme"], &|r| r.min_memory_gb = Some(64));
    add(&["infiniband", "perf"], &none);
    add(&["10gbe"], &|r| r.exclude_tags = vec!["windows-11".into()]);
    add(&["sriov"], &|r| r.kind = Some("server-onsite".into()));
    add(&[], &|r| r.kind = Some("server-cloud".into()));
    add(&["windows-11"], &|r| r.gpu = gpu(None, 16, 1));
    add(&[], &none);
    mix
}

/// An engine (default settings, no journal) with `resources` registered from
/// `resources / RESOURCES_PER_AGENT` agents at [`T0`].
pub fn lab_engine(resources: usize) -> Engine {
    engine_with(lab_agents(resources, agent_resources))
}

/// The catalogue lab of `n` resources, half of them held, and its linear scan, checked to
/// choose what the engine chooses for every need of the mix.
pub fn half_allocated_catalogue(n: usize) -> (Engine, LinearScan) {
    let mut engine = lab_engine(n);
    fill(&mut engine, n / 2);
    let scan = LinearScan::of(&engine);
    assert_same_choices(&mut engine, &scan, &request_mix());
    (engine, scan)
}

/// Allocates resources until `count` are held: the harness's needs in turn while they find
/// something, then anything. Returns the allocation ids in order.
pub fn fill(engine: &mut Engine, count: usize) -> Vec<Uuid> {
    let mix = request_mix();
    let patience = mix.len();
    fill_with(engine, count, mix.into_iter().cycle(), patience)
}
