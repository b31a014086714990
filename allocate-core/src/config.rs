//! The engine's settings: leases, timeouts and limits.

use serde::{Deserialize, Serialize};

/// Settings the operator chooses; every field has a sensible default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Lease length when a request names no `expires`.
    pub lease_secs_default: u64,
    /// Longest lease; a later `expires` is capped to now plus this.
    pub lease_secs_max: u64,
    /// Longest `allocation_timeout_seconds` a request may ask for.
    pub wait_secs_max: u64,
    /// How long an agent has to answer a provision before the resource goes to `error`.
    pub provision_timeout_ms: u64,
    /// How long an agent has to acknowledge a release before the resource goes to `error`.
    pub release_timeout_ms: u64,
    /// How many ended allocations stay queryable; the oldest are forgotten first.
    pub ended_allocations_max: usize,
    /// How long the usage of an ended allocation is kept (for `GET /usage`).
    pub usage_retention_secs: u64,
    /// How many usage records are kept at most; beyond it the oldest are dropped first.
    pub usage_records_max: usize,
    /// How many candidates (the best by default fit) a matching policy is shown per placement.
    pub policy_candidates_max: usize,
    /// Whether every accepted input is kept as a [`crate::Record`] for [`crate::Engine::take_records`].
    pub record_inputs: bool,
    /// Size limits on client input.
    pub limits: Limits,
    /// The order in which waiting requests are served (absent from snapshots while it is the
    /// default, arrival).
    #[serde(skip_serializing_if = "Order::is_arrival")]
    pub order: Order,
}

/// The order in which waiting requests are served (README, "Order and starvation").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Earliest arrival first.
    #[default]
    Arrival,
    /// The user holding the fewest resources first; ties by arrival.
    FairShare,
}

impl Order {
    /// Whether this is the default, arrival order.
    pub fn is_arrival(&self) -> bool {
        *self == Order::Arrival
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lease_secs_default: 3600,
            lease_secs_max: 7 * 24 * 3600,
            wait_secs_max: 24 * 3600,
            provision_timeout_ms: 30_000,
            release_timeout_ms: 30_000,
            ended_allocations_max: 10_000,
            usage_retention_secs: 90 * 24 * 3600,
            usage_records_max: 200_000,
            policy_candidates_max: 64,
            record_inputs: false,
            limits: Limits::default(),
            order: Order::Arrival,
        }
    }
}

/// Size limits on what clients send; the operator can change them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Most characters in any string.
    pub string_chars_max: usize,
    /// Most entries in a list of tags or labels (and GPUs per resource).
    pub list_len_max: usize,
    /// Most resources in one registration.
    pub resources_per_registration_max: usize,
    /// Most entries in a request's `ssh_keys`.
    #[serde(default = "default_ssh_keys_max")]
    pub ssh_keys_max: usize,
    /// Most bytes in one of a request's `ssh_keys`.
    #[serde(default = "default_blob_bytes_max")]
    pub ssh_key_bytes_max: usize,
    /// Most bytes in a request's `provision` object, written as compact JSON.
    #[serde(default = "default_blob_bytes_max")]
    pub provision_bytes_max: usize,
    /// Most resources one request may ask for (`requirements.count`).
    #[serde(default = "default_count_max")]
    pub count_max: u32,
}

fn default_count_max() -> u32 {
    64
}

fn default_ssh_keys_max() -> usize {
    16
}

fn default_blob_bytes_max() -> usize {
    16 * 1024
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            string_chars_max: 256,
            list_len_max: 64,
            resources_per_registration_max: 10_000,
            ssh_keys_max: default_ssh_keys_max(),
            ssh_key_bytes_max: default_blob_bytes_max(),
            provision_bytes_max: default_blob_bytes_max(),
            count_max: default_count_max(),
        }
    }
}
