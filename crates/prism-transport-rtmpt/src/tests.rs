//! Requests handled in memory: no sockets, the tunnel's `handle` called with hyper requests,
//! the RTMP session behind it real.

use super::*;
use bytes::Buf;
use hyper::body::Frame;
use prism_config::Config;
use prism_metrics::Metrics;
use prism_rtmp::session::{ClientConfig, ClientSession, MediaKind, SessionConfig};
use std::pin::Pin;
use std::task::Context;

const PEER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    40000,
));

fn config(max_sessions: usize, timeout_ms: u64, max_body: usize) -> TunnelConfig {
    TunnelConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        max_sessions,
        session_timeout: Duration::from_millis(timeout_ms),
        max_body_bytes: max_body,
        max_buffer_bytes: 1024 * 1024,
    }
}

fn tunnel(c: &TunnelConfig) -> Tunnel {
    let relay = Relay::new(Config::default(), Metrics::new(), vec![], vec![]);
    Tunnel::new(c, RTMPT, relay)
}

fn post(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/x-fcs")
        .body(Full::new(body.into()))
        .expect("request")
}

async fn body(resp: Response<Full<Bytes>>) -> (StatusCode, Bytes) {
    let status = resp.status();
    let b = resp.into_body().collect().await.expect("body").to_bytes();
    (status, b)
}

async fn call(t: &Tunnel, path: &str, b: impl Into<Bytes>) -> (StatusCode, Bytes) {
    body(t.handle(post(path, b), PEER).await).await
}

async fn open(t: &Tunnel) -> String {
    let (status, b) = call(t, "/open/1", &b"\0"[..]).await;
    assert_eq!(status, StatusCode::OK);
    let text = std::str::from_utf8(&b).expect("utf-8 id");
    let id = text.strip_suffix('\n').expect("id ends with a newline");
    assert_eq!(id.len(), 32, "{text:?}");
    id.to_owned()
}

fn errors(t: &Tunnel, reason: ErrorReason) -> u64 {
    t.shared.relay.connection_error(RTMPT, reason).get()
}

fn active(t: &Tunnel) -> i64 {
    t.shared.relay.connection_metrics(RTMPT).active.get()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn ident2_is_not_found_and_headers_are_the_tunnels() {
    let t = tunnel(&config(10, 15_000, 1024));
    let resp = t.handle(post("/fcs/ident2", &b"\0"[..]), PEER).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.headers()[CACHE_CONTROL], "no-cache");
    assert_eq!(resp.headers()[CONNECTION], "Keep-Alive");
    let (status, b) = call(&t, "/fcs/ident", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(b.starts_with(b"<fcs>"));
    // Neither is an error nor opens anything.
    assert_eq!(errors(&t, ErrorReason::BadRequest), 0);
    assert_eq!(t.sessions(), 0);
}

#[tokio::test]
async fn not_rtmpt_requests() {
    let t = tunnel(&config(10, 15_000, 1024));
    let get = Request::builder()
        .uri("/open/1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(
        t.handle(get, PEER).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(call(&t, "/metrics", "").await.0, StatusCode::NOT_FOUND);
    assert_eq!(errors(&t, ErrorReason::BadRequest), 2);
    assert_eq!(t.sessions(), 0);
}

#[tokio::test]
async fn open_starts_an_rtmp_session_and_handshake_bytes_cross() {
    let t = tunnel(&config(10, 15_000, 1024 * 1024));
    let id = open(&t).await;
    wait_for("connections_active = 1", || active(&t) == 1).await;

    // C0 + C1 (simple handshake); the reply (or the polls after it) carries S0 S1 S2.
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0u8, 1536));
    let (status, first) = call(&t, &format!("/send/{id}/0"), c0c1).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!first.is_empty(), "a reply always has the interval byte");
    let mut got = first.slice(1..).to_vec();
    // ffmpeg's sequence numbers start at 0, librtmp's at 2: neither matters.
    for seq in [2, 2, 1, 7, 8, 9, 10, 11] {
        if got.len() >= 3073 {
            break;
        }
        let (status, b) = call(&t, &format!("/idle/{id}/{seq}"), &b"\0"[..]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            b[0] >= PollInterval::MIN && b[0] <= PollInterval::MAX,
            "{}",
            b[0]
        );
        got.extend_from_slice(&b[1..]);
    }
    assert_eq!(got.len(), 3073, "S0 + S1 + S2");
    assert_eq!(got[0], 3, "S0: RTMP version 3");

    // Close: the byte 0, the session is gone, and so is the RTMP session.
    let (status, b) = call(&t, &format!("/close/{id}/12"), &b"\0"[..]).await;
    assert_eq!((status, &b[..]), (StatusCode::OK, &[0u8][..]));
    assert_eq!(
        call(&t, &format!("/idle/{id}/13"), &b"\0"[..]).await.0,
        StatusCode::NOT_FOUND
    );
    wait_for("connections_active = 0", || active(&t) == 0).await;
    assert_eq!(t.sessions(), 0);
}

