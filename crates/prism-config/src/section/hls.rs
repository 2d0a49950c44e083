//! `[hls]`: the viewers' HTTP endpoint (LL-HLS, HLS, DASH and the player page); absent = off.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{check, FromRaw};
use crate::{Checker, ConfigError, TlsFiles};

section! {
    raw RawHls;
    /// The keys of `[hls]` that are checked one by one.
    define_required HlsKeys {
        /// Address of the viewers' HTTP endpoint, e.g. `0.0.0.0:8080` (apart from the admin `[http]` one).
        listen: String => listen: SocketAddr = required(), check check::addr;
        /// Segment duration target (default 2000); segments are cut on keyframes only, so a longer GOP makes longer segments.
        segment_ms: u64 => segment: Duration = default(Duration::from_secs(2)),
            check |v: u64| check::range(500, 30_000)(v).map(Duration::from_millis);
        /// LL-HLS part duration target (default 200).
        part_ms: u64 => part: Duration = default(Duration::from_millis(200)),
            check |v: u64| check::range(50, 5_000)(v).map(Duration::from_millis);
        /// Segments in the live playlist (default 6).
        window_segments: usize => window_segments: usize = default(6),
            check check::range(3, 100);
        /// Seconds kept for rewind (DVR); 0 (default) = only the live window.
        dvr_window_s: u64 => dvr_window: Duration = default(Duration::ZERO),
            check |v: u64| check::range(0, 7 * 24 * 3600)(v).map(Duration::from_secs);
        /// The DVR window of one stream never holds more than this many MiB (default 1024), in memory or in `dvr_dir`.
        dvr_max_mb: u64 => dvr_max_bytes: u64 = default(1024 * 1024 * 1024),
            check |v: u64| check::range(1, 1024 * 1024)(v).map(|mb| mb * 1024 * 1024);
        /// Directory where DVR segments spill to disk (deleted when they leave the window); absent = memory only.
        dvr_dir: String => dvr_dir: Option<PathBuf> = default(None),
            check |v: String| if v.is_empty() { Err("must not be empty".to_string()) } else { Ok(Some(PathBuf::from(v))) };
        /// `Access-Control-Allow-Origin` of every answer (default `*`, so a player on another origin works).
        allow_origin: String => allow_origin: String = default("*".to_string()),
            check |v: String| check::header_token(&v).map(|()| v);
        /// Viewers' HTTP connections open at once (default 10000); more are closed at once.
        max_connections: usize => max_connections: usize = default(10_000),
            check check::positive;
        /// Blocking playlist reloads and part requests parked at once (default 10000); more get 503.
        max_blocking_requests: usize => max_blocking_requests: usize = default(10_000),
            check check::positive;
        /// Segment container: `fmp4` (default: CMAF, LL-HLS and DASH), `ts` (MPEG-TS for old set-top boxes, classic HLS) or `both`; routes may override it.
        container: String => container: HlsContainer = default(HlsContainer::Fmp4),
            check HlsContainer::parse;
    }
    raw Files {
        /// Certificate chain, PEM: serve HTTPS and HTTP/2 (ALPN) on `listen`; re-read on SIGHUP.
        #[serde(default)]
        cert: Option<String>;
        /// Its private key, PEM.
        #[serde(default)]
        key: Option<String>;
    }
}

/// What HLS segments are made of (`container`, in `[hls]` and per `[[route]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HlsContainer {
    /// CMAF (fMP4): LL-HLS, HLS and DASH.
    #[default]
    Fmp4,
    /// MPEG-TS only: classic HLS (`ts.m3u8`), no CMAF work.
    Ts,
    /// Both: CMAF as with `fmp4`, and `ts.m3u8` beside it over the same cuts.
    Both,
}

impl HlsContainer {
    pub(crate) fn parse(v: String) -> Result<HlsContainer, String> {
        match v.as_str() {
            "fmp4" => Ok(HlsContainer::Fmp4),
            "ts" => Ok(HlsContainer::Ts),
            "both" => Ok(HlsContainer::Both),
            _ => Err(format!(
                "`{v}` is not a container: \"fmp4\", \"ts\" or \"both\""
            )),
        }
    }
}

/// `[hls]` resolved; `span` (the table) places a lone `cert` or `key`.
pub(crate) fn resolve(cx: &Checker<'_>, raw: Spanned<RawHls>) -> Result<HlsConfig, ConfigError> {
    let span = raw.span();
    let mut raw = raw.into_inner();
    let keys = HlsKeys::from_raw(&mut raw, cx, "hls")?;
    if keys.part * 2 > keys.segment {
        return Err(cx.err(
            span.clone(),
            "hls.part_ms",
            "must be at most half of segment_ms (a segment holds several parts)",
        ));
    }
    let tls = match (raw.cert.take(), raw.key.take()) {
        (None, None) => None,
        (cert, key) => Some(super::tls_files(cx, cert, key, span, "hls")?),
    };
    Ok(HlsConfig { keys, tls })
}

/// TOML table `[hls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsConfig {
    pub keys: HlsKeys,
    /// `cert` and `key`: HTTPS (HTTP/1.1 and HTTP/2) instead of plain HTTP.
    pub tls: Option<TlsFiles>,
}

impl std::ops::Deref for HlsConfig {
    type Target = HlsKeys;
    fn deref(&self) -> &HlsKeys {
        &self.keys
    }
}
