//! The WebSocket fan-out: filtered live events with resume from the journal.
//!
//! `GET {websocket.path}` is checked in this order, each failure answered
//! before the upgrade: auth (401; with no tokens configured, a request
//! through a proxy or a page of a foreign origin is 403) → `since`/
//! `Last-Event-ID` or a malformed query (400) → an `account` filter outside
//! the token's scope (403, see [`auth::Scope`]) → not a
//! WebSocket request (axum's 4xx) → shutting down or `max_clients` reached
//! (503). A session is served the filter its scope allows, in its replay
//! and live alike. The path with a trailing slash is served alike; a WebSocket
//! request at any other path is a 404 ([`WrongPath`]). An accepted client is
//! served by [`session`]; the protocol is described for CRM developers in
//! `docs/websocket.md`.
//!
//! Every refusal counts in `callrelay_ws_refused_total{reason}`, and each
//! one a page can cause (all but `shutting_down`, and a `not_websocket` that
//! is no upgrade at all) is logged (at most once per 30 s per reason, with
//! how many were held back): a browser shows page script each of them as
//! the same bare 1006, so the relay's side is where an operator finds a CRM
//! screen retrying with a revoked token, a mistyped URL or a `since` it
//! wrote wrong. A `not_websocket` that still carries `Sec-WebSocket-Key` is
//! an upgrade a proxy in front stripped ([`StrippedUpgrade`]): logged with
//! what it lost and the proxy setting that keeps it.
//!
//! No subprotocol is offered, and a request naming one is upgraded all the
//! same, with none in the 101 (as gorilla-based servers do: a lax client
//! carries on, a browser fails the connection). It is logged, at most once
//! per 30 s, with the client's address and where the token goes, never the
//! header's value (a page may have put its token there).
//!
//! Guarantees: the client count never exceeds `max_clients` (a slot is taken
//! atomically before the upgrade and freed when the session ends, or when the
//! upgrade never happens); `callrelay_ws_clients`, `/status` and
//! `callrelay_ws_disconnects_total{reason}` follow every session; tokens,
//! `max_clients`, `client_queue` and the ping settings are read per connection,
//! so a reload applies to new clients (the path is fixed at start), and
//! `/status` shows the reloaded `max_clients` as soon as the reload is done; on
//! shutdown the relay waits for every session to end, at most
//! [`drain::SHUTDOWN_BOUND`] ([`drain`]: axum's graceful shutdown does not
//! see upgraded connections).

pub mod auth;
pub mod config;
pub mod drain;
pub mod filter;
pub mod session;
pub mod tail;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{RawQuery, Request, State};
use axum::http::{Extensions, HeaderMap, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::app::Context;
use crate::log_throttle::LogThrottle;
use crate::status::SinkStatus;
pub use drain::Sessions;
use filter::{ClientQuery, QueryError};
use session::replay_budget::ReplayBudget;
use session::{Settings, SinkMetrics};

/// The sink's name in metrics and `/status`.
pub const SINK: &str = "websocket";

/// State shared by every connection of this relay.
struct Fanout {
    clients: AtomicUsize,
    metrics: SinkMetrics,
    refusals: Mutex<LogThrottle<Refusal>>,
    /// Sessions the relay ended (slow, stalled, no pong, token revoked,
    /// journal unreadable), logged per reason.
    ends: Mutex<LogThrottle<&'static str>>,
    /// Clients that closed refusing what the relay sent, logged per close
    /// code (one of four: 1002, 1003, 1007, 1009).
    client_refusals: Mutex<LogThrottle<u16>>,
    /// Clients upgraded although they named a subprotocol, logged at most
    /// once per interval.
    subprotocols: Mutex<LogThrottle<()>>,
    /// What every session's replay may hold in memory at once
    /// (`replay_memory`, read at start).
    replay_budget: ReplayBudget,
}

/// Why a connection was answered before the upgrade (the `reason` label of
/// `callrelay_ws_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    Unauthorized,
    BadSince,
    BadQuery,
    NotWebSocket,
    ShuttingDown,
    MaxClients,
    WrongPath,
    ForeignOrigin,
    Proxied,
    /// The client's `account` filter names an account its token's scope
    /// does not hold.
    AccountNotAllowed,
}

impl Refusal {
    pub const ALL: [Refusal; 10] = [
        Refusal::Unauthorized,
        Refusal::BadSince,
        Refusal::BadQuery,
        Refusal::NotWebSocket,
        Refusal::ShuttingDown,
        Refusal::MaxClients,
        Refusal::WrongPath,
        Refusal::ForeignOrigin,
        Refusal::Proxied,
        Refusal::AccountNotAllowed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::BadSince => "bad_since",
            Refusal::BadQuery => "bad_query",
            Refusal::NotWebSocket => "not_websocket",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::MaxClients => "max_clients",
            Refusal::WrongPath => "wrong_path",
            Refusal::ForeignOrigin => "foreign_origin",
            Refusal::Proxied => "proxied",
            Refusal::AccountNotAllowed => "account_not_allowed",
        }
    }
}

/// Room for a CloudEvent's envelope and normalized fields around its payload.
pub(crate) const ENVELOPE_ROOM: usize = 64 * 1024;

/// How many times its payload's bytes an event's JSON can take: a control
/// byte in a form value is written `\u00XX`, six bytes for one (a
/// windows-125x byte becomes up to three bytes of UTF-8), and a value can be
/// written three times, in `data.raw` and in two of `data`'s fields or
/// `subject` (Voip24h's `callid` is `raw`, `call_id` and `subject`). It was
/// six, which counted `data.raw` alone (review of b8f733b); the vendors'
/// tests hold every normalizer's worst payload to it.
pub(crate) const JSON_GROWTH: usize = 18;

