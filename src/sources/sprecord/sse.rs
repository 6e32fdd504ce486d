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
//! the event being built (the id it carries, its data, type and the line
//! being read, as received) never holds more than [`MAX_EVENT_BYTES`] (plus
//! one chunk), so a dispatched event's id, type and data hold at most
//! [`MAX_EVENT_BYTES`] together. An event that would hold more is skipped,
//! not the stream: the rest of it is dropped as it arrives but for its `id:`
//! lines (each within the limit; a longer one is dropped too, and the id
//! before it kept), and its end yields [`SseItem::Skipped`] with the id at
//! that point, its own `id:` included wherever it stood, so a stream resumes
//! after it and reads on. An `id:` line is not counted with the id it
//! replaces: counted, an id near the limit made every later event too large,
//! for good; while one is read, the parser holds the old id besides (the
//! stream holds it anyway, as where it resumes). What is yielded, and the last id,
//! do not depend on how the bytes were cut into chunks (a line counts as
//! received, field name and all, so one over the limit at the end of a chunk
//! is over it whole). Events share their id rather than copy it, so the items
//! one chunk yields take memory in proportion to the chunk (and one id),
//! however large the id.

use std::collections::VecDeque;
use std::sync::Arc;

/// The UTF-8 encoding of U+FEFF, which the SSE spec lets a stream start with.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The most one event may hold (its id, `data:` lines, `event:` and the line
/// being read). SPRecord events are a few hundred bytes; this bounds the memory a
/// broken or hostile server can make a stream hold (an endless `data:` line).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The slots an emptied queue of parsed events keeps. One chunk is parsed
/// whole, and a burst in one chunk (a device's history sent again after
/// `Last-Event-ID`, a backlog) can be thousands of events, up to about
/// 60,000 slots for tiny ones: kept, that is up to some 4 MB per stream until
/// it reconnects, three streams an account; a stream keeping up needs a
/// handful.
const READY_SLOTS_KEPT: usize = 64;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The stream's last event id when this event was dispatched: before
    /// the first `id:`, the one the parser started with (see
    /// [`SseParser::resuming_after`]; "" if none). Shared, not copied:
    /// every event until the next `id:` holds the same one.
    pub id: Arc<str>,
    pub event: String,
    pub data: String,
    /// A `data:`, `event:` or `id:` line of it was not UTF-8: its invalid
    /// bytes were read as U+FFFD.
    pub lossy: bool,
}

/// What the stream's next blank line ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// An event over the limit: none of its data or type was kept.
    Skipped {
        /// The stream's last event id at its end, as [`SseEvent::id`].
        id: Arc<str>,
        /// As [`SseEvent::lossy`], for the lines of it read (its `id:` among them).
        lossy: bool,
    },
}

/// What a line is, as far as the bytes read of it tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// `i` or `id` so far, which may start an `id:` line or not: two bytes,
    /// nothing to count yet.
    Undecided,
    /// Nothing to keep, however long.
    Comment,
    /// The id it holds replaces the stream's.
    Id,
    Other,
}

impl Line {
    /// `bytes`, all of a line when `whole`, else its start.
    fn of(bytes: &[u8], whole: bool) -> Line {
        if bytes.first() == Some(&b':') {
            Line::Comment
        } else if bytes.starts_with(b"id:") || (whole && bytes == b"id") {
            Line::Id
        } else if !whole && b"id".starts_with(bytes) {
            Line::Undecided
        } else {
            Line::Other
        }
    }
}

/// An incremental parser: [`push`](SseParser::push) body chunks, take events.
#[derive(Debug)]
pub struct SseParser {
    /// The most one event may hold: [`MAX_EVENT_BYTES`] unless set smaller.
    limit: usize,
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The line not yet ended is not kept: its bytes are dropped up to its end.
    dropping_line: bool,
    /// The BOM check is done (the first bytes were seen).
    started: bool,
    /// The previous line ended with CR: a LF right after it is part of that line end.
    after_cr: bool,
    data: String,
    event: String,
    /// A line of the event being built was not UTF-8.
    lossy: bool,
    /// The event being built went over the limit: only its `id:` lines are read.
    too_large: bool,
    last_id: Arc<str>,
    ready: VecDeque<SseItem>,
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

