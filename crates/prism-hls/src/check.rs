//! A checker of the RFC 8216bis rules a media playlist from this crate must keep, for tests
//! and the load tool: it reads the text as a player would, independently of how it was
//! written, and lists every rule broken.

/// One listed segment as a player sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSegment {
    pub msn: u64,
    pub uri: String,
    pub duration: f64,
    /// Parts listed before it: (duration, uri, independent).
    pub parts: Vec<(f64, String, bool)>,
    pub discontinuity: bool,
}

/// A media playlist, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaPlaylist {
    pub version: u32,
    pub target_duration: u64,
    pub part_target: Option<f64>,
    pub part_hold_back: Option<f64>,
    pub can_skip_until: Option<f64>,
    pub can_block_reload: bool,
    pub media_sequence: u64,
    pub skipped: u64,
    pub segments: Vec<ListedSegment>,
    /// Parts after the last complete segment (the open one).
    pub open_parts: Vec<(f64, String, bool)>,
    pub preload_hint: Option<String>,
    pub ended: bool,
    pub maps: Vec<String>,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let body = line.split_once(':')?.1;
    let mut rest = body;
    while !rest.is_empty() {
        let (k, v) = rest.split_once('=')?;
        let (value, tail) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].strip_prefix(',').unwrap_or(""))
        } else {
            match v.split_once(',') {
                Some((a, b)) => (a, b),
                None => (v, ""),
            }
        };
        if k == name {
            return Some(value);
        }
        rest = tail;
    }
    None
}

/// Parses a media playlist; `Err` lists what could not be read at all.
pub fn parse_media(text: &str) -> Result<MediaPlaylist, String> {
    let mut p = MediaPlaylist::default();
    let mut lines = text.lines();
    if lines.next() != Some("#EXTM3U") {
        return Err("does not start with #EXTM3U".into());
    }
    let mut parts = Vec::new();
    let mut duration = None;
    let mut disc = false;
    let num = |v: Option<&str>, what: &str| -> Result<f64, String> {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("bad {what}"))
    };
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
            p.version = v.parse().map_err(|_| "bad version")?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_duration = v.parse().map_err(|_| "bad target duration")?;
        } else if line.starts_with("#EXT-X-PART-INF:") {
            p.part_target = Some(num(attr(line, "PART-TARGET"), "PART-TARGET")?);
        } else if line.starts_with("#EXT-X-SERVER-CONTROL:") {
            p.can_block_reload = attr(line, "CAN-BLOCK-RELOAD") == Some("YES");
            p.part_hold_back = attr(line, "PART-HOLD-BACK").and_then(|v| v.parse().ok());
            p.can_skip_until = attr(line, "CAN-SKIP-UNTIL").and_then(|v| v.parse().ok());
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.parse().map_err(|_| "bad media sequence")?;
        } else if line.starts_with("#EXT-X-SKIP:") {
            p.skipped = num(attr(line, "SKIPPED-SEGMENTS"), "SKIPPED-SEGMENTS")? as u64;
        } else if line.starts_with("#EXT-X-MAP:") {
            p.maps
                .push(attr(line, "URI").ok_or("MAP without URI")?.to_string());
        } else if line == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if line.starts_with("#EXT-X-PART:") {
            parts.push((
                num(attr(line, "DURATION"), "part DURATION")?,
                attr(line, "URI").ok_or("PART without URI")?.to_string(),
                attr(line, "INDEPENDENT") == Some("YES"),
            ));
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            p.preload_hint = attr(line, "URI").map(str::to_string);
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d = v.split(',').next().unwrap_or("");
            duration = Some(d.parse::<f64>().map_err(|_| "bad EXTINF")?);
        } else if line == "#EXT-X-ENDLIST" {
            p.ended = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            let d = duration.take().ok_or("URI without EXTINF")?;
            p.segments.push(ListedSegment {
                msn: p.media_sequence + p.skipped + p.segments.len() as u64,
                uri: line.to_string(),
                duration: d,
                parts: std::mem::take(&mut parts),
                discontinuity: std::mem::take(&mut disc),
            });
        }
    }
    p.open_parts = parts;
    Ok(p)
}

