//! The WebSocket fan-out against real tokio-tungstenite clients, and
//! `callrelay tail` (the binary) against an in-process relay that restarts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use callrelay::app::Relay;
use callrelay::config::{Config, HumanDuration, unspanned};
use callrelay::event::{IncomingEvent, RawPayload, Transport, Vendor, VendorEvent};
use callrelay::ingest::IngestHandle;
use common::{TestRelay, base_config, eventually, start_relay};
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(20);

fn event(n: u64, ty: &str, vendor: Vendor, account: &str, subject: Option<&str>) -> IncomingEvent {
    event_sized(n, ty, vendor, account, subject, 0)
}

/// Events 1..=`last` of 64 KiB each: a few MiB, more than the kernel
/// buffers of a client that does not read.
fn big_events(last: u64) -> Vec<IncomingEvent> {
    (1..=last)
        .map(|n| event_sized(n, "call.cdr", Vendor::Voip24h, "main", None, 64 * 1024))
        .collect()
}

fn event_sized(
    n: u64,
    ty: &str,
    vendor: Vendor,
    account: &str,
    subject: Option<&str>,
    padding: usize,
) -> IncomingEvent {
    IncomingEvent {
        vendor,
        account: account.to_owned(),
        transport: Transport::Webhook,
        received_at: time::OffsetDateTime::now_utc(),
        event: VendorEvent {
            event_type: ty.to_owned(),
            subject: subject.map(str::to_owned),
            time: None,
            unread_time: None,
            fields: serde_json::Map::new(),
            identity: format!("test-{n}"),
        },
        raw: json!({"n": n, "pad": "x".repeat(padding)}).into(),
    }
}

/// Submits concurrently (so ingest batches them) and returns the seqs, in input order.
async fn submit_all(ingest: &IngestHandle, events: Vec<IncomingEvent>) -> Vec<u64> {
    let acks = futures::future::join_all(events.into_iter().map(|e| ingest.submit(e))).await;
    acks.into_iter().map(|a| a.expect("submit").seq).collect()
}

fn ws_url(relay: &TestRelay, query: &str) -> String {
    format!("ws://{}/ws{query}", relay.addr)
}

async fn try_connect(
    url: &str,
    header: Option<(&'static str, &str)>,
) -> Result<Client, tungstenite::Error> {
    let mut request = url.into_client_request()?;
    if let Some((name, value)) = header {
        request
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect timed out")
        .map(|(c, _)| c)
}

async fn connect(url: &str) -> Client {
    try_connect(url, None).await.expect("connect")
}

fn http_status(result: Result<Client, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, got an upgrade"),
    }
}

/// The next text frame, parsed (pings skipped); panics on close or timeout.
async fn next_json(client: &mut Client) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("no frame in time")
            .expect("stream ended")
            .expect("read");
        match frame {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Close(c) => panic!("closed unexpectedly: {c:?}"),
            _ => continue,
        }
    }
}

/// Seqs of the event frames received up to and including `last`.
async fn seqs_until(client: &mut Client, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let v = next_json(client).await;
        let seq = v["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("not an event: {v}"));
        seqs.push(seq);
        if seq >= last {
            return seqs;
        }
    }
}

/// Reads until the close frame; returns its code.
async fn close_code(client: &mut Client) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("no close in time")
        {
            Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

fn disconnects(relay: &TestRelay, reason: &str) -> u64 {
    relay
        .ctx
        .metrics
        .ws_disconnects
        .with_label_values(&[reason])
        .get()
}

/// `result` is a 403 whose body says `what`.
fn assert_forbidden_naming(result: Result<Client, tungstenite::Error>, what: &str, case: &str) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403, "{case}");
            let body =
                String::from_utf8_lossy(response.body().as_deref().unwrap_or(&[])).into_owned();
            assert!(body.contains(what), "{case}: {body}");
        }
        other => panic!("{case}: expected a 403, got {other:?}"),
    }
}

fn refused(relay: &TestRelay, reason: &str) -> u64 {
    relay
        .ctx
        .metrics
        .ws_refused
        .with_label_values(&[reason])
        .get()
}

/// Browsers let any page open a WebSocket to any address and send the
/// page's origin. A fan-out that asks for no token (a loopback listener)
/// let a page of any site the agent visited read every call; now only a
/// page of this machine, or a client that is no browser, opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_site_cannot_open_a_fan_out_without_tokens() {
    let relay = start_relay("").await;
    let url = ws_url(&relay, "?since=0");
    for foreign in ["https://evil.example", "null", "http://192.168.1.20:8080"] {
        let refused_with = try_connect(&url, Some(("origin", foreign))).await;
        assert_forbidden_naming(refused_with, "websocket.tokens", foreign);
    }
    assert_eq!(refused(&relay, "foreign_origin"), 3);
    for local in ["http://localhost:3000", "http://127.0.0.1:8080"] {
        let client = try_connect(&url, Some(("origin", local))).await;
        assert!(client.is_ok(), "{local}: {:?}", client.err());
    }
    assert!(
        try_connect(&url, None).await.is_ok(),
        "no Origin: not a browser"
    );
    // An origin the operator names is let in.
    let named = start_relay("[websocket]\nallowed_origins = [\"https://crm.example\"]\n").await;
    let named_url = ws_url(&named, "?since=0");
    let client = try_connect(&named_url, Some(("origin", "https://crm.example"))).await;
    assert!(client.is_ok(), "{:?}", client.err());
    assert_eq!(
        http_status(try_connect(&named_url, Some(("origin", "https://other.example"))).await),
        403
    );
    // With tokens, the token decides, whatever the page's origin.
    let guarded = start_relay("[websocket]\ntokens = [\"tok-a\"]\n").await;
    let with_token = ws_url(&guarded, "?since=0&token=tok-a");
    let client = try_connect(&with_token, Some(("origin", "https://crm.example"))).await;
    assert!(client.is_ok(), "{:?}", client.err());
    let client = try_connect(&with_token, Some(("x-forwarded-for", "203.0.113.7"))).await;
    assert!(client.is_ok(), "through a proxy: {:?}", client.err());
}

/// A client naming a subprotocol the relay does not offer is upgraded
/// with none in the 101 (a lax client carries on, as gorilla-based servers
/// let it; a strict one, tungstenite's or a browser, fails the connection
/// itself), and the CONTRACT's order holds: a wrong token with a protocol
/// is a 401. dc36bd9 answered both 400 before the token check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_naming_a_subprotocol_is_upgraded_without_one_and_a_wrong_token_is_401() {
    let relay = start_relay("[websocket]\ntokens = [\"tok-secret-a\"]\n").await;
    let with_token = ws_url(&relay, "?since=0&token=tok-secret-a");
    let wrong = ws_url(&relay, "?since=0&token=tok-secret-b");
    match try_connect(&with_token, Some(("sec-websocket-protocol", "graphql-ws"))).await {
        Err(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(
                tungstenite::error::SubProtocolError::NoSubProtocol,
            ),
        )) => {}
        other => panic!("expected a 101 naming no protocol, got {other:?}"),
    }
    let status =
        http_status(try_connect(&wrong, Some(("sec-websocket-protocol", "graphql-ws"))).await);
    assert_eq!(status, 401);
    assert_eq!(refused(&relay, "unauthorized"), 1);
    let client = try_connect(&with_token, None).await;
    assert!(client.is_ok(), "without one: {:?}", client.err());
}

/// A fan-out that asks for no token is for this machine, but a reverse proxy
/// on the same host connects from loopback too, whatever it serves (the
/// internet, perhaps), and a client that is no browser sends no `Origin`:
/// such a request read every call. Now a request carrying a header proxies
/// add is refused until tokens are set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_without_tokens_refuses_what_a_proxy_forwards() {
    let relay = start_relay("").await;
    let url = ws_url(&relay, "?since=0");
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7;proto=https"),
        ("x-real-ip", "203.0.113.7"),
        ("via", "1.1 nginx"),
    ] {
        let refused_with = try_connect(&url, Some((name, value))).await;
        assert_forbidden_naming(refused_with, "set websocket.tokens", name);
    }
    assert_eq!(refused(&relay, "proxied"), 4);
    let direct = try_connect(&url, None).await;
    assert!(
        direct.is_ok(),
        "straight from this machine: {:?}",
        direct.err()
    );
}

/// The fan-out's path with a trailing slash is the fan-out; a WebSocket
/// request at any other path is a 404 that names the right one, counted as
/// `wrong_path` (a browser shows it as a bare 1006, so the relay's side is
/// where a mistyped URL shows). An ordinary request to an unknown path is
/// not a WebSocket refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_slash_is_the_fan_out_and_a_wrong_path_is_a_counted_404() {
    let relay = start_relay("[websocket]\npath = \"/live/events\"\n").await;
    let at = |path: &str| format!("ws://{}{path}", relay.addr);
    let mut slashed = connect(&(at("/live/events/") + "?since=0")).await;
    let first = event(1, "call.ringing", Vendor::Voip24h, "main", None);
    assert_eq!(submit_all(&relay.ctx.ingest, vec![first]).await, [1]);
    assert_eq!(next_json(&mut slashed).await["seq"], 1);
    for wrong in ["/ws", "/live", "/live/events/x", "/live//events"] {
        match try_connect(&at(wrong), None).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 404, "{wrong}");
                let body =
                    String::from_utf8_lossy(response.body().as_deref().unwrap_or(&[])).into_owned();
                assert!(
                    body.contains("the WebSocket fan-out is at /live/events"),
                    "{wrong}: {body}"
                );
                assert!(
                    body.contains(r#""websocket_path":"/live/events""#),
                    "{wrong}: {body}"
                );
            }
            other => panic!("{wrong}: expected a 404, got {other:?}"),
        }
    }
    assert_eq!(refused(&relay, "wrong_path"), 4);
    let plain = reqwest::get(relay.url("/live")).await.expect("plain GET");
    assert_eq!(plain.status().as_u16(), 404);
    assert_eq!(
        refused(&relay, "wrong_path"),
        4,
        "a plain GET is no WebSocket refusal"
    );
    drop(slashed);
    relay.stop().await;
}

/// A client that sends what WebSocket does not allow is told why in the
/// close code (it got a bare close before, which reads as 1005, "you
/// closed"); a data frame within the limits is still ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_client_frame_gets_a_close_code_that_says_why() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let relay = start_relay("").await;
    let url = ws_url(&relay, "");
    let cases: [(&str, Message, u16); 3] = [
        (
            "over 64 KiB",
            Message::text("x".repeat(64 * 1024 + 1)),
            1009,
        ),
        (
            "text that is not UTF-8",
            Message::Frame(Frame::message(
                vec![0xff, 0xfe, 0xfd],
                OpCode::Data(Data::Text),
                true,
            )),
            1007,
        ),
        (
            "a reserved opcode",
            Message::Frame(Frame::message(
                b"x".to_vec(),
                OpCode::Data(Data::Reserved(3)),
                true,
            )),
            1002,
        ),
    ];
    for (what, message, code) in cases {
        let mut client = connect(&url).await;
        client.send(message).await.expect("send");
        assert_eq!(close_code(&mut client).await, Some(code), "{what}");
    }
    eventually(WAIT, "three bad_frame disconnects", || {
        disconnects(&relay, "bad_frame") == 3
    })
    .await;

    // Exactly 64 KiB is within the limit: ignored, the session goes on.
    let mut client = connect(&url).await;
    client
        .send(Message::text("x".repeat(64 * 1024)))
        .await
        .expect("send");
    await_serving(&mut client).await;
    let seq = submit_all(
        &relay.ctx.ingest,
        vec![event(1, "call.ringing", Vendor::Tel4vn, "t", None)],
    )
    .await[0];
    assert_eq!(next_json(&mut client).await["seq"], seq);
}

