//! `Client`: the contract's HTTP calls, and allocations over `WEBSOCKET /allocate/`.

use crate::allocation::Allocation;
use crate::convert::{dict_to_json, Id};
use crate::errors;
use crate::http::Endpoint;
use crate::runtime::wait;
use crate::types::{quote, repr, AllocationInfo, InventoryEntry};
use allocate_core::wire::admin::expires_patch_text;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How much longer than its queue wait an allocation waits for the server's answer (time for
/// the network and for provisioning) before giving up on its own.
const ANSWER_GRACE: Duration = Duration::from_secs(5);

/// The contract's default `allocation_timeout_seconds`.
const QUEUE_WAIT_SECS_DEFAULT: u64 = allocate_core::DEFAULT_ALLOCATION_TIMEOUT_SECS;

/// Environment variables that name the user, in order of preference.
const USERNAME_VARIABLES: [&str; 4] = ["ALLOCATE_USERNAME", "USER", "LOGNAME", "USERNAME"];

/// Reads a success's `data` as `T`; `what` names it in errors.
pub fn from_data<T: DeserializeOwned>(data: Value, what: &str) -> PyResult<T> {
    serde_json::from_value(data).map_err(|e| {
        errors::AllocateError::new_err(format!("the server's {what} is not the contract's: {e}"))
    })
}

/// A client of a running allocate server at `url` (`http://host:port`). `token` is sent as a
/// bearer token; `username` (default: `$ALLOCATE_USERNAME`, else the login name) is whom
/// allocations are for unless a request names another; `timeout` bounds each HTTP call.
/// Every call releases the GIL while it waits, and Ctrl-C interrupts it.
#[pyclass(frozen, module = "allocate")]
#[derive(Debug)]
pub struct Client {
    endpoint: Arc<Endpoint>,
    username: String,
}

impl Client {
    /// A client of the server at `url` (see the class docs for the arguments).
    pub fn create(
        url: &str,
        token: Option<String>,
        username: Option<String>,
        timeout: f64,
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
            endpoint: Arc::new(Endpoint::new(url, token, timeout)?),
            username,
        })
    }

    fn get(&self, py: Python<'_>, path: &str, query: &[(&str, &str)]) -> PyResult<Value> {
        let url = self.endpoint.join(path, query)?;
        wait(py, self.endpoint.call(Method::GET, url, None))?
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (url, *, token = None, username = None, timeout = 30.0))]
    fn new(
        url: &str,
        token: Option<String>,
        username: Option<String>,
        timeout: f64,
    ) -> PyResult<Self> {
        Self::create(url, token, username, timeout)
    }

    /// The server's base URL.
    #[getter]
    fn url(&self) -> &str {
        self.endpoint.url()
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
        let tags = tags.map(|t| t.join(","));
        let mut query = Vec::new();
        if let Some(t) = &tags {
            query.push(("tags", t.as_str()));
        }
        if let Some(s) = &state {
            query.push(("state", s.as_str()));
        }
        let data = self.get(py, "inventory/", &query)?;
        let entries: Vec<allocate_core::InventoryEntry> = from_data(data, "inventory")?;
        Ok(entries.into_iter().map(InventoryEntry).collect())
    }

    /// One resource; raises NotFound for an unknown id.
    fn resource(&self, py: Python<'_>, inventory_id: Id) -> PyResult<InventoryEntry> {
        let data = self.get(py, &format!("inventory/{}", inventory_id.0), &[])?;
        let [entry]: [allocate_core::InventoryEntry; 1] = from_data(data, "resource")?;
        Ok(InventoryEntry(entry))
    }

    /// The caller's allocations (every allocation, for an admin).
    fn allocations(&self, py: Python<'_>) -> PyResult<Vec<AllocationInfo>> {
        let data = self.get(py, "allocate/", &[])?;
        let all: Vec<allocate_core::AllocationInfo> = from_data(data, "allocations")?;
        Ok(all.into_iter().map(AllocationInfo).collect())
    }

    /// One allocation; raises NotFound for an unknown id.
    fn allocation(&self, py: Python<'_>, allocation_id: Id) -> PyResult<AllocationInfo> {
        let data = self.get(py, &format!("allocate/{}", allocation_id.0), &[])?;
        from_data(data, "allocation").map(AllocationInfo)
    }

    /// Moves an allocation's lease end to `expires` (unix seconds, capped by the server).
    fn extend(&self, py: Python<'_>, allocation_id: Id, expires: u64) -> PyResult<AllocationInfo> {
        let url = self
            .endpoint
            .join(&format!("allocate/{}", allocation_id.0), &[])?;
        let body = expires_patch_text(expires);
        let data = wait(py, self.endpoint.call(Method::PATCH, url, Some(body)))??;
        from_data(data, "allocation").map(AllocationInfo)
    }

    /// Frees an allocation or cancels a waiting request; raises NotFound when it has ended.
    fn release(&self, py: Python<'_>, allocation_id: Id) -> PyResult<()> {
        let url = self
            .endpoint
            .join(&format!("allocate/{}", allocation_id.0), &[])?;
        wait(py, self.endpoint.call(Method::DELETE, url, None))??;
        Ok(())
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
            self.endpoint.clone(),
            fields,
            queue_wait + ANSWER_GRACE,
            on_queued,
        ))
    }

    fn __repr__(&self) -> String {
        repr(
            "Client",
            &[
                ("url", quote(self.endpoint.url())),
                ("username", quote(&self.username)),
            ],
        )
    }
}
