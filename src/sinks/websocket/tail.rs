//! `callrelay tail`: prints live events from a running relay, one JSON line each.
//!
//! Guarantees: stdout carries only events, one CloudEvent JSON per line, each
//! flushed as it arrives, in seq order, with no character a terminal would
//! act on ([`printable_line`]); the one line a stop can cut is the last,
//! when its write has been blocked for the stop's grace (see the `stop` module).
//! After any disconnect (relay restart,
//! slow-consumer close, network, or a connection that went silent: tail pings
//! every [`PING_EVERY`], and not a byte back for [`SILENCE_LIMIT`] means its
//! peer is gone without a word, while a large event arriving slowly, whose
//! bytes keep coming, is read to its end) it reconnects with capped exponential backoff
//! and resumes with `since` = the last seq it printed, so nothing the journal
//! still holds is missed or printed twice; it asks for heartbeats, whose seq
//! moves that point on before its first event too, so even a tail whose
//! filters matched nothing yet misses nothing across a restart. The backoff starts over only after
//! a connection proved useful (a frame came, or it stayed up for
//! [`PROVEN_AFTER`]), so a relay that accepts and drops every connection is
//! not hammered. Frames up to [`MAX_FRAME`] are accepted, more than a relay's
//! events reach. Control frames (a gap), a heartbeat below the seq it
//! resumes from (a new journal or another relay: it goes on from the
//! relay's seq, and the relay's events up to it are not printed) and
//! reconnects are reported on stderr. It ends (exit 1) rather than
//! retrying forever on a refused token or connection (401, 403), a refused
//! request (400), the relay's own
//! 404 before it ever connected (which 404s are, and what of a refusal is
//! repeated: the `refusal` module; any other 404, and any after a
//! connection, is retried with a warning naming a wrong path and a proxy
//! whose relay is down) and a frame over [`MAX_FRAME`], which every
//! reconnect would meet again; a closed stdout ends it with exit 0 (e.g.
//! `| head`), as Ctrl-C (SIGINT) and SIGTERM do (the `stop` module).
//! The token goes in the `Authorization` header, never in the URL or a log.
//! A `wss://` relay (behind a TLS proxy) is verified against the public roots
//! plus `--ca-file`'s certificates.

use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http};

use crate::config::url_without_credentials;
use crate::sources::tls::{TlsError, TrustRoots};

mod refusal;
mod stop;

pub use refusal::Own404;
use refusal::{not_found_said, relay_error, relays_own_404, served_at_hint};
pub use stop::{StopSignalsError, exit_at_stop_signals};

/// What `callrelay tail` was asked for. Its `Debug` hides the token (and
/// the url's userinfo).
#[derive(Clone)]
pub struct TailOptions {
    pub url: String,
    pub token: Option<String>,
    pub types: Vec<String>,
    pub vendors: Vec<String>,
    pub since: Option<u64>,
    /// Extra CA certificates (PEM) to trust for a `wss://` url.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for TailOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailOptions")
            .field("url", &url_without_credentials(&self.url))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("types", &self.types)
            .field("vendors", &self.vendors)
            .field("since", &self.since)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("bad --url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// Said without the token, which may be a secret pasted with a stray
    /// newline or control character.
    #[error(
        "the token (--token or CALLRELAY_WS_TOKEN) has a character an HTTP header cannot carry (a control character, such as a trailing newline)"
    )]
    BadToken,
    #[error(
        "the relay refused the token (HTTP 401: {0}); check --token or CALLRELAY_WS_TOKEN against the relay's websocket.tokens (set one if none was given)"
    )]
    Unauthorized(String),
    /// A 403: no tokens and a foreign origin or a proxy, or an `account`
    /// in `--url` outside the token's accounts; the relay's words say which.
    #[error("the relay refused the connection (HTTP 403: {0})")]
    Forbidden(String),
    #[error(
        "nothing answers WebSocket requests at the path {path:?} (HTTP 404); check --url ({})",
        served_at_hint(.served_at)
    )]
    NotFound {
        /// The URL's path only: a query may hold a `?token=`.
        path: String,
        /// What the relay's 404 said of where its fan-out is.
        served_at: Own404,
    },
    #[error(
        "the relay sent a frame of {size} bytes, over tail's limit of {max} bytes ({position}); stopping, as every reconnect would meet it again"
    )]
    FrameTooLarge {
        size: usize,
        max: usize,
        /// Where it came: after which printed seq.
        position: String,
    },
    /// A 400: the relay refuses the query itself, and a retry sends it again.
    #[error(
        "the relay refused the request (HTTP 400): {reason}; check --url and the filter flags (behind a proxy: that it passes WebSocket upgrades)"
    )]
    BadRequest { reason: String },
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection that stayed up this long was useful even without a frame
/// (a filter that matched nothing yet), so the next reconnect is quick again;
/// longer than [`BACKOFF_MAX`], so a relay that drops every connection late
/// still meets a growing backoff.
const PROVEN_AFTER: Duration = Duration::from_secs(10);
/// How often tail pings the relay. A connection whose peer is gone without a
/// FIN or RST (the relay's host lost power, a NAT forgot the flow) is
/// otherwise never noticed: tail only writes pongs, so the kernel never
/// finds out, and it waited in a read for good.
const PING_EVERY: Duration = Duration::from_secs(10);
/// Not a byte from the relay (of an event, a ping, a pong to tail's pings)
/// for this long: the connection is dead, and tail reconnects. Three of its
/// pings gone unanswered; a live relay answers each at once, or is writing
/// a large event whose bytes are coming all the while (its pong waits
/// behind it). Bytes, not whole frames: a 1 MiB event takes more than this
/// below 34 KiB/s, and a frame is read only once it is whole.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// How long the relay may take to answer the WebSocket upgrade.
const UPGRADE_LIMIT: Duration = Duration::from_secs(30);

