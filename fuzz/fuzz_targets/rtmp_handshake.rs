//! The RTMP handshake, server and client side, fed arbitrary bytes in arbitrary slicing.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/rtmp_handshake.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/rtmp_handshake` and `regressions/rtmp_handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::rtmp_handshake::run(data);
});
