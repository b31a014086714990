//! Small vocabularies that arbitrary bytes pick from: mostly values that match each other
//! (a few labels, CPU counts, GPU models: `testkit::labs::vocab`, which the property tests'
//! strategies draw from too), sometimes anything at all.

use allocate_core::{
    Config, Connection, Gpu, GpuRequirement, Limits, Order, Requirements, ResourceSpec,
};
use arbitrary::Arbitrary;
use testkit::labs::vocab::{GPUS, GPU_WANTS, KINDS, LABELS, USERNAMES};

const SIZES: &[u64] = &[0, 1, 4, 8, 16, 32, 64];

fn pick<T: Copy>(list: &[T], n: u8) -> T {
    list[usize::from(n) % list.len()]
}

/// A number: usually a small one, sometimes any `u64` (overflow, saturation).
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Num {
    /// One of a few sizes that resources and requests share.
    Small(u8),
    /// Up to 65535.
    Mid(u16),
    /// Anything.
    Any(u64),
}

impl Num {
    /// Its value.
    pub fn get(self) -> u64 {
        match self {
            Num::Small(n) => pick(SIZES, n),
            Num::Mid(n) => u64::from(n),
            Num::Any(n) => n,
        }
    }
}

/// A string: one of a list of known ones, or anything (empty, overlong, odd characters).
#[derive(Arbitrary, Clone, Debug)]
pub enum Text {
    /// The n-th known string.
    Known(u8),
    /// Anything.
    Any(String),
}

impl Text {
    fn from(&self, list: &[&str]) -> String {
        match self {
            Text::Known(n) => pick(list, *n).to_owned(),
            Text::Any(s) => s.clone(),
        }
    }

    /// As a label or tag.
    pub fn label(&self) -> String {
        self.from(LABELS)
    }

    /// As free text (a reason, a type).
    pub fn text(&self) -> String {
        self.from(KINDS)
    }
}

/// A resource an agent registers.
#[derive(Arbitrary, Clone, Debug)]
pub struct Resource {
    labels: Vec<Text>,
    cpu_count: Num,
    memory_gb: Num,
    gpus: Vec<(u8, Option<Num>)>,
    kind: Text,
    fixed: bool,
}

impl Resource {
    /// The spec, with no `inventory_id`.
    pub fn spec(&self) -> ResourceSpec {
        ResourceSpec {
            inventory_id: None,
            labels: self.labels.iter().take(4).map(Text::label).collect(),
            cpu_count: self.cpu_count.get(),
            memory_gb: self.memory_gb.get(),
            gpu: self
                .gpus
                .iter()
                .take(3)
                .map(|&(n, memory)| {
                    let (label, memory_gb) = pick(GPUS, n);
                    Gpu {
                        label: label.to_owned(),
                        memory_gb: memory.map_or(memory_gb, Num::get),
                    }
                })
                .collect(),
            kind: self.kind.text(),
            connection: self.fixed.then(|| {
                std::sync::Arc::new(Connection {
                    host: "10.0.0.7".into(),
                    username: "lab".into(),
                    password: Some("pw".into()),
                    port: None,
                })
            }),
        }
    }
}

/// What a user asks for (all but `expires`).
#[derive(Arbitrary, Clone, Debug)]
pub struct Request {
    tags: Vec<Text>,
    exclude_tags: Vec<Text>,
    username: Text,
    timeout_secs: Option<Num>,
    kind: Option<Text>,
    min_cpu_count: Option<Num>,
    min_memory_gb: Option<Num>,
    gpu: Option<(Option<u8>, Num, u8)>,
    release_on_disconnect: bool,
    /// Several resources at once, now and then (0 is refused).
    count: Option<u8>,
}

impl Request {
    /// The requirements, with `expires` as given (in unix seconds).
    pub fn requirements(&self, expires: Option<Num>) -> Requirements {
        let mut r = Requirements::for_user(self.username.from(USERNAMES));
        r.tags = self.tags.iter().take(3).map(Text::label).collect();
        r.exclude_tags = self.exclude_tags.iter().take(2).map(Text::label).collect();
        if let Some(t) = self.timeout_secs {
            r.allocation_timeout_seconds = t.get();
        }
        r.expires = expires.map(Num::get);
        r.kind = self.kind.as_ref().map(Text::text);
        r.min_cpu_count = self.min_cpu_count.map(Num::get);
        r.min_memory_gb = self.min_memory_gb.map(Num::get);
        r.gpu = self.gpu.map(|(label, min, count)| GpuRequirement {
            label: label.map(|n| pick(GPU_WANTS, n).to_owned()),
            min_memory_gb: min.get(),
            // 0 and more than the list limit are refused.
            count: u32::from(count % 5),
        });
        r.release_on_disconnect = self.release_on_disconnect;
        r.count = self.count.map_or(1, |n| u32::from(n % 4));
        r
    }
}

/// The engine's settings: short timeouts and small memories, so that limits are reached.
#[derive(Arbitrary, Clone, Debug)]
pub struct Knobs {
    lease_secs_default: Num,
    lease_secs_max: Num,
    wait_secs_max: Num,
    provision_timeout_ms: Num,
    release_timeout_ms: Num,
    ended_allocations_max: u8,
    policy_candidates_max: u8,
}

impl Knobs {
    /// The settings.
    pub fn config(&self) -> Config {
        Config {
            lease_secs_default: self.lease_secs_default.get(),
            lease_secs_max: self.lease_secs_max.get(),
            wait_secs_max: self.wait_secs_max.get(),
            provision_timeout_ms: self.provision_timeout_ms.get(),
            release_timeout_ms: self.release_timeout_ms.get(),
            ended_allocations_max: usize::from(self.ended_allocations_max % 16),
            policy_candidates_max: usize::from(self.policy_candidates_max % 8),
            // The byte's high bit, unused above: both orders without changing what a seed's
            // bytes decode to.
            order: if self.policy_candidates_max & 0x80 == 0 {
                Order::Arrival
            } else {
                Order::FairShare
            },
            // Small, so that sequences reach both of the usage history's bounds.
            usage_retention_secs: 3600,
            usage_records_max: 8,
            record_inputs: false,
            limits: Limits::default(),
        }
    }
}
