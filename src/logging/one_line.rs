//! One log event, one line: the writer under the human log format escapes
//! what a vendor's text could use to forge or hide lines.
//!
//! Log fields carry text the relay did not write (a Voip24h server's `error`
//! message, an SPRecord refusal's body, a proxy's reason). tracing-subscriber
//! escapes ANSI sequences in the message only, and line breaks nowhere, so a
//! `\n` in such a field started a line that read as the relay's own (a forged
//! `ERROR`, or `<0>` that journald takes as a priority), and an `ESC [2J`
//! reached the operator's terminal.
//!
//! Guarantees: every write of one formatted event (tracing-subscriber writes
//! each event whole) comes out as one line: its final `\n` is kept, any
//! other line break and every control character but a tab is written as an
//! escape (`\n`, `\r`, `\x1b`, `\u{9b}`), and so are the characters that
//! reorder or break text on screen ([`acts_on_a_terminal`]). On a terminal
//! with colour, the colour sequences the formatter writes (`ESC [ digits ; m`)
//! pass; any other escape sequence does not (an ESC inside a field's value
//! never gets here: [`super::fields`] escapes it first). The JSON format escapes line
//! breaks and C0 controls itself; in it the rest are written as JSON's
//! `\uXXXX` escapes (they can only be inside strings), the same JSON to a
//! reader. Text that needs none of this is written as it is, without a copy.

use std::borrow::Cow;
use std::io::{self, Write};

