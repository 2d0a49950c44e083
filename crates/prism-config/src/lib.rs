//! Prism's configuration: the TOML file format, its defaults, and strict
//! validation with `file:line:col` errors.
//!
//! This crate only describes *what* to do (listen addresses, routes, queue
//! budgets); it must not know how any of it is done: no sockets, no RTMP, no
//! hub or relay types, no logging. Other crates read the plain structs here.

mod access;
mod pattern;
mod url;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use access::{
    canonical as canonical_ip, Access, AuthConfig, IpNet, Limits, RouteAccess, Secret, WebhookUrl,
};
pub use pattern::StreamPattern;
pub use url::redact_url;

/// Checks a target URL (template or expanded) as the config does; `Err` is a message that
/// quotes the URL redacted.
pub fn validate_target_url(url: &str) -> Result<(), String> {
    url::validate_target_url(url)
}

/// Checks a target name as the config does: non-empty, `[A-Za-z0-9_.-]+` (it is a metric
/// label). `Err` is a message for the operator.
pub fn validate_target_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(format!(
            "`{name}` must be 1 to 64 characters of A-Z a-z 0-9 _ . - (it is a metric label)"
        ));
    }
    Ok(())
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub rtmp: RtmpConfig,
    pub http: HttpConfig,
    /// TOML table `[stream]`: how the hub treats ingested streams.
    pub hub: HubConfig,
    /// TOML table `[player]`: queue budget of every player (subscriber).
    pub player: QueueConfig,
    /// TOML `[[route]]`, in file order.
    pub routes: Vec<Route>,
    /// TOML table `[rtmps]`: RTMP over TLS listener; absent = off.
    pub rtmps: Option<TlsListenerConfig>,
    /// TOML table `[rtmpt]`: RTMP tunnelled over plain HTTP; absent = off.
    pub rtmpt: Option<TunnelConfig>,
    /// TOML table `[rtmpts]`: RTMP tunnelled over HTTPS; absent = off. Takes the `[rtmpt]`
    /// keys plus `cert` and `key`.
    pub rtmpts: Option<(TunnelConfig, TlsFiles)>,
    /// TOML table `[srt]`: SRT listener (MPEG-TS ingest and play); absent = off.
    pub srt: Option<SrtConfig>,
    /// TOML table `[auth]`: publish/play webhooks.
    pub auth: AuthConfig,
    /// TOML table `[limits]`: connections, streams and targets.
    pub limits: Limits,
}

/// TOML table `[srt]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtConfig {
    /// `listen` (UDP), e.g. `0.0.0.0:9000`.
    pub listen: SocketAddr,
    /// `latency_ms`: receive latency we ask for (the larger of both sides' wins), default 120.
    pub latency: Duration,
    /// `passphrase`: callers must encrypt with it (10..=79 bytes); absent = no encryption.
    pub passphrase: Option<SrtPassphrase>,
    /// `pbkeylen`: AES key length in bytes (16, 24 or 32; default 16). Only with `passphrase`.
    pub pbkeylen: u8,
    /// `default_stream`: `app/key` for callers that send no stream id; absent = refuse them.
    pub default_stream: Option<String>,
}

/// An SRT passphrase. `Debug` never shows it, so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtPassphrase(String);

impl SrtPassphrase {
    /// The passphrase itself, for handing to the SRT engine only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SrtPassphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtPassphrase(<redacted>)")
    }
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

/// TOML table `[rtmpt]` (and the tunnel part of `[rtmpts]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// `listen`, e.g. `0.0.0.0:80`.
    pub listen: SocketAddr,
    /// `max_sessions`: concurrent tunnel sessions (default 1000).
    pub max_sessions: usize,
    /// `session_timeout_ms`: a session nobody polls for this long expires (default 15 s).
    pub session_timeout: Duration,
    /// `max_body_bytes`: largest request body accepted (default 8 MiB).
    pub max_body_bytes: usize,
    /// `max_buffer_bytes`: bytes buffered per session and direction (default 8 MiB).
    pub max_buffer_bytes: usize,
}

