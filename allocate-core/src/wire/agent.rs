//! The `/agent/` socket: what an agent sends ([`AgentMessage`]: its registration and its
//! answers, read strictly) and what the server sends it ([`ServerMessage`]: the registration
//! reply and the provision and release orders, read leniently).

use super::fields::{parse_json, Fields};
use super::{Data, Envelope, SortedConnection, WireError};
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::model::{Connection, Gpu, ResourceSpec};
use crate::record::ProvisionResult;
use crate::validate;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// What an agent may send on `/agent/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentMessage {
    /// Its whole resource list (the first message, and any later replacement).
    Register {
        /// The agent's id.
        agent_id: Uuid,
        /// Its resources.
        resources: Vec<ResourceSpec>,
    },
    /// The answer to a provision.
    Provisioned {
        /// The allocation.
        allocation_id: Uuid,
        /// Connection details or why it failed.
        result: ProvisionResult,
    },
    /// The answer to a release.
    Released {
        /// The allocation.
        allocation_id: Uuid,
    },
}

impl AgentMessage {
    /// Reads an agent's message from its text.
    pub fn parse(text: &str, limits: &Limits) -> Result<Self> {
        Self::from_json(&parse_json(text)?, limits)
    }

    /// Reads an agent's message from JSON; which kind it is follows from its fields.
    pub fn from_json(value: &Value, limits: &Limits) -> Result<Self> {
        let has = |k: &str| value.get(k).is_some();
        if has("resources") || has("agent_id") {
            let f = Fields::new(value, "", &["agent_id", "resources"], limits)?;
            let resources = f.value("resources").ok_or_else(|| f.missing("resources"))?;
            return Ok(AgentMessage::Register {
                agent_id: f.uuid("agent_id")?,
                resources: parse_resources(resources, limits)?,
            });
        }
        if has("released") {
            let f = Fields::new(value, "", &["allocation_id", "released"], limits)?;
            if f.opt_bool("released")? != Some(true) {
                return Err(Error::invalid("released must be true"));
            }
            return Ok(AgentMessage::Released {
                allocation_id: f.uuid("allocation_id")?,
            });
        }
        let f = Fields::new(value, "", &["allocation_id", "connection", "error"], limits)?;
        let allocation_id = f.uuid("allocation_id")?;
        let result = match (f.value("connection"), f.opt_str("error")?) {
            (Some(c), None) => ProvisionResult::Connection(Connection::from_json(c, "connection", limits)?),
            (None, Some(why)) => ProvisionResult::Failed(why.to_owned()),
            _ => {
                return Err(Error::invalid(
                    "an agent's answer needs `resources` (registration), `connection` or `error` (provision) or `released` (release)",
                ))
            }
        };
        Ok(AgentMessage::Provisioned {
            allocation_id,
            result,
        })
    }

    /// The JSON text an agent sends. A registration is written field by field in the order
    /// of [`ResourceSpec`]; answers with sorted keys, as the reference agent has sent them.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("an agent's message always serializes")
    }
}

impl Serialize for AgentMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        match self {
            AgentMessage::Register {
                agent_id,
                resources,
            } => {
                map.serialize_entry("agent_id", agent_id)?;
                map.serialize_entry("resources", resources)?;
            }
            AgentMessage::Provisioned {
                allocation_id,
                result,
            } => {
                map.serialize_entry("allocation_id", allocation_id)?;
                match result {
                    ProvisionResult::Connection(c) => {
                        map.serialize_entry("connection", &SortedConnection::from(c))?
                    }
                    ProvisionResult::Failed(why) => map.serialize_entry("error", why)?,
                }
            }
            AgentMessage::Released { allocation_id } => {
                map.serialize_entry("allocation_id", allocation_id)?;
                map.serialize_entry("released", &true)?;
            }
        }
        map.end()
    }
}

/// Reads a registration's `resources` list.
pub fn parse_resources(value: &Value, limits: &Limits) -> Result<Vec<ResourceSpec>> {
    let Value::Array(items) = value else {
        return Err(Error::invalid("resources must be a list"));
    };
    validate::list_len(
        items.len(),
        limits.resources_per_registration_max,
        "resources",
    )?;
    items
        .iter()
        .enumerate()
        .map(|(i, r)| ResourceSpec::from_json(r, &format!("resources[{i}]"), limits))
        .collect()
}

