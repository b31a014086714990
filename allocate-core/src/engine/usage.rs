//! Usage over time: a record per allocation that was ready when it ended, kept for
//! `usage_retention_secs` (at most `usage_records_max`), in the snapshot like the rest of
//! the state, and the `GET /usage` summary over those and the allocations held now.
//!
//! A record is compact (48 bytes): the resource it held is the inventory's own `Arc` of that
//! resource's spec, shared by every record of it (and outliving the resource while a record
//! refers to it); the username and outcome are interned together; the times are inline. The
//! snapshot holds the plain [`Usage`], made from the records and back.

use super::{Allocation, Engine};
use crate::hash::FxMap;
use crate::inventory::Inventory;
use crate::model::{Gpu, ResourceSpec};
use crate::time::Timestamp;
use crate::usage::{self, Usage, UsageQuery, UsageRef, UsageRow};
use crate::view::AllocationState;
use std::collections::VecDeque;
use std::sync::Arc;
use uuid::Uuid;

/// Who held an allocation and how it ended, interned: every record of that user with that
/// outcome shares one (a user has at most one per outcome), which keeps a record at 48 bytes.
#[derive(Debug)]
struct Party {
    username: Box<str>,
    outcome: AllocationState,
}

/// The usage of one ended allocation (the fields of [`Usage`]), compact. Not `Clone`: a
/// party is counted by the records that hold it.
#[derive(Debug)]
struct UsageRecord {
    allocation_id: Uuid,
    /// The resource held: its inventory id, labels, type and GPUs as it ended.
    resource: Arc<ResourceSpec>,
    party: Arc<Party>,
    ready: Timestamp,
    ended: Timestamp,
}

// Small, since up to `usage_records_max` (200,000 by default) are kept.
const _: () = assert!(std::mem::size_of::<UsageRecord>() <= 48);

impl UsageRecord {
    /// What the summary reads of it.
    fn view(&self) -> UsageRef<'_> {
        UsageRef {
            username: &self.party.username,
            inventory_id: inventory_id(&self.resource),
            labels: &self.resource.labels,
            gpus: self.resource.gpu.len(),
            ready: self.ready,
            ended: self.ended,
        }
    }

    /// The plain record, as the snapshot holds it.
    fn to_usage(&self) -> Usage {
        Usage {
            allocation_id: self.allocation_id,
            username: self.party.username.to_string(),
            inventory_id: inventory_id(&self.resource),
            labels: self.resource.labels.clone(),
            kind: self.resource.kind.clone(),
            gpu: self.resource.gpu.iter().map(|g| g.label.clone()).collect(),
            ready: self.ready,
            ended: self.ended,
            outcome: self.party.outcome,
        }
    }
}

/// The inventory id of a spec the inventory or a restored record holds (always filled in).
fn inventory_id(spec: &ResourceSpec) -> Uuid {
    spec.inventory_id
        .expect("a registered or restored spec has its inventory_id")
}

/// Whether `spec` reads as what `usage` says its resource was.
fn describes(spec: &ResourceSpec, usage: &Usage) -> bool {
    spec.inventory_id == Some(usage.inventory_id)
        && spec.labels == usage.labels
        && spec.kind == usage.kind
        && spec.gpu.len() == usage.gpu.len()
        && spec.gpu.iter().zip(&usage.gpu).all(|(g, l)| g.label == *l)
}

/// A spec with only what a usage record reads of it, for a resource no longer registered.
fn spec_of(usage: &Usage) -> ResourceSpec {
    ResourceSpec {
        inventory_id: Some(usage.inventory_id),
        labels: usage.labels.clone(),
        cpu_count: 0,
        memory_gb: 0,
        gpu: usage
            .gpu
            .iter()
            .map(|label| Gpu {
                label: label.clone(),
                memory_gb: 0,
            })
            .collect(),
        kind: usage.kind.clone(),
        connection: None,
    }
}

/// The usage records, oldest end first, and the parties they share.
#[derive(Debug, Default)]
pub(super) struct UsageLog {
    records: VecDeque<UsageRecord>,
    /// Each username that some record carries, with its parties (one per outcome that some
    /// record carries): a party goes with its last record, a username with its last party.
    parties: FxMap<Box<str>, Vec<Arc<Party>>>,
}

impl UsageLog {
    /// The interned party of `username` and `outcome`, interned now if no record has it yet.
    fn party(&mut self, username: &str, outcome: AllocationState) -> Arc<Party> {
        let parties = match self.parties.get_mut(username) {
            Some(parties) => parties,
            None => self.parties.entry(username.into()).or_default(),
        };
        if let Some(known) = parties.iter().find(|p| p.outcome == outcome) {
            return Arc::clone(known);
        }
        let party = Arc::new(Party {
            username: username.into(),
            outcome,
        });
        parties.push(Arc::clone(&party));
        party
    }

    /// Lets go of `gone`, no longer kept: its party goes if it was the last to have it.
    fn forget(&mut self, gone: UsageRecord) {
        // Held by the table and by this record only: the last record of that party.
        if Arc::strong_count(&gone.party) > 2 {
            return;
        }
        let username = &*gone.party.username;
        if let Some(parties) = self.parties.get_mut(username) {
            parties.retain(|p| !Arc::ptr_eq(p, &gone.party));
            if parties.is_empty() {
                self.parties.remove(username);
            }
        }
    }

    /// Drops the records that ended before `cutoff`, then the oldest beyond `max`.
    fn prune(&mut self, cutoff: Timestamp, max: usize) {
        while self.records.front().is_some_and(|u| u.ended < cutoff) || self.records.len() > max {
            let Some(gone) = self.records.pop_front() else {
                break;
            };
            self.forget(gone);
        }
    }

