//! Reading the config file off the runtime's workers, at the start and for
//! each reload; a reload's config handed to the serve loop.
//!
//! Guarantees: a read that does not return (a mount that does not answer,
//! a FIFO) holds a blocking thread, never a runtime worker; a reload that
//! the file alone would pass but that is unsafe with the running listener,
//! or that takes away every source, is refused with its place in the file
//! as read; a refused or unreadable reload keeps the old config running,
//! counts `callrelay_config_reloads_total{result="failed"}` and is `/status`
//! `last_reload`, with the refusal as the log says it; a reload whose
//! load (the file and every file it names) has not ended within
//! [`RELOAD_LOAD_BOUND`] is refused so; a reload asked for once a stop has
//! begun is not applied, and its outcome says so.

use std::path::Path;
use std::sync::Arc;

use super::{Context, ReloadOutcome, reload};
use crate::config::{Config, ConfigError, LoadedText, Loading};

/// How long a reload waits for its config's load, which reads the file and
/// every file it names to check them (`${file:…}` secrets, each
/// `tls.ca_file`, the files the `[kafka]` options name, which librdkafka
/// loads in the check's throw-away producer). Past it the reload is refused
/// and the old config keeps running: on a hung mount it would otherwise
/// wait for as long as the mount hangs, and each SIGHUP after it behind it,
/// a token taken away included. The load goes on on its blocking thread.
pub(crate) const RELOAD_LOAD_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// Loads the config file and hands it to the serve loop, which applies it;
/// returns once sources and sinks follow the new config.
pub(super) async fn reload_request(ctx: &Arc<Context>) -> Result<ReloadOutcome, ConfigError> {
    reload_request_within(ctx, RELOAD_LOAD_BOUND).await
}

async fn reload_request_within(
    ctx: &Arc<Context>,
    bound: std::time::Duration,
) -> Result<ReloadOutcome, ConfigError> {
    let path = &ctx.config_path;
    let loaded = tokio::time::timeout(bound, load_off_the_workers(path, Loading::Reload))
        .await
        .unwrap_or_else(|_| Err(not_loaded_in_time(path, bound)))
        .and_then(|(config, loaded)| {
            let running = ctx.config.load();
            let (pinned, _) = reload::pin_restart_only(&running, config.clone());
            match reload::unsafe_with_running_listener(&pinned, &config)
                .or_else(|| reload::takes_away_every_source(&running, &config))
            {
                None => {
                    say_warnings(&ctx.config_path, &config, &loaded);
                    Ok(config)
                }
                Some((offset, message)) => Err(refusal(&ctx.config_path, &loaded, offset, message)),
            }
        });
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            // The lines the log gives the refusal (`signals::reload_once`),
            // worded by the loader never to quote a secret.
            ctx.status.reload_refused(for_status(&e.lines()));
            return Err(e);
        }
    };
    let (done, applied) = tokio::sync::oneshot::channel();
    if ctx.reloads.send((config, done)).await.is_ok() {
        // The serve loop is gone only when shutting down: nothing was applied.
        return Ok(applied.await.unwrap_or_default());
    }
    Ok(ReloadOutcome::default())
}

/// [`Config::load`] on a blocking thread, with the text it read: a read
/// that does not return (a file on a mount that does not answer, a FIFO)
/// must not take a runtime worker, on two cores half of what answers
/// webhooks (signals audit, 2026-12-02: every request timed out while one
/// reload waited). A refusal is placed in that same text, with where its
/// `${…}` stood at that load: read again, it could be another file by then
/// (`mv` is how a config is replaced), and a `${file:…}` read again would
/// be a read on a worker, perhaps of another content.
pub(super) async fn load_off_the_workers(
    path: &Path,
    loading: Loading,
) -> Result<(Config, LoadedText), ConfigError> {
    let owned = path.to_path_buf();
    match tokio::task::spawn_blocking(move || Config::load_with_text_for(&owned, loading)).await {
        Ok(loaded) => loaded,
        Err(e) => Err(ConfigError::of_whole_file(
            path,
            format!("reading the file failed: {e}"),
        )),
    }
}

/// The refusal of a reload whose load did not end within `bound`.
fn not_loaded_in_time(path: &Path, bound: std::time::Duration) -> ConfigError {
    ConfigError::of_whole_file(
        path,
        format!(
            "the file and the files it names (`${{file:…}}`, `tls.ca_file`, the `[kafka]` options' `*.location`) were not read within {} ms: a slow or hung mount?",
            bound.as_millis()
        ),
    )
}

