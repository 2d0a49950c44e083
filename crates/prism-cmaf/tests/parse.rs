//! Parsing FLV-style payloads: legacy and Enhanced RTMP forms, records taken from real
//! encoders (x264, x265, libaom, ffmpeg's AAC), malformed input as errors, and every
//! truncation / byte flip of valid payloads without a panic.

use bytes::Bytes;
use prism_cmaf::{parse_audio, parse_video, Codec, ParseError, Payload, TrackConfig};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// x264 High profile, 320x240, from ffmpeg's FLV output.
fn avcc() -> Vec<u8> {
    hex("0164000dffe100196764000dacd94141fb0110000003001000000303c0f142996001000668ebe3cb22c0fdf8f800")
}

/// x265 Main, 320x240 (VPS, SPS, PPS arrays of ffmpeg's hvcC).
fn hvcc() -> Vec<u8> {
    hex("0101600000009000000000003cf000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003003c959809210001002a42010101600000030090000003000003003ca00a080f165959a4932bc05a020000030002000003003c1022000100074401c172b46240")
}

/// libaom, 320x240, profile 0, level 2.0 (seq_level_idx 0), 8 bit 4:2:0.
fn av1c() -> Vec<u8> {
    hex("81000c000a0b000000043cffbcdaf90040")
}

/// AAC LC, 44.1 kHz, mono, with the SBR sync extension ffmpeg appends.
fn asc() -> Vec<u8> {
    hex("120856e500")
}

/// OpusHead: version 1, stereo, pre-skip 312, 48 kHz input, gain 0, family 0.
fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
    h
}

fn cat(parts: &[&[u8]]) -> Bytes {
    Bytes::from(parts.concat())
}

fn config(p: Result<Payload, ParseError>) -> TrackConfig {
    match p {
        Ok(Payload::Config(c)) => c,
        other => panic!("expected a config, got {other:?}"),
    }
}

fn frame(p: Result<Payload, ParseError>) -> (bool, i32, Bytes) {
    match p {
        Ok(Payload::Frame {
            keyframe,
            cts_ms,
            data,
        }) => (keyframe, cts_ms, data),
        other => panic!("expected a frame, got {other:?}"),
    }
}

const NALUS: &[u8] = &[0, 0, 0, 3, 0x65, 0x88, 0x84];

#[test]
fn legacy_avc() {
    let c = config(parse_video(&cat(&[&[0x17, 0, 0, 0, 0], &avcc()])));
    assert_eq!(c.codec, Codec::H264);
    assert_eq!((c.width, c.height, c.timescale), (320, 240, 90_000));
    assert_eq!((c.sample_rate, c.channels), (0, 0));
    assert_eq!(&c.record[..], &avcc()[..]);
    assert_eq!(c.codec_string(), "avc1.64000d");
    assert_eq!(c.nal_length_size(), Some(4));

    let payload = cat(&[&[0x17, 1, 0, 0, 0x43], NALUS]);
    let (key, cts, data) = frame(parse_video(&payload));
    assert!(key);
    assert_eq!(cts, 67);
    assert_eq!(&data[..], NALUS);
    // Zero-copy: the data points into the payload.
    assert_eq!(data.as_ptr(), payload[5..].as_ptr());

    // Inter frame, negative composition offset.
    let (key, cts, _) = frame(parse_video(&cat(&[&[0x27, 1, 0xFF, 0xFF, 0xDF], NALUS])));
    assert!(!key);
    assert_eq!(cts, -33);
    // End of sequence, command frame, other legacy codecs.
    for p in [
        &[0x17, 2, 0, 0, 0][..],
        &[0x57, 0, 0][..],
        &[0x22, 1, 2, 3][..],
        &[0x14, 0][..],
    ] {
        assert_eq!(
            parse_video(&Bytes::copy_from_slice(p)),
            Ok(Payload::Skip),
            "{p:x?}"
        );
    }
}

