//! Webhooks over real HTTP against an in-process relay on 127.0.0.1: every
//! vendor's documented samples are journaled; a table of bad requests per
//! vendor is refused with the CONTRACT's status and journals nothing; a 200
//! comes only after commit; a retried delivery is journaled once; hundreds of
//! concurrent deliveries all get 200 and distinct seqs.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use callrelay::vendors::caresoft::sign;
use common::{TestRelay, start_relay};
use reqwest::header::HeaderValue;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const HOOKS: &str = r#"
[[webhook]]
vendor = "caresoft"
account = "cs"
secret = "CS123"

[[webhook]]
vendor = "tel4vn"
account = "t4"
api_key = "tel4vn-key"

[[webhook]]
vendor = "tel4vn"
account = "t4q"
api_key = "tel4vn-key"
api_key_query = "apikey"

[[webhook]]
vendor = "sprecord"
account = "sp"
token = "sp-token"

[[webhook]]
vendor = "sprecord"
account = "spj"
verification_reply = "json"

[[webhook]]
vendor = "voipex"
account = "vx"
username = "demo"
password = "pa:ss:word"

[[webhook]]
vendor = "voip24h"
account = "v24"
token = "v24-token"
"#;

const SECRETS: &[&str] = &["CS123", "tel4vn-key", "sp-token", "pa:ss:word", "v24-token"];

