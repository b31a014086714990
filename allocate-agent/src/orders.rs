//! Carrying out the server's orders, each in its own task, and answering them through
//! allocate-client's [`AgentHandle`].
//!
//! The agent's policy is here: how an order is carried out (the operator's commands, at most
//! [`COMMANDS_AT_ONCE`] at a time, or the static connection), what a release command is told
//! about the allocation's holder, and that a failed release is left unanswered. The
//! bookkeeping is allocate-client's `OrderBook`: an order repeated while it runs is not
//! delivered again, a release waits for its allocation's provision, a release already done is
//! acknowledged again and a successful provision answered again without the agent (a socket
//! that takes over is sent the orders in flight again), at most 256 orders are in flight, and
//! each answer goes to the newest connection that sent its order.

use crate::commands::{clip, Commands, Holder};
use allocate_client::{
    AgentHandle, Connection, Order, ProvisionOrder, ProvisionResult, ReleaseOrder,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// Most commands running at once; further orders wait for a slot.
pub const COMMANDS_AT_ONCE: usize = 16;

/// Most allocations whose holder is remembered for the release command; beyond it the release
/// command runs without `ALLOCATE_USERNAME` and `ALLOCATE_EXPIRES`.
const HOLDERS_MAX: usize = 1024;

/// Longest error text sent to the server; the contract refuses longer strings.
pub const ERROR_CHARS_MAX: usize = 256;

/// A failed provision's result, with `error` cut to [`ERROR_CHARS_MAX`] characters.
pub fn failed(error: &str) -> ProvisionResult {
    ProvisionResult::Failed(clip(error, ERROR_CHARS_MAX))
}

/// How the agent answers provisions and releases.
#[derive(Clone, Debug)]
pub enum Responder {
    /// Fixed connection details, registered with the resource: the server sends no orders,
    /// but one that comes anyway gets these details (provision) or an acknowledgement (release).
    Static(Connection),
    /// The operator's commands.
    Commands(Commands),
}

/// Runs orders in tasks and answers them through the session's handle.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    responder: Arc<Responder>,
    handle: AgentHandle,
    // A std mutex: it guards one map, is never held across an `.await`, and every critical
    // section is one map operation.
    holders: Arc<Mutex<HashMap<Uuid, Holder>>>,
    slots: Arc<Semaphore>,
}

impl Dispatcher {
    /// A dispatcher answering with `responder` through `handle`.
    pub(crate) fn new(responder: Responder, handle: AgentHandle) -> Self {
        Dispatcher {
            responder: Arc::new(responder),
            handle,
            holders: Arc::new(Mutex::new(HashMap::new())),
            slots: Arc::new(Semaphore::new(COMMANDS_AT_ONCE)),
        }
    }

    fn holders(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Holder>> {
        // A panic while holding it leaves a plain map behind; it is still usable.
        self.holders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Carries `order` out in a new task and answers it.
    pub(crate) fn dispatch(&self, order: Order) {
        let id = order.allocation_id();
        match &order {
            Order::Provision { order: p, .. } => {
                tracing::info!(allocation_id = %id, inventory_id = %p.inventory_id, username = %p.username, "provisioning");
            }
            Order::Release { order: r, .. } => {
                tracing::info!(allocation_id = %id, inventory_id = %r.inventory_id, "releasing");
            }
        }
        let this = self.clone();
        tokio::spawn(async move { this.carry_out(order).await });
    }

    async fn carry_out(&self, order: Order) {
        let id = order.allocation_id();
        let sent = match &order {
            Order::Provision { order: p, .. } => {
                let result = self.provision(p).await;
                self.handle.provisioned(&order, result).await
            }
            Order::Release { order: r, .. } => self.carry_out_release(&order, r).await,
        };
        if sent.is_err() {
            tracing::debug!(allocation_id = %id, "agent stopped before the answer could be sent");
        }
    }

    /// Runs a release and acknowledges it, or leaves it unanswered when it failed.
    async fn carry_out_release(
        &self,
        order: &Order,
        release: &ReleaseOrder,
    ) -> Result<(), allocate_client::Error> {
        let id = release.allocation_id;
        match self.release(release).await {
            Ok(()) => {
                tracing::info!(allocation_id = %id, "released");
                self.handle.released(order).await
            }
            Err(e) => {
                // The contract has no failed release: leaving it unanswered makes the
                // server mark the resource `error` rather than hand it out unclean.
                tracing::error!(allocation_id = %id, error = %e, "release failed; not acknowledging it");
                self.handle.abandon(order).await
            }
        }
    }

    async fn provision(&self, order: &ProvisionOrder) -> ProvisionResult {
        let commands = match &*self.responder {
            Responder::Static(connection) => {
                return ProvisionResult::Connection(connection.clone())
            }
            Responder::Commands(commands) => commands,
        };
        let id = order.allocation_id;
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        match commands.provision(order).await {
            Ok(connection) => {
                tracing::info!(allocation_id = %id, host = %connection.host, username = %connection.username, "provisioned");
                let mut holders = self.holders();
                if holders.len() < HOLDERS_MAX {
                    let holder = Holder {
                        username: order.username.clone(),
                        expires: order.expires,
                    };
                    holders.insert(id, holder);
                }
                ProvisionResult::Connection(connection)
            }
            Err(e) => {
                tracing::warn!(allocation_id = %id, error = %e, "provisioning failed");
                failed(&e.to_string())
            }
        }
    }

    async fn release(&self, order: &ReleaseOrder) -> Result<(), crate::commands::CommandError> {
        let id = order.allocation_id;
        if let Responder::Commands(commands) = &*self.responder {
            let holder = self.holders().get(&id).cloned();
            let _slot = self
                .slots
                .acquire()
                .await
                .expect("the semaphore is never closed");
            commands.release(order, holder.as_ref()).await?;
        }
        self.holders().remove(&id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocate_core::wire::AgentMessage;
    use allocate_core::Limits;

    #[test]
    fn a_long_failure_is_cut_to_what_the_server_reads() {
        let id = Uuid::from_u128(1);
        let answer = AgentMessage::Provisioned {
            allocation_id: id,
            result: failed(&"x".repeat(1000)),
        };
        let AgentMessage::Provisioned {
            result: ProvisionResult::Failed(why),
            ..
        } = &answer
        else {
            panic!("not a failure: {answer:?}")
        };
        assert_eq!(why.chars().count(), ERROR_CHARS_MAX);
        assert!(why.ends_with('…'), "{why}");
        let parsed = AgentMessage::parse(&answer.to_text(), &Limits::default());
        assert_eq!(parsed.unwrap(), answer);
        assert_eq!(
            failed("disk full"),
            ProvisionResult::Failed("disk full".into())
        );
    }
}
