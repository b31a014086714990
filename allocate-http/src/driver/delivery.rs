//! Delivery: the engine's outputs and the handlers' replies on their way out. With a
//! journal, what a change makes visible is held back until the writer says its records are
//! on disk, so nobody sees a change that a crash could undo. A socket too far behind to take
//! its frames is dropped, never waited for.

use super::sockets::{Frame, Peer, CLOSE_NORMAL};
use super::Driver;
use crate::events;
use crate::journal::{Holdback, Journal, Progress};
use allocate_core::{AllocationState, Engine, Output, Recipient};
use std::collections::HashMap;
use std::fmt;
use tokio::sync::watch;
use tracing::{debug, warn};
use uuid::Uuid;

/// Records handed to the journal and not yet on disk, at most; at this bound the driver
/// takes no new job (their senders wait, as at [`super::jobs::JOBS_MAX`]) until the disk
/// catches up.
const RECORDS_IN_FLIGHT_MAX: u64 = 1 << 16;

/// Deliveries held back for the journal, at most; the same happens at this bound.
const HELD_MAX: usize = 1 << 16;

/// Something to hand over once the records it depends on are on disk.
pub(super) enum Delivery {
    /// Frames for one socket, in order.
    Frames {
        /// The socket, as it was when the frames were made.
        peer: Peer,
        frames: Vec<Frame>,
        /// What dropping the socket means, should it be too far behind to take them.
        owner: Owner,
        /// A `queued` position: while held, a newer one for the same socket replaces it
        /// (see [`Outgoing::held_queued`]).
        queued: bool,
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

impl Delivery {
    /// Frames for a socket that is closing anyway.
    pub(super) fn closing(peer: Peer, frames: Vec<Frame>) -> Delivery {
        Delivery::Frames {
            peer,
            frames,
            owner: Owner::Closing,
            queued: false,
        }
    }
}

/// Whose socket a delivery goes to.
#[derive(Clone, Copy, Debug)]
pub(super) enum Owner {
    /// The client of this allocation: dropping it counts as the client leaving.
    Client(Uuid),
    /// A socket that follows this allocation: dropping it affects nothing else.
    Follower(Uuid),
    /// This agent: dropping it takes the agent's resources offline.
    Agent(Uuid),
    /// A socket that is closing anyway.
    Closing,
}

/// The journal and what waits for it.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// Where records go (`None`: the server runs in memory).
    journal: Option<Journal>,
    /// Outputs and replies waiting for their records to be on disk.
    hold: Holdback<Delivery>,
    /// The ticket of the one held `queued` message of each socket (by peer id): a
    /// position can change many times while one batch syncs, and only the latest counts, so
    /// a newer one takes the held one's place instead of queueing behind it. A superseded
    /// position is thus neither kept nor sent, and what is held stays bounded by the
    /// sockets. Taking the older one's place may show a position a little before its
    /// records are on disk: a position is advice, and a crash ends every socket anyway.
    held_queued: HashMap<u64, u64>,
}

impl Outgoing {
    /// Deliveries journaled to `journal` (`None`: in memory, delivered at once).
    pub(super) fn new(journal: Option<Journal>) -> Self {
        let seq = journal.as_ref().map_or(0, Journal::appended);
        Outgoing {
            journal,
            hold: Holdback::new(seq),
            held_queued: HashMap::new(),
        }
    }

    /// The journal writer's progress reports (none in memory).
    pub(super) fn progress(&self) -> Option<watch::Receiver<Progress>> {
        self.journal.as_ref().map(Journal::progress)
    }

    /// The sequence number of the last record handed to the journal (0 in memory).
    pub(super) fn appended(&self) -> u64 {
        self.journal.as_ref().map_or(0, Journal::appended)
    }

    /// Takes the journal out, to close it when the driver stops.
    pub(super) fn take_journal(&mut self) -> Option<Journal> {
        self.journal.take()
    }

    /// Hands the engine's new records to the journal: deliveries from now on wait for them.
    pub(super) fn collect(&mut self, engine: &mut Engine) {
        if let Some(journal) = &mut self.journal {
            let seq = journal.append(engine.take_records());
            self.hold.appended(seq);
        }
    }

