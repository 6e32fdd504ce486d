//! VOIPEX (IPEX): HTTP Basic auth check, parsing and normalization of its
//! webhook events (pure).
//!
//! Identity: call events `UniqueId + EventName + party` (the party is the
//! agent login, else the line, else the called number: two phones ringing for
//! one call are two events); a transfer's and a cancelled transfer's also
//! include `To`, the colleague consulted, so that one agent transferring to a
//! second colleague after the first is two events. Agent events carry no id and no time at all, so an
//! agent pausing twice within the dedup window would look like one retried
//! event; rather than drop a real pause, their identity includes the receive
//! time — a VOIPEX retry of an agent event is then journaled twice.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::normalize::{Fields, direction, get, identity, loose_canonical, lower, status, text_of};
use super::{AuthError, Delivery, ParseError, Verified, as_object, unknown_event};
use crate::config::Accepted;
use crate::config::values::constant_time_eq;
use crate::event::VendorEvent;

/// HTTP Basic auth; the password may contain `:` (only the first one splits).
pub fn verify<'a>(
    username: &str,
    password: &Accepted,
    delivery: Delivery<'a>,
) -> Result<Verified<'a>, AuthError> {
    let header = delivery
        .credential_header("authorization")
        .map_err(|_| AuthError::RepeatedBasic)?
        .ok_or(AuthError::MissingBasic)?
        .trim_ascii();
    if header.len() < 6 || !header[..6].eq_ignore_ascii_case(b"basic ") {
        return Err(AuthError::MissingBasic);
    }
    let encoded = header[6..].trim_ascii();
    let decoded = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| AuthError::MalformedBasic)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(AuthError::MalformedBasic)?;
    let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
    // Both compared, always: the answer's timing says nothing about which failed.
    let user_ok = constant_time_eq(username.as_bytes(), user);
    let pass_at = password.position(pass);
    match pass_at {
        Some(position) if user_ok => Ok(Verified::by_value_at(delivery, position)),
        _ => Err(AuthError::BadBasic),
    }
}

/// One webhook body `{EventName, From, To, Line, Email, Login, UniqueId, Queue,
/// Direction, Reason}`. `received_at` only enters agent events' identity.
pub fn parse(payload: &Value, received_at: OffsetDateTime) -> Result<VendorEvent, ParseError> {
    let map = as_object(payload, "VOIPEX")?;
    Ok(event(map, payload, received_at).unwrap_or_else(|| unknown_event(payload)))
}