/// The path of a URI without its query.
fn path(uri: &str) -> &str {
    uri.split('?').next().unwrap_or(uri)
}

/// Every rule `text` breaks (empty: none). Rules: RFC 8216bis sections 4.4.3.1 (EXTINF
/// within the target duration), 4.4.4.9 (part durations within PART-TARGET; parts add up to
/// their segment), 4.4.3.8 (PART-HOLD-BACK at least twice PART-TARGET, CAN-SKIP-UNTIL at
/// least six target durations), 4.4.5.3 (the preload hint names the part after the last
/// one), and this crate's naming: segment `N` is `{track}/N.m4s`, its parts
/// `{track}/N.i.m4s` from 0.
pub fn check_media(text: &str) -> Vec<String> {
    let p = match parse_media(text) {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    let eps = 0.0005;
    if p.target_duration == 0 {
        errors.push("no EXT-X-TARGETDURATION".into());
    }
    if p.maps.is_empty() && !(p.segments.is_empty() && p.open_parts.is_empty()) {
        errors.push("no EXT-X-MAP".into());
    }
    for s in &p.segments {
        if s.duration.round() as u64 > p.target_duration {
            errors.push(format!(
                "segment {} lasts {} s, above the target duration {}",
                s.msn, s.duration, p.target_duration
            ));
        }
        if !path(&s.uri).ends_with(&format!("/{}.m4s", s.msn)) {
            errors.push(format!("segment {} has URI {}", s.msn, s.uri));
        }
        if !s.parts.is_empty() {
            let sum: f64 = s.parts.iter().map(|p| p.0).sum();
            if (sum - s.duration).abs() > 0.002 * s.parts.len() as f64 {
                errors.push(format!(
                    "segment {}: parts add up to {sum}, EXTINF says {}",
                    s.msn, s.duration
                ));
            }
        }
    }
    let open_msn = p.media_sequence + p.skipped + p.segments.len() as u64;
    let mut all_parts: Vec<(u64, &(f64, String, bool))> = p
        .segments
        .iter()
        .flat_map(|s| s.parts.iter().map(move |x| (s.msn, x)))
        .collect();
    all_parts.extend(p.open_parts.iter().map(|x| (open_msn, x)));
    if let Some(target) = p.part_target {
        for (msn, (d, uri, _)) in &all_parts {
            if *d > target + eps {
                errors.push(format!(
                    "part {uri} of segment {msn} lasts {d} s, above PART-TARGET {target}"
                ));
            }
        }
        match p.part_hold_back {
            Some(h) if h + eps >= 2.0 * target => {}
            other => errors.push(format!(
                "PART-HOLD-BACK {other:?} below twice PART-TARGET {target}"
            )),
        }
    } else if !all_parts.is_empty() {
        errors.push("parts without EXT-X-PART-INF".into());
    }
    if let Some(skip) = p.can_skip_until {
        if skip + eps < 6.0 * p.target_duration as f64 {
            errors.push(format!("CAN-SKIP-UNTIL {skip} below six target durations"));
        }
    }
    // Parts of a segment are numbered from 0 without gaps.
    for s in &p.segments {
        for (i, (_, uri, _)) in s.parts.iter().enumerate() {
            if !path(uri).ends_with(&format!("/{}.{}.m4s", s.msn, i)) {
                errors.push(format!("part {i} of segment {} has URI {uri}", s.msn));
            }
        }
    }
    for (i, (_, uri, _)) in p.open_parts.iter().enumerate() {
        if !path(uri).ends_with(&format!("/{open_msn}.{i}.m4s")) {
            errors.push(format!("open part {i} of segment {open_msn} has URI {uri}"));
        }
    }
    if !p.ended {
        match &p.preload_hint {
            Some(hint) => {
                let want = format!("/{open_msn}.{}.m4s", p.open_parts.len());
                if !path(hint).ends_with(&want) {
                    errors.push(format!(
                        "preload hint {hint} is not the next part (…{want})"
                    ));
                }
            }
            None if p.part_target.is_some() => errors.push("no EXT-X-PRELOAD-HINT".into()),
            None => {}
        }
    }
    errors
}

/// Every rule a classic (RFC 8216, no LL-HLS) media playlist of MPEG-TS segments breaks:
/// EXTINF within the target duration (4.4.3.1), decimal EXTINF only from version 3
/// (7), no LL-HLS tags and no `EXT-X-MAP` (TS segments carry their own PAT/PMT), and this
/// crate's naming: segment `N` is `ts/N.ts`.
pub fn check_ts_media(text: &str) -> Vec<String> {
    let p = match parse_media(text) {
        Ok(p) => p,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    if p.target_duration == 0 {
        errors.push("no EXT-X-TARGETDURATION".into());
    }
    if p.version < 3 {
        errors.push(format!(
            "EXT-X-VERSION {} does not allow decimal EXTINF (3 needed)",
            p.version
        ));
    }
    for tag in [
        "#EXT-X-PART-INF",
        "#EXT-X-PART:",
        "#EXT-X-PRELOAD-HINT",
        "#EXT-X-SERVER-CONTROL",
        "#EXT-X-SKIP",
        "#EXT-X-MAP",
    ] {
        if text.lines().any(|l| l.starts_with(tag)) {
            errors.push(format!("{tag} in a classic TS playlist"));
        }
    }
    for s in &p.segments {
        if s.duration.round() as u64 > p.target_duration {
            errors.push(format!(
                "segment {} lasts {} s, above the target duration {}",
                s.msn, s.duration, p.target_duration
            ));
        }
        if path(&s.uri) != format!("ts/{}.ts", s.msn) {
            errors.push(format!("segment {} has URI {}", s.msn, s.uri));
        }
    }
    errors
}

/// Rules a delta update (`_HLS_skip=YES`) breaks against the full playlist of the same
/// moment: same media sequence, and skipped + listed = the full list, tails equal.
pub fn check_delta(full: &str, delta: &str) -> Vec<String> {
    let (Ok(f), Ok(d)) = (parse_media(full), parse_media(delta)) else {
        return vec!["unparsable playlist".into()];
    };
    let mut errors = Vec::new();
    if f.media_sequence != d.media_sequence {
        errors.push("media sequence differs".into());
    }
    if d.skipped as usize + d.segments.len() != f.segments.len() {
        errors.push(format!(
            "{} skipped + {} listed != {} in the full playlist",
            d.skipped,
            d.segments.len(),
            f.segments.len()
        ));
    }
    let tail = &f.segments[f.segments.len().saturating_sub(d.segments.len())..];
    if tail != d.segments.as_slice() {
        errors.push("the delta's segments are not the full playlist's last ones".into());
    }
    if f.open_parts != d.open_parts || f.preload_hint != d.preload_hint {
        errors.push("the delta's open parts differ".into());
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-PART-INF:PART-TARGET=0.200
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,CAN-SKIP-UNTIL=12.0
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-MAP:URI=\"video/init1.mp4\"
#EXTINF:2.00000,
video/10.m4s
#EXT-X-PART:DURATION=0.20000,URI=\"video/11.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"video/11.1.m4s\"
#EXTINF:0.40000,
video/11.m4s
#EXT-X-PART:DURATION=0.20000,URI=\"video/12.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"video/12.1.m4s\"
";

    fn broken(from: &str, to: &str) -> Vec<String> {
        assert!(GOOD.contains(from), "{from}");
        check_media(&GOOD.replace(from, to))
    }

    #[test]
    fn a_valid_playlist_passes() {
        assert_eq!(check_media(GOOD), Vec::<String>::new());
        let p = parse_media(GOOD).unwrap();
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[1].parts.len(), 2);
        assert_eq!(p.open_parts.len(), 1);
    }

    #[test]
    fn each_broken_rule_is_reported() {
        for (from, to, what) in [
            (
                "#EXTINF:2.00000",
                "#EXTINF:2.60000",
                "above the target duration",
            ),
            (
                "DURATION=0.20000,URI=\"video/11.1",
                "DURATION=0.25000,URI=\"video/11.1",
                "above PART-TARGET",
            ),
            ("video/12.1.m4s", "video/12.2.m4s", "preload hint"),
            (
                "PART-HOLD-BACK=0.600",
                "PART-HOLD-BACK=0.300",
                "PART-HOLD-BACK",
            ),
            (
                "CAN-SKIP-UNTIL=12.0",
                "CAN-SKIP-UNTIL=6.0",
                "CAN-SKIP-UNTIL",
            ),
            ("video/11.m4s", "video/13.m4s", "has URI"),
            ("video/11.1.m4s", "video/11.2.m4s", "part 1 of segment 11"),
            ("#EXTINF:0.40000", "#EXTINF:0.60000", "parts add up"),
            ("#EXT-X-MAP:URI=\"video/init1.mp4\"\n", "", "no EXT-X-MAP"),
        ] {
            let errors = broken(from, to);
            assert!(
                errors.iter().any(|e| e.contains(what)),
                "{from} -> {to}: expected `{what}` in {errors:?}"
            );
        }
    }

    const GOOD_TS: &str = "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-PROGRAM-DATE-TIME:2026-12-05T08:00:00.000Z
#EXTINF:2.00000,
ts/10.ts
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-12-05T08:00:02.000Z
#EXTINF:1.96000,
ts/11.ts?token=x
";

    #[test]
    fn classic_ts_playlists_are_checked() {
        assert_eq!(check_ts_media(GOOD_TS), Vec::<String>::new());
        assert_eq!(parse_media(GOOD_TS).unwrap().segments[1].msn, 11);
        for (from, to, what) in [
            (
                "#EXTINF:2.00000",
                "#EXTINF:2.60000",
                "above the target duration",
            ),
            ("ts/11.ts", "ts/12.ts", "has URI"),
            ("ts/10.ts", "video/10.m4s", "has URI"),
            ("VERSION:3", "VERSION:2", "decimal EXTINF"),
            (
                "#EXT-X-MEDIA-SEQUENCE",
                "#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-MEDIA-SEQUENCE",
                "EXT-X-MAP",
            ),
            (
                "#EXT-X-MEDIA-SEQUENCE",
                "#EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE",
                "EXT-X-PART-INF",
            ),
        ] {
            assert!(GOOD_TS.contains(from), "{from}");
            let errors = check_ts_media(&GOOD_TS.replace(from, to));
            assert!(
                errors.iter().any(|e| e.contains(what)),
                "{from} -> {to}: expected `{what}` in {errors:?}"
            );
        }
    }

    #[test]
    fn delta_updates_are_compared_with_the_full_playlist() {
        let delta = GOOD.replace(
            "#EXT-X-MAP:URI=\"video/init1.mp4\"\n#EXTINF:2.00000,\nvideo/10.m4s\n",
            "#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n#EXT-X-MAP:URI=\"video/init1.mp4\"\n",
        );
        assert_eq!(check_delta(GOOD, &delta), Vec::<String>::new());
        let wrong_count = delta.replace("SKIPPED-SEGMENTS=1", "SKIPPED-SEGMENTS=2");
        assert!(!check_delta(GOOD, &wrong_count).is_empty());
        let other_tail = delta.replace("#EXTINF:0.40000", "#EXTINF:0.39000");
        assert!(!check_delta(GOOD, &other_tail).is_empty());
    }
}
