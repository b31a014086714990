//! The engine's owner: one task holds the engine, runs the jobs that handlers and sockets
//! send it one at a time, fires the engine's deadlines with one timer, and routes every
//! output to its socket's bounded queue. It never waits on a socket, so no client can stall
//! it or another client.

use crate::clock::{self, RandomIds};
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::events;
use crate::metrics::Metrics;
use crate::ws::{Frame, Peer, CLOSE_GOING_AWAY, CLOSE_NORMAL};
use allocate_core::{
    ok_envelope, AgentMessage, AllocationState, Engine, Output, Recipient, Requirements,
    ResourceSpec, Timestamp,
};
use serde_json::json;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;

/// Jobs that may wait for the engine task; senders beyond this wait their turn.
const JOBS_MAX: usize = 1024;

/// Work for the engine task: code to run with the engine state, which sends back its result.
type Job = Box<dyn FnOnce(&mut EngineState) + Send>;

/// A cheap, cloneable way to run code on the engine task.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    jobs: mpsc::Sender<Job>,
}

impl EngineHandle {
    /// Runs `f` on the engine task and returns its result; outputs it causes are routed after.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut EngineState) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |state| {
            let _ = reply_tx.send(f(state));
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

/// Starts the engine task; it ends when every [`EngineHandle`] is dropped.
pub fn spawn(config: &ServerConfig) -> (EngineHandle, JoinHandle<()>) {
    let (jobs_tx, jobs_rx) = mpsc::channel(JOBS_MAX);
    let state = EngineState::new(config);
    (
        EngineHandle { jobs: jobs_tx },
        tokio::spawn(drive(state, jobs_rx)),
    )
}

/// The loop: run a job or fire the timer, then route outputs. The one timer sleeps until
/// `poll_timeout()` and is re-armed only when that changes.
async fn drive(mut state: EngineState, mut jobs: mpsc::Receiver<Job>) {
    let timer = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Timestamp> = None;
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
            job = jobs.recv() => match job {
                Some(job) => job(&mut state),
                None => break,
            },
            () = &mut timer, if armed.is_some() => {
                // The monotonic timer says the deadline has come; the wall clock may lag it
                // by a hair, so the engine is never handed a time before the deadline.
                let at = armed.take().unwrap_or_default();
                state.engine.handle_timeout(clock::now().max(at));
            }
        }
        state.route();
    }
    debug!("engine task stopped");
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
}

impl EngineState {
    fn new(config: &ServerConfig) -> Self {
        EngineState {
            engine: Engine::new(config.engine.clone(), Box::new(RandomIds)),
            clients: HashMap::new(),
            agents: HashMap::new(),
            metrics: Metrics::default(),
            shutting_down: false,
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
            if !old.push(Frame::Close(CLOSE_NORMAL, "replaced by a newer connection")) {
                old.kill();
            }
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
        let stopping = ApiError::ShuttingDown.envelope().to_string();
        for (id, peer) in self.clients.drain() {
            let waiting = self.engine.allocation(&id).is_some_and(|a| {
                matches!(
                    a.state,
                    AllocationState::Queued | AllocationState::Provisioning
                )
            });
            if waiting && !peer.push(Frame::Text(stopping.clone())) {
                peer.kill();
            }
            if !peer.push(Frame::Close(CLOSE_GOING_AWAY, "server shutting down")) {
                peer.kill();
            }
        }
        for (_, peer) in self.agents.drain() {
            if !peer.push(Frame::Close(CLOSE_GOING_AWAY, "server shutting down")) {
                peer.kill();
            }
        }
    }

    /// The `/metrics` exposition.
    pub fn render_metrics(&self) -> String {
        self.metrics
            .render(&self.engine.stats(), self.clients.len())
    }

    fn reply_registered(&mut self, agent_id: Uuid, ids: &[Uuid]) {
        let reply = ok_envelope(json!({"status": "ok", "inventory_ids": ids}));
        self.send_to_agent(agent_id, reply.to_string());
    }

    /// Drains the engine's outputs to their sockets.
    fn route(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            self.observe(&output);
            let text = output.to_wire().to_string();
            match output.recipient() {
                Recipient::Client(id) => self.send_to_client(id, text, output.is_final()),
                Recipient::Agent(id) => self.send_to_agent(id, text),
            }
        }
    }

    fn send_to_client(&mut self, allocation_id: Uuid, text: String, last: bool) {
        let Some(peer) = self.clients.get(&allocation_id) else {
            return;
        };
        let sent = peer.push(Frame::Text(text))
            && (!last || peer.push(Frame::Close(CLOSE_NORMAL, "allocation ended")));
        if !sent {
            warn!(%allocation_id, "dropping a client that fell behind");
            if let Some(peer) = self.clients.remove(&allocation_id) {
                peer.kill();
            }
            self.forget_client(allocation_id);
        } else if last {
            self.clients.remove(&allocation_id);
        }
    }

    fn send_to_agent(&mut self, agent_id: Uuid, text: String) {
        let Some(peer) = self.agents.get(&agent_id) else {
            return;
        };
        if !peer.push(Frame::Text(text)) {
            warn!(%agent_id, "dropping an agent that fell behind");
            if let Some(peer) = self.agents.remove(&agent_id) {
                peer.kill();
            }
            self.forget_agent(agent_id);
        }
    }

    fn forget_client(&mut self, allocation_id: Uuid) {
        match self.engine.client_gone(clock::now(), allocation_id) {
            Ok(()) => debug!(%allocation_id, "client left"),
            Err(e) => debug!(%allocation_id, "client left: {e}"),
        }
    }

    fn forget_agent(&mut self, agent_id: Uuid) {
        match self.engine.disconnect_agent(clock::now(), agent_id) {
            Ok(()) => info!(%agent_id, "agent disconnected; its resources are offline"),
            Err(e) => warn!(%agent_id, "agent disconnected: {e}"),
        }
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
    use allocate_core::{Connection, ResourceState};
    use futures_util::FutureExt;

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
        let mut state = EngineState::new(&ServerConfig::default());
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
        let mut state = EngineState::new(&ServerConfig::default());
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
        let mut state = EngineState::new(&ServerConfig::default());
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
        let mut state = EngineState::new(&ServerConfig::default());
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