/// The largest frame (and message) tail reads: 4 GiB. A relay event is one
/// frame: the vendor's payload, at most `server.max_body` (the config refuses
/// more than 1 GiB), once as `data.raw` (a JSON payload as sent; form fields
/// read into an object of strings), plus `subject` and
/// the normalised `data` fields copied out of it, plus the envelope. 4 GiB
/// holds the payload three times over at that ceiling, but a byte can grow
/// as it is escaped, up to `JSON_GROWTH` (18) in all: a form of control
/// bytes (six each, three copies) could pass it past about 228 MiB, a
/// windows-125x JSON body (three each, three copies) past about 455 MiB,
/// with `max_body` raised that far; tail then stops and says so. tungstenite's default, 16 MiB, is below what a
/// relay with a larger `max_body` sends, and a frame over the limit fails again
/// on every reconnect. The limit still keeps an endpoint that is not a relay
/// from growing tail's memory without end.
const MAX_FRAME: u64 = 4 << 30;

/// [`MAX_FRAME`] where `usize` can hold it, else the largest `usize`.
fn max_frame() -> usize {
    usize::try_from(MAX_FRAME).unwrap_or(usize::MAX)
}

/// How one connection ended.
enum Disconnect {
    /// Worth retrying; the text says why (for stderr).
    Retry(String),
    /// Stop: stdout closed.
    StdoutClosed,
}

/// Connects, prints events, and reconnects from the last printed seq until
/// interrupted (see [`exit_at_stop_signals`]).
pub async fn run(options: TailOptions) -> Result<(), TailError> {
    follow(&options, SILENCE_LIMIT, &mut std::io::stdout()).await
}

