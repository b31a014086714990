//! `Agent`: registers resources over `WEBSOCKET /agent/` and answers the server's orders, so a
//! harness can put resources into a server without running `allocate-agent`.
//!
//! It reuses the reference agent's wire types (`Registration`, `ServerMessage`, `Answer`). A
//! task on the module's runtime owns the socket; orders for resources without a static
//! connection go to the Python callbacks, each on its own thread (they may block), and their
//! answers come back to the task on a bounded channel. Unlike `allocate-agent` it does not
//! reconnect: a harness wants to see a lost connection, not have it hidden.

use crate::convert::Id;
use crate::errors;
use crate::http::{next_text, Endpoint};
use crate::outputs::{Provision, Release};
use crate::pylog;
use crate::runtime::{lock, runtime, wait, wait_for};
use crate::types::{quote, repr, Connection, Resource};
use allocate_agent::{Answer, ProvisionOrder, Registration, ReleaseOrder, ServerMessage};
use allocate_core::ResourceSpec;
use futures_util::SinkExt;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// How long the server may take to answer a registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long stopping waits for the socket to close.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Commands and answers waiting for the socket task; senders beyond it wait their turn.
const COMMANDS_MAX: usize = 256;

type Reply = oneshot::Sender<PyResult<Vec<Uuid>>>;

/// What the socket task is asked to do.
#[derive(Debug)]
enum Command {
    /// Send this registration; answer with the inventory ids or the refusal.
    Register(String, Reply),
    /// Send this answer to an order.
    Answer(Answer),
    /// Close the socket and end.
    Stop,
}

/// The Python callbacks for orders on resources without a static connection.
#[derive(Debug)]
struct Callbacks {
    agent_id: Uuid,
    provision: Option<Py<PyAny>>,
    release: Option<Py<PyAny>>,
}

impl Callbacks {
    /// Answers a provision: the callback's `Connection`, or the reason it failed.
    fn provision(&self, order: ProvisionOrder) -> Answer {
        let allocation_id = order.allocation_id;
        let Some(callback) = &self.provision else {
            return Answer::Failed {
                allocation_id,
                error: "the resource has no static connection and the agent no provision callback"
                    .into(),
            };
        };
        let order = Provision {
            agent_id: self.agent_id.to_string(),
            allocation_id: allocation_id.to_string(),
            inventory_id: order.inventory_id.to_string(),
            username: order.username,
            expires: order.expires,
        };
        let connection = Python::attach(|py| {
            let answer = callback.call1(py, (order,))?;
            let connection = answer.bind(py).cast::<Connection>()?;
            Ok::<_, PyErr>(connection.get().0.clone())
        });
        match connection {
            Ok(connection) => Answer::Provisioned {
                allocation_id,
                connection,
            },
            Err(err) => Answer::Failed {
                allocation_id,
                error: format!("provision callback failed: {err}"),
            },
        }
    }

    /// Answers a release once the callback (if any) returned; `None` when it raised, which
    /// leaves the release unacknowledged (the server then marks the resource `error`).
    fn release(&self, order: ReleaseOrder) -> Option<Answer> {
        let allocation_id = order.allocation_id;
        if let Some(callback) = &self.release {
            let order = Release {
                agent_id: self.agent_id.to_string(),
                allocation_id: allocation_id.to_string(),
                inventory_id: order.inventory_id.to_string(),
            };
            if let Err(err) = Python::attach(|py| callback.call1(py, (order,)).map(drop)) {
                pylog::warn(&format!(
                    "release callback for allocation {allocation_id} failed, not acknowledging it: {err}"
                ));
                return None;
            }
        }
        Some(Answer::Released { allocation_id })
    }
}

/// What Python reads about the connection.
#[derive(Debug, Default)]
struct Shared {
    inventory_ids: Vec<Uuid>,
    connected: bool,
}

