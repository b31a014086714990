//! Why the journal cannot be opened, recovered or written; each says what and where.

use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// A failure of the journal or its data directory.
#[derive(Debug, Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`create`, `write`, `sync`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another server holds the data directory.
    #[error(
        "data directory {} is in use by another allocate-http (it holds the lock on {})",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// A file is damaged somewhere other than in a torn last record.
    #[error(
        "{} is damaged at byte {offset}: {why}; refusing to start rather than drop data",
        path.display()
    )]
    Damaged {
        /// The damaged file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong there.
        why: String,
    },
    /// Records between the snapshot and a journal file, or between two journal files, are gone.
    #[error(
        "records {first} to {last} are missing: nothing in {} holds them before {}; refusing to \
         start rather than drop data",
        dir.display(),
        next.display()
    )]
    Missing {
        /// The data directory.
        dir: PathBuf,
        /// The first missing record.
        first: u64,
        /// The last missing record.
        last: u64,
        /// The file that comes after the gap.
        next: PathBuf,
    },
    /// A record that the engine refuses when it is replayed.
    #[error(
        "record {seq} at byte {offset} of {} cannot be replayed: {source}",
        path.display()
    )]
    Replay {
        /// The journal file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
        /// Its sequence number.
        seq: u64,
        /// Why the engine refused it.
        #[source]
        source: allocate_core::Error,
    },
    /// The recovered state does not fit the current settings.
    #[error("the recovered state cannot be rebuilt with the current settings: {source}")]
    Restore {
        /// Why the engine refused it.
        #[source]
        source: allocate_core::Error,
    },
    /// A record or snapshot could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The writer thread ended while the server still needed it.
    #[error("the journal writer stopped unexpectedly")]
    WriterStopped,
}

impl JournalError {
    /// An [`JournalError::Io`] naming the action and the path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| JournalError::Io {
            action,
            path,
            source,
        }
    }
}
