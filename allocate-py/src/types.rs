//! The contract's data as Python classes: resources, GPUs, connection details, requirements, and
//! the views of inventory entries and allocations. Each wraps allocate-core's own type.

use crate::convert::dict_to_json;
use crate::errors;
use allocate_core::{Candidate as CoreCandidate, Limits, ResourceSpec};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use std::sync::Arc;

/// `'text'`, as Python's `repr` quotes a string.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `['a', 'b']`.
pub fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// `Name(key=value, ...)`.
pub fn repr(name: &str, fields: &[(&str, String)]) -> String {
    let shown: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}({})", shown.join(", "))
}

/// `repr` of an optional value.
pub fn repr_opt<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| "None".to_owned(), show)
}

/// One GPU of a resource.
#[pyclass(frozen, eq, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu(pub allocate_core::Gpu);

#[pymethods]
impl Gpu {
    #[new]
    fn new(label: String, memory_gb: u64) -> Self {
        Gpu(allocate_core::Gpu { label, memory_gb })
    }

    /// The model name, such as `NVIDIA GeForce RTX 2080`.
    #[getter]
    fn label(&self) -> &str {
        &self.0.label
    }

    /// Its memory in GB.
    #[getter]
    fn memory_gb(&self) -> u64 {
        self.0.memory_gb
    }

    fn __repr__(&self) -> String {
        gpu_repr(&self.0)
    }
}

fn gpu_repr(gpu: &allocate_core::Gpu) -> String {
    repr(
        "Gpu",
        &[
            ("label", quote(&gpu.label)),
            ("memory_gb", gpu.memory_gb.to_string()),
        ],
    )
}

fn gpus_repr(gpus: &[allocate_core::Gpu]) -> String {
    let shown: Vec<String> = gpus.iter().map(gpu_repr).collect();
    format!("[{}]", shown.join(", "))
}

fn gpus(gpus: &[allocate_core::Gpu]) -> Vec<Gpu> {
    gpus.iter().cloned().map(Gpu).collect()
}

/// How to reach an allocated resource. `repr` never shows the password.
#[pyclass(frozen, eq, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection(pub allocate_core::Connection);

#[pymethods]
impl Connection {
    #[new]
    #[pyo3(signature = (host, username, password=None, port=None))]
    fn new(host: String, username: String, password: Option<String>, port: Option<u16>) -> Self {
        Connection(allocate_core::Connection {
            host,
            username,
            password,
            port,
        })
    }

    /// Host name or address.
    #[getter]
    fn host(&self) -> &str {
        &self.0.host
    }

    /// Login name.
    #[getter]
    fn username(&self) -> &str {
        &self.0.username
    }

    /// Password or other secret; None for a key login.
    #[getter]
    fn password(&self) -> Option<&str> {
        self.0.password.as_deref()
    }

    /// The SSH port, None for the default.
    #[getter]
    fn port(&self) -> Option<u16> {
        self.0.port
    }

    fn __repr__(&self) -> String {
        connection_repr(&self.0)
    }
}

pub fn connection_repr(c: &allocate_core::Connection) -> String {
    repr(
        "Connection",
        &[
            ("host", quote(&c.host)),
            ("username", quote(&c.username)),
            ("password", "'***'".to_owned()),
        ],
    )
}

/// A resource as an agent registers it.
#[pyclass(frozen, eq, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource(pub ResourceSpec);

#[pymethods]
impl Resource {
    #[new]
    #[pyo3(signature = (*, labels = Vec::new(), cpu_count = 0, memory_gb = 0, gpu = Vec::new(), r#type = String::new(), connection = None, inventory_id = None))]
    fn new(
        labels: Vec<String>,
        cpu_count: u64,
        memory_gb: u64,
        gpu: Vec<PyRef<'_, Gpu>>,
        r#type: String,
        connection: Option<PyRef<'_, Connection>>,
        inventory_id: Option<crate::convert::Id>,
    ) -> Self {
        Resource(ResourceSpec {
            inventory_id: inventory_id.map(|id| id.0),
            labels,
            cpu_count,
            memory_gb,
            gpu: gpu.iter().map(|g| g.0.clone()).collect(),
            kind: r#type,
            connection: connection.map(|c| Arc::new(c.0.clone())),
        })
    }

