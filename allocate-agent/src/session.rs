//! The websocket loop: connect, register, answer orders, and reconnect with backoff.
//!
//! One connection at a time. After connecting, the agent sends its registration and waits for
//! the server's `ok`; only then does it send answers (a registration refused with an error
//! envelope ends the connection). Orders go to `Dispatcher` tasks, whose answers come back
//! on a bounded channel, so a slow command never stalls the socket. When the connection
//! ends, the agent waits a jittered, doubling delay (reset by the next accepted registration)
//! and connects again, until `shutdown` resolves.
//!
//! Answers outlive connections: a release finished while disconnected is sent after the next
//! registration. A provision answer is dropped instead when its connection has closed, since
//! the server fails a provision whose agent went away.

use crate::orders::{Dispatcher, Outgoing, Responder};
use crate::wire::{Answer, Registration, ServerMessage, WireError};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Largest websocket message either way (the contract's limit).
pub const MESSAGE_BYTES_MAX: usize = 1024 * 1024;

/// How long connecting (TCP and the upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server may take to answer the registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the agent pings; a connection silent for three of these is taken as dead.
const PING_INTERVAL: Duration = Duration::from_secs(20);

/// How long one send (or the closing handshake's first half) may take; a server that stops
/// reading would otherwise stall the loop.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Most answers waiting for the socket: in the channel, and kept across a reconnect.
const ANSWERS_QUEUED_MAX: usize = 256;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why the agent could not run at all (connection failures are retried, not returned).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The server URL is not a `ws://` URL the agent can use.
    #[error("server URL {url:?} is not usable: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why.
        why: String,
    },
    /// The bearer token cannot be sent in a header.
    #[error("the token contains characters that cannot be sent in an HTTP header")]
    BadToken,
}

/// The doubling reconnect delay with jitter.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The next delay, given `random` in `[0, 1)`: between half the current step and all of it
    /// ("equal jitter", so agents that lost the server together do not return together, and
    /// none retries at once). Each call doubles the step, up to the maximum.
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        step.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
    }

    /// Back to the first step (after a registration the server accepted).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A random fraction in `[0, 1)` from the operating system (through uuid's v4 source).
fn random_fraction() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// Everything the agent's session needs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The server's agent endpoint, e.g. `ws://127.0.0.1:8080/agent/`.
    pub server: String,
    /// Bearer token for the upgrade request.
    pub token: Option<String>,
    /// What the agent registers.
    pub registration: Registration,
    /// How it answers orders.
    pub responder: Responder,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
}

/// How one connection ended.
enum Ended {
    /// `shutdown` resolved.
    Shutdown,
    /// The connection failed or closed; reconnect.
    Lost(String),
}

/// The running agent.
pub struct Agent {
    settings: Settings,
    registration_text: String,
    dispatcher: Dispatcher,
    answers: mpsc::Receiver<Outgoing>,
    /// Answers taken from the channel but not yet sent.
    unsent: VecDeque<Outgoing>,
    generation: u64,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("server", &self.settings.server)
            .field("agent_id", &self.settings.registration.agent_id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent for `settings`; checks the URL and token.
    pub fn new(settings: Settings) -> Result<Self, SessionError> {
        check_url(&settings.server)?;
        if let Some(t) = &settings.token {
            HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| SessionError::BadToken)?;
        }
        let (tx, rx) = mpsc::channel(ANSWERS_QUEUED_MAX);
        Ok(Agent {
            registration_text: settings.registration.to_wire(),
            dispatcher: Dispatcher::new(settings.responder.clone(), tx),
            settings,
            answers: rx,
            unsent: VecDeque::new(),
            generation: 0,
        })
    }

