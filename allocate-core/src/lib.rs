//! `allocate-core`: the deterministic engine behind `allocate`, which hands out dedicated lab
//! hardware (machines, GPUs, devices) to people and test harnesses.
//!
//! The engine holds the inventory that agents register, matches requests against it (labels,
//! type, CPU, memory, GPU model, memory and count), queues what cannot be served yet, and runs
//! each allocation's life: queued, provisioning, ready, then released or expired.
//!
//! It does no IO, starts no threads, and never reads the clock or a random source: every
//! mutator takes `now`, and allocation ids come from the [`IdSource`] given at construction
//! (`clippy.toml` forbids `SystemTime::now`, `Instant::now`, `Uuid::new_v4` and std's seeded
//! hash maps here). The same inputs at the same times give the same state and outputs, so a
//! journal of [`Record`]s replayed over a [`Snapshot`] reproduces the state exactly.
//!
//! Every message of the contract, with its JSON reader and writer, is in the module `wire`
//! (the default cargo feature `wire`); the engine itself never imports it, and builds without
//! it.
//!
//! Driving it: feed inputs ([`Engine::register_agent`], [`Engine::request`], ...), drain
//! [`Engine::poll_output`] and deliver each [`Output`] to its [`Recipient`], and call
//! [`Engine::handle_timeout`] at [`Engine::poll_timeout`].
//!
//! ```
//! use allocate_core::{Config, Engine, Output, Requirements, ResourceSpec, SeededIds, Timestamp, Connection};
//! use uuid::Uuid;
//!
//! let mut engine = Engine::new(Config::default(), Box::new(SeededIds::new(1)));
//! let now = Timestamp::from_secs(1_700_000_000);
//! let machine = ResourceSpec {
//!     inventory_id: None, labels: vec!["nvidia".into()], cpu_count: 12, memory_gb: 32,
//!     gpu: vec![], kind: "VM".into(),
//!     connection: Some(Connection { host: "10.0.0.7".into(), username: "lab".into(), password: Some("pw".into()), port: None }.into()),
//! };
//! engine.register_agent(now, Uuid::from_u128(1), vec![machine]).unwrap();
//! let mut wants = Requirements::for_user("ci-runner-7");
//! wants.tags = vec!["nvidia".into()];
//! let id = engine.request(now, wants).unwrap();
//! assert!(matches!(engine.poll_output(), Some(Output::Ready { allocation_id, .. }) if allocation_id == id));
//! ```

#![forbid(unsafe_code)]

mod bitmap;
mod config;
mod criteria;
mod engine;
mod error;
mod explain;
mod filter;
mod hash;
mod ids;
mod index;
mod inventory;
mod model;
mod output;
mod policy;
mod queue;
mod quota;
mod record;
mod stored;
mod time;
mod usage;
mod validate;
mod view;
#[cfg(feature = "wire")]
pub mod wire;

pub use config::{Config, Limits, Order};
pub use engine::snapshot::{AgentSnapshot, AllocationSnapshot, ResourceSnapshot};
pub use engine::{AgentFailures, Engine, Registered, SessionId, Snapshot, Stats};
pub use error::{Error, ErrorCode, Result, SessionError};
pub use explain::{Explanation, Finding, Reason, SEEN_MAX};
pub use filter::InventoryFilter;
pub use ids::{IdSource, SeededIds};
pub use model::{
    Connection, Gpu, GpuRequirement, GrantedResource, HeldResource, Requirements, ResourceSpec,
    DEFAULT_ALLOCATION_TIMEOUT_SECS,
};
pub use output::{Output, Recipient};
pub use policy::{BestFit, Candidate, MatchPolicy};
pub use quota::{Group, Policy, QuotaExceeded, QuotaLimit, QuotaLimits};
pub use record::{Input, ProvisionResult, Record};
pub use stored::{StoredError, SCHEMA};
pub use time::Timestamp;
pub use usage::{Usage, UsageBy, UsageQuery, UsageRow};
pub use view::{AllocationInfo, AllocationState, InventoryEntry, InventoryEntryRef, ResourceState};
#[cfg(feature = "wire")]
pub use wire::{
    admin::{parse_expires_patch, parse_maintenance_patch},
    agent::parse_resources,
    client::parse_allocate_request,
    parse_json, parse_uuid, AgentMessage,
};
