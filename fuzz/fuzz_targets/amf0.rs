//! AMF0 decoding of arbitrary bytes, and the encode/decode round trip of what decodes.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/amf0.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/amf0` and `regressions/amf0`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::amf0::run(data);
});
