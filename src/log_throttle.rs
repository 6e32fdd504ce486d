//! At most one log line per key and interval for things that repeat: a
//! webhook refused again and again, an error librdkafka reports on every
//! connection attempt. Without it a misconfigured vendor or an unreachable
//! broker buries the log; with it the first occurrence is logged at once and
//! the next line says how many were held back in between.
//!
//! Guarantees: the first occurrence of a key is admitted; a later one is
//! admitted once `interval` has passed since the key was last admitted, with
//! the number held back since; keys are independent. Memory grows with the
//! number of distinct keys, so callers use keys from a small fixed set, or
//! bound them ([`LogThrottle::forget_due`], which returns the counts of the
//! keys it forgets with occurrences held back, for the caller to say).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Per-key admission of log lines.
#[derive(Debug)]
pub struct LogThrottle<K> {
    interval: Duration,
    keys: HashMap<K, Seen>,
}

#[derive(Debug)]
struct Seen {
    admitted_at: Instant,
    /// When it last occurred, admitted or not: how long it has been quiet.
    seen_at: Instant,
    held_back: u64,
}

/// The keys [`LogThrottle::forget_due`] forgot with occurrences held back,
/// and how many: no line of theirs will say it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    pub keys: u64,
    pub held_back: u64,
}

impl<K: Hash + Eq> LogThrottle<K> {
    pub fn new(interval: Duration) -> LogThrottle<K> {
        LogThrottle {
            interval,
            keys: HashMap::new(),
        }
    }

    /// How many keys it remembers.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `key` is remembered.
    pub fn knows(&self, key: &K) -> bool {
        self.keys.contains_key(key)
    }

    /// Forgets the keys whose interval has passed since they were last
    /// admitted and that held nothing back since, to bound the keys
    /// remembered: each one's next occurrence is admitted all the same, as
    /// a new key's. One that held occurrences back is kept, so that its next
    /// line says how many rather than 0, as if it had not repeated; but only
    /// until it has not occurred for `horizon`: keys that stop for good
    /// (a broker thread's, after its address changed) would otherwise stay
    /// forever. Those are returned, for the caller to say their count.
    pub fn forget_due(&mut self, now: Instant, horizon: Duration) -> Forgotten {
        let interval = self.interval;
        let mut forgotten = Forgotten::default();
        self.keys.retain(|_, seen| {
            if seen.held_back == 0 {
                return now.saturating_duration_since(seen.admitted_at) < interval;
            }
            if now.saturating_duration_since(seen.seen_at) < horizon {
                return true;
            }
            forgotten.keys += 1;
            forgotten.held_back += seen.held_back;
            false
        });
        forgotten
    }

