//! `Agent`: registers resources over `WEBSOCKET /agent/` and answers the server's orders, so a
//! harness can put resources into a server without running `allocate-agent`.
//!
//! A thin wrapper over `allocate_client::AgentSession`, which owns the socket and the order
//! bookkeeping. A task on the module's runtime takes the session's events: orders for
//! resources without a static connection go to the Python callbacks, each on its own thread
//! (they may block), and their answers go back through the session's handle. Unlike
//! `allocate-agent` it does not reconnect: a harness wants to see a lost connection, not have
//! it hidden.

use crate::convert::{Id, Urls};
use crate::errors;
use crate::http::client_error;
use crate::outputs::{Provision, Release};
use crate::pylog;
use crate::runtime::{lock, runtime, wait, wait_for};
use crate::types::{quote, repr, Connection, Resource};
use allocate_client::{
    AgentEvent, AgentHandle, AgentOptions, AgentSession, Order, ProvisionResult, ResourceSpec,
};
use allocate_core::wire::AgentMessage;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long the server may take to answer a registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long stopping waits for the socket to close.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The Python callbacks for orders on resources without a static connection.
#[derive(Debug)]
struct Callbacks {
    agent_id: Uuid,
    provision: Option<Py<PyAny>>,
    release: Option<Py<PyAny>>,
}

impl Callbacks {
    /// Answers a provision: the callback's `Connection`, or the reason it failed.
    fn provision(&self, order: &allocate_client::ProvisionOrder) -> ProvisionResult {
        let Some(callback) = &self.provision else {
            return ProvisionResult::Failed(
                "the resource has no static connection and the agent no provision callback".into(),
            );
        };
        let order = Provision {
            agent_id: self.agent_id.to_string(),
            allocation_id: order.allocation_id.to_string(),
            inventory_id: order.inventory_id.to_string(),
            username: order.username.clone(),
            expires: order.expires,
        };
        let connection = Python::attach(|py| {
            let answer = callback.call1(py, (order,))?;
            let connection = answer.bind(py).cast::<Connection>()?;
            Ok::<_, PyErr>(connection.get().0.clone())
        });
        match connection {
            Ok(connection) => ProvisionResult::Connection(connection),
            Err(err) => ProvisionResult::Failed(format!("provision callback failed: {err}")),
        }
    }

    /// Whether the release callback (if any) returned; when it raised, the release stays
    /// unacknowledged (the server then marks the resource `error`).
    fn release(&self, order: &allocate_client::ReleaseOrder) -> bool {
        let Some(callback) = &self.release else {
            return true;
        };
        let allocation_id = order.allocation_id;
        let order = Release {
            agent_id: self.agent_id.to_string(),
            allocation_id: allocation_id.to_string(),
            inventory_id: order.inventory_id.to_string(),
        };
        match Python::attach(|py| callback.call1(py, (order,)).map(drop)) {
            Ok(()) => true,
            Err(err) => {
                pylog::warn(&format!(
                    "release callback for allocation {allocation_id} failed, not acknowledging it: {err}"
                ));
                false
            }
        }
    }

    /// Answers `order` on its own thread (a callback may block).
    fn answer(self: &Arc<Self>, handle: &AgentHandle, order: Order) {
        let (callbacks, handle) = (self.clone(), handle.clone());
        std::thread::spawn(move || {
            // The session has ended when sending fails; the server fails the order on its own.
            let _ = match &order {
                Order::Provision { order: o, .. } => {
                    let result = callbacks.provision(o);
                    runtime().block_on(handle.provisioned(&order, result))
                }
                Order::Release { order: o, .. } => {
                    if !callbacks.release(o) {
                        return;
                    }
                    runtime().block_on(handle.released(&order))
                }
            };
        });
    }
}

/// What Python reads about the connection.
#[derive(Debug, Default)]
struct Shared {
    inventory_ids: Vec<Uuid>,
    connected: bool,
}

