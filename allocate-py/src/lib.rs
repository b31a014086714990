//! `allocate._allocate`: the compiled half of the Python package `allocate` (the Python half is
//! `python/allocate/`, its types `python/allocate/_allocate.pyi`).
//!
//! - A client of a running server ([`client`], [`allocation`], [`follow`]): inventory,
//!   allocations that wait in the queue and release on exit, extend and release, following an
//!   allocation's events; thin wrappers over `allocate-client`
//!   (http(s) and ws(s) through rustls), on a runtime this module owns ([`runtime`]). The
//!   same calls as asyncio awaitables ([`aio`]) under `allocate.AsyncClient` (Python, `_aio.py`).
//! - The real server in-process ([`server`]; with the cargo feature `server`, on by default,
//!   else a stand-in that raises) and a small agent to register resources ([`agent`], over
//!   `allocate-client`'s agent session).
//! - The engine itself ([`engine`]) with a manual clock ([`clock`]) and a Python matching
//!   policy ([`policy`]), for simulations and deterministic tests.
//!
//! - The `allocate` command line ([`cli`]): the console script of the package runs
//!   `allocate-cli`'s implementation, not a second one.
//!
//! Every wait on the network or the engine releases the GIL; network waits wake every 50 ms to
//! let Ctrl-C through. Errors are one exception class per contract error code ([`errors`]).

mod agent;
mod aio;
mod allocation;
mod bench;
mod cli;
mod client;
mod clock;
mod convert;
mod engine;
mod errors;
mod explain;
mod follow;
mod http;
mod outputs;
mod policy;
mod pylog;
mod runtime;
#[cfg(feature = "server")]
mod server;
#[cfg(not(feature = "server"))]
#[path = "no_server.rs"]
mod server;
mod types;

use pyo3::prelude::*;

/// The module `allocate._allocate`; `allocate/__init__.py` re-exports it. Every class and
/// exception says this module as its `__module__`, so pickling and stubtest find it here.
#[pymodule]
mod _allocate {
    #[pymodule_export]
    use crate::agent::Agent;
    #[pymodule_export]
    use crate::allocation::Allocation;
    #[pymodule_export]
    use crate::bench::_bench_rust_cycles;
    #[pymodule_export]
    use crate::cli::_cli_main;
    #[pymodule_export]
    use crate::client::Client;
    #[pymodule_export]
    use crate::clock::ManualClock;
    #[pymodule_export]
    use crate::engine::Engine;
    #[pymodule_export]
    use crate::errors::{
        AllocateError, AllocationTimeout, Conflict, ConnectionLost, Forbidden, InternalError,
        InvalidRequest, NotFound, NotLeader, Overloaded, QuotaExceeded, ShuttingDown, Unauthorized,
    };
    #[pymodule_export]
    use crate::explain::{Explanation, Finding};
    #[pymodule_export]
    use crate::follow::Follower;
    #[pymodule_export]
    use crate::outputs::{
        Expired, Offline, Online, Provision, Queued, QuotaRefused, Ready, Release, Released,
        TimedOut,
    };
    #[pymodule_export]
    use crate::server::Server;
    #[pymodule_export]
    use crate::types::{
        AllocationInfo, Candidate, Connection, Gpu, GpuRequirement, InventoryEntry, Requirements,
        Resource,
    };
    use pyo3::prelude::*;

    /// What is not a class or function: the version, each exception's `code`, and the
    /// `atexit` hook of [`crate::aio`].
    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        crate::aio::register_atexit(m.py())?;
        crate::errors::set_codes(m.py())
    }
}
