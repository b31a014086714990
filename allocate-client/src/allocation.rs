//! One request on `WEBSOCKET /allocate/`, from queueing to the end of its lease.
//!
//! [`AllocationState`] is where an allocation stands, the one place that knows: a plain state
//! machine fed the server's events ([`AllocationState::apply`]), refusals and the socket's end,
//! with no IO, so it is tested without sockets and any shell (the Python binding, the command
//! line) can drive it. [`Allocation`] is the handle: a task owns the socket, feeds every
//! message to the state and queues it as an event, and keeps reading after `ready` so the
//! socket answers the server's pings for the whole lease.

use crate::socket::{self, Socket, SocketEnd};
use crate::{Client, Error};
use allocate_core::wire::{ClientEvent, Envelope, Refusal};
use allocate_core::{AllocationInfo, Connection, ErrorCode};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Most events kept for [`Allocation::next_event`]; beyond it the oldest is dropped (the state
/// still holds everything they said).
pub const EVENTS_QUEUED_MAX: usize = 1024;

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Sent; the server has not answered yet.
    Requested,
    /// Waiting in the queue.
    Queued,
    /// The resource is the holder's.
    Ready,
    /// Ready, but the resource's agent is away.
    Offline,
    /// Released (or cancelled) by someone.
    Released,
    /// The lease ended.
    Expired,
    /// Nothing became free in time (`408 allocation_timeout`).
    TimedOut,
    /// Refused by the server, or the socket ended before `ready`.
    Failed,
}

impl Phase {
    /// Its name: `requested`, `queued`, `ready`, `offline`, `released`, `expired`,
    /// `timed_out`, `failed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Requested => "requested",
            Phase::Queued => "queued",
            Phase::Ready => "ready",
            Phase::Offline => "offline",
            Phase::Released => "released",
            Phase::Expired => "expired",
            Phase::TimedOut => "timed_out",
            Phase::Failed => "failed",
        }
    }

    /// Whether the lease is held (ready, possibly offline).
    pub const fn is_held(self) -> bool {
        matches!(self, Phase::Ready | Phase::Offline)
    }

    /// Whether nothing more will happen.
    pub const fn has_ended(self) -> bool {
        matches!(
            self,
            Phase::Released | Phase::Expired | Phase::TimedOut | Phase::Failed
        )
    }
}

/// Why an allocation request failed or its socket ended early.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// `408 allocation_timeout`: nothing matching became free before
    /// `allocation_timeout_seconds` (or `expires`) passed.
    #[error("allocation timed out: {}", .0.message)]
    TimedOut(Refusal),
    /// Any other error envelope (`400 invalid_request`, `403 quota_exceeded`,
    /// `503 shutting_down`, ...).
    #[error("the server refused the allocation: {} {}: {}", .0.status, .0.code, .0.message)]
    Refused(Refusal),
    /// The request was released (deleted) before it became ready.
    #[error("the request was released before it became ready")]
    ReleasedBeforeReady,
    /// The socket ended before `ready`: the request is gone.
    #[error("the connection ended before the allocation was ready: {0}")]
    LostBeforeReady(SocketEnd),
    /// The socket ended during the lease without a final event: the lease lives on (until it
    /// expires or is released), but no more events will come.
    #[error("the connection ended during the lease: {0}")]
    LostDuringLease(SocketEnd),
    /// The server sent something that is not one of the contract's messages.
    #[error("unreadable message on /allocate/: {0}")]
    Unreadable(String),
    /// The request ended before [`Allocation::wait_ready`] looked (`expired`, `released`).
    #[error("the allocation has already ended ({})", .0.as_str())]
    Ended(Phase),
    /// The server has not named the allocation yet (no `queued` or `ready` so far).
    #[error("the server has not named the allocation yet")]
    NoIdYet,
}

