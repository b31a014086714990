//! Registered resources, their agents, and the index that matches requests against them.

use crate::criteria::{Criteria, ShapeKeys};
use crate::error::{Error, Result};
use crate::hash::FxMap;
use crate::ids::derive_inventory_id;
use crate::index::{Exact, Index, Scope};
use crate::model::{Connection, ResourceSpec};
use crate::time::Timestamp;
use std::collections::{btree_map, BTreeMap, BTreeSet, VecDeque};
use std::iter::Peekable;
use std::sync::Arc;
use uuid::Uuid;

pub(crate) use crate::index::Slot;

/// A registered resource and where it stands.
#[derive(Clone, Debug)]
pub(crate) struct Resource {
    pub id: Uuid,
    pub agent_id: Uuid,
    /// Registration order; the tie-breaker between equally good resources.
    pub seq: u64,
    /// What the agent registered, with `inventory_id` filled in; shared with the usage records
    /// of the allocations that held it (a new spec is a new `Arc`).
    pub spec: Arc<ResourceSpec>,
    /// The spec's static connection, at hand: placing a request reads it without reading
    /// the spec.
    pub connection: Option<Arc<Connection>>,
    pub online: bool,
    /// The allocation holding it (provisioning, ready, or being released).
    pub occupant: Option<Uuid>,
    /// Waiting for the agent to acknowledge a release of `occupant`.
    pub releasing: bool,
    /// That release cleans up after an abandoned provision (unanswered in time, or its agent
    /// went away): `occupant` did not end, it waits again or holds another resource.
    pub abandoned: bool,
    /// When an unacknowledged release gives up (none while the agent is offline).
    pub release_deadline: Option<Timestamp>,
    /// Why it is in error. Boxed (16 bytes, not a `String`'s 24), as is `maintenance`: that
    /// wins back 16 of the 24 bytes that `spec`'s `Arc` costs a resource.
    pub error: Option<Box<str>>,
    pub maintenance: Option<Box<str>>,
    /// Dropped from its agent's list while held: removed once released.
    pub retiring: bool,
    /// The lease end of a ready occupant.
    lease: Option<Timestamp>,
    in_free: bool,
}

impl Resource {
    /// Whether a new allocation may be placed here.
    pub fn placeable(&self) -> bool {
        self.online
            && self.occupant.is_none()
            && self.error.is_none()
            && self.maintenance.is_none()
            && !self.retiring
    }
}

/// An agent: whether its socket is up, and its resources in its registration order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Agent {
    pub online: bool,
    pub slots: Vec<Slot>,
}

/// What a registration changed.
#[derive(Debug, Default)]
pub(crate) struct Registered {
    /// The ids, in the order the resources were sent.
    pub ids: Vec<Uuid>,
    /// Held resources that left the list; they go when released.
    pub retired: Vec<Slot>,
}

/// The resources that are not on an agent in `agents`, for [`Inventory::candidates`].
pub(crate) fn off(agents: &[Uuid]) -> impl Fn(&Resource) -> bool + '_ {
    move |r| agents.is_empty() || !agents.contains(&r.agent_id)
}

/// Slots per chunk of the slot table.
const CHUNK_SLOTS: usize = 1024;

/// The slot table, in chunks of `CHUNK_SLOTS`: growing it never copies the resources, and at
/// most one chunk has unused room (a doubling vector may leave almost half of itself unused).
#[derive(Debug, Default)]
struct SlotTable {
    chunks: Vec<Vec<Option<Resource>>>,
    len: usize,
}

impl SlotTable {
    fn get(&self, slot: Slot) -> &Option<Resource> {
        let i = slot as usize;
        &self.chunks[i / CHUNK_SLOTS][i % CHUNK_SLOTS]
    }

    fn get_mut(&mut self, slot: Slot) -> &mut Option<Resource> {
        let i = slot as usize;
        &mut self.chunks[i / CHUNK_SLOTS][i % CHUNK_SLOTS]
    }

    /// The resource in `slot`, which must be filled.
    fn live(&self, slot: Slot) -> &Resource {
        self.get(slot)
            .as_ref()
            .expect("slot refers to a live resource")
    }

    /// Appends a resource in a new slot.
    fn push(&mut self, resource: Resource) -> Slot {
        if self.len % CHUNK_SLOTS == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK_SLOTS));
        }
        let chunk = self.chunks.last_mut().expect("the last chunk has room");
        chunk.push(Some(resource));
        self.len += 1;
        (self.len - 1) as Slot
    }
}

