//! Tel4vn: the callback api key check (configured header, `Bearer KEY` or the
//! bare key, or a configured query parameter), parsing and normalization of
//! its call-event hooks (pure).
//!
//! Types from `state`; a `cdr` that carries press_key or customer_id is the
//! CDR of an autocall (`autocall.cdr`), any other `cdr` is `call.cdr`. A
//! callback URL's `?event=missed`, `?event=cdr` or `?event=cdr_autocall`
//! types its hooks whatever their fields say.
//!
//! Identity: `call_id + state + extension`, where an autocall's CDR counts as
//! state `cdr_autocall` however it says so: a plain CDR and an autocall CDR of
//! one call are two events (they shared an id, and the second was answered as
//! a duplicate and lost). Ringing/answered/hangup of an inbound call that
//! rings several extensions carry per-extension call ids and the extension
//! keeps two extensions' events apart.

use serde_json::{Map, Value};

use super::normalize::{
    Fields, ICT, direction, first_date, get, identity, loose_canonical, lower, seconds, text_of,
};
use super::{AuthError, Delivery, ParseError, Verified, as_object, unknown_event};
use crate::config::Accepted;
use crate::event::VendorEvent;

/// Checks the api key in `query` (when configured) or else in `header`.
pub fn verify<'a>(
    api_key: &Accepted,
    header: &str,
    query: Option<&str>,
    delivery: Delivery<'a>,
) -> Result<Verified<'a>, AuthError> {
    let presented = match query {
        Some(q) => delivery.credential_param(q)?.map(str::as_bytes),
        None => delivery.credential_header(header)?.map(strip_bearer),
    };
    // Only a refusal names the place; an accepted key allocates nothing.
    let place = || match query {
        Some(q) => format!("query parameter `{q}`"),
        None => format!("header `{header}`"),
    };
    let presented = presented.ok_or_else(|| AuthError::MissingApiKey(place()))?;
    match api_key.position(presented) {
        Some(position) => Ok(Verified::by_value_at(delivery, position)),
        None => Err(AuthError::BadApiKey(place())),
    }
}

/// The key a header's value presents: trimmed, without one `Bearer `
/// prefix (`check` warns of a configured key this can never give back).
pub(crate) fn strip_bearer(value: &[u8]) -> &[u8] {
    let value = value.trim_ascii();
    if value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ") {
        value[7..].trim_ascii()
    } else {
        value
    }
}

/// The hook events a Tel4vn subscription can name (`POST /v1/event`).
const HOOK_EVENTS: [&str; 6] = [
    "ringing",
    "answered",
    "hangup",
    "cdr",
    "missed",
    "cdr_autocall",
];

/// The subscription a hook came for, from its callback URL's `?event=`.
///
/// Tel4vn registers one callback URL per subscribed event, but its hook data
/// gives `state` only as ringing / answered / hangup / cdr: a `missed` hook
/// cannot say it is one, and would be taken for the hangup (or CDR) of the
/// same call and answered `duplicate`. `?event=missed` and
/// `?event=cdr_autocall` say it, and `?event=cdr` that a hook is the plain
/// CDR even when it carries an autocall's fields; the other three states are
/// accepted and change nothing. Anything else is refused, so a typo does not
/// pass unnoticed.
/// The name is matched in any case: `?Event=missed` read as no name at all
/// typed the missed hook by its `state`, and it was lost as the hangup's
/// duplicate without a word.
pub fn hook_event(query: &[(String, String)]) -> Result<Option<&'static str>, ParseError> {
    let mut given = query
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("event"));
    let Some((_, value)) = given.next() else {
        return Ok(None);
    };
    if given.next().is_some() {
        return Err(ParseError(
            "the callback URL gives `event` twice; give the subscribed event once".into(),
        ));
    }
    let value = value.trim();
    HOOK_EVENTS
        .into_iter()
        .find(|known| known.eq_ignore_ascii_case(value))
        .map(Some)
        .ok_or_else(|| {
            ParseError(format!(
                "the callback URL's `event` must be one of Tel4vn's hook events: {}",
                HOOK_EVENTS.join(", ")
            ))
        })
}

