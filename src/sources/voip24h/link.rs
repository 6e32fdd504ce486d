//! One socket.io connection to the Voip24h server, whichever Engine.IO version
//! carries it: what the session reads from it ([`Inbound`]) and the two things
//! it does with it (emit an event, close).
//!
//! Guarantees: [`Link::close`] returns only once the connection's socket has
//! been dropped (closed in order when the server still answers, cut otherwise),
//! so the caller may open the next session right after it.

use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::config::Voip24hConfig;
use super::engine_io;
use super::wire::Arg;
use crate::sources::proxy::{ConnectError, Dialer, ProxyRoute};
use crate::sources::tls::{TlsError, TrustRoots};

/// What the session learns from the connection, in arrival order.
#[derive(Debug)]
pub enum Inbound {
    /// The server acknowledged the default namespace: `sign` may be sent now.
    NamespaceConnected,
    /// A socket.io event with its arguments (`say` has none), and when it
    /// arrived: an event's receive time, however long its commit waits. A
    /// socket.io 2 server's `socket.error(msg)` once the namespace is open
    /// comes as the `error` event, `msg` its argument: 2.x cannot emit an
    /// event of that name.
    Event {
        name: String,
        args: Vec<Arg>,
        at: OffsetDateTime,
    },
    /// Traffic that is no event (an Engine.IO pong): the connection is alive.
    Alive,
    /// A frame that could not be read (why, without its text): skipped and
    /// counted, as a `response` that cannot be read is; the session goes on.
    Malformed(String),
    /// The connection ended: why, in words without secrets, and whether by
    /// the server's refusal of the namespace (a socket.io CONNECT_ERROR,
    /// `44`, before the namespace opened, or at any time on socket.io 3+).
    Closed { why: String, refused: bool },
}

/// How long one TCP connect (to the server, or to the proxy) may take,
/// split between a name's addresses: a first address that drops SYNs must
/// leave time for the next within the handshake's own bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to connect, through which proxy, and whom to trust there: the
/// server's base URL, the proxy tunnel if any, and the TLS client (only
/// `https` URLs use it); and what to mask in the server's refusal.
#[derive(Clone)]
pub struct Dial {
    pub base_url: String,
    pub dialer: Dialer,
    pub rustls: Arc<rustls::ClientConfig>,
    pub masked: Masked,
}

impl Dial {
    pub fn new(
        base_url: &str,
        proxy: Option<ProxyRoute>,
        roots: &TrustRoots,
        masked: Masked,
    ) -> Result<Dial, TlsError> {
        Ok(Dial {
            base_url: base_url.to_owned(),
            dialer: Dialer::new(proxy, Some(CONNECT_TIMEOUT)),
            rustls: Arc::new(roots.rustls()?),
            masked,
        })
    }
}

/// Most characters of the server's own text (an `error`'s, a refusal's)
/// kept for a log line and `/status`.
const SERVER_TEXT_MAX: usize = 200;

/// The account's `key` and `secret`, masked in the server's texts: a vendor
/// that echoes what it was sent ("key <KEY> không hợp lệ", or the `sign`
/// object back) would otherwise put them in the log and `/status`. The
/// masking is shared with SPRecord; what is masked, and the cut, are Voip24h's.
pub use crate::sources::masked::Masked;

impl Masked {
    pub fn of(config: &Voip24hConfig) -> Masked {
        Masked::new([config.key.clone(), config.secret.clone()])
    }

    /// `text` from the server, for a log line and `/status`: every key and
    /// secret in it shown as `***` (see [`Masked::mask`]), then cut to
    /// [`SERVER_TEXT_MAX`] characters. Masked first: a cut could leave the
    /// start of one.
    pub fn server_text(&self, text: &str) -> String {
        self.mask(text).chars().take(SERVER_TEXT_MAX).collect()
    }
}

/// The Engine.IO protocol version spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineVersion {
    /// socket.io 2.x servers.
    V3,
    /// socket.io 3.x and 4.x servers.
    V4,
}

impl EngineVersion {
    pub fn detail(self) -> &'static str {
        match self {
            EngineVersion::V3 => "engine.io 3",
            EngineVersion::V4 => "engine.io 4",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid url: {0}")]
    Url(#[from] url::ParseError),
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("bad handshake: {0}")]
    Handshake(String),
    #[error("the connection is closed")]
    Closed,
    #[error("cancelled")]
    Cancelled,
}

/// An open connection.
pub struct Link {
    conn: engine_io::Conn,
    /// What [`Link::put_back`] returned, handed out again first.
    put_back: Option<Inbound>,
}

impl Link {
    /// Opens a connection with `version`; fails after `timeout`, or with
    /// `Cancelled` on `cancel` (the attempt's socket is gone by then).
    pub async fn open(
        version: EngineVersion,
        dial: &Dial,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Link, LinkError> {
        tokio::select! {
            // Dropping the attempt drops its socket.
            _ = cancel.cancelled() => Err(LinkError::Cancelled),
            conn = engine_io::Conn::open(dial, version, timeout) => Ok(Link {
                conn: conn?,
                put_back: None,
            }),
        }
    }

    /// The next thing that happened; `Closed` (repeatedly) once it has ended.
    pub async fn recv(&mut self) -> Inbound {
        if let Some(inbound) = self.put_back.take() {
            return inbound;
        }
        let next = self.conn.recv().await;
        next.unwrap_or_else(|| Inbound::Closed {
            why: "connection ended".into(),
            refused: false,
        })
    }

    /// What has already arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        self.put_back.take().or_else(|| self.conn.try_recv())
    }

    /// How many things have arrived and wait to be taken.
    pub fn queued(&self) -> usize {
        usize::from(self.put_back.is_some()) + self.conn.queued()
    }

    /// Returns `inbound`, taken by [`Link::try_recv`] and not handled, to be
    /// the next thing received (one at most: the last one taken).
    pub fn put_back(&mut self, inbound: Inbound) {
        self.put_back = Some(inbound);
    }

    pub async fn emit(&self, event: &str, arg: Option<Value>) -> Result<(), LinkError> {
        self.conn.emit(event, arg).await
    }

    /// Emits apart from the `&mut` hold on the link (see [`engine_io::Emitter`]).
    pub fn emitter(&self) -> engine_io::Emitter {
        self.conn.emitter()
    }

    /// Closes in order (socket.io disconnect, then the transport) and returns
    /// once the socket is gone.
    pub async fn close(self) {
        self.conn.close().await
    }
}
