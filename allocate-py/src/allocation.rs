//! `Allocation`: one request on `WEBSOCKET /allocate/`, from queueing to release.
//!
//! A task on the module's runtime owns the socket: it sends the requirements, reads the
//! server's envelopes into [`Shared`] and wakes the waiter. It keeps reading after `ready`, so
//! the socket answers the server's pings and `state` follows `expired`, `released`,
//! `offline` and `online` for the whole lease. Python threads read [`Shared`] under a mutex
//! that is never held across an `.await` or while taking the GIL.

use crate::errors::{self, NotFound};
use crate::http::{next_text, refused, Endpoint};
use crate::outputs::Queued;
use crate::pylog;
use crate::runtime::{lock, runtime, wait, wait_for};
use crate::types::{quote, repr, repr_opt, AllocationInfo, Connection};
use allocate_core::wire::admin::expires_patch_text;
use allocate_core::wire::{ClientEvent, Envelope, WireError};
use allocate_core::ErrorCode;
use futures_util::SinkExt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use reqwest::Method;
use serde_json::json;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// How long releasing or cancelling on the way out (timeout, Ctrl-C) may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long closing the socket may wait for the server's close reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where an allocation stands, as `Allocation.state` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not sent yet.
    New,
    /// Sent; no answer yet.
    Waiting,
    /// In the queue.
    Queued,
    /// The resource is the holder's.
    Ready,
    /// Ready, but the resource's agent is away.
    Offline,
    /// Released (or cancelled) before its lease ended.
    Released,
    /// The lease ended.
    Expired,
    /// Nothing became free in time.
    TimedOut,
    /// Refused by the server, or the connection was lost before `ready`.
    Failed,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::New => "new",
            State::Waiting => "waiting",
            State::Queued => "queued",
            State::Ready => "ready",
            State::Offline => "offline",
            State::Released => "released",
            State::Expired => "expired",
            State::TimedOut => "timed_out",
            State::Failed => "failed",
        }
    }

    fn is_held(self) -> bool {
        matches!(self, State::Ready | State::Offline)
    }

    fn has_ended(self) -> bool {
        matches!(
            self,
            State::Released | State::Expired | State::TimedOut | State::Failed
        )
    }
}

/// What the socket task has learned; read by Python.
#[derive(Debug)]
struct Shared {
    state: State,
    allocation_id: Option<Uuid>,
    inventory_id: Option<Uuid>,
    connection: Option<allocate_core::Connection>,
    expires: Option<u64>,
    position: Option<u32>,
    /// The latest queue position not yet reported to Python (older ones are superseded).
    unreported: Option<Queued>,
    /// Why the request failed, raised by `wait`.
    error: Option<PyErr>,
}

impl Shared {
    fn fail(&mut self, state: State, error: PyErr) {
        if !self.state.has_ended() {
            self.state = state;
            self.error = Some(error);
        }
    }

    /// Applies one message from the server.
    fn on_message(&mut self, text: &str) {
        let event = match ClientEvent::parse(text) {
            Ok(Envelope::Ok(event)) => event,
            Ok(Envelope::Refused(refusal)) => {
                let timed_out = refusal.error_code() == Some(ErrorCode::AllocationTimeout);
                let state = if timed_out {
                    State::TimedOut
                } else {
                    State::Failed
                };
                return self.fail(state, refused(refusal));
            }
            // A status a newer server added.
            Err(WireError::Unknown { .. }) => return,
            Err(e) => {
                let message = format!("a message on /allocate/ is not one of the contract's: {e}");
                return self.fail(State::Failed, errors::AllocateError::new_err(message));
            }
        };
        match event {
            ClientEvent::Queued {
                allocation_id,
                position,
                matching_resources,
                eta,
            } => {
                self.state = State::Queued;
                self.allocation_id = Some(allocation_id);
                self.position = Some(position);
                self.unreported = Some(Queued {
                    allocation_id: allocation_id.to_string(),
                    position,
                    matching_resources,
                    eta,
                });
            }
            ClientEvent::Ready {
                allocation_id,
                inventory_id,
                connection,
                expires,
            } => {
                self.state = State::Ready;
                self.allocation_id = Some(allocation_id);
                self.inventory_id = Some(inventory_id);
                self.connection = Some(connection);
                self.expires = Some(expires);
                self.position = None;
            }
            ClientEvent::Expired { .. } => self.state = State::Expired,
            ClientEvent::Released { .. } if self.state.is_held() => self.state = State::Released,
            ClientEvent::Released { .. } => {
                let message = "the request was released (deleted) before it became ready";
                self.fail(State::Released, errors::AllocateError::new_err(message));
            }
            ClientEvent::Offline { .. } if self.state == State::Ready => {
                self.state = State::Offline
            }
            ClientEvent::Online { .. } if self.state == State::Offline => self.state = State::Ready,
            ClientEvent::Offline { .. } | ClientEvent::Online { .. } => {}
        }
    }
}

