//! Where an allocation stands, the one place that knows: [`AllocationState`], a plain state
//! machine fed the server's events ([`AllocationState::apply`]), refusals and the socket's end,
//! with no IO, so it is tested without sockets and any shell (the Python binding, the command
//! line) can drive it.

use crate::socket::SocketEnd;
use allocate_core::wire::{ClientEvent, Envelope, Refusal};
use allocate_core::{AllocationInfo, Connection, ErrorCode, Finding, GrantedResource, QuotaLimit};
use uuid::Uuid;

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
    /// Every resource granted, the first one first, for a request of several (`count`);
    /// empty for one.
    pub resources: Vec<GrantedResource>,
}

impl Lease {
    /// The lease a `ready` event hands over (`None` for any other event).
    pub fn of(event: &ClientEvent) -> Option<Lease> {
        match event {
            ClientEvent::Ready {
                allocation_id,
                inventory_id,
                connection,
                expires,
                resources,
            } => Some(Lease {
                allocation_id: *allocation_id,
                inventory_id: *inventory_id,
                connection: Connection::clone(connection),
                expires: *expires,
                resources: resources.clone(),
            }),
            _ => None,
        }
    }
}

/// Where one allocation stands, fed by the server's events: no IO, no clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationState {
    phase: Phase,
    allocation_id: Option<Uuid>,
    position: Option<u32>,
    matching_resources: Option<u64>,
    eta: Option<u64>,
    explain: Option<Vec<Finding>>,
    quota: Option<QuotaLimit>,
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
            explain: None,
            quota: None,
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
                explain,
                quota,
                ..
            } if !self.phase.is_held() => {
                self.phase = Phase::Queued;
                self.position = Some(*position);
                self.matching_resources = Some(*matching_resources);
                self.eta = *eta;
                self.quota = *quota;
                if explain.is_some() {
                    self.explain.clone_from(explain);
                }
            }
            ClientEvent::Ready { .. } => {
                self.phase = Phase::Ready;
                self.position = None;
                self.lease = Lease::of(event);
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

    /// The quota limit that holds the request back (from the last `queued`), if one does.
    pub fn quota(&self) -> Option<QuotaLimit> {
        self.quota
    }

    /// Why no registered resource could ever satisfy the request, when its first `queued`
    /// said so (API.md, "Why not").
    pub fn explain(&self) -> Option<&[Finding]> {
        self.explain.as_deref()
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

#[cfg(test)]
mod tests;
