//! Turning the server's orders into answers, each in its own task, off the socket loop.
//!
//! The socket loop hands each order to `Dispatcher` and never waits on it; a task runs the
//! command (at most [`COMMANDS_AT_ONCE`] at a time) and puts its answer on a bounded channel that
//! the loop drains. An order repeated while its first copy still runs is ignored (its answer
//! is coming), and a release the agent already finished is acknowledged again at once, since
//! the server resends an unanswered release when the agent reconnects. A release of an
//! allocation whose provision still runs waits for that provision to finish first.

use crate::commands::{Commands, Holder};
use crate::wire::{Answer, ProvisionOrder, ReleaseOrder};
use allocate_core::Connection;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify, Semaphore};
use uuid::Uuid;

/// Most commands running at once; further orders wait for a slot.
pub const COMMANDS_AT_ONCE: usize = 16;

/// Most orders in flight (running or waiting for a slot); beyond it an order is refused.
pub const ORDERS_IN_FLIGHT_MAX: usize = 256;

/// Most allocations whose holder is remembered for the release command; beyond it the release
/// command runs without `ALLOCATE_USERNAME` and `ALLOCATE_EXPIRES`.
const HOLDERS_MAX: usize = 1024;

/// How many finished releases are remembered to answer a resent release without rerunning.
const RELEASED_REMEMBERED: usize = 64;

/// How the agent answers provisions and releases.
#[derive(Clone, Debug)]
pub enum Responder {
    /// Fixed connection details, registered with the resource: the server sends no orders,
    /// but one that comes anyway gets these details (provision) or an acknowledgement (release).
    Static(Connection),
    /// The operator's commands.
    Commands(Commands),
}

/// An answer and the connection whose order it answers.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Which connection (counted from 1) the order came on.
    pub(crate) generation: u64,
    /// The answer.
    pub(crate) answer: Answer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    Provision,
    Release,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Provision => "provision",
            Action::Release => "release",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Begin {
    Started,
    Running,
    Full,
}

#[derive(Default)]
struct State {
    in_flight: HashSet<(Action, Uuid)>,
    holders: HashMap<Uuid, Holder>,
    released: VecDeque<Uuid>,
}

/// Runs orders in tasks and sends their answers to the socket loop.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    responder: Arc<Responder>,
    answers: mpsc::Sender<Outgoing>,
    // A std mutex: it guards a few sets, is never held across an `.await`, and every critical
    // section is a handful of map operations.
    state: Arc<Mutex<State>>,
    slots: Arc<Semaphore>,
    /// Woken whenever an order finishes.
    done: Arc<Notify>,
}

