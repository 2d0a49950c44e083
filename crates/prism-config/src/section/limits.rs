//! `[limits]`: what one server takes on, so a flood or a bug in one client cannot take the
//! server down for everyone.

use super::check;

section! {
    #[derive(Default)]
    raw RawLimits;
    /// TOML table `[limits]`: connections, streams and targets.
    #[derive(Copy)]
    define Limits {
        /// Client connections open at once over every transport (RTMP, RTMPS, RTMPT/RTMPTS sessions, SRT callers).
        max_connections: usize => max_connections: usize = default(2000), check check::positive;
        /// The same, from one client address.
        max_connections_per_ip: usize => max_connections_per_ip: usize = default(100),
            check check::positive;
        /// Live streams (with a publisher or in reconnect grace).
        max_streams: usize => max_streams: usize = default(500), check check::positive;
        /// Push targets of one stream (config and admin API together).
        max_targets_per_stream: usize => max_targets_per_stream: usize = default(50),
            check check::positive;
        /// ABR ladders (ffmpeg workers) running at once; a stream beyond is relayed without one.
        max_transcodes: usize => max_transcodes: usize = default(4), check check::ok;
        /// Memory for media (GOP caches, player and target queues, reassembly, RTMPT and HLS buffers), in MiB; above 90 % new publishes are refused and the streams holding most shed, back to normal below 75 %. 0 = a quarter of the machine's (or the cgroup's) memory.
        max_memory_mb: u64 => max_memory_mb: u64 = default(0), check check::ok;
    }
}
