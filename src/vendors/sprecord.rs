//! SPRecord: `{device_id, event_type, payload}` messages, identical on SSE and
//! webhooks, and the MD5 verification handshake — optional `?token=` check,
//! parsing and normalization (pure).
//!
//! Identity: `device_id + event_type + payload` (payload scalars as text, so
//! `call_id` 8 and "8" are one event; the same event on three SSE streams too);
//! when the payload is no object (an event posted as a form), the whole
//! message instead of the payload.

use md5::{Digest, Md5};
use serde_json::{Map, Value};
use time::UtcOffset;

use super::delivery::check_token;
use super::normalize::{
    Fields, first_date, get, identity, loose_canonical, lower, seconds, status, text, text_of,
};
use super::{AuthError, Delivery, ParseError, Verified, as_object, unknown_event};
use crate::config::Accepted;
use crate::event::VendorEvent;

/// One SPRecord message.
// Nearly every message is an event; boxing it would allocate for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum SprecordMessage {
    Event(VendorEvent),
    /// The webhook verification handshake: answer with the MD5 hex of `payload`.
    Verification {
        payload: String,
    },
}

/// The shared secret is optional; when configured, `?token=` must carry it.
/// Without it, a request a browser sent is refused before this (403, in
/// `sources::webhook`): a web page cannot know a token, but can post.
pub fn verify<'a>(
    token: Option<&Accepted>,
    delivery: Delivery<'a>,
) -> Result<Verified<'a>, AuthError> {
    match token {
        Some(token) => {
            let position = check_token(token, &delivery)?;
            Ok(Verified::by_value_at(delivery, position))
        }
        None => Ok(Verified::new(delivery)),
    }
}

/// The handshake answer: MD5 of the payload's UTF-8 bytes, 32 lowercase hex.
pub fn verification_answer(payload: &str) -> String {
    hex::encode(Md5::digest(payload.as_bytes()))
}

/// Parses one message (an SSE `data:` JSON or a webhook body).
pub fn parse_message(message: &Value) -> Result<SprecordMessage, ParseError> {
    let map = as_object(message, "SPRecord")?;
    let event_type = lower(get(map, "event_type"));
    let payload = get(map, "payload");
    if event_type.as_deref() == Some("verification") {
        return match payload {
            // Exactly as sent: the MD5 is over these bytes.
            Some(Value::String(s)) => Ok(SprecordMessage::Verification { payload: s.clone() }),
            Some(Value::Number(n)) => Ok(SprecordMessage::Verification {
                payload: n.to_string(),
            }),
            _ => Err(ParseError(
                "an SPRecord verification needs a string `payload`".into(),
            )),
        };
    }
    let event = event_type
        .and_then(|t| event(message, map, &t))
        .unwrap_or_else(|| unknown_event(message));
    Ok(SprecordMessage::Event(event))
}

