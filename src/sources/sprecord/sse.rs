//! The SSE framing of a `/sys/events` body (the WHATWG "event stream"
//! interpretation): lines end with CRLF, LF or CR; `data:` lines accumulate;
//! a blank line dispatches; `:` lines are comments; a leading UTF-8 BOM is
//! skipped; bytes that are not UTF-8 are read as U+FFFD, as the standard's
//! "UTF-8 decode" does, and the event says so ([`SseEvent::lossy`]), so one
//! bad byte costs its characters, not the stream.
//!
//! Why our own and not `eventsource-stream`: its 0.2.3 panics on a stream that
//! starts with a BOM (it slices one byte into the three-byte BOM), the panic
//! message carries the payload, and it re-scans its whole buffer on every
//! chunk, so one large event costs quadratic CPU. Here bytes are scanned once
//! and nothing indexes into text.
//!
//! Guarantees: never panics on any input; a BOM is recognised even when split
//! across chunks; every complete event pushed is kept until taken with
//! [`SseParser::next_event`], in order (so a closing stream can still hand them on);
//! the event being built (its id, data, type and unfinished line) never holds
//! more than [`MAX_EVENT_BYTES`] (plus one chunk): past that,
//! [`SseError::TooLarge`]; so a dispatched event's id, type and data hold at
//! most [`MAX_EVENT_BYTES`] together. Events share their id rather than copy
//! it, so the events one chunk yields take memory in proportion to the chunk
//! (and one id), however large the id.

use std::collections::VecDeque;
use std::sync::Arc;

/// The UTF-8 encoding of U+FEFF, which the SSE spec lets a stream start with.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The most one event may hold (its id, `data:` lines, `event:` and the line
/// being read). SPRecord events are a few hundred bytes; this bounds the memory a
/// broken or hostile server can make a stream hold (an endless `data:` line).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The stream's last event id when this event was dispatched ("" if none yet).
    /// Shared, not copied: every event until the next `id:` holds the same one.
    pub id: Arc<str>,
    pub event: String,
    pub data: String,
    /// A `data:`, `event:` or `id:` line of it was not UTF-8: its invalid
    /// bytes were read as U+FFFD.
    pub lossy: bool,
}

/// Why the bytes could not be framed. Holds no payload text: callers log it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("an event is larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
}

/// An incremental parser: [`push`](SseParser::push) body chunks, take events.
#[derive(Debug)]
pub struct SseParser {
    /// The most one event may hold: [`MAX_EVENT_BYTES`] unless set smaller.
    limit: usize,
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The BOM check is done (the first bytes were seen).
    started: bool,
    /// The previous line ended with CR: a LF right after it is part of that line end.
    after_cr: bool,
    data: String,
    event: String,
    /// A line of the event being built was not UTF-8.
    lossy: bool,
    last_id: Arc<str>,
    ready: VecDeque<SseEvent>,
}

impl Default for SseParser {
    fn default() -> SseParser {
        SseParser::with_limit(MAX_EVENT_BYTES)
    }
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// A parser whose events may hold at most `limit` bytes instead of
    /// [`MAX_EVENT_BYTES`]: the same checks at a size a fuzzer's inputs reach
    /// (fuzz/src/lib.rs `upstream_sse`).
    pub fn with_limit(limit: usize) -> SseParser {
        SseParser {
            limit,
            line: Vec::new(),
            started: false,
            after_cr: false,
            data: String::new(),
            event: String::new(),
            lossy: false,
            last_id: Arc::from(""),
            ready: VecDeque::new(),
        }
    }

