//! The driver loop: one task owns the [`Driver`], runs the jobs sent to it one at a time,
//! fires the engine's deadlines with one timer, and releases what the journal made durable.

use super::jobs::{DriverHandle, Job, JOBS_MAX, JOBS_PER_ROUTE};
use super::Driver;
use crate::clock;
use crate::history::SAMPLE_SECS;
use crate::journal::{Journal, JournalError, Progress};
use allocate_core::{Engine, Timestamp};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

/// How the driver task ended: cleanly, or because the journal failed.
pub type Ended = Result<(), Arc<JournalError>>;

/// The running driver task.
#[derive(Debug)]
pub struct DriverTask {
    /// Completes when the task ends: when every [`DriverHandle`] is dropped, or at once
    /// when the journal fails.
    pub join: JoinHandle<Ended>,
    /// Completes (`Ok`) when the journal has failed and the server must stop.
    pub failed: oneshot::Receiver<()>,
}

/// Starts the driver task over `engine`, journaling to `journal` (`None`: in memory).
pub fn spawn(engine: Engine, journal: Option<Journal>) -> (DriverHandle, DriverTask) {
    let (jobs_tx, jobs_rx) = mpsc::channel(JOBS_MAX);
    let (failed_tx, failed) = oneshot::channel();
    let driver = Driver::new(engine, journal);
    let join = tokio::spawn(drive(driver, jobs_rx, failed_tx));
    tokio::spawn(sample_every_minute(jobs_tx.downgrade()));
    (DriverHandle::new(jobs_tx), DriverTask { join, failed })
}

/// Sends the driver a job once a minute that samples the dashboard's history, so that it has
/// a sample of every minute even when nothing happens. It runs beside the loop rather than
/// in it: a timer polled on every turn of the loop made a burst of jobs (10,000 clients
/// leaving the queue at once) cost twice the CPU. Holding no handle, it ends with the driver.
async fn sample_every_minute(jobs: mpsc::WeakSender<Job>) {
    let mut minutes = tokio::time::interval(std::time::Duration::from_secs(SAMPLE_SECS));
    minutes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        minutes.tick().await;
        let Some(jobs) = jobs.upgrade() else {
            return;
        };
        let job: Job = Box::new(Driver::sample_history_if_due);
        if jobs.send(job).await.is_err() {
            return;
        }
    }
}

/// Runs the loop until it ends, then lets the journal finish writing.
async fn drive(
    mut driver: Driver,
    jobs: mpsc::Receiver<Job>,
    failed: oneshot::Sender<()>,
) -> Ended {
    let ended = serve_jobs(&mut driver, jobs).await;
    if let Err(e) = &ended {
        // What is held back is dropped unseen: handlers answer 500, sockets just close.
        warn!("stopping the server: {e}");
        let _ = failed.send(());
    }
    if let Some(journal) = driver.outgoing.take_journal() {
        journal.close().await;
    }
    debug!("driver task stopped");
    ended
}

/// The loop: run a job, fire the timer, or release what the journal made durable; then
/// route outputs. The one timer sleeps until `poll_timeout()` and is re-armed only when that
/// changes.
async fn serve_jobs(driver: &mut Driver, mut jobs: mpsc::Receiver<Job>) -> Ended {
    let timer = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Timestamp> = None;
    let mut progress = driver.outgoing.progress();
    loop {
        let next = driver.engine.poll_timeout();
        if next != armed {
            armed = next;
            if let Some(at) = next {
                timer
                    .as_mut()
                    .reset(Instant::now() + clock::until(clock::now(), at));
            }
        }
        tokio::select! {
            job = jobs.recv(), if !driver.outgoing.backlogged() => match job {
                Some(job) => {
                    job(driver);
                    run_waiting_jobs(driver, &mut jobs);
                }
                None => return Ok(()),
            },
            () = &mut timer, if armed.is_some() => {
                // The monotonic timer says the deadline has come; the wall clock may lag it
                // by a hair, so the engine is never handed a time before the deadline.
                let at = armed.take().unwrap_or_default();
                driver.engine.handle_timeout(clock::now().max(at));
            }
            progress = next_progress(&mut progress) => {
                // What is on disk is shown even when writing has just failed.
                driver.durable(progress.durable);
                if let Some(e) = progress.failed {
                    return Err(e);
                }
            }
        }
        driver.route();
        driver.outgoing.snapshot_if_due(&driver.engine);
    }
}

/// Runs the jobs already waiting, up to [`JOBS_PER_ROUTE`] and while the disk keeps up, so
/// that their outputs are routed together: a batch of clients leaving the queue costs one
/// position report per request that moved, not one per leaving (see
/// [`allocate_core::Engine::poll_output`]).
fn run_waiting_jobs(driver: &mut Driver, jobs: &mut mpsc::Receiver<Job>) {
    for _ in 1..JOBS_PER_ROUTE {
        if driver.outgoing.backlogged() {
            return;
        }
        match jobs.try_recv() {
            Ok(job) => job(driver),
            Err(_) => return,
        }
    }
}

/// The journal writer's next progress report (never, without a journal).
async fn next_progress(progress: &mut Option<watch::Receiver<Progress>>) -> Progress {
    let Some(progress) = progress else {
        return std::future::pending().await;
    };
    let stopped = progress.changed().await.is_err();
    let mut latest = progress.borrow_and_update().clone();
    if stopped && latest.failed.is_none() {
        latest.failed = Some(Arc::new(JournalError::WriterStopped));
    }
    latest
}
