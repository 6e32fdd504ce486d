//! The Kafka sink as the daemon runs it: started from the current config,
//! stopped (drained) before a restart or at shutdown.
//!
//! Guarantees: the sink has its own cancellation, so it outlives the sources
//! and ingest at shutdown; none is started once a stop has begun; `stop` returns only once its task has finished
//! (its in-flight records drained or their bound passed). What the drain
//! committed and the sink had not sent yet stays in the journal for the next
//! start (after a `systemctl stop`, Kafka lags by it until then).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::config::Config;
use crate::sinks;

pub(super) struct RunningKafka {
    pub(super) config: crate::sinks::kafka::config::KafkaConfig,
    /// The option files' contents when the sink started (`KafkaConfig::files_digest`).
    pub(super) files_digest: Option<[u8; 32]>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningKafka {
    pub(super) async fn stop(self) {
        self.cancel.cancel();
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

pub(super) async fn start_kafka(ctx: &Arc<Context>) -> Option<RunningKafka> {
    let config = ctx.config.load().kafka.clone()?;
    // Its own token: the forwarder must outlive the sources and ingest at shutdown.
    let cancel = CancellationToken::new();
    // A stop that began before, or while the digest was read, has no use
    // for a sink (the drain would only stop it again).
    if ctx.shutdown.is_cancelled() {
        return None;
    }
    let files_digest = files_digest_off_the_workers(&config).await;
    if ctx.shutdown.is_cancelled() {
        return None;
    }
    let task = tokio::spawn(sinks::kafka::run(
        config.clone(),
        ctx.clone(),
        cancel.clone(),
    ));
    Some(RunningKafka {
        config,
        files_digest,
        cancel,
        task,
    })
}

/// Whether a reload to `new` replaces the `running` sink: one is added or
/// removed, its `[kafka]` changed, or a file its options name did.
pub(super) async fn kafka_changes(
    running: Option<&RunningKafka>,
    new: Option<&crate::sinks::kafka::config::KafkaConfig>,
) -> bool {
    match (running, new) {
        (None, None) => false,
        (Some(running), Some(new)) if running.config != *new => true,
        (Some(running), Some(new)) => {
            running.files_digest != files_digest_off_the_workers(new).await
        }
        _ => true,
    }
}

/// [`KafkaConfig::files_digest`] on the blocking pool: an `ssl.ca.location`
/// naming a CA directory (`/etc/ssl/certs`) is hundreds of files, seconds
/// to read on a cold, slow disk, which held one of the two runtime workers
/// (webhook answers, WebSocket pings) through a reload. A digest that could
/// not be taken (its task panicked) reads as no files named.
///
/// [`KafkaConfig::files_digest`]: crate::sinks::kafka::config::KafkaConfig::files_digest
pub(super) async fn files_digest_off_the_workers(
    config: &crate::sinks::kafka::config::KafkaConfig,
) -> Option<[u8; 32]> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || config.files_digest())
        .await
        .ok()
        .flatten()
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
