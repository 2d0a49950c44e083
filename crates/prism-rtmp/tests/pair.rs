//! In-memory two-endpoint tests (no sockets), in the style of quinn's `Pair`: a
//! [`ServerSession`] and a [`ClientSession`] wired back to back, with `step()` moving
//! whatever each side queued into the other's input and `drive()` repeating until idle.
//!
//! Both directions are also "tapped": after the 3073 handshake bytes, an independent
//! [`ChunkDecoder`] decodes everything on the wire, so tests can check what was actually
//! sent (Set Chunk Size values, onStatus codes, exact wire sizes).
//!
//! The second half drives a `ServerSession` with hand-built bytes, the way ffmpeg publishes
//! and plays, and checks its error paths.

use bytes::{Bytes, BytesMut};
use prism_amf0::Value;
use prism_rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits};
use prism_rtmp::control::Control;
use prism_rtmp::handshake::{ClientHandshake, HANDSHAKE_SIZE};
use prism_rtmp::message::{MessageType, RawMessage};
use prism_rtmp::session::{
    ClientConfig, ClientEvent, ClientSession, MediaKind, ServerEvent, ServerSession, SessionConfig,
    SessionError,
};
use prism_rtmp::OutQueue;
use std::time::Instant;

/// C0+C1+C2 (client) or S0+S1+S2 (server): what each side sends before chunks.
const HANDSHAKE_BYTES: usize = 1 + 2 * HANDSHAKE_SIZE;

// ---------------------------------------------------------------------------------------
// Wire tap

/// Decodes one direction of the connection independently of the sessions.
struct Tap {
    skip: usize,
    buf: BytesMut,
    decoder: ChunkDecoder,
    msgs: Vec<RawMessage>,
    /// Bytes seen on the wire in this direction, handshake included.
    wire: usize,
}

