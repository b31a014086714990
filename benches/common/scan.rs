//! The baseline: the contract's matching rules as a plain linear scan over every resource.

use allocate_core::{Engine, InventoryEntry, Requirements, ResourceState};
use std::hint::black_box;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// One resource as the scan sees it: its entry, its GPU labels in lower case (computed once,
/// as any sensible scan would), and whether it is free.
#[derive(Debug, Clone)]
struct Slot {
    entry: InventoryEntry,
    gpu_labels_lower: Vec<String>,
    free: bool,
}

/// Every resource in registration order, matched by scanning them all.
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
        let want = req
            .gpu
            .as_ref()
            .and_then(|g| g.label.as_ref())
            .map(|l| l.to_lowercase());
        let mut best: Option<([u64; 4], usize)> = None;
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.free || !satisfies(req, want.as_deref(), slot) {
                continue;
            }
            let fit = excess(req, &slot.entry);
            if best.is_none_or(|(f, _)| fit < f) {
                best = Some((fit, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Times one match and its commit (the pick marked taken); then, untimed, frees the pick
    /// again, so the scan is as it was.
    pub fn timed_pick(&mut self, req: &Requirements) -> Duration {
        let start = Instant::now();
        let pick = black_box(self.best_free(req));
        if let Some(i) = pick {
            self.set_free(i, false);
        }
        let timed = start.elapsed();
        if let Some(i) = pick {
            self.set_free(i, true);
        }
        timed
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

/// Whether `slot` satisfies `req`; `want` is the GPU label asked for, in lower case.
fn satisfies(req: &Requirements, want: Option<&str>, slot: &Slot) -> bool {
    let r = &slot.entry;
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
                .zip(&slot.gpu_labels_lower)
                .filter(|(gpu, lower)| {
                    gpu.memory_gb >= g.min_memory_gb && want.is_none_or(|w| lower.contains(w))
                })
                .count();
            suitable >= g.count as usize
        })
}

fn excess(req: &Requirements, r: &InventoryEntry) -> [u64; 4] {
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