    /// Feeds one chunk of the body.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), SseError> {
        if !self.started {
            // The BOM may arrive split across chunks: hold its first bytes
            // until it is complete or proven not to be one.
            let held = self.line.len();
            let take = (BOM.len() - held).min(chunk.len());
            self.line.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
                return Ok(());
            }
            self.started = true;
            let head = std::mem::take(&mut self.line);
            let head = head.strip_prefix(BOM).unwrap_or(&head);
            self.feed(head)?;
        }
        self.feed(chunk)
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        let mut rest = bytes;
        while let Some(first) = rest.first() {
            if self.after_cr {
                self.after_cr = false;
                if *first == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
                None => {
                    self.line.extend_from_slice(rest);
                    self.check_size()?;
                    break;
                }
                Some(end) => {
                    self.after_cr = rest[end] == b'\r';
                    if self.line.is_empty() {
                        self.line_done(&rest[..end]);
                    } else {
                        self.line.extend_from_slice(&rest[..end]);
                        let line = std::mem::take(&mut self.line);
                        self.line_done(&line);
                    }
                    self.check_size()?;
                    rest = &rest[end + 1..];
                }
            }
        }
        Ok(())
    }

    fn check_size(&self) -> Result<(), SseError> {
        // The id counts too: every event dispatched carries it.
        let held = self.last_id.len() + self.data.len() + self.event.len() + self.line.len();
        if held > self.limit {
            return Err(SseError::TooLarge);
        }
        Ok(())
    }

    /// The last `id:` read, even of an event not complete yet ("" if none).
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    fn line_done(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line.first() == Some(&b':') {
            // A comment (keep-alive): nothing to keep.
            return;
        }
        let text = String::from_utf8_lossy(line);
        let replaced = matches!(text, std::borrow::Cow::Owned(_));
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*text, ""),
        };
        match field {
            "data" => {
                self.lossy |= replaced;
                self.data.push_str(value);
                self.data.push('\n');
            }
            "event" => {
                self.lossy |= replaced;
                value.clone_into(&mut self.event);
            }
            // The spec ignores an id holding NUL.
            "id" if !value.contains('\0') => {
                // The id read is the resume point sent back: say it changed.
                self.lossy |= replaced;
                self.last_id = Arc::from(value);
            }
            // `retry:` is ignored on purpose: reconnect delays are ours (backoff,
            // busy and auth delays), not the server's to shorten.
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        let lossy = std::mem::take(&mut self.lossy);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the '\n' after the last data line
        self.ready.push_back(SseEvent {
            id: Arc::clone(&self.last_id),
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            lossy,
        });
    }

    /// The next complete event, oldest first.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        for c in chunks {
            p.push(c).unwrap();
        }
        std::iter::from_fn(|| p.next_event()).collect()
    }

    fn ev(id: &str, data: &str) -> SseEvent {
        SseEvent {
            id: id.into(),
            event: "message".into(),
            data: data.into(),
            lossy: false,
        }
    }

    #[test]
    fn a_leading_bom_is_skipped_even_split_across_chunks() {
        let whole = "\u{feff}id: 1\ndata: {\"a\":1}\n\n".as_bytes();
        let want = vec![ev("1", "{\"a\":1}")];
        assert_eq!(parse(&[whole]), want);
        for split in 1..whole.len() {
            assert_eq!(
                parse(&[&whole[..split], &whole[split..]]),
                want,
                "split {split}"
            );
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(parse(&bytes), want);
        // Only at the start: a later U+FEFF is data.
        assert_eq!(
            parse(&["data: \u{feff}x\n\n".as_bytes()]),
            vec![ev("", "\u{feff}x")]
        );
        // Short streams that merely look like a BOM's start.
        assert_eq!(parse(&[b"\xEF"]), vec![]);
        assert_eq!(parse(&[b"data: 1\n\n"]), vec![ev("", "1")]);
    }

    #[test]
    fn line_ends_fields_comments_and_ids_follow_the_spec() {
        let got = parse(&[
            b": keep-alive\r\n\r\ndata:a\r\ndata: b\rid: 7\r\r",
            b"event: x\ndata\n\nid: 8\n\ndata: c\n",
            b"\n",
        ]);
        assert_eq!(
            got,
            vec![
                ev("7", "a\nb"),
                SseEvent {
                    id: "7".into(),
                    event: "x".into(),
                    data: "".into(),
                    lossy: false,
                },
                ev("8", "c"),
            ]
        );
        // A CR at a chunk's end and its LF at the next one's start are one line end.
        assert_eq!(parse(&[b"data: 1\r", b"\n\r", b"\n"]), vec![ev("", "1")]);
    }

    #[test]
    fn an_event_over_the_limit_is_refused_and_its_id_kept() {
        // Just under the limit is fine (field names and line ends count too).
        let fits = format!("data: {}\n\n", "x".repeat(MAX_EVENT_BYTES - 16));
        assert_eq!(parse(&[fits.as_bytes()]).len(), 1);

        let mut p = SseParser::new();
        p.push(b"id: 41\ndata: ok\n\nid: 42\ndata: ").unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut pushed = 0;
        let err = loop {
            match p.push(&chunk) {
                Ok(()) => pushed += chunk.len(),
                Err(e) => break e,
            }
            assert!(pushed <= MAX_EVENT_BYTES, "no limit");
        };
        assert_eq!(err, SseError::TooLarge);
        assert_eq!(p.next_event(), Some(ev("41", "ok")));
        assert_eq!(p.last_event_id(), "42");

        // Many data lines add up.
        let mut p = SseParser::new();
        let line = format!("data: {}\n", "y".repeat(1000));
        let err = (0..2000).find_map(|_| p.push(line.as_bytes()).err());
        assert_eq!(err, Some(SseError::TooLarge));
    }

    #[test]
    fn the_id_counts_towards_the_event_limit() {
        // fuzz/regressions/upstream_sse/id-not-counted-in-the-event-limit: the
        // id was left out, so an event could hold a limit's worth of data plus
        // an id as large (and each later event a copy of that id).
        let mut p = SseParser::new();
        let id = "7".repeat(MAX_EVENT_BYTES - 8);
        let stream = format!("id: {id}\ndata: {}\n\n", "x".repeat(64));
        assert_eq!(p.push(stream.as_bytes()), Err(SseError::TooLarge));
        assert_eq!(p.next_event(), None);

        let mut p = SseParser::with_limit(16);
        assert_eq!(p.push(b"id: 12345678\ndata: 1234567\n\n"), Ok(()));
        assert_eq!(p.next_event(), Some(ev("12345678", "1234567")));
        assert_eq!(
            p.push(b"id: 123456789\ndata: 1234567\n\n"),
            Err(SseError::TooLarge)
        );
        assert_eq!(p.next_event(), None);
    }

    #[test]
    fn the_events_of_a_chunk_share_one_copy_of_the_id() {
        // Each event used to get its own copy of the id: after an id near the
        // limit, a 64 KiB chunk of `data\n\n` made 10,922 copies of 1 MiB.
        let mut p = SseParser::new();
        let id = "7".repeat(4096);
        p.push(format!("id: {id}\n").as_bytes()).unwrap();
        p.push(&b"data\n\n".repeat(1000)).unwrap();
        let events: Vec<SseEvent> = std::iter::from_fn(|| p.next_event()).collect();
        assert_eq!(events.len(), 1000);
        assert_eq!(&*events[999].id, id);
        assert!(
            events
                .iter()
                .all(|e| e.id.as_ptr() == events[0].id.as_ptr()),
            "the id is copied into each event"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_read_as_replacement_characters_and_the_stream_goes_on() {
        let events = parse(&[
            b"id: 1\ndata: {\"a\":\"\xCF\xB8\xFF\xFE\"}\n\n",
            b"id: 2\ndata: {\"a\":\"ok\"}\n\n",
            b"id: 3\xFF\nevent: x\xC3\ndata: 3\n\n",
        ]);
        let mut first = ev("1", "{\"a\":\"\u{3f8}\u{fffd}\u{fffd}\"}");
        first.lossy = true;
        let mut third = ev("3\u{fffd}", "3");
        third.event = "x\u{fffd}".into();
        third.lossy = true;
        assert_eq!(events, vec![first, ev("2", "{\"a\":\"ok\"}"), third]);
        // An id that is not UTF-8 marks the event too: it is the resume
        // point sent back as `Last-Event-ID`, which the server may not match.
        let mut fourth = ev("\u{fffd}", "4");
        fourth.lossy = true;
        assert_eq!(parse(&[b"id: \xFF\ndata: 4\n\n"]), vec![fourth]);
        // So does an event name alone.
        let mut fifth = ev("", "5");
        fifth.event = "x\u{fffd}".into();
        fifth.lossy = true;
        assert_eq!(parse(&[b"event: x\xC3\ndata: 5\n\n"]), vec![fifth]);
    }

    #[test]
    fn an_id_holding_nul_is_ignored() {
        let got = parse(&[b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"]);
        assert_eq!(got, vec![ev("1", "a"), ev("1", "b")]);
    }

    #[test]
    fn the_event_name_counts_towards_the_event_limit() {
        let mut p = SseParser::with_limit(16);
        assert_eq!(
            p.push(b"event: 12345678901234567\ndata: 1\n\n"),
            Err(SseError::TooLarge)
        );
    }
}
