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
//!
//! Whether commits fail because the journal's disk is full ([`FailureKind`])
//! is kept apart from the cause's text: the watchdog does not restart a
//! relay for a full disk, and redb's later refusals ("Previous I/O error
//! occurred") only repeat the kind of the failure that came first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::journal::JournalError;
use crate::log_throttle::LogThrottle;

/// What a failed journal write says of its cause, as far as a restart
/// could help: it frees no disk space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// No room: the filesystem or the quota is full, or the file is at the
    /// filesystem's largest size (EFBIG; a write past `RLIMIT_FSIZE` gets
    /// SIGXFSZ, which kills the relay, not an error).
    Full,
    /// Any other error of the access that failed: EIO, a read-only
    /// filesystem, a damaged file; or a reopen that readers of this relay
    /// held up past its wait.
    Fault,
    /// Says nothing of its own: redb's refusal after an earlier failed
    /// access (`PreviousIo`), or the journal closed after a reopen that
    /// failed.
    Repeat,
}

impl FailureKind {
    /// The kind of `error`, from the `std::io::Error` in its chain, if any:
    /// its `ErrorKind`, not its text.
    pub fn of(error: &JournalError) -> FailureKind {
        match error {
            JournalError::Storage(redb::Error::PreviousIo) | JournalError::Closed => {
                return FailureKind::Repeat;
            }
            // A reader of this relay still holds the old database: not the
            // disk's error again. As a repeat it could keep a full disk's
            // flag for good, every reopen failing so after space was freed,
            // and the watchdog's restart, which ends the readers, never came.
            JournalError::HeldByReaders { .. } => return FailureKind::Fault,
            _ => {}
        }
        let mut link: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = link {
            if io_error(e).is_some_and(|io| is_no_room(io.kind())) {
                return FailureKind::Full;
            }
            link = e.source();
        }
        FailureKind::Fault
    }
}

/// The `std::io::Error` that `e` is or holds: redb's error does not give
/// it as its `source()`.
fn io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return Some(io);
    }
    match e.downcast_ref::<redb::Error>()? {
        redb::Error::Io(io) => Some(io),
        redb::Error::Backend(inner) => inner.downcast_ref::<std::io::Error>(),
        _ => None,
    }
}

/// ENOSPC, EDQUOT and EFBIG: no room for the write, which a restart does
/// not make.
fn is_no_room(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    matches!(kind, StorageFull | QuotaExceeded | FileTooLarge)
}

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
    /// The last failure that said its kind was [`FailureKind::Full`].
    full: AtomicBool,
}

impl Default for CommitHealth {
    fn default() -> CommitHealth {
        CommitHealth {
            writable: AtomicBool::new(true),
            cause: Mutex::new(None),
            full: AtomicBool::new(false),
        }
    }
}

