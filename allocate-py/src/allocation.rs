//! `Allocation`: one request on `WEBSOCKET /allocate/`, from queueing to release.
//!
//! A thin wrapper over `allocate_client::Allocation`: its task owns the socket and keeps
//! reading after `ready` (so the socket answers the server's pings), and its
//! `AllocationState` is the one record of where the request stands. This wrapper adds what
//! Python needs: a request that starts on first use, a wait bounded by the queue wait,
//! `on_queued` callbacks, and giving up (timeout, Ctrl-C) by deleting the request.

use crate::aio::awaitable;
use crate::explain::findings;
use crate::http::{allocation_error, client_error};
use crate::outputs::Queued;
use crate::pylog;
use crate::runtime::{lock, runtime, wait, wait_for};
use crate::types::{quote, repr, repr_opt, AllocationInfo, Connection};
use allocate_client::{AllocateRequest, AllocationError, AllocationState, Phase};
use allocate_core::ErrorCode;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// How long releasing or cancelling on the way out (timeout, Ctrl-C) may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A started request and when waiting for it gives up.
#[derive(Debug)]
struct Started {
    /// Shared with the waits on it (a mutex guard cannot be held while waiting).
    request: Arc<allocate_client::Allocation>,
    deadline: Instant,
}

/// What this wrapper adds to the request's own state.
#[derive(Debug, Default)]
struct Local {
    started: Option<Started>,
    /// Set when Python gave up or released: this state wins over the socket's.
    ended: Option<&'static str>,
    /// The last queue report given to Python, so each change is reported once.
    reported: Option<(u32, u64, Option<u64>)>,
}

/// One allocation request. `with client.allocate(...) as a:` sends it, waits until it is ready
/// (calling `on_queued` with each new queue position), and releases it when the block ends,
/// also when the block raises. Outside a `with`: `start()`, `wait()`, `release()`.
#[pyclass(frozen, module = "allocate._allocate")]
#[derive(Debug)]
pub struct Allocation {
    client: allocate_client::Client,
    /// The message sent on the socket: `{"requirements": {...}}`.
    request: AllocateRequest,
    /// How long `wait` waits, from `start`.
    wait_budget: Duration,
    on_queued: Option<Py<PyAny>>,
    local: Mutex<Local>,
}

/// Python's name for where a request stands.
fn state_name(state: &AllocationState) -> &'static str {
    match state.phase() {
        Phase::Requested => "waiting",
        phase => phase.as_str(),
    }
}

impl Allocation {
    /// An allocation that will send `requirements` (a JSON object) when started.
    pub fn new(
        client: allocate_client::Client,
        requirements: serde_json::Map<String, serde_json::Value>,
        wait_budget: Duration,
        on_queued: Option<Py<PyAny>>,
    ) -> Self {
        Allocation {
            client,
            request: AllocateRequest::from_json(requirements),
            wait_budget,
            on_queued,
            local: Mutex::new(Local::default()),
        }
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        lock(&self.local)
    }

    /// The request's state, once started.
    fn snapshot(&self) -> Option<AllocationState> {
        self.local().started.as_ref().map(|s| s.request.state())
    }

    /// Starts the request unless it runs (or was released first); returns when waiting gives
    /// up.
    fn ensure_started(&self) -> Instant {
        let mut local = self.local();
        if let Some(s) = &local.started {
            return s.deadline;
        }
        let deadline = Instant::now() + self.wait_budget;
        if local.ended.is_none() {
            let _runtime = runtime().enter();
            local.started = Some(Started {
                request: Arc::new(self.client.start_allocate(self.request.clone())),
                deadline,
            });
        }
        deadline
    }

    /// Closes the socket (the task ends on its own once it has).
    fn stop_socket(&self) {
        if let Some(s) = &self.local().started {
            s.request.close();
        }
    }

    /// Calls `on_queued`, or logs the position when there is none.
    fn report(&self, py: Python<'_>, queued: Queued) -> PyResult<()> {
        match &self.on_queued {
            Some(callback) => callback.call1(py, (queued,)).map(drop),
            None => {
                let eta = queued
                    .eta
                    .map(|t| format!(", the first matching lease ends at {t}"))
                    .unwrap_or_default();
                let line = format!(
                    "allocation {} is waiting at position {} in the queue (matching resources: {}{eta})",
                    queued.allocation_id, queued.position, queued.matching_resources
                );
                pylog::log(py, "info", &line)
            }
        }
    }

