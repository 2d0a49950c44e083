//! Reading PEM certificates, keys and CA bundles from disk.

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// Why certificates, keys or CAs could not be loaded. `Display` names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not PEM, or holds nothing of the kind expected there.
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    /// rustls refused the certificate chain and key (the key does not belong to the
    /// certificate, an unsupported key type, ...).
    #[error("{} with key {}: {source}", cert.display(), key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// A CA file holds a certificate that cannot serve as a trust anchor.
    #[error("{}: {message}", path.display())]
    BadCa { path: PathBuf, message: String },
    /// The crypto provider cannot build a config (a build problem, not a file problem).
    #[error("TLS provider: {0}")]
    Provider(#[source] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every `CERTIFICATE` block of a PEM file, in order; at least one.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: pem_message(e),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: "no certificate found (expected PEM `BEGIN CERTIFICATE` blocks)".into(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 (`RSA PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`).
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        message: match e {
            pem::Error::NoItemsFound => {
                "no private key found (expected PEM PKCS#8, PKCS#1 or SEC1)".into()
            }
            e => pem_message(e),
        },
    })
}

/// The parser's message, with the markers it quotes as text rather than bytes.
fn pem_message(e: pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "malformed PEM: missing `-----END {}-----`",
            String::from_utf8_lossy(&end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed PEM: bad section start `{}`",
            String::from_utf8_lossy(&line)
        ),
        e => format!("malformed PEM: {e}"),
    }
}
