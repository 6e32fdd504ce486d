//! The read-back after an interrupted run: what an earlier run (or a dropped
//! producer) may have delivered after the cursor is read from Kafka before
//! anything is sent again, and the resume's end is logged and shown.
//!
//! Guarantees: nothing after the cursor is sent again before its topic was
//! read back; an unanswered read is tried again up to
//! [`UNANSWERED_READS_RETRIED`] times (without end while every broker is
//! down), then what was not read is sent again: at least once, never lost.

use std::sync::atomic::Ordering;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::super::resume;
use super::{Failure, Forwarder};

/// How many read-backs that no broker answered (or that one stopped
/// answering part-way) are tried again while the
/// brokers are not known to be down (with the sink's backoff between them:
/// about 1.5 minutes with their 10 s deadlines, past librdkafka's 60–90 s
/// to call a hung broker down, after which the reads are retried until it answers).
pub const UNANSWERED_READS_RETRIED: u32 = 5;

impl Forwarder {
    /// Reads back what is already in `topic` for the resume in progress.
    /// `Ok(false)` when cancelled meanwhile; a `Failure` when no broker
    /// answered, or one stopped answering part-way ([`resume::unanswered`]),
    /// and the read is to be tried again after a backoff: while
    /// every broker is down, or [`UNANSWERED_READS_RETRIED`] times (a hung
    /// broker is not known as down for 60–90 s). Past that it gives up and
    /// what it could not read is sent again (duplicates possible), as after
    /// any other read error, so that a broker that takes records but never
    /// answers reads cannot stop delivery.
    pub(super) async fn read_back(
        &mut self,
        topic: &str,
        cancel: &CancellationToken,
    ) -> Result<bool, Failure> {
        let Some(upto) = self.resume.as_ref().map(|r| r.upto()) else {
            return Ok(true);
        };
        let (config, from, name, within) = (
            self.config.clone(),
            self.offsets.of(topic),
            topic.to_owned(),
            self.tuning.read_back_deadline,
        );
        let seqs = self.cursor.saturating_add(1)..=upto;
        // Set when this wait is abandoned (cancelled), so the read does not
        // hold the runtime's shutdown for its whole deadline.
        let stop = CancellationToken::new();
        let _stop_on_drop = stop.clone().drop_guard();
        tracing::info!(
            topic,
            from = ?from,
            cursor = self.cursor,
            "kafka sink: reading back what an interrupted run may have delivered after the cursor"
        );
        let read = tokio::task::spawn_blocking(move || {
            resume::scan_blocking(&config, &name, &from, seqs, &stop, within)
        });
        let Some(scan) = self.wait_publishing(read, cancel).await else {
            return Ok(false);
        };
        let scan = scan.unwrap_or_else(|e| Err(resume::ScanError::Task(e)));
        let brokers_down = self.health.all_brokers_down.load(Ordering::Acquire);
        if let Some(resume) = self.resume.as_mut() {
            if let Some(error) = resume::unanswered(&scan)
                && (brokers_down || resume.unanswered_reads < UNANSWERED_READS_RETRIED)
            {
                resume.unanswered_reads += 1;
                return Err(Failure::ReadBack {
                    topic: topic.to_owned(),
                    error,
                });
            }
            resume.add(topic.to_owned(), scan);
        }
        Ok(true)
    }

    /// Ends the resume in progress and says what it spared.
    pub(super) fn finish_resume(&mut self) {
        let Some(resume) = self.resume.take() else {
            return;
        };
        // Those the cursor passed otherwise (a hole retention made) are not
        // found again.
        let cursor = self.cursor;
        self.delivered_behind_failure.retain(|seq, _| *seq > cursor);
        let (level, text) = resume::summary(resume.skipped, resume.errors.len());
        let (skipped, read, upto) = (resume.skipped, resume.read, resume.upto());
        if level == tracing::Level::WARN {
            tracing::warn!(
                already_in_kafka = skipped,
                messages_read = read,
                up_to_seq = upto,
                "{text}"
            );
        } else {
            tracing::info!(
                already_in_kafka = skipped,
                messages_read = read,
                up_to_seq = upto,
                "{text}"
            );
        }
        self.last_resume = json!({
            "up_to_seq": upto,
            "already_in_kafka": skipped,
            "messages_read": read,
            "errors": resume.errors,
        });
    }
}