    /// Labels that requests' `tags` match.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.0.labels.clone()
    }

    /// Number of CPUs.
    #[getter]
    fn cpu_count(&self) -> u64 {
        self.0.cpu_count
    }

    /// Memory in GB.
    #[getter]
    fn memory_gb(&self) -> u64 {
        self.0.memory_gb
    }

    /// Its GPUs, possibly none.
    #[getter]
    fn gpu(&self) -> Vec<Gpu> {
        gpus(&self.0.gpu)
    }

    /// Free text such as `VM`, `device`, `server-onsite`.
    #[getter(r#type)]
    fn kind(&self) -> &str {
        &self.0.kind
    }

    /// Fixed connection details: the server then hands them out without asking the agent.
    #[getter]
    fn connection(&self) -> Option<Connection> {
        self.0.connection.as_deref().cloned().map(Connection)
    }

    /// The agent's own id for it, if it chose one.
    #[getter]
    fn inventory_id(&self) -> Option<String> {
        self.0.inventory_id.map(|id| id.to_string())
    }

    fn __repr__(&self) -> String {
        let s = &self.0;
        let mut fields = vec![
            ("labels", quote_list(&s.labels)),
            ("cpu_count", s.cpu_count.to_string()),
            ("memory_gb", s.memory_gb.to_string()),
            ("gpu", gpus_repr(&s.gpu)),
            ("type", quote(&s.kind)),
        ];
        if let Some(c) = &s.connection {
            fields.push(("connection", connection_repr(c)));
        }
        if let Some(id) = s.inventory_id {
            fields.push(("inventory_id", quote(&id.to_string())));
        }
        repr("Resource", &fields)
    }
}

/// One inventory entry as the server shows it (never with credentials).
#[pyclass(frozen, eq, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryEntry(pub allocate_core::InventoryEntry);

#[pymethods]
impl InventoryEntry {
    /// The resource's id.
    #[getter]
    fn inventory_id(&self) -> String {
        self.0.inventory_id.to_string()
    }

    /// Its labels.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.0.labels.clone()
    }

    /// Number of CPUs.
    #[getter]
    fn cpu_count(&self) -> u64 {
        self.0.cpu_count
    }

    /// Memory in GB.
    #[getter]
    fn memory_gb(&self) -> u64 {
        self.0.memory_gb
    }

    /// Its GPUs.
    #[getter]
    fn gpu(&self) -> Vec<Gpu> {
        gpus(&self.0.gpu)
    }

    /// Free-text type.
    #[getter(r#type)]
    fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The agent that owns it.
    #[getter]
    fn agent_id(&self) -> String {
        self.0.agent_id.to_string()
    }

    /// `free`, `allocated`, `offline`, `error` or `maintenance`.
    #[getter]
    fn state(&self) -> &'static str {
        self.0.state.as_str()
    }

    /// Why it is in `error` or `maintenance`.
    #[getter]
    fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }

    fn __repr__(&self) -> String {
        let e = &self.0;
        let mut fields = vec![
            ("inventory_id", quote(&e.inventory_id.to_string())),
            ("state", quote(e.state.as_str())),
            ("labels", quote_list(&e.labels)),
            ("cpu_count", e.cpu_count.to_string()),
            ("memory_gb", e.memory_gb.to_string()),
            ("gpu", gpus_repr(&e.gpu)),
            ("type", quote(&e.kind)),
        ];
        if let Some(reason) = &e.reason {
            fields.push(("reason", quote(reason)));
        }
        repr("InventoryEntry", &fields)
    }
}

/// One allocation as the server or engine records it.
#[pyclass(frozen, eq, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationInfo(pub allocate_core::AllocationInfo);

#[pymethods]
impl AllocationInfo {
    /// The allocation's id.
    #[getter]
    fn allocation_id(&self) -> String {
        self.0.allocation_id.to_string()
    }

    /// The resource it holds or held, if any (the first of several).
    #[getter]
    fn inventory_id(&self) -> Option<String> {
        self.0.inventory_id.map(|id| id.to_string())
    }

