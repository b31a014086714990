//! The writer thread: group commit. It takes every command waiting in its channel, pushes
//! their records into the store, commits them once (one sync, or one transaction), and then
//! publishes the sequence number that is durable. While it commits, the engine task keeps
//! appending, so the next batch grows with the load: one commit serves many records.

use super::error::JournalError;
use super::store::Store;
use super::Progress;
use crate::metrics::Histogram;
use allocate_core::{Record, Snapshot};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, error, info};

type Result<T> = std::result::Result<T, JournalError>;

/// Commands taken into one batch at most; the rest wait for the next one.
const BATCH_COMMANDS_MAX: usize = 4096;
/// Encoded bytes after which a batch is committed even if more commands wait.
const BATCH_BYTES_MAX: usize = 8 << 20;
/// How often the watchdog looks at the call under way.
const WATCHDOG_EVERY: Duration = Duration::from_millis(100);

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
        let call = Arc::new(Call::default());
        if let Some(max) = self.store.call_max() {
            let (call, progress) = (Arc::clone(&call), self.progress.clone());
            let spawned = std::thread::Builder::new()
                .name("allocate-journal-watchdog".into())
                .spawn(move || watch_calls(&call, &progress, max));
            if let Err(e) = spawned {
                error!("cannot start the journal's watchdog thread: {e}");
            }
        }
        self.serve(commands, &call);
        call.done.store(true, Ordering::Relaxed);
    }

    /// [`Writer::run`]'s loop; each command or heartbeat is one call that `call` times.
    fn serve(&mut self, commands: Receiver<Command>, call: &Call) {
        loop {
            let first = match self.store.heartbeat_every() {
                None => commands.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(every) => commands.recv_timeout(every),
            };
            call.begin();
            let result = match first {
                Ok(first) => self.write_batch(
                    std::iter::once(first).chain(commands.try_iter().take(BATCH_COMMANDS_MAX - 1)),
                ),
                Err(RecvTimeoutError::Timeout) => self.store.heartbeat(),
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if call.end() {
                // The watchdog published the failure; nothing more is written.
                return;
            }
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

/// The call of the writer to its store under way, for the watchdog.
#[derive(Debug, Default)]
struct Call {
    /// When the call under way began; `None` between calls.
    since: Mutex<Option<Instant>>,
    /// Set by the watchdog when the call took too long.
    expired: AtomicBool,
    /// Set when the writer stopped: the watchdog ends.
    done: AtomicBool,
}

impl Call {
    fn begin(&self) {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Ends the call; whether the watchdog had given up on it.
    fn end(&self) -> bool {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.expired.load(Ordering::Relaxed)
    }

    /// How long the call under way has taken, when it has taken longer than `max`.
    fn over(&self, max: Duration) -> Option<Duration> {
        let since = *self.since.lock().unwrap_or_else(|e| e.into_inner());
        since.map(|s| s.elapsed()).filter(|taken| *taken > max)
    }
}

/// The watchdog: when a call to the store has not returned within `max` (a statement sent
/// into a network that drops packets blocks until TCP gives up, minutes later), publishes
/// [`JournalError::Stalled`], which stops the server as any failed write does, and leaves
/// the call behind. Ends with the writer.
fn watch_calls(call: &Call, progress: &watch::Sender<Progress>, max: Duration) {
    while !call.done.load(Ordering::Relaxed) {
        std::thread::sleep(WATCHDOG_EVERY);
        if let Some(taken) = call.over(max) {
            call.expired.store(true, Ordering::Relaxed);
            let e = JournalError::Stalled {
                secs: taken.as_secs(),
            };
            error!("journal write failed, nothing more can be made durable: {e}");
            progress.send_modify(|p| p.failed = Some(Arc::new(e)));
            return;
        }
    }
}