impl AllocationError {
    /// The server's refusal, if it refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            AllocationError::TimedOut(r) | AllocationError::Refused(r) => Some(r),
            _ => None,
        }
    }

    /// A stable name: the contract's code for a refusal, else `released`, `lost`,
    /// `unreadable`, `ended`, `no_id_yet`.
    pub fn code(&self) -> &str {
        match self {
            AllocationError::TimedOut(r) | AllocationError::Refused(r) => &r.code,
            AllocationError::ReleasedBeforeReady => "released",
            AllocationError::LostBeforeReady(_) | AllocationError::LostDuringLease(_) => "lost",
            AllocationError::Unreadable(_) => "unreadable",
            AllocationError::Ended(_) => "ended",
            AllocationError::NoIdYet => "no_id_yet",
        }
    }
}

/// What a ready allocation holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The allocation.
    pub allocation_id: Uuid,
    /// The resource.
    pub inventory_id: Uuid,
    /// How to reach it.
    pub connection: Connection,
    /// When the lease ends (unix seconds).
    pub expires: u64,
}

/// Where one allocation stands, fed by the server's events: no IO, no clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationState {
    phase: Phase,
    allocation_id: Option<Uuid>,
    position: Option<u32>,
    matching_resources: Option<u64>,
    eta: Option<u64>,
    lease: Option<Lease>,
    failure: Option<AllocationError>,
    socket_open: bool,
}

impl Default for AllocationState {
    fn default() -> Self {
        Self::new()
    }
}

impl AllocationState {
    /// A request just sent on an open socket.
    pub fn new() -> Self {
        AllocationState {
            phase: Phase::Requested,
            allocation_id: None,
            position: None,
            matching_resources: None,
            eta: None,
            lease: None,
            failure: None,
            socket_open: true,
        }
    }

    /// Applies one event of the server. `Err` when it ends the request in failure (a
    /// `released` before `ready`). Events that no longer apply (a `queued` after `ready`, an
    /// `online` while online) change nothing.
    pub fn apply(&mut self, event: &ClientEvent) -> Result<(), AllocationError> {
        if self.phase.has_ended() {
            return Ok(());
        }
        self.allocation_id.get_or_insert(event.allocation_id());
        match event {
            ClientEvent::Queued {
                position,
                matching_resources,
                eta,
                ..
            } if !self.phase.is_held() => {
                self.phase = Phase::Queued;
                self.position = Some(*position);
                self.matching_resources = Some(*matching_resources);
                self.eta = *eta;
            }
            ClientEvent::Ready {
                allocation_id,
                inventory_id,
                connection,
                expires,
            } => {
                self.phase = Phase::Ready;
                self.position = None;
                self.lease = Some(Lease {
                    allocation_id: *allocation_id,
                    inventory_id: *inventory_id,
                    connection: connection.clone(),
                    expires: *expires,
                });
            }
            ClientEvent::Expired { .. } => self.phase = Phase::Expired,
            ClientEvent::Released { .. } if self.phase.is_held() => self.phase = Phase::Released,
            ClientEvent::Released { .. } => {
                return Err(self.fail(Phase::Released, AllocationError::ReleasedBeforeReady))
            }
            ClientEvent::Offline { .. } if self.phase == Phase::Ready => {
                self.phase = Phase::Offline
            }
            ClientEvent::Online { .. } if self.phase == Phase::Offline => self.phase = Phase::Ready,
            ClientEvent::Queued { .. }
            | ClientEvent::Offline { .. }
            | ClientEvent::Online { .. } => {}
        }
        Ok(())
    }

    /// Applies the server's error envelope; returns the error it is. `408
    /// allocation_timeout` is [`AllocationError::TimedOut`].
    pub fn refuse(&mut self, refusal: Refusal) -> AllocationError {
        if refusal.error_code() == Some(ErrorCode::AllocationTimeout) {
            self.fail(Phase::TimedOut, AllocationError::TimedOut(refusal))
        } else {
            self.fail(Phase::Failed, AllocationError::Refused(refusal))
        }
    }

