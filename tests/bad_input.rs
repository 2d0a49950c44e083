//! Hostile input against the real binary: every malformed or abusive connection is closed
//! within a bound, while a healthy publisher keeps streaming and players keep decoding, and
//! prism's memory stays bounded.
//!
//! One test, run in phases against one prism (handshake_timeout_ms = 1000):
//! 1. a looping ffmpeg publisher; a player decodes it;
//! 2. each hostile input on its own raw TCP connection (garbage, bad C0, half handshake,
//!    then after a valid handshake: bad Set Chunk Size, oversized message, unknown type,
//!    command before connect, headerless type 3 chunk, too many chunk streams), plus a
//!    tolerated unknown message type and a connected peer flooding commands without reading;
//! 3. 200 connections holding half a handshake.
//!
//! After each phase: publisher still flowing, healthz, RSS bound, error counters.

mod common;

use bytes::BytesMut;
use common::*;
use prism_amf0::Value;
use prism_rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits};
use prism_rtmp::handshake::ClientHandshake;
use prism_rtmp::message::{MessageType, RawMessage};
use prism_rtmp::OutQueue;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long prism may take to drop a connection that sent something invalid.
const CLOSE_BOUND: Duration = Duration::from_secs(3);
/// Prism's resident memory must stay under this throughout.
const RSS_LIMIT_KB: u64 = 100 * 1024;
const STREAM: &str = "live/healthy";

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

#[track_caller]
fn check_rss(prism: &Prism, when: &str) -> u64 {
    let kb = rss_kb(prism.pid());
    eprintln!("[bad_input] prism RSS {when}: {} KiB", kb);
    assert!(
        kb < RSS_LIMIT_KB,
        "prism RSS {kb} KiB {when}, limit {RSS_LIMIT_KB} KiB"
    );
    kb
}

fn ingest_bytes(prism: &Prism) -> f64 {
    prism
        .metric_value(&format!("prism_ingest_bytes_total{{stream=\"{STREAM}\""))
        .unwrap_or(0.0)
}

fn errors(prism: &Prism, reason: &str) -> f64 {
    prism
        .metric_sum(&format!(
            "prism_connection_errors_total{{reason=\"{reason}\""
        ))
        .unwrap_or(0.0)
}

fn active_rtmp(prism: &Prism) -> f64 {
    prism
        .metric_value("prism_connections_active{transport=\"rtmp\"")
        .unwrap_or(0.0)
}

fn total_rtmp(prism: &Prism) -> f64 {
    prism
        .metric_value("prism_connections_total{transport=\"rtmp\"")
        .unwrap_or(0.0)
}

/// The publisher is still pushing data into prism and prism is healthy.
#[track_caller]
fn assert_healthy(prism: &mut Prism, publisher: &mut Publisher, when: &str) {
    assert!(prism.try_wait().is_none(), "prism exited {when}");
    assert!(
        publisher.try_wait().is_none(),
        "publisher exited {when}: {}",
        publisher.stderr()
    );
    assert!(
        matches!(prism.http_get("/healthz"), Ok((200, _))),
        "healthz {when}"
    );
    let before = ingest_bytes(prism);
    wait_until(
        Duration::from_secs(5),
        &format!("ingest bytes to keep growing {when}"),
        || ingest_bytes(prism) > before,
    );
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to prism");
    s.set_nodelay(true).expect("nodelay");
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    s
}

/// Does the client handshake (prism_rtmp's, digest variant); returns bytes read past S2.
fn handshake(s: &mut TcpStream) -> BytesMut {
    let mut out = OutQueue::new();
    let mut hs = ClientHandshake::new([7; 32], 0, &mut out);
    s.write_all(&out.take_all()).expect("write C0C1");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut input = BytesMut::new();
    let mut buf = [0u8; 8192];
    while !hs
        .handle_input(&mut input, &mut out)
        .expect("server handshake")
    {
        let n = s.read(&mut buf).expect("read S0S1S2");
        assert!(n > 0, "prism closed during the handshake");
        input.extend_from_slice(&buf[..n]);
    }
    s.write_all(&out.take_all()).expect("write C2");
    input
}