/// Slots in registration (`seq`) order. A registration's seqs only grow, so its resources are
/// appended to a log (a push, where a B-tree insert cost a tenth of a registration); a
/// resource added below the log's last seq (restoring a snapshot) waits in a side map.
#[derive(Debug, Default)]
struct SeqOrder {
    /// By seq, ascending; `None` where the resource left since the log was last compacted.
    log: Vec<(u64, Option<Slot>)>,
    /// The `None` entries in `log`.
    dead: usize,
    /// Those added with a seq below the last in `log`.
    stragglers: BTreeMap<u64, Slot>,
}

impl SeqOrder {
    /// Adds the resource registered as `seq` (not already in).
    fn insert(&mut self, seq: u64, slot: Slot) {
        if self.log.last().is_none_or(|&(last, _)| last < seq) {
            self.log.push((seq, Some(slot)));
        } else {
            self.stragglers.insert(seq, slot);
        }
    }

    /// Removes the resource registered as `seq`.
    fn remove(&mut self, seq: u64) {
        if self.stragglers.remove(&seq).is_some() {
            return;
        }
        if let Ok(i) = self.log.binary_search_by_key(&seq, |&(s, _)| s) {
            if self.log[i].1.take().is_some() {
                self.dead += 1;
            }
        }
        // Compacted once half of it is gone, so a walk skips at most as many as it returns.
        if self.dead > self.log.len() / 2 {
            let log = self.iter().map(|(seq, slot)| (seq, Some(slot))).collect();
            self.log = log;
            self.stragglers.clear();
            self.dead = 0;
        }
    }

    /// Every (seq, slot), by seq.
    fn iter(&self) -> InOrder<'_> {
        InOrder {
            log: self.log.iter().peekable(),
            stragglers: self.stragglers.iter().peekable(),
        }
    }
}

/// The walk of a [`SeqOrder`]: its log and its stragglers, merged.
#[derive(Clone)]
struct InOrder<'a> {
    log: Peekable<std::slice::Iter<'a, (u64, Option<Slot>)>>,
    stragglers: Peekable<btree_map::Iter<'a, u64, Slot>>,
}

impl Iterator for InOrder<'_> {
    type Item = (u64, Slot);

    fn next(&mut self) -> Option<(u64, Slot)> {
        while self.log.next_if(|(_, slot)| slot.is_none()).is_some() {}
        let straggler = self.stragglers.peek().map(|(&seq, &slot)| (seq, slot));
        match (self.log.peek(), straggler) {
            (Some(&&(seq, Some(slot))), Some(s)) if seq < s.0 => {
                self.log.next();
                Some((seq, slot))
            }
            (_, Some(s)) => {
                self.stragglers.next();
                Some(s)
            }
            (Some(&&(seq, slot)), None) => {
                self.log.next();
                slot.map(|slot| (seq, slot))
            }
            (None, None) => None,
        }
    }
}

/// All resources and agents, with the indexes used by matching.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    slots: SlotTable,
    vacant: Vec<Slot>,
    by_id: FxMap<Uuid, Slot>,
    by_seq: SeqOrder,
    index: Index,
    /// By id.
    agents: FxMap<Uuid, Agent>,
    /// Grows whenever a resource is added, removed or matches differently.
    generation: u64,
}

impl Inventory {
    /// The resource in `slot`. Slots handed out by this inventory are always filled.
    pub fn get(&self, slot: Slot) -> &Resource {
        self.slots.live(slot)
    }

    /// Whether `slot` holds a resource (one removed while its agent's list is walked does not).
    pub fn is_live(&self, slot: Slot) -> bool {
        self.slots.get(slot).is_some()
    }

    /// The resource in `slot`, mutably. Callers must [`Inventory::settle`] after changing state.
    pub fn get_mut(&mut self, slot: Slot) -> &mut Resource {
        self.slots
            .get_mut(slot)
            .as_mut()
            .expect("slot refers to a live resource")
    }

    /// The slot of a resource id.
    pub fn slot_of(&self, id: &Uuid) -> Option<Slot> {
        self.by_id.get(id).copied()
    }