fn event(message: &Value, map: &Map<String, Value>, event_type: &str) -> Option<VendorEvent> {
    let ty = match event_type {
        "startup" => "device.startup",
        "incoming_call" | "outgoing_call" => "call.started",
        "start_talk" => "call.answered",
        "answer_elsewhere" => "call.answered_elsewhere",
        "call_end" => "call.hangup",
        "incoming_sms" => "sms.received",
        _ => return None,
    };
    let empty = Map::new();
    let payload_value = get(map, "payload");
    let p = payload_value.and_then(Value::as_object).unwrap_or(&empty);
    let call_id = text_of(p, &["call_id"]);
    let mut f = Fields::default();
    f.text("call_id", call_id.clone());
    match event_type {
        "incoming_call" => {
            // call_dst is "the PBX's internal number" the call comes in on.
            f.word("direction", Some("inbound"))
                .text("from", text_of(p, &["call_src"]))
                .text("to", text_of(p, &["call_dst"]))
                .text("extension", text_of(p, &["call_dst"]));
        }
        "outgoing_call" => {
            // The extension that places the call is its source, as for the
            // other vendors' outbound calls.
            f.word("direction", Some("outbound"))
                .text("from", text_of(p, &["call_src"]))
                .text("to", text_of(p, &["call_dst"]))
                .text("extension", text_of(p, &["call_src"]));
        }
        "start_talk" => {
            f.text("from", text_of(p, &["call_src"]))
                .text("to", text_of(p, &["call_dst"]));
        }
        "answer_elsewhere" => {
            f.text("extension", text_of(p, &["number"]));
        }
        "call_end" => {
            f.text("status", status(get(p, "status")))
                .value("duration_s", seconds(get(p, "duration")));
        }
        "incoming_sms" => {
            f.word("direction", Some("inbound"))
                .text("from", text_of(p, &["sms_src"]))
                .text(
                    "text",
                    get(p, "text").and_then(Value::as_str).map(str::to_owned),
                );
        }
        _ => {}
    }
    f.text("trunk", text_of(p, &["trunk"]));
    let device = get(map, "device_id").and_then(text);
    // A payload that is no object (an event posted as a form: its fields
    // are `payload[call_id]=…` or top-level, and `payload` is absent or a
    // string) told no two events of a device and type apart, so every one
    // after the first in the window was answered as a duplicate and lost.
    // The whole message tells them apart then; an object payload keeps the
    // identity it always had.
    let told_apart_by = match payload_value {
        Some(payload @ Value::Object(_)) => loose_canonical(payload),
        _ => loose_canonical(message),
    };
    let (when, unread_time) = first_date(&[("payload.date", get(p, "date"))], UtcOffset::UTC);
    Some(VendorEvent {
        event_type: ty.to_owned(),
        subject: call_id,
        time: when,
        unread_time,
        fields: f.build(),
        identity: identity(&[device.as_deref(), Some(event_type), Some(&told_apart_by)]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let text = match name {
            "incoming_call" => {
                include_str!("../../tests/fixtures/vendors/sprecord/incoming_call.json")
            }
            "call_end" => include_str!("../../tests/fixtures/vendors/sprecord/call_end.json"),
            "startup" => include_str!("../../tests/fixtures/vendors/sprecord/startup.json"),
            "verification" => {
                include_str!("../../tests/fixtures/vendors/sprecord/verification.json")
            }
            _ => unreachable!(),
        };
        serde_json::from_str(text).unwrap()
    }

    fn event_of(v: &Value) -> VendorEvent {
        match parse_message(v).unwrap() {
            SprecordMessage::Event(e) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn documented_incoming_call() {
        let raw = fixture("incoming_call");
        let e = event_of(&raw);
        assert_eq!(e.event_type, "call.started");
        assert_eq!(e.subject.as_deref(), Some("8"));
        assert_eq!(
            Value::Object(e.fields),
            json!({"call_id": "8", "direction": "inbound", "from": "+798299xxxxx",
                   "to": "107", "extension": "107", "trunk": "GSM1"})
        );
    }

    #[test]
    fn documented_call_end() {
        let e = event_of(&fixture("call_end"));
        assert_eq!(e.event_type, "call.hangup");
        assert_eq!(e.subject.as_deref(), Some("8"));
        assert_eq!(
            Value::Object(e.fields),
            json!({"call_id": "8", "status": "no_answer", "duration_s": 0})
        );
    }

    #[test]
    fn startup_has_no_subject() {
        let e = event_of(&fixture("startup"));
        assert_eq!(e.event_type, "device.startup");
        assert_eq!(e.subject, None);
        assert!(e.fields.is_empty());
    }

    #[test]
    fn verification_is_not_an_event_and_answers_md5() {
        assert_eq!(
            parse_message(&fixture("verification")).unwrap(),
            SprecordMessage::Verification {
                payload: "verification_str".into()
            }
        );
        // md5("verification_str"), and the classic md5("") vector.
        assert_eq!(verification_answer(""), "d41d8cd98f00b204e9800998ecf8427e");
        let a = verification_answer("verification_str");
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert!(parse_message(&json!({"event_type": "verification", "payload": {}})).is_err());
        // A number is answered as the digits it was sent with.
        let number: Value =
            serde_json::from_str(r#"{"event_type": "verification", "payload": 12345.50}"#).unwrap();
        assert_eq!(
            parse_message(&number).unwrap(),
            SprecordMessage::Verification {
                payload: "12345.50".into()
            }
        );
    }

    #[test]
    fn every_event_type_maps() {
        for (t, ty) in [
            ("incoming_call", "call.started"),
            ("outgoing_call", "call.started"),
            ("start_talk", "call.answered"),
            ("answer_elsewhere", "call.answered_elsewhere"),
            ("call_end", "call.hangup"),
            ("incoming_sms", "sms.received"),
            ("startup", "device.startup"),
            ("Incoming_Call", "call.started"),
            ("reboot", "vendor.unknown"),
        ] {
            let e = event_of(&json!({"device_id": "d", "event_type": t, "payload": {}}));
            assert_eq!(e.event_type, ty, "{t}");
        }
    }

    #[test]
    fn outgoing_and_talk_fields() {
        let payload =
            json!({"call_id": "8", "call_src": "107", "call_dst": "+7900", "trunk": "GSM1"});
        let e =
            event_of(&json!({"device_id": "d", "event_type": "outgoing_call", "payload": payload}));
        assert_eq!(
            Value::Object(e.fields),
            json!({"call_id": "8", "direction": "outbound", "from": "107", "to": "+7900",
                   "extension": "107", "trunk": "GSM1"})
        );
        let e =
            event_of(&json!({"device_id": "d", "event_type": "start_talk", "payload": payload}));
        assert_eq!(
            Value::Object(e.fields),
            json!({"call_id": "8", "from": "107", "to": "+7900", "trunk": "GSM1"})
        );
    }

    #[test]
    fn sms_and_answer_elsewhere_fields() {
        let e = event_of(&json!({"device_id": "d", "event_type": "incoming_sms",
            "payload": {"sms_src": "+7900", "text": "Привет", "trunk": "GSM2",
                        "date": "2022-06-16T09:30:53.341Z"}}));
        assert_eq!(e.fields["text"], "Привет");
        assert_eq!(e.fields["from"], "+7900");
        assert_eq!(e.fields["trunk"], "GSM2");
        assert!(e.time.is_some());
        let e = event_of(&json!({"device_id": "d", "event_type": "answer_elsewhere",
            "payload": {"call_id": 9, "number": "105"}}));
        assert_eq!(e.fields["extension"], "105");
        assert_eq!(e.subject.as_deref(), Some("9"));
    }

    #[test]
    fn call_id_number_or_string_is_one_identity() {
        let a = event_of(&json!({"device_id":"d","event_type":"call_end",
            "payload":{"call_id":8,"record_id":8,"status":"success"}}));
        let b = event_of(
            &json!({"payload":{"status":"success","record_id":"8","call_id":"8"},
            "event_type":"call_end","device_id":"d"}),
        );
        assert_eq!(a.identity, b.identity);
        let c = event_of(&json!({"device_id":"d2","event_type":"call_end",
            "payload":{"call_id":8,"record_id":8,"status":"success"}}));
        assert_ne!(a.identity, c.identity);
    }
}
