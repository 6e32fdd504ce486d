//! How long a piece of work in progress has run, readable from any thread:
//! the journal writer's commit and reopen ([`crate::ingest`]), the journal's
//! write transaction ([`crate::journal`]).
//!
//! Guarantees: lock-free; one start/stop pair at a time per clock (a second
//! `start` before the `stop` restarts it), which the callers' own
//! one-at-a-time work (one writer thread; redb's one write transaction)
//! gives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The start time of the work in progress, in milliseconds after `epoch`
/// plus one; 0 while idle.
pub(crate) struct BusyClock {
    epoch: Instant,
    since_ms: AtomicU64,
}

impl BusyClock {
    pub(crate) fn idle(epoch: Instant) -> BusyClock {
        BusyClock {
            epoch,
            since_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn start(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.since_ms.store(ms, Ordering::Release);
    }

    pub(crate) fn stop(&self) {
        self.since_ms.store(0, Ordering::Release);
    }

    /// How long the work in progress has run; `None` while idle.
    pub(crate) fn running_for(&self) -> Option<Duration> {
        match self.since_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }
}
