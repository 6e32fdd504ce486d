//! Reading the journal: pages of events after a seq (bounded by count and by
//! bytes), and counting a range by header without copying any JSON.
//!
//! Guarantees: events come in seq order; what retention removed is skipped;
//! a record that does not decode is `JournalError::Corrupt` with its seq, and
//! a page redb cannot read (it panics) is `JournalError::Damaged`.

use redb::ReadableDatabase;

use crate::event::EventHeader;

use super::record::{decode_record, split_record};
use super::{EVENTS, Journal, JournalError, JournaledEvent, storage};

impl Journal {
    /// Up to `limit` events with `seq > after`, in seq order.
    pub fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournaledEvent>, JournalError> {
        self.read_page(after, limit, usize::MAX)
    }

    /// As [`Journal::read_after`], and stops once the events read hold
    /// `max_bytes` of JSON (always reading at least one): a reader that
    /// holds a page until a slow client takes it holds a bounded amount
    /// whatever the events' sizes.
    pub fn read_page(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<JournaledEvent>, JournalError> {
        let db = self.db()?;
        self.read_unless_damaged("events after a seq", || {
            let txn = db.begin_read().map_err(storage)?;
            let log = txn.open_table(EVENTS).map_err(storage)?;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for entry in log.range(after.saturating_add(1)..).map_err(storage)? {
                if out.len() >= limit || bytes >= max_bytes {
                    break;
                }
                let (k, v) = entry.map_err(storage)?;
                let event = decode_record(k.value(), v.value())?;
                bytes = bytes.saturating_add(event.json.len());
                out.push(event);
            }
            Ok(out)
        })
    }

    /// Counts the events with `after < seq <= up_to` whose header `accept`
    /// takes, reading at most `max_records` of them. Headers only: no JSON is
    /// copied, so a caller can count a long range in bounded memory. Returns
    /// the count and the seq read through (`up_to` once the range is done;
    /// events retention removed are not counted).
    pub fn count_after(
        &self,
        after: u64,
        up_to: u64,
        max_records: usize,
        mut accept: impl FnMut(&EventHeader) -> bool,
    ) -> Result<(u64, u64), JournalError> {
        if after >= up_to {
            return Ok((0, up_to));
        }
        let db = self.db()?;
        self.read_unless_damaged("event headers", || {
            let txn = db.begin_read().map_err(storage)?;
            let log = txn.open_table(EVENTS).map_err(storage)?;
            let (mut count, mut read, mut through) = (0u64, 0usize, after);
            for entry in log.range(after + 1..=up_to).map_err(storage)? {
                if read >= max_records {
                    return Ok((count, through));
                }
                let (k, v) = entry.map_err(storage)?;
                let (header, _) = split_record(k.value(), v.value())?;
                if accept(&header) {
                    count += 1;
                }
                read += 1;
                through = k.value();
            }
            Ok((count, up_to))
        })
    }
}
