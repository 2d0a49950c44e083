//! prism-hls's Packager fed arbitrary frame records and viewer URLs, rendering every playlist and the MPD after each. The body (input format and checks) is
//! `crates/prism-hls/tests/fuzz_check/mod.rs`, which `cargo test` also runs over
//! `corpus/hls_packager`.
#![no_main]

#[path = "../../crates/prism-hls/tests/fuzz_check/mod.rs"]
mod fuzz_check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_check::run(data);
});