    /// A parser for a connection that sent `last_event_id` as
    /// `Last-Event-ID`: events before the first `id:` carry it, as browsers'
    /// EventSource implementations seed theirs, since what a server sends
    /// again after that id shares it (why the resume point needs them:
    /// `resume`'s module doc). The id counts towards the limit as one read
    /// from the stream.
    pub fn resuming_after(last_event_id: Arc<str>) -> SseParser {
        SseParser {
            last_id: last_event_id,
            ..SseParser::default()
        }
    }

    /// A parser whose events may hold at most `limit` bytes instead of
    /// [`MAX_EVENT_BYTES`]: the same checks at a size a fuzzer's inputs reach
    /// (fuzz/src/lib.rs `upstream_sse`).
    pub fn with_limit(limit: usize) -> SseParser {
        SseParser {
            limit,
            line: Vec::new(),
            dropping_line: false,
            started: false,
            after_cr: false,
            data: String::new(),
            event: String::new(),
            lossy: false,
            too_large: false,
            last_id: Arc::from(""),
            ready: VecDeque::new(),
        }
    }

    /// Feeds one chunk of the body.
    pub fn push(&mut self, mut chunk: &[u8]) {
        if !self.started {
            // The BOM may arrive split across chunks: hold its first bytes
            // until it is complete or proven not to be one.
            let held = self.line.len();
            let take = (BOM.len() - held).min(chunk.len());
            self.line.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
                return;
            }
            self.started = true;
            let head = std::mem::take(&mut self.line);
            self.feed(head.strip_prefix(BOM).unwrap_or(&head));
        }
        self.feed(chunk);
    }

    fn feed(&mut self, bytes: &[u8]) {
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
                    if !self.dropping_line {
                        self.line.extend_from_slice(rest);
                        if !self.keeps(Line::of(&self.line, false), self.line.len()) {
                            self.line = Vec::new();
                            self.dropping_line = true;
                        }
                    }
                    break;
                }
                Some(end) => {
                    self.after_cr = rest[end] == b'\r';
                    if std::mem::take(&mut self.dropping_line) {
                        // Its end: not a blank line, whatever is left of it.
                    } else if self.line.is_empty() {
                        self.line_done(&rest[..end]);
                    } else {
                        self.line.extend_from_slice(&rest[..end]);
                        let line = std::mem::take(&mut self.line);
                        self.line_done(&line);
                    }
                    rest = &rest[end + 1..];
                }
            }
        }
    }

    /// Whether a line of `kind`, `len` bytes read so far (or all of it), may
    /// be kept; an event it takes past the limit is skipped from then on.
    /// What fails for part of a line fails for all of it, against the same
    /// event, so a line is kept or dropped, and an event skipped, the same
    /// whatever the chunks.
    fn keeps(&mut self, kind: Line, len: usize) -> bool {
        let event = self.data.len() + self.event.len() + len;
        match kind {
            Line::Undecided => true,
            Line::Comment => false,
            // Not counted with the id it replaces.
            Line::Id => {
                if event > self.limit {
                    self.skip();
                }
                len <= self.limit
            }
            Line::Other => {
                if !self.too_large && self.last_id.len() + event > self.limit {
                    self.skip();
                }
                !self.too_large
            }
        }
    }

    /// The event being built is over the limit: what it held is let go.
    fn skip(&mut self) {
        self.too_large = true;
        self.data = String::new();
        self.event = String::new();
    }

    /// The last `id:` read, even of an event not complete yet (before the
    /// first, the one the parser started with; "" if none).
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    fn line_done(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if !self.keeps(Line::of(line, true), line.len()) {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let replaced = matches!(text, std::borrow::Cow::Owned(_));
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*text, ""),
        };
        // Counted again as read: a U+FFFD takes three bytes where the byte
        // it replaces took one.
        let rest = self.data.len() + self.event.len();
        match field {
            "data" => {
                if self.last_id.len() + rest + value.len() + 1 > self.limit {
                    self.skip();
                    return;
                }
                self.lossy |= replaced;
                self.data.push_str(value);
                self.data.push('\n');
            }
            "event" => {
                if self.last_id.len() + self.data.len() + value.len() > self.limit {
                    self.skip();
                    return;
                }
                self.lossy |= replaced;
                value.clone_into(&mut self.event);
            }
            // The spec ignores an id holding NUL.
            "id" if !value.contains('\0') => {
                if rest + value.len() > self.limit {
                    self.skip();
                }
                if value.len() <= self.limit {
                    // The id read is the resume point sent back: say it changed.
                    self.lossy |= replaced;
                    self.last_id = Arc::from(value);
                }
            }
            // `retry:` is ignored on purpose: reconnect delays are ours (backoff,
            // busy and auth delays), not the server's to shorten.
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        let lossy = std::mem::take(&mut self.lossy);
        if std::mem::take(&mut self.too_large) {
            self.ready.push_back(SseItem::Skipped {
                id: Arc::clone(&self.last_id),
                lossy,
            });
            return;
        }
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the '\n' after the last data line
        self.ready.push_back(SseItem::Event(SseEvent {
            id: Arc::clone(&self.last_id),
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
            lossy,
        }));
    }

    /// What the next complete event was, oldest first.
    pub fn next_event(&mut self) -> Option<SseItem> {
        let item = self.ready.pop_front();
        if self.ready.is_empty() && self.ready.capacity() > READY_SLOTS_KEPT {
            self.ready.shrink_to(READY_SLOTS_KEPT);
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut p = SseParser::new();
        for c in chunks {
            p.push(c);
        }
        taken(&mut p)
    }

    fn taken(p: &mut SseParser) -> Vec<SseItem> {
        std::iter::from_fn(|| p.next_event()).collect()
    }

    /// A burst in one chunk filled the queue; once the stream took it, the
    /// slots stayed for the rest of the connection.
    #[test]
    fn an_emptied_queue_gives_back_its_slots() {
        let mut p = SseParser::new();
        p.push("data: x\n\n".repeat(20_000).as_bytes());
        assert!(p.ready.capacity() >= 20_000);
        assert_eq!(taken(&mut p).len(), 20_000);
        assert!(
            p.ready.capacity() <= READY_SLOTS_KEPT,
            "{} slots kept",
            p.ready.capacity()
        );
        p.push(b"data: y\n\n");
        assert_eq!(taken(&mut p), vec![SseItem::Event(event("", "y"))]);
    }

    fn event(id: &str, data: &str) -> SseEvent {
        SseEvent {
            id: id.into(),
            event: "message".into(),
            data: data.into(),
            lossy: false,
        }
    }

    fn ev(id: &str, data: &str) -> SseItem {
        SseItem::Event(event(id, data))
    }

    fn skipped(id: &str) -> SseItem {
        SseItem::Skipped {
            id: id.into(),
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
                SseItem::Event(SseEvent {
                    id: "7".into(),
                    event: "x".into(),
                    data: "".into(),
                    lossy: false,
                }),
                ev("8", "c"),
            ]
        );
        // A CR at a chunk's end and its LF at the next one's start are one line end.
        assert_eq!(parse(&[b"data: 1\r", b"\n\r", b"\n"]), vec![ev("", "1")]);
    }

    #[test]
    fn an_event_over_the_limit_is_skipped_its_id_kept_and_the_stream_read_on() {
        // Just under the limit is fine (field names and line ends count too).
        let fits = format!("data: {}\n\n", "x".repeat(MAX_EVENT_BYTES - 16));
        assert_eq!(parse(&[fits.as_bytes()]).len(), 1);

        // An endless line: dropped as it comes, the memory held stays
        // within the limit and a chunk.
        let mut p = SseParser::new();
        p.push(b"id: 41\ndata: ok\n\nid: 42\ndata: ");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            p.push(&chunk);
            let held = p.last_id.len() + p.data.capacity() + p.event.capacity() + p.line.capacity();
            assert!(
                held <= 2 * (MAX_EVENT_BYTES + chunk.len()),
                "{held} bytes held"
            );
        }
        assert!(p.too_large && p.dropping_line);
        assert_eq!(
            p.line.capacity() + p.data.capacity(),
            0,
            "its bytes are kept"
        );
        p.push(b"\n\ndata: next\n\n");
        assert_eq!(
            taken(&mut p),
            vec![ev("41", "ok"), skipped("42"), ev("42", "next")]
        );

        // Many data lines add up; the event after is read.
        let mut p = SseParser::new();
        let line = format!("data: {}\n", "y".repeat(1000));
        for _ in 0..2000 {
            p.push(line.as_bytes());
        }
        p.push(b"\nid: 7\ndata: after\n\n");
        assert_eq!(taken(&mut p), vec![skipped(""), ev("7", "after")]);
    }

    /// An event's `id:` may follow its data: the stream ended inside the
    /// data and resumed before it, so a server that keeps history sent the
    /// same event again, for ever. Its id is read now, however the bytes come.
    #[test]
    fn an_id_after_the_data_of_an_event_over_the_limit_is_its_id() {
        let stream = format!(
            "data: {}\nid: 5\n\ndata: next\nid: 6\n\n",
            "x".repeat(MAX_EVENT_BYTES + 1)
        );
        let want = vec![skipped("5"), ev("6", "next")];
        assert_eq!(parse(&[stream.as_bytes()]), want);
        let chunks: Vec<&[u8]> = stream.as_bytes().chunks(4096).collect();
        assert_eq!(parse(&chunks), want);
        // Also after more data, an `event:` and a comment of the event, and
        // an id longer than the limit, which is its content too.
        let mut p = SseParser::with_limit(16);
        p.push(b"id: 4\ndata: 12345678901234567\nevent: e\n: c\nid: 5\ndata: 1\n");
        p.push(format!("id: {}\n\n", "9".repeat(13)).as_bytes());
        p.push(b"data: 2\n\n");
        assert_eq!(taken(&mut p), vec![skipped("5"), ev("5", "2")]);
    }

    #[test]
    fn the_id_counts_towards_the_event_limit() {
        // fuzz/regressions/upstream_sse/id-not-counted-in-the-event-limit: the
        // id was left out, so an event could hold a limit's worth of data plus
        // an id as large (and each later event a copy of that id).
        let id = "7".repeat(MAX_EVENT_BYTES - 8);
        let stream = format!("id: {id}\ndata: {}\n\n", "x".repeat(64));
        assert_eq!(parse(&[stream.as_bytes()]), vec![skipped(&id)]);

        let mut p = SseParser::with_limit(16);
        p.push(b"id: 1234567\ndata: 123\n\n");
        assert_eq!(taken(&mut p), vec![ev("1234567", "123")]);
        p.push(b"id: 12345678\ndata: 123\n\n");
        assert_eq!(taken(&mut p), vec![skipped("12345678")]);
    }

    /// Counted with the id it replaces, a new id did not fit after one near
    /// the limit: every later event was too large, for good.
    #[test]
    fn an_id_near_the_limit_is_replaced_by_the_next() {
        let mut p = SseParser::with_limit(16);
        p.push(b"id: 123456789012\ndata: 1\n\n");
        p.push(b"id: 5\ndata: 2\n\n");
        assert_eq!(taken(&mut p), vec![skipped("123456789012"), ev("5", "2")]);
    }

    #[test]
    fn what_is_read_does_not_depend_on_the_chunks() {
        let streams: [&[u8]; 4] = [
            b"id: 1\ndata: 123456\n\ndata: 1234567890123\n\ni\nidle: 1\n\n",
            b"data: 1\nid: 1234\n:123456789012345678\nevent: 12345\nid: 123456789012\ndata: x\r\n\r\n",
            b"id: 1234567\ndata: 12\n\nid: 12345678\nid: 9\0\ndata: 1\n\ndata: \xFF\xFF\xFF\xFF\n\n",
            b"\xEF\xBB\xBFid:12345678901\r\rid\rdata\r\rdata:12345678901234567\r\n\r\n",
        ];
        for stream in streams {
            let read = |chunks: &mut dyn Iterator<Item = &[u8]>| {
                let mut p = SseParser::with_limit(16);
                for c in chunks {
                    p.push(c);
                }
                (taken(&mut p), p.last_event_id().to_owned())
            };
            let whole = read(&mut std::iter::once(stream));
            assert!(whole.0.iter().any(|i| matches!(i, SseItem::Skipped { .. })));
            for size in 1..stream.len() {
                assert_eq!(read(&mut stream.chunks(size)), whole, "chunks of {size}");
            }
        }
    }

    #[test]
    fn the_events_of_a_chunk_share_one_copy_of_the_id() {
        // Each event used to get its own copy of the id: after an id near the
        // limit, a 64 KiB chunk of `data\n\n` made 10,922 copies of 1 MiB.
        let mut p = SseParser::new();
        let id = "7".repeat(4096);
        p.push(format!("id: {id}\n").as_bytes());
        p.push(&b"data\n\n".repeat(1000));
        let ids: Vec<Arc<str>> = taken(&mut p)
            .into_iter()
            .map(|item| match item {
                SseItem::Event(e) => e.id,
                SseItem::Skipped { id, .. } => id,
            })
            .collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(&*ids[999], id);
        assert!(
            ids.iter().all(|i| Arc::ptr_eq(i, &ids[0])),
            "the id is copied into each event"
        );
    }

    /// A reconnect that sent `Last-Event-ID: 5`: the events resent before
    /// the first `id:` line carry 5 (the very `Arc` sent, so a stream
    /// standing at it sees they share it), as a browser's EventSource
    /// gives them; with "" they were never handed on.
    #[test]
    fn events_before_the_first_id_carry_the_id_the_connection_resumed_after() {
        let sent: Arc<str> = Arc::from("5");
        let mut p = SseParser::resuming_after(Arc::clone(&sent));
        assert_eq!(p.last_event_id(), "5");
        p.push(b"data: e5b\n\nid: 6\ndata: e6\n\ndata: e6b\n\n");
        let items = taken(&mut p);
        assert_eq!(items, vec![ev("5", "e5b"), ev("6", "e6"), ev("6", "e6b")]);
        let SseItem::Event(first) = &items[0] else {
            unreachable!()
        };
        assert!(Arc::ptr_eq(&first.id, &sent), "the id sent is copied");
        // Counted towards an event's limit as a read id is.
        let mut p = SseParser {
            limit: 16,
            ..SseParser::resuming_after(Arc::from("1234567"))
        };
        p.push(b"data: 12345678\n\ndata: 123\n\n");
        assert_eq!(
            taken(&mut p),
            vec![skipped("1234567"), ev("1234567", "123")]
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_read_as_replacement_characters_and_the_stream_goes_on() {
        let events = parse(&[
            b"id: 1\ndata: {\"a\":\"\xCF\xB8\xFF\xFE\"}\n\n",
            b"id: 2\ndata: {\"a\":\"ok\"}\n\n",
            b"id: 3\xFF\nevent: x\xC3\ndata: 3\n\n",
        ]);
        let mut first = event("1", "{\"a\":\"\u{3f8}\u{fffd}\u{fffd}\"}");
        first.lossy = true;
        let mut third = event("3\u{fffd}", "3");
        third.event = "x\u{fffd}".into();
        third.lossy = true;
        assert_eq!(
            events,
            vec![
                SseItem::Event(first),
                ev("2", "{\"a\":\"ok\"}"),
                SseItem::Event(third)
            ]
        );
        // An id that is not UTF-8 marks the event too: it is the resume
        // point sent back as `Last-Event-ID`, which the server may not match.
        let mut fourth = event("\u{fffd}", "4");
        fourth.lossy = true;
        assert_eq!(
            parse(&[b"id: \xFF\ndata: 4\n\n"]),
            vec![SseItem::Event(fourth)]
        );
        // So does one of an event skipped.
        let mut p = SseParser::new();
        p.push(b"data: ");
        p.push(&vec![b'x'; MAX_EVENT_BYTES]);
        p.push(b"\nid: \xFF\n\n");
        assert_eq!(
            taken(&mut p),
            vec![SseItem::Skipped {
                id: "\u{fffd}".into(),
                lossy: true
            }]
        );
        // So does an event name alone.
        let mut fifth = event("", "5");
        fifth.event = "x\u{fffd}".into();
        fifth.lossy = true;
        assert_eq!(
            parse(&[b"event: x\xC3\ndata: 5\n\n"]),
            vec![SseItem::Event(fifth)]
        );
    }

    #[test]
    fn an_id_holding_nul_is_ignored() {
        let got = parse(&[b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"]);
        assert_eq!(got, vec![ev("1", "a"), ev("1", "b")]);
    }

    #[test]
    fn the_event_name_counts_towards_the_event_limit() {
        let mut p = SseParser::with_limit(16);
        p.push(b"event: 1234567890\ndata: 1\n\nevent: 123456789\ndata: 1\n\n");
        let mut named = event("", "1");
        named.event = "123456789".into();
        assert_eq!(taken(&mut p), vec![skipped(""), SseItem::Event(named)]);
    }
}
