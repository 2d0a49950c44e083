//! Who may publish and play, for every transport: the route's address allowlists and
//! tokens, then the `[auth]` webhook ([`check`]). Transports ask the relay to publish or
//! play, which asks here first, and tell their client about a [`Refusal`] in their own
//! protocol.
//!
//! Secrets (tokens, the query that carries them, the webhook's bearer token and the query
//! of its URL) never reach a log line, a metric label or an error message.

use crate::conn::ConnInfo;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use prism_config::{Config, IpNet, Secret, WebhookUrl};
use prism_hub::PublishError;
use prism_metrics::RejectReason;
use tokio::net::TcpStream;
use tracing::warn;

/// What a client asked to publish or play: `app`, `key` and the query string that came
/// after the key (`token=...&...`, without the `?`), which may hold secrets.
#[derive(Clone, Copy)]
pub struct StreamRequest<'a> {
    pub app: &'a str,
    pub key: &'a str,
    pub query: &'a str,
}

impl std::fmt::Debug for StreamRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The query may carry a token.
        write!(f, "StreamRequest({}/{})", self.app, self.key)
    }
}

/// Why a publish or play was refused. `Display` is safe to show the client and to log.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No token, or not one of the route's.
    #[error("Unauthorized: missing or invalid token")]
    Unauthorized,
    /// The client's address is not in the route's allowlist.
    #[error("Forbidden: address not allowed")]
    ForbiddenAddress,
    /// The route turns playback off.
    #[error("Forbidden: playback is disabled for this stream")]
    PlayDisabled,
    /// The webhook answered with a status other than 2xx.
    #[error("Unauthorized: refused by the authorization service")]
    WebhookRefused,
    /// The webhook could not be reached, failed or did not answer in time (fail closed).
    #[error("Unauthorized: authorization service unavailable")]
    WebhookError,
    /// The app or stream key is empty or longer than a name can be (it becomes a metric
    /// label and appears in logs).
    #[error("Bad name: app or stream key empty or too long")]
    BadName,
    /// `[limits] max_streams` streams are live.
    #[error("Server busy: too many live streams")]
    TooManyStreams,
    /// The hub refused (the key is already live, the server is shutting down).
    #[error("{0}")]
    Hub(PublishError),
    /// The media-memory budget (`[limits] max_memory_mb`) is above its high-water mark.
    #[error("Server busy: out of memory for new streams")]
    OutOfMemory,
}

impl Refusal {
    /// The `reason` label of `prism_publish_rejected_total` / `prism_play_rejected_total`.
    pub fn reason(&self) -> RejectReason {
        match self {
            Refusal::Unauthorized => RejectReason::Unauthorized,
            Refusal::ForbiddenAddress => RejectReason::ForbiddenAddress,
            Refusal::PlayDisabled => RejectReason::PlayDisabled,
            Refusal::WebhookRefused => RejectReason::WebhookRefused,
            Refusal::WebhookError => RejectReason::WebhookError,
            Refusal::TooManyStreams => RejectReason::TooManyStreams,
            Refusal::BadName => RejectReason::BadName,
            Refusal::Hub(PublishError::AlreadyLive(_)) => RejectReason::AlreadyLive,
            Refusal::Hub(_) => RejectReason::Other,
            Refusal::OutOfMemory => RejectReason::Memory,
        }
    }

    /// The RTMP onStatus code (level `error`) for a refused publish. librtmp (OBS) closes on
    /// `Publish.BadName`, `Publish.Rejected` and `Publish.Denied`; ffmpeg prints the
    /// description after "Server error:".
    pub fn rtmp_publish_code(&self) -> &'static str {
        match self {
            Refusal::Hub(PublishError::AlreadyLive(_)) | Refusal::BadName => {
                "NetStream.Publish.BadName"
            }
            Refusal::ForbiddenAddress | Refusal::PlayDisabled => "NetStream.Publish.Denied",
            _ => "NetStream.Publish.Rejected",
        }
    }

    /// Whether the client is refused for who it is (rather than for the stream's state): the
    /// connection is then closed after the refusal, so a client cannot try token after
    /// token on one connection.
    pub fn is_access_denied(&self) -> bool {
        !matches!(
            self,
            Refusal::Hub(_) | Refusal::TooManyStreams | Refusal::OutOfMemory
        )
    }
}

/// Longest app name accepted (bytes).
const MAX_APP_LEN: usize = 128;
/// Longest stream key accepted (bytes, without the query string): well above any platform's
/// keys, small enough for a metric label and a log line.
pub const MAX_KEY_LEN: usize = 256;

fn name_ok(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && !name.chars().any(char::is_control)
}

/// What a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Play,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }
}

