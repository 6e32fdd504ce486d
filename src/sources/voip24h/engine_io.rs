//! Our own small Engine.IO client for socket.io 2.x (Engine.IO 3) and 3.x/4.x
//! (Engine.IO 4) servers over tokio-tungstenite: the websocket transport
//! only, the open packet, the heartbeat each version wants, and `4x`
//! socket.io packets on the default namespace.
//!
//! The two versions differ in two places only. Heartbeat: an Engine.IO 3
//! client pings at the server's `pingInterval`; an Engine.IO 4 server pings
//! and the client answers (a client ping is an error there, "invalid
//! heartbeat direction"), so a server silent for `pingInterval +
//! pingTimeout` is gone. Namespace: socket.io 2 opens the default namespace
//! on its own; socket.io 3+ only when the client sends `40`.
//!
//! Guarantees: one task owns the websocket; a frame that cannot be read is
//! reported ([`Inbound::Malformed`]) and reading goes on; [`Conn::close`]
//! sends the socket.io disconnect and a websocket close, waits briefly for
//! the server's close, and returns only after that task — and with it the
//! socket — is gone.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::link::{Dial, EngineVersion, Inbound, LinkError};
use super::wire::{self, Frame, SioPacket};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a closing connection waits for the server's close before cutting it.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Largest websocket message accepted from the server.
const MAX_MESSAGE: usize = 16 << 20;

enum Cmd {
    Send(String, oneshot::Sender<Result<(), LinkError>>),
    Close,
}

pub struct Conn {
    pub(super) events: mpsc::Receiver<Inbound>,
    cmds: mpsc::Sender<Cmd>,
    task: JoinHandle<()>,
}

/// Opens the websocket and reads the open packet (within `timeout`).
pub(super) async fn handshake(
    dial: &Dial,
    eio: u8,
    timeout: Duration,
) -> Result<(Ws, Value), LinkError> {
    let url = wire::websocket_url(&dial.base_url, eio)?;
    let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE));
    let attempt = async {
        let tls = Connector::Rustls(dial.rustls.clone());
        let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            Some(config),
            false,
            Some(tls),
        )
        .await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => match wire::decode(&text) {
                    Frame::Open(json) => {
                        let open: Value = serde_json::from_str(json)
                            .map_err(|e| LinkError::Handshake(format!("open packet: {e}")))?;
                        return Ok((ws, open));
                    }
                    _ => {
                        return Err(LinkError::Handshake(
                            "the first packet was not an open packet".into(),
                        ));
                    }
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(_)) => {
                    return Err(LinkError::Handshake("unexpected first frame".into()));
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(LinkError::Closed),
            }
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| LinkError::Timeout(timeout))?
}

/// Closes `ws` in order: socket.io disconnect, websocket close, then waits up
/// to [`CLOSE_WAIT`] for the server to close its side. Drops the socket.
pub(super) async fn close_ws(mut ws: Ws) {
    let _ = ws.send(Message::Text(wire::DISCONNECT.into())).await;
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Who keeps the connection's heartbeat, from the open packet.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Heartbeat {
    /// Engine.IO 3: we ping this often.
    ClientPings(Duration),
    /// Engine.IO 4: the server pings; silent this long, it is gone.
    ServerPings(Duration),
}

impl Heartbeat {
    fn from_open(version: EngineVersion, open: &Value) -> Heartbeat {
        // Bounded both ways: a server asking for pings every millisecond is
        // not obeyed, and a deadline years away is no deadline (the session's
        // own watchdog finds a silent server first anyway).
        let millis = |key: &str, default: u64| {
            Duration::from_millis(open.get(key).and_then(Value::as_u64).unwrap_or(default))
                .clamp(Duration::from_millis(100), Duration::from_secs(3600))
        };
        let interval = millis("pingInterval", 25_000);
        match version {
            EngineVersion::V3 => Heartbeat::ClientPings(interval),
            EngineVersion::V4 => Heartbeat::ServerPings(interval + millis("pingTimeout", 20_000)),
        }
    }
}

impl Conn {
    pub async fn open(
        dial: &Dial,
        version: EngineVersion,
        timeout: Duration,
    ) -> Result<Conn, LinkError> {
        let eio = match version {
            EngineVersion::V3 => 3,
            EngineVersion::V4 => 4,
        };
        let (mut ws, open) = handshake(dial, eio, timeout).await?;
        let heartbeat = Heartbeat::from_open(version, &open);
        if version == EngineVersion::V4 {
            // socket.io 3+ opens the default namespace only when asked.
            tokio::time::timeout(timeout, ws.send(Message::Text(wire::CONNECT.into())))
                .await
                .map_err(|_| LinkError::Timeout(timeout))??;
        }
        let (events_tx, events) = mpsc::channel(1024);
        let (cmds, cmds_rx) = mpsc::channel(64);
        let task = tokio::spawn(drive(ws, heartbeat, events_tx, cmds_rx));
        Ok(Conn { events, cmds, task })
    }

