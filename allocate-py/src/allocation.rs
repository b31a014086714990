//! `Allocation`: one request on `WEBSOCKET /allocate/`, from queueing to release.
//!
//! A thin wrapper over `allocate_client::Allocation`: its task owns the socket and keeps
//! reading after `ready` (so the socket answers the server's pings), and its
//! `AllocationState` is the one record of where the request stands. This wrapper adds what
//! Python needs: a request that starts on first use, a wait bounded by the queue wait,
//! `on_queued` callbacks, and giving up (timeout, Ctrl-C) by deleting the request.

use crate::errors::NotFound;
use crate::http::{allocation_error, client_error};
use crate::outputs::Queued;
use crate::pylog;
use crate::runtime::{lock, runtime, wait, wait_for};
use crate::types::{quote, repr, repr_opt, AllocationInfo, Connection};
use allocate_client::{AllocateRequest, AllocationError, AllocationState, Phase};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
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
#[pyclass(frozen, module = "allocate")]
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
        })
    }

    /// Gives up a request (timeout, Ctrl-C, a callback that raised), leaving it in `state`:
    /// deletes it on the server when its id is known, so one that became ready meanwhile is
    /// freed too, and closes the socket, which cancels it otherwise.
    fn abandon(&self, py: Python<'_>, state: &'static str) {
        if let Some(id) = self.snapshot().and_then(|s| s.allocation_id()) {
            let _ = wait_for(py, CLEANUP_TIMEOUT, self.client.release(id));
        }
        self.stop_socket();
        let mut local = self.local();
        let ended = local
            .started
            .as_ref()
            .is_some_and(|s| s.request.state().phase().has_ended());
        if !ended {
            local.ended.get_or_insert(state);
        }
    }

    /// What the request holds, once it has been ready.
    fn lease(&self) -> Option<allocate_client::Lease> {
        self.snapshot()?.lease().cloned()
    }

    /// `new`, `waiting`, `queued`, ... as `Allocation.state` says it.
    fn state_str(&self) -> &'static str {
        let local = self.local();
        if let Some(ended) = local.ended {
            let phase = local.started.as_ref().map(|s| s.request.state().phase());
            if !phase.is_some_and(Phase::has_ended) {
                return ended;
            }
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

    fn wait_ready(&self, py: Python<'_>) -> PyResult<()> {
        let deadline = self.ensure_started();
        loop {
            let Some(state) = self.snapshot() else {
                let ended = self.local().ended.unwrap_or("released");
                let message = format!("the allocation is {ended}");
                return Err(crate::errors::AllocateError::new_err(message));
            };
            if let Some(queued) = self.unreported(&state) {
                if let Err(err) = self.report(py, queued) {
                    self.abandon(py, "released");
                    return Err(err);
                }
            }
            if let Some(failure) = state.failure() {
                self.stop_socket();
                return Err(allocation_error(failure.clone()));
            }
            if state.phase().is_held() {
                return Ok(());
            }
            if state.phase().has_ended() {
                let error = AllocationError::Ended(state.phase());
                return Err(allocation_error(error));
            }
            if Instant::now() >= deadline {
                self.abandon(py, "timed_out");
                return Err(crate::errors::AllocationTimeout::new_err(format!(
                    "the server did not answer within {:.1} s",
                    self.wait_budget.as_secs_f64()
                )));
            }
            let limit = deadline.saturating_duration_since(Instant::now());
            let request = self.local().started.as_ref().map(|s| s.request.clone());
            let changed = async move {
                if let Some(request) = request {
                    request.changed().await;
                }
            };
            if let Err(err) = wait_for(py, limit, changed) {
                self.abandon(py, "released");
                return Err(err);
            }
        }
    }

    fn release_now(&self, py: Python<'_>) -> PyResult<()> {
        let state = self.snapshot();
        if state.as_ref().is_some_and(|s| s.phase().has_ended()) || self.local().ended.is_some() {
            self.stop_socket();
            return Ok(());
        }
        if let Some(id) = state.and_then(|s| s.allocation_id()) {
            match wait(py, self.client.release(id))?.map_err(client_error) {
                Ok(()) => {}
                // Ended on the server already (expired, or released by someone else).
                Err(err) if err.is_instance_of::<NotFound>(py) => {}
                Err(err) => return Err(err),
            }
        }
        self.stop_socket();
        self.local().ended = Some("released");
        Ok(())
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

    /// Ends the allocation (or cancels the waiting request). Harmless when it has already ended.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.release_now(py)
    }

    /// Moves the lease end: to `expires` (unix seconds), or `seconds` later than it is now.
    /// Returns the new end, which the server caps at its maximum lease.
    #[pyo3(signature = (expires = None, *, seconds = None))]
    fn extend(&self, py: Python<'_>, expires: Option<u64>, seconds: Option<u64>) -> PyResult<u64> {
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
        let info = match request {
            // Through the request, so its state takes the new end.
            Some(request) => wait(py, async move { request.extend(expires).await })?,
            None => wait(py, self.client.extend(id, expires))?,
        };
        Ok(info.map_err(client_error)?.expires)
    }

    /// The server's record of this allocation.
    fn info(&self, py: Python<'_>) -> PyResult<AllocationInfo> {
        let id = self.id()?;
        let info = wait(py, self.client.allocation(id))?.map_err(client_error)?;
        Ok(AllocationInfo(info))
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
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyType>>,
        exc_value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc_value, traceback);
        match self.release_now(py) {
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
