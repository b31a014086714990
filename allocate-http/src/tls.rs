//! TLS on the listener: the certificate chain and private key read from PEM files, with
//! rustls (the ring provider, as every TLS peer in the workspace), and read again by
//! [`Tls::reload`] (SIGHUP) for the connections that follow.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Why a certificate and key cannot be served; each names its flag and file.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The file cannot be read (missing, not readable by this user).
    #[error("cannot read {flag} {path}: {source}")]
    Read {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not valid PEM.
    #[error("{flag} {path} is not valid PEM: {why}")]
    NotPem {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM reader says.
        why: String,
    },
    /// The certificate file holds no certificate.
    #[error("--tls-cert {0} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("--tls-key {0} holds no PEM private key (-----BEGIN PRIVATE KEY-----)")]
    NoKey(PathBuf),
    /// The key is not the certificate's.
    #[error("--tls-key {key} does not match the certificate in --tls-cert {cert}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refuses the pair (an unsupported key type, a malformed certificate).
    #[error("--tls-cert {cert} with --tls-key {key}: {source}")]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls says.
        source: rustls::Error,
    },
}

/// The server's certificate and key, or rather the rustls configuration made of them, and
/// the files to read again on [`Tls::reload`]. Clones share the configuration.
#[derive(Clone, Debug)]
pub struct Tls {
    files: Arc<TlsFiles>,
}

#[derive(Debug)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    /// Read at each accepted connection, replaced by a reload; never borrowed across an
    /// `.await`.
    config: watch::Sender<Arc<ServerConfig>>,
}

/// Two configurations are equal when they read the same files.
impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        self.files.cert == other.files.cert && self.files.key == other.files.key
    }
}

impl Eq for Tls {}

impl Tls {
    /// Reads the certificate chain (`cert`, the server's certificate first) and its private
    /// key (`key`, PKCS#8, PKCS#1 or SEC1), both PEM.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let config = read_pair(cert, key)?;
        Ok(Tls {
            files: Arc::new(TlsFiles {
                cert: cert.to_owned(),
                key: key.to_owned(),
                config: watch::Sender::new(config),
            }),
        })
    }

    /// Reads both files again and, if they make a valid pair, serves it to the connections
    /// accepted from now on; on an error the pair loaded before stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = read_pair(&self.files.cert, &self.files.key)?;
        self.files.config.send_replace(config);
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.files.cert
    }

    /// What performs the handshake of the next connection, with the pair loaded now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.files.config.borrow().clone())
    }
}

/// The rustls configuration of the pair in `cert` and `key`.
fn read_pair(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read("--tls-cert", cert_path)?;
    let key_pem = read("--tls-key", key_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem("--tls-cert", cert_path, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_owned()));
    }
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoKey(key_path.to_owned())),
        Err(e) => return Err(not_pem("--tls-key", key_path, &e)),
    };
    // ring, as the client crate and the agent (see allocate-client's `tls` module).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let refused = |source| match source {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        },
        source => TlsError::Refused {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            source,
        },
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(refused)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(refused)?;
    // HTTP/1.1 only, as the server speaks it; websockets upgrade over it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `path`, given as `flag`, is not PEM.
fn not_pem(flag: &'static str, path: &Path, e: &pem::Error) -> TlsError {
    TlsError::NotPem {
        flag,
        path: path.to_owned(),
        why: e.to_string(),
    }
}

/// The bytes of `path`, given as `flag`.
fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}
