//! The bodies of Prism's fuzz targets, one module per target, each a `run(data)` that
//! panics when a check fails. `fuzz/` wraps them in libFuzzer (nightly); this crate's
//! `tests/corpus.rs` replays every checked-in corpus and past finding through them on
//! stable, so `cargo test` catches a reintroduced panic or broken invariant.
//!
//! A new parser gets a module here, an entry in [`TARGETS`], a `fuzz/fuzz_targets/` wrapper
//! and a `fuzz/corpus/<name>/` directory; the corpus test fails until all four exist.
//!
//! Helpers shared by the targets: how a fuzz input is cut into the pieces a
//! sans-I/O state machine is fed, so every target exercises "bytes arrive in any slicing".
//!
//! Stream targets read their input as `stream ++ [split]`: the last byte picks how
//! `stream` is sliced, so a raw capture with one byte appended is a valid seed, and the
//! fuzzer can mutate the bytes and the slicing independently.

pub mod amf0;
pub mod cmaf_payload;
pub mod config;
pub mod ertmp_media;
pub mod hls_packager;
pub mod mpegts_demux;
pub mod rtmp_chunk;
pub mod rtmp_client_session;
pub mod rtmp_handshake;
pub mod rtmp_session;
pub mod rtmpe_handshake;
pub mod rtmpt_client;
pub mod rtmpt_request;
pub mod srt_handshake;
pub mod webrtc_av1;
pub mod webrtc_h264;

// Pure std code of prism-transport-srt, compiled in by path: that crate also holds the
// tokio/srt-tokio transport and depends on the relay.
#[allow(dead_code)]
#[path = "../../prism-transport-srt/src/streamid.rs"]
mod streamid;

#[allow(dead_code)]
#[path = "../../prism-transport-srt/src/handshake.rs"]
mod handshake;

/// One fuzz target: its fuzz/ name, its body, and whether its input is `stream ++ [split]`
/// (so the corpus test may also replay it with other slicings).
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub stream_shaped: bool,
}

const fn target(name: &'static str, run: fn(&[u8]), stream_shaped: bool) -> Target {
    Target {
        name,
        run,
        stream_shaped,
    }
}

/// Every target.
pub const TARGETS: &[Target] = &[
    target("amf0", amf0::run, false),
    target(
        "cmaf_payload",
        |d| {
            cmaf_payload::run(d);
        },
        false,
    ),
    target("config", config::run, false),
    target(
        "hls_packager",
        |d| {
            hls_packager::run(d);
        },
        false,
    ),
    target("mpegts_demux", mpegts_demux::run, true),
    target("rtmp_chunk", rtmp_chunk::run, true),
    target("rtmp_client_session", rtmp_client_session::run, true),
    target("rtmp_handshake", rtmp_handshake::run, true),
    target("rtmp_session", rtmp_session::run, true),
    target("rtmpe_handshake", rtmpe_handshake::run, true),
    target("rtmpt_client", rtmpt_client::run, false),
    target("rtmpt_request", rtmpt_request::run, false),
    target("srt_handshake", srt_handshake::run, false),
    target("ertmp_media", ertmp_media::run, false),
    target("webrtc_av1", webrtc_av1::run, false),
    target("webrtc_h264", webrtc_h264::run, false),
];

/// Splits a fuzz input into the stream and its slicing byte (0 = one piece).
pub fn split_seed(data: &[u8]) -> (&[u8], u8) {
    match data.split_last() {
        Some((&seed, stream)) => (stream, seed),
        None => (data, 0),
    }
}

/// Slices `stream` into pieces as `seed` says:
/// - 0: the whole stream in one piece;
/// - 1..=63: pieces of exactly `seed` bytes (1 = byte at a time);
/// - 64..=255: pseudo-random piece sizes (seeded by `seed`) up to 16, 512 or 4096 bytes.
pub fn pieces(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    if stream.is_empty() {
        return Vec::new();
    }
    match seed {
        0 => vec![stream],
        1..=63 => stream.chunks(usize::from(seed)).collect(),
        _ => {
            let max = [16usize, 512, 4096][usize::from(seed >> 6) - 1];
            let mut state = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
            let mut out = Vec::new();
            let mut rest = stream;
            while !rest.is_empty() {
                // xorshift32
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let n = (state as usize % max + 1).min(rest.len());
                let (head, tail) = rest.split_at(n);
                out.push(head);
                rest = tail;
            }
            out
        }
    }
}
