//! Prism's RTMP client session fed arbitrary server bytes after a valid simple handshake,
//! in both of its modes: the push client (publish, what talks to a destination server)
//! and the player (`ClientSession::play`, what tests and the load tool watch streams
//! with). A hostile or broken server must only ever fail its own connection.
//!
//! The target prepends S0+S1+S2 (simple handshake), so its input is the server's chunk
//! stream, sliced by the last byte; every input runs once per mode, so the captured
//! replies to a publisher and to a player seed both. Publishing: media is sent whenever
//! the client reports it is publishing, `unpublish` at the end. Playing: the events keep
//! their documented order (`Playing`, then `Media` until `PlayEnded`, again only after a
//! new `Playing`) and agree with `is_playing`.

use crate::{pieces, split_seed};
use bytes::{Bytes, BytesMut};
use prism_rtmp::handshake::HANDSHAKE_SIZE;
use prism_rtmp::session::{
    ClientConfig, ClientEvent, ClientMode, ClientSession, MediaKind, SessionConfig,
};
use std::time::Instant;

pub fn run(data: &[u8]) {
    let (stream, seed) = split_seed(data);
    for mode in [ClientMode::Publish, ClientMode::Play] {
        drive(mode, stream, seed);
    }
}

fn drive(mode: ClientMode, stream: &[u8], seed: u8) {
    let config = ClientConfig {
        app: "live".into(),
        tc_url: "rtmp://example.com/live".into(),
        key: "cam1".into(),
        session: SessionConfig::default(),
    };
    // One instant throughout: no timer is due, so only the input decides.
    let now = Instant::now();
    let mut client = match mode {
        ClientMode::Publish => ClientSession::new(config, [1; 32], 0, now),
        ClientMode::Play => ClientSession::play(config, [1; 32], 0, now),
    };
    assert_eq!(client.mode(), mode);
    client.out().take_all();
    // S0, S1 with a zero version field (simple handshake), S2.
    let mut input = BytesMut::new();
    input.extend_from_slice(&[3]);
    input.extend_from_slice(&[0; 2 * HANDSHAKE_SIZE]);
    client.handle_input(&mut input, now).unwrap();
    assert!(input.is_empty());
    client.out().take_all();

    let media = Bytes::from_static(&[0x17, 0x01, 0, 0, 0, 1, 2, 3]);
    // Play mode: between Playing and PlayEnded.
    let mut playing = false;
    for part in pieces(stream, seed) {
        input.extend_from_slice(part);
        let result = client.handle_input(&mut input, now);
        while let Some(ev) = client.poll_event() {
            match (mode, ev) {
                (ClientMode::Publish, ClientEvent::Publishing) => {
                    client.send_media(MediaKind::Video, 0, &media);
                }
                (ClientMode::Play, ClientEvent::Playing) => {
                    assert!(!playing, "Playing twice without PlayEnded");
                    playing = true;
                }
                (ClientMode::Play, ClientEvent::Media { .. }) => {
                    assert!(playing, "Media outside Playing .. PlayEnded");
                }
                (ClientMode::Play, ClientEvent::PlayEnded) => {
                    assert!(playing, "PlayEnded without Playing");
                    playing = false;
                }
                (mode, ev) => panic!("{ev:?} from a client in {mode:?} mode"),
            }
        }
        client.out().take_all();
        if result.is_err() {
            break;
        }
        assert_eq!(client.is_playing(), playing);
        assert!(!(client.is_playing() && client.is_publishing()));
    }
    if mode == ClientMode::Publish {
        client.unpublish();
        client.out().take_all();
    }
}