/// TOML table `[rtmp]`: the RTMP ingest/playback listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpConfig {
    /// `listen`, default `0.0.0.0:1935`.
    pub listen: SocketAddr,
    /// `chunk_size`: the chunk size we announce for outgoing messages, 128..=65536.
    pub chunk_size: u32,
    /// `handshake_timeout_ms`: a peer that has not finished the handshake by
    /// then is dropped, so idle scanners cannot pin connections.
    pub handshake_timeout: Duration,
    /// `max_message_bytes`: largest incoming message we reassemble; bounds the
    /// memory a single peer can make us allocate.
    pub max_message_bytes: u32,
    /// `max_chunk_size`: largest Set Chunk Size a peer may announce.
    pub max_chunk_size: u32,
    /// `idle_timeout_ms`: a publisher (or a connection that has not started playing) that
    /// sends nothing for this long is closed. Players are judged by write progress instead.
    pub idle_timeout: Duration,
}

/// TOML table `[http]`: admin/observability endpoint (`/metrics`, `/healthz`, the admin
/// API under `/api/` and the status page at `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `listen`, default `127.0.0.1:9935` (loopback: metrics are not for the internet).
    pub listen: SocketAddr,
    /// `token`: bearer token every `/api/` request must carry. Absent = the API answers
    /// only while `listen` is a loopback address.
    pub token: Option<ApiToken>,
}

/// The admin API bearer token. `Debug` never shows it, so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token itself, for comparing with a request's only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// TOML table `[stream]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// `reconnect_grace_ms`: how long a stream (and its outgoing targets) stays
    /// alive after its publisher drops, waiting for it to come back. 0 = none.
    pub reconnect_grace: Duration,
    /// `gop_cache`: keep the last GOP so new players start on a keyframe.
    pub gop_cache: bool,
}

/// Queue budget of one outgoing connection (target or player).
/// TOML keys: `max_queue_ms`, `max_queue_bytes`, `overflow_disconnect_ms`, `write_merge_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most media (by timestamp span) queued before frames are dropped.
    pub max_queue_ms: u32,
    /// Most bytes queued before frames are dropped.
    pub max_queue_bytes: usize,
    /// How long the queue may stay over budget before the connection is
    /// dropped (and, for a target, reconnected). 0 = at once.
    pub overflow_disconnect: Duration,
    /// Hold output up to this long so the frames of that span go out in one write (SRS's
    /// "merged write"): fewer syscalls and wake-ups per byte, for up to this much latency.
    /// 0 = write every frame as it arrives.
    pub write_merge: Duration,
}

/// TOML `[[route]]`: where streams matching `stream` are pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub stream: StreamPattern,
    /// TOML `[[route.target]]`; names are unique within a route. May be empty when the
    /// route only sets access rules.
    pub targets: Vec<TargetConfig>,
    /// `publish_tokens`, `allow_publish`, `play`, `play_tokens`, `allow_play`.
    pub access: RouteAccess,
}

/// TOML `[[route.target]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// Used in logs and as the `target` metric label: `[A-Za-z0-9_.-]+`.
    pub name: String,
    /// URL template; `{app}` and `{stream}` (the key) expand. Holds secrets:
    /// log it through [`redact_url`].
    pub url: String,
    pub queue: QueueConfig,
    pub tls: TargetTls,
}

/// TLS options of an `rtmps://` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTls {
    /// `ca`: PEM file of CA certificates to trust instead of the system roots (private CAs).
    pub ca: Option<PathBuf>,
    /// `tls_verify`: false skips certificate verification. For testing only; logged loudly.
    pub verify: bool,
}

impl Default for TargetTls {
    fn default() -> Self {
        TargetTls {
            ca: None,
            verify: true,
        }
    }
}

/// A target for one concrete stream, URL expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    pub name: String,
    /// Expanded URL; holds secrets, log it through [`redact_url`].
    pub url: String,
    pub queue: QueueConfig,
    pub tls: TargetTls,
}

