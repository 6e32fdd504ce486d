//! CareSoft: every sample of the vendor's document, the signature test vector,
//! and the identities that must (not) collide.

use super::*;
use crate::event::format_time;
use axum::http::HeaderMap;
use serde_json::json;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                "../../../tests/fixtures/vendors/caresoft/",
                $name,
                ".json"
            )),
        )
    };
}

/// (fixture, type, subject, normalized fields)
type Sample = (
    (&'static str, &'static str),
    &'static str,
    Option<&'static str>,
    Value,
);

fn samples() -> Vec<Sample> {
    let call_in = |fields: Value| fields;
    vec![
        (
            fixture!("template_user_create"),
            "crm.user.create",
            None,
            json!({}),
        ),
        (
            fixture!("template_user_update"),
            "crm.user.update",
            None,
            json!({}),
        ),
        (
            fixture!("template_organization_create"),
            "crm.organization.create",
            None,
            json!({}),
        ),
        (
            fixture!("template_organization_update"),
            "crm.organization.update",
            None,
            json!({}),
        ),
        (
            fixture!("template_ticket_create"),
            "crm.ticket.create",
            None,
            json!({}),
        ),
        (
            fixture!("template_ticket_update"),
            "crm.ticket.update",
            None,
            json!({"status": "200"}),
        ),
        (
            fixture!("template_ticket_delete"),
            "crm.ticket.delete",
            None,
            json!({}),
        ),
        (
            fixture!("template_ticket_merge"),
            "crm.ticket.merge",
            None,
            json!({}),
        ),
        (
            fixture!("template_smart_dialer_ad_end_call"),
            "autocall.cdr",
            None,
            json!({"direction": "outbound", "duration_s": 0}),
        ),
        (
            fixture!("template_smart_dialer_pd_end_call"),
            "autocall.cdr",
            None,
            json!({"direction": "outbound", "duration_s": 0}),
        ),
        (
            fixture!("template_call_in_start"),
            "call.started",
            None,
            call_in(json!({"direction": "inbound"})),
        ),
        (
            fixture!("template_call_in_agent_ring"),
            "call.ringing",
            None,
            json!({"direction": "inbound"}),
        ),
        (
            fixture!("template_call_in_agent_miss"),
            "call.agent_missed",
            None,
            json!({"direction": "inbound"}),
        ),
        (
            fixture!("template_call_in_agent_answer"),
            "call.answered",
            None,
            json!({"direction": "inbound"}),
        ),
        (
            fixture!("template_call_in_agent_end"),
            "call.hangup",
            None,
            json!({"direction": "inbound"}),
        ),
        (
            fixture!("template_call_in_customer_end"),
            "call.hangup",
            None,
            json!({"direction": "inbound"}),
        ),
        (
            fixture!("template_call_in_end"),
            "call.ended",
            None,
            json!({"direction": "inbound", "status": "answered|miss", "duration_s": 0, "billsec_s": 0}),
        ),
        (
            fixture!("lead_create"),
            "crm.lead.create",
            Some("414856712"),
            json!({}),
        ),
        (
            fixture!("lead_convert"),
            "crm.lead.convert",
            Some("414856714"),
            json!({}),
        ),
        (
            fixture!("lead_update"),
            "crm.lead.update",
            Some("414856712"),
            json!({}),
        ),
        (
            fixture!("deal_create"),
            "crm.deal.create",
            Some("414856715"),
            json!({}),
        ),
        (
            fixture!("deal_convert"),
            "crm.deal.convert",
            Some("414856712"),
            json!({}),
        ),
        (
            fixture!("deal_update"),
            "crm.deal.update",
            Some("414856712"),
            json!({}),
        ),
        (
            fixture!("sample_01_ticket_missed_call"),
            "crm.ticket.update",
            Some("9999"),
            json!({"call_id": "20211006101009-HRFZNHMV-9999", "direction": "inbound",
                   "from": "0889999999", "to": "1999999", "hotline": "1999999"}),
        ),
        (
            fixture!("sample_02_ticket_ivr"),
            "crm.ticket.update",
            Some("259312810"),
            json!({"call_id": "20211006094514-HRFZNHMV-9999", "direction": "inbound",
                   "from": "0889999999", "to": "19009999", "hotline": "19009999"}),
        ),
        (
            fixture!("sample_03_ticket_call_out"),
            "crm.ticket.update",
            Some("9999"),
            json!({"call_id": "20211006100454-EXGPSDDQ-9999", "direction": "outbound",
                   "from": "1999999", "to": "0889999999", "hotline": "1999999", "status": "200"}),
        ),
        (
            fixture!("sample_04_user_create"),
            "crm.user.create",
            Some("63203837"),
            json!({}),
        ),
        (
            fixture!("sample_05_user_update"),
            "crm.user.update",
            Some("63203835"),
            json!({}),
        ),
        (
            fixture!("sample_06_organization_create"),
            "crm.organization.create",
            Some("126"),
            json!({}),
        ),
        (
            fixture!("sample_07_organization_update"),
            "crm.organization.update",
            Some("10"),
            json!({}),
        ),
        (
            fixture!("sample_08_ticket_create"),
            "crm.ticket.create",
            Some("322677"),
            json!({}),
        ),
        (
            fixture!("sample_09_ticket_update"),
            "crm.ticket.update",
            Some("322677"),
            json!({}),
        ),
        (
            fixture!("sample_10_ticket_delete"),
            "crm.ticket.delete",
            Some("316702"),
            json!({}),
        ),
        (
            fixture!("sample_11_ticket_merge"),
            "crm.ticket.merge",
            Some("316707"),
            json!({}),
        ),
        (
            fixture!("sample_12_ticket_acd_assign"),
            "crm.ticket.acd_assign",
            Some("316702"),
            json!({}),
        ),
    ]
}

