//! The RTMPE handshake (prism-rtmp's `rtmpe`), server and client side, fed arbitrary bytes
//! in arbitrary slicing.
//!
//! Checks: no panic; the result, the replies and the keys do not depend on how the bytes
//! were sliced; a finished handshake consumed exactly C0+C1+C2 (S0+S1+S2) and leaves the
//! rest (already encrypted) for the chunk layer; the replies have the sizes the protocol
//! fixes.
use crate::{pieces, split_seed};
use bytes::BytesMut;
use prism_rtmp::handshake::{HandshakeError, HANDSHAKE_SIZE};
use prism_rtmp::rtmpe::{RtmpeCiphers, RtmpeClient, RtmpeServer};
use prism_rtmp::OutQueue;

const FULL: usize = 1 + 2 * HANDSHAKE_SIZE;

/// 16 bytes of each direction's keystream.
type Keystreams = (Vec<u8>, Vec<u8>);

#[derive(Debug, PartialEq)]
struct Outcome {
    /// Ok(Some(keystreams)) once done: 16 bytes of each direction's keystream.
    result: Result<Option<Keystreams>, HandshakeError>,
    sent: Vec<u8>,
    left: Vec<u8>,
}

fn keystreams(mut c: RtmpeCiphers) -> Keystreams {
    let mut a = vec![0u8; 16];
    let mut b = vec![0u8; 16];
    c.encrypt.apply(&mut a);
    c.decrypt.apply(&mut b);
    (a, b)
}

/// Feeds `parts` one by one; stops at the first error or once done.
fn drive(
    parts: &[&[u8]],
    mut step: impl FnMut(&mut BytesMut, &mut OutQueue) -> Result<Option<RtmpeCiphers>, HandshakeError>,
    out: &mut OutQueue,
) -> Outcome {
    let mut input = BytesMut::new();
    let mut fed = 0usize;
    let mut result = Ok(None);
    for (i, part) in parts.iter().enumerate() {
        input.extend_from_slice(part);
        fed += part.len();
        let before = input.len();
        match step(&mut input, out) {
            Err(e) => {
                result = Err(e);
                break;
            }
            Ok(Some(c)) => {
                assert_eq!(fed - input.len(), FULL, "done after exactly 3073 bytes");
                result = Ok(Some(keystreams(c)));
                // The rest belongs to the chunk layer.
                for rest in &parts[i + 1..] {
                    input.extend_from_slice(rest);
                }
                break;
            }
            Ok(None) => assert!(fed - input.len() < FULL && input.len() <= before),
        }
    }
    let sent = out.take_all().to_vec();
    let left = if result.is_ok() {
        input.to_vec()
    } else {
        Vec::new()
    };
    Outcome { result, sent, left }
}

fn server(parts: &[&[u8]]) -> Outcome {
    let mut hs = RtmpeServer::new([7; 32], 1234);
    let mut out = OutQueue::new();
    let o = drive(parts, |i, o| hs.handle_input(i, o), &mut out);
    // S0+S1+S2 go out together once C1 is in, or nothing does.
    assert!(
        o.sent.is_empty() || o.sent.len() == FULL,
        "{}",
        o.sent.len()
    );
    o
}

fn client(parts: &[&[u8]]) -> Outcome {
    let mut out = OutQueue::new();
    let mut hs = RtmpeClient::new([9; 32], 99, &mut out);
    assert_eq!(out.take_all().len(), 1 + HANDSHAKE_SIZE, "C0+C1");
    let o = drive(parts, |i, o| hs.handle_input(i, o), &mut out);
    // C2 once S1 is in.
    assert!(o.sent.is_empty() || o.sent.len() == HANDSHAKE_SIZE);
    o
}

/// Checks one input; panics on a violation.
pub fn run(data: &[u8]) {
    let (stream, seed) = split_seed(data);
    let sliced = pieces(stream, seed);
    assert_eq!(server(&[stream]), server(&sliced));
    assert_eq!(client(&[stream]), client(&sliced));
}
