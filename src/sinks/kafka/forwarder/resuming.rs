//! The read-back after an interrupted run: what an earlier run (or a dropped
//! producer) may have delivered after the cursor is read from Kafka before
//! anything is sent again, and the resume's end is logged and shown.
//!
//! Guarantees: nothing after the cursor is sent again before its topic was
//! read back; an unanswered read is tried again up to
//! [`UNANSWERED_READS_RETRIED`] times (without end while every broker is
//! down), then what was not read is sent again (and what was found in a
//! partition a cut read did not finish, see [`resume::AlreadyDelivered::add`]):
//! at least once, never lost;
//! up to [`TOPICS_READ_AT_ONCE`] topics are read at once, each judged by
//! these rules as if it were read alone, with as long in all as they would
//! have had one after another.

use std::sync::atomic::Ordering;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::super::resume::{self, Scan, ScanError};
use super::super::topic::KnownTopics;
use super::{Failure, Forwarder, OwnProducer};

/// How many read-backs that no broker answered (or that one stopped
/// answering part-way) are tried again while the
/// brokers are not known to be down (with the sink's backoff between them:
/// about 1.5 minutes with their 10 s deadlines, past librdkafka's 60–90 s
/// to call a hung broker down, after which the reads are retried until it answers).
pub const UNANSWERED_READS_RETRIED: u32 = 5;

/// How many topics a read-back reads at once: the one the next event goes
/// to, and those of the events buffered behind it that the resume has not
/// read yet. Each read is a consumer of its own (its threads, a connection
/// to each broker, up to 16 MiB fetched ahead) and a round trip per
/// partition: one at a time, a topic per account took minutes after a
/// crash or an outage, with nothing sent meanwhile.
pub const TOPICS_READ_AT_ONCE: usize = 4;

/// The unread topics of the events buffered behind the next one, to read
/// with its topic.
#[derive(Debug, Default)]
struct TopicsAhead {
    /// Checked on the broker already (in the forwarder's known topics).
    known: Vec<String>,
    /// Not checked yet: checked first, and read only if found.
    to_check: Vec<String>,
}

impl TopicsAhead {
    fn len(&self) -> usize {
        self.known.len() + self.to_check.len()
    }

    fn holds(&self, topic: &str) -> bool {
        self.known.iter().chain(&self.to_check).any(|t| t == topic)
    }
}

impl Forwarder {
    /// Reads back what is already in `topic` for the resume in progress,
    /// and at the same time the unread topics of the events buffered behind
    /// it ([`Self::topics_to_read_ahead`]). `Ok(false)` when cancelled
    /// meanwhile; a `Failure` when for one of them no broker answered, or
    /// one stopped answering part-way ([`resume::unanswered`]), and the
    /// reads are to be tried again after a backoff: while every broker is
    /// down, or [`UNANSWERED_READS_RETRIED`] times in a resume (a hung
    /// broker is not known as down for 60–90 s). Past that it gives up and
    /// what it could not read is sent again (duplicates possible), as after
    /// any other read error, so that a broker that takes records but never
    /// answers reads cannot stop delivery. What the other reads gave is
    /// kept for the next try (unless a recovery starts the resume over).
    pub(super) async fn read_back(
        &mut self,
        topic: &str,
        cancel: &CancellationToken,
    ) -> Result<bool, Failure> {
        let Some(upto) = self.resume.as_ref().map(|r| r.upto()) else {
            return Ok(true);
        };
        // Before the offsets are handed to the reads: another cluster's
        // would start them at meaningless offsets.
        self.check_cluster();
        let ahead = self.topics_to_read_ahead(topic, upto);
        let reads_at_once = ahead.len() + 1;
        let mut topics: Vec<String> = std::iter::once(topic.to_owned())
            .chain(ahead.known)
            .collect();
        // Set when this wait is abandoned (cancelled), so the reads do not
        // hold the runtime's shutdown for their whole deadline.
        let stop = CancellationToken::new();
        let _stop_on_drop = stop.clone().drop_guard();
        // The topics known are read while the others are checked: the next
        // event's read does not wait for checks of topics it does not need.
        let mut reads: Vec<_> = topics
            .iter()
            .map(|topic| self.start_read(topic, upto, reads_at_once, &stop))
            .collect();
        let Some(found) = self.check_ahead(ahead.to_check, cancel).await else {
            return Ok(false);
        };
        for topic in found {
            reads.push(self.start_read(&topic, upto, reads_at_once, &stop));
            topics.push(topic);
        }
        let Some(scans) = self
            .wait_publishing(futures::future::join_all(reads), cancel)
            .await
        else {
            return Ok(false);
        };
        let brokers_down = self.health.all_brokers_down.load(Ordering::Acquire);
        let Some(resume) = self.resume.as_mut() else {
            return Ok(true);
        };
        let retry = brokers_down || resume.unanswered_reads < UNANSWERED_READS_RETRIED;
        let reads = topics.into_iter().zip(
            scans
                .into_iter()
                .map(|scan| scan.unwrap_or_else(|e| Err(ScanError::Task(e)))),
        );
        match resume.add_reads(reads, retry) {
            Some((topic, error)) => Err(Failure::ReadBack { topic, error }),
            None => Ok(true),
        }
    }

