//! `callrelay tail`: prints live events from a running relay, one JSON line each.
//!
//! Guarantees: stdout carries only events, one CloudEvent JSON per line, each
//! flushed as it arrives, in seq order, with no character a terminal would
//! act on ([`printable_line`]); after any disconnect (relay restart,
//! slow-consumer close, network, or a connection that went silent: tail pings
//! every [`PING_EVERY`], and nothing back for [`SILENCE_LIMIT`] means its peer
//! is gone without a word) it reconnects with capped exponential backoff
//! and resumes with `since` = the last seq it printed, so nothing the journal
//! still holds is missed or printed twice; it asks for heartbeats, whose seq
//! moves that point on before its first event too, so even a tail whose
//! filters matched nothing yet misses nothing across a restart. The backoff starts over only after
//! a connection proved useful (a frame came, or it stayed up for
//! [`PROVEN_AFTER`]), so a relay that accepts and drops every connection is
//! not hammered. Frames up to [`MAX_FRAME`] are accepted, more than a relay's
//! events reach. Control frames (a gap) and reconnects are reported on
//! stderr. A refused token ends it (exit 1) rather than retrying forever; so
//! does a 404 before it ever connected (a wrong `--url` path; after a
//! connection a 404 is a proxy between relay restarts, and is retried), a
//! frame over [`MAX_FRAME`], which every reconnect would meet again, and a
//! closed stdout (exit 0, e.g. `| head`).
//! The token goes in the `Authorization` header, never in the URL or a log.
//! A `wss://` relay (behind a TLS proxy) is verified against the public roots
//! plus `--ca-file`'s certificates.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http};

use crate::config::url_without_credentials;
use crate::sources::tls::{TlsError, TrustRoots};

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
        /// Where the relay said its fan-out is, when it was a relay.
        served_at: Option<String>,
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
/// No frame at all (an event, a ping, a pong to tail's pings) for this long:
/// the connection is dead, and tail reconnects. Three of its pings gone
/// unanswered; a live relay answers each at once.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// How long the relay may take to answer the WebSocket upgrade.
const UPGRADE_LIMIT: Duration = Duration::from_secs(30);

/// The largest frame (and message) tail reads: 4 GiB. A relay event is one
/// frame: the vendor's payload, at most `server.max_body` (the config refuses
/// more than 1 GiB), once as `data.raw` (a JSON payload as sent; form fields
/// read into an object of strings), plus `subject` and
/// the normalised `data` fields copied out of it, plus the envelope. 4 GiB
/// holds the payload three times over at that ceiling; only a contrived
/// form-encoded body (control bytes escape to six) could pass it, and tail
/// then stops and says so. tungstenite's default, 16 MiB, is below what a
/// relay with a larger `max_body` sends, and a frame over the limit fails again
/// on every reconnect. The limit still keeps an endpoint that is not a relay
/// from growing tail's memory without end.
const MAX_FRAME: u64 = 4 << 30;

/// [`MAX_FRAME`] where `usize` can hold it, else the largest `usize`.
fn max_frame() -> usize {
    usize::try_from(MAX_FRAME).unwrap_or(usize::MAX)
}

/// The longest fan-out path read from a 404's body: a relay's is short, and
/// what answered may be something else.
const MAX_SERVED_AT_CHARS: usize = 256;

/// The fan-out's path as a relay's 404 names it (`websocket_path`), if the
/// body is one.
fn served_at(body: Option<&[u8]>) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(body?).ok()?;
    let path = body.get("websocket_path")?.as_str()?;
    (path.chars().count() <= MAX_SERVED_AT_CHARS).then(|| path.to_owned())
}

