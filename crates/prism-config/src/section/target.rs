//! `[[route.target]]`: one destination a route pushes to (name, URL template, queue budget,
//! TLS options), and targets resolved for one stream.

use std::collections::HashSet;
use std::path::PathBuf;

use super::FromRaw;
use crate::{url, Checker, ConfigError, QueueConfig};

queue_keys!(section! {
    raw RawTarget;
    raw Head {
        /// Used in logs and as the `target` metric label: `[A-Za-z0-9_.-]+`, unique in the route.
        name: toml::Spanned<String>;
        /// URL template (rtmp://, rtmps://, srt://); `{app}` and `{stream}` (the key) expand.
        url: toml::Spanned<String>;
        /// Push this `[[transcode]]` rendition of the stream instead of the source.
        rendition: Option<toml::Spanned<String>>;
        /// `aac` (default): Opus audio (WHIP) is sent as AAC, transcoded once per stream; `copy`: the source's audio as it came (Enhanced RTMP Opus).
        audio: Option<toml::Spanned<String>>;
        /// Enhanced RTMP v2 multitrack: which video track this target gets, as a plain single-track stream.
        video_track: Option<toml::Spanned<i64>>;
        /// Enhanced RTMP v2 multitrack: which audio track this target gets, as a plain single-track stream.
        audio_track: Option<toml::Spanned<i64>>;
    }
} reuse {
    /// TLS options of an `rtmps://` target.
    define TargetTls {
        /// PEM file of CA certificates to trust instead of the system roots (private CAs).
        ca: String => ca: Option<PathBuf> = default(None),
            check |c: String| Ok((!c.is_empty()).then(|| PathBuf::from(c)));
        /// False skips certificate verification. For testing only; logged loudly.
        tls_verify: bool => verify: bool = default(true), check super::check::ok;
    }
});

/// Target `key` (`route[i].target[j]`) resolved; `names` holds the route's names so far.
pub(crate) fn resolve(
    cx: &Checker<'_>,
    key: &str,
    mut t: RawTarget,
    names: &mut HashSet<String>,
    ladders: &[crate::TranscodeConfig],
) -> Result<TargetConfig, ConfigError> {
    let rendition = match t.rendition.take() {
        Some(r) => {
            let known = ladders
                .iter()
                .any(|l| l.renditions.iter().any(|x| x.name == *r.get_ref()));
            if !known {
                return Err(cx.err(
                    r.span(),
                    &format!("{key}.rendition"),
                    format!("no [[transcode.rendition]] is named `{}`", r.get_ref()),
                ));
            }
            Some(r.into_inner())
        }
        None => None,
    };
    let audio = match t.audio.take() {
        Some(a) => TargetAudio::parse(a.get_ref())
            .map_err(|m| cx.err(a.span(), &format!("{key}.audio"), m))?,
        None => TargetAudio::default(),
    };
    let track = |v: Option<toml::Spanned<i64>>, what: &str| match v {
        Some(v) => validate_track_id(*v.get_ref())
            .map(Some)
            .map_err(|m| cx.err(v.span(), &format!("{key}.{what}"), m)),
        None => Ok(None),
    };
    let tracks = TargetTracks {
        video: track(t.video_track.take(), "video_track")?,
        audio: track(t.audio_track.take(), "audio_track")?,
    };
    let name = t.name.get_ref();
    validate_target_name(name).map_err(|m| cx.err(t.name.span(), &format!("{key}.name"), m))?;
    if !names.insert(name.clone()) {
        return Err(cx.err(
            t.name.span(),
            &format!("{key}.name"),
            format!("duplicate target name `{name}` in this route"),
        ));
    }
    url::validate_target_url(t.url.get_ref())
        .map_err(|m| cx.err(t.url.span(), &format!("{key}.url"), m))?;
    let queue = QueueConfig::from_raw(&mut t, cx, key)?;
    // Before resolving: an empty `ca` resolves to none but still asks for TLS options.
    let verify_off = t.tls_verify.as_ref().is_some_and(|v| !*v.get_ref());
    if verify_off || t.ca.is_some() {
        let scheme_ok = t.url.get_ref().to_ascii_lowercase().starts_with("rtmps://");
        if !scheme_ok {
            return Err(cx.err(
                t.url.span(),
                &format!("{key}.url"),
                "`ca` and `tls_verify` only apply to rtmps:// targets",
            ));
        }
    }
    let tls = TargetTls::from_raw(&mut t, cx, key)?;
    Ok(TargetConfig {
        rendition,
        name: t.name.into_inner(),
        url: t.url.into_inner(),
        queue,
        tls,
        audio,
        tracks,
    })
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

/// Checks a `video_track` / `audio_track` as the config does: an Enhanced RTMP v2 track id,
/// 0 to 255. `Err` is a message for the operator.
pub fn validate_track_id(id: i64) -> Result<u8, String> {
    u8::try_from(id).map_err(|_| format!("`{id}` is not a track id: 0 to 255"))
}

/// TOML `[[route.target]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// Used in logs and as the `target` metric label: `[A-Za-z0-9_.-]+`.
    pub name: String,
    /// URL template; `{app}` and `{stream}` (the key) expand. Holds secrets:
    /// log it through [`crate::redact_url`].
    pub url: String,
    pub queue: QueueConfig,
    pub tls: TargetTls,
    /// `rendition`: push this `[[transcode]]` rendition instead of the source.
    pub rendition: Option<String>,
    /// `audio`: what the target gets of an Opus (WebRTC) stream's audio.
    pub audio: TargetAudio,
    /// `video_track` / `audio_track`: Enhanced RTMP v2 multitrack choice.
    pub tracks: TargetTracks,
}

