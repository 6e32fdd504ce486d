//! Voip24h: call events (socket.io `response` and webhook), missed calls and
//! the feedback rating callback — `?token=` check, parsing and normalization (pure).
//!
//! The three payload kinds share one route and are told apart by their fields:
//! `FeedbackID` → feedback, `linkedid`/`calldate` without `state` (or with a
//! null or empty one) → missed call, `state` → call event. Identities: call
//! event `callid + state + extend` (a `Cdr` without `extend` also its leg:
//! `cdr.uniqueid`, `cdr.dstchannel`, `cdr.dst`; its whole payload when `cdr`
//! is a text that holds no JSON object and no `cdr[…]` field is there; only
//! a `Cdr` reads a `cdr` text), missed call `linkedid + dst +
//! calldate + uniqueid`, feedback `FeedbackID + callid`.

use serde_json::{Map, Value};

use super::delivery::check_token;
use super::normalize::{
    Fields, ICT, direction, first_date, get, identity, loose_canonical, lower, seconds, status,
    text, text_of,
};
use super::text::parse_json;
use super::{AuthError, Delivery, ParseError, Verified, as_object, unknown_event};
use crate::config::Accepted;
use crate::event::VendorEvent;

/// Voip24h signs nothing: the URL we give it carries `?token=`.
pub fn verify<'a>(token: &Accepted, delivery: Delivery<'a>) -> Result<Verified<'a>, AuthError> {
    let position = check_token(token, &delivery)?;
    Ok(Verified::by_value_at(delivery, position))
}

/// A call event `{extend, state, phone, callid, type}` (also a missed-call
/// object or the feedback callback's parameters), as the socket.io `response`
/// event or a webhook body carries it.
pub fn parse_call_event(payload: &Value) -> Result<VendorEvent, ParseError> {
    let map = as_object(payload, "Voip24h")?;
    let has = |k: &str| get(map, k).is_some();
    // A serializer that writes every column gives a missed-call record
    // `"state": null`: no state, not an unknown one, or the record was
    // relayed as vendor.unknown.
    let event = if has("FeedbackID") {
        feedback(map, payload)
    } else if get(map, "state").and_then(text).is_some() {
        call_event(map, payload)
    } else if has("linkedid") || has("calldate") {
        missed_call(map, payload)
    } else {
        None
    };
    Ok(event.unwrap_or_else(|| unknown_event(payload)))
}

fn call_event(map: &Map<String, Value>, payload: &Value) -> Option<VendorEvent> {
    // Each type's identity word is the document's state, so a synonym on one
    // channel and the document's word on the other are one event.
    let (event_type, state) = match lower(get(map, "state"))?.as_str() {
        "ring" | "ringing" => ("call.ringing", "ring"),
        "up" | "answer" | "answered" => ("call.answered", "up"),
        "hangup" => ("call.hangup", "hangup"),
        "cdr" => ("call.cdr", "cdr"),
        _ => return None,
    };
    let cdr_row = state == "cdr";
    let (cdr, unreadable_cdr) = match cdr_object(map, cdr_row) {
        Ok(cdr) => (cdr, false),
        Err(Unreadable) => (None, true),
    };
    let cdr = cdr.as_deref();
    let call_id = text_of(map, &["callid"])
        .or_else(|| cdr.and_then(|c| text_of(c, &["linkedid", "uniqueid", "callid"])));
    let extension = text_of(map, &["extend"]);
    let phone = text_of(map, &["phone"]);
    let dir =
        direction(get(map, "type")).or_else(|| cdr.and_then(|c| direction(get(c, "direction"))));
    let src = cdr.and_then(|c| text_of(c, &["src"]));
    let dst = cdr.and_then(|c| text_of(c, &["dst"]));
    let (from, to, party_extension) = parties(dir, extension.clone(), phone, src, dst, cdr_row);
    let mut f = Fields::default();
    f.text("call_id", call_id.clone())
        .word("direction", dir)
        .text("from", from)
        .text("to", to)
        .text("extension", party_extension);
    if let Some(c) = cdr {
        f.text("hotline", text_of(c, &["did"]))
            .text("status", status(get(c, "disposition")))
            .value("duration_s", seconds(get(c, "duration")))
            .value("billsec_s", seconds(get(c, "billsec")))
            .text("recording_url", text_of(c, &["recordingfile"]));
    }
    let (when, unread_time) = first_date(
        &[("cdr.calldate", cdr.and_then(|c| get(c, "calldate")))],
        ICT,
    );
    let own_row = cdr_row && extension.is_none();
    let leg = own_row.then_some(cdr).flatten().and_then(cdr_leg);
    let id = match (&call_id, leg) {
        // Only the row's text tells one such row from another of the call.
        (Some(_), None) if own_row && unreadable_cdr => loose_canonical(payload),
        (Some(id), None) => identity(&[Some("call"), Some(id), Some(state), extension.as_deref()]),
        (Some(id), Some([uniqueid, dstchannel, dst])) => identity(&[
            Some("call"),
            Some(id),
            Some(state),
            None,
            uniqueid.as_deref(),
            dstchannel.as_deref(),
            dst.as_deref(),
        ]),
        (None, _) => loose_canonical(payload),
    };
    Some(VendorEvent {
        event_type: event_type.to_owned(),
        subject: call_id,
        time: when,
        unread_time,
        fields: f.build(),
        identity: id,
    })
}

