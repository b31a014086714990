//! The `/allocate/` socket: the client's request (`{"requirements": {...}}`, whose
//! requirements object the HTTP bodies share) and the events the server answers with.

use super::explain::read_findings;
use super::fields::{parse_json, Fields};
use super::{Data, Envelope, SortedConnection, WireError, UNLIMITED};
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::explain::Finding;
use crate::model::{
    Connection, GpuRequirement, GrantedResource, Requirements, DEFAULT_ALLOCATION_TIMEOUT_SECS,
};
use crate::quota::QuotaLimit;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;

/// The quota limit a `queued` message names: `"reason": "quota"` with `"limit"` in words.
fn read_quota(f: &Fields<'_>) -> Result<Option<QuotaLimit>> {
    match f.opt_str("reason")? {
        None => Ok(None),
        Some("quota") => {
            let words = f.str("limit")?;
            QuotaLimit::from_words(words).map(Some).ok_or_else(|| {
                Error::invalid(format!(
                    "{} {words:?} is not a quota limit",
                    f.path_of("limit")
                ))
            })
        }
        Some(other) => Err(Error::invalid(format!(
            "{} {other:?} is not a known reason",
            f.path_of("reason")
        ))),
    }
}

/// Reads the message a client sends on `/allocate/`: `{"requirements": {...}}`.
pub fn parse_allocate_request(text: &str, limits: &Limits) -> Result<Requirements> {
    parse_requirements_body(text, limits, Username::Required)
}

/// Reads `{"requirements": {...}}`, with `username` as `rule` says.
pub(super) fn parse_requirements_body(
    text: &str,
    limits: &Limits,
    rule: Username,
) -> Result<Requirements> {
    let value = parse_json(text)?;
    let f = Fields::new(&value, "", &["requirements"], limits)?;
    let requirements = f
        .value("requirements")
        .ok_or_else(|| f.missing("requirements"))?;
    Requirements::read(requirements, "requirements", limits, rule)
}

/// Writes the message a client sends on `/allocate/`: `{"requirements": {...}}`.
pub fn allocate_request_text(requirements: &Requirements) -> String {
    json!({ "requirements": requirements }).to_string()
}

/// Whether a requirements object must name its `username`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Username {
    /// Required and not blank (an allocation is held by someone).
    Required,
    /// May be omitted (a dry run); then empty.
    Optional,
}

impl Requirements {
    /// Reads the `requirements` object of a client's message.
    pub fn from_json(value: &Value, path: &str, limits: &Limits) -> Result<Self> {
        Self::read(value, path, limits, Username::Required)
    }

    /// Reads a `requirements` object; `username` as `rule` says.
    pub(super) fn read(value: &Value, path: &str, limits: &Limits, rule: Username) -> Result<Self> {
        const FIELDS: &[&str] = &[
            "tags",
            "username",
            "allocation_timeout_seconds",
            "expires",
            "duration_seconds",
            "type",
            "min_cpu_count",
            "min_memory_gb",
            "gpu",
            "exclude_tags",
            "release_on_disconnect",
            "ssh_keys",
            "provision",
            "count",
        ];
        let f = Fields::new(value, path, FIELDS, limits)?;
        let username = match rule {
            Username::Required => f.str("username")?,
            Username::Optional => f.opt_str("username")?.unwrap_or_default(),
        };
        if rule == Username::Required && username.trim().is_empty() {
            return Err(Error::invalid(format!(
                "{} must not be empty",
                f.path_of("username")
            )));
        }
        let gpu = f
            .value("gpu")
            .map(|g| GpuRequirement::from_json(g, &f.path_of("gpu"), limits))
            .transpose()?;
        let (expires, duration_seconds) = (f.opt_u64("expires")?, f.opt_u64("duration_seconds")?);
        crate::validate::lease_length(expires, duration_seconds)?;
        let ssh_keys = f.raw_strings("ssh_keys", limits.ssh_keys_max)?;
        crate::validate::ssh_keys(&ssh_keys, limits)?;
        let provision = f.opt_object("provision")?;
        if let Some(map) = provision {
            crate::validate::provision_data(map, limits)?;
        }
        let provision = provision.cloned();
        let count = read_count(&f, u64::from(limits.count_max))?;
        Ok(Requirements {
            tags: f.opt_strings("tags")?.unwrap_or_default(),
            username: username.to_owned(),
            allocation_timeout_seconds: f
                .opt_u64("allocation_timeout_seconds")?
                .unwrap_or(DEFAULT_ALLOCATION_TIMEOUT_SECS),
            expires,
            duration_seconds,
            kind: f.opt_str("type")?.map(str::to_owned),
            min_cpu_count: f.opt_u64("min_cpu_count")?,
            min_memory_gb: f.opt_u64("min_memory_gb")?,
            gpu,
            exclude_tags: f.opt_strings("exclude_tags")?.unwrap_or_default(),
            release_on_disconnect: f.opt_bool("release_on_disconnect")?.unwrap_or(false),
            ssh_keys,
            provision,
            count: count as u32,
        })
    }
}

