//! Enhanced RTMP v2 audio/video bodies (ModEx, multitrack) and single-track extraction.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/ertmp_media.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/ertmp_media`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::ertmp_media::run(data);
});
