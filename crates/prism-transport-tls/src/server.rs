//! The listener side: a server certificate that can be swapped while running.

use crate::files::{load_certs, load_key, TlsError};
use prism_config::TlsFiles;
use prism_relay::ErrorReason;
use rustls::ServerConfig;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A server certificate and key read from PEM files, re-read on [`reload`](Self::reload).
///
/// Each handshake takes the config current when it starts; a reload swaps it for new
/// connections only, so live connections keep their session. A reload that fails keeps the
/// certificate in use.
#[derive(Debug)]
pub struct ReloadableTls {
    files: TlsFiles,
    /// ALPN protocols offered (HTTP servers: `h2`, `http/1.1`); empty for RTMPS.
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<ServerConfig>>,
}

/// Why a TLS handshake with a client failed. `reason` is the metrics label.
#[derive(Debug)]
pub struct HandshakeError {
    /// [`ErrorReason::TlsHandshakeTimeout`] or [`ErrorReason::TlsHandshake`].
    pub reason: ErrorReason,
    pub detail: String,
}

impl ReloadableTls {
    /// Reads the certificate chain and key. An error names the file at fault.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        Self::load_with_alpn(files, Vec::new())
    }

    /// As [`load`](Self::load), offering `alpn` protocols in the handshake (an HTTP server
    /// offers `h2` so that clients can speak HTTP/2).
    pub fn load_with_alpn(files: &TlsFiles, alpn: Vec<Vec<u8>>) -> Result<Self, TlsError> {
        Ok(ReloadableTls {
            current: RwLock::new(build(files, &alpn)?),
            files: files.clone(),
            alpn,
        })
    }

    /// Re-reads the files and, if they are valid, serves them to new connections.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.files, &self.alpn)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// The files this certificate is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The config new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs the server side of a TLS handshake on `io`, failing after `timeout`.
    pub async fn accept<IO>(
        &self,
        io: IO,
        timeout: Duration,
    ) -> Result<TlsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = TlsAcceptor::from(self.config());
        match tokio::time::timeout(timeout, acceptor.accept(io)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(HandshakeError {
                reason: ErrorReason::TlsHandshake,
                detail: e.to_string(),
            }),
            Err(_) => Err(HandshakeError {
                reason: ErrorReason::TlsHandshakeTimeout,
                detail: format!("no TLS handshake within {timeout:?}"),
            }),
        }
    }
}

fn build(files: &TlsFiles, alpn: &[Vec<u8>]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let rejected = |source| TlsError::Rejected {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config = ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_no_client_auth()
        // Checks that the key belongs to the leaf certificate.
        .with_single_cert(certs, key)
        .map_err(rejected)?;
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}
