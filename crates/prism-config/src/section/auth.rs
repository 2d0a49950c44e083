//! `[auth]`: HTTP webhooks that decide publishes and plays, the way nginx-rtmp's
//! `on_publish` and SRS's `http_hooks` do.

use std::time::Duration;

use super::check;
use crate::access::{Secret, WebhookUrl};

section! {
    #[derive(Default)]
    raw RawAuth;
    /// TOML table `[auth]`: publish/play webhooks.
    define AuthConfig {
        /// POSTed before every publish that passed the route's own rules.
        // The URL is never quoted in errors: its query may hold a secret.
        on_publish: String => on_publish: Option<WebhookUrl> = default(None),
            check |v: String| WebhookUrl::parse(&v).map(Some);
        /// The same for every play.
        on_play: String => on_play: Option<WebhookUrl> = default(None),
            check |v: String| WebhookUrl::parse(&v).map(Some);
        /// No answer by then refuses (default 2000).
        timeout_ms: u64 => timeout: Duration = default(Duration::from_millis(2000)),
            check |v: u64| check::range(1, 60_000)(v).map(Duration::from_millis);
        /// Sent as `Authorization: Bearer` so the panel knows the call is Prism's.
        token: String => token: Option<Secret> = default(None),
            check |t: String| check::header_token(&t).map(|()| Some(Secret::new(t)));
    }
}
