//! HTTPS and WSS served by the server itself (`--tls-cert`, `--tls-key`) with a private CA
//! made in the test: the handshake and a request over it, an untrusting client, the
//! start-up errors naming the file, the handshake under the header-read timeout, and
//! SIGHUP serving a new certificate to new connections while a bad one is refused.

mod common;
mod process;

use allocate_http::{ServerConfig, Tls, TlsError};
use common::{bounded, test_config, Server};
use process::Proc;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::tls::{Issued, TestCa};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A TLS connection to `addr` as `localhost`, trusting only the certificates in `ca_file`.
async fn connect(addr: SocketAddr, ca_file: &Path) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("a name");
    tls_client(ca_file).connect(name, tcp).await
}

/// A TLS client trusting only the certificates in `ca_file`.
fn tls_client(ca_file: &Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("CA file") {
        roots.add(cert.expect("CA certificate")).expect("a root");
    }
    #[allow(deprecated)] // ring, as everywhere in the workspace
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// The certificate the server at `addr` presents now.
async fn served_certificate(addr: SocketAddr, ca_file: &Path) -> Vec<u8> {
    let tls = bounded(connect(addr, ca_file)).await.expect("handshake");
    let (_, session) = tls.get_ref();
    let certs = session.peer_certificates().expect("a certificate");
    certs[0].to_vec()
}

/// `GET path` over a new TLS connection; the answer's head and body.
async fn https_get(addr: SocketAddr, ca_file: &Path, path: &str) -> String {
    let mut tls = bounded(connect(addr, ca_file)).await.expect("handshake");
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    bounded(tls.read_to_string(&mut answer))
        .await
        .expect("read the answer");
    answer
}

/// Settings that serve `issued`.
fn tls_config(issued: &Issued) -> ServerConfig {
    ServerConfig {
        tls: Some(Tls::load(&issued.cert_file, &issued.key_file).expect("a valid pair")),
        ..test_config()
    }
}

#[tokio::test]
async fn https_and_wss_are_served_to_a_client_that_trusts_the_ca() {
    let ca = TestCa::new();
    let issued = ca.issue("server");
    let server = Server::with(tls_config(&issued)).await;

    let answer = https_get(server.addr, &ca.ca_file, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let tls = bounded(connect(server.addr, &ca.ca_file))
        .await
        .expect("handshake");
    let (mut ws, response) = bounded(tokio_tungstenite::client_async(
        "wss://localhost/allocate/",
        tls,
    ))
    .await
    .expect("websocket upgrade over TLS");
    assert_eq!(response.status(), 101);
    ws.close(None).await.expect("close");

    // A client that trusts another CA refuses the handshake; the server goes on.
    let stranger = TestCa::new();
    let refused = bounded(connect(server.addr, &stranger.ca_file)).await;
    let err = refused.expect_err("a certificate it does not trust");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    // Plain HTTP on the TLS port gets no answer.
    let mut plain = TcpStream::connect(server.addr).await.expect("connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut bytes = Vec::new();
    let _ = bounded(plain.read_to_end(&mut bytes)).await;
    assert!(!bytes.starts_with(b"HTTP/1.1 200"));
    assert!(https_get(server.addr, &ca.ca_file, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    server.stop().await;
}

/// A TLS server of `ca`'s whose header-read timeout is `header_read` (and whose keep-alive
/// timeout is longer than any test).
async fn server_with_header_read(ca: &TestCa, header_read: Duration) -> Server {
    Server::with(ServerConfig {
        header_read_timeout: header_read,
        keep_alive_timeout: Duration::from_secs(10),
        ..tls_config(&ca.issue("server"))
    })
    .await
}

/// How long after `started` the server closes `stream`, which sends nothing.
async fn closed_after(mut stream: impl AsyncRead + Unpin, started: Instant) -> Duration {
    let mut byte = [0u8; 1];
    let read = bounded(stream.read(&mut byte)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "closed, got {read:?}");
    started.elapsed()
}

#[tokio::test]
async fn a_handshake_that_never_comes_is_closed_after_the_header_read_timeout() {
    let ca = TestCa::new();
    let server = server_with_header_read(&ca, Duration::from_millis(300)).await;
    let started = Instant::now();
    let silent = TcpStream::connect(server.addr).await.expect("connect");
    let waited = closed_after(silent, started).await;
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_handshake_counts_against_the_first_heads_timeout() {
    let ca = TestCa::new();
    let server = server_with_header_read(&ca, Duration::from_millis(1000)).await;
    let started = Instant::now();
    // A client that lingers before its handshake, then sends no request: closed when the
    // timeout from the connection's start is up, not a whole timeout after the handshake.
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let tls = tls_client(&ca.ca_file)
        .connect(ServerName::try_from("localhost").expect("a name"), tcp)
        .await
        .expect("handshake");
    let waited = closed_after(tls, started).await;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(1500),
        "closed after {waited:?}"
    );
    server.stop().await;
}

#[test]
fn unusable_files_are_named() {
    let ca = TestCa::new();
    let one = ca.issue("one");
    let two = ca.issue("two");
    let missing = ca.dir.join("missing.pem");
    let err = Tls::load(&missing, &one.key_file).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read --tls-cert {}", missing.display())),
        "{err}"
    );
    let err = Tls::load(&one.cert_file, &missing).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read --tls-key {}", missing.display())),
        "{err}"
    );

    let garbage = ca.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let err = Tls::load(&garbage, &one.key_file).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--tls-cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            garbage.display()
        )
    );
    // The certificate given as the key.
    let err = Tls::load(&one.cert_file, &one.cert_file).unwrap_err();
    assert!(matches!(err, TlsError::NoKey(_)), "{err}");
    let broken = ca.dir.join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Tls::load(&broken, &one.key_file).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("--tls-cert {} is not valid PEM", broken.display())),
        "{err}"
    );

    let err = Tls::load(&one.cert_file, &two.key_file).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--tls-key {} does not match the certificate in --tls-cert {}",
            two.key_file.display(),
            one.cert_file.display()
        )
    );
}