/// The task that takes the session's events until it ends.
async fn drive(mut session: AgentSession, callbacks: Arc<Callbacks>, shared: Arc<Mutex<Shared>>) {
    let handle = session.handle().clone();
    while let Some(event) = session.next_event().await {
        match event {
            AgentEvent::Order(order) => callbacks.answer(&handle, order),
            AgentEvent::Registered { inventory_ids, .. } => {
                lock(&shared).inventory_ids = inventory_ids;
            }
            // The session does not reconnect: this is its end, seen through `connected`. Not
            // logged: it also happens while the interpreter shuts down (a server stopping
            // under an agent nobody stopped), when taking the GIL would abort it.
            AgentEvent::Disconnected { .. } => lock(&shared).connected = false,
            AgentEvent::Refused(r) => pylog::warn_from_task(format!(
                "the server refused an answer of the agent: {}: {}",
                r.code, r.message
            )),
            AgentEvent::Unreadable(e) => {
                pylog::warn_from_task(format!("ignoring a server message: {e}"));
            }
        }
    }
    lock(&shared).connected = false;
}

/// A running connection: the way to the session and its task.
#[derive(Debug)]
struct Session {
    handle: AgentHandle,
    task: JoinHandle<()>,
}

/// An agent that registers `resources` with the server at `url` (`http://host:port`) and
/// answers its orders. Resources with a static `connection` are handed out without asking;
/// for the others the server's orders call `provision(order: Provision) -> Connection`
/// (raise to refuse) and `release(order: Release)`, each on its own thread. Use it in a
/// `with` block, or call `start()` / `stop()`. It does not reconnect.
#[pyclass(frozen, module = "allocate._allocate")]
#[derive(Debug)]
pub struct Agent {
    client: allocate_client::Client,
    callbacks: Arc<Callbacks>,
    resources: Vec<ResourceSpec>,
    shared: Arc<Mutex<Shared>>,
    session: Mutex<Option<Session>>,
}

impl Agent {
    /// An agent for the server at `url`, not yet connected.
    pub fn create(
        urls: &Urls,
        resources: Vec<PyRef<'_, Resource>>,
        agent_id: Option<Id>,
        token: Option<String>,
        provision: Option<Py<PyAny>>,
        release: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let agent_id = agent_id.map_or_else(Uuid::new_v4, |id| id.0);
        let resources: Vec<ResourceSpec> = resources.iter().map(|r| r.0.clone()).collect();
        let options = allocate_client::ClientOptions {
            token,
            ..Default::default()
        };
        Ok(Agent {
            client: urls.client(options)?,
            callbacks: Arc::new(Callbacks {
                agent_id,
                provision,
                release,
            }),
            resources,
            shared: Arc::new(Mutex::new(Shared::default())),
            session: Mutex::new(None),
        })
    }

    /// Checks a registration as the server will (InvalidRequest names the bad field).
    fn check(&self, resources: &[ResourceSpec]) -> PyResult<()> {
        let registration = AgentMessage::Register {
            agent_id: self.callbacks.agent_id,
            resources: resources.to_vec(),
        };
        AgentMessage::parse(&registration.to_text(), &allocate_core::Limits::default())
            .map(drop)
            .map_err(errors::from_core)
    }

    /// Connects and registers unless started; returns the inventory ids.
    pub fn connect(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        if lock(&self.session).is_some() {
            return Ok(self.inventory_ids());
        }
        self.check(&self.resources)?;
        let options = AgentOptions {
            reconnect: false,
            register_timeout: REGISTER_TIMEOUT,
            ..AgentOptions::default()
        };
        let connecting = AgentSession::connect(
            &self.client,
            self.callbacks.agent_id,
            self.resources.clone(),
            options,
        );
        let agent = wait(py, connecting)?.map_err(client_error)?;
        let ids = agent.inventory_ids().to_vec();
        *lock(&self.shared) = Shared {
            inventory_ids: ids.clone(),
            connected: true,
        };
        let handle = agent.handle().clone();
        let task = runtime().spawn(drive(agent, self.callbacks.clone(), self.shared.clone()));
        // Not held while connecting (the GIL is released then); a second start that raced
        // this one keeps the first session.
        let mut session = lock(&self.session);
        match session.as_ref() {
            Some(_) => task.abort(),
            None => *session = Some(Session { handle, task }),
        }
        Ok(ids.iter().map(ToString::to_string).collect())
    }

