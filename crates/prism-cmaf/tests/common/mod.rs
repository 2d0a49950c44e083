//! Test helpers: a small FLV file reader, ffmpeg/ffprobe runners, a temp dir, and the
//! packaging loop a consumer would write (FLV-style frames → samples → fragments).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use prism_cmaf::{fragment, init_segment, Payload, Sample, TrackConfig, TrackRun};

/// One FLV tag.
pub struct Tag {
    /// 8 audio, 9 video, 18 script data.
    pub kind: u8,
    pub timestamp_ms: u32,
    pub body: Bytes,
}

/// Reads an FLV file: 9-byte header, PreviousTagSize0, then tags (11-byte header, body,
/// PreviousTagSize).
pub fn read_flv(file: &[u8]) -> Vec<Tag> {
    assert_eq!(&file[..3], b"FLV", "not an FLV file");
    let header_len = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize;
    let file = Bytes::copy_from_slice(file);
    let mut pos = header_len + 4;
    let mut tags = Vec::new();
    while pos + 11 <= file.len() {
        let h = &file[pos..pos + 11];
        let kind = h[0] & 0x1F;
        let size = (usize::from(h[1]) << 16) | (usize::from(h[2]) << 8) | usize::from(h[3]);
        let timestamp_ms = (u32::from(h[7]) << 24)
            | (u32::from(h[4]) << 16)
            | (u32::from(h[5]) << 8)
            | u32::from(h[6]);
        let start = pos + 11;
        assert!(start + size <= file.len(), "truncated FLV tag");
        tags.push(Tag {
            kind,
            timestamp_ms,
            body: file.slice(start..start + size),
        });
        pos = start + size + 4;
    }
    tags
}

/// A fresh directory under the system temp dir for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("prism-cmaf-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// ffmpeg and ffprobe are the decoders these tests check against: without them a test
/// fails (./scripts/test.sh installs them), it does not pass unchecked.
pub fn require_ffmpeg() {
    for bin in ["ffmpeg", "ffprobe"] {
        let ok = Command::new(bin)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{bin} not installed: apt-get install ffmpeg (./scripts/test.sh does)"
        );
    }
}

/// The ffmpeg encoder a test makes its stream with.
pub fn require_encoder(encoder: &str) {
    require_ffmpeg();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(encoder)),
        "ffmpeg has no {encoder} encoder (Debian's ffmpeg has it)"
    );
}

/// Runs ffmpeg with `args` (whitespace-separated) writing `out`.
pub fn ffmpeg_to(args: &str, out: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args.split_whitespace())
        .arg(out)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Decodes every frame of `file` with ffmpeg; panics on any error output.
pub fn assert_decodes_cleanly(file: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{}: ffmpeg decode errors: {stderr}",
        file.display()
    );
}

/// `ffprobe -show_<section>s` for one stream, as key=value maps.
pub fn probe(
    file: &Path,
    stream: &str,
    section: &str,
    entries: &str,
) -> Vec<Vec<(String, String)>> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream])
        .arg("-show_entries")
        .arg(format!("{section}={entries}"))
        .args(["-of", "compact=p=0"])
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{}: ffprobe errors: {stderr}",
        file.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split('|')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

pub fn field<'a>(row: &'a [(String, String)], key: &str) -> &'a str {
    row.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {row:?}"))
}

pub fn stream_info(file: &Path, stream: &str, entries: &str) -> Vec<(String, String)> {
    probe(file, stream, "stream", entries)
        .into_iter()
        .next()
        .expect("no stream")
}

/// A track's frames in decode order, as a consumer collects them.
pub struct Track {
    pub config: TrackConfig,
    /// Per frame: decode time (timescale ticks), composition offset (ticks), keyframe, data.
    pub frames: Vec<Frame>,
}

#[derive(Clone)]
pub struct Frame {
    pub dts: u64,
    pub cts: i32,
    pub keyframe: bool,
    pub data: Bytes,
}

