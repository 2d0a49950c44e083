//! prism-webrtc's Av1Egress (WHEP of an Enhanced RTMP AV1 stream) on a publisher's payloads.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/webrtc_av1.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/webrtc_av1` and `regressions/webrtc_av1`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::webrtc_av1::run(data);
});
