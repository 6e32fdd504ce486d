//! One SSE connection to `GET {url}/sys/events`: open it (TCP, TLS, HTTP/1.1),
//! classify a refusal, hand out its events, and close it.
//!
//! Why hyper and not reqwest(-eventsource): the account may hold at most three
//! connections, *counting one that is still closing*. With reqwest the socket is
//! owned by a pooled background task and closes some time after the response is
//! dropped, unobservably. Here each connection's socket lives in one task that
//! also owns the connection's [`ConnPermit`]; [`SseConnection::close`] waits for
//! that task, so when it returns the socket is closed and the permit is back.
//! The SSE framing (multi-line `data:`, comments, `id:`, `retry:`, BOM, CRLF) is
//! parsed by [`super::sse`].
//!
//! Guarantees: every way out of [`Endpoint::open`] and every [`SseConnection`]
//! — closed, dropped or its task aborted — closes the socket and returns the
//! permit; a stream that sends no byte (not even a keep-alive comment) for
//! `read_timeout` ends with [`BodyError::Silent`], but only once it holds
//! the account's [`SilenceTurn`]: one stream of an account at a time; a
//! refusal's text (its body, its `Location`) shows no secret the stream sent
//! (a header's value, the url's password or query values): each is `***`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Fuse, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tower::Service;

use super::config::SprecordConfig;
use super::limiter::{ConnLimiter, ConnPermit};
use super::sse::{SseItem, SseParser};
use crate::config::Secret;
use crate::config::url_without_credentials;
use crate::logging::with_causes;
use crate::sources::masked::Masked;
use crate::sources::proxy::{ConnectError, Dialer, TunnelWatch, host_and_port};
use crate::sources::tls::{self, TlsError, TrustRoots};

/// How much of a refusal's body is read to classify it and to show in logs,
/// and how much of its `Location` or `Content-Type` is shown.
const ERROR_BODY_LIMIT: usize = 512;
/// How long a closing connection may take to shut down cleanly before its task is aborted.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// `text` cut to [`ERROR_BODY_LIMIT`] bytes (at a character's boundary): a
/// refusal's header values go into every WARN line and `/status` too, and a
/// response head may be hundreds of KiB.
fn within_error_limit(mut text: String) -> String {
    if text.len() > ERROR_BODY_LIMIT {
        let end = (0..=ERROR_BODY_LIMIT)
            .rev()
            .find(|at| text.is_char_boundary(*at))
            .unwrap_or(0);
        text.truncate(end);
    }
    text
}

/// The config could not be turned into an endpoint (validation prevents this).
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Without the url itself, which may hold a password.
    #[error("`url` cannot be used: {0}")]
    Url(String),
    #[error("TLS setup failed: {0}")]
    Tls(#[from] TlsError),
    #[error("header {0:?} has an invalid name or value")]
    Header(String),
}

/// Why a connection attempt did not become a stream.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("credentials refused (HTTP {status}): {body}")]
    Auth { status: StatusCode, body: String },
    #[error("too many connections (HTTP {status}): {body}")]
    TooMany { status: StatusCode, body: String },
    #[error("HTTP {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("the answer is not an event stream (content-type {0:?})")]
    ContentType(String),
    #[error("connect failed: {0}")]
    Connect(String),
    /// The proxy could not be reached or refused the tunnel.
    #[error("{0}")]
    Proxy(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The TLS handshake was refused (an untrusted certificate, an alert).
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

impl OpenError {
    /// A bounded word for `callrelay_upstream_reconnects_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::Auth { .. } => "auth",
            OpenError::TooMany { .. } => "http_429",
            OpenError::Status { status, .. } if status.is_server_error() => "http_5xx",
            OpenError::Status { status, .. } if status.is_client_error() => "http_4xx",
            // Not followed: a move to https:// needs the `url` changed.
            OpenError::Status { status, .. } if status.is_redirection() => "http_3xx",
            // A 204 or another 2xx that is not a stream.
            OpenError::Status { .. } => "http_status",
            OpenError::ContentType(_) => "content_type",
            OpenError::Connect(_) => "connect",
            OpenError::Proxy(_) => "proxy",
            OpenError::Timeout(_) => "timeout",
            OpenError::Handshake(_) => "tls",
        }
    }
}

/// Why an open stream's bytes stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Holds the account's [`SilenceTurn`]: kept until the stream's next open
    /// attempt ends, or while that is refused as "too many", for a bounded
    /// number of `read_timeout`s (see `stream`'s `keeps_the_turn`).
    #[error("no data or keep-alive for {0:?}")]
    Silent(Duration, SilenceTurn),
    #[error("transport: {0}")]
    Transport(#[from] hyper::Error),
}

/// Where and how every stream of one account connects.
pub struct Endpoint {
    /// Absolute: what the connector dials (scheme, host, port).
    uri: Uri,
    /// Origin-form (`/sys/events?…`): the request target. hyper's low-level
    /// client sends the URI it is given as is, and an absolute-form target is
    /// meant for proxies; origin servers and their front ends may refuse it.
    target: Uri,
    host: HeaderValue,
    headers: HeaderMap,
    dialer: Dialer,
    /// Wrapped around a watched [`Dialer`] for each connection.
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// One permit, shared by the account's streams (they share the endpoint).
    silence_turns: Arc<Semaphore>,
    /// What every request sends that is a secret, masked in a refusal's text.
    masked: Masked,
    /// The account's `tls` table: its `ca_file` is named when the server's
    /// certificate is refused.
    tls_settings: tls::TlsSettings,
}

/// The right to close a stream for silence. One stream of an account holds it
/// at a time, from its silent end until its next open attempt ends (or, when
/// that is refused as "too many", until it is open again: see
/// `stream::keeps_the_turn`). Why: a
/// device that sends no keep-alives leaves every stream silent from the same
/// moment (they all carried its last event), so without turns all of them
/// would time out together and the account would hold no stream while they
/// reconnect; an event sent then is lost on a server without history. A
/// silent stream waiting for its turn keeps reading, and its silence ends if
/// a byte comes meanwhile.
pub type SilenceTurn = OwnedSemaphorePermit;

