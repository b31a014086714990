//! The module's tokio runtime, and waiting on it from Python: the GIL released, Ctrl-C honoured.

use pyo3::prelude::*;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::time::error::Elapsed;

/// How often a blocked call wakes to let Python handle signals (Ctrl-C raises within this).
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Worker threads of the runtime: sockets and the in-process server are light work.
const WORKER_THREADS: usize = 2;

/// The runtime every socket, HTTP call and in-process server of this module runs on. It is
/// created on first use and lives until the process ends (it is not usable after `fork`).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("allocate-io")
            .enable_all()
            .build()
            .expect("a tokio runtime can be started")
    })
}

/// Runs `future` to completion on the runtime with the GIL released, waking every
/// [`SIGNAL_POLL`] to run Python's signal handlers. A handler's exception (`KeyboardInterrupt`)
/// drops the future, which cancels what it was doing, and is returned.
pub fn wait<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let mut future = std::pin::pin!(future);
    loop {
        let slice = py.detach(|| {
            runtime().block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut future).await })
        });
        match slice {
            Ok(output) => return Ok(output),
            Err(_elapsed) => py.check_signals()?,
        }
    }
}

/// [`wait`] for at most `limit`: `Err(Elapsed)` when `future` has not finished by then.
pub fn wait_for<F>(
    py: Python<'_>,
    limit: Duration,
    future: F,
) -> PyResult<Result<F::Output, Elapsed>>
where
    F: Future + Send,
    F::Output: Send,
{
    // The timer is made inside the future: it needs the runtime, which this thread is not in.
    wait(py, async move { tokio::time::timeout(limit, future).await })
}

/// Locks `mutex`, also after a panic while it was held: every mutex of this module guards
/// plain values that are assigned whole, so they are consistent whatever happened. (The
/// engine's is the exception: it refuses a poisoned lock itself.)
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