    /// Applies an event or a refusal, as [`ClientEvent::parse`] reads a message.
    pub fn receive(
        &mut self,
        envelope: Envelope<ClientEvent>,
    ) -> Result<ClientEvent, AllocationError> {
        match envelope {
            Envelope::Ok(event) => self.apply(&event).map(|()| event),
            Envelope::Refused(refusal) => Err(self.refuse(refusal)),
        }
    }

    /// The socket ended. `None` when that was expected (after a final event or a failure);
    /// else the error it is: before `ready` the request is gone, during the lease only the
    /// events stop.
    pub fn socket_ended(&mut self, end: SocketEnd) -> Option<AllocationError> {
        let was_open = std::mem::replace(&mut self.socket_open, false);
        if self.phase.has_ended() || !was_open {
            return None;
        }
        if self.phase.is_held() {
            return Some(AllocationError::LostDuringLease(end));
        }
        Some(self.fail(Phase::Failed, AllocationError::LostBeforeReady(end)))
    }

    /// Takes the answer of `PATCH /allocate/{id}` (or `GET`): the lease's new `expires`.
    pub fn extended(&mut self, info: &AllocationInfo) {
        if let Some(lease) = self
            .lease
            .as_mut()
            .filter(|l| l.allocation_id == info.allocation_id)
        {
            lease.expires = info.expires;
        }
    }

    fn fail(&mut self, phase: Phase, error: AllocationError) -> AllocationError {
        if !self.phase.has_ended() {
            self.phase = phase;
            self.failure = Some(error.clone());
        }
        error
    }

    /// Where it stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The allocation's id, once the server has named it.
    pub fn allocation_id(&self) -> Option<Uuid> {
        self.allocation_id
    }

    /// The 1-based place in the queue while queued.
    pub fn position(&self) -> Option<u32> {
        self.position.filter(|_| self.phase == Phase::Queued)
    }

    /// Registered resources that could ever satisfy the request (from the last `queued`).
    pub fn matching_resources(&self) -> Option<u64> {
        self.matching_resources
    }

    /// The earliest known end of a lease holding a matching resource (from the last `queued`).
    pub fn eta(&self) -> Option<u64> {
        self.eta
    }

    /// What the allocation holds, once it has been ready (kept after it ends).
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// Why it failed, if it did.
    pub fn failure(&self) -> Option<&AllocationError> {
        self.failure.as_ref()
    }

    /// Whether the socket is still open (events may still come).
    pub fn socket_open(&self) -> bool {
        self.socket_open
    }
}

/// What the socket task shares with the handle.
#[derive(Debug)]
struct Shared {
    state: AllocationState,
    events: VecDeque<Result<ClientEvent, AllocationError>>,
    /// The socket task has ended: no more events.
    finished: bool,
}

/// A running allocation request (from [`Client::allocate`]). Every method takes `&self`, so
/// it can be shared (in an `Arc`) between a task reading events and one releasing it.
/// Dropping it closes the socket:
/// a request still waiting is then cancelled by the server; a ready lease lives on (unless
/// it asked for `release_on_disconnect`).
#[derive(Debug)]
pub struct Allocation {
    client: Client,
    // A std mutex: never held across an `.await`, each critical section a few field updates.
    shared: Arc<Mutex<Shared>>,
    changed: watch::Receiver<()>,
    /// What [`Allocation::changed`] has seen.
    seen: Mutex<watch::Receiver<()>>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

fn lock_seen(seen: &Mutex<watch::Receiver<()>>) -> MutexGuard<'_, watch::Receiver<()>> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // Plain data: still consistent if a holder panicked.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Allocation {
    /// A handle and the far ends of its channels, for the task that will drive it.
    fn new(client: Client) -> (Self, Driver) {
        let shared = Arc::new(Mutex::new(Shared {
            state: AllocationState::new(),
            events: VecDeque::new(),
            finished: false,
        }));
        let (notify, changed) = watch::channel(());
        let (stop, stopped) = oneshot::channel();
        let handle = Allocation {
            client,
            shared: shared.clone(),
            seen: Mutex::new(changed.clone()),
            changed,
            stop: Mutex::new(Some(stop)),
        };
        let driver = Driver {
            shared,
            notify,
            stopped,
        };
        (handle, driver)
    }

