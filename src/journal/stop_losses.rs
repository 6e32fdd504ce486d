//! The count of events a stop gave up (Voip24h `response`s received and not
//! journaled within the drain's time), kept in the journal's `meta` table
//! across restarts.
//!
//! Why: `callrelay_ingest_errors_total{reason="dropped_at_stop"}` moved in
//! the process that stopped, which after a `systemctl stop` is seldom
//! scraped again, so `CallrelayEventsDroppedAtStop` could not see a loss at
//! a shutdown, only at a reload. The next start exports the kept total, so
//! Prometheus sees the counter rise across the restart.
//!
//! Guarantees: the count only grows; a write that fails (the journal is
//! often failing when a stop gives events up) is the caller's to report,
//! and the loss is still in the stopping process's metric and log line.

use redb::ReadableDatabase;

use super::{Journal, JournalError, META, meta_count, storage};

const KEY: &str = "dropped_at_stop";

impl Journal {
    /// Adds `count` events a stop gave up; durable, since a stop follows.
    pub fn add_dropped_at_stop(&self, count: u64) -> Result<(), JournalError> {
        if count == 0 {
            return Ok(());
        }
        let (_db, txn) = self.begin_state_write(true)?;
        {
            let mut meta = txn.open_table(META).map_err(storage)?;
            let total = meta_count(&meta, KEY, 0)?;
            meta.insert(KEY, total.saturating_add(count))
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(())
    }

    /// Every event stops gave up since the journal was made.
    pub fn dropped_at_stop(&self) -> Result<u64, JournalError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        meta_count(&meta, KEY, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests_support::options;

    #[test]
    fn the_count_grows_and_is_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(options(dir.path())).unwrap();
        assert_eq!(journal.dropped_at_stop().unwrap(), 0);
        journal.add_dropped_at_stop(3).unwrap();
        journal.add_dropped_at_stop(0).unwrap();
        journal.add_dropped_at_stop(4).unwrap();
        drop(journal);
        let journal = Journal::open(options(dir.path())).unwrap();
        assert_eq!(journal.dropped_at_stop().unwrap(), 7);
    }
}
