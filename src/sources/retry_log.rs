//! Which failed attempts of one upstream connection get a WARN line.
//!
//! Why: an upstream that stays down was logged once per attempt per stream,
//! every `backoff_max` (60 s by default). The scale audit's 150 streams with
//! every server down wrote about 5 WARN lines a second for as long as the
//! outage lasted, which buries everything else in the journal. Every attempt
//! is still counted in `callrelay_upstream_reconnects_total` and shown in
//! `/status`; the log says what changed.
//!
//! Guarantees: the first failure after the connection worked is logged, and
//! so is any failure whose reason differs from the last one logged; the same
//! reason again is logged at most once per [`REPEAT_EVERY`], with how many
//! attempts were held back since (those go to debug).

use std::time::{Duration, Instant};

/// How often an upstream that keeps failing the same way is logged again.
pub const REPEAT_EVERY: Duration = Duration::from_secs(5 * 60);

/// The log state of one connection's run of failed attempts.
#[derive(Debug)]
pub struct RetryLog {
    every: Duration,
    /// The reason last logged at WARN and when; `None` when the connection
    /// has worked since.
    last: Option<(&'static str, Instant)>,
    held_back: u64,
}

impl Default for RetryLog {
    fn default() -> Self {
        RetryLog::every(REPEAT_EVERY)
    }
}

impl RetryLog {
    pub fn every(every: Duration) -> RetryLog {
        RetryLog {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// An attempt failed for `reason` at `now`: `Some(held_back)` when it is
    /// to be logged at WARN (with the attempts held back since the last
    /// line), `None` when it is held back.
    pub fn failed(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        if self.would_log(reason, now) {
            self.last = Some((reason, now));
            Some(std::mem::take(&mut self.held_back))
        } else {
            self.held_back += 1;
            None
        }
    }

    /// Whether a failure for `reason` at `now` would be logged at WARN.
    pub fn would_log(&self, reason: &'static str, now: Instant) -> bool {
        match self.last {
            None => true,
            Some((last_reason, at)) => {
                last_reason != reason || now.saturating_duration_since(at) >= self.every
            }
        }
    }

    /// The connection worked: its next failure is news again.
    pub fn worked(&mut self) {
        self.last = None;
        self.held_back = 0;
    }
}

/// Logs a failed attempt: at WARN with `held_back` when `$log` (a
/// [`RetryLog`]) admits it for `$reason`, else at debug; the rest are the
/// `tracing` fields and message.
macro_rules! attempt_failed {
    ($log:expr, $reason:expr, $($line:tt)+) => {
        match $log.failed($reason, std::time::Instant::now()) {
            Some(held_back) => tracing::warn!(held_back, $($line)+),
            None => tracing::debug!($($line)+),
        }
    };
}
pub(crate) use attempt_failed;

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(300);

    #[test]
    fn the_first_failure_is_logged_and_the_same_again_is_held_back() {
        let mut log = RetryLog::every(EVERY);
        let t0 = Instant::now();
        assert_eq!(log.failed("connect", t0), Some(0));
        assert_eq!(log.failed("connect", t0 + Duration::from_secs(60)), None);
        assert_eq!(log.failed("connect", t0 + Duration::from_secs(120)), None);
    }

    #[test]
    fn the_same_reason_is_logged_again_after_the_interval_with_what_was_held_back() {
        let mut log = RetryLog::every(EVERY);
        let t0 = Instant::now();
        log.failed("connect", t0);
        for minute in 1..5 {
            assert_eq!(
                log.failed("connect", t0 + Duration::from_secs(60 * minute)),
                None
            );
        }
        assert_eq!(log.failed("connect", t0 + EVERY), Some(4));
        // The count starts over after a line.
        assert_eq!(
            log.failed("connect", t0 + EVERY + Duration::from_secs(60)),
            None
        );
        assert_eq!(log.failed("connect", t0 + EVERY * 2), Some(1));
    }

    #[test]
    fn a_new_reason_is_logged_at_once() {
        let mut log = RetryLog::every(EVERY);
        let t0 = Instant::now();
        log.failed("connect", t0);
        assert_eq!(log.failed("connect", t0 + Duration::from_secs(1)), None);
        assert_eq!(log.failed("auth", t0 + Duration::from_secs(2)), Some(1));
        assert_eq!(log.failed("connect", t0 + Duration::from_secs(3)), Some(0));
    }

    #[test]
    fn a_connection_that_worked_makes_the_next_failure_news() {
        let mut log = RetryLog::every(EVERY);
        let t0 = Instant::now();
        log.failed("disconnect", t0);
        assert_eq!(log.failed("disconnect", t0 + Duration::from_secs(1)), None);
        log.worked();
        assert_eq!(
            log.failed("disconnect", t0 + Duration::from_secs(2)),
            Some(0)
        );
    }
}