#[test]
fn legacy_hevc_codec_id_12() {
    let c = config(parse_video(&cat(&[&[0x1C, 0, 0, 0, 0], &hvcc()])));
    assert_eq!(c.codec, Codec::Hevc);
    assert_eq!((c.width, c.height), (320, 240));
    assert_eq!(c.codec_string(), "hvc1.1.6.L60.90");
    assert_eq!(c.nal_length_size(), Some(4));
    let (key, cts, data) = frame(parse_video(&cat(&[&[0x2C, 1, 0, 0, 0x21], NALUS])));
    assert_eq!((key, cts, &data[..]), (false, 33, NALUS));
}

#[test]
fn enhanced_video() {
    // SequenceStart, keyframe type.
    let avc = config(parse_video(&cat(&[&[0x90], b"avc1", &avcc()])));
    assert_eq!((avc.codec, avc.width, avc.height), (Codec::H264, 320, 240));
    let hevc = config(parse_video(&cat(&[&[0x90], b"hvc1", &hvcc()])));
    assert_eq!(
        (hevc.codec, hevc.width, hevc.height),
        (Codec::Hevc, 320, 240)
    );
    let av1 = config(parse_video(&cat(&[&[0x90], b"av01", &av1c()])));
    assert_eq!((av1.codec, av1.width, av1.height), (Codec::Av1, 320, 240));
    assert_eq!(av1.timescale, 90_000);
    assert_eq!(av1.codec_string(), "av01.0.00M.08");
    assert_eq!(av1.nal_length_size(), None);

    // CodedFrames with a CTS (avc1, hvc1).
    for cc in [b"avc1", b"hvc1"] {
        let (key, cts, data) = frame(parse_video(&cat(&[&[0x91], cc, &[0, 0, 0x21], NALUS])));
        assert_eq!((key, cts, &data[..]), (true, 33, NALUS));
    }
    // CodedFramesX: no CTS, inter frame.
    let (key, cts, data) = frame(parse_video(&cat(&[&[0xA3], b"avc1", NALUS])));
    assert_eq!((key, cts, &data[..]), (false, 0, NALUS));
    // AV1 CodedFrames carry no CTS: the body is the temporal unit.
    // A leading temporal delimiter OBU (0x12 0x00) is dropped, by re-slicing.
    let obus: &[u8] = &[0x12, 0x00, 0x32, 0x01, 0xAB];
    let payload = cat(&[&[0x91], b"av01", obus]);
    let (key, cts, data) = frame(parse_video(&payload));
    assert_eq!((key, cts, &data[..]), (true, 0, &obus[2..]));
    assert_eq!(data.as_ptr(), payload[7..].as_ptr());
    let (key, _, data) = frame(parse_video(&cat(&[&[0xA3], b"av01", &obus[2..]])));
    assert_eq!((key, &data[..]), (false, &obus[2..]));
    // A lone delimiter leaves an empty sample; a truncated one is kept as it came.
    let (_, _, data) = frame(parse_video(&cat(&[&[0x91], b"av01", &obus[..2]])));
    assert!(data.is_empty());
    let (_, _, data) = frame(parse_video(&cat(&[&[0x91], b"av01", &[0x12, 0x05, 1]])));
    assert_eq!(&data[..], &[0x12, 0x05, 1]);

    // ModEx (TimestampOffsetNano, 3 bytes) wrapping CodedFrames.
    let p = cat(&[&[0x97, 2, 0, 0, 5, 0x01], b"avc1", &[0, 0, 0x10], NALUS]);
    let (key, cts, data) = frame(parse_video(&p));
    assert_eq!((key, cts, &data[..]), (true, 16, NALUS));

    let skips: &[Bytes] = &[
        cat(&[&[0x92], b"avc1"]),                // SequenceEnd
        cat(&[&[0x94], b"avc1", &[2, 0, 1]]),    // Metadata
        cat(&[&[0x95], b"av01", &[0x80, 4, 0]]), // MPEG2TSSequenceStart
        cat(&[&[0xD1], &[0]]),                   // command frame
        cat(&[&[0x96], &[0, 0, 0, 0, 0, 0]]),    // Multitrack
        cat(&[&[0x91], b"vp09", &[1, 2, 3]]),    // a codec not packaged
    ];
    for p in skips {
        assert_eq!(parse_video(p), Ok(Payload::Skip), "{p:x?}");
    }
}

