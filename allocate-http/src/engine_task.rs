//! The engine's owner: one task holds the engine, runs the jobs that handlers and sockets
//! send it one at a time, fires the engine's deadlines with one timer, and routes every
//! output to its socket's bounded queue. It never waits on a socket, so no client can stall
//! it or another client.
//!
//! With a journal, the records of every engine call go to the journal's writer, and what the
//! call makes visible (outputs to sockets, the handler's reply) is held back until the writer
//! says those records are on disk: nobody sees a change that a crash could undo.

use crate::clock;
use crate::error::ApiError;
use crate::events;
use crate::journal::{Holdback, Journal, JournalError, Progress};
use crate::metrics::Metrics;
use crate::ws::{Frame, Peer, CLOSE_GOING_AWAY, CLOSE_NORMAL};
use allocate_core::wire::ServerMessage;
use allocate_core::{
    AgentMessage, AllocationState, Engine, Output, Recipient, Requirements, ResourceSpec, Timestamp,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

/// Jobs that may wait for the engine task; senders beyond this wait their turn.
const JOBS_MAX: usize = 1024;

/// Records handed to the journal and not yet on disk, at most; at this bound the engine task
/// takes no new job (their senders wait, as at [`JOBS_MAX`]) until the disk catches up.
const RECORDS_IN_FLIGHT_MAX: u64 = 1 << 16;

/// Deliveries held back for the journal, at most; the same happens at this bound.
const HELD_MAX: usize = 1 << 16;

/// Work for the engine task: code to run with the engine state, which hands its result to
/// [`EngineState::reply`].
type Job = Box<dyn FnOnce(&mut EngineState) + Send>;

/// How the engine task ended: cleanly, or because the journal failed.
pub type Ended = Result<(), Arc<JournalError>>;

/// A cheap, cloneable way to run code on the engine task.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    jobs: mpsc::Sender<Job>,
}

impl EngineHandle {
    /// Runs `f` on the engine task and returns its result once what `f` changed is durable;
    /// outputs it causes are routed after.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut EngineState) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |state| {
            let value = f(state);
            state.reply(Box::new(move || {
                let _ = reply_tx.send(value);
            }));
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| ApiError::ShuttingDown)?;
        reply_rx
            .await
            .map_err(|_| ApiError::Internal("the engine task stopped during a call"))
    }
}

/// The running engine task.
#[derive(Debug)]
pub struct EngineTask {
    /// Completes when the task ends: when every [`EngineHandle`] is dropped, or at once
    /// when the journal fails.
    pub join: JoinHandle<Ended>,
    /// Completes (`Ok`) when the journal has failed and the server must stop.
    pub failed: oneshot::Receiver<()>,
}

/// Starts the engine task over `engine`, journaling to `journal` (`None`: in memory).
pub fn spawn(engine: Engine, journal: Option<Journal>) -> (EngineHandle, EngineTask) {
    let (jobs_tx, jobs_rx) = mpsc::channel(JOBS_MAX);
    let (failed_tx, failed) = oneshot::channel();
    let state = EngineState::new(engine, journal);
    let join = tokio::spawn(drive(state, jobs_rx, failed_tx));
    (EngineHandle { jobs: jobs_tx }, EngineTask { join, failed })
}

/// Runs the loop until it ends, then lets the journal finish writing.
async fn drive(
    mut state: EngineState,
    jobs: mpsc::Receiver<Job>,
    failed: oneshot::Sender<()>,
) -> Ended {
    let ended = serve_jobs(&mut state, jobs).await;
    if let Err(e) = &ended {
        // What is held back is dropped unseen: handlers answer 500, sockets just close.
        warn!("stopping the server: {e}");
        let _ = failed.send(());
    }
    if let Some(journal) = state.journal.take() {
        journal.close().await;
    }
    debug!("engine task stopped");
    ended
}

