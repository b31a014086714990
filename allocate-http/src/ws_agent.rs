//! `WEBSOCKET /agent/`: an agent registers its resources, then answers provisions and
//! releases. A refused message gets an error envelope and the socket stays open; only a
//! refused first registration closes it. The socket keeps the `agent_id` of its first
//! registration, so checking that one against the caller's token covers every later answer.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::server::AppState;
use crate::ws::{binary_refused, Inbound, Peer, Socket};
use allocate_core::AgentMessage;
use axum::extract::ws::WebSocket;
use uuid::Uuid;

/// Serves one agent socket from its registration to its close; `caller`'s token must allow
/// the `agent_id` it registers.
pub async fn serve(ws: WebSocket, app: AppState, caller: Caller) {
    let (peer, outbox) = Peer::new(app.config.agent_queue_len());
    let mut socket = Socket::new(ws, outbox, &app);
    let text = match socket.first_message(&app).await {
        Ok(Some(text)) => text,
        Ok(None) => return,
        Err(e) => return socket.fail(&e).await,
    };
    let (agent_id, resources) = match AgentMessage::parse(&text, &app.config.engine.limits) {
        Ok(AgentMessage::Register {
            agent_id,
            resources,
        }) => (agent_id, resources),
        Ok(_) => {
            let e = ApiError::invalid(
                "the first message must be a registration: {\"agent_id\", \"resources\"}",
            );
            return socket.fail(&e).await;
        }
        Err(e) => return socket.fail(&e.into()).await,
    };
    if let Err(e) = caller.check_agent_id(agent_id) {
        return socket.fail(&e).await;
    }
    let peer_id = peer.id();
    let registered = app
        .engine
        .call(move |s| s.register(peer, agent_id, resources))
        .await
        .and_then(|r| r);
    if let Err(e) = registered {
        return socket.fail(&e).await;
    }
    while let Some(inbound) = socket.next().await {
        if let Err(e) = answer(&app, agent_id, peer_id, inbound).await {
            if !socket.send_error(&e).await {
                break;
            }
        }
    }
    let _ = app
        .engine
        .call(move |s| s.agent_gone(agent_id, peer_id))
        .await;
}

/// Hands one later message of the agent to the engine.
async fn answer(
    app: &AppState,
    agent_id: Uuid,
    peer_id: u64,
    inbound: Inbound,
) -> Result<(), ApiError> {
    let Inbound::Text(text) = inbound else {
        return Err(binary_refused());
    };
    let message = AgentMessage::parse(&text, &app.config.engine.limits)?;
    app.engine
        .call(move |s| s.agent_message(agent_id, peer_id, message))
        .await?
}
