//! Registered resources, their agents, and the shape index that makes matching cheap.

use crate::error::{Error, Result};
use crate::hash::FxMap;
use crate::ids::derive_inventory_id;
use crate::model::ResourceSpec;
use crate::shape::{Criteria, Fit, Shape};
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use uuid::Uuid;

/// Index of a resource in the slot table (internal; never shown, never breaks ties).
pub(crate) type Slot = u32;
type ShapeId = u32;

/// Most criteria whose matching shapes are remembered; past this the cache starts over.
const FIT_CACHE_MAX: usize = 4096;

/// A registered resource and where it stands.
#[derive(Clone, Debug)]
pub(crate) struct Resource {
    pub id: Uuid,
    pub agent_id: Uuid,
    /// Registration order; the tie-breaker between equally good resources.
    pub seq: u64,
    /// What the agent registered, with `inventory_id` filled in.
    pub spec: ResourceSpec,
    shape: ShapeId,
    pub online: bool,
    /// The allocation holding it (provisioning, ready, or being released).
    pub occupant: Option<Uuid>,
    /// Waiting for the agent to acknowledge a release of `occupant`.
    pub releasing: bool,
    /// When an unacknowledged release gives up (none while the agent is offline).
    pub release_deadline: Option<Timestamp>,
    pub error: Option<String>,
    pub maintenance: Option<String>,
    /// Dropped from its agent's list while held: removed once released.
    pub retiring: bool,
    /// The lease end of a ready occupant, as indexed in its shape.
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

#[derive(Clone, Debug)]
struct ShapeClass {
    shape: Shape,
    /// Placeable members by registration order.
    free: BTreeSet<(u64, Slot)>,
    /// Lease ends of members held by ready allocations.
    leases: BTreeSet<(Timestamp, u64)>,
}

/// The part of a shape's state that matching and queue reports read.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    /// Its first free member (its class's `free.first()`).
    first_free: Option<(u64, Slot)>,
    /// Its earliest lease end (its class's `leases.first()`).
    first_lease: Option<Timestamp>,
    /// How many resources have it.
    members: u32,
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

/// All resources and agents, with the indexes used by matching.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    slots: SlotTable,
    vacant: Vec<Slot>,
    by_id: FxMap<Uuid, Slot>,
    by_seq: BTreeMap<u64, Slot>,
    shapes: Vec<Option<ShapeClass>>,
    /// What matching reads of each shape, by shape id: a dense array, so that walking many
    /// shapes touches little memory.
    summaries: Vec<Summary>,
    vacant_shapes: Vec<ShapeId>,
    shape_by_key: FxMap<String, ShapeId>,
    label_index: FxMap<String, Vec<ShapeId>>,
    fit_cache: FxMap<Criteria, Arc<[(Fit, ShapeId)]>>,
    agents: FxMap<Uuid, Agent>,
}

