//! The matcher's index: bitmaps of positions per label, type and GPU model, over positions laid
//! out in best-fit order, so that a request costs the same whether or not it was seen before.
//!
//! Every registered resource has a position. Positions below `sorted` are in best-fit order
//! ([`Rank`]: GPU memory, GPU count, CPUs, memory, then registration), which is the same for
//! every request: among the resources that match a request, the one with the lowest rank is its
//! best fit. Resources registered since the last layout take the next positions (the tail), in
//! arrival order; once the tail grows past a small fraction of the layout, the next query lays
//! everything out again (`relayout`), so a registration costs a few bitmap inserts and a query
//! never scans more than a short tail out of order.
//!
//! A query is a leapfrog join of the bitmaps of its terms (free or registered resources, each
//! required tag, the type, the GPU models whose name contains the one asked for, the GPU memory
//! sizes at or above its per-GPU floor), led by the smallest: each term in turn leaps to the
//! next position the others may agree on; from there the terms' bits over a window of 1,024
//! positions (two cache lines of a dense bitmap) are intersected at once, so that terms that
//! rarely meet cost a window per round rather than a round per position. It starts at the first position whose rank could match; the numeric needs (CPUs,
//! memory, GPU count and total GPU memory) are checked on the rank, and a failure skips ahead to
//! the first position that could pass (a skip scan). Excluded tags are taken out of the
//! positions the terms agree on a window at a time, per-GPU needs are left to the caller's
//! `exact` test. Nothing is cached:
//! the work depends on the inventory and the request alone.

use crate::bitmap::{Bitmap, Cursor, Window, WINDOW};
use crate::criteria::Criteria;
use crate::hash::FxMap;
use crate::model::ResourceSpec;
use std::borrow::Borrow;
use std::hash::Hash;

/// The last word on a resource the index lets through: `exact(slot, gpus_known)`, where
/// `gpus_known` says its GPUs are known to meet the per-GPU needs already.
pub(crate) trait Exact: Fn(Slot, bool) -> bool {}

impl<F: Fn(Slot, bool) -> bool> Exact for F {}

/// Index of a resource in the inventory's slot table.
pub(crate) type Slot = u32;

/// A position in the index's layout.
type Pos = u32;

/// Marks a dead position's slot, and a slot that has no position.
const NONE: u32 = u32::MAX;

/// Ranks per block of the layout under one fence.
const FENCE_EVERY: usize = 64;

/// The smallest tail that makes a query lay the index out again.
const TAIL_MIN: usize = 16;

/// Past this many distinct GPU models (or GPU memory sizes), a term on them is left to the
/// `exact` test: a union of that many bitmaps would cost more than it saves.
const UNION_MAX: usize = 256;

/// Where a resource stands in best-fit order: less is a better fit for any request it matches.
///
/// A request's best fit is the matching resource with the least excess GPU memory, then GPU
/// count, CPUs and memory, ties going to the earliest registered. Every matching resource
/// exceeds the request by its own value minus the request's (never below zero), so ordering by
/// the excess is ordering by the values themselves, the same order for every request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rank {
    /// Total GPU memory.
    pub gpu_memory_gb: u64,
    /// Number of GPUs.
    pub gpu_count: u64,
    /// Number of CPUs.
    pub cpu_count: u64,
    /// Memory in GB.
    pub memory_gb: u64,
    /// Registration order.
    pub seq: u64,
}

impl Rank {
    /// The rank of a resource registered as `seq`.
    pub fn of(spec: &ResourceSpec, seq: u64) -> Self {
        Rank {
            gpu_memory_gb: spec
                .gpu
                .iter()
                .fold(0u64, |sum, g| sum.saturating_add(g.memory_gb)),
            gpu_count: spec.gpu.len() as u64,
            cpu_count: spec.cpu_count,
            memory_gb: spec.memory_gb,
            seq,
        }
    }

    /// The least rank a resource matching `c` can have.
    fn floor(c: &Criteria) -> Self {
        let (count, memory) = c.gpu_floor();
        Rank {
            gpu_memory_gb: memory,
            gpu_count: count,
            cpu_count: c.min_cpu_count,
            memory_gb: c.min_memory_gb,
            seq: 0,
        }
    }

