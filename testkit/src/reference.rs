//! The contract's matching rules written the obvious way, a scan over inventory entries: the
//! oracle that the engine's indexed choices are checked against, in the simulations (with or
//! without the [`Picky`](crate::policy::Picky) policy) and in the benchmarks, where [`LinearScan`] is also the
//! baseline.

use crate::policy::{picky_score, picky_veto};
use allocate_core::{Engine, InventoryEntry, Requirements, ResourceState};
use std::cmp::Reverse;
use uuid::Uuid;

/// The GPU label `req` asks for, in lower case.
fn gpu_want(req: &Requirements) -> Option<String> {
    req.gpu
        .as_ref()
        .and_then(|g| g.label.as_ref())
        .map(|l| l.to_lowercase())
}

/// Whether `r` satisfies `req` (tags, exclusions, type, CPU, memory, GPUs).
pub fn satisfies(req: &Requirements, r: &InventoryEntry) -> bool {
    let lower: Vec<String> = r.gpu.iter().map(|g| g.label.to_lowercase()).collect();
    satisfies_lowered(req, gpu_want(req).as_deref(), r, &lower)
}

/// [`satisfies`], given the GPU label asked for and `r`'s GPU labels, both in lower case.
fn satisfies_lowered(
    req: &Requirements,
    want: Option<&str>,
    r: &InventoryEntry,
    gpu_labels_lower: &[String],
) -> bool {
    let has = |t: &String| r.labels.contains(t);
    r.cpu_count >= req.min_cpu_count.unwrap_or(0)
        && r.memory_gb >= req.min_memory_gb.unwrap_or(0)
        && req.kind.as_ref().is_none_or(|k| *k == r.kind)
        && req.tags.iter().all(has)
        && !req.exclude_tags.iter().any(has)
        && req.gpu.as_ref().is_none_or(|g| {
            let suitable = r
                .gpu
                .iter()
                .zip(gpu_labels_lower)
                .filter(|(gpu, lower)| {
                    gpu.memory_gb >= g.min_memory_gb && want.is_none_or(|w| lower.contains(w))
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

/// Whether `r` is for `req` at all: it satisfies it and, under [`Picky`](crate::policy::Picky), is not vetoed.
pub fn eligible(req: &Requirements, r: &InventoryEntry, picky: bool) -> bool {
    satisfies(req, r) && !(picky && picky_veto(req, r.cpu_count))
}

/// The free resource `req` should get now: under [`Picky`](crate::policy::Picky) the highest score (any score beats
/// none), then the least excess, then the earliest registered (`inventory` is in registration
/// order, as `Engine::inventory` gives it).
pub fn best_free(req: &Requirements, inventory: &[InventoryEntry], picky: bool) -> Option<Uuid> {
    inventory
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == ResourceState::Free && eligible(req, r, picky))
        .min_by_key(|(i, r)| {
            let score = if picky {
                picky_score(req, &r.kind)
            } else {
                None
            };
            (Reverse(score), excess(req, r), *i)
        })
        .map(|(_, r)| r.inventory_id)
}

/// One resource as the scan sees it: its entry, its GPU labels in lower case (computed once,
/// as any sensible scan would), and whether it is free.
#[derive(Debug, Clone)]
struct Slot {
    entry: InventoryEntry,
    gpu_labels_lower: Vec<String>,
    free: bool,
}

/// Every resource in registration order, matched by scanning them all (no policy).
#[derive(Debug, Clone)]
pub struct LinearScan {
    slots: Vec<Slot>,
}

impl LinearScan {
    /// The engine's inventory (registration order, free or not) as a plain list.
    pub fn of(engine: &Engine) -> Self {
        let slots = engine
            .inventory()
            .map(|entry| Slot {
                gpu_labels_lower: entry.gpu.iter().map(|g| g.label.to_lowercase()).collect(),
                free: entry.state == ResourceState::Free,
                entry,
            })
            .collect();
        LinearScan { slots }
    }

    /// The best free resource for `req`: least excess GPU memory, then GPU count, CPUs and
    /// memory; ties go to the earliest registered. Returns its index.
    pub fn best_free(&self, req: &Requirements) -> Option<usize> {
        let want = gpu_want(req);
        let mut best: Option<([u64; 4], usize)> = None;
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.free
                || !satisfies_lowered(req, want.as_deref(), &slot.entry, &slot.gpu_labels_lower)
            {
                continue;
            }
            let fit = excess(req, &slot.entry);
            if best.is_none_or(|(f, _)| fit < f) {
                best = Some((fit, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Marks resource `i` taken (or free again).
    pub fn set_free(&mut self, i: usize, free: bool) {
        self.slots[i].free = free;
    }

    /// The id of resource `i`.
    pub fn id(&self, i: usize) -> Uuid {
        self.slots[i].entry.inventory_id
    }
}
