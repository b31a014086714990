//! A matching policy written in Python, stored behind allocate-core's `MatchPolicy` trait.

use crate::runtime::lock;
use crate::types::{Candidate, Requirements};
use allocate_core::{Candidate as CoreCandidate, MatchPolicy, Requirements as CoreRequirements};
use pyo3::prelude::*;
use std::fmt;
use std::sync::Mutex;

/// A Python object with a `veto(request, candidate) -> bool` and/or a
/// `score(request, candidate) -> int | None` method. The engine calls them with the GIL
/// acquired for the call. A hook that raises counts as "no opinion"; its exception is kept
/// and raised once the engine call returns ([`PyPolicy::take_error`]).
pub struct PyPolicy {
    object: Py<PyAny>,
    has_veto: bool,
    has_score: bool,
    /// The first exception a hook raised since the last `take_error`.
    error: Mutex<Option<PyErr>>,
}

impl fmt::Debug for PyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PyPolicy")
            .field("object", &self.object)
            .field("has_veto", &self.has_veto)
            .field("has_score", &self.has_score)
            .finish_non_exhaustive()
    }
}

impl PyPolicy {
    /// Wraps `object`, which must have a callable `veto` or `score` (or both).
    pub fn new(object: &Bound<'_, PyAny>) -> PyResult<Self> {
        let has = |name: &str| -> PyResult<bool> {
            Ok(object.hasattr(name)? && object.getattr(name)?.is_callable())
        };
        let (has_veto, has_score) = (has("veto")?, has("score")?);
        if !has_veto && !has_score {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "a matching policy needs a veto(request, candidate) or score(request, candidate) method; {} has neither",
                object.get_type().name()?
            )));
        }
        Ok(PyPolicy {
            object: object.clone().unbind(),
            has_veto,
            has_score,
            error: Mutex::new(None),
        })
    }

    /// The exception a hook raised during the last engine call, if any.
    pub fn take_error(&self) -> Option<PyErr> {
        lock(&self.error).take()
    }

    fn keep(&self, err: PyErr) {
        lock(&self.error).get_or_insert(err);
    }

    /// Calls hook `name` with Python views of the request and candidate.
    fn call<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        request: &CoreRequirements,
        candidate: &CoreCandidate<'_>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let args = (Requirements(request.clone()), Candidate::of(candidate));
        self.object.bind(py).call_method1(name, args)
    }
}

impl MatchPolicy for PyPolicy {
    fn veto(&self, request: &CoreRequirements, candidate: &CoreCandidate<'_>) -> bool {
        if !self.has_veto {
            return false;
        }
        Python::attach(|py| {
            match self
                .call(py, "veto", request, candidate)
                .and_then(|answer| answer.is_truthy())
            {
                Ok(veto) => veto,
                Err(e) => {
                    self.keep(e);
                    false
                }
            }
        })
    }

    fn score(&self, request: &CoreRequirements, candidate: &CoreCandidate<'_>) -> Option<i64> {
        if !self.has_score {
            return None;
        }
        Python::attach(|py| {
            match self
                .call(py, "score", request, candidate)
                .and_then(|answer| answer.extract::<Option<i64>>())
            {
                Ok(score) => score,
                Err(e) => {
                    self.keep(e);
                    None
                }
            }
        })
    }
}