    /// The topics of the events buffered behind the next one (up to the
    /// resume's last seq) that the resume has not read, besides `front`,
    /// in the order their events come: at most [`TOPICS_READ_AT_ONCE`]
    /// with `front`. A topic not checked on the broker yet is taken only
    /// while there is a producer to check it with, and not once its check
    /// ahead failed in this resume.
    fn topics_to_read_ahead(&self, front: &str, upto: u64) -> TopicsAhead {
        let mut ahead = TopicsAhead::default();
        let Some(resume) = self.resume.as_ref() else {
            return ahead;
        };
        if self.template.fixed().is_some() {
            return ahead;
        }
        for event in self.buffer.iter().take_while(|e| e.seq <= upto) {
            if ahead.len() + 1 >= TOPICS_READ_AT_ONCE {
                break;
            }
            let rendered = self.template.render(&event.header);
            if rendered == front || resume.is_read(&rendered) || ahead.holds(&rendered) {
                continue;
            }
            if self.topics.get(&rendered).is_some() {
                ahead.known.push(rendered.into_owned());
            } else if self.producer.is_some() && resume.may_check_ahead(&rendered) {
                ahead.to_check.push(rendered.into_owned());
            }
        }
        ahead
    }

    /// The topics of `to_check` that the broker has, checked all at once
    /// (and then known); `None` when cancelled meanwhile. One the check
    /// does not find, or cannot tell, is left for its event, whose own
    /// check handles the failure as it does for any.
    async fn check_ahead(
        &mut self,
        to_check: Vec<String>,
        cancel: &CancellationToken,
    ) -> Option<Vec<String>> {
        let Some(producer) = self
            .producer
            .as_ref()
            .map(OwnProducer::copy)
            .filter(|_| !to_check.is_empty())
        else {
            return Some(Vec::new());
        };
        let (create, admin) = (self.config.create_topics, self.config.client_config());
        let checks = to_check.iter().map(|topic| {
            let (producer, admin, topic) = (producer.clone(), admin.clone(), topic.clone());
            tokio::task::spawn_blocking(move || {
                KnownTopics::ensure_blocking(&producer, &topic, create, &admin)
            })
        });
        let checked = self
            .wait_publishing(futures::future::join_all(checks), cancel)
            .await?;
        let mut found = Vec::new();
        for (topic, checked) in to_check.into_iter().zip(checked) {
            let error = match checked {
                Ok(Ok(())) => {
                    self.topics.insert(topic.clone());
                    found.push(topic);
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            tracing::debug!(
                topic = %topic,
                %error,
                "kafka sink: a topic to read back ahead could not be checked; it is checked when its event comes"
            );
            if let Some(resume) = self.resume.as_mut() {
                resume.check_ahead_failed(topic);
            }
        }
        Some(found)
    }

    /// Starts reading `topic` back on the blocking pool, one of
    /// `reads_at_once`, and says so.
    fn start_read(
        &self,
        topic: &str,
        upto: u64,
        reads_at_once: usize,
        stop: &CancellationToken,
    ) -> tokio::task::JoinHandle<Result<Scan, ScanError>> {
        let (config, from, name, within, stop) = (
            self.config.clone(),
            self.offsets.of(topic),
            topic.to_owned(),
            self.tuning.read_back_deadline,
            stop.clone(),
        );
        let seqs = self.cursor.saturating_add(1)..=upto;
        tracing::info!(
            topic,
            from = ?from,
            cursor = self.cursor,
            "kafka sink: reading back what an interrupted run may have delivered after the cursor"
        );
        tokio::task::spawn_blocking(move || {
            resume::scan_blocking(&config, &name, &from, seqs, &stop, within, reads_at_once)
        })
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
