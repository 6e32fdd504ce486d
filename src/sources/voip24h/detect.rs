//! `engine_io = "auto"`: which Engine.IO version does the server speak?
//!
//! Tries Engine.IO 4 first (a server that refuses it at the HTTP level is
//! taken for Engine.IO 3). A socket.io 2 server *accepts* an Engine.IO 4
//! handshake and only differs at the namespace connect: socket.io 2 sends a
//! bare `40` on its own right after the open packet, socket.io 3+ sends nothing
//! until asked and then answers `40{"sid":…}`. So the probe opens the
//! websocket, waits [`UNSOLICITED_WAIT`] for an unsolicited `40`, and only
//! then asks for the default namespace. (Asking a socket.io 2 server as well
//! makes it open the namespace twice on one connection and lose track of one
//! of them: the server then counts a session that never ends.)
//!
//! Guarantees: the probe never signs (it is no session for the key) and its
//! socket is closed and dropped before `detect` returns.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};

use super::engine_io::{close_ws, handshake};
use super::link::{Dial, EngineVersion, LinkError};
use super::wire::{self, Frame, SioPacket};

/// How long a socket.io 2 server may take to send its unsolicited `40`.
const UNSOLICITED_WAIT: Duration = Duration::from_secs(1);

/// The version the server at `dial` speaks, found within `timeout`.
pub async fn detect(dial: &Dial, timeout: Duration) -> Result<EngineVersion, LinkError> {
    let mut ws = match handshake(dial, 4, timeout).await {
        Ok((ws, _open)) => ws,
        // Refused at the HTTP level: not an Engine.IO 4 server; try 3.
        Err(LinkError::WebSocket(tungstenite::Error::Http(_))) => {
            let (ws, _open) = handshake(dial, 3, timeout).await?;
            close_ws(ws).await;
            return Ok(EngineVersion::V3);
        }
        Err(e) => return Err(e),
    };
    let answer = tokio::time::timeout(timeout, async {
        let mut asked = false;
        let mut ask_at = tokio::time::Instant::now() + UNSOLICITED_WAIT;
        loop {
            let next = tokio::select! {
                next = ws.next() => next,
                _ = tokio::time::sleep_until(ask_at), if !asked => {
                    ws.send(Message::Text(wire::CONNECT.into())).await?;
                    asked = true;
                    ask_at = tokio::time::Instant::now();
                    continue;
                }
            };
            match next {
                Some(Ok(Message::Text(text))) => match wire::decode(&text) {
                    Frame::Message(SioPacket::Connect(true)) => return Ok(EngineVersion::V4),
                    // Only socket.io 2 sends a bare `40` (3+ always adds its sid).
                    Frame::Message(SioPacket::Connect(false)) => return Ok(EngineVersion::V3),
                    // A refused namespace: socket.io 3+ says why in an
                    // object (`44{"message":…}`), socket.io 2 in a string.
                    Frame::Message(SioPacket::ConnectError(why)) => {
                        return Ok(if why.starts_with('{') {
                            EngineVersion::V4
                        } else {
                            EngineVersion::V3
                        });
                    }
                    Frame::Ping(data) => {
                        let pong = format!("{}{data}", wire::PONG_PREFIX);
                        ws.send(Message::Text(pong.into())).await?;
                    }
                    _ => continue,
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(LinkError::from(e)),
                None => return Err(LinkError::Closed),
            }
        }
    })
    .await;
    close_ws(ws).await;
    answer.map_err(|_| LinkError::Timeout(timeout))?
}
