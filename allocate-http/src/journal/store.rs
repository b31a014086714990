//! Where the journal keeps its records and snapshots: the data directory ([`DirStore`]) or
//! PostgreSQL ([`super::postgres::PgStore`]). The writer thread ([`super::writer`]) owns one
//! and drives it the same way for both: records are pushed one by one, then committed
//! together (one sync, or one transaction), and a snapshot replaces everything before it.

use super::error::JournalError;
use super::files::{snapshot_contents, DataDir};
use super::format::push_frame;
use allocate_core::Snapshot;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tracing::{debug, warn};

type Result<T> = std::result::Result<T, JournalError>;

/// A place that makes journal records and snapshots durable, driven by the writer thread.
pub trait Store: Send + std::fmt::Debug {
    /// Takes the next record (JSON), to be made durable by the next [`Store::commit`].
    fn push(&mut self, json: String) -> Result<()>;
    /// Bytes pushed and not yet committed.
    fn pending_bytes(&self) -> usize;
    /// Makes every record pushed durable, all together; `Ok` only once they are.
    fn commit(&mut self) -> Result<()>;
    /// Stores `snapshot`, the state after record `seq` (everything pushed is committed), and
    /// drops the records it covers.
    fn compact(&mut self, seq: u64, snapshot: &Snapshot) -> Result<()>;
    /// How often [`Store::heartbeat`] must run while nothing is written (`None`: never).
    fn heartbeat_every(&self) -> Option<Duration> {
        None
    }
    /// Checks, while idle, that this server may still write; an error stops the journal.
    fn heartbeat(&mut self) -> Result<()> {
        Ok(())
    }
    /// How long one call may take before the journal stops, its call left behind (`None`:
    /// any).
    fn call_max(&self) -> Option<Duration> {
        None
    }
}

/// The journal in the data directory: segment files of frames, synced with `fdatasync`.
#[derive(Debug)]
pub struct DirStore {
    dir: DataDir,
    segment: File,
    segment_path: PathBuf,
    buf: Vec<u8>,
}

impl DirStore {
    /// A store appending to `segment`, the segment that follows record `last_seq`.
    pub fn new(dir: DataDir, segment: File, last_seq: u64) -> DirStore {
        DirStore {
            segment_path: dir.segment_path(last_seq + 1),
            dir,
            segment,
            buf: Vec::new(),
        }
    }
}

impl Store for DirStore {
    fn push(&mut self, json: String) -> Result<()> {
        push_frame(&mut self.buf, json.as_bytes()).ok_or_else(|| too_big("a journal record"))
    }

    fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    fn commit(&mut self) -> Result<()> {
        self.segment
            .write_all(&self.buf)
            .map_err(JournalError::io("write", &self.segment_path))?;
        self.segment
            .sync_data()
            .map_err(JournalError::io("sync", &self.segment_path))?;
        self.buf.clear();
        Ok(())
    }

    fn compact(&mut self, seq: u64, snapshot: &Snapshot) -> Result<()> {
        self.segment = compact(&self.dir, seq, snapshot)?;
        self.segment_path = self.dir.segment_path(seq + 1);
        Ok(())
    }
}

/// Writes the snapshot that follows record `seq`, starts the segment that follows it, and
/// removes the files they replace; returns the new segment, open for appending.
///
/// Errors before the new segment exists leave the old files in charge; once it exists,
/// every later record must go there (recovery reads from the newest segment that starts at
/// or before the snapshot), which is why a failure here stops the journal.
pub fn compact(dir: &DataDir, seq: u64, snapshot: &Snapshot) -> Result<File> {
    dir.write_snapshot(seq, &snapshot_file(seq, snapshot)?)?;
    let segment = dir.create_segment(seq + 1)?;
    match dir.remove_before(seq, seq + 1) {
        Ok(removed) => debug!(removed, "removed journal files the snapshot replaces"),
        // Leftovers are skipped by recovery and removed by the next snapshot.
        Err(e) => warn!("{e}"),
    }
    Ok(segment)
}

/// The bytes of the snapshot file of `snapshot`, the state after record `seq`.
pub fn snapshot_file(seq: u64, snapshot: &Snapshot) -> Result<Vec<u8>> {
    let json = encode_snapshot(snapshot)?;
    let mut framed = Vec::with_capacity(json.len() + 8);
    push_frame(&mut framed, json.as_bytes()).ok_or_else(|| too_big("a snapshot"))?;
    Ok(snapshot_contents(seq, &framed))
}

/// A snapshot as JSON.
pub fn encode_snapshot(snapshot: &Snapshot) -> Result<String> {
    snapshot.to_stored().map_err(|source| JournalError::Encode {
        what: "a snapshot",
        source,
    })
}

/// The error for something over the frame format's 4 GiB.
fn too_big(what: &'static str) -> JournalError {
    JournalError::Encode {
        what,
        source: serde::ser::Error::custom("it is over 4 GiB"),
    }
}