    /// Runs until `shutdown` resolves: connects, registers, answers, reconnects.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        loop {
            self.generation += 1;
            let why = match self.connection(&mut shutdown, &mut backoff).await {
                Ended::Shutdown => return,
                Ended::Lost(why) => why,
            };
            let delay = backoff.next_delay(random_fraction());
            tracing::warn!(server = %self.settings.server, "{why}; reconnecting in {:.1} s", delay.as_secs_f64());
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn connect(&self) -> Result<Socket, String> {
        let mut request = self
            .settings
            .server
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad server URL: {e}"))?;
        if let Some(token) = &self.settings.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "bad token".to_owned())?;
            request.headers_mut().insert("authorization", value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MESSAGE_BYTES_MAX))
            .max_frame_size(Some(MESSAGE_BYTES_MAX));
        let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => Err(format!(
                "could not connect within {} s",
                CONNECT_TIMEOUT.as_secs()
            )),
            Ok(Err(e)) => Err(format!("could not connect: {e}")),
            Ok(Ok((socket, _response))) => Ok(socket),
        }
    }

    /// Connects and sends the registration.
    async fn open(&self) -> Result<Socket, String> {
        let mut socket = self.connect().await?;
        tracing::info!(server = %self.settings.server, agent_id = %self.settings.registration.agent_id, "connected; registering");
        let registration = Message::text(self.registration_text.clone());
        send(&mut socket, registration)
            .await
            .map_err(|e| format!("could not send the registration: {e}"))?;
        Ok(socket)
    }

    /// One connection, from connecting to its end.
    async fn connection(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        backoff: &mut Backoff,
    ) -> Ended {
        let mut socket = tokio::select! {
            () = shutdown.as_mut() => return Ended::Shutdown,
            opened = self.open() => match opened {
                Ok(s) => s,
                Err(why) => return Ended::Lost(why),
            },
        };
        let mut link = Link::new();
        loop {
            let step = tokio::select! {
                () = shutdown.as_mut() => {
                    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.close(None)).await;
                    return Ended::Shutdown;
                }
                frame = socket.next() => self.on_frame(frame, &mut link, backoff),
                Some(outgoing) = self.answers.recv(), if link.registered => {
                    self.queue(outgoing);
                    Ok(())
                }
                _ = link.ping.tick() => link.keepalive(&mut socket).await,
            };
            if let Err(why) = self.settle(step, &link, &mut socket).await {
                return Ended::Lost(why);
            }
        }
    }

    /// After a step of the loop: sends the queued answers once registered.
    async fn settle(
        &mut self,
        step: Result<(), String>,
        link: &Link,
        socket: &mut Socket,
    ) -> Result<(), String> {
        step?;
        if link.registered {
            self.flush_unsent(socket).await?;
        }
        Ok(())
    }

    /// Handles one frame from the socket; `Err` says why the connection is over.
    fn on_frame(
        &mut self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        link: &mut Link,
        backoff: &mut Backoff,
    ) -> Result<(), String> {
        link.last_heard = Instant::now();
        let text = match frame {
            None => return Err("server closed the connection".into()),
            Some(Err(e)) => return Err(format!("connection failed: {e}")),
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!(" ({} {})", f.code, f.reason))
                    .unwrap_or_default();
                return Err(format!("server closed the connection{why}"));
            }
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                tracing::warn!("ignoring a binary message from the server");
                return Ok(());
            }
            Some(Ok(_)) => return Ok(()),
        };
        match ServerMessage::parse(&text) {
            Ok(message) => {
                if self.on_message(message, link.registered)? {
                    link.registered = true;
                    backoff.reset();
                }
            }
            Err(e) => self.on_unreadable(e),
        }
        Ok(())
    }

    /// Handles a message the agent could not read: a provision it can name gets an error answer.
    fn on_unreadable(&mut self, error: WireError) {
        let WireError::BadOrder {
            action: "provision",
            allocation_id: Some(allocation_id),
            source,
        } = error
        else {
            tracing::warn!(%error, "ignoring a server message");
            return;
        };
        tracing::warn!(%allocation_id, error = %source, "malformed provision; answering with an error");
        self.queue(Outgoing {
            generation: self.generation,
            answer: Answer::Failed {
                allocation_id,
                error: format!("agent could not read the provision: {source}"),
            },
        });
    }

    /// Handles one server message; `Ok(true)` when it accepted the registration.
    fn on_message(&mut self, message: ServerMessage, registered: bool) -> Result<bool, String> {
        match message {
            ServerMessage::Registered { inventory_ids } => {
                let ids: Vec<String> = inventory_ids.iter().map(ToString::to_string).collect();
                tracing::info!(inventory_ids = %ids.join(","), "registered");
                return Ok(true);
            }
            ServerMessage::Provision(order) => self.dispatcher.provision(order, self.generation),
            ServerMessage::Release(order) => self.dispatcher.release(order, self.generation),
            ServerMessage::Refused {
                status,
                code,
                message,
            } => refused(registered, status, &code, &message)?,
            ServerMessage::UnknownAction(action) => {
                tracing::warn!(%action, "ignoring an unknown action from the server");
            }
        }
        Ok(false)
    }

    /// Adds an answer to the queue of unsent ones, dropping what can no longer be sent.
    fn queue(&mut self, outgoing: Outgoing) {
        let stale = matches!(
            outgoing.answer,
            Answer::Provisioned { .. } | Answer::Failed { .. }
        ) && outgoing.generation != self.generation;
        if stale {
            tracing::warn!(allocation_id = %outgoing.answer.allocation_id(),
                "provision finished after its connection closed; the server has already failed it, dropping the answer");
            return;
        }
        if self.unsent.len() >= ANSWERS_QUEUED_MAX {
            if let Some(dropped) = self.unsent.pop_front() {
                tracing::error!(allocation_id = %dropped.answer.allocation_id(), "too many unsent answers; dropping the oldest");
            }
        }
        self.unsent.push_back(outgoing);
    }

    /// Sends every queued answer; on failure the unsent ones stay queued.
    async fn flush_unsent(&mut self, socket: &mut Socket) -> Result<(), String> {
        while let Some(outgoing) = self.unsent.pop_front() {
            if matches!(
                outgoing.answer,
                Answer::Provisioned { .. } | Answer::Failed { .. }
            ) && outgoing.generation != self.generation
            {
                continue;
            }
            let text = outgoing.answer.to_wire();
            if let Err(e) = send(socket, Message::text(text)).await {
                self.unsent.push_front(outgoing);
                return Err(format!("could not send an answer: {e}"));
            }
            tracing::debug!(answer = ?outgoing.answer, "answered");
        }
        Ok(())
    }
}