impl ResolvedTarget {
    /// A target added at run time (the admin API) to stream `app`/`key`: name and URL are
    /// checked as the config checks them, `{app}`/`{stream}` expand, queue budget and TLS
    /// options are the defaults. `Err` is a message for the operator (URL redacted).
    pub fn for_stream(name: &str, url: &str, app: &str, key: &str) -> Result<Self, String> {
        validate_target_name(name).map_err(|m| format!("name: {m}"))?;
        validate_target_url(url).map_err(|m| format!("url: {m}"))?;
        Ok(ResolvedTarget {
            name: name.to_owned(),
            url: url::expand(url, app, key),
            queue: QueueConfig::default(),
            tls: TargetTls::default(),
        })
    }
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            chunk_size: 4096,
            handshake_timeout: Duration::from_millis(10_000),
            max_message_bytes: 8 * 1024 * 1024,
            max_chunk_size: 16 * 1024 * 1024,
            idle_timeout: Duration::from_millis(30_000),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9935)),
            token: None,
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            reconnect_grace: Duration::from_millis(5_000),
            gop_cache: true,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_queue_ms: 3_000,
            max_queue_bytes: 8 * 1024 * 1024,
            overflow_disconnect: Duration::from_millis(10_000),
            write_merge: Duration::ZERO,
        }
    }
}

/// A configuration that could not be read or is invalid. `Display` is the
/// complete message for the operator, starting with `file:line:col:` when the
/// problem has a place in the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: cannot read config: {source}")]
    Read {
        origin: String,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax errors and schema errors (unknown key, wrong type, missing key).
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Schema errors the TOML parser could not place in the file.
    #[error("{origin}: {message}")]
    Unplaced { origin: String, message: String },
    /// A value that parsed but makes no sense; `key` is its path, e.g. `route[1].target[0].url`.
    #[error("{origin}:{line}:{column}: {key}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

impl Config {
    /// Parses and validates `text`; `origin` names the file in messages.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim_end().to_string();
            match e.span() {
                Some(span) => {
                    let (line, column) = line_col(text, span.start);
                    ConfigError::Parse {
                        origin: origin.into(),
                        line,
                        column,
                        message,
                    }
                }
                None => ConfigError::Unplaced {
                    origin: origin.into(),
                    message,
                },
            }
        })?;
        Checker { text, origin }.build(raw)
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            origin: origin.clone(),
            source,
        })?;
        let mut config = Config::from_toml_str(&text, &origin)?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Makes relative file paths (certificates, keys, CAs) relative to `dir`.
    pub fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(l) = &mut self.rtmps {
            fix(&mut l.tls.cert);
            fix(&mut l.tls.key);
        }
        if let Some((_, tls)) = &mut self.rtmpts {
            fix(&mut tls.cert);
            fix(&mut tls.key);
        }
        for r in &mut self.routes {
            for t in &mut r.targets {
                if let Some(ca) = &mut t.tls.ca {
                    fix(ca);
                }
            }
        }
    }

    /// Targets for stream `app`/`key`: the union over all matching routes in
    /// file order, `{app}`/`{stream}` expanded. A name already taken by an
    /// earlier route is skipped (first wins), so names are unique per stream
    /// and can serve as metric labels.
    pub fn targets_for(&self, app: &str, key: &str) -> Vec<ResolvedTarget> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for route in self.routes.iter().filter(|r| r.stream.matches(app, key)) {
            for t in &route.targets {
                if seen.insert(t.name.as_str()) {
                    out.push(ResolvedTarget {
                        name: t.name.clone(),
                        url: url::expand(&t.url, app, key),
                        queue: t.queue,
                        tls: t.tls.clone(),
                    });
                }
            }
        }
        out
    }

    /// The access rules of stream `app`/`key`: for each rule, the first matching route (file
    /// order) that sets it decides; no route setting it = open (play: on).
    pub fn access_for(&self, app: &str, key: &str) -> Access<'_> {
        let mut a = Access {
            play: true,
            ..Access::default()
        };
        let mut play = None;
        for r in self.routes.iter().filter(|r| r.stream.matches(app, key)) {
            let x = &r.access;
            a.publish_tokens = a.publish_tokens.or(x.publish_tokens.as_deref());
            a.allow_publish = a.allow_publish.or(x.allow_publish.as_deref());
            a.play_tokens = a.play_tokens.or(x.play_tokens.as_deref());
            a.allow_play = a.allow_play.or(x.allow_play.as_deref());
            play = play.or(x.play);
        }
        a.play = play.unwrap_or(true);
        a
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