#[tokio::test]
async fn unknown_sessions_are_not_found() {
    let t = tunnel(&config(10, 15_000, 1024));
    let id = open(&t).await;
    let other = "0123456789abcdef0123456789abcdef";
    for path in [
        format!("/send/{other}/1"),
        format!("/idle/{other}/1"),
        format!("/close/{other}/1"),
        "/idle/x/1".to_owned(),
        format!("/idle/{}/1", &id[..31]),
    ] {
        assert_eq!(
            call(&t, &path, "x").await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(errors(&t, ErrorReason::UnknownSession), 5);
    // The real session is untouched.
    assert_eq!(
        call(&t, &format!("/idle/{id}/1"), "x").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn max_sessions_refuses_opens_beyond() {
    let t = tunnel(&config(3, 15_000, 1024));
    let ids = [open(&t).await, open(&t).await, open(&t).await];
    for _ in 0..5 {
        assert_eq!(
            call(&t, "/open/1", "\0").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(errors(&t, ErrorReason::TooManySessions), 5);
    assert_eq!(t.sessions(), 3);
    call(&t, &format!("/close/{}/1", ids[0]), "\0").await;
    open(&t).await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let t = tunnel(&config(10, 15_000, 1000));
    let id = open(&t).await;
    // Known length: refused before a byte is read, and the session lives on.
    let (status, _) = call(&t, &format!("/send/{id}/1"), vec![0u8; 1001]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        call(&t, "/open/1", vec![0u8; 5000]).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        call(&t, &format!("/idle/{id}/2"), "\0").await.0,
        StatusCode::OK
    );

    // Unknown length (chunked): refused once the limit is crossed; part of it may already be
    // in the RTMP stream, so the session is closed.
    let chunks = Chunked((0..10).map(|_| Bytes::from(vec![3u8; 300])).collect());
    let req = Request::builder()
        .method("POST")
        .uri(format!("/send/{id}/3"))
        .body(chunks)
        .expect("request");
    let resp = t.handle(req, PEER).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(errors(&t, ErrorReason::BodyTooLarge), 3);
    assert_eq!(
        call(&t, &format!("/idle/{id}/4"), "\0").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn sessions_nobody_polls_expire() {
    // Wall-clock timing: the timeout leaves `busy` ample slack between polls even on a
    // loaded machine, while the polls still run well past it.
    let t = tunnel(&config(2, 400, 1024));
    let sweeper = tokio::spawn(t.clone().expire_sessions());
    let quiet = open(&t).await;
    let busy = open(&t).await;
    wait_for("connections_active = 2", || active(&t) == 2).await;
    // `busy` keeps polling past the timeout; `quiet` does not.
    for i in 0..14 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let (status, _) = call(&t, &format!("/idle/{busy}/{i}"), "\0").await;
        assert_eq!(status, StatusCode::OK, "busy session expired");
    }
    assert_eq!(
        call(&t, &format!("/idle/{quiet}/1"), "\0").await.0,
        StatusCode::NOT_FOUND
    );
    wait_for("connections_active = 1", || active(&t) == 1).await;
    wait_for("busy expires too", || t.sessions() == 0).await;
    wait_for("connections_active = 0", || active(&t) == 0).await;
    assert_eq!(errors(&t, ErrorReason::SessionTimeout), 2);
    sweeper.abort();
}

#[tokio::test]
async fn the_interval_rises_while_idle() {
    let t = tunnel(&config(2, 15_000, 1024));
    let id = open(&t).await;
    let mut bytes = Vec::new();
    for seq in 0..10 {
        let (_, b) = call(&t, &format!("/idle/{id}/{seq}"), "\0").await;
        assert_eq!(b.len(), 1, "nothing to send yet");
        bytes.push(b[0]);
    }
    assert_eq!(bytes[0], PollInterval::MIN);
    assert_eq!(*bytes.last().expect("replies"), PollInterval::MAX);
}

/// A full publish through the tunnel, in memory: Prism's own push client speaks RTMP to the
/// relay over /send and /idle only.
#[tokio::test]
async fn publish_through_the_tunnel() {
    let t = tunnel(&config(2, 15_000, 1024 * 1024));
    let id = open(&t).await;
    let mut client = ClientSession::new(
        ClientConfig {
            app: "live".into(),
            tc_url: "rtmpt://127.0.0.1/live".into(),
            key: "tunnel".into(),
            session: SessionConfig::default(),
        },
        [7; 32],
        0,
        std::time::Instant::now(),
    );
    let mut input = BytesMut::new();
    let mut seq = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !client.is_publishing() {
        assert!(Instant::now() < deadline, "publish did not start");
        seq += 1;
        let out = client.out().take_all();
        let (status, b) = if out.is_empty() {
            call(&t, &format!("/idle/{id}/{seq}"), "\0").await
        } else {
            call(&t, &format!("/send/{id}/{seq}"), out).await
        };
        assert_eq!(status, StatusCode::OK);
        assert_ne!(b[0], PollInterval::CLOSING, "server closed the session");
        input.extend_from_slice(&b[1..]);
        client
            .handle_input(&mut input, std::time::Instant::now())
            .expect("server speaks RTMP");
    }
    let stream = t
        .shared
        .relay
        .stream("live", "tunnel")
        .expect("stream live in the hub");
    let frame = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2, 3]);
    for ts in 0..10 {
        client.send_media(MediaKind::Video, ts * 40, &frame);
        let out = client.out().take_all();
        seq += 1;
        let (status, _) = call(&t, &format!("/send/{id}/{seq}"), out).await;
        assert_eq!(status, StatusCode::OK);
    }
    let frames = || {
        let line = "prism_ingest_frames_total{kind=\"video\",stream=\"live/tunnel\"} ";
        let text = t.shared.relay.render_metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .map_or(0, |n| n.parse::<u64>().expect("a count"))
    };
    wait_for("10 video frames ingested", || frames() == 10).await;
    drop(stream);
    client.unpublish();
    let out = client.out().take_all();
    call(&t, &format!("/send/{id}/{}", seq + 1), out).await;
    call(&t, &format!("/close/{id}/{}", seq + 2), "\0").await;
    wait_for("stream ends", || {
        t.shared.relay.stream("live", "tunnel").is_none()
    })
    .await;
}

/// A body of several chunks and no known length, like a chunked request.
struct Chunked(std::collections::VecDeque<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

#[test]
fn draining_stops_at_the_cap_and_sees_the_end() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[1u8; 700]).await.expect("write");
        let mut buf = BytesMut::new();
        assert!(!drain(&mut b, &mut buf, 500, Duration::ZERO).await);
        assert_eq!(buf.len(), 500);
        assert!(!drain(&mut b, &mut buf, 1000, Duration::ZERO).await);
        assert_eq!(buf.len(), 700);
        // Nothing more: lingers, then comes back empty-handed.
        let t0 = Instant::now();
        assert!(!drain(&mut b, &mut buf, 1000, Duration::from_millis(30)).await);
        assert!(t0.elapsed() >= Duration::from_millis(25));
        a.write_all(&[2u8; 10]).await.expect("write");
        drop(a);
        assert!(drain(&mut b, &mut buf, 1000, Duration::from_millis(30)).await);
        assert_eq!(buf.len(), 710);
        assert_eq!(buf.chunk()[700], 2);
    });
}
