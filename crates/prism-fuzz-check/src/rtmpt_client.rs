//! The RTMPT tunnel client without I/O: `prism_rtmpt::TunnelClient` fed replies (status and
//! body) a server could send, between writes, closes and the clock moving.
//!
//! The input is a list of records, each opened by an op byte:
//! - `0`: a reply to the request in flight (if none, to nothing): a status byte (even: 200,
//!   else one of 404, 503, 500, 413, 302), a 16-bit big-endian length, then that many body
//!   bytes (fewer at the end of the input). A capture of reply bodies (the interval byte and
//!   the server's RTMP bytes) makes a valid seed;
//! - `1`: the RTMP side writes the next byte's count of bytes;
//! - `2`: the clock moves on by the next byte × 7 ms, then `handle_timeout`;
//! - `3`: the RTMP side closes.
//!
//! Before every record the client is asked for its next request.
//!
//! Checks: no panic; at most one request in flight; pending bytes never exceed the limit and
//! no `/send` body exceeds `max_body_bytes`; every request path is `/open/1` or
//! `/<command>/<token>/<seq>` with the session id the `/open` reply gave; the data a reply
//! hands out is a suffix of its body, and none comes from a failed reply; an error leaves the
//! client closed, and a closed client asks for nothing; `poll_timeout` is `None` exactly when
//! closed; the bytes sent are the bytes written, in order, until the session ends.

use prism_rtmpt::{ClientLimits, RequestKind, TunnelClient};
use std::time::{Duration, Instant};

const LIMITS: ClientLimits = ClientLimits {
    max_pending_bytes: 600,
    max_body_bytes: 256,
    max_reply_bytes: 4096,
    request_timeout: Duration::from_millis(900),
};

pub fn run(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut client = TunnelClient::new(LIMITS, now);
    let mut in_flight: Option<RequestKind> = None;
    let mut session: Option<String> = None;
    let mut written: Vec<u8> = Vec::new();
    let mut sent: Vec<u8> = Vec::new();
    let mut counter = 0u8;
    let mut rest = data;
    loop {
        if let Some(req) = client.poll_request(now) {
            assert!(in_flight.is_none(), "two requests in flight");
            assert!(!client.is_closed());
            check_path(&req.path, req.kind, session.as_deref());
            if req.kind == RequestKind::Send {
                assert!(!req.body.is_empty() && req.body.len() <= LIMITS.max_body_bytes);
                sent.extend_from_slice(&req.body);
                assert!(written.starts_with(&sent), "bytes sent out of order");
            }
            in_flight = Some(req.kind);
        }
        assert!(client.pending() <= LIMITS.max_pending_bytes);
        assert_eq!(client.poll_timeout().is_none(), client.is_closed());
        if client.is_closed() {
            assert!(client
                .poll_request(now + Duration::from_secs(3600))
                .is_none());
            assert_eq!(client.room(), 0);
        }
        let Some((&op, tail)) = rest.split_first() else {
            break;
        };
        rest = tail;
        match op % 4 {
            0 => {
                let (status, len) = match rest {
                    [s, a, b, ..] => {
                        rest = &rest[3..];
                        (*s, usize::from(u16::from_be_bytes([*a, *b])))
                    }
                    _ => {
                        rest = &[];
                        (0, 0)
                    }
                };
                let status = if status % 2 == 0 {
                    200
                } else {
                    [404, 503, 500, 413, 302][usize::from(status / 2) % 5]
                };
                let (body, tail) = rest.split_at(len.min(rest.len()));
                rest = tail;
                let was_closed = client.is_closed();
                let kind = in_flight.take();
                match client.on_reply(now, status, body) {
                    Ok(out) => {
                        assert!(kind.is_some(), "a reply without a request was taken");
                        assert!(!was_closed);
                        assert!(body.ends_with(out));
                        assert!(status == 200 || kind == Some(RequestKind::Close));
                        if kind == Some(RequestKind::Open) {
                            let id = std::str::from_utf8(body)
                                .ok()
                                .and_then(|b| b.split(['\n', '\r', '\0']).next())
                                .map(str::to_owned);
                            assert!(id.as_deref().is_some_and(|i| !i.is_empty()));
                            session = id;
                        }
                        if kind == Some(RequestKind::Close) {
                            assert!(client.is_closed());
                        }
                    }
                    Err(_) => assert!(client.is_closed()),
                }
            }
            1 => {
                let n = rest.first().map_or(0, |&b| usize::from(b));
                rest = rest.get(1..).unwrap_or_default();
                let room = client.room();
                let bytes: Vec<u8> = (0..n)
                    .map(|_| {
                        counter = counter.wrapping_add(1);
                        counter
                    })
                    .collect();
                let taken = client.write(&bytes);
                assert_eq!(taken, n.min(room));
                written.extend_from_slice(&bytes[..taken]);
            }
            2 => {
                let ms = rest.first().map_or(0, |&b| u64::from(b) * 7);
                rest = rest.get(1..).unwrap_or_default();
                now += Duration::from_millis(ms);
                let deadline = client.poll_timeout();
                if client.handle_timeout(now).is_err() {
                    assert!(in_flight.take().is_some(), "timeout with nothing in flight");
                    assert!(deadline.is_some_and(|d| d <= now));
                    assert!(client.is_closed());
                }
            }
            _ => client.close(),
        }
    }
}

fn check_path(path: &str, kind: RequestKind, session: Option<&str>) {
    if kind == RequestKind::Open {
        assert_eq!(path, "/open/1");
        assert!(session.is_none(), "a second /open");
        return;
    }
    let session = session.expect("a request before the session was opened");
    let mut parts = path.split('/');
    assert_eq!(parts.next(), Some(""));
    let command = match kind {
        RequestKind::Send => "send",
        RequestKind::Idle => "idle",
        RequestKind::Close => "close",
        RequestKind::Open => unreachable!(),
    };
    assert_eq!(parts.next(), Some(command));
    assert_eq!(parts.next(), Some(session));
    assert!(parts.next().is_some_and(|s| s.parse::<u64>().is_ok()));
    assert_eq!(parts.next(), None);
    // What the server's own parser takes it for.
    let parsed = prism_rtmpt::parse("POST", path).expect("the server parses client paths");
    let target = match parsed {
        prism_rtmpt::Command::Send(t) | prism_rtmpt::Command::Idle(t) => t,
        prism_rtmpt::Command::Close(t) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!(target.session, session);
}
