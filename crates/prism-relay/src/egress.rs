//! What server and push connections share when sending hub frames.

use prism_hub::Frame;
use prism_rtmp::chunk::PreChunked;
use prism_rtmp::session::MediaKindExt;

/// The frame's payload chunked once for every connection that sends it at `chunk_size`
/// (the first caller builds it, the rest share it). None for payloads that fit one chunk:
/// they go out as header + payload already, with nothing to share.
pub(crate) fn shared_body(f: &Frame, chunk_size: u32) -> Option<&PreChunked> {
    if f.payload.len() <= chunk_size as usize {
        return None;
    }
    f.wire
        .get_or_init(|| {
            // A copy of the payload with its chunk headers, held as long as this frame (the
            // GOP cache swaps it for a cold copy past the live edge): charged with it.
            f.mem.grow(f.payload.len());
            PreChunked::new(f.kind.csid(), chunk_size, &f.payload)
        })
        .filter(|b| b.fits(f.kind.csid(), chunk_size))
}

/// The metrics label of a hub drop reason. An exhaustive match, so a new hub reason
/// must be given its label here (prism-metrics does not depend on the hub).
pub(crate) fn drop_reason(r: prism_hub::DropReason) -> prism_metrics::DropReason {
    use prism_hub::DropReason as H;
    use prism_metrics::DropReason as M;
    match r {
        H::QueueFull => M::QueueFull,
        H::WaitingKeyframe => M::WaitingKeyframe,
        H::AudioOverflow => M::AudioOverflow,
    }
}
