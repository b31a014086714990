//! The dashboard: the page at `/`, and its live feed at `/dashboard/feed` (docs/dashboard.md).
//!
//! The page is three files compiled into the binary (HTML, CSS, JavaScript; nothing fetched
//! from anywhere else, no build step). They hold no data, so they are served without a
//! token; everything the page shows comes from the feed, which needs one when tokens are
//! configured, and never carries a connection or password.
//!
//! The feed is a websocket (a browser sends its token as the `bearer.<token>` subprotocol,
//! as on `/allocate/`). It sends a `hello` (who the caller is, the server's clock), then a
//! whole snapshot of the lab each time something changed, coalesced ([`feed`] has the
//! bounds). A plain `GET /dashboard/feed` answers one snapshot: the page's first paint, and
//! its way to learn whether it needs a token.

mod assets;
mod feed;
mod view;

pub use assets::page_routes;
pub use feed::Hub;

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::server::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, UPGRADE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use view::CallerView;

/// Read buffer of a feed socket: the page sends nothing but pongs and a close.
const READ_BUFFER_BYTES: usize = 1024;

/// `GET /dashboard/feed`, for users and admins (any caller when the server runs open): a
/// websocket upgrade subscribes to the live feed; a plain GET answers one snapshot, with
/// the caller.
pub async fn feed(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.require_allocator("/dashboard/feed")?;
    if !headers.contains_key(UPGRADE) {
        let who = CallerView::of(&caller);
        let text = app
            .engine
            .call(move |s| {
                let now = crate::clock::now().as_secs();
                view::snapshot_text(s.engine(), now, Some(who))
            })
            .await??;
        let headers = [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
        ];
        return Ok((headers, text).into_response());
    }
    let upgrade = upgrade.map_err(|e| ApiError::invalid(e.body_text()))?;
    // Taken before the upgrade, so that a refusal is an HTTP answer the page can read.
    let subscription = app.dashboard.subscribe(&app)?;
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(feed::INBOUND_BYTES_MAX)
        .max_frame_size(feed::INBOUND_BYTES_MAX)
        .protocols([auth::SUBPROTOCOL])
        .on_upgrade(move |ws| feed::serve(ws, app, caller, subscription)))
}
