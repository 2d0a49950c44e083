//! RTMPT under abuse, with a raw HTTP/1.1 client: unknown session ids are 404; a huge body is
//! 413 and memory stays flat; sessions nobody polls expire (their RTMP side closes);
//! thousands of rapid /open requests beyond `max_sessions` are refused with 503, memory stays
//! bounded, and publishing through the tunnel works again afterwards.

mod common;

use common::*;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

struct Tunnel {
    prism: Prism,
    addr: SocketAddr,
}

fn start(max_sessions: usize, session_timeout_ms: u64, max_body_bytes: usize) -> Tunnel {
    let port = free_port();
    let prism = Prism::start(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n\
         [rtmpt]\nlisten = \"127.0.0.1:{port}\"\nmax_sessions = {max_sessions}\n\
         session_timeout_ms = {session_timeout_ms}\nmax_body_bytes = {max_body_bytes}\n\n\
         # All requests come from 127.0.0.1: the tunnel's own session limit is under test.\n\
         [limits]\nmax_connections = 10000\nmax_connections_per_ip = 10000\n",
        free_port(),
        free_port()
    ));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_port(addr, Duration::from_secs(5));
    Tunnel { prism, addr }
}

impl Tunnel {
    fn errors(&self, reason: &str) -> f64 {
        self.prism
            .metric_value(&format!(
                "prism_connection_errors_total{{reason=\"{reason}\",transport=\"rtmpt\"}}"
            ))
            .unwrap_or(0.0)
    }

    fn active(&self) -> f64 {
        self.prism
            .metric_value("prism_connections_active{transport=\"rtmpt\"}")
            .unwrap_or(0.0)
    }

    fn open(&self) -> String {
        let (status, body) = post(self.addr, "/open/1", b"\0").expect("open");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        String::from_utf8(body)
            .expect("utf-8 id")
            .trim_end()
            .to_owned()
    }
}

/// One `POST path` with `body` on a fresh connection; returns (status, body).
fn post(addr: SocketAddr, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    post_head(addr, path, body).map(|(status, _, body)| (status, body))
}

/// Like [`post`], with the response head too.
fn post_head(addr: SocketAddr, path: &str, body: &[u8]) -> io::Result<(u16, String, Vec<u8>)> {
    let mut s = connect(addr)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-fcs\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    read_response_head(&mut s)
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Reads a `Content-Length` response (all the tunnel sends).
fn read_response(s: &mut TcpStream) -> io::Result<(u16, Vec<u8>)> {
    read_response_head(s).map(|(status, _, body)| (status, body))
}

/// Reads a `Content-Length` response; returns (status, head, body).
fn read_response_head(s: &mut TcpStream) -> io::Result<(u16, String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, len) = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "connection closed before a response: {:?}",
                String::from_utf8_lossy(&raw)
            )));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while raw.len() < head_end + len {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other("bad status line"))?;
    let body = raw[head_end..(head_end + len).min(raw.len())].to_vec();
    Ok((status, head, body))
}

/// Resident memory of `pid` in kB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn unknown_sessions_are_404() {
    let t = start(10, 15_000, 1 << 20);
    let id = t.open();
    let forged = "0123456789abcdef0123456789abcdef";
    for path in [
        format!("/idle/{forged}/1"),
        format!("/send/{forged}/1"),
        format!("/close/{forged}/1"),
        "/idle/1/1".to_owned(),
        format!("/idle/{}/1", &id[..30]),
    ] {
        let (status, _) = post(t.addr, &path, b"\0").expect("request");
        assert_eq!(status, 404, "{path}");
    }
    assert_eq!(t.errors("unknown_session"), 5.0);
    // /fcs/ident2 is 404 too, as Red5 answers; it is not an error.
    assert_eq!(post(t.addr, "/fcs/ident2", b"\0").expect("ident2").0, 404);
    assert_eq!(t.errors("unknown_session"), 5.0);
    // The real session still answers: the interval byte, nothing pending yet.
    let (status, head, body) = post_head(t.addr, &format!("/idle/{id}/1"), b"\0").expect("idle");
    assert_eq!((status, body.len()), (200, 1));
    // Headers as Red5 sends them. librtmp looks for "Content-Length: " case-sensitively.
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    for line in [
        "Content-Length: 1\r\n",
        "Content-Type: application/x-fcs\r\n",
        "Cache-Control: no-cache\r\n",
    ] {
        assert!(head.contains(line), "{line:?} missing in\n{head}");
    }
}