/// `Authorization: Basic …` for a `user:password@` in the url (percent
/// decoded), marked sensitive: a device behind Basic auth was opened
/// without it, refused, and waited `auth_backoff` again and again.
fn basic_credentials(url: &url::Url) -> Option<HeaderValue> {
    use base64::Engine;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut pair = decode(url.username());
    pair.push(b':');
    pair.extend(decode(url.password().unwrap_or_default()));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// What a request sends that a server echoing it (a device, a front end,
/// in its 401, 403 or 404 text) must not put in the log and `/status`: each
/// header's value, and its credentials without their scheme (`Bearer <t>`
/// refused as "token <t> is invalid"); the url's password; its query's
/// values (a `?token=`), each as sent and decoded.
fn secrets_sent(url: &url::Url, headers: &HeaderMap) -> Masked {
    // A value this short is no credential, and masked it garbles every
    // refusal: `?lang=en` made "token" `tok***`, `?v=1` made "Error 1001"
    // `Error ***00***`. The url's password is masked whatever its length:
    // it is one by name.
    const SHORTEST_MASKED: usize = 6;
    let mut sent = Vec::new();
    for value in headers.values() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if let Some((_scheme, credentials)) = value.split_once(' ') {
            sent.push(credentials.trim().to_owned());
        }
        sent.push(value);
    }
    let decoded = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    for piece in url.query().unwrap_or_default().split('&') {
        // A bare `?<token>` is a value too.
        let value = piece.split_once('=').map_or(piece, |(_, value)| value);
        sent.push(decoded(&value.replace('+', " ")));
        sent.push(value.to_owned());
    }
    sent.retain(|value| value.len() >= SHORTEST_MASKED);
    if let Some(password) = url.password() {
        sent.push(decoded(password));
        sent.push(password.to_owned());
    }
    Masked::new(sent.into_iter().map(Secret::new))
}

impl Endpoint {
    pub fn new(config: &SprecordConfig) -> Result<Endpoint, EndpointError> {
        Endpoint::with_roots(config, &TrustRoots::load(&config.tls)?)
    }