fn fixture(path: &str) -> String {
    let full = format!(
        "{}/tests/fixtures/vendors/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// A request for `vendor` to its test account, correctly authenticated.
fn authed(
    c: &Client,
    relay: &TestRelay,
    vendor: &str,
    body: impl Into<Vec<u8>>,
) -> reqwest::RequestBuilder {
    authed_with(c, relay, Method::POST, vendor, body)
}

fn authed_with(
    c: &Client,
    relay: &TestRelay,
    method: Method,
    vendor: &str,
    body: impl Into<Vec<u8>>,
) -> reqwest::RequestBuilder {
    authed_as(c, relay, method, vendor, "application/json", body)
}

fn authed_as(
    c: &Client,
    relay: &TestRelay,
    method: Method,
    vendor: &str,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> reqwest::RequestBuilder {
    let body: Vec<u8> = body.into();
    let to = |path: &str| c.request(method.clone(), relay.url(path));
    let r = match vendor {
        "caresoft" => to("/hooks/caresoft/cs").header("X-Hub-Signature", sign(b"CS123", &body)),
        "tel4vn" => to("/hooks/tel4vn/t4").header("Authorization", "Bearer tel4vn-key"),
        "sprecord" => to("/hooks/sprecord/sp?token=sp-token"),
        "voipex" => to("/hooks/voipex/vx").basic_auth("demo", Some("pa:ss:word")),
        "voip24h" => to("/hooks/voip24h/v24?token=v24-token"),
        other => panic!("{other}"),
    };
    r.header("content-type", content_type).body(body)
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

async fn send(r: reqwest::RequestBuilder) -> Reply {
    let resp = r.send().await.expect("request");
    Reply {
        status: resp.status(),
        headers: resp.headers().clone(),
        text: resp.text().await.expect("body"),
    }
}

fn json_of(reply: &Reply) -> Value {
    serde_json::from_str(&reply.text).unwrap_or_else(|e| panic!("{e}: {}", reply.text))
}

#[tokio::test]
async fn documented_samples_of_every_vendor_are_journaled_as_cloudevents() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let cases = [
        (
            "caresoft",
            fixture("caresoft/sample_03_ticket_call_out.json"),
            "crm.ticket.update",
            Some("9999"),
        ),
        (
            "caresoft",
            fixture("caresoft/template_call_in_agent_ring.json"),
            "call.ringing",
            None,
        ),
        (
            "tel4vn",
            fixture("tel4vn/hook_hangup.json"),
            "call.hangup",
            Some("avavavav-1111-2222-3333-eeeeeeee"),
        ),
        (
            "sprecord",
            fixture("sprecord/incoming_call.json"),
            "call.started",
            Some("8"),
        ),
        (
            "voipex",
            fixture("voipex/ringing.json"),
            "call.ringing",
            Some("1412256225.1941"),
        ),
        (
            "voip24h",
            fixture("voip24h/call_event_ring.json"),
            "call.ringing",
            Some("1287674126.299"),
        ),
        (
            "voip24h",
            fixture("voip24h/missed_call.json"),
            "call.missed",
            Some("1616734230.1021"),
        ),
        (
            "voip24h",
            r#"{"hello":"world"}"#.to_owned(),
            "vendor.unknown",
            None,
        ),
    ];
    for (i, (vendor, body, ty, subject)) in cases.iter().enumerate() {
        let reply = send(authed(&c, &relay, vendor, body.clone())).await;
        assert_eq!(reply.status, StatusCode::OK, "{vendor}: {}", reply.text);
        let ack = json_of(&reply);
        assert_eq!(ack["seq"], json!(i as u64 + 1), "{vendor}");
        assert_eq!(ack["duplicate"], json!(false));
        let events = relay.event_values();
        let ce = &events[i];
        assert_eq!(ce["id"], ack["id"]);
        assert_eq!(ce["type"], *ty, "{vendor}");
        assert_eq!(ce["subject"].as_str(), *subject, "{vendor}");
        assert_eq!(ce["vendor"], *vendor);
        // `raw` is last in `data`, the last attribute: the body as sent
        // (these samples are indented), without the whitespace around it.
        let text = String::from_utf8_lossy(&relay.events()[i].json).into_owned();
        let as_sent = format!("\"raw\":{}}}}}", body.trim());
        assert!(
            text.ends_with(&as_sent),
            "{vendor}: raw is not the body as sent: {text}"
        );
    }
    // Numbers keep their digits end to end.
    let events = relay.events();
    let text = String::from_utf8_lossy(&events[5].json).into_owned();
    assert!(text.contains(r#""callid":1287674126.299"#), "{text}");
    assert!(text.contains(r#""call_id":"1287674126.299""#), "{text}");

    // Metrics count requests by vendor and code, events by transport.
    let metrics = send(c.get(relay.url("/metrics"))).await.text;
    assert!(
        metrics.contains(r#"callrelay_webhook_requests_total{code="200",vendor="voip24h"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"callrelay_events_received_total{account="cs",transport="webhook",vendor="caresoft"} 2"#
        ),
        "{metrics}"
    );
    relay.stop().await;
}

/// `data.raw` is the body as the vendor sent it, not a re-serialization:
/// escapes, number forms, a repeated key (CareSoft's own `call_in_end`
/// sample repeats `call_end_time`) and inner whitespace survive; only the
/// whitespace around the body is left out.
#[tokio::test]
async fn raw_is_the_body_as_sent() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let body = "{\"object\":\"call_in\",\"action\":\"call_in_end\",\"call_info\":{\"call_id\":\"c-1\",\n  \"caller\":\"Ng\\u01b0\\u1eddi g\\u1ecdi \\ud83d\\ude00\",\"event_time\":1.7e9,\"call_end_time\":1,\"call_end_time\":2}}";
    let reply = send(authed(&c, &relay, "caresoft", format!(" {body}\r\n"))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let text = String::from_utf8_lossy(&relay.events()[0].json).into_owned();
    let raw = text
        .split_once("\"raw\":")
        .and_then(|(_, rest)| rest.strip_suffix("}}"))
        .unwrap_or_else(|| panic!("no raw at the end: {text}"));
    assert_eq!(raw, body);
    // The normalized fields are read from the same payload.
    let ce = &relay.event_values()[0];
    assert_eq!(ce["type"], "call.ended");
    assert_eq!(ce["subject"], "c-1");
    relay.stop().await;
}

#[tokio::test]
async fn voip24h_feedback_get_and_form_posts() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let query = fixture("voip24h/feedback.query");
    let reply =
        send(c.get(relay.url(&format!("/hooks/voip24h/v24?token=v24-token&{query}")))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let ce = &relay.event_values()[0];
    assert_eq!(ce["type"], "feedback.rating");
    assert_eq!(ce["subject"], "1616708923.946");
    assert_eq!(
        ce["data"]["raw"],
        json!({"FeedbackID": "APIFeedback-f8cd23be1c64db79994fd4825c886131@0932337122",
               "phone": "0932337122", "callid": "1616708923.946", "keypress": "4",
               "did": "02873088088"}),
        "the raw query, values as strings, without our token"
    );
    // The same call event as a form post (values as strings).
    let reply = send(
        c.post(relay.url("/hooks/voip24h/v24?token=v24-token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("extend=130&state=Up&phone=0832666859&callid=1287674126.299&type=inbound"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(relay.event_values()[1]["type"], "call.answered");
    relay.stop().await;
}

#[tokio::test]
async fn sprecord_verification_is_answered_with_md5_and_not_journaled() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let body = fixture("sprecord/verification.json");
    // md5("verification_str"), computed independently.
    let expected = "40af9e8438a9f8f3ef9e8fc3eb62ca04";
    let reply = send(authed(&c, &relay, "sprecord", body.clone())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text, expected, "bare 32 lowercase hex, no newline");
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let reply = send(c.post(relay.url("/hooks/sprecord/spj")).body(body.clone())).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(json_of(&reply), json!({"result": expected}));
    // Its parameters in the query and no body ("a POST with parameters").
    let reply = send(c.post(relay.url(
        "/hooks/sprecord/sp?token=sp-token&device_id=d&event_type=verification&payload=verification_str",
    )))
    .await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (StatusCode::OK, expected)
    );
    // The handshake is authenticated like any delivery.
    let reply = send(
        c.post(relay.url("/hooks/sprecord/sp?token=nope"))
            .body(body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(!reply.text.contains(expected));
    assert_eq!(
        relay.ctx.journal.last_seq(),
        0,
        "a handshake is not an event"
    );
    relay.stop().await;
}

/// One row of the bad-request table.
struct Bad {
    what: String,
    request: reqwest::RequestBuilder,
    status: StatusCode,
    /// Text the error body must contain.
    says: &'static str,
}

fn bad(
    what: impl Into<String>,
    request: reqwest::RequestBuilder,
    status: u16,
    says: &'static str,
) -> Bad {
    Bad {
        what: what.into(),
        request,
        status: StatusCode::from_u16(status).unwrap(),
        says,
    }
}

/// `{"state":"ring"}` compressed by `gzip -n`.
const GZIP_OF_AN_OBJECT: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0x56, 0x2a, 0x2e, 0x49, 0x2c,
    0x49, 0x55, 0xb2, 0x52, 0x2a, 0xca, 0xcc, 0x4b, 0x57, 0xaa, 0x05, 0x00, 0xb7, 0x70, 0x43, 0x42,
    0x10, 0x00, 0x00, 0x00,
];

#[tokio::test]
async fn bad_requests_per_vendor_get_their_status_and_journal_nothing() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let ten_mib = vec![b' '; 10 * 1024 * 1024];
    let ticket = br#"{"ticket_id":1}"#.to_vec();
    let mut rows = vec![
        // CareSoft: the signature.
        bad(
            "caresoft wrong signature",
            c.post(relay.url("/hooks/caresoft/cs"))
                .header(
                    "X-Hub-Signature",
                    "420A69CE7D3C36559E9828D6361530DF30065D38",
                )
                .body(ticket.clone()),
            401,
            "does not match",
        ),
        bad(
            "caresoft signature of another secret",
            c.post(relay.url("/hooks/caresoft/cs"))
                .header("X-Hub-Signature", sign(b"CS124", &ticket))
                .body(ticket.clone()),
            401,
            "does not match",
        ),
        bad(
            "caresoft missing header",
            c.post(relay.url("/hooks/caresoft/cs")).body(ticket.clone()),
            401,
            "missing X-Hub-Signature",
        ),
        bad(
            "caresoft signature not hex",
            c.post(relay.url("/hooks/caresoft/cs"))
                .header("X-Hub-Signature", "sha1=xyz")
                .body(ticket.clone()),
            401,
            "not a hex",
        ),
        // Tel4vn: the api key.
        bad(
            "tel4vn missing header",
            c.post(relay.url("/hooks/tel4vn/t4"))
                .body(fixture("tel4vn/hook_hangup.json")),
            401,
            "missing api key",
        ),
        bad(
            "tel4vn wrong key",
            c.post(relay.url("/hooks/tel4vn/t4"))
                .header("Authorization", "Bearer tel4vn-kez")
                .body(fixture("tel4vn/hook_hangup.json")),
            401,
            "api key is wrong",
        ),
        bad(
            "tel4vn key in a header when the query is configured",
            c.post(relay.url("/hooks/tel4vn/t4q"))
                .header("Authorization", "Bearer tel4vn-key")
                .body(fixture("tel4vn/hook_hangup.json")),
            401,
            "query parameter `apikey`",
        ),
        // VOIPEX: Basic auth.
        bad(
            "voipex wrong password",
            c.post(relay.url("/hooks/voipex/vx"))
                .basic_auth("demo", Some("pa:ss"))
                .body(fixture("voipex/ringing.json")),
            401,
            "Basic",
        ),
        bad(
            "voipex wrong user",
            c.post(relay.url("/hooks/voipex/vx"))
                .basic_auth("admin", Some("pa:ss:word"))
                .body(fixture("voipex/ringing.json")),
            401,
            "Basic",
        ),
        bad(
            "voipex missing header",
            c.post(relay.url("/hooks/voipex/vx"))
                .body(fixture("voipex/ringing.json")),
            401,
            "missing HTTP Basic",
        ),
        // Voip24h and SPRecord: the token.
        bad(
            "voip24h missing token",
            c.post(relay.url("/hooks/voip24h/v24"))
                .body(fixture("voip24h/call_event_ring.json")),
            401,
            "missing ?token=",
        ),
        bad(
            "voip24h wrong token",
            c.post(relay.url("/hooks/voip24h/v24?token=v24-tokem"))
                .body(fixture("voip24h/call_event_ring.json")),
            401,
            "wrong ?token=",
        ),
        bad(
            "voip24h feedback GET without token",
            c.get(relay.url(&format!(
                "/hooks/voip24h/v24?{}",
                fixture("voip24h/feedback.query")
            ))),
            401,
            "missing ?token=",
        ),
        bad(
            "sprecord wrong token",
            c.post(relay.url("/hooks/sprecord/sp?token=x"))
                .body(fixture("sprecord/call_end.json")),
            401,
            "wrong ?token=",
        ),
        // The order of checks: size before auth, auth before parse, route and method first.
        bad(
            "caresoft 10 MiB without auth is 413 before 401",
            c.post(relay.url("/hooks/caresoft/cs"))
                .body(ten_mib.clone()),
            413,
            "max_body",
        ),
        bad(
            "a query parameter that is not text, over max_body, is 413 before 400",
            c.post(relay.url("/hooks/tel4vn/t4?x=%FF"))
                .header("Authorization", "Bearer tel4vn-key")
                .body(ten_mib.clone()),
            413,
            "max_body",
        ),
        bad(
            "a query parameter that is not text, with a wrong token, is 401 before 400",
            c.post(relay.url("/hooks/sprecord/sp?token=x&y=%FF"))
                .body(fixture("sprecord/call_end.json")),
            401,
            "wrong ?token=",
        ),
        bad(
            "a token that is not text is a wrong one",
            c.post(relay.url("/hooks/sprecord/sp?token=%FF"))
                .body(fixture("sprecord/call_end.json")),
            401,
            "wrong ?token=",
        ),
        bad(
            "caresoft without a signature and a query parameter that is not text is 401 before 400",
            c.post(relay.url("/hooks/caresoft/cs?%E9")).body("{}"),
            401,
            "X-Hub-Signature",
        ),
        bad(
            "caresoft bad JSON without auth is 401 before 400",
            c.post(relay.url("/hooks/caresoft/cs")).body("{"),
            401,
            "X-Hub-Signature",
        ),
        bad(
            "wrong method on an unknown account is 404",
            c.put(relay.url("/hooks/caresoft/nope")).body("{}"),
            404,
            "no such webhook account",
        ),
        bad(
            "unknown vendor",
            c.post(relay.url("/hooks/asterisk/cs")).body("{}"),
            404,
            "unknown vendor",
        ),
        bad(
            "voip24h GET without parameters",
            c.get(relay.url("/hooks/voip24h/v24?token=v24-token")),
            400,
            "query parameters",
        ),
        bad(
            "voip24h form field not UTF-8 once percent-decoded",
            authed_as(
                &c,
                &relay,
                Method::POST,
                "voip24h",
                "application/x-www-form-urlencoded",
                "extend=130&state=ring&callid=X%FF",
            ),
            400,
            "the value of form field `callid` is not UTF-8 once percent-decoded",
        ),
        bad(
            "voip24h feedback GET parameter not UTF-8",
            c.get(relay.url("/hooks/voip24h/v24?token=v24-token&FeedbackID=A%FE&keypress=4")),
            400,
            "the value of query parameter `FeedbackID` is not UTF-8 once percent-decoded: a query has no charset to name",
        ),
        bad(
            "GET is only for voip24h",
            c.get(relay.url("/hooks/tel4vn/t4")),
            405,
            "method not allowed",
        ),
        // The method is checked before the size (and the credentials).
        bad(
            "an oversized unauthenticated PUT",
            c.put(relay.url("/hooks/caresoft/cs"))
                .body(vec![b'x'; 10 * 1024 * 1024]),
            405,
            "method not allowed",
        ),
    ];
    for vendor in ["caresoft", "tel4vn", "sprecord", "voipex", "voip24h"] {
        rows.extend([
            bad(
                format!("{vendor} truncated JSON"),
                authed(&c, &relay, vendor, r#"{"state":"ring","#),
                400,
                "not valid JSON",
            ),
            bad(
                // Not decoded: the reason must say so, not only "not valid JSON".
                format!("{vendor} gzip body"),
                authed(&c, &relay, vendor, GZIP_OF_AN_OBJECT.to_vec())
                    .header("Content-Encoding", "gzip"),
                400,
                "Content-Encoding: gzip, which is not decoded here",
            ),
            bad(
                // "Иванов" in windows-1251, undeclared: refused, never
                // read with replacement characters.
                format!("{vendor} body not UTF-8"),
                authed(
                    &c,
                    &relay,
                    vendor,
                    b"{\"name\":\"\xC8\xE2\xE0\xED\xEE\xE2\"}".to_vec(),
                ),
                400,
                "the body is not UTF-8 (byte 9 is not)",
            ),
            bad(
                format!("{vendor} UTF-16 body"),
                authed(&c, &relay, vendor, b"\xFF\xFE{\x00}\x00".to_vec()),
                400,
                "the body is UTF-16",
            ),
            bad(
                format!("{vendor} unknown charset"),
                authed_as(
                    &c,
                    &relay,
                    Method::POST,
                    vendor,
                    "application/json; charset=klingon",
                    "{}",
                ),
                400,
                "in Content-Type is not one the relay knows",
            ),
            bad(
                format!("{vendor} JSON array"),
                authed(&c, &relay, vendor, "[1,2,3]"),
                400,
                "got an array",
            ),
            bad(
                format!("{vendor} JSON string"),
                authed(&c, &relay, vendor, r#""ring""#),
                400,
                "got a string",
            ),
            bad(
                format!("{vendor} empty body"),
                authed(&c, &relay, vendor, ""),
                400,
                "empty body",
            ),
            bad(
                format!("{vendor} 10 MiB body"),
                authed(&c, &relay, vendor, ten_mib.clone()),
                413,
                "max_body",
            ),
            bad(
                format!("{vendor} unknown account"),
                c.post(relay.url(&format!("/hooks/{vendor}/nobody")))
                    .body("{}"),
                404,
                "no such webhook account",
            ),
            bad(
                format!("{vendor} PUT"),
                authed_with(&c, &relay, Method::PUT, vendor, "{}"),
                405,
                "method not allowed",
            ),
            bad(
                format!("{vendor} DELETE"),
                authed_with(&c, &relay, Method::DELETE, vendor, "{}"),
                405,
                "method not allowed",
            ),
        ]);
    }
    rows.push(bad(
        "sprecord verification with a number-less payload",
        authed(
            &c,
            &relay,
            "sprecord",
            r#"{"device_id":"d","event_type":"verification","payload":{}}"#,
        ),
        400,
        "verification",
    ));
    for row in rows {
        let reply = send(row.request).await;
        assert_eq!(reply.status, row.status, "{}: {}", row.what, reply.text);
        assert!(
            reply.text.contains(row.says),
            "{}: body {:?} should say {:?}",
            row.what,
            reply.text,
            row.says
        );
        for secret in SECRETS {
            assert!(!reply.text.contains(secret), "{}: leaks a secret", row.what);
        }
        if row.status == StatusCode::METHOD_NOT_ALLOWED {
            // Only Voip24h takes a GET (its feedback rating).
            let allow = if row.what.starts_with("voip24h") {
                "GET, POST"
            } else {
                "POST"
            };
            let said = reply.headers.get("allow").and_then(|v| v.to_str().ok());
            assert_eq!(said, Some(allow), "{}", row.what);
        }
    }
    assert_eq!(
        relay.ctx.journal.last_seq(),
        0,
        "no bad request journals anything"
    );
    assert!(relay.events().is_empty());
    let metrics = send(c.get(relay.url("/metrics"))).await.text;
    assert!(
        metrics.contains(r#"callrelay_webhook_requests_total{code="404",vendor="unknown"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"callrelay_webhook_requests_total{code="413",vendor="caresoft"} 2"#),
        "{metrics}"
    );
    relay.stop().await;
}

/// `callid=1.2&state=Ring&extend=130` compressed by `gzip -n`.
const GZIP_OF_A_FORM: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x4b, 0x4e, 0xcc, 0xc9, 0xc9, 0x4c,
    0xb1, 0x35, 0xd4, 0x33, 0x52, 0x2b, 0x2e, 0x49, 0x2c, 0x49, 0xb5, 0x0d, 0xca, 0xcc, 0x4b, 0x57,
    0x4b, 0xad, 0x28, 0x49, 0xcd, 0x03, 0x8a, 0x1a, 0x1b, 0x00, 0x00, 0x43, 0x8e, 0x6d, 0x97, 0x20,
    0x00, 0x00, 0x00,
];

/// A body declared compressed is refused before it is parsed. Labelled with
/// a single-byte charset, in which every byte is text, a gzip form was read
/// as one form field of garbage: `vendor.unknown`, answered 200, the call
/// event lost (encodings review, 2026-12-06). A GET and SPRecord's
/// handshake in the query carry no body, and still answer.
#[tokio::test]
async fn a_compressed_body_is_refused_before_it_is_parsed() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let latin1_form = "application/x-www-form-urlencoded; charset=iso-8859-1";
    for vendor in ["voip24h", "sprecord"] {
        for coding in ["gzip", "GZip", "gzip, identity", "br"] {
            let reply = send(
                authed_as(
                    &c,
                    &relay,
                    Method::POST,
                    vendor,
                    latin1_form,
                    GZIP_OF_A_FORM,
                )
                .header("Content-Encoding", coding),
            )
            .await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{vendor} {coding}: {}",
                reply.text
            );
            let coding_shown = coding.trim_end_matches(", identity");
            assert!(
                reply.text.contains(&format!(
                    "Content-Encoding: {coding_shown}, which is not decoded here"
                )),
                "{vendor} {coding}: {}",
                reply.text
            );
        }
    }
    // A Voip24h form labelled latin-1, sent with `Content-Encoding: coding`.
    let latin1_to_voip24h = |body: Vec<u8>, coding: HeaderValue| {
        send(
            authed_as(&c, &relay, Method::POST, "voip24h", latin1_form, body)
                .header("Content-Encoding", coding),
        )
    };
    // A byte that is not text elsewhere in the value does not hide the gzip.
    let beside_a_byte = latin1_to_voip24h(
        GZIP_OF_A_FORM.to_vec(),
        HeaderValue::from_bytes(b"gzip, \xff").unwrap(),
    )
    .await;
    assert_eq!(
        beside_a_byte.status,
        StatusCode::BAD_REQUEST,
        "{}",
        beside_a_byte.text
    );
    assert_eq!(relay.ctx.journal.last_seq(), 0, "nothing journaled");
    let handshake = send(
        c.post(relay.url(
            "/hooks/sprecord/sp?token=sp-token&device_id=d&event_type=verification&payload=verification_str",
        ))
        .header("Content-Encoding", "gzip"),
    )
    .await;
    assert_eq!(
        (handshake.status, handshake.text.as_str()),
        (StatusCode::OK, "40af9e8438a9f8f3ef9e8fc3eb62ca04")
    );
    let query = fixture("voip24h/feedback.query");
    let feedback = send(
        c.get(relay.url(&format!("/hooks/voip24h/v24?token=v24-token&{query}")))
            .header("Content-Encoding", "gzip"),
    )
    .await;
    assert_eq!(feedback.status, StatusCode::OK, "{}", feedback.text);
    // `identity`, and a value that names no compression (a charset written
    // in the wrong header), leave a readable body readable, as before the
    // early refusal.
    for (call, coding) in [("1.2", "Identity"), ("1.3", "UTF-8")] {
        let plain = latin1_to_voip24h(
            format!("callid={call}&state=Ring&extend=130").into_bytes(),
            HeaderValue::from_static(coding),
        )
        .await;
        assert_eq!(plain.status, StatusCode::OK, "{coding}: {}", plain.text);
    }
    let types: Vec<Value> = relay
        .event_values()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        types,
        [
            json!("feedback.rating"),
            json!("call.ringing"),
            json!("call.ringing")
        ]
    );
    relay.stop().await;
}

/// Text arrives as it was meant: in the charset the body declares, past a
/// UTF-8 byte order mark, and with a JavaScript sender's lone surrogate
/// escape read as U+FFFD rather than the event refused. Before (text audit,
/// 2026-12-02): a declared charset was ignored and form bytes that were not
/// UTF-8 became U+FFFD silently (so `callid=X%FF` and `X%FE` were one event,
/// the second answered as a duplicate); a JSON body behind a BOM was a 400,
/// or, labelled as a form, one field named after the whole text
/// (`vendor.unknown`); a lone surrogate refused the whole event.
#[tokio::test]
async fn text_is_read_in_its_declared_charset_past_a_bom_and_with_lone_surrogates_replaced() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let form = "application/x-www-form-urlencoded";
    let sent = [
        // "Đà Nẵng" in windows-1258 (Đ D0, à E0, ẵ = ă E3 + combining tilde DE).
        authed_as(&c, &relay, Method::POST, "voip24h", &format!("{form}; charset=windows-1258"),
            "extend=130&state=ring&phone=0832666859&callid=1.1&type=inbound&city=%D0%E0+N%E3%DEng"),
        // "Иванов" in windows-1251.
        authed_as(&c, &relay, Method::POST, "sprecord", "application/json; charset=windows-1251",
            b"{\"device_id\":\"d\",\"event_type\":\"incoming_call\",\"payload\":{\"call_id\":\"2\",\"call_src\":\"\xC8\xE2\xE0\xED\xEE\xE2\"}}".to_vec()),
        // A JSON body behind a BOM, labelled as a form (PHP's curl) and as JSON.
        authed_as(&c, &relay, Method::POST, "voip24h", form,
            b"\xEF\xBB\xBF{\"extend\":130,\"state\":\"ring\",\"phone\":\"1\",\"callid\":\"3.3\",\"type\":\"inbound\"}".to_vec()),
        authed(&c, &relay, "tel4vn", [b"\xEF\xBB\xBF".as_slice(), fixture("tel4vn/hook_hangup.json").as_bytes()].concat()),
        // A note cut through an emoji by a JavaScript sender.
        authed(&c, &relay, "voipex", fixture("voipex/ringing.json").replacen('{', r#"{"note":"tốt \ud83d","#, 1)),
    ];
    for request in sent {
        let reply = send(request).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let events = relay.event_values();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert!(!types.contains(&"vendor.unknown"), "{types:?}");
    let raw = |i: usize| &events[i]["data"]["raw"];
    // windows-1258 writes ẵ as ă and a combining tilde; it is read so, not composed.
    assert_eq!(raw(0)["city"], "Đà Nă\u{303}ng");
    assert_eq!(raw(1)["payload"]["call_src"], "Иванов");
    assert_eq!(raw(2)["callid"], "3.3");
    assert_eq!(raw(3)["call_id"], "avavavav-1111-2222-3333-eeeeeeee");
    assert_eq!(raw(4)["note"], "tốt \u{fffd}");
    relay.stop().await;
}

#[tokio::test]
async fn max_body_is_inclusive_also_for_chunked_bodies() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let max = 1024 * 1024;
    let body_of = |len: usize| {
        let head = r#"{"object":"ticket","action":"update","ticket":{"ticket_id":1,"updated_at":1700000000000},"pad":""#;
        let tail = r#""}"#;
        let mut b = head.as_bytes().to_vec();
        b.resize(len - tail.len(), b'x');
        b.extend_from_slice(tail.as_bytes());
        b
    };
    let exact = body_of(max);
    let reply = send(authed(&c, &relay, "caresoft", exact.clone())).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "exactly max_body is accepted: {}",
        reply.text
    );

    let over = body_of(max + 1);
    let reply = send(authed(&c, &relay, "caresoft", over.clone())).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked: no Content-Length, so the limit must hold while reading.
    let chunked = |body: Vec<u8>| {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        reqwest::Body::wrap_stream(futures::stream::iter(chunks))
    };
    let reply = send(
        c.post(relay.url("/hooks/caresoft/cs"))
            .header("X-Hub-Signature", sign(b"CS123", &over))
            .body(chunked(over.clone())),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    let mut exact2 = exact.clone();
    // A different event of the same size, chunked, within the limit.
    exact2[80] = b'2';
    let reply = send(
        c.post(relay.url("/hooks/caresoft/cs"))
            .header("X-Hub-Signature", sign(b"CS123", &exact2))
            .body(chunked(exact2)),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(relay.ctx.journal.last_seq(), 2);
    relay.stop().await;
}

#[tokio::test]
async fn acknowledged_only_after_commit_and_durable_across_restart() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let committed = relay.ctx.hub.committed();
    let mut acks = Vec::new();
    for i in 0..5 {
        let body = json!({"call_id": format!("c-{i}"), "state": "answered", "direction": "inbound",
                          "to_number": "101"})
        .to_string();
        let reply = send(authed(&c, &relay, "tel4vn", body)).await;
        assert_eq!(reply.status, StatusCode::OK);
        let ack = json_of(&reply);
        let seq = ack["seq"].as_u64().unwrap();
        // At the moment the 200 is in our hands the event is committed: the
        // journal holds it and the hub has announced it — nothing was awaited.
        assert!(*committed.borrow() >= seq);
        let held = relay.ctx.journal.read_after(seq - 1, 1).unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].seq, seq);
        assert_eq!(held[0].header.id, ack["id"].as_str().unwrap());
        acks.push(ack);
    }
    // Restart on the same journal: every acknowledged event is still there.
    let dir = relay.stop().await;
    let text = std::fs::read_to_string(dir.path().join("relay.toml")).unwrap();
    let again = common::start_relay_in(dir, &text).await;
    let ids: Vec<Value> = again
        .event_values()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    let acked: Vec<Value> = acks.iter().map(|a| a["id"].clone()).collect();
    assert_eq!(ids, acked);
    // And a retry after the restart is still a duplicate.
    let body =
        json!({"call_id": "c-0", "state": "answered", "direction": "inbound", "to_number": "101"})
            .to_string();
    let reply = send(authed(&c, &again, "tel4vn", body)).await;
    let ack = json_of(&reply);
    assert_eq!(ack["duplicate"], json!(true));
    assert_eq!(ack["seq"], acks[0]["seq"]);
    again.stop().await;
}

#[tokio::test]
async fn the_same_delivery_twice_is_journaled_once() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    for vendor in ["caresoft", "tel4vn", "sprecord", "voipex", "voip24h"] {
        let body = match vendor {
            "caresoft" => fixture("caresoft/sample_01_ticket_missed_call.json"),
            "tel4vn" => fixture("tel4vn/hook_hangup.json"),
            "sprecord" => fixture("sprecord/call_end.json"),
            "voipex" => fixture("voipex/ringing.json"),
            _ => fixture("voip24h/call_event_ring.json"),
        };
        let first = json_of(&send(authed(&c, &relay, vendor, body.clone())).await);
        assert_eq!(first["duplicate"], json!(false), "{vendor}");
        // The retry, re-serialised (keys reordered, compact): still one event.
        let value: Value = serde_json::from_str(&body).unwrap();
        let mut pairs: Vec<(String, Value)> =
            value.as_object().unwrap().clone().into_iter().collect();
        pairs.reverse();
        let reordered = Value::Object(pairs.into_iter().collect()).to_string();
        let second = send(authed(&c, &relay, vendor, reordered)).await;
        assert_eq!(second.status, StatusCode::OK, "{vendor}");
        let second = json_of(&second);
        assert_eq!(second["duplicate"], json!(true), "{vendor}");
        assert_eq!(second["id"], first["id"], "{vendor}");
        assert_eq!(second["seq"], first["seq"], "{vendor}");
    }
    // SPRecord's call_id 8 versus "8" is the same event.
    let a = r#"{"device_id":"d","event_type":"start_talk","payload":{"call_id":8,"call_src":"1","call_dst":"2","trunk":"G"}}"#;
    let b = r#"{"device_id":"d","event_type":"start_talk","payload":{"call_id":"8","call_src":"1","call_dst":"2","trunk":"G"}}"#;
    let first = json_of(&send(authed(&c, &relay, "sprecord", a)).await);
    let second = json_of(&send(authed(&c, &relay, "sprecord", b)).await);
    assert_eq!(second["duplicate"], json!(true));
    assert_eq!(second["id"], first["id"]);
    // CareSoft agent-end and customer-end of one call are two events.
    let end = |action: &str| {
        json!({"object":"call_in","action":action,"call_info":{"call_id":"C-1","agent_id":"101",
               "event_time":1633489861000u64}})
        .to_string()
    };
    let a = json_of(&send(authed(&c, &relay, "caresoft", end("call_in_agent_end"))).await);
    let b = json_of(&send(authed(&c, &relay, "caresoft", end("call_in_customer_end"))).await);
    assert_eq!(b["duplicate"], json!(false));
    assert_ne!(a["id"], b["id"]);
    assert_eq!(relay.events().len(), 5 + 1 + 2);
    relay.stop().await;
}

#[tokio::test]
async fn hundreds_of_concurrent_deliveries_all_get_200_and_distinct_seqs() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    const N: usize = 300;
    let vendors = ["caresoft", "tel4vn", "sprecord", "voipex", "voip24h"];
    let mut tasks = Vec::new();
    for i in 0..N {
        let vendor = vendors[i % vendors.len()];
        let body = match vendor {
            "caresoft" => json!({"object":"call_in","action":"call_in_agent_ring",
                                 "call_info":{"call_id":format!("cs-{i}"),"agent_id":"7"}}),
            "tel4vn" => json!({"call_id": format!("t-{i}"), "state": "ringing"}),
            "sprecord" => json!({"device_id":"d","event_type":"incoming_call",
                                 "payload":{"call_id": i,"call_src":"1","call_dst":"2","trunk":"G"}}),
            "voipex" => json!({"EventName":"Ringing","UniqueId": format!("{i}.1"),"Login":"a"}),
            _ => json!({"extend":"130","state":"Ring","callid": format!("{i}.299"),"type":"inbound"}),
        }
        .to_string();
        let request = authed(&c, &relay, vendor, body);
        tasks.push(tokio::spawn(async move { send(request).await }));
    }
    let mut seqs = HashSet::new();
    let mut ids = HashSet::new();
    for t in tasks {
        let reply = t.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let ack = json_of(&reply);
        assert_eq!(ack["duplicate"], json!(false));
        assert!(seqs.insert(ack["seq"].as_u64().unwrap()));
        assert!(ids.insert(ack["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seqs.len(), N);
    assert_eq!(seqs.iter().copied().max(), Some(N as u64));
    assert_eq!(relay.events().len(), N);
    relay.stop().await;
}

#[tokio::test]
async fn accounts_follow_a_config_reload() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let body = fixture("tel4vn/hook_hangup.json");
    let new_hook = |relay: &TestRelay| {
        c.post(relay.url("/hooks/tel4vn/fresh"))
            .header("Authorization", "fresh-key")
            .body(body.clone())
    };
    assert_eq!(send(new_hook(&relay)).await.status, StatusCode::NOT_FOUND);
    let text = std::fs::read_to_string(&relay.config_path).unwrap();
    let more = format!(
        "{text}\n[[webhook]]\nvendor = \"tel4vn\"\naccount = \"fresh\"\napi_key = \"fresh-key\"\n"
    );
    std::fs::write(&relay.config_path, more).unwrap();
    relay.reload().await;
    let reply = send(new_hook(&relay)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(relay.event_values()[0]["source"], "/tel4vn/fresh");
    relay.stop().await;
}

/// A credential rotated at a moment the vendor chooses: the account accepts
/// the new and the old value until the old one is removed, so no delivery
/// made with either is refused. With one value, everything the vendor sent
/// with the other in between was a 401, and no vendor documents sending a
/// refused event again.
#[tokio::test]
async fn a_webhook_credential_under_rotation_accepts_the_new_and_the_old() {
    let relay = start_relay(
        r#"
[[webhook]]
vendor = "caresoft"
account = "cs"
secret = ["CS-new", "CS-old"]

[[webhook]]
vendor = "voipex"
account = "vx"
username = "demo"
password = ["new:pass", "old:pass"]

[[webhook]]
vendor = "voip24h"
account = "v24"
token = ["v24-new", "v24-old"]
"#,
    )
    .await;
    let c = client();
    let ticket = fixture("caresoft/sample_02_ticket_ivr.json");
    for (key, want) in [
        (&b"CS-new"[..], StatusCode::OK),
        (b"CS-old", StatusCode::OK),
        (b"CS-other", StatusCode::UNAUTHORIZED),
    ] {
        let reply = send(
            c.post(relay.url("/hooks/caresoft/cs"))
                .header("X-Hub-Signature", sign(key, ticket.as_bytes()))
                .body(ticket.clone()),
        )
        .await;
        assert_eq!(
            reply.status,
            want,
            "{}: {}",
            String::from_utf8_lossy(key),
            reply.text
        );
    }
    let ring = fixture("voipex/ringing.json");
    for (password, want) in [
        ("new:pass", StatusCode::OK),
        ("old:pass", StatusCode::OK),
        ("other", StatusCode::UNAUTHORIZED),
    ] {
        let reply = send(
            c.post(relay.url("/hooks/voipex/vx"))
                .basic_auth("demo", Some(password))
                .body(ring.clone()),
        )
        .await;
        assert_eq!(reply.status, want, "{password}: {}", reply.text);
    }
    let call = fixture("voip24h/call_event_ring.json");
    for (token, want) in [
        ("v24-new", StatusCode::OK),
        ("v24-old", StatusCode::OK),
        ("v24-other", StatusCode::UNAUTHORIZED),
    ] {
        let reply = send(
            c.post(relay.url(&format!("/hooks/voip24h/v24?token={token}")))
                .body(call.clone()),
        )
        .await;
        assert_eq!(reply.status, want, "{token}: {}", reply.text);
    }
    relay.stop().await;
}

/// A credential kept in a file (`${file:…}`) is read again on a reload: a
/// rotation, or a leaked key replaced, is a reload of the relay rather than
/// a restart, which closes the port to every vendor for its seconds.
#[tokio::test]
async fn a_webhook_credential_from_a_file_is_read_again_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("tel4vn-key");
    std::fs::write(&key_file, "file-key-old\n").unwrap();
    let text = format!(
        "{}[[webhook]]\nvendor = \"tel4vn\"\naccount = \"t4\"\napi_key = \"${{file:{}}}\"\n",
        common::base_config(dir.path()),
        key_file.display()
    );
    let relay = common::start_relay_in(dir, &text).await;
    let c = client();
    let body = fixture("tel4vn/hook_hangup.json");
    let with_key = |key: &str| {
        c.post(relay.url("/hooks/tel4vn/t4"))
            .header("Authorization", key)
            .body(body.clone())
    };
    let reply = send(with_key("file-key-old")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = send(with_key("file-key-new")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);

    std::fs::write(&key_file, "file-key-new\n").unwrap();
    relay.reload().await;
    let reply = send(with_key("file-key-old")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    let reply = send(with_key("file-key-new")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    relay.stop().await;
}

#[tokio::test]
async fn voip24h_missed_calls_of_one_ring_group_are_each_journaled() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let missed: Value = serde_json::from_str(&fixture("voip24h/missed_call.json")).unwrap();
    let record = |dst: &str, calldate: &str| {
        let mut m = missed.clone();
        m["dst"] = json!(dst);
        m["calldate"] = json!(calldate);
        m.to_string()
    };
    // One call (one linkedid) missed by two extensions of a ring group, then
    // by the first again half a minute later: three events.
    let bodies = [
        record("130", "2021-03-26 11:50:30"),
        record("131", "2021-03-26 11:50:30"),
        record("130", "2021-03-26 11:51:02"),
    ];
    let mut ids = HashSet::new();
    for body in &bodies {
        let reply = send(authed(&c, &relay, "voip24h", body.clone())).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let ack = json_of(&reply);
        assert_eq!(ack["duplicate"], json!(false), "{body}");
        assert!(ids.insert(ack["id"].as_str().unwrap().to_owned()));
    }
    // The vendor retrying the second record is still one event.
    let retry = json_of(&send(authed(&c, &relay, "voip24h", bodies[1].clone())).await);
    assert_eq!(retry["duplicate"], json!(true));
    assert_eq!(retry["seq"], json!(2));
    let events = relay.event_values();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["type"] == "call.missed"));
    relay.stop().await;
}

#[tokio::test]
async fn caresoft_agent_rung_twice_is_two_events() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let ring = |event_time: u64| {
        json!({"object":"call_in","action":"call_in_agent_ring","call_info":{
            "event_name":"call_in_agent_ring","call_id":"C-9","account_id":7,
            "direction":"inbound","caller":"0889999999","called":"19009999",
            "agent_id":"101","event_time":event_time}})
        .to_string()
    };
    // The queue rings agent 101 for call C-9, then again 30 s later.
    let first = json_of(&send(authed(&c, &relay, "caresoft", ring(1633489861000))).await);
    let second = json_of(&send(authed(&c, &relay, "caresoft", ring(1633489891000))).await);
    assert_eq!(first["duplicate"], json!(false));
    assert_eq!(second["duplicate"], json!(false));
    assert_ne!(first["id"], second["id"]);
    // CareSoft retrying the first ring is still one event.
    let retry = json_of(&send(authed(&c, &relay, "caresoft", ring(1633489861000))).await);
    assert_eq!(retry["duplicate"], json!(true));
    assert_eq!(retry["id"], first["id"]);
    assert_eq!(relay.events().len(), 2);
    relay.stop().await;
}

/// Tel4vn's hook data gives `state` only as ringing / answered / hangup /
/// cdr, so its `missed` hook may say `hangup`. Registered with
/// `?event=missed` on its callback URL, it is a `call.missed` of its own
/// rather than a duplicate of the call's hangup.
#[tokio::test]
async fn a_tel4vn_missed_hook_named_by_its_callback_url_is_not_taken_for_the_hangup() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let hangup = json!({"call_id":"m-1","direction":"inbound","from_number":"0899888999",
        "to_number":"101","hotline":"19001919","state":"hangup","duration":20,"billsec":0})
    .to_string();
    let to = |query: &str| {
        c.post(relay.url(&format!("/hooks/tel4vn/t4{query}")))
            .header("Authorization", "Bearer tel4vn-key")
            .header("content-type", "application/json")
            .body(hangup.clone())
    };
    let first = json_of(&send(to("")).await);
    let missed = json_of(&send(to("?event=missed")).await);
    assert_eq!(missed["duplicate"], json!(false), "{missed}");
    assert_ne!(missed["id"], first["id"]);
    // Tel4vn retrying the missed hook is still one event.
    let retry = json_of(&send(to("?event=missed")).await);
    assert_eq!(
        (retry["duplicate"].clone(), retry["seq"].clone()),
        (json!(true), missed["seq"].clone())
    );
    let types: Vec<Value> = relay
        .event_values()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(types, [json!("call.hangup"), json!("call.missed")]);
    // A misspelt event is refused, not taken as whatever the state says.
    let typo = send(to("?event=mised")).await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST, "{}", typo.text);
    assert!(typo.text.contains("missed, cdr_autocall"), "{}", typo.text);
    assert_eq!(relay.events().len(), 2);
    relay.stop().await;
}

#[tokio::test]
async fn json_posted_as_a_form_is_json_and_an_empty_body_is_400() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    const FORM: &str = "application/x-www-form-urlencoded";
    // What `curl -d '{...}'` sends: the documented call event, labelled a form.
    let body = fixture("voip24h/call_event_ring.json");
    let reply = send(authed_as(
        &c,
        &relay,
        Method::POST,
        "voip24h",
        FORM,
        body.clone(),
    ))
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let ce = &relay.event_values()[0];
    assert_eq!(ce["type"], "call.ringing");
    assert_eq!(ce["subject"], "1287674126.299");
    let raw: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ce["data"]["raw"], raw);
    // The same event sent as JSON is a retry of it.
    let again = json_of(&send(authed(&c, &relay, "voip24h", body)).await);
    assert_eq!(again["duplicate"], json!(true));

    // An empty body is unparseable whatever it is labelled, for every vendor.
    for vendor in ["caresoft", "tel4vn", "sprecord", "voipex", "voip24h"] {
        for content_type in [FORM, "application/json", "text/plain"] {
            let reply = send(authed_as(
                &c,
                &relay,
                Method::POST,
                vendor,
                content_type,
                "",
            ))
            .await;
            assert_eq!(
                reply.status,
                StatusCode::BAD_REQUEST,
                "{vendor} {content_type}: {}",
                reply.text
            );
            assert!(
                json_of(&reply)["error"]
                    .as_str()
                    .unwrap()
                    .contains("empty body")
            );
        }
    }
    // The feedback GET carries no body at all.
    let query = fixture("voip24h/feedback.query");
    let reply = send(
        c.get(relay.url(&format!("/hooks/voip24h/v24?token=v24-token&{query}")))
            .header("content-type", FORM),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(relay.events().len(), 2);
    relay.stop().await;
}

/// How many values the relay counts in `value`: every object, array and
/// scalar (an object's keys are part of its members).
fn values_in(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(values_in).sum::<usize>(),
        Value::Object(members) => 1 + members.values().map(values_in).sum::<usize>(),
        _ => 1,
    }
}

/// Every webhook's query is read as parameters, whatever the vendor and
/// wherever its credential travels: a URL of more than the limit is a 400,
/// after the credential check as any parse failure. The query is read only
/// in part for that check, yet a credential past the part read is still
/// found: a valid one is a 400, not a 401 saying it is missing, and a
/// wrong or repeated one a 401.
#[tokio::test]
async fn a_url_of_more_parameters_than_the_limit_is_400_after_the_credential_check() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let many = "a&".repeat(callrelay::vendors::text::MAX_VALUES + 1);
    let answer = |reply: Reply| {
        let error = json_of(&reply)["error"].as_str().unwrap().to_owned();
        (reply.status, error)
    };
    let body = fixture("caresoft/sample_03_ticket_call_out.json");
    let signed = c
        .post(relay.url(&format!("/hooks/caresoft/cs?{many}")))
        .header("X-Hub-Signature", sign(b"CS123", body.as_bytes()))
        .header("content-type", "application/json")
        .body(body.clone());
    let (status, error) = answer(send(signed).await);
    assert_eq!(status, StatusCode::BAD_REQUEST, "caresoft: {error}");
    assert!(
        error.contains("more than 10000 query parameters"),
        "{error}"
    );

    let tel4vn = |key: &str| {
        c.post(relay.url(&format!(
            "/hooks/tel4vn/t4q?event=missed&{many}apikey={key}"
        )))
        .header("content-type", "application/json")
        .body("{}")
    };
    let (status, error) = answer(send(tel4vn("tel4vn-key")).await);
    assert_eq!(status, StatusCode::BAD_REQUEST, "tel4vn: {error}");
    assert!(
        error.contains("more than 10000 query parameters"),
        "{error}"
    );
    let (status, error) = answer(send(tel4vn("wrong")).await);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "tel4vn: {error}");

    let feedback = |tail: &str| c.get(relay.url(&format!("/hooks/voip24h/v24?{many}{tail}")));
    let (status, error) = answer(send(feedback("token=v24-token")).await);
    assert_eq!(status, StatusCode::BAD_REQUEST, "voip24h: {error}");
    assert!(
        error.contains("more than 10000 query parameters"),
        "{error}"
    );
    for wrong in ["token=nope", "token=v24-token&token=v24-token", ""] {
        let (status, error) = answer(send(feedback(wrong)).await);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong:?}: {error}");
    }
    let (_, repeated) = answer(send(feedback("token=v24-token&token=v24-token")).await);
    assert!(repeated.contains("`token`"), "{repeated}");
    assert!(relay.events().is_empty());
    relay.stop().await;
}

