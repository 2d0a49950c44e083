//! `[rtmpt]`: RTMP tunnelled over plain HTTP; absent = off. Its table shape is shared with
//! `[rtmpts]`, which takes the same keys plus `cert` and `key`.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::{check, FromRaw};
use crate::{Checker, ConfigError};

section! {
    raw RawTunnel;
    /// TOML table `[rtmpt]` (and the tunnel part of `[rtmpts]`).
    define_required TunnelConfig {
        /// Address, e.g. `0.0.0.0:80`.
        listen: String => listen: SocketAddr = required(), check check::addr;
        /// Concurrent tunnel sessions (default 1000).
        max_sessions: usize => max_sessions: usize = default(1000), check check::positive;
        /// A session nobody polls for this long expires (default 15 s).
        session_timeout_ms: u64 => session_timeout: Duration = default(Duration::from_secs(15)),
            check check::positive_ms;
        /// Largest request body accepted (default 8 MiB).
        max_body_bytes: usize => max_body_bytes: usize = default(8 * 1024 * 1024),
            check check::positive;
        /// Bytes buffered per session and direction (default 8 MiB).
        max_buffer_bytes: usize => max_buffer_bytes: usize = default(8 * 1024 * 1024),
            check check::positive;
    }
    // Parsed here so that [rtmpt] can say where they belong rather than "unknown field".
    raw TunnelTls {
        /// `[rtmpts]` only: the certificate chain, PEM, leaf first.
        cert: Option<String>;
        /// `[rtmpts]` only: its private key, PEM.
        key: Option<String>;
    }
}

/// `[rtmpt]` resolved.
pub(crate) fn resolve(
    cx: &Checker<'_>,
    raw: Spanned<RawTunnel>,
) -> Result<TunnelConfig, ConfigError> {
    let span = raw.span();
    let mut raw = raw.into_inner();
    if raw.cert.is_some() || raw.key.is_some() {
        return Err(cx.err(
            span,
            "rtmpt",
            "`cert` and `key` belong in [rtmpts] (the tunnel over HTTPS)",
        ));
    }
    TunnelConfig::from_raw(&mut raw, cx, "rtmpt")
}
