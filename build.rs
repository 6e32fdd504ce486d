//! Records which commit a build is from, so that `callrelay --version`,
//! `/status` and `callrelay_build_info` tell builds of one release apart
//! (every build said `0.1.0`, and an operator rolling back could not check
//! which one was running).
//!
//! Guarantees: `CALLRELAY_VERSION` is the crate's version, followed by
//! `+` and the 12-digit commit when the source is a git checkout
//! (`0.1.0+8cafdc0a1b2c`), or `CALLRELAY_BUILD_COMMIT` when a packager sets
//! it; the plain version otherwise (a source tarball: no git, or unpacked
//! inside another repository, whose commit is not this source's). The script
//! runs again when the checked-out commit changes, so the commit is never a
//! stale one. A tree with uncommitted changes still names its commit.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CALLRELAY_BUILD_COMMIT");
    let package = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match std::env::var("CALLRELAY_BUILD_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => Some(commit.trim().to_owned()),
        _ if is_the_checkouts_top(&dir) => {
            watch_checkout(&dir);
            git(&dir, &["rev-parse", "--short=12", "HEAD"])
        }
        _ => None,
    };
    let version = match commit {
        Some(commit) => format!("{package}+{commit}"),
        None => package,
    };
    println!("cargo:rustc-env=CALLRELAY_VERSION={version}");
}

/// Whether `dir` is the top of a git checkout, not a source tarball
/// unpacked inside another repository (a packaging repository, a home
/// directory kept in git), whose commit is not this source's.
fn is_the_checkouts_top(dir: &Path) -> bool {
    let Some(top) = git(dir, &["rev-parse", "--show-toplevel"]) else {
        return false;
    };
    let same = |p: &Path| std::fs::canonicalize(p).ok();
    same(Path::new(&top)).is_some_and(|top| Some(top) == same(dir))
}

/// Asks cargo to run this again when HEAD moves: HEAD itself (a checkout,
/// a detached commit), the branch it names (a commit), packed-refs (a
/// `git gc` moving the branch there), HEAD's log (written by every commit,
/// checkout, pull or reset, also when the branch's ref is packed and the
/// new one is not yet a file to watch), and the reftable's list (a
/// repository with reftable refs, whose HEAD never changes). Only files that
/// exist: cargo runs a script again on every build while one it watches is
/// missing.
fn watch_checkout(dir: &Path) {
    let mut watched = vec![
        "HEAD".to_owned(),
        "packed-refs".to_owned(),
        "logs/HEAD".to_owned(),
        "reftable/tables.list".to_owned(),
    ];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) else {
            continue;
        };
        let path = dir.join(path);
        if path.is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// What `git args` prints in `dir`, trimmed; `None` when git is missing,
/// fails, or prints nothing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}