/// A body is parsed into a tree of values, each far larger than its bytes:
/// a 1 MiB `{"a":[0,0,…]}` took about 46 MB (more while the array grew),
/// while the body budget counted 1 MiB. A body of more values than any
/// vendor's event holds is refused before its tree is built, after the
/// credential check as any parse failure; an event at the limit is read.
#[tokio::test]
async fn a_body_of_more_values_than_the_limit_is_400_and_journals_nothing() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let limit = callrelay::vendors::text::MAX_VALUES;
    let says = |reply: &Reply, what: &str| {
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.text
        );
        json_of(reply)["error"].as_str().unwrap().to_owned()
    };
    let wide_json = format!("{{\"a\":[{}]}}", vec!["0"; limit - 1].join(","));
    for vendor in ["caresoft", "tel4vn", "sprecord", "voipex", "voip24h"] {
        let reply = send(authed(&c, &relay, vendor, wide_json.clone())).await;
        let error = says(&reply, vendor);
        assert!(
            error.contains("more than 10000 values"),
            "{vendor}: {error}"
        );
    }
    const FORM: &str = "application/x-www-form-urlencoded";
    for vendor in ["sprecord", "voip24h"] {
        let wide_form = "a=0&".repeat(limit + 1);
        let reply = send(authed_as(&c, &relay, Method::POST, vendor, FORM, wide_form)).await;
        let error = says(&reply, vendor);
        assert!(
            error.contains("more than 10000 form fields"),
            "{vendor}: {error}"
        );
    }
    // The feedback GET's event is its query; `token` is one parameter.
    let wide_query = format!("/hooks/voip24h/v24?token=v24-token&{}", "a&".repeat(limit));
    let error = says(&send(c.get(relay.url(&wide_query))).await, "feedback GET");
    assert!(
        error.contains("more than 10000 query parameters"),
        "{error}"
    );
    assert!(
        relay.events().is_empty(),
        "nothing over the limit is journaled"
    );

    // The documented call event, widened to exactly the limit.
    let mut event: Value = serde_json::from_str(&fixture("voip24h/call_event_ring.json")).unwrap();
    let zeros = limit - values_in(&event) - 1;
    event["pad"] = Value::Array(vec![json!(0); zeros]);
    assert_eq!(values_in(&event), limit);
    let reply = send(authed(&c, &relay, "voip24h", event.to_string())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let journaled = relay.event_values();
    assert_eq!(journaled.len(), 1);
    assert_eq!(journaled[0]["type"], "call.ringing");
    assert_eq!(journaled[0]["data"]["raw"], event);
    relay.stop().await;
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_is_a_counted_json_404() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    for (request, says) in [
        (
            c.post(relay.url("/hooks/caresoft/%FF")).body("{}"),
            "no such webhook account",
        ),
        // The route is checked before the method.
        (
            c.put(relay.url("/hooks/caresoft/cs%C3%28")).body("{}"),
            "no such webhook account",
        ),
        (
            c.post(relay.url("/hooks/%FF/cs")).body("{}"),
            "unknown vendor",
        ),
    ] {
        let reply = send(request).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
        assert!(
            reply.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(json_of(&reply)["error"], says);
    }
    let metrics = send(c.get(relay.url("/metrics"))).await.text;
    assert!(
        metrics.contains(r#"callrelay_webhook_requests_total{code="404",vendor="caresoft"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"callrelay_webhook_requests_total{code="404",vendor="unknown"} 1"#),
        "{metrics}"
    );
    assert!(relay.events().is_empty());
    relay.stop().await;
}

/// A wrong method on the relay's own routes is a JSON 405 naming what the
/// route takes, as every other refusal; axum's own had an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_on_the_relays_own_routes_is_a_json_405() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    for path in ["/status", "/metrics", "/healthz", "/readyz", "/ws"] {
        let reply = send(c.post(relay.url(path)).body("{}")).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(
            json_of(&reply)["error"],
            format!("{path} takes GET (or HEAD) only"),
            "{path}"
        );
        let allow = reply.headers.get("allow").map(|v| v.to_str().unwrap_or(""));
        assert!(
            allow.is_some_and(|a| a.contains("GET")),
            "{path}: {allow:?}"
        );
    }
}

