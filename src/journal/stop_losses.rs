//! The count of Voip24h events the last shutdown gave up (received, not
//! journaled within the drain's time), kept in the journal's `meta` table
//! for the next start.
//!
//! Why: a shutdown's loss was counted only in the process that stopped,
//! which is seldom scraped again, so `CallrelayEventsDroppedAtStop` could
//! see a reload's loss but not a shutdown's. The next start takes the count
//! and exports it as `callrelay_ingest_errors_total{reason="dropped_at_last_stop"}`,
//! a series of its own: the stopping process's `dropped_at_stop` is left as
//! it was, so no series goes down across the restart (a first form carried
//! that counter over, and a failed write then read as a reset and a false
//! increase).
//!
//! Guarantees: written once, after the sources have drained, so the
//! sources' stop never waits on it; a start says it and then clears it, so
//! it is said once (again at the next start if the clearing write fails); a
//! write that fails is the caller's to report, and the loss is still in the
//! stopped run's log line. A start killed before its first scrape has said
//! it in its log only.

use super::{Journal, JournalError};

const KEY: &str = "dropped_at_last_stop";

impl Journal {
    /// Adds `count` events the shutdown in progress gave up (to any a
    /// start has not said yet).
    pub fn add_dropped_at_last_stop(&self, count: u64) -> Result<(), JournalError> {
        if count == 0 {
            return Ok(());
        }
        self.change_meta_value(KEY, |kept| kept.saturating_add(count))
            .map(drop)
    }

    /// What the last shutdown gave up and no start has said yet.
    pub fn dropped_at_last_stop(&self) -> Result<u64, JournalError> {
        self.meta_value(KEY)
    }

    /// A start said it: cleared.
    pub fn dropped_at_last_stop_said(&self) -> Result<(), JournalError> {
        self.change_meta_value(KEY, |_| 0).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests_support::options;

    #[test]
    fn the_count_survives_a_reopen_until_it_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(options(dir.path())).unwrap();
        assert_eq!(journal.dropped_at_last_stop().unwrap(), 0);
        journal.add_dropped_at_last_stop(3).unwrap();
        journal.add_dropped_at_last_stop(0).unwrap();
        journal.add_dropped_at_last_stop(4).unwrap();
        drop(journal);
        let journal = Journal::open(options(dir.path())).unwrap();
        assert_eq!(journal.dropped_at_last_stop().unwrap(), 7);
        journal.dropped_at_last_stop_said().unwrap();
        assert_eq!(journal.dropped_at_last_stop().unwrap(), 0);
    }
}
