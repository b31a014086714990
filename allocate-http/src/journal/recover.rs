//! Rebuilding the engine from the data directory: the newest snapshot, then every journal
//! record after it, replayed through the engine at the times they were recorded.

use super::error::JournalError;
use super::files::DataDir;
use super::format::{frame_at, read_header, scan, HEADER_BYTES, SEGMENT_MAGIC, SNAPSHOT_MAGIC};
use crate::clock::RandomIds;
use allocate_core::{Config, Engine, Record, Snapshot};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use tracing::{debug, warn};

type Result<T> = std::result::Result<T, JournalError>;

/// The engine as the data directory left it.
#[derive(Debug)]
pub struct Recovered {
    /// The engine after the snapshot and every record (still in the recorded settings).
    pub engine: Engine,
    /// The sequence number of the last record (0 when there is none).
    pub last_seq: u64,
    /// How many records were replayed after the snapshot.
    pub replayed: u64,
}

/// Loads the newest snapshot and replays the journal after it. A torn last record (cut off
/// by a crash mid-write) is removed from its file with a warning; any other damage, or a gap
/// in the records, is an error that names the file and the byte.
pub fn recover(dir: &DataDir, config: &Config) -> Result<Recovered> {
    let listing = dir.list()?;
    let (engine, base) = match listing.snapshots.last() {
        Some((seq, path)) => (load_snapshot(path, *seq)?, *seq),
        None => (Engine::new(config.clone(), Box::new(RandomIds)), 0),
    };
    let mut replay = Replay::new(engine, base);
    let segments = &listing.segments;
    // The segment holding record base + 1 is the last one starting at or before it; earlier
    // ones lie wholly inside the snapshot (a cleanup that did not finish) and are skipped.
    let Some(start) = segments.iter().rposition(|(first, _)| *first <= base + 1) else {
        if let Some((first, path)) = segments.first() {
            return Err(JournalError::Missing {
                dir: dir.path().to_owned(),
                first: base + 1,
                last: first - 1,
                next: path.clone(),
            });
        }
        return Ok(replay.done());
    };
    for (first, path) in &segments[..start] {
        debug!(path = %path.display(), first, "skipping a journal file the snapshot covers");
    }
    let mut expected = segments[start].0;
    for (i, (first, path)) in segments.iter().enumerate().skip(start) {
        if *first != expected {
            return Err(gap(dir, expected, *first, path));
        }
        let count = replay.segment(path, *first, i + 1 == segments.len())?;
        expected = (first + count).max(replay.next);
    }
    Ok(replay.done())
}

/// The error for a segment that does not start where the records before it end.
fn gap(dir: &DataDir, expected: u64, first: u64, path: &Path) -> JournalError {
    if first > expected {
        JournalError::Missing {
            dir: dir.path().to_owned(),
            first: expected,
            last: first - 1,
            next: path.to_owned(),
        }
    } else {
        JournalError::Damaged {
            path: path.to_owned(),
            offset: 8,
            why: format!(
                "it starts at record {first}, inside the records before it (which run to {})",
                expected - 1
            ),
        }
    }
}

/// A replay in progress.
pub struct Replay {
    engine: Engine,
    /// The sequence number of the next record to apply.
    next: u64,
    replayed: u64,
}

impl Replay {
    /// A replay over `engine`, the state after record `base`.
    pub fn new(engine: Engine, base: u64) -> Replay {
        Replay {
            engine,
            next: base + 1,
            replayed: 0,
        }
    }

    /// The sequence number of the next record to apply.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Applies record `seq`, the next one; what the engine would say goes nowhere (nobody
    /// is connected yet).
    pub fn apply(
        &mut self,
        seq: u64,
        record: &Record,
    ) -> std::result::Result<(), allocate_core::Error> {
        self.engine.apply(record)?;
        while self.engine.poll_output().is_some() {}
        drop(self.engine.take_records());
        self.next = seq + 1;
        self.replayed += 1;
        Ok(())
    }

    /// Applies the records of one segment that come after what is applied; returns how many
    /// records the segment holds. In the last segment a torn last record is cut off.
    fn segment(&mut self, path: &PathBuf, first: u64, last: bool) -> Result<u64> {
        let bytes = fs::read(path).map_err(JournalError::io("read", path))?;
        let damaged = |offset: usize, why: String| JournalError::Damaged {
            path: path.clone(),
            offset: offset as u64,
            why,
        };
        if last && bytes.len() < HEADER_BYTES {
            // Created, but its header never reached the disk: it holds nothing.
            warn!(path = %path.display(), bytes = bytes.len(), "journal file with a torn header holds no records; it is replaced");
            return Ok(0);
        }
        let named = read_header(&bytes, SEGMENT_MAGIC).map_err(|why| damaged(0, why))?;
        if named != first {
            return Err(damaged(
                8,
                format!("its header says it starts at record {named}, its name says {first}"),
            ));
        }
        let found = scan(&bytes, last).map_err(|d| damaged(d.offset, d.why))?;
        for ((offset, payload), seq) in found.records.iter().zip(first..) {
            if seq < self.next {
                continue;
            }
            let record = Record::from_stored(&bytes[payload.clone()]).map_err(|e| {
                damaged(
                    *offset,
                    format!("record {seq} is intact but cannot be read: {e}"),
                )
            })?;
            self.apply(seq, &record)
                .map_err(|source| JournalError::Replay {
                    path: path.clone(),
                    offset: *offset as u64,
                    seq,
                    source,
                })?;
        }
        if let Some((offset, why)) = found.torn {
            cut(path, offset, bytes.len() - offset, &why)?;
        }
        Ok(found.records.len() as u64)
    }

    /// The engine after every record applied.
    pub fn done(self) -> Recovered {
        Recovered {
            engine: self.engine,
            last_seq: self.next - 1,
            replayed: self.replayed,
        }
    }
}

/// Removes a torn last record: the file ends where the record started.
fn cut(path: &Path, offset: usize, len: usize, why: &str) -> Result<()> {
    warn!(
        "journal {}: cut off a torn last record at byte {offset} ({len} bytes, {why}); a crash \
         interrupted its write, so it was never acknowledged",
        path.display()
    );
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(JournalError::io("open", path))?;
    file.set_len(offset as u64)
        .and_then(|()| file.sync_all())
        .map_err(JournalError::io("truncate", path))
}

/// The engine in the state of the snapshot at `path`, which covers records up to `seq`.
fn load_snapshot(path: &Path, seq: u64) -> Result<Engine> {
    let bytes = fs::read(path).map_err(JournalError::io("read", path))?;
    let damaged = |offset: usize, why: String| JournalError::Damaged {
        path: path.to_owned(),
        offset: offset as u64,
        why,
    };
    let named = read_header(&bytes, SNAPSHOT_MAGIC).map_err(|why| damaged(0, why))?;
    if named != seq {
        return Err(damaged(
            8,
            format!("its header says it follows record {named}, its name says {seq}"),
        ));
    }
    let (payload, end) =
        frame_at(&bytes, HEADER_BYTES, usize::MAX).map_err(|why| damaged(HEADER_BYTES, why))?;
    if end != bytes.len() {
        return Err(damaged(
            end,
            "unexpected bytes after the snapshot".to_owned(),
        ));
    }
    let snapshot = Snapshot::from_stored(&bytes[payload])
        .map_err(|e| damaged(HEADER_BYTES, format!("the snapshot cannot be read: {e}")))?;
    Engine::restore(&snapshot, Box::new(RandomIds))
        .map_err(|e| damaged(HEADER_BYTES, e.to_string()))
}
