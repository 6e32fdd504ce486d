//! Fuzzer findings kept as regression tests, run by plain `cargo test`.
//!
//! Every file under `fuzz/regressions/<target>/` is an input that once made
//! that fuzz target fail (a panic or a broken property). This test feeds each
//! one to the very harness the fuzzer runs (`fuzz/src/lib.rs`, included
//! below), so a crasher found by `scripts/fuzz.sh` becomes a test by copying
//! the file from `fuzz/artifacts/<target>/` into `fuzz/regressions/<target>/`.
//! The samples of every vendor go through the same harness too, so the harness
//! itself is known to accept good input.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

use callrelay::event::Vendor;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `target` on the input, returning the panic message if it failed.
fn run(target: &str, data: &[u8]) -> Result<(), String> {
    let vendor = match target {
        "webhook_caresoft" => Some(Vendor::Caresoft),
        "webhook_tel4vn" => Some(Vendor::Tel4vn),
        "webhook_voipex" => Some(Vendor::Voipex),
        "webhook_voip24h" => Some(Vendor::Voip24h),
        "webhook_sprecord" => Some(Vendor::Sprecord),
        "config" => None,
        other => panic!("fuzz/regressions/{other}: no such fuzz target"),
    };
    std::panic::catch_unwind(|| match vendor {
        Some(v) => harness::webhook(v, data),
        None => harness::config(data),
    })
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"));
    out.sort();
    out
}

#[test]
fn every_kept_crasher_now_passes() {
    let mut failures = Vec::new();
    let mut count = 0;
    for target_dir in files_and_dirs(&root().join("fuzz/regressions")) {
        let target = target_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        for input in files(&target_dir) {
            count += 1;
            let data = std::fs::read(&input).expect("read crasher");
            if let Err(why) = run(&target, &data) {
                failures.push(format!("{}: {why}", input.display()));
            }
        }
    }
    println!("{count} kept fuzz inputs replayed");
    assert!(
        failures.is_empty(),
        "{} kept fuzz inputs still fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn files_and_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_dir());
    out.sort();
    out
}

/// The seeds scripts/fuzz.sh gives the fuzzer (each vendor's samples in every
/// mode) pass the harness: its properties hold on good input.
#[test]
fn vendor_samples_pass_the_harness_in_every_mode() {
    let mut count = 0;
    for (vendor, target) in [
        ("caresoft", "webhook_caresoft"),
        ("tel4vn", "webhook_tel4vn"),
        ("voipex", "webhook_voipex"),
        ("voip24h", "webhook_voip24h"),
        ("sprecord", "webhook_sprecord"),
    ] {
        let samples = files(&root().join("tests/fixtures/vendors").join(vendor));
        assert!(!samples.is_empty(), "no samples for {vendor}");
        for sample in samples {
            let body = std::fs::read(&sample).expect("sample");
            for mode in 0u8..4 {
                let mut input = vec![mode];
                input.extend_from_slice(&body);
                run(target, &input)
                    .unwrap_or_else(|why| panic!("{} mode {mode}: {why}", sample.display()));
                count += 1;
            }
        }
    }
    for config in ["relay.toml", "deploy/relay.toml"] {
        let text = std::fs::read(root().join(config)).expect("config");
        run("config", &text).unwrap_or_else(|why| panic!("{config}: {why}"));
    }
    assert!(count > 100, "{count} sample inputs");
}
