//! The engine's driver: one task owns the engine, runs the jobs that handlers and sockets
//! send it one at a time, fires the engine's deadlines with one timer, and routes every
//! output to its socket's bounded queue. It never waits on a socket, so no client can stall
//! it or another client. It decides nothing: the engine does.
//!
//! - [`jobs`]: the job channel and [`DriverHandle`], whose typed methods are the only way
//!   in;
//! - [`run`]: the task's loop and its timer;
//! - [`sockets`]: the driver's end of every socket, and which socket speaks for whom;
//! - [`delivery`]: outputs and replies on their way out, held back until the journal has
//!   their records.
//!
//! Each submodule works on the [`Driver`] defined here and imports only the submodules
//! before it in the order `sockets`, `delivery`, `jobs`, `run` (checked by a test).

mod delivery;
mod jobs;
mod run;
mod sockets;
#[cfg(test)]
mod tests;

pub use jobs::{DriverError, DriverHandle};
pub use run::{spawn, DriverTask, Ended};
pub use sockets::{
    Frame, Killed, Outbox, Peer, CLOSE_GOING_AWAY, CLOSE_INTERNAL, CLOSE_NORMAL, CLOSE_NOT_UTF8,
    CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_TOO_BIG,
};

use crate::auth::Caller;
use crate::clock;
use crate::history::{History, Sample};
use crate::journal::Journal;
use crate::metrics::Metrics;
use allocate_core::wire::{Envelope, Refusal, ServerMessage};
use allocate_core::{
    AgentMessage, AllocationInfo, AllocationState, Engine, Error, InventoryEntry, Requirements,
    ResourceSpec, SessionId,
};
use delivery::{Delivery, Outgoing};
use jobs::not_found;
use sockets::Sockets;
use tracing::{debug, info, warn};
use uuid::Uuid;

/// The engine and the sockets its outputs go to; only the driver task touches it.
#[derive(Debug)]
struct Driver {
    engine: Engine,
    sockets: Sockets,
    outgoing: Outgoing,
    metrics: Metrics,
    history: History,
}

impl Driver {
    /// A driver over `engine`, journaling to `journal` (`None`: in memory).
    fn new(engine: Engine, journal: Option<Journal>) -> Self {
        Driver {
            engine,
            sockets: Sockets::default(),
            outgoing: Outgoing::new(journal),
            metrics: Metrics::default(),
            history: History::default(),
        }
    }

    /// Opens this minute's sample of the dashboard's history if it has none yet (a scan of
    /// the inventory, at most once a minute).
    fn sample_history_if_due(&mut self) {
        let now = clock::now().as_secs();
        if self.history.due(now) {
            self.sample_history(now);
        }
    }

    /// Samples the lab into this minute's sample of the history.
    fn sample_history(&mut self, now: u64) {
        let queued = self.engine.queue_len() as u64;
        self.history
            .sample(now, queued, self.engine.inventory_refs());
    }

    /// The dashboard's history, this minute's sample taken now.
    fn history(&mut self) -> Vec<Sample> {
        self.sample_history(clock::now().as_secs());
        self.history.samples().cloned().collect()
    }

    /// A client asks for an allocation; its socket gets what becomes of it.
    fn request(&mut self, peer: Peer, requirements: Requirements) -> Result<Uuid, Error> {
        let (username, tags) = (requirements.username.clone(), requirements.tags.clone());
        let id = self.engine.request(clock::now(), requirements)?;
        info!(allocation_id = %id, username, ?tags, "allocation requested");
        self.sockets.add_client(id, peer);
        Ok(id)
    }

