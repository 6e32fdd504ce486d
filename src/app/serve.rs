//! The running relay: the HTTP server, the sources, the Kafka sink and the
//! housekeeping tasks started, one line saying what is served; reloads
//! applied until a stop; then the drain, in order, and the journal's close.
//!
//! Guarantees: a stop ready at the same moment as a reload is taken first;
//! the HTTP server or the journal writer ending on its own (a bug) starts
//! the same drain, and the relay then ends with an error. A reload keeps
//! the settings that need a restart at their running values (warned, see
//! [`super::reload`]), restarts only the sources whose config or CA file
//! changed, and the Kafka sink only when its config or its files changed
//! (or it was added or removed). It reads those files before it changes
//! anything, by one deadline (`files_digest::READ_BOUND`; files not read by
//! then count as unchanged); a stop during the reads does not wait for
//! them, and the reload, answered not applied, has changed nothing. At the
//! start, a stop during the reads starts no source and no sink. The drain:
//! HTTP requests still open [`HTTP_DRAIN_BOUND`] into it are no longer
//! waited for (with a warning; each is answered 200 only once journaled,
//! or cut off); WebSocket sessions are waited for, at most
//! `sinks::websocket::drain::SHUTDOWN_BOUND`;
//! then the sources stop, what they gave up is kept for the next start,
//! the SPRecord resume ids are saved, ingest commits and acknowledges
//! everything queued, the Kafka sink stops, the retention task is stopped
//! and awaited, and the journal closed once reads in progress end, at most
//! [`JOURNAL_CLOSE_WAIT`] (else a warning: the next start checks the whole
//! file); systemd is told to wait longer while a journal reopen, or a slow
//! journal write, holds these steps ([`super::stop_extension`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::{RunError, ServeError};
use super::kafka_sink::{
    hold_both_limits, kafka_changes, kafka_files_digest, kafka_message_max, start_kafka,
};
use super::restarting::{resume_saving_restarting, retention_restarting};
use super::stop_losses::keep_shutdown_losses;
use super::{Context, ReloadOutcome, ReloadRequest, fd_limit, reload, signals, stop_extension};
use crate::config::Config;
use crate::files_digest::FilesDigest;
use crate::ingest::Ingest;
use crate::sinks;
use crate::sinks::kafka::StopReason;
use crate::sources::{SourceChanges, SourceManager, WantedSources};

/// How long shutdown waits for the HTTP server's open requests. A request
/// whose event reached ingest is answered within a commit; one still open
/// after this is a client sending (or not sending) its request too slowly:
/// its head may take `HttpTimeouts::header_read` ([`crate::http_serve`]), and
/// a body `BODY_TIMEOUT`.
const HTTP_DRAIN_BOUND: Duration = Duration::from_secs(5);

/// Why HTTP requests were still open at the drain's bound, for its warning:
/// the journal, when a reopen or a commit has run for most of the bound
/// (an operator should look at the disk, not at the vendors), else a client.
fn what_holds_the_drain(
    reopen_running_for: Option<Duration>,
    commit_running_for: Option<Duration>,
) -> String {
    let long = HTTP_DRAIN_BOUND / 2;
    match (reopen_running_for, commit_running_for) {
        (Some(running), _) => format!(
            "a reopen of the journal has held their commits for {} s",
            running.as_secs()
        ),
        (None, Some(running)) if running >= long => format!(
            "a journal commit has run for {} s (a slow disk)",
            running.as_secs()
        ),
        _ => "a client stalled mid-request".to_owned(),
    }
}

/// `work`'s output, or `None` once `stop` is cancelled (first, if both are
/// ready): what a stop must not wait for (a file read on a hung mount).
async fn unless_stopped<T>(
    stop: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => None,
        done = work => Some(done),
    }
}

/// The files a start or a reload compares, read together by one deadline:
/// those the Kafka options name, and each source's CA file.
fn read_compared(
    config: &Config,
) -> impl std::future::Future<Output = (FilesDigest, WantedSources)> + use<> {
    let deadline = crate::files_digest::deadline_from_now();
    let kafka = kafka_files_digest(config.kafka.as_ref(), deadline);
    let sources = WantedSources::read(config, deadline);
    async move { tokio::join!(kafka, sources) }
}