    /// `Some(held_back)` when this occurrence of `key`, at `now`, is to be
    /// logged; `None` when it is held back.
    pub fn admit(&mut self, key: K, now: Instant) -> Option<u64> {
        match self.keys.get_mut(&key) {
            Some(seen) if now.saturating_duration_since(seen.admitted_at) < self.interval => {
                seen.seen_at = seen.seen_at.max(now);
                seen.held_back += 1;
                None
            }
            Some(seen) => {
                seen.admitted_at = now;
                seen.seen_at = now;
                Some(std::mem::take(&mut seen.held_back))
            }
            None => {
                self.keys.insert(
                    key,
                    Seen {
                        admitted_at: now,
                        seen_at: now,
                        held_back: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

/// A [`LogThrottle`] shared by the tasks of one source (a session's
/// receive loop and its deliveries), admitting at the present instant.
#[derive(Debug)]
pub struct SharedLogThrottle<K>(std::sync::Mutex<LogThrottle<K>>);

impl<K: Hash + Eq> SharedLogThrottle<K> {
    pub fn new(interval: Duration) -> SharedLogThrottle<K> {
        SharedLogThrottle(std::sync::Mutex::new(LogThrottle::new(interval)))
    }

    /// As [`LogThrottle::admit`], now.
    pub fn admit_now(&self, key: K) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(key, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(30);
    const HORIZON: Duration = Duration::from_secs(300);

    #[test]
    fn a_repeat_is_admitted_again_after_the_interval_with_what_was_held_back() {
        let mut log = LogThrottle::new(INTERVAL);
        let t0 = Instant::now();
        assert_eq!(log.admit("a", t0), Some(0));
        assert_eq!(log.admit("a", t0), None);
        assert_eq!(
            log.admit("a", t0 + INTERVAL - Duration::from_millis(1)),
            None
        );
        assert_eq!(log.admit("a", t0 + INTERVAL), Some(2));
        // The count starts over from the occurrence just admitted.
        let t1 = t0 + INTERVAL;
        assert_eq!(log.admit("a", t1), None);
        assert_eq!(log.admit("a", t1 + INTERVAL), Some(1));
    }

    #[test]
    fn keys_are_independent() {
        let mut log = LogThrottle::new(INTERVAL);
        assert!(log.is_empty());
        let t0 = Instant::now();
        assert_eq!(log.admit(("tel4vn", 401), t0), Some(0));
        assert_eq!(log.admit(("tel4vn", 400), t0), Some(0));
        // Callers bound their keys by this count.
        assert_eq!(log.len(), 2);
        assert!(!log.is_empty());
        assert_eq!(log.admit(("voipex", 401), t0), Some(0));
        assert_eq!(log.admit(("tel4vn", 401), t0), None);
        assert_eq!(log.admit(("tel4vn", 400), t0), None);
    }

    /// Forgetting every due key lost the count of one that held lines back:
    /// its next line said `held_back` 0, a line repeating all along read as
    /// a one-off.
    #[test]
    fn forgetting_due_keys_keeps_those_that_held_lines_back() {
        let mut log = LogThrottle::new(INTERVAL);
        let t0 = Instant::now();
        log.admit("once", t0);
        log.admit("recent", t0 + Duration::from_secs(1));
        log.admit("repeating", t0);
        log.admit("repeating", t0);
        assert_eq!(log.forget_due(t0 + INTERVAL, HORIZON), Forgotten::default());
        assert!(!log.knows(&"once"));
        assert!(log.knows(&"recent"), "not due yet");
        assert!(log.knows(&"repeating"));
        assert_eq!(log.admit("repeating", t0 + INTERVAL), Some(1));
        // Once its count is said, it is forgotten when due like any other.
        log.forget_due(t0 + 2 * INTERVAL, HORIZON);
        assert!(!log.knows(&"repeating"));
    }

    /// Keeping every key that held lines back until its next line kept
    /// those whose next line never came, for good.
    #[test]
    fn a_key_that_held_lines_back_is_forgotten_once_quiet_for_the_horizon() {
        let mut log = LogThrottle::new(INTERVAL);
        let t0 = Instant::now();
        log.admit("stopped", t0);
        log.admit("stopped", t0);
        log.admit("stopped", t0 + Duration::from_secs(10));
        log.admit("recurring", t0);
        log.admit("recurring", t0);
        let t1 = t0 + Duration::from_secs(10) + HORIZON;
        log.admit("recurring", t1 - Duration::from_secs(1));
        log.admit("recurring", t1 - Duration::from_secs(1));
        assert_eq!(
            log.forget_due(t1 - Duration::from_secs(1), HORIZON),
            Forgotten::default(),
            "quiet for less than the horizon"
        );
        assert_eq!(
            log.forget_due(t1, HORIZON),
            Forgotten {
                keys: 1,
                held_back: 2
            }
        );
        assert!(!log.knows(&"stopped"));
        assert!(log.knows(&"recurring"));
    }

    #[test]
    fn a_clock_that_seems_to_go_back_holds_back_rather_than_panics() {
        let mut log = LogThrottle::new(INTERVAL);
        let t0 = Instant::now() + INTERVAL;
        assert_eq!(log.admit(1, t0), Some(0));
        assert_eq!(log.admit(1, t0 - Duration::from_secs(1)), None);
    }
}