    /// A socket follows the allocation `id` of `caller`'s (any, for an admin): it is told the
    /// current state the engine gives now, then every later event. An ended or unknown
    /// allocation is not found.
    fn follow(&mut self, caller: &Caller, peer: Peer, id: Uuid) -> Result<(), Error> {
        if self.owned(caller, id)?.state.is_terminal() {
            return Err(not_found("allocation", id));
        }
        // What earlier jobs of this batch made is routed first, so that the follower hears
        // the current state once and only what comes after it.
        self.route();
        let frames = self
            .engine
            .current_outputs(&id)
            .iter()
            .map(|output| Frame::Text(output.to_text()))
            .collect();
        debug!(allocation_id = %id, by = %caller, "following");
        self.sockets.add_follower(id, peer.clone());
        self.greet_follower(id, peer, frames);
        Ok(())
    }

    /// A follower's socket closed; the allocation is not affected.
    fn follower_gone(&mut self, allocation_id: Uuid, peer_id: u64) {
        self.sockets.remove_follower(&allocation_id, peer_id);
    }

    /// A client's socket closed (unless the driver closed or dropped it already).
    fn client_gone(&mut self, allocation_id: Uuid, peer_id: u64) {
        if self.sockets.remove_client_if(&allocation_id, peer_id) {
            self.forget_client(allocation_id);
        }
    }

    /// A message on the agent socket `peer_id`; `first` hands over the socket's queue with
    /// its first message. The engine's session rules decide whether the socket may send it:
    /// a registration first, the same `agent_id` after, and a newer socket of the agent
    /// takes over.
    fn agent_message(
        &mut self,
        peer_id: u64,
        first: Option<Peer>,
        message: AgentMessage,
    ) -> Result<(), Error> {
        let now = clock::now();
        let session = SessionId(peer_id);
        match message {
            AgentMessage::Register {
                agent_id,
                resources,
            } => self.agent_register(session, first, agent_id, resources)?,
            AgentMessage::Provisioned {
                allocation_id,
                result,
            } => self
                .engine
                .session_provisioned(now, session, allocation_id, result)?,
            AgentMessage::Released { allocation_id } => {
                self.engine.session_released(now, session, allocation_id)?;
                info!(%allocation_id, "release acknowledged");
            }
        }
        Ok(())
    }

    /// A registration on the agent socket `session` (see [`Driver::agent_message`]).
    fn agent_register(
        &mut self,
        session: SessionId,
        first: Option<Peer>,
        agent_id: Uuid,
        resources: Vec<ResourceSpec>,
    ) -> Result<(), Error> {
        // Orders that earlier jobs of this batch made go out first, on the socket they were
        // made for.
        self.route();
        let registered =
            self.engine
                .session_register(clock::now(), session, agent_id, resources)?;
        let ids = registered.inventory_ids;
        info!(%agent_id, resources = ids.len(), "agent registered");
        // The engine says whether this socket took over from another; the registry holds
        // that one's queue.
        let old = first.and_then(|peer| self.sockets.add_agent(agent_id, peer));
        debug_assert_eq!(old.as_ref().map(Peer::session), registered.replaced);
        if let Some(old) = old {
            info!(%agent_id, "a newer socket of the agent replaces the older one");
            let close = Frame::Close(CLOSE_NORMAL, "replaced by a newer connection");
            self.dispatch(Delivery::closing(old, vec![close]));
        }
        self.reply_registered(agent_id, &ids);
        Ok(())
    }

    /// An agent's socket closed: its resources go offline, unless a newer socket took over.
    fn agent_gone(&mut self, peer_id: u64) {
        self.forget_agent(peer_id);
    }

    /// Stops taking new work (the engine refuses it from now on); clients still waiting for
    /// `ready` get the engine's answer, and every socket is closed.
    fn shutdown(&mut self) {
        self.route();
        let waiting = self.engine.shut_down();
        let stopping = Envelope::<()>::Refused(Refusal::new(
            Error::ShuttingDown.code(),
            Error::ShuttingDown.to_string(),
        ))
        .to_text();
        let going_away = || Frame::Close(CLOSE_GOING_AWAY, "server shutting down");
        let (mut clients, agents) = self.sockets.drain();
        for id in waiting {
            if let Some(peer) = clients.remove(&id) {
                let frames = vec![Frame::Text(stopping.clone()), going_away()];
                self.dispatch(Delivery::closing(peer, frames));
            }
        }
        for peer in clients.into_values().chain(agents) {
            self.dispatch(Delivery::closing(peer, vec![going_away()]));
        }
    }

