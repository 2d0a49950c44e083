//! `[player]`: the queue budget of every player, and the queue keys `[[route.target]]`
//! takes too (`queue_keys!`).

/// Held output counts against the queue budget and delays every frame: keep it short.
pub(crate) const MAX_WRITE_MERGE_MS: u32 = 1000;

/// The queue keys, declared once for `[player]` and `[[route.target]]`: expands to the given
/// `section! { .. }` with a `QueueConfig` group (mode `define` or `reuse`) spliced in.
/// Spliced rather than `#[serde(flatten)]`ed: flatten disables `deny_unknown_fields`.
/// Paths are absolute: the keys expand in the module that splices them.
macro_rules! queue_keys {
    (section! { $($pre:tt)* } $mode:ident { $($post:tt)* }) => {
        section! {
            $($pre)*
            $mode QueueConfig {
                /// Most media (by timestamp span) queued before frames are dropped.
                max_queue_ms: u32 => max_queue_ms: u32 = default(3_000),
                    check $crate::section::check::positive;
                /// Most bytes queued before frames are dropped.
                max_queue_bytes: usize => max_queue_bytes: usize = default(8 * 1024 * 1024),
                    check $crate::section::check::positive;
                /// How long the queue may stay over budget before the connection is dropped (and, for a target, reconnected); 0 = at once.
                overflow_disconnect_ms: u64 => overflow_disconnect: std::time::Duration =
                    default(std::time::Duration::from_millis(10_000)),
                    check $crate::section::check::ms;
                /// Hold output up to this long so the frames of that span go out in one write (SRS's "merged write"): fewer syscalls per byte, for up to this much latency; 0 = write every frame as it arrives; unset = the kind's default (players 0; push targets 0 with audio riding with the next video frame, see `QueueConfig::target_audio_ride`).
                write_merge_ms: u32 => write_merge: Option<std::time::Duration> =
                    default(None),
                    check |v: u32| {
                        let max = $crate::section::player::MAX_WRITE_MERGE_MS;
                        if v > max {
                            return Err(format!("must be at most {max}"));
                        }
                        Ok(Some(std::time::Duration::from_millis(v.into())))
                    };
            }
            $($post)*
        }
    };
}

queue_keys!(section! {
    #[derive(Default)]
    raw RawQueue;
    /// Queue budget of one outgoing connection (target or player).
    #[derive(Copy)]
} define {});

/// How long a push target without `write_merge_ms` holds audio-only output for the next
/// video frame, so both go out in one write: at 25 fps and 43 AAC frames a second, 25 writes
/// instead of 68, while video is never held (a grid would hold it too). A platform's ingest
/// buffers seconds, so the audio's wait costs nothing a viewer sees. Measured per forwarded
/// message in benches/README.md. `write_merge_ms = 0` turns it off (a low-latency hop). The
/// hub holds it (`Subscription::set_audio_ride` in prism-hub): no timer per target.
pub const DEFAULT_TARGET_AUDIO_RIDE: std::time::Duration = std::time::Duration::from_millis(40);

/// `write_merge_ms` of a player when unset: players watch live, so every frame is written
/// as it arrives (the write side still batches what is pending when the socket was busy).
pub const DEFAULT_PLAYER_WRITE_MERGE: std::time::Duration = std::time::Duration::ZERO;

impl QueueConfig {
    /// The write merge grid of a push target with these keys (none when unset).
    pub fn target_write_merge(&self) -> std::time::Duration {
        self.write_merge.unwrap_or(std::time::Duration::ZERO)
    }

    /// How long a push target's audio may wait for the next video frame: the default when
    /// `write_merge_ms` is unset, none when it is set (0 = low latency, or the grid merges).
    pub fn target_audio_ride(&self) -> std::time::Duration {
        match self.write_merge {
            None => DEFAULT_TARGET_AUDIO_RIDE,
            Some(_) => std::time::Duration::ZERO,
        }
    }

    /// The write merge of a player with these keys (its default when unset).
    pub fn player_write_merge(&self) -> std::time::Duration {
        self.write_merge.unwrap_or(DEFAULT_PLAYER_WRITE_MERGE)
    }
}
