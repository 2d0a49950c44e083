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
                /// Hold output up to this long so the frames of that span go out in one write (SRS's "merged write"): fewer syscalls per byte, for up to this much latency; 0 = write every frame as it arrives.
                write_merge_ms: u32 => write_merge: std::time::Duration =
                    default(std::time::Duration::ZERO),
                    check |v: u32| {
                        let max = $crate::section::player::MAX_WRITE_MERGE_MS;
                        if v > max {
                            return Err(format!("must be at most {max}"));
                        }
                        Ok(std::time::Duration::from_millis(v.into()))
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