/// The socket task: sends the request, then applies every message until the socket ends or
/// `stop` fires (which closes it: a request still waiting is then cancelled by the server).
async fn drive(
    endpoint: Arc<Endpoint>,
    request: String,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Notify>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut socket = tokio::select! {
        _ = &mut stop => return,
        socket = endpoint.connect("allocate/") => match socket {
            Ok(socket) => socket,
            Err(err) => return update(&shared, &changed, |s| s.fail(State::Failed, err)),
        },
    };
    if let Err(e) = socket.send(Message::text(request)).await {
        let why = format!("could not send the request: {}", crate::http::chain(&e));
        return update(&shared, &changed, |s| {
            s.fail(State::Failed, errors::lost(why))
        });
    }
    loop {
        tokio::select! {
            _ = &mut stop => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
                return;
            }
            message = next_text(&mut socket) => match message {
                Some(Ok(text)) => update(&shared, &changed, |s| s.on_message(&text)),
                ended => {
                    let why = match ended {
                        Some(Err(why)) => why,
                        _ => "the server closed the connection".to_owned(),
                    };
                    // After `ready` the lease outlives the socket; before, the request is gone.
                    let lost = format!("the connection ended before the allocation was ready: {why}");
                    return update(&shared, &changed, |s| {
                        if !s.state.is_held() {
                            s.fail(State::Failed, errors::lost(lost));
                        }
                    });
                }
            },
        }
    }
}

/// Applies `f` to the shared state and wakes the waiter.
fn update(shared: &Mutex<Shared>, changed: &Notify, f: impl FnOnce(&mut Shared)) {
    f(&mut lock(shared));
    changed.notify_one();
}

/// A running request: the socket task's stop switch and when waiting gives up.
#[derive(Debug)]
struct Session {
    stop: Option<oneshot::Sender<()>>,
    deadline: Instant,
}

/// One allocation request. `with client.allocate(...) as a:` sends it, waits until it is ready
/// (calling `on_queued` with each new queue position), and releases it when the block ends,
/// also when the block raises. Outside a `with`: `start()`, `wait()`, `release()`.
#[pyclass(frozen, module = "allocate")]
#[derive(Debug)]
pub struct Allocation {
    endpoint: Arc<Endpoint>,
    /// The message sent on the socket: `{"requirements": {...}}`.
    request: String,
    /// How long `wait` waits, from `start`.
    wait_budget: Duration,
    on_queued: Option<Py<PyAny>>,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Notify>,
    session: Mutex<Option<Session>>,
}