/// A `Last-Event-ID` that is not text is refused saying so (the answer
/// quoted `"not text"`, as if the client had sent those words), unless
/// `since` is given, which wins; a parameter the relay does not read is
/// ignored whatever its bytes (a non-UTF-8 cache buster was refused 400).
#[tokio::test]
async fn a_last_event_id_that_is_not_text_and_unknown_parameters_not_utf8() {
    let relay = start_relay("").await;
    let refusal = try_connect(&ws_url(&relay, ""), Some(("last-event-id", "é"))).await;
    let Err(tungstenite::Error::Http(response)) = refusal else {
        panic!("expected an HTTP refusal");
    };
    assert_eq!(response.status().as_u16(), 400);
    let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
    assert!(
        body.contains("is not text") && !body.contains("got"),
        "{body}"
    );
    assert_eq!(refused(&relay, "bad_since"), 1);
    try_connect(&ws_url(&relay, "?since=0"), Some(("last-event-id", "é")))
        .await
        .expect("since wins over the header");
    try_connect(&ws_url(&relay, "?_=%FF"), None)
        .await
        .expect("an unknown parameter is ignored");
    relay.stop().await;
}

/// A `?token=` that is not UTF-8 was answered "a token is required",
/// though the client sent one (review of the fan-out, 2026-12-06): it is a
/// 401 that says the value is not UTF-8, and beside a good header it is the
/// 400 of any unreadable parameter.
#[tokio::test]
async fn a_token_that_is_not_utf8_is_said_to_be_so() {
    let relay = start_relay("[websocket]\ntokens = [\"tok-a\"]\n").await;
    let body_of = |refusal: Result<_, tungstenite::Error>| {
        let Err(tungstenite::Error::Http(response)) = refusal else {
            panic!("expected an HTTP refusal");
        };
        let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default());
        (response.status().as_u16(), body.into_owned())
    };
    let (status, body) = body_of(try_connect(&ws_url(&relay, "?token=t%FF"), None).await);
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("`?token=` value is not UTF-8") && !body.contains("required"),
        "{body}"
    );
    let (status, body) = body_of(
        try_connect(
            &ws_url(&relay, "?token=t%FF"),
            Some(("authorization", "Bearer tok-a")),
        )
        .await,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`token` is not UTF-8"), "{body}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_filters_max_clients_status_and_shutdown() {
    let relay =
        start_relay("[websocket]\ntokens = [\"tok-a\", \"tok-b\"]\nmax_clients = 4\n").await;

    // Auth: refused before the upgrade, accepted by header or query.
    assert_eq!(
        http_status(try_connect(&ws_url(&relay, ""), None).await),
        401
    );
    assert_eq!(
        http_status(try_connect(&ws_url(&relay, "?token=tok-c"), None).await),
        401
    );
    assert_eq!(
        http_status(
            try_connect(
                &ws_url(&relay, "?token=tok-a"),
                Some(("authorization", "Bearer nope"))
            )
            .await
        ),
        401
    );
    assert_eq!(
        http_status(try_connect(&ws_url(&relay, "?token=tok-a&since=x"), None).await),
        400
    );
    // A filter that is not UTF-8 is refused, not read as one that matches
    // nothing; a client without a token still hears 401 first.
    assert_eq!(
        http_status(try_connect(&ws_url(&relay, "?token=tok-a&account=ph%E1t"), None).await),
        400
    );
    assert_eq!(
        http_status(try_connect(&ws_url(&relay, "?account=ph%E1t"), None).await),
        401
    );
    // A token sent twice is refused whichever copy is accepted (the last
    // `?token=` won before; a proxy in front may check another copy).
    for query in ["?token=nope&token=tok-a", "?token=tok-a&token=nope"] {
        assert_eq!(
            http_status(try_connect(&ws_url(&relay, query), None).await),
            401,
            "{query}"
        );
    }
    // A browser sees each refusal as the same 1006: the relay counts why.
    let not_upgrade = reqwest::get(relay.url("/ws?token=tok-a"))
        .await
        .expect("plain GET");
    assert!(not_upgrade.status().is_client_error(), "{not_upgrade:?}");
    let body = not_upgrade.text().await.expect("body");
    let said: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(
        said["error"]
            .as_str()
            .is_some_and(|e| e.contains("upgrade")),
        "{body}"
    );
    let metrics = reqwest::get(relay.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("callrelay_ws_refused_total{reason=\"unauthorized\"} 6"),
        "{metrics}"
    );
    assert!(!metrics.contains("tok-"), "a token in /metrics");
    assert!(!body.contains("tok-"), "a token in the refusal: {body}");
    assert_eq!(refused(&relay, "bad_since"), 1);
    assert_eq!(refused(&relay, "bad_query"), 1);
    assert_eq!(refused(&relay, "not_websocket"), 1);
    assert_eq!(refused(&relay, "max_clients"), 0);
    let mut a = try_connect(
        &ws_url(&relay, "?type=call.*&vendor=voip24h"),
        Some(("authorization", "Bearer tok-b")),
    )
    .await
    .expect("bearer accepted");
    let mut b = connect(&ws_url(
        &relay,
        "?token=tok-a&type=crm.*,call.hangup&account=main&account=x",
    ))
    .await;
    let mut c = connect(&ws_url(&relay, "?token=tok-a&subject=S1,S2")).await;
    let mut all = connect(&ws_url(&relay, "?token=tok-a")).await;
    // Each session serves live events before the mix is committed.
    for client in [&mut a, &mut b, &mut c, &mut all] {
        await_serving(client).await;
    }

    // max_clients = 4: the fifth is refused with 503 before the upgrade.
    assert_eq!(
        http_status(try_connect(&ws_url(&relay, "?token=tok-a"), None).await),
        503
    );
    assert_eq!(refused(&relay, "max_clients"), 1);
    let status: Value = reqwest::get(relay.url("/status"))
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    assert_eq!(status["sinks"]["websocket"]["clients"], 4, "{status}");
    assert_eq!(relay.ctx.metrics.ws_clients.get(), 4);

    let mix = vec![
        event(1, "call.ringing", Vendor::Voip24h, "main", Some("S1")),
        event(2, "call.ringing", Vendor::Caresoft, "x", Some("S9")),
        event(3, "crm.ticket.update", Vendor::Caresoft, "x", Some("S2")),
        event(4, "crm.ticket.update", Vendor::Caresoft, "y", None),
        event(5, "agent.login", Vendor::Voipex, "main", Some("S1")),
        event(6, "call.hangup", Vendor::Tel4vn, "main", None),
        event(7, "callx.ringing", Vendor::Voip24h, "main", None),
        event(8, "sms.received", Vendor::Sprecord, "x", Some("S2")),
    ];
    for e in mix {
        // One at a time, so seqs follow the list.
        submit_all(&relay.ctx.ingest, vec![e]).await;
    }
    // The sentinel matches every filter above: each client's list ends with it.
    let sentinel = submit_all(
        &relay.ctx.ingest,
        vec![event(9, "call.hangup", Vendor::Voip24h, "main", Some("S1"))],
    )
    .await[0];
    assert_eq!(sentinel, 9);
    assert_eq!(
        seqs_until(&mut a, 9).await,
        [1, 9],
        "type=call.* & vendor=voip24h"
    );
    assert_eq!(
        seqs_until(&mut b, 9).await,
        [3, 6, 9],
        "type=crm.*,call.hangup & account=main,x"
    );
    assert_eq!(
        seqs_until(&mut c, 9).await,
        [1, 3, 5, 8, 9],
        "subject=S1,S2"
    );
    assert_eq!(seqs_until(&mut all, 9).await, (1..=9).collect::<Vec<_>>());

    // Frames are the journaled bytes as-is.
    let mut again = {
        drop(c);
        eventually(WAIT, "a slot frees after a client leaves", || {
            relay.ctx.metrics.ws_clients.get() == 3
        })
        .await;
        connect(&ws_url(&relay, "?token=tok-a&since=8")).await
    };
    let frame = loop {
        match again.next().await.expect("frame").expect("read") {
            Message::Text(t) => break t,
            _ => continue,
        }
    };
    assert_eq!(frame.as_bytes(), &relay.events()[8].json[..]);
    assert!(
        relay
            .ctx
            .metrics
            .events_published
            .with_label_values(&["websocket"])
            .get()
            >= 19
    );

    // Shutdown closes every client at once with 1001.
    let stop = tokio::spawn(relay.stop());
    for client in [&mut a, &mut b, &mut all, &mut again] {
        assert_eq!(close_code(client).await, Some(1001));
    }
    tokio::time::timeout(WAIT, stop)
        .await
        .expect("relay stopped in time")
        .expect("stop task");
}

async fn ws_status(relay: &TestRelay) -> Value {
    let status: Value = reqwest::get(relay.url("/status"))
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    status["sinks"]["websocket"].clone()
}

/// A reload that stops accepting a token closes the sessions that use it
/// (1008), at once, and leaves the others alone; a token can be revoked
/// without a restart. Before, a removed token's sessions ran on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_token_closes_its_sessions() {
    let relay = start_relay("[websocket]\ntokens = [\"keep\", \"leaked\"]\n").await;
    let mut kept = connect(&ws_url(&relay, "?token=keep")).await;
    let mut leaked_query = connect(&ws_url(&relay, "?token=leaked")).await;
    let mut leaked_header = try_connect(
        &ws_url(&relay, ""),
        Some(("authorization", "Bearer leaked")),
    )
    .await
    .expect("bearer accepted");
    for client in [&mut kept, &mut leaked_query, &mut leaked_header] {
        await_serving(client).await;
    }

    let text = format!(
        "{}[websocket]\ntokens = [\"keep\"]\n",
        common::base_config(relay.dir.path())
    );
    std::fs::write(&relay.config_path, text).expect("rewrite config");
    relay.reload().await;
    assert_eq!(close_code(&mut leaked_query).await, Some(1008));
    assert_eq!(close_code(&mut leaked_header).await, Some(1008));
    eventually(WAIT, "two token_revoked disconnects", || {
        disconnects(&relay, "token_revoked") == 2
    })
    .await;

    let seq = submit_all(
        &relay.ctx.ingest,
        vec![event(1, "call.ringing", Vendor::Tel4vn, "t", None)],
    )
    .await[0];
    assert_eq!(next_json(&mut kept).await["seq"], seq);
    assert_eq!(
        http_status(try_connect(&ws_url(&relay, "?token=leaked"), None).await),
        401
    );
}

/// A reload that turns auth on closes the sessions that came without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_turns_auth_on_closes_sessions_without_a_token() {
    let relay = start_relay("").await;
    let mut open = connect(&ws_url(&relay, "")).await;
    await_serving(&mut open).await;
    let text = format!(
        "{}[websocket]\ntokens = [\"now-required\"]\n",
        common::base_config(relay.dir.path())
    );
    std::fs::write(&relay.config_path, text).expect("rewrite config");
    relay.reload().await;
    assert_eq!(close_code(&mut open).await, Some(1008));
}

/// A reload that revokes the token of a client still replaying history
/// closes it (1008) before the rest of that history. The check was in the
/// live loop only, so a client replaying a large journal, or one that
/// never caught up with the head, was served on a revoked token for as long
/// as its replay lasted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_revokes_a_replaying_clients_token_closes_it_mid_replay() {
    let settings = "client_queue = 100000\nping_interval = \"600s\"\npong_timeout = \"600s\"\n";
    let relay = start_relay(&format!("[websocket]\ntokens = [\"leaked\"]\n{settings}")).await;
    // 20 MiB of history, several times what the socket buffers hold: the
    // replay waits on a write while the client reads nothing.
    const HISTORY: u64 = 320;
    let history = big_events(HISTORY);
    submit_all(&relay.ctx.ingest, history).await;
    let mut client = unread_client(&relay, "?since=0&token=leaked").await;
    assert_eq!(next_json(&mut client).await["seq"], 1, "replaying");

    let text = format!(
        "{}[websocket]\ntokens = [\"other\"]\n{settings}",
        common::base_config(relay.dir.path())
    );
    std::fs::write(&relay.config_path, text).expect("rewrite config");
    relay.reload().await;

    let (texts, code) = texts_until_close(&mut client).await;
    let received = 1 + texts;
    assert_eq!(code, Some(1008));
    assert!(
        received < HISTORY / 2,
        "{received} of {HISTORY} replayed first"
    );
    assert_eq!(disconnects(&relay, "token_revoked"), 1);
}

