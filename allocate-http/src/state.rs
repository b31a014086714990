//! What every handler shares: what the socket tasks share, and the dashboard's feed.

use crate::dashboard::Hub;
use crate::sockets::Shared;

/// The state of the router, cloned into every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The driver, the settings and shutdown, as socket tasks get them.
    pub shared: Shared,
    /// The dashboard's live feed.
    pub dashboard: Hub,
}
