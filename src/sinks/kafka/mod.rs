//! The Kafka sink: journal → Kafka, at least once, per-key order kept.
//!
//! `run` is started by the app with its own [`SinkStop`], stopped after ingest
//! has drained, and restarted when a reload changes `[kafka]`; the stop says
//! which of the two it is ([`StopReason`]). The work is
//! split by concern: [`config`] (what `[kafka]` may say), [`topic`] (the topic
//! template and topic existence), [`producer`] (the rdkafka producer and the
//! record of an event), `reader` (journal read-ahead), [`forwarder`] (cursor, in-flight window, recovery),
//! [`resume`] (after a crash, what is already in Kafka is not sent again),
//! `cluster` (whether the cluster or the producer is why records wait),
//! `preflight` (the topics configured accounts will need, looked up ahead),
//! `readiness` (what `/readyz` says of the sink), `error_log` (librdkafka's
//! errors, throttled) and `header` (the CloudEvent headers of a record).
//! What consumers get is described in `docs/kafka.md`.

mod cluster;
pub mod config;
mod error_log;
pub mod forwarder;
mod header;
pub mod preflight;
pub mod producer;
mod reader;
mod readiness;
pub mod resume;
#[cfg(test)]
mod tests_support;
pub mod topic;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::panic_restart::restart_on_panic;
use crate::status::SinkStatus;
use config::KafkaConfig;
use forwarder::{Forwarder, StartError, Tuning};

/// The name of this sink's journal cursor.
pub const CURSOR: &str = "kafka";

/// Why the sink stops: whether the process goes on after it decides who
/// counts what the stop lets go of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The process stops. Its listener, and `/metrics`, closed before the
    /// sink stops, so a count made now is seen by nobody: what `max_size`
    /// dropped while the sink held it stays recorded in the journal for the
    /// next start to count (and page for).
    ProcessStop,
    /// A reload removed or replaced the sink, and the process goes on being
    /// scraped: what the stop lets go of is counted at the stop, or with
    /// `[kafka]` removed nothing would count it until one is added back.
    Reload,
}

/// How the sink is told to stop, and why. The reason is set before the
/// cancel, so the forwarder, woken by the cancel, reads it; a token
/// cancelled without one (`From<CancellationToken>`: tests, benchmarks) is
/// a [`StopReason::ProcessStop`], which counts nothing at the stop.
#[derive(Clone, Debug, Default)]
pub struct SinkStop {
    cancel: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
}

impl SinkStop {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the sink for `reason`; a later stop's reason is ignored.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.cancel.cancel();
    }

    /// Cancelled once the sink is to stop.
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn reason(&self) -> StopReason {
        self.reason
            .get()
            .copied()
            .unwrap_or(StopReason::ProcessStop)
    }
}

impl From<CancellationToken> for SinkStop {
    fn from(cancel: CancellationToken) -> Self {
        SinkStop {
            cancel,
            reason: Arc::default(),
        }
    }
}

/// Runs the forwarder until `stop`, then drains and persists the cursor.
pub async fn run(config: KafkaConfig, ctx: Arc<Context>, stop: impl Into<SinkStop>) {
    run_with(config, ctx, stop, Tuning::default()).await
}

/// `run` with explicit tuning (benchmarks, tests). A forwarder that panics
/// (a bug) is started again from the journal's cursor, which reads back what
/// it may have delivered (once `stall_read_back_delay` has passed since the
/// panic): without that, Kafka delivery stopped for good while
/// `/status` still said the sink was ready (panic-containment audit of
/// 2026-12-02).
pub async fn run_with(
    config: KafkaConfig,
    ctx: Arc<Context>,
    stop: impl Into<SinkStop>,
    tuning: Tuning,
) {
    let stop = stop.into();
    let cancel = stop.token().clone();
    if let Some(problem) = config.options_problem() {
        // Unreachable from a loaded config (its load runs these checks and
        // refuses the file); said here for a config built another way,
        // since librdkafka itself takes some of these (two names of one
        // setting, a spelling it reads differently).
        tracing::error!("{problem}");
    }
    let on_panic = |delay: Duration| {
        // The panic's message is left out: the panic hook logged it already.
        tracing::error!(
            retry_in_ms = crate::logging::millis(delay),
            "the Kafka sink failed unexpectedly (panic); restarting it from its cursor"
        );
        let error = format!(
            "the Kafka sink failed unexpectedly (a panic: a bug, or a library failing on bad data; the `panicked` line in the log says where); restarting it from its cursor in {delay:?}"
        );
        not_ready(&ctx, error);
    };
    // When the last forwarder panicked, for the next one's read-back: the
    // panicked one's requests may still land (`Forwarder::after_a_panic_at`).
    let panicked_at = std::sync::atomic::AtomicI64::new(NOT_PANICKED);
    let on_panic = |delay: Duration| {
        panicked_at.store(forwarder::wall_ms(), std::sync::atomic::Ordering::Relaxed);
        on_panic(delay)
    };
    let topics = CancellationToken::new();
    let preflight = tokio::spawn(preflight::watch(ctx.clone(), topics.clone()));
    restart_on_panic(PANIC_WAITS, &cancel, on_panic, || {
        let at = panicked_at.load(std::sync::atomic::Ordering::Relaxed);
        let panicked_at = (at != NOT_PANICKED).then_some(at);
        run_forwarder(
            config.clone(),
            ctx.clone(),
            stop.clone(),
            tuning,
            panicked_at,
        )
    })
    .await;
    topics.cancel();
    let _ = preflight.await;
    // Cancelled while waiting to restart: nothing to drain.
    ctx.status.remove_sink("kafka");
}

