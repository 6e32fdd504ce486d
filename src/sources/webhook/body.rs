//! Reading a webhook body within `server.max_body` and the bodies' shared
//! memory budget.
//!
//! Guarantees:
//! - never holds more than `max_body` bytes of a body in memory, for a
//!   declared `Content-Length` and for chunked bodies alike; exactly
//!   `max_body` bytes is accepted (the limit is inclusive);
//! - a body is held only within a [`Reservation`] of the shared
//!   [`BodyBudget`](super::budget::BodyBudget), its bytes counted as they
//!   arrive; past the budget the read stops with [`BodyError::Busy`] (a 503),
//!   what came is dropped and the rest read off, within the drain's bounds;
//! - [`discard`] settles a request already refused (its credentials failed)
//!   without keeping any of its body;
//! - an oversized body is read on and discarded for a bounded amount and time
//!   before the 413 is sent, so the sender reads our answer instead of a
//!   connection reset, except when it waits for `100 Continue` (it then has
//!   sent nothing, and reading would invite the upload);
//! - a body that has not arrived whole within [`BODY_TIMEOUT`] is refused, so
//!   a stalled or deliberately slow sender cannot hold a connection (or a
//!   shutdown) open;
//! - a body is taken as sent: a `Content-Encoding` is not decoded (no vendor
//!   compresses). A body sent with one that compresses it (gzip, br, …) is
//!   refused before it is parsed (`sources::webhook`: compressed bytes labelled with a
//!   single-byte charset read as a form of garbage), and
//!   [`unparsed_because_encoded`] words that 400, so it says why instead of
//!   only "not valid JSON".

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::budget::{Full, Reservation};

/// The first buffer of a declared body larger than this; it grows as the
/// bytes arrive. It is taken when the first bytes come, and the budget
/// counts bytes, not this capacity: kept small, so that a sender who sends a
/// byte and stalls holds little beyond what the budget sees.
const FIRST_BUFFER: usize = 16 * 1024;
/// How much of an oversized body is read and thrown away before answering.
const DRAIN_BYTES: u64 = 32 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// How long the whole body may take to arrive: a vendor's webhook is a few
/// kilobytes, and senders give up on an answer well before this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub enum BodyError {
    /// Over `max_body`: a 413.
    TooLarge,
    /// The body could not be read (the client went away, bad framing): a 400.
    Read(String),
    /// Bodies being received hold the budget (`limit` bytes together, half
    /// of it per account; `full` says which was reached): a 503.
    Busy { limit: u64, full: Full },
}

/// The whole body, held within `reservation` (at most `memory_limit` bytes
/// for all bodies together), or why not.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    max_body: u64,
    reservation: &mut Reservation,
    memory_limit: u64,
) -> Result<Bytes, BodyError> {
    read_limited_within(
        headers,
        body,
        max_body,
        reservation,
        memory_limit,
        BODY_TIMEOUT,
    )
    .await
}

/// The body's declared length, when there is one.
/// The most of a `Content-Encoding` value an answer or log line repeats.
const SHOWN_CODING_CHARS: usize = 40;

/// The content codings of IANA's registry that transform the bytes
/// (`identity` aside), and the `x-` spellings HTTP/1.1 senders still use.
const COMPRESSING_CODINGS: [&str; 12] = [
    "aes128gcm",
    "br",
    "compress",
    "dcb",
    "dcz",
    "deflate",
    "exi",
    "gzip",
    "pack200-gzip",
    "x-compress",
    "x-gzip",
    "zstd",
];

/// The codings the `Content-Encoding` headers list, each trimmed, as bytes:
/// one byte that is not text elsewhere in a value must not hide the `gzip`
/// beside it.
fn codings(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
}

