//! Retention: what `retention` and `max_size` remove from the journal, and
//! how each removed event is counted (expired, dropped after delivery,
//! dropped while a sink held it in memory, dropped undelivered).
//!
//! Guarantees: only events every active sink has passed expire; `max_size`
//! removes oldest first and counts what no sink had, in the same transaction
//! as the removal (so the count survives a kill); dedup entries expire a
//! minute after their window whether or not their event is still held, not
//! while the relay holds their expiry ([`Journal::hold_dedup_expiry`]) nor
//! in a chunk a stop ended (left to the next pass; a lookup judges an
//! entry's age itself, so one kept longer answers nothing), and
//! leave the in-memory index only once the pass's transaction committed;
//! a pass that fails (a panic in redb too) hands back what its committed
//! chunks removed, with its error; no chunk commits once the file is found
//! gone (looked at before each and before its commit); a pass told to end
//! ([`Journal::enforce_retention_while`]) reads no further record, and
//! commits what its chunk removed so far.

use std::sync::atomic::Ordering;

use redb::ReadableTable;

use super::clock;
use super::dedup::{self, DEDUP_LOG};
use super::record::record_time;
use super::{
    ActiveSink, EVENTS, HELD_DROPS, Journal, JournalError, META, RetentionReport, held_drop,
    meta_count, storage, unsaid_loss,
};

/// Deletions per transaction, so retention never holds the writer for long.
pub(super) const RETENTION_CHUNK: usize = 5_000;

/// How long a dedup entry outlives its window (see `enforce_retention_reading`).
pub const EXPIRY_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// A pass that failed: what the chunks it committed before removed, and
/// why it failed (boxed: the pair is larger than a pass's report).
pub type FailedPass = Box<(RetentionReport, JournalError)>;

impl Journal {
    /// Holds the dedup log's expiry (`true`) or lets it go on: the relay
    /// holds it while commits fail and for [`EXPIRY_GRACE`] after they
    /// succeed again, so that a copy a source held in its retry loop
    /// through the outage, judged as of its receipt, still finds the entry
    /// of the copy journaled before it, for an outage of up to an hour (the
    /// retention loop's bound: what commits meanwhile stays in the index
    /// until the hold is let go).
    pub fn hold_dedup_expiry(&self, held: bool) {
        self.dedup_expiry_held.store(held, Ordering::Release);
    }

