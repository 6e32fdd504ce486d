//! The HTTP server's accept loop: serves the router on every accepted TCP
//! connection with hyper, as `axum::serve` did (HTTP/1.1 with keep-alive and
//! upgrades, HTTP/2 with prior knowledge), and bounds how long a connection
//! may hold the relay without sending it a request. `axum::serve` gives hyper
//! no timer, so a client that sent nothing, half a request head, or nothing
//! more after a response held its connection (a file descriptor, a task)
//! until it went away: an easy way to run the relay out of descriptors.
//!
//! Guarantees:
//! - a connection's first request head must arrive whole within
//!   [`HttpTimeouts::header_read`] (10 s) of the connection being accepted;
//!   otherwise the connection is closed without an answer;
//! - after a response, a connection with no request in flight for
//!   [`HttpTimeouts::idle`] (75 s) is closed, on HTTP/1.1 (a kept-alive
//!   connection: the next head must be whole within it) as on HTTP/2. Longer
//!   than the 60 s that nginx's upstream keep-alive and AWS's load balancers
//!   keep an idle connection to a backend: closing first, the relay could
//!   close one just as the front end sent a webhook on it, which the front
//!   end answers 502 and does not retry (a POST);
//! - a request being read or handled is never cut by these bounds (its body
//!   has its own, `sources::webhook::body::BODY_TIMEOUT`); the idle bound
//!   runs from when its response head is out, so a response body still being
//!   written `idle` later is cut with its connection. Until then a client
//!   that does not take its reply (it reads nothing, or opens no HTTP/2
//!   window) keeps it in memory: the relay's replies are rendered whole
//!   before they are written. Those that grow with the accounts, `/metrics`
//!   and `/status`, count in the process-wide reply budget meanwhile
//!   ([`crate::reply_budget`], 16 MiB), past which they are answered 503;
//!   the others are small (a few hundred bytes; `/readyz` a line more per
//!   reason it gives);
//! - an HTTP/2 connection has at most [`HTTP2_MAX_STREAMS`] requests open;
//! - at most [`ConnectionSlots`]' `server.max_connections` HTTP connections
//!   are open at once: past it, a new one is closed as soon as it is
//!   accepted (its descriptor freed at once, the backlog kept moving for the
//!   senders behind it), counted as `over_capacity` and logged (once per 30 s
//!   while it repeats). An attacker holding connections open (a request a
//!   minute, each after a head that grew its read buffer) holds that many,
//!   not every descriptor and the memory they take;
//! - a connection upgraded to a WebSocket is the fan-out's, not the server's:
//!   none of these bounds applies to it, and it leaves its slot at the
//!   upgrade (`websocket.max_clients` bounds the sessions);
//! - an accept error (out of file descriptors, …) never ends the server: it
//!   is logged (once per 30 s while it repeats) and accepting resumes a
//!   second later;
//! - on shutdown it stops accepting (the listener closes with its last
//!   holder), idle connections close at once and
//!   those with a request in progress once it is answered; [`serve`] returns
//!   when all have (the caller bounds that wait).
//!
//! Connections closed by a bound or the cap, or after hyper answered a
//! request head it could not take (431 over 64 KiB, 400 not HTTP: a client
//! speaking TLS to this plain-HTTP port shows so), are counted in
//! `callrelay_http_connections_closed_total{reason}`: such requests reach no
//! route, so no other metric or log line would show them. Every request carries
//! its connection's peer address ([`peer_of`]), so that a refusal can be
//! traced to whoever sent it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Extensions;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use prometheus::IntGauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;

/// How long a connection may go without sending a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// From the accept to the end of the first request head. A vendor's
    /// webhook head is a few hundred bytes sent at once: 10 s is generous on
    /// any network, and short enough that a client holding connections open
    /// without a request costs little.
    pub header_read: Duration,
    /// With no request in flight, after the first: the keep-alive a front
    /// end or a sender's pool counts on (nginx's `keepalive_timeout` is 75 s;
    /// its upstream keep-alive and AWS's load balancers keep 60 s). On
    /// HTTP/1.1 it is also the bound for the next head, which until
    /// 2026-12-05 was `header_read`: an idle kept-alive connection closed
    /// after 10 s, under the front ends' feet.
    pub idle: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(75),
        }
    }
}

/// How often a repeating accept error is logged again.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// How long accepting pauses after an error that is not the client's (as
/// `axum::serve` and hyper 0.14 did): out of file descriptors, connections
/// must close before another can be taken, and the error is logged once a
/// pause rather than once a loop turn.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The HTTP connections the server may hold open at once
/// (`server.max_connections`), and how many it holds. One for the listener:
/// the answers given while the journal opens and the relay's routes share
/// it, so that the connections the first are still closing count against
/// the second. A reload sets a new maximum: connections already open stay,
/// and new ones are closed until fewer than it are open.
#[derive(Clone, Debug)]
pub struct ConnectionSlots(Arc<SlotCounts>);

