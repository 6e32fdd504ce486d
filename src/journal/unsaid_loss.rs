//! The count of events `max_size` dropped before a sink had them that no log
//! line has named yet, kept in the journal's `meta` table.
//!
//! Why: the retention pass names such losses at most every 30 s, with the
//! count since its last line, and a relay killed in between took that count
//! with it (the combined-faults audit of 2026-12-01: 2,437 of 41,123 lost
//! events were in no log line, only in the dead process's metric).
//!
//! Guarantees: the count grows in the transaction that drops the events
//! (or, for events dropped while a sink held them, in the one that counts
//! them lost when the sink lets go of them), so it survives any crash; it shrinks only after a line named them, so a
//! crash between the line and the write makes the next start name them
//! again: twice at worst, never not at all.

use redb::Table;

use super::{JournalError, meta_count, storage};

pub(super) const KEY: &str = "undelivered_unsaid";

/// Adds `count` dropped events, inside the dropping transaction.
pub(super) fn add(meta: &mut Table<'_, &'static str, u64>, count: u64) -> Result<(), JournalError> {
    if count == 0 {
        return Ok(());
    }
    let unsaid = meta_count(&*meta, KEY, 0)?;
    meta.insert(KEY, unsaid.saturating_add(count))
        .map_err(storage)?;
    Ok(())
}
