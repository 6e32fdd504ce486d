//! How a Voip24h session ends: the reason (a bounded word for the reconnect
//! metric and logs), which server events end it, and which leave the
//! connection open for an in-order close.
//!
//! Guarantees: every reason has one fixed label (the contract's
//! `callrelay_upstream_reconnects_total{reason}` values); an event name is
//! either the session's own, an ending, `response`, or unknown, never two.

use std::time::Duration;

/// Why a session ended: a bounded word for the reconnect metric and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The source is stopping (reload, shutdown).
    Cancelled,
    /// `Bandwidth`: rate limited; stay away for `bandwidth_backoff`.
    Bandwidth,
    /// `error` after `sign` and before `connected`, or a refused namespace
    /// then: the key was refused.
    AuthRefused,
    /// `error` at any other time.
    Error,
    ConnectionRefused,
    ConnectTimeout,
    ConnectEnd,
    DisconnectedServer,
    /// The server's `disconnect` event.
    Disconnect,
    /// The server could not be reached (refused, unreachable, no answer to
    /// the TCP connect): the network or the server's host, not the session.
    Connect,
    /// The connection closed under us.
    Closed,
    /// No frame for too long.
    Silent,
    /// The proxy could not be reached or refused the tunnel.
    Proxy,
    /// TLS: the `tls.ca_file` cannot be read, or the server's certificate
    /// or handshake was refused (as SPRecord counts it).
    Tls,
}

impl EndReason {
    /// The `reason` label of `callrelay_upstream_reconnects_total`.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Cancelled => "cancelled",
            EndReason::Bandwidth => "bandwidth",
            EndReason::AuthRefused => "auth",
            EndReason::Error => "error",
            EndReason::ConnectionRefused => "connection_refused",
            EndReason::ConnectTimeout => "connect_timeout",
            EndReason::ConnectEnd => "connect_end",
            EndReason::DisconnectedServer => "disconnected_server",
            EndReason::Disconnect => "disconnect",
            EndReason::Connect => "connect",
            EndReason::Closed => "closed",
            EndReason::Silent => "silent",
            EndReason::Proxy => "proxy",
            EndReason::Tls => "tls",
        }
    }

    /// Whether the session ended on the server's word, over a connection
    /// still open: it is closed in order (the vendor: "close the session in
    /// order"), and what the server sent before it read our leave is
    /// journaled. `ConnectTimeout` is also the namespace's own deadline,
    /// where nothing is left to read and the in-order close costs a quiet
    /// spell and a round trip. Not for the rest: the connection ended or
    /// cannot be written to (`Closed`), the server sends nothing (`Silent`),
    /// or the session never ran (`Connect`, `Proxy`, `Tls`).
    pub(super) fn leaves_the_link_open(self) -> bool {
        matches!(
            self,
            EndReason::Bandwidth
                | EndReason::AuthRefused
                | EndReason::Error
                | EndReason::ConnectionRefused
                | EndReason::ConnectTimeout
                | EndReason::ConnectEnd
                | EndReason::DisconnectedServer
                | EndReason::Disconnect
        )
    }

    /// The server events that end a session, by their Voip24h name.
    pub(super) fn from_event(name: &str) -> Option<EndReason> {
        Some(match name {
            "Bandwidth" | "bandwidth" => EndReason::Bandwidth,
            "connectionRefused" => EndReason::ConnectionRefused,
            "connectTimeout" => EndReason::ConnectTimeout,
            "connectEnd" => EndReason::ConnectEnd,
            "disconnectedServer" => EndReason::DisconnectedServer,
            "disconnect" => EndReason::Disconnect,
            _ => return None,
        })
    }
}

/// Whether `name` is none of the events the vendor documents for the
/// session itself (keep-alive, sign-in, errors, endings) nor `response`: an
/// event to relay (as the call event it carries, else as `vendor.unknown`).
pub(super) fn is_unknown(name: &str) -> bool {
    !matches!(
        name,
        "response" | "say" | "signing" | "connecting" | "connected" | "connection" | "error"
    ) && EndReason::from_event(name).is_none()
}

/// How a session ended.
#[derive(Debug)]
pub struct SessionEnd {
    pub reason: EndReason,
    /// For logs and `/status`: no secret, bounded length.
    pub detail: String,
    /// Whether the server acknowledged the namespace (the Engine.IO version worked).
    pub namespace_connected: bool,
    /// How long the session was authenticated (`connected`), if it got there.
    pub connected_for: Option<Duration>,
}
