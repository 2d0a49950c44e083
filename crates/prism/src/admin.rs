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

/// Serves until `stop` turns true (SIGTERM): then the listener closes, requests in flight
/// are answered (each connection closes after its current response) and `run` returns once
/// every connection is done; the caller bounds that wait.
pub async fn run(
    listener: TcpListener,
    relay: Arc<Relay>,
    store: Arc<StateStore>,
    transcoder: Arc<prism_transcode::Transcoder>,
    mut stop: tokio::sync::watch::Receiver<bool>,
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
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
            // Reap finished connections so the set stays as large as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (tcp, _) = match accepted {
            Ok(c) => c,
            Err(e) => {
                warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (relay, api, mut stop) = (relay.clone(), api.clone(), stop.clone());
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let (relay, api) = (relay.clone(), api.clone());
                async move { Ok::<_, Infallible>(handle(req, &relay, &api).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                // Without a timer hyper ignores the header timeout.
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => {}
            }
            // Shutting down: finish the request in flight, then close (an idle keep-alive
            // connection closes at once).
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
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