/// [`run`], printing to `out`, giving up a connection silent for
/// `silence_limit` ([`SILENCE_LIMIT`]; tests shorten it).
async fn follow<W: Write>(
    options: &TailOptions,
    silence_limit: Duration,
    out: &mut W,
) -> Result<(), TailError> {
    let mut since = options.since;
    let mut backoff = BACKOFF_START;
    let mut connected_once = false;
    // A reconnect or retry warning was said (every attempt after the first
    // follows one).
    let mut warned = false;
    let roots = match &options.ca_file {
        Some(path) => TrustRoots::from_file(path)?,
        None => TrustRoots::default(),
    };
    let tls = Connector::Rustls(Arc::new(roots.rustls()?));
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_frame()))
        .max_frame_size(Some(max_frame()));
    loop {
        let request = build_request(options, since)?;
        let last_read = LastRead::now();
        let connect = open(request, config, tls.clone(), last_read.clone());
        let attempt = tokio::time::timeout(UPGRADE_LIMIT, connect)
            .await
            .unwrap_or_else(|_| {
                Err(tungstenite::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer to the WebSocket upgrade within {UPGRADE_LIMIT:?}"),
                )))
            });
        let connected = attempt.is_ok();
        let disconnect = match attempt {
            Ok((socket, _)) => {
                connected_once = true;
                // Said, so that a stderr ending on a reconnect warning is
                // not all there is while it works: at the warning's level
                // after one (tail's default level is `warn`).
                if warned {
                    tracing::warn!(resume_after = since, "connected to the relay");
                } else {
                    tracing::info!(resume_after = since, "connected to the relay");
                }
                let connected_at = Instant::now();
                let mut frames = 0u64;
                let (pings, socket) = socket.split();
                // Aborted however this connection ends, a cancelled `follow`
                // included: it holds the connection open.
                let _pinging = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(ping_every(
                    pings, PING_EVERY,
                )));
                let silence = Silence {
                    last_read,
                    limit: silence_limit,
                };
                let disconnect = print_events(
                    socket,
                    &mut since,
                    &mut frames,
                    silence,
                    out,
                    &mut std::io::stderr(),
                )
                .await?;
                if proved_useful(frames, connected_at.elapsed()) {
                    backoff = BACKOFF_START;
                }
                disconnect
            }
            Err(tungstenite::Error::Http(response))
                if matches!(response.status().as_u16(), 401 | 403) =>
            {
                let reason = relay_error(response.body().as_deref())
                    .unwrap_or_else(|| "no reason given".to_owned());
                return Err(if response.status() == http::StatusCode::UNAUTHORIZED {
                    TailError::Unauthorized(reason)
                } else {
                    TailError::Forbidden(reason)
                });
            }
            // Only the relay's own 404 (naming its fan-out's path, its
            // plain "no such route" to a request without `Upgrade`, or one
            // under `/hooks/`: see `relays_own_404`), and only
            // before the first connection: the URL is then wrong, and no
            // retry will fix it. Any other 404 may be a proxy whose route is
            // gone while the relay restarts (Traefik drops a container's
            // routes while it is down), and once this URL has served us, a
            // relay's own 404 is a reload of its `websocket.path` away.
            Err(tungstenite::Error::Http(response))
                if response.status() == http::StatusCode::NOT_FOUND && !connected_once =>
            {
                let body = response.body().as_deref();
                match relays_own_404(body) {
                    Some(served_at) => {
                        return Err(TailError::NotFound {
                            path: url_path(&options.url),
                            served_at,
                        });
                    }
                    None => Disconnect::Retry(not_found_said(body)),
                }
            }
            Err(tungstenite::Error::Http(response))
                if response.status() == http::StatusCode::BAD_REQUEST =>
            {
                return Err(TailError::BadRequest {
                    reason: relay_error(response.body().as_deref())
                        .unwrap_or_else(|| "no reason given".to_owned()),
                });
            }
            // The relay's reason too (`max_clients`, shutting down): the
            // status alone does not say what to do.
            Err(tungstenite::Error::Http(response)) => {
                Disconnect::Retry(match relay_error(response.body().as_deref()) {
                    Some(reason) => format!("HTTP {}: {reason}", response.status()),
                    None => format!("HTTP {}", response.status()),
                })
            }
            Err(e) => Disconnect::Retry(failure_said(&e, options)),
        };
        match disconnect {
            Disconnect::StdoutClosed => return Ok(()),
            Disconnect::Retry(why) => {
                // Jitter keeps many tails from reconnecting in lockstep after a restart.
                let wait = backoff.mul_f64(rand::random_range(0.5..1.0));
                if connected {
                    tracing::warn!(
                        reason = %why,
                        resume_after = since,
                        retry_in_ms = crate::logging::millis(wait),
                        "disconnected from the relay; reconnecting"
                    );
                } else {
                    // Nothing listening, a proxy's 502, a relay at
                    // max_clients: tail retries for as long as it runs.
                    // The url named: `tail` reads no config, so one
                    // whose relay listens elsewhere needs `--url`.
                    tracing::warn!(
                        url = %url_without_credentials(&options.url),
                        reason = %why,
                        resume_after = since,
                        retry_in_ms = crate::logging::millis(wait),
                        "cannot connect to the relay; retrying (another address: --url)"
                    );
                }
                warned = true;
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Why a connection to the relay failed, for the retry's warning: a refused
/// certificate with what to change in `--ca-file` or `--url`, and any text
/// cut to [`REASON_CHARS`](crate::sources::tls::REASON_CHARS).
fn failure_said(error: &tungstenite::Error, options: &TailOptions) -> String {
    // `tail` dials the relay itself, never through a proxy route.
    crate::sources::tls::failure_said(
        error,
        crate::sources::tls::Settings::Tail,
        options.ca_file.as_deref(),
        crate::sources::tls::Route::Direct,
        || error.to_string(),
    )
}

/// Whether a connection that brought `frames` and lasted `lasted` starts
/// the backoff over. A handshake alone proves little: a relay (or proxy)
/// that accepts and drops every connection would otherwise be retried every
/// 100 ms forever; either a frame or [`PROVEN_AFTER`] up proves it.
fn proved_useful(frames: u64, lasted: Duration) -> bool {
    frames > 0 || lasted >= PROVEN_AFTER
}

/// The path of `url`, for messages: the query may carry a token.
fn url_path(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| "?".to_owned(), |u| u.path().to_owned())
}

/// The WebSocket request: filters and `since` in the query, token in a header.
fn build_request(
    options: &TailOptions,
    since: Option<u64>,
) -> Result<http::Request<()>, TailError> {
    let bad = |reason: String| TailError::BadUrl {
        url: url_without_credentials(&options.url),
        reason,
    };
    let mut url = url::Url::parse(&options.url)
        .map_err(|e| bad(format!("{e}; a --url is like ws://127.0.0.1:8080/ws")))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(bad(
            "the scheme must be ws:// or wss://, like ws://127.0.0.1:8080/ws".into(),
        ));
    }
    {
        let mut query = url.query_pairs_mut();
        if !options.types.is_empty() {
            query.append_pair("type", &options.types.join(","));
        }
        if !options.vendors.is_empty() {
            query.append_pair("vendor", &options.vendors.join(","));
        }
        if let Some(seq) = since {
            query.append_pair("since", &seq.to_string());
        }
        query.append_pair("heartbeat", "1");
    }
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| bad(e.to_string()))?;
    if let Some(token) = &options.token {
        let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| TailError::BadToken)?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    Ok(request)
}

/// Opens the WebSocket to the relay as tokio-tungstenite's
/// `connect_async_tls_with_config` does, but over a TCP stream that stamps
/// `last_read` with every read that brings bytes, beneath TLS and
/// tungstenite: the only sign that a large event is on its way, since
/// tungstenite yields a frame only once it has all of it.
async fn open(
    request: http::Request<()>,
    config: WebSocketConfig,
    tls: Connector,
    last_read: LastRead,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<Stamped<TcpStream>>>,
        tungstenite::handshake::client::Response,
    ),
    tungstenite::Error,
> {
    let uri = request.uri();
    let host = uri.host().ok_or(tungstenite::Error::Url(
        tungstenite::error::UrlError::NoHostName,
    ))?;
    // An IPv6 literal without its brackets, as a socket address and TLS's
    // server name take it.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("wss") => 443,
        _ => 80,
    });
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(tungstenite::Error::Io)?;
    let stream = Stamped {
        inner: tcp,
        last_read,
    };
    tokio_tungstenite::client_async_tls_with_config(request, stream, Some(config), Some(tls)).await
}

/// When bytes last came from the relay (or tail last went back to reading
/// them); shared by the stream that reads them and the silence check.
#[derive(Clone, Debug)]
struct LastRead(Arc<Mutex<Instant>>);