/// The socket task.
async fn drive(
    endpoint: Arc<Endpoint>,
    first: (String, Reply),
    mut commands: mpsc::Receiver<Command>,
    answers: mpsc::Sender<Command>,
    callbacks: Arc<Callbacks>,
    shared: Arc<Mutex<Shared>>,
) {
    let (registration, reply) = first;
    let mut socket = match endpoint.connect("agent/").await {
        Ok(socket) => socket,
        Err(err) => {
            let _ = reply.send(Err(err));
            return;
        }
    };
    let mut waiting: VecDeque<Reply> = VecDeque::from([reply]);
    let mut outgoing = Some(registration);
    lock(&shared).connected = true;
    let why = loop {
        if let Some(text) = outgoing.take() {
            if let Err(e) = socket.send(Message::text(text)).await {
                break format!("could not send: {}", crate::http::chain(&e));
            }
        }
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Register(text, reply)) => {
                    waiting.push_back(reply);
                    outgoing = Some(text);
                }
                Some(Command::Answer(answer)) => outgoing = Some(answer.to_wire()),
                Some(Command::Stop) | None => {
                    let _ = tokio::time::timeout(STOP_TIMEOUT, socket.close(None)).await;
                    break "the agent was stopped".to_owned();
                }
            },
            message = next_text(&mut socket) => match message {
                Some(Ok(text)) => match ServerMessage::parse(&text) {
                    Ok(ServerMessage::Registered { inventory_ids }) => {
                        lock(&shared).inventory_ids.clone_from(&inventory_ids);
                        if let Some(reply) = waiting.pop_front() {
                            let _ = reply.send(Ok(inventory_ids));
                        }
                    }
                    Ok(ServerMessage::Refused { code, message, .. }) => match waiting.pop_front() {
                        Some(reply) => {
                            let _ = reply.send(Err(errors::from_code(&code, message)));
                        }
                        None => pylog::warn_from_task(format!("the server refused an answer of the agent: {code}: {message}")),
                    },
                    Ok(ServerMessage::Provision(order)) => {
                        respond(&callbacks, &answers, move |c| Some(c.provision(order)));
                    }
                    Ok(ServerMessage::Release(order)) => {
                        respond(&callbacks, &answers, move |c| c.release(order));
                    }
                    Ok(ServerMessage::UnknownAction(action)) => {
                        pylog::warn_from_task(format!("ignoring the unknown action {action:?} from the server"));
                    }
                    Err(e) => pylog::warn_from_task(format!("ignoring a server message: {e}")),
                },
                Some(Err(why)) => break why,
                None => break "the server closed the connection".to_owned(),
            },
        }
    };
    lock(&shared).connected = false;
    for reply in waiting {
        let _ = reply.send(Err(errors::lost(why.clone())));
    }
}

/// Runs `answer` on its own thread (a callback may block) and sends its answer to the task.
fn respond(
    callbacks: &Arc<Callbacks>,
    answers: &mpsc::Sender<Command>,
    answer: impl FnOnce(&Callbacks) -> Option<Answer> + Send + 'static,
) {
    let (callbacks, answers) = (callbacks.clone(), answers.clone());
    std::thread::spawn(move || {
        if let Some(answer) = answer(&callbacks) {
            // The task has ended when this fails; the server fails the order on its own.
            let _ = answers.blocking_send(Command::Answer(answer));
        }
    });
}

