//! Restarting a connection source's task that panicked, so that one bad
//! message or bug cannot silently leave an account without its connection.
//!
//! Guarantees: the run is started again after an exponential delay
//! (`first_wait` doubling up to `max_wait`, back to `first_wait` after a run
//! that lasted [`RESET_AFTER`]) until one run returns or `cancel` fires; each
//! restart is logged and counted as a reconnect (reason `panic`) on the
//! account's `/status` row, which stays in place meanwhile.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::event::Vendor;
use crate::status::UpstreamReporter;

/// A run that lasted this long before panicking resets the delay.
const RESET_AFTER: Duration = Duration::from_secs(60);

/// Which connection a restarted task holds, for the log.
pub struct Task<'a> {
    pub vendor: Vendor,
    pub account: &'a str,
    pub stream: usize,
}

/// Awaits `run()` until one run returns, starting it again after each panic.
pub async fn restart_on_panic<F: Future<Output = ()>>(
    task: Task<'_>,
    reporter: &UpstreamReporter,
    (first_wait, max_wait): (Duration, Duration),
    cancel: &CancellationToken,
    mut run: impl FnMut() -> F,
) {
    let mut delay = first_wait;
    loop {
        let started = Instant::now();
        if AssertUnwindSafe(run()).catch_unwind().await.is_ok() {
            return;
        }
        if started.elapsed() >= RESET_AFTER {
            delay = first_wait;
        }
        // The panic's message is left out on purpose: it may quote vendor data.
        tracing::error!(vendor = task.vendor.as_str(), account = %task.account, stream = task.stream, retry_in = ?delay,
            "a connection's task failed unexpectedly (panic); restarting it");
        reporter.reconnecting(
            "panic",
            Some("the connection's task failed unexpectedly (a bug); restarting it".into()),
            delay,
        );
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(max_wait.max(first_wait));
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
        let task = Task {
            vendor: Vendor::Sprecord,
            account: "a",
            stream: 0,
        };
        restart_on_panic(
            task,
            &reporter,
            (ms(20), ms(1000)),
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
