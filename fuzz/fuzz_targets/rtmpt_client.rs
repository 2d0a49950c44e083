//! The RTMPT tunnel client (rtmpt:// push targets) without I/O: `prism_rtmpt::TunnelClient`.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/rtmpt_client.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/rtmpt_client` and `regressions/rtmpt_client`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::rtmpt_client::run(data);
});
