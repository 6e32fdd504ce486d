//! The fuzzing harness: what one fuzz input means for each target, and the
//! properties checked on every input besides "no panic".
//!
//! Shared by the cargo-fuzz targets (fuzz/fuzz_targets/) and by
//! tests/fuzz_regressions.rs, which includes this file with `#[path]` and
//! replays the kept crashers (fuzz/regressions/<target>/) under plain
//! `cargo test` — so a crasher is reproduced by exactly the code that found it.
//!
//! Webhook input layout: the first byte picks the mode, the rest is the
//! delivery.
//! - mode 0 (authentic POST): the rest is the body, sent with the right
//!   credentials (CareSoft: its HMAC). `verify` must accept it.
//! - mode 1 (attacker POST): the rest is `AUTH \n BODY`; AUTH is the
//!   signature / api key / Basic header / `?token=` the sender presents.
//! - mode 2, Voip24h (GET): the rest is a query string (its feedback
//!   callback), with any `token` in it replaced by the right one.
//! - mode 2, the others (authentic POST with a query): the rest is
//!   `QUERY \n BODY` (Tel4vn's `?event=missed`); every other vendor answers
//!   a GET 405, so a GET would test only that.
//! - mode 3 (form POST): the rest is an `application/x-www-form-urlencoded`
//!   body, with the right credentials.
//! - mode 4 (authentic POST, the head fuzzed): the rest is
//!   `CONTENT-TYPE \n QUERY \n BODY`; the query is read strictly, as the
//!   handler reads it (one that is not text is a 400 after the credentials),
//!   and the body in the charset the Content-Type names.
//!
//! Properties: no panic; an error (401/400 text) never holds the secret unless
//! the input itself does; the credential check made before the body is read
//! (`verify_head`) says what the check with the body says; an accepted delivery parses the same way twice; a
//! parsed event becomes a CloudEvent JSON object with the CONTRACT attributes,
//! a non-empty type and no empty subject. Config: an error names at least one
//! problem, each at a line of the text; a `${file:…}` reads the harness's
//! files ([`config_file`]), never the host's; no message of a refused config
//! shows their content ([`FILE_SECRET`]) unless the text itself writes it.
//!
//! `upstream_sse` input layout (SPRecord's `text/event-stream` body through
//! `SseParser`):
//! - byte 0: the event limit: 0 is the real [`MAX_EVENT_BYTES`], `n` is
//!   `8 * n` bytes (8..=2040, so inputs of a few KiB reach it);
//! - byte 1: `k = byte % 16`, the number of chunk sizes that follow;
//! - the next `k` bytes: chunk sizes, used in turn and over again until the
//!   stream is cut up (0 pushes an empty chunk; all zero, or `k = 0`: one chunk);
//! - the rest: the stream's bytes.
//!
//! Properties: no panic; each event's id, type and data hold at most the limit
//! together, as does a skipped event's id; the stream fed whole and fed in
//! those chunks frames the same events, skips the same ones and ends with the
//! same last id (details at [`upstream_sse`]); each event's data, read as a stream
//! reads it (`sources::sprecord::payload`), reads the same twice, and an
//! event becomes a valid CloudEvent whose `data.raw` is the data as received.
//!
//! `upstream_socketio` input: one Engine.IO text frame (UTF-8; other bytes are
//! skipped) through `wire::decode`. Properties: no panic; a `CONNECT_ERROR`
//! reason is the rest of its frame, kept whole (its key and secret are
//! masked before the log's 200-character cut); an event with at most one argument
//! re-encoded by `wire::encode_event` decodes to the same event; a `response`
//! event's first argument goes through `voip24h::deliver::read_payload` (a
//! JSON string is read as JSON) into
//! `vendors::voip24h::parse_call_event`, parses the same twice, and an event
//! becomes a valid CloudEvent.
//!
//! `websocket_query` input: `QUERY \n LAST-EVENT-ID \n TYPE`, a WebSocket
//! client's raw query string, its `Last-Event-ID` header (no line: none)
//! and a journaled event's type, through `ClientQuery::parse`/`since` and
//! `Filter::matches`. Properties at [`websocket_query`].

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use callrelay::config::env::{FILE_VALUE_LIMIT, FileError};
use callrelay::config::{Accepted, Config};
use callrelay::event::{
    EventHeader, EventId, IncomingEvent, RawPayload, Transport, Vendor, VendorEvent,
};
use callrelay::sinks::websocket::filter::{ClientQuery, MAX_FILTER_VALUE_BYTES, QueryError, glob};
use callrelay::sources::sprecord::payload::{self, StreamPayload};
use callrelay::sources::sprecord::sse::{MAX_EVENT_BYTES, SseItem, SseParser};
use callrelay::sources::voip24h::deliver;
use callrelay::sources::voip24h::wire::{self, Arg, Frame, SioPacket};
use callrelay::sources::webhook::body::unparsed_because_encoded;
use callrelay::vendors::{self, Credentials, Delivery, Method, Parsed, caresoft};
use serde_json::Value;
use time::OffsetDateTime;