impl LastRead {
    fn now() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    fn stamp(&self) {
        // An `Instant` cannot be left half-written: a poisoned lock's is good.
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn at(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A stream that stamps a [`LastRead`] with every read that brings bytes.
struct Stamped<S> {
    inner: S,
    last_read: LastRead,
}

impl<S: AsyncRead + Unpin> AsyncRead for Stamped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.last_read.stamp();
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stamped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a connection's silence is judged: no byte read since
/// `last_read` for `limit`.
struct Silence {
    last_read: LastRead,
    limit: Duration,
}

impl Silence {
    /// Ends once no byte has come for the limit. Bytes that came meanwhile
    /// move the end on: the limit counts from the last of them.
    async fn reached(&self) {
        loop {
            let end = self.last_read.at() + self.limit;
            if Instant::now() >= end {
                return;
            }
            tokio::time::sleep_until(end).await;
        }
    }
}

/// Pings the relay every `period` until a ping cannot be sent (the
/// connection is over): what keeps a dead peer from going unnoticed.
async fn ping_every<S>(mut pings: S, period: Duration)
where
    S: futures::Sink<Message> + Unpin,
{
    use futures::SinkExt;
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    // After a send held up for several periods, one ping, not a burst.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if pings.send(Message::Ping(Default::default())).await.is_err() {
            return;
        }
    }
}

/// Prints every event frame to `out` until the connection ends, or until
/// `silence` is reached: not a byte read for its limit while tail waited
/// for a frame (`socket` reads through the stream that stamps its
/// `last_read`). `since` follows the last printed seq, `frames` counts the
/// text frames received; what the user is told besides events goes to
/// `notes` (stderr).
async fn print_events<S, W, N>(
    mut socket: S,
    since: &mut Option<u64>,
    frames: &mut u64,
    silence: Silence,
    out: &mut W,
    notes: &mut N,
) -> Result<Disconnect, TailError>
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
    W: Write,
    N: Write,
{
    loop {
        // The time spent printing the last frame (a stdout that blocked, a
        // paused pager) is not the relay's silence: nothing was read then,
        // nor were tail's pings sent.
        silence.last_read.stamp();
        // Not a timeout on `next()`: a frame larger than the link carries in
        // the limit (a 1 MiB event below 34 KiB/s in 30 s) was given up on
        // every reconnect, and tail never got past it.
        let frame = tokio::select! {
            // Bytes already there are read (and stamped) before the
            // silence is judged.
            biased;
            frame = socket.next() => frame,
            () = silence.reached() => {
                return Ok(Disconnect::Retry(format!(
                    "not a byte from the relay for {:?}, nor an answer to tail's pings: the connection is dead",
                    silence.limit
                )));
            }
        };
        let Some(frame) = frame else { break };
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                let why = frame.map_or_else(
                    || "closed by the relay".to_owned(),
                    |f| format!("closed by the relay: {} {}", u16::from(f.code), f.reason),
                );
                return Ok(Disconnect::Retry(why));
            }
            // Pings are answered by tungstenite while we read; pongs
            // answer ours: both are signs of life, and nothing to print.
            Ok(_) => continue,
            Err(tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                return Err(TailError::FrameTooLarge {
                    size,
                    max: max_size,
                    position: since.map_or_else(
                        || "before any event was printed".to_owned(),
                        |s| format!("the event after seq {s}"),
                    ),
                });
            }
            Err(e) => return Ok(Disconnect::Retry(e.to_string())),
        };
        let value: serde_json::Value = match serde_json::from_str(text.as_str()) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "the relay sent a frame that is not JSON; skipped");
                continue;
            }
        };
        if value.get("control").is_some_and(|c| c == "heartbeat") {
            // Not proof the connection is useful: a relay that fails right
            // after its first heartbeat must still be backed off.
            // Taken as sent, also below the `since` asked for: a relay
            // that never reached that seq (a new journal, another relay)
            // serves "from now", and its heartbeat says where now is.
            // Kept above it, each reconnect was "from now" again, and what
            // was committed while tail was away was never printed.
            if let Some(seq) = value.get("seq").and_then(|v| v.as_u64()) {
                // Said, as a gap is: the relay's events up to its seq are
                // never printed, and the lines after it go on as if nothing
                // were amiss. Not a replay from 0: tail cannot tell a wiped
                // journal from a mistyped `--since` or another relay, whose
                // whole journal (days of it) would pour out unasked.
                if let Some(asked) = *since
                    && seq < asked
                {
                    // Not `eprintln!`: it panics (exit 101) on a stderr that cannot be written.
                    let _ = writeln!(
                        notes,
                        "callrelay tail: the relay's newest seq is {seq}, below seq {asked} that tail resumes after \
                         (a --since past its journal, a new or wiped journal, or another relay): the events it holds up to seq {seq} \
                         are not printed (a tail with --since 0 prints them); resuming after seq {seq}"
                    );
                }
                *since = Some(seq);
            }
            continue;
        }
        *frames += 1;
        if let Some(control) = value.get("control") {
            if control == "gap" {
                let oldest = value.get("oldest_seq").and_then(|v| v.as_u64());
                // Not `eprintln!`: it panics (exit 101) on a stderr that cannot be written.
                let _ = writeln!(
                    notes,
                    "callrelay tail: the relay no longer holds some requested events; resuming at seq {}",
                    oldest.map_or_else(|| "?".to_owned(), |s| s.to_string())
                );
            }
            continue;
        }
        let mut line = printable_line(text.as_str()).into_owned();
        line.push('\n');
        // One write: stdout's lock is held for the whole line, which a stop
        // signal waits for (`exit_at_stop_signals`).
        let written = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(Disconnect::StdoutClosed);
            }
            Err(e) => return Err(TailError::Stdout(e)),
        }
        if let Some(seq) = value.get("seq").and_then(|v| v.as_u64()) {
            *since = Some(seq);
        }
    }
    Ok(Disconnect::Retry("connection lost".into()))
}

