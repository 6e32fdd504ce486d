//! How a WebSocket session ends: the `callrelay_ws_disconnects_total{reason}`
//! label, the close frame the client gets, and how a failed read is told
//! apart from a client that broke the protocol.
//!
//! Guarantees: every way to end has its label in [`End::REASONS`] (exported
//! at 0 from the start); a client that closed or vanished gets no frame of ours.

use axum::extract::ws::{CloseFrame, Utf8Bytes};

/// How a session ended: the `ws_disconnects_total{reason}` label and the close frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The client sent a close frame.
    ClientClosed,
    /// The client closed with a code saying it could not take what the
    /// relay sent ([`refused_what_it_was_sent`]): a client that will loop,
    /// reconnecting to be sent the same event, until it is changed.
    ClientRefusedFrame(u16),
    /// The connection dropped or broke without a close frame.
    ClientGone,
    /// The client sent what WebSocket does not allow; the close code says
    /// what (1009 a message over 64 KiB, 1007 text that is not UTF-8, 1002
    /// any other protocol violation).
    BadFrame(u16),
    /// More than `client_queue` events behind, or a replay page not taken
    /// within its deadline (see `writer::page_bound`).
    SlowConsumer,
    /// A socket write stalled past its deadline.
    WriteStalled,
    /// A reload stopped accepting the client's token or, on a fan-out
    /// without tokens, its page's origin or its proxy.
    TokenRevoked,
    /// A reload changed the accounts the client's token opens (narrowed or
    /// widened them, or took tokens away on a loopback listener): the
    /// client reconnects and is served its new scope.
    ScopeChanged,
    PongTimeout,
    Shutdown,
    JournalError,
}

impl End {
    /// Every `reason` label, for exporting each at 0 from the start.
    pub const REASONS: [&'static str; 11] = [
        "client_closed",
        "client_refused_frame",
        "client_gone",
        "bad_frame",
        "slow_consumer",
        "write_stalled",
        "token_revoked",
        "scope_changed",
        "pong_timeout",
        "shutdown",
        "journal_error",
    ];

    pub fn reason(self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::ClientRefusedFrame(_) => "client_refused_frame",
            End::ClientGone => "client_gone",
            End::BadFrame(_) => "bad_frame",
            End::SlowConsumer => "slow_consumer",
            End::WriteStalled => "write_stalled",
            End::TokenRevoked => "token_revoked",
            End::ScopeChanged => "scope_changed",
            End::PongTimeout => "pong_timeout",
            End::Shutdown => "shutdown",
            End::JournalError => "journal_error",
        }
    }

    /// Whether the relay ended the session because of the client's state
    /// (not the client itself, nor a stop).
    pub fn is_the_relays_decision(self) -> bool {
        matches!(
            self,
            End::SlowConsumer
                | End::WriteStalled
                | End::TokenRevoked
                | End::ScopeChanged
                | End::PongTimeout
                | End::JournalError
        )
    }

    /// The close frame we send, if any (a client that closed gets tungstenite's echo).
    pub(super) fn close_frame(self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::ClientClosed | End::ClientRefusedFrame(_) | End::ClientGone => return None,
            End::SlowConsumer | End::WriteStalled => (4008, "slow consumer"),
            End::PongTimeout => (1002, "no pong within pong_timeout"),
            End::BadFrame(1009) => (1009, "message over 64 KiB"),
            End::BadFrame(1007) => (1007, "text frame is not UTF-8"),
            End::BadFrame(code) => (code, "protocol error"),
            End::Shutdown => (1001, "relay shutting down"),
            End::TokenRevoked => (1008, "no longer authorized"),
            // Not 1008: a page told "no longer authorized" stops retrying
            // (docs/websocket.md's example does), and this one should
            // reconnect to be served its new scope.
            End::ScopeChanged => (4009, "token scope changed: reconnect"),
            End::JournalError => (1011, "journal read failed"),
        };
        Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })
    }
}

/// Whether a client's close code says it could not take a frame the relay
/// sent (RFC 6455 §7.4.1): 1002 a protocol error, 1003 data it does not
/// take, 1007 a payload it found invalid, 1009 a message over its library's
/// limit. The relay sends nothing else a client may refuse so.
pub fn refused_what_it_was_sent(code: u16) -> bool {
    matches!(code, 1002 | 1003 | 1007 | 1009)
}