fn event(
    map: &Map<String, Value>,
    payload: &Value,
    received_at: OffsetDateTime,
) -> Option<VendorEvent> {
    let name = lower(get(map, "EventName"))?;
    let (event_type, agent_event) = match name.as_str() {
        "newcall" => ("call.started", false),
        "ringing" => ("call.ringing", false),
        "answered" => ("call.answered", false),
        "hangup" => ("call.hangup", false),
        "attendedtransfer" => ("call.transferred", false),
        "cancelattendedtransfer" => ("call.transfer_cancelled", false),
        "cdr" => ("call.cdr", false),
        "agentlogin" => ("agent.login", true),
        "agentlogout" => ("agent.logout", true),
        "agentpaused" => ("agent.paused", true),
        "agentunpaused" => ("agent.unpaused", true),
        _ => return None,
    };
    let call_id = text_of(map, &["UniqueId"]);
    let login = text_of(map, &["Login"]);
    let line = text_of(map, &["Line"]);
    let to = text_of(map, &["To"]);
    let mut f = Fields::default();
    f.text("call_id", call_id.clone())
        .word("direction", direction(get(map, "Direction")))
        .text("from", text_of(map, &["From"]))
        .text("to", to.clone())
        .text("extension", line.clone())
        .text("agent", login.clone())
        .text("status", status(get(map, "Reason")));
    let subject = if agent_event {
        login.clone()
    } else {
        call_id.clone()
    };
    let party = login.as_deref().or(line.as_deref()).or(to.as_deref());
    let transfer = matches!(name.as_str(), "attendedtransfer" | "cancelattendedtransfer");
    let id = match (&call_id, agent_event) {
        (Some(id), _) if transfer => identity(&[Some(id), Some(&name), party, to.as_deref()]),
        (Some(id), _) => identity(&[Some(id), Some(&name), party]),
        (None, true) => {
            let at = (received_at.unix_timestamp_nanos() / 1_000_000).to_string();
            identity(&[
                Some(&name),
                login.as_deref(),
                text_of(map, &["Queue"]).as_deref(),
                Some(&at),
            ])
        }
        (None, false) => loose_canonical(payload),
    };
    Some(VendorEvent {
        event_type: event_type.to_owned(),
        subject,
        time: None,
        unread_time: None,
        fields: f.build(),
        identity: id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use serde_json::json;

    const RINGING: &str = include_str!("../../tests/fixtures/vendors/voipex/ringing.json");

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    #[test]
    fn documented_ringing_keeps_the_unique_id_digits() {
        let raw: Value = serde_json::from_str(RINGING).unwrap();
        let e = parse(&raw, now()).unwrap();
        assert_eq!(e.event_type, "call.ringing");
        assert_eq!(e.subject.as_deref(), Some("1412256225.1941"));
        assert_eq!(
            Value::Object(e.fields),
            json!({"call_id": "1412256225.1941", "from": "777888999", "to": "222333444",
                   "extension": "444", "agent": "petr.novak"})
        );
    }

    #[test]
    fn every_event_name_maps_and_agent_events_have_the_login_as_subject() {
        for (n, ty) in [
            ("NewCall", "call.started"),
            ("Ringing", "call.ringing"),
            ("Answered", "call.answered"),
            ("Hangup", "call.hangup"),
            ("AttendedTransfer", "call.transferred"),
            ("CancelAttendedTransfer", "call.transfer_cancelled"),
            ("CDR", "call.cdr"),
            ("AgentLogin", "agent.login"),
            ("AgentLogout", "agent.logout"),
            ("AgentPaused", "agent.paused"),
            ("AgentUnPaused", "agent.unpaused"),
            ("agentunpaused", "agent.unpaused"),
            ("Parked", "vendor.unknown"),
        ] {
            let e = parse(
                &json!({"EventName": n, "Login": "petr", "UniqueId": "1.2"}),
                now(),
            )
            .unwrap();
            assert_eq!(e.event_type, ty, "{n}");
            if ty.starts_with("agent.") {
                assert_eq!(e.subject.as_deref(), Some("petr"));
            }
        }
    }

    #[test]
    fn directions_and_reason() {
        let e = parse(
            &json!({"EventName":"Hangup","UniqueId":"1.2","Direction":"incomingLocal","Reason":"Busy"}),
            now(),
        )
        .unwrap();
        assert_eq!(e.fields["direction"], "internal");
        assert_eq!(e.fields["status"], "busy");
    }

    /// A second later: a retry of a call event arrives after the first.
    fn a_second_later() -> OffsetDateTime {
        now() + time::Duration::seconds(1)
    }

    #[test]
    fn identity_by_call_event_and_party() {
        let ring_at = |login: &str, at: OffsetDateTime| {
            parse(
                &json!({"EventName":"Ringing","UniqueId":"1.2","Login":login}),
                at,
            )
            .unwrap()
        };
        let ring = |login: &str| ring_at(login, now());
        assert_ne!(ring("a").identity, ring("b").identity);
        // A retry, received later, is the same event.
        assert_eq!(ring("a").identity, ring_at("a", a_second_later()).identity);
        let n = parse(
            &json!({"EventName":"Ringing","UniqueId":1.2,"Login":"a"}),
            now(),
        )
        .unwrap();
        assert_eq!(n.identity, ring("a").identity);
        // Outside a transfer `To` is not part of it: ids journaled by an
        // earlier version stay the ids of the same events.
        let ring_to = |to: &str| {
            parse(
                &json!({"EventName":"Ringing","UniqueId":"1.2","Login":"a","To":to}),
                now(),
            )
            .unwrap()
            .identity
        };
        assert_eq!(ring_to("446"), ring_to("447"));
    }

    /// An agent event without a call id has only its arrival to tell two
    /// apart: the same millisecond is one event, the next is another.
    #[test]
    fn an_agent_event_without_a_call_id_is_told_apart_by_its_millisecond() {
        let paused = |nanos: i128| {
            let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_000 + nanos)
                .unwrap();
            parse(&json!({"EventName":"AgentPaused","Login":"petr"}), at)
                .unwrap()
                .identity
        };
        assert_eq!(paused(100), paused(900_000));
        assert_ne!(paused(100), paused(1_000_100));
    }

    /// An agent who consults one colleague, cancels, then another, sends
    /// two cancels (and maybe two transfers) that differ only in `To`: the
    /// second was answered as a duplicate of the first and lost.
    #[test]
    fn a_transfer_to_another_colleague_is_another_event() {
        for name in ["AttendedTransfer", "CancelAttendedTransfer"] {
            let to_at = |to: &str, at: OffsetDateTime| {
                parse(
                    &json!({"EventName":name,"From":"+420777888999","To":to,"Line":"445",
                        "Login":"eva.svobodova","UniqueId":"1412256300.2000"}),
                    at,
                )
                .unwrap()
                .identity
            };
            let to = |to: &str| to_at(to, now());
            assert_ne!(to("446"), to("447"), "{name}");
            // A retry, received later, is the same event.
            assert_eq!(to("446"), to_at("446", a_second_later()), "{name}");
        }
    }

    fn basic(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("authorization", h.parse().unwrap());
        m
    }

    fn check(headers: &HeaderMap) -> Result<(), AuthError> {
        let d = Delivery {
            method: super::super::Method::Post,
            headers,
            query: &[],
            body: b"{}",
        };
        verify("demo", &crate::config::Accepted::one("pa:ss:word"), d).map(|_| ())
    }

    #[test]
    fn basic_auth_with_colons_in_the_password() {
        let enc = |s: &str| format!("Basic {}", STANDARD.encode(s));
        assert_eq!(check(&basic(&enc("demo:pa:ss:word"))), Ok(()));
        assert_eq!(check(&basic(&enc("demo:pa:ss"))), Err(AuthError::BadBasic));
        assert_eq!(
            check(&basic(&enc("Demo:pa:ss:word"))),
            Err(AuthError::BadBasic)
        );
        assert_eq!(check(&basic(&enc("demo"))), Err(AuthError::MalformedBasic));
        assert_eq!(check(&basic("Basic !!!")), Err(AuthError::MalformedBasic));
        assert_eq!(check(&basic("Bearer x")), Err(AuthError::MissingBasic));
        assert_eq!(check(&HeaderMap::new()), Err(AuthError::MissingBasic));
    }
}
