//! `[rtsp]`: the RTSP server (players out); absent = off.

use std::net::SocketAddr;
use std::time::Duration;

use super::check;

section! {
    raw RawRtsp;
    /// TOML table `[rtsp]`.
    define_required RtspConfig {
        /// TCP address players connect to, e.g. `0.0.0.0:8554`: rtsp://HOST:PORT/{app}/{key}.
        listen: String => listen: SocketAddr = required(), check check::addr;
        /// A session that sends no request (RTSP or RTCP) for this long is closed; announced to players in the `Session` header.
        session_timeout_ms: u64 => session_timeout: Duration = default(Duration::from_millis(60_000)),
            check |v: u64| check::range(5_000, 600_000)(v).map(Duration::from_millis);
    }
}