/// The secret of every fuzzed account; no error text may show it.
pub const SECRET: &str = "fz-SECRET-4242";
const USER: &str = "fz-user";
const TEL4VN_HEADER: &str = "authorization";

fn credentials(vendor: Vendor) -> Credentials {
    let secret = Accepted::one(SECRET);
    match vendor {
        Vendor::Caresoft => Credentials::Caresoft { secret },
        Vendor::Tel4vn => Credentials::Tel4vn {
            api_key: secret,
            header: TEL4VN_HEADER.to_owned(),
            query: None,
        },
        Vendor::Voipex => Credentials::Voipex {
            username: USER.to_owned(),
            password: secret,
        },
        Vendor::Voip24h => Credentials::Voip24h { token: secret },
        Vendor::Sprecord => Credentials::Sprecord {
            token: Some(secret),
        },
    }
}

/// Base64 without a crate: the fuzz crate and the tests share this file.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Puts the right credentials for `vendor` on a delivery of `body`.
fn authenticate(
    vendor: Vendor,
    body: &[u8],
    headers: &mut HeaderMap,
    query: &mut Vec<(String, String)>,
) {
    match vendor {
        Vendor::Caresoft => {
            let sig = caresoft::sign(SECRET.as_bytes(), body);
            if let Ok(v) = HeaderValue::from_str(&format!("sha1={sig}")) {
                headers.insert("x-hub-signature", v);
            }
        }
        Vendor::Tel4vn => {
            headers.insert(
                TEL4VN_HEADER,
                HeaderValue::from_static("Bearer fz-SECRET-4242"),
            );
        }
        Vendor::Voipex => {
            let basic = format!("Basic {}", base64(format!("{USER}:{SECRET}").as_bytes()));
            if let Ok(v) = HeaderValue::from_str(&basic) {
                headers.insert("authorization", v);
            }
        }
        Vendor::Voip24h | Vendor::Sprecord => query.push(("token".to_owned(), SECRET.to_owned())),
    }
}

/// Presents `auth` the way `vendor`'s sender would, right or wrong.
fn present(
    vendor: Vendor,
    auth: &[u8],
    headers: &mut HeaderMap,
    query: &mut Vec<(String, String)>,
) {
    let header: Option<HeaderName> = match vendor {
        Vendor::Caresoft => Some(HeaderName::from_static("x-hub-signature")),
        Vendor::Tel4vn => Some(HeaderName::from_static(TEL4VN_HEADER)),
        Vendor::Voipex => Some(HeaderName::from_static("authorization")),
        Vendor::Voip24h | Vendor::Sprecord => None,
    };
    match header {
        Some(name) => {
            if let Ok(v) = HeaderValue::from_bytes(auth) {
                headers.insert(name, v);
            }
        }
        None => query.push((
            "token".to_owned(),
            String::from_utf8_lossy(auth).into_owned(),
        )),
    }
}