/// Reads until the close frame: how many text frames came first, and the
/// close code. Panics on a read error or an end without a close frame.
async fn texts_until_close(client: &mut Client) -> (u64, Option<u16>) {
    let mut texts = 0u64;
    loop {
        match tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(_))) => texts += 1,
            Some(Ok(Message::Close(c))) => return (texts, c.map(|c| u16::from(c.code))),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("read: {e}"),
            None => panic!("ended without a close frame"),
        }
    }
}

/// Without tokens, the page's origin is what lets it in: a reload that takes
/// the origin out of `allowed_origins` closes its session as a revoked token
/// does (it was served on), and a page still listed stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_takes_a_pages_origin_out_closes_its_session() {
    let allowing = |origins: &str| format!("[websocket]\nallowed_origins = [{origins}]\n");
    let relay = start_relay(&allowing(
        "\"https://crm.example\", \"https://ops.example\"",
    ))
    .await;
    let url = ws_url(&relay, "?heartbeat=1");
    let mut dropped = try_connect(&url, Some(("origin", "https://crm.example")))
        .await
        .expect("an allowed page");
    let mut kept = try_connect(&url, Some(("origin", "https://ops.example")))
        .await
        .expect("another allowed page");
    assert_eq!(next_json(&mut dropped).await["control"], "heartbeat");
    assert_eq!(next_json(&mut kept).await["control"], "heartbeat");
    let text = format!(
        "{}{}",
        common::base_config(relay.dir.path()),
        allowing("\"https://ops.example\"")
    );
    std::fs::write(&relay.config_path, text).expect("rewrite config");
    relay.reload().await;
    assert_eq!(close_code(&mut dropped).await, Some(1008));
    assert_eq!(disconnects(&relay, "token_revoked"), 1);
    submit_all(
        &relay.ctx.ingest,
        vec![event(1, "call.ringing", Vendor::Voip24h, "main", None)],
    )
    .await;
    assert_eq!(
        next_json(&mut kept).await["seq"],
        1,
        "the listed page stays"
    );
}

/// Sources of the accounts the scoped tokens below name: `hn` and `sg`
/// (Tel4vn webhooks) and `main` (a Voip24h webhook, `big_events`' account).
const SCOPED_SOURCES: &str = "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"hn\"\napi_key = \"k-hn\"\n\n\
                              [[webhook]]\nvendor = \"tel4vn\"\naccount = \"sg\"\napi_key = \"k-sg\"\n\n\
                              [[webhook]]\nvendor = \"voip24h\"\naccount = \"main\"\ntoken = \"k-main\"\n\n";

/// A relay with `SCOPED_SOURCES` and `[websocket]` `tokens = [{tokens}]`.
async fn start_scoped_relay(tokens: &str) -> TestRelay {
    start_relay(&scoped_config(tokens)).await
}

/// `SCOPED_SOURCES`, then `[websocket]` with `tokens = [{tokens}]` (more of
/// its keys may follow).
fn scoped_config(tokens: &str) -> String {
    format!("{SCOPED_SOURCES}[websocket]\ntokens = [{tokens}]\n")
}

/// Rewrites the relay's config with `rest` after `base_config`, and reloads.
async fn reload_with(relay: &TestRelay, rest: &str) {
    let text = format!("{}{rest}", common::base_config(relay.dir.path()));
    std::fs::write(&relay.config_path, text).expect("rewrite config");
    relay.reload().await;
}

/// Tel4vn call events `first..` of the accounts given, one at a time (so
/// their seqs follow the list), and their seqs.
async fn submit_for_accounts(relay: &TestRelay, first: u64, accounts: &[&str]) -> Vec<u64> {
    let mut seqs = Vec::new();
    for (n, account) in (first..).zip(accounts) {
        let e = event(n, "call.ringing", Vendor::Tel4vn, account, None);
        seqs.push(relay.ctx.ingest.submit(e).await.expect("submit").seq);
    }
    seqs
}

/// The seqs among `seqs` whose account (in `accounts`, same order) is `which`.
fn seqs_of(seqs: &[u64], accounts: &[&str], which: &str) -> Vec<u64> {
    seqs.iter()
        .zip(accounts)
        .filter(|(_, a)| **a == which)
        .map(|(s, _)| *s)
        .collect()
}

/// A token scoped to `hn` is sent `hn`'s events only, in order, live and
/// on resume (`since`, `Last-Event-ID`, then live after the replay), while
/// a token of every account on the same relay gets all of them. Each list
/// ends with an `hn` event, so an `sg` one sent by mistake would come before
/// it and show in the seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_token_receives_only_its_accounts_events_live_and_on_resume() {
    let relay = start_scoped_relay("{ token = \"team-hn\", accounts = [\"hn\"] }, \"all\"").await;
    let mut scoped = connect(&ws_url(&relay, "?token=team-hn")).await;
    let mut all = connect(&ws_url(&relay, "?token=all")).await;
    for client in [&mut scoped, &mut all] {
        await_serving(client).await;
    }
    let accounts = ["hn", "sg", "sg", "hn", "sg", "hn"];
    let seqs = submit_for_accounts(&relay, 1, &accounts).await;
    let hn = seqs_of(&seqs, &accounts, "hn");
    let last = *seqs.last().expect("events");
    assert_eq!(seqs_until(&mut scoped, last).await, hn, "live");
    assert_eq!(
        seqs_until(&mut all, last).await,
        seqs,
        "live, every account"
    );

    let before = seqs[0] - 1;
    let mut since = connect(&ws_url(&relay, &format!("?token=team-hn&since={before}"))).await;
    let mut last_event_id = try_connect(
        &ws_url(&relay, "?token=team-hn"),
        Some(("last-event-id", &before.to_string())),
    )
    .await
    .expect("resumed with Last-Event-ID");
    for client in [&mut since, &mut last_event_id] {
        assert_eq!(seqs_until(client, last).await, hn, "replayed");
    }
    // Live after the replay, as scoped.
    let later = ["sg", "hn"];
    let more = submit_for_accounts(&relay, 100, &later).await;
    for client in [&mut scoped, &mut since, &mut last_event_id] {
        assert_eq!(seqs_until(client, more[1]).await, [more[1]], "live after");
    }
}

/// A token scoped to `hn` whose client names one subject is routed on that
/// subject (the hub's most selective key), a route every account's events
/// of that subject take: `sg`'s event of the same subject wakes the session
/// but is not sent, live or on resume; nor is `hn`'s of another subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_token_naming_one_subject_gets_only_its_accounts_events_of_it() {
    let relay = start_scoped_relay("{ token = \"team-hn\", accounts = [\"hn\"] }").await;
    let mut scoped = connect(&ws_url(&relay, "?token=team-hn&subject=agent-1001")).await;
    await_serving(&mut scoped).await;
    let sent = [
        ("hn", "agent-1001"),
        ("sg", "agent-1001"),
        ("hn", "agent-2002"),
        ("sg", "agent-1001"),
        ("hn", "agent-1001"),
    ];
    let mut seqs = Vec::new();
    for (n, (account, subject)) in (1..).zip(sent) {
        let e = event(n, "call.ringing", Vendor::Tel4vn, account, Some(subject));
        seqs.push(relay.ctx.ingest.submit(e).await.expect("submit").seq);
    }
    let want: Vec<u64> = seqs
        .iter()
        .zip(sent)
        .filter(|(_, s)| *s == ("hn", "agent-1001"))
        .map(|(seq, _)| *seq)
        .collect();
    // The list ends with a wanted event: one sent by mistake comes before it.
    let last = *seqs.last().expect("events");
    assert_eq!(seqs_until(&mut scoped, last).await, want, "live");
    let before = seqs[0] - 1;
    let mut resumed = connect(&ws_url(
        &relay,
        &format!("?token=team-hn&subject=agent-1001&since={before}"),
    ))
    .await;
    assert_eq!(seqs_until(&mut resumed, last).await, want, "replayed");
}

/// A scoped token's client whose `account` filter names an account
/// outside its scope is answered 403 before the upgrade, in the refusals'
/// JSON, counted as `account_not_allowed`, the body naming the account and
/// the token's own, never the token. A filter within the scope, and any
/// filter of a token of every account, are served; a wrong token is still
/// a 401 first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_filter_outside_the_tokens_scope_is_refused_before_the_upgrade() {
    let relay =
        start_scoped_relay("{ token = \"team-hn\", accounts = [\"hn\", \"main\"] }, \"all\"").await;
    let cases = [
        ("?token=team-hn&account=sg", None),
        ("?token=team-hn&account=hn,sg", None),
        (
            "?account=hn&account=sg",
            Some(("authorization", "Bearer team-hn")),
        ),
    ];
    for (query, header) in cases {
        let refused_with = try_connect(&ws_url(&relay, query), header).await;
        let Err(tungstenite::Error::Http(response)) = refused_with else {
            panic!("{query}: expected a 403, got {refused_with:?}");
        };
        assert_eq!(response.status().as_u16(), 403, "{query}");
        let body: Value =
            serde_json::from_slice(response.body().as_deref().unwrap_or(&[])).expect("JSON body");
        assert_eq!(
            body,
            json!({"error": "this token may not see account \"sg\": it opens \"hn\", \"main\"; \
                   leave `account` out to get all of them, or name some of them"}),
            "{query}"
        );
    }
    assert_eq!(refused(&relay, "account_not_allowed"), 3);
    assert_eq!(
        http_status(try_connect(&ws_url(&relay, "?token=nope&account=sg"), None).await),
        401
    );
    for query in [
        "?token=team-hn&account=hn",
        "?token=team-hn&account=main,hn",
        "?token=all&account=sg",
    ] {
        let mut client = connect(&ws_url(&relay, query)).await;
        await_serving(&mut client).await;
    }
    assert_eq!(refused(&relay, "account_not_allowed"), 3);
}