/// Reads an object's `count` (default 1), refused naming it unless between 1 and `max`.
fn read_count(f: &Fields<'_>, max: u64) -> Result<u64> {
    let count = f.opt_u64("count")?.unwrap_or(1);
    if count == 0 || count > max {
        return Err(Error::invalid(format!(
            "{} must be between 1 and {max}, got {count}",
            f.path_of("count")
        )));
    }
    Ok(count)
}

impl GpuRequirement {
    fn from_json(value: &Value, path: &str, limits: &Limits) -> Result<Self> {
        let f = Fields::new(value, path, &["label", "min_memory_gb", "count"], limits)?;
        let count = read_count(&f, limits.list_len_max as u64)?;
        Ok(GpuRequirement {
            label: f.opt_str("label")?.map(str::to_owned),
            min_memory_gb: f.opt_u64("min_memory_gb")?.unwrap_or(0),
            count: count as u32,
        })
    }
}

/// What the server tells a client on `/allocate/` (the `data` of a success envelope; a
/// refusal such as `408 allocation_timeout` is the envelope's [`super::Refusal`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Waiting in the queue (sent again when the position changes).
    Queued {
        /// The request.
        allocation_id: Uuid,
        /// 1-based place among the waiting requests.
        position: u32,
        /// Registered resources that could ever satisfy it.
        matching_resources: u64,
        /// The earliest known lease end among the matching resources that are held.
        eta: Option<u64>,
        /// Why no registered resource could ever satisfy it (only in the first message of
        /// such a request): the findings of its explanation.
        explain: Option<Vec<Finding>>,
        /// The quota limit that holds it back, if one does: `"reason": "quota"` and `"limit"`
        /// in words on the wire.
        quota: Option<QuotaLimit>,
    },
    /// The resource is the client's.
    Ready {
        /// The allocation.
        allocation_id: Uuid,
        /// The resource it holds.
        inventory_id: Uuid,
        /// How to reach it.
        connection: Arc<Connection>,
        /// When the lease ends (unix seconds).
        expires: u64,
        /// Every resource granted, the first one first, for a request of several (`count`);
        /// empty for one (the message then has no `resources`).
        resources: Vec<GrantedResource>,
    },
    /// The lease ended; the server closes the socket.
    Expired {
        /// The allocation.
        allocation_id: Uuid,
    },
    /// Someone released the allocation; the server closes the socket.
    Released {
        /// The allocation.
        allocation_id: Uuid,
    },
    /// The resource's agent went away during the lease.
    Offline {
        /// The allocation.
        allocation_id: Uuid,
    },
    /// The resource's agent came back.
    Online {
        /// The allocation.
        allocation_id: Uuid,
    },
}

impl ClientEvent {
    /// The allocation it concerns.
    pub fn allocation_id(&self) -> Uuid {
        match self {
            ClientEvent::Queued { allocation_id, .. }
            | ClientEvent::Ready { allocation_id, .. }
            | ClientEvent::Expired { allocation_id }
            | ClientEvent::Released { allocation_id }
            | ClientEvent::Offline { allocation_id }
            | ClientEvent::Online { allocation_id } => *allocation_id,
        }
    }

