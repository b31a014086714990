//! The write-ahead journal: every input the engine accepts is appended to a store (files in
//! the data directory, or tables in PostgreSQL) and made durable before anything it caused
//! is shown to anyone; periodic snapshots compact it; on start the engine is rebuilt from
//! the newest snapshot and the records after it. `docs/durability.md` describes the files
//! and the recovery rules, `docs/high-availability.md` the PostgreSQL store.
//!
//! The engine task stays non-blocking: it hands records to the writer thread
//! ([`writer`]), which commits them to the [`store::Store`] in batches (group commit) and
//! publishes how far the journal is durable; the engine task holds outputs and replies back
//! ([`Holdback`]) until then.

mod error;
mod files;
mod format;
mod hold;
mod postgres;
mod recover;
mod store;
#[cfg(test)]
pub(crate) mod tests;
mod writer;

pub use error::JournalError;
pub use hold::Holdback;

use crate::clock::{self, RandomIds};
use crate::events;
use crate::metrics::{Histogram, Replication};
use allocate_core::{AllocationState, Config, Engine, Output, Record, Snapshot, Timestamp};
use files::DataDir;
use recover::Recovered;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;
use store::{DirStore, Store};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};
use uuid::Uuid;
use writer::{Command, Writer};

/// Where the journal keeps its records and snapshots.
#[derive(Clone, PartialEq, Eq)]
pub enum JournalStore {
    /// A data directory (created `0700` when missing), one server at a time.
    Dir(PathBuf),
    /// A PostgreSQL database, by its `postgres://` URL: one writer, the others wait.
    Postgres(String),
}

/// Never shows a password of the URL.
impl std::fmt::Debug for JournalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JournalStore::Dir(dir) => f.debug_tuple("Dir").field(dir).finish(),
            JournalStore::Postgres(url) => match url.parse::<::postgres::Config>() {
                Ok(config) => f.debug_tuple("Postgres").field(&config).finish(),
                Err(_) => f.write_str("Postgres(<an invalid URL>)"),
            },
        }
    }
}

/// Where the journal lives and how often it is compacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// The store of records and snapshots.
    pub store: JournalStore,
    /// A snapshot is written after this many records.
    pub snapshot_every_records: u64,
    /// ... or this long after the last one, when anything was recorded since.
    pub snapshot_every: Duration,
    /// The URL this server is reached at, which standbys name while it is the writer.
    pub advertise_url: Option<String>,
    /// With PostgreSQL: the database ends the writer's session once it is silent this long.
    pub session_timeout: Duration,
}

/// A server waiting to become the writer of a PostgreSQL store, and the HTTP layer answering
/// for it meanwhile.
#[derive(Clone, Debug)]
pub struct Waiting {
    /// The URL the writer advertises, as last read from the store.
    pub leader: watch::Sender<Option<String>>,
    /// Set when the server shuts down: the wait ends with [`JournalError::Cancelled`].
    pub cancel: Arc<AtomicBool>,
    /// The role, leader changes and lag, for `/metrics`.
    pub replication: Arc<Replication>,
}

impl Default for Waiting {
    fn default() -> Self {
        Waiting {
            leader: watch::channel(None).0,
            cancel: Arc::default(),
            replication: Arc::default(),
        }
    }
}

impl JournalConfig {
    /// Records between snapshots by default.
    pub const SNAPSHOT_EVERY_RECORDS: u64 = 100_000;
    /// Seconds between snapshots by default.
    pub const SNAPSHOT_EVERY_SECS: u64 = 600;
    /// Seconds of silence after which PostgreSQL ends the writer's session, by default.
    pub const SESSION_TIMEOUT_SECS: u64 = 10;

    /// A journal in `dir`, snapshotting at the default intervals.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_store(JournalStore::Dir(dir.into()))
    }

    /// A journal in `store`, snapshotting at the default intervals.
    pub fn with_store(store: JournalStore) -> Self {
        JournalConfig {
            store,
            snapshot_every_records: Self::SNAPSHOT_EVERY_RECORDS,
            snapshot_every: Duration::from_secs(Self::SNAPSHOT_EVERY_SECS),
            advertise_url: None,
            session_timeout: Duration::from_secs(Self::SESSION_TIMEOUT_SECS),
        }
    }
}

