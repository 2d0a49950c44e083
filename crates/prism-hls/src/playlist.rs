//! Playlists and manifests from a [`Packager`]'s window: the HLS multivariant and media
//! playlists (with the LL-HLS tags of RFC 8216bis) and the DASH MPD, over the same segments.

use crate::packager::{Packager, Segment, Track, TrackKind};
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a media playlist request asked for besides the playlist itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaOptions {
    /// `_HLS_skip=YES`: a delta update (older segments replaced by `EXT-X-SKIP`).
    pub skip: bool,
}

/// `EXT-X-TARGETDURATION`: whole seconds, never below a segment's duration (segments are
/// cut on keyframes, so a long GOP makes long segments; the target follows, it is never
/// exceeded).
pub fn target_duration(p: &Packager) -> u64 {
    let longest = p
        .tracks()
        .iter()
        .map(|t| t.max_segment)
        .fold(p.config().segment.as_secs_f64(), f64::max);
    // Rounded as EXTINF values are compared with it (RFC 8216 4.4.3.1: rounded to the
    // nearest integer).
    (longest.round() as u64).max(1)
}

/// `PART-TARGET` in seconds.
pub fn part_target(p: &Packager) -> f64 {
    p.config().part.as_secs_f64()
}

/// The multivariant playlist: one variant (video + its audio group, or audio only). `query`
/// (a playback token) is appended to every URI.
pub fn multivariant(p: &Packager, query: &str) -> Option<String> {
    multivariant_with(p, query, &[])
}

/// Another stream listed as a variant of this one (an ABR rendition of it), from its own
/// packager: see [`variant`].
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// Where its playlists are, relative to this stream's (`../cam_480p/`).
    pub path: String,
    pub bandwidth: u64,
    /// Video codec string, if it has video.
    pub video: Option<String>,
    /// Audio codec string, if it has audio.
    pub audio: Option<String>,
    pub resolution: Option<(u16, u16)>,
    pub frame_rate: Option<f64>,
}

/// `p` (another stream's packager) as a variant at `path`; None before it has a track.
pub fn variant(p: &Packager, path: String, frame_rate: Option<f64>) -> Option<Variant> {
    if !p.config().container.fmp4() {
        return None;
    }
    let video = p.track(TrackKind::Video);
    let audio = p.track(TrackKind::Audio);
    if video.is_none() && audio.is_none() {
        return None;
    }
    Some(Variant {
        path,
        bandwidth: video.map_or(0, bitrate) + audio.map_or(0, bitrate),
        video: video.map(|v| v.config.codec_string()),
        audio: audio.map(|a| a.config.codec_string()),
        resolution: video
            .filter(|v| v.config.width > 0 && v.config.height > 0)
            .map(|v| (v.config.width, v.config.height)),
        frame_rate: frame_rate.filter(|_| video.is_some()),
    })
}