/// `panicked_at` before any forwarder panicked.
const NOT_PANICKED: i64 = i64::MIN;

/// The first and the longest wait before a forwarder that panicked is
/// started again.
const PANIC_WAITS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// The longest wait between two reads of a cursor that could not be read.
const CURSOR_RETRY_MAX: Duration = Duration::from_secs(10);

/// One forwarder, from the journal's cursor until `stop`. A cursor that
/// cannot be read (the journal closed while the writer opens it again after
/// a failed commit), or whose correction cannot be written (a cursor past
/// the last seq: [`forwarder::StartError`]; not once the journal's file is
/// gone, where no write lands), is tried again, every 1 s doubling to
/// [`CURSOR_RETRY_MAX`], the sink shown not ready meanwhile, saying which
/// (at error when it starts or changes): a sink started then (a reload, a
/// panic restart) waited for a stop, and Kafka got nothing more until the
/// next one, with the lag gauge frozen and the Kafka alerts silent. Read on
/// the blocking pool: the journal may be reopening, for minutes on a slow
/// disk.
async fn run_forwarder(
    config: KafkaConfig,
    ctx: Arc<Context>,
    stop: SinkStop,
    tuning: Tuning,
    panicked_at_ms: Option<i64>,
) {
    let cancel = stop.token().clone();
    let mut wait = Duration::from_secs(1);
    // Once the start failed: what to say when it no longer does
    // (`StartError::mended`, one text per kind of failure).
    let mut failed: Option<&str> = None;
    loop {
        let (c, x) = (config.clone(), ctx.clone());
        let made = tokio::select! {
            made = tokio::task::spawn_blocking(move || Forwarder::new(c, x, tuning)) => made,
            () = cancel.cancelled() => break,
        };
        let error = match made {
            Ok(Ok(mut forwarder)) => {
                if let Some(at) = panicked_at_ms {
                    forwarder.after_a_panic_at(at);
                }
                // A file found gone since is no mend: the start went on
                // without writing (`Forwarder::new` said so at warn), and
                // "the correction is written" would be false.
                if ctx.journal.is_file_gone() && failed.is_some() {
                    tracing::info!(
                        "the kafka sink starts on what the open journal holds, its file gone"
                    );
                } else if let Some(mended) = failed {
                    tracing::info!("{mended}: the kafka sink starts");
                }
                return forwarder.run(stop).await;
            }
            Ok(Err(error)) => error,
            // A panic in it is the forwarder's: restarted as one.
            Err(joined) if joined.is_panic() => std::panic::resume_unwind(joined.into_panic()),
            Err(joined) => StartError::Joined(joined),
        };
        let mended = error.mended();
        let error = format!("{error}; trying again in {wait:?}");
        // At error once per kind in a row: the retries of one add nothing
        // but `/status` says them, while a failure that turns into another
        // (the cursor read again, then its correction refused) is news.
        if failed == Some(mended) {
            tracing::debug!(%error, "kafka sink cannot start yet");
        } else {
            tracing::error!(%error, "kafka sink cannot start yet");
        }
        failed = Some(mended);
        not_ready(&ctx, error);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => break,
        }
        wait = (wait * 2).min(CURSOR_RETRY_MAX);
    }
    ctx.status.remove_sink("kafka");
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

    /// A relay whose journal holds one event (seq 1) and a Kafka cursor
    /// stored at 50, past it (damage), with a mock cluster for the sink.
    async fn one_event_and_a_cursor_past_it(
        dir: &std::path::Path,
    ) -> (crate::app::Relay, tests_support::Mock, KafkaConfig) {
        let relay = relay_in(dir, "").await;
        let (mock, _, config) = tests_support::mock_topic("callrelay.events");
        relay
            .ctx
            .ingest
            .submit(crate::journal::tests_support::event("a"))
            .await
            .unwrap();
        relay.ctx.journal.set_cursor(CURSOR, 50, true).unwrap();
        (relay, mock, config)
    }

    /// Until the forwarder runs at cursor 1, the journal's last seq in
    /// [`one_event_and_a_cursor_past_it`]: its own status says its cursor,
    /// where a start that failed would say none.
    async fn until_started_at_the_last_seq(ctx: &Context) {
        until(
            "the sink started at the last seq",
            Duration::from_secs(10),
            || {
                ctx.status
                    .sinks()
                    .get("kafka")
                    .is_some_and(|s| s.detail["cursor"] == 1)
            },
        )
        .await;
    }

    /// The sink's start loop, as `run` spawns it, with a token to stop it.
    fn spawn_sink(
        config: KafkaConfig,
        ctx: &Arc<Context>,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let cancel = CancellationToken::new();
        let running = tokio::spawn(run_forwarder(
            config,
            ctx.clone(),
            cancel.clone().into(),
            Tuning::default(),
            None,
        ));
        (cancel, running)
    }

    /// A cursor the sink cannot read at start (here the journal is closed
    /// under it, as while the writer opens it again after a failed commit)
    /// shows the sink not ready in `/status`, saying why; once the journal
    /// is open again the sink starts and delivers (it waited for a stop
    /// before: Kafka got nothing until the next reload or restart).
    #[tokio::test]
    async fn a_cursor_unreadable_at_start_is_read_again_until_the_sink_starts() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_in(dir.path(), "").await;
        let ctx = relay.ctx.clone();
        let (_mock, _, config) = tests_support::mock_topic("callrelay.events");
        assert!(ctx.journal.close(Duration::from_secs(10)));
        let (cancel, running) = spawn_sink(config, &ctx);

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
        // Read again after 1 s, then after 2 s: the wait doubles.
        until("a second try", within, || {
            ctx.status
                .sinks()
                .get("kafka")
                .and_then(|s| s.reason.clone())
                .is_some_and(|r| r.ends_with("trying again in 2s"))
        })
        .await;

        ctx.journal.reopen().unwrap();
        let ack = ctx
            .ingest
            .submit(crate::journal::tests_support::event("a"))
            .await
            .unwrap();
        until("the event delivered", Duration::from_secs(20), || {
            ctx.journal.cursor(CURSOR).ok().flatten() == Some(ack.seq)
        })
        .await;
        cancel.cancel();
        running.await.unwrap();
        assert!(!ctx.status.sinks().contains_key("kafka"));
        stop(relay).await;
    }

    /// A cursor stored past the journal's last seq is corrected at start,
    /// and the correction written at once; a journal that refuses the write
    /// (here as a full disk would, reads going on) holds the start, which
    /// the log and `/status` say as the failed write, naming the cursor and
    /// the last seq. It was said as "cannot read the kafka cursor", which
    /// pointed the operator at the read, which worked.
    #[tokio::test]
    async fn a_cursor_correction_that_cannot_be_written_is_said_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let (relay, _mock, config) = one_event_and_a_cursor_past_it(dir.path()).await;
        let ctx = relay.ctx.clone();
        ctx.journal.refuse_cursor_writes(true);
        let (logs, guard) = crate::logging::tests_support::capture_json();
        let (cancel, running) = spawn_sink(config, &ctx);

        let within = Duration::from_secs(10);
        until("the sink shown", within, || {
            ctx.status.sinks().contains_key("kafka")
        })
        .await;
        let shown = ctx.status.sinks().remove("kafka").unwrap();
        cancel.cancel();
        running.await.unwrap();
        drop(guard);
        assert!(!shown.ready);
        let reason = shown.reason.unwrap_or_default();
        assert!(
            reason.starts_with(
                "cannot write the kafka cursor's correction (stored 50, past the journal's last seq 1): "
            ),
            "{reason}"
        );
        assert_eq!(shown.detail["last_error"], reason.as_str());
        let logged = logs.text();
        let line = logged
            .lines()
            .find(|l| l.contains("kafka sink cannot start yet"))
            .unwrap_or_else(|| panic!("no line in:\n{logged}"));
        assert!(line.contains("\"level\":\"ERROR\""), "{line}");
        assert!(
            line.contains(
                "cannot write the kafka cursor's correction (stored 50, past the journal's last seq 1)"
            ),
            "{line}"
        );
        assert!(!line.contains("cannot read"), "{line}");
        stop(relay).await;
    }

    /// Once the journal's file is gone no write lands in it, the cursor's
    /// correction neither, and none ever will: the sink goes on from the
    /// last seq in memory and says once (warn) that the correction could not
    /// be written. It tried again for good, not ready until a restart,
    /// against the rule that a sink starting once the file is gone delivers
    /// what the open file holds (b5cb633).
    #[tokio::test]
    async fn a_cursor_correction_refused_as_the_journal_file_is_gone_does_not_hold_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let (relay, _mock, config) = one_event_and_a_cursor_past_it(dir.path()).await;
        let ctx = relay.ctx.clone();
        tests_support::lose_the_journal_file(&ctx.journal);
        let (logs, guard) = crate::logging::tests_support::capture_json();
        let (cancel, running) = spawn_sink(config, &ctx);
        until_started_at_the_last_seq(&ctx).await;
        cancel.cancel();
        running.await.unwrap();
        drop(guard);
        // What `Forwarder::new` says, on the blocking pool, is not captured
        // here: see the forwarder's test of the same case.
        let logged = logs.text();
        assert!(!logged.contains("cannot start yet"), "{logged}");
        // Read on from the file, which still holds the damaged cursor.
        assert_eq!(ctx.journal.cursor(CURSOR).unwrap(), Some(50));
        stop(relay).await;
    }

    /// A correction refused by the disk, then the file moved aside (what an
    /// operator does on a full disk): the start goes on, and the log does
    /// not say the correction was written, which the file still lacks
    /// (review of 471dafa).
    #[tokio::test]
    async fn a_start_that_goes_on_once_the_file_is_gone_does_not_say_the_correction_written() {
        let dir = tempfile::tempdir().unwrap();
        let (relay, _mock, config) = one_event_and_a_cursor_past_it(dir.path()).await;
        let ctx = relay.ctx.clone();
        ctx.journal.refuse_cursor_writes(true);
        let (logs, guard) = crate::logging::tests_support::capture_json();
        let (cancel, running) = spawn_sink(config, &ctx);
        until("the correction refused", Duration::from_secs(10), || {
            ctx.status.sinks().get("kafka").is_some_and(|s| {
                s.detail["last_error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("cannot write the kafka cursor's correction"))
            })
        })
        .await;
        tests_support::lose_the_journal_file(&ctx.journal);
        until_started_at_the_last_seq(&ctx).await;
        cancel.cancel();
        running.await.unwrap();
        drop(guard);
        let logged = logs.text();
        assert!(
            !logged.contains("correction is written"),
            "a correction never written was said written: {logged}"
        );
        assert!(logged.contains("its file gone"), "{logged}");
        assert_eq!(ctx.journal.cursor(CURSOR).unwrap(), Some(50));
        stop(relay).await;
    }

    /// Each start failure of another kind than the one before is said at
    /// error, not only the first: a correction refused after a cursor that
    /// could not be read was said only at debug and in `/status`.
    #[tokio::test]
    async fn a_start_failure_of_another_kind_is_said_at_error() {
        let dir = tempfile::tempdir().unwrap();
        let (relay, _mock, config) = one_event_and_a_cursor_past_it(dir.path()).await;
        let ctx = relay.ctx.clone();
        ctx.journal.refuse_cursor_writes(true);
        assert!(ctx.journal.close(Duration::from_secs(10)));
        let (logs, guard) = crate::logging::tests_support::capture_json();
        let (cancel, running) = spawn_sink(config, &ctx);
        let within = Duration::from_secs(10);
        let reason_is = |start: &str| {
            ctx.status
                .sinks()
                .get("kafka")
                .and_then(|s| s.reason.clone())
                .is_some_and(|r| r.starts_with(start))
        };

        until("the read failed", within, || {
            reason_is("cannot read the kafka cursor")
        })
        .await;
        ctx.journal.reopen().unwrap();
        until("the correction refused", within, || {
            reason_is("cannot write the kafka cursor's correction")
        })
        .await;
        ctx.journal.refuse_cursor_writes(false);
        until("the sink started at the last seq", within, || {
            ctx.status
                .sinks()
                .get("kafka")
                .is_some_and(|s| s.detail["cursor"] == 1)
        })
        .await;
        cancel.cancel();
        running.await.unwrap();
        drop(guard);
        let logged = logs.text();
        let failed: Vec<&str> = logged
            .lines()
            .filter(|l| l.contains("kafka sink cannot start yet"))
            .filter(|l| l.contains("\"level\":\"ERROR\""))
            .collect();
        assert_eq!(failed.len(), 2, "{logged}");
        assert!(
            failed[0].contains("cannot read the kafka cursor"),
            "{logged}"
        );
        assert!(
            failed[1].contains("cannot write the kafka cursor's correction"),
            "{logged}"
        );
        assert!(
            logged.contains("the kafka cursor's correction is written: the kafka sink starts"),
            "{logged}"
        );
        stop(relay).await;
    }
}
