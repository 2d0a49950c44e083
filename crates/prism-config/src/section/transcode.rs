//! `[[transcode]]`: an adaptive-bitrate ladder (`[[transcode.rendition]]`) made by a
//! supervised ffmpeg worker for the streams matching `stream`.
//!
//! Written by hand rather than with `section!`: `video`/`audio` are either an inline table
//! or the string `"none"`, which the macro's flat keys cannot say.

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::{Checker, ConfigError, StreamPattern};

/// TOML `[[transcode]]`: one ladder for the streams matching `stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodeConfig {
    pub stream: StreamPattern,
    /// `ffmpeg`: the binary; `None` = `ffmpeg` found on `PATH`.
    pub ffmpeg: Option<PathBuf>,
    /// `[[transcode.rendition]]`, in file order; names unique in the ladder.
    pub renditions: Vec<Rendition>,
}

/// One `[[transcode.rendition]]`: published as the hub stream `{app}/{key}_{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    pub name: String,
    /// `None` = `video = "none"` (audio only).
    pub video: Option<VideoRendition>,
    /// `None` = `audio = "none"` (video only). Absent key = AAC at 128 kb/s.
    pub audio: Option<AudioRendition>,
    /// ffmpeg video encoder (`h264_nvenc`, `h264_vaapi`, ...); `None` = `libx264`.
    pub encoder: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoRendition {
    /// Only `h264` (what FLV, RTMP targets and every HLS player take).
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
    /// `None` = the source's frame rate.
    pub fps: Option<u32>,
    /// x264 preset; `None` = `veryfast`.
    pub preset: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioRendition {
    /// Only `aac`.
    pub codec: String,
    pub bitrate_kbps: u32,
}

impl Rendition {
    /// The ffmpeg video encoder this rendition uses, if it has video.
    pub fn video_encoder(&self) -> Option<&str> {
        self.video.as_ref()?;
        Some(self.encoder.as_deref().unwrap_or("libx264"))
    }
}

impl TranscodeConfig {
    /// The ffmpeg binary to run.
    pub fn ffmpeg_path(&self) -> PathBuf {
        self.ffmpeg.clone().unwrap_or_else(|| "ffmpeg".into())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTranscode {
    stream: Spanned<String>,
    ffmpeg: Option<Spanned<String>>,
    #[serde(default)]
    rendition: Vec<RawRendition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRendition {
    name: Spanned<String>,
    video: Option<Spanned<OrNone<RawVideo>>>,
    audio: Option<Spanned<OrNone<RawAudio>>>,
    encoder: Option<Spanned<String>>,
}

/// A table, or the string `"none"` (checked after parsing, for a placed message).
#[derive(Deserialize)]
#[serde(untagged)]
enum OrNone<T> {
    Some(T),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVideo {
    #[serde(default = "h264")]
    codec: String,
    width: u32,
    height: u32,
    bitrate_kbps: u32,
    fps: Option<u32>,
    preset: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudio {
    #[serde(default = "aac")]
    codec: String,
    #[serde(default = "aac_kbps")]
    bitrate_kbps: u32,
}

fn h264() -> String {
    "h264".into()
}
fn aac() -> String {
    "aac".into()
}
fn aac_kbps() -> u32 {
    128
}

const PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// Checks a rendition or encoder name: it becomes part of a stream key and a metric label.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// `[[transcode]]` number `i` resolved.
pub(crate) fn resolve(
    cx: &Checker<'_>,
    i: usize,
    raw: RawTranscode,
) -> Result<TranscodeConfig, ConfigError> {
    let key = format!("transcode[{i}]");
    let stream = StreamPattern::new(raw.stream.get_ref())
        .map_err(|m| cx.err(raw.stream.span(), &format!("{key}.stream"), m))?;
    let ffmpeg = match raw.ffmpeg {
        Some(f) if f.get_ref().is_empty() => {
            return Err(cx.err(
                f.span(),
                &format!("{key}.ffmpeg"),
                "must be a path (remove the key to find ffmpeg on PATH)",
            ))
        }
        Some(f) => Some(PathBuf::from(f.into_inner())),
        None => None,
    };
    if raw.rendition.is_empty() {
        return Err(cx.err(
            raw.stream.span(),
            &key,
            "a ladder needs at least one [[transcode.rendition]]",
        ));
    }
    let mut names = HashSet::new();
    let mut renditions = Vec::new();
    for (j, r) in raw.rendition.into_iter().enumerate() {
        let key = format!("{key}.rendition[{j}]");
        renditions.push(rendition(cx, &key, r, &mut names)?);
    }
    Ok(TranscodeConfig {
        stream,
        ffmpeg,
        renditions,
    })
}

fn rendition(
    cx: &Checker<'_>,
    key: &str,
    r: RawRendition,
    names: &mut HashSet<String>,
) -> Result<Rendition, ConfigError> {
    let name = r.name.get_ref();
    if !valid_name(name) {
        return Err(cx.err(
            r.name.span(),
            &format!("{key}.name"),
            format!("`{name}` must be 1 to 32 characters of A-Z a-z 0-9 _ . - (it ends a stream key and is a metric label)"),
        ));
    }
    if !names.insert(name.clone()) {
        return Err(cx.err(
            r.name.span(),
            &format!("{key}.name"),
            format!("duplicate rendition name `{name}` in this ladder"),
        ));
    }
    let video = match r.video {
        None => {
            return Err(cx.err(
                r.name.span(),
                &format!("{key}.video"),
                "missing: a table { codec, width, height, bitrate_kbps, fps, preset } or \"none\" for audio only",
            ))
        }
        Some(v) => {
            let span = v.span();
            let err = |m: String| cx.err(span.clone(), &format!("{key}.video"), m);
            match v.into_inner() {
                OrNone::Word(w) if w == "none" => None,
                OrNone::Word(w) => {
                    return Err(err(format!(
                        "`{w}`: must be a table {{ codec, width, height, bitrate_kbps }} or \"none\""
                    )))
                }
                OrNone::Some(v) => Some(video(v).map_err(err)?),
            }
        }
    };
    let audio = match r.audio {
        None => Some(AudioRendition {
            codec: aac(),
            bitrate_kbps: aac_kbps(),
        }),
        Some(a) => {
            let span = a.span();
            let err = |m: String| cx.err(span.clone(), &format!("{key}.audio"), m);
            match a.into_inner() {
                OrNone::Word(w) if w == "none" => None,
                OrNone::Word(w) => {
                    return Err(err(format!(
                        "`{w}`: must be a table {{ codec, bitrate_kbps }} or \"none\""
                    )))
                }
                OrNone::Some(a) => {
                    if a.codec != "aac" {
                        return Err(err(format!(
                            "codec `{}` is not supported (only \"aac\")",
                            a.codec
                        )));
                    }
                    if !(8..=512).contains(&a.bitrate_kbps) {
                        return Err(err("bitrate_kbps must be in 8..=512".into()));
                    }
                    Some(AudioRendition {
                        codec: a.codec,
                        bitrate_kbps: a.bitrate_kbps,
                    })
                }
            }
        }
    };
    if video.is_none() && audio.is_none() {
        return Err(cx.err(
            r.name.span(),
            key,
            "video and audio are both \"none\": the rendition would be empty",
        ));
    }
    let encoder = match r.encoder {
        Some(e) if video.is_none() => {
            return Err(cx.err(
                e.span(),
                &format!("{key}.encoder"),
                "only applies to a rendition with video",
            ))
        }
        Some(e) if !valid_name(e.get_ref()) => {
            return Err(cx.err(
                e.span(),
                &format!("{key}.encoder"),
                "must be an ffmpeg encoder name, e.g. libx264 or h264_nvenc",
            ))
        }
        e => e.map(Spanned::into_inner),
    };
    Ok(Rendition {
        name: r.name.into_inner(),
        video,
        audio,
        encoder,
    })
}

fn video(v: RawVideo) -> Result<VideoRendition, String> {
    if v.codec != "h264" {
        return Err(format!(
            "codec `{}` is not supported (only \"h264\")",
            v.codec
        ));
    }
    // 4:2:0 needs even dimensions.
    for (k, d) in [("width", v.width), ("height", v.height)] {
        if !(16..=7680).contains(&d) || d % 2 != 0 {
            return Err(format!("{k} must be an even number in 16..=7680"));
        }
    }
    if !(50..=100_000).contains(&v.bitrate_kbps) {
        return Err("bitrate_kbps must be in 50..=100000".into());
    }
    if let Some(f) = v.fps {
        if !(1..=120).contains(&f) {
            return Err("fps must be in 1..=120".into());
        }
    }
    if let Some(p) = &v.preset {
        if !PRESETS.contains(&p.as_str()) {
            return Err(format!(
                "preset `{p}` is not an x264 preset ({})",
                PRESETS.join(", ")
            ));
        }
    }
    Ok(VideoRendition {
        codec: v.codec,
        width: v.width,
        height: v.height,
        bitrate_kbps: v.bitrate_kbps,
        fps: v.fps,
        preset: v.preset,
    })
}
