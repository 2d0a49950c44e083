//! The tunnel client's driver against this crate's own server on a real socket: bytes go
//! through both ways, dropping the stream closes the session, a session the server ends
//! ends the stream, and an unreachable server is a dial error.

use super::*;
use crate::client::RtmptDialer;
use prism_config::{Config, ResolvedTarget};
use prism_metrics::Metrics;
use prism_relay::Dialer;
use prism_rtmp::url::RtmpUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server(session_timeout_ms: u64) -> (Tunnel, SocketAddr) {
    let relay = Relay::new(Config::default(), Metrics::new(), vec![], vec![]);
    let t = Tunnel::new(
        &TunnelConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            max_sessions: 10,
            session_timeout: Duration::from_millis(session_timeout_ms),
            max_body_bytes: 1024 * 1024,
            max_buffer_bytes: 1024 * 1024,
        },
        RTMPT,
        relay,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(t.clone().run(listener));
    (t, addr)
}

fn target(addr: SocketAddr) -> (RtmpUrl, ResolvedTarget) {
    let url = format!("rtmpt://{addr}/live/k");
    let t = ResolvedTarget::for_stream("t", &url, "live", "k").expect("target");
    (RtmpUrl::parse(&url).expect("url"), t)
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn bytes_cross_the_tunnel_and_dropping_the_stream_closes_the_session() {
    let (t, addr) = server(15_000).await;
    let (url, target) = target(addr);
    let dialer = RtmptDialer::rtmpt();
    let mut stream = dialer.dial(&url, &target).await.expect("dial");
    assert_eq!(t.sessions(), 1, "the /open happens before the dial returns");
    // C0 + C1: the RTMP server behind the tunnel answers S0 + S1 + S2.
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    stream.write_all(&c0c1).await.expect("write");
    let mut s = vec![0u8; 1 + 2 * 1536];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut s))
        .await
        .expect("S0-S2 in time")
        .expect("read");
    assert_eq!(s[0], 3);
    drop(stream);
    wait_for("the /close", || t.sessions() == 0).await;
    assert_eq!(
        t.shared
            .relay
            .connection_error(RTMPT, ErrorReason::SessionTimeout)
            .get(),
        0
    );
}

#[tokio::test]
async fn a_session_the_server_ends_ends_the_stream() {
    // Sessions expire after 150 ms without a request; an idle client's polls space out
    // beyond that (interval byte up to 0x21), so the server drops it and answers 404.
    let (t, addr) = server(150).await;
    let (url, target) = target(addr);
    let mut stream = RtmptDialer::rtmpt()
        .dial(&url, &target)
        .await
        .expect("dial");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("the stream ends in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    wait_for("the session to go", || t.sessions() == 0).await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_dial_error() {
    // A port nothing listens on.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let (url, target) = target(addr);
    match RtmptDialer::rtmpt().dial(&url, &target).await {
        Err(e) => assert_eq!(e.reason, ErrorReason::Connect, "{}", e.detail),
        Ok(_) => panic!("dialled nothing"),
    }
}

#[tokio::test]
async fn a_server_that_is_not_rtmpt_is_a_dial_error() {
    // An HTTP server that answers 404 to everything (the tunnel's answer to non-RTMPT
    // paths is the same shape): /open fails, the dial fails.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let (url, target) = target(addr);
    match RtmptDialer::rtmpt().dial(&url, &target).await {
        Err(e) => assert!(e.detail.contains("404"), "{}", e.detail),
        Ok(_) => panic!("opened a tunnel on a plain HTTP server"),
    }
}

#[tokio::test]
async fn what_a_tunnel_holds_is_charged_until_it_ends() {
    // A server that opens a session, then never answers the /send: the body in flight and
    // what the push writes meanwhile stay held (and charged) until the request times out.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab1\n")
                    .await;
                // Read and hold everything after the /open, answering nothing.
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    let budget = prism_mem::Budget::new(64 << 20);
    let dialer = RtmptDialer::rtmpt();
    dialer.attach_memory(Some(&budget));
    let (url, target) = target(addr);
    let mut stream = dialer.dial(&url, &target).await.expect("dial");
    stream.write_all(&[7u8; 100_000]).await.expect("write");
    wait_for("the held bytes charged", || {
        budget.pool(prism_mem::Pool::Rtmpt) >= 100_000
    })
    .await;
    drop(stream);
    // The /send times out (10 s), the task ends and its charge goes with it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while budget.pool(prism_mem::Pool::Rtmpt) != 0 {
        assert!(Instant::now() < deadline, "charge not released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