/// A consistent copy of the server's state: a snapshot file of the data directory, which
/// a server started on a directory holding only it restores (`POST /admin/backup`).
#[derive(Clone, Debug)]
pub struct Backup {
    /// The name it takes in a data directory (`snapshot-<seq>.snap`).
    pub file_name: String,
    /// The file's bytes.
    pub contents: Vec<u8>,
}

/// The backup of `snapshot`, the state after record `seq` (0: a server in memory).
pub fn backup(seq: u64, snapshot: &Snapshot) -> Result<Backup, JournalError> {
    Ok(Backup {
        file_name: files::snapshot_name(seq),
        contents: store::snapshot_file(seq, snapshot)?,
    })
}

/// How far the journal is on disk, as the writer publishes it.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Every record up to this sequence number is on disk.
    pub durable: u64,
    /// Set when writing failed: nothing more will become durable.
    pub failed: Option<Arc<JournalError>>,
}

/// The engine task's end of the journal.
#[derive(Debug)]
pub struct Journal {
    commands: mpsc::Sender<Command>,
    progress: watch::Receiver<Progress>,
    thread: thread::JoinHandle<()>,
    /// How long each group commit took, as the writer observes it.
    commit_time: Arc<Histogram>,
    /// The sequence number of the last record appended.
    appended: u64,
    since_snapshot: u64,
    snapshot_at: Instant,
    config: JournalConfig,
}

/// Opens the store, rebuilds the engine from it (see [`recover::recover`] and
/// [`postgres::open`]), and settles what the restart changed: every agent is disconnected
/// (its resources show `offline` until it reconnects), every request still waiting lost its
/// client and is cancelled, and leases that ended while the server was down expire now.
/// That state is written as a snapshot before anything is served, so the journal starts
/// afresh from it. With PostgreSQL, the wait as a standby is reported through `waiting`.
/// Blocking: call it off the async runtime.
pub fn open(
    config: &JournalConfig,
    engine_config: &Config,
    waiting: &Waiting,
) -> Result<(Engine, Journal), JournalError> {
    let started = std::time::Instant::now();
    let engine_config = Config {
        record_inputs: true,
        ..engine_config.clone()
    };
    let (engine, store, restarted) = match &config.store {
        JournalStore::Dir(path) => {
            let dir = DataDir::open(path)?;
            let recovered = recover::recover(&dir, &engine_config)?;
            let (engine, restarted) = restart(recovered, engine_config)?;
            let seq = restarted.last_seq;
            let segment = store::compact(&dir, seq, &engine.snapshot())?;
            let store: Box<dyn Store> = Box::new(DirStore::new(dir, segment, seq));
            (engine, store, restarted)
        }
        JournalStore::Postgres(url) => {
            let (mut store, recovered) = postgres::open(url, config, &engine_config, waiting)?;
            let (engine, restarted) = restart(recovered, engine_config)?;
            store.compact(restarted.last_seq, &engine.snapshot())?;
            let store: Box<dyn Store> = Box::new(store);
            (engine, store, restarted)
        }
    };
    info!(
        store = ?config.store,
        last_record = restarted.last_seq,
        replayed = restarted.replayed,
        ms = started.elapsed().as_millis() as u64,
        agents_offline = restarted.online,
        requests_cancelled = restarted.cancelled,
        leases_expired = restarted.expired,
        "journal recovered"
    );
    let journal = Journal::start(store, restarted.last_seq, config)?;
    Ok((engine, journal))
}

/// What recovery found and what settling after the restart did.
struct Restarted {
    last_seq: u64,
    replayed: u64,
    online: usize,
    cancelled: usize,
    expired: usize,
}

/// The recovered engine under the current settings, settled at the current time.
fn restart(recovered: Recovered, config: Config) -> Result<(Engine, Restarted), JournalError> {
    let (mut engine, online) = with_config(&recovered.engine, config)?;
    let settled = settle(&mut engine, &online, clock::now());
    let restarted = Restarted {
        last_seq: recovered.last_seq,
        replayed: recovered.replayed,
        online: online.len(),
        cancelled: settled.cancelled,
        expired: settled.expired,
    };
    Ok((engine, restarted))
}

/// The engine in the same state under the current settings (a restart may change them; the
/// records before it were replayed under the settings they were made with), and the agents
/// that were online.
fn with_config(engine: &Engine, config: Config) -> Result<(Engine, Vec<Uuid>), JournalError> {
    let mut snapshot = engine.snapshot();
    snapshot.config = config;
    let online = snapshot
        .agents
        .iter()
        .filter(|a| a.online)
        .map(|a| a.agent_id)
        .collect();
    let engine = Engine::restore(&snapshot, Box::new(RandomIds))
        .map_err(|source| JournalError::Restore { source })?;
    Ok((engine, online))
}