/// The reason tungstenite 0.29 puts in the 1002 it hands on in place of a
/// client's close code that may not be sent (1004-1006, 1014-2999,
/// under 1000, over 4999: `WebSocketContext::do_close`).
const TUNGSTENITE_REPLACED_CODE: &str = "Protocol violation";

/// How a session ends on the client's close frame, by its code and reason
/// (none: a bare close, as a normal one). A 1002 with tungstenite's own
/// reason is a code tungstenite replaced, not the client refusing a frame:
/// a client that closed, as any other.
pub(super) fn client_close_end(frame: Option<(u16, &str)>) -> End {
    match frame {
        Some((1002, TUNGSTENITE_REPLACED_CODE)) => End::ClientClosed,
        Some((code, _)) if refused_what_it_was_sent(code) => End::ClientRefusedFrame(code),
        _ => End::ClientClosed,
    }
}

/// How a failed read ends the session: a frame the client should not have
/// sent gets a close code that says so (it got a bare close before, which
/// reads as 1005, "you closed"); anything else is the connection breaking.
pub(super) fn read_error_end(error: axum::Error) -> End {
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match error.into_inner().downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => End::BadFrame(1009),
        Some(WsError::Utf8(_)) => End::BadFrame(1007),
        Some(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => End::ClientGone,
        Some(WsError::Protocol(_)) => End::BadFrame(1002),
        _ => End::ClientGone,
    }
}

#[cfg(test)]
mod tests {
    use super::End;

    /// Every way a session ends has its reason in [`End::REASONS`] (the
    /// match is exhaustive: a new way to end fails to compile here first).
    #[test]
    fn every_disconnect_reason_is_exported_from_the_start() {
        let all = |end: End| match end {
            End::ClientClosed
            | End::ClientRefusedFrame(_)
            | End::ClientGone
            | End::BadFrame(_)
            | End::SlowConsumer
            | End::WriteStalled
            | End::TokenRevoked
            | End::ScopeChanged
            | End::PongTimeout
            | End::Shutdown
            | End::JournalError => end.reason(),
        };
        let ends = [
            End::ClientClosed,
            End::ClientRefusedFrame(1009),
            End::ClientGone,
            End::BadFrame(1009),
            End::SlowConsumer,
            End::WriteStalled,
            End::TokenRevoked,
            End::ScopeChanged,
            End::PongTimeout,
            End::Shutdown,
            End::JournalError,
        ];
        let reasons: Vec<&str> = ends.into_iter().map(all).collect();
        assert_eq!(reasons, End::REASONS);
    }

    #[test]
    fn the_client_gets_a_close_frame_that_says_why_unless_it_left() {
        let sent = |end: End| end.close_frame().map(|f| (f.code, f.reason.to_string()));
        assert_eq!(sent(End::ClientClosed), None);
        assert_eq!(sent(End::ClientRefusedFrame(1009)), None);
        assert_eq!(sent(End::ClientGone), None);
        for (end, code, reason) in [
            (End::SlowConsumer, 4008, "slow consumer"),
            (End::WriteStalled, 4008, "slow consumer"),
            (End::PongTimeout, 1002, "no pong within pong_timeout"),
            (End::BadFrame(1009), 1009, "message over 64 KiB"),
            (End::BadFrame(1007), 1007, "text frame is not UTF-8"),
            (End::BadFrame(1002), 1002, "protocol error"),
            (End::Shutdown, 1001, "relay shutting down"),
            (End::TokenRevoked, 1008, "no longer authorized"),
            (End::ScopeChanged, 4009, "token scope changed: reconnect"),
            (End::JournalError, 1011, "journal read failed"),
        ] {
            assert_eq!(sent(end), Some((code, reason.to_owned())), "{end:?}");
        }
    }

    #[test]
    fn a_read_error_is_a_bad_frame_only_when_the_client_broke_the_protocol() {
        use tokio_tungstenite::tungstenite::Error as WsError;
        use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
        let end = |e: WsError| super::read_error_end(axum::Error::new(e));
        let too_long = CapacityError::MessageTooLong {
            size: 70_000,
            max_size: 65_536,
        };
        assert_eq!(end(WsError::Capacity(too_long)), End::BadFrame(1009));
        assert_eq!(end(WsError::Utf8("bad".into())), End::BadFrame(1007));
        assert_eq!(
            end(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)),
            End::BadFrame(1002)
        );
        assert_eq!(
            end(WsError::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            )),
            End::ClientGone
        );
        assert_eq!(end(WsError::ConnectionClosed), End::ClientGone);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(end(WsError::Io(reset)), End::ClientGone);
    }
}
