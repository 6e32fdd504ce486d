//! The journal writer's view of failing commits: whether the journal takes
//! events, why not, when to try opening it again, and an error log that says
//! a failure once and then how many commits failed since, instead of a line
//! per commit (726 lines a minute under webhook load, most of them redb's
//! "Previous I/O error occurred", which hides the cause).
//!
//! Guarantees: the cause shown is the first error since the last good commit
//! (redb refuses every later write with a message that only repeats that one
//! failed); reopening is tried at once after the first failure (a commit
//! whose last sync failed may have landed), then after 1, 2, 4, 8 and at
//! most 16 s while commits keep failing (each reopen of a journal that was
//! not closed cleanly reads the whole file), and at once again after the
//! first failure that follows 30 s of good commits; a disk where some
//! commits fit and others do not keeps one schedule and one throttled log.
//! A reopen asked for from outside a commit that fails counts as a failure
//! too, and its line says a reopen failed, not a commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::log_throttle::LogThrottle;

/// The wait after the first reopen of a failure, doubled after each.
const RECOVER_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two reopens while commits keep failing.
const RECOVER_MAX: Duration = Duration::from_secs(16);
/// At most one error line per this while commits keep failing.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Shared with every submitter, `/readyz` and `/status`.
#[derive(Debug)]
pub struct CommitHealth {
    writable: AtomicBool,
    cause: Mutex<Option<String>>,
}

impl Default for CommitHealth {
    fn default() -> CommitHealth {
        CommitHealth {
            writable: AtomicBool::new(true),
            cause: Mutex::new(None),
        }
    }
}

impl CommitHealth {
    /// False after a failed commit, true again after the next good one.
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    /// Why commits fail: the first error since the last good commit.
    pub fn cause(&self) -> Option<String> {
        self.cause
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn succeeded(&self) {
        // Every good commit comes here: the lock only after a failure.
        if !self.writable.swap(true, Ordering::AcqRel) {
            *self.cause.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Records `error`; returns the cause (the first error of this failure).
    fn failed(&self, error: &str) -> String {
        self.writable.store(false, Ordering::Release);
        self.cause
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| error.to_owned())
            .clone()
    }
}

/// The writer thread's own bookkeeping of a failure: the reopen schedule
/// and the error log's throttle. A failure ends [`QUIET`] after the first
/// good commit that followed it, as long as no commit failed since (seen at
/// the next commit, good or failed): a nearly full disk, where some commits
/// fit and others do not, is one failure, not one per flap (each would
/// reopen the file and log).
pub struct FailureTracker {
    failed_commits: u64,
    next_recover: Option<Instant>,
    recover_wait: Duration,
    /// The first good commit since the last failed one.
    good_since: Option<Instant>,
    log: LogThrottle<Line>,
    /// A failure line was logged and no success line since: the next good
    /// commit is said whatever the throttle, so the log never ends on a
    /// failure while commits succeed.
    failure_said: bool,
}

/// The two lines a failure logs, each at most once per [`LOG_EVERY`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Line {
    Failed,
    SucceedAgain,
}

/// Good commits for this long end a failure.
const QUIET: Duration = Duration::from_secs(30);

impl Default for FailureTracker {
    fn default() -> FailureTracker {
        FailureTracker {
            failed_commits: 0,
            next_recover: None,
            recover_wait: RECOVER_FIRST,
            good_since: None,
            log: LogThrottle::new(LOG_EVERY),
            failure_said: false,
        }
    }
}

impl FailureTracker {
    /// A commit succeeded: the journal takes events again. After [`QUIET`]
    /// of good commits the next failure starts afresh: logged and reopened
    /// at once.
    pub fn succeeded(&mut self, health: &CommitHealth, now: Instant) {
        health.succeeded();
        if self.failed_commits == 0 {
            return;
        }
        let since = *self.good_since.get_or_insert(now);
        let said = since == now
            && (self.log.admit(Line::SucceedAgain, now).is_some() || self.failure_said);
        if said {
            self.failure_said = false;
            tracing::info!(
                failed_commits = self.failed_commits,
                "journal commits succeed again"
            );
        }
        self.over_if_quiet(now);
    }