/// About the largest event frame the relay can send for a payload limit:
/// every byte written at its longest, and the envelope.
fn largest_event_frame(largest_payload: usize) -> usize {
    largest_payload
        .saturating_mul(JSON_GROWTH)
        .saturating_add(ENVELOPE_ROOM)
}

/// What the log says of a client that named a subprotocol: a browser
/// fails the connection, and where the token goes instead (a page's
/// `new WebSocket(url, ["bearer", token])` is the usual one). Fixed words:
/// the header's value may be that token.
const NO_SUBPROTOCOL: &str = "the relay offers no WebSocket subprotocol and upgraded without one, \
     so a browser fails this connection: connect without protocols (new WebSocket(url)) and \
     send the token as ?token= in the URL, or as an Authorization: Bearer header from a client \
     that can set headers";

/// Whether a request names a subprotocol: a `Sec-WebSocket-Protocol` with
/// something in it besides whitespace and commas (an empty one names none).
fn names_a_subprotocol(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|p| !p.trim_ascii().is_empty())
        })
}

/// How often one kind of refusal is logged at most.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The proxy setting that keeps an upgrade whole, for the operator who
/// reads a stripped one in the log.
const STRIPPED_UPGRADE_FIX: &str = "a proxy in front of the relay did not pass the WebSocket upgrade on: \
     for nginx, in the location of the fan-out's path, proxy_http_version 1.1; \
     proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\"; \
     HAProxy or any other proxy must pass the upgrade through to the relay over HTTP/1.1 \
     (not HTTP/2)";

/// A WebSocket upgrade that lost on its way what makes it one. It still
/// carries `Sec-WebSocket-Key`, which only a WebSocket client sends and
/// proxies pass on as any other header, but lacks `Upgrade: websocket` or
/// `Connection: upgrade` (hop-by-hop: a proxy that does not pass upgrades
/// through drops them) or came over another version than HTTP/1.1 (nginx's
/// plain `proxy_pass` speaks HTTP/1.0). Refused as any `not_websocket`, but
/// every screen behind that proxy fails so, and a browser shows only 1006:
/// the log is where the proxy's setting can be named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StrippedUpgrade {
    version: Version,
    no_upgrade: bool,
    no_connection_upgrade: bool,
}

