//! RTMP URLs as OBS and ffmpeg read them: `rtmp://host[:port]/app[/inst]/key[?query]`.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    #[error("unsupported scheme (expected rtmp://, rtmps://, rtmpe://, rtmpt://, rtmpte:// or rtmpts://)")]
    Scheme,
    #[error("missing host")]
    Host,
    #[error("invalid port")]
    Port,
    #[error("missing application or stream key in the path")]
    Path,
}

/// A parsed push/play URL. The last path segment (with any query string) is the stream key;
/// everything between the host and it is the application, as OBS and ffmpeg split it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub app: String,
    /// The stream key, with its query string (platforms put tokens there).
    pub key: String,
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<RtmpUrl, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::Scheme)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "rtmp" => 1935,
            "rtmps" => 443,
            "rtmpe" => 1935,
            // RTMP tunnelled over HTTP(S): the HTTP ports, as ffmpeg and librtmp default.
            "rtmpt" | "rtmpte" => 80,
            "rtmpts" => 443,
            _ => return Err(UrlError::Scheme),
        };
        let (authority, path) = rest.split_once('/').ok_or(UrlError::Path)?;
        // Credentials in the authority are not used by RTMP; ignore them.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = split_host_port(authority, default_port)?;
        // The query belongs to the key, even if it contains '/'.
        let (path_only, query) = match path.find('?') {
            Some(i) => (&path[..i], &path[i..]),
            None => (path, ""),
        };
        let path_only = path_only.trim_end_matches('/');
        let (app, key) = path_only.rsplit_once('/').ok_or(UrlError::Path)?;
        if app.is_empty() || key.is_empty() {
            return Err(UrlError::Path);
        }
        Ok(RtmpUrl {
            scheme,
            host,
            port,
            app: app.to_owned(),
            key: format!("{key}{query}"),
        })
    }

    /// The tcUrl sent in `connect`: the URL without the stream key.
    pub fn tc_url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{}:{}/{}", self.scheme, host, self.port, self.app)
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), UrlError> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(UrlError::Host)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| UrlError::Port)?,
            None if after.is_empty() => default_port,
            None => return Err(UrlError::Host),
        };
        return Ok((host.to_owned(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| UrlError::Port)?),
        None => (authority, default_port),
    };
    if host.is_empty() {
        return Err(UrlError::Host);
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obs_style_urls() {
        let u = RtmpUrl::parse("rtmp://a.rtmp.youtube.com/live2/abcd-1234").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str(), u.key.as_str()),
            ("a.rtmp.youtube.com", 1935, "live2", "abcd-1234")
        );
        assert_eq!(u.tc_url(), "rtmp://a.rtmp.youtube.com:1935/live2");
        let u =
            RtmpUrl::parse("rtmps://live-api-s.facebook.com:443/rtmp/FB-123?s_bl=1&a=b").unwrap();
        assert_eq!(
            (u.port, u.app.as_str(), u.key.as_str()),
            (443, "rtmp", "FB-123?s_bl=1&a=b")
        );
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/app/inst/key").unwrap();
        assert_eq!((u.app.as_str(), u.key.as_str()), ("app/inst", "key"));
        let u = RtmpUrl::parse("rtmp://[::1]:19350/live/k").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 19350));
    }

    #[test]
    fn tunnelled_schemes_default_to_http_ports() {
        for (url, port) in [
            ("rtmpt://h/live/k", 80),
            ("rtmpte://h/live/k", 80),
            ("rtmpts://h/live/k", 443),
            ("rtmpt://h:8080/live/k", 8080),
        ] {
            let u = RtmpUrl::parse(url).unwrap();
            assert_eq!(u.port, port, "{url}");
        }
        let u = RtmpUrl::parse("rtmpte://h/live/k").unwrap();
        assert_eq!(u.tc_url(), "rtmpte://h:80/live");
    }

    #[test]
    fn bad_urls() {
        assert_eq!(RtmpUrl::parse("http://x/a/b"), Err(UrlError::Scheme));
        assert_eq!(RtmpUrl::parse("rtmp://x/onlyapp"), Err(UrlError::Path));
        assert_eq!(RtmpUrl::parse("rtmp://x:99999/a/b"), Err(UrlError::Port));
        assert_eq!(RtmpUrl::parse("rtmp:///a/b"), Err(UrlError::Host));
    }
}
