//! The RTMP handshake, server and client side, fed arbitrary bytes in arbitrary slicing.
//!
//! Checks: no panic; the result does not depend on how the bytes were sliced; a finished
//! handshake consumed exactly C0+C1+C2 (S0+S1+S2) and leaves the rest for the chunk layer;
//! the replies have the sizes the protocol fixes.

use crate::{pieces, split_seed};
use bytes::BytesMut;
use prism_rtmp::handshake::{ClientHandshake, HandshakeError, ServerHandshake, HANDSHAKE_SIZE};
use prism_rtmp::OutQueue;

const FULL: usize = 1 + 2 * HANDSHAKE_SIZE;

#[derive(Debug, PartialEq)]
struct Outcome {
    result: Result<bool, HandshakeError>,
    sent: Vec<u8>,
    left: Vec<u8>,
}

/// Feeds `parts` one by one; stops at the first error. Bytes after completion are
/// still offered and must stay untouched.
fn drive(
    parts: &[&[u8]],
    mut step: impl FnMut(&mut BytesMut, &mut OutQueue) -> Result<bool, HandshakeError>,
    out: &mut OutQueue,
) -> Outcome {
    let mut input = BytesMut::new();
    let mut fed = 0usize;
    let mut result = Ok(false);
    for part in parts {
        input.extend_from_slice(part);
        fed += part.len();
        let before = input.len();
        result = step(&mut input, out);
        assert!(input.len() <= before);
        match result {
            Err(_) => break,
            Ok(true) => assert_eq!(fed - input.len(), FULL, "done after exactly 3073 bytes"),
            Ok(false) => assert!(fed - input.len() < FULL),
        }
    }
    let sent = out.take_all().to_vec();
    // After an error the connection is closed: what was still unread does not matter.
    let left = if result.is_ok() {
        input.to_vec()
    } else {
        Vec::new()
    };
    Outcome { result, sent, left }
}

fn server(parts: &[&[u8]]) -> Outcome {
    let mut hs = ServerHandshake::new([7; 32], 1234);
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
    let mut hs = ClientHandshake::new([9; 32], 99, &mut out);
    assert_eq!(out.take_all().len(), 1 + HANDSHAKE_SIZE, "C0+C1");
    let o = drive(parts, |i, o| hs.handle_input(i, o), &mut out);
    // C2 once S1 is in.
    assert!(o.sent.is_empty() || o.sent.len() == HANDSHAKE_SIZE);
    o
}

pub fn run(data: &[u8]) {
    let (stream, seed) = split_seed(data);
    let sliced = pieces(stream, seed);
    assert_eq!(server(&[stream]), server(&sliced));
    assert_eq!(client(&[stream]), client(&sliced));
}
