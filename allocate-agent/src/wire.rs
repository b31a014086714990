//! The messages on the agent's socket: its registration and answers, and the server's envelopes.
//!
//! Server messages are read into typed structs: every field the contract names must be there
//! with its type, or the message is refused. Fields the contract does not name are ignored, so
//! that an agent keeps working against a newer server that adds one; unknown actions are
//! reported to the caller, which logs and ignores them.

use allocate_core::{AgentMessage, Connection, Limits, ResourceSpec};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

/// Longest error text sent to the server; the contract refuses longer strings.
pub const ERROR_CHARS_MAX: usize = 256;

/// How much of an unreadable message an error quotes.
const QUOTE_CHARS_MAX: usize = 200;

/// The agent's registration: who it is and what it offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// The agent's stable id.
    pub agent_id: Uuid,
    /// Its resources (the reference agent offers its own machine, one resource).
    pub resources: Vec<ResourceSpec>,
}

impl Registration {
    /// The JSON text sent to the server (with any static password in it).
    pub fn to_wire(&self) -> String {
        serde_json::to_string(self).expect("a registration always serializes")
    }

    /// Pretty JSON for people, with every password replaced by `<redacted>`.
    pub fn to_redacted_pretty(&self) -> String {
        let mut shown = self.clone();
        for r in &mut shown.resources {
            if let Some(c) = &mut r.connection {
                c.password = "<redacted>".into();
            }
        }
        serde_json::to_string_pretty(&shown).expect("a registration always serializes")
    }

    /// Checks it with the server's own rules (allocate-core's parser and default limits).
    pub fn validate(&self) -> Result<(), allocate_core::Error> {
        AgentMessage::parse(&self.to_wire(), &Limits::default()).map(|_| ())
    }
}

/// The server asks the agent to prepare a resource for a user.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ProvisionOrder {
    /// The allocation being prepared.
    pub allocation_id: Uuid,
    /// The resource.
    pub inventory_id: Uuid,
    /// Who will hold it.
    pub username: String,
    /// When the lease ends (unix seconds).
    pub expires: u64,
}

/// The server asks the agent to clean up a resource after an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ReleaseOrder {
    /// The allocation that ended.
    pub allocation_id: Uuid,
    /// The resource.
    pub inventory_id: Uuid,
}

/// One message from the server, as the agent understands it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    /// The registration was accepted; ids in the order the resources were sent.
    Registered {
        /// The resources' inventory ids.
        inventory_ids: Vec<Uuid>,
    },
    /// Prepare a resource.
    Provision(ProvisionOrder),
    /// Clean up a resource.
    Release(ReleaseOrder),
    /// An error envelope: the server refused something the agent sent.
    Refused {
        /// The HTTP-like status.
        status: u16,
        /// The error code, such as `invalid_request`.
        code: String,
        /// The server's sentence.
        message: String,
    },
    /// An action this agent does not know (logged and ignored).
    UnknownAction(String),
}

/// Why a server message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not JSON, or not a `{"status", "data" | "error"}` envelope.
    #[error("server message is not a contract envelope ({source}): {text:?}")]
    Envelope {
        /// The parser's complaint.
        source: serde_json::Error,
        /// The message (shortened).
        text: String,
    },
    /// A provision or release whose fields are missing or of the wrong type.
    #[error("server's {action} message is malformed: {source}")]
    BadOrder {
        /// `provision` or `release`.
        action: &'static str,
        /// The allocation it names, when that much could be read.
        allocation_id: Option<Uuid>,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// A success envelope that is neither an action nor a registration reply.
    #[error("server message is neither an action nor a registration reply: {0:?}")]
    Unrecognized(String),
}