#[test]
fn every_documented_sample_parses_to_its_type_subject_and_fields() {
    let all = samples();
    assert_eq!(all.len(), 35);
    let mut identities = std::collections::HashSet::new();
    for ((name, text), ty, subject, fields) in all {
        let raw: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let e = parse(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(e.event_type, ty, "{name}");
        assert_eq!(e.subject.as_deref(), subject, "{name}");
        assert_eq!(Value::Object(e.fields.clone()), fields, "{name}");
        assert!(
            identities.insert(e.identity.clone()),
            "{name}: identity collides"
        );
    }
}

#[test]
fn crm_times_come_from_the_entity_and_text_dates_never_fail() {
    let (_, text) = fixture!("sample_12_ticket_acd_assign");
    let e = parse(&serde_json::from_str(text).unwrap()).unwrap();
    assert_eq!(format_time(e.time.unwrap()), "2024-01-11T08:28:40.473Z");
    let (_, text) = fixture!("sample_02_ticket_ivr");
    let e = parse(&serde_json::from_str(text).unwrap()).unwrap();
    assert_eq!(e.time.unwrap().unix_timestamp(), 1633488353);
    let e = parse(&json!({"object": "ticket", "action": "update",
        "ticket": {"ticket_id": 1, "updated_at": "Wed Oct 06 09:45:53 ICT 2021"}}))
    .unwrap();
    assert_eq!(format_time(e.time.unwrap()), "2021-10-06T02:45:53.000Z");
    let e = parse(&json!({"object": "ticket", "action": "update",
        "ticket": {"ticket_id": 1, "updated_at": "not a date"}}))
    .unwrap();
    assert_eq!(e.time, None);
    assert_eq!(
        e.unread_time.map(|u| (u.field, u.text)),
        Some(("updated_at", "not a date".into()))
    );
    assert_eq!(e.subject.as_deref(), Some("1"));
    // The next field stands in for an unread one: no receive time, nothing to say.
    let e = parse(
        &json!({"object": "call_in", "action": "call_in_end", "call_info": {
        "call_id": "C-1", "event_time": "06/10/2021 09:45:53",
        "call_end_time": "2021-10-06 09:45:53 +0700"}}),
    )
    .unwrap();
    assert_eq!(format_time(e.time.unwrap()), "2021-10-06T02:45:53.000Z");
    assert_eq!(e.unread_time, None);
}

fn call(action: &str, call_id: Value, agent: &str) -> VendorEvent {
    parse(
        &json!({"object": "call_in", "action": action, "call_info": {
        "event_name": action, "call_id": call_id, "account_id": 7, "direction": "inbound",
        "caller": "0889999999", "called": "19009999", "agent_id": agent,
        "event_time": 1633489861000u64}}),
    )
    .unwrap()
}

#[test]
fn call_in_fields_and_identities() {
    let e = call("call_in_agent_ring", json!("C-1"), "101");
    assert_eq!(e.subject.as_deref(), Some("C-1"));
    assert_eq!(
        Value::Object(e.fields.clone()),
        json!({"call_id": "C-1", "direction": "inbound", "from": "0889999999",
               "to": "19009999", "hotline": "19009999", "agent": "101"})
    );
    assert_eq!(e.time.unwrap().unix_timestamp(), 1633489861);
    // Agent-end and customer-end are two events of one call.
    assert_ne!(
        call("call_in_agent_end", json!("C-1"), "101").identity,
        call("call_in_customer_end", json!("C-1"), "101").identity
    );
    // Two agents ringing are two events.
    assert_ne!(
        e.identity,
        call("call_in_agent_ring", json!("C-1"), "102").identity
    );
    // 8 and "8" are one call.
    assert_eq!(
        call("call_in_agent_ring", json!(8), "101").identity,
        call("call_in_agent_ring", json!("8"), "101").identity
    );
    let end = parse(
        &json!({"object": "call_in", "action": "CALL_IN_END", "call_info": {
        "call_id": "C-1", "status": "Answered", "call_duration": "65", "answer_duration": 50,
        "record_url": "https://rec/1.mp3", "call_end_time": 1633489930000u64}}),
    )
    .unwrap();
    assert_eq!(end.event_type, "call.ended");
    assert_eq!(end.fields["status"], "answered");
    assert_eq!(end.fields["duration_s"], json!(65));
    assert_eq!(end.fields["billsec_s"], json!(50));
    assert_eq!(end.fields["recording_url"], "https://rec/1.mp3");
    assert!(end.time.is_some());
}

#[test]
fn one_agent_rung_twice_is_two_events_and_a_retry_is_one() {
    let at = |action: &str, event_time: Value| {
        parse(
            &json!({"object": "call_in", "action": action, "call_info": {
            "call_id": "C-1", "agent_id": "101", "event_time": event_time}}),
        )
        .unwrap()
        .identity
    };
    for action in ["call_in_agent_ring", "call_in_agent_miss"] {
        // The queue comes back to the same agent 30 s later.
        assert_ne!(
            at(action, json!(1633489861000u64)),
            at(action, json!(1633489891000u64)),
            "{action}"
        );
        // A retry, with the millis as a number or as text.
        assert_eq!(
            at(action, json!(1633489861000u64)),
            at(action, json!("1633489861000")),
            "{action}"
        );
    }
    // Without event_time (or with the documented placeholder 0) the identity
    // is the one earlier versions gave, so their ids are unchanged.
    let before = identity(&[
        Some("call_in"),
        Some("call_in_agent_ring"),
        Some("C-1"),
        Some("101"),
    ]);
    assert_eq!(at("call_in_agent_ring", json!(0)), before);
    assert_eq!(at("call_in_agent_ring", Value::Null), before);
}

/// A predictive call names the agent by `agent_user_id` and the agent's IP
/// phone by `agent_id` (the document's call_info table); `agent` held the
/// phone before.
#[test]
fn a_predictive_call_names_the_agent_and_the_agents_phone() {
    let e = parse(
        &json!({"object": "smart_dialer", "action": "pd_end_call", "call_info": {
        "call_id": "SD-1", "line": "02873000000", "phone_number": "0912345678",
        "agent_user_id": 63215882, "agent_id": "1005", "call_duration": 42,
        "status_code": 200, "end_time": 1633489861000u64}}),
    )
    .unwrap();
    assert_eq!(e.fields["agent"], "63215882");
    assert_eq!(e.fields["extension"], "1005");
    assert_eq!(e.fields["to"], "0912345678");
}

/// A campaign's redials are told apart by `call_attempt_index` should they
/// share a call id; the first attempt keeps the identity it always had, and
/// a retry of one attempt is one event.
#[test]
fn a_smart_dialer_redial_is_its_own_event_and_the_first_attempt_keeps_its_id() {
    let end = |attempt: Value| {
        parse(
            &json!({"object": "smart_dialer", "action": "ad_end_call", "call_info": {
            "call_id": "SD-7", "call_attempt_index": attempt, "max_attempt": 3}}),
        )
        .unwrap()
        .identity
    };
    assert_eq!(end(json!(0)), r#"["smart_dialer","ad_end_call","SD-7"]"#);
    assert_ne!(end(json!(1)), end(json!(0)));
    assert_ne!(end(json!(2)), end(json!(1)));
    assert_eq!(end(json!(1)), end(json!("1")));
}

#[test]
fn unknown_objects_and_actions() {
    for v in [
        json!({"object": "invoice", "action": "create"}),
        json!({"object": "call_in", "action": "call_in_parked"}),
        json!({"object": "smart_dialer", "action": "other"}),
        json!({"object": "ticket", "action": "a.b"}),
        json!({"ticket_id": 1}),
    ] {
        assert_eq!(parse(&v).unwrap().event_type, "vendor.unknown", "{v}");
    }
}

fn check(sig: Option<&str>, body: &[u8]) -> Result<(), AuthError> {
    let mut h = HeaderMap::new();
    if let Some(s) = sig {
        h.insert("x-hub-signature", s.parse().unwrap());
    }
    let d = Delivery {
        method: super::super::Method::Post,
        headers: &h,
        query: &[],
        body,
    };
    verify(&crate::config::Accepted::one("CS123"), d).map(|_| ())
}

#[test]
fn the_vendors_test_vector_in_any_case_with_or_without_prefix() {
    let body = br#"{"ticket_id":1}"#;
    assert_eq!(
        sign(b"CS123", body),
        "420A69CE7D3C36559E9828D6361530DF30065D37"
    );
    assert_eq!(
        check(Some("420A69CE7D3C36559E9828D6361530DF30065D37"), body),
        Ok(())
    );
    assert_eq!(
        check(Some("420a69ce7d3c36559e9828d6361530df30065d37"), body),
        Ok(())
    );
    assert_eq!(
        check(Some("sha1=420a69ce7d3c36559e9828d6361530df30065d37"), body),
        Ok(())
    );
    assert_eq!(
        check(Some("SHA1=420A69CE7D3C36559E9828D6361530DF30065D37"), body),
        Ok(())
    );
    assert_eq!(check(None, body), Err(AuthError::MissingSignature));
    assert_eq!(check(Some("zz"), body), Err(AuthError::MalformedSignature));
    assert_eq!(
        check(Some("420A69CE7D3C36559E9828D6361530DF30065D38"), body),
        Err(AuthError::BadSignature)
    );
    // Not an HMAC-SHA1's 20 bytes: malformed, not a mismatch.
    for short_or_long in ["420A69CE", "", "sha1=", &"ab".repeat(32)] {
        assert_eq!(
            check(Some(short_or_long), body),
            Err(AuthError::MalformedSignature),
            "{short_or_long:?}"
        );
    }
    // One byte of body changed: the raw bytes are what is signed.
    assert_eq!(
        check(
            Some("420A69CE7D3C36559E9828D6361530DF30065D37"),
            br#"{"ticket_id": 1}"#
        ),
        Err(AuthError::BadSignature)
    );
}

/// A CRM event is its object, action, entity id and version: a re-send of
/// the same version is one event whatever else it carries, a new version is
/// a new event, and without a version the whole payload decides.
#[test]
fn a_crm_identity_is_the_entity_and_its_version() {
    let ticket = |updated_at: Option<&str>, status: &str| {
        let mut t = json!({"ticket_id": 42, "ticket_status": status});
        if let Some(at) = updated_at {
            t["updated_at"] = json!(at);
        }
        parse(&json!({"object": "ticket", "action": "update", "ticket": t}))
            .unwrap()
            .identity
    };
    let v1 = "2021-10-06 09:45:53";
    let v2 = "2021-10-06 09:46:10";
    assert_eq!(ticket(Some(v1), "open"), ticket(Some(v1), "pending"));
    assert_ne!(ticket(Some(v1), "open"), ticket(Some(v2), "open"));
    assert_ne!(ticket(None, "open"), ticket(None, "pending"));
}
