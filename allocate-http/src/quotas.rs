//! The policy file (`--policy-file`): the quotas, read at start and again on SIGHUP.
//!
//! The file is the policy's JSON ([`allocate_core::wire::policy`], which reads it); the rule
//! that combines its limits is the engine's (`allocate_core::Policy`).
//!
//! A group's members are those the file lists and the usernames of the user tokens whose
//! `groups=` names it (tokens file, `auth::tokens`). The server merges the two into the policy
//! it hands the engine ([`allocate_core::Policy::with_members`]) whenever either file is read, so the journal
//! records the merged policy and a replay decides the same without the tokens file.

use allocate_core::wire::{parse_policy, PolicyError};
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
    #[error("policy file {path}, {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where, and what is wrong.
        source: PolicyError,
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
    parse_policy(&text).map_err(|source| PolicyFileError::Invalid {
        path: path.to_owned(),
        source,
    })
}
