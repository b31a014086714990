//! Usage over time: a record per allocation that was ready when it ended, kept for
//! `usage_retention_secs` (at most `usage_records_max`), in the snapshot like the rest of
//! the state, and the `GET /usage` summary over those and the allocations held now.

use super::{Allocation, Engine};
use crate::time::Timestamp;
use crate::usage::{self, Usage, UsageQuery, UsageRow};
use crate::view::AllocationState;

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
        let held: Vec<Usage> = self
            .allocations
            .values()
            .filter(|a| a.state == AllocationState::Ready)
            .filter_map(|a| self.usage_of(a, now))
            .collect();
        let records = self.usage.iter().chain(&held);
        let mine = records.filter(|u| username.is_none_or(|name| u.username == name));
        usage::summarize(mine, from, to, query.by)
    }

    /// Sets how long usage records are kept after their allocation ended (the operator's
    /// flag wins over a restored snapshot's setting); older ones go at the next end.
    pub fn set_usage_retention_secs(&mut self, secs: u64) {
        self.config.usage_retention_secs = secs;
        self.prune_usage();
    }

    /// Keeps the usage of allocation `id`, which has just ended, if it was `prior`ly ready.
    pub(super) fn record_usage(&mut self, id: &uuid::Uuid, prior: AllocationState) {
        if prior != AllocationState::Ready {
            return;
        }
        let Some(record) = self
            .allocations
            .get(id)
            .and_then(|a| self.usage_of(a, self.now))
        else {
            return;
        };
        self.usage.push_back(record);
        self.prune_usage();
    }

    /// The usage of the allocation `a` (ready, or ended just now) if it ended at `ended`.
    fn usage_of(&self, a: &Allocation, ended: Timestamp) -> Option<Usage> {
        let inventory_id = a.inventory_id?;
        let spec = &self
            .inventory
            .get(self.inventory.slot_of(&inventory_id)?)
            .spec;
        Some(Usage {
            allocation_id: a.id,
            username: a.requirements.username.clone(),
            inventory_id,
            labels: spec.labels.clone(),
            kind: spec.kind.clone(),
            gpu: spec.gpu.iter().map(|g| g.label.clone()).collect(),
            // Restored from a snapshot written before `ready_at` was kept: its creation.
            ready: a.ready_at.unwrap_or(a.created),
            ended,
            outcome: a.state,
        })
    }

    /// Drops records past the retention period, then the oldest beyond the count bound.
    fn prune_usage(&mut self) {
        let cutoff = self.usage_cutoff();
        while self.usage.front().is_some_and(|u| u.ended < cutoff)
            || self.usage.len() > self.config.usage_records_max
        {
            self.usage.pop_front();
        }
    }

    /// The oldest end a kept record may have.
    fn usage_cutoff(&self) -> Timestamp {
        let retention_ms = self.config.usage_retention_secs.saturating_mul(1000);
        Timestamp::from_millis(self.now.as_millis().saturating_sub(retention_ms))
    }
}
