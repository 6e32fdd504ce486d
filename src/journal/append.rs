//! Appending events: one durable transaction per batch, the dedup window
//! applied within the batch and against the index, seqs handed out in order.
//!
//! Guarantees: an event whose id was journaled within `dedup.window` before
//! this copy was received (judged as of its receipt, not its commit), or
//! earlier in the same batch, is answered with the seq it has, not
//! journaled again; a batch is stamped (its records' `journaled_at_ms`, its
//! dedup entries) when it has the write transaction, not when it began to
//! wait for it, so its window is never shorter than configured; the log,
//! the dedup log and the counts are written in one transaction, and the
//! in-memory index and figures change only once it has committed; a seq is
//! never at or below one already handed out, whatever a damaged count
//! says; a batch's records share one buffer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::dedup::{self, Seen};
use super::record::{encode_record_head, record_len_hint};
use super::{
    AppendOutcome, DEDUP_LOG, EVENTS, Journal, JournalError, JournaledEvent, META, meta_count,
    storage,
};
use crate::event::{EventHeader, EventId, IncomingEvent, PreparedEvent};

impl Journal {
    /// Appends `events` in one durable transaction, skipping those whose id was
    /// journaled within the dedup window (also earlier in the same batch).
    pub fn append_batch(
        &self,
        events: &[IncomingEvent],
    ) -> Result<Vec<AppendOutcome>, JournalError> {
        let mut prepared: Vec<PreparedEvent> = events.iter().map(PreparedEvent::new).collect();
        self.append_prepared(&mut prepared)
    }

    /// `append_batch` with an explicit clock, for tests of the dedup window.
    pub fn append_batch_at(
        &self,
        events: &[IncomingEvent],
        now_ms: u64,
    ) -> Result<Vec<AppendOutcome>, JournalError> {
        let mut prepared: Vec<PreparedEvent> = events.iter().map(PreparedEvent::new).collect();
        self.append_prepared_at(&mut prepared, now_ms)
    }

    /// `append_batch` of events already prepared (id, header and JSON built),
    /// which is all the ingest writer does per event. The headers of the
    /// appended events move into the outcomes (duplicates keep theirs).
    pub fn append_prepared(
        &self,
        events: &mut [PreparedEvent],
    ) -> Result<Vec<AppendOutcome>, JournalError> {
        self.append_prepared_reading(events, || self.clock.now_ms(), super::now_ms)
    }

    pub fn append_prepared_at(
        &self,
        events: &mut [PreparedEvent],
        now_ms: u64,
    ) -> Result<Vec<AppendOutcome>, JournalError> {
        self.append_prepared_reading(events, || now_ms, super::now_ms)
    }

    /// `append_batch_at` with the system clock read as `wall_now_ms` too, so
    /// how long each copy was held is exact: the model test's grid of times
    /// held its edges half a unit (5 s) off, and a stall of the machine (a
    /// paused VM, a step of the clock) between making a copy and appending
    /// it moves a receipt across one: a cause of its one CI failure
    /// (2026-12-07; the failing case was not printed), its only reading of
    /// a machine clock that reached a judgement.
    #[cfg(test)]
    pub(crate) fn append_batch_at_wall(
        &self,
        events: &[IncomingEvent],
        now_ms: u64,
        wall_now_ms: u64,
    ) -> Result<Vec<AppendOutcome>, JournalError> {
        let mut prepared: Vec<PreparedEvent> = events.iter().map(PreparedEvent::new).collect();
        self.append_prepared_reading(&mut prepared, || now_ms, || wall_now_ms)
    }

