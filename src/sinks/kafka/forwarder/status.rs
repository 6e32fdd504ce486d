//! What the Kafka sink shows: its lag (gauge and `/status`) and its
//! `/status` entry (ready or why not, cursor, errors, the last resume).
//!
//! Guarantees: the lag counts the events the sink holds in memory and those
//! after them in the journal, never events `max_size` dropped before they
//! were read (those are counted as dropped).

use std::sync::atomic::Ordering;

use serde_json::json;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

use crate::event::format_time;
use crate::journal::JournalError;
use crate::status::SinkStatus;

use super::super::reader::Reader;
use super::super::readiness;
use super::super::readiness::StallNews;
use super::Forwarder;

impl Forwarder {
    /// Journaled events not yet delivered that the sink still has coming:
    /// those it holds in memory (handed to the producer, waiting to be, read
    /// ahead; `max_size` may have dropped them from the journal, but they are
    /// delivered from memory) and those held in the journal after them.
    /// Events `max_size` dropped before the sink read them are counted (and
    /// logged) as dropped, not as lag that can never drain.
    pub(super) fn lag(&self) -> u64 {
        let journal = &self.ctx.journal;
        let last = journal.last_seq();
        let in_memory = self.in_flight.len()
            + self.buffer.len()
            + self.reader.as_ref().map_or(0, Reader::queued);
        let held = self
            .ctx
            .kafka_held_up_to
            .load(Ordering::Acquire)
            .max(self.cursor);
        in_memory as u64 + held_after_memory(last, held, journal.first_seq_after(held))
    }

    /// `callrelay_sink_lag_events{sink="kafka"}`: `lag` events.
    pub(super) fn show_lag(&self, lag: u64) {
        let gauge = self
            .ctx
            .metrics
            .sink_lag_events
            .with_label_values(&["kafka"]);
        crate::metrics::set_saturating(&gauge, lag);
    }

    pub(super) fn publish_status(&mut self) {
        let lag = self.lag();
        self.show_lag(lag);
        let brokers_down = self.health.all_brokers_down.load(Ordering::Acquire);
        let creating_for = self
            .creating_since
            .map(|since| since.elapsed())
            .filter(|taken| *taken >= self.tuning.slow_creation);
        let observed = readiness::Observed {
            failure: self.failure.as_deref(),
            brokers_down,
            in_flight: self.in_flight.len(),
            awaiting_reports_for: self.awaiting_reports_since.elapsed(),
            stalled_after: self.tuning.stalled_after,
            creating_for,
        };
        let reason = readiness::not_delivering_reason(&observed);
        let awaiting = observed.awaiting_reports_for;
        let stalled = readiness::stalled(&observed);
        let stall = stalled.then(|| readiness::stall_text(&observed));
        self.note_stall(stall, brokers_down, awaiting);
        self.note_slow_creation(creating_for);
        // What the stall check found unable to take a record is named with
        // the stall it explains, and only then.
        if !stalled {
            self.stall_blame = None;
        }
        let reason = match (reason, &self.stall_blame) {
            (Some(reason), Some(blame)) => Some(format!("{reason}; {blame}")),
            (reason, _) => reason,
        };
        // The forwarder's own failure says what it could not do ("cannot
        // read metadata: broker transport failure"); librdkafka's last error
        // report says why (a TLS handshake or SASL login refused, say).
        let client_error = self.health.last_error();
        let last_error = self.last_error.clone().or_else(|| client_error.clone());
        let (last_error, last_error_at) = last_error.unzip();
        let (client_error, client_error_at) = client_error.unzip();
        self.ctx.status.set_sink(
            "kafka",
            SinkStatus {
                ready: reason.is_none(),
                reason,
                detail: json!({
                    "cursor": self.cursor,
                    "lag": lag,
                    "in_flight": self.in_flight.len(),
                    "last_error": last_error,
                    "last_error_at": last_error_at,
                    "last_client_error": client_error,
                    "last_client_error_at": client_error_at,
                    "brokers": self.config.brokers.get_ref(),
                    "topic": self.config.topic.get_ref(),
                    "brokers_down": brokers_down,
                    "producers_created": self.producers_created,
                    "resume": if self.resume.is_some() { json!("reading back") } else { self.last_resume.clone() },
                }),
            },
        );
    }

