//! `rtsp://` and `rtsps://` `[user[:pass]@]host[:port]/path[?query]` URLs: split, credentials taken out
//! (percent-decoded), and a redacted form for logs.

#[derive(Clone, PartialEq, Eq)]
pub struct RtspUrl {
    /// `rtsps://`: RTSP over TLS (default port 322).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query as written, starting with `/`.
    pub path: String,
    pub user: Option<String>,
    pub pass: Option<String>,
}

impl std::fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl RtspUrl {
    pub fn parse(url: &str) -> Result<RtspUrl, &'static str> {
        let scheme = |p: &str| {
            url.get(..p.len())
                .filter(|h| h.eq_ignore_ascii_case(p))
                .and_then(|_| url.get(p.len()..))
        };
        let (tls, rest) = if let Some(rest) = scheme("rtsp://") {
            (false, rest)
        } else if let Some(rest) = scheme("rtsps://") {
            (true, rest)
        } else {
            return Err("not an rtsp:// or rtsps:// URL");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or("bad IPv6 host")?;
            (h, p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err("no host");
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| "bad port")?,
            None if tls => 322,
            None => 554,
        };
        let (user, pass) = match userinfo {
            Some(u) => {
                let (a, b) = u.split_once(':').unwrap_or((u, ""));
                (
                    Some(percent_decode(a).ok_or("bad user")?),
                    Some(percent_decode(b).ok_or("bad password")?),
                )
            }
            None => (None, None),
        };
        Ok(RtspUrl {
            tls,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            user,
            pass,
        })
    }

    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without credentials: what goes on the wire in requests.
    pub fn request_url(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.host_port(), self.path)
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "rtsps"
        } else {
            "rtsp"
        }
    }

    /// For logs: no credentials, and no query (it may carry a token).
    pub fn redacted(&self) -> String {
        let path = self.path.split('?').next().unwrap_or_default();
        let creds = if self.user.is_some() {
            "<redacted>@"
        } else {
            ""
        };
        format!("{}://{creds}{}{path}", self.scheme(), self.host_port())
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits a request URI's path (`rtsp://host:port/app/key[/trackID=N][?query]` or an
/// absolute path) into `app`, `key`, the track control suffix and the query.
pub fn split_request_path(uri: &str) -> Option<(String, String, Option<String>, String)> {
    let path = match uri.find("://") {
        Some(i) => {
            let after = &uri[i + 3..];
            &after[after.find('/')?..]
        }
        None => uri,
    };
    let (path, mut query) = path.split_once('?').unwrap_or((path, ""));
    // Clients resolve a relative control by appending `/trackID=N` to the whole URL,
    // query included (ffmpeg does).
    let mut track_in_query = None;
    if let Some((q, t)) = query.rsplit_once('/') {
        track_in_query = Some(t.to_owned());
        query = q;
    }
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let app = segs.next()?;
    let key = segs.next()?;
    let track = segs.next().map(str::to_owned);
    if segs.next().is_some() {
        return None;
    }
    if track.is_some() && track_in_query.is_some() {
        return None;
    }
    Some((
        app.to_owned(),
        key.to_owned(),
        track.or(track_in_query),
        query.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_redact() {
        let u = RtspUrl::parse("rtsp://ad%40min:p%3Ass@192.0.2.10:8554/Streaming/Channels/101?x=1")
            .unwrap();
        assert_eq!(u.user.as_deref(), Some("ad@min"));
        assert_eq!(u.pass.as_deref(), Some("p:ss"));
        assert_eq!(u.port, 8554);
        assert_eq!(
            u.request_url(),
            "rtsp://192.0.2.10:8554/Streaming/Channels/101?x=1"
        );
        assert_eq!(
            u.redacted(),
            "rtsp://<redacted>@192.0.2.10:8554/Streaming/Channels/101"
        );
        assert!(!format!("{u:?}").contains("p:ss"));
        let u = RtspUrl::parse("rtsp://[::1]/a").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 554));
        assert!(RtspUrl::parse("http://x/").is_err());
        let u = RtspUrl::parse("RTSPS://u:p@cam/x").unwrap();
        assert!(u.tls && u.port == 322);
        assert_eq!(u.redacted(), "rtsps://<redacted>@cam:322/x");
        assert!(RtspUrl::parse("rtsp://h:99999/").is_err());
    }

    #[test]
    fn request_paths() {
        assert_eq!(
            split_request_path("rtsp://h:8554/live/cam?token=abc"),
            Some(("live".into(), "cam".into(), None, "token=abc".into()))
        );
        assert_eq!(
            split_request_path("rtsp://h/live/cam?token=abc/trackID=1"),
            Some((
                "live".into(),
                "cam".into(),
                Some("trackID=1".into()),
                "token=abc".into()
            ))
        );
        assert_eq!(
            split_request_path("rtsp://h/live/cam/trackID=1"),
            Some((
                "live".into(),
                "cam".into(),
                Some("trackID=1".into()),
                String::new()
            ))
        );
        assert_eq!(split_request_path("rtsp://h/live"), None);
        assert_eq!(split_request_path("*"), None);
    }
}
