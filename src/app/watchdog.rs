//! systemd's watchdog: `WATCHDOG=1` keep-alives sent only while the relay is
//! healthy, so that `WatchdogSec=` restarts a wedged process.
//!
//! Guarantees: nothing is sent unless systemd asked for it (`WATCHDOG_USEC` and
//! `WATCHDOG_PID` name this process). The keep-alive comes from a dedicated OS
//! thread that, every half `WATCHDOG_USEC` (systemd's advice), checks that
//! - the tokio runtime runs a task it is handed, within the interval;
//! - the ingest writer thread is alive and not stuck in one commit for longer
//!   than [`COMMIT_LIMIT`] (a slow disk's fsync that progresses is not a
//!   wedge: a kill cannot cut it short, leaves its batch unanswered, and the
//!   next start reads the journal on that same disk);
//! - the journal has not refused every commit for longer than
//!   [`UNWRITABLE_LIMIT`] for a fault (EIO, a read-only remount, a reopen
//!   the relay's own readers held up, …): the ingest writer reopens the
//!   journal while commits fail, and a restart is the last resort. Not
//!   while the failures are the disk or quota being full (or the file at
//!   the filesystem's largest size): a restart frees no space, loses the
//!   `response` events Voip24h sessions hold in memory while commits fail,
//!   and reads the whole journal again (webhooks answered 503 meanwhile),
//!   and the writer's reopens already take events once there is room; the
//!   commit-failure alert is what sees a disk that stays full. A fault
//!   after a full spell is counted from when it came, less only the
//!   reopens since then; a good commit, even one between two looks, ends
//!   a refusal, and the next one is counted afresh. Nor when the journal's
//!   file was deleted under the relay: a restart would lose what the open
//!   file holds. The time the writer spends reopening is not counted: a
//!   reopen after an I/O error reads the whole file again (minutes for a
//!   large journal on a slow disk), and a restart would start that read
//!   over. A reopen is bounded by [`MAX_REOPEN`] instead, as the start's
//!   is.
//!
//! and skips the keep-alive when any check fails. A keep-alive that could
//! not be sent (systemd's queue still full after the send's bound) is tried
//! again a second later, not an interval later. It stops at shutdown:
//! systemd does not watch a stopping service.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::app::Context;

/// How long the journal may refuse commits, for other reasons than a full
/// disk, before the relay counts as wedged.
pub const UNWRITABLE_LIMIT: Duration = Duration::from_secs(120);

/// How long one commit may run before the relay counts as wedged (or the
/// keep-alive interval, if longer). It was the interval, 15 s under the
/// shipped unit: a throttled volume's fsync of 30 s got the relay killed and
/// restarted, which made the disk's work larger (review, 2026-12-06).
pub const COMMIT_LIMIT: Duration = UNWRITABLE_LIMIT;

/// How long one reopen of the journal may run before the relay counts as
/// wedged (the start's bound on opening it).
pub const MAX_REOPEN: Duration = Duration::from_secs(3600);

/// The shortest keep-alive interval honoured (a smaller `WATCHDOG_USEC` is
/// taken as this, so a typo cannot make the thread spin).
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// How soon a keep-alive that could not be sent is tried again (or the
/// interval, if shorter): a whole interval later left the next one a
/// whole `WatchdogSec` after the last sent, no margin.
const UNSENT_RETRY: Duration = Duration::from_secs(1);

/// One round of observations.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    /// The runtime ran a probe task within the interval.
    pub runtime_responsive: bool,
    /// The ingest writer still takes events (or the relay is shutting down).
    pub ingest_alive: bool,
    /// How long the commit in progress has run, if one is.
    pub commit_running_for: Option<Duration>,
    /// How long every commit has failed, if the last one did, for a reason
    /// a restart may heal ([`refusal_time`]: not a full disk), less the
    /// time the writer spent reopening the journal meanwhile.
    pub unwritable_for: Option<Duration>,
    /// How long the journal reopen in progress has run, if one is.
    pub reopen_running_for: Option<Duration>,
}

