//! Test-only: a whole relay in a temporary directory, for unit tests of code
//! that needs its [`Context`](super::Context).

use std::time::Duration;

use super::Relay;
use crate::config::Config;

/// A relay on a free loopback port with its journal in `dir`, no sources and
/// no sinks but the WebSocket fan-out; `extra` is appended to its config.
pub(crate) async fn relay_in(dir: &std::path::Path, extra: &str) -> Relay {
    relay_in_tuned(dir, extra, |_| {}).await
}

/// [`relay_in`], its config changed by `tune` first (for what the file
/// cannot say, or a `[server]` key: the file's `[server]` is taken).
pub(crate) async fn relay_in_tuned(
    dir: &std::path::Path,
    extra: &str,
    tune: impl FnOnce(&mut Config),
) -> Relay {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[journal]\npath = {:?}\n\n{extra}",
        dir.join("journal").display().to_string()
    );
    let config_path = dir.join("relay.toml");
    std::fs::write(&config_path, &text).unwrap();
    let mut config = Config::from_text("relay.toml", &text, &|_| None).unwrap();
    tune(&mut config);
    Relay::start(config, config_path).await.unwrap()
}

/// The journal a relay [`relay_in`] started in `dir` left, opened again
/// (the relay stopped).
pub(crate) fn journal_left_in(dir: &std::path::Path) -> crate::journal::Journal {
    crate::journal::Journal::open(crate::journal::JournalOptions {
        dir: dir.join("journal"),
        dedup_window: Duration::from_secs(600),
        retention: Duration::from_secs(3600),
        max_size: 1 << 30,
    })
    .unwrap()
}

/// Stops a relay [`relay_in`] started, and waits until it has.
pub(crate) async fn stop(relay: Relay) {
    relay.shutdown();
    relay.wait().await.unwrap();
}

/// Waits up to `within` for `condition`, looking every 5 ms, then asserts
/// it: for a state a test cannot be woken by.
pub(crate) async fn until(what: &str, within: Duration, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(condition(), "{what} within {within:?}");
}