/// A reload that changes a token's scope closes its sessions with 4009, so
/// that they reconnect and are served the new one: narrowed, and widened
/// too (the session's filter holds the old scope's accounts). Sessions of
/// tokens whose scope is unchanged stay open and keep receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_a_tokens_scope_closes_its_sessions_and_keeps_the_others() {
    let tokens = |team: &str, other: &str| {
        scoped_config(&format!(
            "{{ token = \"team\", accounts = [{team}] }}, \
             {{ token = \"other\", accounts = [{other}] }}, \"all\""
        ))
    };
    let relay = start_relay(&tokens("\"hn\", \"sg\"", "\"hn\"")).await;
    let mut team = connect(&ws_url(&relay, "?token=team")).await;
    let mut other = connect(&ws_url(&relay, "?token=other")).await;
    let mut all = connect(&ws_url(&relay, "?token=all")).await;
    for client in [&mut team, &mut other, &mut all] {
        await_serving(client).await;
    }

    // Narrowed: `team` closes; the others are not told anything.
    reload_with(&relay, &tokens("\"hn\"", "\"hn\"")).await;
    assert_eq!(close_code(&mut team).await, Some(4009));
    assert_eq!(disconnects(&relay, "scope_changed"), 1);
    // Committed after the reload: a session that read the reload's notice
    // only later would have been closed by now (reloads come before events).
    let accounts = ["sg", "hn"];
    let seqs = submit_for_accounts(&relay, 1, &accounts).await;
    assert_eq!(seqs_until(&mut other, seqs[1]).await, [seqs[1]]);
    assert_eq!(seqs_until(&mut all, seqs[1]).await, seqs);
    // Reconnected, `team` is served its new scope.
    let mut team = connect(&ws_url(&relay, "?token=team")).await;
    await_serving(&mut team).await;
    let seqs = submit_for_accounts(&relay, 10, &accounts).await;
    assert_eq!(seqs_until(&mut team, seqs[1]).await, [seqs[1]]);
    assert_eq!(seqs_until(&mut other, seqs[1]).await, [seqs[1]]);
    assert_eq!(seqs_until(&mut all, seqs[1]).await, seqs);

    // Widened: `other` closes too; `team` and `all` stay.
    reload_with(&relay, &tokens("\"hn\"", "\"hn\", \"sg\"")).await;
    assert_eq!(close_code(&mut other).await, Some(4009));
    let seqs = submit_for_accounts(&relay, 20, &accounts).await;
    assert_eq!(seqs_until(&mut team, seqs[1]).await, [seqs[1]]);
    assert_eq!(seqs_until(&mut all, seqs[1]).await, seqs);
    assert_eq!(disconnects(&relay, "scope_changed"), 2);
    assert_eq!(disconnects(&relay, "token_revoked"), 0);
}

/// A reload that changes the scope of a client still replaying history
/// closes it (4009) before the rest of that history, as a revoked token's
/// is (1008).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_a_replaying_clients_scope_closes_it_mid_replay() {
    let settings = "client_queue = 100000\nping_interval = \"600s\"\npong_timeout = \"600s\"\n";
    let scoped = |accounts: &str| {
        let tokens = format!("{{ token = \"team\", accounts = [{accounts}] }}");
        format!("{}{settings}", scoped_config(&tokens))
    };
    let relay = start_relay(&scoped("\"main\", \"hn\"")).await;
    // As in the revocation's test: 20 MiB of `main`'s history, several
    // times what the socket buffers hold.
    const HISTORY: u64 = 320;
    submit_all(&relay.ctx.ingest, big_events(HISTORY)).await;
    let mut client = unread_client(&relay, "?since=0&token=team").await;
    assert_eq!(next_json(&mut client).await["seq"], 1, "replaying");

    reload_with(&relay, &scoped("\"main\"")).await;
    let (texts, code) = texts_until_close(&mut client).await;
    let received = 1 + texts;
    assert_eq!(code, Some(4009));
    assert!(
        received < HISTORY / 2,
        "{received} of {HISTORY} replayed first"
    );
    assert_eq!(disconnects(&relay, "scope_changed"), 1);
}

/// A reload applies `max_clients` to new connections and `/status` says so
/// at once, without waiting for a client to connect or leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_max_clients_after_a_reload() {
    let relay = start_relay("[websocket]\nmax_clients = 4\n").await;
    let _client = connect(&ws_url(&relay, "")).await;
    let status = ws_status(&relay).await;
    assert_eq!(
        (&status["clients"], &status["max_clients"]),
        (&json!(1), &json!(4))
    );

    let text = format!(
        "{}[websocket]\nmax_clients = 1\n",
        common::base_config(relay.dir.path())
    );
    std::fs::write(&relay.config_path, text).expect("rewrite config");
    relay.reload().await;
    let status = ws_status(&relay).await;
    assert_eq!(
        (&status["clients"], &status["max_clients"]),
        (&json!(1), &json!(1)),
        "{status}"
    );
    assert_eq!(
        http_status(try_connect(&ws_url(&relay, ""), None).await),
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_under_continuous_journaling_is_exactly_once_in_order() {
    let relay = start_relay("").await;
    let seed: u64 = rand::random();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    const TOTAL: u64 = 3_000;
    let types = [
        "call.ringing",
        "call.hangup",
        "crm.ticket.update",
        "agent.login",
    ];

    // A producer journals TOTAL events in small concurrent batches, the last
    // one call.ended. Each quarter after the first waits for six more
    // clients to have joined, so that at least 18 join while events are
    // still being journaled and cross from replay to live: on a fast disk
    // the producer finished before most joined, and every client was a
    // pure replay (test review, round 47).
    let (joined, mut clients_joined) = tokio::sync::watch::channel(0usize);
    let ingest = relay.ctx.ingest.clone();
    let producer = tokio::spawn(async move {
        let mut n = 0;
        while n < TOTAL {
            let quarter = (n * 4 / TOTAL) as usize;
            clients_joined
                .wait_for(|joined| *joined >= 6 * quarter)
                .await
                .expect("the clients' side is there");
            let batch: Vec<_> = (n..(n + 10).min(TOTAL))
                .map(|i| {
                    let ty = if i == TOTAL - 1 {
                        "call.ended"
                    } else {
                        types[(i % 4) as usize]
                    };
                    event(i, ty, Vendor::Voip24h, "main", Some("S"))
                })
                .collect();
            n += batch.len() as u64;
            submit_all(&ingest, batch).await;
            tokio::task::yield_now().await;
        }
    });

    // Clients join at random moments with random `since` (query or header), half filtered.
    let mut clients = Vec::new();
    for i in 0..24 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
        let last = relay.ctx.journal.last_seq();
        let since = rng.random_range(0..=last);
        let filtered = i % 2 == 0;
        let filter = if filtered { "&type=call.*" } else { "" };
        let client = if i % 3 == 0 {
            let url = ws_url(&relay, &format!("?x=1{filter}"));
            try_connect(&url, Some(("last-event-id", &since.to_string())))
                .await
                .expect("connect")
        } else {
            connect(&ws_url(&relay, &format!("?since={since}{filter}"))).await
        };
        let live = relay.ctx.journal.last_seq() < TOTAL;
        joined.send_modify(|n| *n += 1);
        clients.push(tokio::spawn(async move {
            let mut client = client;
            let seqs = seqs_until(&mut client, TOTAL).await;
            (since, filtered, seqs, live)
        }));
    }
    tokio::time::timeout(WAIT * 3, producer)
        .await
        .expect("producer in time")
        .expect("producer");
    let journal: Vec<(u64, String)> = relay
        .events()
        .into_iter()
        .map(|e| (e.seq, e.header.event_type))
        .collect();
    assert_eq!(journal.len() as u64, TOTAL);
    let mut joined_live = 0;
    for client in clients {
        let (since, filtered, seqs, live) = tokio::time::timeout(WAIT * 3, client)
            .await
            .expect("client done in time")
            .expect("client");
        let expected: Vec<u64> = journal
            .iter()
            .filter(|(seq, ty)| *seq > since && (!filtered || ty.starts_with("call.")))
            .map(|(seq, _)| *seq)
            .collect();
        assert_eq!(
            seqs, expected,
            "seed {seed}: since={since} filtered={filtered}: every matching event once, in order"
        );
        joined_live += usize::from(live);
    }
    assert!(
        joined_live >= 18,
        "{joined_live} clients joined while events were journaled"
    );
}

/// Runs retention as if two days had passed, so every event held so far
/// expires; returns how many did.
fn expire_everything(relay: &TestRelay) -> u64 {
    let later = callrelay::journal::now_ms() + 2 * 86_400_000;
    let report = relay
        .ctx
        .journal
        .enforce_retention_at(&[], later)
        .expect("retention");
    report.expired
}

/// Returns once the client's session serves live events (subscribed, and its
/// replay over): the session reads the socket only then, and tungstenite
/// sends the pong to our ping on that read. A client can see the 101 before
/// its session subscribed, so a test that commits right after `connect`
/// could commit events that session never sees.
async fn await_serving(client: &mut Client) {
    use futures::SinkExt;
    client
        .send(Message::Ping(b"serving?".to_vec().into()))
        .await
        .expect("ping");
    loop {
        let frame = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("no pong in time")
            .expect("stream ended")
            .expect("read");
        match frame {
            Message::Pong(_) => return,
            Message::Ping(_) => continue,
            other => panic!("expected a pong first, got {other:?}"),
        }
    }
}

fn heartbeat(seq: u64) -> Value {
    json!({"control": "heartbeat", "seq": seq})
}

/// A filtered CRM screen that has seen none of its own events yet still has
/// a resume point when it asks for heartbeats (CRM-screen audit: a page away
/// for a relay restart lost every event of its own committed meanwhile,
/// since without `since` a client starts from now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_at_connect_gives_a_filtered_client_a_resume_point() {
    // Pings too far apart to matter: every heartbeat here is the one at
    // connect or after a replay.
    let relay = start_relay_pinging("", Duration::from_secs(3600), Duration::from_secs(5)).await;
    let agent = |n| event(n, "agent.login", Vendor::Voipex, "main", None);
    let call = |n| event(n, "call.ringing", Vendor::Voipex, "main", None);
    submit_all(&relay.ctx.ingest, vec![agent(1), agent(2)]).await;

    let page = {
        let mut page = connect(&ws_url(&relay, "?type=call.*&heartbeat=1")).await;
        assert_eq!(next_json(&mut page).await, heartbeat(2), "its start point");
        page
    };
    // Away; its own events are committed meanwhile.
    drop(page);
    submit_all(
        &relay.ctx.ingest,
        vec![call(3), agent(4), call(5), agent(6)],
    )
    .await;
    let mut back = connect(&ws_url(&relay, "?type=call.*&heartbeat=1&since=2")).await;
    assert_eq!(next_json(&mut back).await["seq"], 3);
    assert_eq!(next_json(&mut back).await["seq"], 5);
    assert_eq!(next_json(&mut back).await, heartbeat(6), "after the replay");
    submit_all(&relay.ctx.ingest, vec![call(7)]).await;
    assert_eq!(next_json(&mut back).await["seq"], 7);
}