/// One hook body `{call_id, sip_call_id, domain, direction, from_number,
/// to_number, hotline, state, duration, billsec, recording_url, …}`;
/// `hook` is the subscription it came for, when its URL says (see
/// [`hook_event`]).
pub fn parse(payload: &Value, hook: Option<&str>) -> Result<VendorEvent, ParseError> {
    let map = as_object(payload, "Tel4vn")?;
    Ok(event(map, payload, hook).unwrap_or_else(|| unknown_event(payload)))
}

fn event(map: &Map<String, Value>, payload: &Value, hook: Option<&str>) -> Option<VendorEvent> {
    let state = match hook {
        // The subscriptions whose hooks do not say what they are: a missed
        // hook says hangup, and the two CDRs both say cdr (a plain one with
        // a customer_id, or a press_key written as 0, looked like the
        // autocall's, took its id, and one of the two was lost).
        Some(named @ ("missed" | "cdr_autocall" | "cdr")) => named.to_owned(),
        _ => lower(get(map, "state")).or_else(|| lower(get(map, "event")))?,
    };
    let event_type = match state.as_str() {
        "ringing" => "call.ringing",
        "answered" => "call.answered",
        "hangup" => "call.hangup",
        // The document's hook data gives `state` only as ringing / answered /
        // hangup / cdr, so a cdr_autocall hook says "cdr" too; what marks it
        // are press_key and customer_id, "Riêng sự kiện cdr_autocall" (only in
        // cdr_autocall hooks).
        "cdr" if hook != Some("cdr") && autocall_fields(map) => "autocall.cdr",
        "cdr" => "call.cdr",
        "missed" => "call.missed",
        "cdr_autocall" => "autocall.cdr",
        _ => return None,
    };
    let call_id = text_of(map, &["call_id"]);
    let dir = direction(get(map, "direction"));
    let from = text_of(map, &["from_number"]);
    let to = text_of(map, &["to_number"]);
    // The documented rule: to_number is the extension on inbound calls,
    // from_number on outbound ones.
    let extension = match dir {
        Some("inbound") => to.clone(),
        Some("outbound") => from.clone(),
        _ => None,
    };
    let mut f = Fields::default();
    f.text("call_id", call_id.clone())
        .word("direction", dir)
        .text("from", from)
        .text("to", to)
        .text("extension", extension.clone())
        .text("hotline", text_of(map, &["hotline"]))
        .value("duration_s", seconds(get(map, "duration")))
        .value("billsec_s", seconds(get(map, "billsec")))
        .text("recording_url", text_of(map, &["recording_url"]));
    let identity_state = match event_type {
        "autocall.cdr" => "cdr_autocall",
        _ => state.as_str(),
    };
    let id = match &call_id {
        Some(id) => identity(&[Some(id), Some(identity_state), extension.as_deref()]),
        None => loose_canonical(payload),
    };
    let (when, unread_time) = first_date(
        &["time", "timestamp", "event_time", "created_at"].map(|k| (k, get(map, k))),
        ICT,
    );
    Some(VendorEvent {
        event_type: event_type.to_owned(),
        subject: call_id,
        time: when,
        unread_time,
        fields: f.build(),
        identity: id,
    })
}

