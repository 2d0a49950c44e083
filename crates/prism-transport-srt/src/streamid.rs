//! SRT stream id → what the caller wants (publish or play) and which `app/key`.
//!
//! Encoders spell the stream id in several dialects; all of them are accepted:
//! - the SRT access-control form `#!::r=live/key,m=publish` (keys `r`, `m`, `h`, `u`, `s`;
//!   unknown keys are ignored; `m` defaults to `request`, as the SRT specification says);
//! - SRS's variants, where `h=` carries the vhost next to `r=` (`#!::h=host,r=live/key`), or
//!   the stream path itself when there is no `r=` (`#!::h=live/key,m=publish`);
//! - MediaMTX's `publish:live/key` and `read:live/key` (an optional `:user:pass` and
//!   `:query` after the path are ignored);
//! - a plain `live/key`, which publishes.
//!
//! An empty stream id means `[srt] default_stream`, published. A stream id that arrives
//! percent-encoded (ffmpeg passes `streamid=` from its URL through undecoded, and `#`, `,`
//! and `=` are often encoded there) is decoded first.

/// What a caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Publish,
    /// `m=request` / `read:`: Prism sends the stream (MPEG-TS) to the caller.
    Play,
}

/// A parsed stream id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    pub mode: Mode,
    pub app: String,
    pub key: String,
    /// What followed `?` after the resource (`live/key?token=...`): access control
    /// parameters, passed to the relay's checks. May hold a secret: never log it.
    pub query: String,
}

/// Why a stream id was refused. Never carries the stream id itself: it holds the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error("no stream id and no [srt] default_stream")]
    Missing,
    #[error("the stream id names no app/key resource")]
    NoResource,
    #[error("the resource is not of the form app/key")]
    BadResource,
    #[error("unsupported mode (only publish and request)")]
    BadMode,
    #[error("the stream id is too long")]
    TooLong,
}

/// Longest stream id accepted (the SRT limit).
pub const MAX_STREAM_ID: usize = 512;

/// Parses a stream id; `default_stream` (`app/key`) stands in for an empty one.
pub fn parse(sid: &str, default_stream: Option<&str>) -> Result<StreamRequest, StreamIdError> {
    if sid.len() > MAX_STREAM_ID {
        return Err(StreamIdError::TooLong);
    }
    let decoded = percent_decode(sid);
    let sid = decoded.as_deref().unwrap_or(sid).trim();
    if sid.is_empty() {
        let path = default_stream.ok_or(StreamIdError::Missing)?;
        return request(Mode::Publish, path);
    }
    if let Some(body) = sid.strip_prefix("#!::") {
        return access_control(body);
    }
    for (prefix, mode) in [("publish:", Mode::Publish), ("read:", Mode::Play)] {
        if let Some(rest) = sid.strip_prefix(prefix) {
            // pathname[:user:pass][:query]
            let path = rest.split(':').next().unwrap_or_default();
            return request(mode, path);
        }
    }
    request(Mode::Publish, sid)
}

/// The percent-decoded form of `s`, if it has any escape and all of them are valid.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn access_control(body: &str) -> Result<StreamRequest, StreamIdError> {
    let (mut resource, mut host, mut mode) = (None, None, None);
    for pair in body.split(',') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        match k.trim() {
            "r" => resource = Some(v.trim()),
            "h" => host = Some(v.trim()),
            "m" => mode = Some(v.trim()),
            // u (user), s (session), t (type) and anything else: not ours to judge.
            _ => {}
        }
    }
    let mode = match mode {
        None | Some("request") => Mode::Play,
        Some("publish") => Mode::Publish,
        Some(_) => return Err(StreamIdError::BadMode),
    };
    // SRS: without r=, h= holds the stream path; with r=, h= is a vhost.
    let path = match (resource, host) {
        (Some(r), _) => r,
        (None, Some(h)) if h.contains('/') => h,
        _ => return Err(StreamIdError::NoResource),
    };
    request(mode, path)
}

