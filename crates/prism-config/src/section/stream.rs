//! `[stream]`: how the hub treats ingested streams (resolved as `Config::hub`).

use std::time::Duration;

use super::check;

section! {
    #[derive(Default)]
    raw RawHub;
    /// TOML table `[stream]`.
    define HubConfig {
        /// How long a stream (and its outgoing targets) stays alive after its publisher drops, waiting for it to come back; 0 = none.
        reconnect_grace_ms: u64 => reconnect_grace: Duration = default(Duration::from_millis(5_000)),
            check check::ms;
        /// Keep the last GOP so new players start on a keyframe.
        gop_cache: bool => gop_cache: bool = default(true), check check::ok;
        /// Cap on one stream's cached GOP, in bytes; a longer GOP is not cached (joiners then wait for the next keyframe).
        gop_cache_max_bytes: u64 => gop_cache_max_bytes: usize = default(32 * 1024 * 1024),
            check |v: u64| check::range(1, 1 << 34)(v).map(|v| v as usize);
    }
}
