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
//! drain (a client stalled mid-request) are abandoned unanswered. A reload
//! with a bad config keeps the old one running and counts
//! `callrelay_config_reloads_total{result="failed"}`; a good one restarts only
//! the sources whose config changed, and keeps settings that need a restart
//! ([`reload`]) at their running values, with a warning.

pub mod reload;
pub mod watchdog;

pub use reload::ReloadOutcome;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::ingest::{Hub, Ingest, IngestHandle, IngestOptions};
use crate::journal::{Journal, JournalError, JournalOptions};
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
    /// Which refused webhook requests are logged (per vendor, configured
    /// account and status).
    pub webhook_refusals: Mutex<LogThrottle<(&'static str, String, u16)>>,
    /// The memory webhook bodies being received hold together.
    pub body_budget: Arc<crate::sources::webhook::budget::BodyBudget>,
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

    /// The sinks whose cursors hold events back from retention.
    pub fn active_sink_cursors(&self) -> Vec<&'static str> {
        let mut sinks = Vec::new();
        if self.config.load().kafka.is_some() {
            sinks.push(sinks::kafka::CURSOR);
        }
        sinks
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot start the journal writer thread: {0}")]
    IngestThread(std::io::Error),
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
        let metrics = Arc::new(Metrics::new());
        let journal_cfg = &config.journal;
        let journal = Journal::open(JournalOptions {
            dir: journal_cfg.path.get_ref().clone(),
            dedup_window: config.dedup.window.get_ref().get(),
            retention: journal_cfg.retention.get_ref().get(),
            max_size: journal_cfg.max_size.get_ref().get(),
        })?;
        let journal = Arc::new(journal);
        tracing::info!(
            path = %journal.path().display(),
            first_seq = journal.first_seq(),
            last_seq = journal.last_seq(),
            bytes = journal.bytes(),
            "journal open"
        );
        metrics.journal_last_seq.set(journal.last_seq() as i64);
        metrics.journal_bytes.set(journal.bytes() as i64);
        let hub = Hub::new(journal.last_seq(), 65_536);
        let ingest = Ingest::start(
            journal.clone(),
            hub.clone(),
            metrics.clone(),
            IngestOptions::default(),
        )
        .map_err(RunError::IngestThread)?;
        let addr = config.server.listen_addr();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| RunError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| RunError::Bind { addr, source })?;
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
            sse_resume: Arc::default(),
            kafka_message_max,
            webhook_refusals: Mutex::new(LogThrottle::new(
                crate::sources::webhook::REFUSAL_LOG_INTERVAL,
            )),
            body_budget: crate::sources::webhook::budget::BodyBudget::new(),
            started: Instant::now(),
            reloads,
        });
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
            Err(e) => Err(RunError::Serve(std::io::Error::other(e.to_string()))),
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
async fn reload_request(ctx: &Arc<Context>) -> Result<ReloadOutcome, ConfigError> {
    let loaded = Config::load(&ctx.config_path).and_then(|config| {
        let (pinned, _) = reload::pin_restart_only(&ctx.config.load(), config.clone());
        match reload::unsafe_with_running_listener(&pinned, &config) {
            None => Ok(config),
            Some((offset, message)) => Err(refusal(&ctx.config_path, offset, message)),
        }
    });
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            ctx.metrics
                .config_reloads
                .with_label_values(&["failed"])
                .inc();
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

/// A reload refused for a reason the file alone does not show, placed in
/// the file as `check` places its problems.
fn refusal(path: &Path, offset: usize, message: String) -> ConfigError {
    // The config's spans are in the text after `${VAR}` expansion: mapped
    // back, the place is the file's as written, as `check` gives it.
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let expanded = crate::config::env::expand(&text, &|name| std::env::var(name).ok());
    let (line, col) = crate::config::line_col(&text, expanded.original_offset(offset));
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
    listener: tokio::net::TcpListener,
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

    let mut sources = SourceManager::default();
    sources.apply(&ctx.config.load(), &ctx).await;
    let mut kafka = start_kafka(&ctx);
    let retention = tokio::spawn(retention_loop(ctx.clone()));

    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            Some((config, done)) = reloads.recv() => {
                let (config, needs_restart) = reload::pin_restart_only(&ctx.config.load(), config);
                for warning in &needs_restart {
                    tracing::warn!("reload: {warning}");
                }
                let config = Arc::new(config);
                let kafka_limit = kafka_message_max(&config);
                // Until the sink runs on the new config, both limits hold.
                match kafka_limit {
                    usize::MAX => ctx.kafka_message_max.store(usize::MAX, Ordering::Release),
                    limit => {
                        ctx.kafka_message_max.fetch_min(limit, Ordering::AcqRel);
                    }
                }
                ctx.config.store(config.clone());
                // The fan-out reads its config per connection, but its
                // /status entry is only rewritten on a connect or disconnect,
                // and running sessions check their token again.
                sinks::websocket::publish_status(&ctx);
                ctx.ws_sessions.reloaded();
                ctx.metrics.config_reloads.with_label_values(&["ok"]).inc();
                let changes = sources.apply(&config, &ctx).await;
                tracing::info!(
                    started = SourceChanges::listed(&changes.started),
                    stopped = SourceChanges::listed(&changes.stopped),
                    restarted = SourceChanges::listed(&changes.restarted),
                    unchanged = changes.unchanged.len(),
                    "config reloaded"
                );
                let kafka_changed = match (&kafka, &config.kafka) {
                    (None, None) => false,
                    (Some(running), Some(new)) => {
                        running.config != *new || running.files_digest != new.files_digest()
                    }
                    _ => true,
                };
                if kafka_changed {
                    if let Some(k) = kafka.take() {
                        k.stop().await;
                    }
                    ctx.kafka_message_max.store(kafka_limit, Ordering::Release);
                    kafka = start_kafka(&ctx);
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
                });
            }
        }
    }

    tracing::info!("shutting down: stopping the listener and the sources");
    let served = match tokio::time::timeout(HTTP_DRAIN_BOUND, &mut server).await {
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
    sources.stop_all().await;
    ingest.shutdown().await;
    if let Some(k) = kafka.take() {
        k.stop().await;
    }
    retention.abort();
    // Awaited so that no task holds the journal once `wait` returns: a restart
    // on the same directory must find it free.
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
    match served {
        Ok(()) => Ok(()),
        Err(e) => Err(RunError::Serve(std::io::Error::other(e.to_string()))),
    }
}

