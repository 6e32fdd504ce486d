//! Pure vendor modules: bytes and headers in, a verified, normalized
//! [`VendorEvent`](crate::event::VendorEvent) (or a typed error) out.
//!
//! A webhook goes through two steps, and the types keep them in order:
//! [`Credentials::verify`] turns a raw [`Delivery`] into a [`Verified`] one
//! (the vendor's check over the raw bytes, in constant time), and only a
//! `Verified` delivery can be [`parse`]d into an event.
//!
//! Guarantees: no I/O, no clock read, no panic on any input.

pub mod caresoft;
pub mod delivery;
pub mod normalize;
pub mod sprecord;
pub mod tel4vn;
pub mod text;
pub mod voip24h;
pub mod voipex;

use std::borrow::Cow;

use serde_json::{Map, Value};
use time::OffsetDateTime;

pub use delivery::{AuthError, Delivery, Method, Verified, VerifiedHead};

use crate::config::Accepted;
use crate::event::{RawPayload, UNKNOWN_TYPE, Vendor, VendorEvent};

/// A payload that cannot be read as the vendor's format; the text says why
/// (it is shown to the sender in a 400 and must hold no secret).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// An object the vendor module does not recognise: relayed as `vendor.unknown`
/// (with its raw payload, as every event), identified by the payload's
/// canonical text (scalars as text, so a re-serialised retry is still the same event).
pub fn unknown_event(payload: &Value) -> VendorEvent {
    VendorEvent {
        event_type: UNKNOWN_TYPE.to_owned(),
        subject: None,
        time: None,
        unread_time: None,
        fields: Default::default(),
        identity: normalize::loose_canonical(payload),
    }
}

/// One webhook account's credentials, as configured.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// HMAC-SHA1 key of `X-Hub-Signature` (any of them, during a rotation).
    Caresoft { secret: Accepted },
    /// The callback api key, in `header` (`Bearer KEY` or bare) or, when
    /// `query` is set, in that query parameter instead.
    Tel4vn {
        api_key: Accepted,
        header: String,
        query: Option<String>,
    },
    /// HTTP Basic auth.
    Voipex {
        username: String,
        password: Accepted,
    },
    /// `?token=`.
    Voip24h { token: Accepted },
    /// `?token=` when set.
    Sprecord { token: Option<Accepted> },
}

impl Credentials {
    pub fn vendor(&self) -> Vendor {
        match self {
            Credentials::Caresoft { .. } => Vendor::Caresoft,
            Credentials::Tel4vn { .. } => Vendor::Tel4vn,
            Credentials::Voipex { .. } => Vendor::Voipex,
            Credentials::Voip24h { .. } => Vendor::Voip24h,
            Credentials::Sprecord { .. } => Vendor::Sprecord,
        }
    }

    /// The query parameter the credential travels in, if it does.
    pub fn query_param(&self) -> Option<&str> {
        match self {
            Credentials::Tel4vn { query, .. } => query.as_deref(),
            Credentials::Voip24h { .. } | Credentials::Sprecord { token: Some(_) } => {
                Some(delivery::TOKEN_PARAM)
            }
            Credentials::Caresoft { .. }
            | Credentials::Voipex { .. }
            | Credentials::Sprecord { token: None } => None,
        }
    }

    /// Checks credentials that travel in a header or the query before the
    /// body is read (`delivery.body` is not looked at). For CareSoft, whose
    /// signature covers the body and is checked by [`Self::verify`], only a
    /// request with no signature to check is refused here (`None` else):
    /// its body is not read to be thrown away.
    pub fn verify_head<'a>(
        &self,
        delivery: Delivery<'a>,
    ) -> Option<Result<VerifiedHead<'a>, AuthError>> {
        if matches!(self, Credentials::Caresoft { .. }) {
            return caresoft::presented_signature(&delivery).err().map(Err);
        }
        Some(self.verify(delivery).map(VerifiedHead))
    }

    /// The vendor's authentication check over the raw delivery.
    pub fn verify<'a>(&self, delivery: Delivery<'a>) -> Result<Verified<'a>, AuthError> {
        match self {
            Credentials::Caresoft { secret } => caresoft::verify(secret, delivery),
            Credentials::Tel4vn {
                api_key,
                header,
                query,
            } => tel4vn::verify(api_key, header, query.as_deref(), delivery),
            Credentials::Voipex { username, password } => {
                voipex::verify(username, password, delivery)
            }
            Credentials::Voip24h { token } => voip24h::verify(token, delivery),
            Credentials::Sprecord { token } => sprecord::verify(token.as_ref(), delivery),
        }
    }
}

/// What a verified webhook delivery holds.
// Nearly every delivery is an event; boxing it would allocate for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    /// The event, and the payload as received (`data.raw`).
    Event(VendorEvent, RawPayload),
    /// SPRecord's verification handshake: answered with the MD5 of `payload`.
    Verification { payload: String },
}