/// Beside every ping a heartbeat carries the point on past events the
/// client filters out; page script sees no pings, and the heartbeat is its
/// sign the connection lives. A client that does not ask gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_beside_pings_follow_filtered_out_events() {
    let relay = start_relay_pinging("", Duration::from_millis(200), Duration::from_secs(5)).await;
    let agent = |n| event(n, "agent.login", Vendor::Voipex, "main", None);
    let call = |n| event(n, "call.ringing", Vendor::Voipex, "main", None);
    let mut page = connect(&ws_url(&relay, "?type=call.*&heartbeat=1")).await;
    let mut plain = connect(&ws_url(&relay, "?type=call.*")).await;
    assert_eq!(next_json(&mut page).await, heartbeat(0));
    submit_all(&relay.ctx.ingest, vec![agent(1), agent(2)]).await;
    // Bounded as a whole: pings alone (next_json skips them) would keep
    // each read short for ever.
    let moved_on = tokio::time::timeout(WAIT, async {
        loop {
            match next_json(&mut page).await {
                v if v == heartbeat(0) || v == heartbeat(1) => continue,
                v => break v,
            }
        }
    })
    .await
    .expect("a heartbeat past the filtered-out events in time");
    assert_eq!(moved_on, heartbeat(2));
    // Two pings reach the other client with no text frame.
    let mut pings = 0;
    while pings < 2 {
        let frame = tokio::time::timeout(WAIT, plain.next())
            .await
            .expect("no ping in time")
            .expect("stream ended")
            .expect("read");
        match frame {
            Message::Ping(_) => pings += 1,
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    submit_all(&relay.ctx.ingest, vec![call(3)]).await;
    assert_eq!(next_json(&mut plain).await["seq"], 3);
    let after_heartbeats = tokio::time::timeout(WAIT, async {
        loop {
            match next_json(&mut page).await {
                v if v == heartbeat(2) => continue,
                v => break v,
            }
        }
    })
    .await
    .expect("the event in time");
    assert_eq!(after_heartbeats["seq"], 3);
}

/// `callrelay_event_latency_seconds{sink="websocket"}` counts one sample per
/// live frame a client was sent: each client's frames, only those its
/// filter let through (the unit test of the burst used a histogram of its
/// own, so nothing checked the registered series moved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_live_frame_is_one_websocket_latency_sample() {
    let relay = start_relay("").await;
    let mut all = connect(&ws_url(&relay, "")).await;
    let mut calls = connect(&ws_url(&relay, "?type=call.*")).await;
    await_serving(&mut all).await;
    await_serving(&mut calls).await;
    let events = (1..=6)
        .map(|n| {
            let ty = if n % 3 == 0 {
                "agent.login"
            } else {
                "call.ringing"
            };
            event(n, ty, Vendor::Voipex, "main", None)
        })
        .collect();
    submit_all(&relay.ctx.ingest, events).await;
    assert_eq!(seqs_until(&mut all, 6).await, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(seqs_until(&mut calls, 5).await, vec![1, 2, 4, 5]);
    let samples = || {
        relay
            .ctx
            .metrics
            .event_latency
            .with_label_values(&["websocket"])
            .get_sample_count()
    };
    eventually(WAIT, "a sample per frame sent", || samples() >= 10).await;
    // One more event both take: once both have read it and its two samples
    // are in, the count is exactly 12, so the 10 above was not a count on
    // its way past 10 (a filtered client counting what it was not sent).
    submit_all(
        &relay.ctx.ingest,
        vec![event(7, "call.ringing", Vendor::Voipex, "main", None)],
    )
    .await;
    assert_eq!(seqs_until(&mut all, 7).await, vec![7]);
    assert_eq!(seqs_until(&mut calls, 7).await, vec![7]);
    eventually(WAIT, "the last event's two samples", || samples() >= 12).await;
    assert_eq!(samples(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_frame_when_since_is_older_than_the_journal() {
    let relay = start_relay("").await;
    let ingest = &relay.ctx.ingest;
    submit_all(
        ingest,
        (1..=10)
            .map(|n| event(n, "call.ringing", Vendor::Voip24h, "main", None))
            .collect(),
    )
    .await;
    assert_eq!(expire_everything(&relay), 10);
    submit_all(
        ingest,
        (11..=15)
            .map(|n| event(n, "call.ringing", Vendor::Voip24h, "main", None))
            .collect(),
    )
    .await;
    assert_eq!(relay.ctx.journal.first_seq(), 11);

    let mut old = connect(&ws_url(&relay, "?since=3")).await;
    assert_eq!(
        next_json(&mut old).await,
        json!({"control": "gap", "oldest_seq": 11})
    );
    assert_eq!(seqs_until(&mut old, 15).await, [11, 12, 13, 14, 15]);
    // Frames sent from the journal count as published like live ones.
    let published = relay
        .ctx
        .metrics
        .events_published
        .with_label_values(&["websocket"]);
    eventually(
        Duration::from_secs(10),
        "the replayed events counted as published",
        || published.get() == 5,
    )
    .await;

    // since = first_seq - 1 is not a gap.
    let mut edge = connect(&ws_url(&relay, "?since=10")).await;
    assert_eq!(next_json(&mut edge).await["seq"], 11);
}

/// Retention emptied the journal (`first_seq` = `last_seq` + 1): replay
/// finds nothing, and the gap frame still comes first, at once, naming the
/// next seq the journal hands out (before, it waited for the next commit,
/// hours on a quiet relay, after a heartbeat at the client's `since`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_frame_when_retention_emptied_the_journal() {
    let relay = start_relay("").await;
    let ingest = &relay.ctx.ingest;
    let early = (1..=7)
        .map(|n| event(n, "call.ringing", Vendor::Voip24h, "main", None))
        .collect();
    submit_all(ingest, early).await;
    assert_eq!(expire_everything(&relay), 7);
    assert_eq!(relay.ctx.journal.first_seq(), 8);
    assert_eq!(relay.ctx.journal.last_seq(), 7);

    let mut client = connect(&ws_url(&relay, "?since=1")).await;
    // Its filter drops seq 8 and 9: it gets the gap frame alone, then seq 10.
    let mut filtered = connect(&ws_url(&relay, "?since=2&type=crm.*")).await;
    // On its account's ring: the ring's silence about seqs 2..7, committed
    // before it subscribed, does not move its cursor past them without a
    // gap frame (an earlier build's heartbeat said 7, and seq 8 came with
    // no gap frame).
    let mut one_account = connect(&ws_url(&relay, "?since=1&account=main&heartbeat=1")).await;
    // Its `since` is the last seq journaled: nothing was dropped after it.
    let mut at_the_end = connect(&ws_url(&relay, "?since=7&heartbeat=1")).await;
    assert_eq!(
        next_json(&mut at_the_end).await,
        json!({"control": "heartbeat", "seq": 7}),
        "no gap frame"
    );
    let gap = json!({"control": "gap", "oldest_seq": 8});
    assert_eq!(
        next_json(&mut client).await,
        gap,
        "the first frame, at once"
    );
    assert_eq!(
        next_json(&mut filtered).await,
        gap,
        "a filtered client hears of the gap whatever its filter takes"
    );
    assert_eq!(
        next_json(&mut one_account).await,
        gap,
        "before the heartbeat"
    );
    assert_eq!(
        next_json(&mut one_account).await,
        json!({"control": "heartbeat", "seq": 7}),
        "the heartbeat's seq resumes past the gap"
    );
    // Committed only once the sessions wait on live events, so this takes the
    // live path, not a replay that would find seq 8 in the journal.
    await_serving(&mut client).await;
    await_serving(&mut filtered).await;
    await_serving(&mut one_account).await;
    let seqs = submit_all(
        ingest,
        vec![event(8, "call.ringing", Vendor::Voip24h, "main", None)],
    )
    .await;
    assert_eq!(seqs, [8]);
    assert_eq!(
        next_json(&mut client).await["seq"],
        8,
        "no second gap frame"
    );
    assert_eq!(next_json(&mut one_account).await["seq"], 8);
    // Once: the next events follow without another gap frame.
    for n in [9, 10] {
        let ty = if n == 10 {
            "crm.ticket.update"
        } else {
            "call.ringing"
        };
        submit_all(ingest, vec![event(n, ty, Vendor::Caresoft, "x", None)]).await;
    }
    assert_eq!(seqs_until(&mut client, 10).await, [9, 10]);
    assert_eq!(next_json(&mut filtered).await["seq"], 10);
}

/// A record damaged on disk, which journal reads skip, is announced by a
/// gap frame wherever it falls in a replay page: before (review of the
/// fan-out), only one first in a page was, and one in the middle left a
/// hole the client was never told of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_record_is_announced_as_a_gap() {
    let relay = start_relay("").await;
    for n in 1..=5 {
        submit_all(
            &relay.ctx.ingest,
            vec![event(n, "call.ringing", Vendor::Voip24h, "main", None)],
        )
        .await;
    }
    let dir = relay.stop().await;
    // Too short for a record, as damage on disk would leave it.
    let db = redb::Database::open(dir.path().join("journal").join("journal.redb"))
        .expect("the journal's file");
    let txn = db.begin_write().expect("write");
    {
        let events: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
        let mut table = txn.open_table(events).expect("events table");
        table.insert(3, [1u8, 2, 3].as_slice()).expect("overwrite");
    }
    txn.commit().expect("commit");
    drop(db);

    let text = base_config(dir.path());
    let relay = common::start_relay_in(dir, &text).await;
    let mut client = connect(&ws_url(&relay, "?since=0")).await;
    let mut frames = Vec::new();
    while frames.last().map(|f: &Value| &f["seq"]) != Some(&json!(5)) {
        frames.push(next_json(&mut client).await);
    }
    let seqs = |from: u64, to: u64| (from..=to).map(|n| json!(n));
    let got: Vec<Value> = frames
        .iter()
        .map(|f| f.get("seq").cloned().unwrap_or_else(|| f.clone()))
        .collect();
    let mut expected: Vec<Value> = seqs(1, 2).collect();
    expected.push(json!({"control": "gap", "oldest_seq": 4}));
    expected.extend(seqs(4, 5));
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_4008_and_fast_clients_get_everything() {
    // pong_timeout is also the write deadline: 10 min, far longer than this
    // test may take, so if the fan-out waited on the slow client's socket the
    // fast ones would time out; only the queue bound can close it in time.
    let relay = start_relay(
        "[websocket]\nclient_queue = 500\nping_interval = \"600s\"\npong_timeout = \"600s\"\n",
    )
    .await;
    let url = ws_url(&relay, "");
    // The slow client: a tiny receive buffer, and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(relay.addr).await.expect("tcp connect");
    let (mut slow, _) =
        tokio_tungstenite::client_async(url.as_str(), MaybeTlsStream::Plain(stream))
            .await
            .expect("slow client upgrade");
    // The 101 can reach a client before its session subscribed to commits;
    // events committed in between would not be its to receive.
    await_serving(&mut slow).await;
    // 8 MiB, more than the kernel buffers on both sides: its session is now stuck in a write.
    let big = big_events(128);
    submit_all(&relay.ctx.ingest, big).await;

    const EVENTS: u64 = 1_000;
    const CHUNK: u64 = 100;
    let last_seq = 128 + EVENTS;
    let mut fast = Vec::new();
    let mut progress = Vec::new();
    for _ in 0..100 {
        let mut client = connect(&url).await;
        await_serving(&mut client).await;
        let seen = Arc::new(AtomicU64::new(0));
        progress.push(seen.clone());
        fast.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            while seqs.last() != Some(&last_seq) {
                let seq = next_json(&mut client).await["seq"].as_u64().expect("seq");
                seqs.push(seq);
                seen.store(seq, Ordering::Release);
            }
            seqs
        }));
    }
    // The producer keeps pace with the fast clients (the test's own clients
    // share two cores with the relay); the slow one is left behind.
    for first in (129..=last_seq).step_by(CHUNK as usize) {
        let events = (first..first + CHUNK)
            .map(|n| event_sized(n, "call.ringing", Vendor::Voip24h, "main", None, 200))
            .collect();
        let last = *submit_all(&relay.ctx.ingest, events)
            .await
            .last()
            .expect("seq");
        eventually(WAIT, "fast clients keep up", || {
            progress.iter().all(|p| p.load(Ordering::Acquire) >= last)
        })
        .await;
    }
    for client in fast {
        let seqs = tokio::time::timeout(WAIT, client)
            .await
            .expect("fast clients finish while the slow one is stuck")
            .expect("client");
        assert_eq!(seqs, (129..=last_seq).collect::<Vec<_>>());
    }
    eventually(WAIT, "the slow client is dropped as slow", || {
        disconnects(&relay, "slow_consumer") == 1
    })
    .await;
    // Now it reads: what was buffered, then the 4008 close.
    let code = loop {
        match tokio::time::timeout(WAIT, slow.next())
            .await
            .expect("frames")
        {
            Some(Ok(Message::Close(c))) => break c.map(|c| c.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::from(4008)));
    assert_eq!(disconnects(&relay, "write_stalled"), 0);
}

/// A client behind a 4 KiB receive buffer that reads nothing until the test
/// says so: a few MiB of events leave its session waiting on a socket write.
async fn unread_client(relay: &TestRelay, query: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(relay.addr).await.expect("tcp connect");
    let (client, _) =
        tokio_tungstenite::client_async(ws_url(relay, query), MaybeTlsStream::Plain(stream))
            .await
            .expect("upgrade");
    client
}

/// A client replaying history does not hold the live ring meanwhile: a
/// receiver that is not read keeps every event committed after it in the
/// shared ring (65,536 events), so one client replaying a full journal more
/// slowly than events came in added about 100 MB to the relay
/// (steady-state audit, 2026-12-01). It still gets every event once, in
/// order, across the seam between history and live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaying_client_does_not_hold_live_events_in_memory() {
    let relay = start_relay(
        "[websocket]\nclient_queue = 100000\nping_interval = \"600s\"\npong_timeout = \"600s\"\n",
    )
    .await;
    // 8 MiB of history, more than the kernel buffers: the replay waits on a write.
    const HISTORY: u64 = 128;
    let history = big_events(HISTORY);
    submit_all(&relay.ctx.ingest, history).await;
    let mut client = unread_client(&relay, "?since=0").await;
    // Its session is replaying (and took its live subscription before that).
    assert_eq!(next_json(&mut client).await["seq"], 1);
    const LIVE: u64 = 1_000;
    let live = (HISTORY + 1..=HISTORY + LIVE)
        .map(|n| event_sized(n, "call.ringing", Vendor::Voip24h, "main", None, 200))
        .collect();
    submit_all(&relay.ctx.ingest, live).await;
    eventually(WAIT, "no live event held for the replaying client", || {
        relay.ctx.hub.live_held() == 0
    })
    .await;
    let seqs = seqs_until(&mut client, HISTORY + LIVE).await;
    assert_eq!(seqs, (2..=HISTORY + LIVE).collect::<Vec<_>>());
    assert_eq!(disconnects(&relay, "slow_consumer"), 0);
}

