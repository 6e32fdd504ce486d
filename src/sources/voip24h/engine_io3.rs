//! Our own small Engine.IO 3 client (socket.io 2.x servers) over
//! tokio-tungstenite: the websocket transport only, the open packet, client
//! pings at the server's `pingInterval`, and `4x` socket.io packets on the
//! default namespace. (rust_socketio speaks only Engine.IO 4.)
//!
//! Guarantees: one task owns the websocket; [`Conn::close`] sends the
//! socket.io disconnect and a websocket close, waits briefly for the server's
//! close, and returns only after that task — and with it the socket — is gone.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::link::{Dial, Inbound, LinkError};
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

impl Conn {
    pub async fn open(dial: &Dial, timeout: Duration) -> Result<Conn, LinkError> {
        let (ws, open) = handshake(dial, 3, timeout).await?;
        let ping_interval = open
            .get("pingInterval")
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(25))
            .max(Duration::from_millis(100));
        let (events_tx, events) = mpsc::channel(1024);
        let (cmds, cmds_rx) = mpsc::channel(64);
        let task = tokio::spawn(drive(ws, ping_interval, events_tx, cmds_rx));
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

/// Owns the websocket: pings, forwards what arrives, sends what is asked.
async fn drive(
    mut ws: Ws,
    ping_interval: Duration,
    events: mpsc::Sender<Inbound>,
    mut cmds: mpsc::Receiver<Cmd>,
) {
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
    let ended = loop {
        tokio::select! {
            _ = ping.tick() => {
                if let Err(e) = ws.send(Message::Text(wire::PING.into())).await {
                    break format!("ping failed: {e}");
                }
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
                let inbound = match frame {
                    Some(Ok(Message::Text(text))) => match wire::decode(&text) {
                        Frame::Pong | Frame::Other | Frame::Open(_) => Inbound::Alive,
                        Frame::Ping(data) => {
                            // Engine.IO 3 servers do not ping, but answering costs nothing.
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