/// Waits until the peer closes (EOF or reset), discarding what it sends. Returns the time
/// since `start`, or an error if it is still open after `start + limit`.
fn wait_closed(s: &mut TcpStream, start: Instant, limit: Duration) -> Result<Duration, String> {
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok(start.elapsed()),
        }
        if start.elapsed() > limit {
            return Err(format!("still open after {:?}", start.elapsed()));
        }
    }
}

fn amf(values: &[Value]) -> bytes::Bytes {
    let mut b = BytesMut::new();
    prism_amf0::encode_all(values, &mut b);
    b.freeze()
}

/// One message chunked by prism_rtmp's encoder at the default chunk size of 128.
fn encode(csid: u32, type_id: u8, stream_id: u32, payload: bytes::Bytes) -> Vec<u8> {
    let mut enc = ChunkEncoder::new();
    let mut out = OutQueue::new();
    enc.write(
        csid,
        &RawMessage {
            timestamp: 0,
            type_id: MessageType(type_id),
            stream_id,
            payload,
        },
        &mut out,
    );
    out.take_all().to_vec()
}

fn connect_command() -> Vec<u8> {
    encode(
        3,
        20,
        0,
        amf(&[
            Value::String("connect".into()),
            Value::Number(1.0),
            Value::object([
                ("app", Value::String("live".into())),
                ("type", Value::String("nonprivate".into())),
                ("tcUrl", Value::String("rtmp://127.0.0.1/live".into())),
            ]),
        ]),
    )
}

fn set_chunk_size(n: u32) -> Vec<u8> {
    let mut b = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
    b.extend_from_slice(&n.to_be_bytes());
    b
}

/// Deterministic filler.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Closed as a protocol error, within CLOSE_BOUND of sending.
    Protocol,
    /// Held open until the handshake timeout, then closed.
    HandshakeTimeout,
    /// Closed within the handshake timeout + CLOSE_BOUND, for either reason.
    Either,
    /// RTMPE while `[rtmp] rtmpe` is off: closed at once, counted as `rtmpe_disabled`.
    RtmpeDisabled,
}

