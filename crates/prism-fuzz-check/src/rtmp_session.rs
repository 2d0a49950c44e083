//! An RTMP server session fed arbitrary client bytes after a valid handshake.
//!
//! The target makes C0+C1 with Prism's own client handshake (digest variant, as ffmpeg
//! sends), lets the server answer, and makes C2 from that, so the fuzzer starts at the
//! chunk and command layer. Its input is the client's bytes after C2, sliced by the last
//! byte (see crate::pieces). Publish and play requests are accepted when they appear
//! and media is echoed to playing streams, so both directions of the session run.
//!
//! Checks: no panic, no unbounded output for bounded input.

use std::sync::OnceLock;
use std::time::Instant;

use crate::{pieces, split_seed};
use bytes::BytesMut;
use prism_rtmp::handshake::{ClientHandshake, ServerHandshake};
use prism_rtmp::session::{ServerEvent, ServerSession, SessionConfig};
use prism_rtmp::OutQueue;

const SERVER_RANDOM: [u8; 32] = [5; 32];

/// C0+C1+C2 of a complete digest handshake against a server seeded with SERVER_RANDOM.
fn handshake_prefix() -> &'static [u8] {
    static PREFIX: OnceLock<Vec<u8>> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut c_out = OutQueue::new();
        let mut client = ClientHandshake::new([3; 32], 0, &mut c_out);
        let c0c1 = c_out.take_all().to_vec();
        let mut server = ServerHandshake::new(SERVER_RANDOM, 0);
        let mut s_out = OutQueue::new();
        let mut input = BytesMut::from(&c0c1[..]);
        server.handle_input(&mut input, &mut s_out).unwrap();
        let mut s0s1s2 = BytesMut::from(&s_out.take_all()[..]);
        assert!(client.handle_input(&mut s0s1s2, &mut c_out).unwrap());
        let mut prefix = c0c1;
        prefix.extend_from_slice(&c_out.take_all());
        prefix
    })
}

pub fn run(data: &[u8]) {
    let (stream, seed) = split_seed(data);
    // One instant throughout: no timer is due, so only the input decides.
    let now = Instant::now();
    let mut session = ServerSession::new(SessionConfig::default(), SERVER_RANDOM, 0, now);
    let mut input = BytesMut::from(handshake_prefix());
    session.handle_input(&mut input, now).unwrap();
    assert!(input.is_empty());
    session.out().take_all();

    let mut playing: Vec<u32> = Vec::new();
    let mut sent_out = 0usize;
    let mut echoed = 0usize;
    for part in pieces(stream, seed) {
        input.extend_from_slice(part);
        let result = session.handle_input(&mut input, now);
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::PublishRequested { stream_id, .. } => {
                    session.accept_publish(stream_id)
                }
                ServerEvent::PlayRequested { stream_id, .. } => {
                    session.accept_play(stream_id);
                    playing.push(stream_id);
                }
                ServerEvent::Media {
                    kind,
                    timestamp,
                    payload,
                    ..
                } => {
                    let before = session.out().len();
                    for &id in &playing {
                        session.send_media(id, kind, timestamp, &payload);
                    }
                    echoed += session.out().len() - before;
                }
                ServerEvent::StreamClosed { stream_id } => {
                    if playing.contains(&stream_id) {
                        session.end_play(stream_id);
                        playing.retain(|&id| id != stream_id);
                    }
                }
                ServerEvent::Connected { .. } => {}
            }
        }
        let out = session.out().take_all();
        sent_out += out.len();
        if result.is_err() {
            break;
        }
    }
    // What the session says on its own is proportional to what it was sent: every
    // command or ping of a few bytes gets at most a few hundred bytes back.
    let said = sent_out - echoed;
    assert!(
        said <= 4096 + 64 * stream.len(),
        "{said} bytes out for {} in",
        stream.len()
    );
}