    /// Ends the failure once [`QUIET`] has passed since the first good
    /// commit after it: the next one is reopened at once and on the short
    /// waits again. The log's throttle is kept.
    fn over_if_quiet(&mut self, now: Instant) {
        let quiet = self
            .good_since
            .is_some_and(|since| now.saturating_duration_since(since) >= QUIET);
        if !quiet {
            return;
        }
        let log = std::mem::replace(&mut self.log, LogThrottle::new(LOG_EVERY));
        *self = FailureTracker {
            log,
            ..FailureTracker::default()
        };
    }

    /// The journal was opened again without a commit (asked from outside
    /// the writer, on a quiet relay): it takes events again as far as can
    /// be told before one; the next commit says more.
    pub fn reopened(&mut self, health: &CommitHealth) {
        health.succeeded();
    }

    /// A commit of `events` events failed with `error`.
    pub fn failed(&mut self, health: &CommitHealth, error: &str, events: usize, now: Instant) {
        if let Some((cause, held_back)) = self.count_failure(health, error, now) {
            tracing::error!(
                error,
                cause = %cause,
                events,
                failed_commits = self.failed_commits,
                held_back,
                "journal commit failed; the batch is refused (webhooks are answered 503 until a commit succeeds)"
            );
        }
    }

    /// A reopen asked for outside a commit (a retention pass's failed
    /// write) failed: it counts as a failing commit, but no commit was
    /// tried and no batch refused, which the commit's line would say.
    pub fn reopen_failed(&mut self, health: &CommitHealth, error: &str, now: Instant) {
        if let Some((cause, held_back)) = self.count_failure(health, error, now) {
            // `failures`, not `failed_commits`: no commit was tried.
            tracing::error!(
                error,
                cause = %cause,
                failures = self.failed_commits,
                held_back,
                "the journal could not be opened again after a failed write; new events are refused (webhooks are answered 503 until a commit succeeds)"
            );
        }
    }

    /// Counts a failure; the cause and the throttle's count held back when
    /// it is to be said.
    fn count_failure(
        &mut self,
        health: &CommitHealth,
        error: &str,
        now: Instant,
    ) -> Option<(String, u64)> {
        // A quiet relay has no second good commit to end the failure with:
        // the time since the first one does, or the next failure hours
        // later went on at the 16 s reopen wait of the last.
        self.over_if_quiet(now);
        let cause = health.failed(error);
        self.failed_commits += 1;
        self.good_since = None;
        if self.next_recover.is_none() {
            self.next_recover = Some(now);
        }
        let held_back = self.log.admit(Line::Failed, now)?;
        self.failure_said = true;
        Some((cause, held_back))
    }