    /// The allocation `id` if `caller` owns it or is an admin: 403 for an agent, 404 when
    /// unknown, 403 when another user's.
    fn owned(&self, caller: &Caller, id: Uuid) -> Result<AllocationInfo, Error> {
        caller.require_allocator("/allocate/{id}")?;
        let info = self
            .engine
            .allocation(&id)
            .ok_or_else(|| not_found("allocation", id))?;
        caller.check_owner(&info)?;
        Ok(info)
    }

    /// Frees an allocation of `caller`'s or cancels its request.
    fn release(&mut self, caller: &Caller, id: Uuid) -> Result<(), Error> {
        let waiting = matches!(
            self.owned(caller, id)?.state,
            AllocationState::Queued | AllocationState::Provisioning
        );
        self.engine.release(clock::now(), id)?;
        if let Some(ms) = self.waited_ms(&id).filter(|_| waiting) {
            self.metrics
                .observe_left_queue(AllocationState::Released, ms);
        }
        Ok(())
    }

    /// Milliseconds from the request of allocation `id` to the engine's now.
    fn waited_ms(&self, id: &Uuid) -> Option<u64> {
        let a = self.engine.allocation(id)?;
        let now = self.engine.now().as_millis();
        Some(now.saturating_sub(a.created_at.as_millis()))
    }

    /// Moves the lease end of an allocation of `caller`'s; returns it as it is now.
    fn set_expires(
        &mut self,
        caller: &Caller,
        id: Uuid,
        expires: u64,
    ) -> Result<AllocationInfo, Error> {
        self.owned(caller, id)?;
        self.engine.set_expires(clock::now(), id, expires)?;
        self.engine
            .allocation(&id)
            .ok_or_else(|| not_found("allocation", id))
    }

    /// Takes a resource out of service or returns it; returns it as it is now.
    fn set_maintenance(
        &mut self,
        id: Uuid,
        reason: Option<String>,
    ) -> Result<InventoryEntry, Error> {
        self.engine.set_maintenance(clock::now(), id, reason)?;
        self.engine
            .resource(&id)
            .ok_or_else(|| not_found("resource", id))
    }

    /// The `/metrics` exposition.
    fn render_metrics(&self) -> String {
        self.metrics
            .render(&self.engine.stats(), self.sockets.client_count())
    }

    /// Tells the agent its registration was taken, with its resources' ids.
    fn reply_registered(&mut self, agent_id: Uuid, ids: &[Uuid]) {
        self.send_to_agent(agent_id, ServerMessage::registered_text(ids));
    }

    /// Tells the engine that `allocation_id`'s client is gone.
    fn forget_client(&mut self, allocation_id: Uuid) {
        match self.engine.client_gone(clock::now(), allocation_id) {
            Ok(()) => debug!(%allocation_id, "client left"),
            Err(e) => debug!(%allocation_id, "client left: {e}"),
        }
        self.outgoing.collect(&mut self.engine);
    }

    /// The agent socket `peer_id` is gone; the engine decides whether it still spoke for
    /// its agent, which then goes offline. Returns whether it did.
    fn forget_agent(&mut self, peer_id: u64) -> bool {
        let closed = self.engine.session_closed(clock::now(), SessionId(peer_id));
        self.outgoing.collect(&mut self.engine);
        match closed {
            Ok(Some(agent_id)) => {
                info!(%agent_id, "agent disconnected; its resources are offline");
                self.sockets.remove_agent_if(&agent_id, peer_id);
                true
            }
            Ok(None) => false,
            Err(e) => {
                warn!("agent disconnected: {e}");
                false
            }
        }
    }
}
