//! The journal's clock: milliseconds since the Unix epoch, read from the
//! system clock once, when the journal opens, and carried forward by the
//! monotonic clock after that.
//!
//! Why: the dedup window and retention are ages on this clock. On the system
//! clock, a step (an NTP correction, a VM resumed after a pause) moved every
//! age at once: a step forward expired the whole dedup window together, so a
//! vendor's retry just after it was journaled a second time; a step back held
//! every entry for as long as the step, and the index grew. The monotonic
//! clock is slewed by NTP like the system clock but never stepped.
//!
//! Guarantees: never goes backward; starts no earlier than the newest time
//! already stored in the journal, so a system clock set back across a restart
//! neither stalls the ages of what is stored nor makes new entries look older
//! than old ones. A step forward across a restart cannot be told from time
//! spent stopped, and counts as such.

use std::time::Instant;

#[derive(Debug)]
pub(super) struct JournalClock {
    anchor_ms: u64,
    anchor: Instant,
}

impl JournalClock {
    /// A clock reading `max(wall_ms, newest_stored_ms)` now.
    pub fn new(wall_ms: u64, newest_stored_ms: u64) -> JournalClock {
        JournalClock {
            anchor_ms: wall_ms.max(newest_stored_ms),
            anchor: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.at(Instant::now())
    }

    fn at(&self, instant: Instant) -> u64 {
        let elapsed = instant.saturating_duration_since(self.anchor).as_millis();
        self.anchor_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn it_moves_with_the_monotonic_clock_from_its_anchor() {
        // An anchor far from the real time: a clock that read the system
        // clock would be off by decades here.
        let clock = JournalClock::new(1_000_000, 0);
        assert_eq!(clock.at(clock.anchor), 1_000_000);
        assert_eq!(
            clock.at(clock.anchor + Duration::from_millis(5_250)),
            1_005_250
        );
        // An instant before the anchor reads as the anchor, never earlier.
        if let Some(before) = clock.anchor.checked_sub(Duration::from_secs(1)) {
            assert_eq!(clock.at(before), 1_000_000);
        }
        let now = clock.now_ms();
        assert!((1_000_000..1_000_000 + 60_000).contains(&now), "{now}");
    }

    #[test]
    fn it_starts_no_earlier_than_the_newest_stored_time() {
        assert_eq!(JournalClock::new(5_000, 9_000).anchor_ms, 9_000);
        assert_eq!(JournalClock::new(9_000, 5_000).anchor_ms, 9_000);
    }
}