impl Dispatcher {
    /// A dispatcher answering with `responder` onto `answers`.
    pub(crate) fn new(responder: Responder, answers: mpsc::Sender<Outgoing>) -> Self {
        Dispatcher {
            responder: Arc::new(responder),
            answers,
            state: Arc::new(Mutex::new(State::default())),
            slots: Arc::new(Semaphore::new(COMMANDS_AT_ONCE)),
            done: Arc::new(Notify::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves plain sets behind; they are still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks `id`'s order as running, unless it already is or too many are.
    fn begin(&self, action: Action, id: Uuid) -> Begin {
        let mut state = self.state();
        let action_name = action.as_str();
        if state.in_flight.contains(&(action, id)) {
            tracing::info!(allocation_id = %id, action = action_name, "order already running; ignoring the repeat");
            return Begin::Running;
        }
        if state.in_flight.len() >= ORDERS_IN_FLIGHT_MAX {
            tracing::error!(allocation_id = %id, action = action_name, limit = ORDERS_IN_FLIGHT_MAX, "too many orders in flight; refusing this one");
            return Begin::Full;
        }
        state.in_flight.insert((action, id));
        Begin::Started
    }

    /// Handles a provision in a new task.
    pub(crate) fn provision(&self, order: ProvisionOrder, generation: u64) {
        let id = order.allocation_id;
        match self.begin(Action::Provision, id) {
            Begin::Started => {}
            Begin::Running => return,
            Begin::Full => {
                // A full channel drops this answer; the server then times the provision out.
                let _ = self.answers.try_send(Outgoing {
                    generation,
                    answer: Answer::Failed {
                        allocation_id: id,
                        error: format!("agent is busy: {ORDERS_IN_FLIGHT_MAX} orders in flight"),
                    },
                });
                return;
            }
        }
        tracing::info!(allocation_id = %id, inventory_id = %order.inventory_id, username = %order.username, "provisioning");
        let this = self.clone();
        tokio::spawn(async move {
            let answer = match &*this.responder {
                Responder::Static(connection) => Answer::Provisioned {
                    allocation_id: id,
                    connection: connection.clone(),
                },
                Responder::Commands(commands) => this.run_provision(commands, &order).await,
            };
            this.finish(Action::Provision, id, generation, answer).await;
        });
    }

    async fn run_provision(&self, commands: &Commands, order: &ProvisionOrder) -> Answer {
        let id = order.allocation_id;
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        match commands.provision(order).await {
            Ok(connection) => {
                tracing::info!(allocation_id = %id, host = %connection.host, username = %connection.username, "provisioned");
                let mut state = self.state();
                if state.holders.len() < HOLDERS_MAX {
                    state.holders.insert(
                        id,
                        Holder {
                            username: order.username.clone(),
                            expires: order.expires,
                        },
                    );
                }
                Answer::Provisioned {
                    allocation_id: id,
                    connection,
                }
            }
            Err(e) => {
                tracing::warn!(allocation_id = %id, error = %e, "provisioning failed");
                Answer::Failed {
                    allocation_id: id,
                    error: e.to_string(),
                }
            }
        }
    }

    /// Handles a release in a new task.
    pub(crate) fn release(&self, order: ReleaseOrder, generation: u64) {
        let id = order.allocation_id;
        let already = self.state().released.contains(&id);
        if !already && self.begin(Action::Release, id) != Begin::Started {
            return;
        }
        let this = self.clone();
        if already {
            tracing::info!(allocation_id = %id, "release already done; acknowledging again");
            tokio::spawn(async move {
                let answer = Answer::Released { allocation_id: id };
                let _ = this.answers.send(Outgoing { generation, answer }).await;
            });
            return;
        }
        tracing::info!(allocation_id = %id, inventory_id = %order.inventory_id, "releasing");
        tokio::spawn(async move {
            // The allocation may end while its provision still runs (a DELETE during
            // provisioning): clean up only after it, so the release undoes all of it.
            this.provision_done(id).await;
            let holder = this.state().holders.get(&id).cloned();
            let result = match &*this.responder {
                Responder::Static(_) => Ok(()),
                Responder::Commands(commands) => {
                    let _slot = this
                        .slots
                        .acquire()
                        .await
                        .expect("the semaphore is never closed");
                    commands.release(&order, holder.as_ref()).await
                }
            };
            match result {
                Ok(()) => {
                    tracing::info!(allocation_id = %id, "released");
                    {
                        let mut state = this.state();
                        state.holders.remove(&id);
                        if state.released.len() >= RELEASED_REMEMBERED {
                            state.released.pop_front();
                        }
                        state.released.push_back(id);
                    }
                    this.finish(
                        Action::Release,
                        id,
                        generation,
                        Answer::Released { allocation_id: id },
                    )
                    .await;
                }
                Err(e) => {
                    // The contract has no failed release: leaving it unanswered makes the
                    // server mark the resource `error` rather than hand it out unclean.
                    tracing::error!(allocation_id = %id, error = %e, "release failed; not acknowledging it");
                    this.state().in_flight.remove(&(Action::Release, id));
                }
            }
        });
    }

    /// Waits until no provision of `id` is running (bounded by the command timeout).
    async fn provision_done(&self, id: Uuid) {
        loop {
            // Created before the check, so a provision finishing in between still wakes it.
            let finished = self.done.notified();
            if !self.state().in_flight.contains(&(Action::Provision, id)) {
                return;
            }
            tracing::info!(allocation_id = %id, "release waits for the provision still running");
            finished.await;
        }
    }

    /// Queues the answer, then marks the order done (so a waiting release answers after it).
    async fn finish(&self, action: Action, id: Uuid, generation: u64, answer: Answer) {
        if self
            .answers
            .send(Outgoing { generation, answer })
            .await
            .is_err()
        {
            tracing::debug!(allocation_id = %id, "agent stopped before the answer could be sent");
        }
        self.state().in_flight.remove(&(action, id));
        self.done.notify_waiters();
    }
}
