//! The journal in PostgreSQL (`--store postgres://...`): the same records and snapshots that
//! the data directory holds, in tables, with leadership and fencing in the database itself.
//!
//! Tables, created and migrated at start (`allocate_schema` holds the version):
//! `allocate_leader` (one row: the writer's `epoch`, who it is, its last record),
//! `allocate_journal` (`seq`, `epoch`, `record`: the records after the snapshot) and
//! `allocate_snapshot` (one row: the state after record `seq`).
//!
//! Fencing: a server becomes the writer by taking a session-level advisory lock on its one
//! connection (waiting as a standby while another session holds it), then raising the epoch.
//! Every transaction that writes first updates the leader row `WHERE epoch = <its epoch>`; a
//! server whose epoch was superseded updates nothing, rolls back and stops. That update
//! takes the row's lock, which orders it against a takeover's update: a batch committed
//! before the takeover is read by the new writer's recovery, a later one fails. The
//! argument is in `docs/high-availability.md`.
//!
//! A standby follows the journal meanwhile ([`follow`]): every write notifies
//! [`JOURNAL_CHANNEL`] as it commits, and the standby catches up by sequence number on each
//! notification and at least every [`STANDBY_POLL`], so a missed one costs only latency.

mod follow;

use super::error::JournalError;
use super::recover::Recovered;
use super::store::{encode_snapshot, Store};
use super::{JournalConfig, Waiting};
use allocate_core::{Config, Snapshot};
use follow::Follower;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls, Statement, Transaction};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::{info, warn};

type Result<T> = std::result::Result<T, JournalError>;

/// The schema version this server writes; a database with a newer one is refused.
pub const SCHEMA_VERSION: i32 = 1;
/// The key of the writer's advisory lock: "allocate" in ASCII.
const WRITER_LOCK: i64 = 0x616c_6c6f_6361_7465;
/// How often a standby tries to become the writer, and catches up when no notification came.
const STANDBY_POLL: Duration = Duration::from_millis(200);
/// How often the writer checks its epoch while nothing is written.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The migrations, in order: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &["
CREATE TABLE allocate_leader (
    id integer PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL,
    holder text NOT NULL,
    advertise_url text,
    since timestamptz NOT NULL,
    heartbeat timestamptz NOT NULL,
    last_seq bigint NOT NULL
);
INSERT INTO allocate_leader VALUES (1, 0, '', NULL, now(), now(), 0);
CREATE TABLE allocate_snapshot (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    epoch bigint NOT NULL,
    snapshot text NOT NULL
);
CREATE TABLE allocate_journal (
    seq bigint PRIMARY KEY,
    epoch bigint NOT NULL,
    record text NOT NULL
);
"];

/// The channel every write notifies (delivered when its transaction commits).
const JOURNAL_CHANNEL: &str = "allocate_journal";
/// The most notifications a standby takes at once; those beyond wait for the next round.
const NOTIFICATIONS_MAX: usize = 1024;

/// The check every write makes first: this server's epoch is still the current one. It also
/// notifies the standbys (in the same statement, to save a round trip on every commit).
const FENCE: &str = "UPDATE allocate_leader SET last_seq = $2, heartbeat = now() \
    WHERE id = 1 AND epoch = $1 RETURNING pg_notify($3, '')";
/// A batch of records, as two arrays.
const INSERT: &str = "INSERT INTO allocate_journal (seq, epoch, record) \
    SELECT seq, $2, record FROM unnest($1::bigint[], $3::text[]) AS batch (seq, record)";

/// The journal's tables, written by this server while it is the writer.
pub struct PgStore {
    client: Client,
    epoch: i64,
    /// The sequence number of the next record pushed.
    next: u64,
    seqs: Vec<i64>,
    records: Vec<String>,
    bytes: usize,
    fence: Statement,
    insert: Statement,
    /// The session timeout: past it, the database has ended a silent session.
    session_timeout: Duration,
}

/// The client has no `Debug`; the epoch and the position say what matters.
impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("epoch", &self.epoch)
            .field("next", &self.next)
            .field("pending", &self.seqs.len())
            .finish_non_exhaustive()
    }
}

/// A failure of a statement.
fn pg(action: &'static str) -> impl FnOnce(postgres::Error) -> JournalError {
    move |source| {
        let mut detail = source.to_string();
        let mut cause = std::error::Error::source(&source);
        // A chain is a few links long (client, server or socket); the bound is for safety.
        for _ in 0..8 {
            let Some(e) = cause else { break };
            detail = format!("{detail}: {e}");
            cause = e.source();
        }
        JournalError::Postgres {
            action,
            detail,
            source,
        }
    }
}