impl Connection {
    /// Reads a `connection` object.
    pub fn from_json(value: &Value, path: &str, limits: &Limits) -> Result<Self> {
        Self::read(&Fields::new(
            value,
            path,
            &["host", "username", "password", "port"],
            limits,
        )?)
    }

    /// Reads the fields of a `connection` object, strictly or leniently opened.
    pub(crate) fn read(f: &Fields) -> Result<Self> {
        Ok(Connection {
            host: f.str("host")?.to_owned(),
            username: f.opt_str("username")?.unwrap_or_default().to_owned(),
            password: f.opt_str("password")?.map(str::to_owned),
            port: match f.opt_u64("port")? {
                None => None,
                Some(port @ 1..=65535) => Some(port as u16),
                Some(other) => {
                    return Err(Error::invalid(format!(
                        "{} must be between 1 and 65535, got {other}",
                        f.path_of("port")
                    )))
                }
            },
        })
    }
}

impl ResourceSpec {
    /// Reads one entry of an agent's `resources` list.
    pub fn from_json(value: &Value, path: &str, limits: &Limits) -> Result<Self> {
        const FIELDS: &[&str] = &[
            "inventory_id",
            "labels",
            "cpu_count",
            "memory_gb",
            "gpu",
            "type",
            "connection",
        ];
        let f = Fields::new(value, path, FIELDS, limits)?;
        let gpu = match f.opt_list("gpu", limits.list_len_max)? {
            None => Vec::new(),
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let gf = Fields::new(
                        g,
                        &format!("{}[{i}]", f.path_of("gpu")),
                        &["label", "memory_gb"],
                        limits,
                    )?;
                    Ok(Gpu {
                        label: gf.str("label")?.to_owned(),
                        memory_gb: gf.u64("memory_gb")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(ResourceSpec {
            inventory_id: f.opt_uuid("inventory_id")?,
            labels: f.opt_strings("labels")?.unwrap_or_default(),
            cpu_count: f.u64("cpu_count")?,
            memory_gb: f.u64("memory_gb")?,
            gpu,
            kind: f.opt_str("type")?.unwrap_or_default().to_owned(),
            connection: f
                .value("connection")
                .map(|c| Connection::from_json(c, &f.path_of("connection"), f.limits()))
                .transpose()?
                .map(Arc::new),
        })
    }
}

/// What the server sends an agent (the `data` of a success envelope; a refused message gets
/// the envelope's [`super::Refusal`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    /// The registration was accepted: `{"status": "ok", "inventory_ids": [...]}`, the ids
    /// in the order the resources were sent.
    Registered {
        /// The resources' inventory ids.
        inventory_ids: Vec<Uuid>,
    },
    /// Prepare a resource: `{"action": "provision", ...}`.
    Provision(ProvisionOrder),
    /// Clean up a resource: `{"action": "release", ...}`.
    Release(ReleaseOrder),
}

/// The server asks the agent to prepare a resource for a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisionOrder {
    /// The allocation being prepared.
    pub allocation_id: Uuid,
    /// The resource.
    pub inventory_id: Uuid,
    /// Who will hold it.
    pub username: String,
    /// When the lease ends (unix seconds).
    pub expires: u64,
    /// Public keys to allow to log in; empty (and absent on the wire) when the request had none.
    pub ssh_keys: Vec<String>,
    /// The request's `provision` object, absent when it had none.
    pub provision: Option<serde_json::Map<String, Value>>,
}

/// The server asks the agent to clean up a resource after an allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseOrder {
    /// The allocation that ended.
    pub allocation_id: Uuid,
    /// The resource.
    pub inventory_id: Uuid,
}

impl ServerMessage {
    /// The envelope of the reply to an accepted registration, as text.
    pub fn registered_text(inventory_ids: &[Uuid]) -> String {
        Envelope::Ok(ServerMessage::Registered {
            inventory_ids: inventory_ids.to_vec(),
        })
        .to_text()
    }