    /// The queue position to report, if it changed since the last report.
    fn unreported(&self, state: &AllocationState) -> Option<Queued> {
        let (id, position) = (state.allocation_id()?, state.position()?);
        let now = (
            position,
            state.matching_resources().unwrap_or(0),
            state.eta(),
        );
        let mut local = self.local();
        if local.reported == Some(now) {
            return None;
        }
        local.reported = Some(now);
        Some(Queued {
            allocation_id: id.to_string(),
            position,
            matching_resources: now.1,
            eta: now.2,
            explain: state.explain().map(findings),
            limit: state.quota().map(|q| q.as_str().to_owned()),
        })
    }

    /// Gives up a request (timeout, Ctrl-C, a callback that raised), leaving it in `state`:
    /// deletes it on the server when its id is known, so one that became ready meanwhile is
    /// freed too, and closes the socket, which cancels it otherwise.
    fn abandon(&self, py: Python<'_>, state: &'static str) {
        if let Some(id) = self.snapshot().and_then(|s| s.allocation_id()) {
            let _ = wait_for(py, CLEANUP_TIMEOUT, self.client.release(id));
        }
        self.abandoned(state);
    }

    /// [`Allocation::abandon`] for asyncio.
    async fn abandon_async(&self, state: &'static str) {
        if let Some(id) = self.snapshot().and_then(|s| s.allocation_id()) {
            let _ = tokio::time::timeout(CLEANUP_TIMEOUT, self.client.release(id)).await;
        }
        self.abandoned(state);
    }

    /// Records `state` unless the request ended on its own, then closes the socket (whose
    /// end then counts as this state, not as a lost connection).
    fn abandoned(&self, state: &'static str) {
        {
            let mut local = self.local();
            let ended = local
                .started
                .as_ref()
                .is_some_and(|s| s.request.state().phase().has_ended());
            if !ended {
                local.ended.get_or_insert(state);
            }
        }
        self.stop_socket();
    }

    /// What the request holds, once it has been ready.
    fn lease(&self) -> Option<allocate_client::Lease> {
        self.snapshot()?.lease().cloned()
    }