/// Why a keep-alive is withheld, or `None` when the relay is healthy.
pub fn unhealthy_reason(o: &Observation, interval: Duration) -> Option<String> {
    if !o.runtime_responsive {
        return Some(format!(
            "the runtime did not run a task within {:?}",
            probe_bound(interval)
        ));
    }
    if !o.ingest_alive {
        return Some("the ingest writer thread has stopped".to_owned());
    }
    if let Some(t) = o
        .commit_running_for
        .filter(|t| *t > COMMIT_LIMIT.max(interval))
    {
        return Some(format!(
            "a journal commit has been running for {} s",
            t.as_secs()
        ));
    }
    if let Some(t) = o.reopen_running_for.filter(|t| *t > MAX_REOPEN) {
        return Some(format!(
            "the journal has been reopening for {} s",
            t.as_secs()
        ));
    }
    if let Some(t) = o.unwritable_for.filter(|t| *t > UNWRITABLE_LIMIT) {
        return Some(format!(
            "the journal has refused every commit for {} s",
            t.as_secs()
        ));
    }
    None
}

/// What the keep-alive loop reads of the journal and its writer at each
/// look, for [`refusal_time`].
#[derive(Clone, Copy, Debug)]
struct JournalLook {
    /// The last commit succeeded and the writer takes events.
    writable: bool,
    /// The relay is stopping.
    closing: bool,
    /// The journal's file was deleted under the relay.
    file_gone: bool,
    /// Commits fail because the journal's disk is full.
    journal_full: bool,
    /// The writer's reopen total ([`crate::ingest::IngestHandle::reopen_spent`]).
    reopen_spent: Duration,
    /// The writer's good commits so far, read before `reopen_spent`.
    good_commits: u64,
}

/// How long the journal has refused commits in a way that counts, as of
/// `now`: what the loop read (`look`) given to the refusal `clock`.
fn refusal_time(clock: &mut RefusalClock, look: &JournalLook, now: Instant) -> Option<Duration> {
    // A journal file deleted under the relay is not healed by a restart:
    // it would start an empty journal, losing what the open file holds.
    // Nor is a full disk: a restart frees no space, loses what sessions
    // hold in memory while commits fail, and reads the whole journal
    // again; the writer's reopens take events once there is room. A fault
    // after one (EIO) gets its own UNWRITABLE_LIMIT of reopens before the
    // restart, not none.
    let refusing = !(look.writable || look.closing || look.file_gone || look.journal_full);
    clock.observe(refusing, now, look.reopen_spent, look.good_commits)
}

/// The watchdog's clock of a refusal that counts: since when the journal
/// has refused every commit for a reason a restart may heal (not a full
/// disk, not a deleted file, not the relay's stop), less the time the
/// writer spent reopening the journal since then.
#[derive(Debug, Default)]
struct RefusalClock {
    /// When the refusal began, and the writer's reopen total then.
    since: Option<(Instant, Duration)>,
    /// The writer's good commits at the last look.
    good_commits: Option<u64>,
}

impl RefusalClock {
    /// The refusal's time as of `now`, given whether the journal is
    /// `refusing`, the writer's `reopen_spent` and its `good_commits`;
    /// `None` while it is not refusing.
    fn observe(
        &mut self,
        refusing: bool,
        now: Instant,
        reopen_spent: Duration,
        good_commits: u64,
    ) -> Option<Duration> {
        // The writer's total runs from its last good commit, not from this
        // refusal: a full spell before it (not counted, its reopens never
        // reset) would otherwise be taken off a fault's time. A good commit
        // since the last look restarts both: the refusal seen now is a new
        // one, and the reopens before that commit are not its own.
        let committed = self
            .good_commits
            .replace(good_commits)
            .is_some_and(|seen| seen != good_commits);
        if !refusing || committed {
            self.since = None;
        }
        if !refusing {
            return None;
        }
        let (since, spent_before) = *self.since.get_or_insert((now, reopen_spent));
        // Saturating: a look that read the count just before a good commit
        // and the total just after it sees the total fall; the next look
        // sees the count move.
        let reopening = reopen_spent.saturating_sub(spent_before);
        Some(
            now.saturating_duration_since(since)
                .saturating_sub(reopening),
        )
    }
}

/// The keep-alive interval systemd asks for, if it asks (half `WATCHDOG_USEC`).
pub fn requested_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec)
        .then_some(usec)
        .and_then(interval_for)
}

