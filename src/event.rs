//! The event model: what a vendor module produces, what ingest journals, and the
//! CloudEvents 1.0 JSON that every sink sends.
//!
//! Guarantees: an event's `id` is a pure function of its dedup key (vendor,
//! account and the vendor's natural identity of the event), so the same vendor
//! event seen twice — on two streams, on a retry, after a restart — has the same
//! `id`. The CloudEvent JSON is built once (all of it but `seq` before the
//! event reaches the journal writer, see [`PreparedEvent`]) and sent as-is everywhere.
//! Its `subject` holds no character CloudEvents' String type forbids (see
//! [`spec_string`]); `data` holds the vendor's text as it came.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

mod prepared;
mod raw;
pub use prepared::PreparedEvent;
pub use raw::RawPayload;

/// The five vendors callrelay speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Voip24h,
    Sprecord,
    Caresoft,
    Tel4vn,
    Voipex,
}

impl Vendor {
    pub const ALL: [Vendor; 5] = [
        Vendor::Voip24h,
        Vendor::Sprecord,
        Vendor::Caresoft,
        Vendor::Tel4vn,
        Vendor::Voipex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Voip24h => "voip24h",
            Vendor::Sprecord => "sprecord",
            Vendor::Caresoft => "caresoft",
            Vendor::Tel4vn => "tel4vn",
            Vendor::Voipex => "voipex",
        }
    }

    /// The categories (first part of the type) this vendor's events can
    /// have, `vendor` (for `vendor.unknown`) included: the `type` label values
    /// of `callrelay_events_journaled_total` exported at 0 for it.
    pub fn categories(self) -> &'static [&'static str] {
        match self {
            Vendor::Voip24h => &["call", "feedback", "vendor"],
            Vendor::Sprecord => &["call", "device", "sms", "vendor"],
            Vendor::Caresoft => &["call", "autocall", "crm", "vendor"],
            Vendor::Tel4vn => &["call", "autocall", "vendor"],
            Vendor::Voipex => &["call", "agent", "vendor"],
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown vendor `{0}` (expected one of voip24h, sprecord, caresoft, tel4vn, voipex)")]
pub struct UnknownVendor(pub String);

impl FromStr for Vendor {
    type Err = UnknownVendor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVendor(s.to_owned()))
    }
}

/// How an event reached callrelay (the `transport` label of
/// `callrelay_events_received_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    SocketIo,
    Sse,
    Webhook,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::SocketIo => "socketio",
            Transport::Sse => "sse",
            Transport::Webhook => "webhook",
        }
    }
}

/// The literal type of an event the relay does not recognise.
pub const UNKNOWN_TYPE: &str = "vendor.unknown";

/// What a pure vendor module makes of one vendor message: the CONTRACT type
/// and the normalized fields, plus the vendor's natural identity of the event
/// (the part of the dedup key that is not vendor/account). The payload itself
/// travels beside it, as received, in [`IncomingEvent::raw`].
#[derive(Clone, Debug, PartialEq)]
pub struct VendorEvent {
    /// A CONTRACT type such as `call.ringing`, `crm.ticket.update` or `vendor.unknown`.
    pub event_type: String,
    /// The call id, agent or entity id; `None` when the vendor gives none, `0` or `""`.
    /// The vendor's text: it is emitted through [`spec_string`].
    pub subject: Option<String>,
    /// The vendor's own event time, when it gives one.
    pub time: Option<OffsetDateTime>,
    /// When `time` is `None` though the vendor gave a date, in a form the
    /// relay does not read: the field and its text. The receive time then
    /// stands in, which the source that builds the event says (a vendor
    /// module does no logging).
    pub unread_time: Option<UnreadDate>,
    /// Normalized `data` fields (`call_id`, `direction`, `from`, …), without `raw`.
    pub fields: Map<String, Value>,
    /// The vendor's natural identity of this event, canonical text: equal for a
    /// re-serialised or retried delivery of the same event, different for two
    /// events that differ in what happened.
    pub identity: String,
}

/// A vendor's date field that held a date in no form the relay reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadDate {
    /// The field, as the vendor names it (`calldate`, `cdr.calldate`, …).
    pub field: &'static str,
    /// Its text, cut to [`EXCERPT_CHARS`](crate::logging::EXCERPT_CHARS)
    /// characters: it is for a log line.
    pub text: String,
}

