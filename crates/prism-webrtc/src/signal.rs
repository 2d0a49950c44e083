//! WHIP (RFC 9725) and WHEP signalling rules: which URL is which endpoint or session
//! resource, how a bearer token reaches the route's token check, and the headers the
//! answers carry.
//!
//! Endpoints: `/{app}/{key}/whip` (publish) and `/{app}/{key}/whep` (play). A session
//! created there lives at `/{app}/{key}/{whip|whep}/{id}` (the `Location` of the `201`),
//! where `DELETE` ends it and `PATCH` (trickle ICE) is answered; `id` is random and is the
//! only capability needed to end a session, so it is never logged.

/// Publish or play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// WHIP: the client publishes.
    Whip,
    /// WHEP: the client plays.
    Whep,
}

impl Direction {
    /// The `direction` metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Whip => "whip",
            Direction::Whep => "whep",
        }
    }
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    Endpoint {
        app: &'a str,
        key: &'a str,
        direction: Direction,
    },
    Session {
        app: &'a str,
        key: &'a str,
        direction: Direction,
        id: &'a str,
    },
}

/// Longest app, key or session id accepted in a path.
const MAX_SEGMENT: usize = 256;

/// Parses a request path (without the query).
pub fn parse_path(path: &str) -> Option<Target<'_>> {
    let mut parts = path.strip_prefix('/')?.split('/');
    let app = parts.next()?;
    let key = parts.next()?;
    let direction = match parts.next()? {
        "whip" => Direction::Whip,
        "whep" => Direction::Whep,
        _ => return None,
    };
    let id = parts.next();
    if parts.next().is_some()
        || [app, key, id.unwrap_or("x")]
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_SEGMENT)
    {
        return None;
    }
    Some(match id {
        None => Target::Endpoint {
            app,
            key,
            direction,
        },
        Some(id) => Target::Session {
            app,
            key,
            direction,
            id,
        },
    })
}

/// The query the route's token check reads: an `Authorization: Bearer` token (RFC 9725
/// §4.5) becomes a `token=` parameter ahead of the URL's own query (so either works).
pub fn auth_query(authorization: Option<&str>, query: &str) -> String {
    let bearer = authorization
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty() && !t.contains('&'));
    match (bearer, query.is_empty()) {
        (Some(t), true) => format!("token={t}"),
        (Some(t), false) => format!("token={t}&{query}"),
        (None, _) => query.to_owned(),
    }
}

/// The `Link` header value advertising one ICE server (RFC 9725 §4.6), or `None` for a
/// URL that would break the header.
pub fn ice_server_link(url: &str) -> Option<String> {
    if url.is_empty()
        || url
            .bytes()
            .any(|b| b.is_ascii_control() || b == b'>' || b == b'"')
    {
        return None;
    }
    Some(format!("<{url}>; rel=\"ice-server\""))
}

/// The session resource path for `id`.
pub fn session_path(app: &str, key: &str, direction: Direction, id: &str) -> String {
    format!("/{app}/{key}/{}/{id}", direction.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("/live/cam/whep"),
            Some(Target::Endpoint {
                app: "live",
                key: "cam",
                direction: Direction::Whep
            })
        );
        assert_eq!(
            parse_path("/live/cam/whip/abc"),
            Some(Target::Session {
                app: "live",
                key: "cam",
                direction: Direction::Whip,
                id: "abc"
            })
        );
        for bad in [
            "",
            "/",
            "/live/cam",
            "/live/cam/play",
            "//cam/whep",
            "/a/b/whep/",
            "/a/b/whep/c/d",
            "live/cam/whep",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
        let long = format!("/{}/k/whep", "a".repeat(MAX_SEGMENT + 1));
        assert_eq!(parse_path(&long), None);
        assert_eq!(
            session_path("live", "cam", Direction::Whep, "x1"),
            "/live/cam/whep/x1"
        );
    }

    #[test]
    fn bearer_becomes_token() {
        assert_eq!(auth_query(Some("Bearer s3cret"), ""), "token=s3cret");
        assert_eq!(auth_query(Some("bearer s3cret"), "a=1"), "token=s3cret&a=1");
        assert_eq!(auth_query(Some("Basic eA=="), "token=q"), "token=q");
        assert_eq!(auth_query(Some("Bearer a&token=b"), ""), "");
        assert_eq!(auth_query(None, "token=q"), "token=q");
    }

    #[test]
    fn links() {
        assert_eq!(
            ice_server_link("stun:stun.example.org:3478").unwrap(),
            "<stun:stun.example.org:3478>; rel=\"ice-server\""
        );
        assert_eq!(ice_server_link("stun:x>\r\n"), None);
    }
}
