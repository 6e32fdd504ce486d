//! The journal's clock: milliseconds since the Unix epoch, read from the
//! system clock once, when the journal opens, and carried forward by the
//! kernel's `CLOCK_BOOTTIME` after that.
//!
//! Why: the dedup window and retention are ages on this clock. On the system
//! clock, a step (an NTP correction, a clock set by hand) moved every age at
//! once: a step forward expired the whole dedup window together, so a
//! vendor's retry just after it was journaled a second time; a step back held
//! every entry for as long as the step, and the index grew. `CLOCK_BOOTTIME`
//! is slewed by NTP like the system clock but never stepped, and unlike the
//! monotonic clock behind `std::time::Instant` it counts time the machine
//! spent suspended, which real time did.
//!
//! Guarantees: never goes backward; starts no earlier than the newest time
//! already stored in the journal within a bound, so a system clock set back
//! across a restart neither stalls the ages of what is stored nor makes new
//! entries look older than old ones; a stored time further ahead than the
//! bound (a clock years off once, a corrupt record) is ignored, so it moves
//! the clock not at all: starting at the bound instead aged every correct
//! entry by the whole bound (`journal.retention`), and the first retention
//! pass expired the dedup window and every delivered event at once. A step forward across a restart
//! cannot be told from time spent stopped, and counts as such.

use rustix::time::{ClockId, clock_gettime};

#[derive(Debug)]
pub(super) struct JournalClock {
    anchor_ms: u64,
    anchor_boot_ms: u64,
    /// Test-only: how far [`JournalClock::advance`] has moved it, so a
    /// test tells a reading before a wait from one after it.
    #[cfg(test)]
    advanced_ms: std::sync::atomic::AtomicU64,
}

/// How a journal's clock starts.
#[derive(Debug, PartialEq, Eq)]
enum Start {
    /// From the system clock.
    System,
    /// From the newest stored time within the bound, this far ahead of the
    /// system clock.
    Stored { ahead_ms: u64 },
}

/// The newest stored time beyond the bound, this far ahead of the system
/// clock: ignored.
#[derive(Debug, PartialEq, Eq)]
struct Ignored {
    ahead_ms: u64,
}

impl JournalClock {
    /// A clock reading `max(wall_ms, the newest of stored_ms)` now, where
    /// only stored times up to `trust_ahead_ms` past `wall_ms` count.
    fn new(
        wall_ms: u64,
        stored_ms: impl IntoIterator<Item = u64>,
        trust_ahead_ms: u64,
    ) -> (JournalClock, Start, Option<Ignored>) {
        let bound = wall_ms.saturating_add(trust_ahead_ms);
        let (mut trusted_ms, mut ignored_ms) = (0, None::<u64>);
        for at_ms in stored_ms {
            if at_ms <= bound {
                trusted_ms = trusted_ms.max(at_ms);
            } else {
                ignored_ms = ignored_ms.max(Some(at_ms));
            }
        }
        let (anchor_ms, start) = if trusted_ms <= wall_ms {
            (wall_ms, Start::System)
        } else {
            let ahead_ms = trusted_ms - wall_ms;
            (trusted_ms, Start::Stored { ahead_ms })
        };
        let clock = JournalClock {
            anchor_ms,
            anchor_boot_ms: boot_ms(),
            #[cfg(test)]
            advanced_ms: std::sync::atomic::AtomicU64::new(0),
        };
        let ignored = ignored_ms.map(|at_ms| Ignored {
            ahead_ms: at_ms - wall_ms,
        });
        (clock, start, ignored)
    }

    /// The clock of a journal opening now, logging where it starts when that
    /// is not the system clock.
    pub fn start(stored_ms: impl IntoIterator<Item = u64>, trust_ahead_ms: u64) -> JournalClock {
        let (clock, start, ignored) = JournalClock::new(super::now_ms(), stored_ms, trust_ahead_ms);
        if let Some(Ignored { ahead_ms }) = ignored {
            tracing::warn!(ahead_ms, "{}", far_ahead_warning(ahead_ms));
        }
        match start {
            Start::System => {}
            Start::Stored { ahead_ms } => tracing::info!(
                ahead_ms,
                "the journal holds times ahead of the system clock (it was set back since, or \
                 is behind now: check `timedatectl`): its clock carries on from them, so dedup \
                 and retention keep their length"
            ),
        }
        clock
    }

    pub fn now_ms(&self) -> u64 {
        self.at(boot_ms()).saturating_add(self.advanced_ms())
    }

    #[cfg(not(test))]
    fn advanced_ms(&self) -> u64 {
        0
    }

