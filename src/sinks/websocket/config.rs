//! `[websocket]`: the fan-out endpoint.
//!
//! Guarantees: a config that validates can be served: the ping settings are
//! within 1 s..1 h (a zero period would panic every session's timer); an open
//! fan-out (no tokens) is refused on a listener that is not loopback.

use serde::Deserialize;
use toml::Spanned;

use crate::config::{HumanDuration, Secret, ServerConfig, Validator, unspanned};

/// The shortest and longest ping settings accepted: a zero period panics
/// tokio's interval, and an hour is already far past any proxy's idle timeout.
const PING_RANGE: (HumanDuration, HumanDuration) =
    (HumanDuration::from_secs(1), HumanDuration::from_secs(3600));

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    #[serde(default = "default_path")]
    pub path: Spanned<String>,
    /// Accepted bearer tokens; empty: no auth (allowed only on a loopback listener).
    #[serde(default = "default_tokens")]
    pub tokens: Spanned<Vec<Secret>>,
    #[serde(default = "default_max_clients")]
    pub max_clients: Spanned<usize>,
    /// Events matching a client's filters buffered for it before it is closed as slow (4008).
    #[serde(default = "default_client_queue")]
    pub client_queue: Spanned<usize>,
    #[serde(default = "default_ping_interval")]
    pub ping_interval: Spanned<HumanDuration>,
    #[serde(default = "default_pong_timeout")]
    pub pong_timeout: Spanned<HumanDuration>,
}

fn default_path() -> Spanned<String> {
    unspanned("/ws".to_owned())
}
fn default_tokens() -> Spanned<Vec<Secret>> {
    unspanned(Vec::new())
}
fn default_max_clients() -> Spanned<usize> {
    unspanned(10_000)
}
fn default_client_queue() -> Spanned<usize> {
    unspanned(1024)
}
fn default_ping_interval() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(25))
}
fn default_pong_timeout() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(10))
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            path: default_path(),
            tokens: unspanned(Vec::new()),
            max_clients: default_max_clients(),
            client_queue: default_client_queue(),
            ping_interval: default_ping_interval(),
            pong_timeout: default_pong_timeout(),
        }
    }
}

impl WebSocketConfig {
    pub fn validate(&self, v: &mut Validator, server: &ServerConfig) {
        let path = self.path.get_ref();
        if !path.starts_with('/') || path.starts_with("/hooks") || path.contains(['{', '}', '*']) {
            v.error(
                self.path.span(),
                format!("`path` = {path:?} must start with '/' and not clash with /hooks"),
            );
        }
        if self.tokens.get_ref().is_empty() && !server.is_loopback() {
            v.error(
                self.tokens.span(),
                "`websocket.tokens` is empty but `server.listen` is not loopback: anyone could read every event; set tokens",
            );
        }
        if self.tokens.get_ref().iter().any(Secret::is_empty) {
            v.error(self.tokens.span(), "a websocket token must not be empty");
        }
        v.check_range(
            "max_clients",
            &self.max_clients,
            1,
            1_000_000,
            usize::to_string,
        );
        v.check_range(
            "client_queue",
            &self.client_queue,
            1,
            1_000_000,
            usize::to_string,
        );
        for (field, value) in [
            ("ping_interval", &self.ping_interval),
            ("pong_timeout", &self.pong_timeout),
        ] {
            v.check_range(
                field,
                value,
                PING_RANGE.0,
                PING_RANGE.1,
                HumanDuration::to_string,
            );
        }
    }
}
