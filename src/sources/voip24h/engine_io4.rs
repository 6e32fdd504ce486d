//! Engine.IO 4 (socket.io 3/4 servers) through rust_socketio 0.6, with its own
//! reconnect turned off: our supervisor decides when to reconnect.
//!
//! rust_socketio spawns its polling task on the current runtime and offers no
//! way to stop it or to learn that the socket dropped. So each connection gets
//! its own single-threaded runtime on its own thread: closing the connection
//! sends the socket.io disconnect, then drops that runtime, which drops every
//! task rust_socketio spawned and with them its socket.
//!
//! Guarantees: [`Conn::close`] returns only after that runtime is gone; events
//! reach the session in arrival order; `42["say"]` (which rust_socketio hands
//! over as `Event::Message` with the payload `"say"`) arrives as the event `say`.

use std::time::Duration;

use futures::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::link::{Dial, Inbound, LinkError};

/// How long a closing connection waits for the socket.io disconnect to be sent.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

enum Cmd {
    Emit(
        String,
        Option<Value>,
        oneshot::Sender<Result<(), LinkError>>,
    ),
    Close,
}

pub struct Conn {
    pub(super) events: mpsc::Receiver<Inbound>,
    cmds: mpsc::Sender<Cmd>,
    /// Fires after the connection's runtime has been dropped.
    gone: oneshot::Receiver<()>,
}

impl Conn {
    /// Connects within `timeout`; on `cancel` the connection attempt is
    /// abandoned and its runtime dropped before this returns.
    pub async fn open(
        dial: &Dial,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Conn, LinkError> {
        let (events_tx, events) = mpsc::channel(1024);
        let (cmds, cmds_rx) = mpsc::channel(64);
        let (opened_tx, opened) = oneshot::channel();
        let (gone_tx, gone) = oneshot::channel();
        let dial = dial.clone();
        std::thread::Builder::new()
            .name("voip24h-eio4".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => {
                        rt.block_on(drive(dial, timeout, events_tx, cmds_rx, opened_tx));
                        // Drops rust_socketio's polling task, and with it the socket.
                        drop(rt);
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(LinkError::SocketIo(format!("runtime: {e}"))));
                    }
                }
                let _ = gone_tx.send(());
            })
            .map_err(|e| LinkError::SocketIo(format!("thread: {e}")))?;
        let conn = Conn { events, cmds, gone };
        let opened = tokio::select! {
            opened = opened => opened,
            _ = cancel.cancelled() => Ok(Err(LinkError::Cancelled)),
        };
        match opened {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(e)) => {
                conn.close().await;
                Err(e)
            }
            Err(_) => {
                conn.close().await;
                Err(LinkError::Closed)
            }
        }
    }

    pub async fn emit(&self, event: &str, arg: Option<Value>) -> Result<(), LinkError> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Emit(event.to_owned(), arg, reply))
            .await
            .map_err(|_| LinkError::Closed)?;
        rx.await.unwrap_or(Err(LinkError::Closed))
    }

    pub async fn close(self) {
        let _ = self.cmds.send(Cmd::Close).await;
        drop(self.cmds);
        let _ = self.gone.await;
    }
}

/// Runs on the connection's own runtime until asked to close.
async fn drive(
    dial: Dial,
    timeout: Duration,
    events: mpsc::Sender<Inbound>,
    mut cmds: mpsc::Receiver<Cmd>,
    opened: oneshot::Sender<Result<(), LinkError>>,
) {
    let builder = callbacks(ClientBuilder::new(dial.base_url), &events)
        .tls_config(dial.native)
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .reconnect_on_disconnect(false);
    let connect = tokio::time::timeout(timeout, builder.connect());
    let client = match tokio::select! {
        // Closed (or abandoned) while connecting: returning drops the attempt.
        _ = cmds.recv() => return,
        connected = connect => connected,
    } {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            let _ = opened.send(Err(LinkError::SocketIo(with_causes(&e))));
            return;
        }
        Err(_) => {
            let _ = opened.send(Err(LinkError::Timeout(timeout)));
            return;
        }
    };
    if opened.send(Ok(())).is_err() {
        disconnect(&client).await;
        return;
    }
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            Cmd::Emit(event, arg, reply) => {
                let payload = match arg {
                    Some(value) => Payload::Text(vec![value]),
                    None => Payload::Text(vec![]),
                };
                let result = client
                    .emit(event.as_str(), payload)
                    .await
                    .map_err(|e| LinkError::SocketIo(with_causes(&e)));
                let _ = reply.send(result);
            }
            Cmd::Close => break,
        }
    }
    disconnect(&client).await;
}