/// Parses a verified delivery of `vendor`; `received_at` only breaks ties for
/// events that carry no identity of their own (see [`voipex::parse`]).
pub fn parse(
    vendor: Vendor,
    verified: &Verified<'_>,
    received_at: OffsetDateTime,
) -> Result<Parsed, ParseError> {
    let delivery = verified.delivery();
    if let Some(payload) = verification_in_the_query(vendor, delivery) {
        return Ok(Parsed::Verification { payload });
    }
    // The payload, and the JSON text it was read from when the body is JSON
    // (kept as `data.raw` as it is); fields the relay read have none.
    let (payload, json_text) = match (vendor, delivery.method) {
        (Vendor::Voip24h, Method::Get) => {
            let params = query_object(delivery.query);
            if params.is_empty() {
                return Err(ParseError(
                    "a GET carries the feedback callback's query parameters, and there are none"
                        .into(),
                ));
            }
            (Value::Object(params), None)
        }
        // SPRecord's document describes its verification as "a POST with
        // parameters", which a form is as much as JSON.
        (Vendor::Voip24h | Vendor::Sprecord, Method::Post) if delivery.is_form() => {
            form_object(delivery.body, delivery.header("content-type"))?
        }
        _ => {
            let (value, text) = json_object(delivery.body, delivery.header("content-type"))?;
            (value, Some(text))
        }
    };
    let event = match vendor {
        Vendor::Caresoft => caresoft::parse(&payload)?,
        Vendor::Tel4vn => tel4vn::parse(&payload, tel4vn::hook_event(delivery.query)?)?,
        Vendor::Voipex => voipex::parse(&payload, received_at)?,
        Vendor::Voip24h => voip24h::parse_call_event(&payload)?,
        Vendor::Sprecord => match sprecord::parse_message(&payload)? {
            sprecord::SprecordMessage::Event(e) => e,
            sprecord::SprecordMessage::Verification { payload } => {
                return Ok(Parsed::Verification { payload });
            }
        },
    };
    let raw = match json_text.as_deref().and_then(RawPayload::json) {
        Some(raw) => raw,
        None => RawPayload::Fields(payload),
    };
    Ok(Parsed::Event(event, raw))
}

/// SPRecord's handshake sent as query parameters with an empty body
/// (`requests.post(hook, params=…)`): its document says only "a POST with
/// parameters", and this was a 400 that no setting could get past. The
/// handshake journals nothing, and the `?token=` check has run. Events are
/// not read from the query.
fn verification_in_the_query(vendor: Vendor, delivery: &Delivery<'_>) -> Option<String> {
    if vendor != Vendor::Sprecord
        || !matches!(delivery.method, Method::Post)
        || !is_blank(delivery.body)
    {
        return None;
    }
    let params = query_object(delivery.query);
    match sprecord::parse_message(&Value::Object(params)) {
        Ok(sprecord::SprecordMessage::Verification { payload }) => Some(payload),
        _ => None,
    }
}

/// A body declared as an HTML form: its fields as an object of strings, or,
/// when it is a JSON object, that object and its text.
fn form_object<'a>(
    body: &'a [u8],
    content_type: Option<&[u8]>,
) -> Result<(Value, Option<Cow<'a, str>>), ParseError> {
    if is_blank(body) {
        return Err(ParseError(
            "empty body: expected form fields or a JSON object".into(),
        ));
    }
    let charset = text::declared_charset(content_type)?;
    // `curl -d '{…}'` and PHP's curl post JSON labelled as a form; read as
    // form fields it would be one field named after the whole JSON text.
    // Judged on the text in its charset (UTF-16's `{` is not the byte);
    // on the bytes when they are not text in it.
    let (opens_json, opens_a_key, holds_an_equals, reads_as_json) =
        match text::body_text(body, charset) {
            Ok(decoded) => {
                let start = decoded.trim_start_matches([' ', '\t', '\n', '\r']);
                let start = start.strip_prefix('\u{feff}').unwrap_or(start);
                let opens_json = start.starts_with(['{', '[', '"']);
                (
                    opens_json,
                    start.strip_prefix('{').is_some_and(|rest| {
                        rest.trim_start_matches([' ', '\t', '\n', '\r'])
                            .starts_with('"')
                    }),
                    decoded.contains('='),
                    opens_json && serde_json::from_str::<serde::de::IgnoredAny>(start).is_ok(),
                )
            }
            Err(_) => {
                let start = body.strip_prefix(text::UTF8_BOM).unwrap_or(body);
                let start = start.trim_ascii_start();
                (
                    matches!(start.first(), Some(b'{' | b'[' | b'"')),
                    start
                        .strip_prefix(b"{")
                        .is_some_and(|rest| rest.trim_ascii_start().starts_with(b"\"")),
                    body.contains(&b'='),
                    false,
                )
            }
        };
    if opens_json {
        match json_object(body, content_type) {
            Ok((value, json)) => return Ok((value, Some(json))),
            // JSON that does not read (cut short, say) is refused, to be
            // sent again: read as form fields it was one field named after
            // the text, journaled as `vendor.unknown` and answered 200, and
            // the call event was lost. A form encoder writes `{"` as
            // `%7B%22`, so a body opening with it (whitespace between the
            // two too: pretty-printed JSON), or with no `=` at all,
            // is no form. JSON that reads but is no object (an array of
            // events, an object encoded twice into a string) is refused
            // as it is with a JSON label.
            Err(e) if opens_a_key || !holds_an_equals || reads_as_json => return Err(e),
            Err(_) => {}
        }
    }
    // Skipped as `body_text` skips it for the check above: kept, it became
    // part of the first field's name, which no lookup then found (a Voip24h
    // `callid` lost, and with it the call's identity and Kafka key).
    let fields = match charset {
        None => body.strip_prefix(text::UTF8_BOM).unwrap_or(body),
        Some(_) => body,
    };
    let pairs = text::form_pairs(fields, charset, text::Pairs::FormFields)?;
    // All of them: our `token` travels in the URL's query, so a body's
    // field of that name is the vendor's data, kept in `raw` as received.
    Ok((Value::Object(pairs_object(&pairs)), None))
}

/// Whether a body holds nothing but ASCII whitespace: no event in it.
pub(crate) fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// A body that must be one JSON object (in the charset `content_type`
/// names, else UTF-8), and the text it was read from.
pub fn json_object<'a>(
    body: &'a [u8],
    content_type: Option<&[u8]>,
) -> Result<(Value, Cow<'a, str>), ParseError> {
    if is_blank(body) {
        return Err(ParseError("empty body: expected a JSON object".into()));
    }
    let body_text = text::body_text(body, text::declared_charset(content_type)?)?;
    let (value, read) = text::parse_json(&body_text).map_err(|e| {
        ParseError(match e {
            text::JsonError::TooManyValues => format!("the body holds {e}"),
            _ => format!("the body is not valid JSON: {e}"),
        })
    })?;
    if !value.is_object() {
        return Err(ParseError(format!(
            "expected a JSON object, got {}",
            kind(&value)
        )));
    }
    let repaired = match read {
        Cow::Owned(repaired) => Some(repaired),
        Cow::Borrowed(_) => None,
    };
    Ok((value, repaired.map_or(body_text, Cow::Owned)))
}

