//! A panic is logged through `tracing`, in the log's own format: with
//! `--log-format json` it is one JSON line a log pipeline can read, not the
//! default hook's text; a panic its caller catches and handles is said at
//! most once a minute per place. One test only: the panic hook is global to
//! the process.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_panic_is_one_json_log_line_with_its_message_and_place() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    callrelay::logging::log_panics();

    let result = std::thread::Builder::new()
        .name("stream-2".into())
        .spawn(|| panic!("index {} out of range", 7))
        .expect("spawn")
        .join();
    // A panic its caller catches and handles (redb's on a damaged page,
    // met again by every retention pass and status tick): said once a
    // minute per place, not each time.
    let caught: Vec<bool> = (0..3)
        .map(|_| {
            std::panic::catch_unwind(|| {
                callrelay::logging::while_panics_are_caught(|| panic!("a damaged page"))
            })
            .is_err()
        })
        .collect();
    // The default hook again, so this test's own failures are shown.
    drop(std::panic::take_hook());
    assert!(result.is_err(), "the panic still unwinds");
    assert_eq!(
        caught, [true; 3],
        "caught panics still unwind to their catcher"
    );

    let text = String::from_utf8(captured.0.lock().expect("buffer").clone()).expect("utf-8");
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "one line for the three caught panics: {text}"
    );
    let caught_line = lines.pop().expect("two lines");
    assert!(
        caught_line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("panicked: a damaged page (caught")),
        "{caught_line}"
    );
    assert_eq!(caught_line["held_back"], 0, "{caught_line}");
    let event = &lines[0];
    assert_eq!(event["level"], "ERROR", "{event}");
    assert_eq!(
        event["message"], "panicked: index 7 out of range",
        "{event}"
    );
    assert_eq!(event["panic.thread"], "stream-2", "{event}");
    assert!(event.get("held_back").is_none(), "not throttled: {event}");
    let location = event["panic.location"].as_str().unwrap_or_default();
    assert!(location.starts_with("tests/panic_log.rs:"), "{event}");
}
