//! `[[source]]`: a stream Prism pulls from somewhere (an IP camera, another server) and
//! publishes into the hub under `stream`, like any publisher.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{check, FromRaw};
use crate::{url, Checker, ConfigError};

/// Schemes a source URL may use. Which of them this build can pull is the binary's to say
/// (each transport registers its own); the file format accepts them all.
pub const SOURCE_SCHEMES: &[&str] = &["rtsp", "rtsps", "rtmp", "rtmps", "srt"];

section! {
    raw RawSource;
    raw Head {
        /// The hub stream this source publishes: `app/key`.
        stream: Spanned<String>;
        /// Where to pull from: rtsp://, rtsps://, rtmp://, rtmps:// or srt:// (`{app}` and `{stream}` expand); credentials are redacted in logs.
        url: Spanned<String>;
    }
    /// The options of one `[[source]]`.
    define SourceOptions {
        /// True: pull only while a player, target or HLS viewer wants the stream.
        on_demand: bool => on_demand: bool = default(false), check check::ok;
        /// rtsp:// and rtsps:// only: `tcp` (interleaved, default) or `udp`.
        rtsp_transport: String => rtsp_transport: RtspTransport = default(RtspTransport::Tcp),
            check RtspTransport::parse;
        /// With `on_demand`: stop pulling this long after the last consumer left (default 10000).
        close_after_idle_ms: u64 => close_after_idle: Duration = default(Duration::from_secs(10)),
            check check::positive_ms;
        /// rtmps:// and rtsps:// only: PEM file of CA certificates to trust instead of the system roots (private CAs).
        ca: String => ca: Option<PathBuf> = default(None),
            check |c: String| Ok((!c.is_empty()).then(|| PathBuf::from(c)));
        /// rtmps:// and rtsps:// only: false skips certificate verification (self-signed cameras; logged loudly).
        tls_verify: bool => tls_verify: bool = default(true), check check::ok;
    }
}

impl SourceOptions {
    /// The TLS options of an rtmps:// or rtsps:// source, as a target's.
    pub fn tls(&self) -> crate::TargetTls {
        crate::TargetTls {
            ca: self.ca.clone(),
            verify: self.tls_verify,
        }
    }
}

/// How RTP travels from an RTSP source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection.
    #[default]
    Tcp,
    /// RTP/RTCP over UDP unicast.
    Udp,
}

impl RtspTransport {
    fn parse(v: String) -> Result<RtspTransport, String> {
        match v.as_str() {
            "tcp" => Ok(RtspTransport::Tcp),
            "udp" => Ok(RtspTransport::Udp),
            _ => Err(format!("`{v}` is not `tcp` or `udp`")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        }
    }
}

/// TOML `[[source]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The hub stream published: `app/key`.
    pub stream: String,
    /// Where to pull from, `{app}`/`{stream}` expanded. Holds secrets (user:pass@, keys):
    /// log it through [`crate::redact_url`].
    pub url: String,
    pub options: SourceOptions,
}

impl SourceConfig {
    /// `(app, key)` of [`SourceConfig::stream`].
    pub fn app_key(&self) -> (&str, &str) {
        self.stream.split_once('/').unwrap_or((&self.stream, ""))
    }

    /// The URL's scheme, lower case.
    pub fn scheme(&self) -> String {
        url_scheme(&self.url)
    }

    /// A source added at run time (the admin API), checked as the config checks one;
    /// `Err` is a message for the operator (URL redacted).
    pub fn new(stream: &str, url_text: &str, options: SourceOptions) -> Result<Self, String> {
        check_stream(stream).map_err(|m| format!("stream: {m}"))?;
        validate_source_url(url_text).map_err(|m| format!("url: {m}"))?;
        let (app, key) = stream.split_once('/').unwrap_or_default();
        let source = SourceConfig {
            stream: stream.to_owned(),
            url: url::expand(url_text, app, key),
            options,
        };
        let idle_set = options_idle_set(&source.options);
        check_options(&source, idle_set).map_err(|(k, m)| format!("{k}: {m}"))?;
        Ok(source)
    }
}

/// Whether run-time options set `close_after_idle_ms` (it differs from the default).
fn options_idle_set(o: &SourceOptions) -> bool {
    o.close_after_idle != SourceOptions::default().close_after_idle
}

/// The scheme of a URL, lower case ("" if there is none).
pub fn url_scheme(u: &str) -> String {
    u.split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default()
}

fn is_rtsp(u: &str) -> bool {
    matches!(url_scheme(u).as_str(), "rtsp" | "rtsps")
}