    /// Removes what retention and `max_size` allow. `active_sinks` are the
    /// sinks configured now: their cursors hold events back from retention.
    /// An event `max_size` drops while a sink holds it in memory is not
    /// counted as undelivered: it is recorded, and counted only if the sink
    /// lets go of its memory before delivering it
    /// ([`Journal::take_held_drops`]).
    ///
    /// A pass that fails hands back, beside its error, what the chunks it
    /// committed before removed: those events are gone from the file all
    /// the same, and their loss is on the journal's unsaid count, for the
    /// caller to count and say as a pass's.
    pub fn enforce_retention(
        &self,
        active_sinks: &[ActiveSink<'_>],
    ) -> Result<RetentionReport, FailedPass> {
        self.enforce_retention_while(active_sinks, || true)
    }

    /// [`Journal::enforce_retention`], ending once `go_on` turns false,
    /// with what it removed so far committed (the next pass goes on from
    /// there): looked at before each chunk and each record of it. A pass
    /// that removes a long outage's events is hundreds of chunks, an fsync
    /// each: a stop waited for all of it, past systemd's stop timeout, and
    /// the kill meant a check of the whole journal at the next start; and
    /// one chunk of cold records reads for minutes.
    pub fn enforce_retention_while(
        &self,
        active_sinks: &[ActiveSink<'_>],
        go_on: impl Fn() -> bool,
    ) -> Result<RetentionReport, FailedPass> {
        self.enforce_retention_reading(active_sinks, || self.clock.now_ms(), go_on)
    }

    /// [`Journal::enforce_retention`] at a fixed time, for tests.
    pub fn enforce_retention_at(
        &self,
        active_sinks: &[ActiveSink<'_>],
        now_ms: u64,
    ) -> Result<RetentionReport, FailedPass> {
        self.enforce_retention_reading(active_sinks, || now_ms, || true)
    }

    /// The pass, judging each chunk by `now_ms()` read once the chunk's
    /// write transaction is open. Read once for the whole pass, an entry the
    /// writer stamped after that reading and committed before a chunk began
    /// looked stamped ahead of the clock, which is how an earlier run's
    /// entries look: aged from the clock's start, it expired at once once the
    /// relay had run for a window, and the event's retry was journaled again.
    /// Read inside the transaction, every committed stamp is at or before it.
    pub(super) fn enforce_retention_reading(
        &self,
        active_sinks: &[ActiveSink<'_>],
        now_ms: impl Fn() -> u64,
        go_on: impl Fn() -> bool,
    ) -> Result<RetentionReport, FailedPass> {
        let mut report = RetentionReport::default();
        // redb panics on some damaged pages, and the pass reads through its
        // own calls: a panic after a chunk committed took that chunk's
        // counts with the task, as a failure's `?` did (review, 2026-12-06).
        let chunks = super::damaged_on_panic(
            || self.retention_chunks(active_sinks, now_ms, go_on, &mut report),
            || JournalError::Damaged {
                path: self.path.clone(),
                what: "the events a retention pass removes",
            },
        );
        match chunks {
            Ok(()) => Ok(report),
            Err(e) => Err(Box::new((report, e))),
        }
    }

    /// The pass's chunks, each chunk's counts added to `report` once it
    /// committed, so that a chunk failing after others committed leaves
    /// theirs in it.
    fn retention_chunks(
        &self,
        active_sinks: &[ActiveSink<'_>],
        now_ms: impl Fn() -> u64,
        go_on: impl Fn() -> bool,
        report: &mut RetentionReport,
    ) -> Result<(), JournalError> {
        self.refuse_if_file_gone()?;
        let retention_ms = self.options.retention.as_millis() as u64;
        // Entries are kept a minute past the window: a copy a source held
        // through a commit outage is judged as of its receipt (`append`), and
        // lands seconds after the journal takes commits again, when a pass
        // may come first.
        let window_ms = (self.options.dedup_window + EXPIRY_GRACE).as_millis() as u64;
        let clock_started_ms = self.clock.started_ms();
        // With no sink nothing waits for delivery, also an event committed
        // after this read: from `last_seq`, such an event dropped for
        // `max_size` in this pass was "held by every sink" (there being
        // none), logged as held by a Kafka sink that is not configured and
        // counted in no metric.
        let mut delivered_up_to = if active_sinks.is_empty() {
            u64::MAX
        } else {
            self.last_seq()
        };
        // Per sink: its cursor (a cursor that moves on meanwhile only makes
        // the pass count a drop as lost that was delivered, never the
        // reverse).
        let mut sinks = Vec::with_capacity(active_sinks.len());
        for sink in active_sinks {
            let cursor = self.cursor(sink.name)?.unwrap_or(0);
            delivered_up_to = delivered_up_to.min(cursor);
            sinks.push((sink.name, cursor, &sink.held_up_to));
        }
        loop {
            if !go_on() {
                return Ok(());
            }
            // Looked at before every chunk, not once a pass: a pass over a
            // long outage's events runs for minutes, and went on committing
            // into a file found gone meanwhile, under the copy the operator
            // is told to take of it (see `Journal::file_gone`).
            self.refuse_if_found_gone()?;
            let mut chunk = RetentionReport::default();
            let db = self.db()?;
            let (mut writing, txn) = self.begin_write(&db).map_err(storage)?;
            let now_ms = now_ms();
            // What each sink holds, read once the transaction is ours: a
            // sink that lets go of its memory counts the held drops in a
            // write transaction too, so either that count comes after this
            // one commits and sees what it records, or it came before and
            // this reads the hold it left.
            let held: Vec<u64> = sinks
                .iter()
                .map(|(_, cursor, held)| held.load(Ordering::Acquire).max(*cursor))
                .collect();
            // Whether every sink that has not delivered `seq` holds it in memory.
            let held_by_all = |seq: u64| {
                sinks
                    .iter()
                    .zip(&held)
                    .filter(|((_, cursor, _), _)| *cursor < seq)
                    .all(|(_, held)| seq <= *held)
            };
            let (removed, done, bytes, expired) = {
                let mut log = txn.open_table(EVENTS).map_err(storage)?;
                let mut dedup_log = txn.open_table(DEDUP_LOG).map_err(storage)?;
                let mut meta = txn.open_table(META).map_err(storage)?;
                let mut bytes = meta_count(&meta, "bytes", 0)?;
                let mut held_drops = txn.open_table(HELD_DROPS).map_err(storage)?;
                for (name, cursor, _) in &sinks {
                    held_drop::forget_delivered(&mut held_drops, name, *cursor)?;
                }
                let mut removed = 0usize;
                let mut done = true;
                loop {
                    // A stop ends the chunk here, with what it removed so
                    // far: 5 000 cold records read for minutes, while the
                    // stop's last commits and the close waited behind them.
                    if !go_on() {
                        done = false;
                        break;
                    }
                    let oldest = log
                        .first()
                        .map_err(storage)?
                        .map(|(k, v)| (k.value(), v.value().to_vec()));
                    let Some((seq, record)) = oldest else {
                        break;
                    };
                    if removed >= RETENTION_CHUNK {
                        done = false;
                        break;
                    }
                    // A record damaged on disk has no time to read, and no
                    // one can read it: it goes once delivered past (an error
                    // here stopped every pass, and the file grew without
                    // bound; aged from the clock's start, it held expiry
                    // back for `retention` after every start).
                    let stamped = record_time(seq, &record).unwrap_or(0);
                    let journaled_at = clock::age_from(stamped, now_ms, clock_started_ms);
                    let expired = now_ms.saturating_sub(journaled_at) >= retention_ms
                        && seq <= delivered_up_to;
                    let over_size = bytes > self.options.max_size;
                    if !expired && !over_size {
                        break;
                    }
                    if expired {
                        chunk.expired += 1;
                    } else if seq <= delivered_up_to {
                        chunk.dropped_delivered += 1;
                    } else if held_by_all(seq) {
                        chunk.dropped_held += 1;
                        for (name, cursor, _) in &sinks {
                            if *cursor < seq {
                                held_drop::record(&mut held_drops, name, seq)?;
                            }
                        }
                    } else {
                        chunk.dropped_undelivered += 1;
                    }
                    log.remove(seq).map_err(storage)?;
                    bytes = bytes.saturating_sub(record.len() as u64);
                    removed += 1;
                }
                // Dedup entries expire with the window, whether or not their
                // event is still held (`max_size` may have dropped it); not
                // while expiry is held (`hold_dedup_expiry`), nor at a stop
                // (its reads are as slow as the records'; the next pass's).
                let expired = if self.dedup_expiry_held.load(Ordering::Acquire) || !go_on() {
                    Vec::new()
                } else {
                    dedup::expire(
                        &mut dedup_log,
                        now_ms,
                        clock_started_ms,
                        window_ms,
                        RETENTION_CHUNK,
                    )
                    .map_err(|e| e.in_dedup_index(&self.path))?
                };
                if expired.len() == RETENTION_CHUNK {
                    done = false;
                }
                let mut held_in_memory = 0u64;
                for (name, cursor, _) in &sinks {
                    let held = held_drop::count(&held_drops, name, *cursor)?;
                    held_in_memory = held_in_memory.saturating_add(held);
                }
                chunk.held_in_memory = held_in_memory;
                meta.insert("bytes", bytes).map_err(storage)?;
                unsaid_loss::add(&mut meta, chunk.dropped_undelivered)?;
                (removed, done, bytes, expired)
            };
            // Again before the commit: a chunk of cold records can read
            // for minutes, and its commit went into a file found gone
            // meanwhile (dropped, the transaction removes nothing).
            self.refuse_if_found_gone()?;
            // Timed on its own from here, as ingest's commit is: counted
            // with the reads before it, which have ended, a chunk of cold
            // records passed the 2 minutes after which a stop takes a write
            // for a hung disk and asks systemd for no more time.
            writing.restart();
            txn.commit().map_err(storage)?;
            drop(writing);
            report.add_chunk(&chunk);
            self.dedup_index().forget_expired(&expired);
            // Let go before `refresh_stats` asks for the database again: a
            // reopen in between would wait for this handle while this thread
            // waited for the reopen, until the reopen gave up on the file in
            // use (async-hazards audit of 2026-12-02).
            drop(db);
            self.bytes.store(bytes, Ordering::Release);
            if removed > 0 {
                self.refresh_stats()?;
            }
            if done || !go_on() {
                return Ok(());
            }
        }
    }
}
