//! Real peers on both sides of the bridge: FFmpeg 5.1 encodes the input (its own AAC
//! encoder into FLV, libopus into Ogg), the bridge transcodes it, and ffprobe/ffmpeg read
//! the result (Opus in fMP4 written by prism-cmaf, AAC in FLV as an RTMP target gets it):
//! the right codec, channels, rate and duration, a decode without errors, and each
//! channel's own tone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use prism_audio::{AacConfig, AudioFrame, OpusConfig, Transcoder};
use prism_cmaf::{fragment, init_segment, parse_audio, Payload, Sample, TrackRun};

const SECS: f64 = 3.0;
const LEFT_HZ: f64 = 440.0;
const RIGHT_HZ: f64 = 1000.0;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("prism-audio-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn join(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command to completion with a deadline; the child is killed and reaped on timeout.
fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn (is ffmpeg installed?)");
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// A stereo test signal from FFmpeg's lavfi: LEFT_HZ on the left, RIGHT_HZ on the right.
fn ffmpeg_encode(rate: u32, codec_args: &[&str], out: &Path) {
    let l = format!("sine=frequency={LEFT_HZ}:sample_rate={rate}:duration={SECS}");
    let r = format!("sine=frequency={RIGHT_HZ}:sample_rate={rate}:duration={SECS}");
    let o = run(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", &l])
            .args(["-f", "lavfi", "-i", &r])
            .args([
                "-filter_complex",
                "[0:a][1:a]join=inputs=2:channel_layout=stereo",
            ])
            .args(codec_args)
            .arg(out),
        Duration::from_secs(60),
    );
    assert!(
        o.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// ffprobe's view of the first audio stream: (codec, channels, sample rate, duration s).
fn probe(path: &Path) -> (String, u32, u32, f64) {
    let o = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "a:0", "-show_entries"])
            .args(["stream=codec_name,channels,sample_rate:format=duration"])
            .args(["-of", "default=noprint_wrappers=1"])
            .arg(path),
        Duration::from_secs(30),
    );
    assert!(
        o.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .to_string()
    };
    (
        field("codec_name"),
        field("channels").parse().unwrap(),
        field("sample_rate").parse().unwrap(),
        field("duration").parse().unwrap(),
    )
}

/// Decodes with ffmpeg (`-xerror`: any decode error fails), returns (left, right) at 48 kHz.
fn ffmpeg_decode(path: &Path) -> (Vec<f32>, Vec<f32>) {
    let o = run(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-xerror", "-i"])
            .arg(path)
            .args(["-f", "f32le", "-ar", "48000", "-"]),
        Duration::from_secs(60),
    );
    assert!(
        o.status.success(),
        "ffmpeg decode: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stderr.is_empty(),
        "decode errors: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pcm: Vec<f32> = o
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let l = pcm.iter().step_by(2).copied().collect();
    let r = pcm.iter().skip(1).step_by(2).copied().collect();
    (l, r)
}

/// Goertzel power of `hz` in `x` relative to a full-scale sine.
fn tone(x: &[f32], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 48_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f64 * x.len() as f64 / 4.0)
}

/// Each channel carries its own tone, well above the other one.
fn assert_tones(l: &[f32], r: &[f32]) {
    let (l, r) = (&l[4800..l.len() - 4800], &r[4800..r.len() - 4800]);
    // lavfi's sine is at 1/8 full scale: power 1/64.
    let (ll, lr) = (tone(l, LEFT_HZ), tone(l, RIGHT_HZ));
    let (rr, rl) = (tone(r, RIGHT_HZ), tone(r, LEFT_HZ));
    assert!(ll > 0.01 && rr > 0.01, "tone power L {ll} R {rr}");
    assert!(
        ll > 1000.0 * lr,
        "left: {ll} at {LEFT_HZ} Hz vs {lr} at {RIGHT_HZ} Hz"
    );
    assert!(
        rr > 1000.0 * rl,
        "right: {rr} at {RIGHT_HZ} Hz vs {rl} at {LEFT_HZ} Hz"
    );
}