    /// `append_prepared` on the journal clock `now_ms` reads, read once the
    /// write transaction is the batch's, and the system clock `wall_now_ms`
    /// reads, where each copy's receipt was read (`at_receipt`).
    pub(super) fn append_prepared_reading(
        &self,
        events: &mut [PreparedEvent],
        now_ms: impl FnOnce() -> u64,
        wall_now_ms: impl FnOnce() -> u64,
    ) -> Result<Vec<AppendOutcome>, JournalError> {
        self.refuse_if_file_gone()?;
        let window_ms = self.options.dedup_window.as_millis() as u64;
        // What this batch journals, for duplicates within it and for the
        // index once the commit has succeeded.
        let mut fresh: HashMap<EventId, Seen> = HashMap::with_capacity(events.len());
        // Every record of the batch goes into one buffer, which the sinks'
        // copies of the JSON then share: one allocation per batch, not per event.
        let mut records = Vec::with_capacity(events.iter().map(record_len_hint).sum());
        let mut pending = Vec::with_capacity(events.len());
        let db = self.db()?;
        let (_writing, txn) = self.begin_write(&db).map_err(storage)?;
        // Read once the transaction is ours: a retention chunk may have held
        // it for minutes, and entries stamped before that wait expired early
        // by it, so a resend in the window's last slice was journaled again.
        let now_ms = now_ms();
        let wall_now_ms = wall_now_ms();
        let (last, bytes) = {
            let index = self.dedup_index();
            let mut log = txn.open_table(EVENTS).map_err(storage)?;
            let mut dedup_log = txn.open_table(DEDUP_LOG).map_err(storage)?;
            let mut meta = txn.open_table(META).map_err(storage)?;
            // Never at or below a seq already handed out, whatever a damaged
            // count says: `last_seq` covers the events held when the file
            // was opened (`refresh_stats`) and every seq since, also those
            // retention removed (the sinks' cursors are past them).
            let after_handed_out = self.last_seq.load(Ordering::Acquire).saturating_add(1);
            let mut next = meta_count(&meta, "next_seq", 1)?.max(after_handed_out);
            let mut bytes = meta_count(&meta, "bytes", 0)?;
            for event in events.iter_mut() {
                let id = event.id;
                let earlier = fresh.get(&id).map(|seen| seen.seq).or_else(|| {
                    index.within_window(&id, at_receipt(event, now_ms, wall_now_ms), window_ms)
                });
                if let Some(seq) = earlier {
                    pending.push(Pending::Duplicate { id, seq });
                    continue;
                }
                let seq = next;
                next = next.checked_add(1).ok_or_else(|| JournalError::Damaged {
                    path: self.path.clone(),
                    what: "the next seq (at its largest value)",
                })?;
                let mut header = std::mem::take(&mut event.header);
                header.seq = seq;
                let start = records.len();
                encode_record_head(&mut records, now_ms, event.received_at_ms, &header);
                let json_start = records.len();
                event.write_json(seq, &mut records);
                let record = &records[start..];
                log.insert(seq, record).map_err(storage)?;
                let seen = Seen { seq, at_ms: now_ms };
                dedup::insert_entry(&mut dedup_log, &id, seen)?;
                fresh.insert(id, seen);
                // Saturating: `bytes` began as a counter read from the disk,
                // which a damaged file may hold near u64::MAX.
                bytes = bytes.saturating_add(record.len() as u64);
                pending.push(Pending::Appended {
                    received_at_ms: event.received_at_ms,
                    header,
                    json: json_start..records.len(),
                });
            }
            meta.insert("next_seq", next).map_err(storage)?;
            meta.insert("bytes", bytes).map_err(storage)?;
            (next - 1, bytes)
        };
        txn.commit().map_err(storage)?;
        self.dedup_index().extend(fresh);
        self.last_seq.store(last, Ordering::Release);
        self.bytes.store(bytes, Ordering::Release);
        // `first_seq` needs no update: an empty journal's is already
        // `last_seq + 1`, the seq its first appended event gets.
        let records = Bytes::from(records);
        let outcomes = pending
            .into_iter()
            .map(|p| match p {
                Pending::Duplicate { id, seq } => AppendOutcome::Duplicate { id, seq },
                Pending::Appended {
                    received_at_ms,
                    header,
                    json,
                } => AppendOutcome::Appended(JournaledEvent {
                    seq: header.seq,
                    journaled_at_ms: now_ms,
                    received_at_ms,
                    header,
                    json: records.slice(json),
                }),
            })
            .collect();
        Ok(outcomes)
    }
}

/// One event of a batch being appended, until the batch's buffer is frozen.
enum Pending {
    Duplicate {
        id: EventId,
        seq: u64,
    },
    Appended {
        received_at_ms: u64,
        header: EventHeader,
        /// Where its JSON lies in the batch's buffer.
        json: std::ops::Range<usize>,
    },
}

/// The journal's clock when `event` was received: a copy is judged against
/// the window as it stood then, not when its commit finally lands. A copy a
/// source held in its retry loop through a commit outage longer than the
/// window (a second SSE stream's copy, a Voip24h group whose webhook copy
/// was committed just before the outage) was journaled again, the vendor
/// having sent it once. How long it was held is read on the system clock,
/// where `received_at_ms` is; a step of that clock meanwhile moves it, and
/// a copy from the future (a step back) counts as received now.
fn at_receipt(event: &PreparedEvent, now_ms: u64, wall_now_ms: u64) -> u64 {
    now_ms.saturating_sub(wall_now_ms.saturating_sub(event.received_at_ms))
}