/// Whether `info` may `action` `req` under `config`: the name, the route's allowlist and
/// tokens, then the `[auth]` webhook (awaited, within `[auth] timeout_ms`; fail closed).
/// Webhook failures are logged here; the caller logs and counts the refusal.
pub async fn check(
    action: Action,
    req: StreamRequest<'_>,
    info: &ConnInfo,
    config: &Config,
) -> Result<(), Refusal> {
    if !name_ok(req.app, MAX_APP_LEN) || !name_ok(req.key, MAX_KEY_LEN) {
        return Err(Refusal::BadName);
    }
    let access = config.access_for(req.app, req.key);
    let (networks, tokens, hook) = match action {
        Action::Publish => (
            access.allow_publish,
            access.publish_tokens,
            config.auth.on_publish.as_ref(),
        ),
        Action::Play => {
            if !access.play {
                return Err(Refusal::PlayDisabled);
            }
            (
                access.allow_play,
                access.play_tokens,
                config.auth.on_play.as_ref(),
            )
        }
    };
    if let Some(nets) = networks {
        if !address_allowed(nets, info.peer.ip()) {
            return Err(Refusal::ForbiddenAddress);
        }
    }
    if let Some(tokens) = tokens {
        if !token_allowed(tokens, req.query) {
            return Err(Refusal::Unauthorized);
        }
    }
    let Some(url) = hook else { return Ok(()) };
    let body = serde_json::json!({
        "action": action.as_str(),
        "app": req.app,
        "key": req.key,
        "stream": format!("{}/{}", req.app, req.key),
        "query": req.query,
        "client_addr": info.peer.to_string(),
        "client_ip": prism_config::canonical_ip(info.peer.ip()).to_string(),
        "transport": info.transport,
    });
    let call = post_json(url, config.auth.token.as_ref(), body.to_string());
    match tokio::time::timeout(config.auth.timeout, call).await {
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
        Ok(Ok(status)) => {
            warn!(peer = %info.peer, webhook = %url.shown(), status, "{} webhook refused", action.as_str());
            Err(Refusal::WebhookRefused)
        }
        Ok(Err(e)) => {
            warn!(peer = %info.peer, webhook = %url.shown(), "{} webhook failed: {e}", action.as_str());
            Err(Refusal::WebhookError)
        }
        Err(_) => {
            warn!(peer = %info.peer, webhook = %url.shown(), timeout_ms = config.auth.timeout.as_millis() as u64, "{} webhook did not answer in time", action.as_str());
            Err(Refusal::WebhookError)
        }
    }
}

fn address_allowed(nets: &[IpNet], ip: std::net::IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// Whether the query's `token` parameter is one of `tokens`. Every offered `token` is tried
/// against every configured one, in time that does not depend on where they differ.
fn token_allowed(tokens: &[Secret], query: &str) -> bool {
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("token="))
        .any(|offered| tokens.iter().any(|t| t.matches(offered)))
}

/// POSTs `body` as JSON to `url` over HTTP/1.1 and returns the response status. The body of
/// the answer is not read: the status is the verdict.
async fn post_json(url: &WebhookUrl, token: Option<&Secret>, body: String) -> Result<u16, String> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let host = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut request = hyper::Request::post(url.path.as_str())
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("prism/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {}", t.expose()));
    }
    // Never format the request in an error: its header holds the token.
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| "cannot build the request (bad host or path)".to_string())?;
    let status = |r: Result<hyper::Response<hyper::body::Incoming>, hyper::Error>| {
        r.map(|r| r.status().as_u16())
            .map_err(|e| format!("HTTP: {e}"))
    };
    // The connection future drives the I/O; it may finish (the panel answered and closed)
    // before the response future is polled again, which then holds the answer.
    let mut conn = std::pin::pin!(conn);
    let mut response = std::pin::pin!(sender.send_request(request));
    tokio::select! {
        biased;
        r = &mut response => return status(r),
        _ = &mut conn => {}
    }
    status(response.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &[&str]) -> Vec<Secret> {
        let toml = format!(
            "[[route]]\nstream = \"*\"\npublish_tokens = [{}]\n",
            list.iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let c = prism_config::Config::from_toml_str(&toml, "t").unwrap();
        c.routes[0].access.publish_tokens.clone().unwrap()
    }

    #[test]
    fn tokens_come_from_the_token_parameter() {
        let t = secrets(&["aaaaaaaa", "bbbbbbbb"]);
        assert!(token_allowed(&t, "token=aaaaaaaa"));
        assert!(token_allowed(&t, "x=1&token=bbbbbbbb&y=2"));
        assert!(token_allowed(&t, "token=wrong&token=bbbbbbbb"));
        assert!(!token_allowed(&t, ""));
        assert!(!token_allowed(&t, "token="));
        assert!(!token_allowed(&t, "mytoken=aaaaaaaa"));
        assert!(!token_allowed(&t, "token=aaaaaaaab"));
    }

    #[test]
    fn refusal_codes() {
        assert_eq!(
            Refusal::Unauthorized.rtmp_publish_code(),
            "NetStream.Publish.Rejected"
        );
        assert_eq!(
            Refusal::ForbiddenAddress.rtmp_publish_code(),
            "NetStream.Publish.Denied"
        );
        let dup = Refusal::Hub(PublishError::AlreadyLive("live/x".into()));
        assert_eq!(dup.rtmp_publish_code(), "NetStream.Publish.BadName");
        assert_eq!(dup.reason().as_str(), "already_live");
        assert!(!dup.is_access_denied());
        assert!(Refusal::WebhookError.is_access_denied());
        // Out of memory: the stream's state, not the client; it may try again later.
        let oom = Refusal::OutOfMemory;
        assert_eq!(oom.rtmp_publish_code(), "NetStream.Publish.Rejected");
        assert_eq!(oom.reason().as_str(), "memory");
        assert!(!oom.is_access_denied());
        assert!(oom.to_string().contains("out of memory"));
    }
}
