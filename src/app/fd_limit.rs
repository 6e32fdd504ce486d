//! The open-file limit: raised at start from the soft limit to the hard one
//! (as Go's runtime and most servers do), and compared with what the config
//! may hold open.
//!
//! Why: every WebSocket client, HTTP connection, upstream stream and broker
//! connection takes a descriptor. Started from a shell, whose soft limit is
//! usually 1024 (the unit sets 65536), the relay ran out at 112 WebSocket
//! clients while `max_clients` said 10,000: accepting failed, webhooks and
//! `/metrics` went unanswered, and no client was ever refused as over
//! `max_clients`.
//!
//! Guarantees: the soft limit is only ever raised; a failure to raise it is
//! logged, not fatal; a limit below the estimate (`websocket.max_clients`,
//! `server.max_connections`, the upstream streams and a margin) is one WARN
//! naming both figures and the fix, at start and again after each reload
//! that leaves it short (a reload can raise either cap or add streams).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::config::Config;

/// Descriptors beyond clients, HTTP connections and upstream streams:
/// Kafka brokers, the journal, files a reload reads, the runtime's own.
const MARGIN: u64 = 1024;

/// What to do about a soft limit `current` under a hard limit `maximum`
/// (`None`: unlimited) for a config that may need `need` descriptors.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// The soft limit to set, when it is to be raised.
    raise_to: Option<u64>,
    /// The limit the relay will run with.
    limit: Option<u64>,
    /// Whether that is below `need`.
    short: bool,
}

fn plan(current: Option<u64>, maximum: Option<u64>, need: u64) -> Plan {
    let raise_to = match (current, maximum) {
        (Some(soft), Some(hard)) if soft < hard => Some(hard),
        (Some(_), None) => Some(u64::MAX),
        _ => None,
    };
    let limit = match raise_to {
        Some(u64::MAX) => None,
        Some(hard) => Some(hard),
        None => current,
    };
    Plan {
        raise_to,
        limit,
        short: limit.is_some_and(|l| l < need),
    }
}

/// What `config` may hold open at once. `server.max_connections` counts:
/// below it the limit, not the cap, would refuse connections, and the
/// relay's own sockets and files would fail beside them.
fn need(config: &Config) -> u64 {
    let clients = *config.websocket.max_clients.get_ref() as u64;
    let http = *config.server.max_connections.get_ref() as u64;
    let voip24h = config.voip24h.len() as u64;
    let sprecord: u64 = config
        .sprecord
        .iter()
        .map(|s| u64::from(*s.get_ref().streams.get_ref()))
        .sum();
    clients + http + voip24h + sprecord + MARGIN
}

/// Raises the soft limit to the hard one and warns when it is still below
/// what `config` may need.
pub fn raise_and_check(config: &Config) {
    let before = getrlimit(Resource::Nofile);
    let need = need(config);
    let mut plan = plan(before.current, before.maximum, need);
    if let Some(to) = plan.raise_to {
        let new = Rlimit {
            current: (to != u64::MAX).then_some(to),
            maximum: before.maximum,
        };
        match setrlimit(Resource::Nofile, new) {
            Ok(()) => tracing::info!(
                from = before.current,
                to = new.current,
                "raised the open-file limit to the hard limit"
            ),
            Err(e) => {
                tracing::warn!(error = %e, soft = before.current, "could not raise the open-file limit");
                // It stays where it was: as if that were the hard limit too.
                plan = self::plan(before.current, before.current, need);
            }
        }
    }
    warn_if_short(&plan, need, config);
}

/// After a reload: the limit is where the start left it (raised already);
/// warns when the new config may need more.
pub fn check(config: &Config) {
    let now = getrlimit(Resource::Nofile);
    let need = need(config);
    warn_if_short(&plan(now.current, now.current, need), need, config);
}

fn warn_if_short(plan: &Plan, need: u64, config: &Config) {
    if plan.short {
        tracing::warn!(
            limit = plan.limit,
            need,
            max_clients = config.websocket.max_clients.get_ref(),
            max_connections = config.server.max_connections.get_ref(),
            "the open-file limit is below what this config may hold open (websocket.max_clients, server.max_connections, upstream streams and 1024 more): connections, upstream reconnects and journal reopens will fail before those caps refuse any; raise LimitNOFILE (the unit sets 65536) or `ulimit -Hn`, or lower websocket.max_clients or server.max_connections"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one_and_never_lowered() {
        assert_eq!(
            plan(Some(1024), Some(524_288), 11_030),
            Plan {
                raise_to: Some(524_288),
                limit: Some(524_288),
                short: false
            }
        );
        assert_eq!(
            plan(Some(128), Some(4096), 11_030),
            Plan {
                raise_to: Some(4096),
                limit: Some(4096),
                short: true
            }
        );
        // Exactly what the config may need is enough.
        assert!(!plan(Some(11_030), Some(11_030), 11_030).short);
        // Already at the hard limit (the unit's 65536): nothing to do.
        assert_eq!(
            plan(Some(65_536), Some(65_536), 11_030),
            Plan {
                raise_to: None,
                limit: Some(65_536),
                short: false
            }
        );
        // Unlimited either way.
        assert_eq!(
            plan(Some(1024), None, 11_030),
            Plan {
                raise_to: Some(u64::MAX),
                limit: None,
                short: false
            }
        );
        assert_eq!(
            plan(None, None, 11_030),
            Plan {
                raise_to: None,
                limit: None,
                short: false
            }
        );
    }

    #[test]
    fn the_need_counts_clients_streams_and_a_margin() {
        let text = "[server]\nmax_connections = 300\n\n[websocket]\nmax_clients = 500\n\n[[voip24h]]\naccount = \"a\"\nurl = \"http://127.0.0.1:9\"\nkey = \"k\"\n\n[[sprecord]]\naccount = \"s\"\nurl = \"http://127.0.0.1:9\"\nstreams = 2\n";
        let config = Config::from_text("relay.toml", text, &|_| None).unwrap();
        assert_eq!(need(&config), 500 + 300 + 1 + 2 + MARGIN);
    }
}