/// A vendor event with where it came from, on its way to ingest.
#[derive(Clone, Debug)]
pub struct IncomingEvent {
    pub vendor: Vendor,
    pub account: String,
    pub transport: Transport,
    pub received_at: OffsetDateTime,
    pub event: VendorEvent,
    /// The vendor payload as received: `data.raw`.
    pub raw: RawPayload,
}

/// The deterministic event id: the first 16 bytes of SHA-256 over the dedup key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub [u8; 16]);

impl EventId {
    /// The id of the event whose dedup key is (vendor, account, identity).
    /// Fields are length-prefixed so that no two different triples share bytes.
    pub fn for_key(vendor: Vendor, account: &str, identity: &str) -> EventId {
        let mut hasher = Sha256::new();
        for part in [vendor.as_str(), account, identity] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        EventId(id)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<EventId> {
        let bytes = hex::decode(text).ok()?;
        Some(EventId(bytes.try_into().ok()?))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl IncomingEvent {
    pub fn id(&self) -> EventId {
        EventId::for_key(self.vendor, &self.account, &self.event.identity)
    }

    /// The CloudEvents 1.0 structured-mode JSON of this event once journaled as `seq`.
    pub fn to_cloudevent_json(&self, id: EventId, seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        PreparedEvent::with_id(self, id).write_json(seq, &mut out);
        out
    }
}

/// RFC 3339 in UTC with milliseconds, as in CONTRACT.md (`2026-11-23T10:00:00.123Z`).
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    // Digit by digit rather than `format!`: every event's `time` goes through here.
    let mut out = String::with_capacity(24);
    let year = t.year();
    if (0..=9999).contains(&year) {
        push_digits(&mut out, year as u32, 4);
    } else {
        out.push_str(&format!("{year:04}"));
    }
    for (separator, value, width) in [
        ('-', u32::from(u8::from(t.month())), 2),
        ('-', u32::from(t.day()), 2),
        ('T', u32::from(t.hour()), 2),
        (':', u32::from(t.minute()), 2),
        (':', u32::from(t.second()), 2),
        ('.', u32::from(t.millisecond()), 3),
    ] {
        out.push(separator);
        push_digits(&mut out, value, width);
    }
    out.push('Z');
    out
}

/// `value` in exactly `width` decimal digits (zero-padded; `value` fits).
fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = (value / 10u32.pow(place)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// The attributes sinks route and filter on, read back from a journaled CloudEvent.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct EventHeader {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    #[serde(default)]
    pub subject: Option<String>,
    pub vendor: String,
    pub account: String,
    pub seq: u64,
}

impl EventHeader {
    /// The first part of the type (`call`, `crm`, `agent`, …).
    pub fn category(&self) -> &str {
        category_of(&self.event_type)
    }

    /// The header's fields, borrowed.
    pub fn borrowed(&self) -> HeaderRef<'_> {
        HeaderRef {
            id: &self.id,
            event_type: &self.event_type,
            source: &self.source,
            subject: self.subject.as_deref(),
            vendor: &self.vendor,
            account: &self.account,
            seq: self.seq,
        }
    }
}

/// An [`EventHeader`]'s fields borrowed from where they are stored: a reader
/// that only filters on them (a WebSocket replay, a client's queue count)
/// looks at a journal record without copying its six strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub source: &'a str,
    pub subject: Option<&'a str>,
    pub vendor: &'a str,
    pub account: &'a str,
    pub seq: u64,
}

impl HeaderRef<'_> {
    /// The header, owned.
    pub fn to_owned_header(&self) -> EventHeader {
        EventHeader {
            id: self.id.to_owned(),
            event_type: self.event_type.to_owned(),
            source: self.source.to_owned(),
            subject: self.subject.map(str::to_owned),
            vendor: self.vendor.to_owned(),
            account: self.account.to_owned(),
            seq: self.seq,
        }
    }
}

pub fn category_of(event_type: &str) -> &str {
    event_type.split('.').next().unwrap_or(event_type)
}

/// Text of a JSON scalar as the vendor wrote it: strings without the
/// whitespace around them (docs/webhooks.md: a padded id is the same id),
/// numbers in their original digits (`1581385341.710` stays `1581385341.710`),
/// booleans as `true`/`false`. `None` for null, objects, arrays, `""` and `0`,
/// which vendors use to mean "no value".
pub fn id_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    if text.is_empty() || text == "0" {
        None
    } else {
        Some(text)
    }
}

