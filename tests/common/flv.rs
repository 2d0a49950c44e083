//! FLV tags of a file and a publisher on prism-rtmp's `ClientSession`, for tests that
//! send exactly the timestamps and payloads they choose.

use bytes::{Bytes, BytesMut};
use prism_rtmp::session::{ClientConfig, ClientSession, MediaKind, SessionConfig};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One FLV tag: kind, timestamp (ms), body.
pub struct Tag {
    pub kind: MediaKind,
    pub timestamp: u32,
    pub body: Bytes,
}

/// The tags of an FLV file: a 9-byte header, then (previous tag size, tag)*.
pub fn flv_tags(file: &[u8]) -> Vec<Tag> {
    assert_eq!(&file[..3], b"FLV", "not an FLV file");
    let header_len = u32::from_be_bytes(file[5..9].try_into().unwrap()) as usize;
    let mut at = header_len + 4;
    let mut tags = Vec::new();
    while at + 11 <= file.len() {
        let h = &file[at..at + 11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let kind = match h[0] & 0x1f {
            8 => MediaKind::Audio,
            9 => MediaKind::Video,
            18 => MediaKind::Data,
            other => panic!("unexpected FLV tag type {other}"),
        };
        let body_at = at + 11;
        if body_at + size > file.len() {
            break;
        }
        tags.push(Tag {
            kind,
            timestamp,
            body: Bytes::copy_from_slice(&file[body_at..body_at + size]),
        });
        at = body_at + size + 4;
    }
    tags
}

/// Connects, handshakes and publishes `app/key` with a `ClientSession`.
pub fn publish(addr: std::net::SocketAddr, app: &str, key: &str) -> (TcpStream, ClientSession) {
    let mut tcp = TcpStream::connect(addr).expect("connect to prism");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut session = ClientSession::new(
        ClientConfig {
            app: app.into(),
            tc_url: format!("rtmp://{addr}/{app}"),
            key: key.into(),
            session: SessionConfig::default(),
        },
        [7; 32],
        0,
        Instant::now(),
    );
    let mut input = BytesMut::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = session.out().take_all();
        tcp.write_all(&out).expect("write to prism");
        if session.is_publishing() {
            return (tcp, session);
        }
        assert!(Instant::now() < deadline, "publish did not complete");
        let n = tcp.read(&mut buf).expect("read from prism");
        assert!(n > 0, "prism closed the connection during set-up");
        input.extend_from_slice(&buf[..n]);
        session
            .handle_input(&mut input, Instant::now())
            .expect("RTMP from prism");
        while session.poll_event().is_some() {}
    }
}