/// Whether the hook carries an autocall's press_key or customer_id. An empty
/// value counts as absent: serializers often write every optional field. So
/// does a customer id of 0, written as a number or as text (no customer, as
/// ids of 0 are elsewhere, and `8` and `"8"` are one id); a press_key of 0 is
/// the key 0.
fn autocall_fields(map: &Map<String, Value>) -> bool {
    let no_customer = |text: &str| text.trim().parse::<f64>().is_ok_and(|n| n == 0.0);
    let present = |key: &str| match get(map, key) {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if key == "customer_id" => !s.trim().is_empty() && !no_customer(s),
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Number(n)) if key == "customer_id" => !no_customer(&n.to_string()),
        Some(_) => true,
    };
    present("press_key") || present("customer_id")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use serde_json::json;

    const HANGUP: &str = include_str!("../../tests/fixtures/vendors/tel4vn/hook_hangup.json");

    #[test]
    fn documented_hook_is_a_hangup_with_every_field() {
        let raw: Value = serde_json::from_str(HANGUP).unwrap();
        let e = parse(&raw, None).unwrap();
        assert_eq!(e.event_type, "call.hangup");
        assert_eq!(
            e.subject.as_deref(),
            Some("avavavav-1111-2222-3333-eeeeeeee")
        );
        assert_eq!(
            Value::Object(e.fields),
            json!({"call_id": "avavavav-1111-2222-3333-eeeeeeee", "direction": "outbound",
                   "from": "0899888999", "to": "101", "extension": "0899888999",
                   "hotline": "19001919", "duration_s": 10, "billsec_s": 5,
                   "recording_url": "https://recording.demo/ad4c9b90-c071-405a-9723-980d2e5e1623"})
        );
    }

    #[test]
    fn every_state_maps() {
        for (s, ty) in [
            ("ringing", "call.ringing"),
            ("Answered", "call.answered"),
            ("HANGUP", "call.hangup"),
            ("cdr", "call.cdr"),
            ("missed", "call.missed"),
            ("cdr_autocall", "autocall.cdr"),
            ("transfer", "vendor.unknown"),
        ] {
            let e = parse(&json!({"call_id": "c", "state": s}), None).unwrap();
            assert_eq!(e.event_type, ty, "{s}");
        }
    }

    #[test]
    fn a_documented_autocall_cdr_is_autocall_cdr() {
        // The hook data of the document, as a cdr_autocall hook sends it: state
        // "cdr" plus the two fields only that event carries.
        let mut raw: Value = serde_json::from_str(HANGUP).unwrap();
        raw["state"] = json!("cdr");
        let plain = parse(&raw, None).unwrap();
        assert_eq!(plain.event_type, "call.cdr");
        for (key, value) in [
            ("press_key", json!("1")),
            ("press_key", json!(0)),
            // The key 0, as text too: only a customer id of 0 is no value.
            ("press_key", json!("0")),
            ("customer_id", json!("cus-42")),
            ("customer_id", json!(42)),
        ] {
            let mut autocall = raw.clone();
            autocall[key] = value.clone();
            let e = parse(&autocall, None).unwrap();
            assert_eq!(e.event_type, "autocall.cdr", "{key}: {value}");
            assert_eq!(e.subject, plain.subject);
        }
        // Written but empty, the fields say nothing; nor does customer id 0.
        for (press_key, customer_id) in [
            (json!(""), json!("")),
            (json!(null), json!(null)),
            (json!(""), json!(0)),
            (json!(""), json!("0")),
            (json!(null), json!(" 0 ")),
            (json!(""), json!(0.0)),
        ] {
            let mut r = raw.clone();
            r["press_key"] = press_key;
            r["customer_id"] = customer_id;
            assert_eq!(parse(&r, None).unwrap().event_type, "call.cdr", "{r}");
        }
        // Only a cdr becomes an autocall CDR.
        raw["state"] = json!("hangup");
        raw["customer_id"] = json!("cus-42");
        assert_eq!(parse(&raw, None).unwrap().event_type, "call.hangup");
    }

    /// A tenant that subscribed to both `cdr` and `cdr_autocall` gets two
    /// CDRs of an autocall's call: two events, whichever comes first. The
    /// autocall CDR is one event however its state is written.
    #[test]
    fn a_plain_and_an_autocall_cdr_of_one_call_are_two_events() {
        let mut plain: Value = serde_json::from_str(HANGUP).unwrap();
        plain["state"] = json!("cdr");
        let mut autocall = plain.clone();
        autocall["press_key"] = json!("2");
        autocall["customer_id"] = json!("CUST-9");
        let mut autocall_state = autocall.clone();
        autocall_state["state"] = json!("cdr_autocall");
        let (plain, autocall, autocall_state) = (
            parse(&plain, None).unwrap(),
            parse(&autocall, None).unwrap(),
            parse(&autocall_state, None).unwrap(),
        );
        assert_eq!(
            (plain.event_type.as_str(), autocall.event_type.as_str()),
            ("call.cdr", "autocall.cdr")
        );
        assert_ne!(plain.identity, autocall.identity);
        assert_eq!(autocall.identity, autocall_state.identity);
    }

    /// A serializer that writes every field gives a plain CDR a customer id
    /// "0": it is still the plain CDR, and not the autocall CDR's duplicate.
    #[test]
    fn a_plain_cdr_with_customer_id_zero_as_text_is_not_the_autocall_cdr() {
        let mut plain: Value = serde_json::from_str(HANGUP).unwrap();
        plain["state"] = json!("cdr");
        plain["press_key"] = json!("");
        plain["customer_id"] = json!("0");
        let mut autocall = plain.clone();
        autocall["state"] = json!("cdr_autocall");
        let (plain, autocall) = (
            parse(&plain, None).unwrap(),
            parse(&autocall, None).unwrap(),
        );
        assert_eq!(plain.event_type, "call.cdr");
        assert_ne!(plain.identity, autocall.identity);
    }

    /// Tel4vn's hook data gives `state` only as ringing / answered / hangup /
    /// cdr, so a `missed` hook may say `hangup`: its callback URL's
    /// `?event=missed` keeps it apart from the hangup of the same call.
    #[test]
    fn the_callback_urls_event_names_a_missed_or_autocall_hook() {
        let mut hangup: Value = serde_json::from_str(HANGUP).unwrap();
        hangup["direction"] = json!("inbound");
        let plain = parse(&hangup, None).unwrap();
        let missed = parse(&hangup, Some("missed")).unwrap();
        assert_eq!(missed.event_type, "call.missed");
        assert_ne!(missed.identity, plain.identity);
        // The same missed hook again is the same event.
        assert_eq!(
            parse(&hangup, Some("missed")).unwrap().identity,
            missed.identity
        );

        // An autocall CDR with no key pressed and no customer looks plain.
        let mut cdr = hangup.clone();
        cdr["state"] = json!("cdr");
        cdr["press_key"] = json!("");
        let plain_cdr = parse(&cdr, None).unwrap();
        let autocall = parse(&cdr, Some("cdr_autocall")).unwrap();
        assert_eq!(
            (plain_cdr.event_type.as_str(), autocall.event_type.as_str()),
            ("call.cdr", "autocall.cdr")
        );
        assert_ne!(plain_cdr.identity, autocall.identity);

        // The other states change nothing: the payload already says them.
        for state in ["ringing", "answered", "hangup"] {
            assert_eq!(parse(&hangup, Some(state)).unwrap(), plain, "{state}");
        }
        assert_eq!(parse(&cdr, Some("cdr")).unwrap(), plain_cdr);
    }

    /// A plain CDR whose serializer writes `press_key: 0` or whose call has
    /// a customer read as the autocall CDR, with its id: the tenant
    /// subscribed to both lost one of the two. `?event=cdr` says which it is.
    #[test]
    fn a_hook_to_the_cdr_subscription_is_the_plain_cdr_whatever_its_fields() {
        let mut cdr: Value = serde_json::from_str(HANGUP).unwrap();
        cdr["state"] = json!("cdr");
        cdr["press_key"] = json!(0);
        cdr["customer_id"] = json!("CUST-9");
        let hook = |name: &str| {
            hook_event(&[("event".to_owned(), name.to_owned())])
                .unwrap()
                .unwrap()
        };
        let plain = parse(&cdr, Some(hook("CDR"))).unwrap();
        let mut autocall = cdr.clone();
        autocall["press_key"] = json!("2");
        let autocall = parse(&autocall, Some(hook("cdr_autocall"))).unwrap();
        assert_eq!(
            (plain.event_type.as_str(), autocall.event_type.as_str()),
            ("call.cdr", "autocall.cdr")
        );
        assert_ne!(plain.identity, autocall.identity);
        // Without the URL's word, the fields still decide.
        assert_eq!(parse(&cdr, None).unwrap().event_type, "autocall.cdr");
    }

    #[test]
    fn the_callback_urls_event_must_be_a_tel4vn_hook_event_given_once() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(hook_event(&q(&[])).unwrap(), None);
        assert_eq!(hook_event(&q(&[("apikey", "k")])).unwrap(), None);
        assert_eq!(
            hook_event(&q(&[("event", " Missed ")])).unwrap(),
            Some("missed")
        );
        assert_eq!(
            hook_event(&q(&[("event", "CDR_AUTOCALL")])).unwrap(),
            Some("cdr_autocall")
        );
        let typo = hook_event(&q(&[("event", "mised")])).unwrap_err();
        assert!(typo.0.contains("missed, cdr_autocall"), "{typo:?}");
        assert!(hook_event(&q(&[("event", "missed"), ("event", "missed")])).is_err());
        assert_eq!(
            hook_event(&q(&[("Event", "missed")])).unwrap(),
            Some("missed")
        );
        assert!(hook_event(&q(&[("EVENT", "missed"), ("event", "missed")])).is_err());
    }

    #[test]
    fn two_extensions_ringing_are_two_events() {
        let a = parse(
            &json!({"call_id":"c","state":"ringing","direction":"inbound","to_number":"101"}),
            None,
        )
        .unwrap();
        let b = parse(
            &json!({"call_id":"c","state":"ringing","direction":"inbound","to_number":"102"}),
            None,
        )
        .unwrap();
        assert_ne!(a.identity, b.identity);
        assert_eq!(a.fields["extension"], "101");
    }

    fn delivery<'a>(h: &'a HeaderMap, q: &'a [(String, String)]) -> Delivery<'a> {
        Delivery {
            method: super::super::Method::Post,
            headers: h,
            query: q,
            body: b"{}",
        }
    }

    #[test]
    fn api_key_bearer_bare_or_query() {
        let key = crate::config::Accepted::one("k3y");
        let mut h = HeaderMap::new();
        assert_eq!(
            verify(&key, "Authorization", None, delivery(&h, &[])).unwrap_err(),
            AuthError::MissingApiKey("header `Authorization`".into())
        );
        h.insert("authorization", "Bearer k3y".parse().unwrap());
        assert!(verify(&key, "Authorization", None, delivery(&h, &[])).is_ok());
        h.insert("authorization", "bearer  k3y ".parse().unwrap());
        assert!(verify(&key, "Authorization", None, delivery(&h, &[])).is_ok());
        h.insert("authorization", "k3y".parse().unwrap());
        assert!(verify(&key, "Authorization", None, delivery(&h, &[])).is_ok());
        h.insert("authorization", "Bearer k3x".parse().unwrap());
        let err = verify(&key, "Authorization", None, delivery(&h, &[])).unwrap_err();
        assert!(!err.to_string().contains("k3y"));
        let mut h2 = HeaderMap::new();
        h2.insert("x-api-key", "k3y".parse().unwrap());
        assert!(verify(&key, "X-Api-Key", None, delivery(&h2, &[])).is_ok());
        let q = vec![("apikey".to_owned(), "k3y".to_owned())];
        assert!(verify(&key, "Authorization", Some("apikey"), delivery(&h, &q)).is_ok());
        assert!(verify(&key, "Authorization", Some("apikey"), delivery(&h, &[])).is_err());
    }
}