    /// Every resource in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Resource> + Clone + '_ {
        self.slots_in_order().map(|s| self.get(s))
    }

    /// Every label and every type of the registered resources.
    pub fn known(&self) -> crate::explain::Known<'_> {
        let (labels, kinds) = self.index.terms_seen();
        crate::explain::Known {
            labels: labels.collect(),
            kinds: kinds.collect(),
        }
    }

    /// Every resource, in no particular order: cheaper than [`Inventory::iter`] (no walk of
    /// the registration order), for what does not depend on the order.
    pub fn iter_unordered(&self) -> impl Iterator<Item = &Resource> + Clone + '_ {
        self.slots.chunks.iter().flatten().flatten()
    }

    /// Every resource's slot in registration order.
    pub fn slots_in_order(&self) -> impl Iterator<Item = Slot> + Clone + '_ {
        self.by_seq.iter().map(|(_, slot)| slot)
    }

    /// Number of registered resources.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// An agent, if it ever registered.
    pub fn agent(&self, id: &Uuid) -> Option<&Agent> {
        self.agents.get(id)
    }

    /// Every agent id, sorted.
    pub fn agent_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.agents.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Sets an agent's state and resource list (when restoring a snapshot).
    pub fn set_agent(&mut self, agent_id: Uuid, online: bool, slots: Vec<Slot>) {
        self.agents.insert(agent_id, Agent { online, slots });
    }

    /// Marks an agent's socket up or down; returns its slots.
    pub fn set_agent_online(&mut self, agent_id: Uuid, online: bool) -> Vec<Slot> {
        let agent = self.agents.entry(agent_id).or_default();
        agent.online = online;
        let slots = agent.slots.clone();
        for &slot in &slots {
            self.get_mut(slot).online = online;
        }
        slots
    }

    /// Recomputes whether `slot` is indexed as free; `true` if it is placeable.
    pub fn settle(&mut self, slot: Slot) -> bool {
        let r = self.get(slot);
        let (placeable, was_free) = (r.placeable(), r.in_free);
        if placeable != was_free {
            self.index.set_free(slot, placeable);
            self.get_mut(slot).in_free = placeable;
        }
        placeable
    }

    /// Records (or clears) the lease end of the ready allocation holding `slot`.
    pub fn set_lease(&mut self, slot: Slot, lease: Option<Timestamp>) {
        self.get_mut(slot).lease = lease;
    }

    /// The index's `exact` test for `criteria`: the per-GPU needs, which its bitmaps and ranks
    /// only narrow down (and nothing at all when the request has none).
    fn gpus_fit<'a>(slots: &'a SlotTable, criteria: &'a Criteria) -> impl Exact + 'a {
        let each_gpu = criteria.checks_each_gpu();
        move |slot, known| known || !each_gpu || criteria.gpus_match(&slots.live(slot).spec.gpu)
    }

    /// Free resources satisfying `criteria`, best fit first, ties by registration order; at
    /// most `limit`, only those that `keep` accepts (see [`off`]).
    pub fn candidates(
        &mut self,
        criteria: &Criteria,
        limit: usize,
        keep: impl Fn(&Resource) -> bool,
    ) -> Vec<Slot> {
        let (slots, fit) = (&self.slots, Self::gpus_fit(&self.slots, criteria));
        let exact = |slot, known| fit(slot, known) && keep(slots.live(slot));
        self.index.best(criteria, limit, exact)
    }

    /// How many registered resources could ever satisfy `criteria`, and the earliest lease end among them.
    pub fn outlook(&mut self, criteria: &Criteria) -> (u64, Option<Timestamp>) {
        let (slots, exact) = (&self.slots, Self::gpus_fit(&self.slots, criteria));
        let (mut count, mut eta) = (0u64, None::<Timestamp>);
        self.index.each(criteria, Scope::All, exact, |slot| {
            count += 1;
            eta = eta.into_iter().chain(slots.live(slot).lease).min();
        });
        (count, eta)
    }

    /// A number that grows whenever a resource is added, removed or matches differently:
    /// what depends only on which resources are registered holds while it stays the same.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the registered resources (other than retiring ones) could ever serve `count`
    /// resources satisfying `criteria` at once: those with a static connection, and one per
    /// agent of those that need provisioning (an agent's answers name only the allocation).
    pub fn could_serve(&mut self, criteria: &Criteria, count: u32) -> bool {
        let (slots, exact) = (&self.slots, Self::gpus_fit(&self.slots, criteria));
        let (mut statics, mut agents) = (0usize, BTreeSet::new());
        self.index.each(criteria, Scope::All, exact, |slot| {
            let r = slots.live(slot);
            if r.retiring {
                return;
            }
            if r.connection.is_some() {
                statics += 1;
            } else {
                agents.insert(r.agent_id);
            }
        });
        statics + agents.len() >= count as usize
    }

    /// Every registered resource satisfying `criteria`, in no particular order.
    pub fn matching(&mut self, criteria: &Criteria) -> Vec<Slot> {
        let exact = Self::gpus_fit(&self.slots, criteria);
        let mut found = Vec::new();
        self.index
            .each(criteria, Scope::All, exact, |slot| found.push(slot));
        found
    }

    /// Whether any registered resource could ever satisfy `criteria` (cheaper than
    /// [`Inventory::outlook`]: it stops at the first).
    pub fn could_satisfy(&mut self, criteria: &Criteria) -> bool {
        let exact = Self::gpus_fit(&self.slots, criteria);
        self.index.any(criteria, Scope::All, exact)
    }

    /// Resources carrying every tag in `tags` (free ones only if `free_only`), in registration order.
    pub fn with_tags(&mut self, tags: &[String], free_only: bool) -> Vec<Slot> {
        let criteria = Criteria {
            tags: tags.to_vec(),
            ..Criteria::default()
        };
        let scope = if free_only { Scope::Free } else { Scope::All };
        let mut found: Vec<(u64, Slot)> = Vec::new();
        let slots = &self.slots;
        self.index.each(
            &criteria,
            scope,
            |_, _| true,
            |slot| found.push((slots.live(slot).seq, slot)),
        );
        found.sort_unstable();
        found.into_iter().map(|(_, slot)| slot).collect()
    }

    /// Whether the resource in `slot` satisfies `criteria`.
    pub fn satisfies(&self, slot: Slot, criteria: &Criteria) -> bool {
        criteria.matches(&self.get(slot).spec)
    }

    /// Replaces an agent's resource list, keeping ids stable; nothing changes on error.
    pub fn register(
        &mut self,
        agent_id: Uuid,
        specs: Vec<ResourceSpec>,
        next_seq: &mut u64,
    ) -> Result<Registered> {
        let plan = self.plan_registration(agent_id, &specs)?;
        // Resources may retire or come back from retiring.
        self.generation += 1;
        let old: Vec<Slot> = self
            .agents
            .get(&agent_id)
            .map(|a| a.slots.clone())
            .unwrap_or_default();
        let mut slots = Vec::with_capacity(specs.len());
        let mut out = Registered {
            ids: Vec::with_capacity(specs.len()),
            retired: Vec::new(),
        };
        for (mut spec, (id, existing)) in specs.into_iter().zip(plan) {
            spec.shrink_to_fit();
            let slot = match existing {
                Some(slot) => {
                    self.respec(slot, spec);
                    slot
                }
                None => {
                    *next_seq += 1;
                    self.add(id, agent_id, *next_seq, spec)
                }
            };
            out.ids.push(id);
            slots.push(slot);
        }
        let kept: BTreeSet<Slot> = slots.iter().copied().collect();
        for slot in old {
            if kept.contains(&slot) {
                continue;
            }
            if self.get(slot).occupant.is_some() {
                self.get_mut(slot).retiring = true;
                self.settle(slot);
                out.retired.push(slot);
                slots.push(slot);
            } else {
                self.remove(slot);
            }
        }
        let online = self.agents.get(&agent_id).is_some_and(|a| a.online);
        for &slot in &slots {
            self.get_mut(slot).online = online;
        }
        self.agents.entry(agent_id).or_default().slots = slots;
        Ok(out)
    }

    /// Chooses an id (and an existing slot to reuse, if any) for each spec, or refuses the list.
    fn plan_registration(
        &self,
        agent_id: Uuid,
        specs: &[ResourceSpec],
    ) -> Result<Vec<(Uuid, Option<Slot>)>> {
        let mine: &[Slot] = self.agents.get(&agent_id).map_or(&[], |a| &a.slots);
        let mut claimed: BTreeSet<Slot> = BTreeSet::new();
        let mut taken: BTreeSet<Uuid> = BTreeSet::new();
        // Filled in for the specs with an inventory id first, then for the others.
        let mut plan: Vec<(Uuid, Option<Slot>)> = vec![(Uuid::nil(), None); specs.len()];
        for (i, spec) in specs.iter().enumerate() {
            let Some(id) = spec.inventory_id else {
                continue;
            };
            if !taken.insert(id) {
                return Err(Error::invalid(format!(
                    "resources[{i}].inventory_id {id} appears twice"
                )));
            }
            let existing = self.slot_of(&id);
            if let Some(slot) = existing {
                if self.get(slot).agent_id != agent_id {
                    return Err(Error::Conflict(format!(
                        "resources[{i}].inventory_id {id} belongs to another agent"
                    )));
                }
                claimed.insert(slot);
            }
            plan[i] = (id, existing);
        }
        let mut shapes = ShapeKeys::default();
        // The agent's unclaimed resources by shape, in its list order: reused first come, first served.
        let mut reusable: FxMap<String, VecDeque<Slot>> = FxMap::default();
        for &slot in mine.iter().filter(|s| !claimed.contains(s)) {
            let mut key = String::new();
            shapes.push(&mut key, &self.get(slot).spec);
            reusable.entry(key).or_default().push_back(slot);
        }
        // The keys of the specs without an id, one after another in one buffer (`ends[i]` is
        // where spec i's ends), rather than a string each.
        let room = specs.iter().map(ShapeKeys::len_estimate).sum();
        let (mut keys, mut ends) = (String::with_capacity(room), Vec::with_capacity(specs.len()));
        for spec in specs {
            if spec.inventory_id.is_none() {
                shapes.push(&mut keys, spec);
            }
            ends.push(keys.len());
        }
        let mut occurrences: FxMap<&str, u32> =
            FxMap::with_capacity_and_hasher(specs.len(), Default::default());
        let mut start = 0;
        for (i, spec) in specs.iter().enumerate() {
            let key = &keys[start..ends[i]];
            start = ends[i];
            if spec.inventory_id.is_some() {
                continue;
            }
            let reuse = reusable.get_mut(key).and_then(VecDeque::pop_front);
            let entry = match reuse {
                Some(slot) => (self.get(slot).id, Some(slot)),
                None => {
                    let n = occurrences.entry(key).or_insert(0);
                    let id = loop {
                        let id = derive_inventory_id(agent_id, key, *n);
                        *n += 1;
                        if !taken.contains(&id) && !self.by_id.contains_key(&id) {
                            break id;
                        }
                    };
                    (id, None)
                }
            };
            taken.insert(entry.0);
            plan[i] = entry;
        }
        Ok(plan)
    }

    /// Adds a resource (not yet in any agent's list).
    pub fn add(&mut self, id: Uuid, agent_id: Uuid, seq: u64, mut spec: ResourceSpec) -> Slot {
        spec.inventory_id = Some(id);
        let resource = Resource {
            id,
            agent_id,
            seq,
            connection: spec.connection.clone(),
            spec: Arc::new(spec),
            online: false,
            occupant: None,
            releasing: false,
            abandoned: false,
            release_deadline: None,
            error: None,
            maintenance: None,
            retiring: false,
            lease: None,
            in_free: false,
        };
        let slot = match self.vacant.pop() {
            Some(slot) => {
                *self.slots.get_mut(slot) = Some(resource);
                slot
            }
            None => self.slots.push(resource),
        };
        self.index.add(slot, &self.slots.live(slot).spec, seq);
        self.generation += 1;
        self.by_id.insert(id, slot);
        self.by_seq.insert(seq, slot);
        slot
    }

    /// Gives an existing resource a new spec, indexing it anew if what matching reads changed.
    fn respec(&mut self, slot: Slot, mut spec: ResourceSpec) {
        let r = self.get(slot);
        spec.inventory_id = Some(r.id);
        let old = &r.spec;
        let same = old.labels == spec.labels
            && old.kind == spec.kind
            && old.cpu_count == spec.cpu_count
            && old.memory_gb == spec.memory_gb
            && old.gpu == spec.gpu;
        let seq = r.seq;
        if !same {
            self.index.remove(slot, &self.slots.live(slot).spec);
            self.index.add(slot, &spec, seq);
            self.get_mut(slot).in_free = false;
            self.generation += 1;
        }
        let r = self.get_mut(slot);
        r.retiring = false;
        r.connection = spec.connection.clone();
        r.spec = Arc::new(spec);
        self.settle(slot);
    }

    /// Removes a resource entirely.
    pub fn remove(&mut self, slot: Slot) {
        self.set_lease(slot, None);
        self.get_mut(slot).online = false;
        self.get_mut(slot).occupant = None;
        self.settle(slot);
        let r = self.slots.get_mut(slot).take().expect("live slot");
        self.by_id.remove(&r.id);
        self.by_seq.remove(r.seq);
        if let Some(agent) = self.agents.get_mut(&r.agent_id) {
            agent.slots.retain(|&s| s != slot);
        }
        self.index.remove(slot, &r.spec);
        self.generation += 1;
        self.vacant.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_spec as spec, Gpu};

    /// The shape key as serde_json writes it, independent of [`ShapeKeys`].
    fn json_key(s: &ResourceSpec) -> String {
        let mut labels: Vec<&str> = s.labels.iter().map(String::as_str).collect();
        labels.sort_unstable();
        labels.dedup();
        let mut gpus: Vec<&Gpu> = s.gpu.iter().collect();
        gpus.sort_unstable();
        serde_json::to_string(&(labels, &s.kind, s.cpu_count, s.memory_gb, gpus))
            .expect("serialises")
    }

    #[test]
    fn seq_order_walks_what_a_btree_map_would() {
        let (mut order, mut model) = (SeqOrder::default(), BTreeMap::new());
        let check = |order: &SeqOrder, model: &BTreeMap<u64, Slot>| {
            let want: Vec<(u64, Slot)> = model.iter().map(|(&k, &v)| (k, v)).collect();
            assert_eq!(order.iter().collect::<Vec<_>>(), want);
        };
        // A deterministic mix of appends, adds below the top and removals, then removals
        // until nothing is left (which compacts the log along the way).
        let mut x: u64 = 1;
        let mut next = move |below: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) % below
        };
        let mut top = 0;
        for step in 0..6000u32 {
            let removing = step >= 3000 || next(4) == 0;
            if removing {
                if let Some(&seq) = model.keys().nth(next(model.len() as u64 + 1) as usize) {
                    order.remove(seq);
                    model.remove(&seq);
                }
            } else {
                let seq = if next(3) == 0 {
                    next(top + 1)
                } else {
                    top += 1 + next(3);
                    top
                };
                if let btree_map::Entry::Vacant(entry) = model.entry(seq) {
                    entry.insert(step);
                    order.insert(seq, step);
                }
            }
            if step % 50 == 0 {
                check(&order, &model);
            }
        }
        check(&order, &model);
    }

    #[test]
    fn fresh_ids_are_derived_from_shape_and_occurrence_in_list_order() {
        let agent = Uuid::from_u128(7);
        let given = Uuid::from_u128(99);
        let a = spec(&["b", "a", "b"], 4, 8, &[("T4", 16), ("A100", 80)], "VM");
        let a_again = spec(&["a", "b"], 4, 8, &[("A100", 80), ("T4", 16)], "VM");
        let mut with_id = a.clone();
        with_id.inventory_id = Some(given);
        let b = spec(
            &["project-12", "project-1", "feature-3", "é"],
            4,
            8,
            &[],
            "bare\"metal",
        );
        let specs = vec![a.clone(), b.clone(), with_id, a_again, a.clone(), b.clone()];
        let mut seq = 0;
        let mut inv = Inventory::default();
        let ids = inv.register(agent, specs, &mut seq).expect("registers").ids;
        let derive = |s: &ResourceSpec, n| derive_inventory_id(agent, &json_key(s), n);
        let want = [
            derive(&a, 0),
            derive(&b, 0),
            given,
            derive(&a, 1),
            derive(&a, 2),
            derive(&b, 1),
        ];
        assert_eq!(ids, want);

        // Again: the unclaimed resources are reused by shape in list order (the one with an id
        // included), and a shape with none left derives past the ids already taken.
        let c = spec(&["c"], 1, 1, &[], "VM");
        let again = vec![b.clone(), a.clone(), c.clone(), b.clone(), b.clone()];
        let ids = inv.register(agent, again, &mut seq).expect("registers").ids;
        let want = [want[1], want[0], derive(&c, 0), want[5], derive(&b, 2)];
        assert_eq!(ids, want);
    }
}
