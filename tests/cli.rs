//! The command line through the real binary: what `check` prints for a bad
//! config, `--log-level`/`RUST_LOG` handling, and what logs may show.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_callrelay");

fn check(dir: &Path, config: &str, env: &[(&str, &str)]) -> Output {
    let path = dir.join("relay.toml");
    std::fs::write(&path, config).expect("write config");
    Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("run check")
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `check` output reaches the logs (ExecStartPre under systemd, a refused
/// SIGHUP reload): a secret in a malformed config must not be in it.
#[test]
fn check_never_prints_a_secret_from_a_malformed_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unclosed = "[[voip24h]]\naccount = \"x${oops\"\nurl = \"http://127.0.0.1:1\"\nkey = \"k\"\n\
                    [[sprecord]]\naccount = \"s\"\nurl = \"http://h\"\n\
                    headers = { Authorization = \"LITERAL-PW-4242\" }\n";
    let out = check(dir.path(), unclosed, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = all_output(&out);
    assert!(text.contains("relay.toml:2:13: "), "{text}");
    assert!(!text.contains("LITERAL-PW-4242"), "{text}");

    let wrong_type =
        "[[webhook]]\nvendor = \"voipex\"\naccount = \"v\"\nusername = \"u\"\npassword = ${PW}\n";
    let out = check(dir.path(), wrong_type, &[("PW", "87654321")]);
    assert_eq!(out.status.code(), Some(1));
    let text = all_output(&out);
    assert!(
        text.contains("relay.toml:5:12: invalid type: integer, expected a string"),
        "{text}"
    );
    assert!(!text.contains("87654321"), "{text}");
}

/// `run` with a config that does not exist: it logs one error and exits 1.
fn run_missing_config(log_level: Option<&str>, rust_log: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["--log-format", "json"]);
    if let Some(level) = log_level {
        cmd.args(["--log-level", level]);
    }
    cmd.args(["run", "--config", "/nonexistent/callrelay-test.toml"]);
    cmd.env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    cmd.output().expect("run callrelay")
}

fn logged_error(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stderr).lines().any(|line| {
        serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| v["level"] == "ERROR")
    })
}

/// EnvFilter reads a lone word that is not a level as a target name:
/// `warning` or a typo would turn every log line off without a word.
#[test]
fn log_level_warning_means_warn_and_a_typo_is_refused() {
    for (level, rust_log) in [
        (Some("warning"), None),
        (Some("WARNING"), None),
        (Some("callrelay=warning,info"), None),
        (None, Some("warning")),
    ] {
        let out = run_missing_config(level, rust_log);
        assert_eq!(out.status.code(), Some(1), "{level:?} {rust_log:?}");
        assert!(
            logged_error(&out),
            "{level:?} {rust_log:?}: no error logged:\n{}",
            all_output(&out)
        );
    }
    let out = run_missing_config(Some("debg"), None);
    assert_eq!(out.status.code(), Some(2), "{}", all_output(&out));
    let text = all_output(&out);
    assert!(
        text.contains("--log-level") && text.contains("debg"),
        "{text}"
    );
    let out = run_missing_config(None, Some("debg"));
    assert_eq!(out.status.code(), Some(2), "{}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("RUST_LOG") && text.contains("debg"), "{text}");
}