#[test]
fn the_binary_names_a_bad_file_at_start() {
    let ca = TestCa::new();
    let one = ca.issue("one");
    let two = ca.issue("two");
    let cert = one.cert_file.to_str().expect("a UTF-8 temp path");
    let key = two.key_file.to_str().expect("a UTF-8 temp path");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--in-memory",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    let (status, log) = Proc::spawn(&args).exit();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("does not match the certificate"), "{log}");
    assert!(log.contains(cert) && log.contains(key), "{log}");

    // One without the other is a usage error.
    let (status, log) = Proc::spawn(&["--in-memory", "--tls-cert", cert]).exit();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("--tls-key"), "{log}");
}

#[tokio::test]
async fn sighup_serves_a_new_certificate_to_new_connections() {
    let ca = TestCa::new();
    let first = ca.issue("server");
    let cert = first.cert_file.to_str().expect("a UTF-8 temp path");
    let key = first.key_file.to_str().expect("a UTF-8 temp path");
    let mut server = Proc::spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--in-memory",
        "--keep-alive-timeout-ms",
        "60000",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ]);
    server.wait_for("serving HTTPS and WSS");
    let addr = server.address();
    assert_eq!(served_certificate(addr, &ca.ca_file).await, first.cert_der);
    let kept = bounded(connect(addr, &ca.ca_file))
        .await
        .expect("handshake");

    // The same files, a new pair: served from the next connection on.
    let second = ca.issue("server");
    server.signal("HUP");
    server.wait_for("certificate reloaded");
    assert_eq!(served_certificate(addr, &ca.ca_file).await, second.cert_der);
    let answer = https_get(addr, &ca.ca_file, "/healthz").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A key that is not the certificate's: refused, the pair before stays.
    let other = ca.issue("other");
    std::fs::copy(&other.key_file, &first.key_file).expect("replace the key");
    server.signal("HUP");
    let line = server.wait_for("keeping the certificate loaded before");
    assert!(line.contains("does not match"), "{line}");
    assert_eq!(served_certificate(addr, &ca.ca_file).await, second.cert_der);

    // A connection made before the reload still works.
    let mut kept = kept;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    bounded(kept.read_to_string(&mut answer))
        .await
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.kill();
}
