//! `[edge]`: this node is an edge of an origin: a stream asked for here and not live here
//! is pulled from the origin while someone wants it.

use std::time::Duration;

use toml::Spanned;

use super::check;
use crate::{url, Checker, ConfigError};

/// Schemes an origin URL may use.
const ORIGIN_SCHEMES: &[&str] = &["rtmp", "rtmps", "srt"];

section! {
    raw RawEdge;
    raw Head {
        /// Origin URL template: `{app}` and `{stream}` expand to the stream asked for (rtmp://, rtmps://, srt:// with m=request).
        origin: Option<Spanned<String>>;
        /// Several origins, tried in order (instead of `origin`).
        origins: Option<Spanned<Vec<String>>>;
        /// Stop pulling a stream this long after its last consumer left (default 10000).
        close_after_idle_ms: Option<Spanned<u64>>;
    }
}

/// TOML table `[edge]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Origin URL templates, in the order they are tried (`origin`, or `origins`). Hold
    /// secrets: log them through [`crate::redact_url`].
    pub origins: Vec<String>,
    /// `close_after_idle_ms`.
    pub close_after_idle: Duration,
}

impl EdgeConfig {
    /// The origin URLs for stream `app/key`, in order.
    pub fn origins_for(&self, app: &str, key: &str) -> Vec<String> {
        self.origins
            .iter()
            .map(|o| url::expand(o, app, key))
            .collect()
    }
}

pub(crate) fn resolve(cx: &Checker<'_>, raw: Spanned<RawEdge>) -> Result<EdgeConfig, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let (list, list_span) = match (raw.origin, raw.origins) {
        (Some(o), None) => {
            let s = o.span();
            (vec![o.into_inner()], s)
        }
        (None, Some(l)) => {
            let s = l.span();
            (l.into_inner(), s)
        }
        (Some(o), Some(_)) => {
            return Err(cx.err(
                o.span(),
                "edge.origin",
                "set `origin` or `origins`, not both",
            ))
        }
        (None, None) => {
            return Err(cx.err(
                span,
                "edge",
                "needs `origin` (or `origins`): where streams not live here are pulled from",
            ))
        }
    };
    if list.is_empty() {
        return Err(cx.err(list_span, "edge.origins", "must name at least one origin"));
    }
    for o in &list {
        url::validate_url(o, ORIGIN_SCHEMES)
            .map_err(|m| cx.err(list_span.clone(), "edge.origin", m))?;
        if !(o.contains("{stream}")) {
            return Err(cx.err(
                list_span.clone(),
                "edge.origin",
                format!(
                    "`{}` must contain {{stream}} (and usually {{app}}): the edge pulls the stream asked for",
                    crate::redact_url(o)
                ),
            ));
        }
    }
    let close_after_idle = match raw.close_after_idle_ms {
        Some(v) => {
            let s = v.span();
            check::positive_ms(v.into_inner())
                .map_err(|m| cx.err(s, "edge.close_after_idle_ms", m))?
        }
        None => Duration::from_secs(10),
    };
    Ok(EdgeConfig {
        origins: list,
        close_after_idle,
    })
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::time::Duration;

    fn parse(s: &str) -> Result<Config, String> {
        Config::from_toml_str(s, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn edge_origins() {
        let c = parse("[edge]\norigin = \"rtmp://o:1935/{app}/{stream}\"\n").unwrap();
        let e = c.edge.unwrap();
        assert_eq!(e.origins_for("live", "k"), ["rtmp://o:1935/live/k"]);
        assert_eq!(e.close_after_idle, Duration::from_secs(10));
        let c = parse(
            "[edge]\norigins = [\"rtmp://o1/{app}/{stream}\", \"srt://o2:9000?streamid=#!::r={app}/{stream},m=request\"]\nclose_after_idle_ms = 500\n",
        )
        .unwrap();
        let e = c.edge.unwrap();
        assert_eq!(e.origins.len(), 2);
        assert_eq!(e.close_after_idle, Duration::from_millis(500));
        for (bad, want) in [
            ("[edge]\n", "needs `origin`"),
            (
                "[edge]\norigin = \"rtmp://o/a/b\"\norigins = [\"rtmp://o/a/b\"]\n",
                "not both",
            ),
            ("[edge]\norigins = []\n", "at least one"),
            (
                "[edge]\norigin = \"rtmp://o/live/fixed\"\n",
                "must contain {stream}",
            ),
            (
                "[edge]\norigin = \"rtsp://o/{app}/{stream}\"\n",
                "unsupported scheme",
            ),
            (
                "[edge]\norigin = \"rtmp://o/{app}/{stream}\"\nclose_after_idle_ms = 0\n",
                "must be > 0",
            ),
            (
                "[edge]\norigin = \"rtmp://o/{app}/{stream}\"\nfoo = 1\n",
                "unknown field",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
