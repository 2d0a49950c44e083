//! The RTMP chunk decoder with default limits, fed arbitrary bytes in arbitrary slicing.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/rtmp_chunk.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/rtmp_chunk` and `regressions/rtmp_chunk`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::rtmp_chunk::run(data);
});
