//! `WEBSOCKET /agent/`: an agent registers its resources, then answers provisions and
//! releases. The engine's session rules decide what the socket may send (a registration
//! first, the same `agent_id` after; a newer socket of the agent takes over). A refused
//! message gets an error envelope and the socket stays open; only a refused first message
//! closes it. Every later registration names the `agent_id` of the first, so checking the
//! first against the caller's token covers every later message.

use super::{binary_refused, Inbound, Shared, Socket};
use crate::auth::tokens::Revocation;
use crate::auth::Caller;
use crate::driver::Peer;
use crate::error::ApiError;
use allocate_core::AgentMessage;
use axum::extract::ws::WebSocket;

/// Serves one agent socket from its first message to its close; `caller`'s token must allow
/// the `agent_id` it registers.
pub async fn serve(ws: WebSocket, app: Shared, caller: Caller, revocation: Revocation) {
    let (peer, outbox) = Peer::new(app.config.agent_queue_len());
    let mut socket = Socket::new(ws, outbox, &app, revocation);
    let text = match socket.first_message(&app).await {
        Ok(Some(text)) => text,
        Ok(None) => return,
        Err(e) => return socket.fail(&e).await,
    };
    // The queue goes to the driver with the first message: when the driver drops it, the
    // socket closes.
    let peer_id = match first(&app, &caller, peer, &text).await {
        Ok(peer_id) => peer_id,
        Err(e) => return socket.fail(&e).await,
    };
    while let Some(inbound) = socket.next().await {
        if let Err(e) = answer(&app, peer_id, inbound).await {
            if !socket.send_error(&e).await {
                break;
            }
        }
    }
    let _ = app.driver.agent_gone(peer_id).await;
}

/// Hands the socket's first message to the engine, once the caller's token allows the
/// `agent_id` it registers; returns the socket's id.
async fn first(app: &Shared, caller: &Caller, peer: Peer, text: &str) -> Result<u64, ApiError> {
    let message = AgentMessage::parse(text, &app.config.engine.limits)?;
    if let AgentMessage::Register { agent_id, .. } = &message {
        caller.check_agent_id(*agent_id)?;
    }
    Ok(app.driver.agent_first(peer, message).await?)
}

/// Hands one later message of the agent to the engine.
async fn answer(app: &Shared, peer_id: u64, inbound: Inbound) -> Result<(), ApiError> {
    let Inbound::Text(text) = inbound else {
        return Err(binary_refused());
    };
    let message = AgentMessage::parse(&text, &app.config.engine.limits)?;
    Ok(app.driver.agent_message(peer_id, message).await?)
}
