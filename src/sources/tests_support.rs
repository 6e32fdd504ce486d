//! Fixtures shared by the sources' unit tests: a peer's listener on
//! 127.0.0.1 and the head of the request it accepts.

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// A listener on a free port of 127.0.0.1, and that port.
pub(crate) async fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Reads a request's head, up to and with its blank line, and not a byte
/// more: what follows is the caller's.
pub(crate) async fn read_head(socket: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(socket.read_u8().await.unwrap());
    }
    head
}
