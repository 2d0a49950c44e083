//! SIGTERM stops Prism gracefully: listeners close, every live stream ends as an
//! unpublish does (each destination sees the stream unpublished and its recording is
//! complete, a player is told the stream ended and exits), and Prism exits 0 within its
//! shutdown bound.

mod common;

use common::*;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Prism's shutdown bound (`SHUTDOWN_BOUND` in the binary), plus slack for a loaded machine.
const EXIT_WITHIN: Duration = Duration::from_secs(8);

/// True if some connection in an nginx-rtmp error log (level info) sent deleteStream
/// before it disconnected. nginx logs "deleteStream" for every connection it closes too,
/// but after "disconnect"; a client's own deleteStream comes first.
fn said_goodbye(log: &str) -> bool {
    let mut gone = std::collections::HashSet::new();
    for line in log.lines() {
        let Some(id) = line.split_whitespace().find(|w| w.starts_with('*')) else {
            continue;
        };
        if line.contains(" disconnect,") {
            gone.insert(id.to_owned());
        } else if line.contains(" deleteStream,") && !gone.contains(id) {
            return true;
        }
    }
    false
}

#[test]
fn sigterm_unpublishes_everywhere_and_exits_zero() {
    let t0 = Instant::now();
    let clip = make_clip(5);
    let nginx_a = Nginx::start();
    let nginx_b = Nginx::start();
    let mut prism = Prism::start(&simple_config(
        free_port(),
        free_port(),
        &[
            ("a", &nginx_a.rtmp_url("app", "{stream}")),
            ("b", &nginx_b.rtmp_url("app", "{stream}")),
        ],
    ));
    let rtmp = prism.rtmp_addr.expect("rtmp listen");
    let http = prism.http_addr.expect("http listen");
    let url = prism.rtmp_url("live", "sd");
    let _publisher = Publisher::start(&url, &clip, true);

    // A player that records what it gets until the stream ends.
    let dir = TempDir::new("shutdown-player");
    let played = dir.join("played.flv");
    let mut player = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "warning", "-i", &url])
        .args(["-c", "copy", "-f", "flv"])
        .arg(&played)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("player.stderr")).expect("create file"))
        .spawn()
        .expect("spawn ffmpeg player");

    nginx_a.wait_bytes_in("sd", 200_000, Duration::from_secs(20));
    nginx_b.wait_bytes_in("sd", 200_000, Duration::from_secs(10));
    wait_until(
        Duration::from_secs(10),
        "the player to receive media",
        || fs::metadata(&played).is_ok_and(|m| m.len() > 100_000),
    );

    let stop = Instant::now();
    prism.signal("TERM");
    let status = prism.wait_exit(EXIT_WITHIN).unwrap_or_else(|| {
        panic!(
            "prism still running {EXIT_WITHIN:?} after SIGTERM\n{}",
            prism.stderr()
        )
    });
    let took = stop.elapsed();
    eprintln!("prism exited {took:?} after SIGTERM with {status}");
    assert!(status.success(), "exit status {status}\n{}", prism.stderr());
    let log = prism.stderr();
    assert!(log.contains("shut down cleanly"), "{log}");

    // Listeners are gone.
    assert!(!port_open(rtmp), "RTMP port still accepts connections");
    assert!(!port_open(http), "HTTP port still accepts connections");

    // Both destinations saw the stream unpublished (not a dropped connection: nginx
    // finalizes the recording either way, so also check the log for the goodbye).
    for (name, nginx) in [("a", &nginx_a), ("b", &nginx_b)] {
        wait_until(
            Duration::from_secs(5),
            &format!("nginx {name} to end stream sd"),
            || !nginx.is_publishing("sd"),
        );
        let errors = tail_file(&nginx.dir.join("error.log"), 2000);
        assert!(
            said_goodbye(&errors),
            "nginx {name} never got a deleteStream before the disconnect:\n{errors}"
        );
        let rec = nginx.recording("sd");
        let p = probe(&rec, Duration::from_secs(30)).expect("probe recording");
        assert_eq!(p.video_codec.as_deref(), Some("h264"), "{name}: {p:?}");
        assert!(p.audio_ok, "{name}: {p:?}");
        let frames = decode_ok(rec.to_str().expect("utf-8 path"), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("recording of {name}: {e}"));
        assert!(frames >= 25, "{name}: only {frames} frames recorded");
    }

    // The player was told the stream ended and finished on its own.
    let pstatus = wait_child(&mut player, Duration::from_secs(10)).unwrap_or_else(|| {
        let _ = player.kill();
        panic!(
            "player still running after prism exited:\n{}",
            tail_file(&dir.join("player.stderr"), 50)
        )
    });
    eprintln!("player exited with {pstatus}");
    decode_ok(
        played.to_str().expect("utf-8 path"),
        Duration::from_secs(30),
    )
    .expect("the player's copy decodes");
    eprintln!("shutdown test took {:?}", t0.elapsed());
}

