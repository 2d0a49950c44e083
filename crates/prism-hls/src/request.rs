//! What a viewer's URL asks for, and whether the window can answer it yet (LL-HLS blocking
//! requests). Pure functions: the HTTP server decides what to do with the answers.

use crate::packager::{Packager, TrackKind};

/// A resource under `/{app}/{key}/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `index.html` or the directory itself: the player page.
    Page,
    /// `index.m3u8`.
    Multivariant,
    /// `video.m3u8`, `audio.m3u8`.
    Media(TrackKind),
    /// `manifest.mpd`.
    Dash,
    /// `video/init3.mp4`.
    Init(TrackKind, u32),
    /// `video/12.m4s`.
    Segment(TrackKind, u64),
    /// `video/12.3.m4s`.
    Part(TrackKind, u64, usize),
    /// `ts.m3u8`: the classic playlist of the MPEG-TS segments.
    TsPlaylist,
    /// `ts/12.ts`.
    TsSegment(u64),
}

impl Resource {
    /// The `kind` label of `prism_hls_requests_total`.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Page => "page",
            Resource::Multivariant | Resource::Media(_) | Resource::TsPlaylist => "playlist",
            Resource::Dash => "dash_manifest",
            Resource::Init(..) => "init",
            Resource::Segment(..) | Resource::TsSegment(_) => "segment",
            Resource::Part(..) => "part",
        }
    }
}

/// A parsed viewer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub app: &'a str,
    pub key: &'a str,
    pub resource: Resource,
    /// `_HLS_msn`, `_HLS_part`: a blocking playlist reload.
    pub msn: Option<u64>,
    pub part: Option<usize>,
    /// `_HLS_skip=YES` (or `v2`).
    pub skip: bool,
    /// `token=`: a playback token, carried into every URI of the answer.
    pub token: Option<&'a str>,
}

/// Why a URL is refused before anything is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadUrl {
    /// No such resource (404).
    NotFound,
    /// A malformed query or path (400).
    Malformed,
}

/// The longest path and query accepted (longer: 414/400 before any work).
pub const MAX_URL: usize = 2048;

/// A name of the hub (`app`, `key`): what RTMP and SRT accept, minus anything a path could
/// abuse (`..`, separators, percent escapes).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// Parses `path` (starting with `/`) and `query` (without `?`).
pub fn parse<'a>(path: &'a str, query: Option<&'a str>) -> Result<Request<'a>, BadUrl> {
    if path.len() + query.map_or(0, str::len) > MAX_URL {
        return Err(BadUrl::Malformed);
    }
    let rest = path.strip_prefix('/').ok_or(BadUrl::NotFound)?;
    let mut it = rest.splitn(4, '/');
    let (app, key) = (it.next().unwrap_or(""), it.next().ok_or(BadUrl::NotFound)?);
    if !is_name(app) || !is_name(key) {
        return Err(BadUrl::NotFound);
    }
    let a = it.next();
    let b = it.next();
    let resource = match (a, b) {
        (None | Some("") | Some("index.html"), None) => Resource::Page,
        (Some("index.m3u8"), None) => Resource::Multivariant,
        (Some("manifest.mpd"), None) => Resource::Dash,
        (Some("ts.m3u8"), None) => Resource::TsPlaylist,
        (Some("ts"), Some(file)) => {
            Resource::TsSegment(number(file.strip_suffix(".ts").ok_or(BadUrl::NotFound)?)?)
        }
        (Some(name), None) => {
            let track = name.strip_suffix(".m3u8").ok_or(BadUrl::NotFound)?;
            Resource::Media(TrackKind::from_name(track).ok_or(BadUrl::NotFound)?)
        }
        (Some(track), Some(file)) => {
            let track = TrackKind::from_name(track).ok_or(BadUrl::NotFound)?;
            if let Some(v) = file
                .strip_prefix("init")
                .and_then(|f| f.strip_suffix(".mp4"))
            {
                Resource::Init(track, number(v)?)
            } else {
                let stem = file.strip_suffix(".m4s").ok_or(BadUrl::NotFound)?;
                match stem.split_once('.') {
                    None => Resource::Segment(track, number(stem)?),
                    Some((m, p)) => Resource::Part(track, number(m)?, number(p)?),
                }
            }
        }
        (None, Some(_)) => return Err(BadUrl::NotFound),
    };
    let mut req = Request {
        app,
        key,
        resource,
        msn: None,
        part: None,
        skip: false,
        token: None,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "_HLS_msn" => req.msn = Some(number(v).map_err(|_| BadUrl::Malformed)?),
            "_HLS_part" => req.part = Some(number(v).map_err(|_| BadUrl::Malformed)?),
            "_HLS_skip" => req.skip = v == "YES" || v == "v2",
            "token" => req.token = Some(v),
            // Cache busters and the like.
            _ => {}
        }
    }
    // RFC 8216bis 6.2.5.2: _HLS_part without _HLS_msn is a bad request.
    if req.part.is_some() && req.msn.is_none() {
        return Err(BadUrl::Malformed);
    }
    Ok(req)
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, BadUrl> {
    // Digits only: no signs, no spaces, bounded length.
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadUrl::NotFound);
    }
    s.parse().map_err(|_| BadUrl::NotFound)
}

