//! The websocket endpoints' tasks: [`client`] (`/allocate/`), [`follow`] (`/allocate/{id}`)
//! and [`agent`] (`/agent/`), over
//! a socket wrapper that writes what the driver queued for it, reads messages, pings, and
//! closes with the right code.

pub mod agent;
pub mod client;
pub mod follow;

use crate::auth::tokens::Revocation;
use crate::auth::Unauthorized;
use crate::config::ServerConfig;
use crate::driver::{
    DriverHandle, Frame, Killed, Outbox, CLOSE_GOING_AWAY, CLOSE_INTERNAL, CLOSE_NOT_UTF8,
    CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_TOO_BIG,
};
use crate::error::ApiError;
use allocate_core::ErrorCode;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite;

/// What every socket task shares: the way to the driver, the settings, and shutdown.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The way to the engine's driver task.
    pub driver: DriverHandle,
    /// The settings.
    pub config: Arc<ServerConfig>,
    /// Becomes `true` (or closes) when shutdown begins.
    pub stopping: watch::Receiver<bool>,
    /// Cloned into every socket; shutdown waits until all are dropped.
    pub alive: mpsc::Sender<()>,
}

/// A message read from a socket.
#[derive(Debug)]
pub enum Inbound {
    /// A text message.
    Text(String),
    /// A binary message (the contract speaks JSON text only).
    Binary,
}

/// An accepted websocket with its outbox and keepalive.
#[derive(Debug)]
pub struct Socket {
    ws: WebSocket,
    outbox: Outbox,
    pings: Interval,
    idle_timeout: Duration,
    close_wait: Duration,
    last_heard: Instant,
    /// Completes when a reload takes away the token the socket was opened with.
    revocation: Revocation,
    /// Shutdown waits until every socket has dropped this.
    _alive: mpsc::Sender<()>,
}

impl Socket {
    /// Wraps an upgraded socket; pings and the idle limit come from the server's settings.
    /// `revocation` ends it (401, then 1008) when its token is taken away.
    pub fn new(ws: WebSocket, outbox: Outbox, app: &Shared, revocation: Revocation) -> Self {
        // The first ping is due one interval from now: a short-lived socket (one allocation
        // cycle) sends none.
        let every = app.config.ping_interval;
        let mut pings = tokio::time::interval_at(Instant::now() + every, every);
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Socket {
            ws,
            outbox,
            pings,
            idle_timeout: app.config.idle_timeout,
            close_wait: app.config.close_wait,
            last_heard: Instant::now(),
            revocation,
            _alive: app.alive.clone(),
        }
    }

