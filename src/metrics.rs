//! The Prometheus registry and every metric of CONTRACT.md (prefix `callrelay_`),
//! plus the few this project adds and the standard `process_*` family
//! (documented in README.md).
//!
//! Guarantees: every metric exists from start; a labelled family's series
//! exist at 0 from the start for every label value known then (reasons,
//! codes, the config's accounts and vendors, each connection account's
//! reconnect reasons, see [`Metrics::prime`]) and from first use for the
//! rest (streams); no label carries an
//! unbounded value such as a call id or a phone number — callers pass only
//! vendor, account (from the config), stream index, sink, reason and code.

mod process;

use crate::config::Config;
use crate::event::{Transport, Vendor};
pub use process::ProcessCollector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// All of callrelay's metrics, registered in one registry.
pub struct Metrics {
    registry: Registry,
    pub events_received: IntCounterVec,
    pub events_duplicate: IntCounterVec,
    pub events_journaled: IntCounterVec,
    pub events_published: IntCounterVec,
    pub publish_errors: IntCounterVec,
    pub webhook_requests: IntCounterVec,
    pub upstream_connected: IntGaugeVec,
    pub upstream_reconnects: IntCounterVec,
    pub journal_last_seq: IntGauge,
    pub journal_bytes: IntGauge,
    pub webhook_body_bytes: IntGauge,
    pub sink_lag_events: IntGaugeVec,
    pub sink_ready: IntGaugeVec,
    pub ws_clients: IntGauge,
    pub ws_disconnects: IntCounterVec,
    pub event_latency: HistogramVec,
    pub build_info: IntGaugeVec,
    // Additions (README, "Metrics beyond the contract").
    pub journal_dropped: IntCounterVec,
    pub ingest_errors: IntCounterVec,
    pub upstream_malformed: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_last_reload_ok: IntGauge,
    pub http_connections_closed: IntCounterVec,
    /// HTTP connections open now, against `server.max_connections`.
    pub http_connections: IntGauge,
    /// `/metrics` and `/status` requests answered 503: the reply budget full.
    pub http_replies_refused: IntCounterVec,
    pub ws_refused: IntCounterVec,
    pub journal_first_seq: IntGauge,
    pub journal_max_bytes: IntGauge,
    pub journal_file_bytes: IntGauge,
    pub journal_writable: IntGauge,
    /// Kafka topics configured accounts will need that the cluster lacks.
    pub kafka_topics_missing: IntGauge,
    /// 1 while the journal's retention passes fail.
    pub journal_retention_failing: IntGauge,
    /// Events `max_size` removed that a sink holds only in memory.
    pub journal_held_in_memory: IntGauge,
    /// WebSocket sessions whose journal replay waits for `replay_memory`.
    pub ws_replays_waiting: IntGauge,
    /// Settings the file changed that wait for a restart.
    pub config_restart_pending: IntGauge,
    /// The standard `process_*` family (README, "Metrics beyond the contract").
    pub process: ProcessCollector,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| {
        // ok: names and labels are constants of this file; a bad one is a programming error.
        panic!("metric {name}: {e}")
    });
    register(registry, Box::new(c.clone()));
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}")); // ok: constant names
    register(registry, Box::new(g.clone()));
    g
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}")); // ok: constant names
    register(registry, Box::new(g.clone()));
    g
}

/// `value` as an i64 gauge's value, `i64::MAX` beyond it: a seq, a lag or a
/// size past it (a damaged journal's) must not show as a negative number.
pub fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Sets `gauge` to `value` through [`saturating_i64`].
pub fn set_saturating(gauge: &IntGauge, value: u64) {
    gauge.set(saturating_i64(value));
}

fn register(registry: &Registry, collector: Box<dyn prometheus::core::Collector>) {
    if let Err(e) = registry.register(collector) {
        panic!("registering a metric twice: {e}"); // ok: constant names, registered once
    }
}

