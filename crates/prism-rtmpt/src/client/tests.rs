//! The client in virtual time: `now` is an `Instant` moved by hand.

use super::*;

const ID: &str = "0123456789abcdef0123456789abcdef";

fn limits() -> ClientLimits {
    ClientLimits {
        max_pending_bytes: 100,
        max_body_bytes: 40,
        max_reply_bytes: 1000,
        request_timeout: Duration::from_secs(10),
    }
}

/// A client whose `/open` has been answered.
fn opened(t0: Instant) -> TunnelClient {
    let mut c = TunnelClient::new(limits(), t0);
    let open = c.poll_request(t0).expect("open is due at once");
    assert_eq!(open.kind, RequestKind::Open);
    assert_eq!(open.path, "/open/1");
    assert!(c.poll_request(t0).is_none(), "one request at a time");
    assert_eq!(
        c.on_reply(t0, 200, format!("{ID}\n").as_bytes()),
        Ok(&[][..])
    );
    assert!(c.is_open());
    c
}

#[test]
fn open_send_idle_close_sequence() {
    let t0 = Instant::now();
    let mut c = opened(t0);
    // Nothing waits: an idle poll, at once after the open.
    let idle = c.poll_request(t0).expect("idle");
    assert_eq!(idle.kind, RequestKind::Idle);
    assert_eq!(idle.path, format!("/idle/{ID}/1"));
    assert_eq!(c.on_reply(t0, 200, &[1, 3, 0, 0]), Ok(&[3, 0, 0][..]));

    // Bytes wait: a send right away, whatever the poll delay.
    assert_eq!(c.write(b"C0C1"), 4);
    let send = c.poll_request(t0).expect("send");
    assert_eq!(send.kind, RequestKind::Send);
    assert_eq!(send.path, format!("/send/{ID}/2"));
    assert_eq!(send.body, b"C0C1");
    assert_eq!(c.on_reply(t0, 200, &[5, 9]), Ok(&[9][..]));

    // Interval byte 5: the next idle poll 50 ms later.
    assert!(c.poll_request(t0 + Duration::from_millis(49)).is_none());
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(50)));
    let t1 = t0 + Duration::from_millis(50);
    assert_eq!(c.poll_request(t1).map(|r| r.kind), Some(RequestKind::Idle));
    assert_eq!(c.on_reply(t1, 200, &[1]), Ok(&[][..]));

    // Close: what waits goes first, then /close; then nothing more.
    c.write(b"bye");
    c.close();
    assert_eq!(c.room(), 0);
    assert_eq!(c.write(b"more"), 0);
    let send = c.poll_request(t1).expect("last send");
    assert_eq!(
        (send.kind, send.body.as_slice()),
        (RequestKind::Send, &b"bye"[..])
    );
    assert_eq!(c.on_reply(t1, 200, &[1]), Ok(&[][..]));
    let close = c.poll_request(t1).expect("close");
    assert_eq!(close.kind, RequestKind::Close);
    assert_eq!(close.path, format!("/close/{ID}/5"));
    assert_eq!(c.on_reply(t1, 200, &[0]), Ok(&[][..]));
    assert!(c.is_closed());
    assert!(c.poll_request(t1 + Duration::from_secs(60)).is_none());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn pending_bytes_are_bounded_and_sent_in_bodies_of_at_most_max_body() {
    let t0 = Instant::now();
    let mut c = opened(t0);
    assert_eq!(c.room(), 100);
    assert_eq!(c.write(&[7; 150]), 100, "takes only what there is room for");
    assert_eq!(c.room(), 0);
    let mut sizes = Vec::new();
    while let Some(r) = c.poll_request(t0) {
        assert_eq!(r.kind, RequestKind::Send);
        sizes.push(r.body.len());
        assert_eq!(c.on_reply(t0, 200, &[1]), Ok(&[][..]));
        if c.pending() == 0 {
            break;
        }
    }
    assert_eq!(sizes, [40, 40, 20]);
    assert_eq!(c.room(), 100);
}

