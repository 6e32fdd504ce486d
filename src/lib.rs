//! callrelay: relays telephony vendors' call and CRM events as one
//! deduplicated, durable stream of CloudEvents to Kafka and WebSocket clients.
//!
//! The picture (DESIGN.md): `sources` (socket.io, SSE, webhooks) → `vendors`
//! (pure parse + normalize) → `ingest` (dedup, group commit) → `journal`
//! (the durable hub) → `sinks` (Kafka, WebSocket fan-out).

// The one exception, reading Kafka headers without rust-rdkafka's panic on
// a non-UTF-8 key, is `sinks::kafka::header`.
#![deny(unsafe_code)]

/// This build's version: the crate's, then `+` and the commit it was built
/// from when known (`0.1.0+8cafdc0a1b2c`; build.rs). `--version`, `/status`
/// and `callrelay_build_info` all say this.
pub const VERSION: &str = env!("CALLRELAY_VERSION");

pub mod app;
mod busy_clock;
pub mod config;
pub mod event;
pub mod files_digest;
pub mod http_serve;
pub mod ingest;
pub mod journal;
pub mod log_throttle;
pub mod logging;
pub mod metrics;
pub mod no_core;
pub mod panic_restart;
pub mod regular_file;
pub mod reply_budget;
pub mod server;
pub mod sinks;
pub mod sources;
pub mod status;
pub mod vendors;
pub mod worker_threads;
