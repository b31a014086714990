//! Awaitables for asyncio: a Rust future runs as a task on the module's tokio runtime, and its
//! result reaches an `asyncio.Future` of the caller's running loop through
//! `loop.call_soon_threadsafe`, the one loop method that may be called from another thread.
//!
//! Cancelling the asyncio future aborts the tokio task, which drops the Rust future and so
//! cancels what it was doing (a future that must clean up does it in a drop guard). Neither
//! side waits for the other while holding the GIL: the task takes it only to hand the result
//! over, through [`attach`].
//!
//! A runtime thread must not hold the GIL while the interpreter finalizes (CPython aborts
//! with "PyGILState_Release: thread state must be current"): the awaiting code may have its
//! result, and the program may end, before the thread that handed it over has let go. So
//! [`attach`] counts the threads inside it, and an `atexit` hook ([`register_atexit`]) stops
//! new ones and waits for those inside before finalization begins.

use crate::runtime::runtime;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyTuple};
use pyo3::IntoPyObjectExt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Set by the `atexit` hook: runtime threads no longer take the GIL.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Runtime threads inside [`attach`].
static ATTACHED: AtomicUsize = AtomicUsize::new(0);

/// How long the `atexit` hook waits for runtime threads to let go of the GIL.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Runs `f` with the GIL on a runtime thread; `None` once the interpreter is exiting.
pub fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    /// Counts the thread out however `f` ends.
    struct Inside;
    impl Drop for Inside {
        fn drop(&mut self) {
            ATTACHED.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // Counted in before the flag is read: the hook sets the flag, then waits for the count.
    ATTACHED.fetch_add(1, Ordering::SeqCst);
    let _inside = Inside;
    if EXITING.load(Ordering::SeqCst) {
        return None;
    }
    Some(Python::attach(f))
}

/// Registers the `atexit` hook that stops [`attach`] before the interpreter finalizes.
pub fn register_atexit(py: Python<'_>) -> PyResult<()> {
    let hook = wrap_pyfunction!(stop_attaching, py)?;
    py.import("atexit")?.call_method1("register", (hook,))?;
    Ok(())
}

/// The `atexit` hook: no runtime thread takes the GIL from now on; waits (GIL released, at
/// most [`EXIT_WAIT`]) for those that have it or wait for it.
#[pyfunction]
fn stop_attaching(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let start = Instant::now();
        while ATTACHED.load(Ordering::SeqCst) > 0 && start.elapsed() < EXIT_WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

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
        // Exiting: the loop that waits for it is gone.
        let _ = attach(|py| deliver(py, target, output));
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
