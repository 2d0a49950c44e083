//! Malformed input at every listening port of one running prism (issue 5, "Bad input"):
//! RTMP, RTMPS, RTMPT, RTMPTS and SRT, then a normal publish and play still work, memory
//! stayed bounded and the closures were counted per transport.
//!
//! The corpus is deterministic (fixed cases plus bytes from a seeded PRNG):
//! * RTMP, and the same again over RTMPS after a valid TLS handshake: garbage, half
//!   handshakes held open, bad C0, hostile chunk sizes and message lengths, partial chunk
//!   streams, malformed AMF0 (huge counts, deep nesting), commands before `connect` and
//!   out of order after it, random chunk streams after a valid handshake;
//! * RTMPS / RTMPTS at the TLS layer: nothing, plain RTMP or HTTP, random bytes, a
//!   truncated ClientHello held open, a record with a hostile length, a real ClientHello
//!   followed by garbage;
//! * RTMPT, and the same over RTMPTS: bad request lines, huge and too many headers, invalid
//!   Content-Length (non-numeric, negative, overflowing, conflicting, with chunked), broken
//!   chunked bodies, truncated bodies held open, unknown methods and paths, bodies to unknown
//!   sessions, /send without /open, pipelined junk, half requests held open, a session fed
//!   RTMP garbage, a session never polled, random bytes;
//! * SRT: random datagrams, truncated headers and handshakes, bad versions, garbled
//!   inductions, conclusions with overrunning / empty / duplicated / refused extensions,
//!   inductions held half-open (and more of them than the front takes at once).
//!
//! All cases run at once (one thread each), so the wall time is the slowest bound (the
//! tunnel's fixed 10 s TLS-handshake and header timeouts), not their sum.

mod common;

use bytes::BytesMut;
use common::srt::*;
use common::*;
use prism_amf0::Value;
use prism_rtmp::chunk::ChunkEncoder;
use prism_rtmp::handshake::ClientHandshake;
use prism_rtmp::message::{MessageType, RawMessage};
use prism_rtmp::OutQueue;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// `[rtmp]` / `[rtmps]` handshake timeout.
const HANDSHAKE_MS: u64 = 1000;
/// `[rtmp] idle_timeout_ms`: a connected session that publishes nothing is closed then.
const IDLE_MS: u64 = 2000;
/// `[rtmpt]` / `[rtmpts]` session timeout.
const SESSION_MS: u64 = 2000;
/// The tunnel's fixed TLS-handshake and request-header timeouts (prism-transport-rtmpt).
const TUNNEL_FIXED: Duration = Duration::from_secs(10);
/// Slack on a loaded machine for prism to act on a timeout or an error.
const SLACK: Duration = Duration::from_secs(4);
const RSS_LIMIT_KB: u64 = 150 * 1024;

// ---------------------------------------------------------------------------------------
// Deterministic bytes

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn noise(seed: u64, n: usize) -> Vec<u8> {
    Rng(seed).bytes(n)
}

// ---------------------------------------------------------------------------------------
// TLS

struct Pki {
    _dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Prism bad-input test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("self-sign CA");
        let key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params")
            .signed_by(&key, &ca)
            .expect("sign leaf");
        let dir = TempDir::new("bad-input-pki");
        let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&cert_path, leaf.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).expect("add CA");
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Pki {
            _dir: dir,
            cert: cert_path,
            key: key_path,
            client: Arc::new(client),
        }
    }

    fn connection(&self) -> rustls::ClientConnection {
        rustls::ClientConnection::new(self.client.clone(), "localhost".try_into().expect("name"))
            .expect("TLS client")
    }

    /// The bytes of a real ClientHello.
    fn client_hello(&self) -> Vec<u8> {
        let mut c = self.connection();
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).expect("write ClientHello");
        }
        out
    }
}

/// A plain or TLS client connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

fn tcp_connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Connects, over TLS (handshake completed) if `tls` is given.
fn open(addr: SocketAddr, tls: Option<&Pki>) -> Result<Conn, String> {
    let mut tcp = tcp_connect(addr)?;
    let Some(pki) = tls else {
        return Ok(Conn::Plain(tcp));
    };
    let mut c = pki.connection();
    while c.is_handshaking() {
        c.complete_io(&mut tcp)
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    }
    Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(c, tcp))))
}