#[derive(Debug)]
struct SlotCounts {
    max: AtomicUsize,
    open: AtomicUsize,
}

impl ConnectionSlots {
    pub fn new(max: usize) -> ConnectionSlots {
        ConnectionSlots(Arc::new(SlotCounts {
            max: AtomicUsize::new(max),
            open: AtomicUsize::new(0),
        }))
    }

    pub fn max(&self) -> usize {
        self.0.max.load(Ordering::Acquire)
    }

    pub fn set_max(&self, max: usize) {
        self.0.max.store(max, Ordering::Release);
    }

    /// HTTP connections open now.
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// A slot, unless `max` are taken; `gauge` follows the count.
    fn take(&self, gauge: &IntGauge) -> Option<Slot> {
        let max = self.max();
        self.0
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()?;
        gauge.inc();
        Some(Slot {
            counts: self.0.clone(),
            gauge: gauge.clone(),
        })
    }
}

/// One open connection's place under the cap, given back when dropped.
#[derive(Debug)]
struct Slot {
    counts: Arc<SlotCounts>,
    gauge: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

/// How often connections closed over the cap are logged again while they
/// go on: a flood of them is one line per interval, with the count.
const OVER_CAPACITY_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains
/// the connections (module doc). Shared: the relay's routes take the
/// listener over from the answers given while the journal opens; it closes
/// with its last holder.
pub async fn serve(
    listener: Arc<TcpListener>,
    router: Router,
    timeouts: HttpTimeouts,
    slots: ConnectionSlots,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    accept_until(listener, router, timeouts, slots, metrics, &shutdown)
        .await
        .shutdown()
        .await;
}

/// [`serve`]'s accept loop: returns once `shutdown` is cancelled, having
/// dropped its hold on `listener` and taken no connection since; what it
/// returns drains the connections it took.
pub async fn accept_until(
    listener: Arc<TcpListener>,
    router: Router,
    timeouts: HttpTimeouts,
    slots: ConnectionSlots,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
) -> GracefulShutdown {
    let builder = Arc::new(builder());
    let graceful = GracefulShutdown::new();
    // Out of descriptors, accepting fails on every try until some close:
    // one line, then one per interval with how many were held back.
    let mut accept_errors = LogThrottle::new(ACCEPT_ERROR_LOG_INTERVAL);
    let mut over_capacity = LogThrottle::new(OVER_CAPACITY_LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            // Checked first: once cancelled, nothing more is accepted, so a
            // connection waiting in the backlog goes to whoever serves next.
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Some(slot) = slots.take(&metrics.http_connections) else {
                    // Accepted and closed rather than left in the backlog:
                    // the backlog would fill, and a vendor's connection
                    // wait there unanswered until it gave up; closed, it
                    // fails at once and its retry may find a free slot.
                    metrics
                        .http_connections_closed
                        .with_label_values(&[Closed::OverCapacity.label()])
                        .inc();
                    drop(stream);
                    if let Some(held_back) = over_capacity.admit((), std::time::Instant::now()) {
                        tracing::warn!(
                            max_connections = slots.max(),
                            peer = %peer,
                            held_back,
                            "closed a new HTTP connection at once: server.max_connections HTTP connections are open (a flood, or clients that keep connections and send little: callrelay_http_connections_closed_total{{reason=\"over_capacity\"}}); raise server.max_connections if these are real senders, see \"Open files\" in docs/operations.md"
                        );
                    }
                    continue;
                };
                let connection = Connection {
                    peer,
                    router: router.clone(),
                    builder: builder.clone(),
                    timeouts,
                    metrics: metrics.clone(),
                    _slot: slot,
                };
                tokio::spawn(connection.serve(stream, graceful.watcher()));
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                if let Some(held_back) = accept_errors.admit((), std::time::Instant::now()) {
                    // EMFILE, ENFILE: the process's or the system's descriptors.
                    let hint = matches!(e.raw_os_error(), Some(23 | 24)).then_some(
                        "out of file descriptors: see \"Open files\" in docs/operations.md",
                    );
                    tracing::error!(error = %e, pause_ms = crate::logging::millis(ACCEPT_ERROR_PAUSE), held_back, hint, "accepting a connection failed");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
    drop(listener);
    graceful
}

/// hyper's connection settings: `axum::serve`'s (HTTP/1.1 and HTTP/2 prior
/// knowledge, hyper's defaults), plus a smaller HTTP/1.1 read buffer and
/// fewer HTTP/2 streams (below).
///
/// hyper is given no timer: [`quiet_for_too_long`] bounds a head, the first
/// and every later one, as it bounds idleness (a head is read while no
/// request is in flight). hyper's own head timer, which this builder had,
/// allocated, armed and cancelled a timer for every request.
fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(HTTP1_READ_BUFFER);
    builder.http2().max_concurrent_streams(HTTP2_MAX_STREAMS);
    builder
}

/// The most requests an HTTP/2 connection has open at once (hyper's default
/// is 200). A reply is rendered whole before the client's flow-control
/// window lets it out, so a client that opens no window held 200 `/status`
/// or `/metrics` bodies per connection; what all connections hold of those
/// is bounded by [`crate::reply_budget`] now, not by this times
/// `server.max_connections`. A client that has read the
/// server's SETTINGS queues requests beyond the limit; one that opens more
/// before reading them gets REFUSED_STREAM for the extra ones, which HTTP/2
/// clients retry.
const HTTP2_MAX_STREAMS: u32 = 16;

/// The most an HTTP/1.1 connection buffers from its socket (hyper's default
/// is about 400 KiB): a body arriving faster than it is read grew every
/// connection's buffer to that, so 600 connections each sending 1 MiB held
/// about 400 MB even while their bodies were being thrown away. It also
/// bounds a request head (a larger one is answered 431); 64 KiB is far more
/// than a webhook's head, and the read rate is unchanged (docs/PERFORMANCE.md).
const HTTP1_READ_BUFFER: usize = 64 * 1024;

/// A client's failure to connect, not the listener's: the next accept may
/// go ahead at once.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Why the server closed a connection before any route answered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    HeaderTimeout,
    Idle,
    /// hyper answered 431: the head is over the 64 KiB read buffer.
    HeadTooLarge,
    /// hyper answered 400: the bytes are not an HTTP/1.1 request head.
    MalformedHead,
    /// Closed as soon as accepted: `server.max_connections` were open.
    OverCapacity,
}

impl Closed {
    pub const ALL: [Closed; 5] = [
        Closed::HeaderTimeout,
        Closed::Idle,
        Closed::HeadTooLarge,
        Closed::MalformedHead,
        Closed::OverCapacity,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::Idle => "idle",
            Closed::HeadTooLarge => "head_too_large",
            Closed::MalformedHead => "malformed_head",
            Closed::OverCapacity => "over_capacity",
        }
    }
}

