//! One log line per allocation event, never with a password.

use allocate_core::Output;
use tracing::{debug, info};
use uuid::Uuid;

/// Logs what an output says happened (`queued` at debug level, since it repeats).
pub fn log(output: &Output) {
    if matches!(output, Output::Queued { .. }) && !tracing::enabled!(tracing::Level::DEBUG) {
        return; // spares describing a position nobody logs
    }
    let (event, allocation_id, detail) = describe(output);
    // No `detail` field at all where there is nothing to say.
    let detail = (!detail.is_empty()).then_some(detail);
    if event == "queued" {
        debug!(%allocation_id, detail, "allocation {event}");
    } else {
        info!(%allocation_id, detail, "allocation {event}");
    }
}

/// The event's name, its allocation, and the rest worth knowing.
fn describe(output: &Output) -> (&'static str, Uuid, String) {
    match output {
        Output::Queued {
            allocation_id,
            position,
            matching_resources,
            ..
        } => (
            "queued",
            *allocation_id,
            format!("position {position}, {matching_resources} matching resources"),
        ),
        Output::Ready {
            allocation_id,
            inventory_id,
            connection,
            expires,
            resources,
        } => (
            "ready",
            *allocation_id,
            format!(
                "resource {inventory_id} at {} until {expires}{}",
                connection.host,
                match resources.len() {
                    0 | 1 => String::new(),
                    n => format!(", with {} more", n - 1),
                }
            ),
        ),
        Output::TimedOut { allocation_id, .. } => ("timed out", *allocation_id, String::new()),
        Output::QuotaRefused {
            allocation_id,
            refusal,
        } => (
            "refused by a new policy",
            *allocation_id,
            refusal.to_string(),
        ),
        Output::Expired { allocation_id } => ("expired", *allocation_id, String::new()),
        Output::Released { allocation_id } => ("released", *allocation_id, String::new()),
        Output::Offline { allocation_id } => ("offline", *allocation_id, String::new()),
        Output::Online { allocation_id } => ("online", *allocation_id, String::new()),
        Output::Provision {
            agent_id,
            allocation_id,
            inventory_id,
            ..
        } => (
            "provision asked",
            *allocation_id,
            format!("resource {inventory_id} of agent {agent_id}"),
        ),
        Output::Release {
            agent_id,
            allocation_id,
            inventory_id,
        } => (
            "release asked",
            *allocation_id,
            format!("resource {inventory_id} of agent {agent_id}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocate_core::Connection;

    #[test]
    fn ready_names_the_host_but_never_the_password() {
        let ready = Output::Ready {
            allocation_id: Uuid::from_u128(1),
            inventory_id: Uuid::from_u128(2),
            connection: std::sync::Arc::new(Connection {
                host: "10.0.0.7".into(),
                username: "lab".into(),
                password: Some("hunter2".into()),
                port: None,
            }),
            expires: 1576688942,
            resources: vec![],
        };
        let (event, _, detail) = describe(&ready);
        assert_eq!(event, "ready");
        assert!(detail.contains("10.0.0.7") && detail.contains("1576688942"));
        assert!(!detail.contains("hunter2"));
    }
}