/// `text` with each character CloudEvents 1.0.2's String type forbids — the
/// controls U+0000–U+001F and U+007F–U+009F and the noncharacters
/// (U+FDD0–U+FDEF and the last two code points of every plane) — as U+FFFD.
/// Surrogates cannot occur in a `str`. Borrowed when there is none.
///
/// Why replaced and not the attribute left out: a consumer that forwards an
/// event in HTTP binary mode writes `subject` as a `ce-subject` header, which
/// Go's and Java's HTTP stacks refuse with a CR, LF or NUL in it; and
/// `subject` is the Kafka key. Replacing gives every event of one call the
/// same key still, so they stay on one partition in order; leaving it out
/// would key each by its own id and scatter the call. Two call ids that differ
/// only in such characters share a key then, which costs ordering between
/// them nothing. Identity is not made from this text (it is the vendor's, in
/// [`VendorEvent::identity`]), so ids do not change.
pub fn spec_string(text: &str) -> Cow<'_, str> {
    if !text.chars().any(forbidden_in_spec_string) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if forbidden_in_spec_string(c) {
                    char::REPLACEMENT_CHARACTER
                } else {
                    c
                }
            })
            .collect(),
    )
}

fn forbidden_in_spec_string(c: char) -> bool {
    let code = u32::from(c);
    // `is_control` is exactly Unicode's Cc: U+0000–U+001F and U+007F–U+009F.
    c.is_control() || (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
}

/// How [`canonical_text`] writes scalars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalars {
    /// As JSON, numbers in their original digits.
    Exact,
    /// Every scalar as its text (`8` and `"8"` alike), strings trimmed: for
    /// vendors that re-serialise the same event with other types.
    Loose,
}

/// Canonical text of a JSON value for identities: object keys sorted, numbers
/// in their original digits, so a re-serialised payload gives the same text.
pub fn canonical_json(value: &Value) -> String {
    canonical_text(value, Scalars::Exact)
}

/// Canonical text of a JSON value with keys sorted and scalars as `scalars` says.
pub fn canonical_text(value: &Value, scalars: Scalars) -> String {
    let mut out = String::new();
    write_canonical(value, scalars, &mut out);
    out
}