    /// Whether the disk is so far behind that no new job should start.
    pub(super) fn backlogged(&self) -> bool {
        self.hold.in_flight() >= RECORDS_IN_FLIGHT_MAX || self.hold.len() >= HELD_MAX
    }

    /// Hands the journal a snapshot when one is due (after [`Driver::route`], so that it is
    /// the state after the last record).
    pub(super) fn snapshot_if_due(&mut self, engine: &Engine) {
        if let Some(journal) = &mut self.journal {
            if journal.snapshot_due() {
                journal.snapshot(engine.snapshot());
            }
        }
    }

    /// Puts a `queued` delivery in the place of the one held for the same socket; hands it
    /// back when none is held.
    fn replace_held_queued(&mut self, delivery: Delivery) -> Option<Delivery> {
        let Delivery::Frames {
            peer, queued: true, ..
        } = &delivery
        else {
            return Some(delivery);
        };
        let held = self.held_queued.get(&peer.id()).copied();
        match held.and_then(|ticket| self.hold.held_mut(ticket)) {
            Some(slot) => {
                *slot = delivery;
                None
            }
            None => Some(delivery),
        }
    }
}

impl Driver {
    /// Hands a job's reply over once what the job changed is durable.
    pub(super) fn reply(&mut self, send: Box<dyn FnOnce() + Send>) {
        self.outgoing.collect(&mut self.engine);
        self.dispatch(Delivery::Reply(send));
    }

    /// Delivers now when nothing is pending, or holds back until the journal catches up.
    pub(super) fn dispatch(&mut self, delivery: Delivery) {
        let Some(delivery) = self.outgoing.replace_held_queued(delivery) else {
            return;
        };
        let queued_peer = match &delivery {
            Delivery::Frames {
                peer, queued: true, ..
            } => Some(peer.id()),
            _ => None,
        };
        match self.outgoing.hold.pass(delivery) {
            Ok(delivery) => self.deliver(delivery),
            Err(ticket) => {
                if let Some(peer_id) = queued_peer {
                    self.outgoing.held_queued.insert(peer_id, ticket);
                }
            }
        }
    }

    /// Records up to `seq` are on disk: delivers what waited for them, in order.
    pub(super) fn durable(&mut self, seq: u64) {
        self.outgoing.hold.durable(seq);
        while let Some(delivery) = self.outgoing.hold.pop_ready() {
            self.deliver(delivery);
        }
    }

    /// Hands one delivery over: runs a reply, or queues frames on their socket.
    fn deliver(&mut self, delivery: Delivery) {
        let (peer, frames, owner) = match delivery {
            Delivery::Reply(send) => return send(),
            Delivery::Frames {
                peer,
                frames,
                owner,
                queued,
            } => {
                if queued {
                    self.outgoing.held_queued.remove(&peer.id());
                }
                (peer, frames, owner)
            }
        };
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
            Owner::Client(allocation_id) => self.drop_client(peer, allocation_id),
            Owner::Follower(allocation_id) => {
                warn!(%allocation_id, "dropping a follower that fell behind");
                self.sockets.remove_follower(&allocation_id, peer.id());
            }
            Owner::Agent(agent_id) => {
                if self.forget_agent(peer.id()) {
                    warn!(%agent_id, "dropped an agent that fell behind");
                }
            }
            Owner::Closing => {}
        }
    }

    /// [`Self::drop_peer`] for a client's socket.
    fn drop_client(&mut self, peer: &Peer, allocation_id: Uuid) {
        if !self.sockets.remove_client_if(&allocation_id, peer.id()) {
            return;
        }
        if peer.is_closed() {
            debug!(%allocation_id, "a client left before its socket task said so");
        } else {
            warn!(%allocation_id, "dropping a client that fell behind");
        }
        self.forget_client(allocation_id);
    }