/// Whether `data`, read as form or query pairs (percent- and `+`-decoded),
/// holds `needle` in a name or a value.
fn decoded_holds(data: &[u8], needle: &str) -> bool {
    url::form_urlencoded::parse(data).any(|(k, v)| k.contains(needle) || v.contains(needle))
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// One webhook delivery of `vendor` made from `data` (layout in the module doc).
pub fn webhook(vendor: Vendor, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mode = mode % 5;
    // As sent, or percent-decoded: a query's or a form's 400 quotes the
    // decoded text, which can spell the secret the raw bytes do not.
    let mut input_has_secret = holds(data, SECRET) || decoded_holds(data, SECRET);
    let mut headers = HeaderMap::new();
    let mut query: Vec<(String, String)> = Vec::new();
    let mut method = Method::Post;
    // Mode 4: why the handler would answer 400 once the credentials pass.
    let mut query_unreadable = None;
    let body: &[u8] = match mode {
        0 => {
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            authenticate(vendor, rest, &mut headers, &mut query);
            rest
        }
        1 => {
            let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (auth, body) = rest.split_at(split);
            let body = body.get(1..).unwrap_or_default();
            present(vendor, auth, &mut headers, &mut query);
            body
        }
        2 if vendor != Vendor::Voip24h => {
            let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (q, body) = rest.split_at(split);
            let body = body.get(1..).unwrap_or_default();
            query.extend(url::form_urlencoded::parse(q).into_owned());
            query.retain(|(k, _)| k != "token");
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            authenticate(vendor, body, &mut headers, &mut query);
            body
        }
        4 => {
            let mut lines = rest.splitn(3, |&b| b == b'\n');
            let content_type = lines.next().unwrap_or_default();
            let raw_query = lines.next().unwrap_or_default();
            let body = lines.next().unwrap_or_default();
            if let Ok(v) = HeaderValue::from_bytes(content_type) {
                // Read in the charset it names (UTF-16, say), the body can
                // spell the secret its bytes do not.
                if let Ok(Some(charset)) = vendors::text::declared_charset(Some(v.as_bytes()))
                    && let Ok(text) = vendors::text::body_text(body, Some(charset))
                {
                    input_has_secret |=
                        text.contains(SECRET) || decoded_holds(text.as_bytes(), SECRET);
                }
                headers.insert("content-type", v);
            }
            // As the handler reads a query: strictly, and with replacement
            // characters for the credential check when that fails.
            match vendors::text::form_pairs(raw_query, None, vendors::text::Pairs::QueryParameters)
            {
                Ok(pairs) => query = pairs,
                Err(e) => {
                    query = url::form_urlencoded::parse(raw_query)
                        .into_owned()
                        .collect();
                    query_unreadable = Some(e);
                }
            }
            query.retain(|(k, _)| k != "token");
            authenticate(vendor, body, &mut headers, &mut query);
            body
        }
        2 => {
            method = Method::Get;
            query.extend(url::form_urlencoded::parse(rest).into_owned());
            // The right sender presents its token once: a second `token`
            // from the input would be refused as a repeated credential.
            query.retain(|(k, _)| k != "token");
            authenticate(vendor, b"", &mut headers, &mut query);
            b""
        }
        _ => {
            headers.insert(
                "content-type",
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
            authenticate(vendor, rest, &mut headers, &mut query);
            rest
        }
    };
    let delivery = Delivery {
        method,
        headers: &headers,
        query: &query,
        body,
    };
    // The handler checks a header or query credential before it reads the
    // body (`verify_head`), then attaches the body unchecked: that is only
    // sound when the check would say the same with the body.
    if let Some(head) = credentials(vendor).verify_head(Delivery {
        body: &[],
        ..delivery
    }) {
        assert_eq!(
            head.map(|_| ()),
            credentials(vendor).verify(delivery).map(|_| ()),
            "{vendor:?}: the credential check before the body differs from the one with it"
        );
    }
    let verified = match credentials(vendor).verify(delivery) {
        Ok(v) => v,
        Err(e) => {
            assert!(mode == 1, "{vendor:?}: right credentials refused: {e}");
            assert!(!e.to_string().contains(SECRET), "401 text shows the secret");
            return;
        }
    };
    if let Some(unreadable) = query_unreadable {
        assert!(
            input_has_secret || !unreadable.0.contains(SECRET),
            "400 text shows the secret"
        );
        return;
    }
    let content_type = headers.get("content-type").map(HeaderValue::as_bytes);
    // A body in a charset it names is read as text in it: `data.raw` is
    // that text, not the bytes as sent.
    let as_sent = !matches!(vendors::text::declared_charset(content_type), Ok(Some(_)));
    let received_at = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_700_000_000);
    let parsed = vendors::parse(vendor, &verified, received_at);
    assert_eq!(
        parsed,
        vendors::parse(vendor, &verified, received_at),
        "{vendor:?}: the same delivery parsed twice differs"
    );
    match parsed {
        Err(e) => {
            let answer = unparsed_because_encoded(e.0, &headers);
            assert!(
                input_has_secret || !answer.contains(SECRET),
                "400 text shows the secret"
            );
        }
        Ok(Parsed::Verification { payload }) => {
            let answer = vendors::sprecord::verification_answer(&payload);
            assert_eq!(answer.len(), 32);
        }
        Ok(Parsed::Event(event, raw)) => {
            let _ = vendors::text::labelled_other_than_its_utf8(body, content_type);
            if let (RawPayload::Json(text), true) = (&raw, as_sent) {
                // The body as sent, past a UTF-8 byte order mark and the
                // whitespace around it; the one change is a lone surrogate
                // escape read as `\ufffd`, which keeps the length.
                let sent = std::str::from_utf8(body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body))
                    .map(|b| b.trim_matches([' ', '\t', '\n', '\r']));
                let read = sent
                    .ok()
                    .and_then(|sent| vendors::text::parse_json(sent).ok())
                    .map(|(_, read)| read);
                assert_eq!(
                    Some(text.get()),
                    read.as_deref(),
                    "{vendor:?}: data.raw is not the body as sent"
                );
                assert_eq!(
                    Ok(text.get().len()),
                    sent.map(str::len),
                    "{vendor:?}: data.raw is not the body as sent"
                );
            }
            assert_cloudevent(vendor, Transport::Webhook, event, raw, received_at);
        }
    }
}