// ---- The TOML shape. Kept apart from the public structs so that the public
// ---- ones carry plain validated values and no spans.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    rtmp: RawRtmp,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    stream: RawHub,
    #[serde(default)]
    player: RawQueue,
    #[serde(default)]
    route: Vec<RawRoute>,
    rtmps: Option<Spanned<RawTlsListener>>,
    rtmpt: Option<Spanned<RawTunnel>>,
    rtmpts: Option<Spanned<RawTunnel>>,
    srt: Option<Spanned<RawSrt>>,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    on_publish: Option<Spanned<String>>,
    on_play: Option<Spanned<String>>,
    timeout_ms: Option<Spanned<u64>>,
    token: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<Spanned<usize>>,
    max_connections_per_ip: Option<Spanned<usize>>,
    max_streams: Option<Spanned<usize>>,
    max_targets_per_stream: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSrt {
    listen: Spanned<String>,
    latency_ms: Option<Spanned<u64>>,
    passphrase: Option<Spanned<String>>,
    pbkeylen: Option<Spanned<u8>>,
    default_stream: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsListener {
    listen: Spanned<String>,
    cert: String,
    key: String,
    handshake_timeout_ms: Option<Spanned<u64>>,
}

/// `[rtmpt]` and `[rtmpts]`; `cert` and `key` are only valid (and required) in `[rtmpts]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnel {
    listen: Spanned<String>,
    max_sessions: Option<Spanned<usize>>,
    session_timeout_ms: Option<Spanned<u64>>,
    max_body_bytes: Option<Spanned<usize>>,
    max_buffer_bytes: Option<Spanned<usize>>,
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRtmp {
    listen: Option<Spanned<String>>,
    chunk_size: Option<Spanned<u32>>,
    handshake_timeout_ms: Option<Spanned<u64>>,
    max_message_bytes: Option<Spanned<u32>>,
    max_chunk_size: Option<Spanned<u32>>,
    idle_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHub {
    reconnect_grace_ms: Option<u64>,
    gop_cache: Option<bool>,
}

/// Held output counts against the queue budget and delays every frame: keep it short.
const MAX_WRITE_MERGE_MS: u32 = 1000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    max_queue_ms: Option<Spanned<u32>>,
    max_queue_bytes: Option<Spanned<usize>>,
    overflow_disconnect_ms: Option<u64>,
    write_merge_ms: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    stream: Spanned<String>,
    #[serde(default)]
    target: Vec<RawTarget>,
    publish_tokens: Option<Spanned<Vec<String>>>,
    allow_publish: Option<Spanned<Vec<String>>>,
    play: Option<bool>,
    play_tokens: Option<Spanned<Vec<String>>>,
    allow_play: Option<Spanned<Vec<String>>>,
}

// Queue keys are repeated rather than `#[serde(flatten)]`ed: flatten disables
// deny_unknown_fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    url: Spanned<String>,
    max_queue_ms: Option<Spanned<u32>>,
    max_queue_bytes: Option<Spanned<usize>>,
    overflow_disconnect_ms: Option<u64>,
    write_merge_ms: Option<Spanned<u32>>,
    ca: Option<String>,
    tls_verify: Option<bool>,
}

