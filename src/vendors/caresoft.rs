//! CareSoft: `X-Hub-Signature` (HMAC-SHA1 of the raw body) check, parsing and
//! normalization of its `{object, action, …}` webhooks (pure).
//!
//! Types: `call_in` actions → `call.*`, `smart_dialer` end calls →
//! `autocall.cdr`, CRM objects (user, organization, ticket, lead, deal) →
//! `crm.{object}.{action}`. Identity: call events `object + action + call_id +
//! agent + event_time` (agent-end and customer-end differ by action; two agents
//! ringing by agent; one agent rung twice by event_time); CRM events `object + action + entity id + its version`
//! (`updated_at`, `assign_at`), else the whole payload.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;

use super::normalize::{
    Fields, ICT, direction, first_date, get, identity, loose_canonical, lower, object, seconds,
    status, text_of,
};
use super::{AuthError, Delivery, ParseError, Verified, as_object, unknown_event};
use crate::config::Accepted;
use crate::event::VendorEvent;

type HmacSha1 = Hmac<Sha1>;

/// Checks `X-Hub-Signature` against HMAC-SHA1(secret, raw body), any hex case,
/// with or without a `sha1=` prefix, in constant time; during a rotation
/// against each accepted secret, all of them every time.
pub fn verify<'a>(secrets: &Accepted, delivery: Delivery<'a>) -> Result<Verified<'a>, AuthError> {
    let presented = presented_signature(&delivery)?;
    let signed_with = |secret: &crate::config::Secret| {
        let ok = HmacSha1::new_from_slice(secret.expose().as_bytes()).is_ok_and(|mut mac| {
            mac.update(delivery.body);
            // verify_slice compares in constant time.
            mac.verify_slice(&presented).is_ok()
        });
        subtle::Choice::from(u8::from(ok))
    };
    match secrets.first_of(signed_with) {
        Some(position) => Ok(Verified::by_value_at(delivery, position)),
        None => Err(AuthError::BadSignature),
    }
}

/// The signature `X-Hub-Signature` presents, as bytes, or why the header
/// holds none; judged from the request's head alone, so a request without
/// one is refused before its body is read.
pub(crate) fn presented_signature(delivery: &Delivery<'_>) -> Result<[u8; 20], AuthError> {
    let header = delivery
        .credential_header("x-hub-signature")?
        .ok_or(AuthError::MissingSignature)?
        .trim_ascii();
    let hex_part = if header.len() >= 5 && header[..5].eq_ignore_ascii_case(b"sha1=") {
        &header[5..]
    } else {
        header
    };
    // An HMAC-SHA1's 20 bytes, or malformed: an empty value, a bare `sha1=`,
    // or another hash's length (an HMAC-SHA256, say) is not what CareSoft
    // signs with, said so rather than that it does not match the body. The
    // length is no secret.
    let mut presented = [0u8; 20];
    hex::decode_to_slice(hex_part, &mut presented).map_err(|_| AuthError::MalformedSignature)?;
    Ok(presented)
}

/// The signature CareSoft sends for `body`: uppercase hex HMAC-SHA1.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match HmacSha1::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode_upper(mac.finalize().into_bytes())
}

/// One webhook body.
pub fn parse(payload: &Value) -> Result<VendorEvent, ParseError> {
    let map = as_object(payload, "CareSoft")?;
    let object_name = lower(get(map, "object"));
    let action = lower(get(map, "action"));
    let event = match (object_name.as_deref(), action.as_deref()) {
        (Some("call_in"), Some(a)) => call_in(map, payload, a),
        (Some("smart_dialer"), Some(a @ ("ad_end_call" | "pd_end_call"))) => {
            smart_dialer(map, payload, a)
        }
        (Some(o @ ("user" | "organization" | "ticket" | "lead" | "deal")), Some(a)) => {
            crm(map, payload, o, a)
        }
        _ => None,
    };
    Ok(event.unwrap_or_else(|| unknown_event(payload)))
}

