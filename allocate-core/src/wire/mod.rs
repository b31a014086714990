//! Every message of the contract (`API.md`), both directions, each with its reader and its
//! writer side by side: the one place that knows the JSON.
//!
//! - [`envelope`]: `{"status", "data" | "error"}` around everything the server sends.
//! - [`client`]: the `/allocate/` socket (the request, then [`ClientEvent`]s) and the
//!   requirements object that `POST`-like bodies share.
//! - [`agent`]: the `/agent/` socket: [`AgentMessage`] (registration and answers) and
//!   [`ServerMessage`] (the registration reply, provision and release orders).
//! - [`explain`]: "Why not": the body of `POST /match` and the explanation that answers it.
//! - [`admin`]: the bodies of `PATCH /allocate/{id}` and `PATCH /inventory/{id}`.
//! - [`listing`]: the HTTP answers that show state (inventory, allocations) and the
//!   inventory query, as clients read them.
//! - [`policy`]: the operator's quota policy, as the policy file and the bindings give it.
//! - `json`: the strict reader of what clients and agents send ([`parse_json`]): a key
//!   named twice in an object is refused, and a number out of range names its field.
//!
//! What clients and agents send is read strictly: unknown and duplicate fields are refused
//! and every error ([`crate::Error::Invalid`]) names the field and the limit. What the
//! server sends is read leniently, so a client keeps working against a newer server that adds
//! a field; its errors are [`WireError`]s. The server's messages are written with their keys
//! in sorted order, the bytes clients have always received.
//!
//! This module imports the domain (model, config, engine outputs); nothing in the domain
//! imports it, so the engine builds without it (`--no-default-features`).

pub mod admin;
pub mod agent;
pub mod client;
pub mod envelope;
pub mod explain;
mod fields;
mod json;
pub mod listing;
pub mod policy;

pub use agent::{AgentMessage, ProvisionOrder, ReleaseOrder, ServerMessage};
pub use client::ClientEvent;
pub use envelope::{Envelope, Refusal};
pub use fields::{parse_json, parse_uuid};
pub use policy::{parse_policy, policy_from_value, policy_json, PolicyError};

use crate::config::Limits;
use crate::error::ErrorCode;
use crate::explain::{Explanation, Reason};
use crate::model::Connection;
use crate::output::Output;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// Why a message from the server could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not JSON, or not an envelope `{"status", "data" | "error"}`.
    #[error("server message is not a contract envelope ({source}): {text:?}")]
    NotEnvelope {
        /// The JSON parser's complaint.
        source: serde_json::Error,
        /// The message (shortened).
        text: String,
    },
    /// A message of a known kind with a field missing or of the wrong type; the text names
    /// the field, such as `data.expires`.
    #[error("server's {kind} message is malformed: {source}")]
    Malformed {
        /// The message's kind: `queued`, `provision`, ...
        kind: String,
        /// The allocation it names, when that much could be read (an agent then answers it).
        allocation_id: Option<Uuid>,
        /// What is wrong, naming the field.
        source: crate::Error,
    },
    /// A `status` or `action` this reader does not know, as a newer server may send.
    #[error("server sent an unknown {key} {value:?}")]
    Unknown {
        /// `status` (client events) or `action` (agent orders).
        key: &'static str,
        /// Its value (shortened).
        value: String,
    },
    /// A success whose data is none of the messages expected on this socket.
    #[error("server message is none of the contract's messages here: {0:?}")]
    Unrecognized(String),
}

/// Most characters of an unreadable message that an error quotes.
const QUOTE_CHARS_MAX: usize = 200;

/// `text` cut to [`QUOTE_CHARS_MAX`] characters, with `…` when cut.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// No length limits: the server's messages are read as they come, whatever its limits are.
const UNLIMITED: Limits = Limits {
    string_chars_max: usize::MAX,
    list_len_max: usize::MAX,
    resources_per_registration_max: usize::MAX,
    ssh_keys_max: usize::MAX,
    ssh_key_bytes_max: usize::MAX,
    provision_bytes_max: usize::MAX,
    count_max: u32::MAX,
};

/// A server message's data read leniently: the kind (`status` or `action`) names the errors.
struct Data<'a> {
    fields: fields::Fields<'a>,
    kind: String,
}

impl<'a> Data<'a> {
    /// `data` as an object; its kind is the value of `key`.
    fn new(data: &'a Value, key: &str) -> Result<Self, WireError> {
        let unrecognized = || WireError::Unrecognized(quote(&data.to_string()));
        let fields =
            fields::Fields::lenient(data, "data", &UNLIMITED).map_err(|_| unrecognized())?;
        let kind = match fields.value(key) {
            Some(Value::String(kind)) => quote(kind),
            _ => return Err(unrecognized()),
        };
        Ok(Data { fields, kind })
    }

    /// Reads the message's fields with `read`; an error names the field and the allocation.
    fn read<T>(
        &self,
        read: impl FnOnce(&fields::Fields<'a>) -> crate::Result<T>,
    ) -> Result<T, WireError> {
        read(&self.fields).map_err(|source| WireError::Malformed {
            kind: self.kind.clone(),
            allocation_id: self.fields.opt_uuid("allocation_id").ok().flatten(),
            source,
        })
    }

    /// The error for a kind this reader does not know.
    fn unknown(&self, key: &'static str) -> WireError {
        WireError::Unknown {
            key,
            value: self.kind.clone(),
        }
    }
}

/// Connection details with their keys sorted, as the server and agents have always sent them.
#[derive(Serialize)]
struct SortedConnection<'a> {
    host: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "str::is_empty")]
    username: &'a str,
}