#[derive(Deserialize)]
struct Envelope {
    status: u16,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct RegisterReply {
    status: String,
    inventory_ids: Vec<Uuid>,
}

impl ServerMessage {
    /// Reads one text message from the server.
    pub fn parse(text: &str) -> Result<Self, WireError> {
        let envelope: Envelope =
            serde_json::from_str(text).map_err(|source| WireError::Envelope {
                source,
                text: quote(text),
            })?;
        match (envelope.data, envelope.error) {
            (_, Some(e)) => Ok(ServerMessage::Refused {
                status: envelope.status,
                code: e.code,
                message: e.message,
            }),
            (Some(data), None) => Self::from_data(data),
            (None, None) => Err(WireError::Unrecognized(quote(text))),
        }
    }

    fn from_data(data: Value) -> Result<Self, WireError> {
        let allocation_id = data
            .get("allocation_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok());
        match data.get("action") {
            Some(Value::String(action)) => match action.as_str() {
                "provision" => serde_json::from_value(data)
                    .map(ServerMessage::Provision)
                    .map_err(|source| WireError::BadOrder {
                        action: "provision",
                        allocation_id,
                        source,
                    }),
                "release" => serde_json::from_value(data)
                    .map(ServerMessage::Release)
                    .map_err(|source| WireError::BadOrder {
                        action: "release",
                        allocation_id,
                        source,
                    }),
                other => Ok(ServerMessage::UnknownAction(quote(other))),
            },
            Some(_) => Err(WireError::Unrecognized(quote(&data.to_string()))),
            None => match serde_json::from_value::<RegisterReply>(data.clone()) {
                Ok(reply) if reply.status == "ok" => Ok(ServerMessage::Registered {
                    inventory_ids: reply.inventory_ids,
                }),
                _ => Err(WireError::Unrecognized(quote(&data.to_string()))),
            },
        }
    }
}

/// The agent's answer to one order.
#[derive(Clone, PartialEq, Eq)]
pub enum Answer {
    /// The resource is ready: `{"allocation_id", "connection"}`.
    Provisioned {
        /// The allocation.
        allocation_id: Uuid,
        /// How to reach the resource.
        connection: Connection,
    },
    /// Provisioning failed: `{"allocation_id", "error"}`.
    Failed {
        /// The allocation.
        allocation_id: Uuid,
        /// Why (at most [`ERROR_CHARS_MAX`] characters are sent).
        error: String,
    },
    /// The resource is clean again: `{"allocation_id", "released": true}`.
    Released {
        /// The allocation.
        allocation_id: Uuid,
    },
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Connection's Debug already hides the password; this keeps the variants readable.
        match self {
            Answer::Provisioned {
                allocation_id,
                connection,
            } => write!(f, "Provisioned({allocation_id}, {connection:?})"),
            Answer::Failed {
                allocation_id,
                error,
            } => write!(f, "Failed({allocation_id}, {error:?})"),
            Answer::Released { allocation_id } => write!(f, "Released({allocation_id})"),
        }
    }
}

impl Answer {
    /// The allocation it answers for.
    pub fn allocation_id(&self) -> Uuid {
        match self {
            Answer::Provisioned { allocation_id, .. }
            | Answer::Failed { allocation_id, .. }
            | Answer::Released { allocation_id } => *allocation_id,
        }
    }

