//! `[http]`: the admin and observability endpoint (`/metrics`, `/healthz`, `/api/`, `/`).

use std::net::SocketAddr;

use super::check;

section! {
    #[derive(Default)]
    raw RawHttp;
    /// TOML table `[http]`: admin/observability endpoint (`/metrics`, `/healthz`, the admin
    /// API under `/api/` and the status page at `/`).
    define HttpConfig {
        /// Default `127.0.0.1:9935` (loopback: metrics are not for the internet).
        listen: String => listen: SocketAddr = default(SocketAddr::from(([127, 0, 0, 1], 9935))),
            check check::addr;
        /// Bearer token every `/api/` request must carry; absent = the API answers only while `listen` is a loopback address.
        token: String => token: Option<ApiToken> = default(None), check api_token;
    }
}

fn api_token(t: String) -> Result<Option<ApiToken>, String> {
    // Never echo the value: only what is wrong with it.
    if t.len() < 16 {
        return Err("must be at least 16 characters (e.g. `openssl rand -hex 32`)".into());
    }
    check::header_token(&t)?;
    Ok(Some(ApiToken(t)))
}

/// The admin API bearer token. `Debug` never shows it, so configs can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token itself, for comparing with a request's only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}