/// Whether `Content-Encoding` names a coding that transforms the body (in
/// any case, in a list too). Only those: a sender that writes its charset
/// there (`Content-Encoding: UTF-8`), or `none`, sends a readable body,
/// which was answered 200 before the early refusal and still is (review of
/// that refusal, 2026-12-06); if it does not parse, its 400 names the value.
pub fn declared_compressed(headers: &HeaderMap) -> bool {
    codings(headers).any(|coding| {
        COMPRESSING_CODINGS
            .iter()
            .any(|known| coding.eq_ignore_ascii_case(known.as_bytes()))
    })
}

/// The parse failure's reason, completed when the body was declared
/// compressed: the relay reads bodies as sent, so a gzip body fails as "not
/// valid JSON", which alone sends the sender looking at its JSON. Likewise
/// a body sent as `multipart/form-data` (`curl -F`), which no vendor sends
/// and the relay does not read. Both are said when both hold: a sender
/// told only of one fixes it and is refused again for the other.
pub fn unparsed_because_encoded(reason: String, headers: &HeaderMap) -> String {
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(..10)
                .is_some_and(|t| t.eq_ignore_ascii_case("multipart/"))
        });
    let codings: Vec<&str> = codings(headers)
        .filter(|coding| !coding.eq_ignore_ascii_case(b"identity"))
        .map(|coding| std::str::from_utf8(coding).unwrap_or("(not text)"))
        .collect();
    let mut notes = Vec::new();
    if !codings.is_empty() {
        let shown: String = codings
            .join(", ")
            .chars()
            .take(SHOWN_CODING_CHARS)
            .collect();
        notes.push(format!(
            "the body was sent with Content-Encoding: {shown}, which is not decoded here: send it uncompressed"
        ));
    }
    if multipart {
        notes.push(
            "the body was sent as multipart, which is not read here: send JSON, or a form as application/x-www-form-urlencoded"
                .to_owned(),
        );
    }
    if notes.is_empty() {
        return reason;
    }
    format!("{reason} ({})", notes.join("; "))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Whether the sender waits for `100 Continue` before sending its body.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

async fn read_limited_within(
    headers: &HeaderMap,
    body: Body,
    max_body: u64,
    reservation: &mut Reservation,
    memory_limit: u64,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > max_body) {
        read_off_unless_waiting(headers, body).await;
        return Err(BodyError::TooLarge);
    }
    let within = Within::from_now(timeout);
    read_within(body, declared, max_body, reservation, memory_limit, within).await
}

/// The time a body has to arrive. It bounds the reading only: once the
/// answer is known (413, or 503 for the budget), reading the rest off has
/// its own bound, and a body that passed `max_body` just before the
/// deadline is still answered 413, not "did not arrive".
#[derive(Clone, Copy)]
struct Within {
    deadline: tokio::time::Instant,
    timeout: Duration,
}

impl Within {
    fn from_now(timeout: Duration) -> Within {
        Within {
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
        }
    }

    /// The body's next frame, unless the deadline passes first.
    async fn next_frame(
        self,
        body: &mut Body,
    ) -> Result<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>, BodyError> {
        tokio::time::timeout_at(self.deadline, body.frame())
            .await
            .map_err(|_| not_arrived(self.timeout))
    }
}

fn not_arrived(timeout: Duration) -> BodyError {
    BodyError::Read(format!(
        "the body did not arrive within {}",
        humantime::format_duration(timeout)
    ))
}

