//! A standby's warm engine: it applies the journal's records as they are committed, so that
//! taking over replays only the records committed since its last catch-up, not everything
//! since the snapshot. The writer's cold recovery is the same catch-up from nothing.
//!
//! A catch-up reads the leader row, the snapshot row and the records after what is applied
//! in one `REPEATABLE READ` transaction, so all three are of one moment. The engine is
//! reloaded from the snapshot row when the journal was compacted past what is applied, or
//! when the snapshot is of another epoch than the one loaded: each writer starts with a
//! snapshot of the state it settled (agents disconnected, leases expired) that no record
//! holds, and its records follow from that state.

use super::{pg, sql_seq};
use crate::clock::RandomIds;
use crate::journal::error::JournalError;
use crate::journal::recover::{Recovered, Replay};
use allocate_core::{Config, Engine, Record, Snapshot};
use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, Transaction};

type Result<T> = std::result::Result<T, JournalError>;

/// The most records one query of a catch-up reads.
const PAGE_ROWS: i64 = 1000;

/// The store's leader as one catch-up saw it.
#[derive(Debug)]
pub struct Position {
    /// The leader's epoch.
    pub epoch: i64,
    /// The last record the leader committed.
    pub committed: u64,
    /// The URL the leader advertises.
    pub advertise_url: Option<String>,
    /// How many records this catch-up applied (after the snapshot, when it reloaded one).
    pub applied: u64,
}

/// An engine kept as the journal in the store leaves it.
pub struct Follower {
    config: Config,
    /// `None` until the first catch-up.
    replay: Option<Replay>,
    /// The epoch of the snapshot the engine was loaded from.
    snapshot_epoch: i64,
}

impl Follower {
    /// A follower that has applied nothing yet; a new engine takes `config`.
    pub fn new(config: &Config) -> Follower {
        Follower {
            config: config.clone(),
            replay: None,
            snapshot_epoch: -1,
        }
    }

    /// The last record applied (0 before any).
    pub fn applied(&self) -> u64 {
        self.replay.as_ref().map_or(0, |r| r.next() - 1)
    }

    /// Forgets the engine: the next catch-up starts again from the snapshot row.
    pub fn reset(&mut self) {
        self.replay = None;
    }

    /// Applies what the store committed since the last catch-up; `None` while the tables do
    /// not exist yet (the first writer has not created them).
    pub fn catch_up(&mut self, client: &mut Client) -> Result<Option<Position>> {
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(pg("begin a transaction on"))?;
        let leader = match tx.query_opt(
            "SELECT epoch, last_seq, advertise_url FROM allocate_leader WHERE id = 1",
            &[],
        ) {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => return Ok(None),
            Err(e) => return Err(pg("read the leader row of")(e)),
        };
        let replay = self.base(&mut tx)?;
        let applied = apply_records(&mut tx, replay)?;
        tx.commit().map_err(pg("end a transaction on"))?;
        Ok(Some(Position {
            epoch: leader.get(0),
            committed: u64::try_from(leader.get::<_, i64>(1)).unwrap_or(0),
            advertise_url: leader.get(2),
            applied,
        }))
    }

    /// Catches up a last time, as the new writer (whose epoch is raised, so nothing more
    /// can be committed by anyone else): the engine after every committed record; its
    /// `replayed` counts the records this last catch-up applied. Fewer records than the
    /// leader row says were committed is an error.
    pub fn take_over(mut self, client: &mut Client) -> Result<Recovered> {
        let (Some(position), Some(replay)) = (self.catch_up(client)?, self.replay) else {
            return Err(JournalError::StoreDamaged {
                what: "the leader row".to_owned(),
                why: "it is missing".to_owned(),
            });
        };
        if position.committed >= replay.next() {
            return Err(JournalError::StoreMissing {
                first: replay.next(),
                last: position.committed,
            });
        }
        Ok(Recovered {
            replayed: position.applied,
            ..replay.done()
        })
    }

    /// The replay to continue: the one kept, or a new one from the snapshot row (or from
    /// nothing when there is none) where the kept one cannot continue.
    fn base(&mut self, tx: &mut Transaction<'_>) -> Result<&mut Replay> {
        let row = tx
            .query_opt("SELECT seq, epoch FROM allocate_snapshot WHERE id = 1", &[])
            .map_err(pg("read the snapshot from"))?;
        let snapshot: Option<(i64, i64)> = row.map(|row| (row.get(0), row.get(1)));
        let stale = match (&self.replay, snapshot) {
            (None, _) => true,
            (Some(replay), Some((seq, epoch))) => {
                sql_seq(replay.next()) <= seq || epoch != self.snapshot_epoch
            }
            (Some(_), None) => false,
        };
        let replay = match (self.replay.take(), snapshot) {
            (Some(kept), _) if !stale => kept,
            (_, Some((seq, epoch))) => {
                self.snapshot_epoch = epoch;
                Replay::new(load_snapshot(tx, seq)?, u64::try_from(seq).unwrap_or(0))
            }
            (_, None) => Replay::new(Engine::new(self.config.clone(), Box::new(RandomIds)), 0),
        };
        Ok(self.replay.insert(replay))
    }
}

/// The engine in the state of the snapshot row, which follows record `seq`.
fn load_snapshot(tx: &mut Transaction<'_>, seq: i64) -> Result<Engine> {
    let row = tx
        .query_one("SELECT snapshot FROM allocate_snapshot WHERE id = 1", &[])
        .map_err(pg("read the snapshot from"))?;
    let damaged = |why: String| JournalError::StoreDamaged {
        what: format!("the snapshot row (after record {seq})"),
        why,
    };
    let snapshot = Snapshot::from_stored(row.get::<_, &str>(0).as_bytes())
        .map_err(|e| damaged(e.to_string()))?;
    Engine::restore(&snapshot, Box::new(RandomIds)).map_err(|e| damaged(e.to_string()))
}

/// Applies every record after what `replay` applied, in order; returns how many. A gap is
/// an error. Bounded by the records between two snapshots (`--snapshot-every-records`),
/// read [`PAGE_ROWS`] at a time.
fn apply_records(tx: &mut Transaction<'_>, replay: &mut Replay) -> Result<u64> {
    let mut applied = 0;
    loop {
        let rows = tx
            .query(
                "SELECT seq, record FROM allocate_journal WHERE seq >= $1 ORDER BY seq LIMIT $2",
                &[&sql_seq(replay.next()), &PAGE_ROWS],
            )
            .map_err(pg("read the journal from"))?;
        let full = rows.len() as i64 == PAGE_ROWS;
        for row in rows {
            let seq = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
            if seq != replay.next() {
                return Err(JournalError::StoreMissing {
                    first: replay.next(),
                    last: seq.saturating_sub(1),
                });
            }
            let record = Record::from_stored(row.get::<_, &str>(1).as_bytes()).map_err(|e| {
                JournalError::StoreDamaged {
                    what: format!("journal row {seq}"),
                    why: format!("it cannot be read: {e}"),
                }
            })?;
            replay
                .apply(seq, &record)
                .map_err(|source| JournalError::ReplayRow { seq, source })?;
            applied += 1;
        }
        if !full {
            return Ok(applied);
        }
    }
}
