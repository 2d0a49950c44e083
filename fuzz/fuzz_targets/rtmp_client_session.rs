//! Prism's RTMP client session fed arbitrary server bytes after a valid simple handshake,
//! The body (input format and checks) is `crates/prism-fuzz-check/src/rtmp_client_session.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/rtmp_client_session` and `regressions/rtmp_client_session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::rtmp_client_session::run(data);
});