/// A running connection: the way to the socket task.
#[derive(Debug)]
struct Session {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

/// An agent that registers `resources` with the server at `url` (`http://host:port`) and
/// answers its orders. Resources with a static `connection` are handed out without asking;
/// for the others the server's orders call `provision(order: Provision) -> Connection`
/// (raise to refuse) and `release(order: Release)`, each on its own thread. Use it in a
/// `with` block, or call `start()` / `stop()`. It does not reconnect.
#[pyclass(frozen, module = "allocate")]
#[derive(Debug)]
pub struct Agent {
    endpoint: Arc<Endpoint>,
    callbacks: Arc<Callbacks>,
    resources: Vec<ResourceSpec>,
    shared: Arc<Mutex<Shared>>,
    session: Mutex<Option<Session>>,
}

impl Agent {
    /// An agent for the server at `url`, not yet connected.
    pub fn create(
        url: &str,
        resources: Vec<PyRef<'_, Resource>>,
        agent_id: Option<Id>,
        token: Option<String>,
        provision: Option<Py<PyAny>>,
        release: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let agent_id = agent_id.map_or_else(Uuid::new_v4, |id| id.0);
        let resources: Vec<ResourceSpec> = resources.iter().map(|r| r.0.clone()).collect();
        Ok(Agent {
            endpoint: Arc::new(Endpoint::new(url, token)?),
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

    fn registration(&self, resources: Vec<ResourceSpec>) -> PyResult<String> {
        let registration = Registration {
            agent_id: self.callbacks.agent_id,
            resources,
        };
        registration.validate().map_err(errors::from_core)?;
        Ok(registration.to_wire())
    }

    /// Waits for the answer to a registration.
    fn registered(
        &self,
        py: Python<'_>,
        answer: oneshot::Receiver<PyResult<Vec<Uuid>>>,
    ) -> PyResult<Vec<String>> {
        let ids = match wait_for(py, REGISTER_TIMEOUT, answer)? {
            Ok(Ok(result)) => result?,
            Ok(Err(_closed)) => return Err(errors::lost("the agent's connection ended")),
            Err(_elapsed) => {
                return Err(errors::lost(format!(
                    "the server did not answer the registration within {} s",
                    REGISTER_TIMEOUT.as_secs()
                )))
            }
        };
        Ok(ids.iter().map(ToString::to_string).collect())
    }

    /// Connects and registers unless started; returns the inventory ids.
    pub fn connect(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let mut session = lock(&self.session);
        if session.is_some() {
            return Ok(self.inventory_ids());
        }
        let text = self.registration(self.resources.clone())?;
        let (commands, received) = mpsc::channel(COMMANDS_MAX);
        let (reply, answer) = oneshot::channel();
        let task = runtime().spawn(drive(
            self.endpoint.clone(),
            (text, reply),
            received,
            commands.clone(),
            self.callbacks.clone(),
            self.shared.clone(),
        ));
        *session = Some(Session { commands, task });
        drop(session);
        let ids = self.registered(py, answer);
        if ids.is_err() {
            self.disconnect(py)?;
        }
        ids
    }

    /// Closes the socket (its resources go offline) and waits for the task to end.
    pub fn disconnect(&self, py: Python<'_>) -> PyResult<()> {
        let Some(session) = lock(&self.session).take() else {
            return Ok(());
        };
        let _ = session.commands.try_send(Command::Stop);
        drop(session.commands);
        let _ = wait_for(py, STOP_TIMEOUT, session.task)?;
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(session) = lock(&self.session).take() {
            let _ = session.commands.try_send(Command::Stop);
        }
    }
}

#[pymethods]
impl Agent {
    #[new]
    #[pyo3(signature = (url, resources, *, agent_id = None, token = None, provision = None, release = None))]
    fn new(
        url: &str,
        resources: Vec<PyRef<'_, Resource>>,
        agent_id: Option<Id>,
        token: Option<String>,
        provision: Option<Py<PyAny>>,
        release: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        Self::create(url, resources, agent_id, token, provision, release)
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
        let text = self.registration(resources.iter().map(|r| r.0.clone()).collect())?;
        let commands = lock(&self.session)
            .as_ref()
            .map(|s| s.commands.clone())
            .ok_or_else(|| PyRuntimeError::new_err("the agent is not started"))?;
        let (reply, answer) = oneshot::channel();
        wait(py, commands.send(Command::Register(text, reply)))?
            .map_err(|_| errors::lost("the agent's connection ended"))?;
        self.registered(py, answer)
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
                ("url", quote(self.endpoint.url())),
                ("resources", shared.inventory_ids.len().to_string()),
                (
                    "connected",
                    if shared.connected { "True" } else { "False" }.into(),
                ),
            ],
        )
    }
}