/// A URL registered with a trailing slash is the same webhook; any other
/// path under `/hooks` is a 404 that says what a path must look like and is
/// counted (under the vendor it names) and logged like any refused webhook.
/// Before (2026-12-02): `/hooks/tel4vn/t4/` was a 404, so every event a
/// vendor sent there was lost, and such 404s were in no metric and no log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_slash_is_the_same_webhook_and_other_hook_paths_are_counted_404s() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let body = r#"{"call_id":"slash-1","direction":"inbound","from_number":"1","to_number":"2","state":"ringing"}"#;
    let reply = send(
        c.post(relay.url("/hooks/tel4vn/t4/"))
            .header("Authorization", "Bearer tel4vn-key")
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(json_of(&reply)["seq"], 1);
    assert_eq!(relay.events().len(), 1);
    let shape = "a webhook's path is /hooks/{vendor}/{account}";
    for path in [
        "/hooks/tel4vn",
        "/hooks/tel4vn/",
        "/hooks/tel4vn/t4/extra",
        "//hooks/tel4vn/t4",
        "/hooks/tel4vn//t4",
        "/hooks",
    ] {
        let reply = send(
            c.post(relay.url(path))
                .header("Authorization", "Bearer tel4vn-key")
                .body(body),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.text
        );
        let error = json_of(&reply)["error"].as_str().unwrap_or("").to_owned();
        assert!(error.contains(shape), "{path}: {error}");
    }
    // Not under /hooks: the plain answer, not a webhook's.
    let other = send(c.post(relay.url("/hookz/tel4vn/t4"))).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&other)["error"], "no such route");
    let metrics = send(c.get(relay.url("/metrics"))).await.text;
    assert!(
        metrics.contains(r#"callrelay_webhook_requests_total{code="404",vendor="tel4vn"} 5"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"callrelay_webhook_requests_total{code="404",vendor="unknown"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        relay.events().len(),
        1,
        "nothing but the first is journaled"
    );
    relay.stop().await;
}