fn call_in(map: &Map<String, Value>, payload: &Value, action: &str) -> Option<VendorEvent> {
    let event_type = match action {
        "call_in_start" => "call.started",
        "call_in_agent_ring" => "call.ringing",
        "call_in_agent_answer" => "call.answered",
        "call_in_agent_miss" => "call.agent_missed",
        "call_in_agent_end" | "call_in_customer_end" => "call.hangup",
        "call_in_end" => "call.ended",
        _ => return None,
    };
    let info = object(map, "call_info").unwrap_or(map);
    let call_id = text_of(info, &["call_id"]);
    let agent = text_of(info, &["agent_id"]);
    let called = text_of(info, &["called"]);
    let mut f = Fields::default();
    f.text("call_id", call_id.clone())
        .word(
            "direction",
            direction(get(info, "direction")).or(Some("inbound")),
        )
        .text("from", text_of(info, &["caller"]))
        .text("to", called.clone())
        .text("hotline", called)
        .text("agent", agent.clone());
    if action == "call_in_end" {
        f.text("status", status(get(info, "status")))
            .value("duration_s", seconds(get(info, "call_duration")))
            .value("billsec_s", seconds(get(info, "answer_duration")))
            .text("recording_url", text_of(info, &["record_url"]));
    }
    // A call rings (or slips past) the same agent again when the queue comes
    // back to them: only `event_time` tells the second ring from a retry of
    // the first, which repeats it. The document gives every call_in event one;
    // without it the identity is what it was before event_time counted.
    let event_time = text_of(info, &["event_time"]);
    let id = match (&call_id, &event_time) {
        (Some(c), Some(t)) => identity(&[
            Some("call_in"),
            Some(action),
            Some(c),
            agent.as_deref(),
            Some(t),
        ]),
        (Some(c), None) => identity(&[Some("call_in"), Some(action), Some(c), agent.as_deref()]),
        (None, _) => loose_canonical(payload),
    };
    let (when, unread_time) = first_date(
        &["event_time", "call_end_time"].map(|k| (k, get(info, k))),
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

fn smart_dialer(map: &Map<String, Value>, payload: &Value, action: &str) -> Option<VendorEvent> {
    let info = object(map, "call_info").unwrap_or(map);
    let call_id = text_of(info, &["call_id"]);
    let line = text_of(info, &["line"]);
    let mut f = Fields::default();
    f.text("call_id", call_id.clone())
        .word("direction", Some("outbound"))
        .text("from", line.clone())
        .text("to", text_of(info, &["phone_number"]))
        .text("hotline", line)
        // The document's call_info table: `agent_user_id` is the agent's id
        // ("ID chuyên viên"), `agent_id` the agent's IP phone.
        .text("agent", text_of(info, &["agent_user_id"]))
        .text("extension", text_of(info, &["agent_id"]))
        .text("status", status(get(info, "status_code")))
        .value("duration_s", seconds(get(info, "call_duration")));
    // The attempt tells a campaign's redials apart should they share a
    // call id ("Số lần retry hiện tại"); the first attempt (0, which `text`
    // reads as absent) keeps the identity it had before the attempt was read.
    let id = match (&call_id, text_of(info, &["call_attempt_index"])) {
        (Some(c), None) => identity(&[Some("smart_dialer"), Some(action), Some(c)]),
        (Some(c), Some(attempt)) => {
            identity(&[Some("smart_dialer"), Some(action), Some(c), Some(&attempt)])
        }
        (None, _) => loose_canonical(payload),
    };
    let (when, unread_time) = first_date(&[("end_time", get(info, "end_time"))], ICT);
    Some(VendorEvent {
        event_type: "autocall.cdr".to_owned(),
        subject: call_id,
        time: when,
        unread_time,
        fields: f.build(),
        identity: id,
    })
}

/// Where each CRM object keeps its id.
fn id_keys(object_name: &str) -> &'static [&'static str] {
    match object_name {
        "user" => &["id", "user_id"],
        "organization" => &["organization_id", "id"],
        "ticket" => &["ticket_id"],
        "lead" => &["lead_id"],
        "deal" => &["deal_id"],
        _ => &[],
    }
}

/// Ticket comment sources of calls in and out (CareSoft's "Danh sách nguồn").
fn call_direction(source: Option<String>) -> Option<&'static str> {
    match source?.as_str() {
        "voice" | "ivr" | "zcc in" | "misscall" | "voicemail" => Some("inbound"),
        "voice out" | "zcc out" | "voice campaign" => Some("outbound"),
        _ => None,
    }
}

fn crm(
    map: &Map<String, Value>,
    payload: &Value,
    object_name: &str,
    action: &str,
) -> Option<VendorEvent> {
    if action.is_empty()
        || !action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let entity = object(map, object_name);
    let data = object(map, "data");
    let subject = match action {
        "merge" => object(map, "mergeOption").and_then(|m| text_of(m, &["primaryTicket"])),
        _ => None,
    }
    .or_else(|| entity.and_then(|e| text_of(e, id_keys(object_name))))
    .or_else(|| data.and_then(|d| text_of(d, id_keys(object_name))))
    .or_else(|| text_of(map, id_keys(object_name)));
    let version = entity
        .and_then(|e| text_of(e, &["updated_at"]))
        .or_else(|| data.and_then(|d| text_of(d, &["assign_at", "updated_at"])));
    let (when, unread_time) = first_date(
        &[
            ("updated_at", entity.and_then(|e| get(e, "updated_at"))),
            ("created_at", entity.and_then(|e| get(e, "created_at"))),
            ("data.assign_at", data.and_then(|d| get(d, "assign_at"))),
        ],
        ICT,
    );

    let mut f = Fields::default();
    let call_info = object(map, "call_info");
    if let Some(ci) = call_info {
        let source = entity
            .and_then(|e| object(e, "ticket_comment"))
            .and_then(|c| lower(get(c, "source")))
            .or_else(|| entity.and_then(|e| lower(get(e, "ticket_source"))));
        let dir = call_direction(source);
        let caller = text_of(ci, &["caller"]);
        let called = text_of(ci, &["called"]);
        // `caller` is always the customer and `called` the hotline.
        let (from, to) = match dir {
            Some("outbound") => (called.clone(), caller),
            _ => (caller, called.clone()),
        };
        f.text("call_id", text_of(ci, &["call_id"]))
            .word("direction", dir)
            .text("from", from)
            .text("to", to)
            .text("hotline", called)
            .text("status", status(get(ci, "status_code")));
    }
    let call_id = call_info.and_then(|ci| text_of(ci, &["call_id"]));
    let id = match (&subject, &version) {
        (Some(s), Some(v)) => identity(&[
            Some(object_name),
            Some(action),
            Some(s),
            Some(v),
            call_id.as_deref(),
        ]),
        _ => loose_canonical(payload),
    };
    Some(VendorEvent {
        event_type: format!("crm.{object_name}.{action}"),
        subject,
        time: when,
        unread_time,
        fields: f.build(),
        identity: id,
    })
}

#[cfg(test)]
mod tests;
