//! How long a piece of work in progress has run, readable from any thread:
//! the journal writer's commit and reopen ([`crate::ingest`]), the journal's
//! write transaction ([`crate::journal`]).
//!
//! Guarantees: lock-free; the clock times the latest `start` until that
//! start's own `stop`. A `stop` whose start a later `start` replaced
//! changes nothing: redb's one write transaction does not keep a clock's
//! pairs apart, since redb frees its write slot inside `commit()`, and the
//! next writer, woken there, starts before the first's `stop` has run.
//! Starts are told apart by a generation counter, not by their time (two
//! writes can start in the same millisecond); after 2^24 starts a
//! generation comes round again, which could match a stale `stop` only if
//! all of them fell in that `stop`'s own millisecond. Times are kept in
//! milliseconds for 34 years after the clock's epoch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bits of the clock's word holding the start time (milliseconds after the
/// epoch, plus one); the bits above hold the start's generation.
const MS_BITS: u32 = 40;
const MS_MASK: u64 = (1 << MS_BITS) - 1;

/// The work in progress's start (its generation and time, packed in one
/// word so that a `stop` compares and clears both at once); 0 while idle.
pub(crate) struct BusyClock {
    epoch: Instant,
    started: AtomicU64,
    generation: AtomicU64,
}

/// One `start` of a [`BusyClock`], for its own `stop`.
#[must_use = "the clock runs until this start's stop"]
pub(crate) struct Started(u64);

impl BusyClock {
    pub(crate) fn idle(epoch: Instant) -> BusyClock {
        BusyClock {
            epoch,
            started: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// Times work from now, whatever ran before.
    pub(crate) fn start(&self) -> Started {
        self.start_at(self.epoch.elapsed())
    }

    fn start_at(&self, since_epoch: Duration) -> Started {
        let ms = u64::try_from(since_epoch.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
            .min(MS_MASK);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let word = (generation << MS_BITS) | ms;
        self.started.store(word, Ordering::Release);
        Started(word)
    }

    /// Ends `started`'s timing, unless a later start has replaced it.
    pub(crate) fn stop(&self, started: Started) {
        let _ = self
            .started
            .compare_exchange(started.0, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// How long the work in progress has run; `None` while idle.
    pub(crate) fn running_for(&self) -> Option<Duration> {
        self.running_for_at(self.epoch.elapsed())
    }

    fn running_for_at(&self, since_epoch: Duration) -> Option<Duration> {
        match self.started.load(Ordering::Acquire) & MS_MASK {
            0 => None,
            ms => Some(since_epoch.saturating_sub(Duration::from_millis(ms - 1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A writer woken inside the first's commit starts before the first's
    /// `stop` runs: that `stop` must leave the second's write timed (it
    /// read idle for the whole second write, and a stop on a slow disk got
    /// no extension from systemd for it).
    #[test]
    fn a_stop_leaves_a_later_start_running() {
        let clock = BusyClock::idle(Instant::now());
        let a = clock.start_at(secs(1));
        let b = clock.start_at(secs(5));
        clock.stop(a);
        assert_eq!(clock.running_for_at(secs(8)), Some(secs(3)));
        clock.stop(b);
        assert_eq!(clock.running_for_at(secs(8)), None);
    }

    /// Two starts in the same millisecond are two starts all the same.
    #[test]
    fn starts_in_the_same_millisecond_are_told_apart() {
        let clock = BusyClock::idle(Instant::now());
        let a = clock.start_at(secs(5));
        let b = clock.start_at(secs(5));
        clock.stop(a);
        assert_eq!(clock.running_for_at(secs(6)), Some(secs(1)));
        clock.stop(b);
        assert_eq!(clock.running_for_at(secs(6)), None);
    }

    #[test]
    fn a_start_at_the_epoch_is_not_idle() {
        let clock = BusyClock::idle(Instant::now());
        let a = clock.start_at(Duration::ZERO);
        assert_eq!(clock.running_for_at(secs(2)), Some(secs(2)));
        clock.stop(a);
        assert_eq!(clock.running_for_at(secs(2)), None);
    }
}