struct RunningKafka {
    config: crate::sinks::kafka::config::KafkaConfig,
    /// The option files' contents when the sink started (`KafkaConfig::files_digest`).
    files_digest: Option<[u8; 32]>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningKafka {
    async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// `config`'s Kafka `message.max.bytes`; `usize::MAX` without Kafka.
fn kafka_message_max(config: &Config) -> usize {
    config
        .kafka
        .as_ref()
        .map_or(usize::MAX, |k| k.message_max_bytes())
}

fn start_kafka(ctx: &Arc<Context>) -> Option<RunningKafka> {
    let config = ctx.config.load().kafka.clone()?;
    // Its own token: the forwarder must outlive the sources and ingest at shutdown.
    let cancel = CancellationToken::new();
    let files_digest = config.files_digest();
    let task = tokio::spawn(sinks::kafka::run(
        config.clone(),
        ctx.clone(),
        cancel.clone(),
    ));
    Some(RunningKafka {
        config,
        files_digest,
        cancel,
        task,
    })
}

const RETENTION_EVERY: Duration = Duration::from_secs(30);
/// How often the journal's size is compared with `max_size` between passes:
/// a burst would otherwise grow it (and redb's file, which does not shrink)
/// by up to 30 s of ingest past the limit.
const SIZE_CHECK_EVERY: Duration = Duration::from_secs(1);

async fn retention_loop(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    let mut size_check = tokio::time::interval(SIZE_CHECK_EVERY);
    size_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_size = ctx.journal.options().max_size;
    let mut drops = DropLog::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = size_check.tick() => {
                if ctx.journal.bytes() <= max_size {
                    continue;
                }
            }
        }
        let journal = ctx.journal.clone();
        let sinks = ctx.active_sink_cursors();
        let result = tokio::task::spawn_blocking(move || journal.enforce_retention(&sinks)).await;
        match result {
            Ok(Ok(report)) => {
                let m = &ctx.metrics;
                m.journal_dropped
                    .with_label_values(&["undelivered"])
                    .inc_by(report.dropped_undelivered);
                m.journal_dropped
                    .with_label_values(&["delivered"])
                    .inc_by(report.dropped_delivered);
                drops.add(report.dropped_undelivered, report.dropped_delivered);
                if report.expired > 0 {
                    tracing::debug!(expired = report.expired, "retention removed old events");
                }
                m.journal_bytes.set(ctx.journal.bytes() as i64);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "retention pass failed"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
    }
}

/// Events `max_size` dropped, logged at most once per [`RETENTION_EVERY`]
/// with the counts since the last line: at the limit under steady load every
/// size check drops a few, and a line a second would bury the rest.
#[derive(Default)]
struct DropLog {
    logged_at: Option<Instant>,
    undelivered: u64,
    delivered: u64,
}

impl DropLog {
    fn add(&mut self, undelivered: u64, delivered: u64) {
        self.undelivered += undelivered;
        self.delivered += delivered;
        if self.undelivered + self.delivered == 0
            || self
                .logged_at
                .is_some_and(|t| t.elapsed() < RETENTION_EVERY)
        {
            return;
        }
        if self.undelivered > 0 {
            tracing::error!(
                dropped = self.undelivered,
                "journal reached max_size: dropped events that a sink had not delivered"
            );
        }
        if self.delivered > 0 {
            tracing::warn!(
                dropped = self.delivered,
                "journal reached max_size: dropped delivered events before their retention"
            );
        }
        *self = DropLog {
            logged_at: Some(Instant::now()),
            ..DropLog::default()
        };
    }
}

/// How long a stop waits for reads in progress before closing the journal.
const JOURNAL_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// `callrelay run`: starts the relay and serves until SIGTERM/SIGINT.
pub async fn run_daemon(config_path: &Path) -> Result<(), RunError> {
    // Handlers first: from here on a SIGHUP reloads (or waits), it never kills.
    let signals = Signals::install();
    let config = Config::load(config_path)?;
    let relay = Relay::start(config, config_path.to_path_buf()).await?;
    let ctx = relay.ctx.clone();
    match signals {
        Some(signals) => {
            tokio::spawn(signal_loop(ctx.clone(), signals));
        }
        None => tracing::error!("cannot install signal handlers"),
    }
    let status = format!("listening on {}", relay.addr);
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ],
    );
    watchdog::spawn(ctx, tokio::runtime::Handle::current());
    relay.wait().await
}

/// Tells systemd a reload began (with the monotonic time `Type=notify-reload` wants).
fn notify_reloading() {
    let mut states = vec![sd_notify::NotifyState::Reloading];
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    let _ = sd_notify::notify(false, &states);
}

/// The signals the daemon handles, installed before anything else.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Option<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(Signals {
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
            hup: signal(SignalKind::hangup()).ok()?,
        })
    }
}

#[cfg(unix)]
async fn signal_loop(ctx: Arc<Context>, signals: Signals) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
            _ = hup.recv() => {
                notify_reloading();
                match reload_request(&ctx).await {
                    Ok(outcome) if outcome.needs_restart.is_empty() => {
                        tracing::info!("SIGHUP: config re-read");
                    }
                    Ok(outcome) => tracing::warn!(
                        "SIGHUP: config re-read; {} setting(s) need a restart to take effect",
                        outcome.needs_restart.len()
                    ),
                    Err(e) => {
                        tracing::error!("SIGHUP: the new config is refused, the old one keeps running:\n{e}");
                    }
                }
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    ctx.shutdown.cancel();
}
