//! Replays the `hls_packager` fuzz corpus (fuzz/corpus/hls_packager) with the fuzz target's
//! own checks, so a regression on any seed or past finding fails `cargo test`.

mod fuzz_check;

#[test]
fn hls_packager_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/hls_packager");
    let mut packaged = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        packaged.push(fuzz_check::run(&std::fs::read(&path).unwrap()));
    }
    assert!(
        packaged.len() >= 4,
        "the corpus has {} files",
        packaged.len()
    );
    // The seeds get as far as complete segments, so the rendering checks see real windows.
    assert!(
        packaged.iter().filter(|&&n| n >= 2).count() >= 3,
        "{packaged:?}"
    );
}
