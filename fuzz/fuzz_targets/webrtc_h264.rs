//! prism-webrtc's AvcEgress::push_rtp (WHEP of an H.264 stream, RTP payloads) on a publisher's payloads.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/webrtc_h264.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/webrtc_h264` and `regressions/webrtc_h264`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::webrtc_h264::run(data);
});