struct Case {
    name: &'static str,
    /// Do a valid handshake before sending `bytes`.
    handshake: bool,
    bytes: Vec<u8>,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    let mut random = noise(1, 4096);
    random[0] = 0xA5; // not a C0
    let mut after_c0 = vec![3];
    after_c0.extend(noise(2, 1536 * 2 + 2000));
    let mut v6 = vec![6];
    v6.extend(noise(3, 1536));
    let mut half = vec![3];
    half.extend(noise(4, 700));
    let mut huge = vec![0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
    huge.extend(noise(5, 128));
    let mut many_csids = Vec::new();
    for csid in 3u8..=63 {
        // A 1000-byte message per chunk stream, only its first chunk sent.
        many_csids.extend_from_slice(&[csid, 0, 0, 0, 0, 0x03, 0xE8, 9, 1, 0, 0, 0]);
        many_csids.extend(noise(csid as u64, 128));
    }
    for csid in 64u32..80 {
        // 2-byte basic header form.
        many_csids.extend_from_slice(&[
            0,
            (csid - 64) as u8,
            0,
            0,
            0,
            0,
            0x03,
            0xE8,
            9,
            1,
            0,
            0,
            0,
        ]);
        many_csids.extend(noise(csid as u64, 128));
    }
    let publish = encode(
        8,
        20,
        1,
        amf(&[
            Value::String("publish".into()),
            Value::Number(5.0),
            Value::Null,
            Value::String("healthy".into()),
            Value::String("live".into()),
        ]),
    );
    vec![
        Case {
            name: "HTTP GET",
            handshake: false,
            bytes: b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
            expect: Expect::Protocol,
        },
        Case {
            name: "random bytes",
            handshake: false,
            bytes: random,
            expect: Expect::Protocol,
        },
        Case {
            name: "random bytes after a valid C0",
            handshake: false,
            bytes: after_c0,
            expect: Expect::Either,
        },
        Case {
            name: "C0 version 6",
            handshake: false,
            bytes: v6,
            expect: Expect::RtmpeDisabled,
        },
        Case {
            name: "half handshake held open",
            handshake: false,
            bytes: half,
            expect: Expect::HandshakeTimeout,
        },
        Case {
            name: "Set Chunk Size 0",
            handshake: true,
            bytes: set_chunk_size(0),
            expect: Expect::Protocol,
        },
        Case {
            name: "Set Chunk Size 0x7FFFFFFF",
            handshake: true,
            bytes: set_chunk_size(0x7FFF_FFFF),
            expect: Expect::Protocol,
        },
        Case {
            name: "16 MiB message that never completes",
            handshake: true,
            bytes: huge,
            expect: Expect::Protocol,
        },
        Case {
            name: "publish before connect",
            handshake: true,
            bytes: publish,
            expect: Expect::Protocol,
        },
        Case {
            name: "type 3 chunk on a fresh csid",
            handshake: true,
            bytes: vec![0xC9, 1, 2, 3, 4],
            expect: Expect::Protocol,
        },
        Case {
            name: "77 chunk streams each holding a partial message",
            handshake: true,
            bytes: many_csids,
            expect: Expect::Protocol,
        },
        Case {
            // Tolerated, so only the handshake timeout (no connect) ends it.
            name: "unknown message type 99, no connect",
            handshake: true,
            bytes: encode(3, 99, 0, noise(6, 300).into()),
            expect: Expect::HandshakeTimeout,
        },
    ]
}

/// Runs one case; returns how long prism took to close it.
fn run_case(addr: SocketAddr, case: &Case) -> Duration {
    let mut s = connect(addr);
    let connected = Instant::now();
    if case.handshake {
        handshake(&mut s);
    }
    // Prism may close before everything is written; that's fine.
    let _ = s.write_all(&case.bytes);
    let sent = Instant::now();
    let (start, min, limit) = match case.expect {
        Expect::Protocol | Expect::RtmpeDisabled => (sent, Duration::ZERO, CLOSE_BOUND),
        Expect::HandshakeTimeout => (
            connected,
            HANDSHAKE_TIMEOUT - Duration::from_millis(50),
            HANDSHAKE_TIMEOUT + CLOSE_BOUND,
        ),
        Expect::Either => (connected, Duration::ZERO, HANDSHAKE_TIMEOUT + CLOSE_BOUND),
    };
    let took =
        wait_closed(&mut s, start, limit).unwrap_or_else(|e| panic!("case {:?}: {e}", case.name));
    assert!(
        took >= min,
        "case {:?}: closed after {took:?}, before the handshake timeout",
        case.name
    );
    eprintln!("[bad_input] {:<50} closed after {took:?}", case.name);
    took
}

/// After a valid handshake, an unknown message type 99 does not end the connection: connect
/// still succeeds, and the connection outlives the handshake timeout.
fn unknown_type_is_tolerated(addr: SocketAddr) {
    let mut s = connect(addr);
    let mut input = handshake(&mut s);
    let mut b = encode(3, 99, 0, noise(7, 300).into());
    b.extend(connect_command());
    s.write_all(&b).expect("write type 99 + connect");

    let mut dec = ChunkDecoder::new(DecoderLimits::default());
    let mut buf = [0u8; 8192];
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let deadline = Instant::now() + CLOSE_BOUND;
    let mut code = None;
    while code.is_none() {
        assert!(
            Instant::now() < deadline,
            "no connect _result after type 99"
        );
        while let Some(m) = dec.decode(&mut input).expect("decode prism output") {
            if m.type_id != MessageType::COMMAND_AMF0 {
                continue;
            }
            let v = prism_amf0::decode_all(&m.payload).expect("AMF0");
            if v.first().and_then(Value::as_str) == Some("_result") {
                code = v
                    .get(3)
                    .and_then(|i| i.get("code"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
        }
        match s.read(&mut buf) {
            Ok(0) => panic!("prism closed the connection after an unknown message type"),
            Ok(n) => input.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("connection failed after an unknown message type: {e}"),
        }
    }
    assert_eq!(code.as_deref(), Some("NetConnection.Connect.Success"));
    // Past the handshake deadline, the (connected) connection is still open.
    let until = Instant::now() + HANDSHAKE_TIMEOUT + Duration::from_millis(300);
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => panic!("prism closed a connected session that sent type 99"),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("connection failed: {e}"),
        }
    }
    eprintln!("[bad_input] unknown message type 99 + connect: tolerated, connection usable");
}

/// A peer that connects and then floods commands that each get a reply, without ever
/// reading: prism must stop reading from it (backpressure) instead of queueing replies
/// without bound. Returns the bytes the peer managed to send.
fn sender_that_never_reads(addr: SocketAddr, prism: &Prism) -> usize {
    let mut s = connect(addr);
    handshake(&mut s);
    let mut b = connect_command();
    b.extend(set_chunk_size(65536));
    s.write_all(&b).expect("connect");
    // FCPublish with a 200-byte name: ~230 bytes in, ~500 bytes of onFCPublish + _result out.
    let mut enc = ChunkEncoder::new();
    let mut out = OutQueue::new();
    enc.set_chunk_size(65536, &mut OutQueue::new());
    let cmd = RawMessage {
        timestamp: 0,
        type_id: MessageType::COMMAND_AMF0,
        stream_id: 0,
        payload: amf(&[
            Value::String("FCPublish".into()),
            Value::Number(3.0),
            Value::Null,
            Value::String("k".repeat(200)),
        ]),
    };
    for _ in 0..500 {
        enc.write(3, &cmd, &mut out);
    }
    let batch = out.take_all();
    s.set_write_timeout(Some(Duration::from_millis(1500)))
        .expect("write timeout");
    let start = Instant::now();
    let mut sent = 0usize;
    let mut peak = 0;
    let blocked = loop {
        match s.write(&batch) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break true
            }
            Err(e) => panic!("flooding connection failed after {sent} bytes: {e}"),
        }
        peak = peak.max(rss_kb(prism.pid()));
        if start.elapsed() > Duration::from_secs(6) {
            break false;
        }
    };
    peak = peak.max(rss_kb(prism.pid()));
    eprintln!(
        "[bad_input] flooding peer that never reads: sent {} KiB in {:?}, blocked: {blocked}, \
         prism peak RSS {peak} KiB",
        sent / 1024,
        start.elapsed()
    );
    assert!(
        peak < RSS_LIMIT_KB,
        "prism RSS reached {peak} KiB while a peer sent {sent} bytes without reading"
    );
    assert!(
        blocked,
        "prism kept reading {sent} bytes from a peer that never reads its replies"
    );
    sent
}