    /// `Ok` if this rank meets the numeric needs of `c`; otherwise the least rank above it
    /// that could.
    fn check(&self, c: &Criteria) -> Result<(), Rank> {
        let floor = Rank::floor(c);
        let next = if self.gpu_memory_gb < floor.gpu_memory_gb {
            floor
        } else if self.gpu_count < floor.gpu_count {
            Rank {
                gpu_memory_gb: self.gpu_memory_gb,
                ..floor
            }
        } else if self.cpu_count < floor.cpu_count {
            Rank {
                gpu_memory_gb: self.gpu_memory_gb,
                gpu_count: self.gpu_count,
                ..floor
            }
        } else if self.memory_gb < floor.memory_gb {
            Rank {
                seq: 0,
                memory_gb: floor.memory_gb,
                ..*self
            }
        } else {
            return Ok(());
        };
        Err(next)
    }
}

/// Which resources a query looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Those a new allocation may be placed on.
    Free,
    /// Every registered one.
    All,
}

/// What a join does after a position: go on, or leap ahead.
enum Step {
    Next,
    SkipTo(Pos),
}

/// Cursors over terms, each the union of a run of bitmaps.
#[derive(Default)]
struct Cursors<'a> {
    /// A cursor on each bitmap, term after term.
    members: Vec<Cursor<'a>>,
    /// Each term's size (the sum of its bitmaps') and where its members start and end.
    terms: Vec<(u64, usize, usize)>,
}

impl<'a> Cursors<'a> {
    /// Adds a term, the union of `bitmaps`, with its cursor at the first position from `from`;
    /// `false` if it has no bitmap (no position can match).
    fn add(&mut self, bitmaps: impl IntoIterator<Item = &'a Bitmap>, from: Pos) -> bool {
        let start = self.members.len();
        let mut size = 0;
        for bitmap in bitmaps {
            size += bitmap.len();
            self.members.push(Cursor::new(bitmap, from));
        }
        self.terms.push((size, start, self.members.len()));
        self.members.len() > start
    }

    /// Puts the smallest term first, so that a join meets the most selective terms first.
    fn smallest_first(&mut self) {
        self.terms.sort_unstable();
    }

    /// Keeps in `common` only the positions of term `term` among the [`WINDOW`] from `block`
    /// (every one at or after the least position sought, perhaps some before); `false` once
    /// none is left.
    fn narrow(&mut self, term: usize, block: Pos, common: &mut Window) -> bool {
        let (_, start, end) = self.terms[term];
        let mut union = Window::default();
        for cursor in &mut self.members[start..end] {
            cursor.window(block, &mut union);
        }
        let mut any = 0;
        for (c, u) in common.iter_mut().zip(union) {
            *c &= u;
            any |= *c;
        }
        any != 0
    }

    /// The least position at or after `pos` in term `term` (`Pos::MAX` if none).
    fn seek(&mut self, term: usize, pos: Pos) -> Pos {
        let (_, start, end) = self.terms[term];
        self.members[start..end]
            .iter_mut()
            .fold(Pos::MAX, |least, cursor| least.min(cursor.seek(pos)))
    }
}

/// Bitmaps of positions by label, type and GPU model, with the layout they refer to.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// What each position holds (its rank kept for dead positions, so the layout stays
    /// sorted).
    entries: Vec<Entry>,
    /// The position of each slot, `NONE` for a slot not in the index.
    positions: Vec<Pos>,
    /// Positions below this are in rank order.
    sorted: usize,
    /// Every `FENCE_EVERY`th rank of the layout, to search it touching few cache lines.
    fences: Vec<Rank>,
    /// Positions whose resource left since the last layout.
    dead: usize,
    terms: Terms,
    live: Bitmap,
    free: Bitmap,
}

/// What the index keeps of the resource at a position, together, so that a candidate costs
/// one read.
#[derive(Clone, Copy, Debug)]
struct Entry {
    rank: Rank,
    /// Its slot, `NONE` once it left.
    slot: Slot,
    /// Whether its GPUs are not all alike.
    mixed: bool,
}

