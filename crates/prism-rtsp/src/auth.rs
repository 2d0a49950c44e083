//! Client-side RTSP authentication (RFC 2617 as RTSP uses it): Basic, and Digest with
//! MD5 (with or without `qop=auth`). Credentials only ever go into the `Authorization`
//! header this builds; nothing here logs.

use md5::{Digest as _, Md5};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Digest {
        realm: String,
        nonce: String,
        opaque: Option<String>,
        /// `qop=auth` offered.
        qop_auth: bool,
    },
}

/// The strongest usable challenge among `WWW-Authenticate` values: Digest (MD5) over Basic.
pub fn pick_challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = false;
    for v in values {
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        } else if scheme.eq_ignore_ascii_case("digest") {
            let params = parse_params(rest);
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            let algorithm_ok =
                !matches!(get("algorithm"), Some(a) if !a.eq_ignore_ascii_case("MD5"));
            if let (Some(realm), Some(nonce), true) = (get("realm"), get("nonce"), algorithm_ok) {
                return Some(Challenge::Digest {
                    realm,
                    nonce,
                    opaque: get("opaque"),
                    qop_auth: get("qop").is_some_and(|q| {
                        q.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth"))
                    }),
                });
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// `k=v, k="v, with commas"` parameters.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() && out.len() < 16 {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, n)) => (v.to_owned(), n),
                None => (q.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v.trim().to_owned(), n),
                None => (after.trim().to_owned(), ""),
            }
        };
        out.push((k, v));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The `Authorization` header value for one request. `nc` counts requests made with the
/// same nonce (from 1); `cnonce` is the client's nonce (any unguessable string).
pub fn authorization(
    ch: &Challenge,
    user: &str,
    pass: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    match ch {
        Challenge::Basic => format!(
            "Basic {}",
            base64_encode(format!("{user}:{pass}").as_bytes())
        ),
        Challenge::Digest {
            realm,
            nonce,
            opaque,
            qop_auth,
        } => {
            let ha1 = md5_hex(&format!("{user}:{realm}:{pass}"));
            let ha2 = md5_hex(&format!("{method}:{uri}"));
            let mut s = format!(
                "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\""
            );
            if *qop_auth {
                let nc = format!("{nc:08x}");
                let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
                s.push_str(&format!(
                    ", response=\"{response}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\""
                ));
            } else {
                let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
                s.push_str(&format!(", response=\"{response}\""));
            }
            if let Some(o) = opaque {
                s.push_str(&format!(", opaque=\"{o}\""));
            }
            s.push_str(", algorithm=MD5");
            s
        }
    }
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Standard base64 (padding optional); None on any other character.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        for s in [&b""[..], b"a", b"ab", b"abc", b"user:pass"] {
            assert_eq!(base64_decode(&base64_encode(s)).unwrap(), s);
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert!(base64_decode("a*b").is_none());
    }

    #[test]
    fn digest_rfc2617_example() {
        // RFC 2617 §3.5.
        let ch = pick_challenge([
            "Basic realm=\"x\"",
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        ])
        .unwrap();
        let h = authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            h.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{h}"
        );
        assert!(h.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        assert_eq!(
            pick_challenge(["Basic realm=\"cam\""]),
            Some(Challenge::Basic)
        );
        assert_eq!(
            pick_challenge(["Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256"]),
            None
        );
        assert_eq!(pick_challenge(["Bearer x"]), None);
    }
}