    #[cfg(test)]
    fn advanced_ms(&self) -> u64 {
        self.advanced_ms.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Test-only: moves every later reading `ms` forward, as that much time
    /// passing would.
    #[cfg(test)]
    pub fn advance(&self, ms: u64) {
        self.advanced_ms
            .fetch_add(ms, std::sync::atomic::Ordering::AcqRel);
    }

    /// When this clock started: the journal's open.
    pub fn started_ms(&self) -> u64 {
        self.anchor_ms
    }

    fn at(&self, boot_ms: u64) -> u64 {
        self.anchor_ms
            .saturating_add(boot_ms.saturating_sub(self.anchor_boot_ms))
    }
}

/// The time an entry stamped `at_ms` counts its age from, on a clock that
/// reads `now_ms` and started at `started_ms`. The clock never reads later
/// than now, so a stamp after `now_ms` was written by an earlier run whose
/// clock was ahead (a clock years off once, a damaged record): the entry was
/// journaled before this clock started, and its age counts from there.
/// Counted from its own stamp it stayed young until the clock reached it,
/// and retention and dedup expiry, which stop at the first young entry in
/// seq order, kept everything journaled after it too: the dedup index grew
/// without bound (arithmetic audit of 2026-12-02).
pub(super) fn age_from(at_ms: u64, now_ms: u64, started_ms: u64) -> u64 {
    if at_ms > now_ms {
        at_ms.min(started_ms)
    } else {
        at_ms
    }
}

/// The warning of stored times further ahead of the system clock than
/// the bound. The system clock is named first: a machine that boots with
/// it behind (a dead RTC battery, NTP not synchronised yet) is the usual
/// case, and the journal cannot correct it for what else reads it.
fn far_ahead_warning(ahead_ms: u64) -> String {
    let ahead = humantime::format_duration(std::time::Duration::from_secs(ahead_ms / 1_000));
    format!(
        "the journal holds times {ahead} ahead of the system clock, more than \
         journal.retention: either the system clock is behind now (check `timedatectl`: \
         \"System clock synchronized: yes\" and an NTP service active; while it is behind, \
         events' CloudEvent `time` when the vendor sends none, and their Kafka records' \
         CreateTime, come from it), or it was far ahead once, when they were stored, or a \
         damaged record holds them; the stored times are ignored, and entries stamped so \
         count their age from this start"
    )
}

/// Milliseconds of `CLOCK_BOOTTIME`: never stepped, for ages that must
/// not jump with the system clock.
pub fn boot_ms() -> u64 {
    let now = clock_gettime(ClockId::Boottime);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let millis = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000;
    secs.saturating_mul(1_000).saturating_add(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A system clock behind at the start (a dead RTC battery, NTP not yet
    /// synchronised) was blamed on the stored times alone.
    #[test]
    fn stored_times_far_ahead_name_the_system_clock_first() {
        let text = far_ahead_warning(3 * 86_400_000);
        let now = text.find("the system clock is behind now").expect(&text);
        let once = text.find("far ahead once").expect(&text);
        assert!(now < once, "{text}");
        for said in [
            "3days",
            "`timedatectl`",
            "NTP",
            "CloudEvent `time`",
            "when the vendor sends none",
            "Kafka",
            "CreateTime",
            "a damaged record",
        ] {
            assert!(text.contains(said), "{said:?} in {text}");
        }
    }

    #[test]
    fn an_age_counts_from_the_stamp_unless_it_is_ahead_of_now() {
        // Stamped by this run, or before it: its own stamp.
        assert_eq!(age_from(5_000, 9_000, 8_000), 5_000);
        assert_eq!(age_from(8_500, 9_000, 8_000), 8_500);
        assert_eq!(age_from(9_000, 9_000, 8_000), 9_000);
        // Ahead of now: journaled before this clock started.
        assert_eq!(age_from(9_001, 9_000, 8_000), 8_000);
        assert_eq!(age_from(u64::MAX, 9_000, 8_000), 8_000);
        // A caller's `now` before the start (tests with explicit times).
        assert_eq!(age_from(2_000, 1_000, 8_000), 2_000);
    }

    #[test]
    fn it_moves_with_boot_time_from_its_anchor() {
        // An anchor far from the real time: a clock that read the system
        // clock would be off by decades here.
        let (clock, start, ignored) = JournalClock::new(1_000_000, [0], 60_000);
        assert_eq!((start, ignored), (Start::System, None));
        assert_eq!(clock.at(clock.anchor_boot_ms), 1_000_000);
        assert_eq!(clock.at(clock.anchor_boot_ms + 5_250), 1_005_250);
        // A reading from before the anchor is the anchor, never earlier.
        assert_eq!(
            clock.at(clock.anchor_boot_ms.saturating_sub(1_000)),
            1_000_000
        );
        let now = clock.now_ms();
        assert!((1_000_000..1_000_000 + 60_000).contains(&now), "{now}");
    }

    /// The clock's whole worth is that it moves with real time; a boot
    /// time stuck at one value would freeze every age.
    #[test]
    fn boot_time_moves_with_real_time() {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap();
        let outer = std::time::Instant::now();
        let before = boot_ms();
        let inner = std::time::Instant::now();
        // Time passing is the scenario here: there is no event to await.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let inner = ms(inner.elapsed());
        let moved = boot_ms() - before;
        let outer = ms(outer.elapsed());
        // Both readings are cut to whole milliseconds: 1 ms either way.
        assert!(
            moved + 1 >= inner && moved <= outer + 1,
            "moved {moved} ms in {inner}..{outer} ms"
        );
    }

    #[test]
    fn it_starts_from_a_newer_stored_time_up_to_the_bound() {
        let start = |wall, stored: &[u64]| {
            let (clock, start, ignored) = JournalClock::new(wall, stored.iter().copied(), 10_000);
            (clock.anchor_ms, start, ignored)
        };
        assert_eq!(start(9_000, &[5_000]), (9_000, Start::System, None));
        assert_eq!(start(9_000, &[]), (9_000, Start::System, None));
        assert_eq!(
            start(5_000, &[9_000, 3_000]),
            (9_000, Start::Stored { ahead_ms: 4_000 }, None)
        );
        // A corrupt time (or a clock once years ahead) past the bound is
        // ignored: the clock starts from the newest time within it, so the
        // correct entries keep their age (at the bound, every one of them
        // aged by the whole bound at once).
        assert_eq!(
            start(5_000, &[u64::MAX, 6_000]),
            (
                6_000,
                Start::Stored { ahead_ms: 1_000 },
                Some(Ignored {
                    ahead_ms: u64::MAX - 5_000
                })
            )
        );
        assert_eq!(
            start(5_000, &[15_001, 4_000]),
            (5_000, Start::System, Some(Ignored { ahead_ms: 10_001 }))
        );
    }
}
