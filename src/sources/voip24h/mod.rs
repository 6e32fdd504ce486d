//! The Voip24h socket.io source: one session per API key.

pub mod config;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::app::Context;
use config::Voip24hConfig;

/// Holds the account's session until `cancel`; returns once its socket is closed.
pub async fn run(_config: Voip24hConfig, _ctx: Arc<Context>, cancel: CancellationToken) {
    cancel.cancelled().await;
}
