//! Just enough URL handling for target URLs: split, validate, redact.
//!
//! Hand-rolled rather than a URL crate because target URLs are templates
//! (`{app}`, `{stream}`) and rtmp/srt URLs are not "special" schemes anyway,
//! so a generic parser would give us little beyond what is here.

/// Schemes a target may use. rtmps:// and srt:// are accepted now so configs
/// written today keep loading once those transports land.
pub(crate) const SCHEMES: &[&str] = &["rtmp", "rtmps", "srt", "rtmpe", "rtmpt", "rtmpte", "rtmpts"];

/// Target schemes that run over TLS, to which `ca` and `tls_verify` apply.
pub const TLS_TARGET_SCHEMES: &[&str] = &["rtmps", "rtmpts"];

/// Whether `url`'s scheme is one of [`TLS_TARGET_SCHEMES`] (any case).
pub fn is_tls_target_url(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(s, _)| TLS_TARGET_SCHEMES.iter().any(|t| s.eq_ignore_ascii_case(t)))
}

const REDACTED: &str = "<redacted>";

/// The pieces of `scheme://[userinfo@]host[:port][/path][?query]`.
///
/// No `#fragment`: rtmp/srt have none, and SRT stream ids start with `#!::`,
/// so `#` is just another character of the path or query here.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UrlParts<'a> {
    pub scheme: &'a str,
    pub userinfo: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<&'a str>,
    /// Starts with '/' when non-empty.
    pub path: &'a str,
    pub query: Option<&'a str>,
}

pub(crate) fn split(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let mut chars = scheme.chars();
    if !chars.next()?.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    {
        return None;
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (inner, after) = v6.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        // Keep the brackets: the host is used verbatim when connecting.
        (&hostport[..inner.len() + 2], port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    Some(UrlParts {
        scheme,
        userinfo,
        host,
        port,
        path,
        query,
    })
}

/// Redacts the secret parts of a stream URL so it can be logged.
///
/// Secret = the stream key (last path segment, when there is an app segment
/// before it), every query value (srt `streamid=`/`passphrase=`, rtmp
/// `?key=`) and `user:pass@`. Scheme, host, port and app stay
/// visible because they are what an operator needs to debug a connection.
/// Anything that does not parse as a URL is redacted whole: better an
/// unhelpful log line than a leaked key.
///
/// ```
/// assert_eq!(
///     prism_config::redact_url("rtmp://a.rtmp.youtube.com/live2/abcd-1234"),
///     "rtmp://a.rtmp.youtube.com/live2/<redacted>"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(p) = split(url) else {
        return REDACTED.to_string();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(p.scheme);
    out.push_str("://");
    if p.userinfo.is_some() {
        out.push_str(REDACTED);
        out.push('@');
    }
    out.push_str(p.host);
    if let Some(port) = p.port {
        out.push(':');
        out.push_str(port);
    }
    // "/app/key" → segments ["", "app", "key"]: only redact when a key follows an app.
    let segments: Vec<&str> = p.path.split('/').collect();
    if segments.len() >= 3 {
        out.push_str(&segments[..segments.len() - 1].join("/"));
        out.push('/');
        if !segments[segments.len() - 1].is_empty() {
            out.push_str(REDACTED);
        }
    } else {
        out.push_str(p.path);
    }
    if let Some(q) = p.query {
        out.push('?');
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) => format!("{k}={REDACTED}"),
                None if kv.is_empty() => String::new(),
                // A bare token may itself be the secret (`?abcd-1234`).
                None => REDACTED.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// Checks a target URL template; `Err` is a message for the config error.
/// Messages quote the URL redacted, since config errors end up in logs.
pub(crate) fn validate_target_url(url: &str) -> Result<(), String> {
    validate_url(url, SCHEMES)
}

/// Checks a stream URL (target or source) whose scheme must be one of `schemes`.
pub(crate) fn validate_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    let shown = redact_url(url);
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{shown}` contains whitespace or control characters"
        ));
    }
    let Some(p) = split(url) else {
        return Err(format!(
            "`{shown}` is not a URL; expected rtmp://host[:port]/app/{{stream}}"
        ));
    };
    if !schemes.contains(&p.scheme) {
        let expected: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
        return Err(format!(
            "unsupported scheme `{}` (expected {})",
            p.scheme,
            or_list(&expected)
        ));
    }
    validate_host(p.host).map_err(|m| format!("`{shown}`: {m}"))?;
    if let Some(port) = p.port {
        if !matches!(port.parse::<u16>(), Ok(n) if n > 0) {
            return Err(format!("`{shown}`: port `{port}` is not in 1..=65535"));
        }
    }
    if p.scheme.starts_with("rtmp") {
        // RTMP publishes to tcUrl=scheme://host/app with stream name = last
        // segment, so both must be there or the relay has nothing to publish to.
        let segments: Vec<&str> = p.path.split('/').skip(1).collect();
        if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "`{shown}`: an {} URL needs an app and a stream key path, e.g. {}://host/live/{{stream}}",
                p.scheme, p.scheme
            ));
        }
    }
    check_placeholders(url).map_err(|m| format!("`{shown}`: {m}"))
}

/// "a, b or c".
fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("missing host".into());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("invalid IPv6 host `{host}`"));
    }
    if host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    {
        Ok(())
    } else {
        // Also catches placeholders in the host, which we do not support.
        Err(format!("invalid host `{host}`"))
    }
}

/// Only `{app}` and `{stream}` expand; anything else in braces is a typo that
/// would otherwise be sent to the remote verbatim.
fn check_placeholders(url: &str) -> Result<(), String> {
    let mut rest = url;
    while let Some(i) = rest.find(['{', '}']) {
        let tail = &rest[i..];
        if let Some(ph) = ["{app}", "{stream}"]
            .into_iter()
            .find(|p| tail.starts_with(p))
        {
            rest = &tail[ph.len()..];
            continue;
        }
        let shown: String = tail.chars().take_while(|&c| c != '/').take(20).collect();
        return Err(format!(
            "unknown placeholder near `{shown}` (only {{app}} and {{stream}} expand)"
        ));
    }
    Ok(())
}

/// Expands `{app}` and `{stream}` in a validated template.
pub(crate) fn expand(template: &str, app: &str, key: &str) -> String {
    template.replace("{app}", app).replace("{stream}", key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_ipv6_and_userinfo() {
        let p = split("srt://u:p@[::1]:9000?streamid=#!::r=a/b").unwrap();
        assert_eq!(p.scheme, "srt");
        assert_eq!(p.userinfo, Some("u:p"));
        assert_eq!(p.host, "[::1]");
        assert_eq!(p.port, Some("9000"));
        assert_eq!(p.path, "");
        assert_eq!(p.query, Some("streamid=#!::r=a/b"));
    }

    #[test]
    fn placeholders() {
        assert!(check_placeholders("rtmp://h/{app}/{stream}").is_ok());
        assert!(check_placeholders("rtmp://h/live/{key}").is_err());
        assert!(check_placeholders("rtmp://h/live/{stream").is_err());
        assert!(check_placeholders("rtmp://h/live/}").is_err());
    }
}
