//! `WEBSOCKET /allocate/{id}`: follows an existing allocation. The driver queues its current
//! state, then every later event of it, and closes after the final one; the client sends
//! nothing, and its leaving does not affect the allocation.

use super::{Shared, Socket};
use crate::auth::tokens::Revocation;
use crate::auth::Caller;
use crate::driver::Peer;
use axum::extract::ws::WebSocket;
use tracing::debug;
use uuid::Uuid;

/// Serves one follower socket of `allocation_id` (of `caller`'s, any for an admin) until
/// either side closes it.
pub async fn serve(
    ws: WebSocket,
    app: Shared,
    caller: Caller,
    revocation: Revocation,
    allocation_id: Uuid,
) {
    let (peer, outbox) = Peer::new(app.config.client_queue_len);
    let mut socket = Socket::new(ws, outbox, &app, revocation);
    let peer_id = peer.id();
    if let Err(e) = app.driver.follow(caller, peer, allocation_id).await {
        return socket.fail(&e.into()).await;
    }
    // The contract defines no messages from a follower; they are read (for keepalive and
    // size limits) and otherwise ignored.
    while socket.next().await.is_some() {
        debug!(%allocation_id, "ignoring a message from a follower");
    }
    drop(socket);
    let _ = app.driver.follower_gone(allocation_id, peer_id).await;
}
