//! The allocate server. The reference agent is its own crate, `allocate-agent`.
//!
//! The server is a thin shell over `allocate-core`: one task owns the engine (the
//! [`driver`](crate::driver)), handlers and sockets call its typed methods, one timer fires
//! its deadlines, and its outputs go to per-socket bounded queues. Every decision is the
//! engine's. Start it with [`run`] on any listener (tests use `127.0.0.1:0`).
//!
//! The modules form layers; each imports only from the layers before it, never from its
//! own layer's other modules or from a later one (a test, `layers`, checks every
//! `crate::` path against this order):
//!
//! 1. leaves: `access` (the access log), `clock`, `events` (log lines), `history` (the
//!    dashboard's charts), `metrics`, `quotas` (the policy file), `tls`
//!    (the certificate and key),
//!    `connections` (the caps on open connections), `auth` (who may do what: pure rules, no
//!    HTTP types), `journal`, `config`;
//! 2. `driver`: the engine's task (job channel, loop and timer, socket registry, delivery
//!    with journal hold-back), reached only through the typed methods of its handle;
//! 3. `error`: the one error type of the HTTP layer and its envelope;
//! 4. `sockets`: the `/allocate/` and `/agent/` socket tasks;
//! 5. `dashboard`: the live feed's publisher and socket;
//! 6. `state`: what handlers share;
//! 7. `routes`: the router and its handlers;
//! 8. `server`: [`run`]: the accept loop, each connection's timeouts.

mod access;
mod auth;
mod clock;
mod config;
mod connections;
mod dashboard;
mod driver;
mod error;
mod events;
mod history;
mod journal;
#[cfg(test)]
mod layers;
mod metrics;
mod quotas;
mod routes;
mod server;
mod sockets;
mod state;
mod tls;

pub use auth::tokens::{LineProblem, Tokens, TokensError};
pub use config::{Args, ConfigError, LogFormat, ServerConfig};
pub use journal::{JournalConfig, JournalError, JournalStore};
pub use quotas::{PolicyFile, PolicyFileError};
pub use server::run;
pub use tls::{Tls, TlsError};