/// The audio tags of an FLV file: (timestamp, body).
fn flv_audio(file: &[u8]) -> Vec<(u32, Bytes)> {
    assert_eq!(&file[..3], b"FLV");
    let mut at = u32::from_be_bytes(file[5..9].try_into().unwrap()) as usize + 4;
    let mut out = Vec::new();
    while at + 11 <= file.len() {
        let h = &file[at..at + 11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let body = at + 11;
        if body + size > file.len() {
            break;
        }
        if h[0] & 0x1f == 8 {
            out.push((ts, Bytes::copy_from_slice(&file[body..body + size])));
        }
        at = body + size + 4;
    }
    out
}

fn flv_file(tags: &[AudioFrame]) -> Vec<u8> {
    let mut f = BytesMut::new();
    f.put_slice(b"FLV\x01\x04\x00\x00\x00\x09");
    f.put_u32(0);
    for t in tags {
        let len = t.payload.len() as u32;
        f.put_u8(8);
        f.put_slice(&len.to_be_bytes()[1..]);
        f.put_slice(&t.timestamp_ms.to_be_bytes()[1..]);
        f.put_u8((t.timestamp_ms >> 24) as u8);
        f.put_slice(&[0, 0, 0]);
        f.put_slice(&t.payload);
        f.put_u32(11 + len);
    }
    f.to_vec()
}

/// The packets of an Ogg Opus file: OpusHead, OpusTags, then audio packets.
fn ogg_packets(file: &[u8]) -> Vec<Bytes> {
    let mut packets = Vec::new();
    let mut cur = Vec::new();
    let mut at = 0;
    while at + 27 <= file.len() {
        assert_eq!(&file[at..at + 4], b"OggS");
        let nseg = usize::from(file[at + 26]);
        let lacing = &file[at + 27..at + 27 + nseg];
        let mut data = at + 27 + nseg;
        for &l in lacing {
            cur.extend_from_slice(&file[data..data + usize::from(l)]);
            data += usize::from(l);
            if l < 255 {
                packets.push(Bytes::from(std::mem::take(&mut cur)));
            }
        }
        at = data;
    }
    packets
}

fn enhanced_opus(packet_type: u8, body: &[u8]) -> Bytes {
    let mut p = BytesMut::new();
    p.put_u8(0x90 | packet_type);
    p.put_slice(b"Opus");
    p.put_slice(body);
    p.freeze()
}

#[test]
fn ffmpeg_aac_bridged_to_opus_plays_in_ffmpeg() {
    let dir = TempDir::new("aac2opus");
    let src = dir.join("in.flv");
    ffmpeg_encode(44_100, &["-c:a", "aac", "-b:a", "128k", "-f", "flv"], &src);
    let input = flv_audio(&std::fs::read(&src).unwrap());
    assert!(input.len() > 100);

    let mut t = Transcoder::aac_to_opus(OpusConfig::default());
    let mut out: Vec<AudioFrame> = Vec::new();
    for (ts, p) in &input {
        out.extend(t.push(p, *ts));
    }
    out.extend(t.finish());
    assert_eq!(
        t.stats().garbage + t.stats().unsupported,
        0,
        "{:?}",
        t.stats()
    );

    // Package as fMP4 with prism-cmaf, as HLS/CMAF would.
    let Ok(Payload::Config(cfg)) = parse_audio(&out[0].payload) else {
        panic!("first output is not an Opus sequence header");
    };
    assert_eq!(cfg.channels, 2);
    let mut samples = Vec::new();
    for f in &out[1..] {
        let Ok(Payload::Frame { data, .. }) = parse_audio(&f.payload) else {
            panic!("not an Opus frame");
        };
        let n = opus::packet::get_nb_samples(&data, 48_000).unwrap();
        samples.push(Sample {
            duration: n as u32,
            cts_offset: 0,
            keyframe: true,
            data,
        });
    }
    let mut file = init_segment(&[&cfg]).to_vec();
    let run = TrackRun {
        track_id: 1,
        base_decode_time: 0,
        samples: &samples,
    };
    file.extend_from_slice(&fragment(1, &[run]));
    let mp4 = dir.join("out.mp4");
    std::fs::write(&mp4, file).unwrap();

    let (codec, channels, rate, duration) = probe(&mp4);
    assert_eq!((codec.as_str(), channels, rate), ("opus", 2, 48_000));
    assert!((duration - SECS).abs() < 0.1, "duration {duration}");
    let (l, r) = ffmpeg_decode(&mp4);
    assert!(
        (l.len() as f64 / 48_000.0 - SECS).abs() < 0.1,
        "{} samples",
        l.len()
    );
    assert_tones(&l, &r);
}

#[test]
fn ffmpeg_opus_bridged_to_aac_plays_in_ffmpeg() {
    let dir = TempDir::new("opus2aac");
    let src = dir.join("in.ogg");
    ffmpeg_encode(48_000, &["-c:a", "libopus", "-b:a", "128k"], &src);
    let packets = ogg_packets(&std::fs::read(&src).unwrap());
    assert_eq!(&packets[0][..8], b"OpusHead");
    assert_eq!(&packets[1][..8], b"OpusTags");

    let mut t = Transcoder::opus_to_aac(AacConfig::default());
    let mut out: Vec<AudioFrame> = Vec::new();
    let t0 = 0u32;
    out.extend(t.push(&enhanced_opus(0, &packets[0]), t0));
    let mut samples = 0u64;
    for p in &packets[2..] {
        let ts = t0 + (samples * 1000 / 48_000) as u32;
        out.extend(t.push(&enhanced_opus(1, p), ts));
        samples += opus::packet::get_nb_samples(p, 48_000).unwrap() as u64;
    }
    out.extend(t.finish());
    assert_eq!(
        t.stats().garbage + t.stats().unsupported,
        0,
        "{:?}",
        t.stats()
    );
    assert_eq!(&out[0].payload[..2], &[0xAF, 0x00]);
    assert!(out
        .windows(2)
        .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));

    // An FLV file, as an RTMP target receives the stream.
    let flv = dir.join("out.flv");
    std::fs::write(&flv, flv_file(&out)).unwrap();
    let (codec, channels, rate, duration) = probe(&flv);
    assert_eq!((codec.as_str(), channels, rate), ("aac", 2, 48_000));
    assert!((duration - SECS).abs() < 0.1, "duration {duration}");
    let (l, r) = ffmpeg_decode(&flv);
    assert!(
        (l.len() as f64 / 48_000.0 - SECS).abs() < 0.1,
        "{} samples",
        l.len()
    );
    assert_tones(&l, &r);
}

