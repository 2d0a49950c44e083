//! The MPEG-TS demuxer fed arbitrary bytes in arbitrary slicing (the last input byte
//! The body (input format and checks) is `crates/prism-fuzz-check/src/mpegts_demux.rs`, which
//! `cargo test -p prism-fuzz-check` also runs over `corpus/mpegts_demux` and `regressions/mpegts_demux`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    prism_fuzz_check::mpegts_demux::run(data);
});
