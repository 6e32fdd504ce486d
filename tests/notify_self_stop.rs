//! A relay that stops itself (its journal writer ended) tells systemd
//! STOPPING=1 as a signalled stop does: its watchdog keep-alives end with
//! the drain, and systemd stops watching only a service that said so, else it
//! kills a drain longer than the watchdog's interval with SIGABRT. One test
//! in its own binary: `NOTIFY_SOCKET` is the whole process's.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

#[test]
fn a_relay_that_stops_itself_tells_systemd_it_is_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    // SAFETY: set before the runtime starts, while this test's thread is the
    // only one that reads the environment.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", &socket_path);
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut relay = common::start_relay(
            "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"demo\"\napi_key = \"demo-tel4vn-key\"\n",
        )
        .await;
        relay.ctx.ingest.end_writer_unannounced().await;
        let running = relay.relay.take().expect("a running relay");
        let ended = tokio::time::timeout(Duration::from_secs(20), running.wait())
            .await
            .expect("the relay stops by itself");
        assert!(ended.is_err(), "a stop with an error");
    });
    let mut notes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !notes.iter().any(|n| n == "STOPPING=1") {
        if let Ok(n) = socket.recv(&mut buf) {
            notes.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    assert!(notes.iter().any(|n| n == "STOPPING=1"), "told: {notes:?}");
}
