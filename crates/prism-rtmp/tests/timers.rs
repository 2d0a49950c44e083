//! The session timers on a virtual clock: time is an input (`handle_input(.., now)`,
//! `handle_timeout(now)`), so nothing here sleeps. A raw peer (digest handshake, then
//! hand-built commands) drives a `ServerSession`; a `ClientSession` is driven alone or
//! wired to a server in memory.

use bytes::BytesMut;
use prism_amf0::Value;
use prism_rtmp::chunk::ChunkEncoder;
use prism_rtmp::handshake::ClientHandshake;
use prism_rtmp::message::{MessageType, RawMessage};
use prism_rtmp::session::{
    ClientConfig, ClientSession, ServerEvent, ServerSession, SessionConfig, SessionError,
};
use prism_rtmp::OutQueue;
use std::time::{Duration, Instant};

const HANDSHAKE: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(30);
const MS: Duration = Duration::from_millis(1);

fn config() -> SessionConfig {
    SessionConfig {
        handshake_timeout: HANDSHAKE,
        idle_timeout: Some(IDLE),
        ..SessionConfig::default()
    }
}

/// A client speaking to a `ServerSession` with hand-built bytes.
struct Peer {
    server: ServerSession,
    hs: ClientHandshake,
    enc: ChunkEncoder,
    c_out: OutQueue,
    server_in: BytesMut,
    events: Vec<ServerEvent>,
}

impl Peer {
    fn new(config: SessionConfig, start: Instant) -> Peer {
        let mut c_out = OutQueue::new();
        let hs = ClientHandshake::new([4; 32], 0, &mut c_out);
        Peer {
            server: ServerSession::new(config, [3; 32], 0, start),
            hs,
            enc: ChunkEncoder::new(),
            c_out,
            server_in: BytesMut::new(),
            events: Vec::new(),
        }
    }

    /// Delivers what the client queued to the server at `now`.
    fn deliver(&mut self, now: Instant) -> Result<(), SessionError> {
        self.server_in.extend_from_slice(&self.c_out.take_all());
        let r = self.server.handle_input(&mut self.server_in, now);
        while let Some(ev) = self.server.poll_event() {
            self.events.push(ev);
        }
        r
    }

    /// C0+C1 at `c1`, S0+S1+S2 back, C2 at `c2`.
    fn handshake(&mut self, c1: Instant, c2: Instant) {
        self.deliver(c1).expect("C0C1");
        let mut s_out = BytesMut::from(&self.server.out().take_all()[..]);
        assert!(self
            .hs
            .handle_input(&mut s_out, &mut self.c_out)
            .expect("S0S1S2"));
        self.deliver(c2).expect("C2");
    }

    fn command(&mut self, stream_id: u32, values: &[Value], now: Instant) {
        let mut payload = BytesMut::new();
        prism_amf0::encode_all(values, &mut payload);
        let msg = RawMessage {
            timestamp: 0,
            type_id: MessageType::COMMAND_AMF0,
            stream_id,
            payload: payload.freeze(),
        };
        self.enc.write(3, &msg, &mut self.c_out);
        self.deliver(now).expect("command");
    }

    fn connect(&mut self, now: Instant) {
        self.command(
            0,
            &[
                Value::String("connect".into()),
                Value::Number(1.0),
                Value::object([("app", Value::String("live".into()))]),
            ],
            now,
        );
        assert!(self.server.is_connected());
    }

    /// createStream then play; the play is accepted.
    fn play(&mut self, now: Instant) {
        self.command(
            0,
            &[
                Value::String("createStream".into()),
                Value::Number(2.0),
                Value::Null,
            ],
            now,
        );
        self.command(
            1,
            &[
                Value::String("play".into()),
                Value::Number(0.0),
                Value::Null,
                Value::String("cam1".into()),
            ],
            now,
        );
        assert!(matches!(
            self.events.last(),
            Some(ServerEvent::PlayRequested { stream_id: 1, .. })
        ));
        self.server.accept_play(1);
    }
}

