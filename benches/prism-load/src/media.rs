//! The synthetic stream: sequence headers, metadata and paced audio/video frames whose
//! payloads carry a sequence number and their send time, so sinks can measure latency and
//! spot missing or reordered frames whatever the relay does to RTMP timestamps.

use bytes::{BufMut, Bytes, BytesMut};
use prism_amf0::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Marks a payload as one of ours (after the FLV tag header and, for video, the NALU header).
pub const MAGIC: &[u8; 4] = b"PRSM";
pub const FPS: u64 = 25;
pub const GOP_FRAMES: u64 = 2 * FPS;
/// A keyframe is this many inter frames.
pub const KEYFRAME_WEIGHT: u64 = 4;
pub const AUDIO_RATE: u64 = 44_100;
pub const AUDIO_SAMPLES: u64 = 1024;
pub const AUDIO_KBPS: u64 = 128;

/// Offset of the marker in a video payload: 5-byte FLV AVC header + 4-byte NALU length +
/// 1-byte NAL header.
const VIDEO_MARK: usize = 10;
/// Offset of the marker in an audio payload: 2-byte FLV AAC header.
const AUDIO_MARK: usize = 2;
/// MAGIC + kind + stream index (u16) + seq (u64) + send time (u64 ns); the numbers 7 bits
/// a byte with the top bit set (see [`put_7bit`]).
const MARK_LEN: usize = 4 + 1 + 3 + 10 + 10;

/// Monotonic nanoseconds since the tool started: publisher and sinks share this clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// The measurement window in [`Clock`] nanoseconds; messages sent inside it are counted.
#[derive(Debug)]
pub struct Window {
    start: AtomicU64,
    end: AtomicU64,
}

impl Window {
    pub fn new() -> Self {
        Window {
            start: AtomicU64::new(u64::MAX),
            end: AtomicU64::new(u64::MAX),
        }
    }
    pub fn open(&self, now_ns: u64) {
        self.start.store(now_ns, Ordering::SeqCst);
    }
    pub fn close(&self, now_ns: u64) {
        self.end.store(now_ns, Ordering::SeqCst);
    }
    /// (start, end); `u64::MAX` while not opened / closed.
    pub fn bounds(&self) -> (u64, u64) {
        (
            self.start.load(Ordering::Relaxed),
            self.end.load(Ordering::Relaxed),
        )
    }
    pub fn contains(&self, t_ns: u64) -> bool {
        t_ns >= self.start.load(Ordering::Relaxed) && t_ns < self.end.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video = 0,
    Audio = 1,
}

/// Sizes that add up to the requested bitrate.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub inter: usize,
    pub key: usize,
    pub audio: usize,
}

impl Sizes {
    pub fn for_bitrate(kbps: u64) -> Sizes {
        let audio_kbps = AUDIO_KBPS.min(kbps / 4);
        let audio = (audio_kbps * 1000 / 8 * AUDIO_SAMPLES / AUDIO_RATE) as usize;
        let video_bytes_per_gop = (kbps - audio_kbps) * 1000 / 8 * GOP_FRAMES / FPS;
        let units = KEYFRAME_WEIGHT + GOP_FRAMES - 1;
        let inter = (video_bytes_per_gop / units) as usize;
        Sizes {
            inter: inter.max(VIDEO_MARK + MARK_LEN),
            key: (inter * KEYFRAME_WEIGHT as usize).max(VIDEO_MARK + MARK_LEN),
            audio: audio.max(AUDIO_MARK + MARK_LEN),
        }
    }
}

/// Video frame `i` (keyframe every [`GOP_FRAMES`]) of publisher `stream`, stamped with
/// `send_ns`.
pub fn video_frame(stream: u16, i: u64, sizes: Sizes, send_ns: u64) -> Bytes {
    let key = i % GOP_FRAMES == 0;
    let len = if key { sizes.key } else { sizes.inter };
    let mut b = BytesMut::with_capacity(len);
    b.put_u8(if key { 0x17 } else { 0x27 });
    b.put_u8(0x01); // AVC NALU
    b.put_slice(&[0, 0, 0]); // composition time
    b.put_u32((len - 9) as u32); // AVCC NALU length
    b.put_u8(if key { 0x65 } else { 0x41 }); // IDR / non-IDR slice
    put_mark(&mut b, Kind::Video, stream, i, send_ns);
    b.resize(len, 0);
    b.freeze()
}