/// Logs what `check` warns of in the config a start or reload applies.
pub(super) fn say_warnings(path: &Path, config: &Config, loaded: &LoadedText) {
    for line in config.warning_lines(path, loaded) {
        tracing::warn!("{line}");
    }
}

/// Problems of a refused reload that `/status` shows before it says how
/// many more the log has.
const STATUS_PROBLEM_LINES: usize = 20;

/// A refusal's log lines as `/status` keeps them until the next reload: the
/// first [`STATUS_PROBLEM_LINES`], then how many more the log has, then the
/// total line. A key renamed in each of thousands of accounts made every
/// `/status` carry megabytes, copied under the board's lock.
fn for_status(lines: &[String]) -> String {
    let Some((total, problems)) = lines.split_last() else {
        return String::new();
    };
    if problems.len() <= STATUS_PROBLEM_LINES {
        return lines.join("\n");
    }
    let mut shown = problems[..STATUS_PROBLEM_LINES].to_vec();
    shown.push(format!(
        "… and {} more, every one in the log",
        problems.len() - STATUS_PROBLEM_LINES
    ));
    shown.push(total.clone());
    shown.join("\n")
}

/// A reload refused for a reason the file alone does not show, placed in
/// the file as `loaded` read it, as `check` places its problems.
fn refusal(path: &Path, loaded: &LoadedText, offset: usize, message: String) -> ConfigError {
    // The config's spans are in the text after `${…}` expansion: mapped
    // back with that load's replacements (nothing is read or expanded
    // again), the place is the file's as written, as `check` gives it.
    let (line, col) = loaded.line_col(offset);
    ConfigError {
        file: path.display().to_string(),
        problems: vec![crate::config::Problem { line, col, message }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keeps_the_first_problems_and_the_total() {
        let few: Vec<String> = (1..=3).map(|i| format!("relay.toml:{i}:1: bad")).collect();
        assert_eq!(for_status(&few), few.join("\n"));
        let mut many: Vec<String> = (1..=500)
            .map(|i| format!("relay.toml:{i}:1: bad"))
            .collect();
        many.push("relay.toml: 500 problems".to_string());
        let shown = for_status(&many);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), STATUS_PROBLEM_LINES + 2, "{shown}");
        assert_eq!(lines[0], "relay.toml:1:1: bad");
        assert_eq!(lines[STATUS_PROBLEM_LINES - 1], "relay.toml:20:1: bad");
        assert_eq!(
            lines[STATUS_PROBLEM_LINES],
            "… and 480 more, every one in the log"
        );
        assert_eq!(lines[STATUS_PROBLEM_LINES + 1], "relay.toml: 500 problems");
        assert_eq!(for_status(&[]), "");
    }

    /// A reload that adds an SPRecord webhook without a token says so in
    /// the log, as `check` does, placed in the file.
    #[tokio::test]
    async fn a_reload_logs_the_configs_warnings() {
        use crate::logging::tests_support::capture_json;
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[journal]\npath = {:?}\n\n\
             [websocket]\ntokens = [\"t0k-long-enough\"]\n\n\
             [[webhook]]\nvendor = \"sprecord\"\naccount = \"office\"\n",
            dir.path().join("journal").display().to_string()
        );
        std::fs::write(dir.path().join("relay.toml"), &text).unwrap();
        let (captured, guard) = capture_json();
        let outcome = relay.reload_with_outcome().await.unwrap();
        drop(guard);
        assert!(outcome.applied);
        let said = captured.text();
        assert!(
            said.contains("relay.toml:12:11: warning: [[webhook]] sprecord has no `token`"),
            "{said}"
        );
        crate::app::tests_support::stop(relay).await;
    }

    /// A refusal is placed with the `${file:…}` values of the load that
    /// read the file: the file is not read again (it was, on a worker), so
    /// one changed or gone since does not move the place.
    #[tokio::test]
    async fn a_refusal_is_placed_without_reading_a_file_value_again() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("account");
        std::fs::write(&secret, "an-account-name-longer-than-nothing\n").unwrap();
        let reference = format!("${{file:{}}}", secret.display());
        let text = format!(
            "webhook = [{{ vendor = \"tel4vn\", account = \"{reference}\", api_key = \"k\" }}]\n\n\
             [server]\nlisten = \"127.0.0.1:0\"\n\n[journal]\npath = {:?}\n",
            dir.path().join("journal").display().to_string()
        );
        let config_path = dir.path().join("relay.toml");
        std::fs::write(&config_path, &text).unwrap();
        let (_, loaded) = load_off_the_workers(&config_path, Loading::Start)
            .await
            .unwrap();
        // `api_key` in the expanded text, after the account's value.
        let written = text.find("api_key").unwrap();
        let expanded = written - reference.len() + "an-account-name-longer-than-nothing".len();
        let expected = crate::config::line_col(&text, written);
        for changed in [Some("x"), None] {
            match changed {
                Some(content) => std::fs::write(&secret, content).unwrap(),
                None => std::fs::remove_file(&secret).unwrap(),
            }
            let refused = refusal(&config_path, &loaded, expanded, "refused".into());
            let problem = &refused.problems[0];
            assert_eq!((problem.line, problem.col), expected, "{changed:?}");
        }
    }

    /// A reload whose load does not end (here librdkafka, checking the
    /// options, opens an `ssl.ca.location` that is a FIFO no one writes to,
    /// as it would a file on a hung mount) is refused at its bound, and the
    /// old config runs on; before, it waited for as long as the read did,
    /// and every SIGHUP after it behind it.
    #[tokio::test]
    async fn a_reload_whose_files_are_not_read_in_time_is_refused() {
        use crate::regular_file::hung_file;
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let fifo = dir.path().join("ca.pem");
        hung_file::make(&fifo);
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[journal]\npath = {:?}\n\n\
             [kafka]\nbrokers = \"127.0.0.1:9\"\n[kafka.options]\n\
             \"security.protocol\" = \"ssl\"\n\"ssl.ca.location\" = {:?}\n",
            dir.path().join("journal").display().to_string(),
            fifo.display().to_string()
        );
        std::fs::write(dir.path().join("relay.toml"), &text).unwrap();
        let opened = hung_file::writer(&fifo);
        let bound = std::time::Duration::from_millis(300);
        let waited =
            tokio::time::timeout(bound * 50, reload_request_within(&relay.ctx, bound)).await;
        let refused = match waited {
            Ok(Err(refused)) if refused.to_string().contains("were not read within 300 ms") => {
                refused
            }
            other => panic!("not refused at the bound: {other:?}"),
        };
        let writer = opened.await.unwrap().unwrap();
        assert_eq!(refused.problems.len(), 1, "{refused}");
        assert!(
            relay.ctx.config.load().kafka.is_none(),
            "the old config runs on"
        );
        let failed = relay
            .ctx
            .metrics
            .config_reloads
            .with_label_values(&["failed"]);
        assert_eq!(failed.get(), 1);
        // The end of the file: the load ends, and its thread with it.
        drop(writer);
        crate::app::tests_support::stop(relay).await;
    }

    /// A reload whose config file is gone says so, with what to do for a
    /// running relay: the start's advice (`--config`, the demo config in
    /// the repository) is no use under systemd (newcomer's walk,
    /// 2026-12-06). A file that is there but unreadable keeps its reason.
    #[tokio::test]
    async fn a_reload_whose_config_file_is_gone_says_to_put_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        std::fs::remove_file(dir.path().join("relay.toml")).unwrap();
        let refused = relay.reload_with_outcome().await.unwrap_err().to_string();
        assert!(
            refused.contains("the config file this relay was started with is gone")
                && refused.contains("put it back"),
            "{refused}"
        );
        assert!(!refused.contains("--config"), "{refused}");

        // A link whose file is gone names where it points.
        let path = dir.path().join("relay.toml");
        std::os::unix::fs::symlink(dir.path().join("moved.toml"), &path).unwrap();
        let refused = relay.reload_with_outcome().await.unwrap_err().to_string();
        assert!(
            refused.contains("is a link to") && refused.contains("moved.toml"),
            "{refused}"
        );
        std::fs::remove_file(&path).unwrap();

        std::fs::create_dir(dir.path().join("relay.toml")).unwrap();
        let refused = relay.reload_with_outcome().await.unwrap_err().to_string();
        assert!(refused.contains("cannot read the config file"), "{refused}");
        crate::app::tests_support::stop(relay).await;
    }

    /// A reload asked for once a stop has begun is not applied, and says
    /// so (it answered as an applied reload, "config re-read").
    #[tokio::test]
    async fn a_reload_after_a_stop_began_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        relay.shutdown();
        let outcome = relay.reload_with_outcome().await.unwrap();
        assert!(!outcome.applied);
        assert_eq!(
            relay
                .ctx
                .metrics
                .config_reloads
                .with_label_values(&["ok"])
                .get(),
            0
        );
        relay.wait().await.unwrap();
    }
}