/// The multivariant playlist listing this stream and, after it, `variants` (other streams:
/// its ABR renditions), each with its own audio group.
pub fn multivariant_with(p: &Packager, query: &str, variants: &[Variant]) -> Option<String> {
    if !p.config().container.fmp4() {
        return ts_multivariant(p, query);
    }
    let video = p.track(TrackKind::Video);
    let audio = p.track(TrackKind::Audio);
    if video.is_none() && audio.is_none() {
        return None;
    }
    let mut s = String::with_capacity(512);
    s.push_str("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let q = query_suffix(query);
    let mut codecs = Vec::new();
    let mut bandwidth = 0;
    if let Some(a) = audio {
        codecs.push(a.config.codec_string());
        bandwidth += bitrate(a);
    }
    match video {
        Some(v) => {
            if audio.is_some() {
                let _ = writeln!(
                    s,
                    "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,URI=\"audio.m3u8{q}\""
                );
            }
            codecs.insert(0, v.config.codec_string());
            bandwidth += bitrate(v);
            let _ = write!(
                s,
                "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"",
                codecs.join(",")
            );
            if v.config.width > 0 && v.config.height > 0 {
                let _ = write!(s, ",RESOLUTION={}x{}", v.config.width, v.config.height);
            }
            if audio.is_some() {
                s.push_str(",AUDIO=\"audio\"");
            }
            let _ = writeln!(s, "\nvideo.m3u8{q}");
        }
        None => {
            let _ = writeln!(
                s,
                "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"\naudio.m3u8{q}",
                codecs.join(",")
            );
        }
    }
    for (i, v) in variants.iter().enumerate() {
        write_variant(&mut s, v, i, &q);
    }
    Some(s)
}

/// One [`Variant`]'s lines: its audio group (`audio-N`) and its `EXT-X-STREAM-INF`.
fn write_variant(s: &mut String, v: &Variant, i: usize, q: &str) {
    let codecs: Vec<&str> = v
        .video
        .iter()
        .chain(v.audio.iter())
        .map(String::as_str)
        .collect();
    let path = &v.path;
    match &v.video {
        Some(_) => {
            if v.audio.is_some() {
                let _ = writeln!(
                    s,
                    "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio-{i}\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,URI=\"{path}audio.m3u8{q}\""
                );
            }
            let _ = write!(
                s,
                "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{}\"",
                v.bandwidth,
                codecs.join(",")
            );
            if let Some((w, h)) = v.resolution {
                let _ = write!(s, ",RESOLUTION={w}x{h}");
            }
            if let Some(f) = v.frame_rate {
                let _ = write!(s, ",FRAME-RATE={f:.3}");
            }
            if v.audio.is_some() {
                let _ = write!(s, ",AUDIO=\"audio-{i}\"");
            }
            let _ = writeln!(s, "\n{path}video.m3u8{q}");
        }
        None => {
            let _ = writeln!(
                s,
                "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{}\"\n{path}audio.m3u8{q}",
                v.bandwidth,
                codecs.join(",")
            );
        }
    }
}

/// The multivariant playlist of a TS-only stream: one muxed variant, `ts.m3u8`.
fn ts_multivariant(p: &Packager, query: &str) -> Option<String> {
    let ts = p.ts()?;
    if ts.unsupported().is_some() || p.tracks().is_empty() {
        return None;
    }
    let codecs: Vec<String> = p.tracks().iter().map(|t| t.config.codec_string()).collect();
    let bandwidth = match ts.peak_bitrate {
        0 => p.tracks().iter().map(bitrate).sum(),
        b => b,
    };
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"",
        codecs.join(",")
    );
    if let Some(v) = p.track(TrackKind::Video) {
        if v.config.width > 0 && v.config.height > 0 {
            let _ = write!(s, ",RESOLUTION={}x{}", v.config.width, v.config.height);
        }
    }
    let _ = writeln!(s, "\nts.m3u8{}", query_suffix(query));
    Some(s)
}

/// A track's bits per second for `BANDWIDTH`: the peak of its complete segments, or a
/// guess before the first one completes.
fn bitrate(t: &Track) -> u64 {
    match (t.peak_bitrate, t.kind) {
        (0, TrackKind::Video) => 5_000_000,
        (0, TrackKind::Audio) => 160_000,
        (b, _) => b,
    }
}

fn query_suffix(query: &str) -> String {
    if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    }
}

/// Segments whose parts are still listed: those within three target durations of the live
/// edge (RFC 8216bis 4.4.4.9 lets older parts go).
fn lists_parts(total_after: f64, target: u64) -> bool {
    total_after < 3.0 * target as f64
}