impl Track {
    pub fn new(config: TrackConfig) -> Self {
        Self {
            config,
            frames: Vec::new(),
        }
    }

    /// The frames as samples; each duration is the gap to the next frame, the last one
    /// repeats the one before.
    pub fn samples(&self) -> Vec<Sample> {
        let mut out: Vec<Sample> = Vec::with_capacity(self.frames.len());
        for (i, f) in self.frames.iter().enumerate() {
            let duration = match self.frames.get(i + 1) {
                Some(next) => (next.dts - f.dts) as u32,
                None => out.last().map_or(1, |s| s.duration),
            };
            out.push(Sample {
                duration,
                cts_offset: f.cts,
                keyframe: f.keyframe,
                data: f.data.clone(),
            });
        }
        out
    }

    /// Splits the track into fragments: a new one at every keyframe at least `span`
    /// ticks after the current fragment's start (for audio, every sample is a keyframe).
    /// Returns (index of the first sample, count).
    pub fn fragment_bounds(&self, span: u64) -> Vec<(usize, usize)> {
        let mut bounds = Vec::new();
        let mut start = 0;
        for (i, f) in self.frames.iter().enumerate() {
            if i > start && f.keyframe && f.dts - self.frames[start].dts >= span {
                bounds.push((start, i - start));
                start = i;
            }
        }
        if start < self.frames.len() {
            bounds.push((start, self.frames.len() - start));
        }
        bounds
    }
}

/// Feeds FLV tags through the parsers, collecting one video and one audio track. Video
/// timestamps go to 90 kHz; audio decode times are counted in `audio_frame_samples` per
/// frame from the first frame's timestamp (AAC: 1024), or converted from milliseconds
/// when it is `None`.
pub fn collect_tracks(
    tags: &[Tag],
    audio_frame_samples: Option<u64>,
) -> (Option<Track>, Option<Track>) {
    let mut video: Option<Track> = None;
    let mut audio: Option<Track> = None;
    for tag in tags {
        match tag.kind {
            9 => match prism_cmaf::parse_video(&tag.body).expect("video tag parses") {
                Payload::Config(c) => video = Some(Track::new(c)),
                Payload::Frame {
                    keyframe,
                    cts_ms,
                    data,
                } => {
                    let t = video.as_mut().expect("video config first");
                    let scale = u64::from(t.config.timescale);
                    t.frames.push(Frame {
                        dts: u64::from(tag.timestamp_ms) * scale / 1000,
                        cts: (i64::from(cts_ms) * scale as i64 / 1000) as i32,
                        keyframe,
                        data,
                    });
                }
                Payload::Skip => {}
            },
            8 => match prism_cmaf::parse_audio(&tag.body).expect("audio tag parses") {
                Payload::Config(c) => audio = Some(Track::new(c)),
                Payload::Frame { keyframe, data, .. } => {
                    let t = audio.as_mut().expect("audio config first");
                    assert!(keyframe, "audio frames are sync samples");
                    let scale = u64::from(t.config.timescale);
                    let dts = match (audio_frame_samples, t.frames.first()) {
                        (Some(n), Some(first)) => first.dts + n * t.frames.len() as u64,
                        _ => u64::from(tag.timestamp_ms) * scale / 1000,
                    };
                    t.frames.push(Frame {
                        dts,
                        cts: 0,
                        keyframe,
                        data,
                    });
                }
                Payload::Skip => {}
            },
            _ => {}
        }
    }
    (video, audio)
}

/// A single-track fMP4 file: init segment + one fragment per bound.
pub fn single_track_file(track: &Track, span: u64) -> Vec<u8> {
    let samples = track.samples();
    let mut out = init_segment(&[&track.config]).to_vec();
    for (seq, (start, count)) in track.fragment_bounds(span).into_iter().enumerate() {
        let run = TrackRun {
            track_id: 1,
            base_decode_time: track.frames[start].dts,
            samples: &samples[start..start + count],
        };
        out.extend_from_slice(&fragment(seq as u32 + 1, &[run]));
    }
    out
}