    /// Reads a message of the `/agent/` socket: a reply or order, or the server's refusal.
    /// An action this reader does not know is [`WireError::Unknown`] (log it and go on).
    pub fn parse(text: &str) -> std::result::Result<Envelope<ServerMessage>, WireError> {
        Envelope::parse(text)?.try_map(|data| Self::from_data(&data))
    }

    fn from_data(data: &Value) -> std::result::Result<Self, WireError> {
        if data.get("action").is_none() {
            let reply = Data::new(data, "status")?;
            if reply.kind != "ok" {
                return Err(WireError::Unrecognized(super::quote(&data.to_string())));
            }
            return reply.read(|f| {
                let ids = f.opt_list("inventory_ids", usize::MAX)?;
                let ids = ids.ok_or_else(|| f.missing("inventory_ids"))?;
                let path = f.path_of("inventory_ids");
                let inventory_ids = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| match id {
                        Value::String(s) => super::parse_uuid(s, &format!("{path}[{i}]")),
                        _ => Err(Error::invalid(format!("{path}[{i}] must be a string"))),
                    })
                    .collect::<Result<_>>()?;
                Ok(ServerMessage::Registered { inventory_ids })
            });
        }
        let order = Data::new(data, "action")?;
        match order.kind.as_str() {
            "provision" => order.read(|f| {
                Ok(ServerMessage::Provision(ProvisionOrder {
                    allocation_id: f.uuid("allocation_id")?,
                    inventory_id: f.uuid("inventory_id")?,
                    username: f.str("username")?.to_owned(),
                    expires: f.u64("expires")?,
                    ssh_keys: f.raw_strings("ssh_keys", usize::MAX)?,
                    provision: f.opt_object("provision")?.cloned(),
                }))
            }),
            "release" => order.read(|f| {
                Ok(ServerMessage::Release(ReleaseOrder {
                    allocation_id: f.uuid("allocation_id")?,
                    inventory_id: f.uuid("inventory_id")?,
                }))
            }),
            _ => Err(order.unknown("action")),
        }
    }
}

