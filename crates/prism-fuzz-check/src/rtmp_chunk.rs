//! The RTMP chunk decoder with default limits, fed arbitrary bytes in arbitrary slicing.
//!
//! Checks: no panic; a decode call never consumes more than it was given, and
//! `bytes_received` equals what was consumed; messages and the final error do not depend
//! on the slicing; no message exceeds the message-size limit; and the messages decoded
//! re-encode (ChunkEncoder) and decode again to the same messages.

use crate::{pieces, split_seed};
use bytes::BytesMut;
use prism_rtmp::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, DecoderLimits};
use prism_rtmp::message::{MessageType, RawMessage};
use prism_rtmp::OutQueue;

#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<RawMessage>,
    error: Option<ChunkError>,
    received: u64,
}

fn decode(parts: &[&[u8]]) -> Outcome {
    let limits = DecoderLimits::default();
    let max_message = limits.max_message_size as usize;
    let mut dec = ChunkDecoder::new(limits);
    let mut input = BytesMut::new();
    let mut fed = 0u64;
    let mut messages = Vec::new();
    let mut error = None;
    'feed: for part in parts {
        input.extend_from_slice(part);
        fed += part.len() as u64;
        loop {
            let before = input.len();
            let r = dec.decode(&mut input);
            assert!(input.len() <= before, "consumed more than the input");
            assert_eq!(dec.bytes_received(), fed - input.len() as u64);
            match r {
                Ok(Some(m)) => {
                    assert!(m.payload.len() <= max_message);
                    messages.push(m);
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    Outcome {
        messages,
        error,
        received: dec.bytes_received(),
    }
}

/// Re-encodes what was decoded (protocol control excepted: it changes how the
/// decoder parses) and decodes it again.
fn round_trip(messages: &[RawMessage], chunk_size: u32) {
    let sent: Vec<&RawMessage> = messages
        .iter()
        .filter(|m| m.type_id != MessageType::SET_CHUNK_SIZE && m.type_id != MessageType::ABORT)
        .collect();
    let mut enc = ChunkEncoder::new();
    let mut out = OutQueue::new();
    enc.set_chunk_size(chunk_size, &mut out);
    for m in &sent {
        let csid = 3 + u32::from(m.type_id.0 % 8);
        enc.write(csid, m, &mut out);
    }
    let bytes = out.take_all();
    let again = decode(&[&bytes]);
    assert_eq!(again.error, None);
    assert_eq!(again.messages.len(), sent.len() + 1);
    for (a, b) in again.messages[1..].iter().zip(&sent) {
        assert_eq!(a, *b);
    }
}

pub fn run(data: &[u8]) {
    let (stream, seed) = split_seed(data);
    let whole = decode(&[stream]);
    let sliced = decode(&pieces(stream, seed));
    assert_eq!(whole, sliced, "slicing changed the result");
    round_trip(&whole.messages, [128, 1, 4096, 60][usize::from(seed % 4)]);
}
