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

fn fourcc_name(b: &[u8]) -> &'static str {
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
        // Enhanced RTMP: [IsExHeader:1][FrameType:3][PacketType:4][FourCC:4]
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0F;
        // 5 = command frame; 6 = multitrack, whose tracks are not inspected here.
        let codec = fourcc_name(p.get(1..5).unwrap_or(&[]));
        return MediaInfo {
            // PacketTypeSequenceStart = 0, MPEG2TSSequenceStart = 5
            sequence_header: packet_type == 0 || packet_type == 5,
            keyframe: frame_type == 1 && packet_type != 0 && packet_type != 5,
            disposable: frame_type == 3,
            codec,
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
        // Enhanced RTMP audio: [SoundFormat=9:4][AudioPacketType:4][FourCC:4]
        let packet_type = b0 & 0x0F;
        return MediaInfo {
            sequence_header: packet_type == 0,
            codec: fourcc_name(p.get(1..5).unwrap_or(&[])),
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
    fn empty_and_truncated_do_not_panic() {
        assert_eq!(inspect_video(&[]), MediaInfo::default());
        assert_eq!(inspect_audio(&[]), MediaInfo::default());
        let _ = inspect_video(&[0x90]);
        let _ = inspect_audio(&[0x90]);
    }
}
