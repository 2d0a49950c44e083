//! An RTMP server session fed arbitrary client bytes after a valid handshake.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/rtmp_session.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/rtmp_session` and `regressions/rtmp_session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::rtmp_session::run(data);
});