    /// The event's `status` in the contract.
    pub fn status(&self) -> &'static str {
        match self {
            ClientEvent::Queued { .. } => "queued",
            ClientEvent::Ready { .. } => "ready",
            ClientEvent::Expired { .. } => "expired",
            ClientEvent::Released { .. } => "released",
            ClientEvent::Offline { .. } => "offline",
            ClientEvent::Online { .. } => "online",
        }
    }

    /// Reads a message of the `/allocate/` socket: an event, or the server's refusal.
    pub fn parse(text: &str) -> std::result::Result<Envelope<ClientEvent>, WireError> {
        Envelope::parse(text)?.try_map(|data| Self::from_data(&data))
    }

    fn from_data(data: &Value) -> std::result::Result<Self, WireError> {
        let data = Data::new(data, "status")?;
        let event = match data.kind.as_str() {
            "queued" => data.read(|f| {
                Ok(ClientEvent::Queued {
                    allocation_id: f.uuid("allocation_id")?,
                    position: f.u32("position")?,
                    matching_resources: f.u64("matching_resources")?,
                    eta: f.opt_u64("eta")?,
                    explain: read_findings(f)?,
                    quota: read_quota(f)?,
                })
            })?,
            "ready" => data.read(|f| {
                let resources = f.opt_list("resources", usize::MAX)?.into_iter().flatten();
                let resources = resources.enumerate().map(|(i, item)| {
                    let path = format!("{}[{i}]", f.path_of("resources"));
                    let granted = Fields::lenient(item, &path, &UNLIMITED)?;
                    Ok(GrantedResource {
                        inventory_id: granted.uuid("inventory_id")?,
                        connection: Arc::new(read_connection(&granted)?),
                    })
                });
                Ok(ClientEvent::Ready {
                    allocation_id: f.uuid("allocation_id")?,
                    inventory_id: f.uuid("inventory_id")?,
                    connection: Arc::new(read_connection(f)?),
                    expires: f.u64("expires")?,
                    resources: resources.collect::<Result<_>>()?,
                })
            })?,
            status => {
                let allocation_id = data.read(|f| f.uuid("allocation_id"))?;
                match status {
                    "expired" => ClientEvent::Expired { allocation_id },
                    "released" => ClientEvent::Released { allocation_id },
                    "offline" => ClientEvent::Offline { allocation_id },
                    "online" => ClientEvent::Online { allocation_id },
                    _ => return Err(data.unknown("status")),
                }
            }
        };
        Ok(event)
    }
}

/// Reads the lenient `connection` object of `f` (a `ready` or one of its `resources`).
fn read_connection(f: &Fields<'_>) -> Result<Connection> {
    let connection = f
        .value("connection")
        .ok_or_else(|| f.missing("connection"))?;
    Connection::read(&Fields::lenient(
        connection,
        &f.path_of("connection"),
        &UNLIMITED,
    )?)
}

/// One of `ready`'s `resources`, its keys in sorted order.
#[derive(Serialize)]
struct SortedGranted<'a> {
    connection: SortedConnection<'a>,
    inventory_id: Uuid,
}

impl<'a> From<&'a GrantedResource> for SortedGranted<'a> {
    fn from(g: &'a GrantedResource) -> Self {
        SortedGranted {
            connection: SortedConnection::from(&*g.connection),
            inventory_id: g.inventory_id,
        }
    }
}