/// Events a client filters out are not in its queue: a filtered client that
/// is stuck only while unrelated traffic floods in is not closed as slow, but
/// it is once more than `client_queue` of its own events wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_events_a_client_asked_for_count_toward_client_queue() {
    let relay = start_relay(
        "[websocket]\nclient_queue = 500\nping_interval = \"600s\"\npong_timeout = \"600s\"\n",
    )
    .await;
    let mut filtered = unread_client(&relay, "?type=call.*").await;
    let mut slow_filtered = unread_client(&relay, "?type=call.*").await;
    let mut unfiltered = unread_client(&relay, "").await;
    for client in [&mut filtered, &mut slow_filtered, &mut unfiltered] {
        await_serving(client).await;
    }
    // 8 MiB that every client asked for: each session is now stuck in a write
    // with fewer than 128 of its events queued behind it.
    let big = big_events(128);
    submit_all(&relay.ctx.ingest, big).await;
    // 2,000 events none of the filtered clients asked for.
    for chunk in 0..20 {
        let unrelated = (0..100)
            .map(|i| {
                event(
                    1_000 + chunk * 100 + i,
                    "agent.login",
                    Vendor::Voipex,
                    "main",
                    None,
                )
            })
            .collect();
        submit_all(&relay.ctx.ingest, unrelated).await;
    }
    // The unfiltered client's queue holds them all: it is closed as slow. The
    // filtered sessions saw the same commits at the same moment.
    eventually(WAIT, "the unfiltered client is closed as slow", || {
        disconnects(&relay, "slow_consumer") >= 1
    })
    .await;
    assert_eq!(close_code(&mut unfiltered).await, Some(4008));

    // The filtered client reads: everything it asked for, then what comes next.
    let sentinel = submit_all(
        &relay.ctx.ingest,
        vec![event(5_000, "call.hangup", Vendor::Voip24h, "main", None)],
    )
    .await[0];
    let mut expected: Vec<u64> = (1..=128).collect();
    expected.push(sentinel);
    assert_eq!(seqs_until(&mut filtered, sentinel).await, expected);

    // The other one still reads nothing; 600 of its own events overflow its queue.
    let own = (0..600)
        .map(|i| event(6_000 + i, "call.ringing", Vendor::Voip24h, "main", None))
        .collect();
    submit_all(&relay.ctx.ingest, own).await;
    eventually(WAIT, "the filtered client that is slow is closed", || {
        disconnects(&relay, "slow_consumer") == 2
    })
    .await;
    assert_eq!(close_code(&mut slow_filtered).await, Some(4008));
    // The reading client was not touched.
    let last = relay.ctx.journal.last_seq();
    assert_eq!(seqs_until(&mut filtered, last).await.last(), Some(&last));
    assert_eq!(disconnects(&relay, "slow_consumer"), 2);
}

/// A client that keeps reading, but more slowly than its events come, is
/// closed with 4008 once its queue is past `client_queue`, counted as
/// `slow_consumer`. Its socket takes data every few hundred ms at most (the
/// kernel wakes a writer once a third of its send buffer, about 4 MiB on
/// loopback, is free), so no single write waits 500 ms: before (review of
/// the fan-out), only one write stalled for 500 ms closed a client, and this
/// one was served on with its queue growing without bound, held in the
/// live ring. A client beside it that keeps up gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reading_steadily_but_too_slowly_is_closed_4008() {
    a_slow_reader_is_closed_4008("").await;
}

/// As above, for a client filtered to one account, which listens on a
/// queue of its account's events (twice `client_queue` deep), not the
/// shared ring: its `client_queue` overflows before that queue fills. With
/// the first form of those queues (128 events), it fell off first, caught
/// up from the journal at its own pace, and was never closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_one_account_reading_steadily_but_too_slowly_is_closed_4008() {
    a_slow_reader_is_closed_4008("?account=main").await;
}

async fn a_slow_reader_is_closed_4008(query: &str) {
    // pong_timeout bounds each write: 10 min, so only the queue rule can
    // close the slow reader within this test.
    let relay = start_relay(
        "[websocket]\nclient_queue = 100\nping_interval = \"600s\"\npong_timeout = \"600s\"\n",
    )
    .await;
    let mut slow = unread_client(&relay, query).await;
    await_serving(&mut slow).await;
    let mut fast = connect(&ws_url(&relay, "")).await;
    await_serving(&mut fast).await;

    // One 64 KiB frame every 20 ms, about 3 MiB/s: each of its session's
    // writes that waits, waits for about 1.3 MiB to drain, some 400 ms,
    // under the 500 ms one write alone would need; and its queue grows,
    // with room to spare on a loaded machine, as the events come faster.
    // Once the relay has closed it, the rest at once, up to the close frame.
    let paced = Arc::new(AtomicBool::new(true));
    let read = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn({
        let (paced, read) = (paced.clone(), read.clone());
        async move {
            loop {
                match tokio::time::timeout(WAIT, slow.next())
                    .await
                    .expect("the slow client gets a frame in time")
                {
                    Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                    Some(Ok(_)) => read.fetch_add(1, Ordering::AcqRel),
                    other => panic!("expected frames, then a close: {other:?}"),
                };
                if paced.load(Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    });

    const EVENTS: u64 = 1_200;
    let (seen_tx, mut seen) = tokio::sync::watch::channel(0u64);
    let fast = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.last() != Some(&EVENTS) {
            let seq = next_json(&mut fast).await["seq"].as_u64().expect("seq");
            seqs.push(seq);
            seen_tx.send_replace(seq);
        }
        seqs
    });
    // 75 MiB in all, posted faster than the slow client reads, as fast as
    // the other one reads: 40 events once it has the last (a burst past
    // `client_queue` would overflow any client's queue).
    for first in (1..=EVENTS).step_by(40) {
        let events = (first..first + 40)
            .map(|n| event_sized(n, "call.cdr", Vendor::Voip24h, "main", None, 64 * 1024))
            .collect();
        let last = *submit_all(&relay.ctx.ingest, events)
            .await
            .last()
            .expect("seq");
        tokio::time::timeout(WAIT, seen.wait_for(|seen| *seen >= last))
            .await
            .expect("the fast client keeps up")
            .expect("the fast client reads on");
    }
    let seqs = tokio::time::timeout(WAIT, fast)
        .await
        .expect("the fast client gets every event")
        .expect("fast client");
    assert_eq!(seqs, (1..=EVENTS).collect::<Vec<_>>());

    eventually(WAIT, "the slow reader is closed as slow", || {
        disconnects(&relay, "slow_consumer") == 1
    })
    .await;
    paced.store(false, Ordering::Release);
    let code = tokio::time::timeout(WAIT, reader)
        .await
        .expect("the slow client reads up to the close")
        .expect("reader");
    assert_eq!(code, Some(4008));
    let read = read.load(Ordering::Acquire);
    assert!(read < EVENTS, "closed before it had them all: {read}");
    assert_eq!(disconnects(&relay, "write_stalled"), 0);
}

/// A WebSocket is the fan-out's once upgraded: the HTTP server's bounds on a
/// connection without requests (head, idle) do not cut it. A canary that
/// connects after it and sends nothing is closed by them; the WebSocket still
/// gets the event committed after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_outlives_the_http_connection_bounds() {
    let bound = Duration::from_millis(300);
    let timeouts = callrelay::http_serve::HttpTimeouts {
        header_read: bound,
        idle: bound,
    };
    let relay = common::start_relay_with_http_timeouts("", timeouts).await;
    let mut client = connect(&ws_url(&relay, "")).await;
    await_serving(&mut client).await;
    let mut canary = TcpStream::connect(relay.addr).await.expect("connect");
    // Well past the bound on a busy machine, and under the 10 s head
    // bound a relay without these timeouts would close it by.
    assert!(
        common::await_close(&mut canary, Duration::from_secs(5)).await,
        "the canary is still open"
    );
    let seqs = submit_all(
        &relay.ctx.ingest,
        vec![event(1, "call.ringing", Vendor::Tel4vn, "main", None)],
    )
    .await;
    assert_eq!(next_json(&mut client).await["seq"], seqs[0]);
}

