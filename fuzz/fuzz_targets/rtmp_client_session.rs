//! Prism's RTMP push client (what talks to a destination server) fed arbitrary server
//! bytes after a valid simple handshake: a hostile or broken destination must only ever
//! fail its own connection.
//!
//! The target prepends S0+S1+S2 (simple handshake), so its input is the server's chunk
//! stream, sliced by the last byte. Media is sent whenever the client reports it is
//! publishing.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use prism_fuzz::{pieces, split_seed};
use prism_rtmp::handshake::HANDSHAKE_SIZE;
use prism_rtmp::session::{ClientConfig, ClientEvent, ClientSession, MediaKind, SessionConfig};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let (stream, seed) = split_seed(data);
    let config = ClientConfig {
        app: "live".into(),
        tc_url: "rtmp://example.com/live".into(),
        key: "cam1".into(),
        session: SessionConfig::default(),
    };
    // One instant throughout: no timer is due, so only the input decides.
    let now = Instant::now();
    let mut client = ClientSession::new(config, [1; 32], 0, now);
    client.out().take_all();
    // S0, S1 with a zero version field (simple handshake), S2.
    let mut input = BytesMut::new();
    input.extend_from_slice(&[3]);
    input.extend_from_slice(&[0; 2 * HANDSHAKE_SIZE]);
    client.handle_input(&mut input, now).unwrap();
    assert!(input.is_empty());
    client.out().take_all();

    let media = Bytes::from_static(&[0x17, 0x01, 0, 0, 0, 1, 2, 3]);
    for part in pieces(stream, seed) {
        input.extend_from_slice(part);
        let result = client.handle_input(&mut input, now);
        while let Some(ClientEvent::Publishing) = client.poll_event() {
            client.send_media(MediaKind::Video, 0, &media);
        }
        client.out().take_all();
        if result.is_err() {
            break;
        }
    }
    client.unpublish();
});