/// The keep-alive interval for `WATCHDOG_USEC`: half of it, at least
/// [`MIN_INTERVAL`]; `None` for 0, which means no watchdog
/// (sd_watchdog_enabled(3) refuses it too).
fn interval_for(watchdog_usec: u64) -> Option<Duration> {
    (watchdog_usec > 0).then(|| (Duration::from_micros(watchdog_usec) / 2).max(MIN_INTERVAL))
}

/// Starts the keep-alive thread when systemd asked for a watchdog.
pub fn spawn(ctx: Arc<Context>, runtime: tokio::runtime::Handle) {
    let Some(interval) = requested_interval() else {
        return;
    };
    tracing::info!(
        interval_ms = crate::logging::millis(interval),
        "systemd watchdog enabled"
    );
    let started = std::thread::Builder::new()
        .name("callrelay-watchdog".into())
        .spawn(move || keep_alive(&ctx, &runtime, interval));
    if let Err(e) = started {
        // Without the thread systemd restarts the relay after WatchdogSec: say why.
        tracing::error!(error = %e, "cannot start the watchdog thread");
    }
}

fn keep_alive(ctx: &Context, runtime: &tokio::runtime::Handle, interval: Duration) {
    let mut refusals = RefusalClock::default();
    let mut withheld = false;
    let mut unsent = false;
    loop {
        let tick = Instant::now();
        if ctx.shutdown.is_cancelled() {
            return;
        }
        // Half the interval: keep-alives go out after the probe, and one
        // taking the whole interval after one that took none put two
        // keep-alives a whole `WatchdogSec` apart, which systemd could
        // take for a hang; at half, at most 1.5 intervals apart.
        let runtime_responsive = probe_runtime(runtime, probe_bound(interval));
        let closing = ctx.ingest.is_closing();
        // The count first: once it moved, the total read after it is the
        // new one.
        let good_commits = ctx.ingest.good_commits();
        let look = JournalLook {
            writable: ctx.ingest.is_writable(),
            closing,
            file_gone: ctx.journal.is_file_gone(),
            journal_full: ctx.ingest.is_journal_full(),
            reopen_spent: ctx.ingest.reopen_spent(),
            good_commits,
        };
        let observation = Observation {
            runtime_responsive,
            ingest_alive: closing || ctx.ingest.is_alive(),
            commit_running_for: ctx.ingest.commit_running_for(),
            unwritable_for: refusal_time(&mut refusals, &look, Instant::now()),
            reopen_running_for: ctx.ingest.reopen_running_for(),
        };
        match unhealthy_reason(&observation, interval) {
            None => {
                if withheld {
                    tracing::info!("healthy again: resuming watchdog keep-alives");
                    withheld = false;
                }
                match super::systemd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
                    Ok(()) if unsent => {
                        tracing::info!("watchdog keep-alives reach systemd again");
                        unsent = false;
                    }
                    Ok(()) => {}
                    // Said once: systemd restarts the relay if this lasts.
                    Err(e) => {
                        if !unsent {
                            tracing::error!(error = %e, "a watchdog keep-alive could not be sent to systemd");
                            unsent = true;
                        }
                        // From the send's end, not the tick's: a send to a
                        // full queue takes its 2 s bound, and measured from
                        // the tick the retry came at once, the shared socket
                        // held nearly all the time (review of cfa8418).
                        std::thread::sleep(retry_after(interval));
                        continue;
                    }
                }
            }
            Some(reason) => {
                if !withheld {
                    tracing::error!(%reason, "withholding the systemd watchdog keep-alive");
                    withheld = true;
                }
            }
        }
        std::thread::sleep(interval.saturating_sub(tick.elapsed()));
    }
}

/// When a keep-alive that could not be sent is tried again, with keep-alives
/// every `interval`.
fn retry_after(interval: Duration) -> Duration {
    UNSENT_RETRY.min(interval)
}

/// Hands the runtime a task and waits for it to run.
/// How long the runtime may take to run a probe, with keep-alives every
/// `interval` (half systemd's `WatchdogSec`).
fn probe_bound(interval: Duration) -> Duration {
    interval / 2
}

