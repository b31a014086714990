//! The contract's data: resources agents register, connection details, and what users ask for.

use crate::error::{Error, Result};
use crate::json::{Fields, Limits};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
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
    /// Login name.
    pub username: String,
    /// Password or other secret.
    pub password: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &"<redacted>")
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
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
    /// When the lease should end (unix seconds); `None` takes the server's default lease.
    pub expires: Option<u64>,
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
            kind: None,
            min_cpu_count: None,
            min_memory_gb: None,
            gpu: None,
            exclude_tags: Vec::new(),
            release_on_disconnect: false,
        }
    }

    /// Reads the `requirements` object of a client's message.
    pub fn from_json(value: &Value, path: &str, limits: &Limits) -> Result<Self> {
        const FIELDS: &[&str] = &[
            "tags",
            "username",
            "allocation_timeout_seconds",
            "expires",
            "type",
            "min_cpu_count",
            "min_memory_gb",
            "gpu",
            "exclude_tags",
            "release_on_disconnect",
        ];
        let f = Fields::new(value, path, FIELDS, limits)?;
        let username = f.str("username")?;
        if username.trim().is_empty() {
            return Err(Error::invalid(format!(
                "{} must not be empty",
                f.path_of("username")
            )));
        }
        let gpu = f
            .value("gpu")
            .map(|g| GpuRequirement::from_json(g, &f.path_of("gpu"), limits))
            .transpose()?;
        Ok(Requirements {
            tags: f.opt_strings("tags")?.unwrap_or_default(),
            username: username.to_owned(),
            allocation_timeout_seconds: f
                .opt_u64("allocation_timeout_seconds")?
                .unwrap_or(DEFAULT_ALLOCATION_TIMEOUT_SECS),
            expires: f.opt_u64("expires")?,
            kind: f.opt_str("type")?.map(str::to_owned),
            min_cpu_count: f.opt_u64("min_cpu_count")?,
            min_memory_gb: f.opt_u64("min_memory_gb")?,
            gpu,
            exclude_tags: f.opt_strings("exclude_tags")?.unwrap_or_default(),
            release_on_disconnect: f.opt_bool("release_on_disconnect")?.unwrap_or(false),
        })
    }
}

impl GpuRequirement {
    fn from_json(value: &Value, path: &str, limits: &Limits) -> Result<Self> {
        let f = Fields::new(value, path, &["label", "min_memory_gb", "count"], limits)?;
        let count = f.opt_u64("count")?.unwrap_or(1);
        if count == 0 || count > limits.list_len_max as u64 {
            return Err(Error::invalid(format!(
                "{} must be between 1 and {}, got {count}",
                f.path_of("count"),
                limits.list_len_max
            )));
        }
        Ok(GpuRequirement {
            label: f.opt_str("label")?.map(str::to_owned),
            min_memory_gb: f.opt_u64("min_memory_gb")?.unwrap_or(0),
            count: count as u32,
        })
    }
}

impl Connection {
    /// Reads a `connection` object.
    pub fn from_json(value: &Value, path: &str, limits: &Limits) -> Result<Self> {
        let f = Fields::new(value, path, &["host", "username", "password"], limits)?;
        Ok(Connection {
            host: f.str("host")?.to_owned(),
            username: f.str("username")?.to_owned(),
            password: f.str("password")?.to_owned(),
        })
    }
}

