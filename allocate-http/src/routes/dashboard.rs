//! `GET /dashboard/feed`: the dashboard's live feed ([`crate::dashboard`]).

use super::authn::SUBPROTOCOL;
use super::ok;
use crate::auth::tokens::Credential;
use crate::auth::Caller;
use crate::clock;
use crate::dashboard::{self, CallerView};
use crate::error::ApiError;
use crate::history::SAMPLE_SECS;
use crate::state::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, UPGRADE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::json;

/// `GET /dashboard/history`, for users and admins (any caller when the server runs open):
/// the last day of the lab, a sample a minute, for the page's charts (no usernames in it).
pub async fn history(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_allocator("/dashboard/history")?;
    let samples = app.shared.driver.history().await?;
    ok(json!({"sample_secs": SAMPLE_SECS, "samples": samples}))
}

/// Read buffer of a feed socket: the page sends nothing but pongs and a close.
const READ_BUFFER_BYTES: usize = 1024;

/// `GET /dashboard/feed`, for users and admins (any caller when the server runs open): a
/// websocket upgrade subscribes to the live feed; a plain GET answers one snapshot, with
/// the caller.
pub async fn feed(
    State(app): State<AppState>,
    caller: Caller,
    credential: Option<Extension<Credential>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.require_allocator("/dashboard/feed")?;
    if !headers.contains_key(UPGRADE) {
        let who = CallerView::of(&caller);
        let text = app
            .shared
            .driver
            .read(move |engine| dashboard::snapshot_text(engine, clock::now().as_secs(), Some(who)))
            .await??;
        let headers = [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
        ];
        return Ok((headers, text).into_response());
    }
    let upgrade = upgrade.map_err(|e| ApiError::invalid(e.body_text()))?;
    // Taken before the upgrade, so that a refusal is an HTTP answer the page can read.
    let credential = credential.map(|Extension(credential)| credential);
    let subscription = app.dashboard.subscribe(&app.shared, credential.clone())?;
    let revocation = app.shared.config.tokens.revocation(credential);
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(dashboard::INBOUND_BYTES_MAX)
        .max_frame_size(dashboard::INBOUND_BYTES_MAX)
        .protocols([SUBPROTOCOL])
        .on_upgrade(move |ws| dashboard::serve(ws, app.shared, caller, subscription, revocation)))
}