/// A muxed fMP4 file: video is track 1, audio track 2; each fragment holds one video
/// fragment's samples and the audio samples whose decode time falls before the next
/// video fragment starts.
pub fn muxed_file(video: &Track, audio: &Track, span: u64) -> Vec<u8> {
    let vs = video.samples();
    let audio_samples = audio.samples();
    let vscale = f64::from(video.config.timescale);
    let ascale = f64::from(audio.config.timescale);
    let mut out = init_segment(&[&video.config, &audio.config]).to_vec();
    let bounds = video.fragment_bounds(span);
    let mut a = 0;
    for (seq, &(start, count)) in bounds.iter().enumerate() {
        let end_secs = match bounds.get(seq + 1) {
            Some(&(next, _)) => video.frames[next].dts as f64 / vscale,
            None => f64::INFINITY,
        };
        let a_start = a;
        while a < audio.frames.len() && (audio.frames[a].dts as f64 / ascale) < end_secs {
            a += 1;
        }
        let mut runs = vec![TrackRun {
            track_id: 1,
            base_decode_time: video.frames[start].dts,
            samples: &vs[start..start + count],
        }];
        if a > a_start {
            runs.push(TrackRun {
                track_id: 2,
                base_decode_time: audio.frames[a_start].dts,
                samples: &audio_samples[a_start..a],
            });
        }
        out.extend_from_slice(&fragment(seq as u32 + 1, &runs));
    }
    out
}

/// Checks the packets of a stream against the samples packaged: count, decode and
/// presentation times (composition offsets included) and key flags; and that every packet
/// decodes with no error.
fn check_packets(file: &Path, stream: &str, track: &Track) {
    assert_decodes_cleanly(file);
    let packets = probe(file, stream, "packet", "pts,dts,flags");
    assert_eq!(
        packets.len(),
        track.frames.len(),
        "{}: packet count",
        file.display()
    );
    for (p, f) in packets.iter().zip(&track.frames) {
        let dts: i64 = field(p, "dts").parse().unwrap();
        let pts: i64 = field(p, "pts").parse().unwrap();
        assert_eq!(dts, f.dts as i64, "{}: dts", file.display());
        assert_eq!(
            pts,
            f.dts as i64 + i64::from(f.cts),
            "{}: pts",
            file.display()
        );
        assert_eq!(
            field(p, "flags").starts_with('K'),
            f.keyframe,
            "{}: key flag at dts {dts}",
            file.display()
        );
    }
}

/// Checks a video stream: its packets, and every decoded frame's pts and key flag.
pub fn check_video(file: &Path, stream: &str, track: &Track) {
    check_packets(file, stream, track);
    let frames = probe(file, stream, "frame", "pts,key_frame");
    assert_eq!(
        frames.len(),
        track.frames.len(),
        "{}: decoded frame count",
        file.display()
    );
    let mut expected_pts: Vec<(i64, bool)> = track
        .frames
        .iter()
        .map(|f| (f.dts as i64 + i64::from(f.cts), f.keyframe))
        .collect();
    expected_pts.sort();
    let mut got: Vec<(i64, bool)> = frames
        .iter()
        .map(|fr| {
            (
                field(fr, "pts").parse().unwrap(),
                field(fr, "key_frame") == "1",
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        expected_pts,
        "{}: decoded frames' pts and key flags",
        file.display()
    );
}

/// Checks an audio stream: its packets (all sync samples), and as many decoded frames
/// (their pts are the decoder's: Opus pre-skip shortens the first).
pub fn check_audio(file: &Path, stream: &str, track: &Track) {
    assert!(track.frames.iter().all(|f| f.keyframe && f.cts == 0));
    check_packets(file, stream, track);
    let frames = probe(file, stream, "frame", "pts");
    assert_eq!(
        frames.len(),
        track.frames.len(),
        "{}: decoded audio frames",
        file.display()
    );
}