/// Why a refusal was made: the relay's `{"error": "…"}`, else the body's
/// text (a proxy's page, a relay older than 2026-12-06), cut short and without
/// control characters or the marks that reorder text on screen
/// ([`acts_on_a_terminal`](crate::logging::one_line::acts_on_a_terminal)):
/// the server may not be a relay, and this goes to stderr as it is.
fn relay_error(body: Option<&[u8]>) -> Option<String> {
    // What is shown is 200 characters: a proxy's page is not read whole.
    let body = body?;
    let body = body.get(..MAX_RELAY_BODY_READ).unwrap_or(body);
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let text = match json.as_ref().and_then(|v| v.get("error")?.as_str()) {
        Some(error) => error.to_owned(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    let shown: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|&c| !c.is_control() && !crate::logging::one_line::acts_on_a_terminal(c))
        .take(MAX_RELAY_ERROR_CHARS)
        .collect();
    (!shown.is_empty()).then_some(shown)
}

/// The most of a refusal's reason tail repeats: the relay's longest (a
/// proxied request's 403, about 210 characters, ending with what to set)
/// whole, with room for a scope's list of accounts.
const MAX_RELAY_ERROR_CHARS: usize = 320;
/// The most of a refusal's body read for it.
const MAX_RELAY_BODY_READ: usize = 4096;

fn served_at_hint(served_at: &Option<String>) -> String {
    match served_at {
        Some(path) => format!("the relay serves WebSocket clients at {path:?}"),
        None => "the relay serves websocket.path, /ws by default".to_owned(),
    }
}

/// How one connection ended.
enum Disconnect {
    /// Worth retrying; the text says why (for stderr).
    Retry(String),
    /// Stop: stdout closed.
    StdoutClosed,
}

/// Connects, prints events, and reconnects from the last printed seq until interrupted.
pub async fn run(options: TailOptions) -> Result<(), TailError> {
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
        let request = build_request(&options, since)?;
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(config),
            false,
            Some(tls.clone()),
        );
        let attempt = tokio::select! {
            r = tokio::time::timeout(UPGRADE_LIMIT, connect) => r.unwrap_or_else(|_| {
                Err(tungstenite::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer to the WebSocket upgrade within {UPGRADE_LIMIT:?}"),
                )))
            }),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
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
                let pinging = tokio::spawn(ping_every(pings, PING_EVERY));
                let disconnect = tokio::select! {
                    d = print_events(socket, &mut since, &mut frames) => d,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                };
                pinging.abort();
                let disconnect = disconnect?;
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
            // Only before the first connection: the URL is then wrong, and no
            // retry will fix it. Once this URL has served us, a 404 is a
            // proxy whose route is gone while the relay restarts (Traefik
            // drops a container's routes while it is down).
            Err(tungstenite::Error::Http(response))
                if response.status() == http::StatusCode::NOT_FOUND && !connected_once =>
            {
                return Err(TailError::NotFound {
                    path: url_path(&options.url),
                    served_at: served_at(response.body().as_deref()),
                });
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
            Err(e) => Disconnect::Retry(
                crate::sources::tls::refused_certificate(
                    &e,
                    crate::sources::tls::Settings::Tail,
                    options.ca_file.as_deref(),
                )
                .unwrap_or_else(|| e.to_string()),
            ),
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
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
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

/// Prints every event frame until the connection ends, or until no frame
/// came for [`SILENCE_LIMIT`]; `since` follows the last printed seq,
/// `frames` counts the text frames received.
async fn print_events<S>(
    mut socket: S,
    since: &mut Option<u64>,
    frames: &mut u64,
) -> Result<Disconnect, TailError>
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let stdout = std::io::stdout();
    loop {
        let Ok(frame) = tokio::time::timeout(SILENCE_LIMIT, socket.next()).await else {
            return Ok(Disconnect::Retry(format!(
                "nothing from the relay for {SILENCE_LIMIT:?}, its answers to tail's pings included: the connection is dead"
            )));
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
                    std::io::stderr(),
                    "callrelay tail: the relay no longer holds some requested events; resuming at seq {}",
                    oldest.map_or_else(|| "?".to_owned(), |s| s.to_string())
                );
            }
            continue;
        }
        let line = printable_line(text.as_str());
        let mut out = stdout.lock();
        let written = out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
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
    fn a_refusals_reason_is_quoted_short_and_without_control_characters() {
        let body =
            serde_json::json!({"error": format!("bad\x1b[8m{}", "x".repeat(500))}).to_string();
        let reason = relay_error(Some(body.as_bytes())).unwrap();
        assert!(reason.starts_with("bad[8m"), "{reason}");
        assert_eq!(reason.chars().count(), MAX_RELAY_ERROR_CHARS);
        // A plain-text refusal (axum's, a proxy's) is quoted as it is.
        assert_eq!(
            relay_error(Some(b"Connection header did not include 'upgrade'\n")).as_deref(),
            Some("Connection header did not include 'upgrade'")
        );
        assert_eq!(relay_error(Some(b" \n")), None);
        assert_eq!(relay_error(None), None);
    }

    /// Whatever answers at `--url` cannot reverse the rest of tail's line on
    /// stderr: the bidi marks and overrides of its reason are dropped as its
    /// controls are (area review of 2026-12-06, tenth round).
    #[test]
    fn a_refusals_reason_loses_the_marks_that_reorder_text() {
        let body = serde_json::json!({"error": "\u{202e}denied\u{2067}\u{200f}\u{61c} here"});
        assert_eq!(
            relay_error(Some(body.to_string().as_bytes())).as_deref(),
            Some("denied here")
        );
    }

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
        let end = print_events(frames, &mut since, &mut count).await;
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
        let end = print_events(frames, &mut since, &mut count).await;
        assert!(matches!(end, Ok(Disconnect::Retry(_))));
        assert_eq!(since, Some(7));
    }

    /// A connection whose peer vanished without a FIN or RST (power cut,
    /// NAT) brings nothing more: tail gives it up after SILENCE_LIMIT and
    /// reconnects. It read for good (WebSocket review, 2026-12-04).
    #[tokio::test(start_paused = true)]
    async fn a_connection_silent_for_the_limit_is_given_up() {
        let started = Instant::now();
        let silent = futures::stream::pending::<Result<Message, tungstenite::Error>>();
        let (mut since, mut count) = (Some(3), 0);
        match print_events(silent, &mut since, &mut count).await {
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

    #[tokio::test]
    async fn a_frame_over_the_limit_ends_tail_instead_of_reconnecting() {
        let too_long = tungstenite::Error::Capacity(CapacityError::MessageTooLong {
            size: 5,
            max_size: 4,
        });
        let frames = futures::stream::iter([Err(too_long)]);
        let (mut since, mut count) = (Some(7), 0);
        match print_events(frames, &mut since, &mut count).await {
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

    /// Only a relay's own 404 is read for its path; anything else (a proxy's
    /// page, a long or odd value) falls back to the default hint.
    #[test]
    fn a_relays_404_names_where_its_fan_out_is() {
        let relay = br#"{"error":"no such route: ...","websocket_path":"/live/events"}"#;
        assert_eq!(served_at(Some(relay)).as_deref(), Some("/live/events"));
        let long = format!(
            r#"{{"websocket_path":"/{}"}}"#,
            "x".repeat(MAX_SERVED_AT_CHARS)
        );
        for other in [
            &b"<html>404</html>"[..],
            br#"{"error":"no such route"}"#,
            br#"{"websocket_path":7}"#,
            long.as_bytes(),
        ] {
            assert_eq!(served_at(Some(other)), None);
        }
        assert_eq!(served_at(None), None);
        let message = TailError::NotFound {
            path: "/wrong".into(),
            served_at: Some("/live/\n".into()),
        }
        .to_string();
        assert!(
            message.ends_with(r#"check --url (the relay serves WebSocket clients at "/live/\n")"#),
            "{message}"
        );
    }

    #[test]
    fn tail_reads_frames_up_to_4_gib() {
        assert_eq!(max_frame() as u64, 4 * 1024 * 1024 * 1024);
    }
}
