//! `Client`: the contract's HTTP calls, and allocations over `WEBSOCKET /allocate/`.

use crate::allocation::Allocation;
use crate::convert::{dict_to_json, Id};
use crate::errors;
use crate::http::client_error;
use crate::runtime::wait;
use crate::types::{quote, repr, AllocationInfo, InventoryEntry};
use allocate_client::{ClientOptions, InventoryFilter, ResourceState};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// How much longer than its queue wait an allocation waits for the server's answer (time for
/// the network and for provisioning) before giving up on its own.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// The contract's default `allocation_timeout_seconds`.
const QUEUE_WAIT_SECS_DEFAULT: u64 = allocate_core::DEFAULT_ALLOCATION_TIMEOUT_SECS;

/// Environment variables that name the user, in order of preference.
const USERNAME_VARIABLES: [&str; 4] = ["ALLOCATE_USERNAME", "USER", "LOGNAME", "USERNAME"];

/// A client of a running allocate server at `url` (`http://host:port` or `https://...`).
/// `token` is sent as a bearer token; `username` (default: `$ALLOCATE_USERNAME`, else the
/// login name) is whom allocations are for unless a request names another; `timeout` bounds
/// each HTTP call; `ca_file` (PEM) is trusted besides the system's roots for `https`.
/// Every call releases the GIL while it waits, and Ctrl-C interrupts it.
#[pyclass(frozen, module = "allocate")]
#[derive(Debug)]
pub struct Client {
    client: allocate_client::Client,
    username: String,
}

impl Client {
    /// A client of the server at `url` (see the class docs for the arguments).
    pub fn create(
        url: &str,
        token: Option<String>,
        username: Option<String>,
        timeout: f64,
        ca_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let timeout = Duration::try_from_secs_f64(timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "timeout must be a positive number of seconds, got {timeout}"
                ))
            })?;
        let username = username
            .or_else(|| {
                USERNAME_VARIABLES
                    .iter()
                    .find_map(|v| std::env::var(v).ok())
            })
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "allocate-py".to_owned());
        Ok(Client {
            client: allocate_client::Client::new(
                url,
                ClientOptions {
                    token,
                    ca_file,
                    http_timeout: timeout,
                    ..ClientOptions::default()
                },
            )
            .map_err(client_error)?,
            username,
        })
    }

    /// Runs one call of the client crate with the GIL released; its error as the exception.
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        call: impl Future<Output = Result<T, allocate_client::Error>> + Send,
    ) -> PyResult<T> {
        wait(py, call)?.map_err(client_error)
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (url, *, token = None, username = None, timeout = 30.0, ca_file = None))]
    fn new(
        url: &str,
        token: Option<String>,
        username: Option<String>,
        timeout: f64,
        ca_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        Self::create(url, token, username, timeout, ca_file)
    }

    /// The server's base URL.
    #[getter]
    fn url(&self) -> &str {
        self.client.url()
    }

    /// Whom allocations are for unless a request names a `username`.
    #[getter]
    fn username(&self) -> &str {
        &self.username
    }

    /// The registered resources, optionally only those with every tag in `tags` and in `state`.
    #[pyo3(signature = (*, tags = None, state = None))]
    fn inventory(
        &self,
        py: Python<'_>,
        tags: Option<Vec<String>>,
        state: Option<String>,
    ) -> PyResult<Vec<InventoryEntry>> {
        let state = match state.as_deref() {
            None => None,
            Some(s) => Some(ResourceState::parse(s).ok_or_else(|| {
                errors::from_error_code(
                    allocate_core::ErrorCode::InvalidRequest,
                    format!("state must be one of free, allocated, offline, error, maintenance, reserved; got {s:?}"),
                )
            })?),
        };
        let filter = InventoryFilter {
            tags: tags.unwrap_or_default(),
            state,
        };
        let entries = self.call(py, self.client.inventory(&filter))?;
        Ok(entries.into_iter().map(InventoryEntry).collect())
    }

    /// One resource; raises NotFound for an unknown id.
    fn resource(&self, py: Python<'_>, inventory_id: Id) -> PyResult<InventoryEntry> {
        self.call(py, self.client.resource(inventory_id.0))
            .map(InventoryEntry)
    }

    /// The caller's allocations (every allocation, for an admin).
    fn allocations(&self, py: Python<'_>) -> PyResult<Vec<AllocationInfo>> {
        let all = self.call(py, self.client.allocations())?;
        Ok(all.into_iter().map(AllocationInfo).collect())
    }

    /// One allocation; raises NotFound for an unknown id.
    fn allocation(&self, py: Python<'_>, allocation_id: Id) -> PyResult<AllocationInfo> {
        self.call(py, self.client.allocation(allocation_id.0))
            .map(AllocationInfo)
    }

    /// Moves an allocation's lease end to `expires` (unix seconds, capped by the server).
    fn extend(&self, py: Python<'_>, allocation_id: Id, expires: u64) -> PyResult<AllocationInfo> {
        self.call(py, self.client.extend(allocation_id.0, expires))
            .map(AllocationInfo)
    }

    /// Frees an allocation or cancels a waiting request; raises NotFound when it has ended.
    fn release(&self, py: Python<'_>, allocation_id: Id) -> PyResult<()> {
        self.call(py, self.client.release(allocation_id.0))
    }

    /// An allocation request with the contract's requirements as keywords (`tags`, `type`,
    /// `min_cpu_count`, `gpu`, `expires`, ...; the server refuses unknown ones with
    /// InvalidRequest). Use it in a `with` block, or call `start()` / `wait()` / `release()`.
    ///
    /// `timeout`: seconds to wait in the queue (sent as `allocation_timeout_seconds`, rounded
    /// up; default 60). The client gives up on its own 5 s after that if the server has not
    /// answered. `on_queued`: called while waiting with a `Queued` each time the queue position
    /// changes (positions that changed while nobody waited come as the latest one); default: a
    /// log line on the `allocate` logger.
    #[pyo3(signature = (*, timeout = None, on_queued = None, **requirements))]
    fn allocate(
        &self,
        timeout: Option<f64>,
        on_queued: Option<Py<PyAny>>,
        requirements: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Allocation> {
        let mut fields = match requirements {
            Some(r) => dict_to_json(r, "requirements")?,
            None => Default::default(),
        };
        fields
            .entry("username")
            .or_insert_with(|| Value::from(self.username.clone()));
        let queue_wait = match timeout {
            Some(t) => Duration::try_from_secs_f64(t).map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "timeout must be a non-negative number of seconds, got {t}"
                ))
            })?,
            None => Duration::from_secs(
                fields
                    .get("allocation_timeout_seconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(QUEUE_WAIT_SECS_DEFAULT),
            ),
        };
        fields
            .entry("allocation_timeout_seconds")
            .or_insert_with(|| Value::from(queue_wait.as_secs_f64().ceil() as u64));
        Ok(Allocation::new(
            self.client.clone(),
            fields,
            queue_wait + ANSWER_GRACE,
            on_queued,
        ))
    }

    fn __repr__(&self) -> String {
        repr(
            "Client",
            &[
                ("url", quote(self.client.url())),
                ("username", quote(&self.username)),
            ],
        )
    }
}