/// Keys in sorted order, the bytes agents have always received (see [`super::envelope`]).
impl Serialize for ServerMessage {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            ServerMessage::Registered { inventory_ids } => {
                map.serialize_entry("inventory_ids", inventory_ids)?;
                map.serialize_entry("status", "ok")?;
            }
            ServerMessage::Provision(order) => {
                map.serialize_entry("action", "provision")?;
                map.serialize_entry("allocation_id", &order.allocation_id)?;
                map.serialize_entry("expires", &order.expires)?;
                map.serialize_entry("inventory_id", &order.inventory_id)?;
                if let Some(provision) = &order.provision {
                    map.serialize_entry("provision", provision)?;
                }
                if !order.ssh_keys.is_empty() {
                    map.serialize_entry("ssh_keys", &order.ssh_keys)?;
                }
                map.serialize_entry("username", &order.username)?;
            }
            ServerMessage::Release(order) => {
                map.serialize_entry("action", "release")?;
                map.serialize_entry("allocation_id", &order.allocation_id)?;
                map.serialize_entry("inventory_id", &order.inventory_id)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AGENT: &str = "d4863713-1388-4297-a479-a582b306f5cb";
    const ALLOC: &str = "8a526e72-bcde-45e6-8a5f-f598b350f093";

    #[test]
    fn agent_messages_of_every_kind() {
        let limits = Limits::default();
        let reg = format!(
            r#"{{"agent_id": "{AGENT}", "resources": [{{"labels": ["nvidia"], "cpu_count": 12, "memory_gb": 32,
                "gpu": [{{"label": "GeForce RTX 2080", "memory_gb": 8}}], "type": "VM"}}]}}"#
        );
        let AgentMessage::Register {
            agent_id,
            resources,
        } = AgentMessage::parse(&reg, &limits).unwrap()
        else {
            panic!("not a registration")
        };
        assert_eq!(agent_id.to_string(), AGENT);
        assert_eq!(resources[0].cpu_count, 12);
        let ok = format!(
            r#"{{"allocation_id": "{ALLOC}", "connection": {{"host": "h", "username": "u", "password": "p"}}}}"#
        );
        assert!(matches!(
            AgentMessage::parse(&ok, &limits).unwrap(),
            AgentMessage::Provisioned {
                result: ProvisionResult::Connection(_),
                ..
            }
        ));
        let failed = format!(r#"{{"allocation_id": "{ALLOC}", "error": "disk full"}}"#);
        assert_eq!(
            AgentMessage::parse(&failed, &limits).unwrap(),
            AgentMessage::Provisioned {
                allocation_id: ALLOC.parse().unwrap(),
                result: ProvisionResult::Failed("disk full".into())
            }
        );
        let released = format!(r#"{{"allocation_id": "{ALLOC}", "released": true}}"#);
        assert!(matches!(
            AgentMessage::parse(&released, &limits).unwrap(),
            AgentMessage::Released { .. }
        ));
    }

    #[test]
    fn agent_message_errors_name_the_field() {
        let limits = Limits::default();
        let cases = [
            (
                format!(r#"{{"agent_id": "{AGENT}"}}"#),
                "resources is required",
            ),
            (
                r#"{"agent_id": "nope", "resources": []}"#.to_string(),
                "agent_id must be a hyphenated UUID",
            ),
            (
                format!(r#"{{"allocation_id": "{ALLOC}", "released": false}}"#),
                "released must be true",
            ),
            (
                format!(r#"{{"allocation_id": "{ALLOC}"}}"#),
                "an agent's answer needs",
            ),
            (
                format!(r#"{{"agent_id": "{AGENT}", "resources": [{{"cpu_count": 1}}]}}"#),
                "resources[0].memory_gb is required",
            ),
            ("[]".to_string(), "message must be an object, got a list"),
        ];
        for (text, want) in cases {
            let err = AgentMessage::parse(&text, &limits).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn resources_parse_and_errors_name_the_entry() {
        let limits = Limits::default();
        let ok = json!({"labels": ["nvidia"], "cpu_count": 12, "memory_gb": 32,
                        "gpu": [{"label": "GeForce RTX 2080", "memory_gb": 8}], "type": "VM",
                        "connection": {"host": "h", "username": "u", "password": "p"}});
        let spec = ResourceSpec::from_json(&ok, "resources[0]", &limits).unwrap();
        assert_eq!(spec.gpu[0].memory_gb, 8);
        assert_eq!(spec.kind, "VM");
        assert!(!format!("{spec:?}").contains("\"p\""));
        let bad = json!({"labels": [], "cpu_count": 1, "memory_gb": 1, "gpu": [{"label": "x", "memory_gb": -8}]});
        let err = ResourceSpec::from_json(&bad, "resources[3]", &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "resources[3].gpu[0].memory_gb must be a non-negative integer, got a negative integer"
        );
    }

    fn connection() -> Connection {
        Connection {
            host: "h".into(),
            username: "u".into(),
            password: Some("p".into()),
            port: None,
        }
    }

    #[test]
    fn a_key_login_needs_no_password_and_ports_are_checked() {
        let limits = Limits::default();
        let read = |v: serde_json::Value| Connection::from_json(&v, "connection", &limits);
        let c = read(json!({"host": "h", "username": "u", "port": 2222})).unwrap();
        assert_eq!((c.password, c.port), (None, Some(2222)));
        let text = serde_json::to_string(&SortedConnection::from(
            &read(json!({"host": "h", "username": "u", "port": 22})).unwrap(),
        ))
        .unwrap();
        assert_eq!(text, r#"{"host":"h","port":22,"username":"u"}"#);
        // No username: ssh's default login; absent again on the way out.
        let anonymous = read(json!({"host": "h"})).unwrap();
        assert_eq!(anonymous.username, "");
        let text = serde_json::to_string(&SortedConnection::from(&anonymous)).unwrap();
        assert_eq!(text, r#"{"host":"h"}"#);
        assert_eq!(
            serde_json::to_string(&anonymous).unwrap(),
            r#"{"host":"h"}"#
        );
        for (port, want) in [
            (
                json!(0),
                "connection.port must be between 1 and 65535, got 0",
            ),
            (
                json!(65536),
                "connection.port must be between 1 and 65535, got 65536",
            ),
            (
                json!("22"),
                "connection.port must be a non-negative integer",
            ),
        ] {
            let err = read(json!({"host": "h", "username": "u", "port": port})).unwrap_err();
            assert!(err.to_string().starts_with(want), "{err}");
        }
        let shown = format!(
            "{:?}",
            read(json!({"host": "h", "username": "u", "password": "s3cret"})).unwrap()
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn agent_messages_round_trip() {
        let limits = Limits::default();
        let id: Uuid = ALLOC.parse().unwrap();
        let mut spec =
            crate::model::test_spec(&["nvidia"], 12, 32, &[("GeForce RTX 2080", 8)], "VM");
        spec.inventory_id = Some(Uuid::from_u128(9));
        spec.connection = Some(connection().into());
        let messages = [
            AgentMessage::Register {
                agent_id: AGENT.parse().unwrap(),
                resources: vec![spec, crate::model::test_spec(&[], 1, 1, &[], "device")],
            },
            AgentMessage::Provisioned {
                allocation_id: id,
                result: ProvisionResult::Connection(connection()),
            },
            AgentMessage::Provisioned {
                allocation_id: id,
                result: ProvisionResult::Failed("disk full".into()),
            },
            AgentMessage::Provisioned {
                allocation_id: id,
                result: ProvisionResult::Connection(Connection {
                    password: None,
                    port: Some(2222),
                    ..connection()
                }),
            },
            AgentMessage::Released { allocation_id: id },
        ];
        /// How the reference agent wrote its registration before it used this writer (serde,
        /// field order): the bytes agents have always sent.
        #[derive(Serialize)]
        struct Registration<'a> {
            agent_id: &'a Uuid,
            resources: &'a [ResourceSpec],
        }
        for sent in messages {
            let text = sent.to_text();
            assert_eq!(AgentMessage::parse(&text, &limits).unwrap(), sent);
            // The same bytes as the reference agent wrote: answers with sorted keys (as its
            // `json!` values), a registration in field order.
            let agents = match &sent {
                AgentMessage::Register {
                    agent_id,
                    resources,
                } => serde_json::to_string(&Registration {
                    agent_id,
                    resources,
                })
                .unwrap(),
                _ => serde_json::from_str::<Value>(&text).unwrap().to_string(),
            };
            assert_eq!(text, agents);
        }
        let answer = AgentMessage::Provisioned {
            allocation_id: id,
            result: ProvisionResult::Connection(connection()),
        };
        assert_eq!(
            answer.to_text(),
            format!(
                r#"{{"allocation_id":"{ALLOC}","connection":{{"host":"h","password":"p","username":"u"}}}}"#
            )
        );
    }

    #[test]
    fn an_answer_shown_for_debugging_hides_the_password() {
        let answer = AgentMessage::Provisioned {
            allocation_id: ALLOC.parse().unwrap(),
            result: ProvisionResult::Connection(Connection {
                host: "h".into(),
                username: "u".into(),
                password: Some("hunter2".into()),
                port: None,
            }),
        };
        let shown = format!("{answer:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains(ALLOC), "{shown}");
    }

    /// Every server message with the exact text agents have always received.
    fn orders() -> Vec<(ServerMessage, String)> {
        let id: Uuid = ALLOC.parse().unwrap();
        let inv: Uuid = AGENT.parse().unwrap();
        vec![
            (
                ServerMessage::Registered {
                    inventory_ids: vec![inv, id],
                },
                format!(
                    r#"{{"data":{{"inventory_ids":["{AGENT}","{ALLOC}"],"status":"ok"}},"status":200}}"#
                ),
            ),
            (
                ServerMessage::Registered {
                    inventory_ids: vec![],
                },
                r#"{"data":{"inventory_ids":[],"status":"ok"},"status":200}"#.to_owned(),
            ),
            (
                ServerMessage::Provision(ProvisionOrder {
                    allocation_id: id,
                    inventory_id: inv,
                    username: "ci".into(),
                    expires: 1576688942,
                    ssh_keys: vec![],
                    provision: None,
                }),
                format!(
                    r#"{{"data":{{"action":"provision","allocation_id":"{ALLOC}","expires":1576688942,"inventory_id":"{AGENT}","username":"ci"}},"status":200}}"#
                ),
            ),
            (
                ServerMessage::Provision(ProvisionOrder {
                    allocation_id: id,
                    inventory_id: inv,
                    username: "ci".into(),
                    expires: 1576688942,
                    ssh_keys: vec!["ssh-ed25519 AAAAC3Nza ci@laptop".into()],
                    provision: json!({"image": "ubuntu-24.04"}).as_object().cloned(),
                }),
                format!(
                    r#"{{"data":{{"action":"provision","allocation_id":"{ALLOC}","expires":1576688942,"inventory_id":"{AGENT}","provision":{{"image":"ubuntu-24.04"}},"ssh_keys":["ssh-ed25519 AAAAC3Nza ci@laptop"],"username":"ci"}},"status":200}}"#
                ),
            ),
            (
                ServerMessage::Release(ReleaseOrder {
                    allocation_id: id,
                    inventory_id: inv,
                }),
                format!(
                    r#"{{"data":{{"action":"release","allocation_id":"{ALLOC}","inventory_id":"{AGENT}"}},"status":200}}"#
                ),
            ),
        ]
    }

    #[test]
    fn server_messages_have_fixed_bytes_and_round_trip() {
        for (message, text) in orders() {
            super::super::assert_fixed_bytes(message, &text, ServerMessage::parse);
        }
        let ids = [Uuid::from_u128(1)];
        assert_eq!(
            ServerMessage::parse(&ServerMessage::registered_text(&ids)).unwrap(),
            Envelope::Ok(ServerMessage::Registered {
                inventory_ids: ids.to_vec()
            })
        );
    }

    #[test]
    fn server_messages_read_what_the_agent_reads() {
        let refused = r#"{"status": 400, "error": {"code": "invalid_request", "message": "resources is required"}}"#;
        let Envelope::Refused(r) = ServerMessage::parse(refused).unwrap() else {
            panic!("not a refusal")
        };
        assert_eq!(
            (r.status, r.code.as_str(), r.message.as_str()),
            (400, "invalid_request", "resources is required")
        );
        let newer = format!(
            r#"{{"status": 200, "data": {{"action": "release", "allocation_id": "{ALLOC}", "inventory_id": "{AGENT}", "ssh_keys": []}}}}"#
        );
        assert!(matches!(
            ServerMessage::parse(&newer).unwrap(),
            Envelope::Ok(ServerMessage::Release(_))
        ));
        let unknown = r#"{"status": 200, "data": {"action": "reboot"}}"#;
        let Err(WireError::Unknown { key, value }) = ServerMessage::parse(unknown) else {
            panic!("should be unknown")
        };
        assert_eq!((key, value.as_str()), ("action", "reboot"));
        let expires_as_string = format!(
            r#"{{"status": 200, "data": {{"action": "provision", "allocation_id": "{ALLOC}",
                "inventory_id": "{AGENT}", "username": "ci", "expires": "soon"}}}}"#
        );
        let Err(WireError::Malformed {
            kind,
            allocation_id,
            source,
        }) = ServerMessage::parse(&expires_as_string)
        else {
            panic!("should be malformed")
        };
        assert_eq!(kind, "provision");
        assert_eq!(allocation_id, Some(ALLOC.parse().unwrap()));
        assert_eq!(
            source.to_string(),
            "data.expires must be a non-negative integer, got a string"
        );
        let bad_id = r#"{"status": 200, "data": {"status": "ok", "inventory_ids": [1]}}"#;
        assert!(ServerMessage::parse(bad_id)
            .unwrap_err()
            .to_string()
            .contains("data.inventory_ids[0] must be a string"));
        for text in ["not json", r#"{"data": {}}"#] {
            assert!(
                matches!(
                    ServerMessage::parse(text),
                    Err(WireError::NotEnvelope { .. })
                ),
                "{text}"
            );
        }
        for text in [
            r#"{"status": 200, "data": "deleted allocation"}"#,
            r#"{"status": 200, "data": {"status": "queued"}}"#,
            r#"{"status": 200, "data": {"action": 3}}"#,
        ] {
            assert!(
                matches!(ServerMessage::parse(text), Err(WireError::Unrecognized(_))),
                "{text}"
            );
        }
    }
}
