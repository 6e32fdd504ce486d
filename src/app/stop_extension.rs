//! systemd is kept informed while a stop waits on a journal reopen. After a
//! failed commit the journal writer reopens the journal, which reads the
//! whole file again (127 s for a full 1 GiB journal at 150 IOPS), and the
//! stop waits for the writer: systemd's `TimeoutStopSec` (60 s) then killed
//! the relay mid-check, the Kafka sink undrained, and the next start read
//! the file again from the beginning.
//!
//! Guarantees: while the awaited work runs and the writer reports a reopen
//! running for less than [`MAX_REOPEN`], `EXTEND_TIMEOUT_USEC` (30 s) and a
//! `STATUS=` line naming the wait go out every [`RENEW_EVERY`] (the start's
//! own pace and extension, [`super::opening`]); nothing is
//! sent otherwise (a reopen stuck on a hung disk gets systemd's own stop
//! timeout again, as the watchdog gives up on it then), and a relay not
//! started by systemd sends nothing.

use std::future::Future;
use std::time::Duration;

use super::opening::{RENEW_EVERY, extend_timeout};
use super::watchdog::MAX_REOPEN;

/// Awaits `work`, telling systemd to wait longer while `reopening` says a
/// reopen has been running for so long.
pub(super) async fn extend_while_reopening<T>(
    work: impl Future<Output = T>,
    reopening: impl Fn() -> Option<Duration>,
) -> T {
    extend_with(work, reopening, extend_timeout).await
}

async fn extend_with<T>(
    work: impl Future<Output = T>,
    reopening: impl Fn() -> Option<Duration>,
    mut say: impl FnMut(&str),
) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(RENEW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = tick.tick() => {
                if let Some(running) = reopening().filter(|r| *r < MAX_REOPEN) {
                    say(&format!(
                        "stopping: waiting for the journal's check after a failed write ({} s)",
                        running.as_secs()
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[tokio::test(start_paused = true)]
    async fn the_stop_is_extended_while_a_reopen_runs_and_not_otherwise() {
        let said = RefCell::new(Vec::new());
        let work = tokio::time::sleep(Duration::from_secs(35));
        extend_with(
            work,
            || Some(Duration::from_secs(7)),
            |s| said.borrow_mut().push(s.to_owned()),
        )
        .await;
        // At 0, 10, 20 and 30 s.
        assert_eq!(said.borrow().len(), 4, "{said:?}");
        assert!(said.borrow()[0].contains("journal's check"), "{said:?}");
        said.borrow_mut().clear();
        let work = tokio::time::sleep(Duration::from_secs(35));
        extend_with(work, || None, |s| said.borrow_mut().push(s.to_owned())).await;
        assert!(said.borrow().is_empty(), "{said:?}");
        // A reopen past the watchdog's bound is stuck: systemd's own timeout applies.
        let work = tokio::time::sleep(Duration::from_secs(35));
        extend_with(
            work,
            || Some(MAX_REOPEN),
            |s| said.borrow_mut().push(s.to_owned()),
        )
        .await;
        assert!(said.borrow().is_empty(), "{said:?}");
    }
}