/// A call event's `from`, `to` and party `extension`, going `dir`, from its
/// top level's `extension` (`extend`) and `phone` and its `cdr`'s `src` and
/// `dst`.
///
/// A side the top level leaves out is the row's own: a `Cdr` that says its
/// direction in `cdr.direction` and has no `phone`/`extend` lost both
/// parties. Without `extend`, the extension is the row's own leg's: the one
/// it rang (`dst`) inbound or local, the caller (`src`) outbound, as a
/// missed call's is. Only a `Cdr` row (`cdr_row`) is filled so: the other
/// states' `data` stays as it was.
fn parties(
    dir: Option<&str>,
    extension: Option<String>,
    phone: Option<String>,
    src: Option<String>,
    dst: Option<String>,
    cdr_row: bool,
) -> (Option<String>, Option<String>, Option<String>) {
    let (row_src, row_dst) = if cdr_row {
        (src.clone(), dst.clone())
    } else {
        (None, None)
    };
    match dir {
        Some("inbound") => {
            let extension = extension.or(row_dst);
            (phone.or(row_src), extension.clone(), extension)
        }
        Some(d) => {
            let party_extension = match d {
                "internal" => extension.clone().or_else(|| row_dst.clone()),
                _ => extension.clone().or_else(|| row_src.clone()),
            };
            (extension.or(row_src), phone.or(row_dst), party_extension)
        }
        None => (src, dst, extension),
    }
}

/// Without `extend`, a call's CDR rows (one per channel: a ring group, a
/// queue, a transfer) differ only inside `cdr`, and were one event: the
/// answered leg's row, billsec and recording, was folded into the first.
/// The leg tells them apart then, by every field of it present: Asterisk
/// 12+ gives every leg of a parallel ring group the caller's `uniqueid`,
/// and the legs differ in `dst`/`dstchannel` only. A row with `extend`, as
/// the vendor documents it, keeps its identity. `None` when no leg field is
/// there.
fn cdr_leg(cdr: &Map<String, Value>) -> Option<[Option<String>; 3]> {
    let leg = ["uniqueid", "dstchannel", "dst"].map(|key| text_of(cdr, &[key]));
    leg.iter().any(Option::is_some).then_some(leg)
}

/// A `Cdr`'s `cdr` given as a text that holds no JSON object.
struct Unreadable;

/// The object `cdr`, or the one a PHP form wrote as flat `cdr[KEY]=…`
/// fields ([`flattened`]), which win over a `cdr` text as they did; then,
/// on a `Cdr` row (`cdr_row`) only, the object a JSON text in `cdr` holds
/// (a sender that encodes the row itself, or PHP's `http_build_query(['cdr'
/// => json_encode($row)])`: read as no `cdr`, every row of a call was one
/// event and the answered leg's row was lost as a duplicate). On another
/// state a `cdr` text is no `cdr`, as it was: its ids and subject stay.
/// `None` without any (`null`, `""` are none); [`Unreadable`] for a `Cdr`'s
/// other text.
fn cdr_object(
    map: &Map<String, Value>,
    cdr_row: bool,
) -> Result<Option<std::borrow::Cow<'_, Map<String, Value>>>, Unreadable> {
    use std::borrow::Cow;
    let value = get(map, "cdr");
    if let Some(cdr) = value.and_then(Value::as_object) {
        return Ok(Some(Cow::Borrowed(cdr)));
    }
    if let Some(cdr) = flattened(map, "cdr") {
        return Ok(Some(Cow::Owned(cdr)));
    }
    // A text that is no value (`""`, `"0"`), as `text` reads one, is no `cdr`.
    let Some(cdr_text) = value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| cdr_row && !t.is_empty() && *t != "0")
    else {
        return Ok(None);
    };
    // Read as the payload is (a lone surrogate escape is U+FFFD, the depth
    // bounded), or the text and its object-shaped copy were two events. The
    // body is bounded by `max_body`.
    match parse_json(cdr_text) {
        Ok((Value::Object(cdr), _)) => Ok(Some(Cow::Owned(cdr))),
        _ => Err(Unreadable),
    }
}

/// The object that a PHP form (`http_build_query`) writes as flat
/// `NAME[KEY]=…` fields, rebuilt, when there is any: a `Cdr` posted as a form
/// was read as having no `cdr`, so its rows lost their leg (every row of a
/// call was one event) and their fields, and its id was not the socket's.
/// Deeper keys (`cdr[a][b]`) are left out: no CDR field is an object.
fn flattened(map: &Map<String, Value>, name: &str) -> Option<Map<String, Value>> {
    let mut object = Map::new();
    for (key, value) in map {
        let inner = key
            .get(..name.len())
            .filter(|head| head.eq_ignore_ascii_case(name))
            .and_then(|_| key.get(name.len()..))
            .and_then(|rest| rest.strip_prefix('['))
            .and_then(|rest| rest.strip_suffix(']'))
            .filter(|inner| !inner.contains(['[', ']']));
        if let Some(inner) = inner {
            object
                .entry(inner.to_owned())
                .or_insert_with(|| value.clone());
        }
    }
    (!object.is_empty()).then_some(object)
}