/// An error envelope: before registration it refuses the agent (the connection is over),
/// after it only the message it answers.
fn refused(registered: bool, status: u16, code: &str, message: &str) -> Result<(), String> {
    if !registered {
        return Err(format!(
            "server refused the registration: {status} {code}: {message}"
        ));
    }
    tracing::warn!(status, %code, %message, "server refused a message");
    Ok(())
}

/// The state of one connection.
struct Link {
    registered: bool,
    register_by: Instant,
    last_heard: Instant,
    ping: tokio::time::Interval,
}

impl Link {
    fn new() -> Self {
        let now = Instant::now();
        Link {
            registered: false,
            register_by: now + REGISTER_TIMEOUT,
            last_heard: now,
            ping: tokio::time::interval_at(now + PING_INTERVAL, PING_INTERVAL),
        }
    }

    /// The ping timer fired: give up on a silent server or an unanswered registration, else ping.
    async fn keepalive(&self, socket: &mut Socket) -> Result<(), String> {
        if !self.registered && Instant::now() >= self.register_by {
            return Err(format!(
                "no answer to the registration within {} s",
                REGISTER_TIMEOUT.as_secs()
            ));
        }
        if self.last_heard.elapsed() >= PING_INTERVAL * 3 {
            return Err(format!(
                "nothing heard from the server for {} s",
                self.last_heard.elapsed().as_secs()
            ));
        }
        send(socket, Message::Ping(Default::default()))
            .await
            .map_err(|e| format!("could not ping the server: {e}"))
    }
}

/// Sends one message, bounded by [`SEND_TIMEOUT`].
async fn send(socket: &mut Socket, message: Message) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "send did not finish within {} s",
            SEND_TIMEOUT.as_secs()
        )),
    }
}

fn check_url(url: &str) -> Result<(), SessionError> {
    let bad = |why: &str| SessionError::BadUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    if url.starts_with("wss://") {
        return Err(bad(
            "this build has no TLS; use ws:// (behind a TLS-terminating proxy, or on a trusted network)",
        ));
    }
    if !url.starts_with("ws://") {
        return Err(bad("it must start with ws://"));
    }
    url.into_client_request()
        .map(|_| ())
        .map_err(|e| bad(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let lows: Vec<u128> = (0..9).map(|_| b.next_delay(0.0).as_millis()).collect();
        assert_eq!(
            lows,
            [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]
        );
        b.reset();
        assert_eq!(b.next_delay(0.5), Duration::from_millis(375));
        assert_eq!(b.next_delay(7.0), Duration::from_secs(1));
        for _ in 0..100 {
            let r = random_fraction();
            assert!((0.0..1.0).contains(&r), "{r}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("ws://127.0.0.1:8080/agent/").is_ok());
        let err = check_url("wss://lab/agent/").unwrap_err().to_string();
        assert!(err.contains("no TLS"), "{err}");
        assert!(check_url("http://lab/agent/").is_err());
        assert!(check_url("ws://").is_err());
    }
}
