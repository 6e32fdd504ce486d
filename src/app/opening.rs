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
//! less than `TimeoutStartSec`), for at most [`MAX_OPENING`]; a relay not
//! started by systemd sends nothing.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How often the start timeout is extended.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How much longer each extension lets the start take: two renewals' worth,
/// so that one late renewal does not end it.
const EXTENSION: Duration = Duration::from_secs(30);
/// An open that has not finished after this is not waited for any longer:
/// systemd's own timeout applies again.
const MAX_OPENING: Duration = Duration::from_secs(3600);

/// Keeps systemd's start timeout at bay while alive.
pub(super) struct JournalOpening {
    done: Option<mpsc::Sender<()>>,
}

impl JournalOpening {
    pub(super) fn begin() -> JournalOpening {
        let (done, finished) = mpsc::channel::<()>();
        let started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("callrelay-opening".into())
            .spawn(move || {
                loop {
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
                    match finished.recv_timeout(RENEW_EVERY) {
                        Err(RecvTimeoutError::Timeout) if started.elapsed() < MAX_OPENING => {}
                        _ => return,
                    }
                }
            });
        if let Err(e) = spawned {
            // Only the systemd notices are lost: the open goes on.
            tracing::warn!(error = %e, "cannot start the thread that tells systemd the journal is opening");
        }
        JournalOpening { done: Some(done) }
    }
}

impl Drop for JournalOpening {
    fn drop(&mut self) {
        // The thread ends at its next wake-up at the latest.
        self.done.take();
    }
}