/// Characters JSON writes as they are that a terminal acts on or that
/// reorder or break text on screen: DEL, the C1 controls (U+009B is a
/// one-character `ESC [` to some terminals), the bidirectional marks,
/// embeddings, overrides and isolates, and the line and paragraph separators.
pub fn acts_on_a_terminal(c: char) -> bool {
    matches!(
        c,
        '\u{7f}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// How the log lines are written.
#[derive(Clone, Copy, Debug)]
pub enum Style {
    /// tracing-subscriber's text; `colour`: `ESC [ … m` sequences pass.
    Human { colour: bool },
    /// One JSON object per line.
    Json,
}

/// A writer that escapes each event's text before `inner` gets it.
pub struct OneLine<W> {
    inner: W,
    style: Style,
}

impl<W> OneLine<W> {
    pub fn new(inner: W, style: Style) -> OneLine<W> {
        OneLine { inner, style }
    }
}

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        match escaped(body, self.style) {
            None => self.inner.write_all(buf)?,
            Some(mut line) => {
                line.extend_from_slice(end);
                self.inner.write_all(&line)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `text` with every character that could break or hide a line escaped, or
/// `None` when it holds none.
fn escaped(text: &[u8], style: Style) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(text);
    let out = match style {
        Style::Json => escape_each(&text, json_escape),
        Style::Human { colour } => escape_each(&text, |at, ch| match ch {
            '\t' => None,
            '\n' => Some("\\n".to_owned()),
            '\r' => Some("\\r".to_owned()),
            '\x1b' if colour && colour_sequence_at(&text[at..]) => None,
            '\0'..='\x1f' | '\x7f' => Some(format!("\\x{:02x}", u32::from(ch))),
            ch if acts_on_a_terminal(ch) => Some(format!("\\u{{{:x}}}", u32::from(ch))),
            _ => None,
        }),
    };
    match (out, text) {
        (Some(out), _) => Some(out.into_bytes()),
        // Bytes that were not UTF-8 (the formatter writes text, so only a
        // bug) are written as read, with U+FFFD.
        (None, Cow::Owned(text)) => Some(text.into_bytes()),
        (None, Cow::Borrowed(_)) => None,
    }
}

/// JSON text with the characters of [`acts_on_a_terminal`] written as
/// `\uXXXX` escapes. They can only be inside strings in JSON, so it is the
/// same JSON to a reader; JSON itself escapes line breaks and C0 controls.
pub fn json_escaped(text: &str) -> Cow<'_, str> {
    escape_each(text, json_escape).map_or(Cow::Borrowed(text), Cow::Owned)
}

fn json_escape(_at: usize, ch: char) -> Option<String> {
    acts_on_a_terminal(ch).then(|| format!("\\u{:04x}", u32::from(ch)))
}

/// `text` with each character `escape` (given its byte offset) returns a
/// replacement for replaced; `None` when none is, without a copy.
fn escape_each(text: &str, escape: impl Fn(usize, char) -> Option<String>) -> Option<String> {
    let mut out: Option<String> = None;
    for (at, ch) in text.char_indices() {
        match (escape(at, ch), &mut out) {
            (Some(escape), Some(out)) => out.push_str(&escape),
            (Some(escape), None) => {
                let mut line = String::with_capacity(text.len() + 16);
                line.push_str(&text[..at]);
                line.push_str(&escape);
                out = Some(line);
            }
            (None, Some(out)) => out.push(ch),
            (None, None) => {}
        }
    }
    out
}

/// Whether `text` starts with a colour sequence: `ESC [`, digits and `;`, `m`.
fn colour_sequence_at(text: &str) -> bool {
    text.strip_prefix("\x1b[").is_some_and(|rest| {
        let params = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b';');
        rest.as_bytes().get(params.count()) == Some(&b'm')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(text: &str, colour: bool) -> String {
        written_as(text, Style::Human { colour })
    }

    fn written_as(text: &str, style: Style) -> String {
        let mut out = Vec::new();
        let mut writer = OneLine::new(&mut out, style);
        assert_eq!(writer.write(text.as_bytes()).unwrap(), text.len());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_flush_reaches_the_inner_writer() {
        let mut writer = OneLine::new(io::BufWriter::new(Vec::new()), Style::Json);
        writer.write_all(b"{}\n").unwrap();
        assert!(writer.inner.get_ref().is_empty());
        writer.flush().unwrap();
        assert_eq!(writer.inner.get_ref().as_slice(), b"{}\n");
    }

    #[test]
    fn an_event_with_a_line_break_inside_stays_one_line() {
        let forged = "2026-12-02T04:30:00Z  WARN callrelay: session ended detail=Lỗi\n2026-12-02T04:30:00Z ERROR callrelay::app: forged\n";
        assert_eq!(
            written(forged, false),
            "2026-12-02T04:30:00Z  WARN callrelay: session ended detail=Lỗi\\n2026-12-02T04:30:00Z ERROR callrelay::app: forged\n"
        );
        assert_eq!(written("a\r\nb\n", false), "a\\r\\nb\n");
        assert_eq!(written("\n<0>x\n", false), "\\n<0>x\n");
    }

    #[test]
    fn controls_and_reordering_characters_are_escaped_and_tabs_kept() {
        assert_eq!(
            written(
                "x\x1b]0;pwned\x07\t\x7f\u{9b}2J\u{202e}cba\u{2066}\n",
                false
            ),
            "x\\x1b]0;pwned\\x07\t\\x7f\\u{9b}2J\\u{202e}cba\\u{2066}\n"
        );
        // Vietnamese and Cyrillic text are not controls.
        assert_eq!(
            written("Nguyễn Văn A, Иванов\n", false),
            "Nguyễn Văn A, Иванов\n"
        );
    }

    #[test]
    fn marks_and_separators_that_move_text_are_escaped_too() {
        assert_eq!(
            written("a\u{61c}\u{200e}\u{200f}\u{2028}\u{2029}b\u{a0}\n", false),
            "a\\u{61c}\\u{200e}\\u{200f}\\u{2028}\\u{2029}b\u{a0}\n"
        );
    }

    #[test]
    fn json_lines_get_json_escapes_for_what_json_leaves_as_it_is() {
        let line = "{\"account\":\"a\\n\u{9b}2J\u{202e}\u{200f}x\"}\n";
        let out = written_as(line, Style::Json);
        assert_eq!(out, "{\"account\":\"a\\n\\u009b2J\\u202e\\u200fx\"}\n");
        let read: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            read,
            serde_json::from_str::<serde_json::Value>(line).unwrap()
        );
    }

    #[test]
    fn colour_passes_on_a_terminal_and_other_sequences_do_not() {
        let coloured =
            "\x1b[2m2026\x1b[0m \x1b[33m WARN\x1b[0m x=\x1b[2J\x1b[1;31mred\x1b[0m\x1b[\n";
        assert_eq!(
            written(coloured, true),
            "\x1b[2m2026\x1b[0m \x1b[33m WARN\x1b[0m x=\\x1b[2J\x1b[1;31mred\x1b[0m\\x1b[\n"
        );
        // Without colour, no escape sequence passes at all.
        assert_eq!(written("\x1b[0m\n", false), "\\x1b[0m\n");
    }

    #[test]
    fn text_with_nothing_to_escape_is_written_as_it_is() {
        assert_eq!(
            escaped(b"plain text, tab\there", Style::Human { colour: false }),
            None
        );
        assert_eq!(escaped(b"{\"a\":\"Nguy\xe1\xbb\x85n\"}", Style::Json), None);
        assert_eq!(written("plain\n", false), "plain\n");
        assert_eq!(written("no line end", false), "no line end");
    }
}
