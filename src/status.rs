//! The live state board behind `/status`, `/readyz`, the upstream metrics and
//! the reload metrics.
//!
//! Sources report their connection state through an [`UpstreamReporter`]; it keeps
//! `/status`, `callrelay_upstream_connected` and
//! `callrelay_upstream_reconnects_total` in step, so no source can update one
//! and forget another; a reload's outcome keeps `/status` `last_reload` and
//! the reload metrics in step the same way. Sinks publish a JSON snapshot of
//! their own state.
//! Guarantees: nothing here blocks for long (short mutex sections only), and a
//! dropped reporter removes its upstream from the board and zeroes its gauge.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::event::{Vendor, format_time};
use crate::metrics::Metrics;
use crate::sources::proxy::ProxyRoute;

/// The state of one upstream connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnState {
    Disconnected,
    Connecting,
    Signing,
    Connected,
    BackingOff,
    /// Refused for credentials: it keeps retrying slowly.
    AuthFailed,
}

impl ConnState {
    /// The state as `/status` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Disconnected => "disconnected",
            ConnState::Connecting => "connecting",
            ConnState::Signing => "signing",
            ConnState::Connected => "connected",
            ConnState::BackingOff => "backing_off",
            ConnState::AuthFailed => "auth_failed",
        }
    }
}

/// One upstream connection, as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct UpstreamStatus {
    pub vendor: Vendor,
    pub account: String,
    pub stream: String,
    pub state: ConnState,
    pub since: String,
    pub last_event: Option<String>,
    pub reconnects: u64,
    pub backoff_until: Option<String>,
    pub last_error: Option<String>,
    /// e.g. the Engine.IO version in use.
    pub detail: Option<String>,
    /// The proxy it connects through, as `http://host:port` (never its
    /// credentials); absent for a direct connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Since when it has been without a connection: its registration, or
    /// the moment its last connection was lost. Readiness grace runs from here,
    /// so neither a retry nor a long-lived connection restarts it.
    #[serde(skip)]
    down_since: Instant,
    #[serde(skip)]
    grace: Duration,
    /// Which [`UpstreamReporter`] the row is: only that one removes it.
    #[serde(skip)]
    registration: u64,
}

impl UpstreamStatus {
    /// Moves to `state`, noting the moment a connection is lost.
    fn enter(&mut self, state: ConnState, now: Instant) {
        if self.state == ConnState::Connected && state != ConnState::Connected {
            self.down_since = now;
        }
        if self.state != state {
            self.state = state;
            self.since = format_time(OffsetDateTime::now_utc());
        }
    }
}

/// The last reload's outcome, as `/status` `last_reload` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReloadAttempt {
    /// Whether its config was applied.
    pub ok: bool,
    /// When it was applied or refused.
    pub at: String,
    /// Why it was refused, as the log's refusal lines say it (one line per
    /// problem, `FILE:LINE:COL: …`, which never quote a secret); `None`
    /// when applied.
    pub error: Option<String>,
}

type Key = (Vendor, String, String);

#[derive(Default)]
struct Board {
    upstreams: BTreeMap<Key, UpstreamStatus>,
    sinks: BTreeMap<String, SinkStatus>,
    /// When `max_size` last dropped events a sink had not had (how many
    /// since the start is the `journal_dropped{undelivered}` counter).
    last_undelivered_drop: Option<Instant>,
    /// Why the last retention pass failed, while passes fail.
    retention_failure: Option<String>,
    /// Kafka topics configured accounts will need that the cluster lacks.
    kafka_topics_missing: Vec<String>,
    /// Settings the file changed that the running relay keeps until a
    /// restart, as the last applied reload said them.
    restart_pending: Vec<String>,
    /// The last reload applied or refused; `None` before any.
    last_reload: Option<ReloadAttempt>,
    /// The last upstream registration handed out.
    registrations: u64,
}

/// How long `degraded` names the last drop of undelivered events: long
/// enough to be seen by whoever the page wakes.
const DROPS_SHOWN_FOR: Duration = Duration::from_secs(15 * 60);

/// A sink's status: a JSON snapshot and whether it is ready.
#[derive(Clone, Debug)]
pub struct SinkStatus {
    pub ready: bool,
    pub reason: Option<String>,
    pub detail: Value,
}

