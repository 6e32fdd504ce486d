//! Reading the config file off the runtime's workers, at the start and for
//! each reload; a reload's config handed to the serve loop.
//!
//! Guarantees: a read that does not return (a mount that does not answer,
//! a FIFO) holds a blocking thread, never a runtime worker; a reload that
//! the file alone would pass but that is unsafe with the running listener,
//! or that takes away every source, is refused with its place in the file
//! as read; a refused or unreadable reload keeps the old config running and
//! counts `callrelay_config_reloads_total{result="failed"}`; a reload asked
//! for once a stop has begun is not applied, and its outcome says so.

use std::path::Path;
use std::sync::Arc;

use super::{Context, ReloadOutcome, reload};
use crate::config::{Config, ConfigError};

/// Loads the config file and hands it to the serve loop, which applies it;
/// returns once sources and sinks follow the new config.
pub(super) async fn reload_request(ctx: &Arc<Context>) -> Result<ReloadOutcome, ConfigError> {
    let loaded = load_off_the_workers(&ctx.config_path)
        .await
        .and_then(|(config, text)| {
            let running = ctx.config.load();
            let (pinned, _) = reload::pin_restart_only(&running, config.clone());
            match reload::unsafe_with_running_listener(&pinned, &config)
                .or_else(|| reload::takes_away_every_source(&running, &config))
            {
                None => Ok(config),
                Some((offset, message)) => Err(refusal(&ctx.config_path, &text, offset, message)),
            }
        });
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            ctx.metrics
                .config_reloads
                .with_label_values(&["failed"])
                .inc();
            ctx.metrics.config_last_reload_ok.set(0);
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
/// reload waited). A refusal is placed in that same text: read again, it
/// could be another file by then (`mv` is how a config is replaced).
pub(super) async fn load_off_the_workers(path: &Path) -> Result<(Config, String), ConfigError> {
    let owned = path.to_path_buf();
    match tokio::task::spawn_blocking(move || Config::load_with_text(&owned)).await {
        Ok(loaded) => loaded,
        Err(e) => Err(ConfigError {
            file: path.display().to_string(),
            problems: vec![crate::config::Problem {
                line: 1,
                col: 1,
                message: format!("reading the file failed: {e}"),
            }],
        }),
    }
}

/// A reload refused for a reason the file alone does not show, placed in
/// `text` (the file as read) as `check` places its problems.
fn refusal(path: &Path, text: &str, offset: usize, message: String) -> ConfigError {
    // The config's spans are in the text after `${VAR}` expansion: mapped
    // back, the place is the file's as written, as `check` gives it.
    let expanded = crate::config::env::expand(text, &|name| std::env::var(name).ok());
    let (line, col) = crate::config::line_col(text, expanded.original_offset(offset));
    ConfigError {
        file: path.display().to_string(),
        problems: vec![crate::config::Problem { line, col, message }],
    }
}

#[cfg(test)]
mod tests {
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
