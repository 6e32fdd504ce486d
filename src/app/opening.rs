//! systemd is kept informed while the journal opens: a journal that was not
//! closed cleanly (a crash, a kill) is read whole before the relay can start,
//! and on a slow disk that outlasted systemd's 90 s start timeout (127 s for
//! a full 1 GiB journal at 150 IOPS, big-journal audit of 2026-12-01). Killed
//! mid-check, the next start checked it again from the beginning: a restart
//! loop with no end.
//!
//! Guarantees: from the start of the open until it returns, `STATUS=` says
//! what the relay is doing and `EXTEND_TIMEOUT_USEC` is renewed every
//! [`RENEW_EVERY`] (systemd ≥ 236 waits that much longer each time, never
//! less than `TimeoutStartSec`), for at most [`MAX_OPENING`], and the log
//! says every [`LOG_EVERY`] that it is still opening; a relay not started by
//! systemd sends nothing. A stop asked for before the journal is open exits
//! at once ([`Starting`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often the start timeout is extended.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How much longer each extension lets the start take: two renewals' worth,
/// so that one late renewal does not end it.
const EXTENSION: Duration = Duration::from_secs(30);
/// An open that has not finished after this is not waited for any longer:
/// systemd's own timeout applies again.
const MAX_OPENING: Duration = Duration::from_secs(3600);
/// How often the log says the open is still going: redb reports its own
/// progress only after its first scan of the file, most of the time.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Keeps systemd's start timeout at bay while alive; dropped, its thread
/// ends at once (the channel is gone).
pub(super) struct JournalOpening {
    _alive: mpsc::Sender<()>,
}

impl JournalOpening {
    pub(super) fn begin() -> JournalOpening {
        Self::begin_at(PACE, tell)
    }

    fn begin_at(pace: Pace, mut say: impl FnMut(Notice) + Send + 'static) -> JournalOpening {
        let started = Instant::now();
        // The first extension is said here, before the open, not by the
        // thread: a thread scheduled late found a small journal already open
        // and said nothing, or said "opening" just after READY, where the
        // status then stayed.
        say(extension(started));
        let (alive, opened) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("callrelay-opening".into())
            .spawn(move || tell_while_opening(&opened, pace, started, say));
        if let Err(e) = spawned {
            // Only the systemd notices are lost: the open goes on.
            tracing::warn!(error = %e, "cannot start the thread that tells systemd the journal is opening");
        }
        JournalOpening { _alive: alive }
    }
}

/// What the opening thread has to say, in the order it says it.
#[derive(Debug, PartialEq, Eq)]
enum Notice {
    /// For the log, every [`Pace::log_every`].
    StillOpening { elapsed_s: u64 },
    /// For systemd: a longer start timeout and the `STATUS=` line.
    Extend { status: String },
}

/// How often the opening thread speaks, and until when: the constants above
/// in the daemon, milliseconds in tests.
#[derive(Clone, Copy)]
struct Pace {
    renew_every: Duration,
    max_opening: Duration,
    log_every: Duration,
}

const PACE: Pace = Pace {
    renew_every: RENEW_EVERY,
    max_opening: MAX_OPENING,
    log_every: LOG_EVERY,
};

/// The extension and `STATUS=` for an open that began at `started`.
fn extension(started: Instant) -> Notice {
    Notice::Extend {
        status: format!(
            "opening the journal ({} s; a journal not closed cleanly is read whole first)",
            started.elapsed().as_secs()
        ),
    }
}

/// Once the first extension (said at `started`) is said: renews it every
/// `pace.renew_every` until `opened`'s sender is dropped (the open returned)
/// or `pace.max_opening` has passed.
fn tell_while_opening(
    opened: &mpsc::Receiver<()>,
    pace: Pace,
    started: Instant,
    mut say: impl FnMut(Notice),
) {
    let mut logged = started;
    loop {
        match opened.recv_timeout(pace.renew_every) {
            Err(RecvTimeoutError::Timeout) if started.elapsed() < pace.max_opening => {}
            _ => return,
        }
        // A thread descheduled here may find the open done and READY sent:
        // a STATUS now would say "opening" for good (seen under load,
        // 2026-12-02).
        if let Err(mpsc::TryRecvError::Disconnected) = opened.try_recv() {
            return;
        }
        if logged.elapsed() >= pace.log_every {
            say(Notice::StillOpening {
                elapsed_s: started.elapsed().as_secs(),
            });
            logged = Instant::now();
        }
        say(extension(started));
    }
}

/// The daemon's way of saying a [`Notice`].
fn tell(notice: Notice) {
    match notice {
        Notice::StillOpening { elapsed_s } => {
            tracing::info!(elapsed_s, "still opening the journal");
        }
        Notice::Extend { status } => extend_timeout(&status),
    }
}