/// A parsed event becomes a CloudEvent JSON object with the CONTRACT
/// attributes, a non-empty type, no empty subject and `data.raw` holding `raw`.
fn assert_cloudevent(
    vendor: Vendor,
    transport: Transport,
    event: VendorEvent,
    raw: RawPayload,
    received_at: OffsetDateTime,
) {
    assert!(!event.event_type.is_empty(), "empty type");
    assert_ne!(event.subject.as_deref(), Some(""), "empty subject");
    let incoming = IncomingEvent {
        vendor,
        account: "fz".to_owned(),
        transport,
        received_at,
        event,
        raw,
    };
    let id: EventId = incoming.id();
    let json = incoming.to_cloudevent_json(id, 1);
    let ce: Value = match serde_json::from_slice(&json) {
        Ok(v) => v,
        Err(e) => panic!("{vendor:?}: CloudEvent is not JSON: {e}"),
    };
    for attr in ["specversion", "id", "source", "type", "time", "data"] {
        assert!(ce.get(attr).is_some(), "CloudEvent without {attr}: {ce}");
    }
    assert_eq!(
        ce["data"].get("raw"),
        Some(&incoming.raw.to_value()),
        "data.raw is not the payload: {ce}"
    );
}

/// The environment the config target sees: `${SET}` and the variables
/// deploy/relay.toml names are set (so that seed reaches the checks of every
/// section instead of stopping at its first unset variable); any other is not.
pub fn config_env(name: &str) -> Option<String> {
    match name {
        "SET" => Some(SECRET.to_owned()),
        "KAFKA_BROKERS" => Some("127.0.0.1:9092".to_owned()),
        "CALLRELAY_WS_TOKEN"
        | "CARESOFT_SECRET"
        | "KAFKA_PASSWORD"
        | "PROXY_PASSWORD"
        | "SPRECORD_TOKEN"
        | "SPRECORD_WEBHOOK_TOKEN"
        | "TEL4VN_API_KEY"
        | "VOIP24H_KEY"
        | "VOIP24H_SECRET"
        | "VOIP24H_WEBHOOK_TOKEN"
        | "VOIPEX_PASSWORD"
        | "VOIPEX_USERNAME" => Some(format!("{SECRET}-{}", name.to_ascii_lowercase())),
        _ => None,
    }
}

