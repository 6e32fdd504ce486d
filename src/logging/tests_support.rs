//! Test-only: what code logs, captured as the daemon's JSON lines.

use std::sync::{Arc, Mutex};

/// The JSON log lines `f` writes on this thread (one per event, flattened
/// as `--log-format json` writes them).
pub(crate) fn logged_json(f: impl FnOnce()) -> String {
    let (captured, guard) = capture_json();
    f();
    drop(guard);
    captured.text()
}

/// As [`logged_json`] for async code on a current-thread runtime: what is
/// logged on this thread until the guard is dropped.
pub(crate) fn capture_json() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || sink.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// A log writer whose clones all write into one buffer.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
