//! Just enough of each audio/video payload (FLV tag body) to route it: keyframes, sequence
//! headers and disposable frames, for legacy FLV codecs and Enhanced RTMP (FourCC) alike.
//! Payloads are never modified.

/// What the hub needs to know about one audio or video message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaInfo {
    /// A frame a decoder can start from.
    pub keyframe: bool,
    /// Codec configuration (AVC/HEVC/AV1 decoder configuration record, AAC AudioSpecificConfig,
    /// Enhanced RTMP SequenceStart): cached and sent to every late joiner first.
    pub sequence_header: bool,
    /// A frame nothing else references (H.263 disposable inter frame): dropped first.
    pub disposable: bool,
    /// Codec as a short name ("h264", "hevc", "av1", "vp9", "aac", "mp3", "opus", ...).
    pub codec: &'static str,
}

const FOURCCS: &[(&[u8; 4], &str)] = &[
    (b"avc1", "h264"),
    (b"hvc1", "hevc"),
    (b"av01", "av1"),
    (b"vp09", "vp9"),
    (b"vp08", "vp8"),
    (b"Opus", "opus"),
    (b"fLaC", "flac"),
    (b"ac-3", "ac3"),
    (b"ec-3", "eac3"),
    (b".mp3", "mp3"),
    (b"mp4a", "aac"),
];

pub(crate) fn fourcc_name(b: &[u8]) -> &'static str {
    FOURCCS
        .iter()
        .find(|(cc, _)| b.len() >= 4 && &b[..4] == *cc)
        .map(|(_, n)| *n)
        .unwrap_or("unknown")
}

/// Inspects a video message payload.
pub fn inspect_video(p: &[u8]) -> MediaInfo {
    let Some(&b0) = p.first() else {
        return MediaInfo::default();
    };
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4], then ModEx prefixes,
        // Multitrack or a FourCC (see crate::multitrack).
        let frame_type = (b0 >> 4) & 0x07;
        let Ok(m) = crate::multitrack::parse_video(p) else {
            // Malformed: routed as an opaque frame of an unknown codec.
            return MediaInfo {
                disposable: frame_type == 3,
                codec: "unknown",
                ..MediaInfo::default()
            };
        };
        // A multitrack message is as much a keyframe / sequence header as its shared
        // packet type says (it applies to every track); the codec is the first track's.
        let seq = m.packet_type == 0 || m.packet_type == 5;
        return MediaInfo {
            sequence_header: seq && m.command.is_none(),
            keyframe: frame_type == 1 && !seq && m.command.is_none() && m.packet_type != 4,
            disposable: frame_type == 3,
            codec: m
                .tracks
                .first()
                .map_or("unknown", |t| fourcc_name(&t.fourcc)),
        };
    }
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0F;
    let codec = match codec_id {
        2 => "h263",
        3 => "screen",
        4 => "vp6",
        5 => "vp6a",
        6 => "screen2",
        7 => "h264",
        12 => "hevc",
        _ => "unknown",
    };
    // AVC and the widespread non-standard HEVC id 12 carry a packet type byte: 0 = config.
    let has_packet_type = codec_id == 7 || codec_id == 12;
    let sequence_header = has_packet_type && p.get(1) == Some(&0);
    MediaInfo {
        keyframe: frame_type == 1 && !sequence_header,
        sequence_header,
        disposable: frame_type == 3,
        codec,
    }
}

