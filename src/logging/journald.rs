//! Log levels journald can read: under systemd, each line starts with the
//! sd-daemon level prefix (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug
//! and trace).
//!
//! journald reads a service's stderr as text and records every line at the
//! unit's `SyslogLevel` (info) unless the line starts with such a prefix,
//! which it strips (`SyslogLevelPrefix=yes`, its default): without it,
//! `journalctl -p err` showed none of the relay's errors, and a pipeline
//! mapping PRIORITY to a level filed them as info (operations review,
//! 2026-12-06). The message journald keeps is the line without its prefix,
//! so a JSON line stays one JSON object.
//!
//! Guarantees: the prefix is written only when fd 2 is the stream
//! `JOURNAL_STREAM` names (systemd's rule: its `<dev>:<inode>` match fd 2's
//! `st_dev` and `st_ino`), so a terminal, a file or a pipe, even one a
//! process under systemd redirected stderr to, gets the lines as before.
//! Every line of an event's text gets its prefix, in the same write as the
//! line ([`OneLine`] already makes one event one line; this does not count
//! on it), so no line reaches journald at the default level.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::str::FromStr;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use super::one_line::{OneLine, Style};

/// Whether the process's stderr is connected to journald.
pub fn stderr_is_journald() -> bool {
    std::env::var("JOURNAL_STREAM").is_ok_and(|stream| names_the_stream(&stream, io::stderr()))
}

/// Whether `journal_stream` (`JOURNAL_STREAM`'s `<dev>:<inode>`, decimal)
/// names the file `fd` is open on. A value that is not two numbers, or an
/// fd that cannot be examined, names nothing: the lines are then written
/// without a prefix, as a terminal wants them.
fn names_the_stream(journal_stream: &str, fd: impl AsFd) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|stat| same_file(journal_stream, stat.st_dev, stat.st_ino))
}

/// Whether `journal_stream` is `dev:ino`. Generic over the numbers' types:
/// `st_dev` and `st_ino` are of different widths on different targets.
fn same_file<D, I>(journal_stream: &str, dev: D, ino: I) -> bool
where
    D: FromStr + PartialEq,
    I: FromStr + PartialEq,
{
    journal_stream.split_once(':').is_some_and(|(d, i)| {
        d.parse::<D>().is_ok_and(|d| d == dev) && i.parse::<I>().is_ok_and(|i| i == ino)
    })
}

/// The sd-daemon prefix of an event at `level` (sd-daemon.h's `SD_ERR`,
/// `SD_WARNING`, `SD_INFO`, `SD_DEBUG`).
pub fn level_prefix(level: Level) -> &'static [u8] {
    match level {
        Level::ERROR => b"<3>",
        Level::WARN => b"<4>",
        Level::INFO => b"<6>",
        Level::DEBUG | Level::TRACE => b"<7>",
    }
}

/// A writer that starts each line of what it is given with `prefix`.
/// One per event: a write that does not end a line leaves the next one to
/// continue it.
pub struct Prefixed<W> {
    inner: W,
    prefix: Option<&'static [u8]>,
    at_line_start: bool,
}

impl<W> Prefixed<W> {
    pub fn new(inner: W, prefix: Option<&'static [u8]>) -> Prefixed<W> {
        Prefixed {
            inner,
            prefix,
            at_line_start: true,
        }
    }
}

