//! The read-back after an interrupted run: what an earlier run (or a dropped
//! producer) may have delivered after the cursor is read from Kafka before
//! anything is sent again, and the resume's end is logged and shown.

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::super::resume;
use super::Forwarder;

impl Forwarder {
    /// Reads back what is already in `topic` for the resume in progress.
    /// `false` when cancelled meanwhile.
    pub(super) async fn read_back(&mut self, topic: &str, cancel: &CancellationToken) -> bool {
        let Some(upto) = self.resume.as_ref().map(|r| r.upto()) else {
            return true;
        };
        let (config, from, name) = (
            self.config.clone(),
            self.offsets.of(topic),
            topic.to_owned(),
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
            resume::scan_blocking(&config, &name, &from, seqs, &stop)
        });
        let mut scan = None;
        let wait = async { scan = Some(read.await) };
        if !self.wait_publishing(wait, cancel).await {
            return false;
        }
        let scan = match scan {
            Some(Ok(scan)) => scan,
            Some(Err(e)) => Err(resume::ScanError::Task(e)),
            None => return false,
        };
        if let Some(resume) = self.resume.as_mut() {
            resume.add(topic.to_owned(), scan);
        }
        true
    }

    /// Ends the resume in progress and says what it spared.
    pub(super) fn finish_resume(&mut self) {
        let Some(resume) = self.resume.take() else {
            return;
        };
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
