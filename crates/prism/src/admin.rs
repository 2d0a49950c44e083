//! The admin/observability HTTP endpoint: /metrics, /healthz, the admin API under /api/
//! (see [`crate::api`]) and the status page at /.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prism_relay::Relay;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::warn;

use crate::api::{self, Api};
use crate::state::StateStore;

pub async fn run(
    listener: TcpListener,
    relay: Arc<Relay>,
    store: Arc<StateStore>,
    transcoder: Arc<prism_transcode::Transcoder>,
) {
    let listen = listener
        .local_addr()
        .unwrap_or_else(|_| relay.config().http.listen);
    let api = Arc::new(Api::new(relay.clone(), listen, store, transcoder));
    // Bitrate history for the console's charts; ends with this task (aborted at shutdown).
    let _sampler = AbortOnDrop(tokio::spawn({
        let api = api.clone();
        async move {
            let mut tick = tokio::time::interval(api::HISTORY_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                api.sample();
            }
        }
    }));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (relay, api) = (relay.clone(), api.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let (relay, api) = (relay.clone(), api.clone());
                async move { Ok::<_, Infallible>(handle(req, &relay, &api).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                // Without a timer hyper ignores the header timeout.
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>, relay: &Relay, api: &Api) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        return api.handle(req).await;
    }
    match path {
        "/" | "/index.html" => api::status_page(),
        "/metrics" => {
            relay.refresh_gauges();
            respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                relay.render_metrics(),
            )
        }
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