/// The media playlist of one track.
pub fn media(p: &Packager, kind: TrackKind, opts: MediaOptions, query: &str) -> Option<String> {
    let t = p.track(kind)?;
    let target = target_duration(p);
    let part_target = part_target(p);
    let q = query_suffix(query);
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-PART-INF:PART-TARGET={part_target:.3}\n"
    );
    // CAN-SKIP-UNTIL: at least six target durations (RFC 8216bis 4.4.3.8).
    let skip_until = 6 * target;
    let _ = writeln!(
        s,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},CAN-SKIP-UNTIL={skip_until}.0",
        3.0 * part_target
    );
    let first = t.segments.front().unwrap_or(&t.open);
    let _ = writeln!(
        s,
        "#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}",
        first.msn, first.disc_seq
    );

    let listed: Vec<&Segment> = t.segments.iter().collect();
    // Seconds of media after each complete segment (the open one included).
    let mut after = vec![0.0; listed.len()];
    let mut acc = t.open.duration;
    for (i, seg) in listed.iter().enumerate().rev() {
        after[i] = acc;
        acc += seg.duration;
    }
    // Delta update: skip what is older than CAN-SKIP-UNTIL from the end.
    let mut skipped = 0;
    if opts.skip {
        while skipped < listed.len()
            && after[skipped] + listed[skipped].duration > skip_until as f64
        {
            skipped += 1;
        }
        // A skipped segment must not hide a discontinuity the client has not seen.
        if skipped > 0 {
            let _ = writeln!(s, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
    }
    let mut map: Option<u32> = None;
    for (i, seg) in listed.iter().enumerate().skip(skipped) {
        write_segment_head(&mut s, seg, &mut map, kind, &q);
        if lists_parts(after[i], target) {
            write_parts(&mut s, seg, kind, &q);
        }
        if seg.is_gap() {
            s.push_str("#EXT-X-GAP\n");
        }
        let _ = writeln!(
            s,
            "#EXTINF:{:.5},\n{}/{}.m4s{q}",
            seg.duration,
            kind.as_str(),
            seg.msn
        );
    }
    if p.is_ended() {
        s.push_str("#EXT-X-ENDLIST\n");
        return Some(s);
    }
    // The open segment: its parts so far, and a hint for the next one.
    let open = &t.open;
    write_segment_head(&mut s, open, &mut map, kind, &q);
    write_parts(&mut s, open, kind, &q);
    let _ = writeln!(
        s,
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}/{}.{}.m4s{q}\"",
        kind.as_str(),
        open.msn,
        open.parts.len()
    );
    Some(s)
}

