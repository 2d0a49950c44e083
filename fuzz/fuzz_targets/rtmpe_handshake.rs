//! The RTMPE handshake (prism-rtmp's `rtmpe`), server and client side, fed arbitrary bytes
//! in arbitrary slicing. The body (input format and checks) is
//! `crates/prism-fuzz-check/src/rtmpe_handshake.rs`, which `cargo test -p prism-fuzz-check`
//! also runs over `corpus/rtmpe_handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::rtmpe_handshake::run(data);
});