impl Tap {
    fn new() -> Self {
        Tap {
            skip: HANDSHAKE_BYTES,
            buf: BytesMut::new(),
            decoder: ChunkDecoder::new(DecoderLimits::default()),
            msgs: Vec::new(),
            wire: 0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.wire += bytes.len();
        let skip = self.skip.min(bytes.len());
        self.skip -= skip;
        self.buf.extend_from_slice(&bytes[skip..]);
        while let Some(m) = self.decoder.decode(&mut self.buf).expect("tap decode") {
            self.msgs.push(m);
        }
    }

    fn set_chunk_sizes(&self) -> Vec<u32> {
        self.msgs
            .iter()
            .filter_map(|m| match Control::parse(m) {
                Ok(Some(Control::SetChunkSize(n))) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// (command name, decoded values) of every AMF0 command seen.
    fn commands(&self) -> Vec<(String, Vec<Value>)> {
        self.msgs.iter().filter_map(decode_command).collect()
    }

    /// onStatus codes seen, in order.
    fn status_codes(&self) -> Vec<String> {
        status_codes(&self.msgs)
    }

    /// Acknowledgement sequence numbers seen, in order.
    fn acks(&self) -> Vec<u32> {
        self.msgs
            .iter()
            .filter_map(|m| match Control::parse(m) {
                Ok(Some(Control::Acknowledgement(n))) => Some(n),
                _ => None,
            })
            .collect()
    }
}

fn decode_command(m: &RawMessage) -> Option<(String, Vec<Value>)> {
    if m.type_id != MessageType::COMMAND_AMF0 && m.type_id != MessageType::DATA_AMF0 {
        return None;
    }
    let values = prism_amf0::decode_all(&m.payload).expect("AMF0 from the session");
    let name = values.first()?.as_str()?.to_owned();
    Some((name, values))
}

fn status_codes(msgs: &[RawMessage]) -> Vec<String> {
    msgs.iter()
        .filter_map(decode_command)
        .filter(|(n, _)| n == "onStatus")
        .map(|(_, v)| {
            v.get(3)
                .and_then(|o| o.get("code"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Pair

#[derive(Debug)]
enum PairError {
    Server(SessionError),
    Client(SessionError),
}

struct Pair {
    server: ServerSession,
    client: ClientSession,
    /// Bytes taken from one side's out queue, not yet delivered to the other.
    to_server: BytesMut,
    to_client: BytesMut,
    /// The receiving sides' input buffers (what is left after handle_input).
    server_in: BytesMut,
    client_in: BytesMut,
    /// Most bytes delivered per direction per step (None = everything).
    fragment: Option<usize>,
    server_events: Vec<ServerEvent>,
    client_events: Vec<ClientEvent>,
    tap_to_server: Tap,
    tap_to_client: Tap,
    /// The virtual clock both sides are given; these tests never let a timer expire.
    now: Instant,
}

fn client_config(key: &str, chunk_size: u32) -> ClientConfig {
    ClientConfig {
        app: "live".into(),
        tc_url: "rtmp://127.0.0.1:1935/live".into(),
        key: key.into(),
        session: SessionConfig {
            chunk_size,
            ..SessionConfig::default()
        },
    }
}

fn server_session(chunk_size: u32, now: Instant) -> ServerSession {
    ServerSession::new(
        SessionConfig {
            chunk_size,
            ..SessionConfig::default()
        },
        [1; 32],
        1000,
        now,
    )
}

impl Pair {
    fn new(server_chunk: u32, client_chunk: u32, key: &str) -> Pair {
        Pair::with_config(server_chunk, client_config(key, client_chunk))
    }

    fn with_config(server_chunk: u32, client: ClientConfig) -> Pair {
        let now = Instant::now();
        let client = ClientSession::new(client, [2; 32], 2000, now);
        Pair::with_sessions(server_session(server_chunk, now), client, now)
    }

    /// A pair whose client plays `key` (ClientSession::play).
    fn player(server: SessionConfig, client: ClientConfig) -> Pair {
        let now = Instant::now();
        let server = ServerSession::new(server, [1; 32], 1000, now);
        let client = ClientSession::play(client, [2; 32], 2000, now);
        Pair::with_sessions(server, client, now)
    }

    fn with_sessions(server: ServerSession, client: ClientSession, now: Instant) -> Pair {
        Pair {
            server,
            client,
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
            server_in: BytesMut::new(),
            client_in: BytesMut::new(),
            fragment: None,
            server_events: Vec::new(),
            client_events: Vec::new(),
            tap_to_server: Tap::new(),
            tap_to_client: Tap::new(),
            now,
        }
    }

    /// Moves queued bytes both ways (at most `fragment` per direction) and lets each side
    /// handle them. Returns whether anything moved.
    fn step(&mut self) -> Result<bool, PairError> {
        let c_out = self.client.out().take_all();
        self.tap_to_server.feed(&c_out);
        self.to_server.extend_from_slice(&c_out);
        let s_out = self.server.out().take_all();
        self.tap_to_client.feed(&s_out);
        self.to_client.extend_from_slice(&s_out);

        let n = self.fragment.unwrap_or(usize::MAX);
        let to_s = self.to_server.split_to(n.min(self.to_server.len()));
        let to_c = self.to_client.split_to(n.min(self.to_client.len()));
        let moved = !to_s.is_empty() || !to_c.is_empty();

        if !to_s.is_empty() {
            self.server_in.extend_from_slice(&to_s);
            self.server
                .handle_input(&mut self.server_in, self.now)
                .map_err(PairError::Server)?;
            while let Some(ev) = self.server.poll_event() {
                self.server_events.push(ev);
            }
        }
        if !to_c.is_empty() {
            self.client_in.extend_from_slice(&to_c);
            self.client
                .handle_input(&mut self.client_in, self.now)
                .map_err(PairError::Client)?;
            while let Some(ev) = self.client.poll_event() {
                self.client_events.push(ev);
            }
        }
        Ok(moved)
    }

    /// Steps until nothing moves any more.
    fn drive(&mut self) -> Result<(), PairError> {
        for _ in 0..10_000_000 {
            if !self.step()? {
                return Ok(());
            }
        }
        panic!("pair never went idle");
    }

    #[track_caller]
    fn drive_ok(&mut self) {
        if let Err(e) = self.drive() {
            panic!("drive failed: {e:?}");
        }
    }

    fn take_server_events(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.server_events)
    }

    /// Handshake, connect, createStream, publish, accept: the client ends up publishing.
    #[track_caller]
    fn publish_live(&mut self) -> u32 {
        self.drive_ok();
        let events = self.take_server_events();
        let stream_id = match events.as_slice() {
            [ServerEvent::Connected { .. }, ServerEvent::PublishRequested { stream_id, .. }] => {
                *stream_id
            }
            other => panic!("unexpected server events {other:?}"),
        };
        self.server.accept_publish(stream_id);
        self.drive_ok();
        assert_eq!(self.client_events, vec![ClientEvent::Publishing]);
        assert!(self.client.is_publishing());
        stream_id
    }
}

// ---------------------------------------------------------------------------------------
// Client <-> server

#[test]
fn push_client_connects_and_publishes() {
    let mut p = Pair::new(4096, 4096, "cam1?token=abc&x=1");
    p.drive_ok();
    assert!(p.server.is_connected());
    assert_eq!(
        p.take_server_events(),
        vec![
            ServerEvent::Connected {
                app: "live".into(),
                tc_url: "rtmp://127.0.0.1:1935/live".into(),
            },
            ServerEvent::PublishRequested {
                stream_id: 1,
                app: "live".into(),
                key: "cam1".into(),
                query: "token=abc&x=1".into(),
            },
        ]
    );
    // Nothing happens for the client until the server decides.
    assert!(p.client_events.is_empty());
    assert!(!p.client.is_publishing());

    // Media sent before Publish.Start is not sent at all.
    let before = p.tap_to_server.wire;
    p.client
        .send_media(MediaKind::Video, 0, &Bytes::from_static(b"early"));
    p.drive_ok();
    assert_eq!(p.tap_to_server.wire, before);

    p.server.accept_publish(1);
    p.drive_ok();
    assert_eq!(p.client_events, vec![ClientEvent::Publishing]);
    assert!(p.client.is_publishing());
    assert_eq!(
        p.tap_to_client.status_codes(),
        vec!["NetStream.Publish.Start"]
    );

    // The command sequence the client sent, as a server sees it on the wire.
    let names: Vec<String> = p
        .tap_to_server
        .commands()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "connect",
            "releaseStream",
            "FCPublish",
            "createStream",
            "publish"
        ]
    );
}

/// Audio, video and metadata; hundreds of messages; timestamps crossing 0xFFFFFF and
/// jumping by more than 24 bits; 200 KB keyframes (many chunks, some with extended
/// timestamps repeated on every continuation chunk).
fn media_script() -> Vec<(MediaKind, u32, Bytes)> {
    let mut meta = BytesMut::new();
    prism_amf0::encode_all(
        &[
            Value::String("onMetaData".into()),
            Value::EcmaArray(vec![
                ("width".into(), Value::Number(320.0)),
                ("height".into(), Value::Number(240.0)),
                ("videocodecid".into(), Value::Number(7.0)),
            ]),
        ],
        &mut meta,
    );
    let meta = meta.freeze();
    let keyframe = |seed: u8| -> Bytes {
        let mut v: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(31) as u8) ^ seed)
            .collect();
        v[0] = 0x17;
        v[1] = 1;
        Bytes::from(v)
    };

    let mut script = vec![(MediaKind::Data, 0, meta.clone())];
    script.push((MediaKind::Video, 0, keyframe(1)));
    let base = 0x00FF_F000u32; // 4096 ms below the 24-bit limit
    for i in 0..400u32 {
        let t = base + i * 20;
        if i % 2 == 0 {
            let len = 50 + (i as usize * 7) % 400;
            let mut a = vec![0xAF, 1];
            a.extend((0..len).map(|j| (i as usize + j) as u8));
            script.push((MediaKind::Audio, t, Bytes::from(a)));
        } else {
            let len = 10 + (i as usize * 131) % 9000;
            let mut v = vec![0x27, 1, 0, 0, 0];
            v.extend((0..len).map(|j| (i as usize * 3 + j) as u8));
            script.push((MediaKind::Video, t, Bytes::from(v)));
        }
        if i == 300 {
            // Past 0xFFFFFF: an extended-timestamp keyframe over many chunks.
            script.push((MediaKind::Video, t, keyframe(2)));
            script.push((MediaKind::Data, t, meta.clone()));
        }
    }
    // A jump far beyond 24 bits (extended delta on a type 1/2 header), then more.
    let far = 0x7FFF_0000u32;
    script.push((MediaKind::Video, far, keyframe(3)));
    script.push((
        MediaKind::Audio,
        far,
        Bytes::from_static(&[0xAF, 1, 9, 9, 9]),
    ));
    script.push((
        MediaKind::Audio,
        far + 23,
        Bytes::from_static(&[0xAF, 1, 8, 8]),
    ));
    script.push((
        MediaKind::Video,
        far + 40,
        Bytes::from_static(&[0x27, 1, 0, 0, 0, 5]),
    ));
    script
}

fn check_media_round_trip(server_chunk: u32, client_chunk: u32, fragment: Option<usize>) {
    let mut p = Pair::new(server_chunk, client_chunk, "cam1");
    p.fragment = fragment;
    let sid = p.publish_live();

    let script = media_script();
    for (i, (kind, ts, payload)) in script.iter().enumerate() {
        p.client.send_media(*kind, *ts, payload);
        // Deliver in bursts so chunks of different messages and steps interleave.
        if i % 17 == 0 {
            p.drive_ok();
        }
    }
    p.drive_ok();

    let got = p
        .take_server_events()
        .into_iter()
        .enumerate()
        .map(|(i, ev)| match ev {
            ServerEvent::Media {
                stream_id,
                kind,
                timestamp,
                payload,
            } => {
                assert_eq!(stream_id, sid, "message {i}");
                (kind, timestamp, payload)
            }
            other => panic!("message {i}: expected Media, got {other:?}"),
        });
    check_media(got.collect(), &script);
    assert!(p.server_in.is_empty() && p.client_in.is_empty());
}

/// `got` is `script`, message by message.
fn check_media(got: Vec<(MediaKind, u32, Bytes)>, script: &[(MediaKind, u32, Bytes)]) {
    assert_eq!(got.len(), script.len(), "one Media event per message sent");
    for (i, ((k, timestamp, pl), (kind, ts, payload))) in got.iter().zip(script).enumerate() {
        assert_eq!(k, kind, "message {i}");
        assert_eq!(timestamp, ts, "message {i} timestamp");
        assert!(
            pl == payload,
            "message {i}: payload differs ({kind:?} at {ts})"
        );
    }
}

#[test]
fn media_round_trip_identical() {
    check_media_round_trip(4096, 4096, None);
}

#[test]
fn media_round_trip_in_small_fragments() {
    // 37 bytes per step: every header and handshake block arrives split.
    check_media_round_trip(4096, 128, Some(37));
}

#[test]
fn media_round_trip_default_chunk_size() {
    check_media_round_trip(128, 128, Some(1500));
}

/// Wire bytes of one message of `len` bytes written as a fresh type 0 header on csid < 64:
/// 12 header bytes (+4 extended), then a 1-byte type 3 header (+4 repeated extended) per
/// further chunk.
fn wire_size(len: usize, chunk: usize, extended: bool) -> usize {
    let ext = if extended { 4 } else { 0 };
    let chunks = len.div_ceil(chunk).max(1);
    12 + ext + len + (chunks - 1) * (1 + ext)
}

fn check_chunk_sizes(server_chunk: u32, client_chunk: u32) {
    let mut p = Pair::new(server_chunk, client_chunk, "cam1");
    p.drive_ok();
    assert_eq!(p.tap_to_server.set_chunk_sizes(), vec![client_chunk]);
    assert_eq!(p.tap_to_client.set_chunk_sizes(), vec![server_chunk]);
    assert_eq!(p.tap_to_server.decoder.chunk_size(), client_chunk);
    assert_eq!(p.tap_to_client.decoder.chunk_size(), server_chunk);

    // Server -> client: a big message at the server's chunk size, then Publish.Start. The
    // client ignores the media, but only finds the onStatus if its decoder followed the
    // server's chunk size.
    let big = Bytes::from(vec![0x5A; 200_000]);
    let before = p.tap_to_client.wire;
    p.server.send_media(1, MediaKind::Video, 0x0100_0000, &big);
    p.drive_ok();
    assert_eq!(
        p.tap_to_client.wire - before,
        wire_size(big.len(), server_chunk as usize, true)
    );
    p.take_server_events();
    p.server.accept_publish(1);
    p.drive_ok();
    assert_eq!(p.client_events, vec![ClientEvent::Publishing]);

    // Client -> server at the client's chunk size.
    let before = p.tap_to_server.wire;
    p.client.send_media(MediaKind::Video, 5, &big);
    p.drive_ok();
    assert_eq!(
        p.tap_to_server.wire - before,
        wire_size(big.len(), client_chunk as usize, false)
    );
    match p.take_server_events().as_slice() {
        [ServerEvent::Media {
            timestamp: 5,
            payload,
            ..
        }] => assert!(payload == &big),
        other => panic!("{other:?}"),
    }
}

#[test]
fn chunk_size_client_128_server_4096() {
    check_chunk_sizes(4096, 128);
}

#[test]
fn chunk_size_client_4096_server_128() {
    check_chunk_sizes(128, 4096);
}

#[test]
fn chunk_size_large_both_ways() {
    check_chunk_sizes(65536, 60_000);
}

#[test]
fn reject_publish_refuses_client() {
    let mut p = Pair::new(4096, 4096, "taken");
    p.drive_ok();
    assert!(matches!(
        p.take_server_events().as_slice(),
        [
            ServerEvent::Connected { .. },
            ServerEvent::PublishRequested { stream_id: 1, .. }
        ]
    ));
    p.server
        .reject_publish(1, "NetStream.Publish.BadName", "Stream already publishing");
    expect_refused(
        &mut p,
        "NetStream.Publish.BadName",
        "Stream already publishing",
    );
    assert!(!p.client.is_publishing());
    assert!(p.client_events.is_empty());
}

/// Driving `p` fails the client with a refusal of `code` and `description`.
#[track_caller]
fn expect_refused(p: &mut Pair, code: &str, description: &str) {
    match p.drive() {
        Err(PairError::Client(SessionError::Refused {
            code: c,
            description: d,
        })) => assert_eq!((c.as_str(), d.as_str()), (code, description)),
        other => panic!("expected the client to be refused, got {other:?}"),
    }
}

#[test]
fn empty_key_is_refused_by_the_server_itself() {
    let mut p = Pair::new(4096, 4096, "");
    match p.drive() {
        Err(PairError::Client(SessionError::Refused { code, .. })) => {
            assert_eq!(code, "NetStream.Publish.BadName")
        }
        other => panic!("{other:?}"),
    }
    // Connected, but no PublishRequested.
    assert!(matches!(
        p.take_server_events().as_slice(),
        [ServerEvent::Connected { .. }]
    ));
}

#[test]
fn unpublish_closes_the_stream() {
    let mut p = Pair::new(4096, 4096, "cam1");
    let sid = p.publish_live();
    p.client
        .send_media(MediaKind::Audio, 10, &Bytes::from_static(&[0xAF, 1, 2]));
    p.client.unpublish();
    assert!(!p.client.is_publishing());
    p.drive_ok();
    let events = p.take_server_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(
        events[0],
        ServerEvent::Media { timestamp: 10, .. }
    ));
    assert_eq!(events[1], ServerEvent::StreamClosed { stream_id: sid });
    assert_eq!(
        p.tap_to_client.status_codes(),
        vec!["NetStream.Publish.Start", "NetStream.Unpublish.Success"]
    );
    // After the unpublish, media is not sent and nothing else is emitted.
    p.client
        .send_media(MediaKind::Audio, 20, &Bytes::from_static(&[0xAF, 1, 2]));
    p.drive_ok();
    assert!(p.take_server_events().is_empty());
}

#[test]
fn corrupt_bytes_mid_stream_fail_the_server() {
    let mut p = Pair::new(4096, 4096, "cam1");
    p.publish_live();
    // A type 3 chunk on a chunk stream that never had a header.
    p.to_server.extend_from_slice(&[0xC9, 0, 0, 0]);
    match p.drive() {
        Err(PairError::Server(SessionError::Chunk(e))) => {
            assert!(e.to_string().contains("no previous type 0 header"), "{e}")
        }
        other => panic!("expected a chunk error on the server, got {other:?}"),
    }
}

#[test]
fn acknowledgements_follow_the_window() {
    // The client announces a 10 kB window: the server must acknowledge as bytes arrive.
    let mut cfg = client_config("cam1", 4096);
    cfg.session.window_ack_size = 10_000;
    let mut p = Pair::with_config(4096, cfg);
    p.publish_live();
    let payload = Bytes::from(vec![0x27; 3000]);
    for i in 0..50 {
        p.client.send_media(MediaKind::Video, i * 40, &payload);
        p.drive_ok();
    }
    let acks = p.tap_to_client.acks();
    // ~150 kB of chunk bytes / 10 kB window.
    assert!(acks.len() >= 10, "{acks:?}");
    assert!(acks.windows(2).all(|w| w[1] - w[0] >= 10_000), "{acks:?}");
    let received = p.tap_to_server.wire - HANDSHAKE_BYTES;
    assert!(*acks.last().unwrap() as usize <= received);
    assert_eq!(p.take_server_events().len(), 50);
}

// ---------------------------------------------------------------------------------------
// Client in play mode

impl Pair {
    /// Handshake, connect, createStream, play, accept: the client ends up playing.
    #[track_caller]
    fn play_live(&mut self, key: &str) -> u32 {
        self.drive_ok();
        let stream_id = match self.take_server_events().as_slice() {
            [ServerEvent::Connected { app, .. }, ServerEvent::PlayRequested {
                stream_id,
                app: a2,
                key: k,
                ..
            }] => {
                assert_eq!(
                    (app.as_str(), a2.as_str(), k.as_str()),
                    ("live", "live", key)
                );
                *stream_id
            }
            other => panic!("unexpected server events {other:?}"),
        };
        assert!(self.client_events.is_empty(), "{:?}", self.client_events);
        assert!(!self.client.is_playing());
        self.server.accept_play(stream_id);
        self.drive_ok();
        assert_eq!(self.client_events, vec![ClientEvent::Playing]);
        self.client_events.clear();
        assert!(self.client.is_playing() && !self.client.is_publishing());
        assert_eq!(
            self.client.poll_timeout(),
            None,
            "set-up timer off once playing"
        );
        stream_id
    }
}

fn check_play_round_trip(server_chunk: u32, client_chunk: u32, fragment: Option<usize>) {
    let server = SessionConfig {
        chunk_size: server_chunk,
        ..SessionConfig::default()
    };
    let mut p = Pair::player(server, client_config("cam1", client_chunk));
    p.fragment = fragment;
    let sid = p.play_live("cam1");

    // What a player says: no releaseStream/FCPublish, play with a live start, then a
    // buffer length for the play stream.
    let names: Vec<String> = p
        .tap_to_server
        .commands()
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(names, vec!["connect", "createStream", "play"]);
    let play = &p.tap_to_server.commands()[2].1;
    assert_eq!(play.get(3).and_then(Value::as_str), Some("cam1"));
    assert_eq!(play.get(4).and_then(Value::as_f64), Some(-1000.0));
    assert!(p.tap_to_server.msgs.iter().any(|m| matches!(
        Control::parse(m),
        Ok(Some(Control::SetBufferLength { stream_id, ms: 3000 })) if stream_id == sid
    )));

    let script = media_script();
    for (i, (kind, ts, payload)) in script.iter().enumerate() {
        p.server.send_media(sid, *kind, *ts, payload);
        if i % 17 == 0 {
            p.drive_ok();
        }
    }
    p.drive_ok();
    let got = std::mem::take(&mut p.client_events)
        .into_iter()
        .enumerate()
        .map(|(i, ev)| match ev {
            ClientEvent::Media {
                kind,
                timestamp,
                payload,
            } => (kind, timestamp, payload),
            other => panic!("message {i}: expected Media, got {other:?}"),
        });
    check_media(got.collect(), &script);

    // StreamEOF, UnpublishNotify and Play.Stop: one PlayEnded, after the last media.
    p.server
        .send_media(sid, MediaKind::Audio, 7, &Bytes::from_static(&[0xAF, 1, 2]));
    p.server.end_play(sid);
    p.server
        .send_media(sid, MediaKind::Audio, 8, &Bytes::from_static(&[0xAF, 1, 3]));
    p.drive_ok();
    assert_eq!(
        p.client_events,
        vec![
            ClientEvent::Media {
                kind: MediaKind::Audio,
                timestamp: 7,
                payload: Bytes::from_static(&[0xAF, 1, 2]),
            },
            ClientEvent::PlayEnded,
        ]
    );
    assert!(!p.client.is_playing());
    assert!(p.server_in.is_empty() && p.client_in.is_empty());
}

#[test]
fn player_receives_media_in_order_until_play_ends() {
    check_play_round_trip(4096, 4096, None);
}

#[test]
fn player_in_small_fragments_and_default_chunk_size() {
    check_play_round_trip(128, 128, Some(7));
}

#[test]
fn player_ends_on_a_status_level_play_stop_alone() {
    // A server that ends with NetStream.Play.Stop only (no StreamEOF, no UnpublishNotify).
    let mut p = Pair::player(SessionConfig::default(), client_config("cam1", 4096));
    let sid = p.play_live("cam1");
    let stop = amf(&[
        s("onStatus"),
        n(0.0),
        Value::Null,
        Value::object([("level", s("status")), ("code", s("NetStream.Play.Stop"))]),
    ]);
    let mut raw = Vec::new();
    // csid 8: one the server session never used, so a type 0 header stands alone.
    chunk0(&mut raw, 8, 0, 20, sid, &stop, 128);
    p.to_client.extend_from_slice(&raw);
    p.drive_ok();
    assert_eq!(p.client_events, vec![ClientEvent::PlayEnded]);
    // Media after the end is not the played stream's.
    p.server
        .send_media(sid, MediaKind::Audio, 9, &Bytes::from_static(&[0xAF, 1, 2]));
    p.drive_ok();
    assert_eq!(p.client_events, vec![ClientEvent::PlayEnded]);
}

#[test]
fn refused_play_is_an_error() {
    let mut p = Pair::player(SessionConfig::default(), client_config("nope", 4096));
    p.drive_ok();
    assert!(matches!(
        p.take_server_events().as_slice(),
        [
            ServerEvent::Connected { .. },
            ServerEvent::PlayRequested { stream_id: 1, .. }
        ]
    ));
    p.server
        .reject_play(1, "NetStream.Play.Failed", "no such stream");
    expect_refused(&mut p, "NetStream.Play.Failed", "no such stream");
    assert!(p.client_events.is_empty() && !p.client.is_playing());
}

#[test]
fn player_acknowledges_by_the_server_window() {
    let server = SessionConfig {
        window_ack_size: 10_000,
        ..SessionConfig::default()
    };
    let mut p = Pair::player(server, client_config("cam1", 4096));
    let sid = p.play_live("cam1");
    let payload = Bytes::from(vec![0x27; 3000]);
    for i in 0..50 {
        p.server.send_media(sid, MediaKind::Video, i * 40, &payload);
        p.drive_ok();
    }
    let acks = p.tap_to_server.acks();
    assert!(acks.len() >= 10, "{acks:?}");
    assert!(acks.windows(2).all(|w| w[1] - w[0] >= 10_000), "{acks:?}");
    assert_eq!(p.client_events.len(), 50);
}

// ---------------------------------------------------------------------------------------
// Byte-level: a server session fed hand-built chunks, as ffmpeg sends them

/// Hand-chunks one message with a type 0 header on `csid` (< 64), splitting the payload at
/// `chunk` with 1-byte type 3 headers (no extended timestamps: `ts` < 0xFFFFFF).
fn chunk0(
    out: &mut Vec<u8>,
    csid: u8,
    ts: u32,
    type_id: u8,
    sid: u32,
    payload: &[u8],
    chunk: usize,
) {
    assert!(csid < 64 && ts < 0xFF_FFFF);
    out.push(csid);
    out.extend_from_slice(&ts.to_be_bytes()[1..]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&sid.to_le_bytes());
    for (i, piece) in payload.chunks(chunk).enumerate() {
        if i > 0 {
            out.push(0xC0 | csid);
        }
        out.extend_from_slice(piece);
    }
}

/// Like [`chunk0`] with a type 1 header (timestamp delta, same stream id).
fn chunk1(out: &mut Vec<u8>, csid: u8, delta: u32, type_id: u8, payload: &[u8], chunk: usize) {
    out.push(0x40 | csid);
    out.extend_from_slice(&delta.to_be_bytes()[1..]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    for (i, piece) in payload.chunks(chunk).enumerate() {
        if i > 0 {
            out.push(0xC0 | csid);
        }
        out.extend_from_slice(piece);
    }
}

fn amf(values: &[Value]) -> Vec<u8> {
    let mut b = BytesMut::new();
    prism_amf0::encode_all(values, &mut b);
    b.to_vec()
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

fn n(v: f64) -> Value {
    Value::Number(v)
}

/// A raw peer for a `ServerSession`: does the (digest) client handshake, then sends
/// hand-built bytes and decodes what the server answers.
struct RawPeer {
    server: ServerSession,
    server_in: BytesMut,
    from_server: BytesMut,
    decoder: ChunkDecoder,
    received: Vec<RawMessage>,
    events: Vec<ServerEvent>,
    now: Instant,
}

impl RawPeer {
    fn new() -> RawPeer {
        let now = Instant::now();
        let mut server = ServerSession::new(SessionConfig::default(), [3; 32], 0, now);
        let mut c_out = OutQueue::new();
        let mut hs = ClientHandshake::new([4; 32], 0, &mut c_out);
        let mut server_in = BytesMut::from(&c_out.take_all()[..]);
        server.handle_input(&mut server_in, now).expect("C0C1");
        let mut s_out = BytesMut::from(&server.out().take_all()[..]);
        assert_eq!(s_out.len(), HANDSHAKE_BYTES, "S0+S1+S2");
        assert!(hs.handle_input(&mut s_out, &mut c_out).expect("S0S1S2"));
        assert!(hs.server_signed(), "digest handshake expected");
        server_in.extend_from_slice(&c_out.take_all());
        server.handle_input(&mut server_in, now).expect("C2");
        assert!(server_in.is_empty());
        assert!(!server.is_connected());
        RawPeer {
            server,
            server_in,
            from_server: BytesMut::new(),
            decoder: ChunkDecoder::new(DecoderLimits::default()),
            received: Vec::new(),
            events: Vec::new(),
            now,
        }
    }

    /// Feeds bytes to the server and collects its events and output.
    fn send(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.server_in.extend_from_slice(bytes);
        let r = self.server.handle_input(&mut self.server_in, self.now);
        while let Some(ev) = self.server.poll_event() {
            self.events.push(ev);
        }
        self.pump();
        r
    }

    fn pump(&mut self) {
        self.from_server
            .extend_from_slice(&self.server.out().take_all());
        while let Some(m) = self.decoder.decode(&mut self.from_server).expect("decode") {
            self.received.push(m);
        }
    }

    /// Commands received since the last call: (name, values).
    fn take_commands(&mut self) -> Vec<(String, Vec<Value>)> {
        let cmds = self.received.iter().filter_map(decode_command).collect();
        self.received.clear();
        cmds
    }

    fn connect(&mut self, app: &str) {
        let mut b = Vec::new();
        chunk0(
            &mut b,
            3,
            0,
            20,
            0,
            &amf(&[
                s("connect"),
                n(1.0),
                Value::object([
                    ("app", s(app)),
                    ("type", s("nonprivate")),
                    ("flashVer", s("FMLE/3.0 (compatible; Lavf61.7.100)")),
                    ("tcUrl", s(&format!("rtmp://127.0.0.1:1935/{app}"))),
                ]),
            ]),
            128,
        );
        self.send(&b).expect("connect");
        assert!(self.server.is_connected());
    }

    fn create_stream(&mut self, txn: f64) -> u32 {
        let mut b = Vec::new();
        chunk0(
            &mut b,
            3,
            0,
            20,
            0,
            &amf(&[s("createStream"), n(txn), Value::Null]),
            4096,
        );
        self.send(&b).expect("createStream");
        let cmds = self.take_commands();
        let (_, v) = cmds
            .iter()
            .find(|(name, v)| name == "_result" && v[1] == n(txn))
            .expect("createStream _result");
        v[3].as_f64().expect("stream id") as u32
    }
}

#[test]
fn ffmpeg_style_publish_byte_level() {
    let mut peer = RawPeer::new();

    // connect (AMF0 object, > 128 bytes so it spans chunks at the default chunk size).
    let mut b = Vec::new();
    let connect = amf(&[
        s("connect"),
        n(1.0),
        Value::object([
            ("app", s("live")),
            ("type", s("nonprivate")),
            ("flashVer", s("FMLE/3.0 (compatible; Lavf61.7.100)")),
            ("tcUrl", s("rtmp://127.0.0.1:1935/live")),
        ]),
    ]);
    assert!(connect.len() > 128);
    chunk0(&mut b, 3, 0, 20, 0, &connect, 128);
    // Split the write just after the continuation chunk's 1-byte header.
    let (first, rest) = b.split_at(141);
    peer.send(first).expect("first part of connect");
    assert!(peer.events.is_empty());
    peer.send(rest).expect("rest of connect");
    assert_eq!(
        peer.events,
        vec![ServerEvent::Connected {
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1:1935/live".into()
        }]
    );
    let controls: Vec<Control> = peer
        .received
        .iter()
        .filter_map(|m| Control::parse(m).expect("control"))
        .collect();
    assert_eq!(
        controls,
        vec![
            Control::WindowAckSize(2_500_000),
            Control::SetPeerBandwidth {
                size: 2_500_000,
                limit_type: 2
            },
            Control::SetChunkSize(4096),
        ]
    );
    let cmds = peer.take_commands();
    assert_eq!(cmds.len(), 1);
    let (name, v) = &cmds[0];
    assert_eq!(name, "_result");
    assert_eq!(v[1], n(1.0));
    assert_eq!(
        v[3].get("code").and_then(Value::as_str),
        Some("NetConnection.Connect.Success")
    );

    // Window Ack Size and Set Chunk Size 4096 (exact bytes), then releaseStream, FCPublish,
    // createStream on csid 3 with type 1 headers, as ffmpeg sends them.
    let mut b = vec![
        0x02, 0, 0, 0, 0, 0, 4, 5, 0, 0, 0, 0, 0x00, 0x26, 0x25, 0xA0, // WinAck 2.5 MB
        0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x00, 0x00, 0x10, 0x00, // Chunk Size 4096
    ];
    chunk1(
        &mut b,
        3,
        0,
        20,
        &amf(&[s("releaseStream"), n(2.0), Value::Null, s("cam1?k=v")]),
        4096,
    );
    chunk1(
        &mut b,
        3,
        0,
        20,
        &amf(&[s("FCPublish"), n(3.0), Value::Null, s("cam1?k=v")]),
        4096,
    );
    chunk1(
        &mut b,
        3,
        0,
        20,
        &amf(&[s("createStream"), n(4.0), Value::Null]),
        4096,
    );
    peer.send(&b).expect("releaseStream/FCPublish/createStream");
    let cmds = peer.take_commands();
    let summary: Vec<(String, f64)> = cmds
        .iter()
        .map(|(name, v)| (name.clone(), v[1].as_f64().unwrap_or(-1.0)))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("_result".into(), 2.0),
            ("onFCPublish".into(), 0.0),
            ("_result".into(), 3.0),
            ("_result".into(), 4.0),
        ]
    );
    assert_eq!(
        cmds[1].1[3].get("description").and_then(Value::as_str),
        Some("cam1"),
        "onFCPublish names the key without the query"
    );
    let sid = cmds[3].1[3].as_f64().expect("stream id") as u32;
    assert_eq!(sid, 1);

    // publish on the new stream (csid 8, type 0 header with stream id 1).
    let mut b = Vec::new();
    chunk0(
        &mut b,
        8,
        0,
        20,
        sid,
        &amf(&[s("publish"), n(5.0), Value::Null, s("cam1?k=v"), s("live")]),
        4096,
    );
    peer.send(&b).expect("publish");
    assert_eq!(
        peer.events[1..],
        [ServerEvent::PublishRequested {
            stream_id: 1,
            app: "live".into(),
            key: "cam1".into(),
            query: "k=v".into()
        }]
    );
    peer.events.clear();
    peer.server.accept_publish(sid);
    peer.pump();
    assert!(peer
        .received
        .iter()
        .any(|m| Control::parse(m) == Ok(Some(Control::StreamBegin(sid)))));
    assert_eq!(
        status_codes(&peer.received),
        vec!["NetStream.Publish.Start"]
    );
    peer.received.clear();

    // @setDataFrame onMetaData, then the sequence headers and a few frames on csids 4 / 6.
    let meta_body = amf(&[
        s("onMetaData"),
        Value::EcmaArray(vec![
            ("duration".into(), n(0.0)),
            ("width".into(), n(320.0)),
            ("height".into(), n(240.0)),
            ("videocodecid".into(), n(7.0)),
            ("audiocodecid".into(), n(10.0)),
            ("encoder".into(), s("Lavf61.7.100")),
        ]),
    ]);
    let mut set_data_frame = amf(&[s("@setDataFrame")]);
    set_data_frame.extend_from_slice(&meta_body);
    let avc_header = [
        0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x0D, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0, 0x0D,
    ];
    let aac_header = [0xAF, 0, 0x12, 0x10];
    let mut keyframe = vec![0x17, 1, 0, 0, 0];
    keyframe.extend((0..9000u32).map(|i| (i * 7) as u8));
    let inter = [0x27, 1, 0, 0, 0x28, 0xAA, 0xBB];
    let aac_frame = [0xAF, 1, 0x21, 0x10, 0x04];

    let mut b = Vec::new();
    chunk0(&mut b, 8, 0, 18, sid, &set_data_frame, 4096);
    chunk0(&mut b, 6, 0, 9, sid, &avc_header, 4096);
    chunk0(&mut b, 4, 0, 8, sid, &aac_header, 4096);
    chunk1(&mut b, 6, 0, 9, &keyframe, 4096); // 3 chunks
    chunk1(&mut b, 4, 23, 8, &aac_frame, 4096);
    chunk1(&mut b, 6, 40, 9, &inter, 4096);
    // Same length, type and delta: a bare type 3 header starts the next message.
    b.push(0xC6);
    b.extend_from_slice(&inter);
    // Deliver it in uneven pieces.
    for piece in b.chunks(1000) {
        peer.send(piece).expect("media");
    }
    let media: Vec<(MediaKind, u32, Vec<u8>)> = peer
        .events
        .iter()
        .map(|e| match e {
            ServerEvent::Media {
                stream_id,
                kind,
                timestamp,
                payload,
            } => {
                assert_eq!(*stream_id, sid);
                (*kind, *timestamp, payload.to_vec())
            }
            other => panic!("expected media, got {other:?}"),
        })
        .collect();
    assert_eq!(
        media,
        vec![
            // The @setDataFrame wrapper is stripped: players get a plain onMetaData.
            (MediaKind::Data, 0, meta_body.clone()),
            (MediaKind::Video, 0, avc_header.to_vec()),
            (MediaKind::Audio, 0, aac_header.to_vec()),
            (MediaKind::Video, 0, keyframe.clone()),
            (MediaKind::Audio, 23, aac_frame.to_vec()),
            (MediaKind::Video, 40, inter.to_vec()),
            (MediaKind::Video, 80, inter.to_vec()),
        ]
    );
    peer.events.clear();

    // FCUnpublish + deleteStream: one StreamClosed, Unpublish.Success.
    let mut b = Vec::new();
    chunk1(
        &mut b,
        3,
        0,
        20,
        &amf(&[s("FCUnpublish"), n(6.0), Value::Null, s("cam1?k=v")]),
        4096,
    );
    chunk1(
        &mut b,
        3,
        0,
        20,
        &amf(&[s("deleteStream"), n(7.0), Value::Null, n(sid as f64)]),
        4096,
    );
    peer.send(&b).expect("unpublish");
    assert_eq!(
        peer.events,
        vec![ServerEvent::StreamClosed { stream_id: sid }]
    );
    assert_eq!(
        status_codes(&peer.received),
        vec!["NetStream.Unpublish.Success"]
    );
}

#[test]
fn player_session_play_start() {
    let mut peer = RawPeer::new();
    peer.connect("live");
    peer.events.clear();
    peer.take_commands();
    let sid = peer.create_stream(2.0);
    assert_eq!(sid, 1);

    // ffmpeg as a player: getStreamLength, play, Set Buffer Length.
    let mut b = Vec::new();
    chunk0(
        &mut b,
        8,
        0,
        20,
        sid,
        &amf(&[s("getStreamLength"), n(3.0), Value::Null, s("cam1")]),
        128,
    );
    chunk0(
        &mut b,
        8,
        0,
        20,
        sid,
        &amf(&[s("play"), n(4.0), Value::Null, s("cam1?t=1"), n(-2000.0)]),
        128,
    );
    chunk0(
        &mut b,
        2,
        0,
        4,
        0,
        &[0, 3, 0, 0, 0, 1, 0, 0, 0x0B, 0xB8],
        128,
    );
    peer.send(&b).expect("play");
    assert_eq!(
        peer.events,
        vec![ServerEvent::PlayRequested {
            stream_id: sid,
            app: "live".into(),
            key: "cam1".into(),
            query: "t=1".into()
        }]
    );
    let cmds = peer.take_commands();
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].0, "_result");
    assert_eq!(cmds[0].1[1], n(3.0));

    peer.server.accept_play(sid);
    peer.pump();
    let controls: Vec<Control> = peer
        .received
        .iter()
        .filter_map(|m| Control::parse(m).expect("control"))
        .collect();
    assert_eq!(
        controls,
        vec![Control::StreamIsRecorded(sid), Control::StreamBegin(sid)]
    );
    assert_eq!(
        status_codes(&peer.received),
        vec!["NetStream.Play.Reset", "NetStream.Play.Start"]
    );
    for m in peer
        .received
        .iter()
        .filter(|m| m.type_id == MessageType::COMMAND_AMF0)
    {
        assert_eq!(m.stream_id, sid, "onStatus goes on the play stream");
    }
    let cmds = peer.take_commands();
    let (name, v) = cmds.last().expect("data message");
    assert_eq!(name, "|RtmpSampleAccess");
    assert_eq!(&v[1..], &[Value::Boolean(true), Value::Boolean(true)]);

    // Media to the player, shared payload, extended timestamp, many chunks.
    let big = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    peer.server
        .send_media(sid, MediaKind::Video, 0x0123_4567, &big);
    peer.server.send_media(
        sid,
        MediaKind::Audio,
        0x0123_4570,
        &Bytes::from_static(&[0xAF, 1, 1]),
    );
    peer.pump();
    assert_eq!(peer.received.len(), 2);
    assert_eq!(peer.received[0].type_id, MessageType::VIDEO);
    assert_eq!(peer.received[0].timestamp, 0x0123_4567);
    assert_eq!(peer.received[0].stream_id, sid);
    assert!(peer.received[0].payload == big);
    assert_eq!(peer.received[1].type_id, MessageType::AUDIO);
    assert_eq!(peer.received[1].timestamp, 0x0123_4570);
    peer.received.clear();

    peer.server.end_play(sid);
    peer.pump();
    assert!(peer
        .received
        .iter()
        .any(|m| Control::parse(m) == Ok(Some(Control::StreamEof(sid)))));
    assert_eq!(
        status_codes(&peer.received),
        vec!["NetStream.Play.UnpublishNotify", "NetStream.Play.Stop"]
    );
}

#[test]
fn reject_play_sends_error_status() {
    let mut peer = RawPeer::new();
    peer.connect("live");
    let sid = peer.create_stream(2.0);
    let mut b = Vec::new();
    chunk0(
        &mut b,
        8,
        0,
        20,
        sid,
        &amf(&[s("play"), n(3.0), Value::Null, s("nope")]),
        128,
    );
    peer.send(&b).expect("play");
    peer.take_commands();
    peer.server
        .reject_play(sid, "NetStream.Play.StreamNotFound", "No such stream");
    peer.pump();
    assert_eq!(
        status_codes(&peer.received),
        vec!["NetStream.Play.StreamNotFound"]
    );
}

// ---------------------------------------------------------------------------------------
// Error paths

#[test]
fn command_before_connect_is_an_error() {
    let mut peer = RawPeer::new();
    let mut b = Vec::new();
    chunk0(
        &mut b,
        8,
        0,
        20,
        1,
        &amf(&[s("publish"), n(5.0), Value::Null, s("cam1"), s("live")]),
        128,
    );
    match peer.send(&b) {
        Err(e @ SessionError::CommandBeforeConnect { .. }) => {
            assert_eq!(e.reason(), "command_before_connect");
            assert!(e.to_string().contains("\"publish\" before connect"), "{e}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(peer.events.is_empty());
    assert!(!peer.server.is_connected());
}

#[test]
fn publish_on_a_stream_not_created_is_an_error() {
    let mut peer = RawPeer::new();
    peer.connect("live");
    peer.events.clear();
    // No createStream: stream 1 does not exist.
    let mut b = Vec::new();
    chunk0(
        &mut b,
        8,
        0,
        20,
        1,
        &amf(&[s("publish"), n(5.0), Value::Null, s("cam1"), s("live")]),
        128,
    );
    match peer.send(&b) {
        Err(
            e @ SessionError::StreamNotAvailable {
                command: "publish",
                stream_id: 1,
            },
        ) => {
            assert!(e.to_string().contains("not created"), "{e}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(peer.events.is_empty());

    // And on a created stream, a second publish while the first is pending is refused too.
    let mut peer = RawPeer::new();
    peer.connect("live");
    let sid = peer.create_stream(2.0);
    let mut b = Vec::new();
    let publish = amf(&[s("publish"), n(5.0), Value::Null, s("cam1"), s("live")]);
    chunk0(&mut b, 8, 0, 20, sid, &publish, 128);
    peer.send(&b).expect("first publish");
    assert!(peer.send(&b).is_err(), "second publish on a busy stream");
}

#[test]
fn connect_without_app_and_second_connect_are_errors() {
    let mut peer = RawPeer::new();
    let mut b = Vec::new();
    chunk0(
        &mut b,
        3,
        0,
        20,
        0,
        &amf(&[
            s("connect"),
            n(1.0),
            Value::object([("tcUrl", s("rtmp://x/"))]),
        ]),
        128,
    );
    assert!(matches!(
        peer.send(&b),
        Err(SessionError::ConnectWithoutApp)
    ));

    let mut peer = RawPeer::new();
    peer.connect("live");
    let mut b = Vec::new();
    chunk0(
        &mut b,
        3,
        0,
        20,
        0,
        &amf(&[s("connect"), n(2.0), Value::object([("app", s("live"))])]),
        128,
    );
    assert!(matches!(peer.send(&b), Err(SessionError::SecondConnect)));
}

#[test]
fn hostile_chunks_after_handshake() {
    // Set Chunk Size 0 and 0x7FFFFFFF, a 16 MiB header, a type 3 chunk on a fresh csid.
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "chunk size 0",
            vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "chunk size 0x7FFFFFFF",
            vec![
                0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF,
            ],
        ),
        (
            "16 MiB message",
            vec![0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0],
        ),
        ("type 3 without header", vec![0xC7, 1, 2, 3]),
    ];
    for (what, bytes) in cases {
        let mut peer = RawPeer::new();
        assert!(
            matches!(peer.send(&bytes), Err(SessionError::Chunk(_))),
            "{what}"
        );
    }
    // An unknown message type is tolerated; the session stays usable.
    let mut peer = RawPeer::new();
    let mut b = Vec::new();
    chunk0(&mut b, 3, 0, 99, 0, &[1, 2, 3, 4, 5], 128);
    peer.send(&b).expect("unknown type tolerated");
    peer.connect("live");
}

#[test]
fn encoder_output_decodes_with_chunk_encoder_too() {
    // Sanity for the hand-built helpers: chunk0/chunk1 agree with ChunkEncoder's decoder.
    let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    let mut b = Vec::new();
    chunk0(&mut b, 6, 100, 9, 1, &payload, 128);
    chunk1(&mut b, 6, 40, 9, &payload[..10], 128);
    let mut dec = ChunkDecoder::new(DecoderLimits::default());
    let mut input = BytesMut::from(&b[..]);
    let a = dec.decode(&mut input).unwrap().unwrap();
    let c = dec.decode(&mut input).unwrap().unwrap();
    assert_eq!((a.timestamp, a.payload.len()), (100, 1000));
    assert_eq!((c.timestamp, c.payload.len()), (140, 10));
    let mut enc = ChunkEncoder::new();
    let mut out = OutQueue::new();
    enc.write(6, &a, &mut out);
    assert_eq!(out.take_all().len(), wire_size(1000, 128, false));
}

#[test]
fn end_publish_tells_the_publisher_before_the_server_closes() {
    let mut p = Pair::new(4096, 4096, "cam1");
    let sid = p.publish_live();
    assert_eq!(p.client.last_status(), Some("NetStream.Publish.Start"));
    p.server.end_publish(sid);
    p.drive_ok();
    assert_eq!(p.client.last_status(), Some("NetStream.Unpublish.Success"));
    assert_eq!(
        p.tap_to_client.status_codes(),
        vec!["NetStream.Publish.Start", "NetStream.Unpublish.Success"]
    );
    // Media the client still sends is no longer the stream's; a second end says nothing.
    p.client
        .send_media(MediaKind::Audio, 20, &Bytes::from_static(&[0xAF, 1, 2]));
    p.server.end_publish(sid);
    p.drive_ok();
    assert!(p.take_server_events().is_empty());
    assert_eq!(p.tap_to_client.status_codes().len(), 2);
}

#[test]
fn enhanced_rtmp_v2_caps_and_reconnect_request() {
    use prism_rtmp::session::caps_ex;
    // A v2 client announcing capsEx (reconnect + multitrack) gets Prism's capsEx and
    // fourCcList in the connect _result, and a reconnect request with the other node's URL.
    let mut p = Pair::new(4096, 4096, "cam1");
    p.client
        .announce_caps_ex(caps_ex::RECONNECT | caps_ex::MULTITRACK);
    let sid = p.publish_live();
    assert_eq!(
        p.server.peer_caps_ex(),
        Some(caps_ex::RECONNECT | caps_ex::MULTITRACK)
    );
    assert!(p.server.supports_reconnect());
    let result = p
        .tap_to_client
        .commands()
        .into_iter()
        .find(|(n, _)| n == "_result")
        .expect("connect _result");
    let props = &result.1[2];
    assert_eq!(
        props.get("capsEx").and_then(Value::as_f64),
        Some(f64::from(caps_ex::PRISM))
    );
    match props.get("fourCcList") {
        Some(Value::StrictArray(l)) => {
            assert!(l.contains(&Value::String("hvc1".into())));
            assert!(l.contains(&Value::String("Opus".into())));
        }
        other => panic!("fourCcList {other:?}"),
    }
    assert!(p
        .server
        .request_reconnect(Some("rtmp://node-b:1935/live"), "server is draining"));
    p.server.end_publish(sid);
    p.drive_ok();
    assert_eq!(
        p.client.reconnect_request(),
        Some(Some("rtmp://node-b:1935/live"))
    );
    assert_eq!(
        p.tap_to_client.status_codes(),
        vec![
            "NetStream.Publish.Start",
            "NetConnection.Connect.ReconnectRequest",
            "NetStream.Unpublish.Success"
        ]
    );

    // A client that announced nothing is not asked, and its _result is as before.
    let mut p = Pair::new(4096, 4096, "cam2");
    p.publish_live();
    assert_eq!(p.server.peer_caps_ex(), None);
    assert!(!p.server.request_reconnect(None, "draining"));
    p.drive_ok();
    assert_eq!(p.client.reconnect_request(), None);
    let result = p
        .tap_to_client
        .commands()
        .into_iter()
        .find(|(n, _)| n == "_result")
        .expect("connect _result");
    assert_eq!(result.1[2].get("capsEx"), None);
}

#[test]
fn a_client_announcing_only_fourcc_info_maps_gets_prisms_caps_and_maps() {
    // The v2 spec lets a client describe its codecs with videoFourCcInfoMap /
    // audioFourCcInfoMap alone; that is a v2 client too, and the _result answers with
    // what Prism forwards, in the maps as well as in fourCcList.
    let mut peer = RawPeer::new();
    let mut b = Vec::new();
    chunk0(
        &mut b,
        3,
        0,
        20,
        0,
        &amf(&[
            s("connect"),
            n(1.0),
            Value::object([
                ("app", s("live")),
                ("type", s("nonprivate")),
                ("tcUrl", s("rtmp://127.0.0.1:1935/live")),
                ("videoFourCcInfoMap", Value::object([("hvc1", n(2.0))])),
            ]),
        ]),
        128,
    );
    peer.send(&b).expect("connect");
    assert!(peer.server.is_connected());
    let cmds = peer.take_commands();
    let (_, v) = cmds
        .iter()
        .find(|(name, _)| name == "_result")
        .expect("connect _result");
    let props = &v[2];
    assert_eq!(
        props.get("capsEx").and_then(Value::as_f64),
        Some(f64::from(prism_rtmp::session::caps_ex::PRISM))
    );
    assert!(matches!(
        props.get("fourCcList"),
        Some(Value::StrictArray(_))
    ));
    let video = props.get("videoFourCcInfoMap").expect("videoFourCcInfoMap");
    assert_eq!(
        video.get("hvc1").and_then(Value::as_f64),
        Some(4.0),
        "{video:?}"
    );
    assert_eq!(video.get("Opus"), None, "audio is in the audio map");
    let audio = props.get("audioFourCcInfoMap").expect("audioFourCcInfoMap");
    assert_eq!(
        audio.get("Opus").and_then(Value::as_f64),
        Some(4.0),
        "{audio:?}"
    );
}

#[test]
fn v2_push_announces_what_it_forwards_and_reads_the_servers_caps() {
    use prism_rtmp::session::{caps_ex, FORWARDED_FOURCCS, FOURCC_CAN_FORWARD};
    // A push announcing capsEx sends fourCcList and the info maps in its connect, and reads
    // the capsEx of the server's _result: Prism's confirms multitrack.
    let mut p = Pair::new(4096, 4096, "cam1");
    p.client
        .announce_caps_ex(caps_ex::MULTITRACK | caps_ex::MODEX);
    assert_eq!(p.client.peer_caps_ex(), None, "nothing before the _result");
    p.publish_live();
    assert_eq!(p.client.peer_caps_ex(), Some(caps_ex::PRISM));
    assert!(p.client.peer_multitrack());
    let connect = p
        .tap_to_server
        .commands()
        .into_iter()
        .find(|(n, _)| n == "connect")
        .expect("connect");
    let props = &connect.1[2];
    assert_eq!(
        props.get("capsEx").and_then(Value::as_f64),
        Some(f64::from(caps_ex::MULTITRACK | caps_ex::MODEX))
    );
    match props.get("fourCcList") {
        Some(Value::StrictArray(l)) => assert_eq!(l.len(), FORWARDED_FOURCCS.len()),
        other => panic!("fourCcList {other:?}"),
    }
    let forward = Some(f64::from(FOURCC_CAN_FORWARD));
    let video = props.get("videoFourCcInfoMap").expect("videoFourCcInfoMap");
    assert_eq!(video.get("hvc1").and_then(Value::as_f64), forward);
    assert_eq!(video.get("av01").and_then(Value::as_f64), forward);
    assert_eq!(video.get("Opus"), None, "audio is in the audio map");
    let audio = props.get("audioFourCcInfoMap").expect("audioFourCcInfoMap");
    assert_eq!(audio.get("Opus").and_then(Value::as_f64), forward);

    // A client that announces nothing gets a legacy _result: no capsEx, no multitrack.
    let mut p = Pair::new(4096, 4096, "cam2");
    p.publish_live();
    assert_eq!(p.client.peer_caps_ex(), None);
    assert!(!p.client.peer_multitrack());
}

#[test]
fn v2_push_without_multitrack_in_the_servers_caps() {
    use prism_rtmp::session::caps_ex;
    // A server answering a capsEx without the multitrack bit (or a non-number) has not
    // confirmed multitrack.
    for (caps, want) in [
        (
            Value::Number(f64::from(caps_ex::MODEX)),
            Some(caps_ex::MODEX),
        ),
        (Value::String("2".into()), None),
        (Value::Number(-1.0), None),
    ] {
        let mut client = ClientSession::after_handshake_announcing(
            client_config("k", 128),
            Some(caps_ex::MULTITRACK),
            Instant::now(),
        );
        // The connect went out at once, with the capsEx.
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let mut sent = BytesMut::from(&client.out().take_all()[..]);
        let mut connect_caps = None;
        while let Ok(Some(m)) = dec.decode(&mut sent) {
            if m.type_id == MessageType::COMMAND_AMF0 {
                let v = prism_amf0::decode_all(&m.payload).expect("amf0");
                connect_caps = v
                    .get(2)
                    .and_then(|p| p.get("capsEx"))
                    .and_then(Value::as_f64);
            }
        }
        assert_eq!(connect_caps, Some(f64::from(caps_ex::MULTITRACK)));
        let mut result = Vec::new();
        let body = amf(&[
            s("_result"),
            Value::Number(1.0),
            Value::object([("capsEx", caps)]),
            Value::object([("code", s("NetConnection.Connect.Success"))]),
        ]);
        chunk0(&mut result, 3, 0, 20, 0, &body, 128);
        let mut input = BytesMut::from(&result[..]);
        client
            .handle_input(&mut input, Instant::now())
            .expect("a _result");
        assert_eq!(client.peer_caps_ex(), want);
        assert!(!client.peer_multitrack());
    }
}

#[test]
fn media_on_message_stream_0_goes_to_the_only_publishing_stream() {
    // Node-Media-Server's relay push sends its media on message stream 0, not on the stream
    // it published; nginx-rtmp takes it, so the server takes it as its one publishing stream.
    let mut p = Pair::new(4096, 4096, "cam1");
    let sid = p.publish_live();
    assert_ne!(sid, 0);
    let payload = [0x17u8, 1, 0, 0, 0, 7, 7];
    let mut b = Vec::new();
    chunk0(&mut b, 6, 40, 9, 0, &payload, 4096);
    p.to_server.extend_from_slice(&b);
    p.drive_ok();
    match p.take_server_events().as_slice() {
        [ServerEvent::Media {
            stream_id,
            kind: MediaKind::Video,
            timestamp: 40,
            payload: got,
        }] => {
            assert_eq!(*stream_id, sid);
            assert_eq!(&got[..], &payload[..]);
        }
        other => panic!("unexpected server events {other:?}"),
    }
}