fn probe_runtime(runtime: &tokio::runtime::Handle, within: Duration) -> bool {
    let (tx, rx) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(());
    });
    rx.recv_timeout(within).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_secs(10);

    fn healthy() -> Observation {
        Observation {
            runtime_responsive: true,
            ingest_alive: true,
            commit_running_for: Some(Duration::from_millis(5)),
            unwritable_for: Some(Duration::from_secs(30)),
            reopen_running_for: None,
        }
    }

    /// What the loop hands [`unhealthy_reason`] for a journal whose disk
    /// has been full for 10 minutes.
    fn full_for_10_minutes() -> Option<Duration> {
        let mut clock = RefusalClock::default();
        let start = Instant::now();
        let full = JournalLook {
            journal_full: true,
            ..refusing_look()
        };
        refusal_time(&mut clock, &full, start);
        refusal_time(&mut clock, &full, start + Duration::from_secs(600))
    }

    /// A disk that stays full is not healed by a restart, which frees
    /// nothing, loses the `response` events Voip24h sessions hold while
    /// commits fail, and reads the whole journal again: the relay was
    /// killed every 2.5 minutes or so while the disk stayed full (audit,
    /// 2026-12-07).
    #[test]
    fn a_journal_full_for_10_minutes_keeps_the_keep_alive() {
        let full = Observation {
            unwritable_for: full_for_10_minutes(),
            ..healthy()
        };
        assert_eq!(unhealthy_reason(&full, I), None);
    }

    /// Other faults keep the last-resort restart.
    #[test]
    fn an_io_error_for_3_minutes_still_withholds_it() {
        let failing = Observation {
            unwritable_for: Some(Duration::from_secs(180)),
            ..healthy()
        };
        assert!(unhealthy_reason(&failing, I).is_some());
    }

    /// A full journal does not hide a wedge of another kind.
    #[test]
    fn a_full_journal_does_not_hide_a_stuck_commit() {
        let stuck = Observation {
            commit_running_for: Some(COMMIT_LIMIT + Duration::from_secs(1)),
            unwritable_for: full_for_10_minutes(),
            ..healthy()
        };
        assert!(unhealthy_reason(&stuck, I).is_some());
    }

    /// A fault (EIO, a read-only remount) that follows hours of a full
    /// disk gets its own [`UNWRITABLE_LIMIT`]: the reopens of the full
    /// spell, never reset by the writer while commits fail, are not taken
    /// off it. They were, and after hours full with slow reopens the
    /// fault's restart came hours late (review of 62c2678).
    #[test]
    fn a_fault_after_a_full_spell_is_timed_from_when_it_came() {
        let mut clock = RefusalClock::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let hours = 3 * 3600;
        // Full: not counted, while the writer's reopens add up to 2 hours.
        for s in (0..hours).step_by(600) {
            let spent = Duration::from_secs(s * 2 / 3);
            assert_eq!(clock.observe(false, at(s), spent, 0), None);
        }
        let spent_full = Duration::from_secs(hours * 2 / 3);
        assert_eq!(
            clock.observe(true, at(hours), spent_full, 0),
            Some(Duration::ZERO)
        );
        // Its own reopens are still not counted: 30 s of 90 s were one.
        let reopened = spent_full + Duration::from_secs(30);
        assert_eq!(
            clock.observe(true, at(hours + 90), reopened, 0),
            Some(Duration::from_secs(60))
        );
        let past_the_limit = clock.observe(true, at(hours + 151), reopened, 0);
        assert_eq!(past_the_limit, Some(Duration::from_secs(121)));
        let fault = Observation {
            unwritable_for: past_the_limit,
            ..healthy()
        };
        assert!(unhealthy_reason(&fault, I).is_some());
    }

    /// A good commit between two looks restarts the refusal, both its
    /// start and the reopen total it takes off: the writer's count of good
    /// commits says so. Told only by a total that fell below the first
    /// look's, a commit after a 100 s reopen then a failing one (no look
    /// between) went unseen with that first total 0: the 100 s counted as
    /// refusal and the keep-alive was withheld about 35 s into the new
    /// refusal (review of 96e0a4c; `WatchdogSec=30`, a look every 15 s).
    #[test]
    fn a_good_commit_between_two_looks_restarts_the_refusal() {
        let mut clock = RefusalClock::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let secs = Duration::from_secs;
        // EIO at t0; a reopen from t0+1 reads a large journal for 100 s.
        assert_eq!(clock.observe(true, at(0), secs(0), 7), Some(secs(0)));
        for s in (15..=90).step_by(15) {
            assert_eq!(clock.observe(true, at(s), secs(s - 1), 7), Some(secs(1)));
        }
        // It works; a commit succeeds at t0+101 (the total restarts from
        // 0), the next fails at t0+103 and its reopen fails in 1 s.
        assert_eq!(clock.observe(true, at(105), secs(1), 8), Some(secs(0)));
        // The new refusal's own reopens (2 s more) are still taken off.
        let mut looked = None;
        for s in (120..=225).step_by(15) {
            looked = clock.observe(true, at(s), secs(3), 8);
        }
        assert_eq!(looked, Some(secs(118)));
        let kept = Observation {
            unwritable_for: looked,
            ..healthy()
        };
        assert_eq!(unhealthy_reason(&kept, I), None);
        let withheld = Observation {
            unwritable_for: clock.observe(true, at(240), secs(3), 8),
            ..healthy()
        };
        assert!(unhealthy_reason(&withheld, I).is_some());
    }

    fn refusing_look() -> JournalLook {
        JournalLook {
            writable: false,
            closing: false,
            file_gone: false,
            journal_full: false,
            reopen_spent: Duration::ZERO,
            good_commits: 0,
        }
    }

    /// The loop's look at the journal is a refusal only when a restart
    /// may heal it: not a full disk, a deleted file, the relay's stop, nor
    /// a writable journal.
    #[test]
    fn the_loop_counts_a_refusal_only_when_a_restart_may_heal_it() {
        let start = Instant::now();
        let later = start + Duration::from_secs(600);
        let exempt = [
            JournalLook {
                journal_full: true,
                ..refusing_look()
            },
            JournalLook {
                file_gone: true,
                ..refusing_look()
            },
            JournalLook {
                closing: true,
                ..refusing_look()
            },
            JournalLook {
                writable: true,
                ..refusing_look()
            },
        ];
        for look in exempt {
            let mut clock = RefusalClock::default();
            assert_eq!(refusal_time(&mut clock, &look, start), None, "{look:?}");
            assert_eq!(refusal_time(&mut clock, &look, later), None, "{look:?}");
        }
        let mut clock = RefusalClock::default();
        let fault = refusing_look();
        assert_eq!(
            refusal_time(&mut clock, &fault, start),
            Some(Duration::ZERO)
        );
        assert_eq!(
            refusal_time(&mut clock, &fault, later),
            Some(Duration::from_secs(600))
        );
    }

    /// The loop gives the clock the writer's reopen total and its count of
    /// good commits: a refusal's reopens are taken off it, and a good
    /// commit between two looks restarts it.
    #[test]
    fn the_loop_hands_the_writers_reopens_and_commits_to_the_clock() {
        let mut clock = RefusalClock::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let look = |spent: u64, commits: u64| JournalLook {
            reopen_spent: Duration::from_secs(spent),
            good_commits: commits,
            ..refusing_look()
        };
        assert_eq!(
            refusal_time(&mut clock, &look(10, 3), at(0)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            refusal_time(&mut clock, &look(40, 3), at(90)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            refusal_time(&mut clock, &look(40, 4), at(100)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            refusal_time(&mut clock, &look(40, 4), at(130)),
            Some(Duration::from_secs(30))
        );
    }

    /// Writable again, the clock stops; a later refusal starts afresh.
    #[test]
    fn the_refusal_clock_restarts_after_the_journal_took_writes() {
        let mut clock = RefusalClock::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(
            clock.observe(true, at(0), Duration::ZERO, 0),
            Some(Duration::ZERO)
        );
        assert_eq!(
            clock.observe(true, at(100), Duration::ZERO, 0),
            Some(Duration::from_secs(100))
        );
        assert_eq!(clock.observe(false, at(110), Duration::ZERO, 0), None);
        assert_eq!(
            clock.observe(true, at(200), Duration::ZERO, 0),
            Some(Duration::ZERO)
        );
        assert_eq!(
            clock.observe(true, at(230), Duration::ZERO, 0),
            Some(Duration::from_secs(30))
        );
    }

    /// A keep-alive lost to a full queue was tried again only an interval
    /// later: with `WatchdogSec` twice the interval, the next one sent came
    /// a whole period after the last one systemd had.
    #[test]
    fn a_lost_keep_alive_is_tried_again_well_inside_the_watchdog_period() {
        assert_eq!(retry_after(I), Duration::from_secs(1));
        assert_eq!(retry_after(MIN_INTERVAL), MIN_INTERVAL);
        // The shipped unit (WatchdogSec=30s): last sent at 0, the lost one
        // an interval and a send's wait later, its retry a second and a
        // send's wait after that.
        let interval = Duration::from_secs(15);
        let send_wait = Duration::from_secs(2);
        let retried_by = interval + send_wait + retry_after(interval) + send_wait;
        assert!(retried_by * 4 <= 2 * interval * 3, "{retried_by:?}");
    }

    /// Keep-alives are sent once the probe returns, `interval` after the
    /// previous tick: two in a row can be the interval plus one probe's bound
    /// apart, which must stay clear of `WatchdogSec` (twice the interval).
    #[test]
    fn two_keep_alives_are_never_a_whole_watchdog_period_apart() {
        let watchdog_sec = 2 * I;
        let widest_gap = I + probe_bound(I);
        assert!(widest_gap * 4 <= watchdog_sec * 3, "{widest_gap:?}");
    }

    #[test]
    fn a_healthy_relay_gets_keep_alives() {
        assert_eq!(unhealthy_reason(&healthy(), I), None);
    }

    #[test]
    fn each_wedge_withholds_the_keep_alive() {
        let cases = [
            Observation {
                runtime_responsive: false,
                ..healthy()
            },
            Observation {
                ingest_alive: false,
                ..healthy()
            },
            Observation {
                commit_running_for: Some(COMMIT_LIMIT + Duration::from_millis(1)),
                ..healthy()
            },
            Observation {
                unwritable_for: Some(UNWRITABLE_LIMIT + Duration::from_secs(1)),
                ..healthy()
            },
            Observation {
                reopen_running_for: Some(MAX_REOPEN + Duration::from_secs(1)),
                ..healthy()
            },
        ];
        for o in cases {
            assert!(unhealthy_reason(&o, I).is_some(), "{o:?}");
        }
    }

    #[test]
    fn a_wait_of_exactly_the_bound_is_still_healthy() {
        let at_bounds = Observation {
            commit_running_for: Some(COMMIT_LIMIT),
            unwritable_for: Some(UNWRITABLE_LIMIT),
            reopen_running_for: Some(MAX_REOPEN),
            ..healthy()
        };
        assert_eq!(unhealthy_reason(&at_bounds, I), None);
    }

    /// A commit that a slow disk holds for a minute is working: a kill
    /// would not cut its fsync short, and the restart would read the
    /// journal again on that disk.
    #[test]
    fn a_slow_commit_in_progress_is_not_a_wedge() {
        let slow = Observation {
            commit_running_for: Some(Duration::from_secs(60)),
            ..healthy()
        };
        assert_eq!(unhealthy_reason(&slow, Duration::from_secs(15)), None);
    }

    /// A reopen after an I/O error reads the whole journal again: minutes
    /// for a large one on a slow disk. It is working, and a restart would
    /// start the read over: the relay was killed in the middle of it once
    /// commits had failed for 120 s (liveness review, round 47).
    #[test]
    fn a_long_reopen_in_progress_is_not_a_wedge() {
        let reopening = Observation {
            reopen_running_for: Some(Duration::from_secs(600)),
            unwritable_for: Some(Duration::from_secs(5)),
            ..healthy()
        };
        assert_eq!(unhealthy_reason(&reopening, I), None);
    }

    #[test]
    fn keep_alives_come_every_half_watchdog_usec_and_not_too_often() {
        assert_eq!(interval_for(0), None);
        assert_eq!(interval_for(30_000_000), Some(Duration::from_secs(15)));
        assert_eq!(interval_for(1_000), Some(MIN_INTERVAL));
        assert_eq!(interval_for(100_002), Some(Duration::from_micros(50_001)));
    }

    #[test]
    fn the_runtime_probe_sees_a_running_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        assert!(probe_runtime(rt.handle(), Duration::from_secs(5)));
    }

    #[test]
    fn the_runtime_probe_sees_a_blocked_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let (release, blocked) = mpsc::channel::<()>();
        let (started, is_blocking) = mpsc::channel::<()>();
        // The only worker blocks; the probe's task cannot run until released.
        rt.spawn(async move {
            let _ = started.send(());
            let _ = blocked.recv();
        });
        is_blocking.recv().expect("the blocking task ran");
        assert!(!probe_runtime(rt.handle(), Duration::from_millis(200)));
        let _ = release.send(());
    }
}