/// Inspects an audio message payload.
pub fn inspect_audio(p: &[u8]) -> MediaInfo {
    let Some(&b0) = p.first() else {
        return MediaInfo::default();
    };
    let format = b0 >> 4;
    if format == 9 {
        // Enhanced RTMP audio: [SoundFormat=9:4][AudioPacketType:4], then ModEx prefixes,
        // Multitrack or a FourCC (see crate::multitrack).
        let Ok(m) = crate::multitrack::parse_audio(p) else {
            return MediaInfo {
                codec: "unknown",
                ..MediaInfo::default()
            };
        };
        return MediaInfo {
            sequence_header: m.packet_type == 0,
            codec: m
                .tracks
                .first()
                .map_or("unknown", |t| fourcc_name(&t.fourcc)),
            ..MediaInfo::default()
        };
    }
    let codec = match format {
        2 | 14 => "mp3",
        10 => "aac",
        11 => "speex",
        4..=6 => "nellymoser",
        7 => "g711a",
        8 => "g711u",
        0 | 3 => "pcm",
        1 => "adpcm",
        _ => "unknown",
    };
    MediaInfo {
        sequence_header: format == 10 && p.get(1) == Some(&0),
        codec,
        ..MediaInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc() {
        let seq = inspect_video(&[0x17, 0x00, 0, 0, 0, 1, 0x64]);
        assert!(seq.sequence_header && !seq.keyframe);
        assert_eq!(seq.codec, "h264");
        let key = inspect_video(&[0x17, 0x01, 0, 0, 0]);
        assert!(key.keyframe && !key.sequence_header);
        let inter = inspect_video(&[0x27, 0x01, 0, 0, 0]);
        assert!(!inter.keyframe);
    }

    #[test]
    fn enhanced_hevc_and_av1() {
        // SequenceStart, key frame, hvc1
        let seq = inspect_video(&[0x90, b'h', b'v', b'c', b'1', 1, 2]);
        assert!(seq.sequence_header && !seq.keyframe);
        assert_eq!(seq.codec, "hevc");
        // CodedFramesX, key frame, av01
        let key = inspect_video(&[0x93, b'a', b'v', b'0', b'1', 9]);
        assert!(key.keyframe);
        assert_eq!(key.codec, "av1");
        // CodedFrames, inter frame, vp09
        let inter = inspect_video(&[0xA1, b'v', b'p', b'0', b'9']);
        assert!(!inter.keyframe && !inter.sequence_header);
        assert_eq!(inter.codec, "vp9");
    }

    #[test]
    fn aac_and_enhanced_audio() {
        let seq = inspect_audio(&[0xAF, 0x00, 0x12, 0x10]);
        assert!(seq.sequence_header);
        assert_eq!(seq.codec, "aac");
        assert!(!inspect_audio(&[0xAF, 0x01, 1, 2]).sequence_header);
        let opus = inspect_audio(&[0x90, b'O', b'p', b'u', b's']);
        assert!(opus.sequence_header);
        assert_eq!(opus.codec, "opus");
    }

    #[test]
    fn multitrack_and_mod_ex() {
        use crate::multitrack::{build, MultitrackType};
        let seq = build::multitrack(
            0x90,
            6,
            MultitrackType::ManyTracks,
            0,
            &[(0, *b"avc1", &[1]), (1, *b"avc1", &[2])],
        );
        let i = inspect_video(&seq);
        assert!(i.sequence_header && !i.keyframe);
        assert_eq!(i.codec, "h264");
        let key = build::multitrack(
            0x90,
            6,
            MultitrackType::OneTrack,
            1,
            &[(2, *b"hvc1", &[0; 4])],
        );
        let i = inspect_video(&key);
        assert!(i.keyframe && !i.sequence_header);
        assert_eq!(i.codec, "hevc");
        let mut modex = vec![0x97];
        modex.extend(build::nano_prefix(1000, 3));
        modex.extend_from_slice(b"av01");
        let i = inspect_video(&modex);
        assert!(i.keyframe);
        assert_eq!(i.codec, "av1");
        let audio = build::multitrack(
            0x90,
            5,
            MultitrackType::ManyTracksManyCodecs,
            0,
            &[(0, *b"fLaC", &[1])],
        );
        let i = inspect_audio(&audio);
        assert!(i.sequence_header);
        assert_eq!(i.codec, "flac");
    }

    #[test]
    fn empty_and_truncated_do_not_panic() {
        assert_eq!(inspect_video(&[]), MediaInfo::default());
        assert_eq!(inspect_audio(&[]), MediaInfo::default());
        let _ = inspect_video(&[0x90]);
        let _ = inspect_audio(&[0x90]);
    }
}