/// The codes a webhook is answered with (`callrelay_webhook_requests_total`'s
/// `code`), each exported at 0 per vendor.
const WEBHOOK_CODES: [&str; 9] = [
    "200", "400", "401", "403", "404", "405", "413", "500", "503",
];

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let events_received = counter(
            &r,
            "callrelay_events_received_total",
            "Vendor events received, before dedup.",
            &["vendor", "account", "transport"],
        );
        let events_duplicate = counter(
            &r,
            "callrelay_events_duplicate_total",
            "Events dropped as duplicates of one journaled within the dedup window.",
            &["vendor", "account"],
        );
        let events_journaled = counter(
            &r,
            "callrelay_events_journaled_total",
            "Events durably appended to the journal.",
            &["vendor", "type"],
        );
        let events_published = counter(
            &r,
            "callrelay_events_published_total",
            "Events handed to a sink and acknowledged by it.",
            &["sink"],
        );
        let publish_errors = counter(
            &r,
            "callrelay_publish_errors_total",
            "Errors publishing to a sink.",
            &["sink", "reason"],
        );
        let webhook_requests = counter(
            &r,
            "callrelay_webhook_requests_total",
            "Webhook requests by response status code.",
            &["vendor", "code"],
        );
        let upstream_connected = gauge_vec(
            &r,
            "callrelay_upstream_connected",
            "1 while an upstream connection (socket.io session, SSE stream) is up.",
            &["vendor", "account", "stream"],
        );
        let upstream_reconnects = counter(
            &r,
            "callrelay_upstream_reconnects_total",
            "Upstream reconnections, by the reason the previous connection ended.",
            &["vendor", "account", "reason"],
        );
        let journal_last_seq = gauge(&r, "callrelay_journal_last_seq", "Newest journaled seq.");
        let journal_bytes = gauge(
            &r,
            "callrelay_journal_bytes",
            "Bytes of events held in the journal.",
        );
        let webhook_body_bytes = gauge(
            &r,
            "callrelay_webhook_body_bytes",
            "Bytes of webhook bodies being received or whose events wait for the journal, an event counted at its CloudEvent JSON's length when larger (budget: 64 MiB, or two max_body, and half of that per account, past which deliveries are answered 503; one event's JSON alone may pass either).",
        );
        let sink_lag_events = gauge_vec(
            &r,
            "callrelay_sink_lag_events",
            "Journaled events a sink has not yet delivered.",
            &["sink"],
        );
        let sink_ready = gauge_vec(
            &r,
            "callrelay_sink_ready",
            "1 while a sink delivers, 0 while it does not (its /status reason says why); no series for a sink not configured.",
            &["sink"],
        );
        let ws_clients = gauge(&r, "callrelay_ws_clients", "Connected WebSocket clients.");
        let ws_disconnects = counter(
            &r,
            "callrelay_ws_disconnects_total",
            "WebSocket client disconnections by reason.",
            &["reason"],
        );
        let event_latency = HistogramVec::new(
            HistogramOpts::new(
                "callrelay_event_latency_seconds",
                "Time from receiving an event to a sink acknowledging it.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
            ]),
            &["sink"],
        )
        .unwrap_or_else(|e| panic!("metric latency: {e}")); // ok: constant names
        register(&r, Box::new(event_latency.clone()));
        let build_info = gauge_vec(
            &r,
            "callrelay_build_info",
            "Always 1; the version label says which build runs.",
            &["version"],
        );
        build_info.with_label_values(&[crate::VERSION]).set(1);
        let journal_dropped = counter(
            &r,
            "callrelay_journal_dropped_events_total",
            "Events removed from the journal because it reached max_size; reason=undelivered means a sink never got them.",
            &["reason"],
        );
        let ingest_errors = counter(
            &r,
            "callrelay_ingest_errors_total",
            "Journal commits that failed (reason=commit: every event in the batch was refused); reason=dropped_at_stop: events a Voip24h session had received but could not journal within the 3 s a stop allows; reason=dropped_at_last_stop: those the last shutdown gave up, exported by the next start.",
            &["reason"],
        );
        let upstream_malformed = counter(
            &r,
            "callrelay_upstream_malformed_total",
            "Messages from a connected upstream that could not be read as the vendor's format.",
            &["vendor", "account"],
        );
        let config_reloads = counter(
            &r,
            "callrelay_config_reloads_total",
            "Config reloads (SIGHUP) by result (ok, failed).",
            &["result"],
        );
        let config_last_reload_ok = gauge(
            &r,
            "callrelay_config_last_reload_successful",
            "1 when the last reload (SIGHUP) was applied, or none was tried since the start; 0 while the config file on disk is refused and the relay runs on an older one.",
        );
        config_last_reload_ok.set(1);
        let http_connections_closed = counter(
            &r,
            "callrelay_http_connections_closed_total",
            "HTTP connections the relay closed before any route answered: reason=header_timeout (no whole request head in time), idle (no request for long after the last), head_too_large (a head over 64 KiB, answered 431), malformed_head (not an HTTP request head, answered 400: e.g. TLS to this plain-HTTP port), over_capacity (closed as soon as accepted: server.max_connections were open).",
            &["reason"],
        );
        let http_connections = gauge(
            &r,
            "callrelay_http_connections",
            "HTTP connections open now (WebSocket sessions not counted: callrelay_ws_clients); at server.max_connections a new one is closed at once, counted as callrelay_http_connections_closed_total{reason=\"over_capacity\"}.",
        );
        let http_replies_refused = counter(
            &r,
            "callrelay_http_replies_refused_total",
            "/metrics and /status requests answered 503 because the rendered replies their clients have not taken yet fill the reply budget (16 MiB): clients that do not read their replies, or open no HTTP/2 window, hold them; by route (metrics, status).",
            &["route"],
        );
        let config_restart_pending = gauge(
            &r,
            "callrelay_config_restart_pending",
            "Settings the config file changed that the running relay keeps until a restart (server.listen, journal.path, journal.retention, journal.max_size, dedup.window, websocket.path, websocket.replay_memory), as the last applied reload found them; /status restart_pending names them.",
        );
        let ws_replays_waiting = gauge(
            &r,
            "callrelay_ws_replays_waiting",
            "WebSocket sessions waiting to read their next page of history from the journal because the pages other sessions hold fill websocket.replay_memory (a replay after a reconnect, or a client catching up after a lag).",
        );
        let ws_refused = counter(
            &r,
            "callrelay_ws_refused_total",
            "WebSocket connections answered before the upgrade, by reason: unauthorized (401), bad_since and bad_query (400), not_websocket (axum's 4xx: no WebSocket upgrade, or one a proxy in front stripped of Upgrade/Connection or sent as HTTP/1.0), shutting_down and max_clients (503), wrong_path (404: an upgrade at a path that is not websocket.path), foreign_origin (403: a browser page of another origin while websocket.tokens is empty), proxied (403: a request through a proxy while websocket.tokens is empty), account_not_allowed (403: an account filter outside the token's accounts).",
            &["reason"],
        );
        let journal_first_seq = gauge(
            &r,
            "callrelay_journal_first_seq",
            "Oldest seq the journal holds (last_seq + 1 when empty): last_seq - first_seq + 1 events are held, the most a sink can fall behind before journal.max_size drops what it has not delivered.",
        );
        let journal_max_bytes = gauge(
            &r,
            "callrelay_journal_max_bytes",
            "journal.max_size: the bytes of events the journal holds at most.",
        );
        let journal_file_bytes = gauge(
            &r,
            "callrelay_journal_file_bytes",
            "Size of the journal file on disk (it reuses its free pages and does not shrink).",
        );
        let journal_writable = gauge(
            &r,
            "callrelay_journal_writable",
            "1 while the journal takes events; 0 from a failed commit to the next good one, once its writer has stopped, or once its file is gone.",
        );
        // A relay that has not been scraped yet has not failed a commit either.
        journal_writable.set(1);
        let kafka_topics_missing = gauge(
            &r,
            "callrelay_kafka_topics_missing",
            "Kafka topics that configured accounts will need and the cluster lacks (kafka.create_topics = false): the first event for one stops Kafka delivery for every account. Looked up at the sink's start and once a minute; 0 when none, or not known.",
        );
        let journal_held_in_memory = gauge(
            &r,
            "callrelay_journal_held_in_memory_events",
            "Events journal.max_size removed before a sink delivered them that the sink still holds only in memory (the Kafka sink's read-ahead and librdkafka's queue), as of the last retention pass: a restart of the relay now would lose them (then counted as dropped undelivered). 0 when none.",
        );
        let journal_retention_failing = gauge(
            &r,
            "callrelay_journal_retention_failing",
            "1 while the journal's retention passes fail (nothing old is removed: the journal and its dedup log grow until the disk is full), 0 once one succeeds, and 0 while they fail because journal commits fail or its file is gone (callrelay_journal_writable shows those).",
        );
        // The fan-out always runs; Kafka's series come with its config (`prime`).
        events_published.with_label_values(&["websocket"]);
        // Counters an alert watches with `increase()` start at 0: a series
        // born at 1 has no earlier sample, so Prometheus sees no increase and
        // the first failed commit or refused reload would never alert.
        for reason in ["commit", "dropped_at_stop", "dropped_at_last_stop"] {
            ingest_errors.with_label_values(&[reason]);
        }
        for result in ["ok", "failed"] {
            config_reloads.with_label_values(&[result]);
        }
        // A refused credential: the first 401 counts as much as the later ones.
        for vendor in Vendor::ALL {
            webhook_requests.with_label_values(&[vendor.as_str(), "401"]);
        }
        for reason in ["undelivered", "delivered"] {
            journal_dropped.with_label_values(&[reason]);
        }
        for reason in crate::http_serve::Closed::ALL {
            http_connections_closed.with_label_values(&[reason.label()]);
        }
        for route in crate::reply_budget::Route::ALL {
            http_replies_refused.with_label_values(&[route.label()]);
        }
        // A browser sees every refusal as a bare 1006: this is where a CRM
        // screen retrying with a revoked token shows, from its first attempt.
        for reason in crate::sinks::websocket::Refusal::ALL {
            ws_refused.with_label_values(&[reason.as_str()]);
        }
        // The rest of what a dashboard shows with `increase()`/`rate()` starts
        // at 0 too, so that the first 413, slow consumer or failed publish
        // shows there (a series born at 1 shows no increase); what depends on
        // the accounts is exported by `prime`.
        for vendor in Vendor::ALL {
            for code in WEBHOOK_CODES {
                webhook_requests.with_label_values(&[vendor.as_str(), code]);
            }
        }
        // `unknown`: a path under /hooks/ that names no vendor; answered 503
        // while the journal opens, which `CallrelayWebhooksRefused` watches.
        for code in ["404", "503"] {
            webhook_requests.with_label_values(&["unknown", code]);
        }
        for reason in crate::sinks::websocket::session::End::REASONS {
            ws_disconnects.with_label_values(&[reason]);
        }
        let process = ProcessCollector::new();
        register(&r, Box::new(process.clone()));
        Metrics {
            registry: r,
            events_received,
            events_duplicate,
            events_journaled,
            events_published,
            publish_errors,
            webhook_requests,
            upstream_connected,
            upstream_reconnects,
            journal_last_seq,
            journal_bytes,
            webhook_body_bytes,
            sink_lag_events,
            sink_ready,
            ws_clients,
            ws_disconnects,
            event_latency,
            build_info,
            journal_dropped,
            ingest_errors,
            upstream_malformed,
            config_reloads,
            config_last_reload_ok,
            http_connections_closed,
            http_connections,
            http_replies_refused,
            ws_refused,
            journal_first_seq,
            journal_max_bytes,
            journal_file_bytes,
            journal_writable,
            kafka_topics_missing,
            journal_retention_failing,
            journal_held_in_memory,
            ws_replays_waiting,
            config_restart_pending,
            process,
        }
    }

    /// Exports at 0 the per-account series of every account and vendor
    /// `config` names: events received and duplicates per account, events
    /// journaled per vendor and category, malformed messages and reconnects
    /// (by every reason it can count) per connection source, and the Kafka
    /// sink's published and error counters when it is
    /// configured (without it, a `sink="kafka"` series at 0 read as a sink
    /// that delivers nothing). Called at start and after each reload (an
    /// account or a sink added then starts at 0 as well); series of those
    /// removed stay, as counters do.
    pub fn prime(&self, config: &Config) {
        if config.kafka.is_some() {
            self.events_published.with_label_values(&["kafka"]);
            for reason in crate::sinks::kafka::forwarder::PUBLISH_ERROR_REASONS {
                self.publish_errors.with_label_values(&["kafka", reason]);
            }
        }
        let webhooks = config.webhook.iter().map(|w| {
            let w = w.get_ref();
            (w.vendor, w.account.get_ref().as_str(), Transport::Webhook)
        });
        let voip24h = config.voip24h.iter().map(|c| {
            (
                Vendor::Voip24h,
                c.get_ref().account.get_ref().as_str(),
                Transport::SocketIo,
            )
        });
        let sprecord = config.sprecord.iter().map(|c| {
            (
                Vendor::Sprecord,
                c.get_ref().account.get_ref().as_str(),
                Transport::Sse,
            )
        });
        let mut vendors = Vec::new();
        for (vendor, account, transport) in webhooks.chain(voip24h).chain(sprecord) {
            self.events_received
                .with_label_values(&[vendor.as_str(), account, transport.as_str()]);
            self.events_duplicate
                .with_label_values(&[vendor.as_str(), account]);
            // A connection source's own series; a webhook has none.
            let reconnect_reasons = match transport {
                Transport::Webhook => None,
                Transport::SocketIo => Some(crate::sources::voip24h::RECONNECT_REASONS),
                Transport::Sse => Some(crate::sources::sprecord::RECONNECT_REASONS),
            };
            if let Some(reasons) = reconnect_reasons {
                self.upstream_malformed
                    .with_label_values(&[vendor.as_str(), account]);
                for reason in reasons {
                    self.upstream_reconnects
                        .with_label_values(&[vendor.as_str(), account, reason]);
                }
            }
            if !vendors.contains(&vendor) {
                vendors.push(vendor);
            }
        }
        for vendor in vendors {
            for category in vendor.categories() {
                self.events_journaled
                    .with_label_values(&[vendor.as_str(), category]);
            }
        }
    }

    /// The journal's gauges, as it is now: at start, on each scrape and
    /// after each retention pass. Not `last_seq`, which the ingest writer
    /// sets at each commit: read here beside it, before a commit whose
    /// newer seq the writer then set, it put the older one back.
    pub fn observe_journal(&self, journal: &crate::journal::Journal) {
        set_saturating(&self.journal_first_seq, journal.first_seq());
        set_saturating(&self.journal_bytes, journal.bytes());
        set_saturating(&self.journal_max_bytes, journal.options().max_size);
        set_saturating(&self.journal_file_bytes, journal.file_bytes());
    }

    /// [`Metrics::observe_journal`] and `last_seq`, before the ingest
    /// writer runs: the seq the journal held when it was opened, until the
    /// first commit.
    pub fn observe_journal_at_start(&self, journal: &crate::journal::Journal) {
        set_saturating(&self.journal_last_seq, journal.last_seq());
        self.observe_journal(journal);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config's accounts and sinks have their series at 0 before any
    /// event: a connection source's malformed count (a webhook has none),
    /// each vendor's categories, and the Kafka sink's only when it is there.
    #[test]
    fn a_configs_accounts_and_sinks_are_exported_at_zero() {
        let text = "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"t4\"\napi_key = \"k\"\n\
            [[sprecord]]\naccount = \"office\"\nurl = \"http://127.0.0.1:1\"\n";
        let kafka = "[kafka]\nbrokers = \"127.0.0.1:9092\"\n";
        let lookup = |_: &str| None;
        let without_kafka = Config::from_text("relay.toml", text, &lookup).unwrap();
        let with_kafka =
            Config::from_text("relay.toml", &format!("{text}{kafka}"), &lookup).unwrap();
        let metrics = Metrics::new();
        metrics.prime(&without_kafka);
        let primed = metrics.render();
        let has = |text: &str, series: &str| text.lines().any(|l| l == format!("{series} 0"));
        for series in [
            r#"callrelay_events_received_total{account="t4",transport="webhook",vendor="tel4vn"}"#,
            r#"callrelay_events_received_total{account="office",transport="sse",vendor="sprecord"}"#,
            r#"callrelay_events_duplicate_total{account="office",vendor="sprecord"}"#,
            r#"callrelay_upstream_malformed_total{account="office",vendor="sprecord"}"#,
            r#"callrelay_events_journaled_total{type="autocall",vendor="tel4vn"}"#,
            r#"callrelay_events_journaled_total{type="sms",vendor="sprecord"}"#,
            r#"callrelay_upstream_reconnects_total{account="office",reason="http_5xx",vendor="sprecord"}"#,
            r#"callrelay_upstream_reconnects_total{account="office",reason="panic",vendor="sprecord"}"#,
        ] {
            assert!(has(&primed, series), "no `{series} 0` in:\n{primed}");
        }
        let reconnect_series = |text: &str, vendor: &str| {
            text.lines()
                .filter(|l| {
                    l.starts_with("callrelay_upstream_reconnects_total{")
                        && l.contains(&format!("vendor=\"{vendor}\""))
                })
                .count()
        };
        assert_eq!(
            reconnect_series(&primed, "sprecord"),
            crate::sources::sprecord::RECONNECT_REASONS.len()
        );
        // A webhook account reconnects nothing.
        assert_eq!(reconnect_series(&primed, "tel4vn"), 0);
        for absent in [
            r#"callrelay_upstream_malformed_total{account="t4",vendor="tel4vn"}"#,
            r#"callrelay_events_journaled_total{type="crm",vendor="caresoft"}"#,
            r#"callrelay_events_published_total{sink="kafka"}"#,
        ] {
            assert!(!has(&primed, absent), "`{absent}` in:\n{primed}");
        }
        metrics.prime(&with_kafka);
        let primed = metrics.render();
        for series in [
            r#"callrelay_events_published_total{sink="kafka"}"#,
            r#"callrelay_publish_errors_total{reason="timeout",sink="kafka"}"#,
        ] {
            assert!(has(&primed, series), "no `{series} 0` in:\n{primed}");
        }
    }

    /// The journal's gauges are what the journal says, at each look.
    #[test]
    fn the_journal_gauges_follow_the_journal() {
        use crate::journal::Journal;
        use crate::journal::tests_support::{event, options};

        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(options(dir.path())).unwrap();
        journal
            .append_batch(&[event("a"), event("b"), event("c")])
            .unwrap();
        let metrics = Metrics::new();
        metrics.observe_journal_at_start(&journal);
        assert_eq!(metrics.journal_last_seq.get(), 3);
        assert_eq!(metrics.journal_first_seq.get(), 1);
        assert_eq!(metrics.journal_max_bytes.get(), 1 << 30);
        assert!(metrics.journal_bytes.get() > 0);
        assert_eq!(
            metrics.journal_file_bytes.get(),
            i64::try_from(journal.file_bytes()).unwrap()
        );
    }

    /// Retention and a scrape observe the journal beside the writer: one
    /// that read `last_seq` before a commit whose writer then set the newer
    /// seq put the older one back, and the gauge went backwards.
    #[test]
    fn observing_the_journal_never_lowers_its_last_seq() {
        use crate::journal::Journal;
        use crate::journal::tests_support::{event, options};

        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(options(dir.path())).unwrap();
        journal.append_batch(&[event("a"), event("b")]).unwrap();
        let metrics = Metrics::new();
        // The writer's commit of seq 3, after the observer read seq 2.
        metrics.journal_last_seq.set(3);
        metrics.observe_journal(&journal);
        assert_eq!(metrics.journal_last_seq.get(), 3);
        assert_eq!(metrics.journal_first_seq.get(), 1, "the rest observed");
    }

    #[test]
    fn the_counters_alerts_watch_start_at_zero() {
        let text = Metrics::new().render();
        for series in [
            "callrelay_ingest_errors_total{reason=\"commit\"} 0",
            "callrelay_ingest_errors_total{reason=\"dropped_at_stop\"} 0",
            "callrelay_config_reloads_total{result=\"failed\"} 0",
            "callrelay_config_reloads_total{result=\"ok\"} 0",
            "callrelay_journal_dropped_events_total{reason=\"undelivered\"} 0",
            "callrelay_journal_dropped_events_total{reason=\"delivered\"} 0",
            // Counted while the journal opens (`app::opening_answers`): born
            // at 1, a restart's refusals never showed as an increase. (A
            // first start's are in the first scrape whatever: `/metrics`
            // is refused too until the journal is open.)
            "callrelay_webhook_requests_total{code=\"503\",vendor=\"unknown\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == series),
                "no `{series}` in:\n{text}"
            );
        }
    }
}