/// The bitmaps of the terms a request can name.
#[derive(Debug, Default)]
struct Terms {
    labels: FxMap<String, Bitmap>,
    kinds: FxMap<String, Bitmap>,
    /// By GPU model in lower case: the resources with at least one GPU of that model.
    gpu_models: FxMap<String, Bitmap>,
    /// By GPU memory in GB: the resources with at least one GPU of that much memory.
    gpu_memory: FxMap<u64, Bitmap>,
}

/// Adds `pos` to the bitmap of `key` in `map` (creating it), or takes it out (dropping the
/// bitmap once empty).
fn mark<K, Q>(map: &mut FxMap<K, Bitmap>, key: &Q, pos: Pos, add: bool)
where
    K: Borrow<Q> + Hash + Eq,
    Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
{
    match map.get_mut(key) {
        Some(bitmap) if add => {
            bitmap.insert(pos);
        }
        Some(bitmap) => {
            bitmap.remove(pos);
            if bitmap.is_empty() {
                map.remove(key);
            }
        }
        None if add => {
            map.entry(key.to_owned()).or_default().insert(pos);
        }
        None => {}
    }
}

/// A window with every position from `offset` on.
fn from_offset(offset: u32) -> Window {
    let mut w = [!0u64; crate::bitmap::WINDOW_WORDS];
    let first = offset as usize / 64;
    w[..first].fill(0);
    w[first] = !0 << (offset % 64);
    w
}

/// The first position at or after `offset` set in `w`.
fn next_set(w: &Window, offset: u32) -> Option<u32> {
    let mut i = offset as usize / 64;
    let mut word = *w.get(i)? & (!0 << (offset % 64));
    loop {
        if word != 0 {
            return Some(i as u32 * 64 + word.trailing_zeros());
        }
        i += 1;
        word = *w.get(i)?;
    }
}

/// The bitmaps in `map` whose key passes `keep` (a union), unless the map is too large to
/// look through (`None`: no term).
fn union_where<K>(
    map: &FxMap<K, Bitmap>,
    keep: impl Fn(&K) -> bool,
) -> Option<impl Iterator<Item = &Bitmap>> {
    (map.len() <= UNION_MAX).then(move || {
        map.iter()
            .filter(move |(k, _)| keep(k))
            .map(|(_, bitmap)| bitmap)
    })
}

impl Terms {
    /// Adds `pos` to (or with `add` false, takes it out of) the bitmap of every term `spec`
    /// carries: its labels, its type, its GPUs' models and memory sizes.
    fn mark(&mut self, spec: &ResourceSpec, pos: Pos, add: bool) {
        for label in &spec.labels {
            mark(&mut self.labels, label.as_str(), pos, add);
        }
        mark(&mut self.kinds, spec.kind.as_str(), pos, add);
        // A GPU like the one before it (a resource's GPUs are often all alike) has nothing to
        // add.
        for (i, gpu) in spec.gpu.iter().enumerate() {
            if i > 0 && spec.gpu[i - 1] == *gpu {
                continue;
            }
            mark(
                &mut self.gpu_models,
                gpu.label.to_lowercase().as_str(),
                pos,
                add,
            );
            mark(&mut self.gpu_memory, &gpu.memory_gb, pos, add);
        }
    }

    /// Every bitmap.
    fn bitmaps_mut(&mut self) -> impl Iterator<Item = &mut Bitmap> {
        let Terms {
            labels,
            kinds,
            gpu_models,
            gpu_memory,
        } = self;
        labels
            .values_mut()
            .chain(kinds.values_mut())
            .chain(gpu_models.values_mut())
            .chain(gpu_memory.values_mut())
    }
}

