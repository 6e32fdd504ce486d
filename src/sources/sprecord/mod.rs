//! The SPRecord SSE source: up to three `/sys/events` streams per account,
//! each supervised on its own, all feeding one deduplicated event stream.
//!
//! Guarantees:
//! - `streams` (1..3) streams run concurrently; an event that reaches any of
//!   them is journaled, and one that reaches several is journaled once (the
//!   SPRecord parser gives it the same identity whatever the stream or transport);
//! - never more than three connections per account are open at once, counting
//!   one that is still closing (see [`limiter`] and [`connection`]);
//! - each stream has its own row in `/status` (stream "0".."2") and its own
//!   `callrelay_upstream_connected{stream}` gauge;
//! - a stream whose task panics (a bug) is restarted after a backoff, counted
//!   as a reconnect with reason `panic` and shown on its `/status` row; the
//!   panic's message (which may quote vendor data) is not logged here;
//! - [`run`] returns only after every stream's connection is closed.
//!
//! Layout: [`config`] (the `[[sprecord]]` table), [`connection`] (one HTTP
//! connection and its SSE framing), [`limiter`] (the per-account connection
//! budget), [`payload`] (what one event's data is), [`resume`] and [`resume_save`] (where the streams resume, kept
//! across reloads and restarts), [`sse`] (the SSE framing), [`stream`] (one
//! stream's reconnect loop and event handling).

pub mod config;
pub mod connection;
pub mod limiter;
pub mod payload;
pub mod resume;
pub mod resume_save;
pub mod sse;
pub mod stream;
pub mod warnings;

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::event::Vendor;
use crate::panic_restart::{restart_on_panic, source_panicked, source_waits};
use crate::sources::tls::TrustRoots;
use config::{MAX_STREAMS, SprecordConfig};
use connection::{Endpoint, EndpointError};
use limiter::ConnLimiter;
use resume::ResumeId;
use stream::StreamSupervisor;
use warnings::StreamWarnings;

/// Every `reason` of `callrelay_upstream_reconnects_total` an SPRecord
/// account can count (a stream that could not open, one that ended, an
/// unreadable CA file, a panic), exported at 0 from the start so the first
/// reconnect of each shows as an increase.
pub const RECONNECT_REASONS: &[&str] = &[
    "auth",
    "http_429",
    "http_5xx",
    "http_4xx",
    "http_3xx",
    "http_status",
    "content_type",
    "connect",
    "proxy",
    "timeout",
    "tls",
    "disconnect",
    "panic",
];

/// Holds the account's streams until `cancel`; returns once every stream is closed.
pub async fn run(config: SprecordConfig, ctx: Arc<Context>, cancel: CancellationToken) {
    let account = config.account.get_ref().clone();
    let Some(endpoint) = endpoint_or_wait(&config, &ctx, &cancel).await else {
        return;
    };
    let endpoint = Arc::new(endpoint);
    let limiter = ConnLimiter::new(usize::from(MAX_STREAMS));
    let streams = config.streams.get_ref().clamp(&1, &MAX_STREAMS);
    let mut tasks = JoinSet::new();
    let started_at = tokio::time::Instant::now();
    for index in 0..usize::from(*streams) {
        let reporter = ctx.status.upstream(
            Vendor::Sprecord,
            &account,
            &index.to_string(),
            config.timings().connect_grace,
        );
        reporter.set_proxy(config.proxy.as_ref());
        let supervisor = StreamSupervisor {
            index,
            account: account.clone(),
            endpoint: endpoint.clone(),
            limiter: limiter.clone(),
            timings: config.timings(),
            ctx: ctx.clone(),
            reporter: Arc::new(reporter),
            resume: ResumeId::new(&ctx, &account, config.url.get_ref()),
            warnings: StreamWarnings::default(),
            started_at,
        };
        tasks.spawn(restarting(supervisor, cancel.clone()));
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            // Not `{e}`: a panic's message may quote the event being handled.
            let why = if e.is_panic() {
                "panicked"
            } else {
                "was cancelled"
            };
            tracing::error!(vendor = "sprecord", account = %account, "an SSE stream supervisor {why}");
        }
    }
}

/// Runs one stream until `cancel`, restarting it when it panics (see [`restart_on_panic`]).
async fn restarting(supervisor: StreamSupervisor, cancel: CancellationToken) {
    let s = &supervisor;
    let waits = source_waits(s.timings.backoff_min, s.timings.backoff_max);
    let on_panic = source_panicked(Vendor::Sprecord, &s.account, s.index, &s.reporter);
    restart_on_panic(waits, &cancel, on_panic, || s.run(cancel.clone())).await;
}

/// Builds the streams' endpoint. Validation makes this succeed, short of a
/// `tls.ca_file` removed or spoiled since: then stream "0"'s `/status` row
/// and the log say why, and it is tried again every `backoff_max`. `None`
/// once cancelled.
async fn endpoint_or_wait(
    config: &SprecordConfig,
    ctx: &Context,
    cancel: &CancellationToken,
) -> Option<Endpoint> {
    let account = config.account.get_ref();
    let timings = config.timings();
    // Dropped (its row removed) before the streams put up their own rows.
    let mut reporter = None;
    loop {
        // A stop does not wait for a read of a hung file system (the CA file).
        let roots = tokio::select! {
            biased;
            _ = cancel.cancelled() => return None,
            roots = TrustRoots::load_off_the_workers(&config.tls) => roots,
        };
        let made = roots
            .map_err(EndpointError::from)
            .and_then(|roots| Endpoint::with_roots(config, &roots));
        let error = match made {
            Ok(endpoint) => return Some(endpoint),
            Err(e) => e,
        };
        let retry = timings.backoff_max;
        tracing::error!(vendor = "sprecord", account = %account, retry_in_ms = crate::logging::millis(retry), "cannot set up the SSE streams: {error}");
        reporter
            .get_or_insert_with(|| {
                ctx.status
                    .upstream(Vendor::Sprecord, account, "0", timings.connect_grace)
            })
            .reconnecting("tls", Some(error.to_string()), retry);
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(retry) => {}
        }
    }
}
