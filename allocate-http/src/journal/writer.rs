//! The writer thread: group commit. It takes every command waiting in its channel, writes
//! their records with one `write`, syncs once, and then publishes the sequence number that
//! is durable. While it syncs, the engine task keeps appending, so the next batch grows with
//! the load: one sync serves many records.

use super::error::JournalError;
use super::files::DataDir;
use super::format::push_frame;
use super::Progress;
use allocate_core::{Record, Snapshot};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

type Result<T> = std::result::Result<T, JournalError>;

/// Commands taken into one batch at most; the rest wait for the next one.
const BATCH_COMMANDS_MAX: usize = 4096;
/// Encoded bytes after which a batch is written even if more commands wait.
const BATCH_BYTES_MAX: usize = 8 << 20;

/// What the engine task asks of the writer.
#[derive(Debug)]
pub enum Command {
    /// Append these records (their sequence numbers follow the last ones).
    Append(Vec<Record>),
    /// The engine's state after record `.0`: write it, start a new segment, drop the old ones.
    Snapshot(u64, Box<Snapshot>),
}

/// The writer's state; it owns the data directory (and so its lock).
#[derive(Debug)]
pub struct Writer {
    dir: DataDir,
    segment: File,
    segment_path: PathBuf,
    /// The sequence number of the last record encoded.
    encoded: u64,
    buf: Vec<u8>,
    progress: watch::Sender<Progress>,
}

impl Writer {
    /// A writer appending to `segment`, whose last record is `last_seq`.
    pub fn new(
        dir: DataDir,
        segment: File,
        last_seq: u64,
        progress: watch::Sender<Progress>,
    ) -> Writer {
        Writer {
            segment_path: dir.segment_path(last_seq + 1),
            dir,
            segment,
            encoded: last_seq,
            buf: Vec::new(),
            progress,
        }
    }

    /// Serves commands until the channel closes (then everything received is durable) or a
    /// write fails (then the failure is published and nothing more is written).
    pub fn run(mut self, commands: Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let batch =
                std::iter::once(first).chain(commands.try_iter().take(BATCH_COMMANDS_MAX - 1));
            if let Err(e) = self.write_batch(batch) {
                error!("journal write failed, nothing more can be made durable: {e}");
                self.progress.send_modify(|p| p.failed = Some(Arc::new(e)));
                return;
            }
        }
        debug!("journal writer stopped");
    }

    /// Encodes the commands' records, then writes and syncs them (in parts past
    /// `BATCH_BYTES_MAX`).
    fn write_batch(&mut self, batch: impl Iterator<Item = Command>) -> Result<()> {
        for command in batch {
            self.take(command)?;
            if self.buf.len() >= BATCH_BYTES_MAX {
                self.flush()?;
            }
        }
        self.flush()
    }

    fn take(&mut self, command: Command) -> Result<()> {
        match command {
            Command::Append(records) => {
                for record in &records {
                    let json = record.to_stored().map_err(|source| JournalError::Encode {
                        what: "a journal record",
                        source,
                    })?;
                    push_frame(&mut self.buf, &json).ok_or_else(|| too_big("a journal record"))?;
                    self.encoded += 1;
                }
                Ok(())
            }
            Command::Snapshot(seq, snapshot) => {
                self.flush()?;
                if seq != self.encoded {
                    // The engine task snapshots right after appending; anything else is a bug,
                    // and a snapshot that does not match the journal must not be written.
                    error!(
                        seq,
                        encoded = self.encoded,
                        "snapshot skipped: it does not follow the last record"
                    );
                    return Ok(());
                }
                self.segment = compact(&self.dir, seq, &snapshot)?;
                self.segment_path = self.dir.segment_path(seq + 1);
                info!(seq, "snapshot written; journal continues in a new file");
                Ok(())
            }
        }
    }

    /// Writes and syncs the batch, then publishes how far the journal is durable.
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.segment
            .write_all(&self.buf)
            .map_err(JournalError::io("write", &self.segment_path))?;
        self.segment
            .sync_data()
            .map_err(JournalError::io("sync", &self.segment_path))?;
        self.buf.clear();
        let durable = self.encoded;
        self.progress.send_modify(|p| p.durable = durable);
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
    let json = snapshot
        .to_stored()
        .map_err(|source| JournalError::Encode {
            what: "a snapshot",
            source,
        })?;
    let mut framed = Vec::with_capacity(json.len() + 8);
    push_frame(&mut framed, &json).ok_or_else(|| too_big("a snapshot"))?;
    dir.write_snapshot(seq, &framed)?;
    let segment = dir.create_segment(seq + 1)?;
    match dir.remove_before(seq, seq + 1) {
        Ok(removed) => debug!(removed, "removed journal files the snapshot replaces"),
        // Leftovers are skipped by recovery and removed by the next snapshot.
        Err(e) => warn!("{e}"),
    }
    Ok(segment)
}

/// The error for something over the frame format's 4 GiB.
fn too_big(what: &'static str) -> JournalError {
    JournalError::Encode {
        what,
        source: serde::ser::Error::custom("it is over 4 GiB"),
    }
}