impl Index {
    /// Indexes a resource (not yet free) at the end of the tail.
    pub fn add(&mut self, slot: Slot, spec: &ResourceSpec, seq: u64) {
        let pos = self.entries.len() as Pos;
        self.entries.push(Entry {
            rank: Rank::of(spec, seq),
            slot,
            mixed: spec.gpu.windows(2).any(|pair| pair[0] != pair[1]),
        });
        let i = slot as usize;
        if self.positions.len() <= i {
            self.positions.resize(i + 1, NONE);
        }
        self.positions[i] = pos;
        self.live.insert(pos);
        self.terms.mark(spec, pos, true);
    }

    /// Drops a resource, indexed with `spec`, from the index.
    pub fn remove(&mut self, slot: Slot, spec: &ResourceSpec) {
        let pos = std::mem::replace(&mut self.positions[slot as usize], NONE);
        self.entries[pos as usize].slot = NONE;
        self.live.remove(pos);
        self.free.remove(pos);
        self.dead += 1;
        self.terms.mark(spec, pos, false);
        if self.dead > TAIL_MIN && self.dead > self.live.len() as usize {
            self.relayout();
        }
    }

    /// Marks a resource free (placeable) or not.
    pub fn set_free(&mut self, slot: Slot, free: bool) {
        let pos = self.positions[slot as usize];
        if free {
            self.free.insert(pos);
        } else {
            self.free.remove(pos);
        }
    }

    /// The free resources matching `c` (per the index and `exact`), best fit first, at most `limit`.
    ///
    /// `exact(slot, gpus_known)` has the last word on each resource the index lets through;
    /// `gpus_known` says the index has found its GPUs to meet the per-GPU needs already.
    pub fn best(&mut self, c: &Criteria, limit: usize, exact: impl Exact) -> Vec<Slot> {
        self.keep_tail_short();
        let gpus = self.gpus_known(c);
        // Positions, which become the slots in place at the end (both `u32`).
        let mut found: Vec<Pos> = Vec::new();
        let (sorted, end) = (self.sorted as Pos, self.entries.len() as Pos);
        let mut in_order = 0;
        self.join(c, Scope::Free, self.floor_pos(c), end, |pos| {
            let Entry { rank, slot, mixed } = self.entries[pos as usize];
            let checked = rank.check(c);
            if checked.is_ok() && exact(slot, gpus && !mixed) {
                found.push(pos);
            }
            if pos >= sorted {
                return Step::Next;
            }
            // In the layout, the first matches found are the best: skip to the tail once
            // there are enough, and past ranks that cannot pass the numeric needs.
            in_order = found.len();
            match checked {
                Ok(()) if found.len() >= limit => Step::SkipTo(sorted),
                Ok(()) => Step::Next,
                Err(next) => Step::SkipTo(self.lower_bound_after(pos, &next)),
            }
        });
        if found.len() > in_order {
            found.sort_unstable_by_key(|&pos| self.entries[pos as usize].rank);
        }
        found.truncate(limit);
        found
            .into_iter()
            .map(|pos| self.entries[pos as usize].slot)
            .collect()
    }

    /// Calls `visit` with every resource in `scope` matching `c` (per the index and `exact`),
    /// in no particular order.
    pub fn each(
        &mut self,
        c: &Criteria,
        scope: Scope,
        exact: impl Exact,
        mut visit: impl FnMut(Slot),
    ) {
        self.keep_tail_short();
        let (end, gpus) = (self.entries.len() as Pos, self.gpus_known(c));
        self.join(c, scope, self.floor_pos(c), end, |pos| {
            if let Some(slot) = self.admits(pos, c, gpus, &exact) {
                visit(slot);
            }
            Step::Next
        });
    }

    /// Every label some indexed resource carries, and every type one is of, in no order.
    pub fn terms_seen(&self) -> (impl Iterator<Item = &str>, impl Iterator<Item = &str>) {
        let labels = self.terms.labels.keys().map(String::as_str);
        (labels, self.terms.kinds.keys().map(String::as_str))
    }

    /// Whether some resource in `scope` matches `c` (per the index and `exact`): the walk
    /// stops at the first.
    pub fn any(&mut self, c: &Criteria, scope: Scope, exact: impl Exact) -> bool {
        self.keep_tail_short();
        let (end, mut found, gpus) = (self.entries.len() as Pos, false, self.gpus_known(c));
        self.join(c, scope, self.floor_pos(c), end, |pos| {
            found = self.admits(pos, c, gpus, &exact).is_some();
            if found {
                Step::SkipTo(end)
            } else {
                Step::Next
            }
        });
        found
    }