/// How long a stop waits for reads in progress before closing the journal.
const JOURNAL_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Serves until a stop (or the HTTP server or the journal writer ending on
/// its own), applying each reload from `reloads`; then drains and closes the
/// journal.
pub(super) async fn serve(
    ctx: Arc<Context>,
    listener: Arc<tokio::net::TcpListener>,
    ingest: Ingest,
    mut reloads: tokio::sync::mpsc::Receiver<ReloadRequest>,
) -> Result<(), RunError> {
    let mut server = tokio::spawn(crate::http_serve::serve(
        listener,
        crate::server::router(&ctx),
        ctx.config.load().server.http_timeouts,
        ctx.http_slots.clone(),
        ctx.metrics.clone(),
        ctx.shutdown.clone(),
    ));

    ctx.metrics.prime(&ctx.config.load());
    let mut sources = SourceManager::default();
    // The files a reload compares with are read first; a stop meanwhile
    // starts no source and no sink (the loop below sees it).
    let reads = read_compared(&ctx.config.load());
    let (started, mut kafka) = match unless_stopped(&ctx.shutdown, reads).await {
        Some((files, wanted)) => (sources.apply(wanted, &ctx).await, start_kafka(&ctx, files)),
        None => (SourceChanges::default(), None),
    };
    say_what_is_served(&ctx.config.load(), &started.started, kafka.is_some());
    let retention_stop = CancellationToken::new();
    let retention = tokio::spawn(retention_restarting(ctx.clone(), retention_stop.clone()));
    let resume_stop = CancellationToken::new();
    let resume_saving = tokio::spawn(resume_saving_restarting(ctx.clone(), resume_stop.clone()));

    // The HTTP server's end, when it came before a stop.
    let mut server_ended = None;
    let mut writer_stopped = false;
    loop {
        tokio::select! {
            // A stop first: a reload ready at the same moment would swap the
            // config during the drain, and one changing `[kafka]` would stop
            // the sink before ingest, which the drain needs it to outlive.
            biased;
            _ = ctx.shutdown.cancelled() => break,
            () = ctx.ingest.stopped() => {
                // Only a panic ends the writer before the drain below. Every
                // webhook would be answered 503 and every upstream event
                // dropped until the watchdog's SIGABRT (30 s, then a check
                // of the whole journal at the next start), and for good
                // without a watchdog. A drain and exit 1 instead: the
                // journal closes cleanly and `Restart=on-failure` starts
                // the relay again at once.
                tracing::error!("the journal writer stopped unexpectedly: stopping the relay so that it is started again");
                writer_stopped = true;
                signals::tell_stopping(&ctx);
                break;
            }
            ended = &mut server => {
                let ended = ended.map_err(ServeError::Task);
                // A stop, which the server saw first.
                if ctx.shutdown.is_cancelled() {
                    server_ended = Some(ended);
                    break;
                }
                // Nothing listens any more (a bug: the accept loop ends only
                // at a stop), while sources and the watchdog carry on and
                // systemd would never restart it. Stop the whole relay with
                // an error instead, so that `Restart=on-failure` does.
                tracing::error!("the HTTP server stopped unexpectedly: stopping the relay so that it is started again");
                server_ended = Some(ended.and_then(|()| Err(ServeError::StoppedUnexpectedly)));
                signals::tell_stopping(&ctx);
                break;
            }
            Some((config, done)) = reloads.recv() => {
                let before = ctx.config.load_full();
                let (config, needs_restart) = reload::pin_restart_only(&before, config);
                // Every file the reload compares (the Kafka options' files,
                // the CA files) is read before anything changes. A stop
                // meanwhile (a hung NFS mount) does not wait for the reads;
                // the reload is answered not applied (`done` dropped) and
                // has changed nothing: config, status, metrics, sources and
                // sink are as they were, for the stop to stop. Before, the
                // config was in force and the reload counted good by then.
                // The reads have one deadline (`files_digest::READ_BOUND`):
                // files not read by then count as unchanged, so that the
                // rest of the reload (a token taken away) is not held for as
                // long as a mount hangs.
                let reads = read_compared(&config);
                let Some((kafka_files, wanted)) = unless_stopped(&ctx.shutdown, reads).await else {
                    continue;
                };
                let kafka_changed = kafka_changes(kafka.as_ref(), config.kafka.as_ref(), kafka_files);
                for warning in &needs_restart {
                    tracing::warn!("reload: {warning}");
                }
                ctx.status.set_restart_pending(needs_restart.clone());
                let config = Arc::new(config);
                let kafka_limit = kafka_message_max(&config);
                hold_both_limits(&ctx.kafka_message_max, kafka_limit);
                ctx.config.store(config.clone());
                ctx.metrics.prime(&config);
                ctx.http_slots.set_max(*config.server.max_connections.get_ref());
                fd_limit::check(&config);
                // The fan-out reads its config per connection, but its
                // /status entry is only rewritten on a connect or disconnect,
                // and running sessions check their token again, only when
                // that could end one: each of 10,000 sessions checking at a
                // reload that added a webhook kept both cores busy.
                sinks::websocket::publish_status(&ctx);
                if !before.websocket.admits_as(&config.websocket) {
                    ctx.ws_sessions.reloaded();
                }
                ctx.status.reload_applied();
                let changes = sources.apply(wanted, &ctx).await;
                // After the apply: a removed account's stream has drained.
                ctx.sse_resume
                    .keep_only(&crate::sources::sprecord::resume::configured(&config));
                let webhooks = reload::webhook_changes(&before, &config);
                tracing::info!(
                    started = SourceChanges::listed(&changes.started),
                    stopped = SourceChanges::listed(&changes.stopped),
                    restarted = SourceChanges::listed(&changes.restarted),
                    unchanged = changes.unchanged.len(),
                    webhooks_added = SourceChanges::listed(&webhooks.added),
                    webhooks_removed = SourceChanges::listed(&webhooks.removed),
                    webhooks_changed = SourceChanges::listed(&webhooks.changed),
                    websocket_changed = before.websocket != config.websocket,
                    kafka_restarting = kafka_changed,
                    "config reloaded"
                );
                if kafka_changed {
                    if let Some(k) = kafka.take() {
                        // The process goes on: what the stop lets go of
                        // is counted now, where it is scraped.
                        k.stop(StopReason::Reload).await;
                    }
                    ctx.kafka_message_max.store(kafka_limit, Ordering::Release);
                    // A drain that began while the old sink stopped starts no
                    // new one (`start_kafka` looks).
                    kafka = start_kafka(&ctx, kafka_files);
                    if kafka.is_none() {
                        // No sink, no lag: a frozen series would keep a lag alert firing.
                        let _ = ctx.metrics.sink_lag_events.remove_label_values(&["kafka"]);
                    }
                    match (&kafka, &config.kafka) {
                        (Some(_), _) => tracing::info!(
                            enabled = true,
                            "reload: the Kafka sink was restarted with the new [kafka]"
                        ),
                        (None, Some(_)) => tracing::info!(
                            enabled = false,
                            "reload: the Kafka sink stopped; the stop that began meanwhile starts no new one"
                        ),
                        (None, None) => tracing::info!(
                            enabled = false,
                            "reload: the Kafka sink stopped ([kafka] was removed)"
                        ),
                    }
                }
                let _ = done.send(ReloadOutcome {
                    sources: changes,
                    kafka_restarted: kafka_changed,
                    needs_restart,
                    applied: true,
                });
            }
        }
    }

    tracing::info!("shutting down: stopping the listener and the sources");
    let drained = match server_ended {
        Some(ended) => Ok(ended),
        None => tokio::time::timeout(HTTP_DRAIN_BOUND, &mut server)
            .await
            .map(|served| served.map_err(ServeError::Task)),
    };
    let served = match drained {
        Ok(served) => served,
        Err(_) => {
            // A client that stalls mid-request gets here, or requests a
            // reopen of the journal or a slow commit holds (those that reached
            // ingest are answered within a commit). The drain stops
            // waiting for them; a connection's task runs on until the
            // runtime's end cuts it, and a body that completes meanwhile is
            // answered 200 only once journaled (503 once ingest has shut
            // down): either way the sender knows what became of it.
            tracing::warn!(
                bound_ms = crate::logging::millis(HTTP_DRAIN_BOUND),
                "shutting down: no longer waiting for HTTP requests still open ({}); each is answered 200 only once journaled, or cut off",
                what_holds_the_drain(
                    ctx.ingest.reopen_running_for(),
                    ctx.ingest.commit_running_for()
                )
            );
            server.abort();
            Ok(())
        }
    };
    // Upgraded connections are not the server's any more: their sessions hold
    // the journal until their 1001 close is done, so they are waited for too.
    ctx.ws_sessions
        .drain(sinks::websocket::drain::SHUTDOWN_BOUND)
        .await;
    // Every step from here to the journal's close may wait on it: on a
    // reopen after a failed write, which reads the whole file, and on each
    // write in turn, on a slow disk a sync each.
    let writer = ctx.ingest.clone();
    let journal_busy = || stop_extension::JournalBusy {
        reopen: writer.reopen_running_for(),
        write: ctx.journal.write_running_for(),
    };
    let journal_steps = async {
        sources.stop_all().await;
        // After the sources: the ids their drain handed on are stored too.
        resume_stop.cancel();
        let _ = resume_saving.await;
        ingest.shutdown().await;
        // Every queued commit is answered now: what a late answer counted
        // as lost is kept too, in one write (two, the first given back when
        // refused, could count a write that failed at its sync but landed
        // twice).
        ctx.late_answers.close();
        ctx.late_answers.wait().await;
        keep_shutdown_losses(&ctx).await;
        if let Some(k) = kafka.take() {
            // `/metrics` is closed already: the next start counts what
            // this stop lets go of.
            k.stop(StopReason::ProcessStop).await;
        }
        // Stopped rather than aborted: the drops it has not logged yet are
        // logged now. Awaited so that no task holds the journal once `wait`
        // returns: a restart on the same directory must find it free.
        retention_stop.cancel();
        let _ = retention.await;
        let last_seq = ctx.journal.last_seq();
        // Closed here rather than when the last reference goes, which may be never
        // before the process exits (see `Journal::close`).
        let journal = ctx.journal.clone();
        let closed = tokio::task::spawn_blocking(move || journal.close(JOURNAL_CLOSE_WAIT))
            .await
            .unwrap_or(false);
        (last_seq, closed)
    };
    let (last_seq, closed) =
        stop_extension::extend_while_journal_busy(journal_steps, journal_busy).await;
    if !closed {
        tracing::warn!(
            "the journal was still in use after {JOURNAL_CLOSE_WAIT:?}: the next start checks the whole file"
        );
    }
    tracing::info!(last_seq, "stopped");
    if writer_stopped {
        return Err(RunError::WriterStopped);
    }
    served.map_err(RunError::Serve)
}

/// One line at start naming what this process serves, as a reload's line
/// does for what changed: without it only `/status` said which webhooks and
/// connections a relay had, or that it had no Kafka sink.
fn say_what_is_served(
    config: &Config,
    connections: &[(crate::event::Vendor, String)],
    kafka: bool,
) {
    let webhooks: Vec<(crate::event::Vendor, String)> = config
        .webhook
        .iter()
        .map(|w| (w.get_ref().vendor, w.get_ref().account.get_ref().clone()))
        .collect();
    tracing::info!(
        connections = SourceChanges::listed(connections),
        webhooks = SourceChanges::listed(&webhooks),
        kafka,
        websocket_path = config.websocket.path.get_ref().as_str(),
        "serving"
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::what_holds_the_drain;

    /// The drain's warning blamed a client when the journal held the
    /// requests, and the operator looked at the vendors, not the disk
    /// (review of the HTTP edge, 2026-12-06).
    #[test]
    fn the_drain_says_what_holds_its_requests() {
        let secs = Duration::from_secs;
        assert_eq!(
            what_holds_the_drain(Some(secs(40)), None),
            "a reopen of the journal has held their commits for 40 s"
        );
        assert_eq!(
            what_holds_the_drain(None, Some(secs(4))),
            "a journal commit has run for 4 s (a slow disk)"
        );
        for quick_or_none in [None, Some(Duration::from_millis(3))] {
            assert_eq!(
                what_holds_the_drain(None, quick_or_none),
                "a client stalled mid-request"
            );
        }
    }

    /// Readiness says "shutting down" from the stop's start: ingest closes
    /// only after the HTTP drain, and a probe answered during the drain
    /// said ready (operations docs review, 2026-12-05).
    #[tokio::test]
    async fn readiness_says_shutting_down_from_the_start_of_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        assert!(crate::server::not_ready_reasons(&relay.ctx).is_empty());
        relay.shutdown();
        assert!(!relay.ctx.ingest.is_closing(), "ingest is still open");
        assert_eq!(
            crate::server::not_ready_reasons(&relay.ctx),
            ["shutting down"]
        );
        relay.wait().await.unwrap();
    }

    /// A webhook whose commit is in progress when a stop begins is answered
    /// 200 once the commit lands, and its event is on disk after the stop:
    /// the HTTP drain waits for it. Only the Voip24h and SPRecord drains
    /// were tested (test review, round 47).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_webhook_in_flight_at_a_stop_is_answered_and_kept() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let hook = "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"t\"\napi_key = \"k\"\n";
        let relay = crate::app::tests_support::relay_in(dir.path(), hook).await;
        let (holding, writes_held) = tokio::sync::oneshot::channel();
        let (release, held) = std::sync::mpsc::channel();
        let journal = relay.ctx.journal.clone();
        let holder = tokio::task::spawn_blocking(move || journal.hold_writes_until(holding, held));
        writes_held.await.unwrap();
        let post = tokio::spawn(
            reqwest::Client::new()
                .post(format!("http://{}/hooks/tel4vn/t", relay.addr))
                .bearer_auth("k")
                .json(&serde_json::json!({"state": "ringing", "call_id": "c1"}))
                .send(),
        );
        let received = relay
            .ctx
            .metrics
            .events_received
            .with_label_values(&["tel4vn", "t", "webhook"]);
        crate::app::tests_support::until("the event submitted", Duration::from_secs(10), || {
            received.get() == 1
        })
        .await;
        relay.shutdown();
        // Room for a handler that answered at the stop to have done so.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!post.is_finished(), "answered before its commit landed");
        release.send(()).unwrap();
        holder.await.unwrap();
        let answer = post.await.unwrap().unwrap();
        assert_eq!(answer.status(), 200);
        relay.wait().await.unwrap();
        let journal = crate::app::tests_support::journal_left_in(dir.path());
        assert_eq!(journal.last_seq(), 1, "kept");
    }
}