/// Options that only make sense with others (`idle_set`: `close_after_idle_ms` was
/// given). `Err` names the key and says why.
fn check_options(s: &SourceConfig, idle_set: bool) -> Result<(), (&'static str, String)> {
    if s.options.rtsp_transport != RtspTransport::Tcp && !is_rtsp(&s.url) {
        return Err((
            "rtsp_transport",
            "only applies to rtsp:// and rtsps:// sources".into(),
        ));
    }
    let tls_scheme = matches!(url_scheme(&s.url).as_str(), "rtmps" | "rtsps");
    if s.options.ca.is_some() && !tls_scheme {
        return Err(("ca", "only applies to rtmps:// and rtsps:// sources".into()));
    }
    if !s.options.tls_verify && !tls_scheme {
        return Err((
            "tls_verify",
            "only applies to rtmps:// and rtsps:// sources".into(),
        ));
    }
    if idle_set && !s.options.on_demand {
        return Err((
            "close_after_idle_ms",
            "only applies with `on_demand = true`".into(),
        ));
    }
    Ok(())
}

/// `app/key`: both non-empty, one slash, no wildcard or query.
pub(crate) fn check_stream(v: &str) -> Result<(), String> {
    let ok = matches!(v.split_once('/'), Some((a, k))
        if !a.is_empty() && !k.is_empty() && !k.contains('/'))
        && v.chars()
            .all(|c| c.is_ascii_graphic() && !"*?#&=%{}".contains(c));
    if !ok {
        return Err(format!(
            "`{v}` must be `app/key` (e.g. `cams/door`), without wildcards or a query"
        ));
    }
    Ok(())
}

/// Checks a source URL; `Err` quotes it redacted.
pub(crate) fn validate_source_url(u: &str) -> Result<(), String> {
    url::validate_url(u, SOURCE_SCHEMES)
}

