//! The engine's outputs as Python classes, one per kind; the client's queue progress and the
//! agent's orders use the same classes.

use crate::explain::{findings, Finding};
use crate::types::{connection_repr, quote, repr, repr_opt, Connection};
use allocate_core::wire::ClientEvent;
use allocate_core::Output;
use pyo3::prelude::*;
use std::sync::Arc;
use uuid::Uuid;

/// A waiting request's place in the queue (sent again whenever it changes).
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// The request.
    pub allocation_id: String,
    /// 1-based place among all waiting requests.
    pub position: u32,
    /// Registered resources that could ever satisfy it (0: it waits for one to be registered).
    pub matching_resources: u64,
    /// The earliest known lease end (unix seconds) among matching resources that are held.
    pub eta: Option<u64>,
    /// Why it could never be satisfied (no registered resource matches, or fewer than its
    /// `count`): in the first message of such a request only, else None.
    pub explain: Option<Vec<Finding>>,
    /// The quota limit that holds it back, in words (`"GPUs held"`), or None.
    pub limit: Option<String>,
}

/// The allocation is ready: its resource and how to reach it.
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    /// The allocation.
    pub allocation_id: String,
    /// The resource it holds.
    pub inventory_id: String,
    /// How to reach it.
    pub connection: Connection,
    /// When the lease ends (unix seconds).
    pub expires: u64,
    /// Every resource granted, the first one first, as (inventory id, connection), for a
    /// request of several (`count`); empty for one.
    pub resources: Vec<(String, Connection)>,
}

/// Nothing became free before the request's wait ended (the contract's 408).
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedOut {
    /// The request.
    pub allocation_id: String,
}

/// A new quota policy refused the waiting request: it could never fit its user's limit (the
/// contract's 403 `quota_exceeded`).
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaRefused {
    /// The request.
    pub allocation_id: String,
    /// The user whose quota it is.
    pub user: String,
    /// The limit it could never fit, in words (`"resources held"`).
    pub limit: String,
    /// The limit's value.
    pub max: u64,
    /// What the request needs of it.
    pub asked: u64,
}

/// The lease ended.
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The allocation.
    pub allocation_id: String,
}

/// The allocation was released (or the waiting request cancelled).
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    /// The allocation.
    pub allocation_id: String,
}

/// The resource's agent went away during the lease.
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offline {
    /// The allocation.
    pub allocation_id: String,
}

/// The resource's agent came back during the lease.
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Online {
    /// The allocation.
    pub allocation_id: String,
}

/// An order to an agent: prepare a resource for a user.
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provision {
    /// The agent to ask.
    pub agent_id: String,
    /// The allocation being prepared.
    pub allocation_id: String,
    /// The resource.
    pub inventory_id: String,
    /// Who will hold it.
    pub username: String,
    /// When the lease ends (unix seconds).
    pub expires: u64,
}

/// An order to an agent: clean up a resource after an allocation.
#[pyclass(frozen, eq, get_all, module = "allocate._allocate")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The agent to ask.
    pub agent_id: String,
    /// The allocation that ended.
    pub allocation_id: String,
    /// The resource.
    pub inventory_id: String,
}

fn id(id: Uuid) -> String {
    id.to_string()
}

/// Defines the constructor and `__repr__` of output classes whose fields are all ids (strings).
macro_rules! id_outputs {
    ($($class:ident: $($field:ident),+;)+) => {$(
        #[pymethods]
        impl $class {
            #[new]
            fn new($($field: String),+) -> Self {
                $class { $($field),+ }
            }

            fn __repr__(&self) -> String {
                repr(stringify!($class), &[$((stringify!($field), quote(&self.$field))),+])
            }
        }
    )+};
}

id_outputs! {
    TimedOut: allocation_id;
    Expired: allocation_id;
    Released: allocation_id;
    Offline: allocation_id;
    Online: allocation_id;
    Release: agent_id, allocation_id, inventory_id;
}

#[pymethods]
impl Queued {
    #[new]
    #[pyo3(signature = (allocation_id, position, matching_resources, eta = None))]
    fn new(
        allocation_id: String,
        position: u32,
        matching_resources: u64,
        eta: Option<u64>,
    ) -> Self {
        Queued {
            allocation_id,
            position,
            matching_resources,
            eta,
            explain: None,
            limit: None,
        }
    }

    fn __repr__(&self) -> String {
        repr(
            "Queued",
            &[
                ("allocation_id", quote(&self.allocation_id)),
                ("position", self.position.to_string()),
                ("matching_resources", self.matching_resources.to_string()),
                ("eta", repr_opt(self.eta, |t| t.to_string())),
                ("limit", repr_opt(self.limit.as_deref(), quote)),
            ],
        )
    }
}

#[pymethods]
impl QuotaRefused {
    #[new]
    fn new(allocation_id: String, user: String, limit: String, max: u64, asked: u64) -> Self {
        QuotaRefused {
            allocation_id,
            user,
            limit,
            max,
            asked,
        }
    }

    fn __repr__(&self) -> String {
        repr(
            "QuotaRefused",
            &[
                ("allocation_id", quote(&self.allocation_id)),
                ("user", quote(&self.user)),
                ("limit", quote(&self.limit)),
                ("max", self.max.to_string()),
                ("asked", self.asked.to_string()),
            ],
        )
    }
}