/// Semantic validation of the raw shape, with errors placed in the file.
struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid {
            origin: self.origin.into(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let d = Config::default();
        let rtmp = RtmpConfig {
            listen: self.addr(raw.rtmp.listen, "rtmp.listen", d.rtmp.listen)?,
            chunk_size: match raw.rtmp.chunk_size {
                Some(v) if !(128..=65536).contains(v.get_ref()) => {
                    return Err(self.err(v.span(), "rtmp.chunk_size", "must be in 128..=65536"))
                }
                Some(v) => v.into_inner(),
                None => d.rtmp.chunk_size,
            },
            handshake_timeout: match raw.rtmp.handshake_timeout_ms {
                Some(v) if *v.get_ref() == 0 => {
                    return Err(self.err(v.span(), "rtmp.handshake_timeout_ms", "must be > 0"))
                }
                Some(v) => Duration::from_millis(v.into_inner()),
                None => d.rtmp.handshake_timeout,
            },
            max_message_bytes: match raw.rtmp.max_message_bytes {
                // RTMP message lengths are 24-bit; a larger limit could never apply.
                Some(v) if !(1..=0xFF_FFFF).contains(v.get_ref()) => {
                    return Err(self.err(
                        v.span(),
                        "rtmp.max_message_bytes",
                        "must be in 1..=16777215 (RTMP message lengths are 24-bit)",
                    ))
                }
                Some(v) => v.into_inner(),
                None => d.rtmp.max_message_bytes,
            },
            max_chunk_size: match raw.rtmp.max_chunk_size {
                // 128 is the protocol's initial chunk size; nobody announces less.
                Some(v) if !(128..=0x7FFF_FFFF).contains(v.get_ref()) => {
                    return Err(self.err(
                        v.span(),
                        "rtmp.max_chunk_size",
                        "must be in 128..=2147483647",
                    ))
                }
                Some(v) => v.into_inner(),
                None => d.rtmp.max_chunk_size,
            },
            idle_timeout: self.positive_ms(
                raw.rtmp.idle_timeout_ms,
                "rtmp.idle_timeout_ms",
                d.rtmp.idle_timeout,
            )?,
        };
        let http = HttpConfig {
            listen: self.addr(raw.http.listen, "http.listen", d.http.listen)?,
            token: match raw.http.token {
                // Never echo the value: only what is wrong with it.
                Some(t) if t.get_ref().len() < 16 => {
                    return Err(self.err(
                        t.span(),
                        "http.token",
                        "must be at least 16 characters (e.g. `openssl rand -hex 32`)",
                    ))
                }
                Some(t) if !t.get_ref().chars().all(|c| c.is_ascii_graphic()) => {
                    return Err(self.err(
                        t.span(),
                        "http.token",
                        "must be printable ASCII without spaces (it travels in an HTTP header)",
                    ))
                }
                Some(t) => Some(ApiToken(t.into_inner())),
                None => None,
            },
        };
        let hub = HubConfig {
            reconnect_grace: raw
                .stream
                .reconnect_grace_ms
                .map_or(d.hub.reconnect_grace, Duration::from_millis),
            gop_cache: raw.stream.gop_cache.unwrap_or(d.hub.gop_cache),
        };
        let player = self.queue(raw.player, "player", QueueConfig::default())?;
        let limits = self.limits(raw.limits)?;
        let routes = raw
            .route
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.route(i, r, &limits))
            .collect::<Result<_, _>>()?;
        let auth = self.auth(raw.auth)?;
        let rtmps = match raw.rtmps {
            None => None,
            Some(t) => {
                let span = t.span();
                let t = t.into_inner();
                Some(TlsListenerConfig {
                    listen: self.addr(Some(t.listen), "rtmps.listen", d.rtmp.listen)?,
                    tls: self.tls_files(Some(t.cert), Some(t.key), span, "rtmps")?,
                    handshake_timeout: self.positive_ms(
                        t.handshake_timeout_ms,
                        "rtmps.handshake_timeout_ms",
                        Duration::from_secs(10),
                    )?,
                })
            }
        };
        let rtmpt = match raw.rtmpt {
            None => None,
            Some(t) => {
                let span = t.span();
                let t = t.into_inner();
                if t.cert.is_some() || t.key.is_some() {
                    return Err(self.err(
                        span,
                        "rtmpt",
                        "`cert` and `key` belong in [rtmpts] (the tunnel over HTTPS)",
                    ));
                }
                Some(self.tunnel(t, "rtmpt")?)
            }
        };
        let rtmpts = match raw.rtmpts {
            None => None,
            Some(t) => {
                let span = t.span();
                let mut t = t.into_inner();
                let tls = self.tls_files(t.cert.take(), t.key.take(), span, "rtmpts")?;
                Some((self.tunnel(t, "rtmpts")?, tls))
            }
        };
        let srt = match raw.srt {
            None => None,
            Some(t) => Some(self.srt(t.into_inner())?),
        };
        Ok(Config {
            rtmp,
            http,
            hub,
            player,
            routes,
            rtmps,
            rtmpt,
            rtmpts,
            srt,
            auth,
            limits,
        })
    }

    fn auth(&self, a: RawAuth) -> Result<AuthConfig, ConfigError> {
        let url = |v: Option<Spanned<String>>, key: &str| match v {
            None => Ok(None),
            Some(v) => WebhookUrl::parse(v.get_ref())
                .map(Some)
                // The URL is not quoted: its query may hold a secret.
                .map_err(|m| self.err(v.span(), key, m)),
        };
        let d = AuthConfig::default();
        Ok(AuthConfig {
            on_publish: url(a.on_publish, "auth.on_publish")?,
            on_play: url(a.on_play, "auth.on_play")?,
            timeout: match a.timeout_ms {
                Some(v) if !(1..=60_000).contains(v.get_ref()) => {
                    return Err(self.err(v.span(), "auth.timeout_ms", "must be in 1..=60000"))
                }
                Some(v) => Duration::from_millis(v.into_inner()),
                None => d.timeout,
            },
            token: match a.token {
                // Never echo the value: only what is wrong with it.
                Some(t)
                    if t.get_ref().is_empty()
                        || !t.get_ref().chars().all(|c| c.is_ascii_graphic()) =>
                {
                    return Err(self.err(
                        t.span(),
                        "auth.token",
                        "must be printable ASCII without spaces (it travels in an HTTP header)",
                    ))
                }
                Some(t) => Some(Secret::new(t.into_inner())),
                None => None,
            },
        })
    }

    fn limits(&self, l: RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let positive = |v: Option<Spanned<usize>>, key: &str, default: usize| match v {
            Some(v) if *v.get_ref() == 0 => {
                Err(self.err(v.span(), &format!("limits.{key}"), "must be > 0"))
            }
            Some(v) => Ok(v.into_inner()),
            None => Ok(default),
        };
        Ok(Limits {
            max_connections: positive(l.max_connections, "max_connections", d.max_connections)?,
            max_connections_per_ip: positive(
                l.max_connections_per_ip,
                "max_connections_per_ip",
                d.max_connections_per_ip,
            )?,
            max_streams: positive(l.max_streams, "max_streams", d.max_streams)?,
            max_targets_per_stream: positive(
                l.max_targets_per_stream,
                "max_targets_per_stream",
                d.max_targets_per_stream,
            )?,
        })
    }

    fn tokens(
        &self,
        v: Option<Spanned<Vec<String>>>,
        key: &str,
    ) -> Result<Option<Vec<Secret>>, ConfigError> {
        self.nonempty_list(
            v,
            key,
            "an empty list would refuse everyone; remove the key to allow without a token",
            |t| access::validate_token(&t).map(|()| Secret::new(t)),
        )
    }

    fn networks(
        &self,
        v: Option<Spanned<Vec<String>>>,
        key: &str,
    ) -> Result<Option<Vec<IpNet>>, ConfigError> {
        self.nonempty_list(
            v,
            key,
            "an empty list would refuse everyone; remove the key to allow every address",
            |n| IpNet::parse(&n),
        )
    }

    /// An optional list that, when present, must not be empty (an empty allowlist would
    /// refuse everyone), each item checked by `parse`; errors point at the list.
    fn nonempty_list<T, E: Into<String>>(
        &self,
        v: Option<Spanned<Vec<String>>>,
        key: &str,
        empty: &str,
        parse: impl Fn(String) -> Result<T, E>,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        let span = v.span();
        let list = v.into_inner();
        if list.is_empty() {
            return Err(self.err(span, key, empty));
        }
        list.into_iter()
            .map(|item| parse(item).map_err(|m| self.err(span.clone(), key, m)))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    fn srt(&self, t: RawSrt) -> Result<SrtConfig, ConfigError> {
        let latency = match t.latency_ms {
            // SRT carries latency in 16-bit milliseconds in the handshake.
            Some(v) if *v.get_ref() > 65_535 => {
                return Err(self.err(v.span(), "srt.latency_ms", "must be in 0..=65535"))
            }
            Some(v) => Duration::from_millis(v.into_inner()),
            None => Duration::from_millis(120),
        };
        let passphrase = match t.passphrase {
            // Never echo the value: only its length.
            Some(p) if !(10..=79).contains(&p.get_ref().len()) => {
                return Err(self.err(
                    p.span(),
                    "srt.passphrase",
                    format!("must be 10..=79 bytes long (it is {})", p.get_ref().len()),
                ))
            }
            Some(p) => Some(SrtPassphrase(p.into_inner())),
            None => None,
        };
        let pbkeylen = match t.pbkeylen {
            Some(v) if passphrase.is_none() => {
                return Err(self.err(
                    v.span(),
                    "srt.pbkeylen",
                    "only applies with `passphrase` (no passphrase = no encryption)",
                ))
            }
            Some(v) if ![16, 24, 32].contains(v.get_ref()) => {
                return Err(self.err(v.span(), "srt.pbkeylen", "must be 16, 24 or 32"))
            }
            Some(v) => v.into_inner(),
            None => 16,
        };
        let default_stream = match t.default_stream {
            Some(v) => {
                let ok = matches!(v.get_ref().split_once('/'), Some((a, k))
                    if !a.is_empty() && !k.is_empty() && !k.contains('/'));
                if !ok {
                    return Err(self.err(
                        v.span(),
                        "srt.default_stream",
                        "must be `app/key` (e.g. `live/main`)",
                    ));
                }
                Some(v.into_inner())
            }
            None => None,
        };
        Ok(SrtConfig {
            listen: self.addr(
                Some(t.listen),
                "srt.listen",
                SocketAddr::from(([0, 0, 0, 0], 9000)),
            )?,
            latency,
            passphrase,
            pbkeylen,
            default_stream,
        })
    }

    fn tls_files(
        &self,
        cert: Option<String>,
        key: Option<String>,
        span: Range<usize>,
        table: &str,
    ) -> Result<TlsFiles, ConfigError> {
        match (cert, key) {
            (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => Ok(TlsFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
            _ => Err(self.err(
                span,
                table,
                "needs `cert` and `key` (PEM files: the certificate chain and its private key)",
            )),
        }
    }

    fn tunnel(&self, t: RawTunnel, table: &str) -> Result<TunnelConfig, ConfigError> {
        let positive = |v: Option<Spanned<usize>>, key: &str, default: usize| match v {
            Some(v) if *v.get_ref() == 0 => {
                Err(self.err(v.span(), &format!("{table}.{key}"), "must be > 0"))
            }
            Some(v) => Ok(v.into_inner()),
            None => Ok(default),
        };
        Ok(TunnelConfig {
            listen: self.addr(
                Some(t.listen),
                &format!("{table}.listen"),
                SocketAddr::from(([0, 0, 0, 0], 80)),
            )?,
            max_sessions: positive(t.max_sessions, "max_sessions", 1000)?,
            session_timeout: self.positive_ms(
                t.session_timeout_ms,
                &format!("{table}.session_timeout_ms"),
                Duration::from_secs(15),
            )?,
            max_body_bytes: positive(t.max_body_bytes, "max_body_bytes", 8 * 1024 * 1024)?,
            max_buffer_bytes: positive(t.max_buffer_bytes, "max_buffer_bytes", 8 * 1024 * 1024)?,
        })
    }

    fn positive_ms(
        &self,
        v: Option<Spanned<u64>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            Some(v) if *v.get_ref() == 0 => Err(self.err(v.span(), key, "must be > 0")),
            Some(v) => Ok(Duration::from_millis(v.into_inner())),
            None => Ok(default),
        }
    }

    fn addr(
        &self,
        v: Option<Spanned<String>>,
        key: &str,
        default: SocketAddr,
    ) -> Result<SocketAddr, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        v.get_ref().parse().map_err(|_| {
            self.err(
                v.span(),
                key,
                format!(
                    "`{}` is not an IP:port address (e.g. 0.0.0.0:1935 or [::]:1935)",
                    v.get_ref()
                ),
            )
        })
    }

    fn queue(
        &self,
        q: RawQueue,
        prefix: &str,
        base: QueueConfig,
    ) -> Result<QueueConfig, ConfigError> {
        Ok(QueueConfig {
            max_queue_ms: match q.max_queue_ms {
                Some(v) if *v.get_ref() == 0 => {
                    return Err(self.err(
                        v.span(),
                        &format!("{prefix}.max_queue_ms"),
                        "must be > 0",
                    ))
                }
                Some(v) => v.into_inner(),
                None => base.max_queue_ms,
            },
            max_queue_bytes: match q.max_queue_bytes {
                Some(v) if *v.get_ref() == 0 => {
                    return Err(self.err(
                        v.span(),
                        &format!("{prefix}.max_queue_bytes"),
                        "must be > 0",
                    ))
                }
                Some(v) => v.into_inner(),
                None => base.max_queue_bytes,
            },
            overflow_disconnect: q
                .overflow_disconnect_ms
                .map_or(base.overflow_disconnect, Duration::from_millis),
            write_merge: match q.write_merge_ms {
                Some(v) if *v.get_ref() > MAX_WRITE_MERGE_MS => {
                    return Err(self.err(
                        v.span(),
                        &format!("{prefix}.write_merge_ms"),
                        format!("must be at most {MAX_WRITE_MERGE_MS}"),
                    ))
                }
                Some(v) => Duration::from_millis(v.into_inner().into()),
                None => base.write_merge,
            },
        })
    }

    fn route(&self, i: usize, r: RawRoute, limits: &Limits) -> Result<Route, ConfigError> {
        let key = format!("route[{i}]");
        let stream = StreamPattern::new(r.stream.get_ref())
            .map_err(|m| self.err(r.stream.span(), &format!("{key}.stream"), m))?;
        let access = RouteAccess {
            publish_tokens: self.tokens(r.publish_tokens, &format!("{key}.publish_tokens"))?,
            allow_publish: self.networks(r.allow_publish, &format!("{key}.allow_publish"))?,
            play: r.play,
            play_tokens: self.tokens(r.play_tokens, &format!("{key}.play_tokens"))?,
            allow_play: self.networks(r.allow_play, &format!("{key}.allow_play"))?,
        };
        if r.target.is_empty() && access.is_empty() {
            return Err(self.err(
                r.stream.span(),
                &key,
                "route has no [[route.target]] and no access rule; add one or remove the route",
            ));
        }
        if r.target.len() > limits.max_targets_per_stream {
            return Err(self.err(
                r.stream.span(),
                &key,
                format!(
                    "route has {} targets, more than [limits] max_targets_per_stream ({})",
                    r.target.len(),
                    limits.max_targets_per_stream
                ),
            ));
        }
        let mut names = HashSet::new();
        let mut targets = Vec::with_capacity(r.target.len());
        for (j, t) in r.target.into_iter().enumerate() {
            let tkey = format!("{key}.target[{j}]");
            let name = t.name.get_ref();
            validate_target_name(name)
                .map_err(|m| self.err(t.name.span(), &format!("{tkey}.name"), m))?;
            if !names.insert(name.clone()) {
                return Err(self.err(
                    t.name.span(),
                    &format!("{tkey}.name"),
                    format!("duplicate target name `{name}` in this route"),
                ));
            }
            url::validate_target_url(t.url.get_ref())
                .map_err(|m| self.err(t.url.span(), &format!("{tkey}.url"), m))?;
            let queue = self.queue(
                RawQueue {
                    max_queue_ms: t.max_queue_ms,
                    max_queue_bytes: t.max_queue_bytes,
                    overflow_disconnect_ms: t.overflow_disconnect_ms,
                    write_merge_ms: t.write_merge_ms,
                },
                &tkey,
                QueueConfig::default(),
            )?;
            if t.tls_verify == Some(false) || t.ca.is_some() {
                let scheme_ok = t.url.get_ref().to_ascii_lowercase().starts_with("rtmps://");
                if !scheme_ok {
                    return Err(self.err(
                        t.url.span(),
                        &format!("{tkey}.url"),
                        "`ca` and `tls_verify` only apply to rtmps:// targets",
                    ));
                }
            }
            targets.push(TargetConfig {
                name: t.name.into_inner(),
                url: t.url.into_inner(),
                queue,
                tls: TargetTls {
                    ca: t.ca.filter(|c| !c.is_empty()).map(PathBuf::from),
                    verify: t.tls_verify.unwrap_or(true),
                },
            });
        }
        Ok(Route {
            stream,
            targets,
            access,
        })
    }
}

#[cfg(test)]
mod tests;
