//! Logging for the command line: `tracing` on stderr, human or JSON.
//!
//! Guarantees: the filter comes from `RUST_LOG` (when set and not empty), else
//! `--log-level`, and a value that would silently log nothing (a lone word
//! that is not a level: EnvFilter reads it as a target) is refused instead;
//! `warning` means `warn`. The crates that carry the wire traffic never log
//! below debug, whatever the filter asks, so no frame or header (the Voip24h
//! key, a WebSocket token) reaches the log. Colour only on a terminal. A
//! panic (a bug) is logged as one `error` event in the same format, not as
//! the default hook's text, which a JSON log pipeline could not read. A
//! stderr that can no longer be written (its reader gone) loses log lines,
//! never the process. One event is one line, whatever text from a vendor
//! its fields hold, and no character of it acts on a terminal ([`one_line`]).
//! When stderr is journald's stream, each line starts with its level's
//! sd-daemon prefix, so journald records errors as errors ([`journald`]).
//! A panic the caller catches and turns into an error ([`while_panics_are_caught`])
//! is logged at most once a minute per place, with how many were held back.

pub mod fields;
pub mod journald;
pub mod one_line;

use std::cell::Cell;
use std::sync::LazyLock;
use std::time::Duration;

use crate::log_throttle::SharedLogThrottle;
#[cfg(test)]
pub(crate) mod tests_support;

/// The most characters of a request's own text (an account name, a path)
/// that a log line repeats: enough to recognise it, and a long one cannot
/// fill the log.
pub const EXCERPT_CHARS: usize = 64;

/// `text` cut to [`EXCERPT_CHARS`] characters, for a log field.
pub fn excerpt(text: &str) -> String {
    text.chars().take(EXCERPT_CHARS).collect()
}

/// `text` whole when it has at most `chars` characters, else its first
/// `chars` and how many more: for an error's text whose length a peer
/// chooses, cut where it still says what went wrong.
pub fn cut_to(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        None => text.to_owned(),
        Some((end, _)) => format!(
            "{}… ({} more characters)",
            &text[..end],
            text[end..].chars().count()
        ),
    }
}

/// The first `named` of `items`, comma-separated, then how many more: a log
/// line or `/status` field naming thousands of accounts or topics was
/// hundreds of KB, and journald splits such a line into pieces that are not
/// JSON.
pub fn first_then_more<I>(items: I, named: usize) -> String
where
    I: ExactSizeIterator,
    I::Item: std::fmt::Display,
{
    let total = items.len();
    let mut out = items
        .take(named)
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if total > named {
        out.push_str(&format!(" and {} more", total - named));
    }
    out
}

/// An error and its causes, `: `-separated: hyper's errors say only "error
/// reading a body from connection" or "tcp connect error" and keep the
/// reason (a reset, a refused connection, a TLS alert) in their source. A
/// cause an error's own text already ends with is not repeated.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let said = e.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = e.source();
    }
    text
}

/// A duration as whole milliseconds, for a log field: `retry_in=1.382749103s`
/// (Debug) reads worse than `retry_in_ms=1382`.
pub fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// A log level or filter that logging would not honour as meant.
#[derive(Debug, thiserror::Error)]
pub enum LogFilterError {
    #[error(
        "{0:?} is not a log level (trace, debug, info, warn, error, off) or a filter such as `callrelay=debug,info`"
    )]
    NotALevel(String),
    #[error("{value:?} is not a valid log filter: {reason}")]
    BadFilter { value: String, reason: String },
}

