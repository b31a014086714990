//! The job channel: the one way into the driver task. Handlers and sockets call typed
//! methods of [`DriverHandle`]; each runs as one job on the task and answers once what it
//! changed is durable. Every change goes through the engine, which applies its own rules
//! (shutting down included), so no route can miss one.

use super::sockets::Peer;
use super::Driver;
use crate::auth::Caller;
use crate::clock;
use crate::history::Sample;
use allocate_core::{
    AgentMessage, AllocationInfo, Engine, Explanation, InventoryEntry, InventoryEntryRef,
    InventoryFilter, Policy, Requirements, Snapshot, UsageQuery, UsageRow,
};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Jobs that may wait for the driver task; senders beyond this wait their turn.
pub(super) const JOBS_MAX: usize = 1024;

/// Jobs run one after another before their outputs are routed, at most: enough to coalesce a
/// burst, few enough that the first job's outputs wait a few milliseconds at worst.
pub(super) const JOBS_PER_ROUTE: usize = 256;

/// Work for the driver task: code to run with the driver, which hands its result to
/// [`Driver::reply`].
pub(super) type Job = Box<dyn FnOnce(&mut Driver) + Send>;

/// Why a call to the driver failed.
#[derive(Debug, Error)]
pub enum DriverError {
    /// Refused by the engine (its shutdown answer included) or by an authorization rule.
    #[error(transparent)]
    Refused(#[from] allocate_core::Error),
    /// The driver task takes no more jobs: the server is stopping.
    #[error("the server is shutting down")]
    Stopped,
    /// The driver task stopped during the call (the journal failed).
    #[error("the engine task stopped during a call")]
    Lost,
}

/// A cheap, cloneable way to the driver task.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    jobs: mpsc::Sender<Job>,
}

impl DriverHandle {
    /// The handle of the driver task that takes `jobs`.
    pub(super) fn new(jobs: mpsc::Sender<Job>) -> Self {
        DriverHandle { jobs }
    }