/// What settling after a restart did.
struct Settled {
    cancelled: usize,
    expired: usize,
}

/// Applies what the restart means to the engine at `now` (see [`open`]).
fn settle(engine: &mut Engine, online: &[Uuid], now: Timestamp) -> Settled {
    for &agent_id in online {
        if let Err(e) = engine.disconnect_agent(now, agent_id) {
            warn!(%agent_id, "marking the agent disconnected after the restart: {e}");
        }
    }
    let cancelled = cancel_waiting(engine, now);
    engine.handle_timeout(now);
    let mut expired = 0;
    while let Some(output) = engine.poll_output() {
        if matches!(output, Output::Expired { .. }) {
            events::log(&output);
            expired += 1;
        }
    }
    // The snapshot written next holds all of this.
    drop(engine.take_records());
    Settled { cancelled, expired }
}

/// Cancels every request still waiting (its client's socket closed with the old server);
/// returns how many there were.
fn cancel_waiting(engine: &mut Engine, now: Timestamp) -> usize {
    let waiting: Vec<Uuid> = engine
        .allocations()
        .into_iter()
        .filter(|a| {
            matches!(
                a.state,
                AllocationState::Queued | AllocationState::Provisioning
            )
        })
        .map(|a| a.allocation_id)
        .collect();
    for &id in &waiting {
        if let Err(e) = engine.client_gone(now, id) {
            warn!(allocation_id = %id, "cancelling a request after the restart: {e}");
        }
    }
    waiting.len()
}

impl Journal {
    /// Starts the writer thread on `store`, whose last record is `seq`.
    fn start(
        store: Box<dyn Store>,
        seq: u64,
        config: &JournalConfig,
    ) -> Result<Journal, JournalError> {
        let commit_time = Arc::new(Histogram::new(Histogram::SERVE_BUCKETS_SECS));
        let (commands, commands_rx) = mpsc::channel();
        let (progress_tx, progress) = watch::channel(Progress {
            durable: seq,
            failed: None,
        });
        let writer = Writer::new(store, seq, progress_tx, Arc::clone(&commit_time));
        let thread = thread::Builder::new()
            .name("allocate-journal".into())
            .spawn(move || writer.run(commands_rx))
            .map_err(|source| JournalError::Spawn { source })?;
        Ok(Journal {
            commands,
            progress,
            thread,
            commit_time,
            appended: seq,
            since_snapshot: 0,
            snapshot_at: Instant::now(),
            config: config.clone(),
        })
    }

    /// Hands records to the writer; returns the sequence number of the last one.
    pub fn append(&mut self, records: Vec<Record>) -> u64 {
        let n = records.len() as u64;
        if n > 0 {
            // A send fails only when the writer has stopped (it publishes why). The records
            // still count as appended: what depends on them must wait, for ever.
            let _ = self.commands.send(Command::Append(records));
            self.appended += n;
            self.since_snapshot += n;
        }
        self.appended
    }

    /// The histogram of group commit durations (`allocate_journal_commit_seconds`).
    pub fn commit_time(&self) -> Arc<Histogram> {
        Arc::clone(&self.commit_time)
    }

    /// The sequence number of the last record appended.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    /// Where the writer publishes its progress.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Whether enough was recorded, or enough time passed, for a snapshot.
    pub fn snapshot_due(&self) -> bool {
        self.since_snapshot > 0
            && (self.since_snapshot >= self.config.snapshot_every_records
                || self.snapshot_at.elapsed() >= self.config.snapshot_every)
    }

    /// Asks the writer to store `snapshot`, the state after the last record appended.
    pub fn snapshot(&mut self, snapshot: Snapshot) {
        let _ = self
            .commands
            .send(Command::Snapshot(self.appended, Box::new(snapshot)));
        self.since_snapshot = 0;
        self.snapshot_at = Instant::now();
    }

    /// Lets the writer finish what it was given, and waits until it has (and released the
    /// data directory, or its session on the database).
    pub async fn close(self) {
        let Journal {
            commands,
            thread,
            progress,
            ..
        } = self;
        drop(commands);
        let stalled = matches!(
            progress.borrow().failed.as_deref(),
            Some(JournalError::Stalled { .. })
        );
        // A writer left behind in a call that may never return is not waited for.
        if !stalled {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
