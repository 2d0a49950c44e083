//! The SRT front's handshake check (`prism_transport_srt::handshake::check`) on arbitrary
//! datagrams, under every encryption policy, and the stream id parser on arbitrary text.
//!
//! handshake.rs and streamid.rs are pure (std only), but their crate also holds the
//! tokio/srt-tokio transport and depends on the relay: lib.rs compiles just these two files
//! in, which keeps the fuzz target fast to build and independent of the rest of the workspace.
//!
//! Checks: no panic; `check` never changes the datagram's length; a rejection always
//! yields a 64-byte answer addressed from the request; a conclusion rewritten by `check`
//! is accepted as is the second time (the rewrite is idempotent).
use crate::handshake::{check, reject_packet, Policy, Verdict};

pub fn run(data: &[u8]) {
    for key_len in [None, Some(16), Some(24), Some(32)] {
        let policy = Policy { key_len };
        let mut packet = data.to_vec();
        let verdict = check(&mut packet, policy);
        assert_eq!(packet.len(), data.len());
        match verdict {
            Verdict::Reject(code) => {
                assert_eq!(packet, data);
                let answer = reject_packet(&packet, code);
                assert_eq!(answer.len(), 64);
            }
            Verdict::Conclusion => {
                let mut again = packet.clone();
                assert_eq!(check(&mut again, policy), Verdict::Conclusion);
                assert_eq!(again, packet);
            }
            Verdict::Forward | Verdict::Induction | Verdict::Drop(_) => {
                // Only handshakes are ever rewritten.
                assert_eq!(packet, data);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for default in [None, Some("live/default")] {
            if let Ok(req) = crate::streamid::parse(text, default) {
                for part in [&req.app, &req.key] {
                    assert!(!part.is_empty() && !part.contains('/'));
                }
            }
        }
    }
}
