//! The Kafka sink as the daemon runs it: started from the current config,
//! stopped (drained) before a restart or at shutdown.
//!
//! Guarantees: the sink has its own cancellation, so it outlives the sources
//! and ingest at shutdown and delivers what they committed last; `stop`
//! returns only once its task has finished (its in-flight records drained or
//! their bound passed).

use std::sync::Arc;

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

pub(super) fn start_kafka(ctx: &Arc<Context>) -> Option<RunningKafka> {
    let config = ctx.config.load().kafka.clone()?;
    // Its own token: the forwarder must outlive the sources and ingest at shutdown.
    let cancel = CancellationToken::new();
    let files_digest = config.files_digest();
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