/// Shared board; cheap to clone.
#[derive(Clone)]
pub struct StatusBoard {
    board: Arc<Mutex<Board>>,
    metrics: Arc<Metrics>,
}

impl StatusBoard {
    pub fn new(metrics: Arc<Metrics>) -> StatusBoard {
        StatusBoard {
            board: Arc::new(Mutex::new(Board::default())),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // A panic while holding this lock cannot leave the board inconsistent
        // in a way that matters more than losing /status, so recover the guard.
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Registers an upstream connection (`stream` is "0" for a socket.io
    /// session, "0".."2" for SSE streams). `grace` bounds how long it may stay
    /// unconnected before `/readyz` says not ready.
    pub fn upstream(
        &self,
        vendor: Vendor,
        account: &str,
        stream: &str,
        grace: Duration,
    ) -> UpstreamReporter {
        let key = (vendor, account.to_owned(), stream.to_owned());
        let now = Instant::now();
        let mut board = self.lock();
        board.registrations += 1;
        let registration = board.registrations;
        board.upstreams.insert(
            key.clone(),
            UpstreamStatus {
                vendor,
                account: account.to_owned(),
                stream: stream.to_owned(),
                state: ConnState::Disconnected,
                since: format_time(OffsetDateTime::now_utc()),
                last_event: None,
                reconnects: 0,
                backoff_until: None,
                last_error: None,
                detail: None,
                proxy: None,
                down_since: now,
                grace,
                registration,
            },
        );
        // Under the board's lock, as every write of the row's gauge: a
        // registration racing a newer one cannot zero the newer one's.
        self.metrics
            .upstream_connected
            .with_label_values(&[vendor.as_str(), account, stream])
            .set(0);
        drop(board);
        UpstreamReporter {
            board: self.clone(),
            key,
            registration,
        }
    }

    /// Publishes a sink's state (`kafka`, `websocket`).
    pub fn set_sink(&self, name: &str, status: SinkStatus) {
        self.set_sink_with(name, || status);
    }

    /// Publishes a sink's state computed by `status` under the board's lock,
    /// so of two publishers racing, the last one to write also read last: a
    /// count read before the other's change cannot overwrite a newer one.
    pub fn set_sink_with(&self, name: &str, status: impl FnOnce() -> SinkStatus) {
        let mut board = self.lock();
        let status = status();
        self.metrics
            .sink_ready
            .with_label_values(&[name])
            .set(i64::from(status.ready));
        board.sinks.insert(name.to_owned(), status);
    }

    pub fn remove_sink(&self, name: &str) {
        let mut board = self.lock();
        board.sinks.remove(name);
        let _ = self.metrics.sink_ready.remove_label_values(&[name]);
    }

    pub fn upstreams(&self) -> Vec<UpstreamStatus> {
        self.lock().upstreams.values().cloned().collect()
    }

    pub fn sinks(&self) -> BTreeMap<String, SinkStatus> {
        self.lock().sinks.clone()
    }

    /// Reasons the relay is not ready, from upstreams; empty when ready.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        self.not_ready_reasons_at(Instant::now())
    }

    fn not_ready_reasons_at(&self, now: Instant) -> Vec<String> {
        self.stream_problems_at(now)
            .into_iter()
            .filter(|(_, account_connected)| !*account_connected)
            .map(|(reason, _)| reason)
            .collect()
    }

    /// Streams down past their grace, or refused, each with whether another
    /// stream of its account is connected. SPRecord sends every event on
    /// each stream, so such an account still gets every event: the relay is
    /// degraded, not unready (a load balancer on `/readyz` would otherwise
    /// turn away every vendor's webhooks for one redundant stream).
    fn stream_problems_at(&self, now: Instant) -> Vec<(String, bool)> {
        let board = self.lock();
        let connected_accounts: std::collections::HashSet<(Vendor, &str)> = board
            .upstreams
            .values()
            .filter(|u| u.state == ConnState::Connected)
            .map(|u| (u.vendor, u.account.as_str()))
            .collect();
        let mut problems = Vec::new();
        for u in board.upstreams.values() {
            if u.state == ConnState::Connected {
                continue;
            }
            let error = u
                .last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            let (vendor, account, stream) = (&u.vendor, &u.account, &u.stream);
            // A Voip24h account has one session; SPRecord's have streams.
            let connection = match u.vendor {
                Vendor::Voip24h => format!("{vendor}/{account} session"),
                _ => format!("{vendor}/{account} stream {stream}"),
            };
            // Refused credentials need a human: no grace.
            let reason = if u.state == ConnState::AuthFailed {
                format!("{connection}: its credentials were refused{error}")
            } else if now.saturating_duration_since(u.down_since) > u.grace {
                format!(
                    "{connection} is {} and has not been connected for over {:?}{error}",
                    u.state.as_str(),
                    u.grace
                )
            } else {
                continue;
            };
            problems.push((
                reason,
                connected_accounts.contains(&(u.vendor, u.account.as_str())),
            ));
        }
        problems
    }

    /// `journal.max_size` dropped `count` events a sink had not delivered:
    /// counted in `callrelay_journal_dropped_events_total{reason="undelivered"}`
    /// and named under `degraded` for a while.
    pub fn dropped_undelivered(&self, count: u64) {
        self.dropped_undelivered_at(count, Instant::now());
    }

    fn dropped_undelivered_at(&self, count: u64, now: Instant) {
        if count > 0 {
            self.undelivered_counter().inc_by(count);
            self.lock().last_undelivered_drop = Some(now);
        }
    }

    /// The retention pass failed (`Some`, why) or succeeded (`None`); whether
    /// passes were failing before. Named under `degraded` while they fail:
    /// nothing old is removed then, and the journal grows past `max_size`.
    /// `callrelay_journal_retention_failing` follows it, for an alert.
    pub fn retention_failed(&self, why: Option<String>) -> bool {
        self.metrics
            .journal_retention_failing
            .set(i64::from(why.is_some()));
        std::mem::replace(&mut self.lock().retention_failure, why).is_some()
    }

    /// The Kafka topics configured accounts will need and the cluster lacks
    /// (empty: none, or not known). Named under `degraded` while any are:
    /// the first event for one stops Kafka delivery for every account.
    pub fn kafka_topics_missing(&self, topics: Vec<String>) {
        crate::metrics::set_saturating(&self.metrics.kafka_topics_missing, topics.len() as u64);
        self.lock().kafka_topics_missing = topics;
    }

    /// The settings the last applied reload found changed in the file but
    /// keeps at their running values until a restart (empty: none), each as
    /// its reload warning says it. Only a reload sets them: a refused one
    /// changes nothing, and the next applied one says them afresh, so a
    /// file put back clears them.
    pub fn set_restart_pending(&self, settings: Vec<String>) {
        crate::metrics::set_saturating(&self.metrics.config_restart_pending, settings.len() as u64);
        self.lock().restart_pending = settings;
    }

    /// See [`StatusBoard::set_restart_pending`].
    pub fn restart_pending(&self) -> Vec<String> {
        self.lock().restart_pending.clone()
    }

    /// A reload's config is in force: counted `ok`, and `last_reload` says so.
    pub fn reload_applied(&self) {
        self.reload_ended(None);
    }

    /// A reload was refused (the old config runs on) for `error`, the
    /// refusal's lines as the log says them: counted `failed`, and
    /// `last_reload` says why, so that `/status` tells the file on disk
    /// from the one in force (`restart_pending` speaks of the latter).
    pub fn reload_refused(&self, error: String) {
        self.reload_ended(Some(error));
    }

    fn reload_ended(&self, error: Option<String>) {
        let ok = error.is_none();
        // Under the board's lock, as the upstream gauges: of two reloads
        // ending together, the gauge and `last_reload` name the same one.
        let mut board = self.lock();
        let result = if ok { "ok" } else { "failed" };
        self.metrics
            .config_reloads
            .with_label_values(&[result])
            .inc();
        self.metrics.config_last_reload_ok.set(i64::from(ok));
        board.last_reload = Some(ReloadAttempt {
            ok,
            at: format_time(OffsetDateTime::now_utc()),
            error,
        });
    }

    /// See [`StatusBoard::reload_refused`].
    pub fn last_reload(&self) -> Option<ReloadAttempt> {
        self.lock().last_reload.clone()
    }

    /// Events `max_size` dropped before a sink had them, since the start.
    pub fn undelivered_drops(&self) -> u64 {
        self.undelivered_counter().get()
    }

    fn undelivered_counter(&self) -> prometheus::IntCounter {
        self.metrics
            .journal_dropped
            .with_label_values(&["undelivered"])
    }

    /// Sinks that cannot deliver now, with their reasons. They do not make the
    /// relay unready: events still become durable and wait in the journal, and
    /// a load balancer that turned webhooks away for a Kafka outage would lose
    /// what the relay could have kept.
    pub fn degraded_reasons(&self) -> Vec<String> {
        self.degraded_reasons_at(Instant::now())
    }

    /// Sinks that cannot deliver, events `max_size` dropped before a sink
    /// had them (for 15 min after the last), then streams that are down
    /// while another stream of their account is connected.
    fn degraded_reasons_at(&self, now: Instant) -> Vec<String> {
        let board = self.lock();
        let mut reasons: Vec<String> = board
            .sinks
            .iter()
            .filter(|(_, s)| !s.ready)
            .map(|(name, s)| {
                format!(
                    "sink {name} is not delivering{}",
                    s.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        if let Some(last) = board.last_undelivered_drop {
            let total = self.undelivered_drops();
            let ago = now.saturating_duration_since(last);
            if ago < DROPS_SHOWN_FOR {
                reasons.push(format!(
                    "the journal reached max_size and dropped events a sink had not delivered: {total} since the start, the last {}s ago; they are lost for that sink",
                    ago.as_secs()
                ));
            }
        }
        if let Some(why) = &board.retention_failure {
            reasons.push(format!(
                "the journal's retention pass fails ({why}): nothing is removed, and the journal grows past max_size until the disk is full"
            ));
        }
        if !board.kafka_topics_missing.is_empty() {
            reasons.push(format!(
                "Kafka topics that configured accounts will need do not exist: {}; the first event for one stops Kafka delivery for every account until it exists (create them, or set kafka.create_topics = true)",
                crate::sinks::kafka::preflight::listed(&board.kafka_topics_missing)
            ));
        }
        drop(board);
        reasons.extend(
            self.stream_problems_at(now)
                .into_iter()
                .filter(|(_, account_connected)| *account_connected)
                .map(|(reason, _)| {
                    format!("{reason}; events still arrive on the account's other streams")
                }),
        );
        reasons
    }
}

/// A source's handle on its row of the board.
pub struct UpstreamReporter {
    board: StatusBoard,
    key: Key,
    registration: u64,
}

impl UpstreamReporter {
    /// Applies `f` to the row, if it is still this registration's: a
    /// source aborted after a stop's timeout may still be mid-poll when its
    /// replacement has registered the same row, and must not write its
    /// state there. Whether it was.
    fn update(&self, f: impl FnOnce(&mut UpstreamStatus)) -> bool {
        self.update_then(f, || {})
    }

    /// [`Self::update`], then `and_then` under the same lock when the row
    /// was this registration's (a gauge set beside the row, so that two
    /// registrations cannot interleave the two).
    fn update_then(&self, f: impl FnOnce(&mut UpstreamStatus), and_then: impl FnOnce()) -> bool {
        let mut board = self.board.lock();
        match board.upstreams.get_mut(&self.key) {
            Some(u) if u.registration == self.registration => {
                f(u);
                and_then();
                true
            }
            _ => false,
        }
    }

    fn labels(&self) -> [&str; 3] {
        [self.key.0.as_str(), &self.key.1, &self.key.2]
    }

    /// Moves to `state`; `Connected` sets the gauge to 1, anything else to 0.
    pub fn set_state(&self, state: ConnState) {
        self.set_state_at(state, Instant::now());
    }

    fn set_state_at(&self, state: ConnState, now: Instant) {
        self.update_then(
            |u| {
                u.enter(state, now);
                if state == ConnState::Connected {
                    u.backoff_until = None;
                    u.last_error = None;
                }
            },
            || self.show_connected(state),
        );
    }

    /// `callrelay_upstream_connected` for this stream in `state`.
    fn show_connected(&self, state: ConnState) {
        self.board
            .metrics
            .upstream_connected
            .with_label_values(&self.labels())
            .set(i64::from(state == ConnState::Connected));
    }

    /// The connection ended for `reason` (a short, bounded word such as
    /// `disconnect`, `bandwidth`, `timeout`, `http_429`) and will be retried
    /// after `backoff`. `error` is shown in `/status`; it must hold no secret.
    pub fn reconnecting(&self, reason: &str, error: Option<String>, backoff: Duration) {
        self.reconnecting_at(reason, error, backoff, Instant::now());
    }

    fn reconnecting_at(
        &self,
        reason: &str,
        error: Option<String>,
        backoff: Duration,
        now: Instant,
    ) {
        // A wait past year 9999 panicked the task that reported it: no time is shown instead.
        let until = time::Duration::try_from(backoff)
            .ok()
            .and_then(|backoff| OffsetDateTime::now_utc().checked_add(backoff));
        let [vendor, account, _] = self.labels();
        let metrics = &self.board.metrics;
        self.update_then(
            |u| {
                u.reconnects += 1;
                u.enter(ConnState::BackingOff, now);
                u.since = format_time(OffsetDateTime::now_utc());
                u.backoff_until = until.map(format_time);
                u.last_error = error;
            },
            || self.show_connected(ConnState::BackingOff),
        );
        // Counted whoever's row it is: the attempt did end.
        metrics
            .upstream_reconnects
            .with_label_values(&[vendor, account, reason])
            .inc();
    }

    /// The connection ended for `error` (shown in `/status`; no secret),
    /// and its source winds it down before it reconnects: shown as `state`
    /// from now, the reconnect counted later by [`Self::reconnecting`] or
    /// [`Self::auth_failed`].
    pub fn ended(&self, state: ConnState, error: String) {
        let now = Instant::now();
        self.update_then(
            |u| {
                u.enter(state, now);
                u.last_error = Some(error);
            },
            || self.show_connected(state),
        );
    }

    /// Credentials were refused: shown in `/status`, and `/readyz` fails at once.
    pub fn auth_failed(&self, error: String, backoff: Duration) {
        self.reconnecting("auth", Some(error), backoff);
        self.update(|u| u.enter(ConnState::AuthFailed, Instant::now()));
    }

    pub fn set_detail(&self, detail: Option<String>) {
        self.update(|u| u.detail = detail);
    }

    /// The proxy this connection goes through (shown without credentials).
    pub fn set_proxy(&self, proxy: Option<&ProxyRoute>) {
        let shown = proxy.map(ToString::to_string);
        self.update(|u| u.proxy = shown);
    }

    /// An event arrived on this connection.
    pub fn event_seen(&self) {
        let now = format_time(OffsetDateTime::now_utc());
        self.update(|u| u.last_event = Some(now));
    }

    pub fn state(&self) -> Option<ConnState> {
        self.board.lock().upstreams.get(&self.key).map(|u| u.state)
    }
}

impl Drop for UpstreamReporter {
    /// Removes its row and gauge, unless a newer registration of the same
    /// connection has taken them over: a source stopped by abort drops its
    /// streams' reporters in the background, possibly after its
    /// replacement registered the same rows.
    fn drop(&mut self) {
        let mut board = self.board.lock();
        let ours = board
            .upstreams
            .get(&self.key)
            .is_some_and(|u| u.registration == self.registration);
        if !ours {
            return;
        }
        board.upstreams.remove(&self.key);
        let _ = self
            .board
            .metrics
            .upstream_connected
            .remove_label_values(&self.labels());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> StatusBoard {
        StatusBoard::new(Arc::new(Metrics::new()))
    }

    #[test]
    fn a_wait_past_the_last_date_shows_no_time_and_does_not_panic() {
        let board = board();
        let up = board.upstream(Vendor::Voip24h, "a", "0", Duration::from_secs(30));
        up.reconnecting("bandwidth", None, Duration::from_secs(60));
        assert!(board.upstreams()[0].backoff_until.is_some());
        up.reconnecting("bandwidth", None, Duration::MAX);
        assert_eq!(board.upstreams()[0].backoff_until, None);
        assert_eq!(board.upstreams()[0].reconnects, 2);
    }

    #[test]
    fn grace_runs_from_the_loss_and_a_retry_does_not_restart_it() {
        let board = board();
        let grace = Duration::from_secs(30);
        let up = board.upstream(Vendor::Sprecord, "office", "0", grace);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(
            board.not_ready_reasons_at(at(10)).is_empty(),
            "within grace"
        );
        assert_eq!(
            board.not_ready_reasons_at(at(31)).len(),
            1,
            "never connected"
        );

        // A connection that lives longer than the grace, then drops at 100 s.
        up.set_state_at(ConnState::Connected, at(1));
        let backoff = Duration::from_secs(5);
        up.reconnecting_at("disconnect", None, backoff, at(100));
        assert!(
            board.not_ready_reasons_at(at(105)).is_empty(),
            "a brief reconnect does not flap readiness"
        );
        // Retries (each one connecting, then backing off) keep the loss time.
        up.set_state_at(ConnState::Connecting, at(110));
        up.reconnecting_at("connect", None, backoff, at(111));
        up.set_state_at(ConnState::Connecting, at(125));
        assert!(board.not_ready_reasons_at(at(129)).is_empty());
        assert!(
            board.not_ready_reasons_at(at(130)).is_empty(),
            "the grace itself is still within it"
        );
        let reasons = board.not_ready_reasons_at(at(131));
        assert_eq!(reasons.len(), 1, "down longer than the grace");
        assert!(
            reasons[0].contains("sprecord/office stream 0"),
            "{reasons:?}"
        );

        up.set_state_at(ConnState::Connected, at(140));
        assert!(board.not_ready_reasons_at(at(500)).is_empty());
    }

    #[test]
    fn readiness_reasons_say_what_is_wrong_in_status_words() {
        let board = board();
        let grace = Duration::from_secs(30);
        let up = board.upstream(Vendor::Voip24h, "main", "0", grace);
        let t0 = Instant::now();
        up.set_state_at(ConnState::Connecting, t0);
        let reasons = board.not_ready_reasons_at(t0 + Duration::from_secs(31));
        assert_eq!(
            reasons,
            vec!["voip24h/main session is connecting and has not been connected for over 30s"]
        );
        up.auth_failed("server sent `error`: invalid key".into(), grace);
        // At once: refused credentials get no grace.
        let reasons = board.not_ready_reasons_at(Instant::now());
        assert_eq!(
            reasons,
            vec![
                "voip24h/main session: its credentials were refused: server sent `error`: invalid key"
            ]
        );
    }

    #[test]
    fn one_stream_down_while_another_of_its_account_is_up_degrades_instead() {
        let board = board();
        let grace = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let streams: Vec<_> = ["0", "1"]
            .iter()
            .map(|n| board.upstream(Vendor::Sprecord, "office", n, grace))
            .collect();
        let other = board.upstream(Vendor::Sprecord, "branch", "0", grace);
        streams[0].set_state_at(ConnState::Connected, at(1));
        other.set_state_at(ConnState::Connected, at(1));
        streams[1].reconnecting_at("connect", None, Duration::from_secs(5), at(2));
        assert!(board.not_ready_reasons_at(at(30)).is_empty());
        let degraded = board.degraded_reasons_at(at(30));
        assert_eq!(degraded.len(), 1, "{degraded:?}");
        assert!(
            degraded[0].starts_with("sprecord/office stream 1 is backing_off")
                && degraded[0].ends_with("events still arrive on the account's other streams"),
            "{degraded:?}"
        );
        // The account's last stream down too: no event of it arrives.
        streams[0].reconnecting_at("disconnect", None, Duration::from_secs(5), at(40));
        let reasons = board.not_ready_reasons_at(at(60));
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(board.degraded_reasons_at(at(60)).is_empty());
    }

    #[test]
    fn undelivered_drops_are_degraded_for_15_minutes_after_the_last() {
        let board = board();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        board.dropped_undelivered_at(0, at(0));
        assert!(board.degraded_reasons_at(at(1)).is_empty(), "none dropped");
        board.dropped_undelivered_at(300, at(10));
        board.dropped_undelivered_at(44, at(70));
        assert_eq!(board.undelivered_drops(), 344);
        assert_eq!(
            board.degraded_reasons_at(at(100)),
            vec![
                "the journal reached max_size and dropped events a sink had not delivered: 344 since the start, the last 30s ago; they are lost for that sink"
            ]
        );
        assert!(board.not_ready_reasons_at(at(100)).is_empty());
        assert_eq!(board.degraded_reasons_at(at(70 + 15 * 60 - 1)).len(), 1);
        assert!(board.degraded_reasons_at(at(70 + 15 * 60)).is_empty());
    }

    /// A retention pass that fails every time (a damaged dedup entry found
    /// after the start) removed nothing, and only the log said so, an error
    /// a second once the journal passed max_size (liveness review, round 47).
    #[test]
    fn a_failing_retention_pass_is_degraded_until_one_succeeds() {
        let board = board();
        let failing = || board.metrics().journal_retention_failing.get();
        assert_eq!(failing(), 0);
        assert!(!board.retention_failed(Some("the journal is damaged".into())));
        assert_eq!(failing(), 1);
        let reasons = board.degraded_reasons();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(
            reasons[0].starts_with("the journal's retention pass fails (the journal is damaged)"),
            "{reasons:?}"
        );
        assert!(board.not_ready_reasons().is_empty());
        assert!(board.retention_failed(Some("again".into())));
        assert!(board.retention_failed(None));
        assert_eq!(failing(), 0);
        assert!(board.degraded_reasons().is_empty());
        assert!(!board.retention_failed(None));
    }

    #[test]
    fn sinks_are_published_replaced_and_removed_with_their_gauge() {
        let board = board();
        let gauge = |name: &str| board.metrics().sink_ready.with_label_values(&[name]).get();
        let sink = |ready: bool, reason: Option<&str>| SinkStatus {
            ready,
            reason: reason.map(str::to_owned),
            detail: Value::Null,
        };
        board.set_sink("kafka", sink(false, Some("all brokers are down")));
        board.set_sink_with("websocket", || sink(true, None));
        assert_eq!((gauge("kafka"), gauge("websocket")), (0, 1));
        assert_eq!(
            board.sinks().keys().collect::<Vec<_>>(),
            ["kafka", "websocket"]
        );
        assert_eq!(
            board.degraded_reasons(),
            ["sink kafka is not delivering: all brokers are down"],
            "only the sink that is not ready"
        );
        board.set_sink("kafka", sink(true, None));
        assert_eq!(gauge("kafka"), 1);
        assert!(board.degraded_reasons().is_empty());
        board.remove_sink("kafka");
        assert_eq!(board.sinks().keys().collect::<Vec<_>>(), ["websocket"]);
        assert!(
            board
                .metrics()
                .sink_ready
                .remove_label_values(&["kafka"])
                .is_err(),
            "its series is gone"
        );
    }

    /// `last_reload` and the reload metrics name the same reload: the
    /// latest, applied or refused.
    #[test]
    fn a_reload_outcome_moves_last_reload_and_its_metrics_together() {
        let board = board();
        let metrics = board.metrics().clone();
        let counted = |result: &str| metrics.config_reloads.with_label_values(&[result]).get();
        assert_eq!(board.last_reload(), None);
        assert_eq!(metrics.config_last_reload_ok.get(), 1, "1 from the start");
        board.reload_refused("relay.toml:3:1: refused".into());
        let last = board.last_reload().unwrap();
        assert_eq!(
            (last.ok, last.error.as_deref()),
            (false, Some("relay.toml:3:1: refused"))
        );
        assert!(last.at.ends_with('Z'), "{last:?}");
        assert_eq!((counted("failed"), counted("ok")), (1, 0));
        assert_eq!(metrics.config_last_reload_ok.get(), 0);
        board.reload_applied();
        let last = board.last_reload().unwrap();
        assert_eq!((last.ok, last.error), (true, None));
        assert_eq!((counted("failed"), counted("ok")), (1, 1));
        assert_eq!(metrics.config_last_reload_ok.get(), 1);
        assert_eq!(
            serde_json::to_value(board.last_reload()).unwrap()["error"],
            Value::Null
        );
    }

    #[test]
    fn the_clock_reading_wrappers_report_now() {
        let board = board();
        let up = board.upstream(Vendor::Voip24h, "main", "0", Duration::from_secs(30));
        assert!(board.not_ready_reasons().is_empty(), "within its grace");
        up.auth_failed("invalid key".into(), Duration::from_secs(60));
        assert_eq!(
            board.not_ready_reasons(),
            ["voip24h/main session: its credentials were refused: invalid key"]
        );
        board.dropped_undelivered(3);
        assert_eq!(board.undelivered_drops(), 3);
        let degraded = board.degraded_reasons();
        assert_eq!(degraded.len(), 1, "{degraded:?}");
        assert!(degraded[0].contains(": 3 since the start"), "{degraded:?}");
    }

    /// A reporter dropped after a newer one registered the same connection
    /// (a source stopped by abort, whose streams' tasks end in the
    /// background after the replacement started) leaves the newer row and
    /// gauge alone; the newer one's drop removes them.
    #[test]
    fn only_the_latest_registration_removes_its_row() {
        let board = board();
        let grace = Duration::from_secs(30);
        let old = board.upstream(Vendor::Sprecord, "office", "0", grace);
        let new = board.upstream(Vendor::Sprecord, "office", "0", grace);
        new.set_state(ConnState::Connected);

        drop(old);
        assert_eq!(new.state(), Some(ConnState::Connected));
        assert_eq!(connected(&board, "0"), 1);
        drop(new);
        assert!(board.upstreams().is_empty());
        let labels = ["sprecord", "office", "0"];
        let series = board
            .metrics()
            .upstream_connected
            .remove_label_values(&labels);
        assert!(series.is_err(), "the gauge's series is gone");
    }

    /// A source aborted after a stop's timeout may still be mid-poll once
    /// its replacement registered the same row: it wrote its state into
    /// the replacement's row and set the replacement's gauge.
    #[test]
    fn an_older_registration_writes_nothing_to_the_newer_ones_row() {
        let board = board();
        let grace = Duration::from_secs(30);
        let old = board.upstream(Vendor::Sprecord, "office", "0", grace);
        let new = board.upstream(Vendor::Sprecord, "office", "0", grace);
        new.set_state(ConnState::Connecting);
        old.set_state(ConnState::Connected);
        old.event_seen();
        assert_eq!(new.state(), Some(ConnState::Connecting));
        assert_eq!(connected(&board, "0"), 0);
        assert_eq!(board.upstreams()[0].last_event, None);
        new.set_state(ConnState::Connected);
        old.reconnecting("timeout", Some("old".into()), Duration::from_secs(5));
        assert_eq!(new.state(), Some(ConnState::Connected));
        assert_eq!(connected(&board, "0"), 1);
        assert_eq!(board.upstreams()[0].reconnects, 0);
    }

    /// `callrelay_upstream_connected` of SPRecord account `office`'s `stream`.
    fn connected(board: &StatusBoard, stream: &str) -> i64 {
        board
            .metrics()
            .upstream_connected
            .with_label_values(&["sprecord", "office", stream])
            .get()
    }

    #[test]
    fn connecting_clears_the_last_error_and_sets_the_gauge() {
        let board = board();
        let up = board.upstream(Vendor::Sprecord, "office", "1", Duration::from_secs(30));
        let connected = || connected(&board, "1");
        up.set_state(ConnState::Connected);
        assert_eq!((up.state(), connected()), (Some(ConnState::Connected), 1));
        up.reconnecting("http_503", Some("busy".into()), Duration::from_secs(5));
        assert_eq!(connected(), 0);
        up.set_state(ConnState::Connecting);
        let row = &board.upstreams()[0];
        assert_eq!(
            row.last_error.as_deref(),
            Some("busy"),
            "kept while retrying"
        );
        assert!(row.backoff_until.is_some());
        assert_eq!(connected(), 0);
        up.set_state(ConnState::Connected);
        let row = &board.upstreams()[0];
        assert_eq!(
            (row.last_error.as_deref(), row.backoff_until.as_deref()),
            (None, None)
        );
        assert_eq!(connected(), 1);
    }

    #[test]
    fn a_row_shows_what_its_source_reports_and_goes_with_it() {
        let board = board();
        let up = board.upstream(Vendor::Voip24h, "main", "0", Duration::from_secs(30));
        up.set_detail(Some("engine.io 4".into()));
        let proxy = ProxyRoute::parse("http://user:secret@proxy.internal:3128").unwrap();
        up.set_proxy(Some(&proxy));
        assert_eq!(board.upstreams()[0].last_event, None);
        up.event_seen();
        let row = &board.upstreams()[0];
        assert_eq!(row.detail.as_deref(), Some("engine.io 4"));
        assert_eq!(row.proxy.as_deref(), Some("http://proxy.internal:3128"));
        assert!(row.last_event.is_some());
        up.set_proxy(None);
        assert_eq!(board.upstreams()[0].proxy, None);
        drop(up);
        assert!(board.upstreams().is_empty());
        assert!(
            board
                .metrics()
                .upstream_connected
                .remove_label_values(&["voip24h", "main", "0"])
                .is_err(),
            "its series is gone"
        );
    }

    #[test]
    fn states_are_named_as_status_shows_them() {
        for state in [
            ConnState::Disconnected,
            ConnState::Connecting,
            ConnState::Signing,
            ConnState::Connected,
            ConnState::BackingOff,
            ConnState::AuthFailed,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }
}