/// Keys in sorted order, the bytes clients have always received (see [`super::envelope`]).
impl Serialize for ClientEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("allocation_id", &self.allocation_id())?;
        match self {
            ClientEvent::Queued {
                position,
                matching_resources,
                eta,
                explain,
                quota,
                ..
            } => {
                map.serialize_entry("eta", eta)?;
                if let Some(explain) = explain {
                    map.serialize_entry("explain", explain)?;
                }
                // Keys in sorted order, as the fixed bytes have them.
                if let Some(quota) = quota {
                    map.serialize_entry("limit", quota.as_str())?;
                }
                map.serialize_entry("matching_resources", matching_resources)?;
                map.serialize_entry("position", position)?;
                if quota.is_some() {
                    map.serialize_entry("reason", "quota")?;
                }
            }
            ClientEvent::Ready {
                inventory_id,
                connection,
                expires,
                resources,
                ..
            } => {
                map.serialize_entry("connection", &SortedConnection::from(&**connection))?;
                map.serialize_entry("expires", expires)?;
                map.serialize_entry("inventory_id", inventory_id)?;
                if !resources.is_empty() {
                    let sorted: Vec<_> = resources.iter().map(SortedGranted::from).collect();
                    map.serialize_entry("resources", &sorted)?;
                }
            }
            _ => {}
        }
        map.serialize_entry("status", self.status())?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Connection;
    use crate::model::GpuRequirement;
    use serde_json::json;

    fn reqs(value: Value) -> Result<Requirements> {
        Requirements::from_json(&value, "requirements", &Limits::default())
    }

    #[test]
    fn requirements_take_defaults() {
        let r = reqs(json!({"username": "ci"})).unwrap();
        assert_eq!(r, Requirements::for_user("ci"));
    }

    #[test]
    fn requirements_read_every_field() {
        let r = reqs(json!({
            "tags": ["nvidia"], "username": "ci-runner-7", "allocation_timeout_seconds": 0,
            "expires": 1576686942, "type": "VM", "min_cpu_count": 4, "min_memory_gb": 16,
            "gpu": {"label": "RTX 2080", "min_memory_gb": 8, "count": 2},
            "exclude_tags": ["flaky"], "release_on_disconnect": true
        }))
        .unwrap();
        assert_eq!(r.tags, ["nvidia"]);
        assert_eq!(r.allocation_timeout_seconds, 0);
        assert_eq!(r.expires, Some(1576686942));
        assert_eq!(r.kind.as_deref(), Some("VM"));
        assert_eq!(
            r.gpu,
            Some(GpuRequirement {
                label: Some("RTX 2080".into()),
                min_memory_gb: 8,
                count: 2
            })
        );
        assert!(r.release_on_disconnect);
        let r = reqs(json!({"username": "u", "duration_seconds": 7200})).unwrap();
        assert_eq!(r.duration_seconds, Some(7200));
        let r = reqs(json!({
            "username": "u", "ssh_keys": ["ssh-ed25519 AAAAC3Nza u@laptop"],
            "provision": {"image": "ubuntu-24.04", "nested": {"ok": true}}
        }))
        .unwrap();
        assert_eq!(r.ssh_keys, ["ssh-ed25519 AAAAC3Nza u@laptop"]);
        assert_eq!(r.provision.unwrap()["image"], "ubuntu-24.04");
    }

    #[test]
    fn keys_and_provision_data_have_limits() {
        let limits = Limits::default();
        let key = |len: usize| format!("ssh-rsa {}", "A".repeat(len - 8));
        let long_key = key(limits.ssh_key_bytes_max);
        assert!(reqs(json!({"username": "u", "ssh_keys": [long_key]})).is_ok());
        let cases = [
            (
                json!({"username": "u", "ssh_keys": vec!["ssh-ed25519 A"; 17]}),
                "requirements.ssh_keys has 17 entries, more than the limit of 16".to_owned(),
            ),
            (
                json!({"username": "u", "ssh_keys": [key(limits.ssh_key_bytes_max + 1)]}),
                "requirements.ssh_keys[0] is 16385 bytes long".to_owned(),
            ),
            (
                json!({"username": "u", "ssh_keys": ["ssh-ed25519 A", ""]}),
                "requirements.ssh_keys[1] must not be empty".to_owned(),
            ),
            (
                json!({"username": "u", "ssh_keys": ["ssh-ed25519 A\nssh-rsa B"]}),
                "requirements.ssh_keys[0] must be one line".to_owned(),
            ),
            (
                json!({"username": "u", "ssh_keys": [3]}),
                "requirements.ssh_keys[0] must be a string".to_owned(),
            ),
            (
                json!({"username": "u", "ssh_keys": "ssh-ed25519 A"}),
                "requirements.ssh_keys must be a list".to_owned(),
            ),
            (
                json!({"username": "u", "provision": ["image"]}),
                "requirements.provision must be an object".to_owned(),
            ),
            (
                json!({"username": "u", "count": 0}),
                "requirements.count must be between 1 and 64, got 0".to_owned(),
            ),
            (
                json!({"username": "u", "count": 65}),
                "requirements.count must be between 1 and 64, got 65".to_owned(),
            ),
            (
                json!({"username": "u", "provision": {"blob": "x".repeat(16 * 1024)}}),
                "requirements.provision is 16395 bytes long as JSON".to_owned(),
            ),
        ];
        for (value, want) in cases {
            let err = reqs(value.clone()).unwrap_err().to_string();
            assert!(err.starts_with(&want), "{err:?} should start with {want:?}");
            // Typed callers (Rust, C, Python) get the same refusal.
            if let Ok(typed) = serde_json::from_value::<Requirements>(with_defaults(value)) {
                let err = crate::validate::requirements(&typed, &limits).unwrap_err();
                assert!(err.to_string().starts_with(&want), "{err}");
            }
        }
    }

    /// A wire requirements object with the fields serde needs filled in.
    fn with_defaults(mut value: Value) -> Value {
        let full = serde_json::to_value(Requirements::for_user("u")).unwrap();
        for (k, v) in full.as_object().unwrap() {
            value.as_object_mut().unwrap().entry(k).or_insert(v.clone());
        }
        value
    }

    #[test]
    fn requirement_errors_name_the_field() {
        let cases = [
            (
                json!({"tag": ["x"], "username": "u"}),
                "unknown field `tag` in requirements",
            ),
            (json!({}), "requirements.username is required"),
            (
                json!({"username": "u", "duration_seconds": "2h"}),
                "requirements.duration_seconds must be",
            ),
            (
                json!({"username": "u", "duration_seconds": 0}),
                "requirements.duration_seconds must be more than 0",
            ),
            (
                json!({"username": "u", "duration_seconds": 60, "expires": 1576686942}),
                "requirements.duration_seconds and requirements.expires are exclusive",
            ),
            (
                json!({"username": " "}),
                "requirements.username must not be empty",
            ),
            (
                json!({"username": "u", "gpu": {"count": 0}}),
                "requirements.gpu.count must be between 1",
            ),
            (
                json!({"username": "u", "gpu": {"cnt": 1}}),
                "unknown field `cnt` in requirements.gpu",
            ),
            (
                json!({"username": "u", "expires": 1.5}),
                "requirements.expires must be a non-negative integer",
            ),
            (
                json!({"username": "u", "release_on_disconnect": 1}),
                "requirements.release_on_disconnect must be a boolean",
            ),
        ];
        for (value, want) in cases {
            let err = reqs(value).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }

    #[test]
    fn allocate_requests_read_strictly() {
        let limits = Limits::default();
        let r = parse_allocate_request(
            r#"{"requirements": {"tags": ["nvidia"], "username": "ci"}}"#,
            &limits,
        )
        .unwrap();
        assert_eq!(r.tags, ["nvidia"]);
        let err = parse_allocate_request(r#"{"requirement": {}}"#, &limits).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("unknown field `requirement` in message"));
    }

    #[test]
    fn allocate_requests_round_trip() {
        let mut full = Requirements::for_user("ci-runner-7");
        full.count = 4;
        full.tags = vec!["nvidia".into()];
        full.allocation_timeout_seconds = 0;
        full.expires = Some(1576686942);
        full.kind = Some("VM".into());
        full.min_cpu_count = Some(4);
        full.min_memory_gb = Some(16);
        full.gpu = Some(GpuRequirement {
            label: Some("RTX 2080".into()),
            min_memory_gb: 8,
            count: 2,
        });
        full.exclude_tags = vec!["flaky".into()];
        full.release_on_disconnect = true;
        full.ssh_keys = vec!["ssh-ed25519 AAAAC3Nza ci@laptop".into()];
        full.provision = json!({"image": "ubuntu-24.04"}).as_object().cloned();
        let mut relative = full.clone();
        relative.expires = None;
        relative.duration_seconds = Some(7200);
        for sent in [Requirements::for_user("u"), full, relative] {
            let text = allocate_request_text(&sent);
            assert_eq!(
                parse_allocate_request(&text, &Limits::default()).unwrap(),
                sent
            );
        }
    }

    const ID: &str = "8a526e72-bcde-45e6-8a5f-f598b350f093";
    const INV: &str = "d4863713-1388-4297-a479-a582b306f5cb";

    /// A key-based login to `host`.
    fn host(host: &str) -> Connection {
        Connection {
            host: host.into(),
            username: String::new(),
            password: None,
            port: None,
        }
    }

    /// Every event with the exact text the server has always sent for it.
    fn events() -> Vec<(ClientEvent, String)> {
        let id: Uuid = ID.parse().unwrap();
        let simple = |status: &str| {
            format!(r#"{{"data":{{"allocation_id":"{ID}","status":"{status}"}},"status":200}}"#)
        };
        vec![
            (
                ClientEvent::Queued {
                    allocation_id: id,
                    position: 1,
                    matching_resources: 3,
                    eta: None,
                    explain: None,
                    quota: None,
                },
                format!(
                    r#"{{"data":{{"allocation_id":"{ID}","eta":null,"matching_resources":3,"position":1,"status":"queued"}},"status":200}}"#
                ),
            ),
            (
                ClientEvent::Queued {
                    allocation_id: id,
                    position: 2,
                    matching_resources: 0,
                    eta: Some(1576688942),
                    explain: None,
                    quota: None,
                },
                format!(
                    r#"{{"data":{{"allocation_id":"{ID}","eta":1576688942,"matching_resources":0,"position":2,"status":"queued"}},"status":200}}"#
                ),
            ),
            (
                ClientEvent::Queued {
                    allocation_id: id,
                    position: 3,
                    matching_resources: 2,
                    eta: None,
                    explain: None,
                    quota: Some(QuotaLimit::Gpus),
                },
                format!(
                    r#"{{"data":{{"allocation_id":"{ID}","eta":null,"limit":"GPUs held","matching_resources":2,"position":3,"reason":"quota","status":"queued"}},"status":200}}"#
                ),
            ),
            (
                ClientEvent::Ready {
                    allocation_id: id,
                    inventory_id: INV.parse().unwrap(),
                    connection: Arc::new(Connection {
                        host: "1.2.3.4".into(),
                        username: "test".into(),
                        password: Some("foo".into()),
                        port: None,
                    }),
                    expires: 1576688942,
                    resources: vec![],
                },
                format!(
                    r#"{{"data":{{"allocation_id":"{ID}","connection":{{"host":"1.2.3.4","password":"foo","username":"test"}},"expires":1576688942,"inventory_id":"{INV}","status":"ready"}},"status":200}}"#
                ),
            ),
            (
                ClientEvent::Ready {
                    allocation_id: id,
                    inventory_id: INV.parse().unwrap(),
                    connection: host("1.2.3.4").into(),
                    expires: 1576688942,
                    resources: vec![
                        GrantedResource {
                            inventory_id: INV.parse().unwrap(),
                            connection: host("1.2.3.4").into(),
                        },
                        GrantedResource {
                            inventory_id: id,
                            connection: host("1.2.3.5").into(),
                        },
                    ],
                },
                format!(
                    r#"{{"data":{{"allocation_id":"{ID}","connection":{{"host":"1.2.3.4"}},"expires":1576688942,"inventory_id":"{INV}","resources":[{{"connection":{{"host":"1.2.3.4"}},"inventory_id":"{INV}"}},{{"connection":{{"host":"1.2.3.5"}},"inventory_id":"{ID}"}}],"status":"ready"}},"status":200}}"#
                ),
            ),
            (
                ClientEvent::Expired { allocation_id: id },
                simple("expired"),
            ),
            (
                ClientEvent::Released { allocation_id: id },
                simple("released"),
            ),
            (
                ClientEvent::Offline { allocation_id: id },
                simple("offline"),
            ),
            (ClientEvent::Online { allocation_id: id }, simple("online")),
        ]
    }

    #[test]
    fn events_have_fixed_bytes_and_round_trip() {
        for (event, text) in events() {
            super::super::assert_fixed_bytes(event, &text, ClientEvent::parse);
        }
    }

    #[test]
    fn refusals_and_newer_servers_are_read() {
        let timeout = r#"{"error":{"code":"allocation_timeout","message":"no"},"status":408}"#;
        let Envelope::Refused(r) = ClientEvent::parse(timeout).unwrap() else {
            panic!("not a refusal")
        };
        assert_eq!(r.error_code(), Some(crate::ErrorCode::AllocationTimeout));
        let newer = format!(
            r#"{{"status": 200, "data": {{"status": "expired", "allocation_id": "{ID}", "why": "lease"}}, "trace": 1}}"#
        );
        assert!(matches!(
            ClientEvent::parse(&newer).unwrap(),
            Envelope::Ok(ClientEvent::Expired { .. })
        ));
        let unknown = format!(
            r#"{{"status": 200, "data": {{"status": "paused", "allocation_id": "{ID}"}}}}"#
        );
        assert!(matches!(
            ClientEvent::parse(&unknown),
            Err(WireError::Unknown { key: "status", .. })
        ));
    }

    #[test]
    fn a_waiting_request_refused_by_a_new_policy_reads_as_the_403_of_a_new_one() {
        let allocation_id: Uuid = ID.parse().unwrap();
        let refused = crate::Output::QuotaRefused {
            allocation_id,
            refusal: crate::quota::QuotaExceeded {
                user: "ann".into(),
                limit: QuotaLimit::Resources,
                max: 2,
                asked: 4,
            },
        };
        let text = refused.to_text();
        assert_eq!(
            text,
            format!(
                r#"{{"error":{{"code":"quota_exceeded","message":"allocation {ID}: quota exceeded: ann may hold at most 2 (resources held), the request needs 4"}},"status":403}}"#
            )
        );
        let Envelope::Refused(r) = ClientEvent::parse(&text).unwrap() else {
            panic!("not a refusal")
        };
        assert_eq!(r.error_code(), Some(crate::ErrorCode::QuotaExceeded));
        assert_eq!(r.status, 403);
        assert!(refused.is_final());
        assert_eq!(Envelope::<ClientEvent>::Refused(r).to_text(), text);
    }

    #[test]
    fn malformed_events_name_the_field() {
        let cases = [
            (
                format!(
                    r#"{{"status": 200, "data": {{"status": "queued", "allocation_id": "{ID}", "position": "1", "matching_resources": 1}}}}"#
                ),
                "data.position must be a non-negative integer, got a string",
            ),
            (
                format!(
                    r#"{{"status": 200, "data": {{"status": "ready", "allocation_id": "{ID}", "inventory_id": "{INV}", "expires": 1, "connection": {{"username": "u"}}}}}}"#
                ),
                "data.connection.host is required",
            ),
            (
                r#"{"status": 200, "data": {"status": "expired", "allocation_id": "x"}}"#
                    .to_owned(),
                "data.allocation_id must be a hyphenated UUID",
            ),
        ];
        for (text, want) in cases {
            let err = ClientEvent::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        for text in [
            r#"{"status": 200, "data": "deleted allocation"}"#,
            r#"{"status": 200, "data": {"action": "release"}}"#,
        ] {
            assert!(
                matches!(ClientEvent::parse(text), Err(WireError::Unrecognized(_))),
                "{text}"
            );
        }
    }
}
