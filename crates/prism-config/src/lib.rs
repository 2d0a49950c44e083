//! Prism's configuration: the TOML file format, its defaults, and strict
//! validation with `file:line:col` errors.
//!
//! This crate only describes *what* to do (listen addresses, routes, queue
//! budgets); it must not know how any of it is done: no sockets, no RTMP, no
//! hub or relay types, no logging. Other crates read the plain structs here.

mod access;
mod pattern;
#[macro_use]
mod section;
mod url;

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use access::{canonical as canonical_ip, Access, IpNet, Secret, WebhookUrl};
pub use pattern::StreamPattern;
pub use section::auth::AuthConfig;
pub use section::hls::{HlsConfig, HlsContainer, HlsKeys};
pub use section::http::{ApiToken, HttpConfig};
pub use section::limits::Limits;
pub use section::player::{QueueConfig, DEFAULT_PLAYER_WRITE_MERGE, DEFAULT_TARGET_AUDIO_RIDE};
pub use section::route::{Route, RouteAccess, RouteOutputs};
pub use section::rtmp::RtmpConfig;
pub use section::rtmps::{TlsFiles, TlsListenerConfig};
pub use section::rtmpt::TunnelConfig;
pub use section::rtsp::RtspConfig;
pub use section::srt::{SrtConfig, SrtPassphrase};
pub use section::state::StateConfig;
pub use section::stream::HubConfig;
pub use section::target::{
    validate_target_name, validate_track_id, ResolvedTarget, TargetAudio, TargetConfig, TargetTls,
    TargetTracks,
};
pub use section::transcode::{AudioRendition, Rendition, TranscodeConfig, VideoRendition};
pub use section::webrtc::{WebrtcConfig, WebrtcKeys};
pub use url::redact_url;
// Pulled sources (issue 14).
pub use section::edge::EdgeConfig;
pub use section::source::{url_scheme, RtspTransport, SourceConfig, SourceOptions, SOURCE_SCHEMES};

use section::auth::RawAuth;
use section::hls::RawHls;
use section::http::RawHttp;
use section::limits::RawLimits;
use section::player::RawQueue;
use section::route::RawRoute;
use section::rtmp::RawRtmp;
use section::rtmps::RawTlsListener;
use section::rtmpt::RawTunnel;
use section::rtsp::RawRtsp;
use section::srt::RawSrt;
use section::state::RawState;
use section::stream::RawHub;
use section::FromRaw;