/// Starts a relay with ping settings shorter than a config file may give
/// (1 s at least), so the test does not wait seconds for each round.
async fn start_relay_pinging(rest: &str, ping: Duration, pong: Duration) -> TestRelay {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("{}{}", base_config(dir.path()), rest);
    common::start_relay_tuned(dir, &text, |config| {
        config.websocket.ping_interval = unspanned(HumanDuration(ping));
        config.websocket.pong_timeout = unspanned(HumanDuration(pong));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pong_closes_and_a_stalled_write_counts_as_slow() {
    // A pong is due 2 s after its ping: the reading client shares the busy
    // cores with the relay, and a half-second stall must not close it.
    let relay = start_relay_pinging(
        "[websocket]\nclient_queue = 100000\n",
        Duration::from_millis(200),
        Duration::from_secs(2),
    )
    .await;
    let url = ws_url(&relay, "");

    // A client that reads (and so answers pings) stays connected past many ping rounds.
    let mut alive = connect(&url).await;
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        while pings < 6 {
            match alive.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                Some(Ok(_)) => {}
                other => panic!("the reading client was closed: {other:?}"),
            }
        }
        alive
    });

    // One that never reads never pongs.
    let mut silent = connect(&url).await;
    eventually(WAIT, "the silent client is closed for no pong", || {
        disconnects(&relay, "pong_timeout") == 1
    })
    .await;
    assert_eq!(close_code(&mut silent).await, Some(1002));
    let mut alive = tokio::time::timeout(WAIT, reader)
        .await
        .expect("pings")
        .expect("reader");
    alive.close(None).await.expect("close");

    // A stalled socket with a roomy queue: the write deadline (pong_timeout) ends it with 4008.
    let relay2 = start_relay_pinging(
        "[websocket]\nclient_queue = 100000\n",
        Duration::from_secs(60),
        Duration::from_millis(500),
    )
    .await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(relay2.addr).await.expect("tcp connect");
    let (mut stalled, _) =
        tokio_tungstenite::client_async(ws_url(&relay2, ""), MaybeTlsStream::Plain(stream))
            .await
            .expect("upgrade");
    // Subscribed before the events are committed; it reads nothing after.
    await_serving(&mut stalled).await;
    let events = (1..=3_000)
        .map(|n| event_sized(n, "call.ringing", Vendor::Voip24h, "main", None, 1_000))
        .collect();
    submit_all(&relay2.ctx.ingest, events).await;
    eventually(WAIT, "the stalled client is dropped", || {
        disconnects(&relay2, "write_stalled") == 1
    })
    .await;
    assert_eq!(close_code(&mut stalled).await, Some(4008));
    eventually(WAIT, "no clients left", || {
        relay2.ctx.metrics.ws_clients.get() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_only_after_every_session_ended_and_freed_the_journal() {
    // pong_timeout is also the write deadline: 10 min, so only the shutdown
    // itself can end a session stuck in a write within this test.
    let TestRelay {
        relay, ctx, dir, ..
    } = start_relay("[websocket]\nping_interval = \"600s\"\npong_timeout = \"600s\"\n").await;
    let relay = relay.expect("relay");
    let url = format!("ws://{}/ws", relay.addr);
    // One client that never reads, behind a tiny receive buffer: 8 MiB of
    // events leave its session waiting on a socket write.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(relay.addr).await.expect("tcp connect");
    let (mut stuck, _) =
        tokio_tungstenite::client_async(url.as_str(), MaybeTlsStream::Plain(stream))
            .await
            .expect("stuck client upgrade");
    // Subscribed before the events are committed: they are queued to it.
    await_serving(&mut stuck).await;
    // One that gets no event (its filter matches none) and never answers the
    // 1001 close: its session waits out its close grace.
    let mut silent = connect(&format!("{url}?type=nothing.*")).await;
    await_serving(&mut silent).await;
    assert_eq!(ctx.metrics.ws_clients.get(), 2);
    let big = big_events(128);
    submit_all(&ctx.ingest, big).await;

    let metrics = ctx.metrics.clone();
    drop(ctx);
    relay.shutdown();
    tokio::time::timeout(WAIT, relay.wait())
        .await
        .expect("shutdown is bounded even with clients that never answer")
        .expect("relay stopped cleanly");

    // Checked at once, not eventually: `wait` returned, so the sessions are over.
    assert_eq!(
        metrics.ws_clients.get(),
        0,
        "a WebSocket session outlived Relay::wait"
    );
    assert_eq!(
        metrics
            .ws_disconnects
            .with_label_values(&["shutdown"])
            .get(),
        2
    );
    let reopened = common::reopen_journal(dir.path());
    assert!(
        reopened.is_ok(),
        "the journal is still held after Relay::wait: {:?}",
        reopened.err()
    );
    drop((stuck, silent));
}

/// A session already closing for its own reason (here a slow consumer's
/// 4008) whose client reads nothing waits up to `pong_timeout` for its close
/// to go out and be answered; a shutdown then cuts that wait to the
/// shutdown's 250 ms. It used to wait the whole `pong_timeout`: the drain
/// gave up after 5 s and `Relay::wait` returned with the session still
/// running (WebSocket review, 2026-12-04).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_cuts_short_the_close_of_a_session_ending_for_its_own_reason() {
    let mut relay = start_relay(
        "[websocket]\nclient_queue = 10\nping_interval = \"600s\"\npong_timeout = \"600s\"\n",
    )
    .await;
    let mut unread = unread_client(&relay, "").await;
    // Subscribed before the events are committed, or it is never slow.
    await_serving(&mut unread).await;
    let big = big_events(128);
    submit_all(&relay.ctx.ingest, big).await;
    eventually(WAIT, "the unread client is dropped as slow", || {
        disconnects(&relay, "slow_consumer") == 1
    })
    .await;
    let metrics = relay.ctx.metrics.clone();
    assert_eq!(metrics.ws_clients.get(), 1, "the session is closing");
    let running = relay.relay.take().expect("relay");
    running.shutdown();
    tokio::time::timeout(WAIT, running.wait())
        .await
        .expect("shutdown is bounded")
        .expect("relay stopped cleanly");
    assert_eq!(
        metrics.ws_clients.get(),
        0,
        "the closing session outlived Relay::wait"
    );
    drop(unread);
}

/// Starts a relay on `dir`'s journal at a fixed address, retrying while the
/// previous relay's last sessions still hold the journal or the port.
async fn start_at(dir: &std::path::Path, listen: &str) -> Relay {
    let text = base_config(dir).replace("127.0.0.1:0", listen);
    let path = dir.join("relay.toml");
    std::fs::write(&path, &text).expect("config");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let config = Config::load(&path).expect("config");
        match Relay::start(config, path.clone()).await {
            Ok(r) => return r,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("restart: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("restart failed: {e}"),
        }
    }
}

/// Events `from..to` for the tail test: every fourth is not `call.*`; every
/// third has a pretty-printed payload, kept as sent in `data.raw`.
fn tail_events(from: u64, to: u64) -> Vec<IncomingEvent> {
    (from..to)
        .map(|n| {
            let ty = if n % 4 == 0 {
                "agent.login"
            } else {
                "call.ringing"
            };
            let mut e = event(n, ty, Vendor::Voip24h, "main", None);
            if n % 3 == 0 {
                let pretty =
                    serde_json::to_string_pretty(&json!({"n": n, "text": "a\nb"})).expect("json");
                e.raw = RawPayload::json(&pretty).expect("json");
            }
            e
        })
        .collect()
}

/// Journals `events` and appends the seqs that `--type call.*` should print.
async fn journal_expecting(
    ingest: &IngestHandle,
    events: Vec<IncomingEvent>,
    expected: &mut Vec<u64>,
) {
    let types: Vec<String> = events.iter().map(|e| e.event.event_type.clone()).collect();
    let seqs = submit_all(ingest, events).await;
    expected.extend(
        seqs.into_iter()
            .zip(types)
            .filter(|(_, ty)| ty.starts_with("call."))
            .map(|(seq, _)| seq),
    );
}

type TailLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Reads tail's stdout until it printed `last`, recording each line's seq.
async fn read_until(lines: &mut TailLines, printed: &mut Vec<u64>, last: u64) {
    while printed.last().copied() != Some(last) {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("tail printed in time")
            .expect("read")
            .expect("tail exited");
        let v: Value = serde_json::from_str(&line).expect("one JSON event per line");
        if v["data"]["raw"]["text"] == "a\nb" {
            // A pretty-printed payload, still on one line and unchanged.
            assert!(v["data"]["raw"]["n"].is_u64(), "{line}");
        }
        printed.push(v["seq"].as_u64().expect("seq"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_events_and_survives_a_relay_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start_at(dir.path(), "127.0.0.1:0").await;
    let addr = relay.addr;
    // From seq 0: a session counts as a client from its 101, before it
    // subscribes, and "from now" would miss what commits in between.
    let mut tail = spawn_tail(
        &format!("ws://{addr}/ws"),
        &["--type", "call.*", "--since", "0"],
    );
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let ctx = relay.ctx.clone();
    eventually(WAIT, "tail connected", || ctx.metrics.ws_clients.get() == 1).await;

    let mut expected = Vec::new();
    let mut printed = Vec::new();
    journal_expecting(&ctx.ingest, tail_events(1, 11), &mut expected).await;
    read_until(&mut lines, &mut printed, *expected.last().expect("some")).await;

    // Restart the relay on the same journal and port. Events land while
    // tail is away: journaled by a relay on another port, which tail cannot
    // reach, so they come to it only by its resume (journaled after the
    // restart, tail could have reconnected first and had them live).
    drop(ctx);
    relay.shutdown();
    relay.wait().await.expect("stopped");
    let away = start_at(dir.path(), "127.0.0.1:0").await;
    journal_expecting(&away.ctx.ingest, tail_events(11, 21), &mut expected).await;
    away.shutdown();
    away.wait().await.expect("stopped");
    let relay = start_at(dir.path(), &addr.to_string()).await;
    let ctx = relay.ctx.clone();
    eventually(WAIT, "tail reconnected", || {
        ctx.metrics.ws_clients.get() == 1
    })
    .await;
    journal_expecting(&ctx.ingest, tail_events(21, 27), &mut expected).await;
    read_until(&mut lines, &mut printed, *expected.last().expect("some")).await;
    assert_eq!(
        printed, expected,
        "every call.* event once, in order, across the restart"
    );

    tail.start_kill().expect("kill tail");
    drop(ctx);
    relay.shutdown();
    relay.wait().await.expect("stopped");
}

/// `callrelay tail --url wss://…` through a TLS proxy whose certificate a
/// private CA signed: refused (and retried, saying why on stderr) without
/// `--ca-file`, and printing events with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_reaches_a_relay_behind_a_tls_proxy_with_ca_file() {
    let ca = common::tls::TestCa::issue();
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = start_at(dir.path(), "127.0.0.1:0").await;
    let proxy = ca.tls_proxy(relay.addr).await;
    let url = format!("wss://{proxy}/ws");
    let tail = |extra: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_callrelay"))
            .args(["tail", "--url", &url])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn tail")
    };

    let mut untrusting = tail(&[]);
    let mut stderr = tokio::io::BufReader::new(untrusting.stderr.take().expect("stderr")).lines();
    let refused = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line.contains("certificate") {
                return line;
            }
        }
        panic!("tail exited without a certificate error")
    })
    .await
    .expect("tail said why within the time");
    assert!(refused.contains("retrying"), "{refused}");
    // What to do, in tail's own flag, and rustls's reason.
    assert!(
        refused.contains("set --ca-file to a PEM file of the CA that signed it")
            && refused.contains("UnknownIssuer"),
        "{refused}"
    );
    assert_eq!(relay.ctx.metrics.ws_clients.get(), 0);
    drop(untrusting);

    let ca_file = ca.ca_file.display().to_string();
    // From seq 0, as above: connected is not yet subscribed.
    let mut trusting = tail(&["--ca-file", &ca_file, "--since", "0"]);
    let mut lines = tokio::io::BufReader::new(trusting.stdout.take().expect("stdout")).lines();
    let ctx = relay.ctx.clone();
    eventually(WAIT, "tail connected", || ctx.metrics.ws_clients.get() == 1).await;
    let seqs = submit_all(&ctx.ingest, tail_events(1, 4)).await;
    let mut printed = Vec::new();
    read_until(&mut lines, &mut printed, *seqs.last().expect("some")).await;
    assert_eq!(printed, seqs);
    drop(trusting);
    drop(ctx);
    relay.shutdown();
    relay.wait().await.expect("stopped");
}

/// Runs `callrelay tail --url URL ARGS…`, its stdout piped, stderr inherited.
fn spawn_tail(url: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_callrelay"))
        .args(["tail", "--url", url])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tail")
}

/// `tail` said a gap with `eprintln!`, which panics (exit 101) on a stderr
/// that cannot be written (`2>/dev/full`, a pipe whose reader is gone): it
/// printed nothing after the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_goes_on_past_a_gap_when_its_stderr_cannot_be_written() {
    let relay = start_relay("").await;
    let first = event(1, "call.ringing", Vendor::Voip24h, "main", None);
    assert_eq!(submit_all(&relay.ctx.ingest, vec![first]).await, [1]);
    assert_eq!(expire_everything(&relay), 1);
    let second = event(2, "call.ringing", Vendor::Voip24h, "main", None);
    assert_eq!(submit_all(&relay.ctx.ingest, vec![second]).await, [2]);
    let full = dev_full();
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_callrelay"))
        .args(["tail", "--url", &ws_url(&relay, ""), "--since", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::from(full))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tail");
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    read_until(&mut lines, &mut printed, 2).await;
    assert_eq!(printed, [2]);
    tail.start_kill().expect("kill tail");
    relay.stop().await;
}