// ------------------------------------------------ bodies and memory -------

/// Writes `head` (and `body`) on a fresh connection; returns the stream.
/// A write the server cut short (it answered and closed first) is not an
/// error here: the answer is what the test reads.
async fn raw_request(relay: &TestRelay, head: &str, body: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(relay.addr)
        .await
        .expect("connect");
    let mut request = head.as_bytes().to_vec();
    request.extend_from_slice(body);
    let _ = stream.write_all(&request).await;
    stream
}

/// Sends `head` and `body` on a fresh connection; the status line of the
/// first response, within `within`.
async fn status_line(relay: &TestRelay, head: &str, body: &[u8], within: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = raw_request(relay, head, body).await;
    let mut read = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        while !read.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("an answer in time");
    let text = String::from_utf8_lossy(&read).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

fn tel4vn_head(key: &str, length: usize, extra: &str) -> String {
    format!(
        "POST /hooks/tel4vn/t4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    )
}

/// A sender whose key is wrong never has its body held: its declared body
/// reserves nothing while it trickles in, and it is answered 401 without
/// waiting for the rest (it waited for the whole body, up to 30 s, and held
/// it: the security audit made the relay hold 1.7 GB that way). One with the
/// right key holds what it has sent in the budget until it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_with_wrong_credentials_is_refused_without_being_held() {
    let relay = start_relay(HOOKS).await;
    // Within the 2 s a refusal reads off, well before the 30 s body timeout.
    let line = status_line(
        &relay,
        &tel4vn_head("wrong", 100_000, ""),
        b"{\"call_id\":",
        Duration::from_secs(10),
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 401"), "{line}");
    assert_eq!(relay.ctx.body_budget.in_use(), 0);

    let line = status_line(
        &relay,
        &tel4vn_head("wrong", 100_000, "Expect: 100-continue\r\n"),
        b"",
        // The first status line tells a 100 Continue from the 401; 10 s
        // for busy cores, still well before the 30 s body timeout a relay
        // waiting for the (never sent) body would need.
        Duration::from_secs(10),
    )
    .await;
    assert!(
        line.starts_with("HTTP/1.1 401"),
        "no 100 Continue first: {line}"
    );

    let _right = raw_request(
        &relay,
        &tel4vn_head("tel4vn-key", 100_000, ""),
        b"{\"call_id\":",
    )
    .await;
    // The bytes that came, not the 100,000 declared.
    common::eventually(Duration::from_secs(10), "the right key's body held", || {
        relay.ctx.body_budget.in_use() == 11
    })
    .await;
    relay.stop().await;
}

/// Bodies being received share a memory budget, counted as their bytes
/// arrive, and one account may hold at most half of it: a sender that fills
/// CareSoft's half (its check needs the body, so anyone can) is answered 503
/// past it while other accounts are still served; past the whole budget every
/// delivery is answered 503 with Retry-After (the vendor comes again), and
/// once the bodies holding it are gone the same delivery is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_memory_budget_are_answered_503_until_it_frees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("{}{}", common::base_config(dir.path()), HOOKS);
    let relay = common::start_relay_tuned(dir, &text, |config| {
        config.server.max_body = callrelay::config::unspanned(callrelay::config::ByteSize(8192));
        // 24,000 bytes together, 12,000 per account.
        config.server.body_memory = 24_000;
    })
    .await;
    let held = || relay.ctx.body_budget.in_use();
    let stalled = |path: &str, auth: &str, sent: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\nContent-Type: application/json\r\n\
             Content-Length: 8000\r\n\r\n{}",
            "x".repeat(sent)
        )
    };
    // No right signature needed to fill CareSoft's half, only one that is an
    // HMAC-SHA1's length (one that is not is refused from the head): 7,000
    // bytes of a body that never ends, then 6,000 more on a second request,
    // past the half.
    let wrong = format!("X-Hub-Signature: {}", "00".repeat(20));
    let caresoft = raw_request(&relay, &stalled("/hooks/caresoft/cs", &wrong, 7000), b"").await;
    common::eventually(Duration::from_secs(10), "7,000 bytes held", || {
        held() == 7000
    })
    .await;
    let line = status_line(
        &relay,
        &stalled("/hooks/caresoft/cs", &wrong, 6000),
        b"",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        line.starts_with("HTTP/1.1 503"),
        "past the account's half: {line}"
    );
    // Other accounts still have room: two stalled Tel4vn bodies take 7,000
    // each.
    let tel4vn = raw_request(
        &relay,
        &stalled("/hooks/tel4vn/t4", "Authorization: Bearer tel4vn-key", 7000),
        b"",
    )
    .await;
    let tel4vn_query = raw_request(
        &relay,
        &stalled("/hooks/tel4vn/t4q?apikey=tel4vn-key", "X-Other: 1", 7000),
        b"",
    )
    .await;
    common::eventually(Duration::from_secs(10), "21,000 bytes held", || {
        held() == 21_000
    })
    .await;
    let scrape = reqwest::get(relay.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        scrape
            .lines()
            .any(|l| l == "callrelay_webhook_body_bytes 21000"),
        "the gauge shows what is held: {:?}",
        scrape
            .lines()
            .find(|l| l.starts_with("callrelay_webhook_body_bytes "))
    );

    let call = |n: usize, pad: usize| {
        let body = json!({"extend": "130", "state": "Ring", "callid": format!("{n}.299"),
                          "type": "inbound"})
        .to_string();
        format!("{body:<pad$}").into_bytes()
    };
    let c = client();
    // 21,000 held + 3,500 is past the whole budget.
    let reply = send(authed(&c, &relay, "voip24h", call(1, 3500))).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text
    );
    assert_eq!(
        reply.headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert!(reply.text.contains("bodies"), "{}", reply.text);
    // 21,000 + 2,500 fits.
    let reply = send(authed(&c, &relay, "voip24h", call(2, 2500))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(relay.ctx.journal.last_seq(), 1);

    drop((caresoft, tel4vn, tel4vn_query));
    common::eventually(Duration::from_secs(10), "the stalled bodies let go", || {
        held() == 0
    })
    .await;
    let reply = send(authed(&c, &relay, "voip24h", call(1, 3500))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(held(), 0, "an answered body lets go");
    relay.stop().await;
}

/// A body over `max_body` from a sender waiting for `100 Continue` is
/// refused at once: it was told to go on, and the relay then read (and threw
/// away) what it sent before answering 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_waiting_for_100_continue_gets_413_first() {
    let relay = start_relay(HOOKS).await;
    let head = tel4vn_head("tel4vn-key", 99_999_999, "Expect: 100-continue\r\n");
    let line = status_line(&relay, &head, b"", Duration::from_secs(5)).await;
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    relay.stop().await;
}

/// The Voip24h feedback GET carries its event in the query: `max_body`
/// bounds the query as it bounds a POST's body, inclusive.
#[tokio::test]
async fn a_feedback_query_over_max_body_is_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("{}{}", common::base_config(dir.path()), HOOKS);
    let relay = common::start_relay_tuned(dir, &text, |config| {
        config.server.max_body = callrelay::config::unspanned(callrelay::config::ByteSize(1024));
    })
    .await;
    let c = client();
    // A query of exactly `len` bytes.
    let url = |len: usize| {
        let fields = "token=v24-token&phone=0900000001&feedID=1&pad=";
        let pad = "x".repeat(len - fields.len());
        relay.url(&format!("/hooks/voip24h/v24?{fields}{pad}"))
    };
    let reply = send(c.get(url(1025))).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text
    );
    let reply = send(c.get(url(1024))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    relay.stop().await;
}

