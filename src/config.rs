//! `relay.toml`: the model of the whole file, `${ENV}` and `${file:…}`
//! expansion, and validation that reports every problem it finds as
//! `FILE:LINE:COL: message`.
//!
//! Guarantees: loading never touches the network and never panics on any input;
//! a `Config` that loads is range-checked and internally consistent, so the
//! components can trust it. Each component's own section lives next to its code
//! (Vector's way) and validates itself through [`Validator`].
//!
//! Here: the file's model and its defaults; `load` (reading, expanding and
//! deserializing the file), `cross_checks` (the checks of this module's
//! sections and those across sections), `validator` (collecting and placing
//! problems), `checks` (account names and URLs, shared by sections), `env`
//! (`${ENV}`, `${file:…}`), `values` (durations, sizes, secrets),
//! `type_errors` (every TOML type error, not only the first), `wording`
//! (a TOML error said in the file's terms, without the value).

mod checks;
mod cross_checks;
pub mod env;
mod load;
mod type_errors;
mod validator;
pub mod values;
mod wording;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::event::Vendor;

/// The config file read when none is named (`--config`, `CALLRELAY_CONFIG`).
pub const DEFAULT_CONFIG: &str = "relay.toml";

pub use checks::{shown_url, url_without_credentials, validate_account, validate_http_url};
pub use load::{LoadedText, Loading};
pub use validator::{ConfigError, Problem, Validator, line_col};
pub use values::{Accepted, ByteSize, HumanDuration, Secret};

use crate::sinks::kafka::config::KafkaConfig;
use crate::sinks::websocket::config::WebSocketConfig;
use crate::sources::proxy::ProxyConfig;
use crate::sources::sprecord::config::SprecordConfig;
use crate::sources::voip24h::config::Voip24hConfig;
use crate::sources::webhook::config::WebhookConfig;

/// The whole `relay.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub journal: JournalConfig,
    #[serde(default)]
    pub dedup: DedupConfig,
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    #[serde(default)]
    pub websocket: WebSocketConfig,
    #[serde(default)]
    pub voip24h: Vec<Spanned<Voip24hConfig>>,
    #[serde(default)]
    pub sprecord: Vec<Spanned<SprecordConfig>>,
    #[serde(default)]
    pub webhook: Vec<Spanned<WebhookConfig>>,
    /// Outbound proxy for the connection sources; the environment
    /// (`HTTPS_PROXY`, `NO_PROXY`, …) fills in what it leaves unset.
    #[serde(default)]
    pub proxy: ProxyConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "ServerConfig::default_listen")]
    pub listen: Spanned<String>,
    #[serde(default = "ServerConfig::default_max_body")]
    pub max_body: Spanned<ByteSize>,
    /// HTTP connections open at once, WebSocket sessions not counted (those
    /// are `websocket.max_clients`'): past it a new one is closed at once.
    #[serde(default = "ServerConfig::default_max_connections")]
    pub max_connections: Spanned<usize>,
    /// Not a key of the file (the contract lists those): the defaults, which
    /// tests shorten. Read once, when the server starts.
    #[serde(skip)]
    pub http_timeouts: crate::http_serve::HttpTimeouts,
    /// Not a key of the file either: the memory that webhook bodies being
    /// received may hold together (see [`ServerConfig::body_memory_limit`]);
    /// tests lower it.
    #[serde(skip, default = "ServerConfig::default_body_memory")]
    pub body_memory: u64,
    /// Not a key of the file either: the memory that rendered `/metrics`
    /// and `/status` replies not yet taken by their clients may hold
    /// together (`reply_budget`); tests lower it. Read once, at the start.
    #[serde(skip, default = "ServerConfig::default_reply_memory")]
    pub reply_memory: u64,
}

