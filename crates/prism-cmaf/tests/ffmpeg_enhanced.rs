//! End to end for the Enhanced RTMP codecs. ffmpeg 5.1 cannot write Enhanced FLV, so
//! each test has ffmpeg encode an elementary stream (HEVC Annex B from libx265, AV1 IVF
//! from libaom, Ogg Opus from libopus), builds the Enhanced RTMP payloads an encoder would
//! send from it by hand, and checks the packaged fMP4 with ffprobe/ffmpeg as the H.264
//! test does.

mod common;

use bytes::Bytes;
use common::*;
use prism_cmaf::Codec;
use prism_mpegts::nal;

fn enhanced(first: u8, fourcc: &[u8; 4], parts: &[&[u8]]) -> Bytes {
    let mut v = vec![first];
    v.extend_from_slice(fourcc);
    for p in parts {
        v.extend_from_slice(p);
    }
    Bytes::from(v)
}

fn frame_ms(i: usize, fps: usize) -> u32 {
    (i * 1000 / fps) as u32
}

#[test]
fn hevc_from_x265_as_enhanced_rtmp() {
    require_encoder("libx265");
    let dir = temp_dir("hevc");
    let es = dir.join("in.hevc");
    ffmpeg_to(
        "-f lavfi -i testsrc2=size=320x240:rate=30 -t 3 -c:v libx265 -x265-params log-level=error:bframes=0:keyint=30:min-keyint=30:scenecut=0 -f hevc",
        &es,
    );
    let stream = std::fs::read(&es).unwrap();

    // Access units: a new one starts at a parameter set / AUD / prefix SEI, or at a slice
    // with first_slice_segment_in_pic_flag, once the current one has a picture.
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut has_vcl = false;
    for n in nal::split_annex_b(&stream) {
        let t = nal::hevc_nal_type(n).unwrap();
        let vcl = t < 32;
        let starts = (vcl && n.get(2).is_some_and(|b| b & 0x80 != 0)) || matches!(t, 32..=35 | 39);
        if starts && has_vcl || units.is_empty() {
            units.push(Vec::new());
            has_vcl = false;
        }
        has_vcl |= vcl;
        units.last_mut().unwrap().push(n);
    }
    let of_type = |t: u8| -> Vec<&[u8]> {
        units[0]
            .iter()
            .copied()
            .filter(|n| nal::hevc_nal_type(n) == Some(t))
            .collect()
    };
    let hvcc = nal::hevc_decoder_configuration_record(
        &of_type(nal::hevc_type::VPS),
        &of_type(nal::hevc_type::SPS),
        &of_type(nal::hevc_type::PPS),
    )
    .unwrap();

    let mut tags = vec![Tag {
        kind: 9,
        timestamp_ms: 0,
        body: enhanced(0x90, b"hvc1", &[&hvcc]),
    }];
    for (i, unit) in units.iter().enumerate() {
        let key = unit.iter().any(|n| {
            (nal::hevc_type::IRAP_FIRST..=nal::hevc_type::IRAP_LAST)
                .contains(&nal::hevc_nal_type(n).unwrap())
        });
        let mut data = Vec::new();
        for n in unit {
            if !(32..=34).contains(&nal::hevc_nal_type(n).unwrap()) {
                data.extend_from_slice(&(n.len() as u32).to_be_bytes());
                data.extend_from_slice(n);
            }
        }
        // Keyframes as CodedFrames (with a zero CTS), the others as CodedFramesX.
        let body = if key {
            enhanced(0x91, b"hvc1", &[&[0, 0, 0], &data])
        } else {
            enhanced(0xA3, b"hvc1", &[&data])
        };
        tags.push(Tag {
            kind: 9,
            timestamp_ms: frame_ms(i, 30),
            body,
        });
    }

    let (video, _) = collect_tracks(&tags, None);
    let video = video.unwrap();
    assert_eq!(video.config.codec, Codec::Hevc);
    assert_eq!((video.config.width, video.config.height), (320, 240));
    assert_eq!(video.frames.len(), 90);
    assert_eq!(video.frames.iter().filter(|f| f.keyframe).count(), 3);
    let codecs = video.config.codec_string();
    assert!(codecs.starts_with("hvc1.1.6.L"), "{codecs}");

    let file = dir.join("video.mp4");
    std::fs::write(&file, single_track_file(&video, 90_000)).unwrap();
    let info = stream_info(&file, "v:0", "codec_name,codec_tag_string,width,height");
    assert_eq!(field(&info, "codec_name"), "hevc");
    assert_eq!(field(&info, "codec_tag_string"), "hvc1");
    assert_eq!(
        (field(&info, "width"), field(&info, "height")),
        ("320", "240")
    );
    check_video(&file, "v:0", &video);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Splits a low-overhead OBU stream into (type, whole OBU bytes).
fn obus(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some(&h) = data.first() {
        let mut pos = 1 + usize::from(h & 0x04 != 0);
        assert!(h & 0x02 != 0, "IVF OBUs have size fields");
        let mut size = 0usize;
        for i in 0..8 {
            let b = data[pos];
            pos += 1;
            size |= usize::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        out.push(((h >> 3) & 0x0F, &data[..pos + size]));
        data = &data[pos + size..];
    }
    out
}

/// The av1C header bytes for a sequence header OBU without timing info (as libaom
/// writes it): seq_profile, seq_level_idx[0], tier 0, 8-bit 4:2:0.
fn av1c_for(seq_header_obu: &[u8]) -> Vec<u8> {
    // Skip the OBU header and its one-byte size.
    let p = &seq_header_obu[2..];
    let profile = p[0] >> 5;
    let reduced = p[0] & 0x08 != 0;
    assert!(
        !reduced && p[0] & 0x04 == 0,
        "no reduced header, no timing info"
    );
    // initial_display_delay_present (1), operating_points_cnt_minus_1 (5),
    // operating_point_idc[0] (12), seq_level_idx[0] (5): bits 6.. of the header.
    let bits = u64::from_be_bytes([p[0], p[1], p[2], p[3], p[4], 0, 0, 0]);
    let level = ((bits >> (64 - 6 - 18 - 5)) & 0x1F) as u8;
    assert_eq!(profile, 0, "libaom 8-bit 4:2:0 is Main profile");
    let mut v = vec![0x81, (profile << 5) | level, 0x0C, 0];
    v.extend_from_slice(seq_header_obu);
    v
}

#[test]
fn av1_from_libaom_as_enhanced_rtmp() {
    require_encoder("libaom-av1");
    let dir = temp_dir("av1");
    let ivf = dir.join("in.ivf");
    ffmpeg_to(
        "-f lavfi -i testsrc2=size=320x240:rate=30 -t 2 -c:v libaom-av1 -cpu-used 8 -g 30 -keyint_min 30 -f ivf",
        &ivf,
    );
    let file = std::fs::read(&ivf).unwrap();
    assert_eq!(&file[..4], b"DKIF");
    let header_len = usize::from(u16::from_le_bytes([file[6], file[7]]));
    let mut pos = header_len;
    let mut units = Vec::new();
    while pos + 12 <= file.len() {
        let size = u32::from_le_bytes(file[pos..pos + 4].try_into().unwrap()) as usize;
        units.push(&file[pos + 12..pos + 12 + size]);
        pos += 12 + size;
    }
    let seq_header = obus(units[0])
        .into_iter()
        .find(|(t, _)| *t == 1)
        .expect("a sequence header in the first temporal unit")
        .1;
    let av1c = av1c_for(seq_header);

    let mut tags = vec![Tag {
        kind: 9,
        timestamp_ms: 0,
        body: enhanced(0x90, b"av01", &[&av1c]),
    }];
    let mut with_delimiters = 0;
    for (i, unit) in units.iter().enumerate() {
        let types: Vec<u8> = obus(unit).iter().map(|(t, _)| *t).collect();
        with_delimiters += usize::from(types.first() == Some(&2));
        let key = types.contains(&1);
        // As sent: the whole temporal unit, delimiter included; CodedFrames has no CTS.
        let first = if key { 0x91 } else { 0xA1 };
        tags.push(Tag {
            kind: 9,
            timestamp_ms: frame_ms(i, 30),
            body: enhanced(first, b"av01", &[unit]),
        });
    }
    assert!(
        with_delimiters > 0,
        "ffmpeg's IVF keeps temporal delimiters"
    );

    let (video, _) = collect_tracks(&tags, None);
    let video = video.unwrap();
    assert_eq!(video.config.codec, Codec::Av1);
    assert_eq!((video.config.width, video.config.height), (320, 240));
    assert_eq!(video.frames.len(), 60);
    assert!(video
        .frames
        .iter()
        .all(|f| f.data.first().map(|h| (h >> 3) & 0x0F) != Some(2)));
    let codecs = video.config.codec_string();
    assert!(
        codecs.starts_with("av01.0.") && codecs.ends_with("M.08"),
        "{codecs}"
    );

    let out = dir.join("video.mp4");
    std::fs::write(&out, single_track_file(&video, 90_000)).unwrap();
    let info = stream_info(&out, "v:0", "codec_name,codec_tag_string,width,height");
    assert_eq!(field(&info, "codec_name"), "av1");
    assert_eq!(field(&info, "codec_tag_string"), "av01");
    assert_eq!(
        (field(&info, "width"), field(&info, "height")),
        ("320", "240")
    );
    check_video(&out, "v:0", &video);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ogg packets (RFC 3533): pages of lacing values; a value below 255 ends a packet.
fn ogg_packets(file: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut current = Vec::new();
    let mut pos = 0;
    while pos + 27 <= file.len() {
        assert_eq!(&file[pos..pos + 4], b"OggS");
        let segments = usize::from(file[pos + 26]);
        let lacing = &file[pos + 27..pos + 27 + segments];
        let mut data = pos + 27 + segments;
        for &l in lacing {
            current.extend_from_slice(&file[data..data + usize::from(l)]);
            data += usize::from(l);
            if l < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        pos = data;
    }
    packets
}

/// Samples (at 48 kHz) in an Opus packet, from its TOC byte (RFC 6716 3.1).
fn opus_packet_samples(p: &[u8]) -> u64 {
    let config = p[0] >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match p[0] & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(p[1] & 0x3F),
    };
    frame * frames
}

#[test]
fn opus_from_libopus_as_enhanced_rtmp() {
    require_encoder("libopus");
    let dir = temp_dir("opus");
    let ogg = dir.join("in.ogg");
    ffmpeg_to(
        "-f lavfi -i sine=frequency=440:sample_rate=48000 -t 3 -ac 2 -c:a libopus -f ogg",
        &ogg,
    );
    let packets = ogg_packets(&std::fs::read(&ogg).unwrap());
    assert!(packets[0].starts_with(b"OpusHead") && packets[1].starts_with(b"OpusTags"));

    let mut tags = vec![Tag {
        kind: 8,
        timestamp_ms: 0,
        body: enhanced(0x90, b"Opus", &[&packets[0]]),
    }];
    let mut samples = 0u64;
    for p in &packets[2..] {
        tags.push(Tag {
            kind: 8,
            timestamp_ms: (samples / 48) as u32,
            body: enhanced(0x91, b"Opus", &[p]),
        });
        samples += opus_packet_samples(p);
    }

    let (_, audio) = collect_tracks(&tags, None);
    let audio = audio.unwrap();
    assert_eq!(audio.config.codec, Codec::Opus);
    assert_eq!((audio.config.timescale, audio.config.channels), (48_000, 2));
    assert_eq!(audio.frames.len(), packets.len() - 2);

    let out = dir.join("audio.mp4");
    std::fs::write(&out, single_track_file(&audio, 48_000)).unwrap();
    let info = stream_info(&out, "a:0", "codec_name,sample_rate,channels");
    assert_eq!(field(&info, "codec_name"), "opus");
    assert_eq!(field(&info, "sample_rate"), "48000");
    assert_eq!(field(&info, "channels"), "2");
    check_audio(&out, "a:0", &audio);
    // The decoder drops dOps's PreSkip (312, from the OpusHead) off the first frame.
    let frames = probe(&out, "a:0", "frame", "nb_samples");
    let first = opus_packet_samples(&packets[2]);
    assert_eq!(field(&frames[0], "nb_samples"), (first - 312).to_string());
    let _ = std::fs::remove_dir_all(&dir);
}
