//! The record of events `max_size` dropped while a sink held them in memory:
//! per sink, runs of consecutive seqs (first → last) in the `held_drops`
//! table.
//!
//! Why: such an event is not lost (the sink delivers it from memory), so it
//! is not counted as undelivered when it is dropped; it is lost only if the
//! sink lets go of its memory first (a restart, a recovery that rewinds to
//! its cursor, a reload that removes or restarts the sink). The record survives a restart, so that loss is counted when
//! it happens, once.
//!
//! Guarantees: recording a seq twice records it once; runs the sink's cursor
//! has passed are forgotten (delivered); [`take`] counts the recorded seqs
//! after a cursor and clears the sink's record.

use redb::{ReadableDatabase, ReadableTable, Table};

use super::{HELD_DROPS, JournalError, storage};

type HeldDrops<'txn> = Table<'txn, (&'static str, u64), u64>;

/// The sink's runs, in seq order.
fn runs(table: &HeldDrops<'_>, sink: &str) -> Result<Vec<(u64, u64)>, JournalError> {
    let mut out = Vec::new();
    for entry in table.range((sink, 0)..=(sink, u64::MAX)).map_err(storage)? {
        let (first, last) = entry.map_err(storage)?;
        out.push((first.value().1, last.value()));
    }
    Ok(out)
}

/// Records that `seq` was dropped while `sink` held it.
pub(super) fn record(table: &mut HeldDrops<'_>, sink: &str, seq: u64) -> Result<(), JournalError> {
    let before = table
        .range((sink, 0)..=(sink, seq))
        .map_err(storage)?
        .next_back()
        .transpose()
        .map_err(storage)?
        .map(|(first, last)| (first.value().1, last.value()));
    match before {
        Some((_, last)) if last >= seq => {}
        Some((first, last)) if last.checked_add(1) == Some(seq) => {
            table.insert((sink, first), seq).map_err(storage)?;
        }
        _ => {
            table.insert((sink, seq), seq).map_err(storage)?;
        }
    }
    Ok(())
}

/// Forgets what `sink` has delivered (at or before `cursor`).
pub(super) fn forget_delivered(
    table: &mut HeldDrops<'_>,
    sink: &str,
    cursor: u64,
) -> Result<(), JournalError> {
    for (first, last) in runs(table, sink)? {
        if first > cursor {
            break;
        }
        table.remove((sink, first)).map_err(storage)?;
        if last > cursor {
            table
                .insert((sink, cursor.saturating_add(1)), last)
                .map_err(storage)?;
        }
    }
    Ok(())
}

/// How many recorded seqs of `sink` are after `cursor`; clears its record.
pub(super) fn take(
    table: &mut HeldDrops<'_>,
    sink: &str,
    cursor: u64,
) -> Result<u64, JournalError> {
    let runs = runs(table, sink)?;
    for (first, _) in &runs {
        table.remove((sink, *first)).map_err(storage)?;
    }
    Ok(after(&runs, cursor))
}

/// How many recorded seqs of `sink` are after `cursor`: what it holds only
/// in memory, which a restart would lose.
pub(super) fn count(table: &HeldDrops<'_>, sink: &str, cursor: u64) -> Result<u64, JournalError> {
    Ok(after(&runs(table, sink)?, cursor))
}

/// The seqs of `runs` after `cursor`. Saturating: a damaged run (first
/// after last) counts nothing rather than 2^64 events, or a panic.
fn after(runs: &[(u64, u64)], cursor: u64) -> u64 {
    runs.iter()
        .filter(|(_, last)| *last > cursor)
        .map(|(first, last)| {
            let from = (*first).max(cursor.saturating_add(1));
            last.saturating_add(1).saturating_sub(from)
        })
        .fold(0u64, u64::saturating_add)
}

/// Whether anything is recorded for `sink`.
pub(super) fn any_recorded(
    table: &impl ReadableTable<(&'static str, u64), u64>,
    sink: &str,
) -> Result<bool, JournalError> {
    let first = table
        .range((sink, 0)..=(sink, u64::MAX))
        .map_err(storage)?
        .next();
    Ok(first.is_some())
}

/// Whether nothing is recorded for `sink`, as committed. A sink letting go
/// of its memory asks in its write transaction instead, while writes are
/// taken (see [`crate::journal::Journal::take_held_drops`]).
pub(super) fn none_recorded(db: &redb::Database, sink: &str) -> Result<bool, JournalError> {
    let txn = db.begin_read().map_err(storage)?;
    let table = txn.open_table(HELD_DROPS).map_err(storage)?;
    Ok(!any_recorded(&table, sink)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests_support::in_memory_db;

    fn with_table(test: impl FnOnce(&mut HeldDrops<'_>)) {
        let db = in_memory_db();
        let txn = db.begin_write().unwrap();
        test(&mut txn.open_table(HELD_DROPS).unwrap());
    }

    fn record_all(table: &mut HeldDrops<'_>, sink: &str, seqs: &[u64]) {
        for &seq in seqs {
            record(table, sink, seq).unwrap();
        }
    }

    #[test]
    fn consecutive_seqs_make_one_run_and_a_seq_recorded_twice_counts_once() {
        with_table(|table| {
            record_all(table, "kafka", &[5, 6, 7, 6, 5, 9, 10]);
            record_all(table, "websocket", &[6]);
            assert_eq!(runs(table, "kafka").unwrap(), [(5, 7), (9, 10)]);
            assert_eq!(take(table, "kafka", 0).unwrap(), 5);
            assert_eq!(runs(table, "kafka").unwrap(), []);
            assert_eq!(runs(table, "websocket").unwrap(), [(6, 6)]);
        });
    }

    #[test]
    fn what_the_cursor_passed_is_forgotten_and_the_rest_kept() {
        with_table(|table| {
            record_all(table, "kafka", &[5, 6, 7, 9]);
            forget_delivered(table, "kafka", 4).unwrap();
            assert_eq!(runs(table, "kafka").unwrap(), [(5, 7), (9, 9)]);
            forget_delivered(table, "kafka", 5).unwrap();
            assert_eq!(runs(table, "kafka").unwrap(), [(6, 7), (9, 9)]);
            forget_delivered(table, "kafka", 7).unwrap();
            assert_eq!(runs(table, "kafka").unwrap(), [(9, 9)]);
        });
    }

    #[test]
    fn none_recorded_is_per_sink() {
        let db = in_memory_db();
        let txn = db.begin_write().unwrap();
        record(&mut txn.open_table(HELD_DROPS).unwrap(), "kafka", 3).unwrap();
        txn.commit().unwrap();
        assert!(!none_recorded(&db, "kafka").unwrap());
        assert!(none_recorded(&db, "websocket").unwrap());
    }

    #[test]
    fn take_counts_only_the_seqs_after_the_cursor() {
        with_table(|table| {
            record_all(table, "kafka", &[5, 6, 7, 9]);
            assert_eq!(take(table, "kafka", 6).unwrap(), 2);
            record_all(table, "kafka", &[5, 6, 7, 9]);
            assert_eq!(take(table, "kafka", 9).unwrap(), 0);
            assert_eq!(runs(table, "kafka").unwrap(), []);
        });
    }
}
