//! RTMPT request handling without I/O: `prism_rtmpt::parse` on request lines, driving a
//! The body (input format and checks) is `crates/prism-fuzz-check/src/rtmpt_request.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/rtmpt_request` and `regressions/rtmpt_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::rtmpt_request::run(data);
});
