//! The human log format's fields, as tracing-subscriber writes them (`name=`
//! in italics on a colour terminal, the message bare, `log.*` metadata left
//! out), with every ESC inside a field's value written as `\x1b`.
//!
//! Why: on a colour terminal [`super::one_line`] lets the formatter's colour
//! sequences (`ESC [ digits ; m`) pass, and in the finished line it cannot
//! tell them from the same bytes inside a value a vendor wrote (a Voip24h
//! `error` text with `ESC [8m` hid the rest of the line, `retry_in` with it).
//! Here the two are still apart: the values' ESCs are escaped before the
//! line exists, and only the formatter's colours remain.
//!
//! Guarantees: no ESC of a field's value reaches the line as an ESC; the
//! rest of the text is written as the default formatter writes it.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The field formatter of the human format.
#[derive(Clone, Copy, Debug, Default)]
pub struct HumanFields;

impl<'writer> FormatFields<'writer> for HumanFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = HumanVisitor {
            writer,
            seen: false,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct HumanVisitor<'writer> {
    writer: Writer<'writer>,
    seen: bool,
    result: fmt::Result,
}

impl Visit for HumanVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // Metadata of events from the `log` crate, already in the line.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        self.result = self.write_field(name, value);
    }

    /// As the default formatter: the error's text, then its causes as
    /// `name.sources=[…]`.
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        self.result = self
            .write_field(name, &format_args!("{value}"))
            .and_then(|()| match value.source() {
                Some(source) => {
                    self.writer.write_char(' ')?;
                    self.write_name(&format!("{name}.sources"))?;
                    write!(EscEscaped(&mut self.writer), "{}", SourceList(source))
                }
                None => Ok(()),
            });
    }
}

impl HumanVisitor<'_> {
    fn write_field(&mut self, name: &str, value: &dyn fmt::Debug) -> fmt::Result {
        if self.seen {
            self.writer.write_char(' ')?;
        }
        self.seen = true;
        if name != "message" {
            self.write_name(name.strip_prefix("r#").unwrap_or(name))?;
        }
        write!(EscEscaped(&mut self.writer), "{value:?}")
    }

    /// `name=`, styled as the default formatter styles it.
    fn write_name(&mut self, name: &str) -> fmt::Result {
        if self.writer.has_ansi_escapes() {
            write!(self.writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")
        } else {
            write!(self.writer, "{name}=")
        }
    }
}

/// An error's chain of causes, `[first, second, …]`.
struct SourceList<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for SourceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut cause = Some(self.0);
        while let Some(error) = cause {
            list.entry(&format_args!("{error}"));
            cause = error.source();
        }
        list.finish()
    }
}

/// Writes through to `0`, with each ESC as `\x1b`.
struct EscEscaped<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for EscEscaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut parts = text.split('\x1b');
        if let Some(first) = parts.next() {
            self.0.write_str(first)?;
        }
        for part in parts {
            self.0.write_str("\\x1b")?;
            self.0.write_str(part)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::one_line::{OneLine, Style};
    use crate::logging::tests_support::Captured;

    fn logged(colour: bool, log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(colour)
            .without_time()
            .with_target(false)
            .fmt_fields(HumanFields)
            .with_writer(move || OneLine::new(writer.clone(), Style::Human { colour }))
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        captured.text()
    }

    /// A vendor's text in a field cannot send the terminal an escape
    /// sequence, even a colour one, while the formatter's colours pass (the
    /// line's own writer let any `ESC [ … m` through; lifecycle review,
    /// 2026-12-04).
    #[test]
    fn an_esc_in_a_value_is_escaped_and_the_formatters_colours_pass() {
        let line = logged(true, || {
            tracing::warn!(detail = %"\x1b[8mhidden", code = ?"\x1b[31m", "session ended");
        });
        assert!(
            !line.contains("\x1b[8m") && !line.contains("\x1b[31m"),
            "{line:?}"
        );
        assert!(line.contains("\\x1b[8mhidden"), "{line:?}");
        assert!(
            line.contains("\x1b[33m WARN\x1b[0m"),
            "the level's colour: {line:?}"
        );
        assert!(
            line.contains("\x1b[3mdetail\x1b[0m\x1b[2m=\x1b[0m"),
            "the name's style: {line:?}"
        );
    }

    /// Without colour the line is the default formatter's.
    #[test]
    fn without_colour_the_fields_read_as_the_default_formatters() {
        let line = logged(false, || {
            // `log.*`: the metadata of an event from the `log` crate, left out.
            tracing::info!(account = "main", n = 3, why = %"a b", log.line = 7, "session connected");
        });
        assert_eq!(
            line,
            " INFO session connected account=\"main\" n=3 why=a b\n"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer \u{1b}[8m")]
    struct Outer(#[source] std::io::Error);

    /// An error field keeps its causes, as the default formatter writes
    /// them, and an ESC in them is escaped there too.
    #[test]
    fn an_error_field_lists_its_causes() {
        let error = Outer(std::io::Error::other("inner \u{1b}[8m"));
        let line = logged(false, || {
            tracing::warn!(
                error = &error as &(dyn std::error::Error + 'static),
                "failed"
            );
        });
        assert_eq!(
            line,
            " WARN failed error=outer \\x1b[8m error.sources=[inner \\x1b[8m]\n"
        );
    }
}