    /// Every resource it holds or held, the first one first.
    #[getter]
    fn inventory_ids(&self) -> Vec<String> {
        self.0
            .inventory_ids
            .iter()
            .map(|id| id.to_string())
            .collect()
    }

    /// Who asked.
    #[getter]
    fn username(&self) -> &str {
        &self.0.username
    }

    /// `queued`, `provisioning`, `ready`, `released`, `expired`, `timed_out` or `cancelled`.
    #[getter]
    fn state(&self) -> &'static str {
        self.0.state.as_str()
    }

    /// When it was requested (unix seconds).
    #[getter]
    fn created(&self) -> u64 {
        self.0.created
    }

    /// When its lease ends or ended (unix seconds).
    #[getter]
    fn expires(&self) -> u64 {
        self.0.expires
    }

    /// Connection details once ready (shown to its owner or an admin only).
    #[getter]
    fn connection(&self) -> Option<Connection> {
        self.0.connection.as_deref().cloned().map(Connection)
    }

    /// 1-based place in the queue while queued.
    #[getter]
    fn position(&self) -> Option<u32> {
        self.0.position
    }

    fn __repr__(&self) -> String {
        let a = &self.0;
        repr(
            "AllocationInfo",
            &[
                ("allocation_id", quote(&a.allocation_id.to_string())),
                ("state", quote(a.state.as_str())),
                ("username", quote(&a.username)),
                (
                    "inventory_id",
                    repr_opt(a.inventory_id, |id| quote(&id.to_string())),
                ),
                ("expires", a.expires.to_string()),
            ],
        )
    }
}

/// What a request needs of its GPUs.
#[pyclass(frozen, eq, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuRequirement(pub allocate_core::GpuRequirement);

#[pymethods]
impl GpuRequirement {
    /// A GPU's label must contain this, ignoring case.
    #[getter]
    fn label(&self) -> Option<&str> {
        self.0.label.as_deref()
    }

    /// Each matching GPU has at least this much memory (GB).
    #[getter]
    fn min_memory_gb(&self) -> u64 {
        self.0.min_memory_gb
    }

    /// How many GPUs must match.
    #[getter]
    fn count(&self) -> u32 {
        self.0.count
    }

    fn __repr__(&self) -> String {
        gpu_requirement_repr(&self.0)
    }
}

fn gpu_requirement_repr(g: &allocate_core::GpuRequirement) -> String {
    repr(
        "GpuRequirement",
        &[
            ("label", repr_opt(g.label.as_deref(), quote)),
            ("min_memory_gb", g.min_memory_gb.to_string()),
            ("count", g.count.to_string()),
        ],
    )
}

/// What a request asks for: the contract's `requirements`, checked as the server checks them.
#[pyclass(frozen, eq, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirements(pub allocate_core::Requirements);

impl Requirements {
    /// Reads keyword arguments as the contract's `requirements` object (unknown fields refused).
    pub fn from_fields(fields: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let map = match fields {
            Some(f) => dict_to_json(f, "requirements")?,
            None => Default::default(),
        };
        allocate_core::Requirements::from_json(
            &Value::Object(map),
            "requirements",
            &Limits::default(),
        )
        .map(Requirements)
        .map_err(errors::from_core)
    }
}

#[pymethods]
impl Requirements {
    #[new]
    #[pyo3(signature = (**fields))]
    fn new(fields: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Self::from_fields(fields)
    }

    /// Every tag must be among the resource's labels.
    #[getter]
    fn tags(&self) -> Vec<String> {
        self.0.tags.clone()
    }

    /// Who holds the allocation.
    #[getter]
    fn username(&self) -> &str {
        &self.0.username
    }

    /// How long to wait in the queue (seconds); 0 means only if something is free now.
    #[getter]
    fn allocation_timeout_seconds(&self) -> u64 {
        self.0.allocation_timeout_seconds
    }

    /// When the lease should end (unix seconds), or None for the default lease.
    #[getter]
    fn expires(&self) -> Option<u64> {
        self.0.expires
    }

    /// The resource's `type` must equal this.
    #[getter(r#type)]
    fn kind(&self) -> Option<&str> {
        self.0.kind.as_deref()
    }