/// Waits until the peer closes (EOF, reset or a TLS error), discarding what it sends.
/// Returns the time since `start`, or an error if still open at `start + limit`.
fn wait_closed(c: &mut Conn, start: Instant, limit: Duration) -> Result<Duration, String> {
    c.tcp()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match c.read(&mut buf) {
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

// ---------------------------------------------------------------------------------------
// RTMP bytes

fn amf(values: &[Value]) -> bytes::Bytes {
    let mut b = BytesMut::new();
    prism_amf0::encode_all(values, &mut b);
    b.freeze()
}

/// One message, chunked at the default chunk size of 128.
fn msg(csid: u32, type_id: u8, stream_id: u32, payload: impl Into<bytes::Bytes>) -> Vec<u8> {
    let mut enc = ChunkEncoder::new();
    let mut out = OutQueue::new();
    enc.write(
        csid,
        &RawMessage {
            timestamp: 0,
            type_id: MessageType(type_id),
            stream_id,
            payload: payload.into(),
        },
        &mut out,
    );
    out.take_all().to_vec()
}

fn command(stream_id: u32, name: &str, txn: f64, rest: &[Value]) -> Vec<u8> {
    let mut v = vec![Value::String(name.into()), Value::Number(txn), Value::Null];
    v.extend_from_slice(rest);
    msg(3, 20, stream_id, amf(&v))
}

fn connect_cmd() -> Vec<u8> {
    msg(
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

/// A protocol control message (csid 2, stream 0) with a 4-byte value.
fn control(type_id: u8, value: u32) -> Vec<u8> {
    let mut b = vec![0x02, 0, 0, 0, 0, 0, 4, type_id, 0, 0, 0, 0];
    b.extend_from_slice(&value.to_be_bytes());
    b
}

/// The client handshake (prism_rtmp's); returns once C2 is written.
fn rtmp_handshake(c: &mut Conn) -> Result<(), String> {
    let mut out = OutQueue::new();
    let mut hs = ClientHandshake::new([3; 32], 0, &mut out);
    c.write_all(&out.take_all()).map_err(|e| e.to_string())?;
    let mut input = BytesMut::new();
    let mut buf = [0u8; 8192];
    while !hs
        .handle_input(&mut input, &mut out)
        .map_err(|e| e.to_string())?
    {
        let n = c.read(&mut buf).map_err(|e| format!("read S0S1S2: {e}"))?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        input.extend_from_slice(&buf[..n]);
    }
    c.write_all(&out.take_all()).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// Bytes sent right after connecting.
    Raw,
    /// After a valid RTMP handshake.
    Handshaken,
    /// After the handshake and a valid `connect`.
    Connected,
}

struct RtmpCase {
    name: String,
    stage: Stage,
    bytes: Vec<u8>,
}

fn rtmp_corpus() -> Vec<RtmpCase> {
    let mut v = Vec::new();
    let mut add = |name: &str, stage: Stage, bytes: Vec<u8>| {
        v.push(RtmpCase {
            name: name.to_owned(),
            stage,
            bytes,
        })
    };
    // Before / during the handshake.
    add("nothing, held open", Stage::Raw, vec![]);
    add(
        "HTTP request",
        Stage::Raw,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    );
    for (i, len) in [1usize, 7, 100, 1537, 3073, 9000].into_iter().enumerate() {
        add(
            &format!("{len} random bytes"),
            Stage::Raw,
            noise(100 + i as u64, len),
        );
    }
    let mut half = vec![3];
    half.extend(noise(110, 700));
    add("C0 + 700 bytes of C1, held open", Stage::Raw, half);
    let mut bad_c2 = vec![3];
    bad_c2.extend(noise(111, 1536 * 2 + 500));
    add("C0 + C1 + garbage C2 + more", Stage::Raw, bad_c2);
    for ver in [0u8, 6, 0xFF] {
        let mut b = vec![ver];
        b.extend(noise(112 + ver as u64, 1536));
        add(&format!("C0 version {ver}"), Stage::Raw, b);
    }

    // After a valid handshake: the chunk layer.
    for n in [0u32, 1, 0x7FFF_FFFF, 0xFFFF_FFFF] {
        add(
            &format!("Set Chunk Size {n:#x}"),
            Stage::Handshaken,
            control(1, n),
        );
    }
    add("Window Ack Size 0", Stage::Handshaken, control(5, 0));
    add(
        "Abort on an unknown csid",
        Stage::Handshaken,
        control(2, 77),
    );
    let mut huge = vec![0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0];
    huge.extend(noise(120, 128));
    add(
        "16 MiB video message, never completed",
        Stage::Handshaken,
        huge,
    );
    let mut huge_cmd = vec![0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0];
    huge_cmd.extend(noise(121, 128));
    add("16 MiB command message", Stage::Handshaken, huge_cmd);
    add(
        "type 3 chunk on a fresh csid",
        Stage::Handshaken,
        vec![0xC9, 1, 2, 3, 4],
    );
    add(
        "type 1 chunk on a fresh csid",
        Stage::Handshaken,
        vec![0x4A, 0, 0, 0, 0, 0, 10, 9, 1, 2, 3],
    );
    let mut csid3 = vec![0x01, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 8, 0, 0, 0, 0];
    csid3.extend(noise(122, 128));
    add("3-byte csid 65599, 16 MiB", Stage::Handshaken, csid3);
    let mut ext_ts = vec![0x04, 0xFF, 0xFF, 0xFF, 0, 0, 200, 8, 1, 0, 0, 0];
    ext_ts.extend_from_slice(&[0xFF; 4]);
    ext_ts.extend(noise(123, 128));
    ext_ts.extend_from_slice(&[0xC4, 0, 0, 0, 0]);
    add(
        "extended timestamps, wrong continuation",
        Stage::Handshaken,
        ext_ts,
    );
    let mut many = Vec::new();
    for csid in 3u8..=63 {
        many.extend_from_slice(&[csid, 0, 0, 0, 0, 0x03, 0xE8, 9, 1, 0, 0, 0]);
        many.extend(noise(200 + csid as u64, 128));
    }
    add(
        "61 chunk streams each holding a partial message",
        Stage::Handshaken,
        many,
    );
    for i in 0..6u64 {
        let mut r = Rng(300 + i);
        let len = 16 + r.below(4000) as usize;
        add(
            &format!("random chunk stream #{i} ({len} bytes)"),
            Stage::Handshaken,
            r.bytes(len),
        );
    }

    // Malformed AMF0.
    let mut strict = amf(&[Value::String("connect".into()), Value::Number(1.0)]).to_vec();
    strict.extend_from_slice(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF]);
    add(
        "AMF0 strict array claiming 4G items",
        Stage::Handshaken,
        msg(3, 20, 0, strict),
    );
    let mut ecma = amf(&[Value::String("connect".into()), Value::Number(1.0)]).to_vec();
    ecma.extend_from_slice(&[0x08, 0xFF, 0xFF, 0xFF, 0xFF]);
    add(
        "AMF0 ECMA array claiming 4G items",
        Stage::Handshaken,
        msg(3, 20, 0, ecma),
    );
    let mut deep = amf(&[Value::String("connect".into()), Value::Number(1.0)]).to_vec();
    for _ in 0..20_000 {
        // An object whose first property "a" holds the next object.
        deep.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    add(
        "AMF0 objects nested 20000 deep",
        Stage::Handshaken,
        msg(3, 20, 0, deep),
    );
    let mut long_str = amf(&[Value::String("connect".into()), Value::Number(1.0)]).to_vec();
    long_str.extend_from_slice(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'x']);
    add(
        "AMF0 long string claiming 4 GiB",
        Stage::Handshaken,
        msg(3, 20, 0, long_str),
    );
    add(
        "AMF0 garbage command",
        Stage::Handshaken,
        msg(3, 20, 0, noise(130, 300)),
    );
    add(
        "AMF3 command with garbage",
        Stage::Handshaken,
        msg(3, 17, 0, noise(131, 300)),
    );
    add(
        "unknown message type 99",
        Stage::Handshaken,
        msg(3, 99, 0, noise(132, 300)),
    );

    // Commands before connect.
    let key = [Value::String("x".into())];
    add(
        "publish before connect",
        Stage::Handshaken,
        command(1, "publish", 5.0, &key),
    );
    add(
        "play before connect",
        Stage::Handshaken,
        command(1, "play", 5.0, &key),
    );
    add(
        "createStream before connect",
        Stage::Handshaken,
        command(0, "createStream", 2.0, &[]),
    );
    add(
        "deleteStream before connect",
        Stage::Handshaken,
        command(0, "deleteStream", 2.0, &[Value::Number(1.0)]),
    );
    add(
        "connect without a command object",
        Stage::Handshaken,
        msg(
            3,
            20,
            0,
            amf(&[Value::String("connect".into()), Value::Number(1.0)]),
        ),
    );

    // Out of order after connect.
    add("connect twice", Stage::Connected, connect_cmd());
    add(
        "publish on a stream never created",
        Stage::Connected,
        command(1, "publish", 5.0, &[Value::String("x".into())]),
    );
    add(
        "play on stream id 5, never created",
        Stage::Connected,
        command(5, "play", 5.0, &[Value::String("x".into())]),
    );
    add(
        "deleteStream 99 and FCUnpublish of nothing",
        Stage::Connected,
        [
            command(0, "deleteStream", 2.0, &[Value::Number(99.0)]),
            command(0, "FCUnpublish", 3.0, &[Value::String("x".into())]),
            command(0, "closeStream", 4.0, &[]),
        ]
        .concat(),
    );
    add(
        "200 createStream",
        Stage::Connected,
        (0..200)
            .flat_map(|i| command(0, "createStream", 2.0 + i as f64, &[]))
            .collect(),
    );
    add(
        "video on stream 0 before publish",
        Stage::Connected,
        msg(6, 9, 0, noise(140, 500)),
    );
    add(
        "publish with a 60 KB key",
        Stage::Connected,
        [
            command(0, "createStream", 2.0, &[]),
            command(1, "publish", 5.0, &[Value::String("k".repeat(60_000))]),
        ]
        .concat(),
    );
    v
}

/// One RTMP case on `addr`, over TLS if `tls`; the connection must be closed within its
/// stage's timeout + SLACK. Returns a line for the log.
fn run_rtmp_case(addr: SocketAddr, tls: Option<&Pki>, case: &RtmpCase) -> Result<String, String> {
    let mut c = open(addr, tls)?;
    let start = Instant::now();
    match case.stage {
        Stage::Raw => {}
        Stage::Handshaken => rtmp_handshake(&mut c)?,
        Stage::Connected => {
            rtmp_handshake(&mut c)?;
            c.write_all(&connect_cmd()).map_err(|e| e.to_string())?;
        }
    }
    // Prism may close before everything is written.
    let _ = c.write_all(&case.bytes);
    let _ = c.flush();
    let limit = Duration::from_millis(HANDSHAKE_MS.max(IDLE_MS)) + SLACK;
    let took = wait_closed(&mut c, start, limit)?;
    Ok(format!("closed after {took:.1?}"))
}

// ---------------------------------------------------------------------------------------
// TLS-layer cases (RTMPS and RTMPTS)

fn tls_corpus(pki: &Pki) -> Vec<(String, Vec<u8>)> {
    let hello = pki.client_hello();
    let mut hello_then_garbage = hello.clone();
    hello_then_garbage.extend(noise(400, 3000));
    let mut truncated = hello.clone();
    truncated.truncate(hello.len() / 2);
    let mut huge_record = vec![0x16, 0x03, 0x03, 0xFF, 0xFF];
    huge_record.extend(noise(401, 1000));
    let mut c0c1 = vec![3];
    c0c1.extend(noise(402, 1536));
    vec![
        ("nothing, held open".into(), vec![]),
        ("plain RTMP C0C1".into(), c0c1),
        (
            "plain HTTP".into(),
            b"POST /open/1 HTTP/1.1\r\nContent-Length: 1\r\n\r\n\0".to_vec(),
        ),
        ("random 64 bytes".into(), noise(403, 64)),
        ("random 5000 bytes".into(), noise(404, 5000)),
        ("half a ClientHello, held open".into(), truncated),
        ("record claiming 65535 bytes".into(), huge_record),
        ("ClientHello then garbage".into(), hello_then_garbage),
        (
            "alert record".into(),
            vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
        ),
    ]
}

fn run_tls_case(addr: SocketAddr, bytes: &[u8], limit: Duration) -> Result<String, String> {
    let mut c = Conn::Plain(tcp_connect(addr)?);
    let start = Instant::now();
    let _ = c.write_all(bytes);
    let took = wait_closed(&mut c, start, limit)?;
    Ok(format!("closed after {took:.1?}"))
}

// ---------------------------------------------------------------------------------------
// HTTP (RTMPT and RTMPTS)

/// Reads one response head (and its Content-Length body); `Ok(None)` if the connection
/// closed (or reset) before a status line.
fn read_response(c: &mut Conn, limit: Duration) -> Result<Option<(u16, Vec<u8>)>, String> {
    c.tcp()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let mut head: Option<(usize, usize, u16)> = None;
    loop {
        if let Some((end, len, status)) = head {
            if raw.len() >= end + len {
                return Ok(Some((status, raw[end..end + len].to_vec())));
            }
        }
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if head.is_none() {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
                let status = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad status line: {text:?}"))?;
                let len = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                head = Some((i + 4, len, status));
            }
        }
        if start.elapsed() > limit {
            return Err(format!(
                "no response and not closed after {:?} (got {:?})",
                start.elapsed(),
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            ));
        }
    }
    Ok(head.map(|(end, _, status)| (status, raw[end.min(raw.len())..].to_vec())))
}

/// A request that must get one of `allowed` statuses (0 = closed without a response).
struct HttpCase {
    name: &'static str,
    bytes: Vec<u8>,
    allowed: &'static [u16],
    /// How long prism may take: most answer at once, truncated bodies wait for the body
    /// timeout, half requests for the header timeout.
    limit: Duration,
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut b = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-fcs\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    b.extend_from_slice(body);
    b
}

fn http_corpus() -> Vec<HttpCase> {
    let now = SLACK;
    let slow = TUNNEL_FIXED + SLACK;
    let forged = "0123456789abcdef0123456789abcdef";
    let head = |extra: &str| -> Vec<u8> {
        format!("POST /open/1 HTTP/1.1\r\nHost: x\r\n{extra}\r\n\0").into_bytes()
    };
    let mut cases = vec![
        HttpCase {
            name: "garbage request line",
            bytes: b"\x16\x03GARBAGE \x00\xff\r\n\r\n".to_vec(),
            allowed: &[400, 0],
            limit: now,
        },
        HttpCase {
            name: "request line without version",
            bytes: b"POST /open/1\r\n\r\n".to_vec(),
            allowed: &[400, 0],
            limit: now,
        },
        HttpCase {
            name: "HTTP/9.9",
            bytes: b"POST /open/1 HTTP/9.9\r\nContent-Length: 1\r\n\r\n\0".to_vec(),
            allowed: &[400, 505, 0],
            limit: now,
        },
        HttpCase {
            name: "64 KB path",
            bytes: post(&format!("/idle/{}/1", "a".repeat(65_536)), b"\0"),
            allowed: &[400, 404, 414, 431, 0],
            limit: now,
        },
        HttpCase {
            name: "1 MB header",
            bytes: head(&format!("X-Big: {}\r\nContent-Length: 1\r\n", "b".repeat(1 << 20))),
            allowed: &[400, 431, 0],
            limit: now,
        },
        HttpCase {
            name: "500 headers",
            bytes: head(&format!(
                "{}Content-Length: 1\r\n",
                (0..500).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
            )),
            allowed: &[400, 431, 0],
            limit: now,
        },
        HttpCase {
            name: "Content-Length: abc",
            bytes: head("Content-Length: abc\r\n"),
            allowed: &[400, 0],
            limit: now,
        },
        HttpCase {
            name: "Content-Length: -1",
            bytes: head("Content-Length: -1\r\n"),
            allowed: &[400, 0],
            limit: now,
        },
        HttpCase {
            name: "Content-Length overflowing u64",
            bytes: head("Content-Length: 99999999999999999999999\r\n"),
            allowed: &[400, 413, 0],
            limit: now,
        },
        HttpCase {
            name: "two different Content-Lengths",
            bytes: head("Content-Length: 1\r\nContent-Length: 5\r\n"),
            allowed: &[400, 0],
            limit: now,
        },
        HttpCase {
            name: "Content-Length and chunked, to an unknown session",
            bytes: format!(
                "POST /send/{forged}/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\
                 Transfer-Encoding: chunked\r\n\r\n1\r\n\0\r\n0\r\n\r\n"
            )
            .into_bytes(),
            allowed: &[400, 404, 0],
            limit: now,
        },
        HttpCase {
            name: "broken chunked body",
            bytes: b"POST /open/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n"
                .to_vec(),
            allowed: &[400, 0],
            limit: now,
        },
        HttpCase {
            name: "body shorter than Content-Length, held open",
            bytes: b"POST /open/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc".to_vec(),
            allowed: &[400, 408, 0],
            limit: slow,
        },
        HttpCase {
            name: "unknown method",
            bytes: b"BREW /open/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_vec(),
            allowed: &[404, 405, 0],
            limit: now,
        },
        HttpCase {
            name: "GET /",
            bytes: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            allowed: &[404, 405],
            limit: now,
        },
        HttpCase {
            name: "/send to an unknown session",
            bytes: post(&format!("/send/{forged}/1"), &noise(500, 1500)),
            allowed: &[404],
            limit: now,
        },
        HttpCase {
            name: "/idle of an unknown session",
            bytes: post(&format!("/idle/{forged}/1"), b"\0"),
            allowed: &[404],
            limit: now,
        },
        HttpCase {
            name: "/close of an unknown session",
            bytes: post(&format!("/close/{forged}/1"), b"\0"),
            allowed: &[404],
            limit: now,
        },
        HttpCase {
            name: "/send without an id",
            bytes: post("/send/", &noise(501, 100)),
            allowed: &[404],
            limit: now,
        },
        HttpCase {
            name: "/send with a 30-digit index",
            bytes: post(&format!("/send/{forged}/{}", "9".repeat(30)), b"\0"),
            allowed: &[404],
            limit: now,
        },
        HttpCase {
            name: "/open with path traversal",
            bytes: post("/open/../../etc/passwd", b"\0"),
            allowed: &[404],
            limit: now,
        },
        HttpCase {
            name: "pipelined junk after a valid request",
            bytes: [
                post("/fcs/ident2", b"\0"),
                b"\x00\x01\x02 junk \xff\r\n\r\n".to_vec(),
            ]
            .concat(),
            allowed: &[404],
            limit: now,
        },
        HttpCase {
            name: "nothing, held open",
            bytes: vec![],
            allowed: &[408, 0],
            limit: slow,
        },
        HttpCase {
            name: "half request line, held open",
            bytes: b"POST /open/1 HT".to_vec(),
            allowed: &[408, 0],
            limit: slow,
        },
        HttpCase {
            name: "headers never finished, held open",
            bytes: b"POST /open/1 HTTP/1.1\r\nHost: x\r\nContent-Len".to_vec(),
            allowed: &[408, 0],
            limit: slow,
        },
    ];
    for i in 0..4u64 {
        let mut r = Rng(600 + i);
        let len = 1 + r.below(3000) as usize;
        cases.push(HttpCase {
            name: [
                "random bytes #0",
                "random bytes #1",
                "random bytes #2",
                "random bytes #3",
            ][i as usize],
            bytes: r.bytes(len),
            allowed: &[400, 0],
            limit: slow,
        });
    }
    cases
}

fn run_http_case(addr: SocketAddr, tls: Option<&Pki>, case: &HttpCase) -> Result<String, String> {
    let mut c = open(addr, tls)?;
    let start = Instant::now();
    let _ = c.write_all(&case.bytes);
    let _ = c.flush();
    let status = read_response(&mut c, case.limit)?.map_or(0, |(s, _)| s);
    if !case.allowed.contains(&status) {
        return Err(format!(
            "answered {status}, expected one of {:?} (0 = closed)",
            case.allowed
        ));
    }
    // Whatever prism answered, a malformed connection must not stay open for long: it
    // closes it, or (keep-alive after a well-formed 4xx) it is idle like any other.
    Ok(format!("answered {status} after {:.1?}", start.elapsed()))
}

/// One request on a fresh connection; (status, body).
fn request(addr: SocketAddr, tls: Option<&Pki>, bytes: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut c = open(addr, tls)?;
    c.write_all(bytes).map_err(|e| e.to_string())?;
    read_response(&mut c, SLACK)?.ok_or_else(|| "closed without a response".to_owned())
}

fn open_session(addr: SocketAddr, tls: Option<&Pki>) -> Result<String, String> {
    let (status, body) = request(addr, tls, &post("/open/1", b"\0"))?;
    if status != 200 {
        return Err(format!("/open answered {status}"));
    }
    Ok(String::from_utf8_lossy(&body).trim().to_owned())
}

/// A session fed RTMP garbage: its RTMP side fails, and the session goes (404).
fn session_fed_garbage(addr: SocketAddr, tls: Option<&Pki>) -> Result<String, String> {
    let id = open_session(addr, tls)?;
    let start = Instant::now();
    let (status, _) = request(
        addr,
        tls,
        &post(&format!("/send/{id}/1"), &noise(700, 3000)),
    )?;
    if status != 200 && status != 404 {
        return Err(format!("/send answered {status}"));
    }
    for i in 2.. {
        let (status, _) = request(addr, tls, &post(&format!("/idle/{id}/{i}"), b"\0"))?;
        if status == 404 {
            return Ok(format!("session gone after {:.1?}", start.elapsed()));
        }
        if start.elapsed() > Duration::from_millis(HANDSHAKE_MS) + SLACK {
            return Err(format!(
                "session still answering {status} after {:?}",
                start.elapsed()
            ));
        }
        thread::sleep(Duration::from_millis(200));
    }
    unreachable!()
}

/// A session opened and never polled expires.
fn session_never_polled(addr: SocketAddr, tls: Option<&Pki>) -> Result<String, String> {
    let id = open_session(addr, tls)?;
    thread::sleep(Duration::from_millis(SESSION_MS) + SLACK);
    match request(addr, tls, &post(&format!("/idle/{id}/1"), b"\0"))? {
        (404, _) => Ok("expired".into()),
        (s, _) => Err(format!("still there ({s}) after the session timeout")),
    }
}

/// A /send bigger than max_body_bytes to a real session: 413.
fn body_too_large(addr: SocketAddr, tls: Option<&Pki>) -> Result<String, String> {
    let id = open_session(addr, tls)?;
    let head =
        format!("POST /send/{id}/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000000\r\n\r\n");
    match request(addr, tls, head.as_bytes())? {
        (413, _) => Ok("413".into()),
        (s, _) => Err(format!("answered {s}")),
    }
}

// ---------------------------------------------------------------------------------------
// SRT

fn srt_header(ctype: u16, subtype: u16, dest: u32) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(0x8000 | ctype).to_be_bytes());
    p.extend_from_slice(&subtype.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&dest.to_be_bytes());
    p
}

