//! The contract's data: resources agents register, connection details, and what users ask for.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// One GPU of a resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// The model name, such as `NVIDIA GeForce RTX 2080`.
    pub label: String,
    /// Its memory in GB.
    pub memory_gb: u64,
}

/// How to reach an allocated resource. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// Host name or address.
    pub host: String,
    /// Login name; empty when the agent named none (ssh's own default then applies).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// Password or other secret; absent for a key-based login (clients must not assume one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The SSH port, when not 22 (1-65535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("port", &self.port)
            .finish()
    }
}

/// A resource as an agent registers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// The agent's own id for it, if it chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_id: Option<Uuid>,
    /// Labels that requests' `tags` match.
    pub labels: Vec<String>,
    /// Number of CPUs.
    pub cpu_count: u64,
    /// Memory in GB.
    pub memory_gb: u64,
    /// GPUs, possibly none.
    pub gpu: Vec<Gpu>,
    /// Free text such as `VM`, `device`, `server-onsite`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Fixed connection details; when present, provisioning and release need no round trip.
    /// Shared, not copied, with the allocations placed on the resource and their `ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Arc<Connection>>,
}

impl ResourceSpec {
    /// Drops the spare capacity of its lists and strings, so that the copy the engine keeps
    /// of a registered resource weighs no more than a clone of it would.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.labels.shrink_to_fit();
        self.labels.iter_mut().for_each(String::shrink_to_fit);
        self.gpu.shrink_to_fit();
        self.gpu.iter_mut().for_each(|g| g.label.shrink_to_fit());
        self.kind.shrink_to_fit();
        if let Some(c) = self.connection.as_mut().and_then(Arc::get_mut) {
            c.host.shrink_to_fit();
            c.username.shrink_to_fit();
            c.password.iter_mut().for_each(String::shrink_to_fit);
        }
    }
}

/// What a request needs of its GPUs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuRequirement {
    /// A GPU's label must contain this, ignoring case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Each matching GPU has at least this much memory.
    #[serde(default)]
    pub min_memory_gb: u64,
    /// How many GPUs must match (at least 1).
    pub count: u32,
}

/// Everything a user may ask of an allocation (the contract's `requirements`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// Every tag must be among the resource's labels.
    pub tags: Vec<String>,
    /// Who holds the allocation.
    pub username: String,
    /// How long to wait in the queue; 0 means only if something is free now.
    pub allocation_timeout_seconds: u64,
    /// When the lease should end (unix seconds); with neither this nor `duration_seconds`, the
    /// server's default lease, counted from `ready`.
    pub expires: Option<u64>,
    /// How long the lease lasts, counted from `ready` (at most one of this and `expires`).
    /// Absent in records and snapshots written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
    /// The resource's `type` must equal this.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// At least this many CPUs.
    pub min_cpu_count: Option<u64>,
    /// At least this much memory in GB.
    pub min_memory_gb: Option<u64>,
    /// GPU needs.
    pub gpu: Option<GpuRequirement>,
    /// None of these may be among the resource's labels.
    pub exclude_tags: Vec<String>,
    /// End the allocation when the requesting client disconnects.
    pub release_on_disconnect: bool,
    /// Public keys that should be allowed to log in, handed to the agent in its `provision`
    /// order. Absent in records and snapshots written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
    /// A JSON object the server does not interpret, handed to the agent in its `provision`
    /// order. Absent in records and snapshots written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision: Option<serde_json::Map<String, serde_json::Value>>,
    /// How many distinct resources, each satisfying every requirement, are granted together
    /// (at least 1). Absent in records and snapshots written before it existed, and when 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

fn is_one(count: &u32) -> bool {
    *count == 1
}

/// One of the resources granted together to an allocation, with how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantedResource {
    /// The resource.
    pub inventory_id: Uuid,
    /// How to reach it.
    pub connection: Arc<Connection>,
}

/// A resource held by an allocation of several, and its connection once known (static, or
/// answered by its agent's provision).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldResource {
    /// The resource.
    pub inventory_id: Uuid,
    /// How to reach it, once known.
    pub connection: Option<Arc<Connection>>,
}

/// The default `allocation_timeout_seconds`.
pub const DEFAULT_ALLOCATION_TIMEOUT_SECS: u64 = 60;

impl Requirements {
    /// Requirements for `username` with every other field at its default.
    pub fn for_user(username: impl Into<String>) -> Self {
        Requirements {
            tags: Vec::new(),
            username: username.into(),
            allocation_timeout_seconds: DEFAULT_ALLOCATION_TIMEOUT_SECS,
            expires: None,
            duration_seconds: None,
            kind: None,
            min_cpu_count: None,
            min_memory_gb: None,
            gpu: None,
            exclude_tags: Vec::new(),
            release_on_disconnect: false,
            ssh_keys: Vec::new(),
            provision: None,
            count: 1,
        }
    }
}

/// A resource for tests: labels, CPUs, memory, GPUs as (label, memory), type; no connection.
#[cfg(test)]
pub(crate) fn test_spec(
    labels: &[&str],
    cpu_count: u64,
    memory_gb: u64,
    gpus: &[(&str, u64)],
    kind: &str,
) -> ResourceSpec {
    ResourceSpec {
        inventory_id: None,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        cpu_count,
        memory_gb,
        gpu: gpus
            .iter()
            .map(|(l, m)| Gpu {
                label: l.to_string(),
                memory_gb: *m,
            })
            .collect(),
        kind: kind.into(),
        connection: None,
    }
}
