//! `[rtmp]`: the RTMP ingest and playback listener.

use std::net::SocketAddr;
use std::time::Duration;

use super::check;

section! {
    #[derive(Default)]
    raw RawRtmp;
    /// TOML table `[rtmp]`: the RTMP ingest/playback listener.
    define RtmpConfig {
        /// Where publishers and players connect (default `0.0.0.0:1935`).
        listen: String => listen: SocketAddr = default(SocketAddr::from(([0, 0, 0, 0], 1935))),
            check check::addr;
        /// The chunk size we announce for outgoing messages, 128..=65536.
        chunk_size: u32 => chunk_size: u32 = default(4096), check check::range(128, 65536);
        /// A peer that has not finished the handshake by then is dropped, so idle scanners cannot pin connections.
        handshake_timeout_ms: u64 => handshake_timeout: Duration = default(Duration::from_millis(10_000)),
            check check::positive_ms;
        /// Largest incoming message we reassemble; bounds the memory a single peer can make us allocate.
        max_message_bytes: u32 => max_message_bytes: u32 = default(8 * 1024 * 1024),
            // RTMP message lengths are 24-bit; a larger limit could never apply.
            check |v: u32| check::range(1, 0xFF_FFFF)(v)
                .map_err(|m| format!("{m} (RTMP message lengths are 24-bit)"));
        /// Largest Set Chunk Size a peer may announce.
        max_chunk_size: u32 => max_chunk_size: u32 = default(16 * 1024 * 1024),
            // 128 is the protocol's initial chunk size; nobody announces less.
            check check::range(128, 0x7FFF_FFFF);
        /// A publisher (or a connection that has not started playing) that sends nothing for this long is closed; players are judged by write progress instead.
        idle_timeout_ms: u64 => idle_timeout: Duration = default(Duration::from_millis(30_000)),
            check check::positive_ms;
        /// Accept RTMPE (encrypted RTMP, C0 = 6/8/9) here and RTMPTE on `[rtmpt]`. Off by default: RC4 is weak; prefer RTMPS.
        rtmpe: bool => rtmpe: bool = default(false), check check::ok;
        /// Enhanced RTMP v2: the tcUrl sent with `NetConnection.Connect.ReconnectRequest` (another node) on shutdown or drain; unset: clients reconnect to the URL they used.
        reconnect_url: String => reconnect_url: Option<String> = default(None),
            check |u: String| {
                let l = u.to_ascii_lowercase();
                if l.starts_with("rtmp://") || l.starts_with("rtmps://") {
                    Ok(Some(u))
                } else {
                    Err(format!("`{u}` is not an rtmp:// or rtmps:// URL"))
                }
            };
    }
}
