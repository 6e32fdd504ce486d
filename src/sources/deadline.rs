//! A drain's deadline as a token: cancelled a set time after a stop (or
//! after now), for the futures that race it.
//!
//! Guarantees: the timer behind the token lives no longer than the
//! [`Deadline`] that holds it (dropped, also by a panic's unwinding, it is
//! aborted), so a session or stream that ends early leaves no task behind.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// `token`, cancelled `delay` after its start; the timer stops with this.
pub struct Deadline {
    pub token: CancellationToken,
    _timer: AbortOnDropHandle<()>,
}

impl Deadline {
    /// Cancels `token` `delay` after `start` is cancelled, or after now
    /// when there is no `start`.
    pub fn new(
        token: CancellationToken,
        start: Option<&CancellationToken>,
        delay: Duration,
    ) -> Deadline {
        let start = start.cloned();
        let cancelled = token.clone();
        let timer = tokio::spawn(async move {
            if let Some(start) = start {
                start.cancelled().await;
            }
            tokio::time::sleep(delay).await;
            cancelled.cancel();
        });
        Deadline {
            token,
            _timer: AbortOnDropHandle::new(timer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn cancelled_the_delay_after_its_start_and_not_once_dropped() {
        let stop = CancellationToken::new();
        let deadline = Deadline::new(
            CancellationToken::new(),
            Some(&stop),
            Duration::from_secs(3),
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!deadline.token.is_cancelled(), "not before its start");
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(2999)).await;
        assert!(!deadline.token.is_cancelled());
        tokio::time::sleep(Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        assert!(deadline.token.is_cancelled());

        let now = Deadline::new(CancellationToken::new(), None, Duration::from_secs(1));
        let token = now.token.clone();
        drop(now);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!token.is_cancelled(), "its timer went with it");
    }
}
