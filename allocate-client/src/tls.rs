//! The one rustls configuration that both HTTPS and WSS use: the operating system's roots plus
//! an optional extra CA file, with the ring provider.

use crate::error::Error;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;

/// Most certificates read from the extra CA file (a bundle, not a database).
const CA_FILE_CERTS_MAX: usize = 1024;

/// A rustls client configuration trusting the system's roots (when `system_roots`) and every
/// certificate in `extra_ca`.
pub(crate) fn client_config(
    system_roots: bool,
    extra_ca: Option<&Path>,
) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    if system_roots {
        // Certificates the platform lists but rustls cannot parse are skipped, as browsers do;
        // a machine with no roots at all still works with an extra CA file.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    if let Some(path) = extra_ca {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| ca_error(path, e))?;
        }
    }
    // ring rather than aws-lc-rs: no cmake or large C build, and every platform the workspace
    // builds on. rustls 0.23.48 deprecates it for lacking post-quantum key exchange; moving to
    // aws-lc-rs is this line and the `ring` features in Cargo.toml.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Setup(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The PEM certificates in `path`: at least one, at most [`CA_FILE_CERTS_MAX`].
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| ca_error(path, e))?
        .take(CA_FILE_CERTS_MAX)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_error(path, e))?;
    if certs.is_empty() {
        return Err(ca_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn ca_error(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::CaFile {
        path: path.to_owned(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let missing = Path::new("no-such-dir/ca.pem");
        let err = client_config(false, Some(missing)).unwrap_err();
        assert!(
            matches!(&err, Error::CaFile { path, .. } if path == missing),
            "{err}"
        );
        let empty =
            std::env::temp_dir().join(format!("allocate-client-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(false, Some(&empty)).unwrap_err();
        std::fs::remove_file(&empty).unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        assert!(client_config(false, None).is_ok());
    }
}
