//! `Client`: the contract's HTTP calls, and allocations over `WEBSOCKET /allocate/`.

use crate::aio::awaitable;
use crate::allocation::Allocation;
use crate::convert::{dict_to_json, Id, Urls};
use crate::errors;
use crate::explain::{dry_run_requirements, Explanation};
use crate::follow::Follower;
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
#[pyclass(frozen, module = "allocate._allocate")]
#[derive(Debug)]
pub struct Client {
    client: allocate_client::Client,
    username: String,
}

impl Client {
    /// A client of the server at `url` (see the class docs for the arguments).
    pub fn create(
        urls: &Urls,
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
            client: urls.client(ClientOptions {
                token,
                ca_file,
                http_timeout: timeout,
                ..ClientOptions::default()
            })?,
            username,
        })
    }

    /// One call of the client crate as a future that owns what it needs (so it can run as a
    /// task for asyncio too); its error as the exception.
    fn call<T, F>(
        &self,
        call: impl FnOnce(allocate_client::Client) -> F,
    ) -> impl Future<Output = PyResult<T>> + Send + 'static
    where
        T: Send + 'static,
        F: Future<Output = Result<T, allocate_client::Error>> + Send + 'static,
    {
        let call = call(self.client.clone());
        async move { call.await.map_err(client_error) }
    }

    fn inventory_call(
        &self,
        tags: Option<Vec<String>>,
        state: Option<String>,
    ) -> PyResult<impl Future<Output = PyResult<Vec<InventoryEntry>>> + Send + 'static> {
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
        let entries = self.call(move |c| async move { c.inventory(&filter).await });
        Ok(async move { Ok(entries.await?.into_iter().map(InventoryEntry).collect()) })
    }

    fn resource_call(&self, id: Id) -> impl Future<Output = PyResult<InventoryEntry>> + Send {
        let entry = self.call(move |c| async move { c.resource(id.0).await });
        async move { entry.await.map(InventoryEntry) }
    }

    fn allocations_call(&self) -> impl Future<Output = PyResult<Vec<AllocationInfo>>> + Send {
        let all = self.call(move |c| async move { c.allocations().await });
        async move { Ok(all.await?.into_iter().map(AllocationInfo).collect()) }
    }

    fn allocation_call(&self, id: Id) -> impl Future<Output = PyResult<AllocationInfo>> + Send {
        let info = self.call(move |c| async move { c.allocation(id.0).await });
        async move { info.await.map(AllocationInfo) }
    }

    fn extend_call(
        &self,
        id: Id,
        expires: u64,
    ) -> impl Future<Output = PyResult<AllocationInfo>> + Send {
        let info = self.call(move |c| async move { c.extend(id.0, expires).await });
        async move { info.await.map(AllocationInfo) }
    }

    fn dry_run_call(
        &self,
        requirements: allocate_core::Requirements,
    ) -> impl Future<Output = PyResult<Explanation>> + Send {
        let answer = self.call(move |c| async move { c.dry_run(&requirements).await });
        async move { answer.await.map(Explanation::from) }
    }

    fn explain_call(&self, id: Id) -> impl Future<Output = PyResult<Explanation>> + Send {
        let answer = self.call(move |c| async move { c.explain(id.0).await });
        async move { answer.await.map(Explanation::from) }
    }

    fn release_call(&self, id: Id) -> impl Future<Output = PyResult<()>> + Send {
        self.call(move |c| async move { c.release(id.0).await })
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (url, *, token = None, username = None, timeout = 30.0, ca_file = None))]
    fn new(
        url: Urls,
        token: Option<String>,
        username: Option<String>,
        timeout: f64,
        ca_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        Self::create(&url, token, username, timeout, ca_file)
    }

    /// The base URL of the server that leads (of those given, the one last found leading).
    #[getter]
    fn url(&self) -> String {
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
        wait(py, self.inventory_call(tags, state)?)?
    }

    /// `inventory` for asyncio: an awaitable of the entries.
    #[pyo3(signature = (*, tags = None, state = None))]
    fn _inventory_async<'py>(
        &self,
        py: Python<'py>,
        tags: Option<Vec<String>>,
        state: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.inventory_call(tags, state)?)
    }

    /// One resource; raises NotFound for an unknown id.
    fn resource(&self, py: Python<'_>, inventory_id: Id) -> PyResult<InventoryEntry> {
        wait(py, self.resource_call(inventory_id))?
    }

    /// `resource` for asyncio.
    fn _resource_async<'py>(
        &self,
        py: Python<'py>,
        inventory_id: Id,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.resource_call(inventory_id))
    }

    /// The caller's allocations (every allocation, for an admin).
    fn allocations(&self, py: Python<'_>) -> PyResult<Vec<AllocationInfo>> {
        wait(py, self.allocations_call())?
    }

    /// `allocations` for asyncio.
    fn _allocations_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.allocations_call())
    }

    /// One allocation; raises NotFound for an unknown id.
    fn allocation(&self, py: Python<'_>, allocation_id: Id) -> PyResult<AllocationInfo> {
        wait(py, self.allocation_call(allocation_id))?
    }

    /// `allocation` for asyncio.
    fn _allocation_async<'py>(
        &self,
        py: Python<'py>,
        allocation_id: Id,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.allocation_call(allocation_id))
    }

    /// Why a request with these requirements (the contract's fields as keywords; `username`
    /// may be left out) would or would not be served now: `POST /match`, a dry run.
    #[pyo3(name = "match", signature = (**requirements))]
    fn dry_run(
        &self,
        py: Python<'_>,
        requirements: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Explanation> {
        let requirements = dry_run_requirements(requirements, &allocate_core::Limits::default())?;
        wait(py, self.dry_run_call(requirements))?
    }

    /// `match` for asyncio.
    #[pyo3(signature = (**requirements))]
    fn _match_async<'py>(
        &self,
        py: Python<'py>,
        requirements: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let requirements = dry_run_requirements(requirements, &allocate_core::Limits::default())?;
        awaitable(py, self.dry_run_call(requirements))
    }

    /// Why a live request of yours (anyone's, for an admin) is or is not served now; raises
    /// NotFound for an ended or unknown one.
    fn explain(&self, py: Python<'_>, allocation_id: Id) -> PyResult<Explanation> {
        wait(py, self.explain_call(allocation_id))?
    }

    /// `explain` for asyncio.
    fn _explain_async<'py>(
        &self,
        py: Python<'py>,
        allocation_id: Id,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.explain_call(allocation_id))
    }

    /// Moves an allocation's lease end to `expires` (unix seconds, capped by the server).
    fn extend(&self, py: Python<'_>, allocation_id: Id, expires: u64) -> PyResult<AllocationInfo> {
        wait(py, self.extend_call(allocation_id, expires))?
    }

    /// `extend` for asyncio.
    fn _extend_async<'py>(
        &self,
        py: Python<'py>,
        allocation_id: Id,
        expires: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.extend_call(allocation_id, expires))
    }

    /// Frees an allocation or cancels a waiting request; raises NotFound when it has ended.
    fn release(&self, py: Python<'_>, allocation_id: Id) -> PyResult<()> {
        wait(py, self.release_call(allocation_id))?
    }

    /// `release` for asyncio.
    fn _release_async<'py>(
        &self,
        py: Python<'py>,
        allocation_id: Id,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.release_call(allocation_id))
    }

    /// Follows an existing allocation (yours, or anyone's for an admin): iterate over the
    /// `Follower` for its current state, then each event up to the final one. Raises NotFound
    /// for an ended or unknown one.
    fn follow(&self, py: Python<'_>, allocation_id: Id) -> PyResult<Follower> {
        wait(py, Follower::connect(self.client.clone(), allocation_id.0))?
    }

    /// `follow` for asyncio.
    fn _follow_async<'py>(
        &self,
        py: Python<'py>,
        allocation_id: Id,
    ) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, Follower::connect(self.client.clone(), allocation_id.0))
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
                ("url", quote(&self.client.url())),
                ("username", quote(&self.username)),
            ],
        )
    }
}