/// The loop: run a job, fire the timer, or release what the journal made durable; then
/// route outputs. The one timer sleeps until `poll_timeout()` and is re-armed only when that
/// changes.
async fn serve_jobs(state: &mut EngineState, mut jobs: mpsc::Receiver<Job>) -> Ended {
    let timer = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Timestamp> = None;
    let mut progress = state.journal.as_ref().map(Journal::progress);
    loop {
        let next = state.engine.poll_timeout();
        if next != armed {
            armed = next;
            if let Some(at) = next {
                timer
                    .as_mut()
                    .reset(Instant::now() + clock::until(clock::now(), at));
            }
        }
        tokio::select! {
            job = jobs.recv(), if !state.backlogged() => match job {
                Some(job) => job(state),
                None => return Ok(()),
            },
            () = &mut timer, if armed.is_some() => {
                // The monotonic timer says the deadline has come; the wall clock may lag it
                // by a hair, so the engine is never handed a time before the deadline.
                let at = armed.take().unwrap_or_default();
                state.engine.handle_timeout(clock::now().max(at));
            }
            progress = next_progress(&mut progress) => {
                // What is on disk is shown even when writing has just failed.
                state.durable(progress.durable);
                if let Some(e) = progress.failed {
                    return Err(e);
                }
            }
        }
        state.route();
        state.snapshot_if_due();
    }
}

/// The journal writer's next progress report (never, without a journal).
async fn next_progress(progress: &mut Option<watch::Receiver<Progress>>) -> Progress {
    let Some(progress) = progress else {
        return std::future::pending().await;
    };
    let stopped = progress.changed().await.is_err();
    let mut latest = progress.borrow_and_update().clone();
    if stopped && latest.failed.is_none() {
        latest.failed = Some(Arc::new(JournalError::WriterStopped));
    }
    latest
}

/// Something to hand over once the records it depends on are on disk.
enum Delivery {
    /// Frames for one socket, in order.
    Frames {
        /// The socket, as it was when the frames were made.
        peer: Peer,
        frames: Vec<Frame>,
        /// What dropping the socket means, should it be too far behind to take them.
        owner: Owner,
        /// For a held `queued` message: skipped when a newer one for the same allocation
        /// is held too (see [`EngineState::latest_queued`]).
        supersede: Option<(Uuid, u64)>,
    },
    /// A handler's reply.
    Reply(Box<dyn FnOnce() + Send>),
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivery::Frames { peer, frames, .. } => f
                .debug_struct("Frames")
                .field("peer", &peer.id())
                .field("frames", &frames.len())
                .finish_non_exhaustive(),
            Delivery::Reply(_) => f.write_str("Reply"),
        }
    }
}

/// Whose socket a delivery goes to.
#[derive(Clone, Copy, Debug)]
enum Owner {
    /// The client of this allocation: dropping it counts as the client leaving.
    Client(Uuid),
    /// This agent: dropping it takes the agent's resources offline.
    Agent(Uuid),
    /// A socket that is closing anyway.
    Closing,
}

/// The engine and the sockets its outputs go to; only the engine task touches it.
#[derive(Debug)]
pub struct EngineState {
    engine: Engine,
    /// The socket of each allocation's client, while it is open.
    clients: HashMap<Uuid, Peer>,
    /// The socket of each connected agent.
    agents: HashMap<Uuid, Peer>,
    metrics: Metrics,
    shutting_down: bool,
    /// Where records go (`None`: the server runs in memory).
    journal: Option<Journal>,
    /// Outputs and replies waiting for their records to be on disk.
    hold: Holdback<Delivery>,
    /// The newest held `queued` message of each allocation (a counter value): a client's
    /// positions can change many times while one batch syncs, and only the last one counts,
    /// so older ones are skipped rather than filling the client's queue.
    latest_queued: HashMap<Uuid, u64>,
    queued_count: u64,
}

impl EngineState {
    fn new(engine: Engine, journal: Option<Journal>) -> Self {
        let seq = journal.as_ref().map_or(0, Journal::appended);
        EngineState {
            engine,
            clients: HashMap::new(),
            agents: HashMap::new(),
            metrics: Metrics::default(),
            shutting_down: false,
            journal,
            hold: Holdback::new(seq),
            latest_queued: HashMap::new(),
            queued_count: 0,
        }
    }

