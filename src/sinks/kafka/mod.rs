//! The Kafka sink: journal → Kafka, at least once, per-key order kept.

pub mod config;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::Context;
use config::KafkaConfig;

/// The name of this sink's journal cursor.
pub const CURSOR: &str = "kafka";

/// Runs the forwarder until `cancel`, then drains and persists the cursor.
pub async fn run(_config: KafkaConfig, _ctx: Arc<Context>, cancel: CancellationToken) {
    cancel.cancelled().await;
}
