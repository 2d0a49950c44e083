//! The SRT front's handshake check (`prism_transport_srt::handshake::check`) on arbitrary
//! The body (input format and checks) is `crates/prism-fuzz-check/src/srt_handshake.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/srt_handshake` and `regressions/srt_handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::srt_handshake::run(data);
});
