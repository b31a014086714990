//! `allocate._allocate`: the compiled half of the Python package `allocate` (the Python half is
//! `python/allocate/`, its types `python/allocate/_allocate.pyi`).
//!
//! - A client of a running server ([`client`], [`allocation`]): inventory, allocations that wait
//!   in the queue and release on exit, extend and release; thin wrappers over `allocate-client`
//!   (http(s) and ws(s) through rustls), on a runtime this module owns ([`runtime`]). The
//!   same calls as asyncio awaitables ([`aio`]) under `allocate.AsyncClient` (Python, `_aio.py`).
//! - The real server in-process ([`server`]; with the cargo feature `server`, on by default,
//!   else a stand-in that raises) and a small agent to register resources ([`agent`], over
//!   `allocate-client`'s agent session).
//! - The engine itself ([`engine`]) with a manual clock ([`clock`]) and a Python matching
//!   policy ([`policy`]), for simulations and deterministic tests.
//!
//! Every wait on the network or the engine releases the GIL; network waits wake every 50 ms to
//! let Ctrl-C through. Errors are one exception class per contract error code ([`errors`]).

mod agent;
mod aio;
mod allocation;
mod bench;
mod client;
mod clock;
mod convert;
mod engine;
mod errors;
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

/// The module `allocate._allocate`; `allocate/__init__.py` re-exports it.
#[pymodule]
fn _allocate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<types::Gpu>()?;
    m.add_class::<types::Connection>()?;
    m.add_class::<types::Resource>()?;
    m.add_class::<types::InventoryEntry>()?;
    m.add_class::<types::AllocationInfo>()?;
    m.add_class::<types::GpuRequirement>()?;
    m.add_class::<types::Requirements>()?;
    m.add_class::<types::Candidate>()?;
    m.add_class::<outputs::Queued>()?;
    m.add_class::<outputs::Ready>()?;
    m.add_class::<outputs::TimedOut>()?;
    m.add_class::<outputs::Expired>()?;
    m.add_class::<outputs::Released>()?;
    m.add_class::<outputs::Offline>()?;
    m.add_class::<outputs::Online>()?;
    m.add_class::<outputs::Provision>()?;
    m.add_class::<outputs::Release>()?;
    m.add_class::<clock::ManualClock>()?;
    m.add_class::<engine::Engine>()?;
    m.add_class::<client::Client>()?;
    m.add_class::<allocation::Allocation>()?;
    m.add_class::<server::Server>()?;
    m.add_class::<agent::Agent>()?;
    m.add_function(wrap_pyfunction!(bench::_bench_rust_cycles, m)?)?;
    Ok(())
}