/// The secret in the config target's files ([`config_file`]): no message of
/// a refused config may show it. Found in a message only as a leak: no
/// message says it of its own, and a text that writes it is not checked.
pub const FILE_SECRET: &str = "hunter-918273645";

/// The secret of the files of a second load, which tells a leak from the
/// text's own making (a `topic` template, an escape): of the same length and
/// kinds of characters, so that the checks find the same.
const OTHER_FILE_SECRET: &str = "hunter-546372819";

/// The files the config target sees instead of the host's: a `${file:…}` in
/// fuzzed input must not open what the fuzzing machine holds (a FIFO would
/// hang the run, `/dev/zero` or a secret is no input), and an input must load
/// the same everywhere. Each way a file can be refused has its path:
/// `/run/secrets/set` is a secret line ([`FILE_SECRET`], its line ending
/// taken off), `/run/secrets/quoted` one with a quote and a backslash
/// (escaped in a string, refused in a '…' literal), `/run/secrets/big` is
/// one byte over the limit, `/run/secrets/latin1` is not UTF-8,
/// `/run/secrets/denied` cannot be read, `/run/secrets` is a directory; any
/// other path is not found.
pub fn config_file(path: &std::path::Path) -> Result<Vec<u8>, FileError> {
    files_holding(FILE_SECRET, path)
}

/// [`config_file`], its secret lines holding `secret`.
fn files_holding(secret: &str, path: &std::path::Path) -> Result<Vec<u8>, FileError> {
    use std::io::{Error, ErrorKind};
    match path.to_str() {
        Some("/run/secrets/set") => Ok(format!("{secret}\n").into_bytes()),
        Some("/run/secrets/quoted") => Ok(format!("{secret}\"'\\\r\n").into_bytes()),
        Some("/run/secrets/big") => Ok(vec![b'a'; FILE_VALUE_LIMIT + 1]),
        Some("/run/secrets/latin1") => Ok(b"caf\xe9".to_vec()),
        Some("/run/secrets/denied") => Err(Error::from(ErrorKind::PermissionDenied).into()),
        Some("/run/secrets" | "/run/secrets/") => Err(FileError::NotAFile),
        _ => Err(Error::from(ErrorKind::NotFound).into()),
    }
}

/// One relay.toml text, under [`config_env`] and [`config_file`].
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_text_with_files("fuzz.toml", text, &config_env, &config_file) {
        Ok(config) => {
            // A valid config is usable as loaded: formatting it must not panic.
            let _ = format!("{config:?}");
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error with no problem");
            let lines = text.matches('\n').count() + 1;
            for p in &e.problems {
                assert!(
                    p.line >= 1 && p.line <= lines && p.col >= 1,
                    "problem at {}:{} outside the text ({lines} lines): {}",
                    p.line,
                    p.col,
                    p.message
                );
            }
            let shown = e.to_string();
            // A text that writes the secret may be quoted with it.
            if !text.contains(FILE_SECRET) && shown.contains(FILE_SECRET) {
                // The text may make it of its own too (a `topic` template,
                // an escape): then a load with other file content shows it
                // as often, where a leak shows the other content instead.
                let other = Config::from_text_with_files("fuzz.toml", text, &config_env, &|p| {
                    files_holding(OTHER_FILE_SECRET, p)
                })
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
                assert!(
                    other.matches(FILE_SECRET).count() >= shown.matches(FILE_SECRET).count(),
                    "a message shows a ${{file:…}}'s content:\n{shown}"
                );
            }
        }
    }
}

