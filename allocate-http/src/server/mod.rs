//! `run`: serves the API on a listener until a shutdown future completes: the accept loop
//! and its caps ([`accept`]), each connection and its timeouts ([`connection`]), and the
//! stream under it that bounds a stalled write ([`stream`]).

mod accept;
mod connection;
mod stream;

use crate::auth::tokens::TokenTable;
use crate::clock::RandomIds;
use crate::config::ServerConfig;
use crate::connections::{Caps, Gate};
use crate::dashboard::Hub;
use crate::driver::{self, DriverError, DriverHandle, DriverTask};
use crate::journal::{self, Journal, JournalError, JournalStore, Waiting};
use crate::metrics::ServerMetrics;
use crate::routes;
use crate::sockets::Shared;
use crate::state::{AppState, StandbyState};
use crate::tls::Tls;
use allocate_core::{Engine, Policy};
use connection::Timeouts;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::{error, info, warn};

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, tells
/// clients still waiting `503 shutting_down`, closes every socket and returns.
///
/// With a journal (`config.journal`), the state is first recovered from the data directory;
/// damage there is an error before anything is served. A journal that fails later (a full
/// disk) stops the server the same way, and `run` returns that error. With a PostgreSQL
/// store, the server answers `503 not_leader` while it waits to become the writer.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let serving = Serving {
        gate: open_gate(config.connections),
        timeouts: Timeouts {
            header_read: config.header_read_timeout,
            keep_alive: config.keep_alive_timeout,
            write: config.write_timeout,
        },
        tls: config.tls.clone(),
        grace: config.shutdown_grace,
    };
    let mut shutdown = Box::pin(shutdown);
    let waiting = Waiting::default();
    let replication = config
        .journal
        .as_ref()
        .is_some_and(|j| matches!(j.store, JournalStore::Postgres(_)))
        .then(|| Arc::clone(&waiting.replication));
    let opened = open_engine(&config, &listener, &serving, &waiting, &mut shutdown).await?;
    let Some((mut engine, journal)) = opened else {
        info!("stopped before serving");
        return Ok(());
    };
    let report_ms = u64::try_from(config.position_report.as_millis()).unwrap_or(u64::MAX);
    engine.set_position_report_ms(report_ms);
    let metrics = Arc::new(ServerMetrics::new(
        journal.as_ref().map(Journal::commit_time),
        replication,
    ));
    let (driver, DriverTask { join, failed }) = driver::spawn(engine, journal);
    if let Some(quotas) = &config.quotas {
        follow_policy(
            quotas.subscribe(),
            config.tokens.subscribe(),
            driver.clone(),
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, alive_rx) = mpsc::channel::<()>(1);
    let state = AppState {
        shared: Shared {
            driver: driver.clone(),
            config: Arc::new(config),
            stopping: stop_rx,
            alive: alive_tx,
        },
        dashboard: Hub::default(),
        connections: serving.gate.clone(),
        metrics,
    };
    announce(&listener, serving.tls.as_ref())?;
    let signal = stop_when(shutdown, failed, stop_tx, driver);
    let router = routes::router(state);
    let Serving {
        gate,
        timeouts,
        tls,
        grace,
    } = serving;
    accept::serve(listener, gate, router, timeouts, tls, grace, signal).await;
    // Upgraded sockets have left hyper's hands, so `serve` does not wait for them.
    let ended = wait_for_sockets(alive_rx, join, grace).await;
    info!("stopped");
    ended.map_err(io::Error::other)
}

/// Completes once `shutdown` does or the journal `failed`, after telling every socket
/// (`stop`) and the engine's task that the server stops.
async fn stop_when(
    mut shutdown: impl Future<Output = ()> + Unpin,
    failed: oneshot::Receiver<()>,
    stop: watch::Sender<bool>,
    driver: driver::DriverHandle,
) {
    tokio::select! {
        () = &mut shutdown => info!("shutting down"),
        Ok(()) = failed => error!("the journal failed; shutting down"),
    }
    let _ = stop.send(true);
    let _ = driver.shutdown().await;
}