/// What one accepted connection is served with.
struct Connection {
    peer: SocketAddr,
    router: Router,
    builder: Arc<Builder<TokioExecutor>>,
    timeouts: HttpTimeouts,
    metrics: Arc<Metrics>,
    /// Held until [`Connection::serve`] ends: at the close, or at a
    /// WebSocket upgrade, where hyper's connection future ends once it has
    /// handed the socket over (so a session holds no HTTP slot).
    _slot: Slot,
}

impl Connection {
    async fn serve(self, stream: TcpStream, watcher: Watcher) {
        // Small responses and WebSocket frames go out at once, not after Nagle's delay.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let service = Tracked {
            inner: TowerToHyperService::new(self.router),
            activity: activity.clone(),
            peer: self.peer,
        };
        // With upgrades: the fan-out's WebSocketUpgrade takes the connection
        // over, and this future ends once it has.
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        let closed = tokio::select! {
            served = watcher.watch(conn) => served.err().and_then(|e| closed_by_hyper(&*e)),
            closed = quiet_for_too_long(&activity, self.timeouts) => Some(closed),
        };
        if let Some(closed) = closed {
            tracing::debug!(
                reason = closed.label(),
                peer = %self.peer,
                "HTTP connection closed by the server"
            );
            self.metrics
                .http_connections_closed
                .with_label_values(&[closed.label()])
                .inc();
        }
    }
}