/// Feeds `chunks` to a parser, taking events after every push as the SPRecord
/// connection does.
fn sse_events<'a>(
    limit: usize,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<SseItem>, String) {
    let mut parser = SseParser::with_limit(limit);
    let mut items = Vec::new();
    for chunk in chunks {
        parser.push(chunk);
        items.extend(std::iter::from_fn(|| parser.next_event()));
    }
    (items, parser.last_event_id().to_owned())
}

/// Cuts `stream` into chunks of the given sizes, used in turn (layout above).
fn chunks<'a>(sizes: &[u8], mut stream: &'a [u8]) -> Vec<&'a [u8]> {
    if sizes.iter().all(|&s| s == 0) {
        return vec![stream];
    }
    let mut out = Vec::new();
    for &size in sizes.iter().cycle() {
        if stream.is_empty() {
            break;
        }
        let (chunk, rest) = stream.split_at(usize::from(size).min(stream.len()));
        out.push(chunk);
        stream = rest;
    }
    out
}

/// One SPRecord event stream, whole and in chunks (layout in the module doc).
///
/// Chunking changes nothing: the limit is checked at the end of every chunk
/// too, so an unfinished line is seen over it earlier in smaller chunks (the
/// documented "plus one chunk"), but a line counts as received, so it is over
/// it whole as well: the same events, the same skipped ones, the same last
/// id. Bytes that are not UTF-8 are no error: they are read as U+FFFD, the
/// same way whatever the chunks.
pub fn upstream_sse(data: &[u8]) {
    let [limit, k, rest @ ..] = data else {
        return;
    };
    let limit = match usize::from(*limit) {
        0 => MAX_EVENT_BYTES,
        n => 8 * n,
    };
    let k = usize::from(k % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(k);

    let whole = sse_events(limit, [stream]);
    let cut = sse_events(limit, chunks(sizes, stream));

    for (items, how) in [(&whole.0, "whole"), (&cut.0, "chunked")] {
        for item in items {
            let e = match item {
                SseItem::Event(e) => e,
                SseItem::Skipped { id, .. } => {
                    assert!(
                        id.len() <= limit,
                        "{how}: a skipped event's id of {} bytes over the limit of {limit}",
                        id.len()
                    );
                    continue;
                }
            };
            // The type is "message" when the stream named none.
            let size = e.id.len()
                + e.data.len()
                + if e.event == "message" {
                    0
                } else {
                    e.event.len()
                };
            assert!(
                size <= limit,
                "{how}: an event of {size} bytes (id {}, type {}, data {}) over the limit of {limit}",
                e.id.len(),
                e.event.len(),
                e.data.len()
            );
        }
    }
    assert_eq!(whole.0, cut.0, "chunking changed the events");
    assert_eq!(whole.1, cut.1, "chunking changed the last event id");
    for item in &whole.0 {
        if let SseItem::Event(event) = item {
            sprecord_payload(&event.data);
        }
    }
}

/// One framed event's data, read as a stream reads it
/// (`sources::sprecord::payload`): deterministic, a reason that quotes none
/// of the payload (it is at most 200 bytes), and an event becomes a CloudEvent whose `data.raw` is the
/// data as received.
fn sprecord_payload(data: &str) {
    let read = payload::read_payload(data);
    assert_eq!(
        read,
        payload::read_payload(data),
        "the same payload read twice differs"
    );
    match read {
        StreamPayload::Event(event, raw) => {
            if let RawPayload::Json(text) = &raw {
                // The data without the whitespace around it; a lone
                // surrogate escape is read as `\ufffd`, of the same length.
                let sent = data.trim_matches([' ', '\t', '\n', '\r']);
                let read = vendors::text::parse_json(sent).ok().map(|(_, read)| read);
                assert_eq!(
                    Some(text.get()),
                    read.as_deref(),
                    "data.raw is not the data as received"
                );
                assert_eq!(
                    text.get().len(),
                    sent.len(),
                    "data.raw is not the data as received"
                );
            }
            let received_at = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_700_000_000);
            assert_cloudevent(Vendor::Sprecord, Transport::Sse, event, raw, received_at);
        }
        StreamPayload::Malformed(why) => {
            // It goes into a warning line: a few words, however large the payload.
            assert!(why.len() <= 200, "a reason of {} bytes: {why}", why.len());
        }
        StreamPayload::Verification => {}
    }
}

