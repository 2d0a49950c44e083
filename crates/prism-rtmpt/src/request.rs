//! What an RTMPT request asks for, from its method and path.

/// One RTMPT request, parsed from its method and path. Session ids borrow from the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `/fcs/ident2`: librtmp's probe before `/open`. Red5 answers 404 unless configured
    /// otherwise, and every client goes on to `/open/1`.
    Ident2,
    /// `/fcs/ident`: the older identification request; answered with a small XML document.
    Ident,
    /// `/open/<n>`: starts a session.
    Open,
    /// `/send/<id>/<seq>`: client→server bytes in the body.
    Send(Target<'a>),
    /// `/idle/<id>/<seq>`: a poll for server→client bytes.
    Idle(Target<'a>),
    /// `/close/<id>/<seq>`: ends the session.
    Close(Target<'a>),
}

/// The session a request is for, and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub session: &'a str,
    /// The request's sequence number, if it has one that parses. Never validated: clients
    /// disagree on where it starts (ffmpeg 0, librtmp 2) and nothing depends on it, since
    /// HTTP keep-alive already delivers one client's requests in order.
    pub seq: Option<u64>,
}

/// A request that is not RTMPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Every RTMPT request is a POST.
    #[error("RTMPT requests are POST")]
    Method,
    /// A path that is none of the RTMPT commands (or lacks its session id).
    #[error("not an RTMPT path")]
    Path,
}

/// Parses a request's method and path (without query string).
pub fn parse<'a>(method: &str, path: &'a str) -> Result<Command<'a>, RequestError> {
    let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
    let (cmd, arg, seq) = (parts.next(), parts.next(), parts.next());
    if parts.next().is_some_and(|p| !p.is_empty()) {
        return Err(RequestError::Path);
    }
    let command = match (cmd, arg) {
        (Some("fcs"), Some("ident2")) => Command::Ident2,
        (Some("fcs"), Some("ident")) => Command::Ident,
        (Some("open"), Some(_)) => Command::Open,
        (Some(cmd @ ("send" | "idle" | "close")), Some(session)) if !session.is_empty() => {
            let target = Target {
                session,
                seq: seq.and_then(|s| s.parse().ok()),
            };
            match cmd {
                "send" => Command::Send(target),
                "idle" => Command::Idle(target),
                _ => Command::Close(target),
            }
        }
        _ => return Err(RequestError::Path),
    };
    if method != "POST" {
        return Err(RequestError::Method);
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(session: &str, seq: Option<u64>) -> Target<'_> {
        Target { session, seq }
    }

    #[test]
    fn commands() {
        assert_eq!(parse("POST", "/fcs/ident2"), Ok(Command::Ident2));
        assert_eq!(parse("POST", "/fcs/ident"), Ok(Command::Ident));
        assert_eq!(parse("POST", "/open/1"), Ok(Command::Open));
        assert_eq!(
            parse("POST", "/send/abc/7"),
            Ok(Command::Send(t("abc", Some(7))))
        );
        assert_eq!(
            parse("POST", "/idle/abc/0"),
            Ok(Command::Idle(t("abc", Some(0))))
        );
        assert_eq!(
            parse("POST", "/close/abc/12"),
            Ok(Command::Close(t("abc", Some(12))))
        );
    }

    #[test]
    fn seq_is_tolerated_not_validated() {
        // Missing, non-numeric, huge: all carry on without a sequence number.
        assert_eq!(
            parse("POST", "/idle/abc"),
            Ok(Command::Idle(t("abc", None)))
        );
        assert_eq!(
            parse("POST", "/idle/abc/x"),
            Ok(Command::Idle(t("abc", None)))
        );
        assert_eq!(
            parse("POST", "/send/abc/99999999999999999999999"),
            Ok(Command::Send(t("abc", None)))
        );
        // A trailing slash is harmless.
        assert_eq!(
            parse("POST", "/send/abc/3/"),
            Ok(Command::Send(t("abc", Some(3))))
        );
    }

    #[test]
    fn not_rtmpt() {
        assert_eq!(parse("GET", "/open/1"), Err(RequestError::Method));
        assert_eq!(parse("POST", "/"), Err(RequestError::Path));
        assert_eq!(parse("POST", "/open"), Err(RequestError::Path));
        assert_eq!(parse("POST", "/send"), Err(RequestError::Path));
        assert_eq!(parse("POST", "/send//1"), Err(RequestError::Path));
        assert_eq!(parse("POST", "/send/a/1/extra"), Err(RequestError::Path));
        assert_eq!(parse("POST", "/metrics"), Err(RequestError::Path));
        assert_eq!(parse("GET", "/metrics"), Err(RequestError::Path));
    }
}
