//! `[limits]` against the real binary: connections beyond `max_connections_per_ip` and
//! `max_connections` are closed at once and counted, a publish beyond `max_streams` is
//! refused, and a live publish keeps flowing through all of it. Extra client addresses come
//! from binding 127.0.0.2 and 127.0.0.3 (all of 127/8 is loopback on Linux).

mod common;

use common::*;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A TCP connection to `to` from `from` (any port).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let s = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().expect("addr"))
            .expect("bind source address");
        let s = socket.connect(to).await.expect("connect");
        s.into_std().expect("std stream")
    });
    s.set_nonblocking(false).expect("blocking");
    s
}

/// Whether the server closed `s` (EOF or reset) within `wait`; a connection still open
/// (the RTMP handshake timeout is 10 s) times out the read instead.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_) => true,
    }
}

#[test]
fn connection_and_stream_limits_close_only_the_extra() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let (rtmp_port, http_port) = (free_port(), free_port());
    let prism = Prism::start(&format!(
        r#"
[rtmp]
listen = "127.0.0.1:{rtmp_port}"
[http]
listen = "127.0.0.1:{http_port}"
[limits]
max_connections = 5
max_connections_per_ip = 3
max_streams = 1
"#
    ));
    let addr = prism.rtmp_addr.expect("rtmp addr");
    let errors = |reason: &str| {
        prism
            .metric_value(&format!(
                "prism_connection_errors_total{{reason=\"{reason}\",transport=\"rtmp\"}}"
            ))
            .unwrap_or(0.0)
    };

    // 127.0.0.1: the publisher and one idle connection.
    let mut publisher = Publisher::start(&prism.rtmp_url("live", "main"), &clip, true);
    let ingest = "prism_ingest_bytes_total{stream=\"live/main\"}";
    wait_until(Duration::from_secs(10), "the publisher ingesting", || {
        prism.metric_value(ingest).is_some_and(|b| b > 0.0)
    });
    // A second stream is over max_streams (the healthz probe's connections are closed by now).
    let mut second = Publisher::start(&prism.rtmp_url("live", "second"), &clip, false);
    let status = second
        .wait_exit(Duration::from_secs(15))
        .expect("the refused publisher gives up");
    assert!(!status.success(), "{}", second.stderr());
    assert_eq!(
        prism.metric_value("prism_publish_rejected_total{reason=\"too_many_streams\"}"),
        Some(1.0),
        "{}",
        prism.metrics()
    );

    wait_until(
        Duration::from_secs(5),
        "the refused publisher's connection gone",
        || prism.metric_value("prism_connections_active{transport=\"rtmp\"}") == Some(1.0),
    );
    let mut a1 = connect_from("127.0.0.1", addr);
    let mut a2 = connect_from("127.0.0.1", addr);
    assert!(!closed_by_server(&mut a1, Duration::from_millis(300)));
    assert!(!closed_by_server(&mut a2, Duration::from_millis(300)));
    // The fourth from 127.0.0.1 (publisher + 2): over max_connections_per_ip = 3.
    let mut a3 = connect_from("127.0.0.1", addr);
    assert!(
        closed_by_server(&mut a3, Duration::from_secs(5)),
        "per-IP extra not closed"
    );
    assert_eq!(errors("too_many_per_ip"), 1.0, "{}", prism.metrics());

    // 127.0.0.2 takes the total to 5; one more from anywhere is over max_connections.
    let mut b1 = connect_from("127.0.0.2", addr);
    let mut b2 = connect_from("127.0.0.2", addr);
    assert!(!closed_by_server(&mut b1, Duration::from_millis(300)));
    assert!(!closed_by_server(&mut b2, Duration::from_millis(300)));
    let mut c1 = connect_from("127.0.0.3", addr);
    assert!(
        closed_by_server(&mut c1, Duration::from_secs(5)),
        "extra not closed"
    );
    assert_eq!(errors("too_many_connections"), 1.0, "{}", prism.metrics());

    // A place freed is a place taken.
    drop(b1);
    wait_until(
        Duration::from_secs(5),
        "the freed place to be usable",
        || {
            let mut c = connect_from("127.0.0.3", addr);
            !closed_by_server(&mut c, Duration::from_millis(500))
        },
    );

    // The publisher flowed through all of it.
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    let before = prism.metric_value(ingest).unwrap_or(0.0);
    wait_until(Duration::from_secs(5), "ingest to keep rising", || {
        prism.metric_value(ingest).is_some_and(|b| b > before)
    });
    let logs = prism.stderr();
    assert!(logs.contains("max_connections_per_ip"), "{logs}");
    publisher.stop();
    drop((a1, a2, b2));
    eprintln!("limits test took {:?}", t0.elapsed());
}
