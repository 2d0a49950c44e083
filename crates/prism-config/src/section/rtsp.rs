//! `[rtsp]`: the RTSP server (players out); absent = off. `[rtsps]` (RTSP over TLS)
//! takes the same keys plus `cert` and `key`.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::{check, FromRaw};
use crate::{Checker, ConfigError, TlsFiles};

section! {
    raw RawRtsp;
    /// TOML table `[rtsp]` (and the shared keys of `[rtsps]`).
    define_required RtspConfig {
        /// TCP address players connect to, e.g. `0.0.0.0:8554`: rtsp://HOST:PORT/{app}/{key}.
        listen: String => listen: SocketAddr = required(), check check::addr;
        /// A session that sends no request (RTSP or RTCP) for this long is closed; announced to players in the `Session` header.
        session_timeout_ms: u64 => session_timeout: Duration = default(Duration::from_millis(60_000)),
            check |v: u64| check::range(5_000, 600_000)(v).map(Duration::from_millis);
    }
    raw Files {
        /// `[rtsps]` only: the certificate chain, PEM, leaf first.
        cert: Option<String>;
        /// `[rtsps]` only: its private key, PEM.
        key: Option<String>;
    }
}

/// `[rtsp]` resolved: `cert` and `key` are refused there.
pub(crate) fn resolve(cx: &Checker<'_>, raw: Spanned<RawRtsp>) -> Result<RtspConfig, ConfigError> {
    let span = raw.span();
    let mut raw = raw.into_inner();
    if raw.cert.is_some() || raw.key.is_some() {
        return Err(cx.err(
            span,
            "rtsp",
            "`cert` and `key` belong in [rtsps] (RTSP over TLS)",
        ));
    }
    RtspConfig::from_raw(&mut raw, cx, "rtsp")
}

/// `[rtsps]` resolved; a missing `cert` or `key` is placed at the table.
pub(crate) fn resolve_tls(
    cx: &Checker<'_>,
    raw: Spanned<RawRtsp>,
) -> Result<(RtspConfig, TlsFiles), ConfigError> {
    let span = raw.span();
    let mut raw = raw.into_inner();
    let tls = super::tls_files(cx, raw.cert.take(), raw.key.take(), span, "rtsps")?;
    Ok((RtspConfig::from_raw(&mut raw, cx, "rtsps")?, tls))
}
