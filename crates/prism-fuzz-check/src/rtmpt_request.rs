//! RTMPT request handling without I/O: `prism_rtmpt::parse` on request lines, driving a
//! `SessionTable` (open, lookup, close, expiry) and the `PollInterval` byte.
//!
//! The input is an HTTP request stream as a tunnel client sends it (a capture is a valid
//! seed): every `<method> <path> HTTP/...` line is a request; the clock moves on by an
//! amount taken from the line's bytes, so sessions expire. A session segment in a path
//! stands for one of the sessions opened so far (chosen by its bytes) or, one time in
//! `opened + 1`, for itself: the table hands out unguessable ids, so a fuzzer could
//! never name one otherwise. Other lines count as reply bodies for the poll interval.
//!
//! Checks: no panic; `parse` only accepts POST, and only non-empty session segments
//! without '/'; the table never holds more than `max_sessions`; a closed or expired
//! session is never found; `poll_timeout` is never before the earliest possible expiry;
//! the poll interval stays in 1..=0x21.

use std::time::{Duration, Instant};

use prism_rtmpt::{parse, Command, PollInterval, SessionId, SessionTable, TableLimits};

const LIMITS: TableLimits = TableLimits {
    max_sessions: 3,
    session_timeout: Duration::from_secs(2),
};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let t0 = Instant::now();
    let mut now = t0;
    let mut table: SessionTable<u32> = SessionTable::new(LIMITS);
    let mut opened: Vec<SessionId> = Vec::new();
    let mut closed: Vec<SessionId> = Vec::new();
    let mut poll = PollInterval::new();
    let mut expired = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        let sum: u32 = line.bytes().map(u32::from).sum();
        now += Duration::from_millis(u64::from(sum % 1500));
        let mut words = line.split(' ');
        let (Some(method), Some(target), Some(_version)) =
            (words.next(), words.next(), words.next())
        else {
            let byte = poll.on_reply(line.len());
            assert!((PollInterval::MIN..=PollInterval::MAX).contains(&byte));
            continue;
        };
        let path = target.split('?').next().unwrap_or_default();
        let Ok(command) = parse(method, path) else {
            continue;
        };
        assert_eq!(method, "POST");
        match command {
            Command::Open => match table.open(now, n as u32, &mut expired) {
                Ok(id) => {
                    assert_eq!(id.as_str().len(), 32);
                    assert!(table.get(id.as_str(), now).is_some());
                    opened.push(id);
                }
                Err(_) => assert_eq!(table.len(), LIMITS.max_sessions),
            },
            Command::Send(t) | Command::Idle(t) | Command::Close(t) => {
                assert!(!t.session.is_empty() && !t.session.contains('/'));
                let pick = t.session.bytes().map(usize::from).sum::<usize>() % (opened.len() + 1);
                let id = opened.get(pick).map_or(t.session, SessionId::as_str);
                let was_closed = closed.iter().any(|c| c.as_str() == id);
                let found = table.get(id, now).is_some();
                if was_closed {
                    assert!(!found, "closed session found again");
                }
                if let Command::Close(_) = command {
                    let removed = table.remove(id).is_some();
                    if let (true, Some(known)) = (removed, opened.get(pick)) {
                        closed.push(known.clone());
                    }
                }
            }
            Command::Ident | Command::Ident2 => {}
        }
        assert!(table.len() <= LIMITS.max_sessions);
        if let Some(at) = table.poll_timeout() {
            assert!(at >= t0 + LIMITS.session_timeout);
        }
        table.drain_expired(now, &mut expired);
        for (id, _) in expired.drain(..) {
            assert!(table.get(id.as_str(), now).is_none());
        }
    }
}
