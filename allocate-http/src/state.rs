//! What every handler shares: what the socket tasks share, the dashboard's feed, the
//! connection counts and the metrics that handlers observe; and what a standby's share.

use crate::connections::Gate;
use crate::dashboard::Hub;
use crate::metrics::ServerMetrics;
use crate::sockets::Shared;
use std::sync::Arc;
use tokio::sync::watch;

/// The state of the router, cloned into every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The driver, the settings and shutdown, as socket tasks get them.
    pub shared: Shared,
    /// The dashboard's live feed.
    pub dashboard: Hub,
    /// Open connections against their caps (for `/metrics`).
    pub connections: Gate,
    /// What every request and the journal's commits add to `/metrics`.
    pub metrics: Arc<ServerMetrics>,
}

/// The state of a standby's router: whom to name, and what `/metrics` shows.
#[derive(Clone, Debug)]
pub struct StandbyState {
    /// The URL the writer advertises, as last read from the store.
    pub leader: watch::Receiver<Option<String>>,
    /// Open connections against their caps.
    pub connections: Gate,
    /// The replication, build and process families.
    pub metrics: Arc<ServerMetrics>,
}