/// Audio frame `i` of publisher `stream`, stamped with `send_ns`.
pub fn audio_frame(stream: u16, i: u64, sizes: Sizes, send_ns: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(sizes.audio);
    b.put_slice(&[0xAF, 0x01]); // AAC raw
    put_mark(&mut b, Kind::Audio, stream, i, send_ns);
    b.resize(sizes.audio, 0);
    b.freeze()
}

fn put_mark(b: &mut BytesMut, kind: Kind, stream: u16, seq: u64, send_ns: u64) {
    b.put_slice(MAGIC);
    b.put_u8(kind as u8);
    put_7bit(b, u64::from(stream), 3);
    put_7bit(b, seq, 10);
    put_7bit(b, send_ns, 10);
}

/// `v` big-endian in `n` bytes of 7 bits, each with the top bit set: the marker never holds
/// two zero bytes in a row, so no H.264 start code (00 00 01) appears in it and a WebRTC
/// sender that splits Annex B access units at start codes (str0m's packetizer) keeps it
/// whole.
fn put_7bit(b: &mut BytesMut, v: u64, n: usize) {
    for i in (0..n).rev() {
        b.put_u8(0x80 | ((v >> (7 * i)) & 0x7f) as u8);
    }
}

fn get_7bit(m: &[u8]) -> Option<u64> {
    m.iter().try_fold(0u64, |acc, &x| {
        (x & 0x80 != 0).then(|| (acc << 7) | u64::from(x & 0x7f))
    })
}

/// What the marker of one of our payloads says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub kind: Kind,
    /// Index of the publisher (0 in the single-stream scenarios).
    pub stream: u16,
    pub seq: u64,
    pub send_ns: u64,
}

/// The marker of one of our payloads; None for sequence headers and metadata.
pub fn parse_mark(is_video: bool, p: &[u8]) -> Option<Mark> {
    let off = if is_video { VIDEO_MARK } else { AUDIO_MARK };
    let m = p.get(off..off + MARK_LEN)?;
    if &m[..4] != MAGIC {
        return None;
    }
    decode_mark(m)
}

/// The marker at the start of `m` (which starts with [`MAGIC`]), wherever it was found.
pub fn mark_at(m: &[u8]) -> Option<Mark> {
    let m = m.get(..MARK_LEN)?;
    if &m[..4] != MAGIC || m[4] > 1 {
        return None;
    }
    decode_mark(m)
}

/// The `MARK_LEN` bytes `m` (MAGIC checked) decoded.
fn decode_mark(m: &[u8]) -> Option<Mark> {
    Some(Mark {
        kind: if m[4] == 0 { Kind::Video } else { Kind::Audio },
        stream: u16::try_from(get_7bit(&m[5..8])?).ok()?,
        seq: get_7bit(&m[8..18])?,
        send_ns: get_7bit(&m[18..28])?,
    })
}

/// RTMP timestamp (ms) of video frame `i` and audio frame `i`.
pub fn video_ts(i: u64) -> u32 {
    (i * 1000 / FPS) as u32
}
pub fn audio_ts(i: u64) -> u32 {
    (i * AUDIO_SAMPLES * 1000 / AUDIO_RATE) as u32
}
/// Nanoseconds after the start at which video / audio frame `i` is due.
pub fn video_due_ns(i: u64) -> u64 {
    i * 1_000_000_000 / FPS
}
pub fn audio_due_ns(i: u64) -> u64 {
    i * AUDIO_SAMPLES * 1_000_000_000 / AUDIO_RATE
}

/// AVC sequence header (AVCDecoderConfigurationRecord, 1280x720 High profile).
pub fn avc_sequence_header() -> Bytes {
    let sps: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
    ];
    let pps: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    let mut b = BytesMut::new();
    b.put_slice(&[0x17, 0x00, 0, 0, 0]);
    b.put_slice(&[0x01, sps[1], sps[2], sps[3], 0xFF, 0xE1]);
    b.put_u16(sps.len() as u16);
    b.put_slice(sps);
    b.put_u8(1);
    b.put_u16(pps.len() as u16);
    b.put_slice(pps);
    b.freeze()
}

