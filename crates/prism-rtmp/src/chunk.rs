//! The RTMP chunk stream (spec 5.3): splitting messages into chunks and reassembling them.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

use crate::message::{MessageType, RawMessage, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE};
use crate::OutQueue;

/// Lowest and highest chunk stream ids the basic header can express.
pub const MIN_CSID: u32 = 2;
pub const MAX_CSID: u32 = 65599;

/// A timestamp field of 0xFFFFFF means "the real value follows in 4 extra bytes".
const EXTENDED_TS: u32 = 0xFF_FFFF;
/// The message length field is 24 bits.
const MAX_LENGTH_FIELD: usize = 0xFF_FFFF;

/// Peer misbehaviour in the chunk stream. The connection is closed on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    #[error("peer sent Set Chunk Size 0")]
    ChunkSizeZero,
    #[error("peer sent Set Chunk Size {0:#010x} with the reserved top bit set")]
    ChunkSizeTopBitSet(u32),
    #[error("peer sent Set Chunk Size {size}, above the limit of {max}")]
    ChunkSizeTooLarge { size: u32, max: u32 },
    #[error("message on chunk stream {csid} declares {length} bytes, above the limit of {max}")]
    MessageTooLarge { csid: u32, length: u32, max: u32 },
    #[error("type {fmt} chunk on chunk stream {csid}, which has no previous type 0 header")]
    NoPreviousHeader { csid: u32, fmt: u8 },
    #[error("partial messages would hold more than {max} bytes")]
    TooMuchBuffered { max: usize },
    #[error("peer opened chunk stream {csid} while {max} chunk streams are already in use")]
    TooManyChunkStreams { csid: u32, max: usize },
    #[error("{kind} message has {len} payload bytes, needs {need}")]
    ControlTooShort {
        kind: &'static str,
        len: usize,
        need: usize,
    },
}

impl ChunkError {
    /// A short label for metrics; see [`crate::session::SessionError::reason`].
    pub fn reason(&self) -> &'static str {
        match self {
            ChunkError::ChunkSizeZero
            | ChunkError::ChunkSizeTopBitSet(_)
            | ChunkError::ChunkSizeTooLarge { .. } => "bad_chunk_size",
            ChunkError::MessageTooLarge { .. } => "message_too_large",
            ChunkError::NoPreviousHeader { .. } => "no_previous_header",
            ChunkError::TooMuchBuffered { .. } => "too_much_buffered",
            ChunkError::TooManyChunkStreams { .. } => "too_many_chunk_streams",
            ChunkError::ControlTooShort { .. } => "control_too_short",
        }
    }
}

/// Resource limits on what a peer can make the decoder do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest Set Chunk Size accepted (a peer waiting on a huge chunk holds our input buffer).
    pub max_chunk_size: u32,
    /// Largest message length accepted; checked on the header, before any buffering.
    pub max_message_size: u32,
    /// Most chunk streams a peer may use (each can hold one partial message).
    pub max_chunk_streams: usize,
    /// Most bytes held in partial messages across all chunk streams, so interleaving many
    /// large messages cannot multiply the per-message limit.
    pub max_buffered_bytes: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_chunk_size: 16 * 1024 * 1024,
            max_message_size: 8 * 1024 * 1024,
            max_chunk_streams: 64,
            max_buffered_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What the decoder remembers per chunk stream: the last header (fields are inherited by
/// type 1/2/3 chunks) and at most one message in progress.
#[derive(Debug, Default)]
struct InStream {
    /// Absolute timestamp of the current (or last) message.
    timestamp: u32,
    /// The last timestamp field (absolute after type 0, delta after 1/2): the delta a type 3
    /// chunk starting a new message reuses (spec 5.3.1.2.4).
    ts_field: u32,
    /// The extended timestamp value if the last type 0/1/2 header had one; continuation
    /// chunks may repeat it.
    ext: Option<u32>,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Payload received so far of the message in progress.
    partial: Option<BytesMut>,
}

/// A chunk header parsed but not yet consumed.
#[derive(Debug)]
struct Header {
    csid: u32,
    fmt: u8,
    /// Basic + message header + extended timestamp bytes.
    len: usize,
    ts_field: u32,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Payload bytes this chunk carries.
    payload_len: usize,
}

/// Reassembles messages from the peer's chunk stream.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: DecoderLimits,
    chunk_size: u32,
    streams: HashMap<u32, InStream>,
    bytes_received: u64,
    /// Bytes held in partial messages (bounded by `limits.max_buffered_bytes`).
    buffered: usize,
}

