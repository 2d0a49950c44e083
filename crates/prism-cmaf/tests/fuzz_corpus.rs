//! Replays the `cmaf_payload` fuzz corpus (fuzz/corpus/cmaf_payload) with the fuzz target's
//! own checks, so a regression on any seed or past finding fails `cargo test`.

mod fuzz_check;

#[test]
fn cmaf_payload_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/cmaf_payload");
    let mut seen = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        *seen
            .entry(fuzz_check::run(&std::fs::read(&path).unwrap()))
            .or_insert(0) += 1;
    }
    // The seeds reach the packaging code, not only the parsers' error paths.
    assert!(seen.get("config") >= Some(&5), "{seen:?}");
    assert!(seen.get("frame") >= Some(&5), "{seen:?}");
}
