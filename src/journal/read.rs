//! Reading the journal: pages of events after a seq (bounded by count and by
//! bytes), pages where only the events a filter takes are copied, and
//! counting a range by header without copying any JSON.
//!
//! Guarantees: events come in seq order; what retention removed is skipped;
//! a record that does not decode (damaged on disk) is skipped and logged with
//! its seq, so one bad record cannot hold every reader at it for good; a page
//! redb cannot read (it panics) is `JournalError::Damaged`; the reads for
//! WebSocket clients ([`Journal::read_matching_page_unless_reopening`],
//! [`Journal::count_after`]) never wait for a reopen (`Closed` meanwhile).
//! A filtered page ends where the unfiltered one would (the same count of
//! records, the same bytes of JSON read), so a filter changes what is
//! copied, never where a page ends.

use std::time::{Duration, Instant};

use redb::ReadableDatabase;

use crate::event::HeaderRef;

use super::record::{decode_record, decode_split_record, split_record};
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

    /// As [`Journal::read_page`], but only the events `accept` takes are
    /// decoded and copied; of the others the page holds their seq. And
    /// [`JournalError::Closed`] at once while a reopen runs.
    ///
    /// For WebSocket replays. A filtered client's replay copied every event
    /// of every account (its header's six strings and its JSON) to send a
    /// few; its header is now looked at where it lies. A reopen reads the
    /// whole file (minutes on a slow disk), and a replay waiting it out held
    /// a blocking thread and its client's slot in silence, with no ping,
    /// while the page reconnected every 35 s and parked another: the
    /// blocking pool, which also resolves the upstreams' host names, filled.
    pub fn read_matching_page_unless_reopening(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
        mut accept: impl FnMut(&HeaderRef<'_>) -> bool,
    ) -> Result<MatchingPage, JournalError> {
        let scanned = self.scan_page(
            self.db_unless_reopening()?,
            after,
            limit,
            max_bytes,
            |seq, record| {
                let (header, json_start) = split_record(seq, record)?;
                let entry = if accept(&header) {
                    PageEntry::Matching(Box::new(decode_split_record(
                        seq, record, &header, json_start,
                    )?))
                } else {
                    PageEntry::Passed { seq }
                };
                Ok((entry, record.len() - json_start))
            },
        )?;
        Ok(MatchingPage {
            entries: scanned.items,
            full: scanned.full,
            json_read: scanned.json_read,
        })
    }

    fn read_page_of(
        &self,
        db: std::sync::Arc<redb::Database>,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<JournaledEvent>, JournalError> {
        let scanned = self.scan_page(db, after, limit, max_bytes, |seq, record| {
            let event = decode_record(seq, record)?;
            let json_len = event.json.len();
            Ok((event, json_len))
        })?;
        Ok(scanned.items)
    }

    /// Up to `limit` records after `after`, `decode`d, until those read hold
    /// `max_bytes` of JSON (`decode` says each one's length). Damaged
    /// records are skipped and not counted.
    fn scan_page<T>(
        &self,
        db: std::sync::Arc<redb::Database>,
        after: u64,
        limit: usize,
        max_bytes: usize,
        mut decode: impl FnMut(u64, &[u8]) -> Result<(T, usize), JournalError>,
    ) -> Result<ScannedPage<T>, JournalError> {
        self.read_unless_damaged("events after a seq", || {
            let txn = db.begin_read().map_err(storage)?;
            let log = txn.open_table(EVENTS).map_err(storage)?;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            let at_a_bound = |out: &Vec<T>, bytes: usize| out.len() >= limit || bytes >= max_bytes;
            for entry in log.range(after.saturating_add(1)..).map_err(storage)? {
                if at_a_bound(&out, bytes) {
                    break;
                }
                let (k, v) = entry.map_err(storage)?;
                let Some((item, json_len)) = self.readable(decode(k.value(), v.value()))? else {
                    continue;
                };
                bytes = bytes.saturating_add(json_len);
                out.push(item);
            }
            Ok(ScannedPage {
                full: at_a_bound(&out, bytes),
                items: out,
                json_read: bytes,
            })
        })
    }

    /// Counts the events with `after < seq <= up_to` whose header `accept`
    /// takes, reading at most `max_records` of them. Headers only: no JSON is
    /// copied, so a caller can count a long range in bounded memory. Returns
    /// the count and the seq read through (`up_to` once the range is done;
    /// events retention removed are not counted). [`JournalError::Closed`]
    /// at once while a reopen runs, as [`Journal::read_matching_page_unless_reopening`]:
    /// only WebSocket sessions count.
    pub fn count_after(
        &self,
        after: u64,
        up_to: u64,
        max_records: usize,
        mut accept: impl FnMut(&HeaderRef<'_>) -> bool,
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

/// What [`Journal::scan_page`] read.
struct ScannedPage<T> {
    items: Vec<T>,
    /// A bound was reached (`false`: the page reached the head of the
    /// read's snapshot).
    full: bool,
    /// The JSON of the records read.
    json_read: usize,
}

/// A page read for a filtered reader: every record read, in seq order.
#[derive(Debug)]
pub struct MatchingPage {
    pub entries: Vec<PageEntry>,
    /// The read stopped at its count or its bytes, not at the head of the
    /// journal as its snapshot saw it: there may be more to read.
    pub full: bool,
    /// The JSON of every record read, taken by the filter or not.
    pub json_read: usize,
}

impl MatchingPage {
    /// The JSON of the events it holds: what a client is sent of it.
    #[cfg(test)]
    pub fn json_len(&self) -> usize {
        self.entries.iter().map(PageEntry::json_len).sum()
    }

    /// About the memory it holds: its entries, and of each event decoded
    /// its struct, its header's six strings and its JSON, each allocation
    /// with [`ALLOCATION_ALLOWANCE`] more. A page of 512 events of other
    /// accounts holds 8 KiB in its entries, and no JSON.
    pub fn memory(&self) -> usize {
        let entries = self.entries.capacity() * std::mem::size_of::<PageEntry>();
        let events = self
            .entries
            .iter()
            .map(|e| match e {
                PageEntry::Matching(event) => event_memory(event),
                PageEntry::Passed { .. } => 0,
            })
            .sum::<usize>();
        entries + events
    }
}

/// One record of a [`MatchingPage`].
#[derive(Debug)]
pub enum PageEntry {
    /// An event the filter takes, decoded. Boxed, so that an entry passed
    /// by takes 16 bytes, not an event's 200.
    Matching(Box<JournaledEvent>),
    /// An event it does not take: its seq only, nothing copied.
    Passed { seq: u64 },
}

impl PageEntry {
    pub fn seq(&self) -> u64 {
        match self {
            PageEntry::Matching(event) => event.seq,
            PageEntry::Passed { seq } => *seq,
        }
    }

    /// The JSON it holds in memory.
    #[cfg(test)]
    pub fn json_len(&self) -> usize {
        match self {
            PageEntry::Matching(event) => event.json.len(),
            PageEntry::Passed { .. } => 0,
        }
    }
}

/// What an allocation may take beyond what it was asked for (the
/// allocator's size classes and bookkeeping), counted per allocation.
const ALLOCATION_ALLOWANCE: usize = 16;

/// About the memory a decoded event holds: its box, its header's strings
/// and its JSON, eight allocations.
fn event_memory(event: &JournaledEvent) -> usize {
    let h = &event.header;
    let strings = [&h.id, &h.event_type, &h.source, &h.vendor, &h.account]
        .iter()
        .map(|s| s.len())
        .sum::<usize>()
        + h.subject.as_ref().map_or(0, String::len);
    std::mem::size_of::<JournaledEvent>() + strings + event.json.len() + 8 * ALLOCATION_ALLOWANCE
}

/// How often a damaged record met by a read is said.
pub(super) const UNREADABLE_LOG_INTERVAL: Duration = Duration::from_secs(60);
