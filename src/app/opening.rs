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
const RENEW_EVERY: Duration = Duration::from_secs(10);
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
        let (alive, opened) = mpsc::channel::<()>();
        let started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("callrelay-opening".into())
            .spawn(move || {
                let mut logged = Instant::now();
                loop {
                    // A thread scheduled late may find the open done and
                    // READY sent: a STATUS now would say "opening" for good
                    // (seen under load, 2026-12-02).
                    if let Err(mpsc::TryRecvError::Disconnected) = opened.try_recv() {
                        return;
                    }
                    if logged.elapsed() >= LOG_EVERY {
                        tracing::info!(
                            elapsed_s = started.elapsed().as_secs(),
                            "still opening the journal"
                        );
                        logged = Instant::now();
                    }
                    let status = format!(
                        "opening the journal ({} s; a journal not closed cleanly is read whole first)",
                        started.elapsed().as_secs()
                    );
                    let _ = sd_notify::notify(
                        false,
                        &[
                            sd_notify::NotifyState::ExtendTimeoutUsec(EXTENSION.as_micros() as u32),
                            sd_notify::NotifyState::Status(&status),
                        ],
                    );
                    match opened.recv_timeout(RENEW_EVERY) {
                        Err(RecvTimeoutError::Timeout) if started.elapsed() < MAX_OPENING => {}
                        _ => return,
                    }
                }
            });
        if let Err(e) = spawned {
            // Only the systemd notices are lost: the open goes on.
            tracing::warn!(error = %e, "cannot start the thread that tells systemd the journal is opening");
        }
        JournalOpening { _alive: alive }
    }
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
    /// after the journal; the listener is bound but accepts nothing, so a
    /// connection waiting in its backlog is reset and its sender retries),
    /// and redb's check is as safe to cut
    /// as any of its writes (a kill at any moment leaves a file the next open
    /// repairs; a check killed half-way was checked again whole, big-journal
    /// audit), so the next start checks again. Cutting it short at redb's next
    /// progress report was tried first: that report comes after its first
    /// scan, most of the time (a stop took 145 s, verification audit of
    /// 2026-12-01). Once it is open, the start finishes and drains.
    pub(super) fn stop(&self, signal: &str) {
        let opening = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        if *opening {
            tracing::info!(
                "{signal} while opening the journal: exiting now (a check of a journal not closed cleanly starts over at the next start)"
            );
            let _ = sd_notify::notify(
                false,
                &[
                    sd_notify::NotifyState::Stopping,
                    sd_notify::NotifyState::Status("stopped while opening the journal"),
                ],
            );
            // Held until the end: the start cannot go on past the open meanwhile.
            std::process::exit(0);
        }
        tracing::info!("{signal} while starting: draining once started");
        self.stop.store(true, Ordering::Release);
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}