    /// Sends `request` on `socket` and starts the task that reads the answers.
    pub(crate) async fn start(
        client: Client,
        mut socket: Socket,
        request: String,
    ) -> Result<Self, Error> {
        if let Err(end) = socket::send(&mut socket, Message::text(request)).await {
            return Err(AllocationError::LostBeforeReady(end).into());
        }
        let (handle, driver) = Self::new(client);
        tokio::spawn(drive(socket, driver));
        Ok(handle)
    }

    /// Connects, sends `request` and reads the answers, all in a task; a failure to connect
    /// is the allocation's failure.
    pub(crate) fn start_in_background(client: Client, request: String) -> Self {
        let (handle, mut driver) = Self::new(client.clone());
        tokio::spawn(async move {
            let what = || "websocket /allocate/".to_owned();
            let connecting = async {
                let mut socket = client.connect("allocate/").await?;
                socket::send(&mut socket, Message::text(request))
                    .await
                    .map_err(|end| Error::Closed { what: what(), end })?;
                Ok::<_, Error>(socket)
            };
            let connected = tokio::select! {
                _ = &mut driver.stopped => Err(Error::Closed {
                    what: what(),
                    end: SocketEnd::Closed { code: 1000, reason: "closed by the client".into() },
                }),
                connected = connecting => connected,
            };
            let error = match connected {
                Ok(socket) => return drive(socket, driver).await,
                Err(error) => error,
            };
            let end = match error {
                Error::Refused { refusal, .. } => {
                    let failure = lock(&driver.shared).state.refuse(refusal);
                    return driver.finish(Some(failure));
                }
                Error::Closed { end, .. } => end,
                other => SocketEnd::Failed(crate::error::chain(&other)),
            };
            driver.ended(end);
        });
        handle
    }

    /// Waits until the state has changed since this method last returned (at once if it
    /// has; the first call returns at once if anything changed since the start). Look at
    /// [`Allocation::state`] after it; once the socket has ended it returns at once.
    pub async fn changed(&self) {
        // The handle's own receiver remembers what it has seen; it is taken out for the wait
        // (a std mutex is not held across an `.await`) and put back after.
        let mut seen = lock_seen(&self.seen).clone();
        let _ = seen.changed().await;
        seen.borrow_and_update();
        *lock_seen(&self.seen) = seen;
    }

    /// Where the allocation stands now (a copy).
    pub fn state(&self) -> AllocationState {
        lock(&self.shared).state.clone()
    }

    /// The next event: `Ok(Some)` an event (already applied to [`Allocation::state`]),
    /// `Err` a refusal, an unreadable message or the socket's unexpected end, `Ok(None)` once
    /// the socket has ended and every event was taken. Events older than the last
    /// [`EVENTS_QUEUED_MAX`] are dropped if nobody takes them.
    pub async fn next_event(&self) -> Result<Option<ClientEvent>, Error> {
        let mut changed = self.changed.clone();
        loop {
            changed.borrow_and_update();
            {
                let mut shared = lock(&self.shared);
                if let Some(item) = shared.events.pop_front() {
                    return item.map(Some).map_err(Error::from);
                }
                if shared.finished {
                    return Ok(None);
                }
            }
            if changed.changed().await.is_err() {
                let mut shared = lock(&self.shared);
                return match shared.events.pop_front() {
                    Some(item) => item.map(Some).map_err(Error::from),
                    None => Ok(None),
                };
            }
        }
    }

