//! The allocate server. The reference agent is its own crate, `allocate-agent`.
//!
//! The server is a thin shell over `allocate-core`: one task owns the engine
//! (`engine_task`), handlers and sockets send it jobs, one timer fires its deadlines, and its
//! outputs go to per-socket bounded queues. Every decision is the engine's. Start it with
//! [`run`] on any listener (tests use `127.0.0.1:0`).

mod auth;
mod clock;
mod config;
mod dashboard;
mod engine_task;
mod error;
mod events;
mod extract;
mod journal;
mod metrics;
mod routes;
mod server;
mod ws;
mod ws_agent;
mod ws_client;

pub use auth::tokens::{LineProblem, Tokens, TokensError};
pub use config::{Args, ConfigError, ServerConfig};
pub use journal::{JournalConfig, JournalError};
pub use server::run;