fn missed_call(map: &Map<String, Value>, payload: &Value) -> Option<VendorEvent> {
    let call_id = text_of(map, &["linkedid", "uniqueid", "callid"]);
    let dir = direction(get(map, "direction"));
    let from = text_of(map, &["src", "cnum"]);
    let to = text_of(map, &["dst"]);
    // The extension is the side inside the switchboard, as the call's own
    // events name it: a consumer counting missed calls per extension reads
    // the same field it reads on a ring.
    let extension = match dir {
        // A local call missed is missed by the extension it rang.
        Some("inbound" | "internal") => to.clone(),
        Some("outbound") => from.clone(),
        _ => None,
    };
    let mut f = Fields::default();
    f.text("call_id", call_id.clone())
        .word("direction", dir)
        .text("from", from)
        .text("to", to)
        .text("extension", extension)
        .text("hotline", text_of(map, &["did"]))
        .text(
            "status",
            status(get(map, "status")).or_else(|| status(get(map, "disposition"))),
        )
        .value("duration_s", seconds(get(map, "duration")))
        .value("billsec_s", seconds(get(map, "billsec")))
        .text("recording_url", text_of(map, &["recordingfile"]));
    // One call (linkedid) can produce several missed-call records: a ring
    // group writes one per extension (`dst`), a call that rings again later
    // another `calldate`, and Asterisk gives each channel its `uniqueid`.
    // Those are different events; a retry repeats all of them.
    // The date goes into the id as the instant it names, written in the
    // documented form: the socket and the webhook may spell one instant
    // differently, and two spellings must not make two missed calls.
    // A date in no form read is in it as its text, as sent.
    let (when, unread_time) = first_date(&[("calldate", get(map, "calldate"))], ICT);
    let calldate = match when {
        Some(at) => Some(documented_calldate(at)),
        None => text_of(map, &["calldate"]),
    };
    let id = match &call_id {
        Some(id) => identity(&[
            Some("missed"),
            Some(id),
            text_of(map, &["dst"]).as_deref(),
            calldate.as_deref(),
            text_of(map, &["uniqueid"]).as_deref(),
        ]),
        None => loose_canonical(payload),
    };
    Some(VendorEvent {
        event_type: "call.missed".to_owned(),
        subject: call_id,
        time: when,
        unread_time,
        fields: f.build(),
        identity: id,
    })
}

/// `at` as the vendor's document writes `calldate`: `2021-03-26 11:50:30`
/// in Vietnam's time, with milliseconds only when it has some.
fn documented_calldate(at: time::OffsetDateTime) -> String {
    // `at` is read by `normalize::date`, which rounds every form to the
    // millisecond: one instant written both ways is one text.
    let at = at.to_offset(ICT);
    let mut text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    if at.millisecond() != 0 {
        text.push_str(&format!(".{:03}", at.millisecond()));
    }
    text
}

