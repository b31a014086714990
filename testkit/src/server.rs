//! A real server (`allocate_http::run`) on `127.0.0.1:0`, in memory, with short timeouts
//! (plain or with TLS of its own), and a TLS front for it with a private CA, for the
//! integration tests of the crates that talk to one (the client, the command line).
//! Behind the cargo feature `server`, so that testkit builds without axum otherwise.

use crate::tls::{Issued, TestCa};
use allocate_http::{run, ServerConfig, Tls};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
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
        Server::start_with(|_| {}).await
    }

    /// [`Server::start`], with `configure` applied to its settings first (tokens, limits).
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Server {
        let mut config = ServerConfig {
            ping_interval: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(10),
            close_wait: Duration::from_millis(100),
            shutdown_grace: Duration::from_secs(2),
            ..ServerConfig::default()
        };
        config.engine.provision_timeout_ms = 2000;
        config.engine.release_timeout_ms = 2000;
        configure(&mut config);
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

    /// [`Server::start`], serving HTTPS and WSS with `issued` (`--tls-cert`, `--tls-key`).
    pub async fn start_tls(issued: &Issued) -> Server {
        let tls = Tls::load(&issued.cert_file, &issued.key_file).expect("a valid pair");
        Server::start_with(|config| config.tls = Some(tls)).await
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

/// A TLS front for a server: terminates TLS with a certificate for `localhost` and
/// `127.0.0.1` signed by a private CA, and forwards the bytes to the server.
#[derive(Debug)]
pub struct TlsFront {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The private CA's certificate, as a PEM file.
    pub ca_file: PathBuf,
    /// Owns the CA's folder, removed with the front.
    _ca: TestCa,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Starts a front for `backend`. Must be called within a tokio runtime.
    pub async fn start(backend: SocketAddr) -> TlsFront {
        use tokio_rustls::rustls;

        let ca = TestCa::new();
        let issued = ca.issue("front");
        #[allow(deprecated)] // ring, as the client uses
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![issued.cert_der.into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(issued.key_der.into()),
            )
            .expect("server TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return; // a client that does not trust the CA
                    };
                    let Ok(mut plain) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront {
            addr,
            ca_file: ca.ca_file.clone(),
            _ca: ca,
            task,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