impl ResourceSpec {
    /// Reads one entry of an agent's `resources` list.
    pub fn from_json(value: &Value, path: &str, limits: &Limits) -> Result<Self> {
        const FIELDS: &[&str] = &[
            "inventory_id",
            "labels",
            "cpu_count",
            "memory_gb",
            "gpu",
            "type",
            "connection",
        ];
        let f = Fields::new(value, path, FIELDS, limits)?;
        let gpu = match f.opt_list("gpu", limits.list_len_max)? {
            None => Vec::new(),
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let gf = Fields::new(
                        g,
                        &format!("{}[{i}]", f.path_of("gpu")),
                        &["label", "memory_gb"],
                        limits,
                    )?;
                    Ok(Gpu {
                        label: gf.str("label")?.to_owned(),
                        memory_gb: gf.u64("memory_gb")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(ResourceSpec {
            inventory_id: f.opt_uuid("inventory_id")?,
            labels: f.opt_strings("labels")?.unwrap_or_default(),
            cpu_count: f.u64("cpu_count")?,
            memory_gb: f.u64("memory_gb")?,
            gpu,
            kind: f.opt_str("type")?.unwrap_or_default().to_owned(),
            connection: f
                .value("connection")
                .map(|c| Connection::from_json(c, &f.path_of("connection"), f.limits()))
                .transpose()?,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reqs(value: Value) -> Result<Requirements> {
        Requirements::from_json(&value, "requirements", &Limits::default())
    }

    #[test]
    fn requirements_take_defaults() {
        let r = reqs(json!({"username": "ci"})).unwrap();
        assert_eq!(r, Requirements::for_user("ci"));
    }

    #[test]
    fn requirements_read_every_field() {
        let r = reqs(json!({
            "tags": ["nvidia"], "username": "ci-runner-7", "allocation_timeout_seconds": 0,
            "expires": 1576686942, "type": "VM", "min_cpu_count": 4, "min_memory_gb": 16,
            "gpu": {"label": "RTX 2080", "min_memory_gb": 8, "count": 2},
            "exclude_tags": ["flaky"], "release_on_disconnect": true
        }))
        .unwrap();
        assert_eq!(r.tags, ["nvidia"]);
        assert_eq!(r.allocation_timeout_seconds, 0);
        assert_eq!(r.expires, Some(1576686942));
        assert_eq!(r.kind.as_deref(), Some("VM"));
        assert_eq!(
            r.gpu,
            Some(GpuRequirement {
                label: Some("RTX 2080".into()),
                min_memory_gb: 8,
                count: 2
            })
        );
        assert!(r.release_on_disconnect);
    }

    #[test]
    fn requirement_errors_name_the_field() {
        let cases = [
            (
                json!({"tag": ["x"], "username": "u"}),
                "unknown field `tag` in requirements",
            ),
            (json!({}), "requirements.username is required"),
            (
                json!({"username": " "}),
                "requirements.username must not be empty",
            ),
            (
                json!({"username": "u", "gpu": {"count": 0}}),
                "requirements.gpu.count must be between 1",
            ),
            (
                json!({"username": "u", "gpu": {"cnt": 1}}),
                "unknown field `cnt` in requirements.gpu",
            ),
            (
                json!({"username": "u", "expires": 1.5}),
                "requirements.expires must be a non-negative integer",
            ),
            (
                json!({"username": "u", "release_on_disconnect": 1}),
                "requirements.release_on_disconnect must be a boolean",
            ),
        ];
        for (value, want) in cases {
            let err = reqs(value).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }

    #[test]
    fn resources_parse_and_errors_name_the_entry() {
        let limits = Limits::default();
        let ok = json!({"labels": ["nvidia"], "cpu_count": 12, "memory_gb": 32,
                        "gpu": [{"label": "GeForce RTX 2080", "memory_gb": 8}], "type": "VM",
                        "connection": {"host": "h", "username": "u", "password": "p"}});
        let spec = ResourceSpec::from_json(&ok, "resources[0]", &limits).unwrap();
        assert_eq!(spec.gpu[0].memory_gb, 8);
        assert_eq!(spec.kind, "VM");
        assert!(!format!("{spec:?}").contains("\"p\""));
        let bad = json!({"labels": [], "cpu_count": 1, "memory_gb": 1, "gpu": [{"label": "x", "memory_gb": -8}]});
        let err = ResourceSpec::from_json(&bad, "resources[3]", &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "resources[3].gpu[0].memory_gb must be a non-negative integer, got a negative integer"
        );
    }
}