#[test]
fn audio() {
    let aac = config(parse_audio(&cat(&[&[0xAF, 0], &asc()])));
    assert_eq!(aac.codec, Codec::Aac);
    assert_eq!(
        (aac.timescale, aac.sample_rate, aac.channels),
        (44_100, 44_100, 1)
    );
    assert_eq!((aac.width, aac.height), (0, 0));
    assert_eq!(aac.codec_string(), "mp4a.40.2");
    assert!(!aac.codec.is_video());
    let raw: &[u8] = &[0x21, 0x10, 0x04];
    let payload = cat(&[&[0xAF, 1], raw]);
    let (key, cts, data) = frame(parse_audio(&payload));
    assert_eq!((key, cts, &data[..]), (true, 0, raw));
    assert_eq!(data.as_ptr(), payload[2..].as_ptr());

    let aac = config(parse_audio(&cat(&[&[0x90], b"mp4a", &hex("1190")])));
    assert_eq!((aac.sample_rate, aac.channels), (48_000, 2));
    let (_, _, data) = frame(parse_audio(&cat(&[&[0x91], b"mp4a", raw])));
    assert_eq!(&data[..], raw);

    let opus = config(parse_audio(&cat(&[&[0x90], b"Opus", &opus_head()])));
    assert_eq!(opus.codec, Codec::Opus);
    assert_eq!(
        (opus.timescale, opus.sample_rate, opus.channels),
        (48_000, 48_000, 2)
    );
    assert_eq!(opus.codec_string(), "opus");
    assert_eq!(&opus.record[..], &opus_head()[..]);
    let (key, cts, data) = frame(parse_audio(&cat(&[&[0x91], b"Opus", &[0xFC, 1, 2]])));
    assert_eq!((key, cts, &data[..]), (true, 0, &[0xFC, 1, 2][..]));

    // Family 1 (5.1): stream count, coupled count and a 6-entry mapping follow.
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[
        1, 6, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 1, 4, 2, 0, 4, 1, 2, 3, 5,
    ]);
    let six = config(parse_audio(&cat(&[&[0x90], b"Opus", &head])));
    assert_eq!(six.channels, 6);
    assert!(matches!(
        parse_audio(&cat(&[&[0x90], b"Opus", &head[..head.len() - 1]])),
        Err(ParseError::Malformed(_))
    ));

    let skips: &[Bytes] = &[
        cat(&[&[0x2F, 0xFF]]),                // MP3
        cat(&[&[0x92], b"mp4a"]),             // SequenceEnd
        cat(&[&[0x95], &[0, 0, 0, 0, 0, 0]]), // Multitrack
        cat(&[&[0x91], b".mp3", &[1, 2]]),    // a codec not packaged
    ];
    for p in skips {
        assert_eq!(parse_audio(p), Ok(Payload::Skip), "{p:x?}");
    }
}