async fn read_within(
    mut body: Body,
    declared: Option<u64>,
    max_body: u64,
    reservation: &mut Reservation,
    memory_limit: u64,
    within: Within,
) -> Result<Bytes, BodyError> {
    // A small declared body gets its buffer with its first bytes, at its
    // size (growing it from nothing held up to 2.6 times the body); a larger
    // one starts at FIRST_BUFFER and grows as its bytes arrive. Not at the
    // request's head: a sender that declares a length and sends nothing
    // costs neither memory nor budget.
    // n <= max_body, a size the config could hold as a usize.
    let first_buffer = declared.map_or(0, |n| usize::try_from(n).unwrap_or(0).min(FIRST_BUFFER));
    let mut buf = BytesMut::new();
    while let Some(frame) = within.next_frame(&mut body).await? {
        let frame =
            frame.map_err(|e| BodyError::Read(format!("the body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let received = (buf.len() + data.len()) as u64;
            if received > max_body {
                // Refused: held no longer while the rest is read off.
                drop(buf);
                reservation.release();
                drain(body).await;
                return Err(BodyError::TooLarge);
            }
            if let Err(full) = reservation.try_grow_to(received, memory_limit) {
                // What came is dropped and the rest read off (not kept), so
                // that the sender reads the answer rather than a reset; a
                // body found to be over `max_body` meanwhile is still a 413.
                drop(buf);
                reservation.release();
                let rest = drain(body).await;
                if rest.is_some_and(|rest| received.saturating_add(rest) > max_body) {
                    return Err(BodyError::TooLarge);
                }
                return Err(BodyError::Busy {
                    limit: memory_limit,
                    full,
                });
            }
            if buf.capacity() == 0 {
                buf.reserve(first_buffer.max(data.len()));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Settles a request refused before its body was read: 413 for a body over
/// `max_body` (the size check comes first), a read error, or `Ok` once the
/// body is known to be within the limit. Nothing of the body is kept.
pub async fn discard(headers: &HeaderMap, body: Body, max_body: u64) -> Result<(), BodyError> {
    match declared_length(headers) {
        Some(n) if n > max_body => {
            read_off_unless_waiting(headers, body).await;
            Err(BodyError::TooLarge)
        }
        // Within the limit: read off (not kept) as for a 413.
        Some(_) => {
            read_off_unless_waiting(headers, body).await;
            Ok(())
        }
        None => measure(body, max_body, Within::from_now(BODY_TIMEOUT)).await,
    }
}

/// Counts a chunked body's bytes up to `max_body`, keeping none.
async fn measure(mut body: Body, max_body: u64, within: Within) -> Result<(), BodyError> {
    let mut seen = 0u64;
    while let Some(frame) = within.next_frame(&mut body).await? {
        let frame =
            frame.map_err(|e| BodyError::Read(format!("the body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len() as u64;
            if seen > max_body {
                drain(body).await;
                return Err(BodyError::TooLarge);
            }
        }
    }
    Ok(())
}

/// Before a refusal of a declared body (413, or 401 from [`discard`]): the
/// sender's body is read off, so that it reads the answer rather than a
/// reset, unless it waits for `100 Continue` and so has not sent it.
async fn read_off_unless_waiting(headers: &HeaderMap, body: Body) {
    if !expects_continue(headers) {
        drain(body).await;
    }
}

/// Reads and discards the rest of `body`, within `DRAIN_BYTES` and
/// `DRAIN_TIME`; the bytes read off, or `None` when a bound ended it first.
async fn drain(mut body: Body) -> Option<u64> {
    tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return None };
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > DRAIN_BYTES {
                    return None;
                }
            }
        }
        Some(seen)
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::StreamExt;

    use super::super::budget::BodyBudget;
    use super::*;

    fn with_encodings(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::CONTENT_ENCODING,
                axum::http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn a_parse_failure_names_the_content_encoding_it_was_sent_with() {
        let reason = || "the body is not valid JSON".to_owned();
        for (values, says) in [
            (&[&b"gzip"[..]][..], Some("Content-Encoding: gzip, which")),
            (&[b"identity, br"], Some("Content-Encoding: br, which")),
            (
                &[b"gzip", b"Deflate"],
                Some("Content-Encoding: gzip, Deflate, which"),
            ),
            (&[b"x-\xff"], Some("Content-Encoding: (not text), which")),
            // A byte that is not text does not hide the coding beside it.
            (
                &[b"gzip, \xff"],
                Some("Content-Encoding: gzip, (not text), which"),
            ),
            (&[b"identity"], None),
            (&[b"Identity , "], None),
            (&[], None),
        ] {
            let said = unparsed_because_encoded(reason(), &with_encodings(values));
            assert!(said.starts_with(&reason()), "{said}");
            match says {
                Some(part) => assert!(said.contains(part), "{values:?}: {said}"),
                None => assert_eq!(said, reason(), "{values:?}"),
            }
        }
        let mut multipart = HeaderMap::new();
        multipart.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("Multipart/form-data; boundary=x"),
        );
        let said = unparsed_because_encoded(reason(), &multipart);
        assert!(said.starts_with(&reason()), "{said}");
        assert!(said.contains("sent as multipart"), "{said}");
        assert!(!said.contains("Content-Encoding"), "{said}");
        // Compressed multipart: told of both, or the sender fixes one and
        // is refused again for the other.
        multipart.insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
        let said = unparsed_because_encoded(reason(), &multipart);
        assert!(
            said.contains("Content-Encoding: gzip, which") && said.contains("sent as multipart"),
            "{said}"
        );
        let long = vec![b'z'; 500];
        let said = unparsed_because_encoded(reason(), &with_encodings(&[&long]));
        assert!(said.contains(&"z".repeat(SHOWN_CODING_CHARS)), "{said}");
        assert!(
            !said.contains(&"z".repeat(SHOWN_CODING_CHARS + 1)),
            "{said}"
        );
    }

    /// A body without a declared length: `chunks` frames of `size` bytes.
    fn chunked(chunks: usize, size: usize) -> Body {
        Body::from_stream(futures::stream::iter(
            (0..chunks).map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; size]))),
        ))
    }

    /// A body declared `declared` bytes long whose sender sends five and
    /// then nothing, while the returned sender lives.
    fn stalled_after_five_bytes_of(
        declared: u64,
    ) -> (
        futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>,
        HeaderMap,
        Body,
    ) {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.try_send(Ok(Bytes::from_static(b"{\"a\":"))).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, declared.into());
        (tx, headers, Body::from_stream(rx))
    }

    #[tokio::test]
    async fn a_body_that_stalls_is_refused_after_the_timeout() {
        // Five bytes of a declared hundred, then nothing: the sender stalls.
        let (tx, headers, body) = stalled_after_five_bytes_of(100);
        let timeout = Duration::from_millis(50);
        let budget = BodyBudget::new();
        let mut held = budget.reservation("tel4vn/t".into());
        let read = read_limited_within(&headers, body, 1024, &mut held, u64::MAX, timeout).await;
        assert!(
            matches!(&read, Err(BodyError::Read(reason)) if reason.contains("did not arrive within 50ms")),
            "{read:?}"
        );
        // Dropping the stalled body lets go of the connection's stream.
        assert!(tx.is_closed());
    }

    type Sender = futures::channel::mpsc::Sender<Result<Bytes, std::io::Error>>;

    /// A chunked body whose frames the test sends, read for a `max_body` of
    /// 1,024 within `timeout` in the background, held in `budget`.
    fn reading_in_the_background(
        budget: &Arc<BodyBudget>,
        timeout: Duration,
    ) -> (Sender, tokio::task::JoinHandle<Result<Bytes, BodyError>>) {
        let (tx, rx) = futures::channel::mpsc::channel(4);
        let mut held = budget.reservation("tel4vn/t".into());
        let reading = tokio::spawn(async move {
            let (headers, body) = (HeaderMap::new(), Body::from_stream(rx));
            read_limited_within(&headers, body, 1024, &mut held, u64::MAX, timeout).await
        });
        (tx, reading)
    }

    /// A body found over `max_body` as it arrives gives its memory back
    /// before the rest is read off, as a body the budget refuses does: a
    /// refused body that is still arriving holds nothing.
    #[tokio::test]
    async fn a_body_over_max_body_holds_nothing_while_it_is_read_off() {
        let budget = BodyBudget::new();
        let (mut tx, reading) = reading_in_the_background(&budget, BODY_TIMEOUT);
        let within = Duration::from_secs(1);
        use crate::app::tests_support::until;
        tx.try_send(Ok(Bytes::from(vec![b'x'; 600]))).unwrap();
        until("600 bytes held", within, || budget.in_use() >= 600).await;
        tx.try_send(Ok(Bytes::from(vec![b'x'; 600]))).unwrap();
        until("the body let go of", within, || budget.in_use() == 0).await;
        assert!(!reading.is_finished(), "still reading the rest off");
        drop(tx);
        let read = reading.await.unwrap();
        assert!(matches!(read, Err(BodyError::TooLarge)), "{read:?}");
    }

    /// The time a body has to arrive bounds the reading, not the read-off
    /// of a body already refused: one that passes `max_body` just before
    /// the deadline is answered 413, not "did not arrive".
    #[tokio::test]
    async fn a_body_over_max_body_near_the_deadline_is_413() {
        let budget = BodyBudget::new();
        let timeout = Duration::from_millis(50);
        let (mut tx, reading) = reading_in_the_background(&budget, timeout);
        tx.try_send(Ok(Bytes::from(vec![b'x'; 2000]))).unwrap();
        // The deadline passes while the rest is read off (the sender is
        // still there, so the read-off waits for it).
        tokio::time::sleep(timeout * 3).await;
        drop(tx);
        let read = reading.await.unwrap();
        assert!(matches!(read, Err(BodyError::TooLarge)), "{read:?}");
    }

    #[tokio::test]
    async fn a_whole_body_is_read() {
        let budget = BodyBudget::new();
        let mut held = budget.reservation("tel4vn/t".into());
        let read = read_limited(&HeaderMap::new(), Body::from("{}"), 2, &mut held, 1024).await;
        assert_eq!(read.unwrap(), Bytes::from_static(b"{}"));
        assert!(held.bytes() >= 2, "the buffer is held in the budget");
        drop(held);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_body_is_held_as_its_bytes_arrive() {
        let budget = BodyBudget::new();
        let mut others = [
            budget.reservation("voipex/v".into()),
            budget.reservation("voip24h/v".into()),
        ];
        assert!(others[0].grow_to(400, 1000) && others[1].grow_to(200, 1000));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "450".parse().unwrap());
        let mut held = budget.reservation("tel4vn/t".into());
        let read = read_limited(&headers, Body::from("x".repeat(450)), 1024, &mut held, 1000).await;
        assert!(
            matches!(
                read,
                Err(BodyError::Busy {
                    limit: 1000,
                    full: Full::All
                })
            ),
            "600 held + 450 is over 1000: {read:?}"
        );
        assert_eq!(budget.in_use(), 600, "the refused body holds nothing");
        drop(others);
        let read = read_limited(&headers, Body::from("x".repeat(450)), 1024, &mut held, 1000).await;
        assert_eq!(read.unwrap().len(), 450);
        assert_eq!(held.bytes(), 450);
    }

    #[tokio::test]
    async fn a_declared_length_holds_nothing_until_its_bytes_arrive() {
        let budget = BodyBudget::new();
        let (_tx, headers, body) = stalled_after_five_bytes_of(1000);
        let mut held = budget.reservation("caresoft/cs".into());
        let read = read_limited_within(
            &headers,
            body,
            1024,
            &mut held,
            u64::MAX,
            Duration::from_millis(50),
        )
        .await;
        assert!(matches!(read, Err(BodyError::Read(_))), "{read:?}");
        assert_eq!(
            held.bytes(),
            5,
            "the 5 bytes that came, not the 1,000 declared"
        );
    }

    #[tokio::test]
    async fn a_chunked_body_is_held_as_it_grows() {
        let budget = BodyBudget::new();
        let mut held = budget.reservation("tel4vn/t".into());
        let read = read_limited(&HeaderMap::new(), chunked(10, 100), 4096, &mut held, 500).await;
        assert!(
            matches!(
                read,
                Err(BodyError::Busy {
                    limit: 500,
                    full: Full::Account
                })
            ),
            "{read:?}"
        );
        assert!(held.bytes() <= 500);
    }

    #[tokio::test]
    async fn a_body_refused_for_the_budget_that_turns_out_over_max_body_is_413() {
        let budget = BodyBudget::new();
        let mut other = budget.reservation("voipex/v".into());
        assert!(other.grow_to(450, 1000));
        // The 6th chunk passes the budget (450 + 600); the whole is 1,100,
        // over the 1,000 max_body: the size check answers, not the budget.
        let mut held = budget.reservation("tel4vn/t".into());
        let read = read_limited(&HeaderMap::new(), chunked(11, 100), 1000, &mut held, 1000).await;
        assert!(matches!(read, Err(BodyError::TooLarge)), "{read:?}");
        assert_eq!(held.bytes(), 0, "given back before the read-off");
        for chunks in [9, 10] {
            let read = read_limited(
                &HeaderMap::new(),
                chunked(chunks, 100),
                1000,
                &mut held,
                1000,
            )
            .await;
            assert!(
                matches!(read, Err(BodyError::Busy { .. })),
                "{chunks}: {read:?}"
            );
        }
        assert_eq!(budget.in_use(), 450);
    }

    #[tokio::test]
    async fn a_discarded_body_is_measured_for_the_size_check() {
        let none = HeaderMap::new();
        assert!(discard(&none, chunked(1, 100), 100).await.is_ok());
        assert!(matches!(
            discard(&none, chunked(1, 101), 100).await,
            Err(BodyError::TooLarge)
        ));
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, "101".parse().unwrap());
        assert!(matches!(
            discard(&declared, chunked(1, 101), 100).await,
            Err(BodyError::TooLarge)
        ));
        declared.insert(header::CONTENT_LENGTH, "100".parse().unwrap());
        assert!(discard(&declared, chunked(1, 100), 100).await.is_ok());
    }

    /// A body declared `declared` bytes long, of which five come before it
    /// ends, and whether anything read it.
    fn watched(declared: u64, expect: Option<&'static str>) -> (Arc<AtomicBool>, HeaderMap, Body) {
        let read = Arc::new(AtomicBool::new(false));
        let seen = read.clone();
        let stream =
            futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{\"a\":"))])
                .inspect(move |_| seen.store(true, Ordering::SeqCst));
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, declared.into());
        if let Some(expect) = expect {
            headers.insert(header::EXPECT, axum::http::HeaderValue::from_static(expect));
        }
        (read, headers, Body::from_stream(stream))
    }

    /// A declared length over `max_body` is refused before the body is
    /// kept; the body is read off so that the sender reads the 413, unless
    /// it waits for `100 Continue` and so has not sent it.
    #[tokio::test]
    async fn a_declared_length_over_max_body_is_refused_before_the_body_is_kept() {
        let budget = BodyBudget::new();
        let mut held = budget.reservation("tel4vn/t".into());
        for (expect, read_off) in [
            (None, true),
            (Some("100-continue"), false),
            (Some("100-Continue"), false),
            (Some("something-else"), true),
        ] {
            let (read, headers, body) = watched(1025, expect);
            let answer = read_limited(&headers, body, 1024, &mut held, u64::MAX).await;
            assert!(
                matches!(answer, Err(BodyError::TooLarge)),
                "{expect:?}: {answer:?}"
            );
            assert_eq!(read.load(Ordering::SeqCst), read_off, "{expect:?}");
            assert_eq!(held.bytes(), 0);
        }
        let (_, headers, body) = watched(1024, Some("100-continue"));
        let answer = read_limited(&headers, body, 1024, &mut held, u64::MAX).await;
        assert_eq!(answer.unwrap().len(), 5, "at max_body: read");
        let (read, headers, body) = watched(1025, None);
        assert!(matches!(
            discard(&headers, body, 1024).await,
            Err(BodyError::TooLarge)
        ));
        assert!(read.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_refused_body_is_read_off_up_to_its_bound() {
        const MIB: usize = 1 << 20;
        assert_eq!(drain(chunked(32, MIB)).await, Some(32 * MIB as u64));
        assert_eq!(drain(chunked(33, MIB)).await, None);
    }
}