impl ServerConfig {
    fn default_listen() -> Spanned<String> {
        unspanned("127.0.0.1:8080".to_owned())
    }
    fn default_max_body() -> Spanned<ByteSize> {
        unspanned(ByteSize(1024 * 1024))
    }
    /// Far above what vendors and scrapers open (a few each), and at an
    /// idle connection's worst about 256 MiB: within a unit's `MemoryMax`,
    /// and far under its `LimitNOFILE` beside `websocket.max_clients`. That
    /// worst is about 120 KiB of buffers each: hyper's read buffer, which a
    /// large head or a fast body grows by doubling to 112 KiB of capacity
    /// (the 64 KiB bound is on what it holds, not on what it allocates) and
    /// which is kept between requests, never shrunk, plus its 8 KiB write
    /// buffer for response heads.
    fn default_max_connections() -> Spanned<usize> {
        unspanned(2048)
    }
    fn default_body_memory() -> u64 {
        64 * 1024 * 1024
    }
    /// Sixteen scrapes of a 1 MiB `/metrics` (about 10,000 accounts'
    /// series) waiting for their clients at once: far more than a scraper
    /// or two and an operator's `/status` ever leave unread, and small
    /// beside the 2 GB that unread replies reached without a bound.
    fn default_reply_memory() -> u64 {
        16 * 1024 * 1024
    }
    /// What webhook bodies being received may hold together: 64 MiB, or two
    /// `max_body` when that is larger, so that one account's half can take
    /// any body within the limit when nothing else is arriving.
    pub fn body_memory_limit(&self) -> u64 {
        self.body_memory
            .max(self.max_body.get_ref().get().saturating_mul(2))
    }
    /// The listen address; valid once the config has loaded.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .get_ref()
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
    pub fn is_loopback(&self) -> bool {
        self.listen_addr().ip().is_loopback()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Self::default_listen(),
            max_body: Self::default_max_body(),
            max_connections: Self::default_max_connections(),
            http_timeouts: Default::default(),
            body_memory: Self::default_body_memory(),
            reply_memory: Self::default_reply_memory(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    #[serde(default = "JournalConfig::default_path")]
    pub path: Spanned<PathBuf>,
    #[serde(default = "JournalConfig::default_retention")]
    pub retention: Spanned<HumanDuration>,
    #[serde(default = "JournalConfig::default_max_size")]
    pub max_size: Spanned<ByteSize>,
}

impl JournalConfig {
    fn default_path() -> Spanned<PathBuf> {
        unspanned(PathBuf::from("./data"))
    }
    fn default_retention() -> Spanned<HumanDuration> {
        unspanned(HumanDuration::from_secs(24 * 3600))
    }
    fn default_max_size() -> Spanned<ByteSize> {
        unspanned(ByteSize(1024 * 1024 * 1024))
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            path: Self::default_path(),
            retention: Self::default_retention(),
            max_size: Self::default_max_size(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    #[serde(default = "DedupConfig::default_window")]
    pub window: Spanned<HumanDuration>,
}

impl DedupConfig {
    fn default_window() -> Spanned<HumanDuration> {
        unspanned(HumanDuration::from_secs(600))
    }
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            window: Self::default_window(),
        }
    }
}

/// A value with no place in the file (a default).
pub fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

impl Config {
    /// What the journal is opened with: by the relay, and by `compact`.
    pub fn journal_options(&self) -> crate::journal::JournalOptions {
        crate::journal::JournalOptions {
            dir: self.journal.path.get_ref().clone(),
            dedup_window: self.dedup.window.get_ref().get(),
            retention: self.journal.retention.get_ref().get(),
            max_size: self.journal.max_size.get_ref().get(),
        }
    }

    /// Every configured source's vendor and account, in the file's order.
    pub fn accounts(&self) -> Vec<(Vendor, &Spanned<String>)> {
        self.voip24h
            .iter()
            .map(|s| (Vendor::Voip24h, &s.get_ref().account))
            .chain(
                self.sprecord
                    .iter()
                    .map(|s| (Vendor::Sprecord, &s.get_ref().account)),
            )
            .chain(
                self.webhook
                    .iter()
                    .map(|h| (h.get_ref().vendor, &h.get_ref().account)),
            )
            .collect()
    }
}

// The unit tests (`tests.rs`) reach these as `super::…`.
#[cfg(test)]
use load::not_found_hint;
#[cfg(test)]
use wording::{key_at, replace_whole, without_literal};

#[cfg(test)]
mod tests;