/// An HTTP/1.1 connection buffers at most 64 KiB from its socket (hyper's
/// default is about 400 KiB, which every connection sending a large body
/// reached): a request head over that is answered 431, one under it is read.
/// Both that 431 and hyper's 400 to bytes that are no request head (a TLS
/// handshake to this plain-HTTP port) reach no route, so they are counted
/// in `callrelay_http_connections_closed_total` (they were in no metric and
/// no log line before 2026-12-02).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_the_read_buffer_is_431() {
    let relay = start_relay(HOOKS).await;
    let body = br#"{"call_id":"head-1","direction":"inbound","state":"ringing"}"#;
    for (pad, want) in [(60 * 1024, "HTTP/1.1 200"), (100 * 1024, "HTTP/1.1 431")] {
        let head = tel4vn_head(
            "tel4vn-key",
            body.len(),
            &format!("X-Pad: {}\r\n", "p".repeat(pad)),
        );
        let line = status_line(&relay, &head, body, Duration::from_secs(10)).await;
        assert!(line.starts_with(want), "{pad}-byte header: {line}");
    }
    common::eventually(Duration::from_secs(10), "the 431 counted", || {
        relay.connections_closed("head_too_large") == 1
    })
    .await;
    // The start of a TLS ClientHello, as a sender configured with https://
    // for this plain-HTTP port writes it.
    let hello = "\u{16}\u{3}\u{1}\u{2}\u{0}\u{1}\u{0}\u{1}";
    let line = status_line(&relay, hello, b"", Duration::from_secs(10)).await;
    assert!(line.starts_with("HTTP/1.1 400"), "{line}");
    common::eventually(Duration::from_secs(10), "the 400 counted", || {
        relay.connections_closed("malformed_head") == 1
    })
    .await;
    assert_eq!(relay.connections_closed("header_timeout"), 0);
    relay.stop().await;
}