/// A query's pairs as an object of strings, as [`pairs_object`], less
/// `token`: our credential, not vendor data.
pub fn query_object(pairs: &[(String, String)]) -> Map<String, Value> {
    pairs_object(pairs.iter().filter(|(k, _)| k != delivery::TOKEN_PARAM))
}

/// Form or query pairs as an object of strings; the first value of a
/// repeated name wins.
fn pairs_object<'p>(pairs: impl IntoIterator<Item = &'p (String, String)>) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in pairs {
        if !map.contains_key(k) {
            map.insert(k.clone(), Value::String(v.clone()));
        }
    }
    map
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Requires a JSON object, with the vendor's name in the error.
fn as_object<'a>(payload: &'a Value, vendor: &str) -> Result<&'a Map<String, Value>, ParseError> {
    payload.as_object().ok_or_else(|| {
        ParseError(format!(
            "a {vendor} event must be a JSON object, got {}",
            kind(payload)
        ))
    })
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_are_not_one_object_are_refused_with_a_reason() {
        for (body, needle) in [
            (&b""[..], "empty"),
            (b"  \n", "empty"),
            (b"{\"a\":", "not valid JSON"),
            (b"[1,2]", "array"),
            (b"\"x\"", "string"),
            (b"{} {}", "not valid JSON"),
        ] {
            let err = json_object(body, None).unwrap_err();
            assert!(err.0.contains(needle), "{:?}: {}", body, err.0);
        }
        assert!(json_object(b"{\"a\":1}", None).is_ok());
    }

    fn parse_as(
        vendor: Vendor,
        method: Method,
        content_type: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> Result<Parsed, ParseError> {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("content-type", content_type.parse().unwrap());
        let d = Delivery {
            method,
            headers: &headers,
            query,
            body,
        };
        parse(vendor, &Verified::new(d), OffsetDateTime::UNIX_EPOCH)
    }

    /// The event the relay takes in from `parsed`, a webhook of `vendor`
    /// for `account`; `None` when the delivery made no event.
    fn taken_in(
        vendor: Vendor,
        account: &str,
        parsed: Result<Parsed, ParseError>,
    ) -> Option<crate::event::IncomingEvent> {
        let Ok(Parsed::Event(event, raw)) = parsed else {
            return None;
        };
        Some(crate::event::IncomingEvent {
            vendor,
            account: account.into(),
            transport: crate::event::Transport::Webhook,
            received_at: OffsetDateTime::UNIX_EPOCH,
            event,
            raw,
        })
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    /// SPRecord's document describes the verification as "a POST with
    /// parameters": as a form it is answered like the JSON one (it was a
    /// 400, so a device that sends a form could never register its hook).
    #[test]
    fn an_sprecord_verification_as_a_form_is_a_verification() {
        let body = b"device_id=Y7d6hP0m%2BWBT&event_type=verification&payload=verification_str";
        let Ok(Parsed::Verification { payload }) =
            parse_as(Vendor::Sprecord, Method::Post, FORM, &[], body)
        else {
            panic!("not a verification");
        };
        assert_eq!(payload, "verification_str");
    }

    /// SPRecord's handshake with its parameters in the query and no body is
    /// answered as the one in a body; an event in the query is not read.
    #[test]
    fn an_sprecord_verification_in_the_query_is_a_verification() {
        let query = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let handshake = query(&[
            ("token", "t"),
            ("device_id", "d"),
            ("event_type", "verification"),
            ("payload", "abc"),
        ]);
        let Ok(Parsed::Verification { payload }) =
            parse_as(Vendor::Sprecord, Method::Post, FORM, &handshake, b"")
        else {
            panic!("not a verification");
        };
        assert_eq!(payload, "abc");
        let event = query(&[("device_id", "d"), ("event_type", "startup")]);
        assert!(parse_as(Vendor::Sprecord, Method::Post, FORM, &event, b"").is_err());
        assert!(
            parse_as(Vendor::Tel4vn, Method::Post, FORM, &handshake, b"").is_err(),
            "SPRecord's alone"
        );
    }

    /// Two calls of one SPRecord device posted as forms (PHP's nested
    /// `payload[call_id]`, or the fields at the top) are two events: with no
    /// `payload` object every one had the identity `[device, type, null]`,
    /// and all but the first in the window were answered as duplicates.
    #[test]
    fn sprecord_events_posted_as_forms_are_told_apart() {
        let identity = |body: &[u8]| match parse_as(Vendor::Sprecord, Method::Post, FORM, &[], body)
        {
            Ok(Parsed::Event(e, _)) => e.identity,
            other => panic!("not an event: {other:?}"),
        };
        for (first, second) in [
            (
                &b"device_id=D&event_type=incoming_call&payload%5Bcall_id%5D=8&payload%5Bcall_src%5D=%2B7900"[..],
                &b"device_id=D&event_type=incoming_call&payload%5Bcall_id%5D=9&payload%5Bcall_src%5D=%2B7900"[..],
            ),
            (
                b"device_id=D&event_type=call_end&call_id=8&status=ANSWERED",
                b"device_id=D&event_type=call_end&call_id=9&status=ANSWERED",
            ),
        ] {
            assert_ne!(identity(first), identity(second));
            // A retry is still one event.
            assert_eq!(identity(first), identity(first));
        }
        // A JSON event keeps its identity: device, type and the payload alone.
        let json = br#"{"device_id":"D","event_type":"call_end","payload":{"call_id":8}}"#;
        let Ok(Parsed::Event(e, _)) = parse_as(
            Vendor::Sprecord,
            Method::Post,
            "application/json",
            &[],
            json,
        ) else {
            panic!("not an event");
        };
        let with_more =
            br#"{"device_id":"D","event_type":"call_end","payload":{"call_id":8},"extra":1}"#;
        let Ok(Parsed::Event(again, _)) = parse_as(
            Vendor::Sprecord,
            Method::Post,
            "application/json",
            &[],
            with_more,
        ) else {
            panic!("not an event");
        };
        assert_eq!(
            e.identity, again.identity,
            "fields beside an object payload are not part of it"
        );
    }

    #[test]
    fn json_posted_as_a_form_is_read_as_json() {
        let body = br#" {"extend":131,"state":"Ring","phone":"0832666859","callid":1287674126.299,"type":"inbound"}"#;
        let Ok(Parsed::Event(e, raw)) = parse_as(Vendor::Voip24h, Method::Post, FORM, &[], body)
        else {
            panic!("not an event");
        };
        assert_eq!(e.event_type, "call.ringing");
        assert_eq!(e.subject.as_deref(), Some("1287674126.299"));
        assert_eq!(
            raw,
            RawPayload::json(std::str::from_utf8(body).unwrap()).unwrap()
        );
        // Real form fields are still form fields, and a brace that does not
        // open a JSON object leaves the body a form.
        let Ok(Parsed::Event(e, raw)) = parse_as(
            Vendor::Voip24h,
            Method::Post,
            FORM,
            &[],
            b"extend=130&state=Up&callid=1.2",
        ) else {
            panic!("not an event");
        };
        assert_eq!(e.event_type, "call.answered");
        assert_eq!(
            raw,
            RawPayload::Fields(
                serde_json::json!({"extend": "130", "state": "Up", "callid": "1.2"})
            )
        );
        let Ok(Parsed::Event(_, raw)) = parse_as(Vendor::Voip24h, Method::Post, FORM, &[], b"{a=1")
        else {
            panic!("not an event");
        };
        assert_eq!(raw, RawPayload::Fields(serde_json::json!({"{a": "1"})));
    }

    /// A UTF-8 byte order mark before form fields (a file saved by Windows
    /// PowerShell, posted with `--data-binary @file`) is skipped, as before
    /// JSON: it was glued onto the first field's name, so `callid` was not
    /// found and the ring had no subject and an identity of its own (the
    /// socket's copy journaled a second time). Encodings review, tenth round.
    #[test]
    fn a_byte_order_mark_before_form_fields_is_skipped() {
        let fields = b"callid=1287674126.299&state=Ring&extend=130&type=inbound";
        for content_type in [FORM, "application/x-www-form-urlencoded; charset=UTF-8"] {
            let without = parse_as(Vendor::Voip24h, Method::Post, content_type, &[], fields);
            let Ok(Parsed::Event(e, _)) = &without else {
                panic!("not an event: {without:?}");
            };
            assert_eq!(e.event_type, "call.ringing");
            assert_eq!(e.subject.as_deref(), Some("1287674126.299"));
            let with_a_bom = [b"\xEF\xBB\xBF".as_slice(), fields].concat();
            assert_eq!(
                parse_as(
                    Vendor::Voip24h,
                    Method::Post,
                    content_type,
                    &[],
                    &with_a_bom
                ),
                without,
                "{content_type}"
            );
        }
    }

    /// JSON labelled as a form that does not read is refused (400), to be
    /// sent again: it was read as one form field named after the text,
    /// journaled as `vendor.unknown` and answered 200, and the call event
    /// was lost (webhook docs review, 2026-12-05).
    #[test]
    fn json_labelled_as_a_form_that_does_not_read_is_refused() {
        for body in [
            &b"{\"extend\":130,\"state\":\"Up\",\"callid\":\"1.2\""[..],
            b"{\"extend\":130,\"state\":\"Up\",\"url\":\"http://x/?a=b\"",
            b"  {\"callid\": 1.2,",
            b"{extend:130}",
            // Pretty-printed, cut short, with an `=` in a value: it was read
            // as form fields, journaled as `vendor.unknown` and answered 200.
            b"{\n  \"callid\": \"1.2\",\n  \"state\": \"Ring\",\n  \"u\": \"x?a=b\"",
        ] {
            // Also in UTF-16, whose `{` and `=` are no single bytes.
            let utf16: Vec<u8> = String::from_utf8_lossy(body)
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect();
            let parsed = parse_as(
                Vendor::Voip24h,
                Method::Post,
                "application/x-www-form-urlencoded; charset=utf-16le",
                &[],
                &utf16,
            );
            assert!(
                matches!(parsed, Err(ParseError(ref why)) if why.contains("not valid JSON")),
                "UTF-16 {}: {parsed:?}",
                String::from_utf8_lossy(body)
            );
            refused_as_a_form_by_both(body, "not valid JSON");
        }
    }

    /// Asserts that `body`, labelled as a form, is refused by both vendors
    /// that read forms, with a reason holding `why`.
    fn refused_as_a_form_by_both(body: &[u8], why: &str) {
        for vendor in [Vendor::Voip24h, Vendor::Sprecord] {
            let parsed = parse_as(vendor, Method::Post, FORM, &[], body);
            assert!(
                matches!(parsed, Err(ParseError(ref reason)) if reason.contains(why)),
                "{vendor:?} {}: {parsed:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// JSON that reads but is no object, labelled as a form (PHP's curl
    /// posting an array of events, or an object encoded twice into a
    /// string), is refused as it is with a JSON label: it was one form
    /// field named after the text, journaled as `vendor.unknown` and
    /// answered 200, and the call event was lost (vendor review, round 47).
    /// A form whose first field's name opens with `[` is still a form.
    #[test]
    fn json_that_is_no_object_labelled_as_a_form_is_refused() {
        for body in [
            &br#"[{"extend":130,"state":"Ring","callid":"1.2","type":"inbound"}]"#[..],
            br#" "{\"extend\":130,\"state\":\"Ring\",\"callid\":\"1.2\"}""#,
            br#"["a=b"]"#,
        ] {
            refused_as_a_form_by_both(body, "expected a JSON object");
        }
        let Ok(Parsed::Event(_, raw)) =
            parse_as(Vendor::Voip24h, Method::Post, FORM, &[], b"[a]=1&b=2")
        else {
            panic!("not an event");
        };
        assert_eq!(
            raw,
            RawPayload::Fields(serde_json::json!({"[a]": "1", "b": "2"}))
        );
    }

    /// serde_json reads 127 levels and a CloudEvent puts the payload two
    /// down: a payload nested 126 deep was journaled as an event no
    /// serde_json reader (`tail` among them) could read.
    #[test]
    fn a_payload_nested_past_the_limit_is_refused_and_one_at_it_is_readable() {
        let nested = |depth: usize| {
            // The object itself is the first level.
            let inner = format!("{}{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
            format!("{{\"callid\":\"1.2\",\"state\":\"Ring\",\"extend\":\"130\",\"x\":{inner}}}")
        };
        let at_limit = nested(text::MAX_NESTING);
        let parsed = parse_as(
            Vendor::Voip24h,
            Method::Post,
            "application/json",
            &[],
            at_limit.as_bytes(),
        );
        let incoming = taken_in(Vendor::Voip24h, "main", parsed)
            .unwrap_or_else(|| panic!("a payload nested {} deep is refused", text::MAX_NESTING));
        let cloudevent = incoming.to_cloudevent_json(incoming.id(), 1);
        assert!(serde_json::from_slice::<Value>(&cloudevent).is_ok());
        for too_deep in [text::MAX_NESTING + 1, 126, 127] {
            let parsed = parse_as(
                Vendor::Voip24h,
                Method::Post,
                "application/json",
                &[],
                nested(too_deep).as_bytes(),
            );
            assert!(
                matches!(parsed, Err(ParseError(ref why)) if why.contains("nested deeper than 100")),
                "{too_deep}: {parsed:?}"
            );
        }
        // Brackets inside strings are text, not nesting.
        let brackets = format!(
            "{{\"callid\":\"1.2\",\"state\":\"Ring\",\"note\":\"{}\\\"{}\"}}",
            "[".repeat(200),
            "{".repeat(200)
        );
        assert!(
            parse_as(
                Vendor::Voip24h,
                Method::Post,
                "application/json",
                &[],
                brackets.as_bytes()
            )
            .is_ok()
        );
    }

    #[test]
    fn an_empty_body_is_refused_whatever_its_content_type() {
        for vendor in [
            Vendor::Caresoft,
            Vendor::Tel4vn,
            Vendor::Sprecord,
            Vendor::Voipex,
            Vendor::Voip24h,
        ] {
            for content_type in [FORM, "application/json", "text/plain"] {
                for body in [&b""[..], b" \r\n"] {
                    let err = parse_as(vendor, Method::Post, content_type, &[], body).unwrap_err();
                    assert!(
                        err.0.contains("empty body"),
                        "{vendor:?} {content_type}: {err}"
                    );
                }
            }
        }
        // The feedback GET has no body: its data is the query.
        let query = vec![("FeedbackID".to_owned(), "F-1".to_owned())];
        let Ok(Parsed::Event(e, _)) = parse_as(Vendor::Voip24h, Method::Get, FORM, &query, b"")
        else {
            panic!("not an event");
        };
        assert_eq!(e.event_type, "feedback.rating");
    }

    /// A body declared as JSON is read as JSON only: one that is not JSON
    /// is refused, not taken apart as form fields the vendor never sent.
    #[test]
    fn a_body_declared_json_that_is_not_json_is_refused_even_where_forms_are_read() {
        for vendor in [Vendor::Voip24h, Vendor::Sprecord] {
            let err = parse_as(
                vendor,
                Method::Post,
                "application/json",
                &[],
                b"extend=130&state=Up&callid=1.2",
            )
            .unwrap_err();
            assert!(err.0.contains("not valid JSON"), "{vendor:?}: {err}");
        }
    }

    /// Under rotation each vendor's check says whether an older value let
    /// the delivery in, the sign that the vendor has not switched yet.
    #[test]
    fn a_delivery_by_an_older_credential_is_told_apart() {
        use base64::Engine;
        use hmac::Mac;
        let list: crate::config::Accepted = toml::from_str::<
            std::collections::BTreeMap<String, crate::config::Accepted>,
        >("k = [\"new\", \"old\"]")
        .unwrap()
        .remove("k")
        .unwrap();
        let body = b"{}";
        for (presented, older) in [("new", false), ("old", true)] {
            let mut headers = axum::http::HeaderMap::new();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("u:{presented}"));
            headers.insert("authorization", format!("Basic {basic}").parse().unwrap());
            let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(presented.as_bytes()).unwrap();
            mac.update(body);
            let signature = hex::encode(mac.finalize().into_bytes());
            headers.insert(
                "x-hub-signature",
                format!("sha1={signature}").parse().unwrap(),
            );
            headers.insert("apikey", presented.parse().unwrap());
            let query = [("token".to_owned(), presented.to_owned())];
            let d = Delivery {
                method: Method::Post,
                headers: &headers,
                query: &query,
                body,
            };
            let each = [
                Credentials::Caresoft {
                    secret: list.clone(),
                },
                Credentials::Tel4vn {
                    api_key: list.clone(),
                    header: "apikey".into(),
                    query: None,
                },
                Credentials::Voipex {
                    username: "u".into(),
                    password: list.clone(),
                },
                Credentials::Voip24h {
                    token: list.clone(),
                },
                Credentials::Sprecord {
                    token: Some(list.clone()),
                },
            ];
            for creds in each {
                let verified = creds
                    .verify(d)
                    .unwrap_or_else(|e| panic!("{:?} {presented}: {e}", creds.vendor()));
                assert_eq!(
                    verified.by_an_older_credential(),
                    older,
                    "{:?} {presented}",
                    creds.vendor()
                );
            }
        }
    }

    /// Every credential but CareSoft's signature travels in the head, so a
    /// caller without it is turned away before its body is read.
    #[test]
    fn credentials_in_the_head_are_checked_before_the_body() {
        let headers = axum::http::HeaderMap::new();
        let d = Delivery {
            method: Method::Post,
            headers: &headers,
            query: &[],
            body: b"{}",
        };
        let in_the_head = [
            Credentials::Tel4vn {
                api_key: crate::config::Accepted::one("k"),
                header: "Authorization".into(),
                query: None,
            },
            Credentials::Voipex {
                username: "u".into(),
                password: crate::config::Accepted::one("p"),
            },
            Credentials::Voip24h {
                token: crate::config::Accepted::one("t"),
            },
            Credentials::Sprecord {
                token: Some(crate::config::Accepted::one("t")),
            },
        ];
        for creds in in_the_head {
            assert!(
                matches!(creds.verify_head(d), Some(Err(_))),
                "{:?} not refused from the head",
                creds.vendor()
            );
        }
        let open_sprecord = Credentials::Sprecord { token: None };
        assert!(matches!(open_sprecord.verify_head(d), Some(Ok(_))));
        // CareSoft's signature covers the body: a request without one, or
        // with one that is no HMAC-SHA1, is turned away from the head; one
        // with a signature to check is left to `verify`, body and all.
        let caresoft = Credentials::Caresoft {
            secret: crate::config::Accepted::one("s"),
        };
        assert_eq!(
            caresoft.verify_head(d).map(|r| r.err()),
            Some(Some(AuthError::MissingSignature))
        );
        let with_signature = |value: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("x-hub-signature", value.parse().unwrap());
            headers
        };
        let malformed = with_signature("zz");
        assert_eq!(
            caresoft
                .verify_head(Delivery {
                    headers: &malformed,
                    ..d
                })
                .map(|r| r.err()),
            Some(Some(AuthError::MalformedSignature))
        );
        let to_check = with_signature(&"ab".repeat(20));
        let d = Delivery {
            headers: &to_check,
            ..d
        };
        assert!(caresoft.verify_head(d).is_none());
    }

    #[test]
    fn query_object_drops_our_token() {
        let pairs = vec![
            ("token".to_owned(), "s3cret".to_owned()),
            ("callid".to_owned(), "1.2".to_owned()),
            ("callid".to_owned(), "3.4".to_owned()),
        ];
        let map = query_object(&pairs);
        assert_eq!(Value::Object(map), serde_json::json!({"callid": "1.2"}));
    }

    /// A form body's `token` field is the vendor's, not our credential (which
    /// travels in the URL's query): it was dropped from `raw`, which the
    /// contract says is the payload as received (review, 2026-12-07).
    #[test]
    fn a_form_bodys_token_field_is_kept() {
        let (raw, _) = form_object(
            b"callid=1.2&token=vendor-data",
            Some(b"application/x-www-form-urlencoded"),
        )
        .unwrap();
        assert_eq!(
            raw,
            serde_json::json!({"callid": "1.2", "token": "vendor-data"})
        );
    }

    /// Each vendor's payload at its longest as JSON: a value the normalizer
    /// copies most (into `data.raw` and two of `data`'s fields or
    /// `subject`, three copies, the most any vendor makes of one value),
    /// its bytes written at their longest in each copy: a control byte of
    /// a form is `\u00XX`, six bytes; a JSON text has its control bytes
    /// escaped already, and a windows-1252 byte is up to three bytes of
    /// UTF-8. Voip24h's form is the worst, 18 bytes for one: its `callid`
    /// is `raw`, `call_id` and `subject`, its `extend` `raw`, `to` and
    /// `extension`. The WebSocket frame bound rests on this factor, which
    /// said six (review of b8f733b).
    ///
    /// Each case is one long value, and what is weighed is what it adds to
    /// the JSON of the same payload with that value `x`: the envelope's
    /// room beside a short body let a value copied four times pass (review
    /// of e67e913), and two values in one case averaged one out.
    #[test]
    fn no_vendors_event_json_is_more_than_json_growth_times_its_payload() {
        use crate::sinks::websocket::{ENVELOPE_ROOM, JSON_GROWTH};
        const N: usize = 8192;
        const CP1252: &str = "application/json; charset=windows-1252";
        // A body byte's longest JSON in one copy: a form's control byte
        // (`\u0001`), a windows-1252 `€` (three bytes of UTF-8), a query's
        // `%01` (three bytes of query for one `\u0001`).
        const CONTROL: (&[u8], usize) = (&[1], 6);
        const EURO: (&[u8], usize) = (&[0x80], 6 / 2);
        const QUERY: (&[u8], usize) = (b"%01", 6);
        // Vendor, method, content type, the payload with `{}` for the
        // value, and the value's unit with its JSON's length in one copy.
        type Case = (
            Vendor,
            Method,
            &'static str,
            &'static str,
            (&'static [u8], usize),
        );
        let cases: &[Case] = &[
            (
                Vendor::Voip24h,
                Method::Post,
                FORM,
                "state=ring&type=inbound&callid={}",
                CONTROL,
            ),
            (
                Vendor::Voip24h,
                Method::Post,
                FORM,
                "state=ring&type=inbound&callid=1&extend={}",
                CONTROL,
            ),
            (
                Vendor::Voip24h,
                Method::Post,
                FORM,
                "state=ring&type=inbound&callid=1&phone={}",
                CONTROL,
            ),
            (
                Vendor::Voip24h,
                Method::Post,
                FORM,
                "direction=inbound&linkedid={}&dst=1",
                CONTROL,
            ),
            (
                Vendor::Voip24h,
                Method::Post,
                FORM,
                "direction=inbound&linkedid=1&dst={}",
                CONTROL,
            ),
            // CDR rows, as PHP's `http_build_query` writes them.
            (
                Vendor::Voip24h,
                Method::Post,
                FORM,
                "state=Cdr&type=inbound&callid=1&cdr%5Bdst%5D={}",
                CONTROL,
            ),
            (
                Vendor::Voip24h,
                Method::Post,
                FORM,
                "state=Cdr&type=outbound&callid=1&cdr%5Bsrc%5D={}",
                CONTROL,
            ),
            (
                Vendor::Voip24h,
                Method::Post,
                FORM,
                "state=Cdr&cdr%5Bdirection%5D=inbound&cdr%5Blinkedid%5D={}",
                CONTROL,
            ),
            (
                Vendor::Voip24h,
                Method::Post,
                FORM,
                "state=Cdr&callid=1&cdr%5Bdid%5D={}",
                CONTROL,
            ),
            // The feedback `GET`, whose query `max_body` bounds.
            (
                Vendor::Voip24h,
                Method::Get,
                FORM,
                "FeedbackID=f&phone=1&callid={}&did=1",
                QUERY,
            ),
            (
                Vendor::Voip24h,
                Method::Get,
                FORM,
                "FeedbackID=f&phone={}&callid=1&did=1",
                QUERY,
            ),
            (
                Vendor::Voip24h,
                Method::Get,
                FORM,
                "FeedbackID=f&phone=1&callid=1&did={}",
                QUERY,
            ),
            (
                Vendor::Tel4vn,
                Method::Post,
                CP1252,
                r#"{"state":"ringing","direction":"inbound","call_id":"{}","to_number":"1"}"#,
                EURO,
            ),
            (
                Vendor::Tel4vn,
                Method::Post,
                CP1252,
                r#"{"state":"ringing","direction":"inbound","call_id":"1","to_number":"{}"}"#,
                EURO,
            ),
            (
                Vendor::Caresoft,
                Method::Post,
                CP1252,
                r#"{"object":"call_in","action":"call_in_start","call_id":"{}","called":"1"}"#,
                EURO,
            ),
            (
                Vendor::Caresoft,
                Method::Post,
                CP1252,
                r#"{"object":"call_in","action":"call_in_start","call_id":"1","called":"{}"}"#,
                EURO,
            ),
            (
                Vendor::Caresoft,
                Method::Post,
                CP1252,
                r#"{"object":"smart_dialer","action":"ad_end_call","call_info":{"call_id":"{}","line":"1"}}"#,
                EURO,
            ),
            (
                Vendor::Caresoft,
                Method::Post,
                CP1252,
                r#"{"object":"smart_dialer","action":"pd_end_call","call_info":{"call_id":"1","line":"{}"}}"#,
                EURO,
            ),
            (
                Vendor::Caresoft,
                Method::Post,
                CP1252,
                r#"{"object":"ticket","action":"update","ticket":{"ticket_id":"{}"},"call_info":{"called":"1"}}"#,
                EURO,
            ),
            (
                Vendor::Caresoft,
                Method::Post,
                CP1252,
                r#"{"object":"ticket","action":"update","ticket":{"ticket_id":"1"},"call_info":{"called":"{}"}}"#,
                EURO,
            ),
            (
                Vendor::Voipex,
                Method::Post,
                CP1252,
                r#"{"EventName":"AgentLogin","UniqueId":"{}","Login":"1"}"#,
                EURO,
            ),
            (
                Vendor::Voipex,
                Method::Post,
                CP1252,
                r#"{"EventName":"AgentLogin","UniqueId":"1","Login":"{}"}"#,
                EURO,
            ),
            (
                Vendor::Sprecord,
                Method::Post,
                CP1252,
                r#"{"event_type":"incoming_call","payload":{"call_id":"{}","call_dst":"1"}}"#,
                EURO,
            ),
            (
                Vendor::Sprecord,
                Method::Post,
                CP1252,
                r#"{"event_type":"incoming_call","payload":{"call_id":"1","call_dst":"{}"}}"#,
                EURO,
            ),
        ];
        let json_of = |vendor: Vendor, method: Method, content_type: &str, payload: &[u8]| {
            let query: Vec<(String, String)> = match method {
                Method::Get => url::form_urlencoded::parse(payload).into_owned().collect(),
                _ => Vec::new(),
            };
            let body = if query.is_empty() { payload } else { b"" };
            let parsed = parse_as(vendor, method, content_type, &query, body);
            let incoming =
                taken_in(vendor, "a", parsed).unwrap_or_else(|| panic!("{vendor:?}: no event"));
            assert_ne!(
                incoming.event.event_type,
                crate::event::UNKNOWN_TYPE,
                "{vendor:?}"
            );
            crate::event::PreparedEvent::new(&incoming).json_len_without_seq()
        };
        let mut worst = 0.0f64;
        for &(vendor, method, content_type, template, (unit, escaped)) in cases {
            let (before, after) = template.split_once("{}").unwrap();
            let payload = |value: &[u8]| [before.as_bytes(), value, after.as_bytes()].concat();
            let long = payload(&unit.repeat(N));
            let json = json_of(vendor, method, content_type, &long);
            let short = json_of(vendor, method, content_type, &payload(b"x"));
            // The value's own bytes, less its `x` in each copy (at most three).
            let added = json - short;
            let copies = added as f64 / (escaped * N) as f64;
            assert!(
                added <= 3 * escaped * N,
                "{template}: {added} bytes of JSON for the value, {copies:.3} copies of it"
            );
            // The value reaches `data` or `subject`, or the case tests nothing.
            assert!(copies > 1.99, "{template}: {copies:.3} copies");
            let factor = added as f64 / (unit.len() * N) as f64;
            worst = worst.max(factor);
            assert!(
                json <= JSON_GROWTH * long.len() + ENVELOPE_ROOM,
                "{template}: {json} bytes of JSON for {} of payload",
                long.len()
            );
            assert!(
                factor <= JSON_GROWTH as f64,
                "{template}: {factor:.2} bytes of JSON for a byte of it"
            );
        }
        // The factor is what a payload reaches, not only a bound above it.
        assert!(
            worst > (JSON_GROWTH - 1) as f64,
            "the worst payload is {worst:.2} times its body"
        );
    }

    /// A subject holding characters CloudEvents' String type forbids (C0 and
    /// C1 controls, noncharacters) was emitted as it came: a `ce-subject`
    /// header of `12\n34` is refused by the HTTP stacks of consumers that
    /// forward in binary mode. Every vendor's subject is emitted with each one
    /// as U+FFFD — in the JSON, the header, the Kafka key — while `data`
    /// keeps the vendor's text and the id (from the identity) stays.
    #[test]
    fn a_subject_is_emitted_without_the_characters_cloudevents_forbids() {
        fn strings(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                Value::Object(o) => o.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let json = |body: &str| body.as_bytes().to_vec();
        let feedback = |callid: &str| {
            ["FeedbackID", "7", "callid", callid]
                .chunks(2)
                .map(|kv| (kv[0].to_owned(), kv[1].to_owned()))
                .collect::<Vec<_>>()
        };
        /// Vendor, method, content type, query, body, the vendor's subject, as emitted.
        type Case = (
            Vendor,
            Method,
            &'static str,
            Vec<(String, String)>,
            Vec<u8>,
            &'static str,
            &'static str,
        );
        let cases: [Case; 7] = [
            // `?FeedbackID=7&callid=12%0A34`.
            (
                Vendor::Voip24h,
                Method::Get,
                FORM,
                feedback("12\n34"),
                Vec::new(),
                "12\n34",
                "12\u{FFFD}34",
            ),
            (
                Vendor::Voip24h,
                Method::Post,
                "application/json",
                Vec::new(),
                json(r#"{"state":"Ring","callid":"12\u000034","phone":"1"}"#),
                "12\u{0}34",
                "12\u{FFFD}34",
            ),
            (
                Vendor::Tel4vn,
                Method::Post,
                "application/json",
                Vec::new(),
                json(
                    r#"{"state":"ringing","direction":"inbound","call_id":"a\r\nb\u007f","to_number":"1"}"#,
                ),
                "a\r\nb\u{7f}",
                "a\u{FFFD}\u{FFFD}b\u{FFFD}",
            ),
            (
                Vendor::Caresoft,
                Method::Post,
                "application/json",
                Vec::new(),
                json(
                    r#"{"object":"call_in","action":"call_in_start","call_id":"c\u0085\ufdd0\ufdef\ufdf0","called":"1"}"#,
                ),
                "c\u{85}\u{FDD0}\u{FDEF}\u{FDF0}",
                "c\u{FFFD}\u{FFFD}\u{FFFD}\u{FDF0}",
            ),
            (
                Vendor::Voipex,
                Method::Post,
                "application/json",
                Vec::new(),
                json(r#"{"EventName":"AgentLogin","Login":"pe\ufffe\u00a0tr\uffff\u009fx"}"#),
                "pe\u{FFFE}\u{a0}tr\u{FFFF}\u{9f}x",
                "pe\u{FFFD}\u{a0}tr\u{FFFD}\u{FFFD}x",
            ),
            (
                Vendor::Voipex,
                Method::Post,
                "application/json",
                Vec::new(),
                json(
                    r#"{"EventName":"Hangup","UniqueId":"u\t1\ud83f\udffe\udbff\udfff\ud83d\ude00"}"#,
                ),
                "u\t1\u{1FFFE}\u{10FFFF}\u{1F600}",
                "u\u{FFFD}1\u{FFFD}\u{FFFD}\u{1F600}",
            ),
            (
                Vendor::Sprecord,
                Method::Post,
                "application/json",
                Vec::new(),
                json(
                    r#"{"event_type":"incoming_call","device_id":"d","payload":{"call_id":"9\u001b[2J","call_dst":"1"}}"#,
                ),
                "9\u{1b}[2J",
                "9\u{FFFD}[2J",
            ),
        ];
        let mut ids = Vec::new();
        for (vendor, method, content_type, query, body, vendors, emitted) in cases {
            let parsed = parse_as(vendor, method, content_type, &query, &body);
            let incoming = taken_in(vendor, "a", parsed)
                .unwrap_or_else(|| panic!("{vendor:?} {vendors:?}: no event"));
            assert_eq!(
                incoming.event.subject.as_deref(),
                Some(vendors),
                "{vendor:?}"
            );
            let prepared = crate::event::PreparedEvent::new(&incoming);
            let mut out = Vec::new();
            prepared.write_json(1, &mut out);
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["subject"], emitted, "{vendor:?} {vendors:?}");
            assert_eq!(
                prepared.header.subject.as_deref(),
                Some(emitted),
                "{vendor:?}"
            );
            assert_eq!(
                crate::sinks::kafka::producer::key_of(&prepared.header),
                emitted,
                "{vendor:?}"
            );
            // `data` — the normalized fields and `raw` alike — keeps the text.
            let (mut fields, mut raw) = (Vec::new(), Vec::new());
            let mut data = v["data"].as_object().unwrap().clone();
            strings(&data.remove("raw").unwrap(), &mut raw);
            strings(&Value::Object(data), &mut fields);
            assert!(
                fields.iter().any(|s| s == vendors),
                "{vendor:?}: {fields:?}"
            );
            assert!(raw.iter().any(|s| s == vendors), "{vendor:?}: {raw:?}");
            // The id is the identity's, as it was.
            assert_eq!(prepared.id, incoming.id(), "{vendor:?}");
            assert_eq!(v["id"], incoming.id().to_hex(), "{vendor:?}");
            ids.push(incoming.id().to_hex());
        }
        // And pinned, for the feedback GET the finding was made with.
        assert_eq!(ids[0], "2c4eebf347755354c672ef55f31ac837");
    }
}
