//! `[[route]]`: which streams a route applies to, its access rules, and its targets
//! (`[[route.target]]`, in `target`).

use toml::Spanned;

use super::hls::HlsContainer;
use super::target::{self, RawTarget, TargetConfig};
use super::FromRaw;
use crate::access::{self, IpNet, Secret};
use crate::{Checker, ConfigError, Limits, StreamPattern};

section! {
    raw RawRoute;
    raw Head {
        /// The streams this route applies to: `app/key` pattern (`*` wildcards) or `*`.
        stream: Spanned<String>;
        /// `[[route.target]]`: where matching streams are pushed.
        #[serde(default)]
        target: Vec<RawTarget>;
    }
    /// Access rules of one `[[route]]`. `None` = the route does not say; for each rule the
    /// first matching route (file order) that says decides.
    define RouteAccess {
        /// A publisher must send one as `?token=` (RTMP: after the stream key; SRT: after the resource in the stream id).
        publish_tokens: Vec<String> => publish_tokens: Option<Vec<Secret>> = default(None),
            check tokens;
        /// Publishers must connect from one of these networks.
        allow_publish: Vec<String> => allow_publish: Option<Vec<IpNet>> = default(None),
            check networks;
        /// False turns playback of matching streams off.
        play: bool => play: Option<bool> = default(None), check |v: bool| Ok(Some(v));
        /// A player must send one as `?token=`.
        play_tokens: Vec<String> => play_tokens: Option<Vec<Secret>> = default(None),
            check tokens;
        /// Players must connect from one of these networks.
        allow_play: Vec<String> => allow_play: Option<Vec<IpNet>> = default(None),
            check networks;
    }
    /// Which outputs serve matching streams, besides RTMP/SRT players and targets.
    define RouteOutputs {
        /// LL-HLS/HLS/DASH for matching streams (default: on when `[hls]` exists).
        hls: bool => hls: Option<bool> = default(None), check |v: bool| Ok(Some(v));
        /// HLS segment container for matching streams: `fmp4`, `ts` or `both` (default: `[hls]` container).
        container: String => container: Option<HlsContainer> = default(None),
            check |v: String| HlsContainer::parse(v).map(Some);
    }
}

impl RouteAccess {
    pub fn is_empty(&self) -> bool {
        *self == RouteAccess::default()
    }
}

fn tokens(v: Vec<String>) -> Result<Option<Vec<Secret>>, String> {
    nonempty_list(
        v,
        "an empty list would refuse everyone; remove the key to allow without a token",
        |t| access::validate_token(&t).map(|()| Secret::new(t)),
    )
}

fn networks(v: Vec<String>) -> Result<Option<Vec<IpNet>>, String> {
    nonempty_list(
        v,
        "an empty list would refuse everyone; remove the key to allow every address",
        |n| IpNet::parse(&n),
    )
}

/// A list that must not be empty (an empty allowlist would refuse everyone), each item
/// checked by `parse`; errors point at the list.
fn nonempty_list<T>(
    list: Vec<String>,
    empty: &str,
    parse: impl Fn(String) -> Result<T, String>,
) -> Result<Option<Vec<T>>, String> {
    if list.is_empty() {
        return Err(empty.into());
    }
    list.into_iter()
        .map(parse)
        .collect::<Result<_, _>>()
        .map(Some)
}

/// TOML `[[route]]`: where streams matching `stream` are pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub stream: StreamPattern,
    /// TOML `[[route.target]]`; names are unique within a route. May be empty when the
    /// route only sets access rules.
    pub targets: Vec<TargetConfig>,
    /// `publish_tokens`, `allow_publish`, `play`, `play_tokens`, `allow_play`.
    pub access: RouteAccess,
    /// `hls`, `container`.
    pub outputs: RouteOutputs,
}

/// Route `i` (0-based, as in messages: `route[0]`) resolved.
pub(crate) fn resolve(
    cx: &Checker<'_>,
    i: usize,
    mut r: RawRoute,
    limits: &Limits,
    ladders: &[crate::TranscodeConfig],
) -> Result<Route, ConfigError> {
    let key = format!("route[{i}]");
    let stream = StreamPattern::new(r.stream.get_ref())
        .map_err(|m| cx.err(r.stream.span(), &format!("{key}.stream"), m))?;
    let access = RouteAccess::from_raw(&mut r, cx, &key)?;
    let outputs = RouteOutputs::from_raw(&mut r, cx, &key)?;
    if r.target.is_empty() && access.is_empty() && outputs == RouteOutputs::default() {
        return Err(cx.err(
            r.stream.span(),
            &key,
            "route has no [[route.target]], no access rule and no output setting; add one or remove the route",
        ));
    }
    if r.target.len() > limits.max_targets_per_stream {
        return Err(cx.err(
            r.stream.span(),
            &key,
            format!(
                "route has {} targets, more than [limits] max_targets_per_stream ({})",
                r.target.len(),
                limits.max_targets_per_stream
            ),
        ));
    }
    let mut names = std::collections::HashSet::new();
    let targets = std::mem::take(&mut r.target)
        .into_iter()
        .enumerate()
        .map(|(j, t)| target::resolve(cx, &format!("{key}.target[{j}]"), t, &mut names, ladders))
        .collect::<Result<_, _>>()?;
    Ok(Route {
        stream,
        targets,
        access,
        outputs,
    })
}