    /// Appends `record` (ended at or after `cutoff`), keeping at most `max`: the oldest go
    /// first, and the records never take room for more than `max`.
    fn push(&mut self, record: UsageRecord, cutoff: Timestamp, max: usize) {
        self.prune(cutoff, max.saturating_sub(1));
        if max == 0 {
            self.forget(record);
            return;
        }
        if self.records.len() == self.records.capacity() {
            let room = self.records.capacity().max(4).min(max - self.records.len());
            self.records.reserve_exact(room);
        }
        self.records.push_back(record);
    }

    /// The records as plain data, oldest end first.
    pub(super) fn to_usage(&self) -> Vec<Usage> {
        self.records.iter().map(UsageRecord::to_usage).collect()
    }

    /// The records of a snapshot's `usage`: a resource still in `inventory` that reads the same
    /// shares its spec, the records of any other resource share one made for them.
    pub(super) fn restore(usage: &[Usage], inventory: &Inventory) -> Self {
        let mut log = UsageLog {
            records: VecDeque::with_capacity(usage.len()),
            parties: FxMap::default(),
        };
        // Specs made for resources that the inventory no longer has as they were.
        let mut made: FxMap<Uuid, Arc<ResourceSpec>> = FxMap::default();
        for u in usage {
            let registered = inventory
                .slot_of(&u.inventory_id)
                .map(|slot| &inventory.get(slot).spec);
            let known = registered
                .into_iter()
                .chain(made.get(&u.inventory_id))
                .find(|spec| describes(spec, u))
                .cloned();
            let resource = known.unwrap_or_else(|| {
                let spec = Arc::new(spec_of(u));
                made.insert(u.inventory_id, Arc::clone(&spec));
                spec
            });
            let party = log.party(&u.username, u.outcome);
            log.records.push_back(UsageRecord {
                allocation_id: u.allocation_id,
                resource,
                party,
                ready: u.ready,
                ended: u.ended,
            });
        }
        log
    }
}

impl Engine {
    /// Resource-seconds and GPU-seconds per group over `query`'s window (API.md, "Usage"):
    /// ended allocations still kept, and those held at `now` (counted up to it; a `now`
    /// before the engine's latest counts as that). `username`: only that user's allocations.
    /// A query: changes nothing.
    pub fn usage(
        &self,
        now: Timestamp,
        query: &UsageQuery,
        username: Option<&str>,
    ) -> Vec<UsageRow> {
        let now = now.max(self.now);
        let from = Timestamp::from_secs(query.from.unwrap_or(0)).max(self.usage_cutoff());
        let to = query.to.map_or(now, Timestamp::from_secs);
        let held: Vec<UsageRef<'_>> = self
            .allocations
            .values()
            .filter(|a| a.state == AllocationState::Ready)
            .filter_map(|a| {
                let spec = self.held_spec(a)?;
                Some(UsageRef {
                    username: &a.requirements.username,
                    inventory_id: inventory_id(spec),
                    labels: &spec.labels,
                    gpus: spec.gpu.len(),
                    ready: ready_at(a),
                    ended: now,
                })
            })
            .collect();
        let records = self.usage.records.iter().map(UsageRecord::view).chain(held);
        let mine = records.filter(|u| username.is_none_or(|name| u.username == name));
        usage::summarize(mine, from, to, query.by)
    }

    /// How many usage records (of ended allocations) are kept now.
    pub fn usage_records(&self) -> usize {
        self.usage.records.len()
    }

    /// Sets how long usage records are kept after their allocation ended (the operator's
    /// flag wins over a restored snapshot's setting); older ones go at the next end.
    pub fn set_usage_retention_secs(&mut self, secs: u64) {
        self.config.usage_retention_secs = secs;
        self.usage
            .prune(self.usage_cutoff(), self.config.usage_records_max);
    }

    /// Keeps the usage of allocation `id`, which has just ended, if it was `prior`ly ready.
    pub(super) fn record_usage(&mut self, id: &Uuid, prior: AllocationState) {
        if prior != AllocationState::Ready {
            return;
        }
        let Some(a) = self.allocations.get(id) else {
            return;
        };
        let Some(resource) = self.held_spec(a).map(Arc::clone) else {
            return;
        };
        let record = UsageRecord {
            allocation_id: a.id,
            resource,
            party: self.usage.party(&a.requirements.username, a.state),
            ready: ready_at(a),
            ended: self.now,
        };
        let cutoff = self.usage_cutoff();
        self.usage
            .push(record, cutoff, self.config.usage_records_max);
    }

    /// The spec of the resource the allocation `a` holds (or held until just now).
    fn held_spec(&self, a: &Allocation) -> Option<&Arc<ResourceSpec>> {
        let slot = self.inventory.slot_of(&a.inventory_id?)?;
        Some(&self.inventory.get(slot).spec)
    }

    /// The oldest end a kept record may have.
    fn usage_cutoff(&self) -> Timestamp {
        let retention_ms = self.config.usage_retention_secs.saturating_mul(1000);
        Timestamp::from_millis(self.now.as_millis().saturating_sub(retention_ms))
    }

    /// The specs the usage records hold, oldest record first, and how many parties
    /// (username and outcome) are interned: what the records share.
    #[cfg(test)]
    pub(crate) fn usage_interned(&self) -> (Vec<Arc<ResourceSpec>>, usize) {
        let specs = self.usage.records.iter().map(|r| Arc::clone(&r.resource));
        (
            specs.collect(),
            self.usage.parties.values().map(Vec::len).sum(),
        )
    }
}

/// When the allocation `a` became ready (restored from a snapshot written before `ready_at`
/// was kept: its creation).
fn ready_at(a: &Allocation) -> Timestamp {
    a.ready_at.unwrap_or(a.created)
}
