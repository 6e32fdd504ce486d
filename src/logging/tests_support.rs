//! Test-only: what code logs, captured as the daemon's JSON lines.

use std::sync::{Arc, Mutex};

/// The JSON log lines `f` writes on this thread (one per event, flattened
/// as `--log-format json` writes them).
pub(crate) fn logged_json(f: impl FnOnce()) -> String {
    let lines = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || Captured(sink.clone()))
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = lines.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
