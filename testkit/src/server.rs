//! A real server (`allocate_http::run`) on `127.0.0.1:0`, in memory, with short timeouts,
//! for the integration tests of the crates that talk to one (the client, the command line).
//! Behind the cargo feature `server`, so that testkit builds without axum otherwise.

use allocate_http::{run, ServerConfig};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server running in this process until dropped.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Starts a server with short timeouts (pings every 200 ms, provision and release within
    /// 2 s), in memory. Must be called within a tokio runtime.
    pub async fn start() -> Server {
        let mut config = ServerConfig {
            ping_interval: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(10),
            close_wait: Duration::from_millis(100),
            shutdown_grace: Duration::from_secs(2),
            ..ServerConfig::default()
        };
        config.engine.provision_timeout_ms = 2000;
        config.engine.release_timeout_ms = 2000;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, config, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Its URL over plain HTTP: `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}