    /// The engine, for queries.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, for HTTP mutations (their outputs are routed after the job).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// A client asks for an allocation; its socket gets what becomes of it.
    pub fn request(&mut self, peer: Peer, requirements: Requirements) -> Result<Uuid, ApiError> {
        if self.shutting_down {
            return Err(ApiError::ShuttingDown);
        }
        let (username, tags) = (requirements.username.clone(), requirements.tags.clone());
        let id = self.engine.request(clock::now(), requirements)?;
        info!(allocation_id = %id, username, ?tags, "allocation requested");
        self.clients.insert(id, peer);
        Ok(id)
    }

    /// A client's socket closed (unless the engine task closed or dropped it already).
    pub fn client_gone(&mut self, allocation_id: Uuid, peer_id: u64) {
        if self.clients.get(&allocation_id).map(Peer::id) != Some(peer_id) {
            return;
        }
        self.clients.remove(&allocation_id);
        self.forget_client(allocation_id);
    }

    /// An agent's first registration on a socket; the socket replaces any earlier one.
    pub fn register(
        &mut self,
        peer: Peer,
        agent_id: Uuid,
        resources: Vec<ResourceSpec>,
    ) -> Result<(), ApiError> {
        if self.shutting_down {
            return Err(ApiError::ShuttingDown);
        }
        let ids = self
            .engine
            .register_agent(clock::now(), agent_id, resources)?;
        info!(%agent_id, resources = ids.len(), "agent registered");
        if let Some(old) = self.agents.insert(agent_id, peer) {
            info!(%agent_id, "a newer socket of the agent replaces the older one");
            self.dispatch(Delivery::Frames {
                peer: old,
                frames: vec![Frame::Close(CLOSE_NORMAL, "replaced by a newer connection")],
                owner: Owner::Closing,
                supersede: None,
            });
        }
        self.reply_registered(agent_id, &ids);
        Ok(())
    }

    /// A later message on an agent's socket: a new registration, or an answer.
    pub fn agent_message(
        &mut self,
        agent_id: Uuid,
        peer_id: u64,
        message: AgentMessage,
    ) -> Result<(), ApiError> {
        if self.agents.get(&agent_id).map(Peer::id) != Some(peer_id) {
            return Err(allocate_core::Error::Conflict(format!(
                "this socket of agent {agent_id} was replaced by a newer one"
            ))
            .into());
        }
        let now = clock::now();
        match message {
            AgentMessage::Register {
                agent_id: named,
                resources,
            } => {
                if named != agent_id {
                    return Err(ApiError::invalid(format!(
                        "agent_id {named} differs from {agent_id}, which registered on this socket"
                    )));
                }
                let ids = self.engine.register_agent(now, agent_id, resources)?;
                info!(%agent_id, resources = ids.len(), "agent re-registered");
                self.reply_registered(agent_id, &ids);
            }
            AgentMessage::Provisioned {
                allocation_id,
                result,
            } => self
                .engine
                .provisioned(now, agent_id, allocation_id, result)?,
            AgentMessage::Released { allocation_id } => {
                self.engine
                    .release_acknowledged(now, agent_id, allocation_id)?;
                info!(%allocation_id, %agent_id, "release acknowledged");
            }
        }
        Ok(())
    }

    /// An agent's socket closed: its resources go offline, unless a newer socket took over.
    pub fn agent_gone(&mut self, agent_id: Uuid, peer_id: u64) {
        if self.agents.get(&agent_id).map(Peer::id) != Some(peer_id) {
            return;
        }
        self.agents.remove(&agent_id);
        self.forget_agent(agent_id);
    }