/// The levels a filter's bare word may be.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `--log-level` or `RUST_LOG` value and returns it as EnvFilter
/// reads it. EnvFilter takes a lone word that is not a level as a target name,
/// so `warning` or a typo like `debg` would silently turn every log line off:
/// `warning` means `warn`, and any other lone word must be a level.
pub fn log_filter(value: &str) -> Result<String, LogFilterError> {
    let value = value.trim();
    let normalized = value
        .split(',')
        .map(|directive| {
            let directive = directive.trim();
            match directive.rsplit_once('=') {
                Some((target, level)) if level.eq_ignore_ascii_case("warning") => {
                    format!("{target}=warn")
                }
                None if directive.eq_ignore_ascii_case("warning") => "warn".to_owned(),
                _ => directive.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    if !normalized.contains(['=', ','])
        && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(&normalized))
    {
        return Err(LogFilterError::NotALevel(value.to_owned()));
    }
    tracing_subscriber::EnvFilter::try_new(&normalized).map_err(|e| LogFilterError::BadFilter {
        value: value.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(normalized)
}

/// Checks `RUST_LOG` as `run` will read it, so `check` can refuse a value
/// that would stop the daemon at start (exit 2) before it is restarted.
pub fn check_rust_log() -> Result<(), LogFilterError> {
    match std::env::var("RUST_LOG") {
        Ok(rust_log) if !rust_log.trim().is_empty() => log_filter(&rust_log).map(drop),
        _ => Ok(()),
    }
}

/// The filter in force: `RUST_LOG` when set (and not empty), else
/// `--log-level` (already checked by clap), else `default`.
fn logging_filter(
    level: Option<&str>,
    default: &str,
) -> Result<tracing_subscriber::EnvFilter, LogFilterError> {
    let chosen = match std::env::var("RUST_LOG") {
        Ok(rust_log) if !rust_log.trim().is_empty() => log_filter(&rust_log)?,
        _ => level.unwrap_or(default).to_owned(),
    };
    let chosen = with_a_default_level(&chosen, default);
    // Both sources went through `log_filter`, so this parses.
    Ok(tracing_subscriber::EnvFilter::try_new(&chosen)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)))
}

/// `filter` with `default` as the level of everything it does not name,
/// when it names no such level itself. EnvFilter turns off whatever no
/// directive matches, so `RUST_LOG=tungstenite=trace` (debugging one crate)
/// or `,,,` silenced every line of the relay's own, errors too, and a
/// refused reload said nothing (signals audit, 2026-12-02). `off,x=trace`
/// still silences the rest on purpose.
fn with_a_default_level(filter: &str, default: &str) -> String {
    let directives: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return default.to_owned();
    }
    if directives
        .iter()
        .any(|d| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(d)))
    {
        return filter.to_owned();
    }
    format!("{default},{}", directives.join(","))
}

/// Crates that log what goes over the wire at trace level: tungstenite logs
/// every frame (the Voip24h `sign` frame carries the API key) and the client
/// handshake request (`tail --token`'s Authorization header), reqwest can log
/// connection bytes, and the hyper and h2 stacks sit on the same traffic. Secrets never appear in logs, whatever RUST_LOG or
/// `--log-level` asks, so these are held at debug (none of them logs a
/// payload or header there).
const WIRE_LOGGING_CRATES: [&str; 6] = [
    "tungstenite",
    "tokio_tungstenite",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
];

/// Whether an event may be logged at all. A filter layer of its own rather
/// than directives added to the user's: `tungstenite::protocol=trace` is more
/// specific than an added `tungstenite=debug` and would win over it. Events
/// bridged from the `log` crate carry their crate's target, so it holds for
/// them too.
fn not_wire_trace(metadata: &tracing::Metadata<'_>) -> bool {
    *metadata.level() <= tracing::Level::DEBUG
        || !WIRE_LOGGING_CRATES.iter().any(|krate| {
            metadata
                .target()
                .strip_prefix(krate)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Sets up logging on stderr; `default` applies when neither `RUST_LOG` nor
/// `level` is given. Fails when `RUST_LOG` is not a level or filter.
pub fn init(format: LogFormat, level: Option<&str>, default: &str) -> Result<(), LogFilterError> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = logging_filter(level, default)?;
    let colour = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // A log line that cannot be written (stderr is a pipe whose reader
        // went away: `| tee` ended, a log shipper died) is lost, and nothing
        // else: tracing's own report of it went to stderr with `eprintln!`,
        // which panics there, and the panic's log line panicked again, so
        // the relay aborted mid-commit (big-journal audit, 2026-12-01).
        .log_internal_errors(false)
        // Colour codes only for a person at a terminal: the journal, a file or
        // a pipe would keep them as escape sequences in the text.
        .with_ansi(colour);
    let journald = journald::stderr_is_journald();
    let wire = tracing_subscriber::filter::filter_fn(not_wire_trace);
    log_panics();
    match format {
        LogFormat::Human => builder
            .fmt_fields(fields::HumanFields)
            .with_writer(journald::EventLines::new(
                std::io::stderr,
                one_line::Style::Human { colour },
                journald,
            ))
            .finish()
            .with(wire)
            .init(),
        LogFormat::Json => builder
            .with_writer(journald::EventLines::new(
                std::io::stderr,
                one_line::Style::Json,
                journald,
            ))
            .json()
            .flatten_event(true)
            .finish()
            .with(wire)
            .init(),
    }
    Ok(())
}

thread_local! {
    /// Set while code runs whose panic its caller catches and handles.
    static PANICS_CAUGHT: Cell<bool> = const { Cell::new(false) };
}

/// Places of caught panics already said, for the throttle: redb's few
/// `unreachable!` sites, so the keys are a small fixed set.
static CAUGHT_PANICS_SAID: LazyLock<SharedLogThrottle<String>> =
    LazyLock::new(|| SharedLogThrottle::new(Duration::from_secs(60)));

/// Runs `work`, whose panic the caller catches and turns into an error
/// (redb's on a damaged page, which the journal reports as damaged). Its
/// panic line is throttled per place: every retention pass, Kafka status
/// tick and replay page that meets the same damaged page panics again, up
/// to five a second, and each line read as a crash to whoever was on call.
pub fn while_panics_are_caught<R>(work: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PANICS_CAUGHT.with(|caught| caught.set(self.0));
        }
    }
    let _restore = Restore(PANICS_CAUGHT.with(|caught| caught.replace(true)));
    work()
}