fn write_segment_head(
    s: &mut String,
    seg: &Segment,
    map: &mut Option<u32>,
    kind: TrackKind,
    q: &str,
) {
    if seg.discontinuity && map.is_some() {
        s.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if *map != Some(seg.init) {
        let _ = writeln!(
            s,
            "#EXT-X-MAP:URI=\"{}/init{}.mp4{q}\"",
            kind.as_str(),
            seg.init
        );
        *map = Some(seg.init);
    }
    let _ = writeln!(s, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339(seg.wall));
}

fn write_parts(s: &mut String, seg: &Segment, kind: TrackKind, q: &str) {
    for (i, part) in seg.parts.iter().enumerate() {
        let _ = write!(
            s,
            "#EXT-X-PART:DURATION={:.5},URI=\"{}/{}.{}.m4s{q}\"",
            part.duration,
            kind.as_str(),
            seg.msn,
            i
        );
        if part.independent {
            s.push_str(",INDEPENDENT=YES");
        }
        s.push('\n');
    }
}

/// The DASH manifest (live profile, `SegmentTemplate` with `$Number$` and a
/// `SegmentTimeline`), one adaptation set per track, over the HLS segments.
pub fn dash(p: &Packager, now: SystemTime, query: &str) -> Option<String> {
    dash_with(p, now, query, &[])
}

/// [`dash`] with `variants` (other streams on the same timeline: its ABR renditions, as
/// `(path relative to this stream, packager)`) as more representations of each adaptation
/// set they have a track for.
pub fn dash_with(
    p: &Packager,
    now: SystemTime,
    query: &str,
    variants: &[(&str, &Packager)],
) -> Option<String> {
    if !p.is_started() {
        return None;
    }
    let epoch = p.epoch()?;
    let target = target_duration(p);
    let q = query_suffix(query);
    let mut s = String::with_capacity(4096);
    let window: f64 = p
        .track(p.main())
        .map(|t| t.segments.iter().map(|s| s.duration).sum())
        .unwrap_or(0.0);
    let dynamic = !p.is_ended();
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        s,
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019\" type=\"{}\" minBufferTime=\"PT{}S\"",
        if dynamic { "dynamic" } else { "static" },
        target
    );
    if dynamic {
        let _ = write!(
            s,
            " availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"PT{:.3}S\" timeShiftBufferDepth=\"PT{:.3}S\" suggestedPresentationDelay=\"PT{}S\" maxSegmentDuration=\"PT{}S\"",
            rfc3339(epoch),
            rfc3339(now),
            p.config().segment.as_secs_f64() / 2.0,
            window.max(target as f64),
            // Three segments behind the edge, as players do for HLS.
            3 * target,
            target
        );
    } else {
        let end: f64 = p.track(p.main()).map_or(0.0, |t| {
            t.segments.back().map_or(0.0, |s| {
                s.start as f64 / t.config.timescale.max(1) as f64 + s.duration
            })
        });
        let _ = write!(s, " mediaPresentationDuration=\"PT{end:.3}S\"");
    }
    s.push_str(">\n<Period id=\"0\" start=\"PT0S\">\n");
    for (id, t) in p.tracks().iter().enumerate() {
        let (content, mime) = match t.kind {
            TrackKind::Video => ("video", "video/mp4"),
            TrackKind::Audio => ("audio", "audio/mp4"),
        };
        let _ = writeln!(
            s,
            "<AdaptationSet id=\"{id}\" contentType=\"{content}\" mimeType=\"{mime}\" segmentAlignment=\"true\" startWithSAP=\"1\">"
        );
        write_representation(&mut s, t, t.kind.as_str(), "", &q);
        for (i, (path, v)) in variants.iter().enumerate() {
            if let Some(vt) = v.track(t.kind).filter(|_| v.config().container.fmp4()) {
                let id = format!("{}-{i}", t.kind.as_str());
                write_representation(&mut s, vt, &id, path, &q);
            }
        }
        s.push_str("</AdaptationSet>\n");
    }
    s.push_str("</Period>\n");
    if dynamic {
        // The clock players align the live edge to. Without one, dash.js asks a public
        // time server (time.akamai.com) from every viewer's browser.
        let _ = writeln!(
            s,
            "<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"{}\"/>",
            rfc3339(now)
        );
    }
    s.push_str("</MPD>\n");
    Some(s)
}