/// SIGTERM ends a tail blocked writing to a reader that does not read (a
/// paused pager) with 0, as the contract has it: a listener polled beside
/// the writes never ran while the write was blocked, so SIGTERM did nothing
/// until the reader read (the review of 7e21113).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_tail_blocked_on_its_stdout_with_0() {
    let relay = start_relay("").await;
    // A few MiB: more than the pipe holds.
    assert_eq!(
        submit_all(&relay.ctx.ingest, big_events(64)).await.len(),
        64
    );
    let mut tail = spawn_tail(&ws_url(&relay, ""), &["--since", "0"]);
    let _never_read = tail.stdout.take().expect("stdout");
    let pid = tail.id().expect("pid");
    let blocked = || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten();
        tasks.flatten().any(|task| {
            std::fs::read_to_string(task.path().join("wchan"))
                // `anon_pipe_write` (6.x), `pipe_write`, `pipe_wait` (< 5.5).
                .is_ok_and(|w| w.contains("pipe_w"))
        })
    };
    eventually(WAIT, "tail blocked writing to its stdout", blocked).await;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = tokio::time::timeout(WAIT, tail.wait())
        .await
        .expect("tail ended after SIGTERM while blocked")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "{status:?}");
    relay.stop().await;
}

/// An event over tungstenite's default 16 MiB message limit (possible with a
/// `server.max_body` above it) is printed, and so is the one after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_an_event_over_16_mib() {
    let relay = start_relay("").await;
    let mut tail = spawn_tail(&ws_url(&relay, ""), &["--since", "0"]);
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let padding = 17 * 1024 * 1024;
    let big = event_sized(1, "call.cdr", Vendor::Voip24h, "main", None, padding);
    assert_eq!(submit_all(&relay.ctx.ingest, vec![big]).await, [1]);
    submit_all(
        &relay.ctx.ingest,
        vec![event(2, "call.ringing", Vendor::Voip24h, "main", None)],
    )
    .await;
    let big = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("tail printed the big event in time")
        .expect("read")
        .expect("tail exited");
    assert!(big.len() > padding, "{} bytes", big.len());
    let big: Value = serde_json::from_str(&big).expect("one JSON event per line");
    assert_eq!(big["seq"], 1);
    assert_eq!(
        big["data"]["raw"]["pad"].as_str().map(str::len),
        Some(padding)
    );
    let mut printed = vec![1];
    read_until(&mut lines, &mut printed, 2).await;
    assert_eq!(printed, [1, 2]);
    tail.start_kill().expect("kill tail");
}

/// A WebSocket server that answers its `n`th connection (from 1) with a 404
/// when `refuse(n)`, else completes the handshake, reports `(n, when)` and
/// closes at once — as a misrouted or restarting proxy might.
async fn closing_ws_server(
    refuse: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(usize, tokio::time::Instant)>,
    tokio::task::JoinHandle<()>,
) {
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (upgraded, upgrades) = tokio::sync::mpsc::unbounded_channel();
    let refuse = Arc::new(refuse);
    let server = tokio::spawn(async move {
        for n in 1.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (upgraded, refuse) = (upgraded.clone(), refuse.clone());
            tokio::spawn(async move {
                // tungstenite's callback type, not ours, carries the large error.
                #[allow(clippy::result_large_err)]
                let answer = move |_: &Request, response: Response| {
                    if refuse(n) {
                        let mut not_found = ErrorResponse::new(Some("no route".into()));
                        *not_found.status_mut() = tungstenite::http::StatusCode::NOT_FOUND;
                        Err(not_found)
                    } else {
                        Ok(response)
                    }
                };
                if let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, answer).await {
                    let _ = upgraded.send((n, tokio::time::Instant::now()));
                    let _ = ws.close(None).await;
                }
            });
        }
    });
    (addr, upgrades, server)
}

/// A server that completes every WebSocket handshake and closes at once, as a
/// misrouted proxy might: such connections prove nothing, so tail's backoff
/// keeps growing between them instead of starting over at 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_backs_off_from_connections_that_close_at_once() {
    let (addr, mut upgrades, server) = closing_ws_server(|_| false).await;
    let _tail = spawn_tail(&format!("ws://{addr}/ws"), &[]);
    let (_, first) = tokio::time::timeout(WAIT, upgrades.recv())
        .await
        .expect("tail connected")
        .expect("server");
    // Waits double from 100 ms, each jittered down to no less than half: the
    // 6th connection comes at least 50+100+200+400+800 ms after the first. A
    // backoff reset on every handshake waits at most 100 ms each time.
    let window = Duration::from_millis(1_500);
    let mut count = 1;
    while let Ok(Some(_)) = tokio::time::timeout_at(first + window, upgrades.recv()).await {
        count += 1;
    }
    assert!(
        (2..=5).contains(&count),
        "{count} connections within {window:?}: tail retried, with a growing backoff"
    );
    server.abort();
}

/// A wrong `--url` path is reported and ends tail, rather than being retried
/// forever; the token in the URL's query stays out of the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_exits_1_on_a_404_before_it_ever_connected() {
    let relay = start_relay("").await;
    let url = format!("ws://{}/wrong?token=s3cret", relay.addr);
    let (code, stderr) = tail_until_it_exits(&url, &[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("404") && stderr.contains("\"/wrong\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("the relay serves WebSocket clients at \"/ws\""),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// A query the relay refuses (400) is refused again at every retry: tail
/// retried it for good, saying only "HTTP error: 400 Bad Request"
/// (operator-messages review, 2026-12-05). It exits 1 with the relay's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_exits_1_on_a_400_with_the_relays_reason() {
    let relay = start_relay("").await;
    let url = format!("ws://{}/ws?account=ph%E1t", relay.addr);
    let (code, stderr) = tail_until_it_exits(&url, &[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("HTTP 400") && stderr.contains("UTF-8"),
        "{stderr}"
    );
}

/// A file every write to fails with "no space left on device".
fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
}

/// Runs `callrelay tail` until it exits by itself: its exit code and stderr.
async fn tail_until_it_exits(url: &str, args: &[&str]) -> (Option<i32>, String) {
    tail_into_until_it_exits(url, args, std::process::Stdio::null()).await
}

/// [`tail_until_it_exits`] with its stdout going to `stdout`.
async fn tail_into_until_it_exits(
    url: &str,
    args: &[&str],
    stdout: std::process::Stdio,
) -> (Option<i32>, String) {
    let tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_callrelay"))
        .args(["tail", "--url", url])
        .args(args)
        .env_remove("CALLRELAY_WS_TOKEN")
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tail");
    let out = tokio::time::timeout(WAIT, tail.wait_with_output())
        .await
        .expect("tail exited in time")
        .expect("tail output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr)
}

/// A tail started before its relay says on stderr that it cannot connect,
/// and then that it connected: at tail's default level (`warn`) the
/// "connected" line was an `info` and never shown, so stderr ended on the
/// retry warning while tail was working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_says_it_connected_after_it_could_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An address nothing listens on once this relay is gone.
    let first = start_at(dir.path(), "127.0.0.1:0").await;
    let addr = first.addr;
    first.shutdown();
    first.wait().await.expect("stopped");
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_callrelay"))
        .args(["tail", "--url", &format!("ws://{addr}/ws")])
        .env_remove("CALLRELAY_WS_TOKEN")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tail");
    let mut stderr = tokio::io::BufReader::new(tail.stderr.take().expect("stderr")).lines();
    let mut line_saying = async |words: &str| {
        tokio::time::timeout(WAIT, async {
            while let Some(line) = stderr.next_line().await.expect("stderr") {
                if line.contains(words) {
                    return;
                }
            }
            panic!("tail's stderr ended before {words:?}");
        })
        .await
        .unwrap_or_else(|_| panic!("no {words:?} on tail's stderr"));
    };
    line_saying("cannot connect to the relay").await;
    let relay = start_at(dir.path(), &addr.to_string()).await;
    line_saying("connected to the relay").await;
    tail.start_kill().expect("kill tail");
    relay.shutdown();
    relay.wait().await.expect("stopped");
}

/// A token the relay refuses ends tail (exit 1) with what to fix, rather
/// than a retry every few seconds forever; the token is not printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_exits_1_when_the_relay_refuses_its_token() {
    let relay = start_relay("[websocket]\ntokens = [\"right\"]\n").await;
    let url = ws_url(&relay, "");
    let (code, stderr) = tail_until_it_exits(&url, &["--token", "s3cret-wrong"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refused the token (HTTP 401: the token is not accepted)"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let (code, stderr) = tail_until_it_exits(&url, &[]).await;
    assert_eq!(code, Some(1), "no token at all: {stderr}");
}

/// An `account` in tail's `--url` outside its token's accounts ends tail
/// with the relay's reason (403), not a word about a wrong token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_says_why_the_relay_forbids_an_account_outside_its_tokens_scope() {
    let relay = start_scoped_relay("{ token = \"team-hn\", accounts = [\"hn\"] }").await;
    let url = ws_url(&relay, "?account=sg");
    let (code, stderr) = tail_until_it_exits(&url, &["--token", "team-hn"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the relay refused the connection (HTTP 403: this token may not see account \"sg\""
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("refused the token"), "{stderr}");
}

/// `callrelay tail | head -1`: once its reader is gone, tail ends quietly
/// (exit 0) at the next event it would print, not with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_exits_0_once_its_stdout_is_closed() {
    let relay = start_relay("").await;
    // From seq 0: the first event is printed whether it commits before
    // tail connects or after.
    let mut tail = spawn_tail(&ws_url(&relay, ""), &["--since", "0"]);
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let first = event(1, "call.ringing", Vendor::Voip24h, "main", None);
    assert_eq!(submit_all(&relay.ctx.ingest, vec![first]).await, [1]);
    let mut printed = Vec::new();
    read_until(&mut lines, &mut printed, 1).await;
    drop(lines);
    let second = event(2, "call.ringing", Vendor::Voip24h, "main", None);
    assert_eq!(submit_all(&relay.ctx.ingest, vec![second]).await, [2]);
    let status = tokio::time::timeout(WAIT, tail.wait())
        .await
        .expect("tail exited once it could not print")
        .expect("tail status");
    assert_eq!(status.code(), Some(0));
    relay.stop().await;
}

/// A stdout that fails otherwise than by closing (`> /dev/full`: no space)
/// is an error, not the quiet end of `| head -1`: exit 1 and why, so a
/// script that saves tail's output to a full disk does not take it for done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_exits_1_when_its_stdout_cannot_be_written() {
    let relay = start_relay("").await;
    let first = event(1, "call.ringing", Vendor::Voip24h, "main", None);
    assert_eq!(submit_all(&relay.ctx.ingest, vec![first]).await, [1]);
    let full = dev_full();
    let (code, stderr) =
        tail_into_until_it_exits(&ws_url(&relay, ""), &["--since", "0"], full.into()).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
    relay.stop().await;
}

/// Once a URL has served tail, a 404 there is a proxy whose route is gone
/// while the relay restarts: retried, not fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_retries_a_404_after_it_was_connected() {
    // Upgrade and close, then a 404, then upgrade again.
    let (addr, mut upgrades, server) = closing_ws_server(|n| n == 2).await;
    let _tail = spawn_tail(&format!("ws://{addr}/ws"), &[]);
    for expected in [1, 3] {
        let (n, _) = tokio::time::timeout(WAIT, upgrades.recv())
            .await
            .expect("tail connected again after the 404")
            .expect("server");
        assert_eq!(n, expected);
    }
    server.abort();
}

/// RFC 6455 §4.2.2: a server that does not speak the client's
/// `Sec-WebSocket-Version` answers with the version it speaks, so the
/// client can retry with it. axum's 400 carried none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_version_other_than_13_is_told_the_one_spoken() {
    let relay = start_relay("").await;
    let url = ws_url(&relay, "?since=0");
    match try_connect(&url, Some(("sec-websocket-version", "8"))).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 400);
            let spoken = response.headers().get("sec-websocket-version");
            assert_eq!(
                spoken.and_then(|v| v.to_str().ok()),
                Some("13"),
                "{:?}",
                response.headers()
            );
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    assert_eq!(refused(&relay, "not_websocket"), 1);
}