    /// The slot at `pos`, a position the join let through, if its rank meets the numeric
    /// needs of `c` and `exact` takes it (`gpus`: see [`Index::gpus_known`]).
    fn admits(&self, pos: Pos, c: &Criteria, gpus: bool, exact: &impl Exact) -> Option<Slot> {
        let Entry { rank, slot, mixed } = self.entries[pos as usize];
        (rank.check(c).is_ok() && exact(slot, gpus && !mixed)).then_some(slot)
    }

    /// Whether the join's terms and the rank check settle the per-GPU needs of `c` for a
    /// resource whose GPUs are all alike (for one with mixed GPUs, never): one that has the
    /// model asked for and one that has the memory are the same, and so are all of them,
    /// which the rank counts. Not when a term was left out as too large a union.
    fn gpus_known(&self, c: &Criteria) -> bool {
        c.gpu.as_ref().is_some_and(|g| {
            (g.label_lower.is_none() || self.terms.gpu_models.len() <= UNION_MAX)
                && (g.min_memory_gb == 0 || self.terms.gpu_memory.len() <= UNION_MAX)
        })
    }

    /// The first position in the layout whose rank could match `c`.
    fn floor_pos(&self, c: &Criteria) -> Pos {
        let floor = Rank::floor(c);
        if floor == Rank::default() {
            return 0;
        }
        self.lower_bound(&floor)
    }

    /// The first position in the layout whose rank is at least `rank`: a search of the fences,
    /// which stay in cache, then of one block of ranks.
    fn lower_bound(&self, rank: &Rank) -> Pos {
        let block = self.fences.partition_point(|r| r < rank).saturating_sub(1);
        let start = block * FENCE_EVERY;
        let end = (start + FENCE_EVERY).min(self.sorted);
        (start + self.entries[start..end].partition_point(|e| e.rank < *rank)) as Pos
    }

    /// [`Index::lower_bound`] for a `rank` above the rank at `pos` in the layout: a gallop
    /// forward from `pos`, which reads the ranks next to one just read while the answer is
    /// near (a skip is often to the next CPU or memory size), and the fences once it is not.
    fn lower_bound_after(&self, pos: Pos, rank: &Rank) -> Pos {
        let (mut below, mut step) = (pos as usize, 1);
        while below + step < self.sorted && self.entries[below + step].rank < *rank {
            below += step;
            step *= 2;
            if step > FENCE_EVERY {
                return self.lower_bound(rank);
            }
        }
        let end = (below + step).min(self.sorted);
        (below + 1 + self.entries[below + 1..end].partition_point(|e| e.rank < *rank)) as Pos
    }