    /// Drains the engine's outputs to their sockets.
    pub(super) fn route(&mut self) {
        self.outgoing.collect(&mut self.engine);
        while let Some(output) = self.engine.poll_output() {
            if let Output::Queued { allocation_id, .. } = &output {
                // A new position for a client whose socket is gone or closing would be
                // written only to be dropped. When thousands of waiting clients leave at
                // once, each leaving moves all behind it: that writing was the whole cost.
                if !self.sockets.client_open(allocation_id) && !self.sockets.followed(allocation_id)
                {
                    continue;
                }
            }
            self.observe(&output);
            let text = output.to_text();
            match output.recipient() {
                Recipient::Client(id) => {
                    let queued = matches!(output, Output::Queued { .. });
                    self.send_to_followers(id, &text, output.is_final(), queued);
                    self.send_to_client(id, text, output.is_final(), queued);
                }
                Recipient::Agent(id) => self.send_to_agent(id, text),
            }
        }
    }

    /// Sends an output to its allocation's client; the last one closes the socket.
    fn send_to_client(&mut self, allocation_id: Uuid, text: String, last: bool, queued: bool) {
        let Some(peer) = self.sockets.client(&allocation_id).cloned() else {
            return;
        };
        let mut frames = vec![Frame::Text(text)];
        if last {
            frames.push(Frame::Close(CLOSE_NORMAL, "allocation ended"));
            self.sockets.remove_client(&allocation_id);
        }
        self.dispatch(Delivery::Frames {
            peer,
            frames,
            owner: Owner::Client(allocation_id),
            queued,
        });
    }

    /// Sends a client's event to every socket that follows its allocation; the last one
    /// closes them. `queued`: a position, which replaces one still held for the socket.
    fn send_to_followers(&mut self, allocation_id: Uuid, text: &str, last: bool, queued: bool) {
        let peers = if last {
            self.sockets.take_followers(&allocation_id)
        } else {
            self.sockets.followers(&allocation_id).to_vec()
        };
        for peer in peers {
            let mut frames = vec![Frame::Text(text.to_owned())];
            if last {
                frames.push(Frame::Close(CLOSE_NORMAL, "allocation ended"));
            }
            self.queue_for_follower(allocation_id, peer, frames, queued);
        }
    }

    /// Queues frames on a socket that follows `allocation_id`.
    pub(super) fn greet_follower(&mut self, allocation_id: Uuid, peer: Peer, frames: Vec<Frame>) {
        self.queue_for_follower(allocation_id, peer, frames, false);
    }

    fn queue_for_follower(
        &mut self,
        allocation_id: Uuid,
        peer: Peer,
        frames: Vec<Frame>,
        queued: bool,
    ) {
        self.dispatch(Delivery::Frames {
            peer,
            frames,
            owner: Owner::Follower(allocation_id),
            queued,
        });
    }

    /// Sends a message to the socket that speaks for `agent_id`.
    pub(super) fn send_to_agent(&mut self, agent_id: Uuid, text: String) {
        let Some(peer) = self.sockets.agent(&agent_id).cloned() else {
            return;
        };
        self.dispatch(Delivery::Frames {
            peer,
            frames: vec![Frame::Text(text)],
            owner: Owner::Agent(agent_id),
            queued: false,
        });
    }

    /// Feeds the metrics and logs the event.
    fn observe(&mut self, output: &Output) {
        match output {
            Output::Ready { allocation_id, .. } => {
                if let Some(ms) = self.waited_ms(allocation_id) {
                    self.metrics.observe_ready(ms);
                    self.sample_history_if_due();
                    let now = self.engine.now().as_secs();
                    self.history.observe_wait(now, ms / 1000);
                }
            }
            // A `released` that ended a wait is a cancellation (the client left), as is a
            // refusal by a new policy; a `released` that ended a lease, or a DELETE (counted
            // where it is made), is no queue wait.
            Output::TimedOut { allocation_id, .. }
            | Output::QuotaRefused { allocation_id, .. }
            | Output::Released { allocation_id } => {
                self.observe_left_queue(allocation_id);
            }
            _ => {}
        }
        events::log(output);
    }

    /// Counts the wait of a request that left the queue without a lease (timed out or
    /// cancelled) into the queue wait histogram.
    fn observe_left_queue(&mut self, allocation_id: &Uuid) {
        let Some(a) = self.engine.allocation(allocation_id) else {
            return;
        };
        if matches!(
            a.state,
            AllocationState::TimedOut | AllocationState::Cancelled
        ) {
            if let Some(ms) = self.waited_ms(allocation_id) {
                self.metrics.observe_left_queue(a.state, ms);
            }
        }
    }
}
