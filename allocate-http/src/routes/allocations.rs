//! `/allocate/` and `/agent/`: the websocket upgrades, and reading, freeing and extending
//! allocations.

use super::authn::SUBPROTOCOL;
use super::extract::{IdSegment, JsonText};
use super::ok;
use crate::auth::tokens::{Credential, Revocation};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::sockets;
use crate::state::AppState;
use allocate_core::{parse_expires_patch, parse_uuid};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::header::UPGRADE;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;

/// `GET /allocate/`: a websocket upgrade opens an allocation; a plain GET lists the
/// caller's allocations (every one for an admin).
pub(super) async fn socket_or_list(
    State(app): State<AppState>,
    caller: Caller,
    credential: Option<Extension<Credential>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.require_allocator("/allocate/")?;
    if !headers.contains_key(UPGRADE) {
        return ok(app.shared.driver.allocations(caller).await?);
    }
    let upgrade = upgrade.map_err(|e| ApiError::invalid(e.body_text()))?;
    let shared = app.shared;
    let revocation = revocation(&shared, credential);
    Ok(sized(upgrade, &shared)
        .on_upgrade(move |ws| sockets::client::serve(ws, shared, caller, revocation)))
}

/// `GET /agent/`: the agent websocket.
pub(super) async fn agent_socket(
    State(app): State<AppState>,
    caller: Caller,
    credential: Option<Extension<Credential>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    caller.require_agent()?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::invalid(format!(
            "/agent/ is a websocket endpoint: {}",
            e.body_text()
        ))
    })?;
    let shared = app.shared;
    let revocation = revocation(&shared, credential);
    Ok(sized(upgrade, &shared)
        .on_upgrade(move |ws| sockets::agent::serve(ws, shared, caller, revocation)))
}

/// What tells a socket that a reload took away the token it is opened with.
fn revocation(shared: &sockets::Shared, credential: Option<Extension<Credential>>) -> Revocation {
    shared
        .config
        .tokens
        .revocation(credential.map(|Extension(credential)| credential))
}

/// Read buffer of each websocket. tungstenite's default (128 KiB) is zeroed before every
/// read, which cost a fifth of the server's CPU in the allocation cycle, and is resident
/// memory per socket (1.3 GB for 10,000 agents). Our messages are small; a larger one is
/// still read whole, in more steps.
const WS_READ_BUFFER_BYTES: usize = 1024;

/// Applies the message size limit (a larger message closes the socket with 1009), and
/// selects our subprotocol when a browser offered its token as another.
fn sized(upgrade: WebSocketUpgrade, shared: &sockets::Shared) -> WebSocketUpgrade {
    let max = shared.config.message_bytes_max;
    upgrade
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .max_message_size(max)
        .max_frame_size(max)
        .protocols([SUBPROTOCOL])
}

/// `GET /allocate/{id}`: the allocation; a websocket upgrade follows it (its owner or an
/// admin; the socket says why it is refused).
pub(super) async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    credential: Option<Extension<Credential>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    IdSegment(id): IdSegment,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "allocation_id")?;
    if !headers.contains_key(UPGRADE) {
        return ok(app.shared.driver.allocation(caller, id).await?);
    }
    caller.require_allocator("/allocate/{id}")?;
    let upgrade = upgrade.map_err(|e| ApiError::invalid(e.body_text()))?;
    let shared = app.shared;
    let revocation = revocation(&shared, credential);
    Ok(sized(upgrade, &shared)
        .on_upgrade(move |ws| sockets::follow::serve(ws, shared, caller, revocation, id)))
}

/// `DELETE /allocate/{id}`: frees the allocation or cancels its request.
pub(super) async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    IdSegment(id): IdSegment,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "allocation_id")?;
    let by = caller.to_string();
    app.shared.driver.release(caller, id).await?;
    tracing::info!(allocation_id = %id, by, "allocation deleted");
    ok("deleted allocation")
}

/// `PATCH /allocate/{id}`: moves the lease end.
pub(super) async fn patch(
    State(app): State<AppState>,
    caller: Caller,
    IdSegment(id): IdSegment,
    JsonText(body): JsonText,
) -> Result<Response, ApiError> {
    let id = parse_uuid(&id, "allocation_id")?;
    let expires = parse_expires_patch(&body, &app.shared.config.engine.limits)?;
    let by = caller.to_string();
    let info = app.shared.driver.set_expires(caller, id, expires).await?;
    tracing::info!(allocation_id = %id, expires = info.expires, by, "lease changed");
    ok(info)
}
