//! An event made ready for the journal before it reaches the journal writer:
//! its id, its routing header and its CloudEvent JSON with only `seq` left to
//! fill in.
//!
//! Why: the journal has one writer thread, and everything it does per event
//! is serial; hashing the dedup key and serializing the JSON happen here, on
//! the submitting task, so the writer only looks up, inserts and commits.
//!
//! Guarantees: `write_json(seq)` produces exactly the bytes of serializing the
//! whole CloudEvent with that `seq` (field order as in CONTRACT.md). The
//! header's `subject` is the JSON's: both through [`spec_string`].

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{EventHeader, EventId, IncomingEvent, RawPayload, format_time, spec_string};

/// An event whose JSON is ready but for its `seq`.
#[derive(Clone, Debug)]
pub struct PreparedEvent {
    pub id: EventId,
    /// The routing attributes; `seq` is 0 until the journal assigns one.
    pub header: EventHeader,
    pub received_at_ms: u64,
    /// The CloudEvent JSON: `json[..seq_at]` ends with `"seq":`, `json[seq_at..]`
    /// starts with `,"vendor":`.
    json: Vec<u8>,
    seq_at: usize,
}

impl PreparedEvent {
    pub fn new(event: &IncomingEvent) -> PreparedEvent {
        PreparedEvent::with_id(event, event.id())
    }

    pub(crate) fn with_id(event: &IncomingEvent, id: EventId) -> PreparedEvent {
        let id_hex = id.to_hex();
        let vendor = event.vendor.as_str();
        let mut source = String::with_capacity(2 + vendor.len() + event.account.len());
        for part in ["/", vendor, "/", &event.account] {
            source.push_str(part);
        }
        let time = format_time(event.event.time.unwrap_or(event.received_at));
        let subject = event.event.subject.as_deref().map(spec_string);
        let head = Head {
            specversion: "1.0",
            id: &id_hex,
            source: &source,
            event_type: &event.event.event_type,
            subject: subject.as_deref(),
            time: &time,
            datacontenttype: "application/json",
        };
        let tail = Tail {
            vendor: event.vendor.as_str(),
            account: &event.account,
            data: Data {
                fields: &event.event.fields,
                raw: &event.raw,
            },
        };
        let mut json = Vec::with_capacity(256);
        write_object(&mut json, &head);
        // `{head…}` + `{tail…}` → `{head…,"seq":` + `,tail…}`.
        json.pop();
        json.extend_from_slice(b",\"seq\":");
        let seq_at = json.len();
        write_object(&mut json, &tail);
        if let Some(brace) = json.get_mut(seq_at) {
            *brace = b',';
        }
        let received_at_ms = (event.received_at.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
        PreparedEvent {
            id,
            header: EventHeader {
                id: id_hex,
                event_type: event.event.event_type.clone(),
                source,
                subject: subject.map(Cow::into_owned),
                vendor: event.vendor.as_str().to_owned(),
                account: event.account.clone(),
                seq: 0,
            },
            received_at_ms,
            json,
            seq_at,
        }
    }

    /// Appends the CloudEvent JSON with `seq` to `out`.
    pub fn write_json(&self, seq: u64, out: &mut Vec<u8>) {
        let (head, tail) = self.json.split_at(self.seq_at);
        out.reserve(self.json.len() + 20);
        out.extend_from_slice(head);
        out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        out.extend_from_slice(tail);
    }

    /// Length of the JSON without the seq digits.
    pub fn json_len_without_seq(&self) -> usize {
        self.json.len()
    }
}

/// Serializes a struct of strings and JSON values as an object `{…}`.
fn write_object<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // ok: a struct of strings, a JSON map with string keys and JSON values cannot fail to serialize.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The attributes before `seq`, in CONTRACT.md order.
#[derive(Serialize)]
struct Head<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    time: &'a str,
    datacontenttype: &'static str,
}