#[pymethods]
impl Ready {
    #[new]
    #[pyo3(signature = (allocation_id, inventory_id, connection, expires, resources = Vec::new()))]
    fn new(
        allocation_id: String,
        inventory_id: String,
        connection: PyRef<'_, Connection>,
        expires: u64,
        resources: Vec<(String, PyRef<'_, Connection>)>,
    ) -> Self {
        Ready {
            allocation_id,
            inventory_id,
            connection: Connection::clone(&connection),
            expires,
            resources: resources
                .into_iter()
                .map(|(id, c)| (id, Connection::clone(&c)))
                .collect(),
        }
    }

    fn __repr__(&self) -> String {
        repr(
            "Ready",
            &[
                ("allocation_id", quote(&self.allocation_id)),
                ("inventory_id", quote(&self.inventory_id)),
                ("connection", connection_repr(&self.connection.0)),
                ("expires", self.expires.to_string()),
            ],
        )
    }
}

#[pymethods]
impl Provision {
    #[new]
    fn new(
        agent_id: String,
        allocation_id: String,
        inventory_id: String,
        username: String,
        expires: u64,
    ) -> Self {
        Provision {
            agent_id,
            allocation_id,
            inventory_id,
            username,
            expires,
        }
    }

    fn __repr__(&self) -> String {
        repr(
            "Provision",
            &[
                ("agent_id", quote(&self.agent_id)),
                ("allocation_id", quote(&self.allocation_id)),
                ("inventory_id", quote(&self.inventory_id)),
                ("username", quote(&self.username)),
                ("expires", self.expires.to_string()),
            ],
        )
    }
}

/// The Python object for one event of an allocation's socket: the engine output it was
/// written from.
pub fn event_to_python(py: Python<'_>, event: ClientEvent) -> PyResult<Py<PyAny>> {
    to_python(
        py,
        match event {
            ClientEvent::Queued {
                allocation_id,
                position,
                matching_resources,
                eta,
                explain,
                quota,
            } => Output::Queued {
                allocation_id,
                position,
                matching_resources,
                eta,
                quota,
                // A first message says why only when nothing matches: none is free either.
                explain: explain.map(|findings| allocate_core::Explanation {
                    findings,
                    free: 0,
                    matching_resources,
                }),
            },
            ClientEvent::Ready {
                allocation_id,
                inventory_id,
                connection,
                expires,
                resources,
            } => Output::Ready {
                allocation_id,
                inventory_id,
                connection,
                expires,
                resources,
            },
            ClientEvent::Expired { allocation_id } => Output::Expired { allocation_id },
            ClientEvent::Released { allocation_id } => Output::Released { allocation_id },
            ClientEvent::Offline { allocation_id } => Output::Offline { allocation_id },
            ClientEvent::Online { allocation_id } => Output::Online { allocation_id },
        },
    )
}

/// The Python object for one engine output.
pub fn to_python(py: Python<'_>, output: Output) -> PyResult<Py<PyAny>> {
    Ok(match output {
        Output::Queued {
            allocation_id,
            position,
            matching_resources,
            eta,
            explain,
            quota,
        } => Queued {
            allocation_id: id(allocation_id),
            position,
            matching_resources,
            eta,
            explain: explain.map(|e| findings(&e.findings)),
            limit: quota.map(|q| q.as_str().to_owned()),
        }
        .into_pyobject(py)?
        .into_any(),
        Output::Ready {
            allocation_id,
            inventory_id,
            connection,
            expires,
            resources,
        } => Ready {
            allocation_id: id(allocation_id),
            inventory_id: id(inventory_id),
            connection: Connection(Arc::unwrap_or_clone(connection)),
            expires,
            resources: resources
                .into_iter()
                .map(|g| {
                    (
                        id(g.inventory_id),
                        Connection(Arc::unwrap_or_clone(g.connection)),
                    )
                })
                .collect(),
        }
        .into_pyobject(py)?
        .into_any(),
        Output::TimedOut { allocation_id, .. } => TimedOut {
            allocation_id: id(allocation_id),
        }
        .into_pyobject(py)?
        .into_any(),
        Output::QuotaRefused {
            allocation_id,
            refusal,
        } => QuotaRefused {
            allocation_id: id(allocation_id),
            limit: refusal.limit.as_str().to_owned(),
            user: refusal.user,
            max: refusal.max,
            asked: refusal.asked,
        }
        .into_pyobject(py)?
        .into_any(),
        Output::Expired { allocation_id } => Expired {
            allocation_id: id(allocation_id),
        }
        .into_pyobject(py)?
        .into_any(),
        Output::Released { allocation_id } => Released {
            allocation_id: id(allocation_id),
        }
        .into_pyobject(py)?
        .into_any(),
        Output::Offline { allocation_id } => Offline {
            allocation_id: id(allocation_id),
        }
        .into_pyobject(py)?
        .into_any(),
        Output::Online { allocation_id } => Online {
            allocation_id: id(allocation_id),
        }
        .into_pyobject(py)?
        .into_any(),
        Output::Provision {
            agent_id,
            allocation_id,
            inventory_id,
            username,
            expires,
            // `ssh_keys` and `provision` are for agents; an engine driven from Python answers
            // provisions itself and does not see them yet.
            ..
        } => Provision {
            agent_id: id(agent_id),
            allocation_id: id(allocation_id),
            inventory_id: id(inventory_id),
            username,
            expires,
        }
        .into_pyobject(py)?
        .into_any(),
        Output::Release {
            agent_id,
            allocation_id,
            inventory_id,
        } => Release {
            agent_id: id(agent_id),
            allocation_id: id(allocation_id),
            inventory_id: id(inventory_id),
        }
        .into_pyobject(py)?
        .into_any(),
    }
    .unbind())
}