/// Tells systemd to wait [`EXTENSION`] longer for the start or the stop in
/// progress, and why (`STATUS=`); nothing when not started by systemd.
pub(super) fn extend_timeout(status: &str) {
    super::systemd_notify::tell(&[
        sd_notify::NotifyState::ExtendTimeoutUsec(EXTENSION.as_micros() as u32),
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Where a daemon's start is, for a stop asked for meanwhile (SIGTERM,
/// SIGINT).
pub(super) struct Starting {
    /// Until the journal is open.
    opening: Mutex<bool>,
    /// A stop came once it was open: drain, never READY.
    stop: AtomicBool,
}

impl Starting {
    pub(super) fn new() -> Starting {
        Starting {
            opening: Mutex::new(true),
            stop: AtomicBool::new(false),
        }
    }

    /// The journal is open: from here on a stop drains.
    pub(super) fn journal_opened(&self) {
        *self.opening.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }

    /// A stop, by `signal`. Before the journal is open the process exits at
    /// once with 0: nothing runs yet that holds an event (sources start
    /// after the journal; the listener's connections are answered 503 with
    /// `Retry-After: 5` by `opening_answers`, so a sender may retry),
    /// and redb's check is as safe to cut
    /// as any of its writes (a kill at any moment leaves a file the next open
    /// repairs; a check killed half-way was checked again whole, big-journal
    /// audit), so the next start checks again. Cutting it short at redb's next
    /// progress report was tried first: that report comes after its first
    /// scan, most of the time (a stop took 145 s, verification audit of
    /// 2026-12-01). Once it is open, the start finishes and drains.
    pub(super) fn stop(&self, signal: &str) {
        self.stop_or_exit(signal, || std::process::exit(0));
    }

    /// [`Starting::stop`], with the exit before the journal is open given:
    /// a unit test cannot let it end its process.
    fn stop_or_exit(&self, signal: &str, exit: impl FnOnce()) {
        let opening = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        if *opening {
            tracing::info!(
                "{signal} while opening the journal: exiting now (a check of a journal not closed cleanly starts over at the next start)"
            );
            super::systemd_notify::tell(&[
                sd_notify::NotifyState::Stopping,
                sd_notify::NotifyState::Status("stopped while opening the journal"),
            ]);
            // Held until the end: the start cannot go on past the open meanwhile.
            exit();
            return;
        }
        tracing::info!("{signal} while starting: draining once started");
        self.stop.store(true, Ordering::Release);
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the opening thread at `pace`; its notices arrive on the receiver,
    /// which ends when the thread returns.
    fn opening(pace: Pace) -> (JournalOpening, mpsc::Receiver<Notice>) {
        let (said, notices) = mpsc::channel();
        let opening = JournalOpening::begin_at(pace, move |notice| {
            let _ = said.send(notice);
        });
        (opening, notices)
    }

    /// The first extension is said before `begin` returns, whatever the
    /// thread's scheduling: a journal that opens at once still got none when
    /// the thread said it, and a late one could say it after READY.
    #[test]
    fn the_first_extension_is_said_before_the_open_begins() {
        let pace = Pace {
            renew_every: Duration::from_secs(600),
            max_opening: Duration::from_secs(600),
            log_every: Duration::from_secs(600),
        };
        let (opening, notices) = opening(pace);
        match notices.try_recv() {
            Ok(Notice::Extend { status }) => {
                assert!(status.starts_with("opening the journal (0 s; "), "{status}");
            }
            other => panic!("no extension yet when begin returned: {other:?}"),
        }
        drop(opening);
        assert_eq!(
            notices.recv_timeout(WITHIN),
            Err(RecvTimeoutError::Disconnected),
            "nothing more once the open returned"
        );
    }

    const WITHIN: Duration = Duration::from_secs(30);

    #[test]
    fn the_timeout_is_extended_until_the_open_returns_and_the_log_speaks_less_often() {
        let pace = Pace {
            renew_every: Duration::from_millis(5),
            max_opening: Duration::from_secs(600),
            log_every: Duration::from_millis(200),
        };
        let (alive, notices) = opening(pace);
        let mut extended = 0;
        // Until the first log line (`StillOpening`). Any second: a thread
        // starved for one on busy cores is still this open.
        while let Notice::Extend { status } = notices.recv_timeout(WITHIN).unwrap() {
            assert!(status.starts_with("opening the journal ("), "{status}");
            assert!(status.contains(" s; "), "{status}");
            extended += 1;
        }
        assert!(
            extended >= 2,
            "the log waits for log_every while the timeout is extended every renew_every ({extended} extensions before it)"
        );
        drop(alive);
        // The thread ends when the open returns: the channel disconnects.
        // How many extensions went out before it saw the open return depends
        // on how long this thread took to get here (on busy cores, more
        // than the 5 ms between two), so they are not counted.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "the thread went on after the open returned"
            );
            match notices.recv_timeout(WITHIN) {
                Ok(_) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("the thread went on after the open returned: {e}"),
            }
        }
    }

    #[test]
    fn an_open_past_max_opening_is_no_longer_extended() {
        let pace = Pace {
            renew_every: Duration::from_millis(5),
            // Three extensions at least must fit in it on busy cores.
            max_opening: Duration::from_secs(2),
            log_every: Duration::from_secs(600),
        };
        let (_alive, notices) = opening(pace);
        let started = Instant::now();
        let mut extended = 0;
        while let Ok(notice) = notices.recv_timeout(WITHIN) {
            assert!(matches!(notice, Notice::Extend { .. }), "{notice:?}");
            extended += 1;
            if started.elapsed() > WITHIN {
                break;
            }
        }
        assert!(
            started.elapsed() < WITHIN,
            "the thread ended by itself once max_opening had passed"
        );
        assert!(
            extended >= 3,
            "extended every renew_every until then, not once ({extended})"
        );
    }

    #[test]
    fn a_stop_before_the_journal_is_open_exits_and_one_after_it_drains() {
        let starting = Starting::new();
        let mut exited = false;
        starting.stop_or_exit("SIGTERM", || exited = true);
        assert!(exited, "nothing holds an event yet: exit at once");
        assert!(!starting.stopped());

        starting.journal_opened();
        let mut exited = false;
        starting.stop_or_exit("SIGTERM", || exited = true);
        assert!(
            !exited,
            "once the journal is open, the start finishes and drains"
        );
        assert!(starting.stopped());
    }
}
