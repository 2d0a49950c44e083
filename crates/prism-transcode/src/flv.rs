//! FLV framing, sans-I/O: what the worker's stdin takes (the source) and its output pipes
//! give back (the renditions). The tag bodies are the hub's payloads unchanged (FLV tag
//! body = RTMP message body), so nothing here looks inside them.

use bytes::{Buf, Bytes, BytesMut};
use prism_hub::FrameKind;

/// A tag larger than this is refused as garbage (a 4K keyframe is a few MB).
pub const MAX_TAG_BYTES: usize = 8 << 20;

/// The file header, then the first (zero) previous-tag-size.
pub fn header(audio: bool, video: bool, out: &mut BytesMut) {
    let flags = (u8::from(audio) << 2) | u8::from(video);
    out.extend_from_slice(&[b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]);
}

/// One tag and its trailing previous-tag-size. Bodies over 2^24 - 1 bytes cannot be
/// framed; callers drop them (the hub bounds frames far below).
pub fn tag(kind: FrameKind, timestamp: u32, body: &[u8], out: &mut BytesMut) -> bool {
    let Ok(size) = u32::try_from(body.len()) else {
        return false;
    };
    if size >= 1 << 24 {
        return false;
    }
    let t = match kind {
        FrameKind::Audio => 8,
        FrameKind::Video => 9,
        FrameKind::Data => 18,
    };
    let s = size.to_be_bytes();
    let ts = timestamp.to_be_bytes();
    out.extend_from_slice(&[t, s[1], s[2], s[3], ts[1], ts[2], ts[3], ts[0], 0, 0, 0]);
    out.extend_from_slice(body);
    out.extend_from_slice(&(size + 11).to_be_bytes());
    true
}

/// One tag read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub kind: FrameKind,
    pub timestamp: u32,
    pub body: Bytes,
}

/// The FLV stream is not FLV (or a tag is absurdly large): the worker's output cannot be
/// trusted any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvError(pub &'static str);

/// Incremental reader: bytes in ([`Reader::push`]), tags out ([`Reader::next_tag`]). Holds
/// at most one tag plus what one read brought.
#[derive(Debug, Default)]
pub struct Reader {
    buf: BytesMut,
    header_done: bool,
}

impl Reader {
    /// Bytes allocated for tags not yet complete (at most one tag, [`MAX_TAG_BYTES`], plus
    /// what one read brought).
    pub fn buffered_bytes(&self) -> usize {
        self.buf.capacity()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete tag, `Ok(None)` when more bytes are needed. Tags of other types
    /// (none in ffmpeg's output) are skipped.
    pub fn next_tag(&mut self) -> Result<Option<Tag>, FlvError> {
        if !self.header_done {
            if self.buf.len() < 9 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err(FlvError("not an FLV stream"));
            }
            let len =
                u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            if !(9..=1024).contains(&len) {
                return Err(FlvError("bad FLV header length"));
            }
            // The header, then previous-tag-size 0.
            if self.buf.len() < len + 4 {
                return Ok(None);
            }
            self.buf.advance(len + 4);
            self.header_done = true;
        }
        loop {
            if self.buf.len() < 11 {
                return Ok(None);
            }
            let h = &self.buf[..11];
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            if size > MAX_TAG_BYTES {
                return Err(FlvError("FLV tag too large"));
            }
            if self.buf.len() < 11 + size + 4 {
                // Room for the whole tag at once, so it is copied in place.
                self.buf.reserve(11 + size + 4 - self.buf.len());
                return Ok(None);
            }
            let kind = match h[0] & 0x1f {
                8 => Some(FrameKind::Audio),
                9 => Some(FrameKind::Video),
                18 => Some(FrameKind::Data),
                _ => None,
            };
            if h[0] & 0x20 != 0 {
                return Err(FlvError("encrypted FLV tag"));
            }
            let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            self.buf.advance(11);
            let body = self.buf.split_to(size).freeze();
            self.buf.advance(4);
            if let Some(kind) = kind {
                return Ok(Some(Tag {
                    kind,
                    timestamp,
                    body,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_any_split() {
        let mut out = BytesMut::new();
        header(true, true, &mut out);
        let tags = [
            (FrameKind::Data, 0, vec![2, 0, 10]),
            (FrameKind::Video, 0x0123_4567, vec![0x17, 0, 0, 0, 0]),
            (FrameKind::Audio, 40, vec![0xaf, 1, 9, 9]),
            (FrameKind::Video, 41, vec![]),
        ];
        for (k, ts, b) in &tags {
            assert!(tag(*k, *ts, b, &mut out));
        }
        for step in [1, 2, 7, 11, 1000] {
            let mut r = Reader::default();
            let mut got = Vec::new();
            for chunk in out.chunks(step) {
                r.push(chunk);
                while let Some(t) = r.next_tag().unwrap() {
                    got.push((t.kind, t.timestamp, t.body.to_vec()));
                }
            }
            assert_eq!(got, tags.to_vec(), "step {step}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut r = Reader::default();
        r.push(b"RIFF\0\0\0\0\0\0");
        assert!(r.next_tag().is_err());
        let mut out = BytesMut::new();
        header(false, true, &mut out);
        out.extend_from_slice(&[9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        let mut r = Reader::default();
        r.push(&out);
        assert_eq!(r.next_tag(), Err(FlvError("FLV tag too large")));
        // Truncated everywhere: never a panic, only "more bytes".
        let mut full = BytesMut::new();
        header(true, true, &mut full);
        tag(FrameKind::Audio, 1, &[1, 2, 3], &mut full);
        for n in 0..full.len() {
            let mut r = Reader::default();
            r.push(&full[..n]);
            assert_eq!(r.next_tag(), Ok(None), "{n}");
        }
    }
}