/// A frame as one line a terminal shows as text. `data.raw` keeps a
/// vendor's pretty-printed payload as sent, and in valid JSON a line break
/// can only be such whitespace between tokens (inside a string it is
/// escaped): it becomes a space. JSON writes the characters a terminal acts
/// on, or that reorder or break text on screen, as they are
/// ([`acts_on_a_terminal`](crate::logging::one_line::acts_on_a_terminal)),
/// and they can only be inside strings, so they are written as `\uXXXX`
/// escapes: the same JSON to a reader, inert on a terminal.
fn printable_line(text: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let line: Cow<'_, str> = if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ").into()
    } else {
        text.into()
    };
    match crate::logging::one_line::json_escaped(&line) {
        Cow::Borrowed(_) => line,
        Cow::Owned(escaped) => escaped.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_or_ten_seconds_up_start_the_backoff_over() {
        let short = Duration::from_millis(50);
        assert!(proved_useful(1, short), "a frame, however quick the drop");
        assert!(proved_useful(0, PROVEN_AFTER), "up long enough, no frame");
        assert!(
            !proved_useful(0, PROVEN_AFTER - short),
            "dropped early with nothing"
        );
    }

    #[test]
    fn a_printed_line_is_one_line_of_inert_text_and_the_same_json() {
        let frame = "{\"data\": {\n  \"agent\": \"A\u{9b}2J\u{202e}cba\u{7f}\",\r\n  \"name\": \"Nguyễn\"}}";
        let line = printable_line(frame);
        assert_eq!(
            line,
            "{\"data\": {   \"agent\": \"A\\u009b2J\\u202ecba\\u007f\",    \"name\": \"Nguyễn\"}}"
        );
        let read: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            read,
            serde_json::from_str::<serde_json::Value>(frame).unwrap()
        );
        assert!(matches!(
            printable_line("{\"a\":\"Иванов\"}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn options_print_without_the_token_or_the_urls_password() {
        let options = TailOptions {
            url: "ws://user:pa55word@127.0.0.1:8080/ws?token=qu3ry".into(),
            token: Some("s3cr3t-t0k".into()),
            types: vec!["call.*".into()],
            vendors: vec![],
            since: Some(7),
            ca_file: None,
        };
        let shown = format!("{options:?}");
        for secret in ["s3cr3t", "pa55word", "qu3ry"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("call.*") && shown.contains("127.0.0.1:8080"),
            "{shown}"
        );
    }

    /// A tail whose filters matched nothing yet resumes from the heartbeat's
    /// seq, not from "now" (it printed nothing to take a seq from).
    #[tokio::test]
    async fn a_heartbeat_moves_the_resume_point_without_printing() {
        let text = |t: &str| Ok(Message::text(t.to_owned()));
        let frames = futures::stream::iter([
            text(r#"{"control":"heartbeat","seq":40}"#),
            text(r#"{"control":"heartbeat","seq":41}"#),
        ]);
        let (mut since, mut count) = (None, 0);
        let end = printed(frames, &mut since, &mut count, silence()).await;
        assert!(matches!(end, Ok(Disconnect::Retry(_))));
        assert_eq!(since, Some(41), "the last heartbeat");
        assert_eq!(
            count, 0,
            "a heartbeat alone does not prove a connection useful"
        );
    }

    /// A `since` beyond the relay's newest seq (a new journal, another
    /// relay) is served "from now", and the heartbeat says where now is:
    /// tail resumes from there. Kept at its own, higher `since`, every
    /// reconnect was "from now" again, and what was committed while tail
    /// was away was never printed (WebSocket docs review, 2026-12-05).
    #[tokio::test]
    async fn a_heartbeat_below_the_since_asked_for_is_the_resume_point() {
        let frames = futures::stream::iter([Ok(Message::text(
            r#"{"control":"heartbeat","seq":7}"#.to_owned(),
        ))]);
        let (mut since, mut count) = (Some(100), 0);
        let (end, notes) = noted(frames, &mut since, &mut count, silence()).await;
        assert!(matches!(end, Ok(Disconnect::Retry(_))));
        assert_eq!(since, Some(7));
        // Said, as a gap is: the relay's events up to 7 are never printed
        // (it said nothing; audit of `callrelay tail`, 2026-12-07).
        assert_eq!(
            notes,
            "callrelay tail: the relay's newest seq is 7, below seq 100 that tail resumes after \
             (a --since past its journal, a new or wiped journal, or another relay): the events it holds up to seq 7 \
             are not printed (a tail with --since 0 prints them); resuming after seq 7\n"
        );
    }

    /// Heartbeats at or above the resume point (every one of a relay that
    /// reached it) say nothing; neither does the first one of a tail
    /// started "from now", which asked for no seq.
    #[tokio::test]
    async fn a_heartbeat_at_or_above_the_resume_point_says_nothing() {
        for (asked, heartbeats) in [(Some(7), [7, 9]), (None, [3, 4])] {
            let frames = futures::stream::iter(heartbeats.map(|seq| {
                Ok(Message::text(format!(
                    r#"{{"control":"heartbeat","seq":{seq}}}"#
                )))
            }));
            let (mut since, mut count) = (asked, 0);
            let (end, notes) = noted(frames, &mut since, &mut count, silence()).await;
            assert!(matches!(end, Ok(Disconnect::Retry(_))));
            assert_eq!(since, Some(heartbeats[1]));
            assert_eq!(notes, "", "from {asked:?}");
        }
    }

    /// [`print_events`] with stdout and stderr thrown away.
    async fn printed<S>(
        frames: S,
        since: &mut Option<u64>,
        count: &mut u64,
        silence: Silence,
    ) -> Result<Disconnect, TailError>
    where
        S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
    {
        noted(frames, since, count, silence).await.0
    }

    /// [`print_events`] with stdout thrown away, and what it said on stderr.
    async fn noted<S>(
        frames: S,
        since: &mut Option<u64>,
        count: &mut u64,
        silence: Silence,
    ) -> (Result<Disconnect, TailError>, String)
    where
        S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
    {
        let mut notes = Vec::new();
        let end = print_events(frames, since, count, silence, &mut Vec::new(), &mut notes).await;
        (end, String::from_utf8_lossy(&notes).into_owned())
    }

    /// The silence of a connection that nothing reads bytes from yet.
    fn silence() -> Silence {
        Silence {
            last_read: LastRead::now(),
            limit: SILENCE_LIMIT,
        }
    }

    /// Bytes read (of a frame not yet whole) put the end off; the limit
    /// counts from the last of them.
    #[tokio::test(start_paused = true)]
    async fn a_connection_is_silent_from_its_last_byte() {
        let started = Instant::now();
        let silence = silence();
        let last_read = silence.last_read.clone();
        // 7 s apart: never at the moment the limit ends, so the test does
        // not hang on which of two timers due together runs first.
        let every = Duration::from_secs(7);
        let trickle = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(every).await;
                last_read.stamp();
            }
        });
        let pending = futures::stream::pending::<Result<Message, tungstenite::Error>>();
        let (mut since, mut count) = (Some(3), 0);
        let end = printed(pending, &mut since, &mut count, silence).await;
        assert!(matches!(end, Ok(Disconnect::Retry(_))));
        assert_eq!(started.elapsed(), every * 10 + SILENCE_LIMIT);
        trickle.await.unwrap();
    }

    /// A connection whose peer vanished without a FIN or RST (power cut,
    /// NAT) brings nothing more: tail gives it up after SILENCE_LIMIT and
    /// reconnects. It read for good (WebSocket review, 2026-12-04).
    #[tokio::test(start_paused = true)]
    async fn a_connection_silent_for_the_limit_is_given_up() {
        let started = Instant::now();
        let silent = futures::stream::pending::<Result<Message, tungstenite::Error>>();
        let (mut since, mut count) = (Some(3), 0);
        match printed(silent, &mut since, &mut count, silence()).await {
            Ok(Disconnect::Retry(why)) => assert!(why.contains("the connection is dead"), "{why}"),
            Ok(Disconnect::StdoutClosed) => panic!("expected a reconnect"),
            Err(e) => panic!("expected a reconnect, got {e}"),
        }
        assert_eq!(started.elapsed(), SILENCE_LIMIT);
        assert_eq!(since, Some(3), "resumes where it was");
    }

    /// Tail pings every PING_EVERY, so a live relay's pongs keep a quiet
    /// connection (filters that match nothing) within SILENCE_LIMIT.
    #[tokio::test(start_paused = true)]
    async fn tail_pings_within_the_silence_limit() {
        assert!(PING_EVERY * 2 < SILENCE_LIMIT);
        let (sent, mut pings) = futures::channel::mpsc::unbounded::<Message>();
        let pinging = tokio::spawn(ping_every(sent, PING_EVERY));
        let started = Instant::now();
        for n in 1..=3u32 {
            let ping = pings.next().await.expect("a ping");
            assert!(matches!(ping, Message::Ping(_)), "{ping:?}");
            assert_eq!(started.elapsed(), PING_EVERY * n);
        }
        // The connection over (the receiving end gone): the pinger ends.
        drop(pings);
        tokio::time::timeout(PING_EVERY * 2, pinging)
            .await
            .expect("the pinger ends with its connection")
            .expect("no panic");
    }

    /// What a [`trickling_server`] did, as it happened.
    #[derive(Debug)]
    enum Seen {
        /// Its `n`th connection (from 1) was upgraded, at that time.
        Upgraded(usize, Instant),
        /// The last piece to its `n`th connection was about to be written.
        AllSent(usize, Instant),
    }

    /// A WebSocket server that upgrades every connection, writes `bytes` to
    /// it in pieces of `piece` bytes, `every` apart, and then holds it open
    /// without a word: a relay writing a large event to a slow link, or
    /// going silent.
    async fn trickling_server(
        bytes: Vec<u8>,
        piece: usize,
        every: Duration,
    ) -> (
        String,
        tokio::sync::mpsc::UnboundedReceiver<Seen>,
        tokio_util::task::AbortOnDropHandle<()>,
    ) {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let (report, seen) = tokio::sync::mpsc::unbounded_channel();
        let bytes = Arc::new(bytes);
        let server = tokio::spawn(async move {
            for n in 1.. {
                let (stream, _) = listener.accept().await.unwrap();
                let (report, bytes) = (report.clone(), bytes.clone());
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                    let _ = report.send(Seen::Upgraded(n, Instant::now()));
                    let pieces = bytes.chunks(piece).count();
                    for (i, chunk) in bytes.chunks(piece).enumerate() {
                        if i > 0 {
                            tokio::time::sleep(every).await;
                        }
                        if i + 1 == pieces {
                            let _ = report.send(Seen::AllSent(n, Instant::now()));
                        }
                        // Beneath tungstenite: a frame cut into pieces.
                        if ws.get_mut().write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                    std::future::pending::<()>().await;
                });
            }
        });
        (url, seen, tokio_util::task::AbortOnDropHandle::new(server))
    }

    /// An unmasked text frame, as a server sends it.
    fn text_frame(payload: &str) -> Vec<u8> {
        let len = u16::try_from(payload.len()).unwrap();
        assert!(len >= 126, "the two-byte length form");
        let mut frame = vec![0x81, 126];
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(payload.as_bytes());
        frame
    }

    /// Tail's stdout in a test: each line as it is flushed.
    struct Lines {
        pending: Vec<u8>,
        lines: tokio::sync::mpsc::UnboundedSender<String>,
    }

    impl Lines {
        /// Output for `follow`, and where its lines arrive.
        fn channel() -> (Lines, tokio::sync::mpsc::UnboundedReceiver<String>) {
            let (lines, printed) = tokio::sync::mpsc::unbounded_channel();
            let out = Lines {
                pending: Vec::new(),
                lines,
            };
            (out, printed)
        }
    }

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.pending.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let _ = self
                    .lines
                    .send(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            Ok(())
        }
    }

    fn options_for(url: String) -> TailOptions {
        TailOptions {
            url,
            token: None,
            types: vec![],
            vendors: vec![],
            since: None,
            ca_file: None,
        }
    }

    #[test]
    fn a_long_tls_refusal_is_said_cut() {
        let refused = tungstenite::Error::Io(crate::sources::tls::long_purpose_refused());
        let options = options_for("wss://relay.example/events".to_owned());
        crate::sources::tls::assert_long_reason_cut(&failure_said(&refused, &options));
    }

    fn an_event() -> String {
        serde_json::json!({
            "specversion": "1.0",
            "seq": 5,
            "type": "call.cdr",
            "data": {"raw": {"pad": "x".repeat(2000)}},
        })
        .to_string()
    }

    /// How long a test waits for what should come well within it.
    const WAIT: Duration = Duration::from_secs(10);

    /// An event is one frame, and a large one on a slow link takes longer
    /// than the silence limit to arrive whole, its bytes coming all the
    /// while: tail reads it to the end instead of calling the connection
    /// dead. It gave up at the limit, reconnected from before that event,
    /// met it again and never got past it (WebSocket screen review,
    /// 2026-12-07).
    #[tokio::test]
    async fn a_frame_arriving_slower_than_the_silence_limit_is_printed_without_a_reconnect() {
        let limit = Duration::from_secs(2);
        let event = an_event();
        let frame = text_frame(&event);
        // 12 pieces 250 ms apart: 2.75 s for the frame, over the limit,
        // while a wait for a byte stays 1.75 s short of it: room for a
        // loaded machine to hold the one thread the server and tail share
        // (a review found 100 ms pieces against 500 ms too close).
        let piece = frame.len().div_ceil(12);
        let (url, mut seen, _server) =
            trickling_server(frame, piece, Duration::from_millis(250)).await;
        let (mut out, mut printed) = Lines::channel();
        let options = options_for(url);
        let tail = follow(&options, limit, &mut out);
        tokio::pin!(tail);
        let (mut upgraded, mut all_sent) = (None, None);
        let line = tokio::time::timeout(WAIT, async {
            loop {
                tokio::select! {
                    r = &mut tail => panic!("tail ended: {r:?}"),
                    s = seen.recv() => match s.expect("the server runs") {
                        Seen::Upgraded(1, at) => upgraded = Some(at),
                        Seen::AllSent(1, at) => all_sent = Some(at),
                        other => panic!(
                            "tail gave the connection up and reconnected before the frame was whole: {other:?}"
                        ),
                    },
                    line = printed.recv() => return line.expect("a line"),
                }
            }
        })
        .await
        .expect("tail printed the event in time");
        let read: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            read,
            serde_json::from_str::<serde_json::Value>(&event).unwrap()
        );
        let took = all_sent.expect("sent whole") - upgraded.expect("upgraded");
        assert!(took > limit, "the frame took {took:?}, the limit {limit:?}");
    }

    /// Bytes of a frame are a sign of life, but only while they come: a
    /// relay silent in the middle of a frame is given up after the limit
    /// like any silent one, with nothing printed.
    #[tokio::test]
    async fn a_connection_silent_in_the_middle_of_a_frame_is_given_up() {
        let limit = Duration::from_millis(300);
        let frame = text_frame(&an_event());
        let half = frame[..frame.len() / 2].to_vec();
        let (url, mut seen, _server) = trickling_server(half, usize::MAX, Duration::ZERO).await;
        let (mut out, mut printed) = Lines::channel();
        let options = options_for(url);
        let tail = follow(&options, limit, &mut out);
        tokio::pin!(tail);
        let mut all_sent = None;
        let reconnected = tokio::time::timeout(WAIT, async {
            loop {
                tokio::select! {
                    r = &mut tail => panic!("tail ended: {r:?}"),
                    s = seen.recv() => match s.expect("the server runs") {
                        Seen::Upgraded(1, _) => {}
                        Seen::AllSent(1, at) => all_sent = Some(at),
                        Seen::Upgraded(2, at) => return at,
                        other => panic!("{other:?}"),
                    },
                }
            }
        })
        .await
        .expect("tail gave the silent connection up");
        let silent = reconnected - all_sent.expect("half a frame sent");
        assert!(silent >= limit, "reconnected after {silent:?} of silence");
        assert!(printed.try_recv().is_err(), "half a frame printed nothing");
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_ends_tail_instead_of_reconnecting() {
        let too_long = tungstenite::Error::Capacity(CapacityError::MessageTooLong {
            size: 5,
            max_size: 4,
        });
        let frames = futures::stream::iter([Err(too_long)]);
        let (mut since, mut count) = (Some(7), 0);
        match printed(frames, &mut since, &mut count, silence()).await {
            Err(e @ TailError::FrameTooLarge { .. }) => assert_eq!(
                e.to_string(),
                "the relay sent a frame of 5 bytes, over tail's limit of 4 bytes \
                 (the event after seq 7); stopping, as every reconnect would meet it again"
            ),
            Err(e) => panic!("expected FrameTooLarge, got {e}"),
            Ok(_) => panic!("expected FrameTooLarge, got a reconnect"),
        }
    }

    #[test]
    fn request_has_filters_since_and_header_token() {
        let options = TailOptions {
            url: "ws://127.0.0.1:8080/ws".into(),
            token: Some("t0k".into()),
            types: vec!["call.*".into(), "sms.received".into()],
            vendors: vec!["voip24h".into()],
            since: None,
            ca_file: None,
        };
        let r = build_request(&options, Some(42)).unwrap();
        let uri = r.uri().to_string();
        assert_eq!(
            uri,
            "ws://127.0.0.1:8080/ws?type=call.*%2Csms.received&vendor=voip24h&since=42&heartbeat=1"
        );
        assert!(!uri.contains("t0k"));
        assert_eq!(r.headers()[http::header::AUTHORIZATION], "Bearer t0k");
        for schemeless in ["127.0.0.1:18080/ws", "localhost:18080/ws"] {
            let schemeless = TailOptions {
                url: schemeless.into(),
                ..options.clone()
            };
            let message = build_request(&schemeless, None).unwrap_err().to_string();
            assert!(message.contains("like ws://127.0.0.1:8080/ws"), "{message}");
        }
        let bad = TailOptions {
            url: "http://x/ws".into(),
            ..options
        };
        assert!(matches!(
            build_request(&bad, None),
            Err(TailError::BadUrl { .. })
        ));
        let secret = TailOptions {
            url: "http://user:pa55@x/ws?token=s3cret".into(),
            ..bad
        };
        let message = build_request(&secret, None).unwrap_err().to_string();
        assert!(
            !message.contains("s3cret") && !message.contains("pa55"),
            "{message}"
        );
        assert!(message.contains("http://…@x/ws?…"), "{message}");
        let newline_token = TailOptions {
            url: "ws://127.0.0.1:8080/ws".into(),
            token: Some("s3cret\n".into()),
            ..secret
        };
        let message = build_request(&newline_token, None).unwrap_err().to_string();
        assert!(
            message.contains("CALLRELAY_WS_TOKEN") && !message.contains("--url"),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
        assert_eq!(url_without_credentials("ws://h:1/ws"), "ws://h:1/ws");
        assert_eq!(url_without_credentials("not a url?token=t"), "not a url?…");
    }

    /// A 404's message names the path tried, never the query (it may hold a
    /// `?token=`).
    #[test]
    fn a_not_found_names_the_path_only() {
        assert_eq!(url_path("wss://h:1/api/ws?token=s3cret"), "/api/ws");
        assert_eq!(url_path("not a url?token=s3cret"), "?");
    }

    /// An HTTP server that answers every request 404 with `body`, and
    /// reports each connection as it comes.
    async fn not_found_server(
        body: &'static str,
    ) -> (
        String,
        tokio::sync::mpsc::UnboundedReceiver<()>,
        tokio_util::task::AbortOnDropHandle<()>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let (report, seen) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let _ = report.send(());
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (url, seen, tokio_util::task::AbortOnDropHandle::new(server))
    }

    /// Before tail ever connected, a 404 that is not the relay's own (a
    /// proxy such as Traefik answers 404 while the relay behind it is down)
    /// is retried: the relay may be restarting. It ended tail, blaming
    /// `--url` (audit of `callrelay tail`, 2026-12-07).
    #[tokio::test]
    async fn a_404_not_from_the_relay_is_retried_before_the_first_connection() {
        let (url, mut seen, _server) = not_found_server("404 page not found\n").await;
        let options = options_for(url);
        let mut out = Vec::new();
        let tail = follow(&options, SILENCE_LIMIT, &mut out);
        tokio::pin!(tail);
        tokio::time::timeout(WAIT, async {
            for _ in 0..2 {
                tokio::select! {
                    r = &mut tail => panic!("tail ended: {r:?}"),
                    s = seen.recv() => s.expect("the server runs"),
                }
            }
        })
        .await
        .expect("tail tried again");
    }

    /// The relay's own 404 (it names where its fan-out is) before the first
    /// connection is a wrong `--url` path: tail stops and says where.
    #[tokio::test]
    async fn the_relays_own_404_before_the_first_connection_ends_tail() {
        let body = r#"{"error":"no such route: the WebSocket fan-out is at /live","websocket_path":"/live"}"#;
        let (url, _seen, _server) = not_found_server(body).await;
        let options = options_for(url);
        let ended = tokio::time::timeout(WAIT, follow(&options, SILENCE_LIMIT, &mut Vec::new()))
            .await
            .expect("tail ended");
        match ended {
            Err(TailError::NotFound { path, served_at }) => {
                assert_eq!(
                    (path.as_str(), served_at),
                    ("/ws", Own404::FanOutAt("/live".to_owned()))
                );
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    /// A `--url` at a webhook's path ends tail at the relay's first answer.
    #[tokio::test]
    async fn a_url_at_a_webhooks_path_ends_tail() {
        let (url, _seen, _server) = not_found_server(r#"{"error":"unknown vendor"}"#).await;
        let options = options_for(url);
        let ended = tokio::time::timeout(WAIT, follow(&options, SILENCE_LIMIT, &mut Vec::new()))
            .await
            .expect("tail ended");
        match ended {
            Err(TailError::NotFound { served_at, .. }) => {
                assert_eq!(served_at, Own404::WebhookPath);
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[test]
    fn tail_reads_frames_up_to_4_gib() {
        assert_eq!(max_frame() as u64, 4 * 1024 * 1024 * 1024);
    }
}
