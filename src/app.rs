//! The daemon's lifecycle: open the journal, start ingest, the HTTP server,
//! sources and sinks; reload on SIGHUP; drain in order on SIGTERM/SIGINT.
//!
//! Guarantees: READY is signalled to systemd only once the listener is bound
//! and the journal is open; the watchdog keep-alive ([`watchdog`]) only while
//! the runtime and the journal writer are healthy; shutdown stops taking
//! requests, stops the sources, commits and acknowledges everything queued,
//! lets the sinks finish, and returns — nothing acknowledged is lost, and no
//! task of the relay holds the journal any more. WebSocket sessions are
//! closed with 1001 and waited for too (the HTTP server's graceful shutdown
//! does not see upgraded connections), at most 5 s (`sinks::websocket::drain::SHUTDOWN_BOUND`):
//! a session still running then is abandoned with a warning, and may hold the
//! journal a little longer. Likewise HTTP requests still open 5 s into the
//! drain (a client stalled mid-request) are abandoned unanswered. The HTTP
//! server or the journal writer stopping on its own (a bug) starts the same
//! drain, and the relay then ends with an error for systemd to restart it. A reload
//! with a bad config keeps the old one running and counts
//! `callrelay_config_reloads_total{result="failed"}`; a good one restarts only
//! the sources whose config changed, and keeps settings that need a restart
//! ([`reload`]) at their running values, with a warning.

mod fd_limit;
mod kafka_sink;
mod opening;
mod opening_answers;
pub mod reload;
mod retention;
mod signals;
mod stop_extension;
mod systemd_notify;
#[cfg(test)]
pub(crate) mod tests_support;
pub mod watchdog;

pub use reload::ReloadOutcome;

use kafka_sink::{hold_both_limits, kafka_message_max, start_kafka};
pub(crate) use retention::not_noted;
use retention::retention_loop;
use signals::{Signals, signal_loop, stop_while_starting};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::ingest::{Hub, Ingest, IngestHandle, IngestOptions};
use crate::journal::{ActiveSink, Journal, JournalError, JournalOptions};
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::sinks;
use crate::sources::{SourceChanges, SourceManager};
use crate::status::StatusBoard;

/// Everything the components share. Cheap to clone behind an `Arc`.
pub struct Context {
    pub config: ArcSwap<Config>,
    pub config_path: PathBuf,
    pub metrics: Arc<Metrics>,
    pub journal: Arc<Journal>,
    pub ingest: IngestHandle,
    pub hub: Hub,
    pub status: StatusBoard,
    /// Cancelled when the daemon begins to shut down.
    pub shutdown: CancellationToken,
    /// The WebSocket sessions, which outlive their HTTP connection: shutdown
    /// waits for them after the HTTP server (see [`sinks::websocket::drain`]).
    pub ws_sessions: sinks::websocket::Sessions,
    /// Where each SPRecord stream resumes; outlives the sources (a reload
    /// restarts them).
    pub sse_resume: Arc<crate::sources::sprecord::resume::ResumeIds>,
    /// The largest Kafka message a webhook's event may become
    /// (`message.max.bytes`; `usize::MAX` without a Kafka sink). Kept here,
    /// not read from the config per request: while a reload replaces the
    /// sink, an event must fit both the old one and the new one.
    pub kafka_message_max: AtomicUsize,
    /// The newest seq the Kafka sink has read into memory: what `max_size`
    /// drops after its cursor up to this is not counted as lost while the
    /// sink delivers it (see [`crate::journal::ActiveSink`]). Grows as the
    /// sink reads; set back to its cursor when it starts or lets go of its
    /// memory.
    pub kafka_held_up_to: Arc<AtomicU64>,
    /// Which refused webhook requests are logged (per vendor, configured
    /// account and status).
    pub webhook_refusals: Mutex<LogThrottle<(&'static str, String, u16)>>,
    /// Which webhook bodies labelled with a charset but written in UTF-8
    /// are logged (per vendor and account).
    pub mislabelled_charsets: Mutex<LogThrottle<(&'static str, String)>>,
    /// The memory webhook bodies being received hold together.
    pub body_budget: Arc<crate::sources::webhook::budget::BodyBudget>,
    /// Voip24h events the shutdown in progress gave up: kept in the
    /// journal once the sources drained, for the next start's metric (see
    /// `journal::stop_losses`).
    pub dropped_at_shutdown: AtomicU64,
    pub started: Instant,
    reloads: tokio::sync::mpsc::Sender<ReloadRequest>,
}

impl Context {
    /// The largest Kafka message a webhook's event may become; `None`
    /// without a Kafka sink.
    pub fn kafka_message_limit(&self) -> Option<usize> {
        let limit = self.kafka_message_max.load(Ordering::Acquire);
        (limit != usize::MAX).then_some(limit)
    }

    /// The sinks whose cursors hold events back from retention, with what
    /// each holds in memory.
    pub fn active_sinks(&self) -> Vec<ActiveSink<'static>> {
        let mut sinks = Vec::new();
        if self.config.load().kafka.is_some() {
            sinks.push(ActiveSink {
                name: sinks::kafka::CURSOR,
                held_up_to: self.kafka_held_up_to.clone(),
            });
        }
        sinks
    }
}

/// What to do about a port that cannot be had, for the error line.
fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another process listens there (another callrelay?): `ss -ltnp` names it, or change [server] listen"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; a port below 1024 needs CAP_NET_BIND_SERVICE in the unit's CapabilityBoundingSet= and AmbientCapabilities=, and PrivateUsers=no, or take a higher port"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "; the address is not one of this host's (`ip -brief address` lists them), or 0.0.0.0 for all of them"
        }
        _ => "",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("cannot listen on {addr}: {source}{}", bind_hint(source))]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(ServeError),
    #[error("cannot start the journal writer thread: {0}")]
    IngestThread(std::io::Error),
    #[error("opening the journal failed: {0}")]
    JournalOpenTask(tokio::task::JoinError),
    #[error(
        "the journal writer stopped unexpectedly (a bug: its panic is logged above); the relay drained and stopped so that it is started again"
    )]
    WriterStopped,
}

