//! The Kafka sink: journal → Kafka, at least once, per-key order kept.
//!
//! `run` is started by the app with its own cancel token, stopped after ingest
//! has drained, and restarted when a reload changes `[kafka]`. The work is
//! split by concern: [`config`] (what `[kafka]` may say), [`topic`] (the topic
//! template and topic existence), [`producer`] (the rdkafka producer and the
//! record of an event), `reader` (journal read-ahead), [`forwarder`] (cursor, in-flight window, recovery),
//! [`resume`] (after a crash, what is already in Kafka is not sent again),
//! `cluster` (whether the cluster or the producer is why records wait).
//! What consumers get is described in `docs/kafka.md`.

mod cluster;
pub mod config;
mod error_log;
pub mod forwarder;
mod header;
pub mod producer;
mod reader;
mod readiness;
pub mod resume;
#[cfg(test)]
mod tests_support;
pub mod topic;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::panic_restart::restart_on_panic;
use crate::status::SinkStatus;
use config::KafkaConfig;
use forwarder::{Forwarder, Tuning};

/// The name of this sink's journal cursor.
pub const CURSOR: &str = "kafka";

/// Runs the forwarder until `cancel`, then drains and persists the cursor.
pub async fn run(config: KafkaConfig, ctx: Arc<Context>, cancel: CancellationToken) {
    run_with(config, ctx, cancel, Tuning::default()).await
}

/// `run` with explicit tuning (benchmarks, tests). A forwarder that panics
/// (a bug) is started again from the journal's cursor, which reads back what
/// it may have delivered: without that, Kafka delivery stopped for good while
/// `/status` still said the sink was ready (panic-containment audit of
/// 2026-12-02).
pub async fn run_with(
    config: KafkaConfig,
    ctx: Arc<Context>,
    cancel: CancellationToken,
    tuning: Tuning,
) {
    if let Some(problem) = config.options_problem() {
        // `check` reports this too; the producer below will refuse it and retry.
        tracing::error!("{problem}");
    }
    let on_panic = |delay: Duration| {
        // The panic's message is left out: the panic hook logged it already.
        tracing::error!(retry_in = ?delay, "the Kafka sink failed unexpectedly (panic); restarting it from its cursor");
        let error = format!(
            "the Kafka sink failed unexpectedly (a panic: a bug, or a library failing on bad data; the `panicked` line in the log says where); restarting it from its cursor in {delay:?}"
        );
        not_ready(&ctx, error);
    };
    restart_on_panic(PANIC_WAITS, &cancel, on_panic, || {
        run_forwarder(config.clone(), ctx.clone(), cancel.clone(), tuning)
    })
    .await;
    // Cancelled while waiting to restart: nothing to drain.
    ctx.status.remove_sink("kafka");
}

/// The first and the longest wait before a forwarder that panicked is
/// started again.
const PANIC_WAITS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// One forwarder, from the journal's cursor until `cancel`.
async fn run_forwarder(
    config: KafkaConfig,
    ctx: Arc<Context>,
    cancel: CancellationToken,
    tuning: Tuning,
) {
    match Forwarder::new(config, ctx.clone(), tuning) {
        Ok(forwarder) => forwarder.run(cancel).await,
        Err(error) => {
            let error = format!("cannot read the kafka cursor: {error}");
            tracing::error!(%error, "kafka sink cannot start");
            not_ready(&ctx, error);
            cancel.cancelled().await;
            ctx.status.remove_sink("kafka");
        }
    }
}

/// The sink's `/status` entry while no forwarder runs: not ready, and why.
fn not_ready(ctx: &Context, error: String) {
    ctx.status.set_sink(
        "kafka",
        SinkStatus {
            ready: false,
            reason: Some(error.clone()),
            detail: json!({ "last_error": error }),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests_support::{relay_in, stop, until};

    /// A cursor the sink cannot read at start (here the journal is closed
    /// under it) shows the sink not ready in `/status`, saying why, until
    /// the sink is stopped; then its entry goes.
    #[tokio::test]
    async fn a_cursor_unreadable_at_start_shows_the_sink_not_ready_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_in(dir.path(), "").await;
        let ctx = relay.ctx.clone();
        let (_mock, _, config) = tests_support::mock_topic("callrelay.events");
        assert!(ctx.journal.close(Duration::from_secs(10)));
        let cancel = CancellationToken::new();
        let running = tokio::spawn(run_forwarder(
            config,
            ctx.clone(),
            cancel.clone(),
            Tuning::default(),
        ));

        let within = Duration::from_secs(10);
        until("the sink shown", within, || {
            ctx.status.sinks().contains_key("kafka")
        })
        .await;
        let shown = ctx.status.sinks().remove("kafka").unwrap();
        assert!(!shown.ready);
        let reason = shown.reason.unwrap_or_default();
        assert!(
            reason.starts_with("cannot read the kafka cursor: "),
            "{reason}"
        );
        assert_eq!(shown.detail["last_error"], reason.as_str());
        assert!(!running.is_finished(), "waits to be stopped");
        cancel.cancel();
        running.await.unwrap();
        assert!(!ctx.status.sinks().contains_key("kafka"));
        stop(relay).await;
    }
}
