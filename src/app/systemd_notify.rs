//! Notifications to systemd (`READY=1`, `WATCHDOG=1`, `STOPPING=1`,
//! `EXTEND_TIMEOUT_USEC=…`) over one socket kept for the process's life.
//!
//! Why not `sd_notify::notify`: it makes a new socket for every message, so
//! a relay out of file descriptors (`EMFILE`: WebSocket clients up to
//! `LimitNOFILE`) failed every watchdog keep-alive without a word, and
//! systemd killed it `WatchdogSec` later: a restart that reads an unclean
//! journal again and drops every Voip24h session, only for the screens to
//! fill the descriptors again.
//!
//! Guarantees: once the socket is made (at the first notification, early in
//! the start), a notification takes no file descriptor; the address is
//! `NOTIFY_SOCKET` read at each send, a path or an abstract name (`@…`), so a
//! path systemd makes again is found again; nothing is sent, and nothing
//! fails, when `NOTIFY_SOCKET` is unset; a socket that could not be made is
//! tried again at the next notification.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;

use sd_notify::NotifyState;

/// The process's one notify socket, unbound: each message is sent to the
/// address `NOTIFY_SOCKET` names.
static SOCKET: Mutex<Option<UnixDatagram>> = Mutex::new(None);

/// Sends `states` to systemd, one per line, if it listens (`NOTIFY_SOCKET`).
pub fn notify(states: &[NotifyState]) -> io::Result<()> {
    let Some(address) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    send(&address, states)
}

/// Makes the socket now, so that a relay that runs out of descriptors later
/// still has it; `Ok` also when systemd does not listen.
pub fn prepare() -> io::Result<()> {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return Ok(());
    }
    with_socket(|_| Ok(()))
}

/// Sends `states` to the socket at `address` (a path, or `@` and an abstract name).
fn send(address: &OsStr, states: &[NotifyState]) -> io::Result<()> {
    let to = socket_address(address)?;
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    with_socket(|socket| {
        let sent = socket.send_to_addr(message.as_bytes(), &to)?;
        if sent == message.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the notification was sent in part",
            ))
        }
    })
}

/// Runs `f` on the process's socket, making it first if there is none yet.
fn with_socket(f: impl FnOnce(&UnixDatagram) -> io::Result<()>) -> io::Result<()> {
    // A panic elsewhere while the lock was held leaves a usable socket.
    let mut held = SOCKET
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let socket = match held.take() {
        Some(socket) => socket,
        None => UnixDatagram::unbound()?,
    };
    let result = f(&socket);
    *held = Some(socket);
    result
}

/// `NOTIFY_SOCKET`'s address: `@name` is Linux's abstract namespace (the
/// `@` stands for the leading NUL), anything else a path.
fn socket_address(address: &OsStr) -> io::Result<SocketAddr> {
    match address.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(address),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(receiver: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn states_go_to_a_path_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(
            path.as_os_str(),
            &[NotifyState::Ready, NotifyState::Status("serving")],
        )
        .unwrap();
        assert_eq!(received(&receiver), "READY=1\nSTATUS=serving\n");
    }

    #[test]
    fn an_abstract_name_is_reached() {
        let name = format!("callrelay-notify-test-{}", std::process::id());
        let receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        send(OsStr::new(&format!("@{name}")), &[NotifyState::Watchdog]).unwrap();
        assert_eq!(received(&receiver), "WATCHDOG=1\n");
    }

    #[test]
    fn a_path_made_again_is_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let first = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), &[NotifyState::Watchdog]).unwrap();
        assert_eq!(received(&first), "WATCHDOG=1\n");
        drop(first);
        std::fs::remove_file(&path).unwrap();
        let second = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), &[NotifyState::Stopping]).unwrap();
        assert_eq!(received(&second), "STOPPING=1\n");
    }

    #[test]
    fn nobody_listening_is_an_error_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        assert!(send(path.as_os_str(), &[NotifyState::Watchdog]).is_err());
    }
}