    /// Waits until the allocation is ready and returns its lease (at once if it is). Does not
    /// take events: [`Allocation::next_event`] still sees every one. Fails with the request's
    /// failure ([`AllocationError::TimedOut`], ...), or [`AllocationError::Ended`].
    pub async fn wait_ready(&self) -> Result<Lease, Error> {
        let mut changed = self.changed.clone();
        loop {
            changed.borrow_and_update();
            {
                let shared = lock(&self.shared);
                let state = &shared.state;
                if let (true, Some(lease)) = (state.phase.is_held(), &state.lease) {
                    return Ok(lease.clone());
                }
                if let Some(failure) = &state.failure {
                    return Err(failure.clone().into());
                }
                if state.phase.has_ended() {
                    return Err(AllocationError::Ended(state.phase).into());
                }
                if shared.finished {
                    return Err(AllocationError::LostBeforeReady(SocketEnd::Ended).into());
                }
            }
            // The sender lives until the task has set `finished`, so the check above ends this.
            let _ = changed.changed().await;
        }
    }

    /// `PATCH /allocate/{id}`: moves the lease's end to `expires` (capped by the server);
    /// the state takes the effective value.
    pub async fn extend(&self, expires: u64) -> Result<AllocationInfo, Error> {
        let id = self.id()?;
        let info = self.client.extend(id, expires).await?;
        lock(&self.shared).state.extended(&info);
        Ok(info)
    }

    /// `DELETE /allocate/{id}`: frees the lease or cancels the waiting request; the server
    /// then sends `released` and closes the socket. Before the server has named the request,
    /// closes the socket instead, which cancels it.
    pub async fn release(&self) -> Result<(), Error> {
        match self.id() {
            Ok(id) => self.client.release(id).await,
            Err(_) => {
                self.close();
                Ok(())
            }
        }
    }

    /// Closes the socket without releasing: a waiting request is cancelled; a ready lease
    /// lives on until it expires or is released (unless `release_on_disconnect`).
    pub fn close(&self) {
        let stop = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
    }

    /// The client it was made with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn id(&self) -> Result<Uuid, AllocationError> {
        lock(&self.shared)
            .state
            .allocation_id
            .ok_or(AllocationError::NoIdYet)
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.close();
    }
}

/// The task's ends of a handle's channels.
struct Driver {
    shared: Arc<Mutex<Shared>>,
    notify: watch::Sender<()>,
    stopped: oneshot::Receiver<()>,
}

impl Driver {
    /// The socket ended: the state learns it, and nothing more will come.
    fn ended(self, end: SocketEnd) {
        let failure = lock(&self.shared).state.socket_ended(end);
        self.finish(failure);
    }

    /// Queues the last item, if any, and marks the stream finished.
    fn finish(self, failure: Option<AllocationError>) {
        {
            let mut guard = lock(&self.shared);
            if let Some(error) = failure {
                push(&mut guard, Err(error));
            }
            guard.finished = true;
        }
        self.notify.send_replace(());
    }
}

/// The socket task: applies every message to the state and queues it, until the socket ends
/// or `stop` fires (which closes it).
async fn drive(mut socket: Socket, mut driver: Driver) {
    let end = loop {
        let text = tokio::select! {
            _ = &mut driver.stopped => {
                socket::close(&mut socket).await;
                break SocketEnd::Closed { code: 1000, reason: "closed by the client".into() };
            }
            text = socket::next_text(&mut socket) => text,
        };
        let text = match text {
            Ok(text) => text,
            Err(end) => break end,
        };
        let parsed = ClientEvent::parse(&text);
        let mut guard = lock(&driver.shared);
        let item = match parsed {
            Ok(envelope) => guard.state.receive(envelope),
            // A status a newer server added: nothing this client can act on.
            Err(allocate_core::wire::WireError::Unknown { .. }) => continue,
            Err(e) => Err(AllocationError::Unreadable(e.to_string())),
        };
        push(&mut guard, item);
        drop(guard);
        driver.notify.send_replace(());
    };
    driver.ended(end);
}

/// Queues an event, dropping the oldest beyond [`EVENTS_QUEUED_MAX`].
fn push(shared: &mut Shared, item: Result<ClientEvent, AllocationError>) {
    if shared.events.len() >= EVENTS_QUEUED_MAX {
        shared.events.pop_front();
    }
    shared.events.push_back(item);
}

#[cfg(test)]
mod tests;