    /// Calls `on`, in position order, with each position in `from..to` in `scope` that carries
    /// every required tag, the type and a GPU model asked for, and no excluded tag.
    ///
    /// A leapfrog join: each term's cursor in turn leaps to the position the others agree on,
    /// so the work follows the smallest term and the answer, not the largest bitmap.
    fn join(
        &self,
        c: &Criteria,
        scope: Scope,
        from: Pos,
        to: Pos,
        mut on: impl FnMut(Pos) -> Step,
    ) {
        if from >= to {
            return;
        }
        let base = match scope {
            Scope::Free => &self.free,
            Scope::All => &self.live,
        };
        // Sized once: a request names a few terms (the GPU unions, usually a few bitmaps).
        let terms = 4 + c.tags.len();
        let mut cursors = Cursors {
            members: Vec::with_capacity(terms + 8),
            terms: Vec::with_capacity(terms),
        };
        cursors.add([base], from);
        for tag in &c.tags {
            let Some(bitmap) = self.terms.labels.get(tag.as_str()) else {
                return;
            };
            cursors.add([bitmap], from);
        }
        if let Some(kind) = &c.kind {
            let Some(bitmap) = self.terms.kinds.get(kind.as_str()) else {
                return;
            };
            cursors.add([bitmap], from);
        }
        if let Some(models) = self.gpu_models_of(c) {
            if !cursors.add(models, from) {
                return;
            }
        }
        if let Some(sizes) = self.gpu_memory_of(c) {
            if !cursors.add(sizes, from) {
                return;
            }
        }
        cursors.smallest_first();
        let mut excluded: Vec<Cursor> = c
            .exclude_tags
            .iter()
            .filter_map(|t| self.terms.labels.get(t.as_str()))
            .map(|b| Cursor::new(b, from))
            .collect();
        let (n, mut pos) = (cursors.terms.len(), from);
        loop {
            // Every term leaps to its next position from the farthest so far: none of them
            // has one before where the last lands.
            let at = (0..n).fold(pos, |at, t| cursors.seek(t, at));
            if at >= to {
                return;
            }
            // Then the positions they all share in the rest of its window, a window of bits
            // at a time, each visited in turn.
            let block = at & !(WINDOW - 1);
            let mut common = from_offset(at - block);
            if (0..n).all(|t| cursors.narrow(t, block, &mut common)) {
                for cursor in &mut excluded {
                    let mut out = Window::default();
                    cursor.window(block, &mut out);
                    common.iter_mut().zip(out).for_each(|(c, o)| *c &= !o);
                }
            }
            pos = block + WINDOW;
            let mut offset = at - block;
            while let Some(o) = next_set(&common, offset) {
                let p = block + o;
                if p >= to {
                    return;
                }
                let next = match on(p) {
                    Step::Next => p + 1,
                    Step::SkipTo(next) => next.max(p + 1),
                };
                if next >= pos {
                    pos = next;
                    break;
                }
                offset = next - block;
            }
        }
    }

    /// The bitmaps of the GPU models whose name contains the one asked for, if any is.
    fn gpu_models_of<'s>(&'s self, c: &'s Criteria) -> Option<impl Iterator<Item = &'s Bitmap>> {
        let want = c.gpu.as_ref()?.label_lower.as_deref()?;
        union_where(&self.terms.gpu_models, move |model| model.contains(want))
    }

