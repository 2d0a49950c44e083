//! Enhanced RTMP v2 audio/video bodies (ModEx, multitrack, FourCCs) and the rebuild of one
//! track as a plain message.
//!
//! Input: `[selector] ++ body`; the selector's low bit picks video (1) or audio (0), the
//! rest is the track id to extract. Checks: no panic; every track body lies inside the
//! input; the inspect functions agree with the parser on the sequence-header flag; a
//! rebuilt E-RTMP track parses back as one track with the same FourCC and body; a merged
//! sequence header (HeaderMerge) parses as a multitrack sequence start.

use prism_rtmp::media::{inspect_audio, inspect_video};
use prism_rtmp::multitrack::{extract_track, parse_audio, parse_video, HeaderMerge};

pub fn run(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let video = sel & 1 == 1;
    let id = sel >> 1;
    let parsed = if video {
        parse_video(body)
    } else {
        parse_audio(body)
    };
    let info = if video {
        inspect_video(body)
    } else {
        inspect_audio(body)
    };
    // Twice: the second time the merge knows the tracks of the first.
    let mut merge = HeaderMerge::default();
    for _ in 0..2 {
        if let Some(merged) = merge.sequence_start(video, body) {
            let back = if video {
                parse_video(&merged)
            } else {
                parse_audio(&merged)
            }
            .expect("merged header parses");
            assert_eq!(back.packet_type, 0);
            assert!(back.multitrack.is_some());
        }
    }
    let Ok(m) = parsed else {
        return;
    };
    let range = body.as_ptr_range();
    for t in &m.tracks {
        let r = t.body.as_ptr_range();
        assert!(
            range.start <= r.start && r.end <= range.end,
            "track body outside input"
        );
    }
    if !m.tracks.is_empty() && m.command.is_none() {
        let seq = m.packet_type == 0 || (video && m.packet_type == 5);
        assert_eq!(info.sequence_header, seq, "inspect disagrees with parse");
    }
    let Some(t) = m.tracks.iter().find(|t| t.id == id) else {
        return;
    };
    let Some(plain) = extract_track(&m, video, id) else {
        return;
    };
    if &t.fourcc == b"avc1" || &t.fourcc == b"mp4a" {
        return; // legacy FLV output, not E-RTMP
    }
    let back = if video {
        parse_video(&plain)
    } else {
        parse_audio(&plain)
    }
    .expect("rebuilt track parses");
    assert_eq!(back.multitrack, None);
    assert_eq!(back.tracks.len(), 1);
    assert_eq!(back.tracks[0].fourcc, t.fourcc);
    assert_eq!(back.tracks[0].body, t.body);
    assert_eq!(back.packet_type, m.packet_type);
}
