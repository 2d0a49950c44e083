//! Shared by the demuxer tests: ffmpeg-made fixtures, ffprobe as the oracle, a tiny FLV
//! writer (so ffmpeg can decode what the demuxer produced), a synthetic TS writer, and a
//! seeded PRNG.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use prism_mpegts::demux::{DemuxStats, Demuxer};
use prism_mpegts::{FlvFrame, FrameKind};

/// Whether ffmpeg and ffprobe can be run; tests that need them skip (loudly) otherwise.
pub fn have_ffmpeg() -> bool {
    let ok = |bin: &str| {
        Command::new(bin)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let have = ok("ffmpeg") && ok("ffprobe");
    if !have {
        eprintln!("ffmpeg/ffprobe not found: skipping");
    }
    have
}

fn tmp_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prism-mpegts-demux");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A path in the test scratch directory.
pub fn tmp_path(name: &str) -> PathBuf {
    tmp_dir().join(name)
}

/// Runs ffmpeg to make `name` (unless it already exists) with `args` (split on spaces)
/// before the output path. Written to a temporary name first so concurrent tests never see half a file.
pub fn ffmpeg_fixture(name: &str, args: &str) -> PathBuf {
    // The arguments are part of the cached name, so editing them makes a new file.
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    args.hash(&mut h);
    let name = &format!("{:016x}-{name}", h.finish());
    let path = tmp_path(name);
    if path.exists() {
        return path;
    }
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = tmp_path(&format!("{name}.{}.{n}.partial", std::process::id()));
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args.split_whitespace())
        .arg(&partial)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &path).unwrap();
    path
}

/// H.264 (x264, GOP 25, B-frames) + AAC-LC 44.1 kHz stereo, 2 s, in MPEG-TS.
pub fn avc_aac_ts() -> PathBuf {
    ffmpeg_fixture(
        "avc_aac.ts",
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 -c:v libx264 -g 25 -preset veryfast -c:a aac -ac 2 -t 2 -f mpegts",
    )
}

/// Like [`avc_aac_ts`] but 6 s with a keyframe every 10 frames, so that random loss
/// leaves keyframes to restart from.
pub fn avc_aac_short_gop_ts() -> PathBuf {
    ffmpeg_fixture(
        "avc_aac_gop10.ts",
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 -c:v libx264 -g 10 -preset veryfast -c:a aac -ac 2 -t 6 -f mpegts",
    )
}

/// HEVC (x265, GOP 25) + AAC-LC 48 kHz mono, 2 s, in MPEG-TS.
pub fn hevc_aac_ts() -> PathBuf {
    ffmpeg_fixture(
        "hevc_aac.ts",
        "-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -c:v libx265 -x265-params keyint=25:min-keyint=25:log-level=error -preset ultrafast -c:a aac -ac 1 -t 2 -f mpegts",
    )
}

/// One packet as ffprobe sees it (90 kHz units for TS input).
#[derive(Debug, Clone, Copy)]
pub struct ProbePacket {
    pub pts: Option<i64>,
    pub dts: Option<i64>,
    pub key: bool,
}

/// Packets of one stream (`"v:0"`, `"a:0"`).
pub fn probe_packets(path: &Path, stream: &str) -> Vec<ProbePacket> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream])
        .args(["-show_entries", "packet=pts,dts,flags", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            ProbePacket {
                pts: f[0].parse().ok(),
                dts: f[1].parse().ok(),
                key: f[2].starts_with('K'),
            }
        })
        .collect()
}

/// Frames ffprobe decodes in one stream (`-count_frames`).
pub fn probe_frame_count(path: &Path, stream: &str) -> usize {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", stream])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    // MPEG-TS input lists the stream twice (under its program too): take the first.
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Decodes `path` fully with ffmpeg; returns its error output (empty means clean).
pub fn ffmpeg_decode_errors(path: &Path, format: Option<&str>) -> String {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-xerror"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let out = cmd
        .arg("-i")
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let mut err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        err.push_str(&format!("\nexit status {}", out.status));
    }
    err
}

