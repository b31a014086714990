//! What agent and client sockets share: the bounded queue the engine task writes to, and a
//! socket wrapper that writes that queue, reads messages, pings, and closes with the right code.

use crate::error::ApiError;
use crate::server::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::{timeout, Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite;

/// Close code: the conversation is over (the allocation ended, or a newer socket took over).
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: the server is shutting down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the request was refused (its error envelope says why).
pub const CLOSE_REFUSED: u16 = 1008;
/// Close code: a message was larger than the limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: a fault of ours.
pub const CLOSE_INTERNAL: u16 = 1011;

/// One thing the engine task asks a socket to do.
#[derive(Debug)]
pub enum Frame {
    /// Send this text message.
    Text(String),
    /// Close with this code and reason (after the frames before it).
    Close(u16, &'static str),
}

/// The engine task's end of a socket: a bounded queue it never waits on, and a kill switch.
/// Clones (held while their frames wait for the journal) reach the same socket.
#[derive(Clone, Debug)]
pub struct Peer {
    id: u64,
    tx: mpsc::Sender<Frame>,
    kill: Arc<Notify>,
}

/// The socket task's end of its [`Peer`].
#[derive(Debug)]
pub struct Outbox {
    rx: mpsc::Receiver<Frame>,
    kill: Arc<Notify>,
}

impl Peer {
    /// A peer whose queue holds at most `capacity` frames, and the outbox its socket drains.
    pub fn new(capacity: usize) -> (Peer, Outbox) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let kill = Arc::new(Notify::new());
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let outbox = Outbox {
            rx,
            kill: kill.clone(),
        };
        (Peer { id, tx, kill }, outbox)
    }

    /// Tells this socket apart from an earlier or later one of the same agent or allocation.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues a frame without waiting; `false` when the queue is full or the socket is gone.
    pub fn push(&self, frame: Frame) -> bool {
        self.tx.try_send(frame).is_ok()
    }

    /// Whether the socket has stopped taking frames (it is closed or closing).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Drops the socket at once, without sending what is queued.
    pub fn kill(&self) {
        self.kill.notify_one();
    }
}

#[cfg(test)]
impl Outbox {
    /// The next queued frame, if any.
    pub fn try_next(&mut self) -> Option<Frame> {
        self.rx.try_recv().ok()
    }

    /// Completes once the peer has been killed.
    pub async fn killed(&self) {
        self.kill.notified().await;
    }
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
    /// Shutdown waits until every socket has dropped this.
    _alive: mpsc::Sender<()>,
}

impl Socket {
    /// Wraps an upgraded socket; pings and the idle limit come from the server's settings.
    pub fn new(ws: WebSocket, outbox: Outbox, app: &AppState) -> Self {
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
            _alive: app.alive.clone(),
        }
    }

    /// The first message, which must come within the idle timeout and before shutdown.
    /// `Ok(None)`: the socket is already gone.
    pub async fn first_message(&mut self, app: &AppState) -> Result<Option<String>, ApiError> {
        let mut stopping = app.stopping.clone();
        let idle = self.idle_timeout;
        tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => Err(ApiError::ShuttingDown),
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
                () = self.outbox.kill.notified() => {
                    tracing::debug!("dropping a socket that fell behind");
                    Step::Finish
                }
                frame = self.outbox.rx.recv() => self.write(frame).await,
                message = self.ws.recv() => self.read(message).await,
                _ = self.pings.tick() => self.ping().await,
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
                if is_too_big(e) {
                    self.close(CLOSE_TOO_BIG, "message too big").await;
                }
                Step::Finish
            }
        }
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
        let (code, reason) = match err {
            ApiError::ShuttingDown => (CLOSE_GOING_AWAY, "server shutting down"),
            ApiError::Internal(_) => (CLOSE_INTERNAL, "internal error"),
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
            () = self.outbox.kill.notified() => false,
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

/// Whether a read failed because a message or frame was over the size limit.
fn is_too_big(e: axum::Error) -> bool {
    e.into_inner()
        .downcast_ref::<tungstenite::Error>()
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}
