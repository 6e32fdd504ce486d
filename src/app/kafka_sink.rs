//! The Kafka sink as the daemon runs it: started from the current config,
//! stopped (drained) before a restart or at shutdown.
//!
//! Guarantees: the sink has its own cancellation, so it outlives the sources
//! and ingest at shutdown; none is started once a stop has begun; `stop`
//! says why it stops (a reload, or the process's stop: see
//! [`StopReason`]) and returns only once its task has finished
//! (its in-flight records drained or their bound passed). What the drain
//! committed and the sink had not sent yet stays in the journal for the next
//! start (after a `systemctl stop`, Kafka lags by it until then).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::task::JoinHandle;

use super::Context;
use crate::config::Config;
use crate::files_digest::FilesDigest;
use crate::sinks;
use crate::sinks::kafka::config::KafkaConfig;
use crate::sinks::kafka::{SinkStop, StopReason};

pub(super) struct RunningKafka {
    pub(super) config: KafkaConfig,
    /// The option files' contents as read before the sink started
    /// (`KafkaConfig::files_digest`; unknown when they could not be).
    files_digest: FilesDigest,
    stop: SinkStop,
    task: JoinHandle<()>,
}

impl RunningKafka {
    pub(super) async fn stop(self, reason: StopReason) {
        self.stop.stop(reason);
        let _ = self.task.await;
    }
}

/// `config`'s Kafka `message.max.bytes`; `usize::MAX` without Kafka.
pub(super) fn kafka_message_max(config: &Config) -> usize {
    config
        .kafka
        .as_ref()
        .map_or(usize::MAX, |k| k.message_max_bytes())
}

/// Sets the limit webhooks are held to while a reload replaces the sink
/// with one whose limit is `next`: until the new sink runs, an event must
/// fit the running one too (a larger event would be acknowledged, then
/// skipped by it as too large). A config without Kafka lifts the limit at
/// once: there is no sink left to deliver to.
pub(super) fn hold_both_limits(limit: &AtomicUsize, next: usize) {
    if next == usize::MAX {
        limit.store(usize::MAX, Ordering::Release);
    } else {
        limit.fetch_min(next, Ordering::AcqRel);
    }
}

/// Starts the sink of the config in force, whose option files read as
/// `files_digest` ([`kafka_files_digest`], read before: a start or a reload reads
/// its files first, and a stop does not wait for them).
pub(super) fn start_kafka(ctx: &Arc<Context>, files_digest: FilesDigest) -> Option<RunningKafka> {
    let config = ctx.config.load().kafka.clone()?;
    // Its own stop: the forwarder must outlive the sources and ingest at shutdown.
    let stop = SinkStop::new();
    // A stop that began before has no use for a sink (the drain would only
    // stop it again).
    if ctx.shutdown.is_cancelled() {
        return None;
    }
    let task = tokio::spawn(sinks::kafka::run(config.clone(), ctx.clone(), stop.clone()));
    Some(RunningKafka {
        config,
        files_digest,
        stop,
        task,
    })
}

/// Whether a reload to `new`, whose option files read as `files`, replaces
/// the `running` sink: one is added or removed, its `[kafka]` changed, or
/// its files call for it ([`FilesDigest::calls_for_restart`]: not when
/// they were not read now; once when the sink started while they could not
/// be read; else when they changed).
pub(super) fn kafka_changes(
    running: Option<&RunningKafka>,
    new: Option<&KafkaConfig>,
    files: FilesDigest,
) -> bool {
    match (running, new) {
        (None, None) => false,
        (Some(running), Some(new)) => {
            running.config != *new || running.files_digest.calls_for_restart(&files)
        }
        _ => true,
    }
}

