//! `Server`: the real allocate-http server, run in this process on an ephemeral port.

use crate::agent::Agent;
use crate::client::Client;
use crate::convert::{engine_config, Id, Urls};
use crate::errors;
use crate::runtime::{lock, runtime, wait, wait_for};
use crate::types::{quote, repr, Resource};
use allocate_http::ServerConfig;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server that is listening.
#[derive(Debug)]
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// The allocate server (allocate-http, the same code as `make run`) in this process, on
/// 127.0.0.1 and an ephemeral port unless `port` names one. `config` holds the engine's
/// settings (`lease_secs_default`, `provision_timeout_ms`, ...); times are in seconds. Use it
/// in a `with` block (`url` is then the base URL), or call `start()` / `stop()`.
#[pyclass(frozen, module = "allocate._allocate")]
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    port: u16,
    running: Mutex<Option<Running>>,
    /// Agents from `add_agent`, kept (connected) until they are stopped or the server is.
    agents: Mutex<Vec<Py<Agent>>>,
}

fn duration(seconds: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "{what} must be a positive number of seconds, got {seconds}"
            ))
        })
}

impl Server {
    fn state(&self) -> MutexGuard<'_, Option<Running>> {
        lock(&self.running)
    }

    fn base_url(&self) -> PyResult<String> {
        self.state()
            .as_ref()
            .map(|r| format!("http://{}", r.addr))
            .ok_or_else(|| {
                PyRuntimeError::new_err(
                    "the server is not running; call start() or use it in a with block",
                )
            })
    }

    fn launch(&self, py: Python<'_>) -> PyResult<()> {
        if self.state().is_some() {
            return Ok(());
        }
        // Bound without the lock held: a thread that reads `url` meanwhile must not wait on
        // the lock while holding the GIL this thread needs back.
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let listener = wait(py, tokio::net::TcpListener::bind(address))??;
        let addr = listener.local_addr()?;
        let mut running = self.state();
        if running.is_some() {
            return Ok(()); // another thread started it meanwhile
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = runtime().spawn(allocate_http::run(listener, self.config.clone(), async {
            let _ = stopped.await;
        }));
        *running = Some(Running { addr, stop, task });
        Ok(())
    }

    fn shut_down(&self, py: Python<'_>) -> PyResult<()> {
        let Some(running) = self.state().take() else {
            return Ok(());
        };
        let agents = std::mem::take(&mut *lock(&self.agents));
        let _ = running.stop.send(());
        // `run` waits up to the grace period for sockets, then for the engine task.
        let bound = self.config.shutdown_grace * 2 + Duration::from_secs(1);
        match wait_for(py, bound, running.task)? {
            Err(_elapsed) => Err(errors::lost(format!(
                "the server did not stop within {} s",
                bound.as_secs()
            ))),
            Ok(Err(join)) => Err(errors::from_error_code(
                allocate_core::ErrorCode::Internal,
                format!("the server task failed: {join}"),
            )),
            Ok(Ok(result)) => result.map_err(PyErr::from),
        }?;
        // The server closed their sockets; this ends their tasks.
        agents.iter().try_for_each(|a| a.get().disconnect(py))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(running) = self.state().take() {
            let _ = running.stop.send(());
        }
    }
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (*, port = 0, config = None, ping_interval = 5.0, idle_timeout = 15.0, shutdown_grace = 5.0))]
    fn new(
        port: u16,
        config: Option<&Bound<'_, PyDict>>,
        ping_interval: f64,
        idle_timeout: f64,
        shutdown_grace: f64,
    ) -> PyResult<Self> {
        let engine = engine_config(config)?;
        let config = ServerConfig {
            engine,
            ping_interval: duration(ping_interval, "ping_interval")?,
            idle_timeout: duration(idle_timeout, "idle_timeout")?,
            shutdown_grace: duration(shutdown_grace, "shutdown_grace")?,
            ..ServerConfig::default()
        };
        Ok(Server {
            config,
            port,
            running: Mutex::new(None),
            agents: Mutex::new(Vec::new()),
        })
    }

    /// Starts listening (harmless when running); returns the server.
    fn start(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().launch(slf.py())?;
        Ok(slf)
    }

    /// Shuts down as the real server does (waiting clients get 503 shutting_down) and waits
    /// until it has. Harmless when stopped.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.shut_down(py)
    }

    /// The base URL, such as `http://127.0.0.1:40123`.
    #[getter]
    fn url(&self) -> PyResult<String> {
        self.base_url()
    }

    /// Whether the server is listening.
    #[getter]
    fn running(&self) -> bool {
        self.state().is_some()
    }

    /// A `Client` of this server.
    #[pyo3(signature = (*, token = None, username = None, timeout = 30.0))]
    fn client(
        &self,
        token: Option<String>,
        username: Option<String>,
        timeout: f64,
    ) -> PyResult<Client> {
        Client::create(&Urls::one(self.base_url()?), token, username, timeout, None)
    }

    /// Starts an `Agent` of this server with `resources` (registered when this returns). It
    /// stays connected until its `stop()` (or the end of a `with` block on it) or the server's.
    #[pyo3(signature = (resources, *, agent_id = None, token = None, provision = None, release = None))]
    fn add_agent(
        &self,
        py: Python<'_>,
        resources: Vec<PyRef<'_, Resource>>,
        agent_id: Option<Id>,
        token: Option<String>,
        provision: Option<Py<PyAny>>,
        release: Option<Py<PyAny>>,
    ) -> PyResult<Py<Agent>> {
        let agent = Agent::create(
            &Urls::one(self.base_url()?),
            resources,
            agent_id,
            token,
            provision,
            release,
        )?;
        agent.connect(py)?;
        let agent = Py::new(py, agent)?;
        lock(&self.agents).push(agent.clone_ref(py));
        Ok(agent)
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
        self.shut_down(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        match self.state().as_ref() {
            Some(r) => repr("Server", &[("url", quote(&format!("http://{}", r.addr)))]),
            None => "Server(stopped)".to_owned(),
        }
    }
}
