//! prism-hls's Packager fed arbitrary frame records and viewer URLs, rendering every playlist and the MPD after each.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/hls_packager.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/hls_packager` and `regressions/hls_packager`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::hls_packager::run(data);
});
