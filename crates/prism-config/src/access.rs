//! Who may publish and play: address allowlists (CIDR), stream tokens, webhook URLs and the
//! rules that apply to one stream. Values only; the relay does the checking.

use std::fmt;
use std::net::IpAddr;

/// An IP network, written `10.0.0.0/8`, `2001:db8::/32` or a bare address (one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `addr[/prefix]`. Host bits set below the prefix are an error: `10.1.2.3/8` is
    /// almost always a typo for a single host or for `10.0.0.0/8`, and guessing which would
    /// silently widen or narrow an allowlist.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.trim().parse().map_err(|_| {
            format!(
                "`{text}` is not an IP address or CIDR network (e.g. 10.0.0.0/8, 127.0.0.1, ::1)"
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{text}`: the prefix length must be 0..={max}")),
            },
        };
        let net = IpNet { addr, prefix };
        if net.network() != bits(addr) {
            return Err(format!(
                "`{text}` has host bits set below /{prefix}: write the network address or a single host"
            ));
        }
        Ok(net)
    }

    /// Whether `ip` is in this network. An IPv4 client seen on a dual-stack socket
    /// (`::ffff:a.b.c.d`) matches IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        bits(ip) & self.mask() == self.network()
    }

    fn mask(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == 0 {
            0
        } else {
            (!0u128 << (width - u32::from(self.prefix))) & width_mask(width)
        }
    }

    fn network(&self) -> u128 {
        bits(self.addr) & self.mask()
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; every other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn width_mask(width: u32) -> u128 {
    if width == 128 {
        !0
    } else {
        (1u128 << width) - 1
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// A secret from the config (a stream token, the webhook's bearer token). `Debug` never shows
/// it, so configs can be logged; compare with [`Secret::matches`] (constant time).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, for putting on the wire (the webhook's Authorization header) only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with what a client sent, in time that depends on the lengths only.
    pub fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Checks a stream token (`publish_tokens`, `play_tokens`): 8 to 256 characters that pass
/// unescaped through an RTMP URL query and an SRT stream id (`A-Z a-z 0-9 - . _ ~`).
pub(crate) fn validate_token(t: &str) -> Result<(), String> {
    // Never echo the value: only what is wrong with it.
    if !(8..=256).contains(&t.len()) {
        return Err(format!(
            "tokens must be 8 to 256 characters (one is {})",
            t.len()
        ));
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    {
        return Err(
            "tokens may only use A-Z a-z 0-9 - . _ ~ (they travel unescaped in URLs and SRT stream ids)"
                .into(),
        );
    }
    Ok(())
}

/// The access rules that apply to one stream (see [`crate::Config::access_for`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Access<'a> {
    pub publish_tokens: Option<&'a [Secret]>,
    pub allow_publish: Option<&'a [IpNet]>,
    pub play: bool,
    pub play_tokens: Option<&'a [Secret]>,
    pub allow_play: Option<&'a [IpNet]>,
}

/// An `http://` webhook URL, parsed. Its query may hold a secret: log it through
/// [`WebhookUrl::shown`].
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl WebhookUrl {
    pub(crate) fn parse(url: &str) -> Result<WebhookUrl, String> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(if url.starts_with("https://") {
                "https:// webhooks are not supported: point this at a local TLS proxy (e.g. stunnel, nginx) with http://".into()
            } else {
                "must be an http:// URL".into()
            });
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported: use [auth] token".into());
        }
        let port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| "the port must be 1..=65535".to_string())
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed `[` in the host")?;
            match after.strip_prefix(':') {
                Some(p) => (h, port(p)?),
                None if after.is_empty() => (h, 80),
                None => return Err("the URL has no valid host".into()),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, port(p)?),
                None => (authority, 80),
            }
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the URL has no valid host".into());
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the URL path contains whitespace or control characters".into());
        }
        Ok(WebhookUrl {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// `http://host:port/path` without the query (which may hold a secret).
    pub fn shown(&self) -> String {
        let path = self.path.split('?').next().unwrap_or_default();
        if self.host.contains(':') {
            format!("http://[{}]:{}{path}", self.host, self.port)
        } else {
            format!("http://{}:{}{path}", self.host, self.port)
        }
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.shown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.0.0.1")));
        assert!(n.contains(ip("10.255.255.255")));
        assert!(!n.contains(ip("11.0.0.0")));
        assert!(!n.contains(ip("::1")));
        // IPv4 clients on a dual-stack listener.
        assert!(n.contains(ip("::ffff:10.1.2.3")));

        let host = IpNet::parse("127.0.0.1").unwrap();
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        assert_eq!(host.to_string(), "127.0.0.1/32");

        let all4 = IpNet::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(ip("203.0.113.9")));
        assert!(!all4.contains(ip("2001:db8::1")));

        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(IpNet::parse("::/0").unwrap().contains(ip("::1")));
        assert!(IpNet::parse("::1").unwrap().contains(ip("::1")));

        let odd = IpNet::parse("192.168.1.128/25").unwrap();
        assert!(odd.contains(ip("192.168.1.200")));
        assert!(!odd.contains(ip("192.168.1.127")));
    }

    #[test]
    fn cidr_errors() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.1.2.3/8",
            "localhost",
            "10.0.0/8",
            "::/129",
            "",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn secrets_compare_and_hide() {
        let s = Secret::new("s3cret-token".into());
        assert!(s.matches("s3cret-token"));
        assert!(!s.matches("s3cret-tokeN"));
        assert!(!s.matches("s3cret"));
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn webhook_urls() {
        let u = WebhookUrl::parse("http://panel:8080/hooks/publish?key=abc").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("panel", 8080));
        assert_eq!(u.path, "/hooks/publish?key=abc");
        assert_eq!(u.shown(), "http://panel:8080/hooks/publish");
        assert!(!format!("{u:?}").contains("abc"));
        let u = WebhookUrl::parse("http://127.0.0.1").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert_eq!(WebhookUrl::parse("http://[::1]").unwrap().port, 80);
        let u = WebhookUrl::parse("http://[::1]:9/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(u.shown(), "http://[::1]:9/x");
        for bad in [
            "https://panel/hook",
            "ftp://x",
            "http://",
            "http://user:pw@panel/",
            "http://panel:0/",
            "http://panel:99999/",
            "http://[::1/",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
