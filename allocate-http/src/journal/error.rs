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
    /// A statement on the PostgreSQL store failed (or the connection to it).
    #[error("cannot {action} the PostgreSQL store: {detail}")]
    Postgres {
        /// What was being done (`connect to`, `read the journal from`, ...).
        action: &'static str,
        /// The client's error and its causes (the server's message, the socket's error),
        /// which its own message leaves out.
        detail: String,
        /// The client's error, with the server's message.
        #[source]
        source: postgres::Error,
    },
    /// Another server became the writer of the PostgreSQL store.
    #[error(
        "another allocate-http became the writer of the store: the epoch of this server \
         ({epoch}) is over, so it must not write again"
    )]
    Fenced {
        /// This server's epoch.
        epoch: i64,
    },
    /// The store's tables were made by a newer allocate-http.
    #[error(
        "the store's schema is version {found}, newer than this allocate-http knows \
         ({known}); run the version that wrote it"
    )]
    SchemaTooNew {
        /// The version in `allocate_schema`.
        found: i32,
        /// The newest version this server knows.
        known: i32,
    },
    /// A row of the PostgreSQL store cannot be read.
    #[error("{what} in the store is damaged: {why}; refusing to start rather than drop data")]
    StoreDamaged {
        /// Which row.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// Records are missing from the PostgreSQL store's journal table.
    #[error(
        "records {first} to {last} are missing from the store's journal table; refusing to \
         start rather than drop data"
    )]
    StoreMissing {
        /// The first missing record.
        first: u64,
        /// The last missing record.
        last: u64,
    },
    /// A record of the PostgreSQL store that the engine refuses when it is replayed.
    #[error("record {seq} in the store cannot be replayed: {source}")]
    ReplayRow {
        /// Its sequence number.
        seq: u64,
        /// Why the engine refused it.
        #[source]
        source: allocate_core::Error,
    },
    /// The server shut down while it waited as a standby.
    #[error("stopped while waiting to become the writer of the store")]
    Cancelled,
    /// The writer thread could not be started.
    #[error("cannot start the journal writer thread: {source}")]
    Spawn {
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The writer thread ended while the server still needed it.
    #[error("the journal writer stopped unexpectedly")]
    WriterStopped,
    /// A call to the store did not return within its limit (the writer's session timeout:
    /// by then the database ended the session, as when the network drops packets silently).
    #[error(
        "a call to the store has not returned for {secs} s, past the session timeout: this \
         server must not write again"
    )]
    Stalled {
        /// How long it had been waiting, in whole seconds.
        secs: u64,
    },
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
