//! Every state-changing input as plain data, so a journal can replay the engine exactly.

use crate::model::{Connection, Requirements, ResourceSpec};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How an agent answered a provision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionResult {
    /// The resource is ready; here is how to reach it.
    Connection(Connection),
    /// Provisioning failed, and why.
    Failed(String),
}

/// One input to the engine. Replaying the same inputs at the same times gives the same state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// An agent (re)registered its resource list; it is connected.
    Register {
        /// The agent.
        agent_id: Uuid,
        /// Its whole list, replacing any earlier one.
        resources: Vec<ResourceSpec>,
    },
    /// An agent's socket closed.
    Disconnect {
        /// The agent.
        agent_id: Uuid,
    },
    /// A user asked for an allocation.
    Request {
        /// The id the engine's id source gave it.
        allocation_id: Uuid,
        /// What the user needs.
        requirements: Requirements,
    },
    /// An agent answered a provision.
    Provisioned {
        /// The answering agent.
        agent_id: Uuid,
        /// The allocation.
        allocation_id: Uuid,
        /// Its answer.
        result: ProvisionResult,
    },
    /// An agent acknowledged a release.
    ReleaseAcknowledged {
        /// The answering agent.
        agent_id: Uuid,
        /// The allocation that was released.
        allocation_id: Uuid,
    },
    /// Someone freed an allocation or cancelled a request (DELETE).
    Release {
        /// The allocation.
        allocation_id: Uuid,
    },
    /// The requesting client's socket closed.
    ClientGone {
        /// The allocation.
        allocation_id: Uuid,
    },
    /// A new lease end (unix seconds).
    SetExpires {
        /// The allocation.
        allocation_id: Uuid,
        /// The requested end.
        expires: u64,
    },
    /// An admin took a resource out of service (`Some(reason)`) or returned it (`None`).
    SetMaintenance {
        /// The resource.
        inventory_id: Uuid,
        /// Why, or `None` to return it to service (also clears `error`).
        reason: Option<String>,
    },
    /// The operator set the quotas (`None`: no quotas).
    SetQuotas {
        /// The policy in force from now on.
        policy: Option<crate::quota::Policy>,
    },
    /// Time passed and deadlines fired.
    Tick,
}

/// An input with the time the engine applied it at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When it was applied.
    pub now: Timestamp,
    /// What was applied.
    pub input: Input,
}
