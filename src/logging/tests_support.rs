//! Test-only: what code logs, captured as the daemon's JSON or human lines.

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
    interest_in_every_callsite();
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || sink.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// The lines `f` writes on this thread in the human format, as the daemon
/// writes it without colour or time.
pub(crate) fn logged_human(f: impl FnOnce()) -> String {
    interest_in_every_callsite();
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .fmt_fields(super::fields::HumanFields)
        .with_writer(move || {
            super::one_line::OneLine::new(
                sink.clone(),
                super::one_line::Style::Human { colour: false },
            )
        })
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    captured.text()
}

/// tracing caches each callsite's interest, worked out from the
/// subscribers alive when it is first hit: one first hit on another test's
/// thread, where no subscriber captures, could stay cached as of no
/// interest, and this thread's capture then missed its lines (half the runs
/// of a capture test beside others that log the same lines). A global
/// default interested in every callsite, and enabling none, makes each
/// event ask the subscriber of its own thread.
pub(crate) fn interest_in_every_callsite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(AskEachTime);
    });
}

/// The global default of the test process: see [`interest_in_every_callsite`].
struct AskEachTime;

impl tracing::Subscriber for AskEachTime {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
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
