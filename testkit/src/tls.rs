//! A private CA made in the test, and the certificates it issues for `localhost` and
//! `127.0.0.1`, written as PEM files in a folder of its own (removed on drop): what a TLS
//! server (the real one with `--tls-cert`, or [`crate::server::TlsFront`]) serves and what a
//! client trusts with its CA file.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use std::path::PathBuf;

/// A private certificate authority.
pub struct TestCa {
    key: KeyPair,
    cert: rcgen::Certificate,
    /// The folder of its files.
    pub dir: PathBuf,
    /// Its certificate, as a PEM file: what a client is given to trust.
    pub ca_file: PathBuf,
}

/// A certificate for `localhost` and `127.0.0.1` signed by a [`TestCa`], and its key.
#[derive(Debug)]
pub struct Issued {
    /// The certificate, as a PEM file.
    pub cert_file: PathBuf,
    /// The private key (PKCS#8), as a PEM file.
    pub key_file: PathBuf,
    /// The certificate, DER: what a client sees of the server.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

impl TestCa {
    /// A new CA, its certificate written to a fresh folder under the temporary directory.
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = std::env::temp_dir().join(format!("allocate-test-ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).expect("CA folder");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write the CA file");
        TestCa {
            key,
            cert,
            dir,
            ca_file,
        }
    }

    /// A new certificate for `localhost` and `127.0.0.1` with a new key, written as
    /// `{name}.pem` and `{name}.key` in the CA's folder (replacing files of that name).
    pub fn issue(&self, name: &str) -> Issued {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("certificate");
        let cert_file = self.dir.join(format!("{name}.pem"));
        let key_file = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, cert.pem()).expect("write the certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        Issued {
            cert_file,
            key_file,
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

/// Its folder (rcgen's certificate has no `Debug`).
impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("dir", &self.dir).finish()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