    /// As [`Endpoint::new`], with `config.tls`'s roots read already: the
    /// source reads them off the runtime's workers
    /// ([`TrustRoots::load_off_the_workers`]).
    pub fn with_roots(
        config: &SprecordConfig,
        roots: &TrustRoots,
    ) -> Result<Endpoint, EndpointError> {
        let raw = config.url.get_ref();
        let bad = |why: &str| EndpointError::Url(why.to_owned());
        let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        let host = url.host_str().ok_or_else(|| bad("no host"))?;
        // Userinfo is not part of the request line: it is sent as Basic
        // credentials below, as curl and browsers do.
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let path = format!("{}/sys/events", url.path().trim_end_matches('/'));
        let path_and_query = match url.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let uri: Uri = format!("{}://{authority}{path_and_query}", url.scheme())
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        let target: Uri = path_and_query
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        let host = HeaderValue::from_str(&authority).map_err(|_| bad("host"))?;

        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let header = || EndpointError::Header(name.clone());
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| header())?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| header())?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let Some(basic) = basic_credentials(&url)
            && !headers.contains_key(hyper::header::AUTHORIZATION)
        {
            headers.insert(hyper::header::AUTHORIZATION, basic);
        }

        let timings = config.timings();
        let tls = roots.rustls()?;
        let dialer = Dialer::new(config.proxy.clone(), Some(timings.connect_timeout));
        let masked = secrets_sent(&url, &headers);
        Ok(Endpoint {
            uri,
            target,
            host,
            headers,
            dialer,
            tls,
            connect_timeout: timings.connect_timeout,
            read_timeout: timings.read_timeout,
            silence_turns: Arc::new(Semaphore::new(1)),
            masked,
            tls_settings: config.tls.clone(),
        })
    }

    /// The request headers every stream sends.
    #[cfg(test)]
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Opens one stream, waiting first for a connection permit. `last_event_id`
    /// is sent as `Last-Event-ID` so a server that keeps history resumes
    /// there, and is the stream's last id until its first `id:` line (see
    /// [`SseParser::resuming_after`]; the same `Arc`).
    pub async fn open(
        &self,
        limiter: &ConnLimiter,
        last_event_id: Option<&Arc<str>>,
    ) -> Result<SseConnection, OpenError> {
        let permit = limiter.acquire().await;
        let timeout = self.connect_timeout;
        // One bound for the whole open, as README says: the connect, the
        // response head and a refusal's body each had their own, so a hung
        // front end took up to three times `connect_timeout` to be named.
        let deadline = tokio::time::Instant::now() + timeout;
        let (dialer, tunnel) = self.dialer.watched();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(dialer);
        let (mut sender, driver) =
            tokio::time::timeout_at(deadline, self.connect(connector, permit))
                .await
                .map_err(|_| self.timed_out(&tunnel, timeout))??;

        let mut request = Request::get(self.target.clone());
        let mut sent = None;
        if let Some(h) = request.headers_mut() {
            h.insert(header::HOST, self.host.clone());
            h.insert(
                header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            for (name, value) in &self.headers {
                h.insert(name, value.clone());
            }
            // Sent back as the server wrote it (`from_str` takes UTF-8 too).
            // An id that cannot be a header value is never the resume point
            // (`ResumeId::hand_on` does not resume after it, and says so once, naming the
            // account), so none is skipped here.
            if let Some(id) = last_event_id
                && let Ok(value) = HeaderValue::from_str(id)
            {
                h.insert(HeaderName::from_static("last-event-id"), value);
                sent = Some(Arc::clone(id));
            }
        }
        let request = match request.body(Empty::<Bytes>::new()) {
            Ok(r) => r,
            Err(e) => {
                driver.close().await;
                return Err(OpenError::Connect(e.to_string()));
            }
        };
        let response = match tokio::time::timeout_at(deadline, sender.send_request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                driver.close().await;
                return Err(OpenError::Connect(with_causes(&e)));
            }
            Err(_) => {
                driver.close().await;
                return Err(OpenError::Timeout(timeout));
            }
        };
        // One request per connection: the connection ends with this response.
        drop(sender);

        let status = response.status();
        if status != StatusCode::OK {
            let location = response
                .headers()
                .get(header::LOCATION)
                .filter(|_| status.is_redirection())
                .map(|l| {
                    let shown = url_without_credentials(&String::from_utf8_lossy(l.as_bytes()));
                    within_error_limit(self.masked.mask(&shown))
                });
            // What is left of the bound, but a second at least (within
            // the bound itself): a refusal's text is what the log shows.
            let left = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_secs(1).min(timeout));
            // Read past the bound by the widest secret, masked, then cut:
            // a secret straddling the bound is masked whole.
            let read = ERROR_BODY_LIMIT + self.masked.widest();
            let (said, cut) = read_error_body(response.into_body(), left, read).await;
            let mut body = within_error_limit(self.masked.mask_read(&said, cut))
                .trim_end()
                .to_owned();
            if let Some(location) = location {
                body = format!(
                    "redirected to {location}, which is not followed: set `url` to it; {body}"
                );
            }
            driver.close().await;
            return Err(classify_refusal(status, &said, body));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !is_event_stream(&content_type) {
            drop(response);
            driver.close().await;
            // Masked too: a front end may answer its own page with whatever
            // it was sent in a header.
            return Err(OpenError::ContentType(within_error_limit(
                self.masked.mask(&content_type),
            )));
        }
        Ok(SseConnection {
            body: idle_bounded(
                response.into_body(),
                self.read_timeout,
                self.silence_turns.clone(),
            )
            .fuse(),
            parser: sent.map_or_else(SseParser::new, SseParser::resuming_after),
            driver,
        })
    }

    /// Why a connection that took longer than `timeout` failed: the proxy
    /// (which names itself), unless the tunnel was open by then.
    fn timed_out(&self, tunnel: &TunnelWatch, timeout: Duration) -> OpenError {
        let (host, port) = host_and_port(&self.uri);
        match self.dialer.blame_proxy(tunnel, host, port, timeout) {
            Some(proxy) => OpenError::Proxy(proxy.to_string()),
            None => OpenError::Timeout(timeout),
        }
    }

    /// A failed TLS handshake, in the account's terms: its `tls.ca_file`,
    /// its `url`, and its proxy route if any.
    fn handshake_failure(&self, error: &(dyn std::error::Error + 'static)) -> String {
        tls::failure_said_by_source(error, &self.tls_settings, self.dialer.route(), || {
            with_causes(error)
        })
    }

    /// TCP (+ TLS) and the HTTP/1.1 handshake; the socket moves into a task
    /// together with `permit`.
    async fn connect(
        &self,
        mut connector: HttpsConnector<Dialer>,
        permit: ConnPermit,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
            Driver,
        ),
        OpenError,
    > {
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| OpenError::Connect(with_causes(&*e)))?;
        let io = connector.call(self.uri.clone()).await.map_err(|e| {
            match e.downcast_ref::<ConnectError>() {
                Some(proxy) if proxy.is_proxy() => OpenError::Proxy(e.to_string()),
                _ if tls::is_tls_failure(&*e) => OpenError::Handshake(self.handshake_failure(&*e)),
                _ => OpenError::Connect(with_causes(&*e)),
            }
        })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| OpenError::Connect(with_causes(&e)))?;
        let task = tokio::spawn(async move {
            // The permit lives exactly as long as the socket does.
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "sprecord connection ended with an error");
            }
        });
        Ok((sender, Driver { task: Some(task) }))
    }
}

/// The task that owns one connection's socket and permit.
struct Driver {
    task: Option<JoinHandle<()>>,
}