#[test]
fn hostile_input_is_closed_and_isolated() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    // No routes: nothing is pushed, the stream only serves players.
    let config = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\nhandshake_timeout_ms = {}\n\n\
         [http]\nlisten = \"127.0.0.1:{}\"\n\n\
         # Every hostile connection comes from 127.0.0.1; the per-address limit is\n\
         # tests/limits.rs' subject, not this test's.\n\
         [limits]\nmax_connections_per_ip = 1000\n",
        free_port(),
        HANDSHAKE_TIMEOUT.as_millis(),
        free_port()
    );
    let mut prism = Prism::start(&config);
    let addr = prism.rtmp_addr.expect("rtmp listen");
    let url = prism.rtmp_url("live", "healthy");
    let mut publisher = Publisher::start(&url, &clip, true);
    wait_until(Duration::from_secs(15), "publisher to start", || {
        ingest_bytes(&prism) > 0.0
    });
    let frames = decode_ok(&url, Duration::from_secs(30)).expect("player before the attacks");
    assert!(frames > 0);
    let rss_start = check_rss(&prism, "with the publisher streaming");
    eprintln!("[bad_input] setup done after {:?}", t0.elapsed());

    // ---- phase 1: hostile inputs, one connection each
    let proto_before = errors(&prism, "protocol");
    let timeout_before = errors(&prism, "handshake_timeout");
    let rtmpe_before = errors(&prism, "rtmpe_disabled");
    let cases = cases();
    let phase = Instant::now();
    for case in &cases {
        run_case(addr, case);
    }
    unknown_type_is_tolerated(addr);
    sender_that_never_reads(addr, &prism);
    eprintln!("[bad_input] hostile cases done in {:?}", phase.elapsed());

    let count = |e: Expect| cases.iter().filter(|c| c.expect == e).count() as f64;
    let closed = cases.len() as f64;
    // Counters are updated as connections end; allow a moment.
    wait_until(
        Duration::from_secs(3),
        "connection_errors_total to count every closure",
        || {
            let p = errors(&prism, "protocol") - proto_before;
            let t = errors(&prism, "handshake_timeout") - timeout_before;
            let r = errors(&prism, "rtmpe_disabled") - rtmpe_before;
            p + t + r >= closed
        },
    );
    let proto = errors(&prism, "protocol") - proto_before;
    let timeouts = errors(&prism, "handshake_timeout") - timeout_before;
    eprintln!("[bad_input] connection errors: protocol +{proto}, handshake_timeout +{timeouts}");
    assert!(
        proto >= count(Expect::Protocol),
        "protocol errors +{proto}, expected at least {}",
        count(Expect::Protocol)
    );
    assert!(
        timeouts >= count(Expect::HandshakeTimeout),
        "handshake timeouts +{timeouts}, expected at least {}",
        count(Expect::HandshakeTimeout)
    );
    let rtmpe = errors(&prism, "rtmpe_disabled") - rtmpe_before;
    assert_eq!(rtmpe, count(Expect::RtmpeDisabled), "RTMPE refusals");
    assert_eq!(
        proto + timeouts + rtmpe,
        closed,
        "every hostile connection counted once"
    );
    check_rss(&prism, "after the hostile inputs");
    assert_healthy(&mut prism, &mut publisher, "after the hostile inputs");

    // ---- phase 2: 200 connections holding half a handshake
    let timeout_before = errors(&prism, "handshake_timeout");
    let active_before = active_rtmp(&prism);
    let total_before = total_rtmp(&prism);
    let phase = Instant::now();
    let mut slowest_connect = Duration::ZERO;
    let mut half: Vec<(TcpStream, Instant)> = (0..200)
        .map(|i| {
            let t = Instant::now();
            let mut s = connect(addr);
            let opened = Instant::now();
            slowest_connect = slowest_connect.max(opened - t);
            let mut b = vec![3];
            b.extend(noise(100 + i, 100));
            s.write_all(&b).expect("write half handshake");
            (s, opened)
        })
        .collect();
    eprintln!(
        "[bad_input] 200 half handshakes opened in {:?} (slowest connect {slowest_connect:?})",
        phase.elapsed()
    );
    // Informational: how many were open at once (some may already have timed out if
    // opening them was slow on a loaded machine).
    let open_now = active_rtmp(&prism) - active_before;
    eprintln!("[bad_input] rtmp connections open right after: {open_now}");
    wait_until(
        Duration::from_secs(3),
        "prism to accept all 200 half-handshake connections",
        || total_rtmp(&prism) - total_before >= 200.0,
    );
    let rss_peak = check_rss(&prism, "with 200 half handshakes open");
    let mut latest = Duration::ZERO;
    for (s, opened) in &mut half {
        let took = wait_closed(s, *opened, HANDSHAKE_TIMEOUT + CLOSE_BOUND)
            .unwrap_or_else(|e| panic!("half-handshake connection: {e}"));
        assert!(
            took >= HANDSHAKE_TIMEOUT - Duration::from_millis(50),
            "half-handshake connection closed after {took:?}, before the timeout"
        );
        latest = latest.max(took);
    }
    drop(half);
    eprintln!(
        "[bad_input] all 200 closed; slowest after {latest:?}, phase took {:?}",
        phase.elapsed()
    );
    wait_until(
        Duration::from_secs(3),
        "200 handshake timeouts counted and connections_active back down",
        || {
            errors(&prism, "handshake_timeout") - timeout_before >= 200.0
                && active_rtmp(&prism) <= active_before
        },
    );
    assert_eq!(errors(&prism, "handshake_timeout") - timeout_before, 200.0);
    assert_eq!(total_rtmp(&prism) - total_before, 200.0);
    check_rss(&prism, "after the 200 half handshakes closed");
    assert_healthy(&mut prism, &mut publisher, "after the 200 half handshakes");

    // ---- the stream is still good for a fresh player
    let frames = decode_ok(&url, Duration::from_secs(30)).expect("player after the attacks");
    assert!(frames > 0);
    assert_healthy(&mut prism, &mut publisher, "at the end");
    let rss_end = check_rss(&prism, "at the end");
    eprintln!(
        "[bad_input] RSS start {rss_start} KiB, peak(200 conns) {rss_peak} KiB, end {rss_end} KiB; \
         total {:?}",
        t0.elapsed()
    );
}