    /// `new`, `waiting`, `queued`, ... as `Allocation.state` says it.
    fn state_str(&self) -> &'static str {
        let local = self.local();
        // Recorded only while the request had not ended, so what the socket says after it (a
        // close or `released` that this caused) does not count.
        if let Some(ended) = local.ended {
            return ended;
        }
        match &local.started {
            Some(s) => state_name(&s.request.state()),
            None => "new",
        }
    }

    /// The id, once the server has given one.
    fn id(&self) -> PyResult<Uuid> {
        self.snapshot()
            .and_then(|s| s.allocation_id())
            .ok_or_else(|| PyRuntimeError::new_err("the server has not answered this request yet"))
    }

    /// What waiting for `ready` does next, given when it gives up.
    fn next_step(&self, deadline: Instant) -> Step {
        let Some(state) = self.snapshot() else {
            let ended = self.local().ended.unwrap_or("released");
            let message = format!("the allocation is {ended}");
            return Step::Fail(crate::errors::AllocateError::new_err(message));
        };
        if let Some(queued) = self.unreported(&state) {
            return Step::Report(queued);
        }
        if let Some(failure) = state.failure() {
            self.stop_socket();
            return Step::Fail(allocation_error(failure.clone()));
        }
        if state.phase().is_held() {
            return Step::Ready;
        }
        if state.phase().has_ended() {
            let error = AllocationError::Ended(state.phase());
            return Step::Fail(allocation_error(error));
        }
        if Instant::now() >= deadline {
            return Step::TimedOut;
        }
        let limit = deadline.saturating_duration_since(Instant::now());
        let request = self.local().started.as_ref().map(|s| s.request.clone());
        Step::Wait(limit, request)
    }

    /// The error of a wait that gave up.
    fn timeout_error(&self) -> PyErr {
        crate::errors::AllocationTimeout::new_err(format!(
            "the server did not answer within {:.1} s",
            self.wait_budget.as_secs_f64()
        ))
    }

    fn wait_ready(&self, py: Python<'_>) -> PyResult<()> {
        let deadline = self.ensure_started();
        loop {
            match self.next_step(deadline) {
                Step::Ready => return Ok(()),
                Step::Fail(err) => return Err(err),
                Step::Report(queued) => {
                    if let Err(err) = self.report(py, queued) {
                        self.abandon(py, "released");
                        return Err(err);
                    }
                }
                Step::TimedOut => {
                    self.abandon(py, "timed_out");
                    return Err(self.timeout_error());
                }
                Step::Wait(limit, request) => {
                    if let Err(err) = wait_for(py, limit, changed(request)) {
                        self.abandon(py, "released");
                        return Err(err);
                    }
                }
            }
        }
    }

    /// [`Allocation::wait_ready`] for asyncio, on the runtime. `on_queued` is called on
    /// `event_loop`'s thread (`call_soon_threadsafe`), so what it raises goes to the loop's
    /// exception handler. When the future is dropped before it ends (the awaiting task was
    /// cancelled), the request is given up as Ctrl-C gives it up.
    async fn wait_ready_async(this: Py<Self>, event_loop: Py<PyAny>) -> PyResult<()> {
        let guard = AbandonOnDrop(Some(this));
        let allocation = guard.allocation();
        let deadline = allocation.ensure_started();
        let outcome = loop {
            match allocation.next_step(deadline) {
                Step::Ready => break Ok(()),
                Step::Fail(err) => break Err(err),
                Step::Report(queued) => {
                    let report =
                        |py: Python<'_>| allocation.report_soon(py, event_loop.bind(py), queued);
                    crate::aio::attach(report).unwrap_or(Ok(()))?
                }
                Step::TimedOut => {
                    allocation.abandon_async("timed_out").await;
                    break Err(allocation.timeout_error());
                }
                Step::Wait(limit, request) => {
                    let _ = tokio::time::timeout(limit, changed(request)).await;
                }
            }
        };
        guard.disarm();
        outcome
    }

    /// Calls `on_queued` soon on `event_loop`'s thread, or logs the position now.
    fn report_soon(
        &self,
        py: Python<'_>,
        event_loop: &Bound<'_, PyAny>,
        queued: Queued,
    ) -> PyResult<()> {
        match &self.on_queued {
            Some(callback) => event_loop
                .call_method1("call_soon_threadsafe", (callback, queued))
                .map(drop),
            None => self.report(py, queued),
        }
    }

    /// The allocation to delete for a release: `None` when it has ended already (its socket is
    /// closed then), `Some(None)` when the server has not given an id yet.
    fn release_target(&self) -> Option<Option<Uuid>> {
        let state = self.snapshot();
        if state.as_ref().is_some_and(|s| s.phase().has_ended()) || self.local().ended.is_some() {
            self.stop_socket();
            return None;
        }
        Some(state.and_then(|s| s.allocation_id()))
    }

    /// Ends the allocation, also when it ended on the server already (expired, or released by
    /// someone else).
    async fn release_call(this: Py<Self>) -> PyResult<()> {
        let allocation = this.get();
        let Some(target) = allocation.release_target() else {
            return Ok(());
        };
        if let Some(id) = target {
            match allocation.client.release(id).await {
                Ok(()) => {}
                // Ended on the server already (expired, or released by someone else).
                Err(allocate_client::Error::Refused { refusal, .. })
                    if refusal.error_code() == Some(ErrorCode::NotFound) => {}
                Err(err) => return Err(client_error(err)),
            }
        }
        allocation.abandoned("released");
        Ok(())
    }

    /// The new lease end for `extend(expires, seconds=...)`, as a future that owns what it
    /// needs.
    fn extend_call(
        &self,
        expires: Option<u64>,
        seconds: Option<u64>,
    ) -> PyResult<impl Future<Output = PyResult<u64>> + Send> {
        let id = self.id()?;
        let expires = match (expires, seconds) {
            (Some(t), None) => t,
            (None, Some(more)) => self
                .lease()
                .map(|l| l.expires)
                .ok_or_else(|| PyRuntimeError::new_err("the allocation is not ready"))?
                .saturating_add(more),
            _ => {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "extend() takes either expires or seconds",
                ))
            }
        };
        let request = self.local().started.as_ref().map(|s| s.request.clone());
        let client = self.client.clone();
        Ok(async move {
            let info = match request {
                // Through the request, so its state takes the new end.
                Some(request) => request.extend(expires).await,
                None => client.extend(id, expires).await,
            };
            Ok(info.map_err(client_error)?.expires)
        })
    }

    /// The server's record of this allocation, as a future that owns what it needs.
    fn info_call(&self) -> PyResult<impl Future<Output = PyResult<AllocationInfo>> + Send> {
        let id = self.id()?;
        let client = self.client.clone();
        Ok(async move {
            let info = client.allocation(id).await.map_err(client_error)?;
            Ok(AllocationInfo(info))
        })
    }
}

/// What waiting for `ready` does next.
enum Step {
    Ready,
    Fail(PyErr),
    /// Tell Python the new queue position, then look again.
    Report(Queued),
    TimedOut,
    /// Wait at most this long for the request's state to change.
    Wait(Duration, Option<Arc<allocate_client::Allocation>>),
}

/// Resolves when `request`'s state changes (at once without a request).
async fn changed(request: Option<Arc<allocate_client::Allocation>>) {
    if let Some(request) = request {
        request.changed().await;
    }
}

/// Gives up the allocation if dropped armed: an async wait that was cancelled.
struct AbandonOnDrop(Option<Py<Allocation>>);