    /// The first message, which must come within the idle timeout and before shutdown.
    /// `Ok(None)`: the socket is already gone.
    pub async fn first_message(&mut self, app: &Shared) -> Result<Option<String>, ApiError> {
        let mut stopping = app.stopping.clone();
        let idle = self.idle_timeout;
        tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => Err(allocate_core::Error::ShuttingDown.into()),
            first = timeout(idle, self.next()) => match first {
                Err(_) => Err(ApiError::invalid(format!(
                    "no message arrived within {} ms of connecting", idle.as_millis()
                ))),
                Ok(None) => Ok(None),
                Ok(Some(Inbound::Binary)) => Err(binary_refused()),
                Ok(Some(Inbound::Text(text))) => Ok(Some(text)),
            },
        }
    }

    /// The next message. Meanwhile writes queued frames and pings; returns `None` once the
    /// socket is finished: closed by either side, killed, silent too long, or broken.
    pub async fn next(&mut self) -> Option<Inbound> {
        loop {
            let step = tokio::select! {
                biased;
                queued = self.outbox.recv() => match queued {
                    Ok(frame) => self.write(frame).await,
                    Err(Killed) => {
                        tracing::debug!("dropping a socket that fell behind");
                        Step::Finish
                    }
                },
                message = self.ws.recv() => self.read(message).await,
                _ = self.pings.tick() => self.ping().await,
                () = self.revocation.revoked() => self.revoked().await,
            };
            match step {
                Step::Continue => {}
                Step::Deliver(inbound) => return Some(inbound),
                Step::Finish => return None,
            }
        }
    }

    /// Writes one frame from the engine task (`None`: it dropped this socket).
    async fn write(&mut self, frame: Option<Frame>) -> Step {
        match frame {
            Some(Frame::Text(text)) => {
                Step::finish_unless(self.send(Message::Text(text.into())).await)
            }
            Some(Frame::Close(code, reason)) => {
                self.close(code, reason).await;
                Step::Finish
            }
            None => {
                self.close(CLOSE_GOING_AWAY, "server shutting down").await;
                Step::Finish
            }
        }
    }

    /// Handles what the other side sent.
    async fn read(&mut self, message: Option<Result<Message, axum::Error>>) -> Step {
        self.last_heard = Instant::now();
        match message {
            Some(Ok(Message::Text(text))) => Step::Deliver(Inbound::Text(text.to_string())),
            Some(Ok(Message::Binary(_))) => Step::Deliver(Inbound::Binary),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
            Some(Ok(Message::Close(_))) | None => {
                // Reading once more sends tungstenite's queued close reply.
                let _ = timeout(self.close_wait, self.ws.recv()).await;
                Step::Finish
            }
            Some(Err(e)) => {
                if let Some((code, reason)) = close_for(e) {
                    self.close(code, reason).await;
                }
                Step::Finish
            }
        }
    }

    /// Tells the other side that its token was revoked, and closes.
    async fn revoked(&mut self) -> Step {
        tracing::info!("closing a socket whose token a reload took away");
        let err = ApiError::Unauthorized(Unauthorized::Revoked);
        if self.send_error(&err).await {
            self.close(CLOSE_REFUSED, "token revoked").await;
        }
        Step::Finish
    }

    /// Pings, or gives up on a socket that has been silent too long.
    async fn ping(&mut self) -> Step {
        if self.last_heard.elapsed() >= self.idle_timeout {
            let silent_ms = self.idle_timeout.as_millis();
            tracing::info!(silent_ms, "dropping a silent socket");
            return Step::Finish;
        }
        Step::finish_unless(self.send(Message::Ping(Default::default())).await)
    }

    /// Sends an error envelope and keeps the socket open; `false` when the socket is gone.
    pub async fn send_error(&mut self, err: &ApiError) -> bool {
        self.send(Message::Text(err.envelope_text().into())).await
    }

    /// Sends an error envelope, then closes with the code that fits it.
    pub async fn fail(mut self, err: &ApiError) {
        let (code, reason) = match err.code() {
            Some(ErrorCode::ShuttingDown) => (CLOSE_GOING_AWAY, "server shutting down"),
            Some(ErrorCode::Internal) => (CLOSE_INTERNAL, "internal error"),
            _ => (CLOSE_REFUSED, "request refused"),
        };
        if self.send_error(err).await {
            self.close(code, reason).await;
        }
    }

    /// Sends a message unless the socket is killed or the write stalls past the idle limit.
    async fn send(&mut self, message: Message) -> bool {
        tokio::select! {
            biased;
            () = self.outbox.killed() => false,
            sent = timeout(self.idle_timeout, self.ws.send(message)) => matches!(sent, Ok(Ok(()))),
        }
    }

    /// Starts the close handshake and waits briefly for the other side to finish it.
    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if self.send(Message::Close(Some(frame))).await {
            let _ = timeout(self.close_wait, async {
                while let Some(Ok(_)) = self.ws.recv().await {}
            })
            .await;
        }
    }
}

/// What [`Socket::next`] does after one event.
enum Step {
    /// Wait for the next event.
    Continue,
    /// Hand this message to the caller.
    Deliver(Inbound),
    /// The socket is finished.
    Finish,
}

impl Step {
    /// `Continue` when a write went through, else `Finish`.
    fn finish_unless(sent: bool) -> Step {
        if sent {
            Step::Continue
        } else {
            Step::Finish
        }
    }
}

/// The error for a binary message.
pub fn binary_refused() -> ApiError {
    ApiError::invalid("messages must be JSON text, got a binary message")
}

/// The close code and reason for a read that failed because of what the peer sent: 1009
/// for a message or frame over the size limit, 1002 for a frame that breaks the protocol,
/// 1007 for text that is not UTF-8. `None` when the connection itself failed (nothing more
/// can be sent on it).
pub fn close_for(e: axum::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::ProtocolError;
    match e.into_inner().downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Capacity(_) => Some((CLOSE_TOO_BIG, "message too big")),
        tungstenite::Error::Utf8(_) => Some((CLOSE_NOT_UTF8, "text is not UTF-8")),
        tungstenite::Error::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
            | ProtocolError::ReceivedAfterClosing
            | ProtocolError::SendAfterClosing,
        ) => None,
        tungstenite::Error::Protocol(_) => Some((CLOSE_PROTOCOL, "websocket protocol error")),
        _ => None,
    }
}