impl<'a> From<&'a Connection> for SortedConnection<'a> {
    fn from(c: &'a Connection) -> Self {
        SortedConnection {
            host: &c.host,
            password: c.password.as_deref(),
            port: c.port,
            username: &c.username,
        }
    }
}

/// What an engine output says on the wire: to a client or to an agent.
enum Outgoing {
    Client(Envelope<ClientEvent>),
    Agent(ServerMessage),
}

impl Output {
    fn outgoing(&self) -> Outgoing {
        let event = match self.clone() {
            Output::Queued {
                allocation_id,
                position,
                matching_resources,
                eta,
                explain,
                quota,
            } => ClientEvent::Queued {
                allocation_id,
                position,
                matching_resources,
                eta,
                explain: explain.map(|e| e.findings),
                quota,
            },
            Output::Ready {
                allocation_id,
                inventory_id,
                connection,
                expires,
                resources,
            } => ClientEvent::Ready {
                allocation_id,
                inventory_id,
                connection,
                expires,
                resources,
            },
            Output::Expired { allocation_id } => ClientEvent::Expired { allocation_id },
            Output::Released { allocation_id } => ClientEvent::Released { allocation_id },
            Output::Offline { allocation_id } => ClientEvent::Offline { allocation_id },
            Output::Online { allocation_id } => ClientEvent::Online { allocation_id },
            Output::TimedOut {
                allocation_id,
                explain,
            } => return Outgoing::Client(Envelope::Refused(timed_out(allocation_id, explain))),
            Output::QuotaRefused {
                allocation_id,
                refusal,
            } => {
                let message = format!("allocation {allocation_id}: {refusal}");
                let refusal = Refusal::new(ErrorCode::QuotaExceeded, message);
                return Outgoing::Client(Envelope::Refused(refusal));
            }
            Output::Provision {
                allocation_id,
                inventory_id,
                username,
                expires,
                ssh_keys,
                provision,
                ..
            } => {
                return Outgoing::Agent(ServerMessage::Provision(ProvisionOrder {
                    allocation_id,
                    inventory_id,
                    username,
                    expires,
                    ssh_keys,
                    provision,
                }))
            }
            Output::Release {
                allocation_id,
                inventory_id,
                ..
            } => {
                return Outgoing::Agent(ServerMessage::Release(ReleaseOrder {
                    allocation_id,
                    inventory_id,
                }))
            }
        };
        Outgoing::Client(Envelope::Ok(event))
    }

    /// The message the contract sends for this output, as the JSON text a socket sends.
    pub fn to_text(&self) -> String {
        match self.outgoing() {
            Outgoing::Client(event) => event.to_text(),
            Outgoing::Agent(order) => Envelope::Ok(order).to_text(),
        }
    }

    /// The message the contract sends for this output, as a JSON value.
    pub fn to_wire(&self) -> Value {
        match self.outgoing() {
            Outgoing::Client(event) => event.to_value(),
            Outgoing::Agent(order) => Envelope::Ok(order).to_value(),
        }
    }
}

/// The `408` of a request that waited in vain; for one that the registered resources could
/// never satisfy, it carries the findings, and its message names the first (or the `count`
/// finding, when fewer match than the request asks for together).
fn timed_out(allocation_id: Uuid, explain: Option<Explanation>) -> Refusal {
    let findings = explain.map(|e| e.findings);
    let list = findings.as_deref().unwrap_or_default();
    let too_few = list.iter().find(|f| f.reason == Reason::Count);
    let message = match (too_few, list.first()) {
        (Some(count), _) => format!(
            "allocation {allocation_id}: too few registered resources could ever satisfy it: {}",
            count.message
        ),
        (None, Some(first)) => format!(
            "allocation {allocation_id}: no registered resource could ever satisfy it: {}",
            first.message
        ),
        (None, None) => format!("allocation {allocation_id}: no matching resource became free before allocation_timeout_seconds or expires passed"),
    };
    Refusal {
        explain: findings,
        ..Refusal::new(ErrorCode::AllocationTimeout, message)
    }
}

/// Checks that `message` is written as exactly `text` (which is also what `serde_json`'s
/// sorted map, the writer before, gives) and that `parse` reads `text` back as `message`.
#[cfg(test)]
fn assert_fixed_bytes<T: Serialize + PartialEq + std::fmt::Debug>(
    message: T,
    text: &str,
    parse: fn(&str) -> Result<Envelope<T>, WireError>,
) {
    let sent = Envelope::Ok(message);
    assert_eq!(sent.to_text(), text);
    assert_eq!(sent.to_value().to_string(), text);
    assert_eq!(parse(text).unwrap(), sent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_output_is_written_once_as_text_and_value() {
        let id = Uuid::from_u128(7);
        let outputs = [
            Output::Expired { allocation_id: id },
            Output::TimedOut {
                allocation_id: id,
                explain: None,
            },
            Output::QuotaRefused {
                allocation_id: id,
                refusal: crate::quota::QuotaExceeded {
                    user: "ann".into(),
                    limit: crate::quota::QuotaLimit::Resources,
                    max: 2,
                    asked: 4,
                },
            },
            Output::Release {
                agent_id: id,
                allocation_id: id,
                inventory_id: id,
            },
        ];
        for output in outputs {
            assert_eq!(output.to_wire().to_string(), output.to_text());
        }
        assert_eq!(quote(&"é".repeat(300)).chars().count(), QUOTE_CHARS_MAX + 1);
    }
}
