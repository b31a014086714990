//! The async Rust client of the allocate contract (`API.md`): the one client that the command
//! line, the Python package, the reference agent and the load generator wrap.
//!
//! - [`Client`]: a server's URL, bearer token and TLS settings, and the contract's HTTP calls
//!   (inventory with filters, allocations, extend, release, maintenance, health).
//! - [`Client::allocate`] opens `WEBSOCKET /allocate/` and returns an [`Allocation`]: the
//!   server's events as a typed stream ([`Allocation::next_event`]), with the allocation's
//!   state kept in one place, [`AllocationState`], a sans-IO state machine that shells can
//!   also drive themselves.
//! - [`AgentSession`]: `WEBSOCKET /agent/`: registration, the server's orders as a typed
//!   stream, answers, and reconnection with backoff; the order bookkeeping is [`OrderBook`],
//!   sans-IO as well. What to run for an order is the caller's policy.
//!
//! Every message is read and written through [`allocate_core::wire`]; nothing here parses an
//! envelope by hand. `https://` and `wss://` go through rustls (ring) with the operating
//! system's roots plus an optional extra CA file ([`ClientOptions::ca_file`]).

#![forbid(unsafe_code)]

// Layers, each importing only from the ones before it: chain, socket, state, error, tls,
// failover, client, allocation, agent.
mod agent;
mod allocation;
mod chain;
mod client;
mod error;
mod failover;
mod socket;
mod state;
mod tls;

pub use agent::{
    AgentEvent, AgentHandle, AgentOptions, AgentSession, Backoff, Order, OrderBook, OrderStep,
};
pub use allocation::{AllocateRequest, Allocation, EVENTS_QUEUED_MAX};
pub use chain::chain;
pub use client::{Backup, Client, ClientOptions};
pub use error::Error;
pub use failover::FailoverOptions;
pub use socket::{SocketEnd, MESSAGE_BYTES_MAX};
pub use state::{AllocationError, AllocationState, Lease, Phase};

/// The contract's types this crate's API uses, re-exported so callers need not name
/// `allocate-core` themselves.
pub use allocate_core::{
    wire::{ClientEvent, ProvisionOrder, Refusal, ReleaseOrder},
    AllocationInfo, Connection, Explanation, Finding, GpuRequirement, InventoryEntry,
    InventoryFilter, ProvisionResult, Reason, Requirements, ResourceSpec, ResourceState, UsageBy,
    UsageQuery, UsageRow,
};