/// A credential sent twice is refused whichever copy is right: a proxy in
/// front may check or strip another copy than the relay would take (the
/// first one won before, so a right copy followed by a wrong one passed and
/// the reverse did not: security audit).
#[tokio::test]
async fn a_credential_sent_twice_is_refused() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let ticket = br#"{"ticket_id":1,"object":"ticket","action":"create"}"#.to_vec();
    let call = br#"{"call_id":"twice-1","direction":"inbound","state":"ringing"}"#.to_vec();
    let basic = |user: &str, password: &str| {
        use base64::Engine;
        let pair = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let requests = [
        c.post(relay.url("/hooks/caresoft/cs"))
            .header("X-Hub-Signature", sign(b"CS123", &ticket))
            .header("X-Hub-Signature", "00")
            .body(ticket.clone()),
        c.post(relay.url("/hooks/tel4vn/t4"))
            .header("Authorization", "Bearer tel4vn-key")
            .header("Authorization", "Bearer wrong")
            .body(call.clone()),
        c.post(relay.url("/hooks/tel4vn/t4q?apikey=tel4vn-key&apikey=wrong"))
            .body(call.clone()),
        c.post(relay.url("/hooks/voipex/vx"))
            .header("Authorization", basic("demo", "pa:ss:word"))
            .header("Authorization", basic("demo", "wrong"))
            .body(call.clone()),
        c.post(relay.url("/hooks/voip24h/v24?token=v24-token&token=wrong"))
            .body(call.clone()),
        c.post(relay.url("/hooks/sprecord/sp?token=sp-token&token=wrong"))
            .body(call.clone()),
    ];
    for (n, request) in requests.into_iter().enumerate() {
        let reply = send(request).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
        assert!(reply.text.contains("more than once"), "{}", reply.text);
        // VOIPEX's is a Basic check's refusal: its 401 asks for Basic, as
        // every 401 must carry a challenge (RFC 7235); it carried none.
        assert_eq!(
            reply.headers.contains_key("www-authenticate"),
            n == 3,
            "request {n}: {}",
            reply.text
        );
    }
    assert_eq!(relay.ctx.journal.last_seq(), 0);
    relay.stop().await;
}

