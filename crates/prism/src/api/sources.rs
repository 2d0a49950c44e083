//! `/api/v1/sources`: pulled sources (`[[source]]` and those added here): list, add, show,
//! remove. URLs are shown redacted.

use super::{error, json, no_content, percent_encode, Resp};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use prism_config::{RtspTransport, SourceConfig, SourceOptions};
use prism_relay::{AddSourceError, Relay, SourceSnapshot};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Serialize)]
struct SourceList {
    sources: Vec<SourceJson>,
}

#[derive(Serialize)]
struct SourceJson {
    stream: String,
    url: String,
    origin: &'static str,
    on_demand: bool,
    state: &'static str,
    reconnects: u64,
    bytes_received: u64,
    bitrate_bps: u64,
    last_error: Option<String>,
}

impl SourceJson {
    fn new(s: &SourceSnapshot) -> Self {
        SourceJson {
            stream: s.stream.clone(),
            url: s.url.clone(),
            origin: s.origin.as_str(),
            on_demand: s.on_demand,
            state: s.state.as_str(),
            reconnects: s.reconnects,
            bytes_received: s.bytes_received,
            bitrate_bps: s.bitrate_bps,
            last_error: s
                .last_error
                .as_ref()
                .map(|(reason, detail)| format!("{reason}: {detail}")),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSource {
    stream: String,
    url: String,
    #[serde(default)]
    on_demand: bool,
    rtsp_transport: Option<String>,
    close_after_idle_ms: Option<u64>,
}

/// `GET /api/v1/sources`.
pub(super) fn list(relay: &Relay) -> Resp {
    let sources = relay.sources().iter().map(SourceJson::new).collect();
    json(StatusCode::OK, &SourceList { sources })
}

/// `GET /api/v1/sources/{app}/{key}`.
pub(super) fn one(relay: &Relay, app: &str, key: &str) -> Resp {
    let stream = format!("{app}/{key}");
    match relay.sources().iter().find(|s| s.stream == stream) {
        Some(s) => json(StatusCode::OK, &SourceJson::new(s)),
        None => no_source(&stream),
    }
}

/// `DELETE /api/v1/sources/{app}/{key}`: stops pulling; the stream ends. A source of the
/// config file comes back with the next reload that still names it.
pub(super) fn remove(relay: &Relay, app: &str, key: &str) -> Resp {
    let stream = format!("{app}/{key}");
    if relay.remove_source(&stream) {
        no_content()
    } else {
        no_source(&stream)
    }
}

/// `POST /api/v1/sources`.
pub(super) async fn add(relay: &std::sync::Arc<Relay>, req: Request<Incoming>) -> Resp {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        );
    }
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("reading the body: {e}")),
    };
    let new: NewSource = match serde_json::from_slice(&body) {
        Ok(s) => s,
        // serde's message may quote a value (the URL): say only where it broke.
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected {{\"stream\": \"app/key\", \"url\": \"...\"}} (optional: on_demand, \
                     rtsp_transport, close_after_idle_ms): invalid JSON at line {} column {}",
                    e.line(),
                    e.column()
                ),
            )
        }
    };
    let mut options = SourceOptions {
        on_demand: new.on_demand,
        ..SourceOptions::default()
    };
    match new.rtsp_transport.as_deref() {
        None | Some("tcp") => {}
        Some("udp") => options.rtsp_transport = RtspTransport::Udp,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "rtsp_transport: must be `tcp` or `udp`",
            )
        }
    }
    if let Some(ms) = new.close_after_idle_ms {
        if ms == 0 {
            return error(StatusCode::BAD_REQUEST, "close_after_idle_ms: must be > 0");
        }
        if !new.on_demand {
            return error(
                StatusCode::BAD_REQUEST,
                "close_after_idle_ms: only applies with `on_demand = true`",
            );
        }
        options.close_after_idle = Duration::from_millis(ms);
    }
    let source = match SourceConfig::new(&new.stream, &new.url, options) {
        Ok(s) => s,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    match relay.add_source(source) {
        Ok(s) => {
            let mut resp = json(StatusCode::CREATED, &SourceJson::new(&s));
            let (app, key) = s.stream.split_once('/').unwrap_or((&s.stream, ""));
            let location = format!(
                "/api/v1/sources/{}/{}",
                percent_encode(app),
                percent_encode(key)
            );
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Err(e @ (AddSourceError::Exists(_) | AddSourceError::TooMany(_))) => {
            error(StatusCode::CONFLICT, &e.to_string())
        }
        Err(e @ AddSourceError::UnsupportedScheme(_)) => {
            error(StatusCode::BAD_REQUEST, &format!("url: {e}"))
        }
    }
}

fn no_source(stream: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        &format!("no source publishes {stream}"),
    )
}