impl AbandonOnDrop {
    fn allocation(&self) -> &Allocation {
        self.0.as_ref().expect("armed until disarmed").get()
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if let Some(this) = self.0.take() {
            runtime().spawn(async move { this.get().abandon_async("released").await });
        }
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.stop_socket();
    }
}

#[pymethods]
impl Allocation {
    /// Sends the request without waiting; returns the allocation.
    fn start(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf.get().ensure_started();
        slf
    }

    /// Waits until the allocation is ready; returns it. Raises `AllocationTimeout` when nothing
    /// became ready in time, or the server's refusal (`InvalidRequest`, ...); a request given up
    /// on (timeout, Ctrl-C, an `on_queued` that raised) is cancelled on the server.
    fn wait(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().wait_ready(slf.py())?;
        Ok(slf)
    }

    /// `wait` for asyncio: an awaitable that is done when the allocation is ready. Cancelling
    /// it gives the request up (deleted on the server, its socket closed).
    fn _wait_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let this = slf.clone().unbind();
        awaitable(py, Self::wait_ready_async(this, event_loop.unbind()))
    }

    /// Ends the allocation (or cancels the waiting request). Harmless when it has already ended.
    fn release(slf: &Bound<'_, Self>) -> PyResult<()> {
        wait(slf.py(), Self::release_call(slf.clone().unbind()))?
    }

    /// `release` for asyncio.
    fn _release_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(slf.py(), Self::release_call(slf.clone().unbind()))
    }

    /// Moves the lease end: to `expires` (unix seconds), or `seconds` later than it is now.
    /// Returns the new end, which the server caps at its maximum lease.
    #[pyo3(signature = (expires = None, *, seconds = None))]
    fn extend(&self, py: Python<'_>, expires: Option<u64>, seconds: Option<u64>) -> PyResult<u64> {
        wait(py, self.extend_call(expires, seconds)?)?
    }

    /// `extend` for asyncio.
    #[pyo3(signature = (expires = None, *, seconds = None))]
    fn _extend_async<'py>(
        &self,
        py: Python<'py>,
        expires: Option<u64>,
        seconds: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.extend_call(expires, seconds)?)
    }

    /// The server's record of this allocation.
    fn info(&self, py: Python<'_>) -> PyResult<AllocationInfo> {
        wait(py, self.info_call()?)?
    }

    /// `info` for asyncio.
    fn _info_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.info_call()?)
    }

    /// The allocation's id (None until the server has answered).
    #[getter]
    fn allocation_id(&self) -> Option<String> {
        self.snapshot()?.allocation_id().map(|id| id.to_string())
    }

    /// The resource it holds (None until ready).
    #[getter]
    fn inventory_id(&self) -> Option<String> {
        self.lease().map(|l| l.inventory_id.to_string())
    }

    /// How to reach the resource (None until ready).
    #[getter]
    fn connection(&self) -> Option<Connection> {
        self.lease().map(|l| Connection(l.connection))
    }

    /// When the lease ends (unix seconds; None until ready).
    #[getter]
    fn expires(&self) -> Option<u64> {
        self.lease().map(|l| l.expires)
    }

    /// The latest place in the queue while queued.
    #[getter]
    fn position(&self) -> Option<u32> {
        self.snapshot()?.position()
    }

    /// `new`, `waiting`, `queued`, `ready`, `offline` (ready, its agent away), `released`,
    /// `expired`, `timed_out` or `failed`.
    #[getter]
    fn state(&self) -> &'static str {
        self.state_str()
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        Self::wait(slf)
    }

    /// Releases the allocation. When the block raised, a failure to release is logged and the
    /// block's exception goes on.
    fn __exit__(
        slf: &Bound<'_, Self>,
        exc_type: Option<&Bound<'_, PyType>>,
        exc_value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc_value, traceback);
        let py = slf.py();
        match wait(py, Self::release_call(slf.clone().unbind())).and_then(|r| r) {
            Err(err) if exc_type.is_some() => {
                let line = format!("could not release the allocation: {err}");
                pylog::log(py, "warning", &line)?;
            }
            result => result?,
        }
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = self.snapshot();
        let id = |id: Option<Uuid>| repr_opt(id, |id| quote(&id.to_string()));
        let mut fields = vec![
            (
                "allocation_id",
                id(state.as_ref().and_then(|s| s.allocation_id())),
            ),
            ("state", quote(self.state_str())),
        ];
        if let Some(p) = state.as_ref().and_then(|s| s.position()) {
            fields.push(("position", p.to_string()));
        }
        if let Some(lease) = self.lease() {
            fields.push(("inventory_id", id(Some(lease.inventory_id))));
            fields.push((
                "connection",
                crate::types::connection_repr(&lease.connection),
            ));
            fields.push(("expires", lease.expires.to_string()));
        }
        repr("Allocation", &fields)
    }
}
