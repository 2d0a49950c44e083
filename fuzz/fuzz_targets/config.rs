//! `Config::from_toml_str` on arbitrary UTF-8, and route lookups on what validates.
//! The body (input format and checks) is `crates/prism-fuzz-check/src/config.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/config` and `regressions/config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::config::run(data);
});
