//! `[websocket]`: the fan-out endpoint.
//!
//! Guarantees: a config that validates can be served. `path` is a route axum
//! accepts and that no other route of the relay holds (the operational
//! endpoints, `/hooks/...`), so `run` cannot panic building its router; the
//! ping settings are within 1 s..1 h (a zero period would panic every
//! session's timer); an open fan-out (no tokens) is refused on a listener
//! that is not loopback.

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ByteSize, HumanDuration, Secret, ServerConfig, Validator, unspanned};

/// The relay's own routes beside the fan-out (see `crate::server::router`).
const FIXED_ROUTES: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/status"];
/// Where the webhooks are served (`/hooks/{vendor}/{account}`).
const HOOKS: &str = "/hooks";
/// The shortest and longest ping settings accepted: a zero period panics
/// tokio's interval, and an hour is already far past any proxy's idle timeout.
const PING_RANGE: (HumanDuration, HumanDuration) =
    (HumanDuration::from_secs(1), HumanDuration::from_secs(3600));
/// The least `replay_memory`: one replay page (a smaller budget could
/// never hold the page a replay reads).
const LEAST_REPLAY_MEMORY: ByteSize = ByteSize(1024 * 1024);
/// The most `replay_memory`: past this, the bound no longer bounds anything
/// a host that runs the relay has.
const MOST_REPLAY_MEMORY: ByteSize = ByteSize(64 * 1024 * 1024 * 1024);

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
    /// With no tokens: the browser origins (`scheme://host[:port]`) besides
    /// this machine's whose pages may open the fan-out; `"*"` for any.
    #[serde(default = "default_allowed_origins")]
    pub allowed_origins: Spanned<Vec<String>>,
    /// Journal history every session's replay holds in memory at once, at
    /// most (a page is up to 1 MiB): read at start.
    #[serde(default = "default_replay_memory")]
    pub replay_memory: Spanned<ByteSize>,
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
fn default_allowed_origins() -> Spanned<Vec<String>> {
    unspanned(Vec::new())
}
fn default_replay_memory() -> Spanned<ByteSize> {
    unspanned(ByteSize(64 * 1024 * 1024))
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
            allowed_origins: default_allowed_origins(),
            replay_memory: default_replay_memory(),
        }
    }
}

impl WebSocketConfig {
    /// No tokens on a listener that is not loopback: anyone who can reach it
    /// could read every event.
    pub fn open_to_anyone(&self, server: &ServerConfig) -> bool {
        self.tokens.get_ref().is_empty() && !server.is_loopback()
    }

    /// Where an open fan-out is reported: the tokens when written; tokens left
    /// out have no place in the file, so the listener that makes their
    /// absence a problem.
    pub fn open_fan_out_span(&self, server: &ServerConfig) -> std::ops::Range<usize> {
        if self.tokens.span().is_empty() {
            server.listen.span()
        } else {
            self.tokens.span()
        }
    }

    pub fn validate(&self, v: &mut Validator, server: &ServerConfig) {
        let path = self.path.get_ref();
        if let Err(why) = check_path(path) {
            let message = format!("`path` = {} {why}", v.shown(&self.path));
            v.error(self.path.span(), message);
        }
        if self.open_to_anyone(server) {
            v.error(
                self.open_fan_out_span(server),
                "`websocket.tokens` is empty but `server.listen` is not loopback: anyone could read every event; set tokens",
            );
        }
        if self.tokens.get_ref().iter().any(Secret::is_empty) {
            v.error(self.tokens.span(), "a websocket token must not be empty");
        }
        for origin in self.allowed_origins.get_ref() {
            if let Err(why) = super::auth::check_allowed_origin(origin) {
                v.error(
                    self.allowed_origins.span(),
                    format!("`allowed_origins` entry {origin:?} {why}"),
                );
            }
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
        v.check_range(
            "replay_memory",
            &self.replay_memory,
            LEAST_REPLAY_MEMORY,
            MOST_REPLAY_MEMORY,
            ByteSize::to_string,
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

/// Why `path` cannot be the fan-out's route; said after "`path` = …".
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum PathError {
    #[error("must start with '/'")]
    NoLeadingSlash,
    /// One of [`FIXED_ROUTES`].
    #[error("is the relay's own {0} endpoint; use another path, e.g. \"/ws\"")]
    RelaysOwn(&'static str),
    #[error("is under {HOOKS}/, where the webhooks are served")]
    UnderHooks,
    #[error(
        "must be segments of letters, digits, '-', '.', '_' and '~' between single '/'s \
         (no parameters like \":id\", \"{{id}}\" or \"*\")"
    )]
    NotPlain,
}

/// Why `path` cannot be the fan-out's route, if it cannot.
fn check_path(path: &str) -> Result<(), PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NoLeadingSlash);
    };
    if let Some(own) = FIXED_ROUTES.iter().find(|route| **route == path) {
        return Err(PathError::RelaysOwn(own));
    }
    if path == HOOKS || path.starts_with(&format!("{HOOKS}/")) {
        return Err(PathError::UnderHooks);
    }
    // "/" alone is a route; otherwise every segment must be plain text. axum
    // reads ':' and '*' at a segment's start and '{' '}' anywhere as
    // parameters (or panics on them), and an empty, "." or ".." segment is
    // one that browsers and proxies normalise away (`/a/../ws` is sent as
    // `/ws`, nginx merges `//`), so requests would miss the route.
    if rest.is_empty() {
        return Ok(());
    }
    let plain = |segment: &str| {
        !matches!(segment, "" | "." | "..")
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
    };
    if rest.split('/').all(plain) {
        Ok(())
    } else {
        Err(PathError::NotPlain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::{any, get};

    /// What `check_path` refuses, said as `check` says it after the path.
    #[test]
    fn refused_paths_are_said_in_full() {
        for (path, said) in [
            ("ws", "must start with '/'"),
            (
                "/status",
                "is the relay's own /status endpoint; use another path, e.g. \"/ws\"",
            ),
            (
                "/hooks/x",
                "is under /hooks/, where the webhooks are served",
            ),
            (
                "/ws/{id}",
                "must be segments of letters, digits, '-', '.', '_' and '~' between single \
                 '/'s (no parameters like \":id\", \"{id}\" or \"*\")",
            ),
        ] {
            let refused = check_path(path).map_err(|e| e.to_string());
            assert_eq!(refused, Err(said.to_owned()), "{path}");
        }
    }

    /// What `check_path` accepts can be routed beside the relay's other
    /// routes: axum panics on an overlapping or malformed route.
    #[test]
    fn accepted_paths_route_beside_the_relays_own() {
        for path in ["/", "/ws", "/api/v1/events", "/ws-2.0_~x", "/hooksocket"] {
            assert_eq!(check_path(path), Ok(()), "{path}");
            let fixed = FIXED_ROUTES
                .iter()
                .fold(Router::<()>::new(), |r, p| r.route(p, get(|| async {})));
            let _ = fixed
                .merge(Router::new().route("/hooks/{vendor}/{account}", any(|| async {})))
                .merge(Router::new().route(path, get(|| async {})));
        }
    }
}