    /// Whether to try reopening the journal now; if so, the next try is
    /// scheduled after the current wait, which then doubles up to [`RECOVER_MAX`].
    pub fn recover_due(&mut self, now: Instant) -> bool {
        match self.next_recover {
            Some(at) if now >= at => {
                self.next_recover = Some(now + self.recover_wait);
                self.recover_wait = (self.recover_wait * 2).min(RECOVER_MAX);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure that reached the 16 s reopen wait, one good commit, hours
    /// with no commit, then a failure: reopened at once and after 1 s again,
    /// as a new failure. It kept the old schedule: 16 s of 503s more than
    /// needed once space was freed (guarantees review, 2026-12-06).
    #[test]
    fn a_failure_after_a_quiet_good_spell_starts_on_the_short_waits() {
        let health = CommitHealth::default();
        let mut tracker = FailureTracker::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        tracker.failed(&health, "disk full", 1, at(0));
        let mut tries = 0;
        for s in 0..100 {
            if tracker.recover_due(at(s)) {
                tries += 1;
            }
        }
        assert!(tries >= 5, "the waits grew to 16 s: {tries}");
        tracker.succeeded(&health, at(100));
        let hours_later = at(100 + 7_200);
        tracker.failed(&health, "disk full", 1, hours_later);
        assert!(tracker.recover_due(hours_later), "reopened at once");
        assert!(
            tracker.recover_due(hours_later + RECOVER_FIRST),
            "then after 1 s, not 16"
        );
    }

    /// Failed at 0 s (said), good at 20 s (said), failed at 31 s (said),
    /// good at 40 s: the success line's throttle held it back, and the
    /// log's last word on the journal was a failure while commits worked.
    #[test]
    fn a_success_after_a_failure_that_was_said_is_always_said() {
        let health = CommitHealth::default();
        let mut tracker = FailureTracker::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let text = crate::logging::tests_support::logged_json(|| {
            tracker.failed(&health, "disk full", 1, at(0));
            tracker.succeeded(&health, at(20));
            tracker.failed(&health, "disk full", 1, at(31));
            tracker.succeeded(&health, at(40));
        });
        let lines: Vec<&str> = text
            .lines()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                let m = v["message"].as_str()?;
                Some(if m.starts_with("journal commits succeed again") {
                    "ok"
                } else {
                    "failed"
                })
            })
            .collect();
        assert_eq!(lines, ["failed", "ok", "failed", "ok"], "{text}");
    }

    #[test]
    fn the_cause_is_the_first_error_until_a_commit_succeeds() {
        let health = CommitHealth::default();
        let mut tracker = FailureTracker::default();
        let now = Instant::now();
        assert!(health.is_writable() && health.cause().is_none());
        tracker.failed(&health, "I/O error: File too large (os error 27)", 3, now);
        tracker.failed(&health, "Previous I/O error occurred.", 3, now);
        assert!(!health.is_writable());
        assert_eq!(
            health.cause().as_deref(),
            Some("I/O error: File too large (os error 27)")
        );
        tracker.succeeded(&health, now);
        assert!(health.is_writable() && health.cause().is_none());
        tracker.failed(&health, "No space left on device", 1, now);
        assert_eq!(health.cause().as_deref(), Some("No space left on device"));
    }

    #[test]
    fn reopening_backs_off_to_16_s_and_starts_over_after_a_good_commit() {
        let health = CommitHealth::default();
        let mut tracker = FailureTracker::default();
        let start = Instant::now();
        let mut now = start;
        assert!(!tracker.recover_due(now), "nothing failed");
        tracker.failed(&health, "disk full", 1, now);
        let mut waits = Vec::new();
        assert!(tracker.recover_due(now), "at once after the first failure");
        let mut last = start;
        // Commits keep failing, every 100 ms, for two minutes.
        while now < start + Duration::from_secs(120) {
            now += Duration::from_millis(100);
            tracker.failed(&health, "Previous I/O error occurred.", 1, now);
            if tracker.recover_due(now) {
                waits.push((now - last).as_secs_f64().round() as u64);
                last = now;
            }
        }
        assert_eq!(waits[..6], [1, 2, 4, 8, 16, 16], "{waits:?}");
        // 30 s of good commits end the failure: the next one starts afresh.
        tracker.succeeded(&health, now);
        now += Duration::from_secs(30);
        tracker.succeeded(&health, now);
        tracker.failed(&health, "disk full", 1, now);
        assert!(tracker.recover_due(now));
        assert!(!tracker.recover_due(now + Duration::from_millis(900)));
        assert!(tracker.recover_due(now + Duration::from_secs(1)));
    }

    #[test]
    fn a_disk_where_some_commits_fit_keeps_one_backed_off_schedule() {
        let health = CommitHealth::default();
        let mut tracker = FailureTracker::default();
        let start = Instant::now();
        let mut reopens = 0;
        // A good and a failed commit every 50 ms for a minute.
        for i in 0..1200 {
            let now = start + Duration::from_millis(50 * i);
            if i % 2 == 0 {
                tracker.failed(&health, "No space left on device", 1, now);
                if tracker.recover_due(now) {
                    reopens += 1;
                }
            } else {
                tracker.succeeded(&health, now);
            }
        }
        // At once, then after 1, 2, 4, 8, 16, 16 and 16 s: not 20 a second.
        assert_eq!(reopens, 7);
    }
}
