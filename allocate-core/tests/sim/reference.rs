//! The contract's matching rules written the obvious way (a scan over inventory entries), to
//! check the engine's indexed choices against, and the policy the simulation may install.

use allocate_core::{Candidate, InventoryEntry, MatchPolicy, Requirements, ResourceState};
use std::cmp::Reverse;
use uuid::Uuid;

/// Whether `r` satisfies `req` (tags, exclusions, type, CPU, memory, GPUs).
pub fn satisfies(req: &Requirements, r: &InventoryEntry) -> bool {
    let has = |t: &String| r.labels.contains(t);
    req.tags.iter().all(has)
        && !req.exclude_tags.iter().any(has)
        && req.kind.as_ref().is_none_or(|k| *k == r.kind)
        && r.cpu_count >= req.min_cpu_count.unwrap_or(0)
        && r.memory_gb >= req.min_memory_gb.unwrap_or(0)
        && req.gpu.as_ref().is_none_or(|g| {
            let want = g.label.as_ref().map(|l| l.to_lowercase());
            let suitable = r
                .gpu
                .iter()
                .filter(|gpu| {
                    gpu.memory_gb >= g.min_memory_gb
                        && want
                            .as_ref()
                            .is_none_or(|w| gpu.label.to_lowercase().contains(w.as_str()))
                })
                .count();
            suitable >= g.count as usize
        })
}

/// How much `r` exceeds `req`: GPU memory, GPU count, CPUs, memory (less is a better fit).
pub fn excess(req: &Requirements, r: &InventoryEntry) -> [u64; 4] {
    let (count, per_gpu) = req
        .gpu
        .as_ref()
        .map_or((0, 0), |g| (u64::from(g.count), g.min_memory_gb));
    let gpu_memory = r
        .gpu
        .iter()
        .fold(0u64, |sum, g| sum.saturating_add(g.memory_gb));
    [
        gpu_memory.saturating_sub(count.saturating_mul(per_gpu)),
        (r.gpu.len() as u64).saturating_sub(count),
        r.cpu_count.saturating_sub(req.min_cpu_count.unwrap_or(0)),
        r.memory_gb.saturating_sub(req.min_memory_gb.unwrap_or(0)),
    ]
}

/// Whether the simulation's policy forbids `r` to `req`: "bob" never takes a one-CPU box.
pub fn vetoed(req: &Requirements, cpu_count: u64) -> bool {
    req.username == "bob" && cpu_count == 1
}

/// The simulation's policy score: "alice" prefers devices; everyone else has no opinion.
pub fn score(req: &Requirements, kind: &str) -> Option<i64> {
    (req.username == "alice").then(|| i64::from(kind == "device"))
}

/// The simulation's matching policy, as the engine sees it.
#[derive(Debug)]
pub struct Picky;

impl MatchPolicy for Picky {
    fn veto(&self, request: &Requirements, candidate: &Candidate<'_>) -> bool {
        vetoed(request, candidate.spec.cpu_count)
    }

    fn score(&self, request: &Requirements, candidate: &Candidate<'_>) -> Option<i64> {
        score(request, &candidate.spec.kind)
    }
}

/// Whether `r` is for `req` at all: it satisfies it and, under the policy, is not vetoed.
pub fn eligible(req: &Requirements, r: &InventoryEntry, policy: bool) -> bool {
    satisfies(req, r) && !(policy && vetoed(req, r.cpu_count))
}

/// The free resource `req` should get now: under the policy the highest score (any score
/// beats none), then the least excess, then the earliest registered (`inventory` is in
/// registration order, as `Engine::inventory` gives it).
pub fn best_free(req: &Requirements, inventory: &[InventoryEntry], policy: bool) -> Option<Uuid> {
    inventory
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == ResourceState::Free && eligible(req, r, policy))
        .min_by_key(|(i, r)| {
            let score = if policy { score(req, &r.kind) } else { None };
            (Reverse(score), excess(req, r), *i)
        })
        .map(|(_, r)| r.inventory_id)
}