/// A sequence number as PostgreSQL's `bigint`.
fn sql_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Connects to `url`, waits to become the writer (as a standby while another server is,
/// telling `waiting` the writer's URL), creates or migrates the tables, raises the epoch
/// (advertising `journal.advertise_url`) and brings the engine it followed meanwhile up to the last
/// record (from the snapshot row and the records after it, when it followed nothing).
/// Blocking.
pub fn open(
    url: &str,
    journal: &JournalConfig,
    config: &Config,
    waiting: &Waiting,
) -> Result<(PgStore, Recovered)> {
    let mut pg_config: postgres::Config = url.parse().map_err(pg("read the URL of"))?;
    pg_config
        .application_name("allocate-http")
        .connect_timeout(CONNECT_TIMEOUT);
    let mut client = pg_config.connect(NoTls).map_err(pg("connect to"))?;
    let mut follower = Follower::new(config);
    wait_to_write(&mut client, waiting, &mut follower)?;
    let locked_at = std::time::Instant::now();
    migrate(&mut client)?;
    let holder = format!("pid {}", std::process::id());
    let epoch: i64 = client
        .query_one(
            "UPDATE allocate_leader SET epoch = epoch + 1, since = now(), heartbeat = now(), \
             holder = coalesce(host(inet_client_addr()), 'local socket') || ' ' || $1, \
             advertise_url = $2 WHERE id = 1 RETURNING epoch",
            &[&holder, &journal.advertise_url],
        )
        .map_err(pg("raise the epoch of"))?
        .get(0);
    waiting.replication.lead(u64::try_from(epoch).unwrap_or(0));
    let followed = follower.applied();
    let recovered = follower.take_over(&mut client)?;
    info!(
        epoch,
        followed,
        replayed = recovered.replayed,
        takeover_ms = locked_at.elapsed().as_millis() as u64,
        "this server is the writer of the store"
    );
    // Only now: the replay above may leave the session idle for long between two statements.
    // From here on the writer's heartbeat keeps it busy. The database ends the session once
    // it is silent this long (a paused or cut off server), in a transaction or not, which
    // frees the lock for a standby.
    let silent_ms = journal.session_timeout.as_millis();
    client
        .batch_execute(&format!(
            "SET idle_session_timeout = {silent_ms}; \
             SET idle_in_transaction_session_timeout = {silent_ms}"
        ))
        .map_err(pg("set the idle timeouts (PostgreSQL 14 or later) on"))?;
    let fence = client
        .prepare(FENCE)
        .map_err(pg("prepare a statement on"))?;
    let insert = client
        .prepare(INSERT)
        .map_err(pg("prepare a statement on"))?;
    let store = PgStore {
        client,
        epoch,
        next: recovered.last_seq + 1,
        seqs: Vec::new(),
        records: Vec::new(),
        bytes: 0,
        fence,
        insert,
        session_timeout: journal.session_timeout,
    };
    Ok((store, recovered))
}

/// Takes the writer's lock, waiting as a standby for as long as another session holds it
/// (that is the standby's job: the wait ends with the writer's session, or when `waiting`
/// is cancelled). Meanwhile `follower` follows the journal, and `waiting` hears the URL the
/// writer advertises.
fn wait_to_write(client: &mut Client, waiting: &Waiting, follower: &mut Follower) -> Result<()> {
    client
        .batch_execute(&format!("LISTEN {JOURNAL_CHANNEL}"))
        .map_err(pg("listen for commits on"))?;
    let mut told = false;
    let mut following = true;
    loop {
        if waiting.cancel.load(Ordering::Relaxed) {
            return Err(JournalError::Cancelled);
        }
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
            .map_err(pg("take the writer's lock of"))?
            .get(0);
        if taken {
            // The writer's own commits would pile up in its client otherwise.
            client
                .batch_execute("UNLISTEN *")
                .map_err(pg("stop listening on"))?;
            let _ = client
                .notifications()
                .iter()
                .take(NOTIFICATIONS_MAX)
                .count();
            return Ok(());
        }
        if !told {
            info!(
                "standby: another allocate-http is the writer of the store; waiting to take over"
            );
            told = true;
        }
        following = follow(client, waiting, follower, following);
        wait_for_commit(client)?;
    }
}

/// One catch-up of a standby; tells `waiting` the writer's URL and how far behind it this
/// server is. A failure to follow is logged when it starts (`following` was true); the
/// follower then starts again from the snapshot, and the takeover recovers in full if it
/// never succeeds. Returns whether it followed.
fn follow(
    client: &mut Client,
    waiting: &Waiting,
    follower: &mut Follower,
    following: bool,
) -> bool {
    let began = std::time::Instant::now();
    match follower.catch_up(client) {
        Ok(position) => {
            if let Some(p) = &position {
                let epoch = u64::try_from(p.epoch).unwrap_or(0);
                waiting
                    .replication
                    .followed(epoch, p.committed, follower.applied(), began);
            }
            // Missing before the first writer created the tables: then nobody is named.
            let leader = position.and_then(|p| p.advertise_url);
            waiting.leader.send_if_modified(|known| {
                let changed = *known != leader;
                *known = leader;
                changed
            });
            true
        }
        Err(e) => {
            if following {
                warn!("standby: cannot follow the journal ({e}); trying again from the snapshot");
            }
            follower.reset();
            false
        }
    }
}

/// Waits for the next commit's notification, at most [`STANDBY_POLL`], then takes every
/// notification that came meanwhile (one catch-up covers them all).
fn wait_for_commit(client: &mut Client) -> Result<()> {
    let mut notifications = client.notifications();
    notifications
        .timeout_iter(STANDBY_POLL)
        .next()
        .map_err(pg("wait for commits on"))?;
    notifications
        .iter()
        .take(NOTIFICATIONS_MAX)
        .count()
        .map_err(pg("wait for commits on"))?;
    Ok(())
}

/// Creates the tables, or brings them to [`SCHEMA_VERSION`], in one transaction.
fn migrate(client: &mut Client) -> Result<()> {
    let mut tx = client.transaction().map_err(pg("begin a transaction on"))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS allocate_schema (version integer NOT NULL)")
        .map_err(pg("create allocate_schema in"))?;
    let found: i32 = tx
        .query_opt("SELECT max(version) FROM allocate_schema", &[])
        .map_err(pg("read the schema version of"))?
        .and_then(|row| row.get(0))
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(JournalError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.batch_execute(sql).map_err(pg("migrate the tables of"))?;
        info!(from, to = from + 1, "migrated the store's tables");
    }
    tx.execute("DELETE FROM allocate_schema", &[])
        .and_then(|_| {
            tx.execute(
                "INSERT INTO allocate_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
        })
        .map_err(pg("record the schema version in"))?;
    tx.commit().map_err(pg("commit the migration to"))
}

impl PgStore {
    /// Runs the fence in `tx`: fails unless this server's epoch is still the current one.
    fn fence(tx: &mut Transaction<'_>, fence: &Statement, epoch: i64, last_seq: u64) -> Result<()> {
        let updated = tx
            .execute(fence, &[&epoch, &sql_seq(last_seq), &JOURNAL_CHANNEL])
            .map_err(pg("check the epoch in"))?;
        if updated == 1 {
            Ok(())
        } else {
            Err(JournalError::Fenced { epoch })
        }
    }
}

impl Store for PgStore {
    fn push(&mut self, json: String) -> Result<()> {
        self.bytes += json.len();
        self.seqs.push(sql_seq(self.next));
        self.records.push(json);
        self.next += 1;
        Ok(())
    }

    fn pending_bytes(&self) -> usize {
        self.bytes
    }

    fn commit(&mut self) -> Result<()> {
        let last = self.next - 1;
        let mut tx = self
            .client
            .transaction()
            .map_err(pg("begin a transaction on"))?;
        Self::fence(&mut tx, &self.fence, self.epoch, last)?;
        tx.execute(&self.insert, &[&self.seqs, &self.epoch, &self.records])
            .map_err(pg("insert journal records into"))?;
        tx.commit().map_err(pg("commit journal records to"))?;
        self.seqs.clear();
        self.records.clear();
        self.bytes = 0;
        Ok(())
    }

    fn compact(&mut self, seq: u64, snapshot: &Snapshot) -> Result<()> {
        let json = encode_snapshot(snapshot)?;
        let mut tx = self
            .client
            .transaction()
            .map_err(pg("begin a transaction on"))?;
        Self::fence(&mut tx, &self.fence, self.epoch, seq)?;
        tx.execute(
            "INSERT INTO allocate_snapshot (id, seq, epoch, snapshot) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, epoch = EXCLUDED.epoch, \
             snapshot = EXCLUDED.snapshot",
            &[&sql_seq(seq), &self.epoch, &json],
        )
        .map_err(pg("write the snapshot to"))?;
        tx.execute(
            "DELETE FROM allocate_journal WHERE seq <= $1",
            &[&sql_seq(seq)],
        )
        .map_err(pg("drop the records the snapshot covers from"))?;
        tx.commit().map_err(pg("commit the snapshot to"))
    }

    fn heartbeat_every(&self) -> Option<Duration> {
        Some(HEARTBEAT_EVERY)
    }

    fn call_max(&self) -> Option<Duration> {
        Some(self.session_timeout)
    }

    fn heartbeat(&mut self) -> Result<()> {
        let updated = self
            .client
            .execute(
                "UPDATE allocate_leader SET heartbeat = now() WHERE id = 1 AND epoch = $1",
                &[&self.epoch],
            )
            .map_err(pg("check the epoch in"))?;
        if updated == 1 {
            Ok(())
        } else {
            Err(JournalError::Fenced { epoch: self.epoch })
        }
    }
}