/// AAC sequence header (AudioSpecificConfig: AAC-LC, 44.1 kHz, stereo).
pub fn aac_sequence_header() -> Bytes {
    Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10])
}

/// `@setDataFrame onMetaData {...}` as a publisher sends it.
pub fn metadata(kbps: u64) -> Bytes {
    let audio_kbps = AUDIO_KBPS.min(kbps / 4);
    let props = vec![
        ("width".to_owned(), Value::Number(1280.0)),
        ("height".to_owned(), Value::Number(720.0)),
        ("framerate".to_owned(), Value::Number(FPS as f64)),
        ("videocodecid".to_owned(), Value::Number(7.0)),
        (
            "videodatarate".to_owned(),
            Value::Number((kbps - audio_kbps) as f64),
        ),
        ("audiocodecid".to_owned(), Value::Number(10.0)),
        ("audiodatarate".to_owned(), Value::Number(audio_kbps as f64)),
        (
            "audiosamplerate".to_owned(),
            Value::Number(AUDIO_RATE as f64),
        ),
        ("stereo".to_owned(), Value::Boolean(true)),
        ("encoder".to_owned(), Value::String("prism-load".into())),
    ];
    let mut b = BytesMut::new();
    prism_amf0::encode_all(
        &[
            Value::String("@setDataFrame".into()),
            Value::String("onMetaData".into()),
            Value::EcmaArray(props),
        ],
        &mut b,
    );
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_add_up() {
        let s = Sizes::for_bitrate(4700);
        let gop = s.key + (GOP_FRAMES as usize - 1) * s.inter;
        let video_bps = gop as f64 * 8.0 / 2.0;
        let audio_bps = s.audio as f64 * 8.0 * AUDIO_RATE as f64 / AUDIO_SAMPLES as f64;
        let total = (video_bps + audio_bps) / 1000.0;
        assert!((total - 4700.0).abs() < 10.0, "{total}");
    }

    #[test]
    fn mark_roundtrip() {
        let s = Sizes::for_bitrate(4700);
        let v = video_frame(3, 50, s, 123);
        assert_eq!(v[0], 0x17);
        assert_eq!(v.len(), s.key);
        let m = parse_mark(true, &v).unwrap();
        assert_eq!(
            (m.kind, m.stream, m.seq, m.send_ns),
            (Kind::Video, 3, 50, 123)
        );
        // Large values survive the 7-bit encoding, and no start code appears in the mark.
        let v = video_frame(65535, u64::MAX, s, 1 << 63);
        let m = parse_mark(true, &v).unwrap();
        assert_eq!((m.stream, m.seq, m.send_ns), (65535, u64::MAX, 1 << 63));
        for (seq, t) in [(0, 0), (1, 1), (256, 65536), (257, 1 << 40)] {
            let v = video_frame(0, seq, s, t);
            let mark = &v[VIDEO_MARK..VIDEO_MARK + MARK_LEN];
            assert!(!mark.windows(3).any(|w| w == [0, 0, 1]), "{mark:?}");
            assert!(!mark.windows(2).any(|w| w == [0, 0]), "{mark:?}");
            assert_eq!(parse_mark(true, &v).unwrap().seq, seq);
        }
        let a = audio_frame(49, 7, s, 9);
        assert_eq!(&a[..2], &[0xAF, 0x01]);
        let m = parse_mark(false, &a).unwrap();
        assert_eq!(
            (m.kind, m.stream, m.seq, m.send_ns),
            (Kind::Audio, 49, 7, 9)
        );
        // The smallest sizes still hold the marker.
        let s = Sizes::for_bitrate(100);
        assert!(parse_mark(true, &video_frame(1, 1, s, 1)).is_some());
        assert!(parse_mark(false, &audio_frame(1, 1, s, 1)).is_some());
        assert_eq!(parse_mark(true, &avc_sequence_header()), None);
    }
}
