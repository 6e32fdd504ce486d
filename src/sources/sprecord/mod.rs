//! The SPRecord SSE source: up to three `/sys/events` streams per account.

pub mod config;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::Context;
use config::SprecordConfig;

/// Holds the account's streams until `cancel`; returns once every stream is closed.
pub async fn run(_config: SprecordConfig, _ctx: Arc<Context>, cancel: CancellationToken) {
    cancel.cancelled().await;
}