impl Driver {
    /// Returns once the socket is closed: a clean shutdown if it comes within
    /// [`CLOSE_GRACE`], else the task is aborted (which drops the socket).
    async fn close(mut self) {
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(CLOSE_GRACE, &mut task).await.is_err()
        {
            task.abort();
            // Resolves once the aborted future, socket and permit included, is dropped.
            let _ = task.await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Not closed through `close` (e.g. the source task itself was aborted):
        // abort, so the socket and the permit are still released promptly.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// An open stream.
pub struct SseConnection {
    body: Fuse<BoxStream<'static, Result<Bytes, BodyError>>>,
    parser: SseParser,
    driver: Driver,
}

impl SseConnection {
    /// The next complete event, or an event skipped as too large; `None`
    /// when the server ended the stream. Cancel-safe: a chunk read is parsed
    /// before the next await, so dropping this future loses no byte.
    pub async fn next_event(&mut self) -> Option<Result<SseItem, BodyError>> {
        loop {
            if let Some(item) = self.parser.next_event() {
                return Some(Ok(item));
            }
            match self.body.next().await? {
                Err(e) => return Some(Err(e)),
                Ok(chunk) => self.parser.push(&chunk),
            }
        }
    }

    /// The items already parsed and not yet taken, without reading more:
    /// what a stop that gave up on an event leaves behind it.
    pub fn take_parsed(&mut self) -> impl Iterator<Item = SseItem> + '_ {
        std::iter::from_fn(|| self.parser.next_event())
    }

    /// Closes the stream; returns once its socket is closed and its permit returned.
    pub async fn close(self) {
        let SseConnection { body, driver, .. } = self;
        // Dropping the body first tells hyper to shut the connection down.
        drop(body);
        driver.close().await;
    }
}

/// The body's data frames, ending with [`BodyError::Silent`] when no frame
/// (a keep-alive comment counts) arrives for `read_timeout` and the stream
/// then gets its account's turn (see [`SilenceTurn`]) before one does.
fn idle_bounded(
    body: Incoming,
    read_timeout: Duration,
    turns: Arc<Semaphore>,
) -> BoxStream<'static, Result<Bytes, BodyError>> {
    futures::stream::unfold(Some((body, turns)), move |state| async move {
        let (mut body, turns) = state?;
        loop {
            let frame = match tokio::time::timeout(read_timeout, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => tokio::select! {
                    turn = turns.clone().acquire_owned() => match turn {
                        Ok(turn) => {
                            return Some((Err(BodyError::Silent(read_timeout, turn)), None));
                        }
                        // Never closed; were it, waiting on is the safe side.
                        Err(_) => body.frame().await,
                    },
                    frame = body.frame() => frame,
                },
            };
            match frame {
                None => return None,
                Some(Err(e)) => return Some((Err(BodyError::Transport(e)), None)),
                Some(Ok(frame)) => {
                    // Trailers carry no events; skip them.
                    if let Ok(data) = frame.into_data() {
                        return Some((Ok(data), Some((body, turns))));
                    }
                }
            }
        }
    })
    .boxed()
}

fn is_event_stream(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// A refusal's first `limit` bytes, as text for classification and, once
/// its secrets are masked, for logs; and whether it was cut (by the limit,
/// the time, or a broken body), so its end may be a secret's start.
async fn read_error_body(mut body: Incoming, within: Duration, limit: usize) -> (String, bool) {
    let mut bytes = Vec::new();
    let mut ended = false;
    let _ = tokio::time::timeout(within, async {
        while bytes.len() < limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data);
                    }
                }
                None => {
                    ended = true;
                    break;
                }
                Some(Err(_)) => break,
            }
        }
    })
    .await;
    let cut = !ended || bytes.len() > limit;
    bytes.truncate(limit);
    let text = String::from_utf8_lossy(&bytes);
    // Only the start is trimmed when cut: the end may be a secret's start.
    let text = if cut { text.trim_start() } else { text.trim() };
    (text.to_owned(), cut)
}

