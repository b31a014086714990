//! The quota policy as JSON (API.md, "Quotas and order"): the server's `--policy-file`, the
//! C binding's `allocate_engine_set_quotas` and the Python binding's `Engine.set_quotas`
//! all read it here.
//!
//! `{"default": LIMITS, "groups": {"NAME": {"members": ["user", ...], "limits": LIMITS}},
//! "users": {"USERNAME": LIMITS}}`, every member optional, where `LIMITS` is
//! `{"allocations_max": 2, "resources_max": 4, "gpus_max": 8, "lease_secs_max": 86400}`, each
//! limit optional (absent: no limit). Unknown fields are refused.

use crate::quota::Policy;
use thiserror::Error;

/// Why a text is not a policy: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("line {line}, field {field}: {message}")]
pub struct PolicyError {
    /// 1-based line number.
    pub line: usize,
    /// Where in the document, such as `users.ann.gpus_max` (`.` for the whole).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Reads a policy from its JSON text.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    let mut json = serde_json::Deserializer::from_str(text);
    let policy: Policy = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        PolicyError {
            line: inner.line(),
            field,
            message: inner.to_string(),
        }
    })?;
    json.end().map_err(|e| PolicyError {
        line: e.line(),
        field: ".".to_owned(),
        message: e.to_string(),
    })?;
    Ok(policy)
}

/// Writes a policy as the JSON text [`parse_policy`] reads.
pub fn policy_json(policy: &Policy) -> String {
    serde_json::to_string(policy).expect("a policy always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{Group, QuotaLimits};

    #[test]
    fn a_policy_reads_back_as_written() {
        let limits = |n| QuotaLimits {
            allocations_max: Some(n),
            resources_max: None,
            gpus_max: Some(2 * n),
            lease_secs_max: Some(3600),
        };
        let mut policy = Policy {
            default: limits(1),
            ..Policy::default()
        };
        policy.groups.insert(
            "night".into(),
            Group {
                members: vec!["ann".into()],
                limits: limits(3),
            },
        );
        policy.users.insert("bob".into(), limits(5));
        assert_eq!(parse_policy(&policy_json(&policy)), Ok(policy));
        assert_eq!(parse_policy("{}"), Ok(Policy::default()));
    }

    #[test]
    fn an_error_names_the_line_and_the_field() {
        let err = parse_policy("{\"users\": {\"bob\":\n {\"gpus_max\": -1}}}").unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (2, "users.bob.gpus_max"));
        assert!(err.message.contains("invalid value"), "{err}");
        let err = parse_policy("{\"default\": {\"gpu_max\": 1}}").unwrap_err();
        assert_eq!(err.field, "default.gpu_max");
        assert!(err.to_string().contains("unknown field `gpu_max`"), "{err}");
        let err = parse_policy("{} {}").unwrap_err();
        assert_eq!(err.field, ".");
    }
}
