//! `Server` in a build without the cargo feature `server`: the class exists, so the package
//! imports and type-checks the same, but making one raises, naming the missing feature.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// The in-process server, left out of this build (the cargo feature `server` is off).
#[pyclass(frozen, module = "allocate._allocate")]
#[derive(Debug)]
pub struct Server;

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let _ = (args, kwargs);
        Err(PyRuntimeError::new_err(
            "this build of allocate has no in-process Server: it was built without the cargo feature `server`",
        ))
    }
}
