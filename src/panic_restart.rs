//! Restarting a long-lived task that panicked (a bug), so that one bad
//! message cannot silently leave an account without its connection, or Kafka
//! without its sink, until the process restarts.
//!
//! Guarantees: the run is started again after an exponential delay
//! (`first_wait` doubling up to `max_wait`, back to `first_wait` after a run
//! that lasted [`RESET_AFTER`]) until one run returns or `cancel` fires;
//! before each wait, `on_panic` is told how long it is, to log the restart
//! and show it where the task's state is shown (`/status`, metrics).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::event::Vendor;
use crate::status::UpstreamReporter;

/// A run that lasted this long before panicking resets the delay.
const RESET_AFTER: Duration = Duration::from_secs(60);

/// The shortest wait before a connection source is started again.
pub const SOURCE_MIN_WAIT: Duration = Duration::from_secs(1);

/// A connection source's restart waits: its reconnect backoff, at least
/// [`SOURCE_MIN_WAIT`]. A panic that comes again at once (on an event a
/// server replays after `Last-Event-ID`) otherwise reconnected and panicked
/// at the pace of a `backoff_min` of milliseconds, two log lines each time.
pub fn source_waits(backoff_min: Duration, backoff_max: Duration) -> (Duration, Duration) {
    (
        backoff_min.max(SOURCE_MIN_WAIT),
        backoff_max.max(SOURCE_MIN_WAIT),
    )
}

/// Awaits `run()` until one run returns, starting it again after each panic.
pub async fn restart_on_panic<F: Future<Output = ()>>(
    (first_wait, max_wait): (Duration, Duration),
    cancel: &CancellationToken,
    mut on_panic: impl FnMut(Duration),
    mut run: impl FnMut() -> F,
) {
    let mut delay = first_wait;
    loop {
        let started = Instant::now();
        // A run that panics is dropped here, on a runtime worker: what it
        // holds must not block in its drop (the Kafka forwarder's producer
        // hands its destroy to a thread of its own: `OwnProducer`).
        if AssertUnwindSafe(run()).catch_unwind().await.is_ok() {
            return;
        }
        if started.elapsed() >= RESET_AFTER {
            delay = first_wait;
        }
        on_panic(delay);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(max_wait.max(first_wait));
    }
}

/// The `on_panic` of a connection source: logged, and a reconnect (reason
/// `panic`) on the account's `/status` row, which stays in place meanwhile.
pub fn source_panicked<'a>(
    vendor: Vendor,
    account: &'a str,
    stream: usize,
    reporter: &'a UpstreamReporter,
) -> impl FnMut(Duration) + 'a {
    move |delay| {
        // The panic's message is left out: the panic hook logged it already.
        tracing::error!(vendor = vendor.as_str(), account = %account, stream, retry_in_ms = crate::logging::millis(delay),
            "a connection's task failed unexpectedly (panic); restarting it");
        reporter.reconnecting(
            "panic",
            Some("the connection's task failed unexpectedly (a bug); restarting it".into()),
            delay,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::metrics::Metrics;
    use crate::status::StatusBoard;

    #[tokio::test]
    async fn a_run_that_panics_is_restarted_with_backoff_and_counted() {
        let board = StatusBoard::new(Arc::new(Metrics::new()));
        let reporter = board.upstream(Vendor::Sprecord, "a", "0", Duration::from_secs(1));
        let ms = Duration::from_millis;
        let calls = AtomicUsize::new(0);
        let started = Instant::now();
        restart_on_panic(
            (ms(20), ms(1000)),
            &CancellationToken::new(),
            source_panicked(Vendor::Sprecord, "a", 0, &reporter),
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

    #[test]
    fn a_source_waits_at_least_a_second_before_it_starts_again() {
        let ms = Duration::from_millis;
        assert_eq!(source_waits(ms(10), ms(10)), (ms(1000), ms(1000)));
        assert_eq!(source_waits(ms(10), ms(300)), (ms(1000), ms(1000)));
        assert_eq!(source_waits(ms(2000), ms(60_000)), (ms(2000), ms(60_000)));
    }

    #[tokio::test]
    async fn a_cancel_during_the_wait_ends_it() {
        let cancel = CancellationToken::new();
        let calls = AtomicUsize::new(0);
        let waits = (Duration::from_secs(3600), Duration::from_secs(3600));
        restart_on_panic(
            waits,
            &cancel,
            |_| cancel.cancel(),
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { panic!("a bug") }
            },
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