/// Whether a panic on this thread now would be one its caller catches.
#[cfg(test)]
pub(crate) fn panics_are_caught() -> bool {
    PANICS_CAUGHT.with(Cell::get)
}

/// Replaces the default panic hook: a panic becomes an `error` event with
/// its message, place and thread (and a backtrace when `RUST_BACKTRACE`
/// asks for one). The panic still unwinds as before: what it costs is the
/// task's or thread's it happened in (connection sources, the Kafka sink and
/// retention are restarted, an HTTP request or WebSocket session ends, the
/// HTTP server's end stops the relay with an error; see `panic_restart`).
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("<unnamed>");
        // A caught panic's line is throttled per place, and says so.
        let (held_back, caught) = if PANICS_CAUGHT.with(Cell::get) {
            let Some(held_back) = CAUGHT_PANICS_SAID.admit_now(location.clone()) else {
                return;
            };
            let note = " (caught, and handled as the error it stands for; said at most once a minute per place)";
            (Some(held_back), note)
        } else {
            (None, "")
        };
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace =
            (backtrace.status() == std::backtrace::BacktraceStatus::Captured).then_some(backtrace);
        tracing::error!(
            panic.location = %location,
            panic.thread = %thread,
            panic.backtrace = backtrace.as_ref().map(tracing::field::display),
            held_back,
            "panicked: {message}{caught}"
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_that_names_no_level_for_the_rest_gets_the_default() {
        assert_eq!(
            with_a_default_level("tungstenite=trace", "info"),
            "info,tungstenite=trace"
        );
        assert_eq!(with_a_default_level(",,,", "info"), "info");
        assert_eq!(with_a_default_level("", "warn"), "warn");
        assert_eq!(
            with_a_default_level("callrelay, rdkafka=debug", "info"),
            "info,callrelay,rdkafka=debug"
        );
        // A level of its own, or `off` on purpose: as written.
        assert_eq!(
            with_a_default_level("callrelay=debug,warn", "info"),
            "callrelay=debug,warn"
        );
        assert_eq!(with_a_default_level("off,x=trace", "info"), "off,x=trace");
        assert_eq!(with_a_default_level("DEBUG", "info"), "DEBUG");
    }

    #[test]
    fn warning_means_warn_and_a_lone_word_must_be_a_level() {
        assert_eq!(log_filter("warning").unwrap(), "warn");
        assert_eq!(log_filter(" INFO ").unwrap(), "INFO");
        assert_eq!(
            log_filter("callrelay=warning, info").unwrap(),
            "callrelay=warn,info"
        );
        assert_eq!(log_filter("callrelay=debug").unwrap(), "callrelay=debug");
        assert!(matches!(
            log_filter("debg"),
            Err(LogFilterError::NotALevel(_))
        ));
        assert!(matches!(
            log_filter("callrelay=loud"),
            Err(LogFilterError::BadFilter { .. })
        ));
    }

    #[test]
    fn a_text_is_cut_at_a_character_and_says_how_many_are_left_out() {
        assert_eq!(cut_to("abc", 3), "abc");
        assert_eq!(cut_to("", 0), "");
        // Two bytes each: a cut between bytes would panic.
        assert_eq!(cut_to("ééééé", 2), "éé… (3 more characters)");
        assert_eq!(cut_to("abcd", 0), "… (4 more characters)");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct SaysItsCause(#[source] std::io::Error);

    #[test]
    fn causes_follow_the_error_once_each() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(with_causes(&Outer(io())), "outer: reset by peer");
        assert_eq!(with_causes(&SaysItsCause(io())), "outer: reset by peer");
    }
}
