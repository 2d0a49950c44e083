//! `[rtmps]`: the RTMP-over-TLS listener; absent = off.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{check, FromRaw};
use crate::{Checker, ConfigError};

section! {
    raw RawTlsListener;
    /// The keys of `[rtmps]`, before `cert` and `key` become one [`TlsFiles`].
    define_required RtmpsKeys {
        /// Address, e.g. `0.0.0.0:443`.
        listen: String => listen: SocketAddr = required(), check check::addr;
    }
    raw Files {
        /// The certificate chain, PEM, leaf first.
        cert: String;
        /// Its private key, PEM: PKCS#8, PKCS#1 or SEC1.
        key: String;
    }
    define_required RtmpsTimeouts {
        /// The TLS handshake must finish within this (default 10 s).
        handshake_timeout_ms: u64 => handshake_timeout: Duration =
            default(Duration::from_secs(10)), check check::positive_ms;
    }
}

/// `[rtmps]` resolved; `span` (the table) places a missing certificate or key.
pub(crate) fn resolve(
    cx: &Checker<'_>,
    raw: Spanned<RawTlsListener>,
) -> Result<TlsListenerConfig, ConfigError> {
    let span = raw.span();
    let mut raw = raw.into_inner();
    let listen = RtmpsKeys::from_raw(&mut raw, cx, "rtmps")?.listen;
    let cert = std::mem::take(&mut raw.cert);
    let key = std::mem::take(&mut raw.key);
    let tls = super::tls_files(cx, Some(cert), Some(key), span, "rtmps")?;
    let timeouts = RtmpsTimeouts::from_raw(&mut raw, cx, "rtmps")?;
    Ok(TlsListenerConfig {
        listen,
        tls,
        handshake_timeout: timeouts.handshake_timeout,
    })
}

/// A certificate chain and its private key, PEM files. Relative paths are resolved against
/// the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `cert`: the full chain, leaf first.
    pub cert: PathBuf,
    /// `key`: PKCS#8, PKCS#1 or SEC1 private key.
    pub key: PathBuf,
}

/// TOML table `[rtmps]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListenerConfig {
    /// `listen`, e.g. `0.0.0.0:443`.
    pub listen: SocketAddr,
    pub tls: TlsFiles,
    /// `handshake_timeout_ms`: the TLS handshake must finish within this (default 10 s).
    pub handshake_timeout: Duration,
}