fn request(mode: Mode, path: &str) -> Result<StreamRequest, StreamIdError> {
    // A query (`live/key?token=...`) is for access control, not part of the name.
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let path = path.trim_matches('/');
    let (app, key) = path.split_once('/').ok_or(StreamIdError::BadResource)?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| !c.is_control() && !c.is_whitespace() && c != '/')
    };
    if !valid(app) || !valid(key) {
        return Err(StreamIdError::BadResource);
    }
    Ok(StreamRequest {
        mode,
        app: app.to_owned(),
        key: key.to_owned(),
        query: query.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sid: &str) -> (Mode, String) {
        let r = parse(sid, Some("live/default")).unwrap_or_else(|e| panic!("{sid:?}: {e}"));
        (r.mode, format!("{}/{}", r.app, r.key))
    }

    #[test]
    fn access_control_form() {
        use Mode::*;
        assert_eq!(ok("#!::r=live/k,m=publish"), (Publish, "live/k".into()));
        assert_eq!(ok("#!::m=publish,r=live/k"), (Publish, "live/k".into()));
        assert_eq!(ok("#!::r=live/k,m=request"), (Play, "live/k".into()));
        // m defaults to request (SRT access-control specification).
        assert_eq!(ok("#!::r=live/k"), (Play, "live/k".into()));
        assert_eq!(
            ok("#!::u=alice,r=live/k,s=abc123,m=publish,x=y,t=stream"),
            (Publish, "live/k".into())
        );
        assert_eq!(ok("#!::r=/live/k/,m=publish"), (Publish, "live/k".into()));
        assert_eq!(
            ok("#!::r=live/k?token=1,m=publish"),
            (Publish, "live/k".into())
        );
        let r = parse("#!::r=live/k?token=abc&x=1,m=publish", None).unwrap();
        assert_eq!(r.query, "token=abc&x=1");
        assert_eq!(parse("live/k", None).unwrap().query, "");
        assert_eq!(
            parse("#!::r=live/k,m=bidirectional", None),
            Err(StreamIdError::BadMode)
        );
        assert_eq!(parse("#!::m=publish", None), Err(StreamIdError::NoResource));
        assert_eq!(
            parse("#!::r=live,m=publish", None),
            Err(StreamIdError::BadResource)
        );
        assert_eq!(parse("#!::", None), Err(StreamIdError::NoResource));
    }

    #[test]
    fn srs_variants() {
        use Mode::*;
        assert_eq!(
            ok("#!::h=srs.example.com,r=live/k,m=publish"),
            (Publish, "live/k".into())
        );
        assert_eq!(ok("#!::h=live/k,m=publish"), (Publish, "live/k".into()));
        assert_eq!(ok("#!::h=live/k,m=request"), (Play, "live/k".into()));
        assert_eq!(
            parse("#!::h=srs.example.com,m=publish", None),
            Err(StreamIdError::NoResource)
        );
    }

    #[test]
    fn mediamtx_and_plain() {
        use Mode::*;
        assert_eq!(ok("publish:live/k"), (Publish, "live/k".into()));
        assert_eq!(ok("read:live/k"), (Play, "live/k".into()));
        assert_eq!(ok("publish:live/k:user:pass"), (Publish, "live/k".into()));
        assert_eq!(ok("read:live/k:q=1"), (Play, "live/k".into()));
        assert_eq!(ok("live/k"), (Publish, "live/k".into()));
        assert_eq!(parse("publish:", None), Err(StreamIdError::BadResource));
        assert_eq!(parse("justakey", None), Err(StreamIdError::BadResource));
        assert_eq!(parse("live/a b", None), Err(StreamIdError::BadResource));
        assert_eq!(parse("live/a/b", None), Err(StreamIdError::BadResource));
    }

    #[test]
    fn empty_means_default_stream() {
        assert_eq!(ok(""), (Mode::Publish, "live/default".into()));
        assert_eq!(ok("  "), (Mode::Publish, "live/default".into()));
        assert_eq!(parse("", None), Err(StreamIdError::Missing));
    }

    #[test]
    fn percent_encoded() {
        assert_eq!(
            ok("%23%21%3A%3Ar%3Dlive%2Fk%2Cm%3Dpublish"),
            (Mode::Publish, "live/k".into())
        );
        assert_eq!(ok("read%3Alive%2Fk"), (Mode::Play, "live/k".into()));
        // Not valid percent-encoding: taken as is.
        assert_eq!(parse("live/100%", None).unwrap().key, "100%");
    }

    #[test]
    fn too_long() {
        let long = format!("live/{}", "k".repeat(MAX_STREAM_ID));
        assert_eq!(parse(&long, None), Err(StreamIdError::TooLong));
    }

    #[test]
    fn errors_do_not_echo_the_key() {
        let e = parse("#!::r=live,m=publish", None).unwrap_err().to_string();
        assert!(!e.contains("live"), "{e}");
    }
}