/// Checks a target URL (template or expanded) as the config does; `Err` is a message that
/// quotes the URL redacted.
pub fn validate_target_url(url: &str) -> Result<(), String> {
    url::validate_target_url(url)
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
    /// TOML table `[hls]`: LL-HLS, HLS and DASH for viewers; absent = off.
    pub hls: Option<HlsConfig>,
    /// TOML `[[source]]`, in file order: streams Prism pulls.
    pub sources: Vec<SourceConfig>,
    /// TOML table `[edge]`: pull streams not live here from an origin; absent = off.
    pub edge: Option<EdgeConfig>,
    /// TOML table `[rtsp]`: the RTSP server (players out); absent = off.
    pub rtsp: Option<RtspConfig>,
    /// TOML table `[rtsps]`: the RTSP server over TLS; absent = off. Takes the `[rtsp]`
    /// keys plus `cert` and `key`.
    pub rtsps: Option<(RtspConfig, TlsFiles)>,
    /// TOML table `[webrtc]`: WHIP ingest and WHEP playback; absent = off.
    pub webrtc: Option<WebrtcConfig>,
    /// TOML table `[state]`: where admin-API destinations are persisted.
    pub state: StateConfig,
    /// TOML `[[transcode]]`: ABR ladders, in file order (the first matching one applies).
    pub transcode: Vec<TranscodeConfig>,
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
        if let Some((_, tls)) = &mut self.rtsps {
            fix(&mut tls.cert);
            fix(&mut tls.key);
        }
        if let Some(hls) = &mut self.hls {
            if let Some(tls) = &mut hls.tls {
                fix(&mut tls.cert);
                fix(&mut tls.key);
            }
            if let Some(dir) = &mut hls.keys.dvr_dir {
                fix(dir);
            }
        }
        if let Some(tls) = self.webrtc.as_mut().and_then(|w| w.tls.as_mut()) {
            fix(&mut tls.cert);
            fix(&mut tls.key);
        }
        if let Some(p) = &mut self.state.path {
            fix(p);
        }
        for r in &mut self.routes {
            for t in &mut r.targets {
                if let Some(ca) = &mut t.tls.ca {
                    fix(ca);
                }
            }
        }
        for s in &mut self.sources {
            if let Some(ca) = &mut s.options.ca {
                fix(ca);
            }
        }
    }

    /// Targets for stream `app`/`key`: the union over all matching routes in
    /// file order, `{app}`/`{stream}` expanded. A name already taken by an
    /// earlier route is skipped (first wins), so names are unique per stream
    /// and can serve as metric labels.
    ///
    /// A rendition stream (`{key}_{name}` of a source whose `[[transcode]]` ladder has a
    /// rendition `name`) gets the source's targets that ask for that `rendition`, with
    /// `{stream}` the source's key; a source gets the targets that ask for none.
    pub fn targets_for(&self, app: &str, key: &str) -> Vec<ResolvedTarget> {
        let (key, rendition) = match self.rendition_of(app, key) {
            Some((source, name)) => (source, Some(name)),
            None => (key, None),
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for route in self.routes.iter().filter(|r| r.stream.matches(app, key)) {
            for t in &route.targets {
                if t.rendition.as_deref() != rendition {
                    continue;
                }
                if seen.insert(t.name.as_str()) {
                    out.push(ResolvedTarget {
                        name: t.name.clone(),
                        url: url::expand(&t.url, app, key),
                        queue: t.queue,
                        tls: t.tls.clone(),
                        audio: t.audio,
                        tracks: t.tracks,
                    });
                }
            }
        }
        out
    }

    /// Whether stream `app`/`key` is served over HLS/DASH: `[hls]` exists and the first
    /// matching route that sets `hls` does not turn it off.
    pub fn hls_for(&self, app: &str, key: &str) -> bool {
        self.hls.is_some()
            && self
                .routes
                .iter()
                .filter(|r| r.stream.matches(app, key))
                .find_map(|r| r.outputs.hls)
                .unwrap_or(true)
    }

    /// The HLS segment container of stream `app`/`key`: the first matching route that sets
    /// `container` decides, else `[hls] container`.
    pub fn hls_container_for(&self, app: &str, key: &str) -> HlsContainer {
        let default = self
            .hls
            .as_ref()
            .map_or_else(HlsContainer::default, |h| h.container);
        self.routes
            .iter()
            .filter(|r| r.stream.matches(app, key))
            .find_map(|r| r.outputs.container)
            .unwrap_or(default)
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

impl Config {
    /// `(source key, rendition name)` if `app`/`key` is the name a `[[transcode]]` ladder
    /// gives one of its renditions (`{key}_{name}`).
    pub fn rendition_of<'k>(&self, app: &str, key: &'k str) -> Option<(&'k str, &str)> {
        key.char_indices()
            .filter(|(_, c)| *c == '_')
            .find_map(|(i, _)| {
                let (source, name) = (&key[..i], &key[i + 1..]);
                let ladder = self.transcode_for(app, source)?;
                let r = ladder.renditions.iter().find(|r| r.name == name)?;
                Some((source, r.name.as_str()))
            })
    }

    /// The ABR ladder of stream `app`/`key`: the first `[[transcode]]` whose pattern matches.
    pub fn transcode_for(&self, app: &str, key: &str) -> Option<&TranscodeConfig> {
        self.transcode.iter().find(|t| t.stream.matches(app, key))
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

// The TOML shape of the whole file; each table's shape is in its section module. Kept
// apart from the public structs so that the public ones carry plain validated values and
// no spans.
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
    hls: Option<Spanned<RawHls>>,
    webrtc: Option<Spanned<section::webrtc::RawWebrtc>>,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    source: Vec<section::source::RawSource>,
    edge: Option<Spanned<section::edge::RawEdge>>,
    rtsp: Option<Spanned<RawRtsp>>,
    rtsps: Option<Spanned<RawRtsp>>,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    transcode: Vec<section::transcode::RawTranscode>,
}

/// Semantic validation of the raw shape, with errors placed in the file.
pub(crate) struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Checker<'_> {
    pub(crate) fn err(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid {
            origin: self.origin.into(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    /// Tables in this order, so that of several mistakes the same one is reported first.
    fn build(&self, mut raw: RawConfig) -> Result<Config, ConfigError> {
        let rtmp = RtmpConfig::from_raw(&mut raw.rtmp, self, "rtmp")?;
        let http = HttpConfig::from_raw(&mut raw.http, self, "http")?;
        let hub = HubConfig::from_raw(&mut raw.stream, self, "stream")?;
        let player = QueueConfig::from_raw(&mut raw.player, self, "player")?;
        let limits = Limits::from_raw(&mut raw.limits, self, "limits")?;
        // Before the routes: a target's `rendition` must name one.
        let transcode: Vec<TranscodeConfig> = raw
            .transcode
            .into_iter()
            .enumerate()
            .map(|(i, t)| section::transcode::resolve(self, i, t))
            .collect::<Result<_, _>>()?;
        let routes = raw
            .route
            .into_iter()
            .enumerate()
            .map(|(i, r)| section::route::resolve(self, i, r, &limits, &transcode))
            .collect::<Result<_, _>>()?;
        let auth = AuthConfig::from_raw(&mut raw.auth, self, "auth")?;
        let rtmps = raw
            .rtmps
            .map(|t| section::rtmps::resolve(self, t))
            .transpose()?;
        let rtmpt = raw
            .rtmpt
            .map(|t| section::rtmpt::resolve(self, t))
            .transpose()?;
        let rtmpts = raw
            .rtmpts
            .map(|t| section::rtmpts::resolve(self, t))
            .transpose()?;
        let srt = raw
            .srt
            .map(|t| section::srt::resolve(self, t))
            .transpose()?;
        let hls = raw
            .hls
            .map(|t| section::hls::resolve(self, t))
            .transpose()?;
        let sources = self.sources(raw.source)?;
        let edge = raw
            .edge
            .map(|t| section::edge::resolve(self, t))
            .transpose()?;
        let rtsp = raw
            .rtsp
            .map(|t| section::rtsp::resolve(self, t))
            .transpose()?;
        let rtsps = raw
            .rtsps
            .map(|t| section::rtsp::resolve_tls(self, t))
            .transpose()?;
        let webrtc = raw
            .webrtc
            .map(|t| section::webrtc::resolve(self, t))
            .transpose()?;
        let state = StateConfig::from_raw(&mut raw.state, self, "state")?;
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
            hls,
            sources,
            edge,
            rtsp,
            rtsps,
            webrtc,
            state,
            transcode,
        })
    }

    /// `[[source]]` tables, in file order; a stream may have one source.
    fn sources(
        &self,
        raw: Vec<section::source::RawSource>,
    ) -> Result<Vec<SourceConfig>, ConfigError> {
        let mut streams = HashSet::new();
        raw.into_iter()
            .enumerate()
            .map(|(i, s)| section::source::resolve(self, i, s, &mut streams))
            .collect()
    }
}

#[cfg(test)]
mod tests;