/// An SPRecord webhook without `token` took events from any web page an
/// agent opened: a cross-site POST of JSON labelled `text/plain` needs no
/// preflight, and the body is read as JSON whatever its label (security
/// review, 2026-12-06). A browser's request to it is refused; a vendor's
/// (no `Origin`) is not, nor a browser's that carries the token of a
/// webhook that has one.
#[tokio::test]
async fn a_browsers_request_to_an_sprecord_webhook_without_token_is_refused() {
    let relay = start_relay(HOOKS).await;
    let c = client();
    let event = fixture("sprecord/incoming_call.json");
    let from_a_page = |header: &str, value: &str| {
        c.post(relay.url("/hooks/sprecord/spj"))
            .header("content-type", "text/plain;charset=UTF-8")
            .header(header, value)
            .body(event.clone())
    };
    for (header, value) in [
        ("origin", "https://evil.example"),
        // A sandboxed frame's.
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let reply = send(from_a_page(header, value)).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{header}: {value}: {}",
            reply.text
        );
        let error = json_of(&reply)["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.contains("browser") && error.contains("set `token`"),
            "{error}"
        );
    }
    assert!(relay.events().is_empty());
    let metrics = send(c.get(relay.url("/metrics"))).await.text;
    assert!(
        metrics.contains(r#"callrelay_webhook_requests_total{code="403",vendor="sprecord"} 3"#),
        "{metrics}"
    );

    let reply = send(
        c.post(relay.url("/hooks/sprecord/spj"))
            .header("content-type", "text/plain;charset=UTF-8")
            .body(event.clone()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(relay.events().len(), 1);

    let reply =
        send(authed(&c, &relay, "sprecord", event).header("origin", "https://crm.example")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(relay.events().len(), 2);
    relay.stop().await;
}
