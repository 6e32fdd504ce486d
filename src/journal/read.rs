//! Reading the journal: pages of events after a seq (bounded by count and by
//! bytes), and counting a range by header without copying any JSON.
//!
//! Guarantees: events come in seq order; what retention removed is skipped;
//! a record that does not decode (damaged on disk) is skipped and logged with
//! its seq, so one bad record cannot hold every reader at it for good; a page
//! redb cannot read (it panics) is `JournalError::Damaged`; the reads for
//! WebSocket clients ([`Journal::read_page_unless_reopening`],
//! [`Journal::count_after`]) never wait for a reopen (`Closed` meanwhile).

use std::time::{Duration, Instant};

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
        self.read_page_of(self.db()?, after, limit, max_bytes)
    }

    /// As [`Journal::read_page`], and [`JournalError::Closed`] at once while a
    /// reopen runs. For WebSocket replays: a reopen reads the whole file
    /// (minutes on a slow disk), and a replay waiting it out held a blocking
    /// thread and its client's slot in silence, with no ping, while the page
    /// reconnected every 35 s and parked another: the blocking pool, which
    /// also resolves the upstreams' host names, filled.
    pub fn read_page_unless_reopening(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<JournaledEvent>, JournalError> {
        self.read_page_of(self.db_unless_reopening()?, after, limit, max_bytes)
    }

    fn read_page_of(
        &self,
        db: std::sync::Arc<redb::Database>,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<JournaledEvent>, JournalError> {
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
                let Some(event) = self.readable(decode_record(k.value(), v.value()))? else {
                    continue;
                };
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
    /// events retention removed are not counted). [`JournalError::Closed`]
    /// at once while a reopen runs, as [`Journal::read_page_unless_reopening`]:
    /// only WebSocket sessions count.
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
        let db = self.db_unless_reopening()?;
        self.read_unless_damaged("event headers", || {
            let txn = db.begin_read().map_err(storage)?;
            let log = txn.open_table(EVENTS).map_err(storage)?;
            let (mut count, mut read, mut through) = (0u64, 0usize, after);
            for entry in log.range(after + 1..=up_to).map_err(storage)? {
                if read >= max_records {
                    return Ok((count, through));
                }
                let (k, v) = entry.map_err(storage)?;
                let split = self.readable(split_record(k.value(), v.value()))?;
                if split.is_some_and(|(header, _)| accept(&header)) {
                    count += 1;
                }
                read += 1;
                through = k.value();
            }
            Ok((count, up_to))
        })
    }

    /// A record's decoding, `None` when the record is damaged: skipped, and
    /// said at most once per [`UNREADABLE_LOG_INTERVAL`]. Until then the Kafka
    /// sink read the same page again for good, and held every event after it.
    fn readable<T>(&self, decoded: Result<T, JournalError>) -> Result<Option<T>, JournalError> {
        match decoded {
            Ok(value) => Ok(Some(value)),
            Err(JournalError::Corrupt { seq }) => {
                let admitted = self
                    .unreadable_log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .admit((), Instant::now());
                if let Some(held_back) = admitted {
                    tracing::error!(seq, path = %self.path.display(), held_back,
                        "journal record {seq} cannot be read (damaged on disk): it is skipped, so sinks and WebSocket clients do not get it");
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// How often a damaged record met by a read is said.
pub(super) const UNREADABLE_LOG_INTERVAL: Duration = Duration::from_secs(60);
