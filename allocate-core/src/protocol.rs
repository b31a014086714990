//! The messages clients and agents send, read strictly from JSON.

use crate::error::{Error, Result};
use crate::json::{parse_json, Fields, Limits};
use crate::model::{Connection, Requirements, ResourceSpec};
use crate::record::ProvisionResult;
use crate::validate;
use serde_json::Value;
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

/// Reads the message a client sends on `/allocate/`: `{"requirements": {...}}`.
pub fn parse_allocate_request(text: &str, limits: &Limits) -> Result<Requirements> {
    let value = parse_json(text)?;
    let f = Fields::new(&value, "", &["requirements"], limits)?;
    let requirements = f
        .value("requirements")
        .ok_or_else(|| f.missing("requirements"))?;
    Requirements::from_json(requirements, "requirements", limits)
}

/// Reads the body of `PATCH /allocate/{id}`: `{"expires": t}`.
pub fn parse_expires_patch(text: &str, limits: &Limits) -> Result<u64> {
    let value = parse_json(text)?;
    Fields::new(&value, "", &["expires"], limits)?.u64("expires")
}

/// Reads the body of `PATCH /inventory/{id}`: `{"maintenance": bool, "reason": "..."}`.
/// Returns the maintenance reason to set, or `None` to return the resource to service.
pub fn parse_maintenance_patch(text: &str, limits: &Limits) -> Result<Option<String>> {
    let value = parse_json(text)?;
    let f = Fields::new(&value, "", &["maintenance", "reason"], limits)?;
    let on = f
        .opt_bool("maintenance")?
        .ok_or_else(|| f.missing("maintenance"))?;
    let reason = f.opt_str("reason")?;
    match (on, reason) {
        (true, reason) => Ok(Some(reason.unwrap_or("maintenance").to_owned())),
        (false, None) => Ok(None),
        (false, Some(_)) => Err(Error::invalid(
            "reason is only allowed with maintenance: true",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn client_messages_and_patches() {
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
        assert_eq!(
            parse_expires_patch(r#"{"expires": 5}"#, &limits).unwrap(),
            5
        );
        assert!(parse_expires_patch(r#"{"expires": "5"}"#, &limits).is_err());
        assert_eq!(
            parse_maintenance_patch(r#"{"maintenance": true, "reason": "fan broken"}"#, &limits)
                .unwrap(),
            Some("fan broken".into())
        );
        assert_eq!(
            parse_maintenance_patch(r#"{"maintenance": false}"#, &limits).unwrap(),
            None
        );
        assert!(parse_maintenance_patch(r#"{"reason": "x"}"#, &limits).is_err());
    }
}
