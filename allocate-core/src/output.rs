//! What the engine asks its caller to do, as plain data drained with [`crate::Engine::poll_output`].

use crate::explain::Explanation;
use crate::model::{Connection, GrantedResource};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// One thing to tell a client or an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "snake_case")]
pub enum Output {
    /// Tell a waiting client its place in the queue (sent again when it changes).
    Queued {
        /// The request.
        allocation_id: Uuid,
        /// 1-based place among all waiting requests.
        position: u32,
        /// Registered resources that could ever satisfy it.
        matching_resources: u64,
        /// The earliest known lease end (unix seconds) among matching resources that are held.
        eta: Option<u64>,
        /// Why the registered resources could never satisfy it: only in the first message of
        /// a request that none matches, or fewer than its `count` (API.md, "Why not").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explain: Option<Explanation>,
        /// The quota limit that holds it back, if one does (API.md, "Quotas and order").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quota: Option<crate::quota::QuotaLimit>,
    },
    /// The allocation is ready: hand the client its connection.
    Ready {
        /// The allocation.
        allocation_id: Uuid,
        /// The resource it holds.
        inventory_id: Uuid,
        /// How to reach it.
        connection: Arc<Connection>,
        /// When the lease ends (unix seconds).
        expires: u64,
        /// Every resource granted, the first one first, when the request asked for more than
        /// one (`count`); empty for a single resource.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        resources: Vec<GrantedResource>,
    },
    /// Nothing became free before the request's wait ended: answer 408 and close.
    TimedOut {
        /// The request.
        allocation_id: Uuid,
        /// Why, when the registered resources could never satisfy it (none matches, or fewer
        /// than its `count`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explain: Option<Explanation>,
    },
    /// The operator's policy changed and the waiting request could never fit its user's quota
    /// now: answer `403 quota_exceeded`, naming the limit, as to a new request, and close.
    QuotaRefused {
        /// The request.
        allocation_id: Uuid,
        /// The limit it could never fit, as a new request's refusal names it.
        refusal: crate::quota::QuotaExceeded,
    },
    /// The lease ended: tell the client and close.
    Expired {
        /// The allocation.
        allocation_id: Uuid,
    },
    /// Someone released the allocation (or cancelled the request), or its client left and that
    /// ended it: tell the client (or whoever follows it) and close.
    Released {
        /// The allocation.
        allocation_id: Uuid,
    },
    /// The resource's agent went away during the lease.
    Offline {
        /// The allocation.
        allocation_id: Uuid,
    },
    /// The resource's agent came back during the lease.
    Online {
        /// The allocation.
        allocation_id: Uuid,
    },
    /// Ask an agent to prepare a resource for a user.
    Provision {
        /// The agent to ask.
        agent_id: Uuid,
        /// The allocation being prepared.
        allocation_id: Uuid,
        /// The resource.
        inventory_id: Uuid,
        /// Who will hold it.
        username: String,
        /// When the lease ends (unix seconds).
        expires: u64,
        /// Public keys to allow to log in (the request's `ssh_keys`), possibly none.
        ssh_keys: Vec<String>,
        /// The request's `provision` object, if it had one.
        provision: Option<serde_json::Map<String, serde_json::Value>>,
    },
    /// Ask an agent to clean up a resource after an allocation.
    Release {
        /// The agent to ask.
        agent_id: Uuid,
        /// The allocation that ended.
        allocation_id: Uuid,
        /// The resource.
        inventory_id: Uuid,
    },
}

/// Who an output is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// The client waiting on or holding this allocation.
    Client(Uuid),
    /// This agent.
    Agent(Uuid),
}

impl Output {
    /// Who should receive this output.
    pub fn recipient(&self) -> Recipient {
        match self {
            Output::Provision { agent_id, .. } | Output::Release { agent_id, .. } => {
                Recipient::Agent(*agent_id)
            }
            Output::Queued { allocation_id, .. }
            | Output::Ready { allocation_id, .. }
            | Output::TimedOut { allocation_id, .. }
            | Output::QuotaRefused { allocation_id, .. }
            | Output::Expired { allocation_id }
            | Output::Released { allocation_id }
            | Output::Offline { allocation_id }
            | Output::Online { allocation_id } => Recipient::Client(*allocation_id),
        }
    }

    /// Whether the client's socket should be closed after this output.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Output::TimedOut { .. }
                | Output::QuotaRefused { .. }
                | Output::Expired { .. }
                | Output::Released { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_know_their_recipient_and_whether_they_end_the_socket() {
        let id = Uuid::from_u128(7);
        let timed_out = Output::TimedOut {
            allocation_id: id,
            explain: None,
        };
        assert!(timed_out.is_final());
        assert!(!Output::Offline { allocation_id: id }.is_final());
        assert_eq!(
            Output::Online { allocation_id: id }.recipient(),
            Recipient::Client(id)
        );
        let release = Output::Release {
            agent_id: id,
            allocation_id: id,
            inventory_id: id,
        };
        assert_eq!(release.recipient(), Recipient::Agent(id));
    }
}
