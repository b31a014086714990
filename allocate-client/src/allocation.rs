//! One request on `WEBSOCKET /allocate/`, from queueing to the end of its lease:
//! [`Client::allocate`] opens it and [`Allocation`] is its handle. A task owns the socket,
//! feeds every message to the request's [`AllocationState`] and queues it as an event, and
//! keeps reading after `ready` so the socket answers the server's pings for the whole lease.

use crate::chain::chain;
use crate::client::Client;
use crate::error::Error;
use crate::socket::{self, Socket, SocketEnd};
use crate::state::{AllocationError, AllocationState, Lease};
use allocate_core::wire::{self, ClientEvent};
use allocate_core::{AllocationInfo, Requirements};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Most events kept for [`Allocation::next_event`]; beyond it the oldest is dropped (the state
/// still holds everything they said).
pub const EVENTS_QUEUED_MAX: usize = 1024;

/// The message that opens an allocation: `{"requirements": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocateRequest {
    text: String,
}

impl AllocateRequest {
    /// Requirements as a JSON object sent as it is, for callers that take them from a
    /// dynamic language: the server checks every field (an unknown one is refused, naming
    /// it), so a field this client does not know yet still reaches a server that does.
    pub fn from_json(requirements: serde_json::Map<String, serde_json::Value>) -> Self {
        // The one message a client writes that `wire` has no type for: the requirements
        // are deliberately not read here.
        let text = serde_json::json!({ "requirements": requirements }).to_string();
        AllocateRequest { text }
    }
}

impl From<&Requirements> for AllocateRequest {
    fn from(requirements: &Requirements) -> Self {
        AllocateRequest {
            text: wire::client::allocate_request_text(requirements),
        }
    }
}

impl Client {
    /// Opens `WEBSOCKET /allocate/`, sends `requirements` and returns the request's handle;
    /// the server's answers arrive on it (see [`Allocation`]). A failure to connect (or a
    /// refused upgrade) is returned here.
    pub async fn allocate(&self, requirements: &Requirements) -> Result<Allocation, Error> {
        let request = AllocateRequest::from(requirements);
        let socket = self.connect("allocate/").await?;
        Allocation::start(self.clone(), socket, request.text).await
    }

    /// Opens `WEBSOCKET /allocate/{id}` to follow an existing allocation (its owner's, or
    /// anyone's for an admin): the server sends its current state first (`queued` with the
    /// position, or `ready` with the lease), then the same events as the socket that created
    /// it, as one [`Allocation`]. Dropping the handle stops following and changes nothing on
    /// the server. An ended or unknown id (`not_found`) or another user's (`forbidden`) is
    /// the stream's first error.
    pub async fn follow(&self, id: Uuid) -> Result<Allocation, Error> {
        let socket = self.connect(&format!("allocate/{id}")).await?;
        let (handle, driver) = Allocation::new(self.clone());
        tokio::spawn(drive(socket, driver));
        Ok(handle)
    }

    /// Like [`Client::allocate`], but returns at once and connects in the background (for a
    /// caller that must not wait, such as a binding's `start()`): a failure to connect
    /// becomes the allocation's failure. Must be called within a tokio runtime.
    pub fn start_allocate(&self, request: AllocateRequest) -> Allocation {
        Allocation::start_in_background(self.clone(), request.text)
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
            client: handle.client.clone(),
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
                    let failure = lock(&driver.shared).state.refuse(*refusal);
                    return driver.finish(Some(failure));
                }
                Error::Closed { end, .. } => end,
                other => SocketEnd::Failed(chain(&other)),
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
                if let (true, Some(lease)) = (state.phase().is_held(), state.lease()) {
                    return Ok(lease.clone());
                }
                if let Some(failure) = state.failure() {
                    return Err(failure.clone().into());
                }
                if state.phase().has_ended() {
                    return Err(AllocationError::Ended(state.phase()).into());
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
            .allocation_id()
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
    /// Where it follows the allocation again when its socket is lost.
    client: Client,
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
/// for good or `stop` fires (which closes it). A socket lost while the allocation is named
/// and not ended is replaced by one that follows it on the server that now leads, when the
/// client knows several (API.md, "Replicas").
async fn drive(mut socket: Socket, mut driver: Driver) {
    loop {
        let end = match read(&mut socket, &mut driver).await {
            Read::Stopped => {
                socket::close(&mut socket).await;
                SocketEnd::Closed {
                    code: 1000,
                    reason: "closed by the client".into(),
                }
            }
            Read::Lost(end) => match follow_again(&mut driver).await {
                Some(again) => {
                    socket = again;
                    continue;
                }
                None => end,
            },
        };
        return driver.ended(end);
    }
}

/// How reading a socket ended.
enum Read {
    /// The handle asked to stop.
    Stopped,
    /// The socket ended.
    Lost(SocketEnd),
}

/// Reads `socket` into the state and the events until it ends or the handle stops.
async fn read(socket: &mut Socket, driver: &mut Driver) -> Read {
    loop {
        let text = tokio::select! {
            _ = &mut driver.stopped => return Read::Stopped,
            text = socket::next_text(socket) => text,
        };
        let text = match text {
            Ok(text) => text,
            Err(end) => return Read::Lost(end),
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
    }
}

/// A socket following the allocation on the server that leads now, after its socket was
/// lost: `None` when there is nothing to follow (not named yet, ended, failed), no other
/// server to try, the handle stopped, or no server would serve it within the client's
/// failover deadline.
async fn follow_again(driver: &mut Driver) -> Option<Socket> {
    let id = {
        let shared = lock(&driver.shared);
        let state = &shared.state;
        let live = !state.phase().has_ended() && state.failure().is_none();
        state.allocation_id().filter(|_| live)?
    };
    if !driver.client.several_servers() {
        return None;
    }
    let path = format!("allocate/{id}");
    tokio::select! {
        _ = &mut driver.stopped => None,
        socket = driver.client.connect(&path) => socket.ok(),
    }
}

/// Queues an event, dropping the oldest beyond [`EVENTS_QUEUED_MAX`].
fn push(shared: &mut Shared, item: Result<ClientEvent, AllocationError>) {
    if shared.events.len() >= EVENTS_QUEUED_MAX {
        shared.events.pop_front();
    }
    shared.events.push_back(item);
}