fn write_canonical(value: &Value, scalars: Scalars, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], scalars, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, scalars, out);
            }
            out.push(']');
        }
        Value::String(s) if scalars == Scalars::Loose => {
            out.push_str(&Value::String(s.trim().to_owned()).to_string())
        }
        Value::Number(n) if scalars == Scalars::Loose => {
            out.push_str(&Value::String(n.to_string()).to_string())
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_is_deterministic_and_32_lowercase_hex() {
        let a = EventId::for_key(Vendor::Voip24h, "main", "1287674126.299|ring|130");
        let b = EventId::for_key(Vendor::Voip24h, "main", "1287674126.299|ring|130");
        assert_eq!(a, b);
        let hex = a.to_hex();
        assert_eq!(hex.len(), 32);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert_eq!(EventId::from_hex(&hex), Some(a));
        // Logs and error texts print the id as the CloudEvent carries it.
        assert_eq!(a.to_string(), hex);
    }

    #[test]
    fn transport_labels_are_the_contracts() {
        let labels =
            [Transport::SocketIo, Transport::Sse, Transport::Webhook].map(Transport::as_str);
        assert_eq!(labels, ["socketio", "sse", "webhook"]);
    }

    #[test]
    fn id_is_sha256_prefix_of_the_key() {
        let id = EventId::for_key(Vendor::Tel4vn, "t", "x");
        let mut h = Sha256::new();
        h.update(6u64.to_be_bytes());
        h.update(b"tel4vn");
        h.update(1u64.to_be_bytes());
        h.update(b"t");
        h.update(1u64.to_be_bytes());
        h.update(b"x");
        assert_eq!(&h.finalize()[..16], &id.0);
    }

    #[test]
    fn id_differs_by_vendor_account_and_identity_without_ambiguity() {
        let base = EventId::for_key(Vendor::Voip24h, "ab", "c");
        assert_ne!(base, EventId::for_key(Vendor::Voip24h, "a", "bc"));
        assert_ne!(base, EventId::for_key(Vendor::Tel4vn, "ab", "c"));
        assert_ne!(base, EventId::for_key(Vendor::Voip24h, "ab", "d"));
    }

    #[test]
    fn hex_and_time_match_their_reference_formatting() {
        for seed in [0u8, 1, 0x5a, 0xff] {
            let id = EventId([seed.wrapping_mul(37); 16].map(|b| b ^ seed));
            assert_eq!(id.to_hex(), hex::encode(id.0));
        }
        for nanos in [
            0i128,
            1_795_428_000_123_000_000,
            -62_135_596_800_000_000_000 + 5_006_000_000, // 0001-01-01T00:00:05.006
            253_402_300_799_999_000_000,                 // 9999-12-31T23:59:59.999
        ] {
            let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
            let reference = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            );
            assert_eq!(format_time(t), reference);
        }
        let offset = OffsetDateTime::from_unix_timestamp(1_795_428_000)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap());
        assert_eq!(format_time(offset), "2026-11-23T10:00:00.000Z");
    }

    #[test]
    fn numbers_keep_their_digits() {
        let v: Value = serde_json::from_str(r#"{"callid":1581385341.710}"#).unwrap();
        assert_eq!(id_text(&v["callid"]).as_deref(), Some("1581385341.710"));
        assert_eq!(id_text(&json!("8")), id_text(&json!(8)));
        assert_eq!(id_text(&json!(0)), None);
        assert_eq!(id_text(&json!("")), None);
        assert_eq!(id_text(&Value::Null), None);
        assert_eq!(id_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(id_text(&json!(" C-1 ")).as_deref(), Some("C-1"));
    }

    /// Journaled ids are hashes of these texts: they must not change.
    #[test]
    fn canonical_texts_are_pinned() {
        let v: Value = serde_json::from_str(r#"{"b":" x ","a":[8,1.50,true,null]}"#).unwrap();
        assert_eq!(
            canonical_text(&v, Scalars::Exact),
            r#"{"a":[8,1.50,true,null],"b":" x "}"#
        );
        assert_eq!(
            canonical_text(&v, Scalars::Loose),
            r#"{"a":["8","1.50",true,null],"b":"x"}"#
        );
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":[1,"s"]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":[1,"s"],"y":2},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":[1,"s"],"y":2},"b":1}"#);
    }

    #[test]
    fn spec_string_replaces_exactly_what_cloudevents_forbids() {
        for (c, forbidden) in [
            ('\u{0}', true),
            ('\u{1f}', true),
            (' ', false),
            ('~', false),
            ('\u{7f}', true),
            ('\u{9f}', true),
            ('\u{a0}', false),
            ('\u{fdcf}', false),
            ('\u{fdd0}', true),
            ('\u{fdef}', true),
            ('\u{fdf0}', false),
            ('\u{fffd}', false),
            ('\u{fffe}', true),
            ('\u{ffff}', true),
            ('\u{1fffd}', false),
            ('\u{1fffe}', true),
            ('\u{10ffff}', true),
        ] {
            let text = format!("a{c}b");
            let out = spec_string(&text);
            let expected = if forbidden {
                "a\u{fffd}b".to_owned()
            } else {
                text.clone()
            };
            assert_eq!(out, expected, "U+{:04X}", u32::from(c));
            assert_eq!(matches!(out, Cow::Borrowed(_)), !forbidden);
        }
    }

    #[test]
    fn cloudevent_json_has_contract_fields() {
        let ev = IncomingEvent {
            vendor: Vendor::Voip24h,
            account: "main".into(),
            transport: Transport::Webhook,
            received_at: OffsetDateTime::from_unix_timestamp_nanos(1_795_428_000_123_000_000)
                .unwrap(),
            event: VendorEvent {
                event_type: "call.ringing".into(),
                subject: Some("1287674126.299".into()),
                time: None,
                unread_time: None,
                fields: Map::from_iter([("call_id".to_owned(), json!("1287674126.299"))]),
                identity: "k".into(),
            },
            raw: json!({"callid": 1287674126.299_f64}).into(),
        };
        let id = ev.id();
        let bytes = ev.to_cloudevent_json(id, 42);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], id.to_hex());
        assert_eq!(v["source"], "/voip24h/main");
        assert_eq!(v["type"], "call.ringing");
        assert_eq!(v["subject"], "1287674126.299");
        assert_eq!(v["time"], "2026-11-23T10:00:00.123Z");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["seq"], 42);
        assert_eq!(v["vendor"], "voip24h");
        assert_eq!(v["account"], "main");
        assert_eq!(v["data"]["call_id"], "1287674126.299");
        assert!(v["data"]["raw"].is_object());
        let header: EventHeader = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(header.category(), "call");
        assert_eq!(header.seq, 42);
    }
}
