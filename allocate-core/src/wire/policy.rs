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

/// Why a text (or a JSON value) is not a policy: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{}field {field}: {message}", line.map_or(String::new(), |l| format!("line {l}, ")))]
pub struct PolicyError {
    /// 1-based line number in the text (`None` for a value, which has no lines).
    pub line: Option<usize>,
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
            line: Some(inner.line()),
            field,
            message: inner.to_string(),
        }
    })?;
    json.end().map_err(|e| PolicyError {
        line: Some(e.line()),
        field: ".".to_owned(),
        message: e.to_string(),
    })?;
    Ok(policy)
}

/// Reads a policy from a JSON value already parsed (the Python binding's dict); an error names
/// the field, and no line.
pub fn policy_from_value(value: serde_json::Value) -> Result<Policy, PolicyError> {
    serde_path_to_error::deserialize(value).map_err(|e| PolicyError {
        line: None,
        field: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
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
        assert_eq!(
            (err.line, err.field.as_str()),
            (Some(2), "users.bob.gpus_max")
        );
        assert!(err.message.contains("invalid value"), "{err}");
        let err = parse_policy("{\"default\": {\"gpu_max\": 1}}").unwrap_err();
        assert_eq!(err.field, "default.gpu_max");
        assert!(err.to_string().contains("unknown field `gpu_max`"), "{err}");
        let err = parse_policy("{} {}").unwrap_err();
        assert_eq!(err.field, ".");
    }

    #[test]
    fn a_value_reads_as_its_text_does_and_an_error_names_the_field_alone() {
        let text = "{\"default\": {\"gpus_max\": 2}, \"users\": {\"bob\": {}}}";
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(policy_from_value(value), parse_policy(text));
        let value = serde_json::json!({"users": {"bob": {"gpus_max": -1}}});
        let err = policy_from_value(value).unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (None, "users.bob.gpus_max"));
        assert!(
            err.to_string()
                .starts_with("field users.bob.gpus_max: invalid value"),
            "{err}"
        );
        assert!(!err.to_string().contains("line"), "{err}");
    }
}