fn feedback(map: &Map<String, Value>, payload: &Value) -> Option<VendorEvent> {
    let feedback_id = get(map, "FeedbackID").and_then(text);
    let call_id = text_of(map, &["callid"]);
    let mut f = Fields::default();
    // The rating call is placed by the PBX to the customer's phone.
    f.text("call_id", call_id.clone())
        .word("direction", Some("outbound"))
        .text("to", text_of(map, &["phone"]))
        .text("hotline", text_of(map, &["did"]));
    let id = match &feedback_id {
        Some(fid) => identity(&[Some("feedback"), Some(fid), call_id.as_deref()]),
        None => loose_canonical(payload),
    };
    Some(VendorEvent {
        event_type: "feedback.rating".to_owned(),
        subject: call_id,
        time: None,
        unread_time: None,
        fields: f.build(),
        identity: id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::format_time;
    use serde_json::json;

    const RING: &str = include_str!("../../tests/fixtures/vendors/voip24h/call_event_ring.json");
    const MISSED: &str = include_str!("../../tests/fixtures/vendors/voip24h/missed_call.json");
    const FEEDBACK: &str = include_str!("../../tests/fixtures/vendors/voip24h/feedback.query");

    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn documented_call_event_rings_with_exact_callid() {
        let raw = value(RING);
        let e = parse_call_event(&raw).unwrap();
        assert_eq!(e.event_type, "call.ringing");
        assert_eq!(e.subject.as_deref(), Some("1287674126.299"));
        assert_eq!(
            Value::Object(e.fields.clone()),
            json!({"call_id": "1287674126.299", "direction": "inbound",
                   "from": "0832666859", "to": "130", "extension": "130"})
        );
    }

    #[test]
    fn states_map_case_insensitively_and_type_null_on_hangup() {
        for (state, ty) in [
            ("Ring", "call.ringing"),
            ("RING", "call.ringing"),
            ("Up", "call.answered"),
            ("Hangup", "call.hangup"),
            ("Cdr", "call.cdr"),
        ] {
            let e = parse_call_event(&json!({"extend": "130", "state": state,
                "phone": "0832666859", "callid": "1.2", "type": null}))
            .unwrap();
            assert_eq!(e.event_type, ty, "{state}");
            assert_eq!(e.fields.get("direction"), None);
            assert_eq!(e.fields["extension"], "130");
        }
        let a = parse_call_event(&json!({"extend":130,"state":"Ring","callid":"1.2"})).unwrap();
        let b = parse_call_event(&json!({"extend":"130","state":"ring","callid":1.2})).unwrap();
        assert_eq!(a.identity, b.identity);
        let other_ext =
            parse_call_event(&json!({"extend":"131","state":"ring","callid":"1.2"})).unwrap();
        assert_ne!(a.identity, other_ext.identity);
    }

    /// Identities of the documented states are unchanged by this (they are
    /// journaled already), and a synonym is the same event as its state.
    #[test]
    fn a_state_and_its_synonym_are_one_event() {
        let call = |state: &str| {
            parse_call_event(&json!({"extend":"130","state":state,"callid":"1.2"}))
                .unwrap()
                .identity
        };
        for (state, synonyms) in [("Up", &["answered", "ANSWER"][..]), ("Ring", &["ringing"])] {
            for synonym in synonyms {
                assert_eq!(call(state), call(synonym), "{state} / {synonym}");
            }
        }
        assert_eq!(
            call("Up"),
            identity(&[Some("call"), Some("1.2"), Some("up"), Some("130")])
        );
        assert_ne!(call("Up"), call("Ring"));
    }

    #[test]
    fn outbound_and_local_calls_put_the_extension_first() {
        let e = parse_call_event(&json!({"extend":"130","state":"Up","phone":"0901",
            "callid":"9.9","type":"outbound"}))
        .unwrap();
        assert_eq!(e.fields["from"], "130");
        assert_eq!(e.fields["to"], "0901");
        let l = parse_call_event(&json!({"extend":"130","state":"Up","phone":"131",
            "callid":"9.9","type":"local"}))
        .unwrap();
        assert_eq!(l.fields["direction"], "internal");
    }

    #[test]
    fn cdr_state_reads_the_nested_cdr() {
        let e = parse_call_event(&json!({"extend":"130","state":"Cdr","phone":"0832666859",
            "callid":"1287674126.299","type":"inbound",
            "cdr":{"calldate":"2021-03-26 11:50:30","src":"0832666859","dst":"130",
                   "duration":"42","billsec":30,"disposition":"ANSWERED",
                   "recordingfile":"https://rec/1.wav","did":"02873088088"}}))
        .unwrap();
        assert_eq!(e.event_type, "call.cdr");
        assert_eq!(e.fields["duration_s"], json!(42));
        assert_eq!(e.fields["billsec_s"], json!(30));
        assert_eq!(e.fields["status"], "answered");
        assert_eq!(e.fields["recording_url"], "https://rec/1.wav");
        assert_eq!(e.fields["hotline"], "02873088088");
        assert_eq!(format_time(e.time.unwrap()), "2021-03-26T04:50:30.000Z");
    }

    /// Only a `Cdr` row fills its parties from `cdr.src`/`cdr.dst` when
    /// it has a direction: another state's `data` is as it was.
    #[test]
    fn a_call_event_of_another_state_is_not_filled_from_its_cdr() {
        let e = parse_call_event(&json!({"state":"Hangup","callid":"X","type":"inbound",
            "cdr":{"src":"0901","dst":"130"}}))
        .unwrap();
        for key in ["from", "to", "extension"] {
            assert!(e.fields.get(key).is_none(), "{key}: {:?}", e.fields);
        }
    }

    /// A CDR row that says its own direction names its parties from
    /// `cdr.src`/`cdr.dst` where `phone`/`extend` are missing: it had none,
    /// while the same row without a direction had both.
    #[test]
    fn a_cdr_with_its_own_direction_names_its_parties_from_src_and_dst() {
        let parties = |payload: Value| {
            let e = parse_call_event(&payload).unwrap();
            let field = |k: &str| e.fields.get(k).and_then(Value::as_str).map(str::to_owned);
            (
                field("direction"),
                field("from"),
                field("to"),
                field("extension"),
            )
        };
        let some = |d: &str, f: &str, t: &str, x: &str| {
            (
                Some(d.to_owned()),
                Some(f.to_owned()),
                Some(t.to_owned()),
                Some(x.to_owned()),
            )
        };
        let row = |direction: &str, src: &str, dst: &str| {
            json!({"state":"Cdr","callid":"X",
                "cdr":{"direction":direction,"src":src,"dst":dst}})
        };
        assert_eq!(
            parties(row("inbound", "0901", "130")),
            some("inbound", "0901", "130", "130")
        );
        assert_eq!(
            parties(row("outbound", "130", "0901")),
            some("outbound", "130", "0901", "130")
        );
        // A local call: the row's extension is the one it rang, `dst`, as a
        // missed local call's is.
        assert_eq!(
            parties(row("local", "130", "131")),
            some("internal", "130", "131", "131")
        );
        // With `extend`, `extend` is the extension.
        assert_eq!(
            parties(json!({"extend":"130","state":"Cdr","callid":"X",
                "cdr":{"direction":"local","src":"130","dst":"131"}})),
            some("internal", "130", "131", "130")
        );
        // Only the missing side is filled.
        assert_eq!(
            parties(
                json!({"state":"Cdr","callid":"X","phone":"0902","type":"inbound",
                "cdr":{"src":"0901","dst":"130"}})
            ),
            some("inbound", "0902", "130", "130")
        );
        assert_eq!(
            parties(
                json!({"extend":"131","state":"Cdr","callid":"X","phone":"0902",
                "type":"inbound","cdr":{"src":"0901","dst":"130"}})
            ),
            some("inbound", "0902", "131", "131")
        );
        // Without a direction, as before: no extension.
        assert_eq!(
            parties(json!({"state":"Cdr","callid":"X","cdr":{"src":"0901","dst":"130"}})),
            (None, Some("0901".to_owned()), Some("130".to_owned()), None)
        );
        // The id reads no party: it is the leg's, as it was.
        assert_eq!(
            parse_call_event(&row("inbound", "0901", "130"))
                .unwrap()
                .identity,
            identity(&[
                Some("call"),
                Some("X"),
                Some("cdr"),
                None,
                None,
                None,
                Some("130")
            ])
        );
    }

    /// Two CDR rows of one call without `extend` (a ring group's legs) are
    /// two events: they were one, and the answered leg's row was lost as a
    /// duplicate of the unanswered one. A row with `extend` keeps its id.
    #[test]
    fn cdr_rows_without_extend_are_told_apart_by_their_channel() {
        let row = |uniqueid: &str, dst: &str| {
            parse_call_event(&json!({"state":"Cdr","callid":"1616734230.1021",
                "cdr":{"uniqueid":uniqueid,"dst":dst,"billsec":0}}))
            .unwrap()
            .identity
        };
        assert_ne!(row("1616734230.1022", "130"), row("1616734230.1023", "131"));
        assert_eq!(row("1616734230.1022", "130"), row("1616734230.1022", "130"));
        let with_extend = parse_call_event(&json!({"extend":"130","state":"Cdr",
            "callid":"1.2","cdr":{"uniqueid":"1.3","dst":"130"}}))
        .unwrap();
        assert_eq!(
            with_extend.identity,
            identity(&[Some("call"), Some("1.2"), Some("cdr"), Some("130")])
        );
    }

    /// Asterisk 12+ gives every leg of a parallel ring group the caller's
    /// `uniqueid`: the legs differ in `dst` and `dstchannel`, and the
    /// answered one was lost as the unanswered one's duplicate.
    #[test]
    fn cdr_legs_sharing_the_callers_uniqueid_are_told_apart() {
        let row = |dst: &str, dstchannel: Option<&str>| {
            let mut cdr = json!({"uniqueid":"1616734230.1021","dst":dst,"billsec":0});
            if let Some(channel) = dstchannel {
                cdr["dstchannel"] = json!(channel);
            }
            parse_call_event(&json!({"state":"Cdr","callid":"1616734230.1021","cdr":cdr}))
                .unwrap()
                .identity
        };
        assert_ne!(row("130", None), row("131", None));
        assert_ne!(
            row("130", Some("SIP/130-00000001")),
            row("130", Some("SIP/130-00000002"))
        );
        assert_eq!(
            row("130", Some("SIP/130-00000001")),
            identity(&[
                Some("call"),
                Some("1616734230.1021"),
                Some("cdr"),
                None,
                Some("1616734230.1021"),
                Some("SIP/130-00000001"),
                Some("130"),
            ])
        );
    }

    /// PHP's `http_build_query` writes the nested `cdr` as `cdr[NAME]`
    /// fields: they are read as the JSON object is, so a call's rows are
    /// its legs' events and the socket's JSON copy of a row is the same event.
    #[test]
    fn a_cdr_posted_as_a_php_form_reads_as_its_json_copy() {
        let form = |body: &str| {
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
            parse_call_event(&Value::Object(super::super::query_object(&pairs))).unwrap()
        };
        let a = form(
            "state=Cdr&callid=1616734230.1021&cdr%5Buniqueid%5D=1616734230.1022\
             &cdr%5Bdst%5D=130&cdr%5Bdisposition%5D=NO+ANSWER&cdr%5Bbillsec%5D=0",
        );
        let b = form(
            "state=Cdr&callid=1616734230.1021&cdr%5Buniqueid%5D=1616734230.1023\
             &cdr%5Bdst%5D=131&cdr%5Bdisposition%5D=ANSWERED&cdr%5Bbillsec%5D=42\
             &cdr%5Brecordingfile%5D=https://rec/x.wav",
        );
        assert_ne!(a.identity, b.identity);
        assert_eq!(b.fields["billsec_s"], json!(42));
        assert_eq!(b.fields["recording_url"], "https://rec/x.wav");
        let socket = parse_call_event(&json!({"state":"Cdr","callid":"1616734230.1021",
            "cdr":{"uniqueid":"1616734230.1022","dst":130,"disposition":"NO ANSWER",
                   "billsec":0}}))
        .unwrap();
        assert_eq!(a, socket);
        // Any case, as the JSON key; deeper keys are no CDR field.
        let upper = form(
            "state=Cdr&callid=1616734230.1021&CDR%5Buniqueid%5D=1616734230.1022\
             &cdr%5Bdst%5D=130&cdr%5Bdisposition%5D=NO+ANSWER&cdr%5Bbillsec%5D=0\
             &cdr%5Bx%5D%5By%5D=1",
        );
        assert_eq!(upper, socket);
    }

    /// A sender that encodes the row itself sends `cdr` as JSON text (also
    /// PHP's `http_build_query(['cdr' => json_encode($row)])`): it is read as
    /// the object. It was no `cdr`: every row of a call was one event, and
    /// the answered leg's row was answered `duplicate` and lost.
    #[test]
    fn a_cdr_sent_as_json_text_reads_as_the_object() {
        let row = json!({"uniqueid":"1616734230.1023","dst":"131","disposition":"ANSWERED",
            "billsec":42,"recordingfile":"https://rec/x.wav","calldate":"2021-03-26 11:50:30"});
        let object =
            parse_call_event(&json!({"state":"Cdr","callid":"1616734230.1021","cdr":row})).unwrap();
        let text = parse_call_event(
            &json!({"state":"Cdr","callid":"1616734230.1021","cdr":row.to_string()}),
        )
        .unwrap();
        assert_eq!(text, object);
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", "Cdr")
            .append_pair("callid", "1616734230.1021")
            .append_pair("cdr", &row.to_string())
            .finish();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let form = parse_call_event(&Value::Object(super::super::query_object(&pairs))).unwrap();
        assert_eq!(form, object);
        let other_leg = json!({"uniqueid":"1616734230.1022","dst":"130","billsec":0});
        let first = parse_call_event(
            &json!({"state":"Cdr","callid":"1616734230.1021","cdr":other_leg.to_string()}),
        )
        .unwrap();
        assert_ne!(first.identity, text.identity);
    }

    /// A `cdr` text that holds no object gives no leg: the rows are told
    /// apart by their whole payload, as an event without its id fields is.
    #[test]
    fn a_cdr_text_that_is_no_object_tells_rows_apart_by_the_payload() {
        let row = |cdr: &str| {
            let payload = json!({"state":"Cdr","callid":"1616734230.1021","cdr":cdr});
            let e = parse_call_event(&payload).unwrap();
            assert_eq!(e.identity, loose_canonical(&payload), "{cdr}");
            e.identity
        };
        assert_ne!(row("uniqueid=1.2;dst=130"), row("uniqueid=1.3;dst=131"));
        assert_ne!(row("[\"1.2\",\"130\"]"), row("[\"1.3\",\"131\"]"));
        assert_ne!(row("{\"uniqueid\":"), row("{\"uniqueid\":\"1.3\""));
    }

    /// Only a `Cdr` row reads a `cdr` text: on another state it is no `cdr`,
    /// as before, so a row without `callid` keeps its id (its payload) and
    /// has no subject (a socket event of another name whose `cdr` text held
    /// a `linkedid` was taken for a call event), and its data is the same.
    #[test]
    fn a_cdr_text_on_another_state_is_no_cdr() {
        let text = r#"{"linkedid":"1.2","uniqueid":"1.3","src":"0901","dst":"130","direction":"inbound","billsec":5}"#;
        for state in ["Hangup", "Ring", "Up"] {
            for callid in [None, Some("1.2")] {
                let mut without = json!({"state":state,"extend":"130"});
                if let (Some(callid), Some(map)) = (callid, without.as_object_mut()) {
                    map.insert("callid".into(), json!(callid));
                }
                let mut with = without.clone();
                if let Some(map) = with.as_object_mut() {
                    map.insert("cdr".into(), json!(text));
                }
                let (e, old) = (
                    parse_call_event(&with).unwrap(),
                    parse_call_event(&without).unwrap(),
                );
                assert_eq!(e.subject, old.subject, "{with}");
                assert_eq!(e.fields, old.fields, "{with}");
                match callid {
                    None => assert_eq!(e.identity, loose_canonical(&with), "{with}"),
                    Some(_) => assert_eq!(e.identity, old.identity, "{with}"),
                }
            }
        }
        let e = parse_call_event(
            &json!({"state":"Hangup","extend":"130","cdr":"{\"linkedid\":\"1.2\"}"}),
        )
        .unwrap();
        assert_eq!(e.subject, None);
        assert_eq!(
            e.identity,
            r#"{"cdr":"{\"linkedid\":\"1.2\"}","extend":"130","state":"Hangup"}"#
        );
    }

    /// A `cdr` text is read as the outer payload is: a lone surrogate escape
    /// (an emoji cut in `clid`) is U+FFFD, so the row is its object-shaped
    /// copy, not an unreadable text with its whole payload as id.
    #[test]
    fn a_cdr_text_with_a_lone_surrogate_reads_as_its_object_copy() {
        let text = r#"{"uniqueid":"1.3","dst":"131","billsec":7,"clid":"Lan \ud83d"}"#;
        let object = json!({"uniqueid":"1.3","dst":"131","billsec":7,"clid":"Lan \u{FFFD}"});
        let from_text =
            parse_call_event(&json!({"state":"Cdr","callid":"1.2","cdr":text})).unwrap();
        let from_object =
            parse_call_event(&json!({"state":"Cdr","callid":"1.2","cdr":object})).unwrap();
        assert_eq!(from_text, from_object);
        assert_eq!(
            from_text.identity,
            r#"["call","1.2","cdr",null,"1.3",null,"131"]"#
        );
    }

    /// The ids of rows whose `cdr` is an object (or its form fields), or
    /// none, are journaled already: a string-shaped `cdr` changes none of them.
    #[test]
    fn object_shaped_cdr_rows_keep_their_ids() {
        let id = |payload: Value| parse_call_event(&payload).unwrap().identity;
        for (payload, expected) in [
            (
                json!({"state":"Cdr","callid":"1.2","cdr":{"uniqueid":"1.3","dst":130}}),
                r#"["call","1.2","cdr",null,"1.3",null,"130"]"#,
            ),
            (
                json!({"state":"Cdr","callid":"1.2","cdr":{"billsec":0}}),
                r#"["call","1.2","cdr",null]"#,
            ),
            (
                json!({"state":"Cdr","callid":"1.2"}),
                r#"["call","1.2","cdr",null]"#,
            ),
            (
                json!({"state":"Cdr","callid":"1.2","cdr":null}),
                r#"["call","1.2","cdr",null]"#,
            ),
            (
                json!({"state":"Cdr","callid":"1.2","cdr":""}),
                r#"["call","1.2","cdr",null]"#,
            ),
            (
                json!({"state":"Cdr","callid":"1.2","cdr[uniqueid]":"1.3","cdr[dstchannel]":"SIP/1"}),
                r#"["call","1.2","cdr",null,"1.3","SIP/1",null]"#,
            ),
            (
                json!({"extend":"130","state":"Cdr","callid":"1.2","cdr":{"uniqueid":"1.3"}}),
                r#"["call","1.2","cdr","130"]"#,
            ),
            (
                json!({"extend":"130","state":"Hangup","callid":"1.2","cdr":"x"}),
                r#"["call","1.2","hangup","130"]"#,
            ),
            // A form's `cdr[…]` fields win over a `cdr` text, as before.
            (
                json!({"state":"Cdr","callid":"1.2","cdr":"{\"uniqueid\":\"9.9\",\"dst\":\"131\"}",
                    "cdr[uniqueid]":"1.3","cdr[dstchannel]":"SIP/1"}),
                r#"["call","1.2","cdr",null,"1.3","SIP/1",null]"#,
            ),
            (
                json!({"extend":"130","state":"Hangup","callid":"1.2","cdr":"{\"linkedid\":\"9.9\"}"}),
                r#"["call","1.2","hangup","130"]"#,
            ),
            // With `extend`, a text that holds no object keeps the row's id.
            (
                json!({"extend":"130","state":"Cdr","callid":"1.2","cdr":"x"}),
                r#"["call","1.2","cdr","130"]"#,
            ),
            // "0" is no `cdr`, as everywhere in the file.
            (
                json!({"state":"Cdr","callid":"1.2","cdr":"0"}),
                r#"["call","1.2","cdr",null]"#,
            ),
        ] {
            assert_eq!(id(payload.clone()), expected, "{payload}");
        }
    }

    #[test]
    fn missed_call_webhook() {
        let e = parse_call_event(&value(MISSED)).unwrap();
        assert_eq!(e.event_type, "call.missed");
        assert_eq!(e.subject.as_deref(), Some("1616734230.1021"));
        assert_eq!(
            Value::Object(e.fields.clone()),
            json!({"call_id": "1616734230.1021", "direction": "inbound",
                   "from": "0932337122", "to": "130", "extension": "130",
                   "hotline": "02873088088",
                   "status": "no_answer", "duration_s": 25, "billsec_s": 0})
        );
        assert_eq!(format_time(e.time.unwrap()), "2021-03-26T04:50:30.000Z");
        // An outbound call that was not answered: the extension placed it.
        let mut outbound = value(MISSED);
        outbound["direction"] = json!("outbound");
        outbound["src"] = json!("131");
        outbound["dst"] = json!("0932337122");
        let e = parse_call_event(&outbound).unwrap();
        assert_eq!(e.fields["extension"], "131");
        // A local call: the extension it rang.
        let mut local = value(MISSED);
        local["direction"] = json!("local");
        local["src"] = json!("131");
        local["dst"] = json!("130");
        let e = parse_call_event(&local).unwrap();
        assert_eq!(
            (&e.fields["direction"], &e.fields["extension"]),
            (&json!("internal"), &json!("130"))
        );
        // Either of the two marks a missed-call record.
        for key in ["linkedid", "calldate"] {
            let mut record = value(MISSED);
            let other = if key == "linkedid" {
                "calldate"
            } else {
                "linkedid"
            };
            record.as_object_mut().unwrap().remove(other);
            let e = parse_call_event(&record).unwrap();
            assert_eq!(e.event_type, "call.missed", "with only {key}");
        }
    }

    /// A serializer that writes every column may give a missed-call record a
    /// `state` of null or "": it is the missed call, with the id it has
    /// without one. A state word the relay does not know stays unknown.
    #[test]
    fn a_missed_call_with_a_null_or_empty_state_is_a_missed_call() {
        let plain = parse_call_event(&value(MISSED)).unwrap();
        for state in [json!(null), json!(""), json!(" ")] {
            let mut record = value(MISSED);
            record["state"] = state.clone();
            assert_eq!(parse_call_event(&record).unwrap(), plain, "{state}");
        }
        let mut parked = value(MISSED);
        parked["state"] = json!("Parked");
        assert_eq!(
            parse_call_event(&parked).unwrap().event_type,
            "vendor.unknown"
        );
    }

    #[test]
    fn missed_records_of_one_call_are_separate_events_and_a_retry_is_one() {
        let base = value(MISSED);
        let with = |key: &str, v: Value| {
            let mut m = base.clone();
            m[key] = v;
            parse_call_event(&m).unwrap().identity
        };
        let first = parse_call_event(&base).unwrap().identity;
        // A ring group: the same call missed on another extension.
        assert_ne!(first, with("dst", json!("131")));
        // The same call missed again later.
        assert_ne!(first, with("calldate", json!("2021-03-26 11:51:02")));
        // Two channels of one call.
        assert_ne!(
            with("uniqueid", json!("1616734230.1022")),
            with("uniqueid", json!("1616734230.1023"))
        );
        // A retry, re-serialised with other key order and numbers as text.
        let mut pairs: Vec<(String, Value)> =
            base.as_object().unwrap().clone().into_iter().collect();
        pairs.reverse();
        let mut retry = Value::Object(pairs.into_iter().collect());
        retry["dst"] = json!(130);
        retry["duration"] = json!("25");
        assert_eq!(parse_call_event(&retry).unwrap().identity, first);
        // The same instant spelt another way (the socket's channel may write
        // it otherwise) is the same missed call; the documented spelling
        // keeps the id it had.
        assert_eq!(
            MISSED
                .matches("\"calldate\": \"2021-03-26 11:50:30\"")
                .count(),
            1
        );
        for same_instant in [
            json!("2021-03-26T11:50:30+07:00"),
            json!("2021-03-26T04:50:30Z"),
            json!(1616734230),
            json!(" 2021-03-26 11:50:30 "),
        ] {
            assert_eq!(
                with("calldate", same_instant.clone()),
                first,
                "{same_instant}"
            );
        }
        assert_ne!(with("calldate", json!("2021-03-26T11:50:30+08:00")), first);
        // Both readings round to the millisecond.
        assert_eq!(
            with("calldate", json!("2021-03-26T11:50:30.9996+07:00")),
            with("calldate", json!(1616734230.9996))
        );
        // A date the relay cannot read stays in the id as written.
        assert_ne!(
            with("calldate", json!("soon")),
            with("calldate", json!("later"))
        );
    }

    /// The forms read since 2026-12-07 (a zone after a space, `+` sent as
    /// a space) give the documented spelling's id: before, their text was
    /// in the id as written (deploy/README.md lists the change). A date
    /// still unread is in it as written, and the event says which field.
    #[test]
    fn a_calldate_read_since_its_zone_after_a_space_is_the_instant_in_the_id() {
        let base = value(MISSED);
        let parsed = |v: Value| {
            let mut m = base.clone();
            m["calldate"] = v;
            parse_call_event(&m).unwrap()
        };
        let first = parse_call_event(&base).unwrap();
        assert_eq!(first.unread_time, None);
        for newly_read in [
            "2021-03-26 11:50:30 +0700",
            "2021-03-26 04:50:30 UTC",
            "2021-03-26T04:50:30 Z",
            "2021-03-26T11:50:30 07:00",
            "2021-03-26 11:50:30.000 +0700 +07",
        ] {
            let e = parsed(json!(newly_read));
            assert_eq!(e.identity, first.identity, "{newly_read}");
            assert_eq!((e.time, e.unread_time), (first.time, None), "{newly_read}");
        }
        let unread = parsed(json!("26/03/2021 11:50:30"));
        assert_eq!(unread.time, None);
        assert_eq!(
            unread.unread_time,
            Some(crate::event::UnreadDate {
                field: "calldate",
                text: "26/03/2021 11:50:30".to_owned()
            })
        );
        assert!(
            unread.identity.contains("\"26/03/2021 11:50:30\""),
            "{}",
            unread.identity
        );
        assert_eq!(parsed(json!("0000-00-00 00:00:00")).unread_time, None);
        // Microseconds, a placeholder before 2026-12-07 and unread since:
        // only the warning is new; the id holds the text as sent either way.
        let micro = parsed(json!(1616734230123456u64));
        assert_eq!(micro.time, None);
        assert_eq!(micro.unread_time.map(|u| u.field), Some("calldate"));
        assert!(
            micro.identity.contains("\"1616734230123456\""),
            "{}",
            micro.identity
        );
        // A call event's date is its `cdr`'s.
        let cdr = parse_call_event(&json!({"callid": "c1", "state": "Cdr", "extend": "130",
            "cdr": {"calldate": "26/03/2021 11:50:30"}}))
        .unwrap();
        assert_eq!(cdr.unread_time.map(|u| u.field), Some("cdr.calldate"));
    }

    #[test]
    fn feedback_callback_from_query_parameters() {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(FEEDBACK.as_bytes())
            .into_owned()
            .collect();
        let raw = Value::Object(super::super::query_object(&pairs));
        let e = parse_call_event(&raw).unwrap();
        assert_eq!(e.event_type, "feedback.rating");
        assert_eq!(e.subject.as_deref(), Some("1616708923.946"));
        assert_eq!(
            raw["FeedbackID"],
            "APIFeedback-f8cd23be1c64db79994fd4825c886131@0932337122"
        );
        assert_eq!(raw["keypress"], "4");
        assert_eq!(
            Value::Object(e.fields),
            json!({"call_id": "1616708923.946", "direction": "outbound",
                   "to": "0932337122", "hotline": "02873088088"})
        );
    }

    #[test]
    fn unrecognised_objects_are_unknown_and_non_objects_fail() {
        let e = parse_call_event(&json!({"hello": 1})).unwrap();
        assert_eq!(e.event_type, "vendor.unknown");
        let e = parse_call_event(&json!({"state": "Parked", "callid": "1"})).unwrap();
        assert_eq!(e.event_type, "vendor.unknown");
        assert!(parse_call_event(&json!([1])).is_err());
    }
}
