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
//! budget), [`sse`] (the SSE framing), [`stream`] (one stream's reconnect
//! loop and event handling).

pub mod config;
pub mod connection;
pub mod limiter;
pub mod resume;
pub mod sse;
pub mod stream;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::event::Vendor;
use crate::status::UpstreamReporter;
use config::{MAX_STREAMS, SprecordConfig, Timings};
use connection::Endpoint;
use limiter::ConnLimiter;
use resume::ResumeId;
use stream::StreamSupervisor;

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
            resume: ResumeId::new(&ctx, &account, config.url.get_ref(), index),
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

/// A run that lasted this long before panicking resets the panic backoff.
const PANIC_RESET_AFTER: Duration = Duration::from_secs(60);

/// Runs one stream until `cancel`, restarting it when it panics (see [`restart_on_panic`]).
async fn restarting(supervisor: StreamSupervisor, cancel: CancellationToken) {
    let s = &supervisor;
    restart_on_panic(&s.account, s.index, &s.reporter, s.timings, &cancel, || {
        s.run(cancel.clone())
    })
    .await;
}

/// Awaits `run()` until one run returns; a run that panics is started again
/// after an exponential delay (`backoff_min` doubling up to `backoff_max`),
/// so one bad message or bug cannot silently leave the account without that
/// stream. Each restart is a reconnect (reason `panic`) on `reporter`'s row.
async fn restart_on_panic<F: Future<Output = ()>>(
    account: &str,
    index: usize,
    reporter: &UpstreamReporter,
    timings: Timings,
    cancel: &CancellationToken,
    mut run: impl FnMut() -> F,
) {
    let mut delay = timings.backoff_min;
    loop {
        let started = Instant::now();
        if AssertUnwindSafe(run()).catch_unwind().await.is_ok() {
            return;
        }
        if started.elapsed() >= PANIC_RESET_AFTER {
            delay = timings.backoff_min;
        }
        // The panic's message is left out on purpose: it may quote vendor data.
        tracing::error!(vendor = "sprecord", account = %account, stream = index, retry_in = ?delay,
            "an SSE stream failed unexpectedly (panic); restarting it");
        reporter.reconnecting(
            "panic",
            Some("the stream failed unexpectedly (a bug); restarting it".into()),
            delay,
        );
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(timings.backoff_max);
    }
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
        let error = match Endpoint::new(config) {
            Ok(endpoint) => return Some(endpoint),
            Err(e) => e,
        };
        let retry = timings.backoff_max;
        tracing::error!(vendor = "sprecord", account = %account, retry_in = ?retry, "cannot set up the SSE streams: {error}");
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::metrics::Metrics;
    use crate::status::StatusBoard;

    #[tokio::test]
    async fn a_stream_run_that_panics_is_restarted_with_backoff_and_counted() {
        let board = StatusBoard::new(Arc::new(Metrics::new()));
        let reporter = board.upstream(Vendor::Sprecord, "a", "0", Duration::from_secs(1));
        let ms = Duration::from_millis;
        let timings = Timings {
            read_timeout: ms(1000),
            connect_timeout: ms(1000),
            backoff_min: ms(20),
            backoff_max: ms(1000),
            busy_backoff: ms(1000),
            auth_backoff: ms(1000),
            stagger: ms(0),
            connect_grace: ms(1000),
        };
        let calls = AtomicUsize::new(0);
        let started = Instant::now();
        restart_on_panic(
            "a",
            0,
            &reporter,
            timings,
            &CancellationToken::new(),
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    assert!(n >= 2, "run {n} fails");
                }
            },
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // 20 ms, then 40 ms.
        assert!(started.elapsed() >= ms(60), "{:?}", started.elapsed());
        assert_eq!(board.upstreams()[0].reconnects, 2);
        let panics = board
            .metrics()
            .upstream_reconnects
            .with_label_values(&["sprecord", "a", "panic"])
            .get();
        assert_eq!(panics, 2);
    }
}