/// One Engine.IO text frame from the Voip24h server (see the module doc).
pub fn upstream_socketio(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let frame = wire::decode(text);
    assert_eq!(frame, wire::decode(text), "decoding is not deterministic");
    let Frame::Message(packet) = frame else {
        return;
    };
    match packet {
        SioPacket::ConnectError(reason) => {
            // Kept whole (one frame, bounded by the frame limit), so that the
            // key and secret it may echo are masked before the 200-character
            // cut of what the log shows (`link::Masked::server_text`).
            assert!(
                text.ends_with(reason.as_str()),
                "a CONNECT_ERROR reason is not the rest of its frame"
            );
        }
        SioPacket::Event { name, args } => {
            let values = |args: &[Arg]| -> Vec<Value> {
                args.iter()
                    .map(|a| serde_json::from_str(a.json()).unwrap_or(Value::Null))
                    .collect()
            };
            if args.len() <= 1 {
                let again = wire::encode_event(&name, values(&args).first());
                match wire::decode(&again) {
                    Frame::Message(SioPacket::Event { name: n, args: a }) => {
                        assert_eq!(
                            (&n, values(&a)),
                            (&name, values(&args)),
                            "re-encoded as {again}"
                        );
                    }
                    other => panic!("{text:?} re-encoded as {again:?} decodes to {other:?}"),
                }
            }
            if name == "response" {
                voip24h_response(&args);
            }
        }
        _ => {}
    }
}

/// A `response`'s arguments, read by `voip24h::deliver`.
fn voip24h_response(args: &[Arg]) {
    let Ok((payload, raw)) = deliver::read_payload(args, u64::MAX) else {
        return;
    };
    let parsed = vendors::voip24h::parse_call_event(&payload);
    assert_eq!(
        parsed,
        vendors::voip24h::parse_call_event(&payload),
        "the same response parsed twice differs"
    );
    if let Ok(event) = parsed {
        let received_at = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_700_000_000);
        assert_cloudevent(
            Vendor::Voip24h,
            Transport::SocketIo,
            event,
            raw,
            received_at,
        );
    }
}

