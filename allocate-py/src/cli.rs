//! The `allocate` command line inside the Python package: the console script
//! (`allocate/_cli.py`) hands its arguments to the same implementation as the Rust binary
//! (`allocate-cli`, the cargo feature `cli`, on by default).

use pyo3::prelude::*;
use std::ffi::OsString;

/// Runs the command line `argv` (the program's name first) with the GIL released; returns
/// its exit status.
#[pyfunction]
pub fn _cli_main(py: Python<'_>, argv: Vec<OsString>) -> PyResult<i32> {
    #[cfg(feature = "cli")]
    return Ok(py.detach(|| allocate_cli::main(argv)));
    #[cfg(not(feature = "cli"))]
    {
        let _ = (py, argv);
        Err(pyo3::exceptions::PyRuntimeError::new_err(
            "this build of allocate has no command line (cargo feature `cli`)",
        ))
    }
}
