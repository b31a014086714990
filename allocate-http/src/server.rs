//! `run`: serves the API on a listener until a shutdown future completes.

use crate::config::ServerConfig;
use crate::engine_task::{self, EngineHandle, EngineState};
use crate::routes;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::{info, warn};

/// What every handler and socket task shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The way to the engine task.
    pub engine: EngineHandle,
    /// The settings.
    pub config: Arc<ServerConfig>,
    /// Becomes `true` (or closes) when shutdown begins.
    pub stopping: watch::Receiver<bool>,
    /// Cloned into every socket; shutdown waits until all are dropped.
    pub alive: mpsc::Sender<()>,
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, tells
/// clients still waiting `503 shutting_down`, closes every socket and returns.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = config.shutdown_grace;
    let (engine, engine_task) = engine_task::spawn(&config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, alive_rx) = mpsc::channel::<()>(1);
    let state = AppState {
        engine: engine.clone(),
        config: Arc::new(config),
        stopping: stop_rx,
        alive: alive_tx,
    };
    info!(address = %listener.local_addr()?, "allocate-http listening");
    let signal = async move {
        shutdown.await;
        info!("shutting down");
        let _ = stop_tx.send(true);
        let _ = engine.call(EngineState::shutdown).await;
    };
    axum::serve(listener, routes::router(state))
        .with_graceful_shutdown(signal)
        .await?;
    // Upgraded sockets have left hyper's hands, so `serve` does not wait for them.
    wait_for_sockets(alive_rx, engine_task, grace).await;
    info!("stopped");
    Ok(())
}

/// Waits (at most `grace` each) for every socket to close and then for the engine task to end.
async fn wait_for_sockets(
    mut alive: mpsc::Receiver<()>,
    engine_task: JoinHandle<()>,
    grace: Duration,
) {
    let grace_ms = grace.as_millis();
    if timeout(grace, alive.recv()).await.is_err() {
        warn!(grace_ms, "some sockets did not close in time");
    }
    if timeout(grace, engine_task).await.is_err() {
        warn!(grace_ms, "the engine task did not stop in time");
    }
}
