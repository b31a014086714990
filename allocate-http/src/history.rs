//! The server's own recent history for the dashboard's charts: one sample a minute of the
//! queue's length, the waits of requests that became ready, and how many resources of each
//! GPU model are held, over the last day. Plain data fed with `now`; the driver samples it
//! (at most once a minute, and when the page asks) and nothing else keeps it.

use allocate_core::{InventoryEntryRef, ResourceState};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// Seconds per sample.
pub const SAMPLE_SECS: u64 = 60;

/// Samples kept: a day of minutes; at the bound the oldest is dropped.
pub const SAMPLES_MAX: usize = 24 * 60;

/// GPU models (or "no GPU") charted one by one; the smaller rest is summed as `other`.
const GROUPS_MAX: usize = 8;

/// What resources without a GPU are charted as.
const NO_GPU: &str = "no GPU";

/// One minute of the lab.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// The minute's start (unix seconds).
    pub at: u64,
    /// The longest queue seen in the minute.
    pub queued: u64,
    /// Requests that became ready in the minute.
    pub waits: u64,
    /// Their longest wait, in seconds.
    pub wait_secs_max: u64,
    /// Their waits summed, in seconds (the page divides by `waits`).
    pub wait_secs_total: u64,
    /// Resources by GPU model (the first GPU's label, or `no GPU`): held and registered,
    /// as last seen in the minute.
    pub utilization: Vec<Utilization>,
}

/// Resources of one GPU model: how many are held, of how many registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Utilization {
    /// The GPU model, `no GPU` or `other`.
    pub key: String,
    /// Resources held by an allocation (or being released).
    pub held: u64,
    /// Resources registered.
    pub total: u64,
}

/// The last day of samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Whether the minute of `now` (unix seconds) has no sample yet.
    pub fn due(&self, now: u64) -> bool {
        self.samples.back().is_none_or(|s| s.at != minute_of(now))
    }

    /// Records the lab at `now`: the queue's length and the resources; in the minute's
    /// sample, which is opened if it is a new minute.
    pub fn sample<'a>(
        &mut self,
        now: u64,
        queued: u64,
        resources: impl Iterator<Item = InventoryEntryRef<'a>>,
    ) {
        let utilization = utilization(resources);
        let sample = self.current(now);
        sample.queued = sample.queued.max(queued);
        sample.utilization = utilization;
    }

    /// A request became ready at `now` after waiting `wait_secs`: counted in the minute's
    /// sample (which must have been opened by [`History::sample`]; else it is not counted).
    pub fn observe_wait(&mut self, now: u64, wait_secs: u64) {
        if let Some(s) = self.samples.back_mut().filter(|s| s.at == minute_of(now)) {
            s.waits += 1;
            s.wait_secs_max = s.wait_secs_max.max(wait_secs);
            s.wait_secs_total = s.wait_secs_total.saturating_add(wait_secs);
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// The sample of `now`'s minute, opened (after the last one) if there is none.
    fn current(&mut self, now: u64) -> &mut Sample {
        let at = minute_of(now);
        if self.samples.back().is_none_or(|s| s.at < at) {
            if self.samples.len() == SAMPLES_MAX {
                self.samples.pop_front();
            }
            self.samples.push_back(Sample {
                at,
                ..Sample::default()
            });
        }
        self.samples.back_mut().expect("a sample was just pushed")
    }
}

fn minute_of(now: u64) -> u64 {
    now - now % SAMPLE_SECS
}

/// Resources by GPU model, the most numerous first; beyond [`GROUPS_MAX`], `other`.
fn utilization<'a>(resources: impl Iterator<Item = InventoryEntryRef<'a>>) -> Vec<Utilization> {
    let mut groups: BTreeMap<&'a str, (u64, u64)> = BTreeMap::new();
    for r in resources {
        let key = r.gpu.first().map_or(NO_GPU, |g| g.label.as_str());
        let group = groups.entry(key).or_default();
        group.1 += 1;
        if r.state == ResourceState::Allocated {
            group.0 += 1;
        }
    }
    let mut list: Vec<Utilization> = groups
        .into_iter()
        .map(|(key, (held, total))| Utilization {
            key: key.to_owned(),
            held,
            total,
        })
        .collect();
    list.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.key.cmp(&b.key)));
    if list.len() > GROUPS_MAX {
        let rest = list.split_off(GROUPS_MAX - 1);
        list.push(Utilization {
            key: "other".to_owned(),
            held: rest.iter().map(|u| u.held).sum(),
            total: rest.iter().map(|u| u.total).sum(),
        });
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocate_core::Gpu;
    use uuid::Uuid;

    fn entry<'a>(gpu: &'a [Gpu], state: ResourceState) -> InventoryEntryRef<'a> {
        InventoryEntryRef {
            inventory_id: Uuid::nil(),
            labels: &[],
            cpu_count: 1,
            memory_gb: 1,
            gpu,
            kind: "VM",
            agent_id: Uuid::nil(),
            state,
            reason: None,
        }
    }

    #[test]
    fn a_sample_a_minute_with_the_longest_queue_and_the_waits() {
        let t4 = [Gpu {
            label: "Tesla T4".into(),
            memory_gb: 16,
        }];
        let lab = || {
            [
                entry(&t4, ResourceState::Allocated),
                entry(&t4, ResourceState::Free),
                entry(&[], ResourceState::Free),
            ]
            .into_iter()
        };
        let mut h = History::default();
        assert!(h.due(600));
        h.sample(600, 3, lab());
        assert!(!h.due(659));
        h.sample(630, 1, lab());
        h.observe_wait(640, 12);
        h.observe_wait(650, 4);
        assert!(h.due(660));
        h.observe_wait(660, 99); // no sample of that minute yet: not counted
        h.sample(725, 0, lab());
        let samples: Vec<&Sample> = h.samples().collect();
        assert_eq!(samples.len(), 2);
        let first = samples[0];
        assert_eq!((first.at, first.queued), (600, 3));
        assert_eq!(
            (first.waits, first.wait_secs_max, first.wait_secs_total),
            (2, 12, 16)
        );
        assert_eq!(
            first.utilization,
            [
                Utilization {
                    key: "Tesla T4".into(),
                    held: 1,
                    total: 2
                },
                Utilization {
                    key: NO_GPU.into(),
                    held: 0,
                    total: 1
                }
            ]
        );
        assert_eq!((samples[1].at, samples[1].waits), (720, 0));
    }

    #[test]
    fn a_day_is_kept_and_small_groups_are_summed_as_other() {
        let mut h = History::default();
        for minute in 0..(SAMPLES_MAX as u64 + 10) {
            h.sample(minute * SAMPLE_SECS, minute, std::iter::empty());
        }
        assert_eq!(h.samples().count(), SAMPLES_MAX);
        assert_eq!(h.samples().next().unwrap().at, 10 * SAMPLE_SECS);
        let models: Vec<[Gpu; 1]> = (0..12)
            .map(|i| {
                [Gpu {
                    label: format!("model {i:02}"),
                    memory_gb: 8,
                }]
            })
            .collect();
        let groups = utilization(models.iter().map(|g| entry(g, ResourceState::Allocated)));
        assert_eq!(groups.len(), GROUPS_MAX);
        let other = groups.last().unwrap();
        assert_eq!(
            (other.key.as_str(), other.held, other.total),
            ("other", 5, 5)
        );
    }
}