/// `source[i]` resolved; `streams` holds the streams of the sources so far.
pub(crate) fn resolve(
    cx: &Checker<'_>,
    i: usize,
    mut raw: RawSource,
    streams: &mut HashSet<String>,
) -> Result<SourceConfig, ConfigError> {
    let key = format!("source[{i}]");
    let stream = raw.stream.get_ref().clone();
    check_stream(&stream).map_err(|m| cx.err(raw.stream.span(), &format!("{key}.stream"), m))?;
    if !streams.insert(stream.clone()) {
        return Err(cx.err(
            raw.stream.span(),
            &format!("{key}.stream"),
            format!("another [[source]] already publishes `{stream}`"),
        ));
    }
    validate_source_url(raw.url.get_ref())
        .map_err(|m| cx.err(raw.url.span(), &format!("{key}.url"), m))?;
    // Spans of the options, before resolving takes them.
    let transport_span = raw.rtsp_transport.as_ref().map(|v| v.span());
    let idle_span = raw.close_after_idle_ms.as_ref().map(|v| v.span());
    let ca_span = raw.ca.as_ref().map(|v| v.span());
    let verify_span = raw.tls_verify.as_ref().map(|v| v.span());
    let options = SourceOptions::from_raw(&mut raw, cx, &key)?;
    let (app, k) = stream.split_once('/').unwrap_or_default();
    let source = SourceConfig {
        url: url::expand(raw.url.get_ref(), app, k),
        stream: raw.stream.into_inner(),
        options,
    };
    if let Err((name, m)) = check_options(&source, idle_span.is_some()) {
        let span = match name {
            "rtsp_transport" => transport_span,
            "ca" => ca_span,
            "tls_verify" => verify_span,
            _ => idle_span,
        }
        .unwrap_or_else(|| raw.url.span());
        return Err(cx.err(span, &format!("{key}.{name}"), m));
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use crate::{redact_url, Config, RtspTransport};
    use std::time::Duration;

    fn parse(s: &str) -> Result<Config, String> {
        Config::from_toml_str(s, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn sources_parse_with_defaults() {
        let c = parse(
            "[[source]]\nstream = \"cams/door\"\nurl = \"rtsp://u:p@192.0.2.10:554/Streaming/Channels/101\"\n\
             rtsp_transport = \"udp\"\n\n\
             [[source]]\nstream = \"live/b\"\nurl = \"rtmp://o:1935/{app}/{stream}\"\non_demand = true\n\
             close_after_idle_ms = 2500\n\n\
             [[source]]\nstream = \"live/c\"\nurl = \"srt://o:9000?streamid=#!::r=live/c,m=request\"\n",
        )
        .unwrap();
        let [a, b, s] = &c.sources[..] else {
            panic!("{:?}", c.sources)
        };
        assert_eq!(a.app_key(), ("cams", "door"));
        assert_eq!(a.options.rtsp_transport, RtspTransport::Udp);
        assert!(!a.options.on_demand);
        assert_eq!(a.scheme(), "rtsp");
        assert_eq!(b.url, "rtmp://o:1935/live/b");
        assert!(b.options.on_demand);
        assert_eq!(b.options.close_after_idle, Duration::from_millis(2500));
        assert_eq!(s.options.close_after_idle, Duration::from_secs(10));
        assert_eq!(s.scheme(), "srt");
        assert_eq!(a.options.tls(), crate::TargetTls::default());
    }

    #[test]
    fn tls_sources_take_a_ca_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("prism-source-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("prism.toml");
        std::fs::write(
            &file,
            "[[source]]\nstream = \"a/b\"\nurl = \"rtmps://h/a/b\"\nca = \"ca.pem\"\n\n\
             [[source]]\nstream = \"a/c\"\nurl = \"rtsps://h/c\"\ntls_verify = false\n",
        )
        .unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.sources[0].options.tls().ca, Some(dir.join("ca.pem")));
        assert!(c.sources[0].options.tls().verify);
        assert!(!c.sources[1].options.tls().verify);
        assert_eq!(c.sources[1].options.tls().ca, None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_sources_are_refused_with_their_place() {
        for (toml, want) in [
            ("stream = \"nokey\"\nurl = \"rtmp://h/a/b\"", "source[0].stream"),
            ("stream = \"a/*\"\nurl = \"rtmp://h/a/b\"", "source[0].stream"),
            ("stream = \"a/b\"\nurl = \"http://h/a/b\"", "unsupported scheme"),
            ("stream = \"a/b\"\nurl = \"rtmp://h/onlyapp\"", "app and a stream key"),
            ("stream = \"a/b\"\nurl = \"rtmp://h/a/{key}\"", "placeholder"),
            (
                "stream = \"a/b\"\nurl = \"rtmp://h/a/b\"\nrtsp_transport = \"udp\"",
                "source[0].rtsp_transport: only applies to rtsp://",
            ),
            (
                "stream = \"a/b\"\nurl = \"rtsp://h/a\"\nrtsp_transport = \"quic\"",
                "not `tcp` or `udp`",
            ),
            (
                "stream = \"a/b\"\nurl = \"rtmp://h/a/b\"\nca = \"ca.pem\"",
                "source[0].ca: only applies to rtmps:// and rtsps://",
            ),
            (
                "stream = \"a/b\"\nurl = \"rtsp://h/a\"\ntls_verify = false",
                "source[0].tls_verify: only applies to rtmps:// and rtsps://",
            ),
            (
                "stream = \"a/b\"\nurl = \"rtmp://h/a/b\"\nclose_after_idle_ms = 10000",
                "only applies with `on_demand = true`",
            ),
            (
                "stream = \"a/b\"\nurl = \"rtmp://h/a/b\"\non_demand = true\nclose_after_idle_ms = 0",
                "must be > 0",
            ),
            ("stream = \"a/b\"\nurl = \"rtmp://h/a/b\"\nname = \"x\"", "unknown field"),
        ] {
            let e = parse(&format!("[[source]]\n{toml}\n")).unwrap_err();
            assert!(e.contains(want), "{toml}: {e}");
            assert!(e.starts_with("t.toml:"), "{e}");
        }
        let e = parse(
            "[[source]]\nstream = \"a/b\"\nurl = \"rtmp://h/a/b\"\n\
             [[source]]\nstream = \"a/b\"\nurl = \"srt://h:1\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("t.toml:5:") && e.contains("already publishes"),
            "{e}"
        );
    }

    #[test]
    fn credentials_never_reach_messages() {
        let e = parse("[[source]]\nstream = \"a/b\"\nurl = \"rtsp://admin:hunter22@h:99999/x\"\n")
            .unwrap_err();
        assert!(!e.contains("hunter22"), "{e}");
        assert_eq!(
            redact_url("rtsp://admin:hunter22@192.0.2.10:554/Streaming/Channels/101"),
            "rtsp://<redacted>@192.0.2.10:554/Streaming/Channels/<redacted>"
        );
        let a =
            super::SourceConfig::new("a/b", "rtsp://u:hunter22@h:1/x", Default::default()).unwrap();
        assert!(!redact_url(&a.url).contains("hunter22"));
        let e = super::SourceConfig::new("a/b", "rtmp://u:hunter22@h:0/x/y", Default::default())
            .unwrap_err();
        assert!(e.starts_with("url:") && !e.contains("hunter22"), "{e}");
    }
}