/// A target's `video_track` / `audio_track`: the one track of an Enhanced RTMP v2
/// multitrack stream it gets, rebuilt as a plain single-track stream (own sequence header).
/// `None`: every track as it came. Single-track messages count as track 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetTracks {
    pub video: Option<u8>,
    pub audio: Option<u8>,
}

/// A target's `audio`: RTMP platforms take AAC only, so Opus (what WHIP publishers send)
/// is transcoded unless the destination is known to take Enhanced RTMP Opus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetAudio {
    /// Opus becomes AAC-LC (once per stream, shared by its targets); AAC passes untouched.
    #[default]
    Aac,
    /// The source's audio as it came.
    Copy,
}

impl TargetAudio {
    pub fn parse(v: &str) -> Result<TargetAudio, String> {
        match v {
            "aac" => Ok(TargetAudio::Aac),
            "copy" => Ok(TargetAudio::Copy),
            _ => Err(format!(
                "`{v}` is not a target audio mode: \"aac\" or \"copy\""
            )),
        }
    }
}

/// A target for one concrete stream, URL expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTarget {
    pub name: String,
    /// Expanded URL; holds secrets, log it through [`crate::redact_url`].
    pub url: String,
    pub queue: QueueConfig,
    pub tls: TargetTls,
    pub audio: TargetAudio,
    pub tracks: TargetTracks,
}

impl ResolvedTarget {
    /// A target added at run time (the admin API) to stream `app`/`key`: name and URL are
    /// checked as the config checks them, `{app}`/`{stream}` expand, queue budget and TLS
    /// options are the defaults. `Err` is a message for the operator (URL redacted).
    pub fn for_stream(name: &str, url: &str, app: &str, key: &str) -> Result<Self, String> {
        validate_target_name(name).map_err(|m| format!("name: {m}"))?;
        url::validate_target_url(url).map_err(|m| format!("url: {m}"))?;
        Ok(ResolvedTarget {
            name: name.to_owned(),
            url: url::expand(url, app, key),
            queue: QueueConfig::default(),
            tls: TargetTls::default(),
            audio: TargetAudio::default(),
            tracks: TargetTracks::default(),
        })
    }
}