#[test]
fn handshake_timeout_fires_exactly_at_the_deadline() {
    let t0 = Instant::now();
    let mut peer = Peer::new(config(), t0);
    assert_eq!(peer.server.poll_timeout(), Some(t0 + HANDSHAKE));
    // C0+C1 only, then nothing: input does not move the handshake deadline.
    peer.deliver(t0 + Duration::from_secs(1)).expect("C0C1");
    assert_eq!(peer.server.poll_timeout(), Some(t0 + HANDSHAKE));

    peer.server
        .handle_timeout(t0 + HANDSHAKE - MS)
        .expect("not due 1 ms before");
    match peer.server.handle_timeout(t0 + HANDSHAKE) {
        Err(e @ SessionError::HandshakeTimeout(d)) => {
            assert_eq!(d, HANDSHAKE);
            assert_eq!(e.reason(), "handshake_timeout");
            assert!(e.to_string().contains("did not complete"), "{e}");
        }
        other => panic!("expected HandshakeTimeout, got {other:?}"),
    }
    // Reported once; the session is closed.
    assert_eq!(peer.server.poll_timeout(), None);
    peer.server
        .handle_timeout(t0 + HANDSHAKE * 2)
        .expect("reported once");
    assert!(matches!(
        peer.deliver(t0 + HANDSHAKE),
        Err(SessionError::Closed)
    ));
}

#[test]
fn handshake_timeout_covers_connect() {
    // The handshake bytes alone are not enough: `connect` must be answered in time too.
    let t0 = Instant::now();
    let mut peer = Peer::new(config(), t0);
    peer.handshake(t0, t0 + MS);
    assert!(!peer.server.is_connected());
    assert_eq!(peer.server.poll_timeout(), Some(t0 + HANDSHAKE));
    assert!(matches!(
        peer.server.handle_timeout(t0 + HANDSHAKE),
        Err(SessionError::HandshakeTimeout(_))
    ));
}

#[test]
fn connected_idle_server_times_out_and_input_keeps_it_alive() {
    let t0 = Instant::now();
    let mut peer = Peer::new(config(), t0);
    peer.handshake(t0, t0 + MS);
    let connected = t0 + Duration::from_secs(2);
    peer.connect(connected);
    // Connected: the handshake timer is gone, the idle one counts from the last input.
    assert_eq!(peer.server.poll_timeout(), Some(connected + IDLE));
    peer.server
        .handle_timeout(t0 + HANDSHAKE)
        .expect("handshake timer is off once connected");

    // Input at connected+20s moves the deadline to connected+50s.
    let later = connected + Duration::from_secs(20);
    peer.command(
        0,
        &[
            Value::String("createStream".into()),
            Value::Number(2.0),
            Value::Null,
        ],
        later,
    );
    assert_eq!(peer.server.poll_timeout(), Some(later + IDLE));
    peer.server
        .handle_timeout(connected + IDLE)
        .expect("input moved the idle deadline");
    peer.server
        .handle_timeout(later + IDLE - MS)
        .expect("not due 1 ms before");
    match peer.server.handle_timeout(later + IDLE) {
        Err(e @ SessionError::IdleTimeout(d)) => {
            assert_eq!(d, IDLE);
            assert_eq!(e.reason(), "idle_timeout");
        }
        other => panic!("expected IdleTimeout, got {other:?}"),
    }
    assert_eq!(peer.server.poll_timeout(), None);
}

#[test]
fn playing_server_is_not_idle_timed_out() {
    let t0 = Instant::now();
    let mut peer = Peer::new(config(), t0);
    peer.handshake(t0, t0);
    peer.connect(t0);
    assert_eq!(peer.server.poll_timeout(), Some(t0 + IDLE));
    peer.play(t0 + MS);
    assert!(peer.server.is_playing());
    assert_eq!(peer.server.poll_timeout(), None);
    peer.server
        .handle_timeout(t0 + IDLE * 100)
        .expect("a silent player stays");
}