impl StrippedUpgrade {
    /// `None` for a request that was no upgrade (no `Sec-WebSocket-Key`),
    /// or one that kept all three and was refused for something else (its
    /// `Sec-WebSocket-Version`): no proxy's doing. The headers are judged
    /// as axum's extractor judges them (the first `Connection` holds
    /// `upgrade`, the first `Upgrade` is `websocket`), so a request it
    /// refused for them is never taken for one that kept them.
    fn of(version: Version, headers: &HeaderMap) -> Option<StrippedUpgrade> {
        if !headers.contains_key(header::SEC_WEBSOCKET_KEY) {
            return None;
        }
        let stripped = StrippedUpgrade {
            version,
            no_upgrade: !headers
                .get(header::UPGRADE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")),
            no_connection_upgrade: !headers.get(header::CONNECTION).is_some_and(|v| {
                v.to_str()
                    .is_ok_and(|v| v.to_ascii_lowercase().contains("upgrade"))
            }),
        };
        (stripped.no_upgrade || stripped.no_connection_upgrade || version != Version::HTTP_11)
            .then_some(stripped)
    }

    /// What the request lacks, for the log: `Upgrade: websocket,
    /// Connection: upgrade, HTTP/1.1` from nginx's plain `proxy_pass`.
    fn missing(self) -> String {
        [
            (self.no_upgrade, "Upgrade: websocket"),
            (self.no_connection_upgrade, "Connection: upgrade"),
            (self.version != Version::HTTP_11, "HTTP/1.1"),
        ]
        .into_iter()
        .filter_map(|(lacks, what)| lacks.then_some(what))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// What a refusal's log line says besides its reason, status and peer.
#[derive(Clone, Copy, Debug)]
enum Detail<'a> {
    Nothing,
    /// `wrong_path`: the path asked for.
    Path(&'a str),
    /// `foreign_origin`: the page's origin.
    Origin(&'a str),
    /// `not_websocket`: an upgrade a proxy stripped.
    Stripped(StrippedUpgrade),
}

/// Publishes the fan-out's `/status` entry: the clients (as
/// `callrelay_ws_clients` counts them, which every slot moves before it
/// publishes) and the `max_clients` and `path` in effect. Called at start, on
/// every connect and disconnect, and after a reload, which may change
/// `max_clients`.
pub fn publish_status(ctx: &Context) {
    ctx.status.set_sink_with(SINK, || {
        let config = ctx.config.load();
        SinkStatus {
            ready: true,
            reason: None,
            detail: json!({
                "clients": ctx.metrics.ws_clients.get(),
                "max_clients": *config.websocket.max_clients.get_ref(),
                "path": config.websocket.path.get_ref(),
            }),
        }
    });
}

/// One client's place under `max_clients`, and its session's presence in
/// `ctx.ws_sessions` for shutdown's wait; freed on drop.
struct Slot {
    fanout: Arc<Fanout>,
    ctx: Arc<Context>,
    /// Declared last, so dropped last: shutdown's wait must not end while
    /// this slot still holds the `Context` (and so the journal).
    _running: drain::Running,
}

impl Slot {
    fn take(fanout: &Arc<Fanout>, ctx: &Arc<Context>, max: usize) -> Option<Slot> {
        fanout
            .clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        ctx.metrics.ws_clients.inc();
        publish_status(ctx);
        Some(Slot {
            fanout: fanout.clone(),
            ctx: ctx.clone(),
            _running: ctx.ws_sessions.enter(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.fanout.clients.fetch_sub(1, Ordering::AcqRel);
        self.ctx.metrics.ws_clients.dec();
        publish_status(&self.ctx);
    }
}

/// The fan-out's routes, and the answer to a WebSocket request that misses
/// them (for the relay's fallback: a router merged with another that has a
/// fallback of its own panics).
pub struct Routes {
    pub router: Router<Arc<Context>>,
    pub wrong_path: WrongPath,
}

/// The fan-out's routes: `websocket.path`, and the same with a trailing
/// slash, which a URL typed into a CRM screen's settings may well carry and
/// many servers treat as the same (the config refuses a path ending in `/`,
/// so the two never overlap).
pub fn routes(ctx: &Arc<Context>) -> Routes {
    let fanout = Arc::new(Fanout {
        clients: AtomicUsize::new(0),
        metrics: SinkMetrics {
            published: ctx.metrics.events_published.with_label_values(&[SINK]),
            latency: ctx.metrics.event_latency.with_label_values(&[SINK]),
        },
        refusals: Mutex::new(LogThrottle::new(REFUSAL_LOG_INTERVAL)),
        ends: Mutex::new(LogThrottle::new(REFUSAL_LOG_INTERVAL)),
        client_refusals: Mutex::new(LogThrottle::new(REFUSAL_LOG_INTERVAL)),
        subprotocols: Mutex::new(LogThrottle::new(REFUSAL_LOG_INTERVAL)),
        replay_budget: ReplayBudget::new(
            ctx.config.load().websocket.replay_memory.get_ref().get(),
            ctx.metrics.ws_replays_waiting.clone(),
        ),
    });
    publish_status(ctx);
    let path = ctx.config.load().websocket.path.get_ref().clone();
    let serving = fanout.clone();
    let handler = get(
        move |State(ctx): State<Arc<Context>>,
              extensions: Extensions,
              version: Version,
              headers: HeaderMap,
              RawQuery(query): RawQuery,
              upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>| {
            let peer = crate::http_serve::peer_of(&extensions);
            connect(ctx, serving.clone(), peer, version, headers, query, upgrade)
        },
    );
    let mut router = Router::new().route(&path, handler.clone());
    if path != "/" {
        router = router.route(&format!("{path}/"), handler);
    }
    Routes {
        router,
        wrong_path: WrongPath { fanout, path },
    }
}

/// The answer to a WebSocket request at a path that is not the fan-out's:
/// a 404 that names the fan-out's path, in the message and as
/// `websocket_path` (no secret: `/status` shows it), counted as
/// `wrong_path` and logged with the path asked for. Answered as any other
/// unknown route, a CRM screen with a mistyped URL would retry a bare 1006
/// with nothing on the relay's side to find it by.
#[derive(Clone)]
pub struct WrongPath {
    fanout: Arc<Fanout>,
    path: String,
}

impl WrongPath {
    /// `None` when `request` is not a WebSocket upgrade (an ordinary 404).
    pub fn answer(&self, ctx: &Context, request: &Request) -> Option<Response> {
        let upgrade = request.headers().get_all(header::UPGRADE).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
            })
        });
        if !upgrade {
            return None;
        }
        let status = StatusCode::NOT_FOUND;
        let peer = crate::http_serve::peer_of(request.extensions());
        let asked = Detail::Path(request.uri().path());
        note_refusal(ctx, &self.fanout, Refusal::WrongPath, peer, status, asked);
        Some((status, axum::Json(wrong_path_body(&self.path))).into_response())
    }
}

/// [`WrongPath`]'s body, for a fan-out at `path`.
pub(crate) fn wrong_path_body(path: &str) -> serde_json::Value {
    let no_such_route = crate::server::NO_SUCH_ROUTE;
    let message = format!("{no_such_route}: the WebSocket fan-out is at {path}");
    // `websocket_path` for a client that reads it: `callrelay tail`
    // names it in its error.
    json!({ "error": message, "websocket_path": path })
}

/// A connection answered before the upgrade, and why.
struct Refused {
    why: Refusal,
    /// Boxed: a refusal is rare, and an unboxed `Response` made every
    /// `accept` result large.
    response: Box<Response>,
}

impl Refused {
    fn with(why: Refusal, response: Response) -> Refused {
        Refused {
            why,
            response: Box::new(response),
        }
    }
}

/// A refusal's answer; a 503 says when to try again, as every 503 the
/// relay answers does (a restart, or a free slot, is seconds away).
fn refuse(why: Refusal, status: StatusCode, message: String) -> Refused {
    let mut response = crate::server::json_error(status, &message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        crate::server::retry_after(&mut response, "5");
    }
    Refused::with(why, response)
}

/// Counts a refusal and logs the kinds an operator acts on. Only the reason
/// and status are logged, with the client's address (a screen looping on a
/// revoked token is found by it) and its [`Detail`] (a path or origin cut
/// short; both log formats escape it): what the client sent otherwise (a
/// token, a `since`, any query) is not.
fn note_refusal(
    ctx: &Context,
    fanout: &Fanout,
    refusal: Refusal,
    peer: Option<SocketAddr>,
    status: StatusCode,
    detail: Detail<'_>,
) {
    ctx.metrics
        .ws_refused
        .with_label_values(&[refusal.as_str()])
        .inc();
    // The others are a client's own doing that the client learns from its
    // answer; a browser learns nothing from any (a bare 1006), so each kind
    // a page can cause is said here, where the operator can find the page.
    // A stripped upgrade is the proxy's doing, and fails every page behind it.
    let stripped = matches!(detail, Detail::Stripped(_));
    if refusal == Refusal::ShuttingDown || (refusal == Refusal::NotWebSocket && !stripped) {
        tracing::debug!(
            reason = refusal.as_str(),
            status = status.as_u16(),
            peer = crate::http_serve::peer_label(peer).as_str(),
            "websocket client refused"
        );
        return;
    }
    let held_back = fanout
        .refusals
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit(refusal, Instant::now());
    let Some(held_back) = held_back else {
        return;
    };
    let peer = crate::http_serve::peer_label(peer);
    let (path, origin) = match detail {
        Detail::Stripped(stripped) => {
            tracing::warn!(
                reason = refusal.as_str(),
                status = status.as_u16(),
                peer = peer.as_str(),
                version = ?stripped.version,
                missing = stripped.missing().as_str(),
                fix = STRIPPED_UPGRADE_FIX,
                held_back,
                "websocket client refused"
            );
            return;
        }
        Detail::Path(path) => (Some(path), None),
        Detail::Origin(origin) => (None, Some(origin)),
        Detail::Nothing => (None, None),
    };
    tracing::warn!(
        reason = refusal.as_str(),
        status = status.as_u16(),
        peer = peer.as_str(),
        path = path.map(crate::logging::excerpt).as_deref(),
        origin = origin.map(crate::logging::excerpt).as_deref(),
        held_back,
        "websocket client refused"
    );
}

/// Logs a client upgraded although it named a subprotocol: a browser fails
/// such a connection (often a page that put its token in the protocol), a
/// lax client carries on. Never the header's value: it may be a token.
fn note_subprotocol(fanout: &Fanout, peer: Option<SocketAddr>) {
    let held_back = fanout
        .subprotocols
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit((), Instant::now());
    if let Some(held_back) = held_back {
        tracing::warn!(
            peer = crate::http_serve::peer_label(peer).as_str(),
            advice = NO_SUBPROTOCOL,
            held_back,
            "websocket client named a subprotocol the relay does not offer"
        );
    }
}

/// Logs how a session ended. A client that closed refusing what the relay
/// sent (1009 from a library whose message limit is under the relay's
/// events, 1002, 1003, 1007) is said at WARN, once per 30 s per code, with
/// its close reason (cut short; both log formats escape it), its address
/// and what to change: it reconnects with `since`, is sent the same event
/// and closes again, for ever, and at debug it looked like any close. Ends
/// the relay decided (a slow or stalled
/// client, no pong, a revoked token, an unreadable journal) are said at
/// info with the client's address, once per reason per interval, so the
/// on-call engineer who sees `ws_disconnects_total{reason="slow_consumer"}`
/// rise can tell which screen it is; the client's own ends, and a stop's,
/// at debug.
fn note_end(
    fanout: &Fanout,
    end: session::End,
    peer: Option<SocketAddr>,
    client_said: Option<&str>,
    frame_bound: usize,
    largest_sent: usize,
) {
    let peer = crate::http_serve::peer_label(peer);
    if let session::End::ClientRefusedFrame(code) = end {
        let held_back = fanout
            .client_refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(code, Instant::now());
        if let Some(held_back) = held_back {
            // Only a 1009 is about size; the others' frames are not too big.
            let sizes = (code == 1009).then_some(FrameSizes {
                bound: frame_bound as u64,
                sent: largest_sent as u64,
            });
            tracing::warn!(
                reason = end.reason(),
                code,
                close_reason = client_said.unwrap_or_default(),
                peer = peer.as_str(),
                frame_bound = sizes.map(|s| s.bound),
                largest_sent = sizes.map(|s| s.sent),
                advice = client_refusal_advice(code, sizes).as_str(),
                held_back,
                "websocket client closed: it could not take what the relay sent"
            );
        }
        return;
    }
    if !end.is_the_relays_decision() {
        tracing::debug!(
            reason = end.reason(),
            peer = peer.as_str(),
            "websocket client disconnected"
        );
        return;
    }
    let held_back = fanout
        .ends
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit(end.reason(), Instant::now());
    match held_back {
        Some(held_back) => tracing::info!(
            reason = end.reason(),
            peer = peer.as_str(),
            held_back,
            "websocket client disconnected by the relay"
        ),
        None => tracing::debug!(
            reason = end.reason(),
            peer = peer.as_str(),
            "websocket client disconnected by the relay"
        ),
    }
}

/// The frame sizes a 1009's WARN names, in bytes.
#[derive(Clone, Copy, Debug)]
struct FrameSizes {
    /// About the largest event frame the relay can send ([`largest_event_frame`]).
    bound: u64,
    /// The largest frame this session sent.
    sent: u64,
}

/// What the operator of a client that closed with `code` should change.
fn client_refusal_advice(code: u16, sizes: Option<FrameSizes>) -> String {
    match (code, sizes) {
        (1009, Some(FrameSizes { bound, sent })) => format!(
            "the client's WebSocket library refused a message over its max message size \
             (the largest frame this connection was sent: {sent} bytes): raise it to at least \
             {bound} bytes, or remove the limit (an event's JSON can be up to {JSON_GROWTH} times \
             its payload, plus its envelope); library defaults are 8 KiB in Spring/Tomcat, 32 KiB in \
             Go's coder/websocket, 64 KiB in Jetty, 1 MiB in Python's websockets. Until then it is \
             sent the same event on every reconnect"
        ),
        (1003, _) => "the client does not take text frames: every event and control frame is a \
                      text frame of JSON (docs/websocket.md, Frames)"
            .to_owned(),
        (1007, _) => "the client found a frame's payload invalid: every frame is UTF-8 JSON; \
                      its log says what it refused"
            .to_owned(),
        _ => "the client's WebSocket library saw a protocol error in what the relay sent: its \
              log says what; a proxy between them may alter frames"
            .to_owned(),
    }
}

async fn connect(
    ctx: Arc<Context>,
    fanout: Arc<Fanout>,
    peer: Option<SocketAddr>,
    version: Version,
    headers: HeaderMap,
    query: Option<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match accept(&ctx, &fanout, peer, &headers, query, upgrade) {
        Ok(response) => response,
        Err(Refused { why, response }) => {
            // Named in the log when it is the reason: a page the operator
            // may mean to allow (`allowed_origins`).
            let origin = headers
                .get(header::ORIGIN)
                .map(|v| String::from_utf8_lossy(v.as_bytes()));
            let detail = match why {
                Refusal::ForeignOrigin => origin.as_deref().map_or(Detail::Nothing, Detail::Origin),
                Refusal::NotWebSocket => {
                    StrippedUpgrade::of(version, &headers).map_or(Detail::Nothing, Detail::Stripped)
                }
                _ => Detail::Nothing,
            };
            note_refusal(&ctx, &fanout, why, peer, response.status(), detail);
            *response
        }
    }
}

/// Checks a connection and upgrades it, or says why not.
fn accept(
    ctx: &Arc<Context>,
    fanout: &Arc<Fanout>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    query: Option<String>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Refused> {
    // Subscribed before the config is read: a reload that lands between the
    // token check and the session's start is still seen by the session.
    let reloads = ctx.ws_sessions.reloads();
    let config = ctx.config.load_full();
    let ws = &config.websocket;
    let query = ClientQuery::parse(query.as_deref());
    let tokens_required = !ws.tokens.get_ref().is_empty();
    if let Err(e) = auth::sent_once(headers, query.token_repeated)
        && tokens_required
    {
        return Err(refuse(
            Refusal::Unauthorized,
            StatusCode::UNAUTHORIZED,
            e.to_string(),
        ));
    }
    let origin = headers.get(header::ORIGIN).map(|v| v.as_bytes().to_vec());
    let proxied = auth::came_through_a_proxy(headers);
    let tokenless_refusal = (!tokens_required)
        .then(|| auth::tokenless_refusal(proxied, origin.as_deref(), ws.allowed_origins.get_ref()))
        .flatten();
    if let Some(why) = tokenless_refusal {
        let message = if why == Refusal::Proxied {
            "this fan-out asks for no token, so it is for this machine only, and the request came through a proxy (Forwarded, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, X-Real-IP or Via): set websocket.tokens"
        } else {
            "a page of another origin may not open a fan-out that asks for no token: set websocket.tokens, list the page's origin in websocket.allowed_origins, or serve the page from this machine (localhost)"
        };
        return Err(refuse(why, StatusCode::FORBIDDEN, message.into()));
    }
    let token = auth::presented(headers, query.token.as_deref()).map(<[u8]>::to_vec);
    if token.is_none() && query.token_not_utf8 && tokens_required {
        return Err(refuse(
            Refusal::Unauthorized,
            StatusCode::UNAUTHORIZED,
            auth::AuthError::NotUtf8.to_string(),
        ));
    }
    let scope = match auth::check_token(ws.tokens.get_ref(), token.as_deref()) {
        Ok(scope) => scope,
        Err(e) => {
            return Err(refuse(
                Refusal::Unauthorized,
                StatusCode::UNAUTHORIZED,
                e.to_string(),
            ));
        }
    };
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().map_err(|_| ()));
    let since = match query.since(last_event_id) {
        Ok(since) => since,
        Err(e) => {
            let refusal = match e {
                QueryError::BadSince { .. } | QueryError::LastEventIdNotText => Refusal::BadSince,
                QueryError::NotUtf8(_) | QueryError::FilterTooLarge(_) => Refusal::BadQuery,
            };
            return Err(refuse(refusal, StatusCode::BAD_REQUEST, e.to_string()));
        }
    };
    // Once the query is known to be readable: a filter cut short at its
    // limit was answered 400 above, not judged here by its first values.
    let filter = match scope.narrow(query.filter) {
        Ok(filter) => filter,
        Err(e) => {
            return Err(refuse(
                Refusal::AccountNotAllowed,
                StatusCode::FORBIDDEN,
                e.to_string(),
            ));
        }
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        // axum's status and words, in the JSON body every other refusal
        // has (its own body was plain text: newcomer's walk, 2026-12-06).
        Err(rejection) => {
            let other_version = matches!(
                rejection,
                WebSocketUpgradeRejection::InvalidWebSocketVersionHeader(_)
            );
            let mut refused = refuse(
                Refusal::NotWebSocket,
                rejection.status(),
                rejection.body_text(),
            );
            // RFC 6455 §4.2.2: the version spoken, for the client to retry
            // with (axum's answer named none).
            if other_version {
                refused.response.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    header::HeaderValue::from_static("13"),
                );
            }
            return Err(refused);
        }
    };
    if ctx.shutdown.is_cancelled() {
        return Err(refuse(
            Refusal::ShuttingDown,
            StatusCode::SERVICE_UNAVAILABLE,
            "callrelay is shutting down".into(),
        ));
    }
    let max = *ws.max_clients.get_ref();
    let Some(slot) = Slot::take(fanout, ctx, max) else {
        return Err(refuse(
            Refusal::MaxClients,
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the relay already serves max_clients = {max} WebSocket clients"),
        ));
    };
    // The largest payload any source takes (a Voip24h socket payload may
    // pass a lower `max_body`), and room for the envelope around it.
    let largest_payload =
        crate::sources::voip24h::deliver::payload_limit(config.server.max_body.get_ref().get());
    let settings = Settings {
        ping_interval: ws.ping_interval.get_ref().get(),
        pong_timeout: ws.pong_timeout.get_ref().get(),
        client_queue: *ws.client_queue.get_ref(),
        largest_frame: usize::try_from(largest_payload)
            .unwrap_or(usize::MAX)
            .saturating_add(ENVELOPE_ROOM),
    };
    let client = session::Client {
        filter: Arc::new(filter),
        scope,
        since,
        heartbeat: query.heartbeat,
        token,
        origin,
        proxied,
        reloads,
    };
    let frame_bound = largest_event_frame(usize::try_from(largest_payload).unwrap_or(usize::MAX));
    if names_a_subprotocol(headers) {
        note_subprotocol(fanout, peer);
    }
    let metrics = fanout.metrics.clone();
    let budget = fanout.replay_budget.clone();
    let fanout = fanout.clone();
    Ok(upgrade
        // Clients only send pongs and closes: a small read buffer (it grows if
        // needed) and a small message limit keep an idle client cheap. Frames
        // are written in bursts and flushed once; the write buffer keeps its
        // high-water capacity, so bursts are kept small (see session::MAX_BURST).
        .read_buffer_size(4 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| async move {
            let ctx = slot.ctx.clone();
            let disconnects = ctx.metrics.ws_disconnects.clone();
            session::run(
                socket,
                ctx,
                client,
                settings,
                metrics,
                budget,
                |end, said, sent| {
                    disconnects.with_label_values(&[end.reason()]).inc();
                    note_end(&fanout, end, peer, said, frame_bound, sent);
                },
            )
            .await;
            drop(slot);
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `client`'s close frame and reads on until the relay's echo and
    /// the end: the session has ended by then.
    async fn close_and_see_the_end(
        client: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode,
        reason: &str,
    ) {
        use tokio_tungstenite::tungstenite::{Message, protocol::CloseFrame};
        let close = CloseFrame {
            code,
            reason: reason.into(),
        };
        futures::SinkExt::send(client, Message::Close(Some(close)))
            .await
            .unwrap();
        let ended = async { while let Some(Ok(_)) = futures::StreamExt::next(client).await {} };
        tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .expect("the relay closes within 10 s");
    }

    /// How many sessions of `relay` ended for `reason`.
    fn disconnects(relay: &crate::app::Relay, reason: &str) -> u64 {
        relay
            .ctx
            .metrics
            .ws_disconnects
            .with_label_values(&[reason])
            .get()
    }

    fn fanout() -> Fanout {
        let metrics = crate::metrics::Metrics::new();
        Fanout {
            clients: AtomicUsize::new(0),
            metrics: SinkMetrics {
                published: metrics.events_published.with_label_values(&[SINK]),
                latency: metrics.event_latency.with_label_values(&[SINK]),
            },
            refusals: Mutex::new(LogThrottle::new(REFUSAL_LOG_INTERVAL)),
            ends: Mutex::new(LogThrottle::new(REFUSAL_LOG_INTERVAL)),
            client_refusals: Mutex::new(LogThrottle::new(REFUSAL_LOG_INTERVAL)),
            subprotocols: Mutex::new(LogThrottle::new(REFUSAL_LOG_INTERVAL)),
            replay_budget: ReplayBudget::new(1 << 20, metrics.ws_replays_waiting.clone()),
        }
    }

    /// The on-call engineer sees slow_consumer disconnects counted; the log
    /// now says which client (it was a debug line without its address).
    #[test]
    fn a_session_the_relay_ends_is_said_once_with_the_clients_address() {
        let fanout = fanout();
        let peer: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let logged = crate::logging::tests_support::logged_json(|| {
            for end in [
                session::End::SlowConsumer,
                session::End::SlowConsumer,
                session::End::ClientClosed,
                session::End::Shutdown,
            ] {
                note_end(&fanout, end, Some(peer), None, 1 << 20, 0);
            }
        });
        let lines: Vec<serde_json::Value> = logged
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| l["level"] == "INFO")
            .collect();
        assert_eq!(lines.len(), 1, "{logged}");
        assert_eq!(lines[0]["reason"], "slow_consumer", "{logged}");
        assert_eq!(lines[0]["peer"], "10.1.2.3:40000", "{logged}");
    }

    /// Judged as axum's extractor judges: a second `Connection` line with
    /// `upgrade` behind a first without it, or an `Upgrade` listing more
    /// than `websocket`, is refused by axum, and was taken for a request
    /// that kept its upgrade (said at debug only, review of 4900139).
    #[test]
    fn a_stripped_upgrade_is_judged_by_the_first_header_as_axum_does() {
        let judged = |pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::SEC_WEBSOCKET_KEY,
                "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
            );
            for (name, value) in pairs {
                headers.append(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            StrippedUpgrade::of(Version::HTTP_11, &headers).map(StrippedUpgrade::missing)
        };
        assert_eq!(
            judged(&[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket")
            ]),
            None
        );
        assert_eq!(
            judged(&[
                ("connection", "keep-alive"),
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
            ]),
            Some("Connection: upgrade".to_owned())
        );
        assert_eq!(
            judged(&[("connection", "upgrade"), ("upgrade", "websocket, h2c")]),
            Some("Upgrade: websocket".to_owned())
        );
    }

    /// A CRM screen behind nginx's plain `proxy_pass` reaches the relay as
    /// HTTP/1.0 without `Upgrade` or `Connection: upgrade` (hop-by-hop, not
    /// passed on) but with the `Sec-WebSocket-*` headers: it was counted
    /// `not_websocket` and said at debug only, so every screen showed 1006
    /// and the log at its usual level said nothing. A plain `GET` stays
    /// unsaid; the token in the query is never logged.
    #[tokio::test]
    async fn an_upgrade_a_proxy_stripped_is_warned_once_with_what_is_missing_and_the_fix() {
        use crate::logging::tests_support::capture_json;
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(
            dir.path(),
            "[websocket]\ntokens = [\"t0k-long-enough\"]\n",
        )
        .await;
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        let (captured, guard) = capture_json();
        let plain = raw_get(relay.addr, "HTTP/1.1", "").await;
        let stripped = raw_get(relay.addr, "HTTP/1.0", key).await;
        let stripped_again = raw_get(relay.addr, "HTTP/1.1", key).await;
        drop(guard);
        for answer in [&plain, &stripped, &stripped_again] {
            assert!(
                answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.0 4"),
                "{answer}"
            );
        }
        let said = captured.text();
        let warned: Vec<serde_json::Value> = said
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| l["level"] == "WARN")
            .collect();
        assert_eq!(warned.len(), 1, "{said}");
        let line = &warned[0];
        assert_eq!(line["message"], "websocket client refused", "{said}");
        assert_eq!(line["reason"], "not_websocket", "{said}");
        assert_eq!(line["version"], "HTTP/1.0", "{said}");
        assert_eq!(
            line["missing"], "Upgrade: websocket, Connection: upgrade, HTTP/1.1",
            "{said}"
        );
        let fix = line["fix"].as_str().unwrap_or_default();
        assert!(
            fix.contains(
                "proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";"
            ),
            "{said}"
        );
        assert!(fix.contains("HAProxy"), "{said}");
        assert!(!said.contains("t0k-long-enough"), "{said}");
        let counted = relay
            .ctx
            .metrics
            .ws_refused
            .with_label_values(&["not_websocket"])
            .get();
        assert_eq!(counted, 3);
        crate::app::tests_support::stop(relay).await;
    }

    /// A CRM backend whose WebSocket library takes smaller messages than
    /// the relay's events (Spring's 8 KiB, Go coder's 32 KiB) closes with
    /// 1009, reconnects with `since`, is sent the same event and closes
    /// again, for ever: each close was counted `client_closed` and said at
    /// debug, like any other. Now it is counted apart and a WARN, once per
    /// 30 s per code, names the code, the client's words, its address and
    /// the largest frame the relay sends; a normal close stays unsaid.
    #[tokio::test]
    async fn a_client_that_closes_1009_is_warned_once_with_the_largest_frame() {
        use crate::logging::tests_support::capture_json;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let event = crate::journal::tests_support::event("big");
        relay.ctx.ingest.submit(event).await.unwrap();
        let url = format!("ws://{}/ws?since=0", relay.addr);
        let (captured, guard) = capture_json();
        for (code, words) in [
            (CloseCode::Size, "Message too big: 70000 > 32768"),
            (CloseCode::Size, "again"),
            (CloseCode::Normal, "bye"),
        ] {
            let (mut client, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            loop {
                let frame = tokio::time::timeout(
                    Duration::from_secs(10),
                    futures::StreamExt::next(&mut client),
                )
                .await
                .expect("the event within 10 s")
                .expect("the session is open")
                .unwrap();
                if frame.is_text() {
                    break;
                }
            }
            close_and_see_the_end(&mut client, code, words).await;
        }
        drop(guard);
        let said = captured.text();
        let warned: Vec<serde_json::Value> = said
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| l["level"] == "WARN")
            .collect();
        assert_eq!(warned.len(), 1, "{said}");
        let line = &warned[0];
        assert_eq!(line["code"], 1009, "{said}");
        assert_eq!(
            line["close_reason"], "Message too big: 70000 > 32768",
            "{said}"
        );
        assert_eq!(line["reason"], "client_refused_frame", "{said}");
        assert!(
            line["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{said}"
        );
        let max_body = relay.ctx.config.load().server.max_body.get_ref().get();
        let payload = crate::sources::voip24h::deliver::payload_limit(max_body) as usize;
        // An event's JSON can be 18 times its payload (review of fbe62d8:
        // the payload and the envelope were named as the largest frame;
        // review of b8f733b: six counted `data.raw` alone).
        assert_eq!(line["frame_bound"], 18 * payload + ENVELOPE_ROOM, "{said}");
        let sent = line["largest_sent"].as_u64().unwrap_or_default();
        assert!(sent > 0 && sent < 64 * 1024, "{said}");
        let advice = line["advice"].as_str().unwrap_or_default();
        assert!(advice.contains("max message size"), "{said}");
        assert!(advice.contains("or remove the limit"), "{said}");
        assert!(
            advice.contains(&format!("was sent: {sent} bytes")),
            "{said}"
        );
        assert_eq!(disconnects(&relay, "client_refused_frame"), 2);
        assert_eq!(disconnects(&relay, "client_closed"), 1);
        crate::app::tests_support::stop(relay).await;
    }

    /// A client closing with a code no endpoint may send (1006, or 2000 of
    /// the reserved range) reaches the session as tungstenite's own
    /// `1002 "Protocol violation"`: it was counted `client_refused_frame`
    /// and warned that the client saw a protocol error in what the relay
    /// sent (review of fbe62d8). It is a client that closed.
    #[tokio::test]
    async fn a_close_code_tungstenite_replaced_with_1002_is_a_client_that_closed() {
        use crate::logging::tests_support::capture_json;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let url = format!("ws://{}/ws", relay.addr);
        let (captured, guard) = capture_json();
        for code in [CloseCode::Abnormal, CloseCode::from(2000)] {
            let (mut client, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            close_and_see_the_end(&mut client, code, "done").await;
        }
        drop(guard);
        let said = captured.text();
        assert!(!said.contains("WARN"), "{said}");
        assert_eq!(disconnects(&relay, "client_refused_frame"), 0);
        assert_eq!(disconnects(&relay, "client_closed"), 2);
        crate::app::tests_support::stop(relay).await;
    }

    /// A request naming a subprotocol was answered 400 before the token
    /// check (review of dc36bd9): a lax client (one a gorilla-based server
    /// upgrades so) was refused, and a wrong token with a protocol got 400
    /// where CONTRACT says 401. It is upgraded again, with no protocol in the
    /// 101, and a WARN (once per 30 s) says a browser fails it and where the
    /// token goes, never the header's value; an empty header names none.
    #[tokio::test]
    async fn a_client_naming_a_subprotocol_is_upgraded_and_warned_once() {
        use crate::logging::tests_support::capture_json;
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(
            dir.path(),
            "[websocket]\ntokens = [\"t0k-long-enough\"]\n",
        )
        .await;
        let (captured, guard) = capture_json();
        let mut heads = vec![upgrade_head(relay.addr, "t0k-long-enough", " , ").await];
        let after_empty = captured.text();
        assert!(!after_empty.contains("WARN"), "{after_empty}");
        for (token, protocol) in [
            ("t0k-long-enough", "bearer, t0k-long-enough"),
            ("t0k-long-enough", "graphql-ws"),
            ("wrong-token-here", "graphql-ws"),
        ] {
            heads.push(upgrade_head(relay.addr, token, protocol).await);
        }
        drop(guard);
        for head in &heads[..3] {
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            assert!(
                !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
                "{head}"
            );
        }
        assert!(heads[3].starts_with("HTTP/1.1 401"), "{}", heads[3]);
        let said = captured.text();
        let warned: Vec<serde_json::Value> = said
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|l: &serde_json::Value| l["level"] == "WARN")
            .filter(|l: &serde_json::Value| l["message"] != "websocket client refused")
            .collect();
        assert_eq!(warned.len(), 1, "{said}");
        let line = &warned[0];
        assert!(
            line["message"]
                .as_str()
                .unwrap_or_default()
                .contains("subprotocol"),
            "{said}"
        );
        assert!(
            line["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{said}"
        );
        let advice = line["advice"].as_str().unwrap_or_default();
        assert!(advice.contains("browser fails"), "{said}");
        assert!(advice.contains("?token="), "{said}");
        assert!(!said.contains("t0k-long-enough"), "{said}");
        assert!(!said.contains("graphql-ws"), "{said}");
        let refused = |reason: &str| {
            relay
                .ctx
                .metrics
                .ws_refused
                .with_label_values(&[reason])
                .get()
        };
        let total: u64 = Refusal::ALL.iter().map(|r| refused(r.as_str())).sum();
        assert_eq!(refused("unauthorized"), 1);
        assert_eq!(total, 1, "only the wrong token is refused");
        crate::app::tests_support::stop(relay).await;
    }

    /// A reload wakes the running sessions, each to check its token (or,
    /// without tokens, its origin) and its scope again, only when that
    /// could end one: a token's scope or the tokens changed, or, with no
    /// tokens, `allowed_origins`. One that added a webhook woke them all,
    /// 10,000 sessions each checking against 10,000 tokens, and both cores
    /// were busy for seconds (cost audit, 2026-12-07). Counted on the
    /// notice the sessions listen for.
    #[tokio::test]
    async fn only_a_reload_that_changes_who_is_admitted_wakes_the_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = |accounts: &[&str]| {
            let hook = |a: &&str| {
                format!("[[webhook]]\nvendor = \"tel4vn\"\naccount = \"{a}\"\napi_key = \"k\"\n")
            };
            accounts.iter().map(hook).collect::<String>()
        };
        let websocket =
            |tokens: &str, rest: &str| format!("[websocket]\ntokens = [{tokens}]\n{rest}");
        let scoped = "\"t0k-long-enough\", { token = \"team\", accounts = [\"hn\", \"sg\"] }";
        let relay = crate::app::tests_support::relay_in(
            dir.path(),
            &format!("{}{}", hooks(&["hn", "sg"]), websocket(scoped, "")),
        )
        .await;
        let text = std::fs::read_to_string(dir.path().join("relay.toml")).unwrap();
        let head = &text[..text.find("[[webhook]]").unwrap()];
        let more = hooks(&["hn", "sg", "dn"]);
        let mut reloads = relay.ctx.ws_sessions.reloads();
        let reload_with = async |websocket: String| {
            let text = format!("{head}{more}{websocket}");
            std::fs::write(dir.path().join("relay.toml"), text).unwrap();
            relay.reload().await.unwrap();
        };
        // A webhook added, limits changed, the entries and a scope's
        // accounts listed in another order, origins that only a fan-out
        // without tokens reads: no session's answer can change.
        let limits = "max_clients = 7\nclient_queue = 99\n";
        reload_with(websocket(scoped, limits)).await;
        let reordered =
            "{ token = \"team\", accounts = [\"sg\", \"hn\", \"sg\"] }, \"t0k-long-enough\"";
        reload_with(websocket(reordered, limits)).await;
        let origins = "allowed_origins = [\"https://crm.example\"]\n";
        reload_with(websocket(reordered, origins)).await;
        assert!(
            !reloads.has_changed().unwrap(),
            "sessions woken for nothing"
        );
        // Each of these may end some: one token swapped for another at the
        // same count (a leaked token rotated), a scope widened, a scope
        // narrowed, a token taken away, every token taken away, other
        // origins let in without tokens.
        for tokens in [
            "\"new-long-enough\", { token = \"team\", accounts = [\"hn\", \"sg\"] }",
            "\"new-long-enough\", { token = \"team\", accounts = [\"hn\", \"sg\", \"dn\"] }",
            "\"t0k-long-enough\", { token = \"team\", accounts = [\"hn\"] }",
            "{ token = \"team\", accounts = [\"hn\"] }",
            "",
        ] {
            reload_with(websocket(tokens, origins)).await;
            assert!(reloads.has_changed().unwrap(), "{tokens}");
            reloads.mark_unchanged();
        }
        reload_with(websocket(
            "",
            "allowed_origins = [\"https://ops.example\"]\n",
        ))
        .await;
        assert!(reloads.has_changed().unwrap(), "other origins");
        crate::app::tests_support::stop(relay).await;
    }

    /// The head of the answer to a WebSocket upgrade at `/ws` with `token`
    /// in its query and `Sec-WebSocket-Protocol: protocol`, read up to its
    /// blank line; the connection is dropped then.
    async fn upgrade_head(addr: SocketAddr, token: &str, protocol: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: relay.example\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
                .await
                .expect("an answer within 10 s")
                .unwrap();
            assert_eq!(read, 1, "closed before the head's end: {head:?}");
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// The whole answer to a `GET /ws` with a token in its query, written as
    /// bytes on a fresh connection (`Connection: close`, as nginx sends it to
    /// an upstream) with `extra` header lines, read until the relay closes.
    async fn raw_get(addr: SocketAddr, version: &str, extra: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /ws?token=t0k-long-enough {version}\r\nHost: relay.example\r\nConnection: close\r\n{extra}\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }
}
