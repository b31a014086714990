//! The policy file (`--policy-file`): the quotas, read at start and again on SIGHUP.
//!
//! A JSON object with three optional members, each limit optional (absent: no limit):
//! `{"default": LIMITS, "groups": {"NAME": {"members": ["user", ...], "limits": LIMITS}},
//! "users": {"USERNAME": LIMITS}}` where `LIMITS` is `{"allocations_max": 2,
//! "resources_max": 4, "gpus_max": 8, "lease_secs_max": 86400}`. The rule that combines them
//! is the engine's (`allocate_core::Policy`).
//!
//! A group's members are those the file lists and the usernames of the user tokens whose
//! `groups=` names it (tokens file, `auth::tokens`). The server merges the two into the policy
//! it hands the engine ([`allocate_core::Policy::with_members`]) whenever either file is read, so the journal
//! records the merged policy and a replay decides the same without the tokens file.

use allocate_core::Policy;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::watch;

/// Why a policy file cannot be used.
#[derive(Debug, Error)]
pub enum PolicyFileError {
    /// The file cannot be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("policy file {path}, line {line}, field {field}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Where in the document, such as `users.ann.gpus_max` (`.` for the whole).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The policy of a file that [`PolicyFile::reload`] reads again; clones share it.
#[derive(Clone, Debug)]
pub struct PolicyFile {
    path: PathBuf,
    /// The policy last read; the server hands each new one to the engine.
    policy: Arc<watch::Sender<Policy>>,
}

impl PartialEq for PolicyFile {
    fn eq(&self, other: &PolicyFile) -> bool {
        self.path == other.path && *self.policy.borrow() == *other.policy.borrow()
    }
}

impl Eq for PolicyFile {}

impl PolicyFile {
    /// Reads the policy file at `path`.
    pub fn load(path: &Path) -> Result<PolicyFile, PolicyFileError> {
        Ok(PolicyFile {
            path: path.to_owned(),
            policy: Arc::new(watch::Sender::new(read_file(path)?)),
        })
    }

    /// Reads the file again and, if it is valid, hands it to the engine; on an error the
    /// policy loaded before stays.
    pub fn reload(&self) -> Result<(), PolicyFileError> {
        let policy = read_file(&self.path)?;
        self.policy.send_replace(policy);
        Ok(())
    }

    /// The policy, now and after every reload (the server hands each to the engine).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Policy> {
        self.policy.subscribe()
    }
}

/// Reads and parses the policy file at `path`.
fn read_file(path: &Path) -> Result<Policy, PolicyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|(line, field, message)| PolicyFileError::Invalid {
        path: path.to_owned(),
        line,
        field,
        message,
    })
}

/// Parses a policy; an error gives the line, the field and what is wrong.
fn parse(text: &str) -> Result<Policy, (usize, String, String)> {
    let mut json = serde_json::Deserializer::from_str(text);
    let policy: Policy = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        (inner.line(), field, inner.to_string())
    })?;
    json.end()
        .map_err(|e| (e.line(), ".".to_owned(), e.to_string()))?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_reads_and_a_bad_one_names_the_line_and_field() {
        let text = r#"{
  "default": {"allocations_max": 2},
  "groups": {"students": {"members": ["ann"], "limits": {"gpus_max": 1}}},
  "users": {"bob": {"lease_secs_max": 600}}
}"#;
        let policy = parse(text).unwrap();
        assert_eq!(policy.default.allocations_max, Some(2));
        assert_eq!(policy.groups["students"].limits.gpus_max, Some(1));
        assert_eq!(policy.users["bob"].lease_secs_max, Some(600));
        let (line, field, message) =
            parse("{\"users\": {\n  \"ann\": {\"gpus_max\": \"two\"}}}").unwrap_err();
        assert_eq!((line, field.as_str()), (2, "users.ann.gpus_max"));
        assert!(message.contains("invalid type"), "{message}");
        let (line, field, message) = parse("{\"default\":\n {\"gpu_max\": 1}}").unwrap_err();
        assert_eq!((line, field.as_str()), (2, "default.gpu_max"));
        assert!(message.contains("unknown field `gpu_max`"), "{message}");
    }
}