#[test]
fn poll_delay_follows_the_interval_byte_and_is_capped() {
    assert_eq!(poll_delay(1), Duration::from_millis(10));
    assert_eq!(poll_delay(0x21), Duration::from_millis(330));
    assert_eq!(poll_delay(0xff), Duration::from_millis(500));
    let t0 = Instant::now();
    let mut c = opened(t0);
    c.poll_request(t0).expect("idle");
    c.on_reply(t0, 200, &[0xff]).expect("empty reply");
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(500)));
}

#[test]
fn requests_time_out_in_virtual_time() {
    let t0 = Instant::now();
    let mut c = TunnelClient::new(limits(), t0);
    c.poll_request(t0).expect("open");
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    assert_eq!(c.handle_timeout(t0 + Duration::from_millis(9_999)), Ok(()));
    assert_eq!(
        c.handle_timeout(t0 + Duration::from_secs(10)),
        Err(ClientError::Timeout)
    );
    assert!(c.is_closed());
    assert!(c.poll_request(t0 + Duration::from_secs(11)).is_none());
    // A reply after the timeout belongs to nothing.
    assert_eq!(c.on_reply(t0, 200, b"abc\n"), Err(ClientError::Unexpected));
}

#[test]
fn error_replies_close_the_session() {
    let t0 = Instant::now();
    for (status, body, want) in [
        (
            404,
            &b"unknown RTMPT session\n"[..],
            ClientError::Status(404),
        ),
        (503, &b""[..], ClientError::Status(503)),
        (
            200,
            &b""[..],
            ClientError::Malformed("reply without its interval byte"),
        ),
        (
            200,
            &[1; 1001][..],
            ClientError::Malformed("reply too long"),
        ),
    ] {
        let mut c = opened(t0);
        c.write(b"x");
        c.poll_request(t0).expect("send");
        assert_eq!(c.on_reply(t0, status, body), Err(want));
        assert!(c.is_closed());
        assert_eq!(c.room(), 0);
    }
}

#[test]
fn closing_byte_ends_the_session_after_its_data() {
    let t0 = Instant::now();
    let mut c = opened(t0);
    c.poll_request(t0).expect("idle");
    assert_eq!(c.on_reply(t0, 200, &[0, 1, 2]), Ok(&[1, 2][..]));
    assert!(c.is_closed());
    assert!(c.poll_request(t0).is_none());
}

#[test]
fn close_before_and_during_open() {
    let t0 = Instant::now();
    let mut c = TunnelClient::new(limits(), t0);
    c.close();
    assert!(c.is_closed());
    assert!(c.poll_request(t0).is_none());

    // Closed while /open is in flight: the id still gets its /close.
    let mut c = TunnelClient::new(limits(), t0);
    c.poll_request(t0).expect("open");
    c.close();
    assert!(!c.is_closed());
    c.on_reply(t0, 200, b"7\r\n").expect("id");
    assert_eq!(
        c.poll_request(t0).map(|r| r.path),
        Some("/close/7/1".to_owned())
    );
}

#[test]
fn open_reply_must_be_one_token() {
    assert_eq!(parse_session_id(b"abc\n"), Ok("abc"));
    assert_eq!(parse_session_id(b"1234567890"), Ok("1234567890"));
    assert_eq!(parse_session_id(b"a-b_c\r\n\0"), Ok("a-b_c"));
    for bad in [
        &b""[..],
        b"\n",
        b"a/b\n",
        b"a b\n",
        b"abc\nxyz",
        b"..\n",
        &[b'a'; MAX_SESSION_ID + 1],
        b"\xff\xfe\n",
    ] {
        assert!(parse_session_id(bad).is_err(), "{bad:?}");
    }
    let t0 = Instant::now();
    let mut c = TunnelClient::new(limits(), t0);
    c.poll_request(t0).expect("open");
    assert!(c.on_reply(t0, 200, b"../../x\n").is_err());
    assert!(c.is_closed());
}

#[test]
fn debug_output_hides_the_session_id() {
    let t0 = Instant::now();
    let mut c = opened(t0);
    assert!(!format!("{c:?}").contains(ID));
    let r = c.poll_request(t0).expect("idle");
    assert!(!format!("{r:?}").contains(ID));
}
