//! What every handler shares: what the socket tasks share, the dashboard's feed, and the
//! connection counts.

use crate::connections::Gate;
use crate::dashboard::Hub;
use crate::sockets::Shared;

/// The state of the router, cloned into every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The driver, the settings and shutdown, as socket tasks get them.
    pub shared: Shared,
    /// The dashboard's live feed.
    pub dashboard: Hub,
    /// Open connections against their caps (for `/metrics`).
    pub connections: Gate,
}
