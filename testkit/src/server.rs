//! A real server (`allocate_http::run`) on `127.0.0.1:0`, in memory, with short timeouts,
//! and a TLS front for it with a private CA, for the integration tests of the crates that
//! talk to one (the client, the command line).
//! Behind the cargo feature `server`, so that testkit builds without axum otherwise.

use allocate_http::{run, ServerConfig};
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
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Starts a front for `backend`. Must be called within a tokio runtime.
    pub async fn start(backend: SocketAddr) -> TlsFront {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        use tokio_rustls::rustls;

        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");

        let ca_file = std::env::temp_dir().join(format!(
            "allocate-test-ca-{}-{}.pem",
            std::process::id(),
            backend.port()
        ));
        std::fs::write(&ca_file, ca.pem()).expect("write the CA file");

        #[allow(deprecated)] // ring, as the client uses
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
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
            ca_file,
            task,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.ca_file);
    }
}
