//! A real server on 127.0.0.1:0 (testkit's, feature `server`), a TLS front for it with a
//! private CA, and small builders.
#![allow(dead_code)] // each test binary uses its own subset

use allocate_client::{Client, ClientOptions, Connection, ResourceSpec};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(10);

/// `f`, failing the test if it takes longer than [`STEP`].
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .expect("a step of the test took too long")
}

pub use testkit::server::Server;

/// A client of a test server over plain HTTP.
pub trait ClientOf {
    /// The client.
    fn client(&self) -> Client;
}

impl ClientOf for Server {
    fn client(&self) -> Client {
        Client::new(&self.url(), ClientOptions::default()).expect("client")
    }
}

/// A resource with `labels`; with `host`, a static connection (no provision round trip).
pub fn resource(labels: &[&str], host: Option<&str>) -> ResourceSpec {
    ResourceSpec {
        inventory_id: None,
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        cpu_count: 4,
        memory_gb: 16,
        gpu: vec![],
        kind: "VM".into(),
        connection: host.map(connection),
    }
}

/// Connection details for `host`.
pub fn connection(host: &str) -> Connection {
    Connection {
        host: host.into(),
        username: "u".into(),
        password: "p".into(),
    }
}

/// Now, in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A TLS front for a server: terminates TLS with a certificate for `localhost` and
/// `127.0.0.1` signed by a private CA, and forwards the bytes to the server.
pub struct TlsFront {
    pub addr: SocketAddr,
    /// The private CA's certificate, as a PEM file.
    pub ca_file: PathBuf,
    task: JoinHandle<()>,
}

impl TlsFront {
    /// Starts a front for `backend`.
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
            "allocate-client-ca-{}-{}.pem",
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
