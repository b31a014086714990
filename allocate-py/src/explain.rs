//! "Why not" (API.md) as Python classes: `Explanation` and its `Finding`s, what
//! `Engine.explain`, `Client.match` and `Client.explain` answer.

use crate::convert::dict_to_json;
use crate::errors;
use crate::types::{quote, repr};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;

/// One reason some resources cannot serve a request: its `reason` code, how many resources it
/// concerns (`count`) and a sentence (`message`).
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The reason code: a requirement (`tags`, `gpu_label`, ...) or a state (`allocated`, ...).
    pub reason: String,
    /// How many resources it concerns.
    pub count: u64,
    /// One sentence saying it.
    pub message: String,
}

#[pymethods]
impl Finding {
    fn __repr__(&self) -> String {
        repr(
            "Finding",
            &[
                ("reason", quote(&self.reason)),
                ("count", self.count.to_string()),
                ("message", quote(&self.message)),
            ],
        )
    }
}

/// Why a request is or is not served now: how many registered resources match it, how many
/// of those are free, and the findings (`explain`).
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// Registered resources that could ever satisfy the request.
    pub matching_resources: u64,
    /// Matching resources that could be allocated now.
    pub free: u64,
    /// The findings, requirements first (most first), then states.
    pub explain: Vec<Finding>,
}

#[pymethods]
impl Explanation {
    fn __repr__(&self) -> String {
        repr(
            "Explanation",
            &[
                ("matching_resources", self.matching_resources.to_string()),
                ("free", self.free.to_string()),
                ("explain", format!("[{} findings]", self.explain.len())),
            ],
        )
    }
}

impl From<allocate_core::Explanation> for Explanation {
    fn from(e: allocate_core::Explanation) -> Self {
        Explanation {
            matching_resources: e.matching_resources,
            free: e.free,
            explain: findings(&e.findings),
        }
    }
}

/// The Python objects of an explanation's findings.
pub fn findings(list: &[allocate_core::Finding]) -> Vec<Finding> {
    list.iter()
        .map(|f| Finding {
            reason: f.reason.as_str().to_owned(),
            count: f.count,
            message: f.message.clone(),
        })
        .collect()
}

/// Reads keyword arguments as the contract's `requirements` object for a dry run: as for a
/// request, but `username` may be left out.
pub fn dry_run_requirements(
    fields: Option<&Bound<'_, PyDict>>,
    limits: &allocate_core::Limits,
) -> PyResult<allocate_core::Requirements> {
    let map = match fields {
        Some(f) => dict_to_json(f, "requirements")?,
        None => Default::default(),
    };
    allocate_core::wire::explain::match_requirements(&Value::Object(map), "requirements", limits)
        .map_err(errors::from_core)
}