/// Whether hyper ended the connection on its own (HTTP/1.1): a head it
/// answered 431 or 400 (or its head bound, were it given a timer); other
/// errors are the client's going away: a trace line.
fn closed_by_hyper(e: &(dyn std::error::Error + 'static)) -> Option<Closed> {
    let closed = e.downcast_ref::<hyper::Error>().and_then(|e| {
        if e.is_timeout() {
            Some(Closed::HeaderTimeout)
        } else if e.is_parse_too_large() {
            Some(Closed::HeadTooLarge)
        } else if e.is_parse() {
            Some(Closed::MalformedHead)
        } else {
            None
        }
    });
    if closed.is_none() {
        tracing::trace!(error = %e, "HTTP connection ended");
    }
    closed
}

/// Resolves once the connection has had no request in flight for its bound:
/// `header_read` from the accept until its first request, `idle` from each
/// response on; pending while a request is in flight. hyper's own HTTP/1
/// head bound (not used) starts only once the auto builder has told HTTP/1
/// from HTTP/2 by the first bytes, and that sniffing has no bound (tested:
/// a silent connection, or half the HTTP/2 preface, stayed open); HTTP/2
/// has no such bound at all.
///
/// One timer, re-armed only when it fires: requests coming and going touch
/// two atomics and wake nothing. A timer armed and cancelled per request,
/// and two wake-ups of the connection's own task, were the cost of the
/// watch channel this replaced.
async fn quiet_for_too_long(activity: &Activity, t: HttpTimeouts) -> Closed {
    let later = |at: Instant, by: Duration| at.checked_add(by).unwrap_or(at + LONG_WAIT);
    let mut check_at = later(activity.epoch, t.header_read.min(t.idle));
    loop {
        tokio::time::sleep_until(check_at).await;
        let now = Instant::now();
        // Looked at again within `idle` of now at the latest: a request that
        // ends meanwhile is due `idle` after it ended, later than that.
        let next_look = later(now, t.idle);
        if activity.in_flight.load(Ordering::Acquire) > 0 {
            check_at = next_look;
            continue;
        }
        let (due, closed) = match activity.last_response() {
            None => (later(activity.epoch, t.header_read), Closed::HeaderTimeout),
            Some(at) => (later(at, t.idle), Closed::Idle),
        };
        if now >= due {
            return closed;
        }
        check_at = due.min(next_look);
    }
}

/// A wait that stands for "never" where a bound would overflow the clock.
const LONG_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The requests in flight on one connection, and when its last response
/// head went out.
struct Activity {
    /// When the connection was accepted.
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Nanoseconds after `epoch` that the latest request ended, plus one;
    /// 0 until one has. Read only while none is in flight: then it is when
    /// the last one left.
    last_response_nanos: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_response_nanos: AtomicU64::new(0),
        }
    }

    fn last_response(&self) -> Option<Instant> {
        match self.last_response_nanos.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.epoch + Duration::from_nanos(n - 1)),
        }
    }
}

/// The router, counting the requests in flight on its connection and
/// telling each request who sent it.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    peer: SocketAddr,
}

/// The address of the connection `extensions`' request came on (a proxy's,
/// behind one); `None` for a request that did not come through [`serve`]
/// (the router driven directly, as some tests do).
pub fn peer_of(extensions: &Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer)
}

/// `peer` as a log field: `ip:port`, or `unknown`.
pub fn peer_label(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown".to_owned(), |peer| peer.to_string())
}

type BoxedResponse = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<hyper::Request<Incoming>> for Tracked<S>
where
    S: Service<hyper::Request<Incoming>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let in_flight = InFlight::enter(self.activity.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            // Until the response head is out, not its body: a WebSocket is
            // handed over at that point, and a body its client does not take
            // is cut by the idle bound (the large ones count in the reply
            // budget until then).
            drop(in_flight);
            response
        })
    }
}

