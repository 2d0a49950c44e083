//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/`) and every input that once
//! made a target fail (`fuzz/regressions/<target>/`) through the target's own checks, on
//! stable, so CI catches a reintroduced panic, overflow (tests build with overflow checks)
//! or broken invariant without libFuzzer.

use prism_fuzz_check::TARGETS;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Other slicings a stream-shaped input is replayed with besides its own last byte: whole,
/// byte at a time, odd fixed pieces, and the three pseudo-random ranges.
const SPLITS: [u8; 5] = [0, 1, 7, 100, 200];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; empty if the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Names of the subdirectories of `fuzz/<kind>/` (README files and the like excepted).
fn subdirs(kind: &str) -> BTreeSet<String> {
    let dir = fuzz_dir().join(kind);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Runs `run` on `data`, turning a panic into (the start of) its message.
fn check(run: fn(&[u8]), data: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| run(data))).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        msg.chars().take(300).collect()
    })
}

#[test]
fn every_corpus_and_regression_passes_its_target() {
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut replayed = BTreeMap::new();
    for t in TARGETS {
        let (name, run) = (t.name, t.run);
        let files: Vec<PathBuf> = inputs("corpus", name)
            .into_iter()
            .chain(inputs("regressions", name))
            .collect();
        for path in &files {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut variants = vec![(None, data.clone())];
            if t.stream_shaped && !data.is_empty() {
                for split in SPLITS {
                    let mut v = data.clone();
                    *v.last_mut().unwrap() = split;
                    variants.push((Some(split), v));
                }
            }
            for (split, input) in variants {
                if let Err(e) = check(run, &input) {
                    let how = split.map_or(String::new(), |s| format!(" (split byte {s})"));
                    failures.push(format!("{name}: {}{how}: {e}", path.display()));
                }
                *replayed.entry(name).or_insert(0usize) += 1;
            }
        }
    }
    eprintln!("replayed {replayed:?} in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fuzz_target_is_replayed() {
    let known: BTreeSet<String> = TARGETS.iter().map(|t| t.name.to_owned()).collect();
    // The libFuzzer binaries declared in fuzz/Cargo.toml and their sources.
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let bins: BTreeSet<String> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|b| {
            let line = b.lines().find(|l| l.trim_start().starts_with("name"))?;
            Some(line.split('"').nth(1)?.to_owned())
        })
        .collect();
    let sources: BTreeSet<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| e.unwrap().path())
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    assert_eq!(
        bins, known,
        "fuzz/Cargo.toml [[bin]]s vs prism_fuzz_check::TARGETS"
    );
    assert_eq!(
        sources, known,
        "fuzz/fuzz_targets/ vs prism_fuzz_check::TARGETS"
    );
    // Every target has seeds, and no corpus or regression directory is orphaned.
    assert_eq!(subdirs("corpus"), known, "fuzz/corpus/ vs the targets");
    let orphans: Vec<_> = subdirs("regressions").difference(&known).cloned().collect();
    assert!(
        orphans.is_empty(),
        "fuzz/regressions/ without a target: {orphans:?}"
    );
    for name in &known {
        assert!(
            !inputs("corpus", name).is_empty(),
            "fuzz/corpus/{name} is empty"
        );
    }
}

/// The seeds get past the parsers' error paths into the code behind them.
#[test]
fn seeds_reach_packaging() {
    let mut seen = BTreeMap::new();
    for path in inputs("corpus", "cmaf_payload") {
        let kind = prism_fuzz_check::cmaf_payload::run(&std::fs::read(&path).unwrap());
        *seen.entry(kind).or_insert(0) += 1;
    }
    assert!(seen.get("config") >= Some(&5), "{seen:?}");
    assert!(seen.get("frame") >= Some(&5), "{seen:?}");

    let packaged: Vec<usize> = inputs("corpus", "hls_packager")
        .iter()
        .map(|p| prism_fuzz_check::hls_packager::run(&std::fs::read(p).unwrap()))
        .collect();
    assert!(
        packaged.len() >= 4,
        "the corpus has {} files",
        packaged.len()
    );
    // Complete segments, so the rendering checks see real windows.
    assert!(
        packaged.iter().filter(|&&n| n >= 2).count() >= 3,
        "{packaged:?}"
    );
}