/// One `Representation` of track `t` (of this stream, or of a variant at `path`).
fn write_representation(s: &mut String, t: &Track, id: &str, path: &str, q: &str) {
    let _ = write!(
        s,
        "<Representation id=\"{id}\" codecs=\"{}\" bandwidth=\"{}\"",
        t.config.codec_string(),
        bitrate(t)
    );
    if t.kind == TrackKind::Video && t.config.width > 0 {
        let _ = write!(
            s,
            " width=\"{}\" height=\"{}\"",
            t.config.width, t.config.height
        );
    }
    if t.kind == TrackKind::Audio {
        let _ = write!(s, " audioSamplingRate=\"{}\"", t.config.sample_rate);
    }
    s.push_str(">\n");
    if t.kind == TrackKind::Audio {
        let _ = writeln!(
            s,
            "<AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>",
            t.config.channels.max(1)
        );
    }
    // Only the current init segment's segments are listed (a new timeline after a
    // discontinuity), and only those after the last gap (an audio dropout): `$Number$`
    // counts timeline entries one by one, so the listed numbers must have no hole.
    let current = || t.segments.iter().filter(|s| s.init == t.init_version());
    let after_gap = current()
        .filter(|s| s.is_gap())
        .last()
        .map_or(0, |g| g.msn + 1);
    let first = current()
        .find(|s| s.msn >= after_gap)
        .map_or(t.open.msn, |s| s.msn);
    let path = xml_escape(path);
    let _ = writeln!(
        s,
        "<SegmentTemplate timescale=\"{}\" initialization=\"{path}{}/init{}.mp4{q}\" media=\"{path}{}/$Number${}\" startNumber=\"{first}\">\n<SegmentTimeline>",
        t.config.timescale,
        t.kind.as_str(),
        t.init_version(),
        t.kind.as_str(),
        xml_escape(&format!(".m4s{q}")),
    );
    // One run per segment; consecutive equal durations merge with `r`. A segment lasts
    // until the next one starts, where that is known: its last sample's duration was a
    // guess (a following track's frames at millisecond timestamps), and DASH reads a
    // hole between entries as missing media and forbids an overlap.
    let ts = f64::from(t.config.timescale.max(1));
    let open_start =
        (!t.open.parts.is_empty() && t.open.init == t.init_version()).then_some(t.open.start);
    let listed: Vec<&Segment> = current().filter(|s| s.msn >= first).collect();
    let mut run: Option<(u64, u64, u32)> = None;
    let mut next_t: Option<u64> = None;
    for (i, seg) in listed.iter().enumerate() {
        let next_start = listed.get(i + 1).map(|n| n.start).or(open_start);
        let d = match next_start {
            Some(n) if n > seg.start => n - seg.start,
            _ => (seg.duration * ts).round() as u64,
        };
        match &mut run {
            Some((_, rd, r)) if *rd == d && next_t == Some(seg.start) => *r += 1,
            _ => {
                if let Some(r) = run.take() {
                    write_s(s, r);
                }
                run = Some((seg.start, d, 0));
            }
        }
        next_t = Some(seg.start + d);
    }
    if let Some(r) = run {
        write_s(s, r);
    }
    s.push_str("</SegmentTimeline>\n</SegmentTemplate>\n</Representation>\n");
}

fn write_s(s: &mut String, (t, d, r): (u64, u64, u32)) {
    if r > 0 {
        let _ = writeln!(s, "<S t=\"{t}\" d=\"{d}\" r=\"{r}\"/>");
    } else {
        let _ = writeln!(s, "<S t=\"{t}\" d=\"{d}\"/>");
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// The classic (RFC 8216, no LL-HLS parts) media playlist of the MPEG-TS segments, for
/// players that read no fMP4: version 3, the same numbers, durations and discontinuities
/// as the CMAF playlists. `None` without TS segments (TS off, or a codec it cannot carry).
pub fn ts_media(p: &Packager, query: &str) -> Option<String> {
    let ts = p.ts()?;
    if ts.unsupported().is_some() {
        return None;
    }
    let target = target_duration(p).max((ts.max_segment.round() as u64).max(1));
    let q = query_suffix(query);
    let (msn, disc_seq) = ts
        .segments
        .front()
        .map_or((p.open_msn(), 0), |s| (s.msn, s.disc_seq));
    let mut s = String::with_capacity(128 + 96 * ts.segments.len());
    let _ = write!(
        s,
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{msn}\n#EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}\n"
    );
    for (i, seg) in ts.segments.iter().enumerate() {
        if seg.discontinuity && i > 0 {
            s.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(s, "#EXT-X-PROGRAM-DATE-TIME:{}", rfc3339(seg.wall));
        if seg.is_gap() {
            s.push_str("#EXT-X-GAP\n");
        }
        let _ = writeln!(s, "#EXTINF:{:.5},\nts/{}.ts{q}", seg.duration, seg.msn);
    }
    if p.is_ended() {
        s.push_str("#EXT-X-ENDLIST\n");
    }
    Some(s)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_733_380_496_789);
        assert_eq!(rfc3339(t), "2024-12-05T06:34:56.789Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