    pub async fn emit(&self, event: &str, arg: Option<Value>) -> Result<(), LinkError> {
        let (reply, rx) = oneshot::channel();
        let text = wire::encode_event(event, arg.as_ref());
        self.cmds
            .send(Cmd::Send(text, reply))
            .await
            .map_err(|_| LinkError::Closed)?;
        rx.await.unwrap_or(Err(LinkError::Closed))
    }

    pub async fn close(self) {
        let _ = self.cmds.send(Cmd::Close).await;
        let mut task = self.task;
        if tokio::time::timeout(CLOSE_WAIT * 2, &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Owns the websocket: keeps the heartbeat, forwards what arrives, sends
/// what is asked.
async fn drive(
    mut ws: Ws,
    heartbeat: Heartbeat,
    events: mpsc::Sender<Inbound>,
    mut cmds: mpsc::Receiver<Cmd>,
) {
    let (client_pings, ping_every, silence_limit) = match heartbeat {
        // The silence limit is unused when we ping: an hour keeps it finite.
        Heartbeat::ClientPings(every) => (true, every, Duration::from_secs(3600)),
        Heartbeat::ServerPings(limit) => (false, limit, limit),
    };
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let server_silent = tokio::time::sleep(silence_limit);
    tokio::pin!(server_silent);
    let ended = loop {
        tokio::select! {
            _ = ping.tick(), if client_pings => {
                if let Err(e) = ws.send(Message::Text(wire::PING.into())).await {
                    break format!("ping failed: {e}");
                }
            }
            _ = &mut server_silent, if !client_pings => {
                break format!("no ping from the server for {silence_limit:?}");
            }
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Send(text, reply)) => {
                    let result = ws.send(Message::Text(text.into())).await.map_err(LinkError::from);
                    let failed = result.is_err();
                    let _ = reply.send(result);
                    if failed {
                        break "send failed".to_owned();
                    }
                }
                Some(Cmd::Close) | None => {
                    close_ws(ws).await;
                    return;
                }
            },
            frame = ws.next() => {
                if !client_pings {
                    // Any frame shows the server alive, as its ping would.
                    server_silent
                        .as_mut()
                        .reset(tokio::time::Instant::now() + silence_limit);
                }
                let inbound = match frame {
                    Some(Ok(Message::Text(text))) => match wire::decode(&text) {
                        Frame::Pong | Frame::Other | Frame::Open(_) => Inbound::Alive,
                        Frame::Ping(data) => {
                            // Engine.IO 4 servers drop a client that does not
                            // answer; Engine.IO 3 servers do not ping.
                            let pong = format!("{}{data}", wire::PONG_PREFIX);
                            let _ = ws.send(Message::Text(pong.into())).await;
                            Inbound::Alive
                        }
                        Frame::Close => break "the server closed the transport".to_owned(),
                        Frame::Message(packet) => match packet {
                            SioPacket::Connect(_) => Inbound::NamespaceConnected,
                            SioPacket::Disconnect => {
                                break "the server disconnected the namespace".to_owned()
                            }
                            SioPacket::ConnectError(why) => {
                                break format!("the server refused the namespace: {why}")
                            }
                            SioPacket::Event { name, args } => Inbound::Event { name, args },
                            SioPacket::Other => Inbound::Alive,
                            SioPacket::Malformed(why) => Inbound::Malformed(why.to_owned()),
                        },
                    },
                    Some(Ok(Message::Close(_))) | None => {
                        break "the connection was closed".to_owned()
                    }
                    Some(Ok(_)) => Inbound::Alive,
                    Some(Err(e)) => break format!("websocket: {e}"),
                };
                if events.send(inbound).await.is_err() {
                    close_ws(ws).await;
                    return;
                }
            }
        }
    };
    // The connection failed under us: drop it now, then say why.
    drop(ws);
    let _ = events.send(Inbound::Closed(ended)).await;
    // Keep answering `emit` with an error until the owner closes us.
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            Cmd::Send(_, reply) => {
                let _ = reply.send(Err(LinkError::Closed));
            }
            Cmd::Close => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_heartbeat_follows_the_version_and_the_open_packet() {
        let open = json!({"sid": "s", "pingInterval": 25000, "pingTimeout": 20000});
        assert_eq!(
            Heartbeat::from_open(EngineVersion::V3, &open),
            Heartbeat::ClientPings(Duration::from_secs(25))
        );
        assert_eq!(
            Heartbeat::from_open(EngineVersion::V4, &open),
            Heartbeat::ServerPings(Duration::from_secs(45))
        );
        // Missing or absurd values: the protocol's defaults, a floor on pings.
        assert_eq!(
            Heartbeat::from_open(EngineVersion::V4, &json!({})),
            Heartbeat::ServerPings(Duration::from_secs(45))
        );
        assert_eq!(
            Heartbeat::from_open(EngineVersion::V3, &json!({"pingInterval": 0})),
            Heartbeat::ClientPings(Duration::from_millis(100))
        );
        let forever = json!({"pingInterval": u64::MAX, "pingTimeout": u64::MAX});
        assert_eq!(
            Heartbeat::from_open(EngineVersion::V4, &forever),
            Heartbeat::ServerPings(Duration::from_secs(7200))
        );
    }
}