impl CommitHealth {
    /// False after a failed commit, true again after the next good one.
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    /// Whether commits fail because the journal's disk is full: the last
    /// failure since the last good commit that said its kind said so.
    pub fn is_full(&self) -> bool {
        !self.is_writable() && self.full.load(Ordering::Acquire)
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
            self.full.store(false, Ordering::Release);
            *self.cause.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Keeps what a failure of `kind` says of the disk. The latest kind
    /// counts, not the first: a full disk that then fails with EIO is a
    /// fault a restart may help.
    fn note(&self, kind: FailureKind) {
        match kind {
            FailureKind::Full => self.full.store(true, Ordering::Release),
            FailureKind::Fault => self.full.store(false, Ordering::Release),
            FailureKind::Repeat => {}
        }
    }

    /// Records `error`, of `kind`; returns the cause (the first error of
    /// this failure).
    fn failed(&self, error: &str, kind: FailureKind) -> String {
        // Before `writable`: whoever sees a refusal sees its kind with it.
        self.note(kind);
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

    /// A commit of `events` events failed with `error`, of `kind`.
    pub fn failed(
        &mut self,
        health: &CommitHealth,
        error: &str,
        kind: FailureKind,
        events: usize,
        now: Instant,
    ) {
        if let Some((cause, held_back)) = self.count_failure(health, error, kind, now) {
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
    pub fn reopen_failed(
        &mut self,
        health: &CommitHealth,
        error: &str,
        kind: FailureKind,
        now: Instant,
    ) {
        if let Some((cause, held_back)) = self.count_failure(health, error, kind, now) {
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

    /// The reopen that follows a failed commit failed too, of `kind`: not
    /// a failure more (the commit was counted), but what it says of the
    /// disk is kept, since the commits that follow fail with the journal
    /// closed, which says nothing.
    pub fn reopen_after_a_commit_failed(&self, health: &CommitHealth, kind: FailureKind) {
        health.note(kind);
    }

    /// Counts a failure; the cause and the throttle's count held back when
    /// it is to be said.
    fn count_failure(
        &mut self,
        health: &CommitHealth,
        error: &str,
        kind: FailureKind,
        now: Instant,
    ) -> Option<(String, u64)> {
        // A quiet relay has no second good commit to end the failure with:
        // the time since the first one does, or the next failure hours
        // later went on at the 16 s reopen wait of the last.
        self.over_if_quiet(now);
        let cause = health.failed(error, kind);
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

    fn os(errno: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(errno)
    }

    /// ENOSPC, EDQUOT and EFBIG (a file at the filesystem's largest size) are a full
    /// disk, found in the journal's and redb's errors alike; EIO and EROFS
    /// are faults; redb's refusal after a failed access and a closed
    /// journal only repeat an earlier failure.
    #[test]
    fn a_full_disk_is_told_apart_from_other_faults() {
        let (enospc, edquot, efbig, eio, erofs) = (28, 122, 27, 5, 30);
        for errno in [enospc, edquot, efbig] {
            let storage = JournalError::Storage(redb::Error::Io(os(errno)));
            assert_eq!(FailureKind::of(&storage), FailureKind::Full, "{storage}");
            let reopen = crate::journal::open_failed(
                "j".as_ref(),
                crate::journal::Opening::AfterIoError,
                redb::Error::Io(os(errno)),
            );
            assert_eq!(FailureKind::of(&reopen), FailureKind::Full, "{reopen}");
            let create = crate::journal::create_file_failed("j".as_ref(), os(errno));
            assert_eq!(FailureKind::of(&create), FailureKind::Full, "{create}");
            let backend = JournalError::Storage(redb::Error::Backend(Box::new(os(errno))));
            assert_eq!(FailureKind::of(&backend), FailureKind::Full, "{backend}");
        }
        for errno in [eio, erofs] {
            let storage = JournalError::Storage(redb::Error::Io(os(errno)));
            assert_eq!(FailureKind::of(&storage), FailureKind::Fault, "{storage}");
        }
        for fault in [
            JournalError::Corrupt { seq: 1 },
            JournalError::Storage(redb::Error::Corrupted("bad page".into())),
        ] {
            assert_eq!(FailureKind::of(&fault), FailureKind::Fault, "{fault}");
        }
        for repeat in [
            JournalError::Storage(redb::Error::PreviousIo),
            JournalError::Closed,
        ] {
            assert_eq!(FailureKind::of(&repeat), FailureKind::Repeat, "{repeat}");
        }
    }

    /// redb refuses every commit after a full disk's with `PreviousIo`: the
    /// journal stays full until a fault says otherwise or a commit succeeds.
    #[test]
    fn a_full_disk_stays_full_through_the_refusals_that_repeat_it() {
        let health = CommitHealth::default();
        let mut tracker = FailureTracker::default();
        let now = Instant::now();
        assert!(!health.is_full());
        tracker.failed(
            &health,
            "No space left on device",
            FailureKind::Full,
            1,
            now,
        );
        tracker.failed(
            &health,
            "Previous I/O error occurred.",
            FailureKind::Repeat,
            1,
            now,
        );
        tracker.reopen_after_a_commit_failed(&health, FailureKind::Repeat);
        assert!(health.is_full());
        tracker.failed(&health, "Input/output error", FailureKind::Fault, 1, now);
        assert!(!health.is_full(), "a fault after a full disk");
        tracker.reopen_after_a_commit_failed(&health, FailureKind::Full);
        assert!(health.is_full(), "a reopen that met the full disk");
        tracker.succeeded(&health, now);
        assert!(!health.is_full());
        tracker.failed(
            &health,
            "Previous I/O error occurred.",
            FailureKind::Repeat,
            1,
            now,
        );
        assert!(!health.is_full(), "a repeat says nothing of the disk");
    }

    /// A reopen that readers of this relay held up (one holds the old
    /// database) is a condition of its own, not the full disk's repeat:
    /// every reopen can fail so while the reader stays, after space was
    /// freed too, and as a repeat it kept the journal "full" for good, so
    /// the watchdog never restarted the relay (review of 62c2678).
    #[test]
    fn a_reopen_held_up_by_readers_is_not_taken_for_the_full_disk() {
        let held = JournalError::HeldByReaders {
            waited: Duration::from_secs(2),
        };
        assert_eq!(FailureKind::of(&held), FailureKind::Fault, "{held}");
        let health = CommitHealth::default();
        let mut tracker = FailureTracker::default();
        let now = Instant::now();
        tracker.failed(
            &health,
            "No space left on device",
            FailureKind::Full,
            1,
            now,
        );
        tracker.reopen_after_a_commit_failed(&health, FailureKind::of(&held));
        let closed = FailureKind::of(&JournalError::Closed);
        tracker.failed(&health, "the journal is closed", closed, 1, now);
        assert!(!health.is_full());
    }

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
        tracker.failed(&health, "disk full", FailureKind::Full, 1, at(0));
        let mut tries = 0;
        for s in 0..100 {
            if tracker.recover_due(at(s)) {
                tries += 1;
            }
        }
        assert!(tries >= 5, "the waits grew to 16 s: {tries}");
        tracker.succeeded(&health, at(100));
        let hours_later = at(100 + 7_200);
        tracker.failed(&health, "disk full", FailureKind::Full, 1, hours_later);
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
            tracker.failed(&health, "disk full", FailureKind::Full, 1, at(0));
            tracker.succeeded(&health, at(20));
            tracker.failed(&health, "disk full", FailureKind::Full, 1, at(31));
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
        tracker.failed(
            &health,
            "I/O error: File too large (os error 27)",
            FailureKind::Full,
            3,
            now,
        );
        tracker.failed(
            &health,
            "Previous I/O error occurred.",
            FailureKind::Repeat,
            3,
            now,
        );
        assert!(!health.is_writable());
        assert_eq!(
            health.cause().as_deref(),
            Some("I/O error: File too large (os error 27)")
        );
        tracker.succeeded(&health, now);
        assert!(health.is_writable() && health.cause().is_none());
        tracker.failed(
            &health,
            "No space left on device",
            FailureKind::Full,
            1,
            now,
        );
        assert_eq!(health.cause().as_deref(), Some("No space left on device"));
    }

    #[test]
    fn reopening_backs_off_to_16_s_and_starts_over_after_a_good_commit() {
        let health = CommitHealth::default();
        let mut tracker = FailureTracker::default();
        let start = Instant::now();
        let mut now = start;
        assert!(!tracker.recover_due(now), "nothing failed");
        tracker.failed(&health, "disk full", FailureKind::Full, 1, now);
        let mut waits = Vec::new();
        assert!(tracker.recover_due(now), "at once after the first failure");
        let mut last = start;
        // Commits keep failing, every 100 ms, for two minutes.
        while now < start + Duration::from_secs(120) {
            now += Duration::from_millis(100);
            tracker.failed(
                &health,
                "Previous I/O error occurred.",
                FailureKind::Repeat,
                1,
                now,
            );
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
        tracker.failed(&health, "disk full", FailureKind::Full, 1, now);
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
                tracker.failed(
                    &health,
                    "No space left on device",
                    FailureKind::Full,
                    1,
                    now,
                );
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