/// Pushes `data` in slices of `chunk()` bytes, draining after each, then flushes.
pub fn demux_all(data: &[u8], mut chunk: impl FnMut() -> usize) -> (Vec<FlvFrame>, DemuxStats) {
    let mut demux = Demuxer::default();
    let mut frames = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = chunk().clamp(1, rest.len());
        demux.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(f) = demux.poll_frame() {
            frames.push(f);
        }
    }
    demux.flush();
    while let Some(f) = demux.poll_frame() {
        frames.push(f);
    }
    (frames, *demux.stats())
}

/// An FLV file (header, then one tag per frame) holding `frames`.
pub fn flv_file(frames: &[FlvFrame], has_audio: bool, has_video: bool) -> Vec<u8> {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    let mut out = vec![b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0];
    for f in frames {
        let size = f.payload.len() as u32;
        out.push(if f.kind == FrameKind::Audio { 8 } else { 9 });
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&f.timestamp.to_be_bytes()[1..]);
        out.push((f.timestamp >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&f.payload);
        out.extend_from_slice(&(11 + size).to_be_bytes());
    }
    out
}

/// Signed 24-bit big-endian.
pub fn si24(b: &[u8]) -> i32 {
    (i32::from_be_bytes([b[0], b[1], b[2], 0])) >> 8
}

/// xorshift64*: deterministic, seeded, good enough to pick packets to drop.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// How [`TsWriter::pes`] writes a PES.
#[derive(Debug, Default, Clone, Copy)]
pub struct PesOpts {
    /// Write PES_packet_length (else 0, "unbounded", as for video).
    pub bounded: bool,
    /// Set the discontinuity indicator on the first packet.
    pub discontinuity: bool,
}

pub const BOUNDED: PesOpts = PesOpts {
    bounded: true,
    discontinuity: false,
};
pub const UNBOUNDED: PesOpts = PesOpts {
    bounded: false,
    discontinuity: false,
};

/// Builds transport streams by hand, for timestamp cases ffmpeg can't be asked for.
#[derive(Default)]
pub struct TsWriter {
    pub out: Vec<u8>,
    cc: std::collections::HashMap<u16, u8>,
}

impl TsWriter {
    fn next_cc(&mut self, pid: u16) -> u8 {
        let cc = self.cc.entry(pid).or_insert(15);
        *cc = (*cc + 1) & 0x0F;
        *cc
    }

    /// One packet: header, optional adaptation field (discontinuity flag, stuffing), payload
    /// of at most 184 bytes (fewer with an adaptation field).
    pub fn packet(&mut self, pid: u16, pusi: bool, discontinuity: bool, payload: &[u8]) -> usize {
        let cc = self.next_cc(pid);
        let mut p = vec![0x47, (u8::from(pusi) << 6) | (pid >> 8) as u8, pid as u8];
        let max = if discontinuity { 182 } else { 184 };
        let n = payload.len().min(max);
        let stuffing = max - n;
        if discontinuity || stuffing > 0 {
            p.push(0x30 | cc);
            // adaptation_field_length counts the flags byte and stuffing.
            let af_len = if discontinuity {
                1 + stuffing
            } else {
                stuffing.saturating_sub(1)
            };
            p.push(af_len as u8);
            if af_len > 0 {
                p.push(if discontinuity { 0x80 } else { 0x00 });
                p.extend(std::iter::repeat(0xFF).take(af_len - 1));
            }
            let n = 188 - p.len();
            p.extend_from_slice(&payload[..n.min(payload.len())]);
            let written = n.min(payload.len());
            assert_eq!(p.len(), 188);
            self.out.extend_from_slice(&p);
            return written;
        }
        p.push(0x10 | cc);
        p.extend_from_slice(&payload[..n]);
        assert_eq!(p.len(), 188);
        self.out.extend_from_slice(&p);
        n
    }

    fn section(&mut self, pid: u16, mut table: Vec<u8>) {
        let crc = crc32_mpeg2(&table);
        table.extend_from_slice(&crc.to_be_bytes());
        let mut payload = vec![0];
        payload.extend_from_slice(&table);
        payload.resize(184, 0xFF);
        self.packet(pid, true, false, &payload);
    }