/// 429 or any "too many connections" text in what the server `said` →
/// busy; else 401/403 → auth; else a status error, each with `body`, what
/// is shown of it. The text first: a device whose three places are taken (a
/// browser holding one) may say so with a 403, which is no refused
/// credentials. Judged on the text as said: masking a query value
/// (`?v=connections`) breaks up "too many connections".
fn classify_refusal(status: StatusCode, said: &str, body: String) -> OpenError {
    if status == StatusCode::TOO_MANY_REQUESTS
        || said.to_ascii_lowercase().contains("too many connections")
    {
        OpenError::TooMany { status, body }
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        OpenError::Auth { status, body }
    } else {
        OpenError::Status { status, body }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    use super::*;
    use crate::sources::sprecord::sse::SseEvent;
    use crate::sources::tests_support::{listen, read_head};

    #[test]
    fn every_reason_a_stream_cannot_open_for_is_exported_from_the_start() {
        let status = |s: u16| StatusCode::from_u16(s).unwrap();
        let body = String::new;
        let every = [
            OpenError::Auth {
                status: status(401),
                body: body(),
            },
            OpenError::TooMany {
                status: status(429),
                body: body(),
            },
            OpenError::Status {
                status: status(500),
                body: body(),
            },
            OpenError::Status {
                status: status(404),
                body: body(),
            },
            OpenError::Status {
                status: status(301),
                body: body(),
            },
            OpenError::Status {
                status: status(204),
                body: body(),
            },
            OpenError::ContentType(body()),
            OpenError::Connect(body()),
            OpenError::Proxy(body()),
            OpenError::Timeout(Duration::from_secs(1)),
            OpenError::Handshake(body()),
        ];
        // Stops compiling when a kind is added: add it to `every` too.
        let _listed = |e: &OpenError| match e {
            OpenError::Auth { .. }
            | OpenError::TooMany { .. }
            | OpenError::Status { .. }
            | OpenError::ContentType(_)
            | OpenError::Connect(_)
            | OpenError::Proxy(_)
            | OpenError::Timeout(_)
            | OpenError::Handshake(_) => {}
        };
        let said: Vec<&str> = every.iter().map(OpenError::reason).collect();
        for reason in &said {
            assert!(
                super::super::RECONNECT_REASONS.contains(reason),
                "{reason} is not in RECONNECT_REASONS"
            );
        }
        // And the other way: each listed reason is said by something
        // (a stream's end, the CA file at start, a panic, or a refusal).
        for listed in super::super::RECONNECT_REASONS {
            assert!(
                said.contains(listed) || ["disconnect", "tls", "panic"].contains(listed),
                "{listed} is listed but no refusal says it"
            );
        }
    }

    #[test]
    fn refusals_are_classified_by_status_and_text() {
        let c = |s: u16, b: &str| {
            classify_refusal(StatusCode::from_u16(s).unwrap(), b, b.to_owned()).reason()
        };
        assert_eq!(c(401, ""), "auth");
        assert_eq!(c(403, "forbidden"), "auth");
        assert_eq!(c(429, ""), "http_429");
        assert_eq!(c(503, "Too Many Connections for device"), "http_429");
        // A device whose places are taken, saying so with a 403 or 401, was
        // taken as refusing the credentials (review of 2026-12-06, seventh
        // round).
        assert_eq!(c(403, "Too many connections"), "http_429");
        assert_eq!(c(401, "too many connections"), "http_429");
        assert_eq!(c(500, "boom"), "http_5xx");
        assert_eq!(c(404, "no such path"), "http_4xx");
        // A redirect or a 204 was counted as a 4xx.
        assert_eq!(c(301, ""), "http_3xx");
        assert_eq!(c(308, ""), "http_3xx");
        assert_eq!(c(204, ""), "http_status");
    }

    #[test]
    fn the_stream_url_keeps_base_path_and_query_and_drops_userinfo() {
        let text =
            "[[sprecord]]\naccount = \"a\"\nurl = \"https://u:p@api.example:8443/v2/?device=7\"\n";
        let config = crate::config::Config::from_text("relay.toml", text, &|_| None).unwrap();
        let endpoint = Endpoint::new(config.sprecord[0].get_ref()).unwrap();
        assert_eq!(
            endpoint.uri.to_string(),
            "https://api.example:8443/v2/sys/events?device=7"
        );
        assert_eq!(endpoint.host, "api.example:8443");
        assert_eq!(endpoint.target.to_string(), "/v2/sys/events?device=7");
    }

    #[test]
    fn a_refused_certificate_through_a_proxy_route_may_be_the_proxys() {
        let refused = tls::unknown_issuer_refused();
        let said_by = |proxy: &str| {
            let text =
                format!("[[sprecord]]\naccount = \"a\"\nurl = \"https://rec.example\"\n{proxy}");
            let config = crate::config::Config::from_text("relay.toml", &text, &|_| None).unwrap();
            let endpoint = Endpoint::new(config.sprecord[0].get_ref()).unwrap();
            endpoint.handshake_failure(&refused)
        };
        let said = said_by("[proxy]\nhttps = \"http://proxy.example:3128\"\n");
        tls::assert_said_for_proxy_route(&said, &said_by(""));
    }

    #[test]
    fn a_long_tls_refusal_is_said_cut() {
        let text = "[[sprecord]]\naccount = \"a\"\nurl = \"https://rec.example\"\n";
        let config = crate::config::Config::from_text("relay.toml", text, &|_| None).unwrap();
        let endpoint = Endpoint::new(config.sprecord[0].get_ref()).unwrap();
        // hyper-rustls wraps tokio-rustls' error in its own.
        let refused = std::io::Error::other(tls::long_purpose_refused());
        tls::assert_long_reason_cut(&endpoint.handshake_failure(&refused));
    }

    /// A peer's listener and the url that reaches it.
    async fn loopback() -> (tokio::net::TcpListener, String) {
        let (listener, port) = listen().await;
        (listener, format!("http://127.0.0.1:{port}"))
    }

    async fn permit_comes_back(limiter: &ConnLimiter) {
        let permit = tokio::time::timeout(Duration::from_secs(5), limiter.acquire()).await;
        assert!(permit.is_ok(), "the permit never came back");
    }

    /// A loopback server for one request: it answers with `response` and
    /// hands back the request head and the socket, still open, so that only
    /// the relay's side can close the connection.
    async fn answer_once(response: Vec<u8>) -> (String, JoinHandle<(String, TcpStream)>) {
        let (listener, url) = loopback().await;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let head = read_head(&mut socket).await;
            socket.write_all(&response).await.unwrap();
            (String::from_utf8_lossy(&head).to_ascii_lowercase(), socket)
        });
        (url, server)
    }

    fn endpoint(url: &str) -> Endpoint {
        endpoint_waiting(url, "500ms")
    }

    /// `connect_timeout` also bounds the wait for a refusal's body.
    fn endpoint_waiting(url: &str, connect_timeout: &str) -> Endpoint {
        let text = format!(
            "[[sprecord]]\naccount = \"a\"\nurl = \"{url}\"\nconnect_timeout = \"{connect_timeout}\"\n"
        );
        let config = crate::config::Config::from_text("relay.toml", &text, &|_| None).unwrap();
        Endpoint::new(config.sprecord[0].get_ref()).unwrap()
    }

    /// The stream's next item, which must be an event.
    async fn next_event(stream: &mut SseConnection) -> SseEvent {
        match stream.next_event().await {
            Some(Ok(SseItem::Event(event))) => event,
            other => panic!("not an event: {other:?}"),
        }
    }

    /// A whole answer: `headers` are lines ending in CRLF; the length is added.
    fn answer(status: &str, headers: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// A `user:password@` in the url is sent as Basic credentials, as curl
    /// sends it: it was dropped, so a device behind Basic auth refused every
    /// stream and the streams waited `auth_backoff` again and again (vendor
    /// review, round 47). A configured `Authorization` header wins.
    #[tokio::test]
    async fn userinfo_in_the_url_is_sent_as_basic_credentials() {
        use base64::Engine;
        let (url, server) = answer_once(answer("401 Unauthorized", "", "")).await;
        let with_userinfo = url.replace("http://", "http://us%40er:p%3Ass@");
        let limiter = ConnLimiter::new(1);
        let _ = endpoint(&with_userinfo).open(&limiter, None).await;
        let (head, _socket) = server.await.unwrap();
        let want = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert!(
            head.contains(&format!(
                "authorization: basic {}\r\n",
                want.to_ascii_lowercase()
            )),
            "{head}"
        );
        // The header the config names is sent instead.
        let text = format!(
            "[[sprecord]]\naccount = \"a\"\nurl = \"{with_userinfo}\"\nheaders = {{ Authorization = \"Bearer t\" }}\n"
        );
        let config = crate::config::Config::from_text("relay.toml", &text, &|_| None).unwrap();
        let endpoint = Endpoint::new(config.sprecord[0].get_ref()).unwrap();
        assert_eq!(
            endpoint.headers().get_all("authorization").iter().count(),
            1
        );
        assert_eq!(endpoint.headers()["authorization"], "Bearer t");
        // Without userinfo, nothing is added.
        assert!(endpoint_waiting(&url, "1s").headers().is_empty());
    }

    #[tokio::test]
    async fn a_refusal_is_read_up_to_its_bound_and_its_permit_is_back_on_return() {
        let body = format!("Too many connections {}", "x".repeat(2000));
        let (url, server) = answer_once(answer("503 Service Unavailable", "", &body)).await;
        let limiter = ConnLimiter::new(1);
        let refused = endpoint(&url).open(&limiter, None).await;
        assert_eq!(
            limiter.available(),
            1,
            "the permit is back when open returns"
        );
        match refused {
            Err(OpenError::TooMany { status, body }) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(body.len(), ERROR_BODY_LIMIT);
                assert!(body.starts_with("Too many connections x"), "{body}");
            }
            other => panic!("not a busy refusal: {:?}", other.map(|_| ())),
        }
        drop(server);
    }

    /// A redirect (a vendor moving to https://) is not followed: it says
    /// where it points, without credentials, and is its own reason.
    #[tokio::test]
    async fn a_redirect_says_where_it_points_and_is_not_a_4xx() {
        let moved = answer(
            "301 Moved Permanently",
            "Location: https://user:pw@rec.example/sys/events?k=1\r\n",
            "",
        );
        let (url, server) = answer_once(moved).await;
        let refused = endpoint(&url).open(&ConnLimiter::new(1), None).await;
        let Err(error) = refused else {
            panic!("a redirect opened a stream");
        };
        assert_eq!(error.reason(), "http_3xx");
        let said = error.to_string();
        assert!(
            said.contains("https://…@rec.example/sys/events?…"),
            "{said}"
        );
        assert!(!said.contains("pw"), "{said}");
        drop(server);
    }

    /// A redirect's `Location` and a wrong `Content-Type` go into every WARN
    /// line and `/status`: cut as a refusal's body is, whatever their size.
    #[tokio::test]
    async fn header_values_in_a_refusal_are_cut_as_its_body_is() {
        let long_path = format!("https://rec.example/{}", "p".repeat(8_000));
        let moved = answer("302 Found", &format!("Location: {long_path}\r\n"), "");
        let (url, server) = answer_once(moved).await;
        match endpoint(&url).open(&ConnLimiter::new(1), None).await {
            Err(OpenError::Status { body, .. }) => {
                assert!(
                    body.starts_with("redirected to https://rec.example/ppp"),
                    "{body}"
                );
                assert!(body.len() < 2 * ERROR_BODY_LIMIT, "{} bytes", body.len());
            }
            other => panic!("not a status refusal: {:?}", other.map(|_| ())),
        }
        drop(server);

        let wrong_type = format!("content-type: text/html; x={}\r\n", "y".repeat(8_000));
        let (url, server) = answer_once(answer("200 OK", &wrong_type, "{}")).await;
        match endpoint(&url).open(&ConnLimiter::new(1), None).await {
            Err(OpenError::ContentType(content_type)) => {
                assert!(
                    content_type.starts_with("text/html; x=yyy"),
                    "{content_type}"
                );
                assert_eq!(content_type.len(), ERROR_BODY_LIMIT);
            }
            other => panic!("not a content-type refusal: {:?}", other.map(|_| ())),
        }
        drop(server);
    }

    /// An endpoint for `url` that sends `headers` (a TOML inline table's inside).
    fn endpoint_sending(url: &str, headers: &str) -> Endpoint {
        let text = format!(
            "[[sprecord]]\naccount = \"a\"\nurl = \"{url}\"\nconnect_timeout = \"500ms\"\nheaders = {{ {headers} }}\n"
        );
        let config = crate::config::Config::from_text("relay.toml", &text, &|_| None).unwrap();
        Endpoint::new(config.sprecord[0].get_ref()).unwrap()
    }

    /// A device or front end echoing the request, or the token it refuses,
    /// in its 401 text put the secret in the ERROR line and `/status`: the
    /// body was documented as "never a secret of ours", and nothing made
    /// it so (guarantees review of 2026-12-06, ninth round).
    #[tokio::test]
    async fn a_refusal_echoing_what_the_stream_sent_shows_it_masked() {
        let echo = "invalid token b-secret-1 (Authorization: Bearer b-secret-1; \
            X-Api-Key: k-secret-2; {\"token\":\"q-tok\\/en\"}, raw q-tok%2Fen; password pa55word)";
        let (url, server) = answer_once(answer("401 Unauthorized", "", echo)).await;
        let url = format!(
            "{}/?token=q-tok%2Fen",
            url.replace("http://", "http://u:pa55word@")
        );
        let endpoint = endpoint_sending(
            &url,
            "Authorization = \"Bearer b-secret-1\", X-Api-Key = \"k-secret-2\"",
        );
        let Err(error) = endpoint.open(&ConnLimiter::new(1), None).await else {
            panic!("a refusal opened a stream");
        };
        let OpenError::Auth { status, body } = &error else {
            panic!("not an auth refusal: {error}");
        };
        assert_eq!(
            body,
            "invalid token *** (Authorization: ***; X-Api-Key: ***; {\"token\":\"***\"}, \
             raw ***; password ***)"
        );
        // The ERROR line shows the error; `/status` shows this (stream.rs).
        for shown in [error.to_string(), format!("HTTP {status}: {body}")] {
            for secret in ["b-secret-1", "k-secret-2", "q-tok", "pa55word"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
        drop(server);
    }

    /// A query value the refusal's words hold is masked in them; the
    /// refusal is still judged on what the server said.
    #[tokio::test]
    async fn a_refusal_is_classified_on_its_text_before_masking() {
        let busy = answer("403 Forbidden", "", "Too many connections");
        let (url, server) = answer_once(busy).await;
        let endpoint = endpoint(&format!("{url}/?v=connections"));
        match endpoint.open(&ConnLimiter::new(1), None).await {
            Err(OpenError::TooMany { body, .. }) => assert_eq!(body, "Too many ***"),
            other => panic!("not a busy refusal: {:?}", other.map(|_| ())),
        }
        drop(server);
    }

    /// A value under six bytes is no credential: masked, `?lang=en` made
    /// "token" `tok***` (review of the masking, 2026-12-06). The url's
    /// password is masked whatever its length.
    #[tokio::test]
    async fn short_query_values_are_not_masked_but_a_short_password_is() {
        let refused = answer("401 Unauthorized", "", "token en refused for pw");
        let (url, server) = answer_once(refused).await;
        let url = format!("{}/?lang=en", url.replace("http://", "http://u:pw@"));
        match endpoint(&url).open(&ConnLimiter::new(1), None).await {
            Err(OpenError::Auth { body, .. }) => assert_eq!(body, "token en refused for ***"),
            other => panic!("not an auth refusal: {:?}", other.map(|_| ())),
        }
        drop(server);
    }

    /// Masking shortens the text, so what follows a masked copy moves into
    /// what the cut keeps: a second copy whose rest was not read showed its
    /// start (review of the masking, 2026-12-06).
    #[tokio::test]
    async fn a_second_copy_cut_by_the_read_shows_no_part_of_it() {
        let endpoint = endpoint_sending(
            "http://127.0.0.1:9",
            "Authorization = \"Bearer b-secret-1\"",
        );
        let read = ERROR_BODY_LIMIT + endpoint.masked.widest();
        let copies = "b-secret-1 ".repeat(5);
        let echo = format!(
            "{copies}{}b-secret-1 and more",
            "x".repeat(read - 4 - copies.len())
        );
        let (url, server) = answer_once(answer("403 Forbidden", "", &echo)).await;
        let endpoint = endpoint_sending(&url, "Authorization = \"Bearer b-secret-1\"");
        match endpoint.open(&ConnLimiter::new(1), None).await {
            Err(OpenError::Auth { body, .. }) => {
                assert!(body.starts_with("*** *** *** *** *** x"), "{body}");
                assert!(body.ends_with('x') && !body.contains("b-s"), "{body}");
            }
            other => panic!("not an auth refusal: {:?}", other.map(|_| ())),
        }
        drop(server);
    }

    /// The body is cut at [`ERROR_BODY_LIMIT`] bytes: masked after that cut,
    /// a token straddling it showed its start.
    #[tokio::test]
    async fn a_secret_straddling_the_cut_shows_no_part_of_it() {
        // The token's first 7 bytes before the cut, its last 3 after it.
        let echo = format!(
            "{}b-secret-1,is-not-valid",
            "x".repeat(ERROR_BODY_LIMIT - 7)
        );
        let (url, server) = answer_once(answer("403 Forbidden", "", &echo)).await;
        let endpoint = endpoint_sending(&url, "Authorization = \"Bearer b-secret-1\"");
        match endpoint.open(&ConnLimiter::new(1), None).await {
            Err(OpenError::Auth { body, .. }) => {
                assert_eq!(body.len(), ERROR_BODY_LIMIT);
                assert!(body.ends_with("x***,is-"), "{body}");
                assert!(!body.contains("b-s"), "{body}");
            }
            other => panic!("not an auth refusal: {:?}", other.map(|_| ())),
        }
        drop(server);
    }

    /// A redirect's `Location` is shown without userinfo and query, but a
    /// secret may be in its path; the url's Basic credentials, echoed back,
    /// are masked as a configured header is.
    #[tokio::test]
    async fn a_redirect_and_basic_credentials_echoed_are_masked() {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("user:pa55word");
        let moved = answer(
            "302 Found",
            "Location: https://rec.example/pa55word/sys/events\r\n",
            &format!("you sent Authorization: Basic {basic}"),
        );
        let (url, server) = answer_once(moved).await;
        let url = url.replace("http://", "http://user:pa55word@");
        let Err(error) = endpoint(&url).open(&ConnLimiter::new(1), None).await else {
            panic!("a redirect opened a stream");
        };
        let said = error.to_string();
        assert!(
            said.contains("redirected to https://rec.example/***/sys/events, "),
            "{said}"
        );
        assert!(said.ends_with("you sent Authorization: ***"), "{said}");
        assert!(
            !said.contains("pa55word") && !said.contains(&basic),
            "{said}"
        );
        drop(server);
    }

    #[test]
    fn a_cut_keeps_whole_characters() {
        let cut = within_error_limit("é".repeat(ERROR_BODY_LIMIT));
        assert_eq!(cut.len(), ERROR_BODY_LIMIT);
        let odd = within_error_limit(format!("x{}", "é".repeat(ERROR_BODY_LIMIT)));
        assert_eq!(odd.len(), ERROR_BODY_LIMIT - 1, "not inside an é");
        assert_eq!(within_error_limit("short".into()), "short");
    }

    /// `connect_timeout` bounds the whole open (README: "TCP + TLS connect
    /// and response head"): a head that comes late, then a body that never
    /// does, took the head's wait plus a whole second bound.
    #[tokio::test]
    async fn a_late_head_and_a_stalled_body_are_one_bound() {
        use crate::sources::tests_support::{listen, read_head};
        let (listener, port) = listen().await;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_head(&mut socket).await;
            tokio::time::sleep(Duration::from_millis(2_400)).await;
            let head = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 100\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            std::future::pending::<()>().await;
        });
        let endpoint = endpoint_waiting(&format!("http://127.0.0.1:{port}"), "3s");
        let started = tokio::time::Instant::now();
        let refused = endpoint.open(&ConnLimiter::new(1), None).await;
        let took = started.elapsed();
        assert!(refused.is_err());
        // The bound, and a second at most for the refusal's text (4 s), with
        // room for busy cores: 5.4 s before.
        assert!(took < Duration::from_millis(5_200), "took {took:?}");
        server.abort();
    }

    #[tokio::test]
    async fn a_refusal_is_not_waited_on_once_its_bound_has_come() {
        // The bound's worth of a longer body, then nothing: with the open's
        // timeout at 10 minutes, only stopping at the bound answers in time.
        let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4096\r\n\r\n";
        let response = format!("{head}{}", "y".repeat(ERROR_BODY_LIMIT));
        let (url, server) = answer_once(response.into_bytes()).await;
        let endpoint = endpoint_waiting(&url, "10m");
        let limiter = ConnLimiter::new(1);
        let refused = tokio::time::timeout(Duration::from_secs(30), endpoint.open(&limiter, None));
        match refused.await.expect("waited for more than the bound") {
            Err(OpenError::Status { body, .. }) => assert_eq!(body.len(), ERROR_BODY_LIMIT),
            other => panic!("not a status refusal: {:?}", other.map(|_| ())),
        }
        drop(server);
    }

    #[tokio::test]
    async fn a_refusal_whose_body_stalls_is_reported_with_what_came() {
        // 100 bytes announced, 9 sent, then nothing: the open waits its timeout, no longer.
        let response =
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 100\r\n\r\n  it broke".to_vec();
        let (url, server) = answer_once(response).await;
        let limiter = ConnLimiter::new(1);
        match endpoint(&url).open(&limiter, None).await {
            Err(OpenError::Status { status, body }) => {
                assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
                assert_eq!(body, "it broke");
            }
            other => panic!("not a status refusal: {:?}", other.map(|_| ())),
        }
        assert_eq!(limiter.available(), 1);
        drop(server);
    }

    #[tokio::test]
    async fn an_answer_that_is_not_an_event_stream_is_refused_and_its_permit_is_back() {
        let response = answer("200 OK", "content-type: application/json\r\n", "{}");
        let (url, server) = answer_once(response).await;
        let limiter = ConnLimiter::new(1);
        match endpoint(&url).open(&limiter, None).await {
            Err(OpenError::ContentType(content_type)) => {
                assert_eq!(content_type, "application/json")
            }
            other => panic!("not a content-type refusal: {:?}", other.map(|_| ())),
        }
        assert_eq!(limiter.available(), 1);
        drop(server);
    }

    #[tokio::test]
    async fn a_stream_hands_out_events_and_ids_and_close_returns_its_permit() {
        let response = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
            data: z\n\nid: 7\ndata: a\n\nid: 8\ndata: b"
            .to_vec();
        let (url, server) = answer_once(response).await;
        let limiter = ConnLimiter::new(1);
        let sent: Arc<str> = Arc::from("6");
        let mut stream = endpoint(&url).open(&limiter, Some(&sent)).await.unwrap();
        // Resent without an `id:` line: it shares the id resumed after.
        let event = next_event(&mut stream).await;
        assert_eq!((&*event.id, event.data.as_str()), ("6", "z"));
        let event = next_event(&mut stream).await;
        assert_eq!((&*event.id, event.data.as_str()), ("7", "a"));
        let (head, _socket) = server.await.unwrap();
        assert!(head.starts_with("get /sys/events http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nlast-event-id: 6\r\n"), "{head}");
        assert!(head.contains("\r\naccept: text/event-stream\r\n"), "{head}");
        assert_eq!(limiter.available(), 0, "an open stream holds its permit");
        stream.close().await;
        assert_eq!(
            limiter.available(),
            1,
            "the permit is back when close returns"
        );
    }

    #[tokio::test]
    async fn a_stream_the_server_ends_yields_its_events_then_none() {
        let response = answer(
            "200 OK",
            "content-type: text/event-stream\r\n",
            "data: a\n\n",
        );
        let (url, server) = answer_once(response).await;
        let limiter = ConnLimiter::new(1);
        let mut stream = endpoint(&url).open(&limiter, None).await.unwrap();
        assert_eq!(next_event(&mut stream).await.data, "a");
        assert!(stream.next_event().await.is_none());
        stream.close().await;
        drop(server);
    }

    #[tokio::test]
    async fn a_dropped_stream_returns_its_permit() {
        let response = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n: hi\n".to_vec();
        let (url, server) = answer_once(response).await;
        let limiter = ConnLimiter::new(1);
        let stream = endpoint(&url).open(&limiter, None).await.unwrap();
        let _socket = server.await.unwrap();
        drop(stream);
        permit_comes_back(&limiter).await;
    }

    #[tokio::test]
    async fn an_open_aborted_while_waiting_for_the_answer_returns_its_permit() {
        let (listener, url) = loopback().await;
        let limiter = ConnLimiter::new(1);
        let opening = tokio::spawn({
            let limiter = limiter.clone();
            async move { endpoint(&url).open(&limiter, None).await.map(|_| ()) }
        });
        // Accepted and never answered: the open is still waiting when it is aborted.
        let (_socket, _) = listener.accept().await.unwrap();
        opening.abort();
        assert!(opening.await.unwrap_err().is_cancelled());
        permit_comes_back(&limiter).await;
    }

    /// A server that resets the connection mid-stream: hyper's error says
    /// only "error reading a body from connection", and `last_error` said
    /// no more (operator-messages review, 2026-12-05); the reset is in its
    /// source.
    #[tokio::test]
    async fn a_stream_reset_by_the_server_names_the_reset() {
        let response =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n9\r\ndata: a\n\n\r\n"
                .to_vec();
        let (url, server) = answer_once(response).await;
        let limiter = ConnLimiter::new(1);
        let mut stream = endpoint(&url).open(&limiter, None).await.unwrap();
        assert_eq!(next_event(&mut stream).await.data, "a");
        let (_, socket) = server.await.unwrap();
        socket.set_zero_linger().unwrap();
        drop(socket);
        match stream.next_event().await {
            Some(Err(BodyError::Transport(e))) => {
                let shown = with_causes(&e);
                assert!(!e.to_string().contains("reset"), "{e}");
                assert!(shown.contains("reset by peer"), "{shown}");
            }
            other => panic!("not a transport error: {other:?}"),
        }
        stream.close().await;
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_failure_not_a_proxy_one() {
        let (listener, url) = loopback().await;
        drop(listener);
        let limiter = ConnLimiter::new(1);
        match endpoint(&url).open(&limiter, None).await {
            Err(e) => assert_eq!(e.reason(), "connect", "{e}"),
            Ok(_) => panic!("connected to a closed port"),
        }
        assert_eq!(limiter.available(), 1);
    }

    #[test]
    fn only_event_stream_content_types_are_accepted() {
        assert!(is_event_stream("text/event-stream"));
        assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
        assert!(!is_event_stream("application/json"));
        assert!(!is_event_stream(""));
    }
}
