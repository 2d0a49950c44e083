//! End to end against real peers: ffmpeg writes an FLV file (H.264 with B-frames + AAC);
//! its tag bodies go through the parsers and the packager; ffmpeg/ffprobe must decode the
//! fMP4 files (video only, audio only, muxed) with no error, the same frame counts, the
//! right keyframes and the right timestamps (composition offsets included).

mod common;

use common::*;
use prism_cmaf::Codec;

#[test]
fn h264_aac_from_ffmpeg_flv_decodes() {
    require_ffmpeg();
    let dir = temp_dir("h264-aac");
    let flv = dir.join("in.flv");
    ffmpeg_to(
        "-f lavfi -i testsrc2=size=320x240:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 -t 4 -c:v libx264 -g 30 -bf 2 -c:a aac -f flv",
        &flv,
    );
    let tags = read_flv(&std::fs::read(&flv).unwrap());
    let (video, audio) = collect_tracks(&tags, Some(1024));
    let video = video.expect("a video track");
    let audio = audio.expect("an audio track");

    assert_eq!(video.config.codec, Codec::H264);
    assert_eq!((video.config.width, video.config.height), (320, 240));
    assert_eq!(video.config.timescale, 90_000);
    assert_eq!(video.config.nal_length_size(), Some(4));
    assert!(
        video.config.codec_string().starts_with("avc1.64"),
        "{}",
        video.config.codec_string()
    );
    assert_eq!(audio.config.codec, Codec::Aac);
    assert_eq!(audio.config.timescale, 44_100);
    assert_eq!(audio.config.sample_rate, 44_100);
    assert_eq!(audio.config.channels, 1);
    assert_eq!(audio.config.codec_string(), "mp4a.40.2");

    assert_eq!(video.frames.len(), 120, "4 s at 30 fps");
    assert!(
        video.frames.iter().any(|f| f.cts > 0),
        "B-frames give composition offsets"
    );
    assert_eq!(
        video.frames.iter().filter(|f| f.keyframe).count(),
        4,
        "GOP 30"
    );

    // ffprobe's codec view of the init segment.
    let video_file = dir.join("video.mp4");
    std::fs::write(&video_file, single_track_file(&video, 90_000)).unwrap();
    let info = stream_info(&video_file, "v:0", "codec_name,width,height,time_base");
    assert_eq!(field(&info, "codec_name"), "h264");
    assert_eq!(field(&info, "width"), "320");
    assert_eq!(field(&info, "height"), "240");
    assert_eq!(field(&info, "time_base"), "1/90000");
    check_video(&video_file, "v:0", &video);

    let audio_file = dir.join("audio.mp4");
    std::fs::write(&audio_file, single_track_file(&audio, 44_100)).unwrap();
    let info = stream_info(&audio_file, "a:0", "codec_name,sample_rate,channels");
    assert_eq!(field(&info, "codec_name"), "aac");
    assert_eq!(field(&info, "sample_rate"), "44100");
    assert_eq!(field(&info, "channels"), "1");
    check_audio(&audio_file, "a:0", &audio);

    let muxed = dir.join("muxed.mp4");
    std::fs::write(&muxed, muxed_file(&video, &audio, 90_000)).unwrap();
    check_video(&muxed, "v:0", &video);
    check_audio(&muxed, "a:0", &audio);

    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrites 4-byte NAL unit length prefixes to 2-byte ones.
fn two_byte_prefixes(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        out.extend_from_slice(&data[4..4 + len]);
        data = &data[4 + len..];
    }
    out
}

/// A stream whose avcC says lengthSizeMinusOne = 1: the frames are packaged as they
/// came and the record goes into the init segment as it came, so they agree.
#[test]
fn h264_with_two_byte_nal_lengths_decodes() {
    require_ffmpeg();
    let dir = temp_dir("h264-len2");
    let flv = dir.join("in.flv");
    ffmpeg_to(
        "-f lavfi -i testsrc2=size=320x240:rate=30 -t 2 -c:v libx264 -g 30 -bf 2 -f flv",
        &flv,
    );
    let tags: Vec<Tag> = read_flv(&std::fs::read(&flv).unwrap())
        .into_iter()
        .filter(|t| t.kind == 9)
        .map(|t| {
            let mut body = t.body[..5].to_vec();
            if t.body[1] == 0 {
                body.extend_from_slice(&t.body[5..]);
                body[5 + 4] = 0xFD; // lengthSizeMinusOne = 1
            } else {
                body.extend_from_slice(&two_byte_prefixes(&t.body[5..]));
            }
            Tag {
                kind: 9,
                timestamp_ms: t.timestamp_ms,
                body: body.into(),
            }
        })
        .collect();
    let (video, _) = collect_tracks(&tags, None);
    let video = video.unwrap();
    assert_eq!(video.config.nal_length_size(), Some(2));
    let file = dir.join("video.mp4");
    std::fs::write(&file, single_track_file(&video, 90_000)).unwrap();
    check_video(&file, "v:0", &video);
    let _ = std::fs::remove_dir_all(&dir);
}
