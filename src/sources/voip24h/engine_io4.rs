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
    let mut check = tokio::time::interval(READER_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reader_gone = false;
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Emit(event, arg, reply)) => {
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
                Some(Cmd::Close) | None => break,
            },
            _ = check.tick(), if !reader_gone => {
                if reader_stopped() {
                    // try_send: a full queue is retried on the next tick
                    // rather than blocking the emits the session waits on.
                    reader_gone = match events.try_send(Inbound::Closed(READER_GONE.into())) {
                        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => true,
                        Err(mpsc::error::TrySendError::Full(_)) => false,
                    };
                }
            }
        }
    }
    disconnect(&client).await;
}

/// How often the connection checks that rust_socketio still reads.
const READER_CHECK: Duration = Duration::from_millis(200);
const READER_GONE: &str = "the socket.io 4 client stopped reading the connection";

/// Whether rust_socketio's reader has ended without telling us.
///
/// rust_socketio 0.6 reads the connection in the one task it spawns on this
/// connection's runtime, and that task ends — with no `Close` callback — when
/// its packet stream yields an error (the stream is an `async_stream`
/// `try_stream!`: a frame it cannot parse, `42["response",{bad` or `49`, ends
/// it for good) or panics (a binary-event header whose attachment never
/// comes: `unwrap()` on the ended engine.io stream). The connection then sits
/// unread and would pass for connected until the session's watchdog. No task
/// alive on this runtime means that reader is gone: our own code here runs in
/// `block_on`, not as a task.
fn reader_stopped() -> bool {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
        == 0
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
                    Some((LibraryError::Malformed, text)) => Inbound::Malformed(text),
                    Some((LibraryError::Transport, text)) => Inbound::Closed(text),
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

/// What one of rust_socketio's own error reports means for the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LibraryError {
    /// One frame could not be parsed (counted; never an auth refusal).
    Malformed,
    /// The transport failed.
    Transport,
}

/// The texts rust_socketio 0.6 gives its errors, which it reports through the
/// same `Event::Error` as the server's `error` event: none of them is the
/// Voip24h server saying `error` (so never an auth refusal).
///
/// These are raised while parsing one socket.io packet (`42["response",{bad`
/// gives "string is not json serializable", `49` "Invalid packet id"). The
/// frame is counted as malformed, as the Engine.IO 3 transport counts one.
/// Raised by the event handler (`42[]`), the library reads on and so does the
/// session; raised by the packet parser, the library's reader has ended, which
/// [`reader_stopped`] notices within READER_CHECK and the session reconnects.
const MALFORMED_FRAME_ERRORS: &[&str] = &[
    "Invalid packet id",
    "Error while parsing an incomplete packet",
    "Got an invalid packet",
    "An error occurred while decoding the utf-8",
    "An error occurred while encoding/decoding base64",
    "string is not json serializable",
    "Error while parsing an integer",
    "Invalid packet type while reading attachments",
];

/// These (and the rust_engineio errors it wraps, all "EngineIO Error") mean
/// the transport failed.
const LIBRARY_ERRORS: &[&str] = &[
    "EngineIO Error",
    "Underlying Engine.IO connection has closed",
    "Got an IO-Error",
    "Called an action before",
    "Received an ConnectError frame",
    "Got illegal handshake",
    "The server did not send a PING",
    "Error with websocket connection",
    "Network request returned",
    "A lock was poisoned",
];

/// What `args` means when it is one of the library's own error reports, with
/// its text (bounded).
fn library_error(args: &[Value]) -> Option<(LibraryError, String)> {
    let [Value::String(text)] = args else {
        return None;
    };
    let kind = if MALFORMED_FRAME_ERRORS.iter().any(|p| text.starts_with(p)) {
        LibraryError::Malformed
    } else if LIBRARY_ERRORS.iter().any(|p| text.starts_with(p)) {
        LibraryError::Transport
    } else {
        return None;
    };
    Some((kind, text.chars().take(200).collect()))
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
        let kind = |text: &str| library_error(&[json!(text)]).map(|(kind, _)| kind);
        assert_eq!(kind("EngineIO Error"), Some(LibraryError::Transport));
        assert_eq!(
            kind("Received an ConnectError frame: x"),
            Some(LibraryError::Transport)
        );
        assert_eq!(
            kind("string is not json serializable: EOF while parsing"),
            Some(LibraryError::Malformed)
        );
        assert_eq!(kind("Invalid packet id: 9"), Some(LibraryError::Malformed));
        assert!(library_error(&[json!("invalid key")]).is_none());
        assert!(library_error(&[json!({"message": "EngineIO Error"})]).is_none());
        assert!(library_error(&[]).is_none());
    }
}
