//! The driver's end of every socket: a bounded queue it writes without waiting ([`Peer`],
//! drained by the socket task through its [`Outbox`]), and the registry of which socket
//! speaks for each allocation's client and each agent.

use allocate_core::SessionId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

/// Close code: the conversation is over (the allocation ended, or a newer socket took over).
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: the server is shutting down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: a frame broke the websocket protocol (RFC 6455, 7.4.1).
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code: a text message was not UTF-8 (RFC 6455, 7.4.1).
pub const CLOSE_NOT_UTF8: u16 = 1007;
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

    /// The agent session this socket is, for the engine's session rules.
    pub fn session(&self) -> SessionId {
        SessionId(self.id)
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

/// The driver dropped a socket that fell behind: it closes without sending what is queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Killed;

impl Outbox {
    /// The next frame the driver queued (`Ok(None)` once it dropped this socket's
    /// [`Peer`]), or `Err(Killed)` as soon as the peer was killed, before any frame.
    pub async fn recv(&mut self) -> Result<Option<Frame>, Killed> {
        tokio::select! {
            biased;
            () = self.kill.notified() => Err(Killed),
            frame = self.rx.recv() => Ok(frame),
        }
    }

    /// Completes once the peer has been killed.
    pub async fn killed(&self) {
        self.kill.notified().await;
    }

    /// The next queued frame, if any.
    #[cfg(test)]
    pub fn try_next(&mut self) -> Option<Frame> {
        self.rx.try_recv().ok()
    }
}

/// The sockets the engine's outputs go to: the open socket of each allocation's client, the
/// sockets that follow it (`WEBSOCKET /allocate/{id}`), and the connection that currently
/// speaks for each agent (the engine decides which; see
/// [`allocate_core::Engine::session_register`]).
#[derive(Debug, Default)]
pub(super) struct Sockets {
    clients: HashMap<Uuid, Peer>,
    followers: HashMap<Uuid, Vec<Peer>>,
    agents: HashMap<Uuid, Peer>,
}

impl Sockets {
    /// The socket of `allocation_id`'s client.
    pub(super) fn client(&self, allocation_id: &Uuid) -> Option<&Peer> {
        self.clients.get(allocation_id)
    }

    /// Whether `allocation_id`'s client has a socket that still takes frames.
    pub(super) fn client_open(&self, allocation_id: &Uuid) -> bool {
        self.clients
            .get(allocation_id)
            .is_some_and(|p| !p.is_closed())
    }

    /// `peer` is the socket of `allocation_id`'s client.
    pub(super) fn add_client(&mut self, allocation_id: Uuid, peer: Peer) {
        self.clients.insert(allocation_id, peer);
    }

    /// Forgets `allocation_id`'s client socket.
    pub(super) fn remove_client(&mut self, allocation_id: &Uuid) {
        self.clients.remove(allocation_id);
    }

    /// Forgets `allocation_id`'s client socket if it is `peer_id`; whether it was.
    pub(super) fn remove_client_if(&mut self, allocation_id: &Uuid, peer_id: u64) -> bool {
        let current = self.clients.get(allocation_id).map(Peer::id) == Some(peer_id);
        if current {
            self.clients.remove(allocation_id);
        }
        current
    }

    /// `peer` follows `allocation_id`.
    pub(super) fn add_follower(&mut self, allocation_id: Uuid, peer: Peer) {
        self.followers.entry(allocation_id).or_default().push(peer);
    }

    /// The sockets that follow `allocation_id`.
    pub(super) fn followers(&self, allocation_id: &Uuid) -> &[Peer] {
        self.followers.get(allocation_id).map_or(&[], Vec::as_slice)
    }

    /// Whether some socket follows `allocation_id`.
    pub(super) fn followed(&self, allocation_id: &Uuid) -> bool {
        self.followers.contains_key(allocation_id)
    }

    /// Forgets the follower `peer_id` of `allocation_id`.
    pub(super) fn remove_follower(&mut self, allocation_id: &Uuid, peer_id: u64) {
        if let Some(peers) = self.followers.get_mut(allocation_id) {
            peers.retain(|p| p.id() != peer_id);
            if peers.is_empty() {
                self.followers.remove(allocation_id);
            }
        }
    }

    /// Forgets every follower of `allocation_id` (it ended) and returns them.
    pub(super) fn take_followers(&mut self, allocation_id: &Uuid) -> Vec<Peer> {
        self.followers.remove(allocation_id).unwrap_or_default()
    }

    /// Client sockets open.
    pub(super) fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The socket of the connection that speaks for `agent_id`.
    pub(super) fn agent(&self, agent_id: &Uuid) -> Option<&Peer> {
        self.agents.get(agent_id)
    }

    /// `peer` now speaks for `agent_id`; returns the socket it took over from, if another.
    pub(super) fn add_agent(&mut self, agent_id: Uuid, peer: Peer) -> Option<Peer> {
        self.agents
            .insert(agent_id, peer.clone())
            .filter(|old| old.id() != peer.id())
    }

    /// Forgets `agent_id`'s socket if it is `peer_id`.
    pub(super) fn remove_agent_if(&mut self, agent_id: &Uuid, peer_id: u64) {
        if self.agents.get(agent_id).map(Peer::id) == Some(peer_id) {
            self.agents.remove(agent_id);
        }
    }

    /// Empties the registry (shutdown): every client socket, then every follower and agent
    /// socket.
    pub(super) fn drain(&mut self) -> (HashMap<Uuid, Peer>, Vec<Peer>) {
        let clients = std::mem::take(&mut self.clients);
        let followers = self.followers.drain().flat_map(|(_, peers)| peers);
        let others = followers
            .chain(self.agents.drain().map(|(_, peer)| peer))
            .collect();
        (clients, others)
    }

    /// Whether `agent_id` is registered (tests).
    #[cfg(test)]
    pub(super) fn has_agent(&self, agent_id: &Uuid) -> bool {
        self.agents.contains_key(agent_id)
    }

    /// Whether `allocation_id` has a client socket (tests).
    #[cfg(test)]
    pub(super) fn has_client(&self, allocation_id: &Uuid) -> bool {
        self.clients.contains_key(allocation_id)
    }
}