    /// The bitmaps of the GPU memory sizes at or above the per-GPU floor, if there is one.
    fn gpu_memory_of(&self, c: &Criteria) -> Option<impl Iterator<Item = &Bitmap> + '_> {
        let floor = c.gpu.as_ref()?.min_memory_gb;
        (floor > 0)
            .then(move || union_where(&self.terms.gpu_memory, move |&gb| gb >= floor))
            .flatten()
    }

    /// Lays the index out again when its unsorted tail is more than a small part of it.
    fn keep_tail_short(&mut self) {
        let tail = self.entries.len() - self.sorted;
        if tail > TAIL_MIN.max(self.sorted / 32) {
            self.relayout();
        }
    }

    /// Puts every live resource in rank order at positions `0..n` and remaps the bitmaps.
    fn relayout(&mut self) {
        // In place: the live entries keep their order, the laid-out ones (in rank order
        // already) first, so only the tail needs sorting; then a stable sort merges the two
        // runs. Ranks differ (registration order), so stability never decides.
        let live_in_tail = self.entries[self.sorted..]
            .iter()
            .filter(|e| e.slot != NONE)
            .count();
        let (before, sorted) = (self.entries.len(), self.live.len() as usize - live_in_tail);
        self.entries.retain(|e| e.slot != NONE);
        // The room that registrations grew it to is given back (a large vector shrinks in
        // place).
        self.entries.shrink_to_fit();
        self.entries[sorted..].sort_unstable_by_key(|e| e.rank);
        self.entries.sort_by_key(|e| e.rank);
        let mut moved = vec![NONE; before];
        for (new, e) in self.entries.iter().enumerate() {
            let position = &mut self.positions[e.slot as usize];
            moved[*position as usize] = new as Pos;
            *position = new as Pos;
        }
        // A bitmap with at least a member per word of the new layout is rebuilt through a
        // bitset of its new positions, which come out of it in order; a smaller one by
        // sorting them.
        let mut words = vec![0u64; self.entries.len().div_ceil(64)];
        let mut remap = |bitmap: &mut Bitmap| {
            if bitmap.len() as usize >= words.len() {
                bitmap.iter().for_each(|p| {
                    let q = moved[p as usize] as usize;
                    words[q / 64] |= 1 << (q % 64);
                });
                *bitmap = Bitmap::take_words(&mut words);
            } else {
                let mut v: Vec<Pos> = bitmap.iter().map(|p| moved[p as usize]).collect();
                v.sort_unstable();
                *bitmap = Bitmap::from_sorted(&v);
            }
        };
        self.terms.bitmaps_mut().for_each(&mut remap);
        remap(&mut self.live);
        remap(&mut self.free);
        self.sorted = self.entries.len();
        self.fences = self
            .entries
            .iter()
            .step_by(FENCE_EVERY)
            .map(|e| e.rank)
            .collect();
        self.dead = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_spec, Gpu, GpuRequirement, Requirements};

    /// splitmix64: a deterministic stream for the randomised checks.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        }
    }

    const LABELS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];
    const MODELS: [(&str, u64); 4] = [
        ("RTX 2080", 8),
        ("RTX 4090", 24),
        ("Tesla T4", 16),
        ("A100", 80),
    ];

    fn random_spec(rng: &mut Rng) -> ResourceSpec {
        let labels = LABELS
            .iter()
            .filter(|_| rng.below(3) == 0)
            .map(|l| l.to_string())
            .collect();
        // Half the resources have GPUs all alike, the others any mix.
        let alike = rng.below(2) == 0;
        let first = rng.below(4) as usize;
        let gpu = (0..[0, 0, 1, 2, 4][rng.below(5) as usize])
            .map(|_| {
                let (label, memory_gb) = MODELS[if alike { first } else { rng.below(4) as usize }];
                Gpu {
                    label: label.into(),
                    memory_gb,
                }
            })
            .collect();
        ResourceSpec {
            inventory_id: None,
            labels,
            cpu_count: 1 + rng.below(16),
            memory_gb: 1 + rng.below(8) * 8,
            gpu,
            kind: ["VM", "device"][rng.below(2) as usize].into(),
            connection: None,
        }
    }

    fn random_criteria(rng: &mut Rng) -> Criteria {
        let mut r = Requirements::for_user("u");
        r.tags = (0..rng.below(3))
            .map(|_| LABELS[rng.below(8) as usize].to_string())
            .collect();
        if rng.below(4) == 0 {
            r.exclude_tags = vec![LABELS[rng.below(8) as usize].to_string()];
        }
        if rng.below(4) == 0 {
            r.kind = Some(["VM", "device", "server"][rng.below(3) as usize].into());
        }
        r.min_cpu_count = (rng.below(2) == 0).then(|| rng.below(16));
        r.min_memory_gb = (rng.below(2) == 0).then(|| rng.below(64));
        if rng.below(2) == 0 {
            r.gpu = Some(GpuRequirement {
                label: (rng.below(2) == 0)
                    .then(|| ["rtx", "4090", "t4", "A100", "x"][rng.below(5) as usize].into()),
                min_memory_gb: [0, 8, 16, 24][rng.below(4) as usize],
                count: 1 + rng.below(3) as u32,
            });
        }
        Criteria::of(&r)
    }

    /// The index beside the plain truth: every resource with its spec, rank and freedom.
    struct Lab {
        index: Index,
        resources: Vec<Option<(ResourceSpec, Rank, bool)>>,
        seq: u64,
    }

    impl Lab {
        fn add(&mut self, rng: &mut Rng) {
            let spec = random_spec(rng);
            self.seq += 1;
            let slot = match self.resources.iter().position(Option::is_none) {
                Some(slot) => slot,
                None => {
                    self.resources.push(None);
                    self.resources.len() - 1
                }
            };
            self.index.add(slot as Slot, &spec, self.seq);
            self.resources[slot] = Some((spec.clone(), Rank::of(&spec, self.seq), false));
        }

        fn live_slots(&self) -> Vec<usize> {
            (0..self.resources.len())
                .filter(|&s| self.resources[s].is_some())
                .collect()
        }

        fn expected(&self, c: &Criteria, free_only: bool) -> Vec<Slot> {
            let mut v: Vec<(Rank, Slot)> = self
                .resources
                .iter()
                .enumerate()
                .filter_map(|(s, r)| r.as_ref().map(|r| (s, r)))
                .filter(|(_, (spec, _, free))| (*free || !free_only) && c.matches(spec))
                .map(|(s, (_, rank, _))| (*rank, s as Slot))
                .collect();
            v.sort_unstable();
            v.into_iter().map(|(_, s)| s).collect()
        }

        fn check(&mut self, rng: &mut Rng) {
            let c = random_criteria(rng);
            let specs: Vec<Option<ResourceSpec>> = self
                .resources
                .iter()
                .map(|r| r.as_ref().map(|r| r.0.clone()))
                .collect();
            // What the index knows is taken on trust, so a wrong `gpus_known` shows.
            let exact = |slot: Slot, known: bool| {
                known || c.gpus_match(&specs[slot as usize].as_ref().expect("live").gpu)
            };
            let limit = 1 + rng.below(6) as usize;
            let want = self.expected(&c, true);
            let got = self.index.best(&c, limit, exact);
            assert_eq!(got, want[..want.len().min(limit)], "{c:?}");
            let mut all = Vec::new();
            self.index.each(&c, Scope::All, exact, |s| all.push(s));
            all.sort_unstable();
            let mut want_all = self.expected(&c, false);
            want_all.sort_unstable();
            assert_eq!(all, want_all, "{c:?}");
            let any = self.index.any(&c, Scope::All, exact);
            assert_eq!(any, !want_all.is_empty(), "any {c:?}");
            let any_free = self.index.any(&c, Scope::Free, exact);
            assert_eq!(any_free, !want.is_empty(), "any free {c:?}");
        }
    }

    #[test]
    fn best_each_and_any_agree_with_a_plain_scan_through_churn_and_relayouts() {
        let mut rng = Rng(7);
        let mut lab = Lab {
            index: Index::default(),
            resources: Vec::new(),
            seq: 0,
        };
        for step in 0..6_000 {
            match rng.below(10) {
                0..=3 => lab.add(&mut rng),
                4 => {
                    let live = lab.live_slots();
                    if let Some(&slot) = live.get(rng.below(live.len().max(1) as u64) as usize) {
                        let (spec, _, _) = lab.resources[slot].take().expect("live");
                        lab.index.remove(slot as Slot, &spec);
                    }
                }
                5..=7 => {
                    let live = lab.live_slots();
                    if let Some(&slot) = live.get(rng.below(live.len().max(1) as u64) as usize) {
                        let r = lab.resources[slot].as_mut().expect("live");
                        r.2 = !r.2;
                        lab.index.set_free(slot as Slot, r.2);
                    }
                }
                _ => lab.check(&mut rng),
            }
            if step % 1_000 == 999 {
                assert!(lab.index.sorted > 0, "the index was laid out by now");
            }
        }
    }

    #[test]
    fn rank_orders_by_gpu_memory_then_count_then_cpu_then_memory() {
        let spec = |cpu, mem, gpus: &[u64]| {
            let gpus: Vec<(&str, u64)> = gpus.iter().map(|&m| ("g", m)).collect();
            test_spec(&[], cpu, mem, &gpus, "")
        };
        let cpu_only = Rank::of(&spec(64, 512, &[]), 9);
        let small_gpu = Rank::of(&spec(64, 256, &[8]), 2);
        let big_gpu = Rank::of(&spec(4, 8, &[24]), 1);
        assert!(cpu_only < small_gpu && small_gpu < big_gpu);
        assert!(Rank::of(&spec(4, 8, &[16]), 3) < Rank::of(&spec(4, 8, &[8, 8]), 3));
        assert!(Rank::of(&spec(4, 8, &[]), 3) < Rank::of(&spec(4, 8, &[]), 4));
    }
}
