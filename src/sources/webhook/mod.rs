//! Webhook routes: `/hooks/{vendor}/{account}` for the push vendors.

pub mod config;

use std::sync::Arc;

use axum::Router;

use crate::app::Context;

/// The webhook routes.
pub fn routes() -> Router<Arc<Context>> {
    Router::new()
}