/// [`KafkaConfig::files_digest`] of `config` on the blocking pool, by
/// `deadline`: an `ssl.ca.location` naming a CA directory
/// (`/etc/ssl/certs`) is hundreds of files, seconds to read on a cold, slow
/// disk, which held one of the two runtime workers (webhook answers,
/// WebSocket pings) through a reload. No file read without `[kafka]` or
/// without an option naming one; unknown when not read in time or its
/// task failed. `config` is taken at the call; the read starts when first
/// polled.
pub(super) fn kafka_files_digest(
    config: Option<&KafkaConfig>,
    deadline: tokio::time::Instant,
) -> impl std::future::Future<Output = FilesDigest> + use<> {
    let config = config.filter(|c| c.names_files()).cloned();
    async move {
        let Some(config) = config else {
            return FilesDigest::Read(None);
        };
        let what = "the files the Kafka options name";
        FilesDigest::read_by(deadline, what, move || config.files_digest()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kafka: &str) -> Config {
        let text = format!("[journal]\npath = \"/tmp/callrelay-test\"\n{kafka}");
        Config::from_text("relay.toml", &text, &|_| None).unwrap()
    }

    #[test]
    fn the_limit_is_kafkas_message_max_bytes_and_none_without_kafka() {
        assert_eq!(kafka_message_max(&config("")), usize::MAX);
        let default = config("[kafka]\nbrokers = \"127.0.0.1:9092\"\n");
        assert_eq!(kafka_message_max(&default), 1_000_000);
        let set = config(
            "[kafka]\nbrokers = \"127.0.0.1:9092\"\n[kafka.options]\n\"message.max.bytes\" = \"200000\"\n",
        );
        assert_eq!(kafka_message_max(&set), 200_000);
    }

    /// Files not read now (a hung mount) restart no sink; a sink started
    /// while its files could not be read is restarted once they are; else
    /// the sink is restarted when they changed.
    #[tokio::test]
    async fn a_sink_is_restarted_for_its_files_only_when_they_were_read() {
        let kafka = config("[kafka]\nbrokers = \"127.0.0.1:9092\"\n").kafka;
        let other = config("[kafka]\nbrokers = \"127.0.0.1:9093\"\n").kafka;
        let (Some(kafka), Some(other)) = (kafka, other) else {
            panic!("no [kafka]");
        };
        let read = |d| FilesDigest::Read(Some([d; 32]));
        let running = |files_digest| RunningKafka {
            config: kafka.clone(),
            files_digest,
            stop: SinkStop::new(),
            task: tokio::spawn(async {}),
        };
        let (known, never_read) = (running(read(1)), running(FilesDigest::Unknown));
        for sink in [&known, &never_read] {
            assert!(!kafka_changes(
                Some(sink),
                Some(&kafka),
                FilesDigest::Unknown
            ));
            assert!(kafka_changes(
                Some(sink),
                Some(&other),
                FilesDigest::Unknown
            ));
            assert!(kafka_changes(Some(sink), None, FilesDigest::Unknown));
            assert!(kafka_changes(Some(sink), Some(&kafka), read(2)));
        }
        assert!(!kafka_changes(Some(&known), Some(&kafka), read(1)));
        assert!(
            kafka_changes(Some(&never_read), Some(&kafka), read(1)),
            "a sink that never read its files is restarted once they are read"
        );
        assert!(kafka_changes(None, Some(&kafka), read(1)));
        assert!(!kafka_changes(None, None, FilesDigest::Unknown));
        known.stop(StopReason::ProcessStop).await;
        never_read.stop(StopReason::ProcessStop).await;
    }

    #[test]
    fn while_the_sink_is_replaced_an_event_must_fit_both() {
        let limit = AtomicUsize::new(500_000);
        hold_both_limits(&limit, 2_000_000);
        assert_eq!(
            limit.load(Ordering::Acquire),
            500_000,
            "a higher limit waits for its sink"
        );
        hold_both_limits(&limit, 100_000);
        assert_eq!(
            limit.load(Ordering::Acquire),
            100_000,
            "a lower one holds at once"
        );
        hold_both_limits(&limit, usize::MAX);
        assert_eq!(
            limit.load(Ordering::Acquire),
            usize::MAX,
            "no Kafka, no limit"
        );
    }
}
