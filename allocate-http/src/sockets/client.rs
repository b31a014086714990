//! `WEBSOCKET /allocate/`: one socket, one allocation. The client sends its requirements;
//! the engine's outputs for that allocation come back until it ends.

use super::{Shared, Socket};
use crate::auth::tokens::Revocation;
use crate::auth::Caller;
use crate::driver::Peer;
use allocate_core::parse_allocate_request;
use axum::extract::ws::WebSocket;
use tracing::debug;

/// Serves one client socket from its request to its close; `caller` (a user or an admin)
/// may request only as its own username unless it is an admin.
pub async fn serve(ws: WebSocket, app: Shared, caller: Caller, revocation: Revocation) {
    let (peer, outbox) = Peer::new(app.config.client_queue_len);
    let mut socket = Socket::new(ws, outbox, &app, revocation);
    let text = match socket.first_message(&app).await {
        Ok(Some(text)) => text,
        Ok(None) => return,
        Err(e) => return socket.fail(&e).await,
    };
    let requirements = match parse_allocate_request(&text, &app.config.engine.limits) {
        Ok(r) => r,
        Err(e) => return socket.fail(&e.into()).await,
    };
    if let Err(e) = caller.check_username(&requirements.username) {
        return socket.fail(&e.into()).await;
    }
    let peer_id = peer.id();
    let allocation_id = match app.driver.request(peer, requirements).await {
        Ok(id) => id,
        Err(e) => return socket.fail(&e.into()).await,
    };
    // The contract defines no further client messages; they are read (for keepalive and
    // size limits) and otherwise ignored.
    while socket.next().await.is_some() {
        debug!(%allocation_id, "ignoring a client message after the request");
    }
    // Closed before the engine hears of it, so that it sends nothing more meanwhile.
    drop(socket);
    let _ = app.driver.client_gone(allocation_id, peer_id).await;
}