/// A handshake packet: version, encryption field, extension field, handshake type.
fn srt_handshake(version: u32, enc: u16, ext: u16, shake: i32, socket_id: u32) -> Vec<u8> {
    let mut p = srt_header(0, 0, 0);
    p.extend_from_slice(&version.to_be_bytes());
    p.extend_from_slice(&enc.to_be_bytes());
    p.extend_from_slice(&ext.to_be_bytes());
    p.extend_from_slice(&12345u32.to_be_bytes()); // initial sequence number
    p.extend_from_slice(&1500u32.to_be_bytes()); // MTU
    p.extend_from_slice(&8192u32.to_be_bytes()); // flow window
    p.extend_from_slice(&shake.to_be_bytes());
    p.extend_from_slice(&socket_id.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // cookie
    p.extend_from_slice(&[127, 0, 0, 1]);
    p.extend_from_slice(&[0; 12]);
    p
}

fn induction(socket_id: u32) -> Vec<u8> {
    srt_handshake(4, 0, 2, 1, socket_id)
}

/// An HSv5 conclusion with the given extension blocks (type, content).
fn conclusion(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut p = srt_handshake(5, 0, 0x0001 | 0x0004, -1, 0x1234);
    for (kind, body) in exts {
        p.extend_from_slice(&kind.to_be_bytes());
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(body);
    }
    p
}

fn hsreq() -> (u16, Vec<u8>) {
    // SRT version 1.4.0, flags, latencies.
    (1, vec![0, 1, 4, 0, 0, 0, 0, 0xBF, 0, 120, 0, 120])
}

/// What the caller should hear back.
#[derive(Clone, Copy, PartialEq)]
enum SrtExpect {
    /// Nothing (dropped, or forwarded to no session).
    Silence,
    /// A handshake answer (induction response).
    Answer,
    /// A handshake rejection.
    Reject,
    /// Whatever (garbled packets the library may or may not answer): only no crash.
    Any,
}

struct SrtCase {
    name: String,
    packets: Vec<Vec<u8>>,
    expect: SrtExpect,
}

fn srt_corpus() -> Vec<SrtCase> {
    let mut v = Vec::new();
    let mut add = |name: &str, packets: Vec<Vec<u8>>, expect: SrtExpect| {
        v.push(SrtCase {
            name: name.to_owned(),
            packets,
            expect,
        })
    };
    let mut r = Rng(800);
    let randoms: Vec<Vec<u8>> = (0..40)
        .map(|_| {
            let n = r.below(1500) as usize;
            r.bytes(n)
        })
        .collect();
    add("40 random datagrams", randoms, SrtExpect::Silence);
    add(
        "truncated headers (0..15 bytes)",
        (0..16).map(|n| noise(801, n)).collect(),
        SrtExpect::Silence,
    );
    let hs = induction(0xABCD);
    add(
        "handshakes truncated to 16..63 bytes",
        (16..64).step_by(4).map(|n| hs[..n].to_vec()).collect(),
        SrtExpect::Silence,
    );
    for ver in [0u32, 3, 6, 0xFFFF_FFFF] {
        add(
            &format!("handshake version {ver:#x}"),
            vec![srt_handshake(ver, 0, 2, 1, 0x77)],
            SrtExpect::Silence,
        );
    }
    add(
        "data packets to no session",
        (0..10)
            .map(|i| noise(810 + i, 200))
            .map(|mut p| {
                p[0] &= 0x7F;
                p
            })
            .collect(),
        SrtExpect::Silence,
    );
    add(
        "shutdown, keepalive, ACK, NAK from a stranger",
        [5u16, 1, 2, 3]
            .iter()
            .map(|&t| {
                let mut p = srt_header(t, 0, 99);
                p.extend(noise(820 + t as u64, 16));
                p
            })
            .collect(),
        SrtExpect::Silence,
    );
    add(
        "user control with unknown or short extensions",
        [(0x7fff, 9u16, 12usize), (0x7fff, 3, 3), (0x7fff, 1, 2)]
            .iter()
            .map(|&(t, sub, n)| {
                let mut p = srt_header(t, sub, 0);
                p.extend(noise(830, n));
                p
            })
            .collect(),
        SrtExpect::Silence,
    );
    // Conclusions the front must refuse (each from its own socket).
    add(
        "conclusion without HSREQ",
        vec![conclusion(&[])],
        SrtExpect::Reject,
    );
    add(
        "conclusion, extension longer than the packet",
        vec![{
            let mut p = conclusion(&[hsreq()]);
            p.extend_from_slice(&[0, 5, 0xFF, 0xFF, b'#', b'!']);
            p
        }],
        SrtExpect::Reject,
    );
    add(
        "conclusion, 3 trailing bytes",
        vec![{
            let mut p = conclusion(&[hsreq()]);
            p.extend_from_slice(&[0, 5, 0]);
            p
        }],
        SrtExpect::Reject,
    );
    add(
        "conclusion, empty stream id",
        vec![conclusion(&[hsreq(), (5, vec![])])],
        SrtExpect::Reject,
    );
    add(
        "conclusion, two HSREQ",
        vec![conclusion(&[hsreq(), hsreq()])],
        SrtExpect::Reject,
    );
    add(
        "conclusion, congestion extension",
        vec![conclusion(&[hsreq(), (6, b"file".to_vec())])],
        SrtExpect::Reject,
    );
    add(
        "conclusion, garbage key material",
        vec![conclusion(&[hsreq(), (3, noise(840, 24))])],
        SrtExpect::Reject,
    );
    add(
        "conclusion, unknown extension type",
        vec![conclusion(&[hsreq(), (0x4242, noise(841, 8))])],
        SrtExpect::Reject,
    );
    add(
        "conclusion, group extension",
        vec![conclusion(&[hsreq(), (8, noise(842, 8))])],
        SrtExpect::Reject,
    );
    // Garbled inductions: version / type fields intact or not, never a crash.
    let mut r = Rng(850);
    let garbled: Vec<Vec<u8>> = (0..20)
        .map(|_| {
            let mut p = induction(0x5555);
            for _ in 0..4 {
                let at = 16 + r.below(48) as usize;
                if !(16..20).contains(&at) && !(36..40).contains(&at) {
                    p[at] = r.next() as u8;
                }
            }
            p
        })
        .collect();
    add("garbled inductions", garbled, SrtExpect::Any);
    add(
        "induction, then nothing (half handshake)",
        vec![induction(0x6666)],
        SrtExpect::Answer,
    );
    v
}

/// Sends the case from a fresh socket; checks the answers.
fn run_srt_case(addr: SocketAddr, case: &SrtCase) -> Result<String, String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    for p in &case.packets {
        sock.send_to(p, addr).map_err(|e| e.to_string())?;
    }
    let deadline = Instant::now()
        + match case.expect {
            SrtExpect::Silence | SrtExpect::Any => Duration::from_millis(500),
            _ => SLACK,
        };
    let mut buf = [0u8; 2048];
    let mut answers = Vec::new();
    let mut last_sent = Instant::now();
    while Instant::now() < deadline {
        // Callers repeat an unanswered handshake every 250 ms (libsrt does); so do we.
        if case.expect == SrtExpect::Answer
            && answers.is_empty()
            && last_sent.elapsed() >= Duration::from_millis(250)
        {
            for p in &case.packets {
                sock.send_to(p, addr).map_err(|e| e.to_string())?;
            }
            last_sent = Instant::now();
        }
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                answers.push(buf[..n].to_vec());
                if case.expect != SrtExpect::Silence {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    // The handshake type of an answer: 1 = induction response, >= 1000 = rejection.
    let shake = |p: &[u8]| -> Option<i32> {
        (p.len() >= 40 && p[0] == 0x80 && p[1] == 0)
            .then(|| i32::from_be_bytes(p[36..40].try_into().expect("4 bytes")))
    };
    match case.expect {
        SrtExpect::Any => Ok(format!("{} answers", answers.len())),
        SrtExpect::Silence if answers.is_empty() => Ok("no answer".into()),
        SrtExpect::Silence => Err(format!(
            "{} answers to packets that deserve none",
            answers.len()
        )),
        SrtExpect::Answer => match answers.first().and_then(|p| shake(p)) {
            Some(1) => Ok("induction answered".into()),
            // The 80-induction flood runs at the same time and may hold every handshake slot:
            // a backlog rejection (REJ_BACKLOG) is an answer too.
            Some(1005) => Ok("refused: handshake backlog full".into()),
            other => Err(format!("expected an induction response, got {other:?}")),
        },
        SrtExpect::Reject => match answers.first().and_then(|p| shake(p)) {
            Some(code) if code >= 1000 => Ok(format!("rejected with {code}")),
            other => Err(format!("expected a rejection, got {other:?}")),
        },
    }
}

/// 80 callers send an induction each and never conclude: more than the front keeps
/// handshaking at once. Returns (answered, rejected).
fn induction_flood(addr: SocketAddr) -> Result<String, String> {
    let socks: Vec<UdpSocket> = (0..80)
        .map(|_| UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    for (i, s) in socks.iter().enumerate() {
        s.send_to(&induction(0x1000 + i as u32), addr)
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
    }
    let deadline = Instant::now() + SLACK;
    let (mut answered, mut rejected) = (0, 0);
    let mut pending: Vec<(usize, &UdpSocket)> = socks.iter().enumerate().collect();
    let mut buf = [0u8; 2048];
    let mut last_sent = Instant::now();
    while !pending.is_empty() && Instant::now() < deadline {
        // Unanswered callers repeat their induction every 250 ms, as libsrt does.
        if last_sent.elapsed() >= Duration::from_millis(250) {
            for (i, s) in &pending {
                s.send_to(&induction(0x1000 + *i as u32), addr)
                    .map_err(|e| e.to_string())?;
            }
            last_sent = Instant::now();
        }
        pending.retain(|(_, s)| match s.recv_from(&mut buf) {
            Ok((n, _)) if n >= 40 => {
                let t = i32::from_be_bytes(buf[36..40].try_into().expect("4 bytes"));
                if t >= 1000 {
                    rejected += 1;
                } else {
                    answered += 1;
                }
                false
            }
            _ => true,
        });
    }
    // Each caller is answered or refused; none is silently ignored.
    if !pending.is_empty() {
        return Err(format!(
            "{} of 80 inductions unanswered ({answered} answered, {rejected} refused)",
            pending.len()
        ));
    }
    Ok(format!("{answered} answered, {rejected} refused"))
}

// ---------------------------------------------------------------------------------------

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read /proc/<pid>/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// `prism_connection_errors_total` samples of `transport`, as "reason=N" pairs.
fn errors_by_reason(metrics: &str, transport: &str) -> Vec<(String, f64)> {
    let tag = format!("transport=\"{transport}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("prism_connection_errors_total{") && l.contains(&tag))
        .filter_map(|l| {
            let reason = l.split("reason=\"").nth(1)?.split('"').next()?.to_owned();
            let v = l.rsplit(' ').next()?.parse().ok()?;
            Some((reason, v))
        })
        .collect()
}

type Job = Box<dyn FnOnce() -> Result<String, String> + Send>;

#[test]
fn malformed_input_on_every_port() {
    let t0 = Instant::now();
    let pki = Arc::new(Pki::new());
    let (rtmp, rtmps, rtmpt, rtmpts, srt, http) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_udp_port(),
        free_port(),
    );
    let (cert, key) = (pki.cert.display(), pki.key.display());
    let mut prism = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\nhandshake_timeout_ms = {HANDSHAKE_MS}\n\
         idle_timeout_ms = {IDLE_MS}\n\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [rtmps]\nlisten = \"127.0.0.1:{rtmps}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         handshake_timeout_ms = {HANDSHAKE_MS}\n\n\
         [rtmpt]\nlisten = \"127.0.0.1:{rtmpt}\"\nsession_timeout_ms = {SESSION_MS}\n\
         max_body_bytes = 1048576\n\n\
         [rtmpts]\nlisten = \"127.0.0.1:{rtmpts}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
         session_timeout_ms = {SESSION_MS}\nmax_body_bytes = 1048576\n\n\
         [srt]\nlisten = \"127.0.0.1:{srt}\"\nlatency_ms = 120\n\n\
         [limits]\nmax_connections_per_ip = 1000\n"
    ));
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    for p in [rtmps, rtmpt, rtmpts] {
        wait_port(addr(p), Duration::from_secs(5));
    }
    let pid = prism.pid();
    let rss_start = rss_kb(pid);

    // ---- the corpus, every case on its own thread
    let mut jobs: Vec<(String, Job)> = Vec::new();
    for (port, transport, tls) in [(rtmp, "rtmp", false), (rtmps, "rtmps", true)] {
        for case in rtmp_corpus() {
            let pki = pki.clone();
            jobs.push((
                format!("{transport}: {}", case.name),
                Box::new(move || run_rtmp_case(addr(port), tls.then_some(&*pki), &case)),
            ));
        }
    }
    for (port, transport, limit) in [
        (rtmps, "rtmps", Duration::from_millis(HANDSHAKE_MS) + SLACK),
        (rtmpts, "rtmpts", TUNNEL_FIXED + SLACK),
    ] {
        for (name, bytes) in tls_corpus(&pki) {
            jobs.push((
                format!("{transport} TLS layer: {name}"),
                Box::new(move || run_tls_case(addr(port), &bytes, limit)),
            ));
        }
    }
    for (port, transport, tls) in [(rtmpt, "rtmpt", false), (rtmpts, "rtmpts", true)] {
        for case in http_corpus() {
            let pki = pki.clone();
            jobs.push((
                format!("{transport}: {}", case.name),
                Box::new(move || run_http_case(addr(port), tls.then_some(&*pki), &case)),
            ));
        }
        type Scenario = fn(SocketAddr, Option<&Pki>) -> Result<String, String>;
        let scenarios: [(&str, Scenario); 3] = [
            ("session fed RTMP garbage", session_fed_garbage),
            ("session never polled", session_never_polled),
            ("4 GB body to a real session", body_too_large),
        ];
        for (name, f) in scenarios {
            let pki = pki.clone();
            jobs.push((
                format!("{transport}: {name}"),
                Box::new(move || f(addr(port), tls.then_some(&*pki))),
            ));
        }
    }
    for case in srt_corpus() {
        jobs.push((
            format!("srt: {}", case.name),
            Box::new(move || run_srt_case(addr(srt), &case)),
        ));
    }
    jobs.push((
        "srt: 80 inductions never concluded".into(),
        Box::new(move || induction_flood(addr(srt))),
    ));

    let n_jobs = jobs.len();
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|(name, job)| {
            let h = thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(job)
                .expect("spawn case thread");
            (name, h)
        })
        .collect();
    // Peak memory while the corpus runs.
    let mut rss_peak = rss_start;
    while handles.iter().any(|(_, h)| !h.is_finished()) {
        rss_peak = rss_peak.max(rss_kb(pid));
        assert!(prism.try_wait().is_none(), "prism exited under the corpus");
        thread::sleep(Duration::from_millis(100));
    }
    let mut failures = Vec::new();
    for (name, h) in handles {
        match h.join() {
            Ok(Ok(line)) => eprintln!("[bad_input_all_ports] {name:<70} {line}"),
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(_) => failures.push(format!("{name}: panicked")),
        }
    }
    let corpus_took = t0.elapsed();
    eprintln!("[bad_input_all_ports] {n_jobs} cases in {corpus_took:?}");
    assert!(
        failures.is_empty(),
        "{} of {n_jobs} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(prism.try_wait().is_none(), "prism exited");

    // ---- every hostile connection is gone and was counted, per transport
    wait_until(
        Duration::from_secs(10),
        "no client connection left open",
        || {
            let m = prism.metrics();
            ["rtmp", "rtmps", "rtmpt", "rtmpts", "srt"].iter().all(|t| {
                metric_value_in(
                    &m,
                    &format!("prism_connections_active{{transport=\"{t}\"}}"),
                )
                .unwrap_or(0.0)
                    == 0.0
            })
        },
    );
    let m = prism.metrics();
    let rtmp_cases = rtmp_corpus().len() as f64;
    let tls_cases = tls_corpus(&pki).len() as f64;
    // Requests the HTTP parser refuses before the tunnel sees them (bad request line, 414,
    // 431, invalid Content-Length, header timeout) count too, one each.
    let hyper_refused = http_corpus()
        .iter()
        .filter(|c| !c.allowed.iter().any(|s| [404, 405, 408].contains(s)))
        .count() as f64;
    // Lower bounds: the cases that must each count at least one error.
    let expected = [
        // The 60 KB key is refused as a bad name (a publish refusal, counted below), not as
        // a connection error.
        ("rtmp", rtmp_cases - 1.0),
        ("rtmps", rtmp_cases - 1.0 + tls_cases),
        // 404s (5 per corpus + the garbage session's last poll + the expired session's),
        // 413, session_timeout, and the garbage session's RTMP side.
        ("rtmpt", 8.0 + hyper_refused),
        ("rtmpts", 8.0 + hyper_refused + tls_cases),
        // The rejected conclusions.
        ("srt", 9.0),
    ];
    let bad_names = metric_value_in(&m, "prism_publish_rejected_total{reason=\"bad_name\"}");
    assert!(
        bad_names >= Some(2.0),
        "the 60 KB keys (rtmp and rtmps) were not refused as bad names: {bad_names:?}"
    );
    for (t, min) in expected {
        let by_reason = errors_by_reason(&m, t);
        let total: f64 = by_reason.iter().map(|(_, v)| v).sum();
        eprintln!("[bad_input_all_ports] errors {t}: {total} {by_reason:?}");
        assert!(
            total >= min,
            "prism_connection_errors_total{{transport=\"{t}\"}} = {total}, expected >= {min}: \
             {by_reason:?}"
        );
    }

    // ---- still healthy: publish over RTMP, play over RTMP and SRT
    assert!(
        matches!(prism.http_get("/healthz"), Ok((200, _))),
        "healthz"
    );
    let clip = make_clip(5);
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "after"), &clip, true);
    wait_until(Duration::from_secs(15), "publish after the corpus", || {
        prism
            .metric_value("prism_ingest_frames_total{kind=\"video\",stream=\"live/after\"}")
            .is_some_and(|v| v > 25.0)
    });
    let rtmp_frames = decode_ok(&prism.rtmp_url("live", "after"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("RTMP play after the corpus: {e}"));
    let srt_frames = decode_ok(
        &srt_url(srt, "#!::r=live/after,m=request", ""),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("SRT play after the corpus: {e}"));
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    publisher.stop();
    assert!(
        matches!(prism.http_get("/healthz"), Ok((200, _))),
        "healthz"
    );

    let rss_end = rss_kb(pid);
    eprintln!(
        "[bad_input_all_ports] decoded {rtmp_frames} frames over rtmp, {srt_frames} over srt; \
         RSS start {rss_start} KiB, peak {rss_peak} KiB, end {rss_end} KiB; corpus {corpus_took:?}, \
         total {:?}",
        t0.elapsed()
    );
    assert!(
        rss_peak < RSS_LIMIT_KB && rss_end < RSS_LIMIT_KB,
        "RSS peak {rss_peak} KiB, end {rss_end} KiB, limit {RSS_LIMIT_KB} KiB"
    );
}
