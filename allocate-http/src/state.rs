//! What every handler shares: what the socket tasks share, the dashboard's feed, the
//! connection counts and the metrics that handlers observe.

use crate::connections::Gate;
use crate::dashboard::Hub;
use crate::metrics::ServerMetrics;
use crate::sockets::Shared;
use std::sync::Arc;

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
