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
//! journal a little longer. Likewise the drain stops waiting for HTTP
//! requests still open 5 s into it (a client stalled mid-request, or a
//! reopen or slow commit of the journal, which the warning names): each runs
//! on until the runtime ends, answered 200 only once its event is journaled,
//! 503 once ingest has shut down, or cut off. The HTTP
//! server or the journal writer stopping on its own (a bug) starts the same
//! drain, and the relay then ends with an error for systemd to restart it. A reload
//! with a bad config keeps the old one running and counts
//! `callrelay_config_reloads_total{result="failed"}`; a good one restarts only
//! the sources whose config changed, and keeps settings that need a restart
//! ([`reload`]) at their running values, with a warning.
//!
//! This file holds the [`Context`] the components share; the rest is split
//! by concern: `relay` (the start, and the handle to a started relay),
//! `serve` (the loop until a stop, reloads applied, and the drain),
//! `daemon` (`callrelay run`: signals, READY, the watchdog), `config_load`
//! (reading the file; a reload's request), `error`, `restarting` (the
//! housekeeping tasks after a panic), `stop_losses`, and beside them
//! `opening` and `opening_answers` (while the journal opens), `signals`,
//! `retention`, `kafka_sink`, `fd_limit`, `stop_extension`,
//! `systemd_notify`, [`reload`] and [`watchdog`].

mod config_load;
mod daemon;
mod error;
mod fd_limit;
mod kafka_sink;
mod opening;
mod opening_answers;
mod relay;
pub mod reload;
mod restarting;
mod retention;
mod serve;
mod signals;
mod stop_extension;
mod stop_losses;
mod systemd_notify;
#[cfg(test)]
pub(crate) mod tests_support;
pub mod watchdog;

pub use daemon::run_daemon;
pub use error::{RunError, ServeError};
pub use relay::Relay;
pub use reload::ReloadOutcome;

// What a SIGHUP asks for (`signals`).
use config_load::reload_request;
pub(crate) use retention::not_noted;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::ingest::{Hub, IngestHandle};
use crate::journal::{ActiveSink, Journal};
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::sinks;
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
    /// Which events whose vendor date could not be read are said (per
    /// vendor and field), by every source.
    pub unread_dates: crate::sources::unread_dates::UnreadDates,
    /// The memory webhook bodies being received hold together.
    pub body_budget: Arc<crate::sources::webhook::budget::BodyBudget>,
    /// The memory rendered `/metrics` and `/status` replies hold until
    /// their clients take them.
    pub reply_budget: Arc<crate::reply_budget::ReplyBudget>,
    /// Voip24h events the shutdown in progress gave up: kept in the
    /// journal once the sources drained, for the next start's metric (see
    /// `journal::stop_losses`).
    pub dropped_at_shutdown: AtomicU64,
    /// Tasks still taking the answer of a commit a stopping source left
    /// (Voip24h, past its drain): waited for once ingest has stopped, so
    /// that what they count as lost is kept for the next start too.
    pub late_answers: tokio_util::task::TaskTracker,
    /// The HTTP connections open, under `server.max_connections` (the
    /// opening answers' count towards it too); a reload sets its maximum.
    pub http_slots: crate::http_serve::ConnectionSlots,
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

/// A reload's config for the serve loop to apply, and where it says what
/// the reload changed.
type ReloadRequest = (Config, tokio::sync::oneshot::Sender<ReloadOutcome>);

#[cfg(test)]
mod tests {
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
