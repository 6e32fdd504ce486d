//! Fuzzer findings kept as regression tests, run by plain `cargo test`.
//!
//! Every file under `fuzz/regressions/<target>/` is an input that once made
//! that fuzz target fail (a panic or a broken property). This test feeds each
//! one to the very harness the fuzzer runs (`fuzz/src/lib.rs`, included
//! below), so a crasher found by `scripts/fuzz.sh` becomes a test by copying
//! the file from `fuzz/artifacts/<target>/` into `fuzz/regressions/<target>/`.
//! The samples of every vendor go through the same harness too, so the harness
//! itself is known to accept good input, and so do the seeds scripts/fuzz.sh
//! gives the upstream targets (`upstream_sse`, `upstream_socketio`) and the
//! WebSocket query target (`websocket_query`).

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

use callrelay::event::Vendor;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `target` on the input, returning the panic message if it failed.
fn run(target: &str, data: &[u8]) -> Result<(), String> {
    let harness: fn(&[u8]) = match target {
        "webhook_caresoft" => |d| harness::webhook(Vendor::Caresoft, d),
        "webhook_tel4vn" => |d| harness::webhook(Vendor::Tel4vn, d),
        "webhook_voipex" => |d| harness::webhook(Vendor::Voipex, d),
        "webhook_voip24h" => |d| harness::webhook(Vendor::Voip24h, d),
        "webhook_sprecord" => |d| harness::webhook(Vendor::Sprecord, d),
        "config" => harness::config,
        "upstream_sse" => harness::upstream_sse,
        "upstream_socketio" => harness::upstream_socketio,
        "websocket_query" => harness::websocket_query,
        other => panic!("fuzz/regressions/{other}: no such fuzz target"),
    };
    std::panic::catch_unwind(|| harness(data)).map_err(|p| {
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
    assert!(count > 0, "no kept fuzz input found under fuzz/regressions");
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
                // As scripts/fuzz.sh seeds them: mode 2 of the vendors other
                // than Voip24h is a POST behind the query line `event=missed`.
                let mut input = vec![mode];
                if mode == 2 && vendor != "voip24h" {
                    input.extend_from_slice(b"event=missed\n");
                    input.extend(body.iter().filter(|&&b| b != b'\n'));
                } else {
                    input.extend_from_slice(&body);
                }
                run(target, &input)
                    .unwrap_or_else(|why| panic!("{} mode {mode}: {why}", sample.display()));
                count += 1;
            }
            // Mode 4, the head fuzzed: labelled windows-1251, and behind a
            // query that is not UTF-8 (the handler's 400).
            for head in [
                &b"\x04application/json; charset=windows-1251\n\n"[..],
                b"\x04application/json\nevent=missed&x=%FF\n",
            ] {
                let input = [head, &body].concat();
                run(target, &input)
                    .unwrap_or_else(|why| panic!("{} mode 4: {why}", sample.display()));
                count += 1;
            }
        }
    }
    for config in ["relay.toml", "deploy/relay.toml"] {
        let text = std::fs::read(root().join(config)).expect("config");
        run("config", &text).unwrap_or_else(|why| panic!("{config}: {why}"));
        // A seed the target refuses reaches only the checks before its
        // first problem: each must load, every section checked.
        let text = String::from_utf8(text).expect("UTF-8");
        if let Err(e) = callrelay::config::Config::from_text(config, &text, &harness::config_env) {
            panic!("the seed {config} does not load under the fuzz environment:\n{e}");
        }
    }
    assert!(count > 100, "{count} sample inputs");
}

/// The seeds scripts/fuzz.sh gives the upstream targets, built the same way
/// (fuzz/seeds/<target>/, the SPRecord samples framed as SSE behind each of
/// the script's header bytes, the Voip24h samples as `response` events), pass
/// the harness.
#[test]
fn upstream_seeds_pass_the_harness() {
    let mut streams: Vec<(String, Vec<u8>)> = files(&root().join("fuzz/seeds/upstream_sse"))
        .into_iter()
        .map(|f| (f.display().to_string(), std::fs::read(&f).expect("seed")))
        .collect();
    let samples = files(&root().join("tests/fixtures/vendors/sprecord"));
    for (n, sample) in samples.iter().enumerate() {
        let text = std::fs::read_to_string(sample).expect("sample");
        let n = n + 1;
        let rust = format!("id: {n}\ndata: {}\n\n", text.replace('\n', ""));
        let mut better_sse: String = text.lines().map(|l| format!("data:{l}\n")).collect();
        better_sse.push_str(&format!("id:{n}\n\n"));
        let name = sample.display();
        streams.push((
            format!("{name} (tests/sprecord.rs framing)"),
            rust.into_bytes(),
        ));
        streams.push((
            format!("{name} (better-sse framing)"),
            better_sse.into_bytes(),
        ));
    }
    assert!(streams.len() >= 10, "{} SSE seeds", streams.len());
    for (name, stream) in &streams {
        for header in [&b"\x00\x00"[..], b"\x00\x01\x01", b"\x20\x03\x07\x01\x40"] {
            let input = [header, stream].concat();
            run("upstream_sse", &input).unwrap_or_else(|why| panic!("{name} {header:?}: {why}"));
        }
    }

    let mut frames: Vec<(String, Vec<u8>)> = files(&root().join("fuzz/seeds/upstream_socketio"))
        .into_iter()
        .map(|f| (f.display().to_string(), std::fs::read(&f).expect("seed")))
        .collect();
    let samples = files(&root().join("tests/fixtures/vendors/voip24h"));
    let samples: Vec<_> = samples
        .into_iter()
        .filter(|s| s.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(!samples.is_empty(), "no Voip24h JSON samples");
    for sample in samples {
        let text = std::fs::read_to_string(&sample).expect("sample");
        let frame = format!("42[\"response\",{}]", text.replace('\n', ""));
        // The harness must see these as call events, not skip them.
        let payload: serde_json::Value = serde_json::from_str(&text).expect("sample JSON");
        callrelay::vendors::voip24h::parse_call_event(&payload)
            .unwrap_or_else(|e| panic!("{}: not a call event: {e:?}", sample.display()));
        frames.push((sample.display().to_string(), frame.into_bytes()));
    }
    assert!(frames.len() >= 12, "{} socket.io seeds", frames.len());
    for (name, frame) in &frames {
        run("upstream_socketio", frame).unwrap_or_else(|why| panic!("{name}: {why}"));
    }
}

#[test]
fn websocket_query_seeds_pass_the_harness() {
    let seeds = files(&root().join("fuzz/seeds/websocket_query"));
    assert!(seeds.len() >= 5, "{} WebSocket query seeds", seeds.len());
    for seed in seeds {
        let input = std::fs::read(&seed).expect("seed");
        run("websocket_query", &input).unwrap_or_else(|why| panic!("{}: {why}", seed.display()));
    }
}