    /// Runs `f` on the driver task and returns its result once what `f` changed is durable;
    /// outputs it causes are routed after.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> T + Send + 'static,
    ) -> Result<T, DriverError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |driver| {
            let value = f(driver);
            driver.reply(Box::new(move || {
                let _ = reply_tx.send(value);
            }));
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| DriverError::Stopped)?;
        reply_rx.await.map_err(|_| DriverError::Lost)
    }

    /// [`DriverHandle::call`] for a job that may be refused.
    async fn try_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> Result<T, allocate_core::Error> + Send + 'static,
    ) -> Result<T, DriverError> {
        Ok(self.call(f).await??)
    }

    /// Answers once the driver task is running its jobs (`/healthz`).
    pub async fn ping(&self) -> Result<(), DriverError> {
        self.call(|_| ()).await
    }

    /// The `/metrics` exposition.
    pub async fn metrics(&self) -> Result<String, DriverError> {
        self.call(|d| d.render_metrics()).await
    }

    /// The engine's state and the sequence number of the last record it includes (0 in
    /// memory), answered once that record is durable: a state the journal can no longer
    /// lose (`POST /admin/backup`).
    pub async fn snapshot(&self) -> Result<(u64, Snapshot), DriverError> {
        self.call(|d| {
            d.outgoing.collect(&mut d.engine);
            (d.outgoing.appended(), d.engine.snapshot())
        })
        .await
    }

    /// Runs a query on the engine; it cannot change anything.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> Result<T, DriverError> {
        self.call(move |d| f(&d.engine)).await
    }

    /// Hands `write` the resources `filter` shows, on the driver task, and an estimate of
    /// how many there are: writing from borrowed entries spares copying them all out first.
    pub async fn inventory<T: Send + 'static>(
        &self,
        filter: InventoryFilter,
        write: impl FnOnce(&mut dyn Iterator<Item = InventoryEntryRef<'_>>, usize) -> T + Send + 'static,
    ) -> Result<T, DriverError> {
        self.call(move |d| {
            let count = d.engine.resource_count();
            write(&mut d.engine.inventory_filtered(&filter), count)
        })
        .await
    }

    /// One resource.
    pub async fn resource(&self, inventory_id: Uuid) -> Result<InventoryEntry, DriverError> {
        self.try_call(move |d| {
            d.engine
                .resource(&inventory_id)
                .ok_or_else(|| not_found("resource", inventory_id))
        })
        .await
    }

    /// Takes a resource out of service or returns it (`PATCH /inventory/{id}`; the caller
    /// is an admin); returns it as it is now.
    pub async fn set_maintenance(
        &self,
        inventory_id: Uuid,
        reason: Option<String>,
    ) -> Result<InventoryEntry, DriverError> {
        self.try_call(move |d| d.set_maintenance(inventory_id, reason))
            .await
    }

    /// Sets the engine's quotas (the policy file's, at start and after each reload).
    pub async fn set_quotas(&self, policy: Option<Policy>) -> Result<(), DriverError> {
        self.try_call(move |d| d.engine.set_quotas(clock::now(), policy))
            .await
    }

    /// The allocations `caller` may see.
    pub async fn allocations(&self, caller: Caller) -> Result<Vec<AllocationInfo>, DriverError> {
        self.read(move |engine| {
            let mut all = engine.allocations();
            all.retain(|a| caller.sees(&a.username));
            all
        })
        .await
    }

    /// One allocation of `caller`'s (any, for an admin).
    pub async fn allocation(
        &self,
        caller: Caller,
        allocation_id: Uuid,
    ) -> Result<AllocationInfo, DriverError> {
        self.try_call(move |d| d.owned(&caller, allocation_id))
            .await
    }

    /// Why `requirements` would or would not be served now (`POST /match`, a dry run).
    pub async fn explain(&self, requirements: Requirements) -> Result<Explanation, DriverError> {
        self.try_call(move |d| d.engine.explain(&requirements))
            .await
    }

    /// Why a live request of `caller`'s (any, for an admin) is or is not served now
    /// (`GET /allocate/{id}/explain`).
    pub async fn explain_allocation(
        &self,
        caller: Caller,
        allocation_id: Uuid,
    ) -> Result<Explanation, DriverError> {
        self.try_call(move |d| {
            d.owned(&caller, allocation_id)?;
            d.engine.explain_allocation(&allocation_id)
        })
        .await
    }

    /// The dashboard's history of the last day, oldest sample first.
    pub async fn history(&self) -> Result<Vec<Sample>, DriverError> {
        self.call(Driver::history).await
    }

    /// `GET /usage`: resource-seconds and GPU-seconds per group over the query's window, of
    /// every user, or of `username` only.
    pub async fn usage(
        &self,
        query: UsageQuery,
        username: Option<String>,
    ) -> Result<Vec<UsageRow>, DriverError> {
        self.call(move |d| d.engine.usage(clock::now(), &query, username.as_deref()))
            .await
    }

    /// Frees an allocation of `caller`'s or cancels its request (`DELETE /allocate/{id}`).
    pub async fn release(&self, caller: Caller, allocation_id: Uuid) -> Result<(), DriverError> {
        self.try_call(move |d| d.release(&caller, allocation_id))
            .await
    }

    /// Moves the lease end of an allocation of `caller`'s (`PATCH /allocate/{id}`); returns
    /// the allocation as it is now.
    pub async fn set_expires(
        &self,
        caller: Caller,
        allocation_id: Uuid,
        expires: u64,
    ) -> Result<AllocationInfo, DriverError> {
        self.try_call(move |d| d.set_expires(&caller, allocation_id, expires))
            .await
    }

    /// A client asks for an allocation; `peer` gets what becomes of it.
    pub async fn request(
        &self,
        peer: Peer,
        requirements: Requirements,
    ) -> Result<Uuid, DriverError> {
        self.try_call(move |d| d.request(peer, requirements)).await
    }

    /// `peer` follows the allocation `allocation_id` of `caller`'s (any, for an admin): it
    /// gets the current state, then every later event.
    pub async fn follow(
        &self,
        caller: Caller,
        peer: Peer,
        allocation_id: Uuid,
    ) -> Result<(), DriverError> {
        self.try_call(move |d| d.follow(&caller, peer, allocation_id))
            .await
    }

    /// The follower socket `peer_id` of `allocation_id` closed.
    pub async fn follower_gone(
        &self,
        allocation_id: Uuid,
        peer_id: u64,
    ) -> Result<(), DriverError> {
        self.call(move |d| d.follower_gone(allocation_id, peer_id))
            .await
    }

    /// The client socket `peer_id` of `allocation_id` closed.
    pub async fn client_gone(&self, allocation_id: Uuid, peer_id: u64) -> Result<(), DriverError> {
        self.call(move |d| d.client_gone(allocation_id, peer_id))
            .await
    }

    /// The first message on an agent socket, with the socket's queue (kept only if the
    /// engine accepts it as a registration); returns the socket's id for later messages.
    pub async fn agent_first(&self, peer: Peer, message: AgentMessage) -> Result<u64, DriverError> {
        let peer_id = peer.id();
        self.try_call(move |d| d.agent_message(peer_id, Some(peer), message))
            .await?;
        Ok(peer_id)
    }

    /// A later message on the agent socket `peer_id`; the engine's session rules decide
    /// whether the socket may send it.
    pub async fn agent_message(
        &self,
        peer_id: u64,
        message: AgentMessage,
    ) -> Result<(), DriverError> {
        self.try_call(move |d| d.agent_message(peer_id, None, message))
            .await
    }

    /// The agent socket `peer_id` closed.
    pub async fn agent_gone(&self, peer_id: u64) -> Result<(), DriverError> {
        self.call(move |d| d.agent_gone(peer_id)).await
    }

    /// The server is stopping: the engine refuses new work from now on, clients still
    /// waiting for `ready` get its answer (503 `shutting_down`), and every socket is closed.
    pub async fn shutdown(&self) -> Result<(), DriverError> {
        self.call(Driver::shutdown).await
    }
}

/// The error for an unknown id.
pub(super) fn not_found(kind: &'static str, id: Uuid) -> allocate_core::Error {
    allocate_core::Error::NotFound {
        kind,
        id: id.to_string(),
    }
}