/// One request in flight, for as long as it lives (a request whose client
/// went away is dropped, and so leaves too).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        // The time first, then the count: a check that sees the count at 0
        // sees this time too. The other order let a check on another thread
        // (HTTP/2's streams) see 0 in flight with an older time, and close
        // the connection as idle just as its response went out.
        let since = Instant::now().saturating_duration_since(activity.epoch);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1);
        activity
            .last_response_nanos
            .fetch_max(nanos.saturating_add(1), Ordering::AcqRel);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that gave up while connecting costs no pause; running out
    /// of descriptors (or anything else of the listener's) does.
    #[test]
    fn only_a_clients_failure_to_connect_is_accepted_past_at_once() {
        use std::io::{Error, ErrorKind};
        for kind in [
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionAborted,
            ErrorKind::ConnectionReset,
        ] {
            assert!(is_connection_error(&Error::from(kind)), "{kind:?}");
        }
        let out_of_descriptors = Error::from_raw_os_error(24);
        assert!(!is_connection_error(&out_of_descriptors));
        assert!(!is_connection_error(&Error::other("x")));
    }

    /// The `reason` labels of `callrelay_http_connections_closed_total`.
    #[test]
    fn each_close_has_its_own_label() {
        let labels = Closed::ALL.map(Closed::label);
        assert_eq!(
            labels,
            [
                "header_timeout",
                "idle",
                "head_too_large",
                "malformed_head",
                "over_capacity"
            ]
        );
    }

    /// A slot is refused once `max` are held, given back when dropped, and
    /// a lowered maximum refuses new ones while leaving those held.
    #[test]
    fn slots_are_bounded_given_back_and_follow_a_new_maximum() {
        let gauge = IntGauge::new("open", "open").unwrap();
        let slots = ConnectionSlots::new(2);
        let first = slots.take(&gauge).expect("first");
        let second = slots.take(&gauge).expect("second");
        assert!(slots.take(&gauge).is_none(), "a third past max = 2");
        assert_eq!((slots.open(), gauge.get()), (2, 2));
        drop(first);
        assert_eq!((slots.open(), gauge.get()), (1, 1));
        let third = slots.take(&gauge).expect("a freed slot");
        slots.set_max(1);
        assert!(slots.take(&gauge).is_none(), "over the lowered maximum");
        assert_eq!(slots.open(), 2, "those open stay");
        drop((second, third));
        assert!(slots.take(&gauge).is_some(), "under it again");
        assert_eq!(gauge.get(), 0, "every slot given back");
    }

    #[test]
    fn a_request_carries_its_peer_and_one_without_is_unknown() {
        let peer: SocketAddr = "192.0.2.7:41000".parse().unwrap();
        let mut extensions = Extensions::new();
        assert_eq!(peer_of(&extensions), None);
        assert_eq!(peer_label(None), "unknown");
        extensions.insert(ConnectInfo(peer));
        assert_eq!(peer_of(&extensions), Some(peer));
        assert_eq!(peer_label(Some(peer)), "192.0.2.7:41000");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_are_counted_while_they_live() {
        let activity = Arc::new(Activity::new());
        let in_flight = || activity.in_flight.load(Ordering::Acquire);
        let first = InFlight::enter(activity.clone());
        let second = InFlight::enter(activity.clone());
        assert_eq!(in_flight(), 2);
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(first);
        assert_eq!(in_flight(), 1);
        assert_eq!(
            activity.last_response(),
            Some(activity.epoch + Duration::from_secs(3))
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(second);
        assert_eq!(in_flight(), 0);
        assert_eq!(
            activity.last_response(),
            Some(activity.epoch + Duration::from_secs(5))
        );
    }

    const BOUNDS: HttpTimeouts = HttpTimeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    /// A first head bound longer than the idle bound (the tests' NEVER)
    /// does not hold off the idle bound after a request: the first look
    /// was at `header_read`, so a connection served at once stayed open
    /// until then.
    #[tokio::test(start_paused = true)]
    async fn idle_follows_a_request_when_the_head_bound_is_longer() {
        let bounds = HttpTimeouts {
            header_read: Duration::from_secs(600),
            idle: Duration::from_secs(5),
        };
        let activity = Arc::new(Activity::new());
        let watched = activity.clone();
        let quiet = tokio::spawn(async move { quiet_for_too_long(&watched, bounds).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(InFlight::enter(activity.clone()));
        let answered = tokio::time::Instant::now();
        let closed = tokio::time::timeout(bounds.header_read, quiet).await;
        assert_eq!(closed.expect("closed once idle").unwrap(), Closed::Idle);
        assert_eq!(answered.elapsed(), bounds.idle);
    }

    /// A connection that never sends a request is closed at `header_read`.
    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_meets_the_head_bound() {
        let activity = Activity::new();
        let started = tokio::time::Instant::now();
        // Bounded, so that a bound never met fails rather than hangs.
        let quiet = tokio::time::timeout(BOUNDS.idle * 10, quiet_for_too_long(&activity, BOUNDS));
        assert_eq!(quiet.await, Ok(Closed::HeaderTimeout));
        assert_eq!(started.elapsed(), BOUNDS.header_read);
    }

    /// A request in flight is never cut, however long it takes; once it
    /// is answered the connection has `idle` for the next.
    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_holds_the_bounds_off_and_idle_follows_it() {
        let activity = Arc::new(Activity::new());
        let watched = activity.clone();
        let quiet = tokio::spawn(async move { quiet_for_too_long(&watched, BOUNDS).await });
        // Paused time moves on only once the bound is being waited for.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let in_flight = InFlight::enter(activity.clone());
        tokio::time::sleep(BOUNDS.idle * 3).await;
        assert!(!quiet.is_finished(), "cut while a request was in flight");
        let answered = tokio::time::Instant::now();
        drop(in_flight);
        let closed = tokio::time::timeout(BOUNDS.idle * 10, quiet).await;
        assert_eq!(closed.expect("closed once idle").unwrap(), Closed::Idle);
        assert_eq!(answered.elapsed(), BOUNDS.idle);
    }
}