#[test]
fn huge_bodies_are_413_and_memory_stays_flat() {
    let t = start(10, 15_000, 1 << 20);
    let pid = t.prism.pid();
    let id = t.open();
    let before = rss_kb(pid);

    // A declared length over the limit: refused before any of it is read.
    let mut s = connect(t.addr).expect("connect");
    write!(
        s,
        "POST /send/{id}/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-fcs\r\n\
         Content-Length: 4000000000\r\n\r\n"
    )
    .expect("write head");
    let (status, _) = read_response(&mut s).expect("response");
    assert_eq!(status, 413);
    // The session is intact: nothing reached its RTMP stream.
    assert_eq!(
        post(t.addr, &format!("/idle/{id}/2"), b"\0")
            .expect("idle")
            .0,
        200
    );

    // No declared length: 64 MiB streamed chunked. Prism stops at 1 MiB, answers 413 and
    // closes the session (part of the body may be in its RTMP stream). The client may see
    // the response or a reset while it is still writing.
    let mut s = connect(t.addr).expect("connect");
    write!(
        s,
        "POST /send/{id}/3 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-fcs\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .expect("write head");
    let mut reader = s.try_clone().expect("clone");
    let writer = thread::spawn(move || {
        let chunk = vec![0x41u8; 64 * 1024];
        for _ in 0..1024 {
            if write!(s, "{:x}\r\n", chunk.len()).is_err()
                || s.write_all(&chunk).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                return;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
    });
    if let Ok((status, _)) = read_response(&mut reader) {
        assert_eq!(status, 413);
    }
    let _ = writer.join();
    drop(reader);
    wait_until(
        Duration::from_secs(5),
        "body_too_large counted twice",
        || t.errors("body_too_large") == 2.0,
    );
    assert_eq!(
        post(t.addr, &format!("/idle/{id}/4"), b"\0")
            .expect("idle")
            .0,
        404
    );
    let after = rss_kb(pid);
    assert!(
        after < before + 20 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
}

#[test]
fn sessions_never_polled_expire() {
    let t = start(100, 1000, 1 << 20);
    let ids: Vec<String> = (0..5).map(|_| t.open()).collect();
    wait_until(Duration::from_secs(5), "5 rtmpt connections", || {
        t.active() == 5.0
    });
    let opened = Instant::now();
    wait_until(Duration::from_secs(5), "rtmpt connections closed", || {
        t.active() == 0.0
    });
    assert!(
        opened.elapsed() >= Duration::from_millis(800),
        "closed before the timeout"
    );
    for id in &ids {
        assert_eq!(
            post(t.addr, &format!("/idle/{id}/1"), b"\0")
                .expect("idle")
                .0,
            404
        );
    }
    assert_eq!(t.errors("session_timeout"), 5.0);
}

#[test]
fn rapid_opens_beyond_max_sessions_are_refused() {
    const OPENS: usize = 3000;
    const THREADS: usize = 6;
    let t = start(100, 4000, 1 << 20);
    let pid = t.prism.pid();
    let started = Instant::now();
    let results: Vec<(usize, usize)> = (0..THREADS)
        .map(|_| {
            let addr = t.addr;
            thread::spawn(move || {
                let (mut ok, mut refused) = (0, 0);
                for _ in 0..OPENS / THREADS {
                    match post(addr, "/open/1", b"\0") {
                        Ok((200, _)) => ok += 1,
                        Ok((503, _)) => refused += 1,
                        other => panic!("open: {other:?}"),
                    }
                }
                (ok, refused)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("opener thread"))
        .collect();
    let took = started.elapsed();
    let ok: usize = results.iter().map(|r| r.0).sum();
    let refused: usize = results.iter().map(|r| r.1).sum();
    assert_eq!(ok + refused, OPENS);
    // Exactly max_sessions while none has expired; a slow run lets some expire and reopen.
    if took < Duration::from_millis(3500) {
        assert_eq!(ok, 100, "took {took:?}");
    }
    assert!(ok >= 100 && refused >= 2000, "ok {ok}, refused {refused}");
    assert_eq!(t.errors("too_many_sessions"), refused as f64);
    assert!(t.active() <= 100.0, "{}", t.active());
    let rss = rss_kb(pid);
    eprintln!("{OPENS} opens in {took:?}: {ok} opened, {refused} refused, prism RSS {rss} kB");
    assert!(rss < 100 * 1024, "prism RSS {rss} kB after {OPENS} opens");

    // The opened sessions expire; the tunnel then takes a real publisher again.
    wait_until(Duration::from_secs(10), "sessions expire", || {
        t.active() == 0.0
    });
    let clip = make_clip(5);
    let mut publisher = Publisher::start(&format!("rtmpt://{}/live/after", t.addr), &clip, true);
    wait_until(
        Duration::from_secs(10),
        "publish through the tunnel",
        || {
            t.prism
                .metric_value("prism_ingest_frames_total{kind=\"video\",stream=\"live/after\"}")
                .is_some_and(|v| v > 25.0)
        },
    );
    assert!(publisher.try_wait().is_none(), "{}", publisher.stderr());
    publisher.stop();
    assert!(rss_kb(pid) < 100 * 1024);
}
