//! Awaitables for asyncio: a Rust future runs as a task on the module's tokio runtime, and its
//! result reaches an `asyncio.Future` of the caller's running loop through
//! `loop.call_soon_threadsafe`, the one loop method that may be called from another thread.
//!
//! Cancelling the asyncio future aborts the tokio task, which drops the Rust future and so
//! cancels what it was doing (a future that must clean up does it in a drop guard). Neither
//! side waits for the other while holding the GIL: the task takes it only to hand the result
//! over.

use crate::runtime::runtime;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyTuple};
use pyo3::IntoPyObjectExt;
use std::future::Future;

/// Runs `future` on the runtime; returns an `asyncio.Future` of the running loop that takes
/// its output (or its exception). Raises `RuntimeError` outside a running loop.
pub fn awaitable<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let waiter = event_loop.call_method0("create_future")?;
    let target = (event_loop.unbind(), waiter.clone().unbind());
    let task = runtime().spawn(async move {
        let output = future.await;
        Python::attach(|py| deliver(py, target, output));
    });
    let abort = task.abort_handle();
    let on_done = PyCFunction::new_closure(
        py,
        Some(c"allocate_abort_on_cancel"),
        None,
        move |args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
            if args.get_item(0)?.call_method0("cancelled")?.is_truthy()? {
                abort.abort();
            }
            Ok(())
        },
    )?;
    waiter.call_method1("add_done_callback", (on_done,))?;
    Ok(waiter)
}

/// Hands `output` to the waiting future on its loop's thread. When the loop has closed,
/// nobody waits for it any more and it is dropped.
fn deliver<T>(py: Python<'_>, (event_loop, waiter): (Py<PyAny>, Py<PyAny>), output: PyResult<T>)
where
    T: for<'a> IntoPyObject<'a>,
{
    let (ok, value) = match output.and_then(|value| value.into_py_any(py)) {
        Ok(value) => (true, value),
        Err(err) => (false, err.into_value(py).into_any()),
    };
    let delivered = wrap_pyfunction!(complete, py).and_then(|complete| {
        event_loop.call_method1(py, "call_soon_threadsafe", (complete, waiter, ok, value))
    });
    // `RuntimeError: Event loop is closed`: nothing is left to tell.
    drop(delivered);
}

/// Sets the future's result (`ok`) or exception, unless it is done already (cancelled while
/// the result was on its way).
#[pyfunction]
fn complete(waiter: &Bound<'_, PyAny>, ok: bool, value: Bound<'_, PyAny>) -> PyResult<()> {
    if waiter.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    let method = if ok { "set_result" } else { "set_exception" };
    waiter.call_method1(method, (value,)).map(drop)
}
