//! Sans-I/O check of SRT handshake packets before srt-tokio sees them.
//!
//! srt-tokio 0.4.4 panics on several handshakes a caller may legitimately send: an
//! encrypted caller to a listener without passphrase, a key-length mismatch, a caller
//! with a congestion-control (`transtype=file`), packet-filter or group extension, and an
//! empty stream-id extension. A panic there kills the task that serves the whole port.
//! [`check`] classifies each datagram from a caller; the front forwards only what the
//! library handles, answers the rest with a handshake rejection carrying a reason code
//! (what libsrt callers print, e.g. "incompatible congestion-controller type"), and
//! drops what does not parse at all.
//!
//! Layout (SRT RFC draft, section 3.2.1): a 16-byte header (bit 0 set = control packet,
//! then the 15-bit control type, 16-bit subtype, type-specific word, timestamp,
//! destination socket id), then for a handshake: version, encryption field (key length
//! / 8) and extension flags, initial sequence number, MTU, flow window, handshake type,
//! socket id, SYN cookie, 16 bytes of peer address, then extension blocks (16-bit type,
//! 16-bit length in 32-bit words, content).

/// Header + handshake CIF without extensions.
const HANDSHAKE_LEN: usize = 16 + 48;
const CONTROL: u8 = 0x80;
const TYPE_HANDSHAKE: u16 = 0x0000;
/// SRT's user-defined control type, whose subtype is an extension type.
const TYPE_USER: u16 = 0x7fff;
const SHAKE_INDUCTION: i32 = 1;
const SHAKE_CONCLUSION: i32 = -1;

const EXT_HSREQ: u16 = 1;
const EXT_HSRSP: u16 = 2;
const EXT_KMREQ: u16 = 3;
const EXT_KMRSP: u16 = 4;
const EXT_SID: u16 = 5;
const EXT_CONGESTION: u16 = 6;
const EXT_FILTER: u16 = 7;
const EXT_GROUP: u16 = 8;

/// A handshake rejection code as carried in the handshake type field (libsrt's
/// `SRT_REJ_*` + 1000 and `SRT_REJX_*`). Open: unknown values are carried, not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectCode(pub i32);

impl RejectCode {
    /// Malformed or contradictory handshake.
    pub const ROGUE: RejectCode = RejectCode(1004);
    pub const BAD_SECRET: RejectCode = RejectCode(1010);
    /// Encryption on one side only.
    pub const UNSECURE: RejectCode = RejectCode(1011);
    pub const CONGESTION: RejectCode = RejectCode(1013);
    pub const FILTER: RejectCode = RejectCode(1014);
    pub const GROUP: RejectCode = RejectCode(1015);
    pub const BACKLOG: RejectCode = RejectCode(1005);
    /// SRT_REJX_OVERLOAD: `[limits]` connections reached (counted by the relay).
    pub const OVERLOAD: RejectCode = RejectCode(2402);
    /// SRT_REJX_DOWN (1503): the server is shutting down.
    pub const SHUTTING_DOWN: RejectCode = RejectCode(2503);
}

/// What the listener requires of callers' encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Key length in bytes (16, 24, 32) when a passphrase is configured; None = no
    /// encryption.
    pub key_len: Option<u8>,
}

/// What to do with one datagram from a caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a handshake: forward as is (to an existing session only).
    Forward,
    /// A caller's first handshake packet: may open a session.
    Induction,
    /// A conclusion the library handles; forward it (possibly rewritten, see
    /// [`check`]).
    Conclusion,
    /// Answer with [`reject_packet`] and forget the caller.
    Reject(RejectCode),
    /// Unparseable: drop silently (never answer what may be spoofed noise).
    Drop(&'static str),
}

/// Classifies a datagram from a caller under `policy`. May rewrite `packet` in place: an
/// encrypted conclusion gets its encryption field set to the key length its key material
/// actually carries (the field is advisory in libsrt; srt-tokio panics when it differs
/// from its own setting).
pub fn check(packet: &mut [u8], policy: Policy) -> Verdict {
    if packet.len() < 16 {
        return Verdict::Drop("short_packet");
    }
    if packet[0] & CONTROL == 0 {
        return Verdict::Forward;
    }
    let ctype = u16::from_be_bytes([packet[0] & 0x7f, packet[1]]);
    let subtype = u16::from_be_bytes([packet[2], packet[3]]);
    match ctype {
        TYPE_HANDSHAKE => handshake(packet, policy),
        TYPE_USER => user_control(subtype, &packet[16..]),
        _ => Verdict::Forward,
    }
}

