//! Test support for allocate, in one place: the simulation harness that drives an engine as
//! a shell would, the invariants it checks after every step, the contract's best fit written
//! as a plain scan to check the engine against, and the deterministic labs and request
//! streams that tests and benchmarks build engines from.
//!
//! Used by `allocate-core`'s integration tests (`properties`), the fuzz targets in `fuzz/`
//! (`engine_sequence`) and the benchmarks in `benches/`. Not published; nothing here may be
//! used by shipped code. `allocate-core`'s own unit tests cannot use it (the crate would be
//! built twice), so they keep their few helpers.
//!
//! - [`sim`]: the harness: a world of agents, clients and a clock around one engine.
//! - [`invariants`]: what the harness checks after every step.
//! - [`reference`]: the matching rules as a linear scan (the oracle), and [`LinearScan`].
//! - [`policy`]: the matching policies the simulations install.
//! - [`labs`]: the catalogue and diverse labs, their request streams, and the small vocabulary
//!   that generated resources and requests draw from.
//! - [`rng`]: the deterministic random source the labs are built with.
//! - [`fuzz_inputs`]: the fuzz targets' committed seeds and regressions, for plain tests.
//! - `postgres` (cargo feature `postgres`, for dev-dependencies only): a throwaway
//!   PostgreSQL cluster, started and stopped by the test.
//! - `server` (cargo feature `server`, for dev-dependencies only): a real server on an
//!   ephemeral port, for the integration tests of the client and the command line.
//! - `tls` (cargo feature `tls`, implied by `server`): a private CA and the certificates it
//!   issues, for the TLS tests of the server and its clients.
//!
//! [`LinearScan`]: reference::LinearScan

pub mod env;
pub mod fuzz_inputs;
pub mod invariants;
pub mod labs;
pub mod policy;
#[cfg(all(feature = "postgres", unix))]
pub mod postgres;
pub mod reference;
pub mod rng;
#[cfg(feature = "server")]
pub mod server;
pub mod sim;
#[cfg(feature = "tls")]
pub mod tls;
