//! prism-cmaf's parse_video/parse_audio on arbitrary payloads, then init_segment/fragment on what parses.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/cmaf_payload.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/cmaf_payload` and `regressions/cmaf_payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::cmaf_payload::run(data);
});
