//! The WebSocket fan-out: filtered live events with resume from the journal.

pub mod config;
pub mod tail;

use std::sync::Arc;

use axum::Router;

use crate::app::Context;

/// The fan-out's routes (at `websocket.path`).
pub fn routes(_ctx: &Arc<Context>) -> Router<Arc<Context>> {
    Router::new()
}
