//! `Follower`: `WEBSOCKET /allocate/{id}`, an existing allocation's current state and then
//! each of its events (the contract's *Following an allocation*), as the output classes.

use crate::aio::awaitable;
use crate::http::client_error;
use crate::outputs::{event_to_python, TimedOut};
use crate::runtime::wait;
use allocate_client::{AllocationError, Error};
use allocate_core::wire::ClientEvent;
use pyo3::prelude::*;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use uuid::Uuid;

/// Follows an allocation (yours, or anyone's for an admin). Iterate over it (`for event in
/// client.follow(id)`, or `async for` under `AsyncClient`): first `Queued` or `Ready` for where
/// it stands, then every event (`Queued`, `Ready`, `Offline`, `Online`) up to the final one
/// (`Released`, `Expired`, `TimedOut`), after which iteration stops. Following changes
/// nothing: closing the follower (`close()`, the end of a `with` block) leaves the allocation
/// as it is.
#[pyclass(frozen, module = "allocate._allocate")]
#[derive(Debug)]
pub struct Follower {
    allocation_id: Uuid,
    socket: Arc<allocate_client::Allocation>,
    /// The first event, read on connecting (so that an ended or unknown id fails there) and
    /// not yet taken.
    first: Arc<Mutex<Option<Next>>>,
}

/// What reading one event gave.
type Next = Result<Option<ClientEvent>, Error>;

impl Follower {
    /// Connects to follow `allocation_id` and reads its current state: an ended or unknown id
    /// fails here, with `NotFound`.
    pub async fn connect(
        client: allocate_client::Client,
        allocation_id: Uuid,
    ) -> PyResult<Follower> {
        let socket = client.follow(allocation_id).await.map_err(client_error)?;
        let first = match socket.next_event().await {
            Err(e) if !matches!(e, Error::Allocation(AllocationError::TimedOut(_))) => {
                return Err(client_error(e));
            }
            next => next,
        };
        Ok(Follower {
            allocation_id,
            socket: Arc::new(socket),
            first: Arc::new(Mutex::new(Some(first))),
        })
    }

    /// The next event, or None after the final one.
    fn next_call(&self) -> impl Future<Output = PyResult<Option<Py<PyAny>>>> + Send + 'static {
        let (socket, allocation_id) = (self.socket.clone(), self.allocation_id);
        let first = self.first.clone();
        async move {
            let taken = first.lock().unwrap_or_else(PoisonError::into_inner).take();
            let next = match taken {
                Some(next) => next,
                None => socket.next_event().await,
            };
            let event = match next {
                Ok(event) => event,
                // The wait ran out: the one final event that arrives as an error envelope.
                Err(Error::Allocation(AllocationError::TimedOut(_))) => {
                    return Python::attach(|py| {
                        let timed_out = TimedOut {
                            allocation_id: allocation_id.to_string(),
                        };
                        Ok(Some(timed_out.into_pyobject(py)?.into_any().unbind()))
                    });
                }
                Err(e) => return Err(client_error(e)),
            };
            match event {
                None => Ok(None),
                Some(event) => Python::attach(|py| event_to_python(py, event).map(Some)),
            }
        }
    }
}

#[pymethods]
impl Follower {
    /// The allocation followed.
    #[getter]
    fn allocation_id(&self) -> String {
        self.allocation_id.to_string()
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        wait(py, self.next_call())?
    }

    /// The next event for asyncio; None after the final one (`allocate.AsyncFollower`
    /// turns that into the end of `async for`).
    fn _next_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, self.next_call())
    }

    /// Stops following (the allocation is left as it is). Harmless when already closed.
    fn close(&self) {
        self.socket.close();
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Stops following; an exception of the block goes on.
    fn __exit__(
        &self,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc_value: Option<&Bound<'_, PyAny>>,
        traceback: Option<&Bound<'_, PyAny>>,
    ) -> bool {
        let _ = (exc_type, exc_value, traceback);
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!("Follower(allocation_id='{}')", self.allocation_id)
    }
}
