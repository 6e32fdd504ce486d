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
//! tried again at the next notification; a send waits for room in a full
//! queue (systemd slow to drain its socket) at most `SEND_WAIT` (2 s), then
//! is an error (`EAGAIN`), so a moment's backlog loses no notification and
//! no caller holds a runtime worker or a lock for long;
//! [`tell`] says a failed notification once, until one gets through again.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use sd_notify::NotifyState;

/// How long a send waits for room in systemd's queue before it fails: long
/// enough for a busy PID 1 to drain a backlog, short enough for a caller
/// holding a lock or a runtime worker.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The process's one notify socket, unbound: each message is sent to the
/// address `NOTIFY_SOCKET` names.
static SOCKET: Mutex<Option<UnixDatagram>> = Mutex::new(None);

/// Whether [`tell`] said a failed notification that none has got through
/// after.
static UNSENT_SAID: AtomicBool = AtomicBool::new(false);

/// Sends `states` as [`notify`] does, for the notifications other than the
/// watchdog's keep-alives (which say their own failures): a failure is
/// said once, until one gets through again. Dropped without a word, a
/// failed `EXTEND_TIMEOUT_USEC` during a long journal check left systemd
/// to kill the start at `TimeoutStartSec` with nothing in the log.
pub fn tell(states: &[NotifyState]) {
    tell_at(
        std::env::var_os("NOTIFY_SOCKET").as_deref(),
        &UNSENT_SAID,
        states,
    );
}

fn tell_at(address: Option<&OsStr>, unsent_said: &AtomicBool, states: &[NotifyState]) {
    let Some(address) = address else {
        return;
    };
    match send(address, states) {
        Ok(()) => unsent_said.store(false, Ordering::Relaxed),
        Err(e) => {
            if !unsent_said.swap(true, Ordering::Relaxed) {
                let notification = states.first().map(ToString::to_string).unwrap_or_default();
                tracing::warn!(error = %e, %notification,
                    "a notification could not be sent to systemd: it may not know the relay is ready or stopping, and may end a long start or stop at its timeout (said once until one is sent)");
            }
        }
    }
}

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
    with_socket(|socket| send_on(socket, &message, &to))
}

fn send_on(socket: &UnixDatagram, message: &str, to: &SocketAddr) -> io::Result<()> {
    let sent = socket.send_to_addr(message.as_bytes(), to)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was sent in part",
        ))
    }
}

/// A socket for the notifications, whose sends wait at most [`SEND_WAIT`].
fn new_socket() -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    // Unbounded, a send to a full queue (PID 1 not reading) waited with the
    // socket's lock held, and the caller's runtime worker; not waiting at
    // all lost READY=1 to a moment's backlog, and systemd, never told,
    // killed the start at TimeoutStartSec.
    socket.set_write_timeout(Some(SEND_WAIT))?;
    Ok(socket)
}

/// Runs `f` on the process's socket, making it first if there is none yet.
fn with_socket(f: impl FnOnce(&UnixDatagram) -> io::Result<()>) -> io::Result<()> {
    // A panic elsewhere while the lock was held leaves a usable socket.
    let mut held = SOCKET
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let socket = match held.take() {
        Some(socket) => socket,
        None => new_socket()?,
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

    /// PID 1 not draining its notify socket fills the queue. A send that
    /// never waited lost READY=1 to a moment's backlog (systemd then killed
    /// the start at TimeoutStartSec); one that waited without bound held the
    /// socket's lock and a runtime worker for as long as systemd did not
    /// read. It waits, at most SEND_WAIT, and a send that finds room within
    /// it goes through.
    #[test]
    fn a_full_queue_is_waited_on_for_at_most_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let to = SocketAddr::from_pathname(&path).unwrap();
        // Not the process's socket: its send buffer, filled here, would
        // fail the other tests' sends.
        let socket = std::sync::Arc::new(new_socket().unwrap());
        let sender = socket.clone();
        let filler = std::thread::spawn(move || {
            // The queue holds a few hundred at most (net.unix.max_dgram_qlen,
            // the receive buffer); past this many a send has blocked.
            let failed = (0..100_000).find_map(|_| {
                let start = std::time::Instant::now();
                send_on(&sender, "WATCHDOG=1\n", &to)
                    .err()
                    .map(|e| (e.kind(), start.elapsed()))
            });
            let _ = tx.send(failed);
            sender
        });
        let (kind, waited) = rx
            .recv_timeout(SEND_WAIT + std::time::Duration::from_secs(8))
            .expect("a send to a full queue blocked past its bound")
            .expect("the queue never filled");
        assert_eq!(kind, io::ErrorKind::WouldBlock);
        assert!(
            waited >= SEND_WAIT / 2,
            "gave up after {waited:?}, not waiting for room"
        );
        assert!(
            waited < SEND_WAIT + std::time::Duration::from_secs(1),
            "waited {waited:?}"
        );
        let sender = filler.join().unwrap();
        // Room made while a send waits on the full queue lets it through.
        let to = SocketAddr::from_pathname(&path).unwrap();
        let waiting = std::thread::spawn(move || send_on(&sender, "READY=1\n", &to));
        assert_eq!(received(&receiver), "WATCHDOG=1\n");
        waiting.join().unwrap().expect("a send that found room");
        drop(socket);
    }

    /// A failed notification is said once, with its error, until one gets
    /// through again; nothing is said when systemd does not listen.
    #[test]
    fn a_failed_notification_is_said_once_until_one_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let said = AtomicBool::new(false);
        let tell = |states: &[NotifyState]| {
            crate::logging::tests_support::logged_json(|| {
                tell_at(Some(path.as_os_str()), &said, states);
            })
        };
        let first = tell(&[NotifyState::ExtendTimeoutUsec(1), NotifyState::Status("x")]);
        assert!(
            first.contains("could not be sent to systemd")
                && first.contains("EXTEND_TIMEOUT_USEC=1")
                && first.contains("\"error\""),
            "{first}"
        );
        assert_eq!(tell(&[NotifyState::Stopping]), "", "said once");
        let receiver = UnixDatagram::bind(&path).unwrap();
        assert_eq!(tell(&[NotifyState::Ready]), "");
        assert_eq!(received(&receiver), "READY=1\n");
        drop(receiver);
        std::fs::remove_file(&path).unwrap();
        assert!(tell(&[NotifyState::Stopping]).contains("STOPPING=1"));
        let quiet = crate::logging::tests_support::logged_json(|| {
            tell_at(None, &AtomicBool::new(false), &[NotifyState::Ready]);
        });
        assert_eq!(quiet, "");
    }

    #[test]
    fn nobody_listening_is_an_error_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        assert!(send(path.as_os_str(), &[NotifyState::Watchdog]).is_err());
    }
}