/// Whether a request can be answered now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Wait for the window to change (bounded by the caller).
    Wait,
    /// Never will be (a blocking reload too far ahead): 400.
    TooFarAhead,
    /// Gone or never existed: 404.
    NotFound,
}

/// Whether `req` can be answered from `p` now. Blocking playlist reloads
/// (`_HLS_msn`/`_HLS_part`) and requests for the hinted next part wait until it exists; a
/// reload more than two segments ahead is refused (RFC 8216bis 6.2.5.2).
pub fn readiness(p: &Packager, req: &Request<'_>) -> Readiness {
    let open = p.open_msn();
    // A stream packaged as MPEG-TS only has no CMAF to serve.
    let cmaf = p.config().container.fmp4();
    match req.resource {
        Resource::Media(_)
        | Resource::Dash
        | Resource::Init(..)
        | Resource::Segment(..)
        | Resource::Part(..)
            if !cmaf =>
        {
            Readiness::NotFound
        }
        Resource::TsPlaylist | Resource::TsSegment(_) if p.ts().is_none() => Readiness::NotFound,
        Resource::TsPlaylist => {
            if !p.is_started() {
                return if p.is_ended() {
                    Readiness::NotFound
                } else {
                    Readiness::Wait
                };
            }
            match p.ts() {
                // Answered (with the reason) by whoever renders it.
                Some(ts) if ts.unsupported().is_some() => Readiness::Ready,
                // No complete segment yet: an empty playlist is an error to players.
                Some(ts) if ts.segments.is_empty() && !p.is_ended() => Readiness::Wait,
                // `_HLS_msn` is honoured at segment granularity (`_HLS_part` is ignored:
                // TS segments have no parts), though the playlist does not advertise it.
                _ => match req.msn {
                    Some(msn) if !p.is_ended() && msn > open + 2 => Readiness::TooFarAhead,
                    Some(msn) if !p.is_ended() && msn >= open => Readiness::Wait,
                    _ => Readiness::Ready,
                },
            }
        }
        Resource::TsSegment(msn) => match p.ts() {
            Some(ts) if ts.segment(msn).is_some_and(|s| !s.is_gap()) => Readiness::Ready,
            Some(ts)
                if ts.unsupported().is_none()
                    && !p.is_ended()
                    && (msn == open || msn == open + 1) =>
            {
                Readiness::Wait
            }
            _ => Readiness::NotFound,
        },
        Resource::Page => Readiness::Ready,
        Resource::Multivariant | Resource::Dash => {
            if p.is_started() {
                Readiness::Ready
            } else if p.is_ended() {
                Readiness::NotFound
            } else {
                // The stream is live but its first keyframe has not come yet.
                Readiness::Wait
            }
        }
        Resource::Media(kind) => {
            if !p.is_started() {
                return if p.is_ended() {
                    Readiness::NotFound
                } else {
                    Readiness::Wait
                };
            }
            let Some(track) = p.track(kind) else {
                return Readiness::NotFound;
            };
            // A playlist without a complete segment is an error to players (hls.js:
            // levelEmptyError, even with parts listed): the first one is a segment away.
            if track.segments.is_empty() && !p.is_ended() {
                return Readiness::Wait;
            }
            let Some(msn) = req.msn else {
                return Readiness::Ready;
            };
            if p.is_ended() {
                return Readiness::Ready;
            }
            if msn > open + 2 {
                return Readiness::TooFarAhead;
            }
            let have = match req.part {
                // The segment itself complete.
                None => msn < open,
                Some(part) => msn < open || (msn == open && part < track.open.parts.len()),
            };
            if have {
                Readiness::Ready
            } else {
                Readiness::Wait
            }
        }
        Resource::Init(kind, v) => match p.track(kind).and_then(|t| t.init(v)) {
            Some(_) => Readiness::Ready,
            None => Readiness::NotFound,
        },
        Resource::Segment(kind, msn) => match p.track(kind) {
            Some(t) if t.segment(msn).is_some_and(|s| !s.is_gap()) => Readiness::Ready,
            // The open one, or the next: a player that computed the URL (DASH) waits.
            Some(_) if !p.is_ended() && (msn == open || msn == open + 1) => Readiness::Wait,
            _ => Readiness::NotFound,
        },
        Resource::Part(kind, msn, part) => match p.track(kind) {
            Some(t) if t.part(msn, part).is_some() => Readiness::Ready,
            // The preload hint names the next part: hold the request until it is there.
            Some(t)
                if !p.is_ended()
                    && ((msn == open && part <= t.open.parts.len())
                        || (msn == open + 1 && part == 0)) =>
            {
                Readiness::Wait
            }
            _ => Readiness::NotFound,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let r = parse("/live/cam1/video/12.3.m4s", Some("token=abc")).unwrap();
        assert_eq!(r.resource, Resource::Part(TrackKind::Video, 12, 3));
        assert_eq!((r.app, r.key, r.token), ("live", "cam1", Some("abc")));
        assert_eq!(
            parse("/live/cam1/audio/init2.mp4", None).unwrap().resource,
            Resource::Init(TrackKind::Audio, 2)
        );
        assert_eq!(parse("/live/cam1/", None).unwrap().resource, Resource::Page);
        assert_eq!(
            parse("/live/cam1/ts.m3u8", None).unwrap().resource,
            Resource::TsPlaylist
        );
        assert_eq!(
            parse("/live/cam1/ts/12.ts", Some("token=abc")).unwrap(),
            Request {
                app: "live",
                key: "cam1",
                resource: Resource::TsSegment(12),
                msn: None,
                part: None,
                skip: false,
                token: Some("abc"),
            }
        );
        assert_eq!(parse("/live/cam1", None).unwrap().resource, Resource::Page);
        let r = parse(
            "/live/cam1/video.m3u8",
            Some("_HLS_msn=5&_HLS_part=2&_HLS_skip=YES"),
        )
        .unwrap();
        assert_eq!((r.msn, r.part, r.skip), (Some(5), Some(2), true));
        for bad in [
            "/../etc/passwd",
            "/live/../video.m3u8",
            "/live/%2e%2e/index.m3u8",
            "/live/k/video/../../x",
            "/live/k/other.m3u8",
            "/live/k/video/-1.m4s",
            "/live/k/video/1.m4s/x",
            "/live/k/video/99999999999999999999.m4s",
            "/live/k/ts/12.m4s",
            "/live/k/ts/x.ts",
            "/live/k/ts/../1.ts",
            "/live/k/ts/1.ts/x",
        ] {
            assert!(parse(bad, None).is_err(), "{bad}");
        }
        assert_eq!(
            parse("/live/k/video.m3u8", Some("_HLS_part=1")),
            Err(BadUrl::Malformed)
        );
        let long = "x".repeat(MAX_URL);
        assert_eq!(
            parse("/live/k/index.m3u8", Some(&long)),
            Err(BadUrl::Malformed)
        );
    }
}