    pub fn pat(&mut self, pmt_pid: u16) {
        let t = vec![
            0x00,
            0xB0,
            13,
            0,
            1,
            0xC1,
            0,
            0,
            0,
            1,
            0xE0 | (pmt_pid >> 8) as u8,
            pmt_pid as u8,
        ];
        self.section(0, t);
    }

    /// `streams`: (stream_type, pid).
    pub fn pmt(&mut self, pmt_pid: u16, pcr_pid: u16, streams: &[(u8, u16)]) {
        let len = 13 + 5 * streams.len();
        let mut t = vec![
            0x02,
            0xB0 | (len >> 8) as u8,
            len as u8,
            0,
            1,
            0xC1,
            0,
            0,
            0xE0 | (pcr_pid >> 8) as u8,
            pcr_pid as u8,
            0xF0,
            0,
        ];
        for &(st, pid) in streams {
            t.extend_from_slice(&[st, 0xE0 | (pid >> 8) as u8, pid as u8, 0xF0, 0]);
        }
        self.section(pmt_pid, t);
    }

    /// One PES split over packets.
    pub fn pes(
        &mut self,
        pid: u16,
        stream_id: u8,
        pts: u64,
        dts: Option<u64>,
        data: &[u8],
        opts: PesOpts,
    ) {
        let PesOpts {
            bounded,
            discontinuity,
        } = opts;
        let mut h = vec![0, 0, 1, stream_id, 0, 0, 0x80];
        let ts = |prefix: u8, t: u64| {
            [
                (prefix << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1,
                (t >> 22) as u8,
                (((t >> 15) as u8) << 1) | 1,
                (t >> 7) as u8,
                ((t as u8) << 1) | 1,
            ]
        };
        match dts {
            Some(d) => {
                h.extend_from_slice(&[0xC0, 10]);
                h.extend_from_slice(&ts(3, pts));
                h.extend_from_slice(&ts(1, d));
            }
            None => {
                h.extend_from_slice(&[0x80, 5]);
                h.extend_from_slice(&ts(2, pts));
            }
        }
        h.extend_from_slice(data);
        if bounded {
            let len = (h.len() - 6) as u16;
            h[4..6].copy_from_slice(&len.to_be_bytes());
        }
        let mut rest = &h[..];
        let mut first = true;
        while !rest.is_empty() {
            let n = self.packet(pid, first, first && discontinuity, rest);
            rest = &rest[n..];
            first = false;
        }
    }
}

pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// x264 SPS and PPS (High, level 1.3, 320x240) for synthetic streams.
pub const AVC_SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0D, 0xAC, 0xD9, 0x41, 0x41, 0xFB, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xF1, 0x42, 0x99, 0x60,
];
pub const AVC_PPS: &[u8] = &[0x68, 0xEB, 0xE3, 0xCB, 0x22, 0xC0];

/// An Annex B access unit: AUD, then SPS+PPS+IDR if `key`, else a non-IDR slice.
pub fn avc_access_unit(key: bool, filler: usize) -> Vec<u8> {
    let mut au = vec![0, 0, 0, 1, 0x09, 0xF0];
    if key {
        for n in [AVC_SPS, AVC_PPS] {
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(n);
        }
        au.extend_from_slice(&[0, 0, 1, 0x65, 0x88]);
    } else {
        au.extend_from_slice(&[0, 0, 1, 0x41, 0x9A]);
    }
    au.extend(std::iter::repeat(0x5A).take(filler));
    au
}

/// An ADTS frame: AAC-LC, 48 kHz (index 3), stereo, `raw_len` payload bytes.
pub fn adts_frame(raw_len: usize) -> Vec<u8> {
    let len = raw_len + 7;
    let mut f = vec![
        0xFF,
        0xF1,
        (1 << 6) | (3 << 2),
        (2 << 6) | ((len >> 11) as u8 & 0x03),
        (len >> 3) as u8,
        ((len as u8 & 0x07) << 5) | 0x1F,
        0xFC,
    ];
    f.extend(std::iter::repeat(0x21).take(raw_len));
    f
}