/// A WebSocket client's connect: `QUERY \n LAST-EVENT-ID \n TYPE` (see the
/// module doc). The query and the type must be UTF-8 (a request target and
/// a journaled type are); the `Last-Event-ID` line is the header's bytes,
/// not text when they are not UTF-8, absent when there is no line.
///
/// Properties: no panic; parsing is deterministic; the token shows only as
/// `***` in `Debug`; filter values are non-empty, trimmed, hold no comma
/// and are at most `MAX_FILTER_VALUE_BYTES` long;
/// a resume point read is the text's number; `glob` agrees with a plain
/// dynamic-programming match; an event built from the first value of every
/// filter passes the filter.
pub fn websocket_query(data: &[u8]) {
    let mut lines = data.splitn(3, |b| *b == b'\n');
    let Some(Ok(query)) = lines.next().map(std::str::from_utf8) else {
        return;
    };
    let last_event_id = lines.next().map(|l| std::str::from_utf8(l).map_err(|_| ()));
    let event_type = lines
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .unwrap_or("call.ringing");

    let parsed = ClientQuery::parse(Some(query));
    assert_eq!(
        parsed,
        ClientQuery::parse(Some(query)),
        "parsing is not deterministic"
    );
    if parsed.token.is_some() {
        let without = ClientQuery {
            token: None,
            ..parsed.clone()
        };
        assert_eq!(
            format!("{parsed:?}").replacen("token: Some(\"***\")", "token: None", 1),
            format!("{without:?}"),
            "the token shows in Debug"
        );
    }
    let filter = &parsed.filter;
    for value in filter
        .types
        .iter()
        .chain(&filter.vendors)
        .chain(&filter.accounts)
        .chain(&filter.subjects)
    {
        assert!(
            !value.is_empty()
                && value.trim() == value
                && !value.contains(',')
                && value.len() <= MAX_FILTER_VALUE_BYTES,
            "filter value {value:?}"
        );
    }
    match parsed.since(last_event_id) {
        Ok(Some(seq)) => {
            let text = parsed
                .since
                .as_deref()
                .or(last_event_id.and_then(Result::ok))
                .expect("a seq read from somewhere"); // ok: fuzz property
            assert_eq!(text.trim().parse::<u64>(), Ok(seq), "seq from {text:?}");
        }
        Ok(None) => assert!(parsed.since.is_none() && last_event_id.is_none()),
        Err(QueryError::BadSince { got, .. }) => assert!(got.chars().count() <= 40),
        Err(_) => {}
    }

    for pattern in &filter.types {
        let (p, t) = (pattern.chars().count(), event_type.chars().count());
        if p * t <= 1 << 16 {
            assert_eq!(
                glob(pattern, event_type),
                glob_reference(pattern, event_type),
                "glob({pattern:?}, {event_type:?})"
            );
        }
    }
    let first = |list: &[String], or: &str| list.first().cloned().unwrap_or_else(|| or.to_owned());
    let (vendor, account) = (
        first(&filter.vendors, "tel4vn"),
        first(&filter.accounts, "a"),
    );
    let header = EventHeader {
        id: "00".into(),
        event_type: first(&filter.types, event_type),
        source: format!("/{vendor}/{account}"),
        subject: Some(first(&filter.subjects, "s")),
        vendor,
        account,
        seq: 1,
    };
    assert!(filter.matches(&header), "{filter:?} refuses {header:?}");
}

/// `*` any run of characters, `?` one, the rest literal: the textbook
/// dynamic program, to check the one-backtrack `glob` against.
fn glob_reference(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // matched[j]: pattern[..i] matches text[..j].
    let mut matched = vec![false; t.len() + 1];
    matched[0] = true;
    for pc in &p {
        let mut next = vec![false; t.len() + 1];
        if *pc == '*' {
            next[0] = matched[0];
        }
        for j in 1..=t.len() {
            next[j] = match pc {
                '*' => matched[j] || next[j - 1],
                '?' => matched[j - 1],
                c => matched[j - 1] && *c == t[j - 1],
            };
        }
        matched = next;
    }
    matched[t.len()]
}

#[cfg(test)]
mod tests {
    /// The config target's check that no message shows a file's content:
    /// it holds for a content joined to other text in a name serde quotes
    /// (shown before, in its "unknown variant `…`"), and stays quiet when the
    /// text writes the secret itself, literally or by an escape.
    #[test]
    fn no_message_of_a_refused_config_shows_a_files_content() {
        let hook = |vendor: &str| format!("[[webhook]]\nvendor = {vendor}\naccount = \"a\"\n");
        for text in [
            hook("\"${file:/run/secrets/set}x\""),
            hook("'x${file:/run/secrets/set}'"),
            hook("\"${file:/run/secrets/quoted}\""),
            "[[voip24h]]\naccount = \"m\"\nurl = \"http://h:1\"\nkey = \"k\"\n\
             sign = \"${file:/run/secrets/set}x\"\n"
                .to_owned(),
            hook(&format!("\"{}\"", super::FILE_SECRET)),
            hook("\"hunter-\\u003918273645\""),
        ] {
            super::config(text.as_bytes());
        }
    }
}