#[test]
fn malformed_and_unsupported() {
    let malformed_video: &[Bytes] = &[
        Bytes::new(),
        cat(&[&[0x17]]),
        cat(&[&[0x17, 1, 0]]),
        cat(&[&[0x17, 0, 0, 0, 0], &avcc()[..10]]),
        cat(&[&[0x1C, 0, 0, 0, 0], &hvcc()[..30]]),
        cat(&[&[0x90], b"avc"]),
        cat(&[&[0x91], b"avc1", &[0, 0]]),
        cat(&[&[0x90], b"av01", &[0x81, 0]]),
        cat(&[&[0x97, 200, 0]]),
    ];
    for p in malformed_video {
        assert!(
            matches!(parse_video(p), Err(ParseError::Malformed(_))),
            "{p:x?}: {:?}",
            parse_video(p)
        );
    }
    let unsupported_video: &[Bytes] = &[
        cat(&[&[0x17, 9, 0, 0, 0]]),
        cat(&[&[0x17, 0, 0, 0, 0, 0], &avcc()[1..]]),
        cat(&[&[0x90], b"av01", &[0x01, 0, 0, 0]]),
        cat(&[&[0x98], b"avc1"]),
    ];
    for p in unsupported_video {
        assert!(
            matches!(parse_video(p), Err(ParseError::Unsupported(_))),
            "{p:x?}: {:?}",
            parse_video(p)
        );
    }
    let malformed_audio: &[Bytes] = &[
        Bytes::new(),
        cat(&[&[0xAF]]),
        cat(&[&[0xAF, 0]]),
        cat(&[&[0xAF, 0, 0x16, 0x88]]), // sampling frequency index 13 (reserved)
        cat(&[&[0x90], b"mp4"]),
        cat(&[
            &[0x90],
            b"Opus",
            b"OpusHeat",
            &[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ]),
        cat(&[&[0x90], b"Opus", &opus_head()[..18]]),
    ];
    for p in malformed_audio {
        assert!(
            matches!(parse_audio(p), Err(ParseError::Malformed(_))),
            "{p:x?}: {:?}",
            parse_audio(p)
        );
    }
    assert!(matches!(
        parse_audio(&cat(&[&[0xAF, 7]])),
        Err(ParseError::Unsupported(_))
    ));
    let e = parse_video(&Bytes::new()).unwrap_err();
    assert!(e.to_string().starts_with("malformed payload"));
}

/// A small deterministic generator for the fuzz-ish loop.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn truncated_and_mutated_payloads_never_panic() {
    let video: Vec<Bytes> = vec![
        cat(&[&[0x17, 0, 0, 0, 0], &avcc()]),
        cat(&[&[0x1C, 0, 0, 0, 0], &hvcc()]),
        cat(&[&[0x90], b"avc1", &avcc()]),
        cat(&[&[0x90], b"hvc1", &hvcc()]),
        cat(&[&[0x90], b"av01", &av1c()]),
        cat(&[&[0x97, 2, 0, 0, 5, 0x01], b"avc1", &[0, 0, 0x10], NALUS]),
        cat(&[&[0x27, 1, 0, 0, 0x21], NALUS]),
    ];
    let audio: Vec<Bytes> = vec![
        cat(&[&[0xAF, 0], &asc()]),
        cat(&[&[0x90], b"mp4a", &asc()]),
        cat(&[&[0x90], b"Opus", &opus_head()]),
        cat(&[&[0x97, 0, 0, 0x00], b"Opus", &opus_head()]),
    ];
    let mut rng = Lcg(0x5EED);
    let check = |p: &Bytes, is_video: bool| {
        let result = if is_video {
            parse_video(p)
        } else {
            parse_audio(p)
        };
        // Whatever it is, a config must be usable: codec string and init segment.
        if let Ok(Payload::Config(c)) = result {
            let _ = c.codec_string();
            let _ = prism_cmaf::init_segment(&[&c]);
        }
    };
    for (list, is_video) in [(&video, true), (&audio, false)] {
        for p in list {
            for len in 0..=p.len() {
                check(&p.slice(..len), is_video);
            }
            for _ in 0..2000 {
                let mut v = p.to_vec();
                for _ in 0..1 + rng.next() % 4 {
                    let i = (rng.next() as usize) % v.len();
                    v[i] = rng.next() as u8;
                }
                let cut = v.len() - (rng.next() as usize % 3).min(v.len());
                v.truncate(cut);
                check(&Bytes::from(v), is_video);
            }
        }
    }
}