async fn disconnect(client: &Client) {
    let _ = tokio::time::timeout(CLOSE_WAIT, client.disconnect()).await;
}

/// Forwards every callback to `events`, in the order rust_socketio calls them.
fn callbacks(builder: ClientBuilder, events: &mpsc::Sender<Inbound>) -> ClientBuilder {
    let on_connect = events.clone();
    let on_close = events.clone();
    let on_error = events.clone();
    let on_any = events.clone();
    builder
        .on(Event::Connect, move |_payload: Payload, _client: Client| {
            let tx = on_connect.clone();
            async move {
                let _ = tx.send(Inbound::NamespaceConnected).await;
            }
            .boxed()
        })
        .on(Event::Close, move |_payload: Payload, _client: Client| {
            let tx = on_close.clone();
            async move {
                let _ = tx
                    .send(Inbound::Closed(
                        "the server disconnected the namespace".into(),
                    ))
                    .await;
            }
            .boxed()
        })
        // The server's `error` event and the library's own errors both land here.
        .on(Event::Error, move |payload: Payload, _client: Client| {
            let tx = on_error.clone();
            async move {
                let args = payload_args(payload);
                let inbound = match library_error(&args) {
                    Some(text) => Inbound::Closed(text),
                    None => Inbound::Event {
                        name: "error".into(),
                        args,
                    },
                };
                let _ = tx.send(inbound).await;
            }
            .boxed()
        })
        .on_any(move |event: Event, payload: Payload, _client: Client| {
            let tx = on_any.clone();
            async move {
                let inbound = match event {
                    Event::Custom(name) => Inbound::Event {
                        name,
                        args: payload_args(payload),
                    },
                    // `42["say"]`: an event without arguments comes as a message.
                    Event::Message => match payload_args(payload).as_slice() {
                        [Value::String(name)] => Inbound::Event {
                            name: name.clone(),
                            args: vec![],
                        },
                        _ => Inbound::Alive,
                    },
                    _ => Inbound::Alive,
                };
                let _ = tx.send(inbound).await;
            }
            .boxed()
        })
}

/// rust_socketio's errors name only their layer ("EngineIO Error"); why it
/// failed (a refused certificate, a refused connection) is in the sources.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// The texts rust_socketio 0.6 (and the rust_engineio errors it wraps) gives
/// its own errors, which it reports through the same `Event::Error` as the
/// server's `error` event. They mean the transport failed, not that the
/// Voip24h server said `error`.
const LIBRARY_ERRORS: &[&str] = &[
    "EngineIO Error",
    "Underlying Engine.IO connection has closed",
    "Error while parsing",
    "Got an invalid packet",
    "Invalid packet",
    "An error occurred while",
    "Got an IO-Error",
    "Called an action before",
    "Received an ConnectError frame",
    "Got illegal handshake",
    "The server did not send a PING",
    "Error with websocket connection",
    "Network request returned",
    "A lock was poisoned",
];

/// `Some(text)` when `args` is one of the library's own error reports.
fn library_error(args: &[Value]) -> Option<String> {
    match args {
        [Value::String(text)] if LIBRARY_ERRORS.iter().any(|p| text.starts_with(p)) => {
            Some(text.chars().take(200).collect())
        }
        _ => None,
    }
}

#[allow(deprecated)] // Payload::String is deprecated but still constructed by 0.6.
fn payload_args(payload: Payload) -> Vec<Value> {
    match payload {
        Payload::Text(values) => values,
        Payload::String(text) => vec![Value::String(text)],
        Payload::Binary(_) => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_is_told_with_its_causes_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("EngineIO Error")]
        struct Outer(#[source] Middle);
        #[derive(Debug, thiserror::Error)]
        #[error("websocket: {0}")]
        struct Middle(#[source] std::io::Error);
        let inner = std::io::Error::other("certificate verify failed");
        let text = with_causes(&Outer(Middle(inner)));
        assert_eq!(text, "EngineIO Error: websocket: certificate verify failed");
    }

    #[test]
    fn tells_library_errors_from_the_servers_error_event() {
        assert!(library_error(&[json!("EngineIO Error")]).is_some());
        assert!(library_error(&[json!("Received an ConnectError frame: x")]).is_some());
        assert!(library_error(&[json!("invalid key")]).is_none());
        assert!(library_error(&[json!({"message": "EngineIO Error"})]).is_none());
        assert!(library_error(&[]).is_none());
    }
}
