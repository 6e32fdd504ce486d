//! Starting the relay, and the handle to it: the listener bound, the
//! journal opened, ingest started, and everything handed to the serve loop
//! ([`super::serve`]).
//!
//! Guarantees: the listener is bound before the journal is opened, so a
//! port another process holds fails the start at once; requests that come
//! while the journal opens are answered by [`super::opening_answers`]; the
//! journal is opened on a blocking thread, so the runtime (and the signal
//! handlers) go on meanwhile; losses the last run did not say are said
//! before anything is taken ([`super::retention`], [`super::stop_losses`]);
//! SPRecord resume ids that cannot be read are warned, and the streams open
//! without history; [`Relay::start`] returns only once the listener is
//! bound and the journal open.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config_load::reload_request;
use super::error::RunError;
use super::kafka_sink::kafka_message_max;
use super::serve::serve;
use super::stop_losses::say_last_stop_losses;
use super::{Context, ReloadOutcome, fd_limit, opening, opening_answers, retention};
use crate::config::{Config, ConfigError};
use crate::ingest::{Hub, Ingest, IngestOptions};
use crate::journal::{Journal, JournalError};
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::sinks;
use crate::status::StatusBoard;

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
    pub(super) async fn start_as(
        config: Config,
        config_path: PathBuf,
        starting: Option<Arc<opening::Starting>>,
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
        let http_slots =
            crate::http_serve::ConnectionSlots::new(*config.server.max_connections.get_ref());
        let opening_answers = opening_answers::serve_while_opening(
            listener.clone(),
            config.server.http_timeouts,
            http_slots.clone(),
            metrics.clone(),
        );
        let options = config.journal_options();
        let opening = opening::JournalOpening::begin();
        let started = Instant::now();
        // Off the runtime's workers: a check of the whole file takes minutes
        // on a slow disk, and the signal handlers must run meanwhile.
        // `journal_opened` on the same thread, at once: a SIGTERM between the
        // open and this task's wake-up exited with the file open, and the
        // next start checked the whole of it again (lifecycle review,
        // 2026-12-06).
        let journal = tokio::task::spawn_blocking(move || {
            let journal = Journal::open(options)?;
            if let Some(starting) = starting {
                starting.journal_opened();
            }
            Ok::<_, JournalError>(journal)
        })
        .await
        .map_err(RunError::JournalOpenTask)??;
        drop(opening);
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
            tracing::info!(path = %journal.path().display(), "{}", started_empty(journal.path()));
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
        let unsaid_before_start = retention::say_losses_before_start(&journal);
        let sse_resume = Arc::new(restored_resume_ids(&journal, &config));
        metrics.observe_journal_at_start(&journal);
        say_last_stop_losses(&journal, &metrics);
        let hub = Hub::new(journal.last_seq(), crate::ingest::SHARED_RING);
        let ingest = Ingest::start(
            journal.clone(),
            hub.clone(),
            metrics.clone(),
            IngestOptions::default(),
        )
        .map_err(RunError::IngestThread)?;
        let (reloads, reload_rx) = tokio::sync::mpsc::channel(4);
        let kafka_message_max = AtomicUsize::new(kafka_message_max(&config));
        let reply_budget = crate::reply_budget::ReplyBudget::new(config.server.reply_memory);
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
            unread_dates: Default::default(),
            body_budget: crate::sources::webhook::budget::BodyBudget::new(),
            reply_budget,
            dropped_at_shutdown: AtomicU64::new(0),
            late_answers: Default::default(),
            http_slots,
            started: Instant::now(),
            reloads,
        });
        ctx.status.dropped_undelivered(unsaid_before_start);
        opening_answers.close().await;
        let task = tokio::spawn(serve(ctx.clone(), listener, ingest, reload_rx));
        // The count the runtime has, not the one asked for: an operator
        // sees that `TOKIO_WORKER_THREADS` took (or how many CPUs it found).
        let worker_threads = tokio::runtime::Handle::current().metrics().num_workers();
        tracing::info!(%addr, worker_threads, "listening");
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
            // The task that runs reloads and the drain: nothing drains now.
            // Sources are told to stop, and systemd that the relay is
            // stopping, before the process ends for systemd to restart it.
            Err(e) => {
                super::signals::tell_stopping(&self.ctx);
                Err(RunError::ServeTask(e))
            }
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

/// The SPRecord resume ids the journal kept from the last run, for the
/// accounts `config` still has.
fn restored_resume_ids(
    journal: &Journal,
    config: &Config,
) -> crate::sources::sprecord::resume::ResumeIds {
    use crate::sources::sprecord::resume::{ResumeIds, configured};
    ResumeIds::at_start(journal.sse_resume_ids(), &configured(config))
}

/// The line of a start that found no journal file. A first start reads
/// it too, so it stays INFO: nothing in the process tells a fresh install
/// from a restart after `journal.path` changed, and the text says both.
fn started_empty(path: &std::path::Path) -> String {
    format!(
        "no journal file was at the path: started an empty journal at {}; if this relay ran \
         before with another journal.path, stop it and move that path's journal.redb here \
         (keeping its owner: `mv`), else what the old journal holds (events a sink has not \
         had, the dedup log, the SPRecord resume ids) is not sent",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restart after `journal.path` changed starts here too, and the
    /// line read as a fresh install's.
    #[test]
    fn a_start_with_no_journal_file_names_it_and_says_to_move_an_old_one() {
        let line = started_empty(std::path::Path::new("/srv/callrelay/journal.redb"));
        for said in [
            "started an empty journal at /srv/callrelay/journal.redb",
            "if this relay ran before with another journal.path",
            "stop it and move that path's journal.redb here",
            "keeping its owner",
            "not sent",
        ] {
            assert!(line.contains(said), "{said:?} in {line}");
        }
    }
}
