//! Log lines through Python's `logging`, on the `allocate` logger.

use pyo3::prelude::*;

/// Logs `message` at `level` (`info`, `warning`, ...) on the `allocate` logger.
pub fn log(py: Python<'_>, level: &str, message: &str) -> PyResult<()> {
    py.import("logging")?
        .call_method1("getLogger", ("allocate",))?
        .call_method1(level, ("%s", message))?;
    Ok(())
}

/// Logs a warning from a thread outside Python; a failure to log is ignored (there is nowhere
/// to report it).
pub fn warn(message: &str) {
    Python::attach(|py| {
        let _ = log(py, "warning", message);
    });
}

/// Logs a warning from a task on the runtime, on a blocking thread: taking the GIL must not
/// stall the runtime's workers.
pub fn warn_from_task(message: String) {
    tokio::task::spawn_blocking(move || warn(&message));
}
