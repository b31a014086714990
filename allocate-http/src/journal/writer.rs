//! The writer thread: group commit. It takes every command waiting in its channel, pushes
//! their records into the store, commits them once (one sync, or one transaction), and then
//! publishes the sequence number that is durable. While it commits, the engine task keeps
//! appending, so the next batch grows with the load: one commit serves many records.

use super::error::JournalError;
use super::store::Store;
use super::Progress;
use crate::metrics::Histogram;
use allocate_core::{Record, Snapshot};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tracing::{debug, error, info};

type Result<T> = std::result::Result<T, JournalError>;

/// Commands taken into one batch at most; the rest wait for the next one.
const BATCH_COMMANDS_MAX: usize = 4096;
/// Encoded bytes after which a batch is committed even if more commands wait.
const BATCH_BYTES_MAX: usize = 8 << 20;

/// What the engine task asks of the writer.
#[derive(Debug)]
pub enum Command {
    /// Append these records (their sequence numbers follow the last ones).
    Append(Vec<Record>),
    /// The engine's state after record `.0`: store it and drop the records it covers.
    Snapshot(u64, Box<Snapshot>),
}

/// The writer's state; it owns the store (and so the data directory's lock, or the
/// leadership of the database).
#[derive(Debug)]
pub struct Writer {
    store: Box<dyn Store>,
    /// The sequence number of the last record encoded.
    encoded: u64,
    /// The sequence number of the last record committed.
    committed: u64,
    progress: watch::Sender<Progress>,
    /// Where each commit's duration goes (`allocate_journal_commit_seconds`).
    commit_time: Arc<Histogram>,
}

impl Writer {
    /// A writer appending to `store`, whose last record is `last_seq`, observing each
    /// commit's duration into `commit_time`.
    pub fn new(
        store: Box<dyn Store>,
        last_seq: u64,
        progress: watch::Sender<Progress>,
        commit_time: Arc<Histogram>,
    ) -> Writer {
        Writer {
            store,
            encoded: last_seq,
            committed: last_seq,
            progress,
            commit_time,
        }
    }

    /// Serves commands until the channel closes (then everything received is durable) or a
    /// write fails (then the failure is published and nothing more is written).
    pub fn run(mut self, commands: Receiver<Command>) {
        loop {
            let first = match self.store.heartbeat_every() {
                None => commands.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(every) => commands.recv_timeout(every),
            };
            let result = match first {
                Ok(first) => self.write_batch(
                    std::iter::once(first).chain(commands.try_iter().take(BATCH_COMMANDS_MAX - 1)),
                ),
                Err(RecvTimeoutError::Timeout) => self.store.heartbeat(),
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Err(e) = result {
                error!("journal write failed, nothing more can be made durable: {e}");
                self.progress.send_modify(|p| p.failed = Some(Arc::new(e)));
                return;
            }
        }
        debug!("journal writer stopped");
    }

    /// Encodes the commands' records, then commits them (in parts past `BATCH_BYTES_MAX`).
    fn write_batch(&mut self, batch: impl Iterator<Item = Command>) -> Result<()> {
        for command in batch {
            self.take(command)?;
            if self.store.pending_bytes() >= BATCH_BYTES_MAX {
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
                    self.store.push(json)?;
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
                self.store.compact(seq, &snapshot)?;
                info!(seq, "snapshot written; the records before it are dropped");
                Ok(())
            }
        }
    }

    /// Commits the batch, then publishes how far the journal is durable.
    fn flush(&mut self) -> Result<()> {
        if self.encoded == self.committed {
            return Ok(());
        }
        let started = Instant::now();
        self.store.commit()?;
        self.commit_time.observe(started.elapsed());
        self.committed = self.encoded;
        let durable = self.encoded;
        self.progress.send_modify(|p| p.durable = durable);
        Ok(())
    }
}