    /// Stops taking requests; clients still waiting for `ready` get 503, and every socket
    /// is closed.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        let stopping = ApiError::ShuttingDown.envelope_text();
        let going_away = || Frame::Close(CLOSE_GOING_AWAY, "server shutting down");
        let clients: Vec<(Uuid, Peer)> = self.clients.drain().collect();
        for (id, peer) in clients {
            let waiting = self.engine.allocation(&id).is_some_and(|a| {
                matches!(
                    a.state,
                    AllocationState::Queued | AllocationState::Provisioning
                )
            });
            let mut frames = Vec::with_capacity(2);
            if waiting {
                frames.push(Frame::Text(stopping.clone()));
            }
            frames.push(going_away());
            self.dispatch(Delivery::Frames {
                peer,
                frames,
                owner: Owner::Closing,
                supersede: None,
            });
        }
        let agents: Vec<Peer> = self.agents.drain().map(|(_, peer)| peer).collect();
        for peer in agents {
            self.dispatch(Delivery::Frames {
                peer,
                frames: vec![going_away()],
                owner: Owner::Closing,
                supersede: None,
            });
        }
    }

    /// The `/metrics` exposition.
    pub fn render_metrics(&self) -> String {
        self.metrics
            .render(&self.engine.stats(), self.clients.len())
    }

    fn reply_registered(&mut self, agent_id: Uuid, ids: &[Uuid]) {
        self.send_to_agent(agent_id, ServerMessage::registered_text(ids));
    }

    /// Hands a job's reply over once what the job changed is durable.
    fn reply(&mut self, send: Box<dyn FnOnce() + Send>) {
        self.collect();
        self.dispatch(Delivery::Reply(send));
    }

    /// Hands the engine's new records to the journal: deliveries from now on wait for them.
    fn collect(&mut self) {
        if let Some(journal) = &mut self.journal {
            let seq = journal.append(self.engine.take_records());
            self.hold.appended(seq);
        }
    }

    /// Delivers now when nothing is pending, or holds back until the journal catches up.
    fn dispatch(&mut self, delivery: Delivery) {
        if let Some(delivery) = self.hold.pass(delivery) {
            self.deliver(delivery);
        }
    }

    /// Records up to `seq` are on disk: delivers what waited for them, in order.
    fn durable(&mut self, seq: u64) {
        self.hold.durable(seq);
        while let Some(delivery) = self.hold.pop_ready() {
            self.deliver(delivery);
        }
    }

    /// Whether the disk is so far behind that no new job should start.
    fn backlogged(&self) -> bool {
        self.hold.in_flight() >= RECORDS_IN_FLIGHT_MAX || self.hold.len() >= HELD_MAX
    }

    /// Hands the journal a snapshot when one is due (after [`EngineState::route`], so that
    /// it is the state after the last record).
    fn snapshot_if_due(&mut self) {
        if let Some(journal) = &mut self.journal {
            if journal.snapshot_due() {
                journal.snapshot(self.engine.snapshot());
            }
        }
    }

    fn deliver(&mut self, delivery: Delivery) {
        let (peer, frames, owner, supersede) = match delivery {
            Delivery::Reply(send) => return send(),
            Delivery::Frames {
                peer,
                frames,
                owner,
                supersede,
            } => (peer, frames, owner, supersede),
        };
        if let Some((allocation_id, n)) = supersede {
            if self.latest_queued.get(&allocation_id) != Some(&n) {
                return; // a newer position is held behind it
            }
            self.latest_queued.remove(&allocation_id);
        }
        for frame in frames {
            if !peer.push(frame) {
                return self.drop_peer(&peer, owner);
            }
        }
    }

    /// Drops a socket that cannot take more; if it is still its client's or agent's current
    /// socket, that client or agent counts as gone.
    fn drop_peer(&mut self, peer: &Peer, owner: Owner) {
        peer.kill();
        match owner {
            Owner::Client(allocation_id) => {
                if self.clients.get(&allocation_id).map(Peer::id) == Some(peer.id()) {
                    warn!(%allocation_id, "dropping a client that fell behind");
                    self.clients.remove(&allocation_id);
                    self.forget_client(allocation_id);
                }
            }
            Owner::Agent(agent_id) => {
                if self.agents.get(&agent_id).map(Peer::id) == Some(peer.id()) {
                    warn!(%agent_id, "dropping an agent that fell behind");
                    self.agents.remove(&agent_id);
                    self.forget_agent(agent_id);
                }
            }
            Owner::Closing => {}
        }
    }

    /// Drains the engine's outputs to their sockets.
    fn route(&mut self) {
        self.collect();
        while let Some(output) = self.engine.poll_output() {
            if let Output::Queued { allocation_id, .. } = &output {
                // A new position for a client whose socket is gone or closing would be
                // written only to be dropped. When thousands of waiting clients leave at
                // once, each leaving moves all behind it: that writing was the whole cost.
                let open = self
                    .clients
                    .get(allocation_id)
                    .is_some_and(|p| !p.is_closed());
                if !open {
                    continue;
                }
            }
            self.observe(&output);
            let text = output.to_text();
            match output.recipient() {
                Recipient::Client(id) => {
                    let queued = matches!(output, Output::Queued { .. });
                    self.send_to_client(id, text, output.is_final(), queued);
                }
                Recipient::Agent(id) => self.send_to_agent(id, text),
            }
        }
    }

    fn send_to_client(&mut self, allocation_id: Uuid, text: String, last: bool, queued: bool) {
        let Some(peer) = self.clients.get(&allocation_id).cloned() else {
            return;
        };
        let mut frames = vec![Frame::Text(text)];
        if last {
            frames.push(Frame::Close(CLOSE_NORMAL, "allocation ended"));
            self.clients.remove(&allocation_id);
        }
        let supersede = (queued && self.journal.is_some()).then(|| {
            self.queued_count += 1;
            self.latest_queued.insert(allocation_id, self.queued_count);
            (allocation_id, self.queued_count)
        });
        self.dispatch(Delivery::Frames {
            peer,
            frames,
            owner: Owner::Client(allocation_id),
            supersede,
        });
    }

    fn send_to_agent(&mut self, agent_id: Uuid, text: String) {
        let Some(peer) = self.agents.get(&agent_id).cloned() else {
            return;
        };
        self.dispatch(Delivery::Frames {
            peer,
            frames: vec![Frame::Text(text)],
            owner: Owner::Agent(agent_id),
            supersede: None,
        });
    }

    fn forget_client(&mut self, allocation_id: Uuid) {
        match self.engine.client_gone(clock::now(), allocation_id) {
            Ok(()) => debug!(%allocation_id, "client left"),
            Err(e) => debug!(%allocation_id, "client left: {e}"),
        }
        self.collect();
    }

    fn forget_agent(&mut self, agent_id: Uuid) {
        match self.engine.disconnect_agent(clock::now(), agent_id) {
            Ok(()) => info!(%agent_id, "agent disconnected; its resources are offline"),
            Err(e) => warn!(%agent_id, "agent disconnected: {e}"),
        }
        self.collect();
    }

    /// Feeds the metrics and logs the event.
    fn observe(&mut self, output: &Output) {
        if let Output::Ready { allocation_id, .. } = output {
            if let Some(a) = self.engine.allocation(allocation_id) {
                let now = self.engine.now().as_millis();
                self.metrics
                    .observe_ready(now.saturating_sub(a.created_at.as_millis()));
            }
        }
        events::log(output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::RandomIds;
    use allocate_core::{Config, Connection, ResourceState};
    use futures_util::FutureExt;

    fn in_memory() -> EngineState {
        EngineState::new(Engine::new(Config::default(), Box::new(RandomIds)), None)
    }

    fn machine(host: Option<&str>) -> ResourceSpec {
        ResourceSpec {
            inventory_id: None,
            labels: vec!["x".into()],
            cpu_count: 1,
            memory_gb: 1,
            gpu: vec![],
            kind: "VM".into(),
            connection: host.map(|h| Connection {
                host: h.into(),
                username: "lab".into(),
                password: "pw".into(),
            }),
        }
    }

    #[test]
    fn a_client_that_falls_behind_is_dropped_and_counts_as_gone() {
        let mut state = in_memory();
        let (peer, mut outbox) = Peer::new(1);
        let mut wants = Requirements::for_user("u");
        wants.release_on_disconnect = true;
        let id = state.request(peer, wants).unwrap();
        state.route(); // `queued` fills the queue of one
        assert!(state.clients.contains_key(&id));
        let (agent, _agent_outbox) = Peer::new(8);
        state
            .register(agent, Uuid::from_u128(1), vec![machine(Some("h"))])
            .unwrap();
        state.route(); // `ready` does not fit: the client is dropped, never waited for
        assert!(outbox.killed().now_or_never().is_some());
        assert!(!state.clients.contains_key(&id));
        let info = state.engine.allocation(&id).unwrap();
        assert_eq!(
            info.state,
            AllocationState::Released,
            "release_on_disconnect applied"
        );
        assert!(matches!(outbox.try_next(), Some(Frame::Text(t)) if t.contains("queued")));
    }

    #[test]
    fn an_agent_that_falls_behind_is_dropped_and_goes_offline() {
        let mut state = in_memory();
        let agent_id = Uuid::from_u128(1);
        let (agent, agent_outbox) = Peer::new(1);
        state
            .register(agent, agent_id, vec![machine(None)])
            .unwrap(); // the reply fills it
        let (client, _client_outbox) = Peer::new(8);
        let id = state.request(client, Requirements::for_user("u")).unwrap();
        state.route(); // the provision does not fit
        assert!(agent_outbox.killed().now_or_never().is_some());
        assert!(!state.agents.contains_key(&agent_id));
        let entry = state.engine.inventory().next().unwrap();
        assert_eq!(entry.state, ResourceState::Offline);
        let info = state.engine.allocation(&id).unwrap();
        assert_eq!(info.state, AllocationState::Queued, "back in the queue");
    }

    #[test]
    fn a_newer_agent_socket_replaces_the_older_whose_close_changes_nothing() {
        let mut state = in_memory();
        let agent_id = Uuid::from_u128(1);
        let (old, mut old_outbox) = Peer::new(8);
        let old_id = old.id();
        state
            .register(old, agent_id, vec![machine(Some("h"))])
            .unwrap();
        let (new, _new_outbox) = Peer::new(8);
        state
            .register(new, agent_id, vec![machine(Some("h"))])
            .unwrap();
        assert!(matches!(old_outbox.try_next(), Some(Frame::Text(_))));
        assert!(matches!(
            old_outbox.try_next(),
            Some(Frame::Close(CLOSE_NORMAL, _))
        ));
        state.agent_gone(agent_id, old_id);
        let entry = state.engine.inventory().next().unwrap();
        assert_eq!(entry.state, ResourceState::Free);
        let late = AgentMessage::Released {
            allocation_id: Uuid::from_u128(9),
        };
        assert!(matches!(
            state.agent_message(agent_id, old_id, late),
            Err(ApiError::Core(allocate_core::Error::Conflict(_)))
        ));
    }

    #[test]
    fn shutdown_answers_waiting_clients_503_and_refuses_new_requests() {
        let mut state = in_memory();
        let (peer, mut outbox) = Peer::new(8);
        state.request(peer, Requirements::for_user("u")).unwrap();
        state.route();
        state.shutdown();
        let frames: Vec<Frame> = std::iter::from_fn(|| outbox.try_next()).collect();
        assert!(matches!(&frames[..],
            [Frame::Text(q), Frame::Text(e), Frame::Close(CLOSE_GOING_AWAY, _)]
                if q.contains("queued") && e.contains("shutting_down")));
        let (late, _) = Peer::new(8);
        assert!(matches!(
            state.request(late, Requirements::for_user("u")),
            Err(ApiError::ShuttingDown)
        ));
    }
}