/// Says that the listener serves HTTPS and WSS, if it does, with which certificate, and
/// then where it listens.
fn announce(listener: &TcpListener, tls: Option<&Tls>) -> io::Result<()> {
    if let Some(tls) = tls {
        info!(cert = %tls.cert_path().display(), "serving HTTPS and WSS");
    }
    // Alone on its line: tools read the address from its end.
    info!(address = %listener.local_addr()?, "allocate-http listening");
    Ok(())
}

/// How the listener serves connections, whichever role the server has: the caps, the
/// timeouts, TLS and the grace at shutdown.
struct Serving {
    gate: Gate,
    timeouts: Timeouts,
    tls: Option<Tls>,
    grace: Duration,
}

/// The engine: rebuilt from the journal's store, empty without one; `None` when `shutdown`
/// came first (while a standby waited to lead, as `waiting` tells).
async fn open_engine(
    config: &ServerConfig,
    listener: &TcpListener,
    serving: &Serving,
    waiting: &Waiting,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> io::Result<Option<(Engine, Option<Journal>)>> {
    let Some(journal_config) = config.journal.clone() else {
        info!("running in memory: a restart forgets every allocation");
        // Nothing would take the records: keeping them would only grow the engine.
        let engine_config = allocate_core::Config {
            record_inputs: false,
            ..config.engine.clone()
        };
        let engine = Engine::new(engine_config, Box::new(RandomIds));
        return Ok(Some((engine, None)));
    };
    let engine_config = config.engine.clone();
    let standby = match &journal_config.store {
        JournalStore::Postgres(_) => Some(Standby::serve(listener, serving, waiting)?),
        JournalStore::Dir(_) => None,
    };
    let waits = waiting.clone();
    let mut opening =
        tokio::task::spawn_blocking(move || journal::open(&journal_config, &engine_config, &waits));
    let opened = tokio::select! {
        opened = &mut opening => opened,
        () = shutdown => {
            // The standby's wait ends within one try of the lock.
            waiting.cancel.store(true, Ordering::Relaxed);
            let _ = opening.await;
            Ok(Err(JournalError::Cancelled))
        }
    };
    if let Some(standby) = standby {
        standby.stop(config.shutdown_grace).await;
    }
    match opened.map_err(io::Error::other)? {
        Ok((mut engine, journal)) => {
            // A snapshot brings back the settings it was taken with; the flag wins.
            engine.set_usage_retention_secs(config.engine.usage_retention_secs);
            Ok(Some((engine, Some(journal))))
        }
        Err(JournalError::Cancelled) => Ok(None),
        Err(e) => Err(io::Error::other(e)),
    }
}

/// A standby's server (`503 not_leader` to everything but `/metrics`) on a second handle
/// of the listener, until the journal is open and the real one takes over. It serves as
/// the leader does (the same caps, timeouts and TLS), so that a standby is no weak spot.
struct Standby {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Standby {
    /// Serves the standby's answers, naming the leader that `waiting` hears of.
    fn serve(listener: &TcpListener, serving: &Serving, waiting: &Waiting) -> io::Result<Standby> {
        let second = second_handle(listener)?;
        let metrics = ServerMetrics::new(None, Some(Arc::clone(&waiting.replication)));
        let router = routes::standby_router(StandbyState {
            leader: waiting.leader.subscribe(),
            connections: serving.gate.clone(),
            metrics: Arc::new(metrics),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(accept::serve(
            second,
            serving.gate.clone(),
            router,
            serving.timeouts,
            serving.tls.clone(),
            serving.grace,
            async move {
                let _ = stopped.await;
            },
        ));
        info!(address = %listener.local_addr()?, "allocate-http listening as a standby");
        Ok(Standby { stop, task })
    }

    /// Stops serving (its connections get at most `grace` to close).
    async fn stop(self, grace: Duration) {
        let _ = self.stop.send(());
        match timeout(grace + grace, self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("the standby's server failed: {e}"),
            Err(_) => warn!("the standby's server did not stop in time"),
        }
    }
}

/// A second handle of the same listening socket (a `dup`), so that the standby's server and
/// then the leader's accept on one address.
#[cfg(unix)]
fn second_handle(listener: &TcpListener) -> io::Result<TcpListener> {
    use std::os::fd::AsFd;
    let fd = listener.as_fd().try_clone_to_owned()?;
    TcpListener::from_std(std::net::TcpListener::from(fd))
}

/// Standbys serve on unix only.
#[cfg(not(unix))]
fn second_handle(_listener: &TcpListener) -> io::Result<TcpListener> {
    Err(io::Error::other("a standby can only serve on unix"))
}

/// The gate of the connection caps, `wanted` lowered to the open-files limit; logs the caps
/// in force.
fn open_gate(wanted: Caps) -> Gate {
    let caps = within_open_files(wanted);
    info!(
        connections_max = caps.total_max,
        connections_per_peer_max = caps.per_peer_max,
        "connection caps"
    );
    Gate::new(caps)
}

/// File descriptors kept for everything but admitted connections: the listener, the
/// journal, the runtime, the log, and refusals being answered.
const FDS_RESERVED: usize = 64 + accept::REFUSING_MAX;

/// `wanted`, lowered so that admitted connections cannot run the process out of file
/// descriptors (then a flood would find `accept` failing rather than a `503`).
fn within_open_files(wanted: Caps) -> Caps {
    let Some(limit) = open_files_limit() else {
        return wanted;
    };
    let room = limit.saturating_sub(FDS_RESERVED).max(1);
    if wanted.total_max <= room {
        return wanted;
    }
    warn!(
        connections_max = room,
        open_files_limit = limit,
        "--connections-max {} is more than the open-files limit allows; raise it (ulimit -n) \
         to allow more",
        wanted.total_max
    );
    Caps {
        total_max: room,
        per_peer_max: wanted.per_peer_max.min(room),
    }
}

/// The process's limit on open files, where there is one.
#[cfg(unix)]
fn open_files_limit() -> Option<usize> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.and_then(|n| usize::try_from(n).ok())
}

/// Elsewhere no limit is known.
#[cfg(not(unix))]
fn open_files_limit() -> Option<usize> {
    None
}

/// Waits (at most `grace` each) for every socket to close and then for the engine task to
/// end; returns the journal's failure if that is what ended it.
async fn wait_for_sockets(
    mut alive: mpsc::Receiver<()>,
    driver_task: JoinHandle<driver::Ended>,
    grace: Duration,
) -> driver::Ended {
    let grace_ms = grace.as_millis();
    if timeout(grace, alive.recv()).await.is_err() {
        warn!(grace_ms, "some sockets did not close in time");
    }
    let Ok(joined) = timeout(grace, driver_task).await else {
        warn!(grace_ms, "the engine task did not stop in time");
        return Ok(());
    };
    joined.unwrap_or_else(|panicked| {
        error!("the engine task failed: {panicked}");
        Ok(())
    })
}

/// Sets the engine's quotas to the policy file's, with the groups that user tokens name
/// merged in, now and after every reload of either file, until the server stops. A reload
/// that leaves the merged policy as it was sets nothing (and journals nothing).
fn follow_policy(
    mut policy: watch::Receiver<Policy>,
    mut tokens: Option<watch::Receiver<Arc<TokenTable>>>,
    driver: DriverHandle,
) {
    tokio::spawn(async move {
        loop {
            let file = policy.borrow_and_update().clone();
            let table = tokens.as_mut().map(|t| Arc::clone(&t.borrow_and_update()));
            let named = table.as_deref().map(TokenTable::group_members);
            let current = named.map_or_else(|| file.clone(), |n| file.with_members(n));
            for group in named.map(|n| file.undefined_groups(n)).unwrap_or_default() {
                warn!(
                    group,
                    "the tokens file names a group that the policy file does not define"
                );
            }
            match driver.set_quotas(Some(current)).await {
                Ok(()) => {}
                // The engine takes a policy whatever its state: this is not expected.
                Err(DriverError::Refused(e)) => error!("quotas not set: {e}"),
                // The server is stopping.
                Err(DriverError::Stopped | DriverError::Lost) => return,
            }
            let tokens_changed = async {
                match tokens.as_mut() {
                    Some(t) => t.changed().await,
                    None => std::future::pending().await,
                }
            };
            let changed = tokio::select! {
                changed = policy.changed() => changed,
                changed = tokens_changed => changed,
            };
            if changed.is_err() {
                return;
            }
        }
    });
}