impl Inventory {
    /// The resource in `slot`. Slots handed out by this inventory are always filled.
    pub fn get(&self, slot: Slot) -> &Resource {
        self.slots
            .get(slot)
            .as_ref()
            .expect("slot refers to a live resource")
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
    pub fn iter(&self) -> impl Iterator<Item = &Resource> + '_ {
        self.by_seq.values().map(|&s| self.get(s))
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

    /// Recomputes whether `slot` is on its shape's free list; `true` if it is placeable.
    pub fn settle(&mut self, slot: Slot) -> bool {
        let r = self.get(slot);
        let (placeable, was_free, seq, shape) = (r.placeable(), r.in_free, r.seq, r.shape);
        if placeable != was_free {
            let class = self.shape_mut(shape);
            if placeable {
                class.free.insert((seq, slot));
            } else {
                class.free.remove(&(seq, slot));
            }
            let first = class.free.first().copied();
            self.summaries[shape as usize].first_free = first;
            self.get_mut(slot).in_free = placeable;
        }
        placeable
    }

    /// Records (or clears) the lease end of the ready allocation holding `slot`.
    pub fn set_lease(&mut self, slot: Slot, lease: Option<Timestamp>) {
        let r = self.get(slot);
        let (old, seq, shape) = (r.lease, r.seq, r.shape);
        let class = self.shape_mut(shape);
        if let Some(t) = old {
            class.leases.remove(&(t, seq));
        }
        if let Some(t) = lease {
            class.leases.insert((t, seq));
        }
        let first = class.leases.first().map(|&(t, _)| t);
        self.summaries[shape as usize].first_lease = first;
        self.get_mut(slot).lease = lease;
    }

    fn shape_mut(&mut self, id: ShapeId) -> &mut ShapeClass {
        self.shapes[id as usize]
            .as_mut()
            .expect("shape id refers to a live shape")
    }

    fn shape_ref(&self, id: ShapeId) -> &ShapeClass {
        self.shapes[id as usize]
            .as_ref()
            .expect("shape id refers to a live shape")
    }

    /// Shapes satisfying `criteria`, best fit first (cached until the set of shapes changes).
    fn matching_shapes(&mut self, criteria: &Criteria) -> Arc<[(Fit, ShapeId)]> {
        if let Some(hit) = self.fit_cache.get(criteria) {
            return hit.clone();
        }
        let candidates: Vec<ShapeId> =
            match criteria.rarest_tag(|t| self.label_index.get(t).map_or(0, Vec::len)) {
                Some(tag) => self.label_index.get(tag).cloned().unwrap_or_default(),
                None => (0..self.shapes.len() as ShapeId)
                    .filter(|&s| self.shapes[s as usize].is_some())
                    .collect(),
            };
        let mut fits: Vec<(Fit, ShapeId)> = candidates
            .into_iter()
            .filter_map(|s| {
                let shape = &self.shape_ref(s).shape;
                criteria.matches(shape).then(|| (criteria.fit(shape), s))
            })
            .collect();
        fits.sort_unstable();
        let fits: Arc<[(Fit, ShapeId)]> = fits.into();
        if self.fit_cache.len() >= FIT_CACHE_MAX {
            self.fit_cache.clear();
        }
        self.fit_cache.insert(criteria.clone(), fits.clone());
        fits
    }

    /// Free resources satisfying `criteria`, best fit first, ties by registration order; at most `limit`.
    pub fn candidates(&mut self, criteria: &Criteria, limit: usize) -> Vec<Slot> {
        let fits = self.matching_shapes(criteria);
        let mut out = Vec::new();
        let mut i = 0;
        while i < fits.len() && out.len() < limit {
            // One group of equally good shapes: merge their free lists by registration order.
            let fit = fits[i].0;
            let mut group: Vec<(u64, Slot)> = Vec::new();
            while i < fits.len() && fits[i].0 == fit {
                group.extend(
                    self.shape_ref(fits[i].1)
                        .free
                        .iter()
                        .take(limit - out.len()),
                );
                i += 1;
            }
            group.sort_unstable();
            out.extend(group.into_iter().take(limit - out.len()).map(|(_, s)| s));
        }
        out
    }

    /// The best free resource for `criteria` (the first of [`Inventory::candidates`]).
    pub fn best_free(&mut self, criteria: &Criteria) -> Option<Slot> {
        let fits = self.matching_shapes(criteria);
        let mut best: Option<(Fit, u64, Slot)> = None;
        for &(fit, shape) in fits.iter() {
            if best.is_some_and(|(f, _, _)| f < fit) {
                break;
            }
            if let Some((seq, slot)) = self.summaries[shape as usize].first_free {
                if best.is_none_or(|(_, s, _)| seq < s) {
                    best = Some((fit, seq, slot));
                }
            }
        }
        best.map(|(_, _, slot)| slot)
    }

    /// How many registered resources could ever satisfy `criteria`, and the earliest lease end among them.
    pub fn outlook(&mut self, criteria: &Criteria) -> (u64, Option<Timestamp>) {
        let fits = self.matching_shapes(criteria);
        fits.iter().fold((0, None), |(n, eta), &(_, s)| {
            let summary = self.summaries[s as usize];
            let eta = match (eta, summary.first_lease) {
                (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                (a, b) => a.or(b),
            };
            (n + u64::from(summary.members), eta)
        })
    }

    /// Whether the resource in `slot` satisfies `criteria`.
    pub fn satisfies(&self, slot: Slot, criteria: &Criteria) -> bool {
        criteria.matches(&self.shape_ref(self.get(slot).shape).shape)
    }

    /// Replaces an agent's resource list, keeping ids stable; nothing changes on error.
    pub fn register(
        &mut self,
        agent_id: Uuid,
        specs: Vec<ResourceSpec>,
        next_seq: &mut u64,
    ) -> Result<Registered> {
        let plan = self.plan_registration(agent_id, &specs)?;
        let old: Vec<Slot> = self
            .agents
            .get(&agent_id)
            .map(|a| a.slots.clone())
            .unwrap_or_default();
        let mut slots = Vec::with_capacity(specs.len());
        let mut out = Registered::default();
        for (spec, (id, existing)) in specs.into_iter().zip(plan) {
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
        let mine: Vec<Slot> = self
            .agents
            .get(&agent_id)
            .map(|a| a.slots.clone())
            .unwrap_or_default();
        let mut claimed: BTreeSet<Slot> = BTreeSet::new();
        let mut taken: BTreeSet<Uuid> = BTreeSet::new();
        let mut plan: Vec<Option<(Uuid, Option<Slot>)>> = vec![None; specs.len()];
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
            plan[i] = Some((id, existing));
        }
        // The agent's unclaimed resources by shape, in its list order: reused first come, first served.
        let mut reusable: FxMap<&str, VecDeque<Slot>> = FxMap::default();
        for &slot in mine.iter().filter(|s| !claimed.contains(s)) {
            let key = self.shape_ref(self.get(slot).shape).shape.key.as_str();
            reusable.entry(key).or_default().push_back(slot);
        }
        let mut occurrences: FxMap<String, u32> = FxMap::default();
        for (i, spec) in specs.iter().enumerate() {
            if plan[i].is_some() {
                continue;
            }
            let key = Shape::of(spec).key;
            let reuse = reusable.get_mut(key.as_str()).and_then(VecDeque::pop_front);
            let entry = match reuse {
                Some(slot) => (self.get(slot).id, Some(slot)),
                None => {
                    let n = occurrences.entry(key.clone()).or_insert(0);
                    let id = loop {
                        let id = derive_inventory_id(agent_id, &key, *n);
                        *n += 1;
                        if !taken.contains(&id) && !self.by_id.contains_key(&id) {
                            break id;
                        }
                    };
                    (id, None)
                }
            };
            taken.insert(entry.0);
            plan[i] = Some(entry);
        }
        Ok(plan.into_iter().flatten().collect())
    }

    fn intern_shape(&mut self, shape: Shape) -> ShapeId {
        if let Some(&id) = self.shape_by_key.get(&shape.key) {
            return id;
        }
        let class = ShapeClass {
            shape,
            free: BTreeSet::new(),
            leases: BTreeSet::new(),
        };
        let id = match self.vacant_shapes.pop() {
            Some(id) => {
                self.shapes[id as usize] = Some(class);
                self.summaries[id as usize] = Summary::default();
                id
            }
            None => {
                self.shapes.push(Some(class));
                self.summaries.push(Summary::default());
                (self.shapes.len() - 1) as ShapeId
            }
        };
        let shape = &self.shape_ref(id).shape;
        let (key, labels) = (shape.key.clone(), shape.labels.clone());
        self.shape_by_key.insert(key, id);
        for label in labels {
            self.label_index.entry(label).or_default().push(id);
        }
        self.fit_cache.clear();
        id
    }

    fn release_shape_member(&mut self, id: ShapeId) {
        let summary = &mut self.summaries[id as usize];
        summary.members -= 1;
        if summary.members > 0 {
            return;
        }
        let class = self.shapes[id as usize].take().expect("live shape");
        self.shape_by_key.remove(&class.shape.key);
        for label in &class.shape.labels {
            if let Some(list) = self.label_index.get_mut(label) {
                list.retain(|&s| s != id);
                if list.is_empty() {
                    self.label_index.remove(label);
                }
            }
        }
        self.vacant_shapes.push(id);
        self.fit_cache.clear();
    }

    /// Adds a resource (not yet in any agent's list).
    pub fn add(&mut self, id: Uuid, agent_id: Uuid, seq: u64, mut spec: ResourceSpec) -> Slot {
        let shape = self.intern_shape(Shape::of(&spec));
        self.summaries[shape as usize].members += 1;
        spec.inventory_id = Some(id);
        let resource = Resource {
            id,
            agent_id,
            seq,
            spec,
            shape,
            online: false,
            occupant: None,
            releasing: false,
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
        self.by_id.insert(id, slot);
        self.by_seq.insert(seq, slot);
        slot
    }

    /// Gives an existing resource a new spec, moving it between shapes if needed.
    fn respec(&mut self, slot: Slot, mut spec: ResourceSpec) {
        spec.inventory_id = Some(self.get(slot).id);
        self.get_mut(slot).retiring = false;
        let new_shape = Shape::of(&spec);
        let old = self.get(slot).shape;
        if self.shape_ref(old).shape.key != new_shape.key {
            let lease = self.get(slot).lease;
            self.set_lease(slot, None);
            let was_free = self.get(slot).in_free;
            if was_free {
                let seq = self.get(slot).seq;
                let class = self.shape_mut(old);
                class.free.remove(&(seq, slot));
                let first = class.free.first().copied();
                self.summaries[old as usize].first_free = first;
                self.get_mut(slot).in_free = false;
            }
            let new = self.intern_shape(new_shape);
            self.summaries[new as usize].members += 1;
            self.get_mut(slot).shape = new;
            self.release_shape_member(old);
            self.set_lease(slot, lease);
        }
        self.get_mut(slot).spec = spec;
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
        self.by_seq.remove(&r.seq);
        if let Some(agent) = self.agents.get_mut(&r.agent_id) {
            agent.slots.retain(|&s| s != slot);
        }
        self.release_shape_member(r.shape);
        self.vacant.push(slot);
    }
}