    /// The JSON text sent to the server.
    pub fn to_wire(&self) -> String {
        let value = match self {
            Answer::Provisioned {
                allocation_id,
                connection,
            } => json!({"allocation_id": allocation_id, "connection": connection}),
            Answer::Failed {
                allocation_id,
                error,
            } => json!({"allocation_id": allocation_id, "error": clip(error, ERROR_CHARS_MAX)}),
            Answer::Released { allocation_id } => {
                json!({"allocation_id": allocation_id, "released": true})
            }
        };
        value.to_string()
    }
}

/// `text` cut to at most `chars_max` characters, with `…` when cut.
pub fn clip(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(chars_max.saturating_sub(1)).collect();
    short.push('…');
    short
}

fn quote(text: &str) -> String {
    clip(text, QUOTE_CHARS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOC: &str = "8a526e72-bcde-45e6-8a5f-f598b350f093";
    const INV: &str = "d4863713-1388-4297-a479-a582b306f5cb";

    #[test]
    fn reads_every_server_message() {
        let reg =
            format!(r#"{{"status": 200, "data": {{"status": "ok", "inventory_ids": ["{INV}"]}}}}"#);
        assert_eq!(
            ServerMessage::parse(&reg).unwrap(),
            ServerMessage::Registered {
                inventory_ids: vec![INV.parse().unwrap()]
            }
        );
        let prov = format!(
            r#"{{"status": 200, "data": {{"action": "provision", "allocation_id": "{ALLOC}",
                "inventory_id": "{INV}", "username": "ci", "expires": 1576688942}}}}"#
        );
        let ServerMessage::Provision(order) = ServerMessage::parse(&prov).unwrap() else {
            panic!("not a provision")
        };
        assert_eq!(order.username, "ci");
        assert_eq!(order.expires, 1576688942);
        let rel = format!(
            r#"{{"status": 200, "data": {{"action": "release", "allocation_id": "{ALLOC}", "inventory_id": "{INV}"}}}}"#
        );
        assert!(matches!(
            ServerMessage::parse(&rel).unwrap(),
            ServerMessage::Release(_)
        ));
        let refused = r#"{"status": 400, "error": {"code": "invalid_request", "message": "resources is required"}}"#;
        assert_eq!(
            ServerMessage::parse(refused).unwrap(),
            ServerMessage::Refused {
                status: 400,
                code: "invalid_request".into(),
                message: "resources is required".into()
            }
        );
        let unknown = r#"{"status": 200, "data": {"action": "reboot"}}"#;
        assert_eq!(
            ServerMessage::parse(unknown).unwrap(),
            ServerMessage::UnknownAction("reboot".into())
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert!(matches!(
            ServerMessage::parse("not json"),
            Err(WireError::Envelope { .. })
        ));
        assert!(matches!(
            ServerMessage::parse(r#"{"data": {}}"#),
            Err(WireError::Envelope { .. })
        ));
        let expires_as_string = format!(
            r#"{{"status": 200, "data": {{"action": "provision", "allocation_id": "{ALLOC}",
                "inventory_id": "{INV}", "username": "ci", "expires": "soon"}}}}"#
        );
        let Err(WireError::BadOrder {
            action,
            allocation_id,
            ..
        }) = ServerMessage::parse(&expires_as_string)
        else {
            panic!("should be a bad order")
        };
        assert_eq!(action, "provision");
        assert_eq!(allocation_id, Some(ALLOC.parse().unwrap()));
        assert!(matches!(
            ServerMessage::parse(r#"{"status": 200, "data": "deleted allocation"}"#),
            Err(WireError::Unrecognized(_))
        ));
        assert!(matches!(
            ServerMessage::parse(r#"{"status": 200, "data": {"status": "queued"}}"#),
            Err(WireError::Unrecognized(_))
        ));
    }

    #[test]
    fn answers_are_what_the_server_reads() {
        let id: Uuid = ALLOC.parse().unwrap();
        let answers = [
            Answer::Provisioned {
                allocation_id: id,
                connection: Connection {
                    host: "h".into(),
                    username: "u".into(),
                    password: "p".into(),
                },
            },
            Answer::Failed {
                allocation_id: id,
                error: "x".repeat(1000),
            },
            Answer::Released { allocation_id: id },
        ];
        for answer in answers {
            let parsed = AgentMessage::parse(&answer.to_wire(), &Limits::default());
            assert!(parsed.is_ok(), "{answer:?}: {parsed:?}");
        }
        let shown = format!(
            "{:?}",
            Answer::Provisioned {
                allocation_id: id,
                connection: Connection {
                    host: "h".into(),
                    username: "u".into(),
                    password: "hunter2".into(),
                },
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