#[test]
fn ffmpeg_aac_5_1_comes_out_as_stereo_opus() {
    let dir = TempDir::new("aac51");
    let src = dir.join("in.flv");
    let sine = format!("sine=frequency={LEFT_HZ}:sample_rate=48000:duration=1");
    let o = run(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i", &sine])
            .args(["-filter_complex", "[0:a]asplit=6[a][b][c][d][e][f];[a][b][c][d][e][f]join=inputs=6:channel_layout=5.1"])
            .args(["-c:a", "aac", "-b:a", "256k", "-f", "flv"])
            .arg(&src),
        Duration::from_secs(60),
    );
    assert!(
        o.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let input = flv_audio(&std::fs::read(&src).unwrap());
    let mut t = Transcoder::aac_to_opus(OpusConfig::default());
    let mut out: Vec<AudioFrame> = Vec::new();
    for (ts, p) in &input {
        out.extend(t.push(p, *ts));
    }
    out.extend(t.finish());
    assert_eq!(
        t.stats().garbage + t.stats().unsupported,
        0,
        "{:?}",
        t.stats()
    );
    let Ok(Payload::Config(cfg)) = parse_audio(&out[0].payload) else {
        panic!("no Opus sequence header");
    };
    // Downmixed to stereo, the most WebRTC Opus carries; the tone is in both channels.
    assert_eq!(cfg.channels, 2);
    assert!(out.iter().filter(|f| f.sequence_header).count() == 1);
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Stereo).unwrap();
    let mut pcm = vec![0f32; 5760 * 2];
    let (mut l, mut r) = (Vec::new(), Vec::new());
    for f in &out[1..] {
        let Ok(Payload::Frame { data, .. }) = parse_audio(&f.payload) else {
            panic!("not an Opus frame");
        };
        let n = dec.decode_float(&data, &mut pcm, false).unwrap();
        l.extend(pcm[..n * 2].iter().step_by(2));
        r.extend(pcm[..n * 2].iter().skip(1).step_by(2));
    }
    let (l, r) = (&l[9600..l.len() - 9600], &r[9600..r.len() - 9600]);
    assert!(tone(l, LEFT_HZ) > 0.005 && tone(r, LEFT_HZ) > 0.005);
}