impl Allocation {
    /// An allocation that will send `requirements` (a JSON object) when started.
    pub fn new(
        endpoint: Arc<Endpoint>,
        requirements: serde_json::Map<String, serde_json::Value>,
        wait_budget: Duration,
        on_queued: Option<Py<PyAny>>,
    ) -> Self {
        Allocation {
            endpoint,
            request: json!({ "requirements": requirements }).to_string(),
            wait_budget,
            on_queued,
            shared: Arc::new(Mutex::new(Shared {
                state: State::New,
                allocation_id: None,
                inventory_id: None,
                connection: None,
                expires: None,
                position: None,
                unreported: None,
                error: None,
            })),
            changed: Arc::new(Notify::new()),
            session: Mutex::new(None),
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    fn session(&self) -> MutexGuard<'_, Option<Session>> {
        lock(&self.session)
    }

    /// Starts the socket task unless it runs; returns when waiting gives up.
    fn ensure_started(&self) -> Instant {
        let mut session = self.session();
        if let Some(s) = session.as_ref() {
            return s.deadline;
        }
        let deadline = Instant::now() + self.wait_budget;
        {
            let mut shared = self.shared();
            if shared.state != State::New {
                // Released before it was started: nothing to send.
                return deadline;
            }
            shared.state = State::Waiting;
        }
        let (stop, stopped) = oneshot::channel();
        runtime().spawn(drive(
            self.endpoint.clone(),
            self.request.clone(),
            self.shared.clone(),
            self.changed.clone(),
            stopped,
        ));
        *session = Some(Session {
            stop: Some(stop),
            deadline,
        });
        deadline
    }

    /// Closes the socket (the task ends on its own once it has).
    fn stop_socket(&self) {
        if let Some(stop) = self.session().as_mut().and_then(|s| s.stop.take()) {
            let _ = stop.send(());
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

    /// Gives up a request (timeout, Ctrl-C, a callback that raised), leaving it in `state`:
    /// deletes it on the server when its id is known, so one that became ready meanwhile is
    /// freed too, and closes the socket, which cancels it otherwise.
    fn abandon(&self, py: Python<'_>, state: State) {
        let id = self.shared().allocation_id;
        if let Some(id) = id {
            if let Ok(url) = self.endpoint.join(&format!("allocate/{id}"), &[]) {
                let delete = self.endpoint.call(Method::DELETE, url, None);
                let _ = wait_for(py, CLEANUP_TIMEOUT, delete);
            }
        }
        self.stop_socket();
        let mut shared = self.shared();
        if !shared.state.has_ended() {
            shared.state = state;
        }
    }

    /// The id, once the server has given one.
    fn id(&self) -> PyResult<Uuid> {
        self.shared()
            .allocation_id
            .ok_or_else(|| PyRuntimeError::new_err("the server has not answered this request yet"))
    }

    fn wait_ready(&self, py: Python<'_>) -> PyResult<()> {
        let deadline = self.ensure_started();
        loop {
            let (unreported, state, error) = {
                let mut s = self.shared();
                let error = s.error.as_ref().map(|e| e.clone_ref(py));
                (s.unreported.take(), s.state, error)
            };
            if let Some(queued) = unreported {
                if let Err(err) = self.report(py, queued) {
                    self.abandon(py, State::Released);
                    return Err(err);
                }
            }
            if let Some(err) = error {
                self.stop_socket();
                return Err(err);
            }
            if state.is_held() {
                return Ok(());
            }
            if state.has_ended() {
                return Err(errors::AllocateError::new_err(format!(
                    "the allocation is {}",
                    state.as_str()
                )));
            }
            if Instant::now() >= deadline {
                self.abandon(py, State::TimedOut);
                return Err(errors::AllocationTimeout::new_err(format!(
                    "the server did not answer within {:.1} s",
                    self.wait_budget.as_secs_f64()
                )));
            }
            let limit = deadline.saturating_duration_since(Instant::now());
            if let Err(err) = wait_for(py, limit, self.changed.notified()) {
                self.abandon(py, State::Released);
                return Err(err);
            }
        }
    }

    fn release_now(&self, py: Python<'_>) -> PyResult<()> {
        let (state, id) = {
            let s = self.shared();
            (s.state, s.allocation_id)
        };
        if state.has_ended() {
            self.stop_socket();
            return Ok(());
        }
        if let Some(id) = id {
            let url = self.endpoint.join(&format!("allocate/{id}"), &[])?;
            match wait(py, self.endpoint.call(Method::DELETE, url, None))? {
                Ok(_) => {}
                // Ended on the server already (expired, or released by someone else).
                Err(err) if err.is_instance_of::<NotFound>(py) => {}
                Err(err) => return Err(err),
            }
        }
        self.stop_socket();
        self.shared().state = State::Released;
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
                .shared()
                .expires
                .ok_or_else(|| PyRuntimeError::new_err("the allocation is not ready"))?
                .saturating_add(more),
            _ => {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "extend() takes either expires or seconds",
                ))
            }
        };
        let url = self.endpoint.join(&format!("allocate/{id}"), &[])?;
        let data = wait(
            py,
            self.endpoint
                .call(Method::PATCH, url, Some(expires_patch_text(expires))),
        )??;
        let info: allocate_core::AllocationInfo = crate::client::from_data(data, "allocation")?;
        self.shared().expires = Some(info.expires);
        Ok(info.expires)
    }

    /// The server's record of this allocation.
    fn info(&self, py: Python<'_>) -> PyResult<AllocationInfo> {
        let url = self
            .endpoint
            .join(&format!("allocate/{}", self.id()?), &[])?;
        let data = wait(py, self.endpoint.call(Method::GET, url, None))??;
        crate::client::from_data(data, "allocation").map(AllocationInfo)
    }

    /// The allocation's id (None until the server has answered).
    #[getter]
    fn allocation_id(&self) -> Option<String> {
        self.shared().allocation_id.map(|id| id.to_string())
    }

    /// The resource it holds (None until ready).
    #[getter]
    fn inventory_id(&self) -> Option<String> {
        self.shared().inventory_id.map(|id| id.to_string())
    }

    /// How to reach the resource (None until ready).
    #[getter]
    fn connection(&self) -> Option<Connection> {
        self.shared().connection.clone().map(Connection)
    }

    /// When the lease ends (unix seconds; None until ready).
    #[getter]
    fn expires(&self) -> Option<u64> {
        self.shared().expires
    }

    /// The latest place in the queue while queued.
    #[getter]
    fn position(&self) -> Option<u32> {
        self.shared().position
    }

    /// `new`, `waiting`, `queued`, `ready`, `offline` (ready, its agent away), `released`,
    /// `expired`, `timed_out` or `failed`.
    #[getter]
    fn state(&self) -> &'static str {
        self.shared().state.as_str()
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
        let s = self.shared();
        let id = |id: Option<Uuid>| repr_opt(id, |id| quote(&id.to_string()));
        let mut fields = vec![
            ("allocation_id", id(s.allocation_id)),
            ("state", quote(s.state.as_str())),
        ];
        if let Some(p) = s.position.filter(|_| s.state == State::Queued) {
            fields.push(("position", p.to_string()));
        }
        if s.inventory_id.is_some() {
            fields.push(("inventory_id", id(s.inventory_id)));
            fields.push((
                "connection",
                repr_opt(s.connection.as_ref(), crate::types::connection_repr),
            ));
            fields.push(("expires", repr_opt(s.expires, |t| t.to_string())));
        }
        repr("Allocation", &fields)
    }
}