    /// Says once, in the log and `last_error`, that the producer's creation
    /// is slow (`creating_for`, once past `slow_creation`): a stall's words
    /// do not cover it, since nothing is in flight. Its end is said by
    /// `ensure_producer`.
    fn note_slow_creation(&mut self, creating_for: Option<Duration>) {
        if let Some(taken) = creating_for
            && !self.slow_creation_said
        {
            self.slow_creation_said = true;
            let text = readiness::creation_text(taken);
            tracing::warn!("kafka sink: {text}; events wait in the journal");
            self.last_error = Some((text, format_time(OffsetDateTime::now_utc())));
        }
    }

    /// Logs a stall when it starts and when it ends, and keeps it as the
    /// last error. A broker that hangs, or is cut off without a reset,
    /// refuses nothing: librdkafka says nothing until its request timeout
    /// (60 s) and the brokers-down line comes later still, so without this
    /// the log was silent for the first 60–90 s of such an outage, and
    /// `last_error` stayed empty throughout (hung-peers audit).
    fn note_stall(&mut self, stall: Option<String>, brokers_down: bool, awaiting: Duration) {
        match self
            .stall
            .observe(stall, brokers_down, awaiting, Instant::now())
        {
            Some(StallNews::Began(stall)) => {
                tracing::warn!(
                    in_flight = self.in_flight.len(),
                    cursor = self.cursor,
                    "kafka sink: {stall}, and no broker refused anything: a broker may be hung or cut off; events wait in the journal"
                );
                self.last_error = Some((stall, format_time(OffsetDateTime::now_utc())));
            }
            Some(StallNews::Ended { lasted }) => {
                tracing::info!(
                    stalled_s = lasted.as_secs(),
                    in_flight = self.in_flight.len(),
                    "kafka sink: no longer stalled"
                );
            }
            None => {}
        }
    }
}

/// The events held in the journal after seq `held` (what the sink has read
/// into memory, or its cursor) up to `last`, given the first seq after
/// `held` that the journal still holds: `max_size` may have dropped those
/// before it (counted as dropped, not as lag that can never drain).
fn held_after_memory(last: u64, held: u64, next: Result<Option<u64>, JournalError>) -> u64 {
    match next {
        // `last` was read first: a commit since may be found past it.
        Ok(next) => next
            .filter(|&next| next <= last)
            .map_or(0, |next| last - next + 1),
        // Unreadable now: as if nothing after the sink's reads was dropped.
        Err(_) => last.saturating_sub(held),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_journal_holds_after_the_sinks_reads_is_counted_from_its_first_seq() {
        // Nothing after the sink's reads.
        assert_eq!(held_after_memory(100, 100, Ok(None)), 0);
        // 61..=100 held, none dropped.
        assert_eq!(held_after_memory(100, 60, Ok(Some(61))), 40);
        // `max_size` dropped 61..=89: only 90..=100 can still be delivered.
        assert_eq!(held_after_memory(100, 60, Ok(Some(90))), 11);
        // One event held.
        assert_eq!(held_after_memory(100, 99, Ok(Some(100))), 1);
        // A commit since `last` was read is not counted yet.
        assert_eq!(held_after_memory(100, 100, Ok(Some(101))), 0);
        // Unreadable: as if nothing was dropped.
        assert_eq!(held_after_memory(100, 60, Err(JournalError::Closed)), 40);
        assert_eq!(held_after_memory(50, 60, Err(JournalError::Closed)), 0);
    }
}