/// Extended control packets (key material refresh and the like) go through the same
/// extension parser as handshakes; only the kinds srt-tokio handles pass.
fn user_control(subtype: u16, body: &[u8]) -> Verdict {
    let ok = match subtype {
        EXT_HSREQ | EXT_HSRSP => body.len() >= 12,
        EXT_KMREQ | EXT_KMRSP => km_key_len(body).is_some(),
        _ => false,
    };
    if ok {
        Verdict::Forward
    } else {
        Verdict::Drop("bad_extended_control")
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn handshake(packet: &mut [u8], policy: Policy) -> Verdict {
    if packet.len() < HANDSHAKE_LEN {
        return Verdict::Drop("short_handshake");
    }
    let version = be32(packet, 16);
    let shake = be32(packet, 16 + 20) as i32;
    match (version, shake) {
        (4 | 5, SHAKE_INDUCTION) => Verdict::Induction,
        (5, SHAKE_CONCLUSION) => conclusion(packet, policy),
        // HSv4 conclusions and anything else the library refuses cleanly by itself.
        (4, _) => Verdict::Forward,
        _ => Verdict::Drop("bad_handshake_version"),
    }
}

fn conclusion(packet: &mut [u8], policy: Policy) -> Verdict {
    let mut at = HANDSHAKE_LEN;
    let (mut hsreq, mut km_len, mut sid) = (0, None, 0);
    while at < packet.len() {
        if packet.len() - at < 4 {
            return Verdict::Reject(RejectCode::ROGUE);
        }
        let kind = u16::from_be_bytes([packet[at], packet[at + 1]]);
        let len = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]])) * 4;
        let body_at = at + 4;
        if packet.len() - body_at < len {
            return Verdict::Reject(RejectCode::ROGUE);
        }
        let body = &packet[body_at..body_at + len];
        match kind {
            EXT_HSREQ if len >= 12 => hsreq += 1,
            EXT_KMREQ => match km_key_len(body) {
                Some(k) if km_len.is_none() => km_len = Some(k),
                _ => return Verdict::Reject(RejectCode::ROGUE),
            },
            // The library parses an empty stream id with an unchecked read.
            EXT_SID if len > 0 && len <= crate::streamid::MAX_STREAM_ID => sid += 1,
            EXT_CONGESTION => return Verdict::Reject(RejectCode::CONGESTION),
            EXT_FILTER => return Verdict::Reject(RejectCode::FILTER),
            EXT_GROUP => return Verdict::Reject(RejectCode::GROUP),
            _ => return Verdict::Reject(RejectCode::ROGUE),
        }
        at = body_at + len;
    }
    if hsreq != 1 || sid > 1 {
        return Verdict::Reject(RejectCode::ROGUE);
    }
    match (policy.key_len, km_len) {
        (None, None) => {
            // Unencrypted on both sides: the field must say so too.
            packet[20..22].copy_from_slice(&0u16.to_be_bytes());
            Verdict::Conclusion
        }
        (Some(want), Some(got)) if want == got => {
            packet[20..22].copy_from_slice(&u16::from(want / 8).to_be_bytes());
            Verdict::Conclusion
        }
        (Some(_), Some(_)) => Verdict::Reject(RejectCode::BAD_SECRET),
        _ => Verdict::Reject(RejectCode::UNSECURE),
    }
}

/// The key length (16, 24 or 32) of a keying material message, if it is well formed:
/// one or two wrapped keys of that length plus the 8-byte wrap, after a 16-byte header
/// and the salt.
fn km_key_len(km: &[u8]) -> Option<u8> {
    if km.len() < 16 {
        return None;
    }
    // Byte 0: S (1 bit, 0), version (3 bits, 1), packet type (4 bits, 2 = KM).
    if km[0] != 0x12 {
        return None;
    }
    let keys = match km[3] & 0x3 {
        1 | 2 => 1,
        3 => 2,
        _ => return None,
    };
    let salt = usize::from(km[14]) * 4;
    let klen = usize::from(km[15]) * 4;
    if !matches!(klen, 16 | 24 | 32) || salt != 16 {
        return None;
    }
    (km.len() == 16 + salt + keys * klen + 8).then_some(klen as u8)
}