impl ChunkDecoder {
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            bytes_received: 0,
            buffered: 0,
        }
    }

    /// Decodes at most one complete message from the front of `input`.
    ///
    /// A partial chunk stays in `input` until it is complete; partial messages are kept per
    /// chunk stream. Set Chunk Size and Abort are applied here (they change how following
    /// chunks parse) and also returned.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some(header) = self.parse_header(input)? else {
                return Ok(None);
            };
            if input.len() < header.len + header.payload_len {
                return Ok(None);
            }
            if let Some(msg) = self.consume_chunk(&header, input)? {
                self.apply_control(&msg)?;
                return Ok(Some(msg));
            }
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes consumed so far (for the Acknowledgement window).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Bytes held in partial messages now (what the memory budget charges as reassembly).
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Parses the chunk header at the front of `input` without consuming anything.
    fn parse_header(&self, input: &[u8]) -> Result<Option<Header>, ChunkError> {
        let Some(&b0) = input.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match input.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match (input.get(1), input.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + (u32::from(b2) << 8), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };

        let prev = self.streams.get(&csid);
        // Both checks only need the basic header, so garbage fails fast.
        let prev = match (prev, fmt) {
            (Some(p), _) => Some(p),
            (None, 0) => {
                if self.streams.len() >= self.limits.max_chunk_streams {
                    return Err(ChunkError::TooManyChunkStreams {
                        csid,
                        max: self.limits.max_chunk_streams,
                    });
                }
                None
            }
            (None, fmt) => return Err(ChunkError::NoPreviousHeader { csid, fmt }),
        };

        let mh_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(mh) = input.get(pos..pos + mh_len) else {
            return Ok(None);
        };
        pos += mh_len;
        let be24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);

        let mut h = Header {
            csid,
            fmt,
            len: 0,
            ts_field: prev.map_or(0, |p| p.ts_field),
            extended: false,
            length: prev.map_or(0, |p| p.length),
            type_id: prev.map_or(0, |p| p.type_id),
            stream_id: prev.map_or(0, |p| p.stream_id),
            payload_len: 0,
        };
        if fmt <= 2 {
            h.ts_field = be24(&mh[0..3]);
        }
        if fmt <= 1 {
            h.length = be24(&mh[3..6]);
            h.type_id = mh[6];
        }
        if fmt == 0 {
            // The message stream id is the one little-endian field in RTMP.
            h.stream_id = u32::from_le_bytes([mh[7], mh[8], mh[9], mh[10]]);
        }

        if fmt <= 2 {
            if h.ts_field == EXTENDED_TS {
                let Some(ext) = input.get(pos..pos + 4) else {
                    return Ok(None);
                };
                h.ts_field = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]);
                h.extended = true;
                pos += 4;
            }
        } else if let Some(ext) = prev.and_then(|p| p.ext) {
            // Type 3 after an extended-timestamp header: ffmpeg, FMS and the spec repeat the
            // 4 bytes, some encoders don't. Skip them only if they match what we expect.
            let expected = ext.to_be_bytes();
            let avail = &input[pos..input.len().min(pos + 4)];
            if avail != &expected[..avail.len()] {
                // Mismatch: these are payload bytes.
            } else if avail.len() < 4 {
                // Can't tell yet.
                return Ok(None);
            } else {
                pos += 4;
            }
        }

        if h.length > self.limits.max_message_size {
            return Err(ChunkError::MessageTooLarge {
                csid,
                length: h.length,
                max: self.limits.max_message_size,
            });
        }
        let remaining = match prev.and_then(|p| p.partial.as_ref()) {
            Some(partial) if fmt == 3 => (h.length as usize).saturating_sub(partial.len()),
            _ => h.length as usize,
        };
        h.payload_len = remaining.min(self.chunk_size as usize);
        h.len = pos;
        Ok(Some(h))
    }

    /// Consumes a complete chunk (header and payload are in `input`); returns the message
    /// if this chunk completed one.
    fn consume_chunk(
        &mut self,
        h: &Header,
        input: &mut BytesMut,
    ) -> Result<Option<RawMessage>, ChunkError> {
        input.advance(h.len);
        self.bytes_received += (h.len + h.payload_len) as u64;
        let st = self.streams.entry(h.csid).or_default();

        let continuing = h.fmt == 3 && st.partial.is_some();
        if !continuing {
            // A new message. A type 0/1/2 header while one is in progress abandons it (as
            // ffmpeg does) rather than failing the connection.
            if let Some(old) = st.partial.take() {
                self.buffered -= old.len();
            }
            match h.fmt {
                0 => st.timestamp = h.ts_field,
                1 | 2 => st.timestamp = st.timestamp.wrapping_add(h.ts_field),
                _ => st.timestamp = st.timestamp.wrapping_add(st.ts_field),
            }
            if h.fmt <= 2 {
                st.ts_field = h.ts_field;
                st.ext = h.extended.then_some(h.ts_field);
            }
            st.length = h.length;
            st.type_id = h.type_id;
            st.stream_id = h.stream_id;
        }

        let payload = input.split_to(h.payload_len);
        // Messages outlive the read (GOP cache, queues): copied, a one-chunk message does not
        // pin the whole read buffer it arrived in, and a reassembled one does not keep the
        // slack of its doubling growth. One copy per message, on the publisher's side only.
        let complete = match st.partial.take() {
            None if h.payload_len == st.length as usize => Bytes::copy_from_slice(&payload),
            partial => {
                // Grows with what actually arrived, never with the declared length, so a
                // peer can't make us allocate for messages it never sends.
                let mut buf = partial.unwrap_or_default();
                self.buffered -= buf.len();
                buf.extend_from_slice(&payload);
                if buf.len() < st.length as usize {
                    if self.buffered + buf.len() > self.limits.max_buffered_bytes {
                        return Err(ChunkError::TooMuchBuffered {
                            max: self.limits.max_buffered_bytes,
                        });
                    }
                    self.buffered += buf.len();
                    st.partial = Some(buf);
                    return Ok(None);
                }
                match buf.capacity() - buf.len() > buf.len() / 8 {
                    true => Bytes::copy_from_slice(&buf),
                    false => buf.freeze(),
                }
            }
        };
        Ok(Some(RawMessage {
            timestamp: st.timestamp,
            type_id: MessageType(st.type_id),
            stream_id: st.stream_id,
            payload: complete,
        }))
    }

    fn apply_control(&mut self, msg: &RawMessage) -> Result<(), ChunkError> {
        match msg.type_id {
            MessageType::SET_CHUNK_SIZE => {
                let size = read_u32(&msg.payload, "Set Chunk Size")?;
                self.chunk_size = check_chunk_size(size, self.limits.max_chunk_size)?;
            }
            MessageType::ABORT => {
                let csid = read_u32(&msg.payload, "Abort")?;
                // Abort for a stream with nothing in flight is harmless; ignore it.
                if let Some(old) = self.streams.get_mut(&csid).and_then(|st| st.partial.take()) {
                    self.buffered -= old.len();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn read_u32(payload: &[u8], kind: &'static str) -> Result<u32, ChunkError> {
    match payload.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(ChunkError::ControlTooShort {
            kind,
            len: payload.len(),
            need: 4,
        }),
    }
}

fn check_chunk_size(size: u32, max: u32) -> Result<u32, ChunkError> {
    if size == 0 {
        Err(ChunkError::ChunkSizeZero)
    } else if size > MAX_CHUNK_SIZE {
        Err(ChunkError::ChunkSizeTopBitSet(size))
    } else if size > max {
        Err(ChunkError::ChunkSizeTooLarge { size, max })
    } else {
        Ok(size)
    }
}

/// What the encoder remembers per chunk stream to pick compact headers.
#[derive(Debug, Clone, Copy)]
struct OutStream {
    timestamp: u32,
    /// The timestamp field written last, and whether it was a delta (type 1/2).
    ts_field: u32,
    ts_is_delta: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Splits messages into chunks.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    /// By chunk stream id. A handful at most (control, command, audio, video, data), so a
    /// linear scan beats hashing on this per-message path.
    streams: Vec<(u32, OutStream)>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// Starts at the default chunk size of 128.
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
        }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Writes a Set Chunk Size message (csid 2) and switches to `size` for everything written
    /// after it. `size` is clamped to 1..=0x7FFFFFFF, the range the spec allows.
    pub fn set_chunk_size(&mut self, size: u32, out: &mut OutQueue) {
        let size = size.clamp(1, MAX_CHUNK_SIZE);
        let msg = RawMessage {
            timestamp: 0,
            type_id: MessageType::SET_CHUNK_SIZE,
            stream_id: 0,
            payload: bytes::Bytes::copy_from_slice(&size.to_be_bytes()),
        };
        self.write(crate::message::csid::CONTROL, &msg, out);
        self.chunk_size = size;
    }

    /// Chunks one message onto chunk stream `csid` (2..=65599). Headers are copied into `out`;
    /// payload pieces are shared slices of `msg.payload` (zero copy).
    ///
    /// Payloads longer than the 24-bit length field (16 MiB - 1) cannot be represented and are
    /// dropped; nothing the decoder accepts is that large.
    pub fn write(&mut self, csid: u32, msg: &RawMessage, out: &mut OutQueue) {
        self.write_with(csid, msg, None, out)
    }

    /// Like [`ChunkEncoder::write`], but the body after the first chunk header comes from
    /// `body`, chunked once and shared by every connection that sends this message: each
    /// connection writes only its own first header. Falls back to chunking here when `body`
    /// was made for another chunk stream or chunk size, or when the header needs an extended
    /// timestamp (which continuation headers would have to repeat).
    pub fn write_prechunked(
        &mut self,
        csid: u32,
        msg: &RawMessage,
        body: &PreChunked,
        out: &mut OutQueue,
    ) {
        self.write_with(csid, msg, Some(body), out)
    }

    fn write_with(
        &mut self,
        csid: u32,
        msg: &RawMessage,
        body: Option<&PreChunked>,
        out: &mut OutQueue,
    ) {
        debug_assert!(
            (MIN_CSID..=MAX_CSID).contains(&csid),
            "csid {csid} out of range"
        );
        debug_assert!(
            msg.payload.len() <= MAX_LENGTH_FIELD,
            "message too long for RTMP"
        );
        if msg.payload.len() > MAX_LENGTH_FIELD {
            return;
        }
        let csid = csid.clamp(MIN_CSID, MAX_CSID);
        let length = msg.payload.len() as u32;
        let type_id = msg.type_id.0;

        let prev = self
            .streams
            .iter()
            .find(|(id, _)| *id == csid)
            .map(|(_, p)| p);
        let (fmt, ts_field) = match prev {
            Some(p) if p.stream_id == msg.stream_id && msg.timestamp >= p.timestamp => {
                let delta = msg.timestamp - p.timestamp;
                if p.length != length || p.type_id != type_id {
                    (1, delta)
                } else if p.ts_is_delta && delta == p.ts_field && delta < EXTENDED_TS {
                    // Only after a type 1/2 header: what a type 3 inherits after a type 0
                    // (absolute or delta) is read differently by different implementations.
                    (3, delta)
                } else {
                    (2, delta)
                }
            }
            _ => (0u8, msg.timestamp),
        };
        let extended = ts_field >= EXTENDED_TS;

        let mut hdr = [0u8; 18];
        let mut n = basic_header(&mut hdr, fmt, csid);
        if fmt <= 2 {
            let field = ts_field.min(EXTENDED_TS).to_be_bytes();
            hdr[n..n + 3].copy_from_slice(&field[1..]);
            n += 3;
        }
        if fmt <= 1 {
            hdr[n..n + 3].copy_from_slice(&length.to_be_bytes()[1..]);
            hdr[n + 3] = type_id;
            n += 4;
        }
        if fmt == 0 {
            hdr[n..n + 4].copy_from_slice(&msg.stream_id.to_le_bytes());
            n += 4;
        }
        if extended {
            hdr[n..n + 4].copy_from_slice(&ts_field.to_be_bytes());
            n += 4;
        }
        out.put_slice(&hdr[..n]);

        // Continuation chunks: type 3 basic header, plus the extended timestamp again if the
        // message header had one (spec 5.3.1.3; ffmpeg and FMS expect it).
        let mut cont = [0u8; 7];
        let mut cn = basic_header(&mut cont, 3, csid);
        if extended {
            cont[cn..cn + 4].copy_from_slice(&ts_field.to_be_bytes());
            cn += 4;
        }

        match body {
            Some(b)
                if !extended
                    && b.csid == csid
                    && b.chunk_size == self.chunk_size
                    && b.payload_len == msg.payload.len() =>
            {
                out.put_bytes(b.bytes.clone());
            }
            _ => {
                let chunk = self.chunk_size as usize;
                let mut offset = 0;
                loop {
                    let end = (offset + chunk).min(msg.payload.len());
                    out.put_bytes(msg.payload.slice(offset..end));
                    offset = end;
                    if offset >= msg.payload.len() {
                        break;
                    }
                    out.put_slice(&cont[..cn]);
                }
            }
        }

        // A type 3 new message inherits the previous delta, so it stays "a delta".
        let ts_is_delta = fmt != 0;
        let state = OutStream {
            timestamp: msg.timestamp,
            ts_field,
            ts_is_delta,
            length,
            type_id,
            stream_id: msg.stream_id,
        };
        match self.streams.iter_mut().find(|(id, _)| *id == csid) {
            Some((_, slot)) => *slot = state,
            None => self.streams.push((csid, state)),
        }
    }
}

/// A message body chunked once for one chunk stream and chunk size: the payload with the
/// type 3 continuation headers already interleaved (no extended timestamps). nginx-rtmp
/// shares chunks between subscribers the same way.
#[derive(Debug, Clone)]
pub struct PreChunked {
    csid: u32,
    chunk_size: u32,
    payload_len: usize,
    bytes: Bytes,
}

impl PreChunked {
    /// Chunks `payload` for `csid` at `chunk_size`. A payload that fits in one chunk is
    /// shared as is; a longer one is copied once, with its continuation headers.
    pub fn new(csid: u32, chunk_size: u32, payload: &Bytes) -> Self {
        let csid = csid.clamp(MIN_CSID, MAX_CSID);
        let chunk = chunk_size.clamp(1, MAX_CHUNK_SIZE) as usize;
        let bytes = if payload.len() <= chunk {
            payload.clone()
        } else {
            let mut cont = [0u8; 3];
            let cn = basic_header(&mut cont, 3, csid);
            let pieces = payload.len().div_ceil(chunk);
            let mut buf = BytesMut::with_capacity(payload.len() + (pieces - 1) * cn);
            for (i, piece) in payload.chunks(chunk).enumerate() {
                if i > 0 {
                    buf.extend_from_slice(&cont[..cn]);
                }
                buf.extend_from_slice(piece);
            }
            buf.freeze()
        };
        PreChunked {
            csid,
            chunk_size: chunk as u32,
            payload_len: payload.len(),
            bytes,
        }
    }

    /// Whether this body serves messages on `csid` at `chunk_size`.
    pub fn fits(&self, csid: u32, chunk_size: u32) -> bool {
        self.csid == csid && self.chunk_size == chunk_size
    }
}

/// Writes the 1-3 byte basic header; returns its length.
fn basic_header(buf: &mut [u8], fmt: u8, csid: u32) -> usize {
    let fmt = fmt << 6;
    if csid < 64 {
        buf[0] = fmt | csid as u8;
        1
    } else if csid < 64 + 256 {
        buf[0] = fmt;
        buf[1] = (csid - 64) as u8;
        2
    } else {
        let v = csid - 64;
        buf[0] = fmt | 1;
        buf[1] = (v & 0xFF) as u8;
        buf[2] = (v >> 8) as u8;
        3
    }
}

#[cfg(test)]
mod prechunked_tests {
    use super::*;

    fn msg(ts: u32, len: usize) -> RawMessage {
        RawMessage {
            timestamp: ts,
            type_id: MessageType::VIDEO,
            stream_id: 1,
            payload: Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>()),
        }
    }

    /// Pre-chunked output is byte-identical to chunking per connection, for every header
    /// type, and falls back correctly for extended timestamps and other chunk sizes.
    #[test]
    fn identical_to_plain_chunking() {
        let cases = [
            (0, 10_000),
            (40, 10_000),
            (80, 3000),
            (120, 3000),
            (160, 4096),
            (0x0100_0000, 9000),
            (0x0100_0040, 9000),
            // Backwards: a type 0 header with an extended absolute timestamp.
            (0x0100_0000, 9000),
        ];
        for chunk_size in [128u32, 4096] {
            let (mut plain, mut shared) = (ChunkEncoder::new(), ChunkEncoder::new());
            let (mut a, mut b) = (OutQueue::new(), OutQueue::new());
            plain.set_chunk_size(chunk_size, &mut a);
            shared.set_chunk_size(chunk_size, &mut b);
            for (ts, len) in cases {
                let m = msg(ts, len);
                plain.write(6, &m, &mut a);
                // Made for 4096: at 128 this exercises the fallback.
                let body = PreChunked::new(6, 4096, &m.payload);
                shared.write_prechunked(6, &m, &body, &mut b);
            }
            assert_eq!(a.take_all(), b.take_all(), "chunk size {chunk_size}");
        }
    }

    #[test]
    fn decodes_back() {
        let mut enc = ChunkEncoder::new();
        let mut out = OutQueue::new();
        enc.set_chunk_size(4096, &mut out);
        let m = msg(33, 20_000);
        let body = PreChunked::new(6, 4096, &m.payload);
        assert!(body.fits(6, 4096) && !body.fits(4, 4096));
        enc.write_prechunked(6, &m, &body, &mut out);
        let mut input = BytesMut::from(&out.take_all()[..]);
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let _chunk_size_msg = dec.decode(&mut input).unwrap().unwrap();
        assert_eq!(dec.decode(&mut input).unwrap().unwrap(), m);
    }
}

#[cfg(test)]
mod buffered_limit_tests {
    use super::*;

    /// Many chunk streams each holding part of a large message hit the total cap.
    #[test]
    fn interleaved_partials_are_capped_in_total() {
        let mut d = ChunkDecoder::new(DecoderLimits {
            max_buffered_bytes: 10_000,
            ..DecoderLimits::default()
        });
        let mut input = BytesMut::new();
        // Chunk size 4096, then on csids 4..8 the first chunk of a 1 MB message each.
        input.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0]);
        let mut result = Ok(None);
        for csid in 4u8..8 {
            input.extend_from_slice(&[csid, 0, 0, 0, 0x10, 0, 0, 9, 1, 0, 0, 0]);
            input.extend_from_slice(&[0u8; 4096]);
            result = loop {
                match d.decode(&mut input) {
                    Ok(Some(_)) => continue,
                    other => break other,
                }
            };
            if result.is_err() {
                break;
            }
        }
        assert!(
            matches!(result, Err(ChunkError::TooMuchBuffered { max: 10_000 })),
            "{result:?}"
        );
    }

    /// A decoded message owns its bytes: holding it (as a GOP cache does) keeps neither the
    /// read buffer it came in nor reassembly slack alive.
    #[test]
    fn messages_do_not_pin_the_read_buffer() {
        let mut d = ChunkDecoder::new(DecoderLimits::default());
        let mut input = BytesMut::with_capacity(64 * 1024);
        // A 3-byte audio message in one chunk, then a 300-byte one in three 128-byte chunks.
        input.extend_from_slice(&[0x04, 0, 0, 0, 0, 0, 3, 8, 1, 0, 0, 0, 1, 2, 3]);
        input.extend_from_slice(&[0x04, 0, 0, 0, 0, 0x01, 0x2C, 8, 1, 0, 0, 0]);
        input.extend_from_slice(&[7; 128]);
        input.extend_from_slice(&[0xC4]);
        input.extend_from_slice(&[7; 128]);
        input.extend_from_slice(&[0xC4]);
        input.extend_from_slice(&[7; 44]);
        let base = input.as_ptr() as usize;
        let inside = |b: &Bytes| (base..base + 64 * 1024).contains(&(b.as_ptr() as usize));
        let one = d.decode(&mut input).unwrap().unwrap();
        assert_eq!(&one.payload[..], &[1, 2, 3]);
        assert!(
            !inside(&one.payload),
            "one-chunk payload is a view of the read buffer"
        );
        let three = d.decode(&mut input).unwrap().unwrap();
        assert_eq!(three.payload.len(), 300);
        assert!(!inside(&three.payload));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(ts: u32, ty: u8, sid: u32, payload: &[u8]) -> RawMessage {
        RawMessage {
            timestamp: ts,
            type_id: MessageType(ty),
            stream_id: sid,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn decoder() -> ChunkDecoder {
        ChunkDecoder::new(DecoderLimits::default())
    }

    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8]) -> Result<Vec<RawMessage>, ChunkError> {
        let mut input = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut input)? {
            out.push(m);
        }
        assert!(input.is_empty(), "{} bytes left over", input.len());
        Ok(out)
    }

    /// Deterministic PRNG for the round-trip tests (no rand crate).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn below(&mut self, n: u32) -> u32 {
            self.next() % n
        }
    }

    #[test]
    fn type0_then_1_2_3_headers() {
        let mut b = Vec::new();
        // fmt 0, csid 3: ts 1000, len 3, type 20, stream 1 (LE).
        b.extend_from_slice(&[0x03, 0x00, 0x03, 0xE8, 0, 0, 3, 20, 1, 0, 0, 0]);
        b.extend_from_slice(b"abc");
        // fmt 1: delta 10, len 2, type 8.
        b.extend_from_slice(&[0x43, 0, 0, 10, 0, 0, 2, 8]);
        b.extend_from_slice(b"de");
        // fmt 2: delta 20.
        b.extend_from_slice(&[0x83, 0, 0, 20]);
        b.extend_from_slice(b"fg");
        // fmt 3 new message: reuses delta 20.
        b.extend_from_slice(&[0xC3]);
        b.extend_from_slice(b"hi");
        let msgs = decode_all(&mut decoder(), &b).unwrap();
        assert_eq!(
            msgs,
            vec![
                msg(1000, 20, 1, b"abc"),
                msg(1010, 8, 1, b"de"),
                msg(1030, 8, 1, b"fg"),
                msg(1050, 8, 1, b"hi"),
            ]
        );
    }

    #[test]
    fn type3_after_type0_reuses_absolute_timestamp_as_delta() {
        // Spec 5.3.1.2.4 / ffmpeg: the delta inherited after a type 0 is its timestamp field.
        let mut b = vec![0x04, 0, 0, 40, 0, 0, 1, 9, 1, 0, 0, 0, b'x'];
        b.extend_from_slice(&[0xC4, b'y']);
        let msgs = decode_all(&mut decoder(), &b).unwrap();
        assert_eq!(msgs[1].timestamp, 80);
    }

    #[test]
    fn basic_header_forms() {
        for csid in [2u32, 63, 64, 319, 320, 1000, 65599] {
            let mut enc = ChunkEncoder::new();
            let mut out = OutQueue::new();
            enc.write(csid, &msg(5, 9, 1, &[1, 2, 3]), &mut out);
            let bytes = out.take_all();
            let expected_len = match csid {
                0..=63 => 1,
                64..=319 => 2,
                _ => 3,
            };
            assert_eq!(bytes.len(), expected_len + 11 + 3, "csid {csid}");
            let mut dec = decoder();
            let msgs = decode_all(&mut dec, &bytes).unwrap();
            assert_eq!(msgs, vec![msg(5, 9, 1, &[1, 2, 3])]);
            assert!(dec.streams.contains_key(&csid));
        }
        // Hand-made: 2-byte form csid 64+1, 3-byte form csid 64 + 0x0102 (little-endian).
        let mut b = vec![0x00, 1, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0, 0, b'a'];
        b.extend_from_slice(&[0x01, 0x02, 0x01, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0, 0, b'b']);
        let mut dec = decoder();
        decode_all(&mut dec, &b).unwrap();
        assert!(dec.streams.contains_key(&65));
        assert!(dec.streams.contains_key(&(64 + 0x0102)));
    }

    #[test]
    fn extended_timestamp_with_and_without_repeat_on_continuation() {
        let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let ts = 0x0123_4567u32;
        for repeat in [true, false] {
            let mut b = vec![0x06, 0xFF, 0xFF, 0xFF, 0, 0x01, 0x2C, 9, 1, 0, 0, 0];
            b.extend_from_slice(&ts.to_be_bytes());
            b.extend_from_slice(&payload[..128]);
            for part in [&payload[128..256], &payload[256..]] {
                b.push(0xC6);
                if repeat {
                    b.extend_from_slice(&ts.to_be_bytes());
                }
                b.extend_from_slice(part);
            }
            let msgs = decode_all(&mut decoder(), &b).unwrap();
            assert_eq!(msgs, vec![msg(ts, 9, 1, &payload)], "repeat={repeat}");
        }
    }

    #[test]
    fn encoder_repeats_extended_timestamp() {
        let mut enc = ChunkEncoder::new();
        let mut out = OutQueue::new();
        let payload = vec![0xAA; 200];
        enc.write(6, &msg(0x0100_0000, 9, 1, &payload), &mut out);
        let b = out.take_all();
        // 12-byte header + 4 ext + 128 payload, then C6 + ext + 72.
        assert_eq!(b.len(), 16 + 128 + 5 + 72);
        assert_eq!(&b[144..149], &[0xC6, 0x01, 0, 0, 0]);
        let msgs = decode_all(&mut decoder(), &b).unwrap();
        assert_eq!(msgs, vec![msg(0x0100_0000, 9, 1, &payload)]);
    }

    #[test]
    fn extended_delta_on_type1() {
        let mut enc = ChunkEncoder::new();
        let mut out = OutQueue::new();
        enc.write(6, &msg(1, 9, 1, b"a"), &mut out);
        enc.write(6, &msg(0x0200_0001, 8, 1, b"bb"), &mut out);
        enc.write(6, &msg(0x0200_0001, 8, 1, &[7; 300]), &mut out);
        let msgs = decode_all(&mut decoder(), &out.take_all()).unwrap();
        assert_eq!(msgs[1].timestamp, 0x0200_0001);
        assert_eq!(msgs[2], msg(0x0200_0001, 8, 1, &[7; 300]));
    }

    #[test]
    fn set_chunk_size_mid_stream() {
        let mut enc = ChunkEncoder::new();
        let mut out = OutQueue::new();
        let big = vec![3u8; 5000];
        enc.write(4, &msg(0, 8, 1, &big), &mut out);
        enc.set_chunk_size(4096, &mut out);
        enc.write(4, &msg(10, 8, 1, &big), &mut out);
        let mut dec = decoder();
        let msgs = decode_all(&mut dec, &out.take_all()).unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[1].type_id, MessageType::SET_CHUNK_SIZE);
        assert_eq!(&msgs[1].payload[..], &4096u32.to_be_bytes());
        assert_eq!(dec.chunk_size(), 4096);
        assert_eq!(msgs[2].payload.len(), 5000);
    }

    #[test]
    fn interleaved_chunk_streams() {
        let a: Vec<u8> = vec![0xA; 200];
        let v: Vec<u8> = vec![0xB; 150];
        let mut b = vec![0x04, 0, 0, 1, 0, 0, 200, 8, 1, 0, 0, 0];
        b.extend_from_slice(&a[..128]);
        b.extend_from_slice(&[0x06, 0, 0, 2, 0, 0, 150, 9, 1, 0, 0, 0]);
        b.extend_from_slice(&v[..128]);
        b.push(0xC4);
        b.extend_from_slice(&a[128..]);
        b.push(0xC6);
        b.extend_from_slice(&v[128..]);
        let msgs = decode_all(&mut decoder(), &b).unwrap();
        assert_eq!(msgs, vec![msg(1, 8, 1, &a), msg(2, 9, 1, &v)]);
    }

    #[test]
    fn abort_drops_partial_message() {
        let mut b = vec![0x04, 0, 0, 1, 0, 0, 200, 8, 1, 0, 0, 0];
        b.extend_from_slice(&[1; 128]);
        b.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 4]);
        // New message on csid 4 after the abort.
        b.extend_from_slice(&[0x44, 0, 0, 1, 0, 0, 1, 8, b'z']);
        let mut dec = decoder();
        let msgs = decode_all(&mut dec, &b).unwrap();
        assert_eq!(msgs[0].type_id, MessageType::ABORT);
        assert_eq!(msgs[1], msg(2, 8, 1, b"z"));
    }

    #[test]
    fn round_trip_random_messages() {
        let mut rng = Lcg(0x5EED);
        for round in 0..12 {
            let mut enc = ChunkEncoder::new();
            let mut out = OutQueue::new();
            let mut sent = Vec::new();
            let mut clock = [0u32; 4];
            for i in 0..300 {
                if rng.below(40) == 0 {
                    let size = [1, 7, 128, 1000, 4096, 65536][rng.below(6) as usize];
                    enc.set_chunk_size(size, &mut out);
                    sent.push(msg(0, 1, 0, &size.to_be_bytes()));
                }
                let which = rng.below(4) as usize;
                let csid = [3, 4, 6, 400][which];
                // Mostly increasing, sometimes equal, rarely backwards or huge.
                clock[which] = match rng.below(20) {
                    0 => clock[which].wrapping_sub(5),
                    1 => clock[which].wrapping_add(0x0100_0000),
                    2..=5 => clock[which],
                    _ => clock[which].wrapping_add(rng.below(50)),
                };
                let len = match rng.below(10) {
                    0 => 0,
                    1..=3 => 4,
                    _ => rng.below(if round % 2 == 0 { 3000 } else { 20_000 }) as usize,
                };
                let payload: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                let ty = if rng.below(3) == 0 { 8 } else { 9 };
                let sid = if rng.below(30) == 0 { 2 } else { 1 };
                let m = msg(clock[which], ty, sid, &payload);
                enc.write(csid, &m, &mut out);
                sent.push(m);
            }
            let bytes = out.take_all();
            let mut dec = decoder();
            let got = decode_all(&mut dec, &bytes).unwrap();
            assert_eq!(got.len(), sent.len(), "round {round}");
            for (g, s) in got.iter().zip(&sent) {
                assert_eq!(g, s, "round {round}");
            }
            assert_eq!(dec.bytes_received(), bytes.len() as u64);
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut enc = ChunkEncoder::new();
        let mut out = OutQueue::new();
        let mut sent = Vec::new();
        for i in 0..40u32 {
            let m = msg(
                i * 33,
                8 + (i % 2) as u8,
                1,
                &vec![i as u8; (i * 37 % 400) as usize],
            );
            enc.write(4 + (i % 2) * 2, &m, &mut out);
            sent.push(m);
            if i == 20 {
                enc.set_chunk_size(60, &mut out);
                sent.push(msg(0, 1, 0, &60u32.to_be_bytes()));
            }
        }
        enc.write(5, &msg(0x0FFF_FFFF, 18, 1, &[9; 150]), &mut out);
        sent.push(msg(0x0FFF_FFFF, 18, 1, &[9; 150]));
        let bytes = out.take_all();
        let mut dec = decoder();
        let mut input = BytesMut::new();
        let mut got = Vec::new();
        for &b in bytes.iter() {
            input.extend_from_slice(&[b]);
            while let Some(m) = dec.decode(&mut input).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, sent);
        assert!(input.is_empty());
    }

    #[test]
    fn partial_chunk_stays_in_input() {
        let mut b = vec![0x04, 0, 0, 1, 0, 0, 10, 8, 1, 0, 0, 0, 1, 2, 3];
        let mut dec = decoder();
        let mut input = BytesMut::from(&b[..]);
        assert_eq!(dec.decode(&mut input).unwrap(), None);
        assert_eq!(input.len(), b.len());
        assert_eq!(dec.bytes_received(), 0);
        b.extend_from_slice(&[4, 5, 6, 7, 8, 9, 10]);
        let mut input = BytesMut::from(&b[..]);
        assert!(dec.decode(&mut input).unwrap().is_some());
        assert_eq!(dec.bytes_received(), b.len() as u64);
    }

    fn set_chunk_size_bytes(size: u32) -> Vec<u8> {
        let mut b = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
        b.extend_from_slice(&size.to_be_bytes());
        b
    }

    #[test]
    fn rejects_bad_chunk_sizes() {
        let err = decode_all(&mut decoder(), &set_chunk_size_bytes(0)).unwrap_err();
        assert_eq!(err, ChunkError::ChunkSizeZero);
        let err = decode_all(&mut decoder(), &set_chunk_size_bytes(0x7FFF_FFFF)).unwrap_err();
        assert_eq!(
            err,
            ChunkError::ChunkSizeTooLarge {
                size: 0x7FFF_FFFF,
                max: 16 * 1024 * 1024
            }
        );
        let err = decode_all(&mut decoder(), &set_chunk_size_bytes(0x8000_0080)).unwrap_err();
        assert_eq!(err, ChunkError::ChunkSizeTopBitSet(0x8000_0080));
        let short = [0x02, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 1];
        assert!(matches!(
            decode_all(&mut decoder(), &short),
            Err(ChunkError::ControlTooShort { len: 2, .. })
        ));
        assert_eq!(
            decode_all(&mut decoder(), &set_chunk_size_bytes(16 * 1024 * 1024))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn rejects_oversized_message_before_buffering() {
        // 16 MiB - 1 declared (the 24-bit maximum), only the header sent.
        let b = [0x04, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
        let mut dec = decoder();
        let mut input = BytesMut::from(&b[..]);
        let err = dec.decode(&mut input).unwrap_err();
        assert_eq!(
            err,
            ChunkError::MessageTooLarge {
                csid: 4,
                length: 0xFF_FFFF,
                max: 8 * 1024 * 1024
            }
        );
        assert!(dec.streams.is_empty());
    }

    #[test]
    fn rejects_missing_previous_header() {
        for (fmt, first) in [(1u8, 0x44u8), (2, 0x84), (3, 0xC4)] {
            let mut input = BytesMut::from(&[first][..]);
            assert_eq!(
                decoder().decode(&mut input).unwrap_err(),
                ChunkError::NoPreviousHeader { csid: 4, fmt }
            );
        }
    }

    #[test]
    fn rejects_too_many_chunk_streams() {
        let mut dec = ChunkDecoder::new(DecoderLimits {
            max_chunk_streams: 3,
            ..DecoderLimits::default()
        });
        let mut b = Vec::new();
        for csid in 3..=6u8 {
            b.extend_from_slice(&[csid, 0, 0, 0, 0, 0, 1, 8, 1, 0, 0, 0, 0]);
        }
        let err = decode_all(&mut dec, &b).unwrap_err();
        assert_eq!(err, ChunkError::TooManyChunkStreams { csid: 6, max: 3 });
    }

    #[test]
    fn garbage_is_rejected_not_panicking() {
        let mut rng = Lcg(99);
        for _ in 0..2000 {
            let len = rng.below(64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let mut dec = decoder();
            let mut input = BytesMut::from(&bytes[..]);
            // Whatever happens, no panic and no unbounded loop.
            while let Ok(Some(_)) = dec.decode(&mut input) {}
        }
    }

    #[test]
    fn fixtures() {
        let b = include_bytes!("../tests/fixtures/chunk_type3_without_header.bin");
        assert!(matches!(
            decode_all(&mut decoder(), b),
            Err(ChunkError::NoPreviousHeader { fmt: 3, .. })
        ));
        let b = include_bytes!("../tests/fixtures/chunk_message_16mib.bin");
        assert!(matches!(
            decode_all(&mut decoder(), b),
            Err(ChunkError::MessageTooLarge { .. })
        ));
        let b = include_bytes!("../tests/fixtures/chunk_size_zero.bin");
        assert_eq!(
            decode_all(&mut decoder(), b).unwrap_err(),
            ChunkError::ChunkSizeZero
        );
    }

    #[test]
    fn encoder_header_choice() {
        let mut enc = ChunkEncoder::new();
        let mut out = OutQueue::new();
        let first = |o: &mut OutQueue| o.take_all()[0] >> 6;
        enc.write(4, &msg(0, 8, 1, b"aa"), &mut out);
        assert_eq!(first(&mut out), 0);
        enc.write(4, &msg(20, 8, 1, b"bbb"), &mut out);
        assert_eq!(first(&mut out), 1);
        enc.write(4, &msg(45, 8, 1, b"ccc"), &mut out);
        assert_eq!(first(&mut out), 2);
        enc.write(4, &msg(70, 8, 1, b"ddd"), &mut out);
        assert_eq!(first(&mut out), 3, "same length, type and delta");
        enc.write(4, &msg(50, 8, 1, b"ddd"), &mut out);
        assert_eq!(first(&mut out), 0, "backwards");
        enc.write(4, &msg(60, 8, 2, b"ddd"), &mut out);
        assert_eq!(first(&mut out), 0, "stream id change");
        enc.write(4, &msg(70, 8, 2, b"ddd"), &mut out);
        assert_eq!(first(&mut out), 2, "no type 3 straight after type 0");
    }

    #[test]
    fn encoder_is_zero_copy() {
        let mut enc = ChunkEncoder::new();
        let mut out = OutQueue::new();
        let payload = Bytes::from(vec![1u8; 1000]);
        let m = RawMessage {
            timestamp: 0,
            type_id: MessageType::VIDEO,
            stream_id: 1,
            payload: payload.clone(),
        };
        enc.write(6, &m, &mut out);
        let mut slices = [std::io::IoSlice::new(&[]); 64];
        let n = out.chunks_vectored(&mut slices);
        let base = payload.as_ptr() as usize;
        let shared = slices[..n]
            .iter()
            .filter(|s| (base..base + 1000).contains(&(s.as_ptr() as usize)))
            .count();
        assert_eq!(shared, 8, "1000 bytes at chunk size 128 = 8 shared slices");
    }
}
