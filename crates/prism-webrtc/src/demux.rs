//! Telling the datagrams on the one media UDP port apart before any session sees them
//! (RFC 7983): STUN, DTLS, RTP/RTCP or garbage, and for STUN the local ICE ufrag its
//! USERNAME names (`local:remote`), which is how a new remote address is tied to a session.

/// What a datagram looks like from its first byte (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stun,
    Dtls,
    Rtp,
    Garbage,
}

pub fn classify(d: &[u8]) -> Kind {
    match d.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => Kind::Rtp,
        _ => Kind::Garbage,
    }
}

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
/// USERNAME is at most 513 bytes (RFC 8489 §14.3).
const MAX_USERNAME: usize = 513;

/// The local (our) ufrag of a STUN binding request's USERNAME, if the datagram is a
/// well-formed STUN message that carries one. Integrity is the session's to check.
pub fn stun_local_ufrag(d: &[u8]) -> Option<&str> {
    if classify(d) != Kind::Stun || d.len() < 20 || d.get(4..8)? != MAGIC_COOKIE {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    let mut attrs = d.get(20..20 + len)?;
    while attrs.len() >= 4 {
        let t = u16::from_be_bytes([attrs[0], attrs[1]]);
        let l = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + l)?;
        if t == ATTR_USERNAME {
            if l > MAX_USERNAME {
                return None;
            }
            let name = std::str::from_utf8(value).ok()?;
            let (local, _) = name.split_once(':')?;
            return (!local.is_empty()).then_some(local);
        }
        // Attributes are padded to 4 bytes.
        let padded = (4 + l + 3) & !3;
        attrs = attrs.get(padded..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn finds_the_local_ufrag() {
        let m = stun(&[(0x0024, &[0, 0, 0, 1]), (ATTR_USERNAME, b"srv1:cli")]);
        assert_eq!(stun_local_ufrag(&m), Some("srv1"));
        assert_eq!(classify(&m), Kind::Stun);
        // Odd-length attribute before it: padding is skipped.
        let m = stun(&[(0x8022, b"abc"), (ATTR_USERNAME, b"x:y")]);
        assert_eq!(stun_local_ufrag(&m), Some("x"));
    }

    #[test]
    fn garbage_gives_nothing() {
        assert_eq!(stun_local_ufrag(&stun(&[(0x0024, &[0; 4])])), None);
        assert_eq!(
            stun_local_ufrag(&stun(&[(ATTR_USERNAME, b"nocolon")])),
            None
        );
        assert_eq!(stun_local_ufrag(&stun(&[(ATTR_USERNAME, b":y")])), None);
        let mut m = stun(&[(ATTR_USERNAME, b"a:b")]);
        m[2] = 0xff; // length past the end
        assert_eq!(stun_local_ufrag(&m), None);
        let mut m = stun(&[(ATTR_USERNAME, b"a:b")]);
        m[23] = 0xff; // attribute length past the end
        assert_eq!(stun_local_ufrag(&m), None);
        assert_eq!(stun_local_ufrag(&[0, 1, 0, 0]), None);
        assert_eq!(stun_local_ufrag(&[]), None);
        assert_eq!(classify(&[200]), Kind::Garbage);
        assert_eq!(classify(&[22, 254, 253]), Kind::Dtls);
        assert_eq!(classify(&[0x80, 96]), Kind::Rtp);
        assert_eq!(classify(&[]), Kind::Garbage);
    }
}