#[test]
fn idle_timeout_can_be_disabled() {
    let t0 = Instant::now();
    let mut peer = Peer::new(
        SessionConfig {
            idle_timeout: None,
            ..config()
        },
        t0,
    );
    peer.handshake(t0, t0);
    peer.connect(t0);
    assert_eq!(peer.server.poll_timeout(), None);
    peer.server
        .handle_timeout(t0 + IDLE * 100)
        .expect("no idle timer");
}

#[test]
fn defaults_match_prism_config() {
    // prism-config: rtmp.handshake_timeout_ms = 10000, rtmp.idle_timeout_ms = 30000.
    let d = SessionConfig::default();
    assert_eq!(d.handshake_timeout, Duration::from_secs(10));
    assert_eq!(d.idle_timeout, Some(Duration::from_secs(30)));
}

fn client(setup: Duration, start: Instant) -> ClientSession {
    ClientSession::new(
        ClientConfig {
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1/live".into(),
            key: "cam1".into(),
            session: SessionConfig {
                handshake_timeout: setup,
                ..SessionConfig::default()
            },
        },
        [2; 32],
        0,
        start,
    )
}

#[test]
fn client_setup_timeout() {
    let setup = Duration::from_secs(15);
    let t0 = Instant::now();
    let mut c = client(setup, t0);
    assert_eq!(c.poll_timeout(), Some(t0 + setup));
    c.handle_timeout(t0 + setup - MS).expect("not due yet");
    match c.handle_timeout(t0 + setup) {
        Err(e @ SessionError::HandshakeTimeout(d)) => {
            assert_eq!(d, setup);
            assert_eq!(e.reason(), "handshake_timeout");
        }
        other => panic!("expected HandshakeTimeout, got {other:?}"),
    }
    assert_eq!(c.poll_timeout(), None);
    assert!(matches!(
        c.handle_input(&mut BytesMut::from(&[3u8][..]), t0 + setup),
        Err(SessionError::Closed)
    ));
}

#[test]
fn publishing_client_has_no_timer() {
    let setup = Duration::from_secs(15);
    let t0 = Instant::now();
    let mut c = client(setup, t0);
    let mut server = ServerSession::new(config(), [1; 32], 0, t0);
    let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());
    let mut now = t0;
    for _ in 0..32 {
        now += MS;
        to_server.extend_from_slice(&c.out().take_all());
        server.handle_input(&mut to_server, now).expect("server");
        while let Some(ev) = server.poll_event() {
            if let ServerEvent::PublishRequested { stream_id, .. } = ev {
                server.accept_publish(stream_id);
            }
        }
        to_client.extend_from_slice(&server.out().take_all());
        c.handle_input(&mut to_client, now).expect("client");
        while c.poll_event().is_some() {}
        if c.is_publishing() {
            break;
        }
        assert_eq!(c.poll_timeout(), Some(t0 + setup));
    }
    assert!(c.is_publishing());
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(t0 + setup * 10)
        .expect("no timer once publishing");
    // The publishing server is idle-checked from its last input.
    assert_eq!(server.poll_timeout(), Some(now + IDLE));
}

#[test]
fn a_protocol_error_closes_the_session() {
    let t0 = Instant::now();
    let mut peer = Peer::new(config(), t0);
    peer.handshake(t0, t0);
    let mut payload = BytesMut::new();
    prism_amf0::encode_all(
        &[
            Value::String("publish".into()),
            Value::Number(5.0),
            Value::Null,
        ],
        &mut payload,
    );
    let msg = RawMessage {
        timestamp: 0,
        type_id: MessageType::COMMAND_AMF0,
        stream_id: 0,
        payload: payload.freeze(),
    };
    peer.enc.write(3, &msg, &mut peer.c_out);
    match peer.deliver(t0) {
        Err(e @ SessionError::CommandBeforeConnect { .. }) => {
            assert_eq!(e.reason(), "command_before_connect");
            assert_eq!(
                e.to_string(),
                "protocol violation: command \"publish\" before connect"
            );
        }
        other => panic!("expected CommandBeforeConnect, got {other:?}"),
    }
    // No timer outlives the failure.
    assert_eq!(peer.server.poll_timeout(), None);
    assert!(matches!(peer.deliver(t0), Err(SessionError::Closed)));
}