/// The caller's socket id (handshake CIF), to address a rejection to it.
fn caller_socket_id(packet: &[u8]) -> u32 {
    be32(packet, 16 + 24)
}

/// A handshake rejection answering the caller's handshake `request` (at least
/// [`HANDSHAKE_LEN`] bytes, as [`check`] ensured before it returned `Reject`).
pub fn reject_packet(request: &[u8], code: RejectCode) -> Vec<u8> {
    let mut out = vec![0u8; HANDSHAKE_LEN];
    if request.len() < HANDSHAKE_LEN {
        return out;
    }
    out[0] = CONTROL;
    out[12..16].copy_from_slice(&caller_socket_id(request).to_be_bytes());
    out[16..20].copy_from_slice(&5u32.to_be_bytes());
    // Sequence number, MTU, flow window: echoed.
    out[24..36].copy_from_slice(&request[24..36]);
    out[36..40].copy_from_slice(&code.0.to_be_bytes());
    // Cookie echoed; our socket id and the address stay zero.
    out[44..48].copy_from_slice(&request[44..48]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ctype: u16, subtype: u16, dest: u32) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&(0x8000 | ctype).to_be_bytes());
        p.extend_from_slice(&subtype.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&dest.to_be_bytes());
        p
    }

    fn handshake(version: u32, enc: u16, shake: i32) -> Vec<u8> {
        let mut p = header(0, 0, 0);
        p.extend_from_slice(&version.to_be_bytes());
        p.extend_from_slice(&enc.to_be_bytes());
        p.extend_from_slice(&0x0005u16.to_be_bytes()); // HSREQ | CONFIG
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // ISN
        p.extend_from_slice(&1500u32.to_be_bytes());
        p.extend_from_slice(&8192u32.to_be_bytes());
        p.extend_from_slice(&shake.to_be_bytes());
        p.extend_from_slice(&0xdead_beefu32.to_be_bytes()); // socket id
        p.extend_from_slice(&0x0c00_c1e5u32.to_be_bytes()); // cookie
        p.extend_from_slice(&[127, 0, 0, 1]);
        p.extend_from_slice(&[0; 12]);
        p
    }

    fn ext(p: &mut Vec<u8>, kind: u16, body: &[u8]) {
        assert_eq!(body.len() % 4, 0);
        p.extend_from_slice(&kind.to_be_bytes());
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(body);
    }

    fn km(klen: u8, keys: u8) -> Vec<u8> {
        let mut m = vec![
            0x12,
            0x20,
            0x29,
            keys,
            0,
            0,
            0,
            0,
            2,
            0,
            2,
            0,
            0,
            0,
            4,
            klen / 4,
        ];
        m.extend_from_slice(&[7; 16]); // salt
        let n = usize::from(klen) * if keys == 3 { 2 } else { 1 } + 8;
        m.extend(std::iter::repeat_n(9u8, n));
        m
    }

    fn conclusion(enc: u16, exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut p = handshake(5, enc, -1);
        ext(
            &mut p,
            EXT_HSREQ,
            &[0, 1, 5, 3, 0, 0, 0, 0xbf, 0, 0x78, 0, 0x78],
        );
        for (k, b) in exts {
            ext(&mut p, *k, b);
        }
        p
    }

    const CLEAR: Policy = Policy { key_len: None };
    const AES128: Policy = Policy { key_len: Some(16) };

    #[test]
    fn data_and_other_control_packets_pass() {
        let mut data = vec![0u8; 1316 + 16];
        assert_eq!(check(&mut data, CLEAR), Verdict::Forward);
        let mut ack = header(2, 0, 1);
        ack.extend_from_slice(&[0; 24]);
        assert_eq!(check(&mut ack, CLEAR), Verdict::Forward);
        assert_eq!(check(&mut [0x80; 8], CLEAR), Verdict::Drop("short_packet"));
    }

    #[test]
    fn induction_and_plain_conclusion() {
        assert_eq!(check(&mut handshake(4, 0, 1), CLEAR), Verdict::Induction);
        let mut c = conclusion(0, &[(EXT_SID, b"evil/ekil".to_vec()[..8].to_vec())]);
        assert_eq!(check(&mut c, CLEAR), Verdict::Conclusion);
        let mut short = handshake(5, 0, -1);
        short.truncate(40);
        assert_eq!(check(&mut short, CLEAR), Verdict::Drop("short_handshake"));
    }

    #[test]
    fn congestion_filter_group_are_rejected() {
        for (kind, code) in [
            (EXT_CONGESTION, RejectCode::CONGESTION),
            (EXT_FILTER, RejectCode::FILTER),
            (EXT_GROUP, RejectCode::GROUP),
        ] {
            let mut c = conclusion(0, &[(kind, b"elif".to_vec())]);
            assert_eq!(check(&mut c, CLEAR), Verdict::Reject(code));
        }
    }

    #[test]
    fn malformed_extensions_are_rejected() {
        // Empty stream id (the library reads past its end).
        let mut c = conclusion(0, &[(EXT_SID, vec![])]);
        assert_eq!(check(&mut c, CLEAR), Verdict::Reject(RejectCode::ROGUE));
        // Length running past the datagram.
        let mut c = conclusion(0, &[]);
        c.extend_from_slice(&[0, 5, 0, 9, 1, 2, 3, 4]);
        assert_eq!(check(&mut c, CLEAR), Verdict::Reject(RejectCode::ROGUE));
        // No HSREQ.
        let mut c = handshake(5, 0, -1);
        assert_eq!(check(&mut c, CLEAR), Verdict::Reject(RejectCode::ROGUE));
        // Unknown extension.
        let mut c = conclusion(0, &[(42, vec![0; 4])]);
        assert_eq!(check(&mut c, CLEAR), Verdict::Reject(RejectCode::ROGUE));
        // Truncated key material.
        let mut c = conclusion(4, &[(EXT_KMREQ, km(32, 2)[..20].to_vec())]);
        assert_eq!(check(&mut c, AES128), Verdict::Reject(RejectCode::ROGUE));
    }

    #[test]
    fn encryption_must_match() {
        // Encrypted caller, listener without passphrase.
        let mut c = conclusion(2, &[(EXT_KMREQ, km(16, 2))]);
        assert_eq!(check(&mut c, CLEAR), Verdict::Reject(RejectCode::UNSECURE));
        // Plain caller, listener with passphrase.
        let mut c = conclusion(0, &[]);
        assert_eq!(check(&mut c, AES128), Verdict::Reject(RejectCode::UNSECURE));
        // Key length mismatch.
        let mut c = conclusion(4, &[(EXT_KMREQ, km(32, 2))]);
        assert_eq!(
            check(&mut c, AES128),
            Verdict::Reject(RejectCode::BAD_SECRET)
        );
        // Matching key, advisory field unset: rewritten to what the library expects.
        let mut c = conclusion(0, &[(EXT_KMREQ, km(16, 3))]);
        assert_eq!(check(&mut c, AES128), Verdict::Conclusion);
        assert_eq!(&c[20..22], &[0, 2]);
    }

    #[test]
    fn user_control_packets() {
        let mut p = header(TYPE_USER, EXT_KMREQ, 1);
        p.extend_from_slice(&km(16, 1));
        assert_eq!(check(&mut p, AES128), Verdict::Forward);
        let mut p = header(TYPE_USER, EXT_GROUP, 1);
        assert_eq!(check(&mut p, AES128), Verdict::Drop("bad_extended_control"));
        let mut p = header(TYPE_USER, EXT_SID, 1);
        assert_eq!(check(&mut p, AES128), Verdict::Drop("bad_extended_control"));
    }

    #[test]
    fn reject_packet_addresses_the_caller() {
        let req = conclusion(0, &[]);
        let r = reject_packet(&req, RejectCode::CONGESTION);
        assert_eq!(r.len(), HANDSHAKE_LEN);
        assert_eq!(r[0], 0x80);
        assert_eq!(be32(&r, 12), 0xdead_beef);
        assert_eq!(be32(&r, 16), 5);
        assert_eq!(be32(&r, 36) as i32, 1013);
        assert_eq!(be32(&r, 44), 0x0c00_c1e5);
    }
}