/// How the HTTP server, or the task that serves the relay, ended when only
/// a stop should end it (a bug either way).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The task panicked, or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The accept loop returned before a stop.
    #[error("the HTTP server stopped unexpectedly")]
    StoppedUnexpectedly,
}

/// A started relay: its address and the handle to stop it.
pub struct Relay {
    pub addr: SocketAddr,
    pub ctx: Arc<Context>,
    task: JoinHandle<Result<(), RunError>>,
}

impl Relay {
    /// Starts everything; returns once the listener is bound and the journal open.
    pub async fn start(config: Config, config_path: PathBuf) -> Result<Relay, RunError> {
        Relay::start_as(config, config_path, None).await
    }

    /// As [`Relay::start`]; `starting` learns when the journal is open.
    async fn start_as(
        config: Config,
        config_path: PathBuf,
        starting: Option<&opening::Starting>,
    ) -> Result<Relay, RunError> {
        fd_limit::raise_and_check(&config);
        // Before the journal: a port another process holds fails the start
        // at once, not after a check of the journal that can take minutes
        // (then, with systemd's restarts, another check). Requests meanwhile
        // get the `opening_answers`.
        let addr = config.server.listen_addr();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| RunError::Bind { addr, source })?;
        let listener = Arc::new(listener);
        let metrics = Arc::new(Metrics::new());
        let opening_answers = opening_answers::serve_while_opening(
            listener.clone(),
            config.server.http_timeouts,
            metrics.clone(),
        );
        let journal_cfg = &config.journal;
        let options = JournalOptions {
            dir: journal_cfg.path.get_ref().clone(),
            dedup_window: config.dedup.window.get_ref().get(),
            retention: journal_cfg.retention.get_ref().get(),
            max_size: journal_cfg.max_size.get_ref().get(),
        };
        let opening = opening::JournalOpening::begin();
        let started = Instant::now();
        // Off the runtime's workers: a check of the whole file takes minutes
        // on a slow disk, and the signal handlers must run meanwhile.
        let journal = tokio::task::spawn_blocking(move || Journal::open(options))
            .await
            .map_err(RunError::JournalOpenTask)??;
        drop(opening);
        if let Some(starting) = starting {
            starting.journal_opened();
        }
        let journal = Arc::new(journal);
        tracing::info!(
            path = %journal.path().display(),
            first_seq = journal.first_seq(),
            last_seq = journal.last_seq(),
            bytes = journal.bytes(),
            took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            created = journal.created(),
            "journal open"
        );
        if journal.created() {
            // A first start, or a journal deleted or moved away: the line an
            // operator looks for when seqs start again at 1.
            tracing::info!(path = %journal.path().display(), "no journal file was at the path: started an empty journal");
        }
        if let Some(kind) = journal
            .path()
            .parent()
            .and_then(crate::journal::memory_file_system)
        {
            tracing::warn!(
                path = %journal.path().display(),
                file_system = kind,
                "the journal is in memory ({kind}): a reboot, or a container made anew, loses it, with every event a sink has not had yet, the dedup log and the SPRecord resume ids; put journal.path on a disk"
            );
        }
        retention::say_losses_before_start(&journal);
        let sse_resume = Arc::new(restored_resume_ids(&journal, &config));
        metrics.observe_journal(&journal);
        say_last_stop_losses(&journal, &metrics);
        let hub = Hub::new(journal.last_seq(), 65_536);
        let ingest = Ingest::start(
            journal.clone(),
            hub.clone(),
            metrics.clone(),
            IngestOptions::default(),
        )
        .map_err(RunError::IngestThread)?;
        let (reloads, reload_rx) = tokio::sync::mpsc::channel(4);
        let kafka_message_max = AtomicUsize::new(kafka_message_max(&config));
        let ctx = Arc::new(Context {
            config: ArcSwap::from_pointee(config),
            config_path,
            status: StatusBoard::new(metrics.clone()),
            metrics,
            journal,
            ingest: ingest.handle(),
            hub,
            shutdown: CancellationToken::new(),
            ws_sessions: sinks::websocket::Sessions::default(),
            sse_resume,
            kafka_message_max,
            kafka_held_up_to: Arc::default(),
            webhook_refusals: Mutex::new(LogThrottle::new(
                crate::sources::webhook::REFUSAL_LOG_INTERVAL,
            )),
            mislabelled_charsets: Mutex::new(LogThrottle::new(
                crate::sources::webhook::REFUSAL_LOG_INTERVAL,
            )),
            body_budget: crate::sources::webhook::budget::BodyBudget::new(),
            dropped_at_shutdown: AtomicU64::new(0),
            started: Instant::now(),
            reloads,
        });
        opening_answers.close().await;
        let task = tokio::spawn(serve(ctx.clone(), listener, ingest, reload_rx));
        tracing::info!(%addr, "listening");
        Ok(Relay { addr, ctx, task })
    }

    /// Asks the relay to drain and stop.
    pub fn shutdown(&self) {
        self.ctx.shutdown.cancel();
    }

    /// Waits until the relay has drained and stopped.
    pub async fn wait(self) -> Result<(), RunError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(RunError::Serve(ServeError::Task(e))),
        }
    }

    /// Re-reads the config file; on error the old config keeps running.
    pub async fn reload(&self) -> Result<(), ConfigError> {
        reload_request(&self.ctx).await.map(|_| ())
    }

    /// Like [`Relay::reload`], and says what the reload changed.
    pub async fn reload_with_outcome(&self) -> Result<ReloadOutcome, ConfigError> {
        reload_request(&self.ctx).await
    }
}

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
async fn load_off_the_workers(path: &Path) -> Result<(Config, String), ConfigError> {
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

/// How long shutdown waits for the HTTP server's open requests. A request
/// whose event reached ingest is answered within a commit; one still open
/// after this is a client sending (or not sending) its request too slowly:
/// its head may take `HttpTimeouts::header_read` ([`crate::http_serve`]), and
/// a body `BODY_TIMEOUT`.
const HTTP_DRAIN_BOUND: Duration = Duration::from_secs(5);

type ReloadRequest = (Config, tokio::sync::oneshot::Sender<ReloadOutcome>);

async fn serve(
    ctx: Arc<Context>,
    listener: Arc<tokio::net::TcpListener>,
    ingest: Ingest,
    mut reloads: tokio::sync::mpsc::Receiver<ReloadRequest>,
) -> Result<(), RunError> {
    let mut server = tokio::spawn(crate::http_serve::serve(
        listener,
        crate::server::router(&ctx),
        ctx.config.load().server.http_timeouts,
        ctx.metrics.clone(),
        ctx.shutdown.clone(),
    ));

    ctx.metrics.prime(&ctx.config.load());
    let mut sources = SourceManager::default();
    let started = sources.apply(&ctx.config.load(), &ctx).await;
    let mut kafka = start_kafka(&ctx);
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
                for warning in &needs_restart {
                    tracing::warn!("reload: {warning}");
                }
                let config = Arc::new(config);
                let kafka_limit = kafka_message_max(&config);
                hold_both_limits(&ctx.kafka_message_max, kafka_limit);
                ctx.config.store(config.clone());
                ctx.metrics.prime(&config);
                fd_limit::check(&config);
                // The fan-out reads its config per connection, but its
                // /status entry is only rewritten on a connect or disconnect,
                // and running sessions check their token again.
                sinks::websocket::publish_status(&ctx);
                ctx.ws_sessions.reloaded();
                ctx.metrics.config_reloads.with_label_values(&["ok"]).inc();
                ctx.metrics.config_last_reload_ok.set(1);
                let changes = sources.apply(&config, &ctx).await;
                // After the apply: a removed account's stream has drained.
                ctx.sse_resume
                    .keep_only(&crate::sources::sprecord::resume::configured(&config));
                let kafka_changed = match (&kafka, &config.kafka) {
                    (None, None) => false,
                    (Some(running), Some(new)) => {
                        running.config != *new || running.files_digest != new.files_digest()
                    }
                    _ => true,
                };
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
                        k.stop().await;
                    }
                    ctx.kafka_message_max.store(kafka_limit, Ordering::Release);
                    // A drain that began while the old sink stopped has no use
                    // for a new one (it would only be stopped again).
                    if !ctx.shutdown.is_cancelled() {
                        kafka = start_kafka(&ctx);
                    }
                    if kafka.is_none() {
                        // No sink, no lag: a frozen series would keep a lag alert firing.
                        let _ = ctx.metrics.sink_lag_events.remove_label_values(&["kafka"]);
                    }
                    tracing::info!(enabled = kafka.is_some(), "reload: the Kafka sink was restarted");
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
            // Only a client that stalls mid-request gets here (requests that
            // reached ingest are answered within a commit): it is abandoned,
            // and its request, never acknowledged, is the sender's to retry.
            tracing::warn!(
                bound = ?HTTP_DRAIN_BOUND,
                "shutting down: HTTP requests still open are abandoned (a client stalled mid-request)"
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
    // Every step from here to the Kafka sink's stop may wait on the journal,
    // which a reopen after a failed write holds while it reads the whole file.
    let writer = ctx.ingest.clone();
    let journal_steps = async {
        sources.stop_all().await;
        keep_shutdown_losses(&ctx).await;
        // After the sources: the ids their drain handed on are stored too.
        resume_stop.cancel();
        let _ = resume_saving.await;
        ingest.shutdown().await;
        if let Some(k) = kafka.take() {
            k.stop().await;
        }
    };
    stop_extension::extend_while_reopening(journal_steps, || writer.reopen_running_for()).await;
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

/// What the last shutdown gave up (see `journal::stop_losses`): said once,
/// as an error and as `callrelay_ingest_errors_total{reason="dropped_at_last_stop"}`.
fn say_last_stop_losses(journal: &Journal, metrics: &Metrics) {
    let lost = match journal.dropped_at_last_stop() {
        Ok(lost) => lost,
        Err(e) => {
            tracing::warn!(error = %e, "could not read how many events the last shutdown gave up");
            return;
        }
    };
    if lost == 0 {
        return;
    }
    metrics
        .ingest_errors
        .with_label_values(&["dropped_at_last_stop"])
        .inc_by(lost);
    tracing::error!(
        events = lost,
        "the last shutdown gave up Voip24h `response` events it had received and could not journal within the drain's time (its log says which account); they are lost"
    );
    if let Err(e) = journal.dropped_at_last_stop_said() {
        tracing::warn!(error = %e, "could not clear the count of events the last shutdown gave up: the next start says them again");
    }
}

/// Keeps what this shutdown's sources gave up for the next start, once
/// they have drained (so their stop never waits on the disk).
async fn keep_shutdown_losses(ctx: &Context) {
    let lost = ctx.dropped_at_shutdown.load(Ordering::Acquire);
    if lost == 0 {
        return;
    }
    let journal = ctx.journal.clone();
    let kept = tokio::task::spawn_blocking(move || journal.add_dropped_at_last_stop(lost)).await;
    if let Ok(Err(e)) = kept {
        tracing::warn!(error = %e, events = lost,
            "could not keep the count of events this shutdown gave up for the next start (the error lines above say them)");
    }
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

/// The SPRecord resume ids the journal kept from the last run, for the
/// accounts `config` still has; none when they cannot be read (the streams
/// then open without history, as on a first start).
fn restored_resume_ids(
    journal: &Journal,
    config: &Config,
) -> crate::sources::sprecord::resume::ResumeIds {
    use crate::sources::sprecord::resume::{ResumeIds, configured};
    let configured = configured(config);
    match journal.sse_resume_ids() {
        Ok(saved) => {
            let restored = ResumeIds::restored(saved, &configured);
            tracing::debug!(
                accounts = restored.accounts(),
                "SPRecord resume ids read from the journal"
            );
            restored
        }
        Err(e) => {
            tracing::warn!(error = %e, "the SPRecord resume ids kept in the journal cannot be read: the SSE streams open without asking for history");
            ResumeIds::default()
        }
    }
}

/// The SPRecord resume id saver, started again after a panic (a bug):
/// without it no id would be stored again; then the stop's durable save.
async fn resume_saving_restarting(ctx: Arc<Context>, stop: CancellationToken) {
    use crate::sources::sprecord::resume_save::{keep_saved, save_at_stop};
    restarting_after_panic("the SPRecord resume id saver", &stop, || {
        keep_saved(ctx.sse_resume.clone(), ctx.journal.clone(), stop.clone())
    })
    .await;
    save_at_stop(&ctx.sse_resume, &ctx.journal).await;
}

/// The retention task, started again after a panic (a bug): without it the
/// journal grew past `max_size` until the disk filled, with no word but the
/// panic's (panic-containment audit of 2026-12-02).
async fn retention_restarting(ctx: Arc<Context>, stop: CancellationToken) {
    restarting_after_panic("the retention task", &stop, || {
        retention_loop(ctx.clone(), stop.clone())
    })
    .await;
}

/// Runs a housekeeping task until it ends, started again after a panic 1 s
/// later (doubling to 60 s), said naming `what`.
async fn restarting_after_panic<F: std::future::Future<Output = ()>>(
    what: &'static str,
    stop: &CancellationToken,
    run: impl FnMut() -> F,
) {
    let waits = (Duration::from_secs(1), Duration::from_secs(60));
    let on_panic = |delay: Duration| {
        tracing::error!(
            retry_in_ms = crate::logging::millis(delay),
            "{what} failed unexpectedly (panic); restarting it"
        );
    };
    crate::panic_restart::restart_on_panic(waits, stop, on_panic, run).await;
}

/// How long a stop waits for reads in progress before closing the journal.
const JOURNAL_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// `callrelay run`: starts the relay and serves until SIGTERM/SIGINT.
pub async fn run_daemon(config_path: &Path) -> Result<(), RunError> {
    // Made now, while descriptors are free: a relay at its open-file limit
    // still tells systemd it lives.
    if let Err(e) = systemd_notify::prepare() {
        tracing::warn!(error = %e, "cannot make the socket for systemd's notifications (tried again at each)");
    }
    // Handlers first: from here on a SIGHUP reloads (or waits), it never kills.
    let mut signals = Signals::install();
    // A SIGTERM or SIGINT while the file is read (it may not answer) exits.
    let config = match signals.as_mut() {
        Some(signals) => tokio::select! {
            biased;
            name = signals.stop_requested() => {
                tracing::info!("{name} while reading the config: exiting now");
                let _ = systemd_notify::notify(&[
                        sd_notify::NotifyState::Stopping,
                        sd_notify::NotifyState::Status("stopped while reading the config"),
                    ],
                );
                return Ok(());
            }
            loaded = load_off_the_workers(config_path) => loaded?.0,
        },
        None => load_off_the_workers(config_path).await?.0,
    };
    // A SIGTERM or SIGINT while starting is acted on at once: an exit while
    // the journal opens, a drain without READY once it is open.
    let starting = Arc::new(opening::Starting::new());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let watching =
        signals.map(|s| tokio::spawn(stop_while_starting(s, starting.clone(), started_rx)));
    let started = Relay::start_as(config, config_path.to_path_buf(), Some(&starting)).await;
    let _ = started_tx.send(());
    let signals = match watching {
        Some(task) => task.await.ok(),
        None => None,
    };
    let relay = started?;
    let ctx = relay.ctx.clone();
    match signals {
        Some(signals) => {
            tokio::spawn(signal_loop(ctx.clone(), signals));
        }
        None => tracing::error!("cannot install signal handlers"),
    }
    if starting.stopped() {
        let _ = systemd_notify::notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("stopping"),
        ]);
        relay.shutdown();
        return relay.wait().await;
    }
    let status = format!("listening on {}", relay.addr);
    let _ = systemd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    watchdog::spawn(ctx, tokio::runtime::Handle::current());
    relay.wait().await
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    #[test]
    fn a_port_that_cannot_be_had_says_what_to_do() {
        let hint = |kind: ErrorKind| super::bind_hint(&Error::from(kind));
        assert!(hint(ErrorKind::AddrInUse).contains("ss -ltnp"));
        assert!(hint(ErrorKind::PermissionDenied).contains("CAP_NET_BIND_SERVICE"));
        assert!(hint(ErrorKind::AddrNotAvailable).contains("ip -brief address"));
        assert_eq!(hint(ErrorKind::Other), "");
    }

    /// Readiness says "shutting down" from the stop's start: ingest closes
    /// only after the HTTP drain, and a probe answered during the drain
    /// said ready (operations docs review, 2026-12-05).
    #[tokio::test]
    async fn readiness_says_shutting_down_from_the_start_of_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let relay = super::tests_support::relay_in(dir.path(), "").await;
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
        let relay = super::tests_support::relay_in(dir.path(), hook).await;
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
        super::tests_support::until("the event submitted", Duration::from_secs(10), || {
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
        let journal = super::tests_support::journal_left_in(dir.path());
        assert_eq!(journal.last_seq(), 1, "kept");
    }

    /// The address a host does not have is refused by the kernel as such,
    /// and the error says what to do about it.
    #[tokio::test]
    async fn an_address_this_host_lacks_is_named_with_a_hint() {
        // TEST-NET-1 (RFC 5737): never one of a host's addresses.
        let addr: std::net::SocketAddr = "192.0.2.1:0".parse().unwrap();
        let source = tokio::net::TcpListener::bind(addr).await.unwrap_err();
        let error = super::RunError::Bind { addr, source }.to_string();
        assert!(
            error.starts_with("cannot listen on 192.0.2.1:0: ")
                && error.contains("not one of this host's"),
            "{error}"
        );
    }

    /// A reload asked for once a stop has begun is not applied, and says
    /// so (it answered as an applied reload, "config re-read").
    #[tokio::test]
    async fn a_reload_after_a_stop_began_is_not_applied() {
        let dir = tempfile::tempdir().unwrap();
        let relay = super::tests_support::relay_in(dir.path(), "").await;
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

    /// What a webhook's event must fit, and which cursors hold retention
    /// back, follow whether the config has a Kafka sink.
    #[tokio::test]
    async fn the_kafka_limit_and_the_held_cursors_come_with_a_kafka_sink_only() {
        let without = tempfile::tempdir().unwrap();
        let relay = super::tests_support::relay_in(without.path(), "").await;
        assert_eq!(relay.ctx.kafka_message_limit(), None);
        assert!(relay.ctx.active_sinks().is_empty());
        super::tests_support::stop(relay).await;

        let with = tempfile::tempdir().unwrap();
        // Nothing listens on port 1: the sink is configured, not connected.
        let kafka = "[kafka]\nbrokers = \"127.0.0.1:1\"\n[kafka.options]\n\"message.max.bytes\" = \"300000\"\n";
        let relay = super::tests_support::relay_in(with.path(), kafka).await;
        assert_eq!(relay.ctx.kafka_message_limit(), Some(300_000));
        // An empty journal: the sink holds nothing (its reset to the cursor
        // may come at any time, so no other value is asserted).
        let sinks = relay.ctx.active_sinks();
        assert_eq!(
            sinks
                .iter()
                .map(|s| (
                    s.name,
                    s.held_up_to.load(std::sync::atomic::Ordering::Acquire)
                ))
                .collect::<Vec<_>>(),
            [(crate::sinks::kafka::CURSOR, 0)]
        );
        super::tests_support::stop(relay).await;
    }
}