    /// Closes the socket (its resources go offline) and waits for the task to end.
    pub fn disconnect(&self, py: Python<'_>) -> PyResult<()> {
        let Some(session) = lock(&self.session).take() else {
            return Ok(());
        };
        let handle = session.handle;
        let _ = wait_for(py, STOP_TIMEOUT, async move { handle.stop().await })?;
        let _ = wait_for(py, STOP_TIMEOUT, session.task)?;
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(session) = lock(&self.session).take() {
            session.task.abort();
        }
    }
}

#[pymethods]
impl Agent {
    #[new]
    #[pyo3(signature = (url, resources, *, agent_id = None, token = None, provision = None, release = None))]
    fn new(
        url: Urls,
        resources: Vec<PyRef<'_, Resource>>,
        agent_id: Option<Id>,
        token: Option<String>,
        provision: Option<Py<PyAny>>,
        release: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        Self::create(&url, resources, agent_id, token, provision, release)
    }

    /// Connects and registers the resources (InvalidRequest names a bad field); returns the
    /// agent. Harmless when started.
    fn start(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().connect(slf.py())?;
        Ok(slf)
    }

    /// Replaces the registered resources with `resources`; returns their inventory ids.
    fn register(
        &self,
        py: Python<'_>,
        resources: Vec<PyRef<'_, Resource>>,
    ) -> PyResult<Vec<String>> {
        let resources: Vec<ResourceSpec> = resources.iter().map(|r| r.0.clone()).collect();
        self.check(&resources)?;
        let handle = lock(&self.session)
            .as_ref()
            .map(|s| s.handle.clone())
            .ok_or_else(|| PyRuntimeError::new_err("the agent is not started"))?;
        let agent_id = self.callbacks.agent_id;
        let registering = async move { handle.register(agent_id, resources).await };
        let ids = match wait_for(py, REGISTER_TIMEOUT, registering)? {
            Ok(ids) => ids.map_err(|e| match e {
                allocate_client::Error::AgentStopped => {
                    errors::lost("the agent's connection ended")
                }
                other => client_error(other),
            })?,
            Err(_elapsed) => {
                return Err(errors::lost(format!(
                    "the server did not answer the registration within {} s",
                    REGISTER_TIMEOUT.as_secs()
                )))
            }
        };
        lock(&self.shared).inventory_ids.clone_from(&ids);
        Ok(ids.iter().map(ToString::to_string).collect())
    }

    /// Closes the connection; the agent's resources go `offline`. Harmless when stopped.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.disconnect(py)
    }

    /// The agent's id.
    #[getter]
    fn agent_id(&self) -> String {
        self.callbacks.agent_id.to_string()
    }

    /// The inventory ids of the registered resources, in the order they were given.
    #[getter]
    fn inventory_ids(&self) -> Vec<String> {
        let shared = lock(&self.shared);
        shared
            .inventory_ids
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Whether the socket is open.
    #[getter]
    fn connected(&self) -> bool {
        lock(&self.shared).connected
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        Self::start(slf)
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyType>>,
        exc_value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc_type, exc_value, traceback);
        self.disconnect(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let shared = lock(&self.shared);
        repr(
            "Agent",
            &[
                ("agent_id", quote(&self.callbacks.agent_id.to_string())),
                ("url", quote(&self.client.url())),
                ("resources", shared.inventory_ids.len().to_string()),
                (
                    "connected",
                    if shared.connected { "True" } else { "False" }.into(),
                ),
            ],
        )
    }
}