#[test]
fn sigterm_with_nothing_live_exits_at_once() {
    let config = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n",
        free_port(),
        free_port()
    );
    let mut prism = Prism::start(&config);
    // A connection that never finishes its handshake does not hold the shutdown up.
    let _idle = std::net::TcpStream::connect(prism.rtmp_addr.expect("rtmp listen"))
        .expect("connect to prism");
    wait_until(
        Duration::from_secs(5),
        "the idle connection to be counted",
        || prism.metric_value("prism_connections_active{transport=\"rtmp\"}") == Some(1.0),
    );
    let stop = Instant::now();
    prism.signal("TERM");
    let status = prism
        .wait_exit(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("prism did not exit within 3 s\n{}", prism.stderr()));
    assert!(status.success(), "exit status {status}\n{}", prism.stderr());
    eprintln!("idle prism exited {:?} after SIGTERM", stop.elapsed());
}

/// On SIGTERM a raw RTMP publisher is told its publish is over (an onStatus) before the
/// close, and an admin request still uploading its body when the signal came is answered.
#[test]
fn sigterm_tells_publishers_and_answers_admin_requests_in_flight() {
    use common::rtmp::RtmpPublisher;
    use std::io::{Read, Write};

    let config = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n",
        free_port(),
        free_port()
    );
    let mut prism = Prism::start(&config);
    let rtmp = prism.rtmp_addr.expect("rtmp listen");
    let http = prism.http_addr.expect("http listen");
    let mut publisher = RtmpPublisher::publish(rtmp, "live", "bye").expect("publish");
    // An AVC sequence header and a keyframe, so the stream is a real one.
    let header = bytes::Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff]);
    publisher.send(prism_rtmp::session::MediaKind::Video, 0, &header);
    wait_until(Duration::from_secs(5), "the stream to be live", || {
        prism.metric_value("prism_streams_active") == Some(1.0)
    });

    // An admin request whose body is still on its way when SIGTERM arrives. With
    // `Expect: 100-continue`, Prism's "100 Continue" shows the handler is reading the body:
    // the request is in flight.
    let body = br#"{"name":"late","url":"rtmp://127.0.0.1:9/app/x"}"#;
    let mut admin = std::net::TcpStream::connect(http).expect("connect to the admin port");
    admin
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        admin,
        "POST /api/v1/streams/live/bye/targets HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        let n = admin.read(&mut byte).expect("reading 100 Continue");
        assert_eq!(n, 1, "closed before 100 Continue");
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );
    admin.write_all(&body[..10]).unwrap();
    admin.flush().unwrap();

    let stop = Instant::now();
    prism.signal("TERM");
    publisher
        .wait_close(Duration::from_secs(8))
        .unwrap_or_else(|e| panic!("publisher: {e}\n{}", prism.stderr()));
    let told = publisher.last_status().map(str::to_owned);
    assert!(
        matches!(
            told.as_deref(),
            Some("NetStream.Unpublish.Success" | "NetConnection.Connect.Closed")
        ),
        "the publisher was last told {told:?} before the close"
    );
    // A slow client: the rest of the body comes after the streams are gone.
    std::thread::sleep(Duration::from_millis(500));
    admin.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    admin
        .read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("reading the admin answer: {e}\n{}", prism.stderr()));
    eprintln!(
        "admin answered during shutdown: {:?}",
        answer.lines().next()
    );
    assert!(
        answer.starts_with("HTTP/1.1 ") && answer.contains("\r\n\r\n{"),
        "no JSON answer to the request in flight: {answer:?}\n{}",
        prism.stderr()
    );
    let status = prism
        .wait_exit(EXIT_WITHIN)
        .unwrap_or_else(|| panic!("prism did not exit\n{}", prism.stderr()));
    assert!(status.success(), "exit status {status}\n{}", prism.stderr());
    eprintln!("exited {:?} after SIGTERM", stop.elapsed());
}
