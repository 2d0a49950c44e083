//! prism-cmaf's parse_video/parse_audio on arbitrary payloads, then init_segment/fragment on what parses. The body (input format and checks) is
//! `crates/prism-cmaf/tests/fuzz_check/mod.rs`, which `cargo test` also runs over
//! `corpus/cmaf_payload`.
#![no_main]

#[path = "../../crates/prism-cmaf/tests/fuzz_check/mod.rs"]
mod fuzz_check;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_check::run(data);
});
