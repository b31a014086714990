//! Read-only views of the state, in the contract's shapes.

use crate::model::{Connection, Gpu};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// Where a resource stands, as inventory shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Can be allocated now.
    Free,
    /// Held by an allocation (or being provisioned or released for one).
    Allocated,
    /// Its agent is disconnected.
    Offline,
    /// Provisioning or release failed; see `reason`.
    Error,
    /// Taken out of service by an admin; see `reason`.
    Maintenance,
    /// Free, but held for the request at the front of the queue (README, "Order and
    /// starvation").
    Reserved,
}

impl ResourceState {
    /// Every state, in a fixed order.
    pub const ALL: [ResourceState; 6] = [
        ResourceState::Free,
        ResourceState::Allocated,
        ResourceState::Offline,
        ResourceState::Error,
        ResourceState::Maintenance,
        ResourceState::Reserved,
    ];

    /// The state's name in the contract.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResourceState::Free => "free",
            ResourceState::Allocated => "allocated",
            ResourceState::Offline => "offline",
            ResourceState::Error => "error",
            ResourceState::Maintenance => "maintenance",
            ResourceState::Reserved => "reserved",
        }
    }

    /// Parses a state name (for the `?state=` filter).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// One inventory entry, as `GET /inventory/` shows it (never with credentials).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// The resource's id.
    pub inventory_id: Uuid,
    /// Its labels, as registered.
    pub labels: Vec<String>,
    /// CPUs.
    pub cpu_count: u64,
    /// Memory in GB.
    pub memory_gb: u64,
    /// GPUs.
    pub gpu: Vec<Gpu>,
    /// Free-text type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent that owns it.
    pub agent_id: Uuid,
    /// Where it stands.
    pub state: ResourceState,
    /// Why it is in `error` or `maintenance`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One inventory entry borrowed from the engine. It serializes exactly as
/// [`InventoryEntry`] but copies nothing: a listing of 100,000 resources then costs no
/// allocation per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct InventoryEntryRef<'a> {
    /// The resource's id.
    pub inventory_id: Uuid,
    /// Its labels, as registered.
    pub labels: &'a [String],
    /// CPUs.
    pub cpu_count: u64,
    /// Memory in GB.
    pub memory_gb: u64,
    /// GPUs.
    pub gpu: &'a [Gpu],
    /// Free-text type.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The agent that owns it.
    pub agent_id: Uuid,
    /// Where it stands.
    pub state: ResourceState,
    /// Why it is in `error` or `maintenance`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

impl InventoryEntryRef<'_> {
    /// An owned copy.
    pub fn to_entry(&self) -> InventoryEntry {
        InventoryEntry {
            inventory_id: self.inventory_id,
            labels: self.labels.to_vec(),
            cpu_count: self.cpu_count,
            memory_gb: self.memory_gb,
            gpu: self.gpu.to_vec(),
            kind: self.kind.to_owned(),
            agent_id: self.agent_id,
            state: self.state,
            reason: self.reason.map(str::to_owned),
        }
    }
}

/// Where an allocation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocationState {
    /// Waiting for a resource.
    Queued,
    /// A resource is chosen; its agent is preparing it.
    Provisioning,
    /// The holder can use the resource.
    Ready,
    /// Freed (or cancelled with DELETE) before its lease ended.
    Released,
    /// Its lease ended.
    Expired,
    /// Nothing became free before its wait ended.
    TimedOut,
    /// Its client left while it was still waiting, or a policy change refused it while it
    /// waited (it could never fit its user's quota).
    Cancelled,
}

impl AllocationState {
    /// The states an allocation ends in, in a fixed order.
    pub const ENDED: [AllocationState; 4] = [
        AllocationState::Released,
        AllocationState::Expired,
        AllocationState::TimedOut,
        AllocationState::Cancelled,
    ];

    /// Whether the allocation has ended.
    pub const fn is_terminal(self) -> bool {
        !matches!(
            self,
            AllocationState::Queued | AllocationState::Provisioning | AllocationState::Ready
        )
    }

    /// The state's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AllocationState::Queued => "queued",
            AllocationState::Provisioning => "provisioning",
            AllocationState::Ready => "ready",
            AllocationState::Released => "released",
            AllocationState::Expired => "expired",
            AllocationState::TimedOut => "timed_out",
            AllocationState::Cancelled => "cancelled",
        }
    }
}

/// One allocation, as `GET /allocate/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationInfo {
    /// The allocation's id.
    pub allocation_id: Uuid,
    /// The resource it holds or held, if any (the first of several).
    pub inventory_id: Option<Uuid>,
    /// Every resource it holds or held, the first one first (absent from older servers).
    #[serde(default)]
    pub inventory_ids: Vec<Uuid>,
    /// Who asked.
    pub username: String,
    /// Where it stands.
    pub state: AllocationState,
    /// When it was requested (unix seconds).
    pub created: u64,
    /// When its lease ends or ended (unix seconds).
    pub expires: u64,
    /// Connection details once ready; shells show them only to the owner or an admin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<Arc<Connection>>,
    /// 1-based place in the queue while queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// When it was requested, to the millisecond (not part of the wire form).
    #[serde(skip)]
    pub created_at: Timestamp,
}