/// The attributes after `seq`.
#[derive(Serialize)]
struct Tail<'a> {
    vendor: &'a str,
    account: &'a str,
    data: Data<'a>,
}

/// `data`: the normalized fields, then `raw`, serialized from borrows (the
/// payload is not copied per event; JSON text as received is written as it is).
struct Data<'a> {
    fields: &'a Map<String, Value>,
    raw: &'a RawPayload,
}

impl Serialize for Data<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.fields.len() + 1))?;
        for (key, value) in self.fields.iter().filter(|(k, _)| k.as_str() != "raw") {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("raw", self.raw)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;
    use crate::event::{Transport, Vendor, VendorEvent};

    fn event(subject: Option<&str>) -> IncomingEvent {
        IncomingEvent {
            vendor: Vendor::Caresoft,
            account: "acme \"west\"".into(),
            transport: Transport::Webhook,
            received_at: OffsetDateTime::from_unix_timestamp_nanos(1_795_428_000_123_000_000)
                .unwrap(),
            event: VendorEvent {
                event_type: "crm.ticket.update".into(),
                subject: subject.map(str::to_owned),
                time: None,
                unread_time: None,
                fields: Map::from_iter([
                    ("ticket_id".to_owned(), json!(9)),
                    ("note".to_owned(), json!("a \"seq\":1, b")),
                ]),
                identity: "t-9".into(),
            },
            raw: json!({"seq": 7, "ticket": {"id": 9}}).into(),
        }
    }

    /// The whole CloudEvent, serialized in one piece the way a reader expects it.
    fn whole(e: &IncomingEvent, seq: u64) -> Value {
        json!({
            "specversion": "1.0",
            "id": e.id().to_hex(),
            "source": format!("/{}/{}", e.vendor, e.account),
            "type": e.event.event_type,
            "subject": e.event.subject,
            "time": "2026-11-23T10:00:00.123Z",
            "datacontenttype": "application/json",
            "seq": seq,
            "vendor": e.vendor.as_str(),
            "account": e.account,
            "data": {"ticket_id": 9, "note": "a \"seq\":1, b", "raw": {"seq": 7, "ticket": {"id": 9}}},
        })
    }

    #[test]
    fn the_seq_lands_between_the_head_and_the_tail() {
        for subject in [Some("t-9"), None] {
            let e = event(subject);
            let prepared = PreparedEvent::new(&e);
            for seq in [0, 1, 42, u64::MAX] {
                let mut out = Vec::new();
                prepared.write_json(seq, &mut out);
                let v: Value = serde_json::from_slice(&out).unwrap();
                let mut expected = whole(&e, seq);
                if subject.is_none() {
                    expected.as_object_mut().unwrap().remove("subject");
                }
                assert_eq!(v, expected, "seq {seq}, subject {subject:?}");
                let text = String::from_utf8(out).unwrap();
                assert!(
                    text.contains(&format!(",\"seq\":{seq},\"vendor\":")),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn the_header_carries_the_routing_attributes() {
        let e = event(Some("t-9"));
        let p = PreparedEvent::new(&e);
        assert_eq!(p.id, e.id());
        assert_eq!(p.header.id, e.id().to_hex());
        assert_eq!(p.header.source, "/caresoft/acme \"west\"");
        assert_eq!(p.header.event_type, "crm.ticket.update");
        assert_eq!(p.header.subject.as_deref(), Some("t-9"));
        assert_eq!(p.header.vendor, "caresoft");
        assert_eq!(p.header.account, "acme \"west\"");
        assert_eq!(p.received_at_ms, 1_795_428_000_123);
    }

    #[test]
    fn write_json_appends() {
        let p = PreparedEvent::new(&event(None));
        let mut out = b"prefix".to_vec();
        p.write_json(5, &mut out);
        assert!(out.starts_with(b"prefix{\"specversion\""));
        assert_eq!(out.len(), 6 + p.json_len_without_seq() + 1);
    }
}