    /// At least this many CPUs.
    #[getter]
    fn min_cpu_count(&self) -> Option<u64> {
        self.0.min_cpu_count
    }

    /// At least this much memory (GB).
    #[getter]
    fn min_memory_gb(&self) -> Option<u64> {
        self.0.min_memory_gb
    }

    /// GPU needs.
    #[getter]
    fn gpu(&self) -> Option<GpuRequirement> {
        self.0.gpu.clone().map(GpuRequirement)
    }

    /// None of these may be among the resource's labels.
    #[getter]
    fn exclude_tags(&self) -> Vec<String> {
        self.0.exclude_tags.clone()
    }

    /// End the allocation when the requesting client disconnects.
    #[getter]
    fn release_on_disconnect(&self) -> bool {
        self.0.release_on_disconnect
    }

    /// How many distinct resources are granted together (1 unless asked).
    #[getter]
    fn count(&self) -> u32 {
        self.0.count
    }

    fn __repr__(&self) -> String {
        let r = &self.0;
        let mut fields = vec![
            ("username", quote(&r.username)),
            ("tags", quote_list(&r.tags)),
            (
                "allocation_timeout_seconds",
                r.allocation_timeout_seconds.to_string(),
            ),
        ];
        let optional = [
            ("expires", r.expires.map(|e| e.to_string())),
            ("type", r.kind.as_deref().map(quote)),
            ("min_cpu_count", r.min_cpu_count.map(|n| n.to_string())),
            ("min_memory_gb", r.min_memory_gb.map(|n| n.to_string())),
            ("gpu", r.gpu.as_ref().map(gpu_requirement_repr)),
            (
                "exclude_tags",
                (!r.exclude_tags.is_empty()).then(|| quote_list(&r.exclude_tags)),
            ),
            (
                "release_on_disconnect",
                r.release_on_disconnect.then(|| "True".to_owned()),
            ),
            ("count", (r.count != 1).then(|| r.count.to_string())),
        ];
        fields.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        repr("Requirements", &fields)
    }
}

/// A resource the engine is considering for a request (what a matching policy sees).
#[pyclass(frozen, module = "allocate._allocate")]
#[derive(Clone, Debug)]
pub struct Candidate {
    inventory_id: uuid::Uuid,
    agent_id: uuid::Uuid,
    spec: ResourceSpec,
}

impl Candidate {
    /// A copy of the engine's borrowed candidate.
    pub fn of(c: &CoreCandidate<'_>) -> Self {
        Candidate {
            inventory_id: c.inventory_id,
            agent_id: c.agent_id,
            spec: c.spec.clone(),
        }
    }
}

#[pymethods]
impl Candidate {
    /// The resource's id.
    #[getter]
    fn inventory_id(&self) -> String {
        self.inventory_id.to_string()
    }

    /// The agent that owns it.
    #[getter]
    fn agent_id(&self) -> String {
        self.agent_id.to_string()
    }

    /// Its labels.
    #[getter]
    fn labels(&self) -> Vec<String> {
        self.spec.labels.clone()
    }

    /// Number of CPUs.
    #[getter]
    fn cpu_count(&self) -> u64 {
        self.spec.cpu_count
    }

    /// Memory in GB.
    #[getter]
    fn memory_gb(&self) -> u64 {
        self.spec.memory_gb
    }

    /// Its GPUs.
    #[getter]
    fn gpu(&self) -> Vec<Gpu> {
        gpus(&self.spec.gpu)
    }

    /// Free-text type.
    #[getter(r#type)]
    fn kind(&self) -> &str {
        &self.spec.kind
    }

    fn __repr__(&self) -> String {
        repr(
            "Candidate",
            &[
                ("inventory_id", quote(&self.inventory_id.to_string())),
                ("labels", quote_list(&self.spec.labels)),
                ("cpu_count", self.spec.cpu_count.to_string()),
                ("memory_gb", self.spec.memory_gb.to_string()),
                ("gpu", gpus_repr(&self.spec.gpu)),
                ("type", quote(&self.spec.kind)),
            ],
        )
    }
}