impl<W: Write> Write for Prefixed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(prefix) = self.prefix else {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        };
        // One write_all of prefix and line together: stderr's lock is held
        // per call, so a line of another thread cannot come between them.
        let mut out = Vec::with_capacity(buf.len() + prefix.len());
        for &byte in buf {
            if self.at_line_start {
                out.extend_from_slice(prefix);
            }
            out.push(byte);
            self.at_line_start = byte == b'\n';
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The log's writer: each event through [`OneLine`] into a writer `make`
/// returns (stderr), its line prefixed with the event's level when
/// `journald`.
#[derive(Clone, Copy)]
pub struct EventLines<F> {
    make: F,
    style: Style,
    journald: bool,
}

impl<F> EventLines<F> {
    pub fn new(make: F, style: Style, journald: bool) -> EventLines<F> {
        EventLines {
            make,
            style,
            journald,
        }
    }
}

impl<'a, F, W> MakeWriter<'a> for EventLines<F>
where
    F: Fn() -> W + 'a,
    W: Write,
{
    type Writer = OneLine<Prefixed<W>>;

    /// Not used for events (tracing-subscriber asks
    /// [`MakeWriter::make_writer_for`]); journald's own default, info.
    fn make_writer(&'a self) -> Self::Writer {
        self.writer(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.writer(*meta.level())
    }
}

impl<F: Fn() -> W, W: Write> EventLines<F> {
    fn writer(&self, level: Level) -> OneLine<Prefixed<W>> {
        let prefix = self.journald.then(|| level_prefix(level));
        OneLine::new(Prefixed::new((self.make)(), prefix), self.style)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::tests_support::Captured;

    /// What one event at each level writes through [`EventLines`].
    fn lines(style: Style, journald: bool) -> String {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .without_time()
            .with_writer(EventLines::new(move || sink.clone(), style, journald));
        let log = || {
            tracing::error!("journal reached max_size");
            tracing::warn!("session ended");
            tracing::info!("serving");
            tracing::debug!("frame");
            tracing::trace!("byte");
        };
        match style {
            Style::Json => tracing::subscriber::with_default(
                subscriber.json().flatten_event(true).finish(),
                log,
            ),
            Style::Human { .. } => tracing::subscriber::with_default(subscriber.finish(), log),
        }
        captured.text()
    }

    #[test]
    fn under_journald_each_line_starts_with_its_levels_prefix() {
        let human = lines(Style::Human { colour: false }, true);
        let prefixes: Vec<&str> = human.lines().map(|l| &l[..3]).collect();
        assert_eq!(prefixes, ["<3>", "<4>", "<6>", "<7>", "<7>"], "{human}");
        assert!(
            human.lines().nth(2).unwrap().ends_with("serving"),
            "{human}"
        );

        let json = lines(Style::Json, true);
        let mut levels = Vec::new();
        for line in json.lines() {
            let (prefix, message) = line.split_at(3);
            // What journald keeps once it strips the prefix: one JSON object.
            let message: serde_json::Value = serde_json::from_str(message).unwrap();
            levels.push((
                prefix.to_owned(),
                message["level"].as_str().unwrap().to_owned(),
            ));
        }
        assert_eq!(
            levels,
            [
                ("<3>", "ERROR"),
                ("<4>", "WARN"),
                ("<6>", "INFO"),
                ("<7>", "DEBUG"),
                ("<7>", "TRACE")
            ]
            .map(|(p, l)| (p.to_owned(), l.to_owned()))
        );
    }

    #[test]
    fn elsewhere_the_lines_are_as_before() {
        let human = lines(Style::Human { colour: false }, false);
        assert_eq!(human.lines().count(), 5);
        assert!(human.lines().all(|l| !l.starts_with('<')), "{human}");
        assert!(human.starts_with("ERROR "), "{human}");
        let json = lines(Style::Json, false);
        assert!(json.lines().all(|l| l.starts_with('{')), "{json}");
    }

    #[test]
    fn a_line_break_in_a_message_cannot_make_a_line_without_a_prefix() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(EventLines::new(
                move || sink.clone(),
                Style::Human { colour: false },
                true,
            ))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("refused: Lỗi\n<3>forged");
        });
        // OneLine escapes the break: one line, one prefix.
        assert_eq!(captured.text(), "<4> WARN refused: Lỗi\\n<3>forged\n");
        // And the prefixing writer alone puts it on every line it is given.
        let mut out = Vec::new();
        let mut prefixed = Prefixed::new(&mut out, Some(level_prefix(Level::WARN)));
        prefixed.write_all(b"a\nb").unwrap();
        prefixed.write_all(b"c\n\nd\n").unwrap();
        assert_eq!(out, b"<4>a\n<4>bc\n<4>\n<4>d\n");
    }

    #[test]
    fn the_journal_stream_must_be_the_file_fd_2_is() {
        let file = tempfile::tempfile().unwrap();
        let stat = rustix::fs::fstat(&file).unwrap();
        let (dev, ino) = (stat.st_dev, stat.st_ino);
        assert!(names_the_stream(&format!("{dev}:{ino}"), &file));
        // Another file on the same device; a value that is not two numbers.
        assert!(!names_the_stream(&format!("{dev}:{}", ino + 1), &file));
        assert!(!names_the_stream(&format!("{}:{ino}", dev + 1), &file));
        for garbage in [
            "",
            ":",
            "x:y",
            &format!("{dev}"),
            &format!("{dev}:{ino}:1"),
            &format!(" {dev}:{ino}"),
        ] {
            assert!(!names_the_stream(garbage, &file), "{garbage:?}");
        }
        // A JOURNAL_STREAM inherited from a parent under systemd while this
        // process's stderr went elsewhere names a file fd 2 is not.
        assert!(!names_the_stream(&format!("{dev}:{ino}"), io::stderr()));
    }
}
