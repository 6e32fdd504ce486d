//! The SPRecord SSE source against a real SSE server (better-sse, in
//! tests/peers/sprecord) on 127.0.0.1: three streams deduplicated into one,
//! resume with Last-Event-ID, reconnection after drops and silent hangs, the
//! three-connection limit, and 401/429/500/malformed answers.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use common::proxy::ProxyPeer;
use common::tls::TestCa;
use common::{TestRelay, eventually, start_relay};

const ACCOUNT: &str = "office";
const WAIT: Duration = Duration::from_secs(20);

/// The SPRecord stand-in: a node process serving `/sys/events` and `/control/*`.
struct Peer {
    child: Child,
    base: String,
    /// `https://…` of the same routes, for a peer started with `start_tls`.
    tls_base: Option<String>,
    http: reqwest::Client,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn start() -> Peer {
        Peer::spawn(&[])
    }

    /// A peer that also serves `/sys/events` over https, with a certificate from `ca`.
    fn start_tls(ca: &TestCa) -> Peer {
        Peer::spawn(&[
            ("SPRECORD_PEER_TLS_CERT", &ca.server_cert),
            ("SPRECORD_PEER_TLS_KEY", &ca.server_key),
        ])
    }

    fn spawn(env: &[(&str, &std::path::Path)]) -> Peer {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/sprecord");
        assert!(
            std::path::Path::new(dir)
                .join("node_modules/better-sse")
                .exists(),
            "run tests/peers/sprecord/setup.sh first (scripts/test.sh does)"
        );
        let mut child = Command::new("node")
            .arg("server.js")
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node (is Node.js installed?)");
        let stdout = child.stdout.take().expect("peer stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("peer announces its port");
        let announced: Value = serde_json::from_str(&line).expect("peer port line");
        let port = announced["port"].as_u64().expect("port");
        let tls_port = announced["tls_port"].as_u64();
        Peer {
            child,
            base: format!("http://127.0.0.1:{port}"),
            tls_base: tls_port.map(|port| format!("https://127.0.0.1:{port}")),
            http: reqwest::Client::new(),
        }
    }

    async fn state(&self) -> Value {
        self.get("/control/state").await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.try_get(path).await;
        assert!(
            status.is_success(),
            "peer {path} failed or timed out: {body}"
        );
        body
    }

    /// The status and body of a control request (a long-poll that timed
    /// out is 408, with the state).
    async fn try_get(&self, path: &str) -> (reqwest::StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("peer control");
        let status = resp.status();
        (status, resp.json().await.expect("peer json"))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("peer control")
            .json()
            .await
            .expect("peer json")
    }

    /// Long-polls the peer until `query` holds (e.g. `open=3&total=4`).
    async fn wait(&self, query: &str) -> Value {
        self.get(&format!("/control/wait?{query}&timeout_ms=15000"))
            .await
    }

    /// Sends events; `to` is `"all"` or a list of the peer's connection ids.
    async fn send(&self, events: &[Value], to: Value) -> Value {
        self.post("/control/send", json!({"events": events, "to": to}))
            .await
    }

    async fn open_conns(&self) -> Vec<u64> {
        ids(&self.state().await["open"])
    }

    /// What every test asserts at the end: the account never held a 4th connection.
    async fn assert_never_over_limit(&self) {
        let s = self.state().await;
        assert!(
            s["max_concurrent"].as_u64().unwrap() <= 3,
            "the peer saw more than 3 concurrent connections: {s}"
        );
        assert_eq!(s["rejected_over_limit"], 0, "{s}");
    }
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id"))
        .collect()
}

/// `toml` (from [`sprecord_toml`]) with another `read_timeout`; fails if
/// the template no longer says `read_timeout = "1s"`, where a `replace`
/// would change nothing without a word.
fn with_read_timeout(toml: &str, timeout: &str) -> String {
    let default = "read_timeout = \"1s\"";
    assert!(toml.contains(default), "the template's {default} moved");
    toml.replace(default, &format!("read_timeout = \"{timeout}\""))
}

/// Relay config for one account on `peer`, with short timings so tests are fast.
fn sprecord_toml(peer: &Peer, streams: u8, extra: &str) -> String {
    sprecord_toml_at(&peer.base, streams, extra)
}

/// As `sprecord_toml`, for the server at `url`.
fn sprecord_toml_at(url: &str, streams: u8, extra: &str) -> String {
    format!(
        "[[sprecord]]\naccount = \"{ACCOUNT}\"\nurl = \"{url}\"\nstreams = {streams}\n\
         read_timeout = \"1s\"\nconnect_timeout = \"2s\"\nbackoff_min = \"50ms\"\n\
         backoff_max = \"300ms\"\nbusy_backoff = \"400ms\"\nauth_backoff = \"300ms\"\n\
         stagger = \"20ms\"\nconnect_grace = \"200ms\"\n{extra}\n"
    )
}

/// Call `n`'s event of `kind`, as SPRecord sends it (call ids alternate string/number).
fn call_event(n: u64, kind: &str) -> Value {
    let call_id = if n.is_multiple_of(2) {
        json!(n)
    } else {
        json!(n.to_string())
    };
    let payload = match kind {
        "call_end" => {
            json!({"call_id": call_id, "record_id": n, "duration": n % 60, "status": "success"})
        }
        "answer_elsewhere" => json!({"call_id": call_id, "number": "107"}),
        _ => {
            json!({"call_id": call_id, "call_src": "+79829900000", "call_dst": "107", "trunk": "GSM1"})
        }
    };
    json!({"device_id": "dev-1", "event_type": kind, "payload": payload})
}

const CALL_STEPS: [&str; 4] = [
    "incoming_call",
    "start_talk",
    "answer_elsewhere",
    "call_end",
];

/// Calls `first..first+calls`, each call's steps in order, interleaved across calls.
fn calls(first: u64, calls: u64) -> Vec<Value> {
    let mut out = Vec::new();
    for step in CALL_STEPS {
        for n in first..first + calls {
            out.push(call_event(n, step));
        }
    }
    out
}

fn counter(relay: &TestRelay, name: &str, labels: &[&str]) -> u64 {
    let m = &relay.ctx.metrics;
    match name {
        "received" => m.events_received.with_label_values(labels).get(),
        "duplicate" => m.events_duplicate.with_label_values(labels).get(),
        "reconnects" => m.upstream_reconnects.with_label_values(labels).get(),
        "malformed" => m.upstream_malformed.with_label_values(labels).get(),
        other => panic!("no counter {other}"),
    }
}

fn received(relay: &TestRelay) -> u64 {
    counter(relay, "received", &["sprecord", ACCOUNT, "sse"])
}

fn reconnects(relay: &TestRelay, reason: &str) -> u64 {
    counter(relay, "reconnects", &["sprecord", ACCOUNT, reason])
}

/// The `raw` SPRecord messages of the journal, in seq order.
fn journaled_raw(relay: &TestRelay) -> Vec<Value> {
    relay
        .event_values()
        .into_iter()
        .map(|e| e["data"]["raw"].clone())
        .collect()
}

/// The journal holds exactly `expected` (as a multiset, compared by canonical text).
fn assert_journal_is(relay: &TestRelay, expected: &[Value]) {
    let canon = |v: &Value| callrelay::event::canonical_json(v);
    let mut got: Vec<String> = journaled_raw(relay).iter().map(canon).collect();
    let mut want: Vec<String> = expected.iter().map(canon).collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "journaled count");
    assert!(got == want, "journaled events differ from those sent");
}

async fn readyz(relay: &TestRelay) -> (u16, String) {
    let resp = reqwest::get(relay.url("/readyz")).await.expect("readyz");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_events_on_three_streams_are_journaled_once_in_call_order() {
    let peer = Peer::start();
    let relay = start_relay(&sprecord_toml(&peer, 3, "")).await;
    peer.wait("open=3").await;

    // 250 calls × 4 steps, pretty-printed (multi-line `data:`), to all streams.
    let events = calls(1, 250);
    assert_eq!(events.len(), 1000);
    let sent = peer
        .post(
            "/control/send",
            json!({"events": events, "to": "all", "multiline": true}),
        )
        .await;
    assert_eq!(ids(&sent["sent_to"]).len(), 3);
    relay.wait_for_seq(1000, WAIT).await;
    // Every stream delivered every event and each submit was answered: only
    // then is "exactly 1000" final (2000 of the 3000 were duplicates).
    eventually(WAIT, "3000 received, 2000 duplicates", || {
        received(&relay) == 3000 && counter(&relay, "duplicate", &["sprecord", ACCOUNT]) == 2000
    })
    .await;
    assert_eq!(relay.ctx.journal.last_seq(), 1000);
    assert_journal_is(&relay, &events);
    // `raw` is each `data:` payload as the server wrote it, here indented
    // over several lines.
    for e in relay.events() {
        let json = String::from_utf8_lossy(&e.json).into_owned();
        let raw = json
            .split_once("\"raw\":")
            .and_then(|(_, rest)| rest.strip_suffix("}}"))
            .unwrap_or_else(|| panic!("no raw at the end: {json}"));
        assert!(raw.starts_with("{\n \"device_id\": \"dev-"), "{json}");
    }

    // In order per call: each call's steps appear in the order they were sent.
    let mut progress = std::collections::HashMap::<String, usize>::new();
    for raw in journaled_raw(&relay) {
        let call = callrelay::event::id_text(&raw["payload"]["call_id"]).expect("call id");
        let step = CALL_STEPS
            .iter()
            .position(|s| raw["event_type"] == *s)
            .expect("known step");
        let seen = progress.entry(call.clone()).or_insert(0);
        assert_eq!(
            *seen, step,
            "call {call}: step {step} journaled out of order"
        );
        *seen += 1;
    }
    assert_eq!(progress.len(), 250);
    assert!(progress.values().all(|&n| n == 4));

    // One row per stream in /status, all connected.
    let status: Value = reqwest::get(relay.url("/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows: Vec<&Value> = status["sources"]
        .as_array()
        .expect("/status sources")
        .iter()
        .filter(|row| row["vendor"] == "sprecord" && row["account"] == ACCOUNT)
        .collect();
    let streams: Vec<&str> = rows
        .iter()
        .filter_map(|row| row["stream"].as_str())
        .collect();
    assert_eq!(streams, ["0", "1", "2"], "{status}");
    for row in &rows {
        assert_eq!(row["state"], "connected", "{row}");
        let rfc3339 = |field: &str| {
            row[field].as_str().is_some_and(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .is_ok()
            })
        };
        assert!(rfc3339("since") && rfc3339("last_event"), "{row}");
        assert!(row["reconnects"].is_u64(), "{row}");
    }
    peer.assert_never_over_limit().await;
    // Stopping returns only when every stream is closed: the peer sees none left.
    relay.stop().await;
    peer.wait("concurrent=0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reaching_only_one_stream_while_the_others_are_down_are_journaled() {
    let peer = Peer::start();
    let relay = start_relay(&sprecord_toml(&peer, 3, "")).await;
    let open = ids(&peer.wait("open=3").await["open"]);

    // Keep two streams down: drop them and refuse their reconnects with 500s.
    peer.post("/control/fail", json!({"status": 500, "count": 1000}))
        .await;
    for conn in &open[1..] {
        peer.post("/control/drop", json!({"conn": conn})).await;
    }
    peer.wait("open=1&refused=2").await;

    let events = calls(1000, 25);
    peer.send(&events, json!([open[0]])).await;
    relay.wait_for_seq(events.len() as u64, WAIT).await;
    assert_eq!(received(&relay), events.len() as u64);
    assert!(reconnects(&relay, "http_5xx") >= 2);

    // The others come back once the peer accepts again, and carry new events.
    peer.post(
        "/control/fail",
        json!({"status": 500, "count": 0, "clear": true}),
    )
    .await;
    peer.wait("open=3").await;
    let more = calls(2000, 5);
    peer.send(&more, json!("all")).await;
    let total = (events.len() + more.len()) as u64;
    relay.wait_for_seq(total, WAIT).await;
    let all: Vec<Value> = events.iter().chain(&more).cloned().collect();
    eventually(WAIT, "every stream delivered the new events", || {
        received(&relay) == events.len() as u64 + 3 * more.len() as u64
    })
    .await;
    assert_journal_is(&relay, &all);
    peer.assert_never_over_limit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_hung_streams_reconnect_while_the_others_carry_on() {
    let peer = Peer::start();
    // A read timeout of 3 s, 30 keep-alives (100 ms apart): a healthy stream
    // times out only if busy cores stall its reads for 3 s, not the 1 s of
    // the other tests, so that only the hung one does is still asserted.
    let toml = with_read_timeout(&sprecord_toml(&peer, 3, ""), "3s");
    let relay = start_relay(&toml).await;
    let open = ids(&peer.wait("open=3").await["open"]);
    let mut sent = Vec::new();

    let a = calls(1, 10);
    peer.send(&a, json!("all")).await;
    sent.extend(a);

    // Drop one stream: the other two carry the next events; it comes back.
    peer.post("/control/drop", json!({"conn": open[0]})).await;
    let b = calls(100, 10);
    peer.send(&b, json!("all")).await;
    sent.extend(b);
    peer.wait("open=3&total=4").await;
    relay.wait_for_seq(sent.len() as u64, WAIT).await;
    assert!(reconnects(&relay, "disconnect") >= 1);

    // Hang one: the peer writes nothing to it any more (not even keep-alives);
    // the read timeout closes it and a new stream replaces it. Meanwhile the
    // healthy streams, idle but for keep-alive comments, must not time out.
    peer.post("/control/hang", json!({"conn": open[1]})).await;
    let c = calls(200, 10);
    peer.send(&c, json!("all")).await;
    sent.extend(c);
    // concurrent=3 with 3 open: the hung socket is closed, not just abandoned.
    let after_hang = peer.wait("open=3&total=5&concurrent=3").await;
    assert!(
        after_hang["hung"].as_array().unwrap().is_empty(),
        "{after_hang}"
    );
    assert_eq!(
        reconnects(&relay, "timeout"),
        1,
        "only the hung stream timed out"
    );

    let d = calls(300, 10);
    peer.send(&d, json!("all")).await;
    sent.extend(d);
    relay.wait_for_seq(sent.len() as u64, WAIT).await;
    assert_journal_is(&relay, &sent);
    peer.assert_never_over_limit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_stream_resumes_with_last_event_id() {
    let peer = Peer::start();
    let relay = start_relay(&sprecord_toml(&peer, 1, "")).await;
    let open = ids(&peer.wait("open=1").await["open"]);

    let first = calls(1, 2); // ids 1..8
    peer.send(&first, json!("all")).await;
    relay.wait_for_seq(8, WAIT).await;

    // Down for a while: dropped, and refused three times; events sent meanwhile
    // only go to the peer's history.
    peer.post("/control/fail", json!({"status": 503, "count": 3}))
        .await;
    peer.post("/control/drop", json!({"conn": open[0]})).await;
    peer.wait("open=0&refused=1").await;
    let missed = calls(50, 2);
    peer.send(&missed, json!("all")).await;

    let s = peer.wait("open=1&total=2").await;
    assert_eq!(
        s["last_event_ids"],
        json!(["", "8"]),
        "the reconnect must carry the last journaled id"
    );
    relay.wait_for_seq(16, WAIT).await;
    let all: Vec<Value> = first.iter().chain(&missed).cloned().collect();
    assert_journal_is(&relay, &all);
    assert!(reconnects(&relay, "http_5xx") >= 3);
}

/// A restart resumes where the last run's streams stopped: the journal
/// keeps the account's newest id, stored soon after its event, not only at
/// the stop. Before, a restart opened the streams without one, and
/// what the device sent while the relay was down was lost, even on a server
/// that keeps history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_after_the_last_journaled_id() {
    let peer = Peer::start();
    let relay = start_relay(&sprecord_toml(&peer, 2, "")).await;
    peer.wait("open=2").await;
    let first = calls(1, 2); // ids 1..8
    peer.send(&first, json!("all")).await;
    relay.wait_for_seq(8, WAIT).await;
    let journal = relay.ctx.journal.clone();
    eventually(WAIT, "the account's id stored while running", || {
        journal
            .sse_resume_ids()
            .is_ok_and(|ids| ids.len() == 1 && ids[0].1 == "8")
    })
    .await;
    drop(journal);

    let text = std::fs::read_to_string(&relay.config_path).unwrap();
    let dir = relay.stop().await;
    peer.wait("open=0").await;
    let missed = calls(50, 2); // ids 9..16: in the peer's history only
    peer.send(&missed, json!("all")).await;

    let relay = common::start_relay_in(dir, &text).await;
    let s = peer.wait("open=2&total=4").await;
    // The first stream back resumes after 8; the second after 8, or after
    // what the first has journaled of the history by then.
    assert_eq!(
        s["last_event_ids"][2], "8",
        "the restarted streams must resume after the last journaled id: {s}"
    );
    let second: u64 = s["last_event_ids"][3].as_str().unwrap().parse().unwrap();
    assert!((8..=16).contains(&second), "{s}");
    relay.wait_for_seq(16, WAIT).await;
    let all: Vec<Value> = first.iter().chain(&missed).cloned().collect();
    assert_journal_is(&relay, &all);
}

/// A stream kept off while another journals (its connects refused, as when
/// a browser holds one of the server's three slots) resumes after the
/// account's newest journaled id, not its own. Before, a server with
/// history sent it everything it had missed, and what was older than
/// `dedup.window` by then was journaled a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_kept_off_resumes_after_the_accounts_newest_id() {
    let peer = Peer::start();
    // A 3 s read_timeout: a peer stalled for a second on busy cores would
    // otherwise add a reconnect the request counts below do not expect.
    let toml = with_read_timeout(&sprecord_toml(&peer, 2, "[dedup]\nwindow = \"1s\""), "3s");
    let relay = start_relay(&toml).await;
    let open = ids(&peer.wait("open=2").await["open"]);
    let first = calls(1, 2); // ids 1..8
    peer.send(&first, json!("all")).await;
    relay.wait_for_seq(8, WAIT).await;

    peer.post("/control/fail", json!({"status": 503, "count": 1000}))
        .await;
    peer.post("/control/drop", json!({"conn": open[0]})).await;
    peer.wait("open=1&refused=1").await;
    let meanwhile = calls(50, 2); // ids 9..16, to the other stream
    peer.send(&meanwhile, json!("all")).await;
    relay.wait_for_seq(16, WAIT).await;
    // Past the dedup window: a second copy would be journaled now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    peer.post("/control/fail", json!({"clear": true, "count": 0}))
        .await;

    let s = peer.wait("open=2&total=3").await;
    assert_eq!(s["last_event_ids"], json!(["", "", "16"]));
    let last = calls(90, 1);
    peer.send(&last, json!("all")).await;
    relay.wait_for_seq(20, WAIT).await;
    let all: Vec<Value> = first
        .iter()
        .chain(&meanwhile)
        .chain(&last)
        .cloned()
        .collect();
    assert_journal_is(&relay, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_drops_never_make_a_fourth_connection() {
    let peer = Peer::start();
    let relay = start_relay(&sprecord_toml(&peer, 3, "")).await;
    peer.wait("open=3").await;
    let mut sent = Vec::new();
    for round in 0..5u64 {
        // Drop every stream at once, each round: all three reconnect together.
        for conn in peer.open_conns().await {
            peer.post("/control/drop", json!({"conn": conn})).await;
        }
        peer.wait(&format!("open=3&total={}", 3 * (round + 2)))
            .await;
        let batch = calls(1000 * (round + 1), 3);
        peer.send(&batch, json!("all")).await;
        sent.extend(batch);
    }
    relay.wait_for_seq(sent.len() as u64, WAIT).await;
    assert_journal_is(&relay, &sent);
    peer.assert_never_over_limit().await;
    // And the peer does enforce the limit: a 4th connection of ours is refused.
    let fourth = reqwest::Client::new()
        .get(format!("{}/sys/events", peer.base))
        .send()
        .await
        .unwrap();
    assert_eq!(fourth.status().as_u16(), 429);
    assert_eq!(fourth.text().await.unwrap(), "too many connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_fail_readiness_until_they_are_accepted() {
    let peer = Peer::start();
    peer.post("/control/token", json!({"token": "another-token"}))
        .await;
    let relay = start_relay(&sprecord_toml(
        &peer,
        2,
        "headers = { Authorization = \"Bearer s3cret-token\" }",
    ))
    .await;
    peer.wait("refused=2").await;
    eventually(WAIT, "an auth failure in the readiness reasons", || {
        reconnects(&relay, "auth") >= 2
            && relay
                .ctx
                .status
                .not_ready_reasons()
                .iter()
                .any(|r| r.contains("credentials were refused"))
    })
    .await;
    let (code, body) = readyz(&relay).await;
    assert_eq!(code, 503, "{body}");
    // Said once: "its credentials were refused: credentials refused (HTTP
    // 401): …" repeated itself.
    let reasons = relay.ctx.status.not_ready_reasons();
    let refusal = reasons
        .iter()
        .find(|r| r.contains("credentials were refused"))
        .expect("the refusal");
    assert_eq!(refusal.matches("refused").count(), 1, "{refusal}");
    assert!(refusal.contains("HTTP 401"), "{refusal}");
    // A load balancer in front of the webhooks asks without the upstreams:
    // webhooks are still taken, and the refusal shows as degraded.
    let lb = reqwest::get(relay.url("/readyz?exclude=upstreams"))
        .await
        .expect("readyz");
    assert_eq!(lb.status().as_u16(), 200);
    let lb: Value = lb.json().await.expect("readyz JSON");
    assert_eq!(lb["ready"], true, "{lb}");
    assert!(
        lb["degraded"].as_array().is_some_and(|d| d.iter().any(|r| r
            .as_str()
            .is_some_and(|r| r.contains("credentials were refused")))),
        "{lb}"
    );
    let typo = reqwest::get(relay.url("/readyz?exclude=upstream"))
        .await
        .expect("readyz");
    assert_eq!(typo.status().as_u16(), 400);
    let status = reqwest::get(relay.url("/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!status.contains("s3cret") && !body.contains("s3cret"));
    assert_eq!(peer.state().await["total_accepted"], 0);

    // The vendor accepts the token now: streams open after the slow backoff.
    peer.post("/control/token", json!({"token": "s3cret-token"}))
        .await;
    peer.wait("open=2").await;
    eventually(WAIT, "/readyz ready once streams are open", || {
        relay.ctx.status.not_ready_reasons().is_empty()
    })
    .await;
    let event = call_event(7, "incoming_call");
    peer.send(std::slice::from_ref(&event), json!("all")).await;
    relay.wait_for_seq(1, WAIT).await;
    assert_journal_is(&relay, &[event]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_server_and_errors_back_off_and_malformed_data_is_skipped() {
    let peer = Peer::start();
    // busy_backoff far from the normal backoff (≤ 300 ms), so that a debug
    // build on busy cores tells the two apart.
    let toml =
        sprecord_toml(&peer, 1, "").replace("busy_backoff = \"400ms\"", "busy_backoff = \"3s\"");
    // A 3 s read_timeout: a peer stalled for a second on busy cores would
    // otherwise add a reconnect the exact request lists below do not expect.
    let toml = with_read_timeout(&toml, "3s");
    let relay = start_relay(&toml).await;
    let open = ids(&peer.wait("open=1").await["open"]);

    // Malformed data: counted, logged, skipped; the stream stays up.
    let good = call_event(1, "incoming_call");
    peer.send(
        &[json!("{not json"), json!("[1, 2]"), good.clone()],
        json!("all"),
    )
    .await;
    relay.wait_for_seq(1, WAIT).await;
    assert_eq!(counter(&relay, "malformed", &["sprecord", ACCOUNT]), 2);
    assert_eq!(peer.state().await["total_accepted"], 1, "no reconnect");

    // 429 twice, then a 503 that says "too many connections". The first
    // answers the quick reopen of a stream that worked: taken for its own
    // old connection, not yet closed at the device, it gets the normal
    // backoff. The others back off by busy_backoff (3 s ± 50 %), longer
    // than the normal backoff (≤ 300 ms).
    peer.post("/control/fail", json!({"status": 429, "count": 2}))
        .await;
    peer.post(
        "/control/fail",
        json!({"status": 503, "count": 1, "body": "Too many connections"}),
    )
    .await;
    peer.post("/control/drop", json!({"conn": open[0]})).await;
    let s = peer.wait("open=1&total=2").await;
    let requests = s["requests"].as_array().unwrap().clone();
    let statuses: Vec<u64> = requests
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 429, 429, 503, 200]);
    let at = |i: usize| requests[i]["at_ms"].as_u64().unwrap();
    // Normal: 50-75 ms; busy_backoff's shortest is 1.5 s.
    assert!(
        at(2) - at(1) < 1_000,
        "the quick reopen's 429 waited {} ms, as busy_backoff",
        at(2) - at(1)
    );
    assert!(
        at(3) - at(2) >= 1_400,
        "429 backed off only {} ms",
        at(3) - at(2)
    );
    assert!(
        at(4) - at(3) >= 1_400,
        "busy 503 backed off only {} ms",
        at(4) - at(3)
    );
    assert_eq!(reconnects(&relay, "http_429"), 3);

    // 500s: normal backoff, then back.
    peer.post("/control/fail", json!({"status": 500, "count": 2}))
        .await;
    let open = peer.open_conns().await;
    peer.post("/control/drop", json!({"conn": open[0]})).await;
    peer.wait("open=1&total=3").await;
    assert_eq!(reconnects(&relay, "http_5xx"), 2);

    let later = call_event(2, "call_end");
    peer.send(std::slice::from_ref(&later), json!("all")).await;
    relay.wait_for_seq(2, WAIT).await;
    assert_journal_is(&relay, &[good, later]);
    peer.assert_never_over_limit().await;
}

fn last_errors(relay: &TestRelay) -> Vec<String> {
    relay
        .ctx
        .status
        .upstreams()
        .into_iter()
        .filter_map(|u| u.last_error)
        .collect()
}

/// The first `/status` `last_error` that speaks of a certificate.
async fn certificate_error(relay: &TestRelay) -> String {
    let mut said = None;
    eventually(WAIT, "a certificate error on /status", || {
        said = last_errors(relay)
            .into_iter()
            .find(|e| e.contains("certificate"));
        said.is_some()
    })
    .await;
    said.unwrap_or_default()
}

/// An https server whose certificate a private CA signed: refused without
/// `tls.ca_file` (no stream reaches the server), saying to set it, and with
/// another CA's file, naming that file; with the signing CA's file all
/// three streams open and the events are journaled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_streams_trust_the_configured_ca() {
    let ca = TestCa::issue();
    let peer = Peer::start_tls(&ca);
    let url = peer.tls_base.clone().expect("the peer serves https");

    let relay = start_relay(&sprecord_toml_at(&url, 1, "")).await;
    let refused = certificate_error(&relay).await;
    // What to do, and rustls's own reason, which on-call engineers search for.
    assert!(
        refused.contains(
            "TLS handshake failed: the server's certificate is not signed by a CA the relay trusts"
        ) && refused.contains("set `tls.ca_file` to a PEM file of the CA that signed it")
            && refused.contains("(invalid peer certificate: UnknownIssuer)"),
        "{refused}"
    );
    // Counted as `tls`, as Voip24h counts it, not as `connect` (the server
    // could not be reached): review of this round's commits.
    eventually(WAIT, "a reconnect counted as tls", || {
        reconnects(&relay, "tls") >= 1
    })
    .await;
    assert_eq!(
        reconnects(&relay, "connect"),
        0,
        "{:?}",
        last_errors(&relay)
    );
    relay.stop().await;
    assert_eq!(peer.state().await["total_accepted"], 0);

    // Another CA's file: refused, naming the file.
    let other = TestCa::issue_named("another CA");
    let other_file = other.ca_file.display().to_string();
    let extra = format!("tls = {{ ca_file = {other_file:?} }}");
    let relay = start_relay(&sprecord_toml_at(&url, 1, &extra)).await;
    let refused = certificate_error(&relay).await;
    assert!(
        refused.contains(&format!(
            "not signed by the CA in `tls.ca_file` {other_file:?} nor by a public root"
        )) && refused.contains("(invalid peer certificate: UnknownIssuer)"),
        "{refused}"
    );
    relay.stop().await;
    assert_eq!(peer.state().await["total_accepted"], 0);

    let ca_file = ca.ca_file.display().to_string();
    let extra = format!("tls = {{ ca_file = {ca_file:?} }}");
    let relay = start_relay(&sprecord_toml_at(&url, 3, &extra)).await;
    peer.wait("open=3").await;
    let events = calls(1, 5);
    peer.send(&events, json!("all")).await;
    relay.wait_for_seq(events.len() as u64, WAIT).await;
    assert_journal_is(&relay, &events);
    assert!(last_errors(&relay).is_empty(), "{:?}", last_errors(&relay));
    peer.assert_never_over_limit().await;
    relay.stop().await;
    peer.wait("concurrent=0").await;
}

/// A `tls.ca_file` gone when the source starts (removed after the config was
/// checked) is reported on stream 0's `/status` row and retried; once the
/// file is back the stream opens and events flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_removed_after_the_check_is_reported_and_retried() {
    let ca = TestCa::issue();
    let peer = Peer::start_tls(&ca);
    let url = peer.tls_base.clone().expect("the peer serves https");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("office-ca.pem");
    std::fs::copy(&ca.ca_file, &ca_file).expect("copy the CA");
    let extra = format!("tls = {{ ca_file = {:?} }}", ca_file.display().to_string());
    let text = format!(
        "{}{}",
        common::base_config(dir.path()),
        sprecord_toml_at(&url, 1, &extra)
    );
    let relay = common::start_relay_tuned(dir, &text, |_| {
        std::fs::remove_file(&ca_file).expect("remove the CA after the check");
    })
    .await;
    eventually(WAIT, "the missing CA file on /status", || {
        last_errors(&relay)
            .iter()
            .any(|e| e.contains("office-ca.pem"))
    })
    .await;
    assert_eq!(peer.state().await["total_accepted"], 0);

    std::fs::copy(&ca.ca_file, &ca_file).expect("put the CA back");
    peer.wait("open=1").await;
    let events = calls(1, 2);
    peer.send(&events, json!("all")).await;
    relay.wait_for_seq(events.len() as u64, WAIT).await;
    assert_journal_is(&relay, &events);
    relay.stop().await;
}

/// What [`RawSse`] writes on one connection, in order.
#[derive(Clone)]
enum Step {
    /// Bytes, written (and flushed) as one write.
    Write(Vec<u8>),
    /// A pause, with a keep-alive comment every 200 ms so the relay's 1 s
    /// read timeout does not end the stream.
    Pause(Duration),
    /// Keep-alives until the relay closes the connection.
    Hold,
    /// The connection reset (RST), as a crashed front end leaves it.
    Reset,
    /// Nothing until the server has read this many requests in all (a
    /// sibling stream opened), keep-alives meanwhile.
    AwaitRequests(usize),
}

/// One request [`RawSse`] received.
#[derive(Clone, Debug)]
struct RawRequest {
    at: std::time::Instant,
    /// The request line's target, as sent (origin-form or absolute-form).
    target: String,
    host: Option<String>,
    last_event_id: Option<String>,
}

/// A byte-exact SSE server for what better-sse cannot send (a BOM, a huge
/// line, a stream that ends at once): each connection `n` (0-based) gets a
/// 200 `text/event-stream` head, then `script(n)`'s steps, then is closed.
/// It ignores `Last-Event-ID` (no history): what the relay does not keep, is lost.
struct RawSse {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<RawRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawSse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawSse {
    async fn start(script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static) -> RawSse {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let (counted, count) = tokio::sync::watch::channel(0usize);
        let counted = std::sync::Arc::new(counted);
        let script = std::sync::Arc::new(script);
        let task = tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut sock, _)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                let at = std::time::Instant::now();
                let index = n;
                n += 1;
                let script = script.clone();
                let seen = seen.clone();
                let (counted, mut count) = (counted.clone(), count.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut byte).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&byte[..k]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let header = |name: &str| {
                        head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                    };
                    let target = head
                        .lines()
                        .next()
                        .and_then(|l| l.split(' ').nth(1))
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().unwrap().push(RawRequest {
                        at,
                        target,
                        host: header("host"),
                        last_event_id: header("last-event-id"),
                    });
                    counted.send_modify(|n| *n += 1);
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                               cache-control: no-cache\r\nconnection: close\r\n\r\n";
                    if sock.write_all(ok).await.is_err() {
                        return;
                    }
                    let tick = Duration::from_millis(200);
                    for step in script(index) {
                        match step {
                            Step::Write(bytes) => {
                                if sock.write_all(&bytes).await.is_err() {
                                    return;
                                }
                            }
                            Step::Pause(mut left) => {
                                while !left.is_zero() {
                                    let slice = left.min(tick);
                                    tokio::time::sleep(slice).await;
                                    left -= slice;
                                    // Only after a full tick: a short pause may sit
                                    // inside a split sequence (the BOM).
                                    if slice == tick && sock.write_all(b":\n").await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Step::Reset => {
                                let _ = sock.set_zero_linger();
                                return;
                            }
                            Step::AwaitRequests(want) => {
                                let reached = count.wait_for(|n| *n >= want);
                                if reached.await.is_err() {
                                    return;
                                }
                            }
                            Step::Hold => loop {
                                tokio::time::sleep(tick).await;
                                if sock.write_all(b":\n").await.is_err() {
                                    return;
                                }
                            },
                        }
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        RawSse {
            url,
            requests,
            task,
        }
    }

    fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// One SSE event with `id`, its data the JSON of `event`.
fn sse_frame(id: u64, event: &Value) -> Vec<u8> {
    format!("id: {id}\ndata: {event}\n\n").into_bytes()
}

/// An event id that is not ASCII (SSE ids are any UTF-8 text) is sent back
/// as `Last-Event-ID` as the server wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf8_event_id_is_sent_back_on_the_reconnect() {
    let event = call_event(1, "incoming_call");
    let first = event.clone();
    let server = RawSse::start(move |n| match n {
        0 => vec![Step::Write(
            format!("id: cuộc-gọi-1\ndata: {first}\n\n").into_bytes(),
        )],
        _ => vec![Step::Hold],
    })
    .await;
    let relay = start_relay(&sprecord_toml_at(&server.url, 1, "")).await;
    relay.wait_for_seq(1, WAIT).await;
    assert_journal_is(&relay, &[event]);
    eventually(WAIT, "a second connection", || server.requests().len() == 2).await;
    assert_eq!(
        server.requests()[1].last_event_id.as_deref(),
        Some("cuộc-gọi-1")
    );
    relay.stop().await;
}

/// A stream that starts with a UTF-8 BOM (which the SSE spec allows), the BOM
/// split across two writes: the event after it is journaled with its id, and
/// the stream stays up (no reconnect) until the server ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_starting_with_a_bom_is_read_and_stays_up() {
    let event = call_event(1, "incoming_call");
    let first = event.clone();
    let server = RawSse::start(move |n| match n {
        0 => {
            let mut rest = b"\xBF".to_vec();
            rest.extend(sse_frame(1, &first));
            vec![
                Step::Write(b"\xEF\xBB".to_vec()),
                Step::Pause(Duration::from_millis(50)),
                Step::Write(rest),
                Step::Pause(Duration::from_millis(1500)),
            ]
        }
        _ => vec![Step::Hold],
    })
    .await;
    let relay = start_relay(&sprecord_toml_at(&server.url, 1, "")).await;
    relay.wait_for_seq(1, WAIT).await;
    assert_journal_is(&relay, &[event]);

    let rows = relay.ctx.status.upstreams();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].state, callrelay::status::ConnState::Connected);

    // The server ends it: the reconnect resumes after the id read behind the BOM.
    eventually(WAIT, "a second connection", || server.requests().len() == 2).await;
    let requests = server.requests();
    assert_eq!(requests[1].last_event_id.as_deref(), Some("1"));
    // The first stream stayed up until the server's own close, 1.5 s after
    // the event: the BOM did not make the relay drop it.
    let first_lasted = requests[1].at.duration_since(requests[0].at);
    assert!(
        first_lasted >= Duration::from_millis(1500),
        "the stream was reopened after {first_lasted:?}"
    );
    relay.stop().await;
}

/// A device that sends no keep-alives (its document promises none) leaves
/// every stream silent from the same moment: they all carried its last
/// event. They close for silence one at a time, so the account always holds
/// an open stream; were they to reconnect together, an event sent in the
/// gap would be lost on a server without history.
#[tokio::test]
async fn a_quiet_device_keeps_a_stream_open_while_its_silent_streams_reopen() {
    let peer = Peer::spawn(&[(
        "SPRECORD_PEER_KEEPALIVE_MS",
        std::path::Path::new("3600000"),
    )]);
    // A reconnect delay of at least 1 s: a gap the peer's long-poll cannot miss.
    let toml = sprecord_toml(&peer, 3, "")
        .replace("backoff_min = \"50ms\"", "backoff_min = \"1s\"")
        .replace("backoff_max = \"300ms\"", "backoff_max = \"2s\"");
    let relay = start_relay(&toml).await;
    peer.wait("open=3").await;
    peer.send(&[call_event(1, "incoming_call")], json!("all"))
        .await;
    relay.wait_for_seq(1, WAIT).await;

    let (status, state) = peer.try_get("/control/wait?open=0&timeout_ms=5000").await;
    assert_eq!(
        status,
        reqwest::StatusCode::REQUEST_TIMEOUT,
        "every stream was closed at once: {state}"
    );
    // They did close for silence meanwhile, one after another.
    assert!(
        state["total_accepted"].as_u64().unwrap() >= 5,
        "the silent streams were not reopened: {state}"
    );
    assert!(reconnects(&relay, "timeout") >= 2);
    peer.assert_never_over_limit().await;
    relay.stop().await;
}

/// A front end's idle timeout (nginx, a load balancer) ends an account's
/// streams together. Streams that worked are reopened after 100-300 ms: they waited
/// `backoff_min` (1 s by default) first, and an event the device sent while
/// none was open was lost on a server without history (peer review,
/// round 47).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_worked_and_end_together_reopen_quickly() {
    let peer = Peer::start();
    // Every wait of the backoff is at least 3 s: far from the quick
    // reopen's 100-300 ms, so busy cores do not blur the two.
    let toml = sprecord_toml(&peer, 3, "")
        .replace("backoff_min = \"50ms\"", "backoff_min = \"3s\"")
        .replace("backoff_max = \"300ms\"", "backoff_max = \"6s\"");
    let relay = start_relay(&toml).await;
    let open = ids(&peer.wait("open=3").await["open"]);
    peer.send(&[call_event(1, "incoming_call")], json!("all"))
        .await;
    relay.wait_for_seq(1, WAIT).await;
    for conn in &open {
        peer.post("/control/drop", json!({"conn": conn})).await;
    }
    let (status, state) = peer
        .try_get("/control/wait?open=3&total=6&timeout_ms=2500")
        .await;
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "the streams waited for the backoff: {state}"
    );
    relay.stop().await;
}

/// A device that notices a closed stream only when it next writes to it
/// answers "too many" to the stream the relay reopens after a silence. The
/// silence turn stays with that stream until it is open again, so the
/// others stay open and carry the next event: passed on at the refusal, it
/// closed every stream in turn and the next event was lost on a server
/// without history (peer review, round 47).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_frees_closed_streams_late_keeps_streams_open_after_a_silence() {
    let peer = Peer::spawn(&[
        (
            "SPRECORD_PEER_KEEPALIVE_MS",
            std::path::Path::new("3600000"),
        ),
        ("SPRECORD_PEER_LAZY_CLOSE", std::path::Path::new("1")),
    ]);
    let relay = start_relay(&sprecord_toml(&peer, 3, "")).await;
    peer.wait("open=3").await;
    peer.send(&[call_event(1, "incoming_call")], json!("all"))
        .await;
    relay.wait_for_seq(1, WAIT).await;
    // Silent from here (read_timeout 1 s): the first stream closed for
    // silence is refused as one too many until the device writes.
    eventually(WAIT, "a stream refused as one too many", || {
        reconnects(&relay, "http_429") >= 2
    })
    .await;
    let (status, state) = peer.try_get("/control/wait?open=0&timeout_ms=3000").await;
    assert_eq!(
        status,
        reqwest::StatusCode::REQUEST_TIMEOUT,
        "every stream was closed: {state}"
    );
    peer.send(&[call_event(2, "incoming_call")], json!("all"))
        .await;
    relay.wait_for_seq(2, WAIT).await;
    relay.stop().await;
}

/// A reload that restarts an SPRecord account (any of its keys changed)
/// closes its streams and opens new ones at once. A device that notices a
/// closed stream only when it next writes answers "too many" to them: they
/// waited `busy_backoff` (15–45 s by default), the account with no stream
/// open, and what the device sent meanwhile was lost on a server without
/// history (reload review, round 49). Now the first opens of a source that
/// just started take the usual backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_restarts_an_account_does_not_wait_busy_backoff_for_its_old_streams() {
    let peer = Peer::spawn(&[
        (
            "SPRECORD_PEER_KEEPALIVE_MS",
            std::path::Path::new("3600000"),
        ),
        ("SPRECORD_PEER_LAZY_CLOSE", std::path::Path::new("1")),
    ]);
    let toml = with_read_timeout(&sprecord_toml(&peer, 3, ""), "60s")
        .replace("busy_backoff = \"400ms\"", "busy_backoff = \"30s\"");
    let relay = start_relay(&toml).await;
    peer.wait("open=3").await;
    reload_with(&relay, |text| {
        text.replace("connect_grace = \"200ms\"", "connect_grace = \"300ms\"")
    })
    .await;
    eventually(WAIT, "a new stream refused as one too many", || {
        reconnects(&relay, "http_429") >= 1
    })
    .await;
    // The device writes, and finds the old streams closed.
    peer.send(&[call_event(1, "incoming_call")], json!("all"))
        .await;
    let (status, state) = peer.try_get("/control/wait?open=3&timeout_ms=5000").await;
    assert_eq!(
        status,
        reqwest::StatusCode::OK,
        "the new streams waited busy_backoff: {state}"
    );
    relay.stop().await;
}

/// Bytes that are not UTF-8 in one event cost that event's characters, not
/// the stream: the SSE standard reads them as U+FFFD, and the events after it
/// come on the same connection. Before, the stream was dropped at that line
/// and resumed before it, so the server sent the same bytes again and no
/// later event ever came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_is_not_utf8_is_read_with_replacement_characters_and_the_stream_goes_on() {
    let mut garbled = sse_frame(1, &call_event(1, "incoming_call"));
    let at = garbled
        .windows(5)
        .position(|w| w == b"GSM1\"")
        .expect("the trunk in the frame");
    // "GSM1" becomes "G", a cp1251 "Пё" (CF B8, valid UTF-8 by chance: U+03F8), FF, FE.
    garbled.splice(at + 1..at + 4, *b"\xCF\xB8\xFF\xFE");
    let after = call_event(2, "incoming_call");
    let second = after.clone();
    let server = RawSse::start(move |n| match n {
        0 => {
            let mut bytes = garbled.clone();
            bytes.extend(sse_frame(2, &second));
            vec![Step::Write(bytes), Step::Hold]
        }
        _ => vec![Step::Hold],
    })
    .await;
    let relay = start_relay(&sprecord_toml_at(&server.url, 1, "")).await;
    relay.wait_for_seq(2, WAIT).await;
    let mut read_as = call_event(1, "incoming_call");
    read_as["payload"]["trunk"] = json!("G\u{3f8}\u{fffd}\u{fffd}");
    assert_journal_is(&relay, &[read_as, after]);
    assert_eq!(server.requests().len(), 1, "the stream was reopened");
    relay.stop().await;
}

/// A JavaScript server's string cut through an emoji (`\ud83d` alone) is
/// read with U+FFFD in its place rather than the event skipped as not JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_a_lone_surrogate_escape_is_journaled_with_a_replacement_character() {
    let sent = call_event(1, "incoming_call");
    let frame = sse_frame(1, &sent);
    let cut = String::from_utf8(frame)
        .expect("UTF-8")
        .replace("\"GSM1\"", "\"GSM1 \\ud83d\"");
    let server = RawSse::start(move |n| match n {
        0 => vec![Step::Write(cut.clone().into_bytes()), Step::Hold],
        _ => vec![Step::Hold],
    })
    .await;
    let relay = start_relay(&sprecord_toml_at(&server.url, 1, "")).await;
    relay.wait_for_seq(1, WAIT).await;
    let mut read_as = sent;
    read_as["payload"]["trunk"] = json!("GSM1 \u{fffd}");
    assert_journal_is(&relay, &[read_as]);
    relay.stop().await;
}

/// Rewrites the relay's config file with `edit` applied and reloads it.
async fn reload_with(relay: &TestRelay, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(&relay.config_path).expect("config");
    std::fs::write(&relay.config_path, edit(text)).expect("write config");
    relay.reload().await;
}

/// A relay whose one stream was sent a burst of 300 events (~50 KB: within
/// the socket buffers, so all of it at once) by a server that keeps no
/// history, returned while the burst is still being journaled — before the
/// `what` the test does next, which it would otherwise prove nothing about.
async fn relay_mid_burst(what: &str) -> (Vec<Value>, RawSse, TestRelay) {
    let burst: Vec<Value> = calls(1, 75);
    let frames: Vec<u8> = burst
        .iter()
        .zip(1u64..)
        .flat_map(|(event, id)| sse_frame(id, event))
        .collect();
    let server = RawSse::start(move |n| match n {
        0 => vec![Step::Write(frames.clone()), Step::Hold],
        _ => vec![Step::Hold],
    })
    .await;
    let relay = start_relay(&sprecord_toml_at(&server.url, 1, "")).await;
    relay.wait_for_seq(1, WAIT).await;
    assert!(
        relay.ctx.journal.last_seq() < 300,
        "the burst was all journaled before the {what}: this test proves nothing"
    );
    (burst, server, relay)
}

/// A burst of events, then a reload that changes the source (so restarts its
/// streams) while most of the burst is still being journaled: every event the
/// server sent is journaled — the server keeps no history, so none may be
/// left in the closing stream's buffers — and the new stream asks to resume
/// after the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_mid_burst_journals_every_received_event_and_resumes_after_the_last() {
    let (burst, server, relay) = relay_mid_burst("reload").await;
    reload_with(&relay, |text| with_read_timeout(&text, "2s")).await;
    eventually(WAIT, "the restarted stream connects", || {
        server.requests().len() == 2
    })
    .await;
    relay.wait_for_seq(burst.len() as u64, WAIT).await;
    assert_journal_is(&relay, &burst);
    assert_eq!(
        server.requests()[1].last_event_id.as_deref(),
        Some("300"),
        "the new stream must resume after the last event handed on"
    );
    relay.stop().await;
}

/// A 4 MiB `data:` line (over the 1 MiB event limit), its `id:` after it,
/// then a small event: the oversized one is skipped without being buffered,
/// counted as malformed, and the stream reads on, so the small event, which
/// this server (no history) sends once, is journaled. Before, the stream was
/// closed at the limit and reopened (reason `too_large`): what the server
/// sent meanwhile was lost, and a server with history sent the oversized
/// event again, for ever (it resumed before it, its `id:` not read yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_is_skipped_and_the_stream_reads_on() {
    let small = call_event(2, "call_end");
    let sent = small.clone();
    let server = RawSse::start(move |n| match n {
        0 => {
            let mut huge = b"data: ".to_vec();
            huge.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
            huge.extend(b"\nid: 1\n\n");
            vec![
                Step::Write(huge),
                Step::Write(sse_frame(2, &sent)),
                Step::Hold,
            ]
        }
        _ => vec![Step::Hold],
    })
    .await;
    let relay = start_relay(&sprecord_toml_at(&server.url, 1, "")).await;
    relay.wait_for_seq(1, Duration::from_secs(10)).await;
    assert_journal_is(&relay, &[small]);
    assert_eq!(counter(&relay, "malformed", &["sprecord", ACCOUNT]), 1);
    assert_eq!(reconnects(&relay, "too_large"), 0);
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    relay.stop().await;
}

/// A server that accepts every stream and closes it at once, with no event:
/// each 200 is a failure too, so the gap between connections grows
/// (backoff_min 50 ms doubling toward 2 s) instead of staying at backoff_min.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_at_once_is_retried_ever_more_slowly() {
    let server = RawSse::start(|_| Vec::new()).await;
    let toml = sprecord_toml_at(&server.url, 1, "")
        .replace("backoff_max = \"300ms\"", "backoff_max = \"2s\"");
    let relay = start_relay(&toml).await;
    eventually(WAIT, "six connections", || server.requests().len() >= 6).await;
    let at: Vec<_> = server.requests().iter().map(|r| r.at).collect();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // Nominal 50, 100, 200, 400, 800 ms, each ±50 %: the fifth at least
    // 400 ms where a backoff stuck at backoff_min gives 50-75 ms (a ratio
    // to the first gap would also count that gap's own delays under load).
    assert!(
        gaps[4] >= Duration::from_millis(390),
        "the backoff did not grow: {gaps:?}"
    );
    assert!(reconnects(&relay, "disconnect") >= 5);
    relay.stop().await;
}

/// A stream the server resets mid-body: `last_error` said only hyper's
/// "error reading a body from connection"; it names the reset now
/// (operator-messages review, 2026-12-05).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reset_mid_body_says_it_was_reset() {
    let server = RawSse::start(|_| vec![Step::Write(b": hi\n".to_vec()), Step::Reset]).await;
    let relay = start_relay(&sprecord_toml_at(&server.url, 1, "")).await;
    eventually(WAIT, "the reset on /status", || {
        last_errors(&relay)
            .iter()
            .any(|e| e.contains("reset by peer"))
    })
    .await;
    relay.stop().await;
}

/// The request line carries the origin-form target (`/sys/events` and the
/// url's query), not the absolute URL, with the authority in `Host`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_request_the_origin_form_target_with_a_host_header() {
    let server = RawSse::start(|_| vec![Step::Hold]).await;
    let url = format!("{}/api/?device=7", server.url);
    let relay = start_relay(&sprecord_toml_at(&url, 1, "")).await;
    eventually(WAIT, "a request", || !server.requests().is_empty()).await;
    let request = server.requests()[0].clone();
    assert_eq!(request.target, "/api/sys/events?device=7");
    assert_eq!(
        request.host.as_deref(),
        Some(server.url.trim_start_matches("http://"))
    );
    relay.stop().await;
}

/// A stream catching up hands on its duplicates after the account's newest
/// event: they do not move the resume point back, so a restart resumes
/// after the newest journaled event. Before, the last stream to hand an
/// event on set it, here the lagging one's "5": after a restart longer than
/// `dedup.window` a server with history would have had 6..10 journaled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_streams_duplicates_do_not_move_the_resume_point_back() {
    let events = calls(1, 3); // ids 1..12
    let frames = |ids: std::ops::RangeInclusive<u64>| -> Vec<u8> {
        ids.flat_map(|id| sse_frame(id, &events[id as usize - 1]))
            .collect()
    };
    let (front, lagging) = (frames(1..=10), frames(1..=5));
    let server = RawSse::start(move |n| match n {
        // Both streams open before any event: the lagging one opened
        // without a point, as its sibling, not at the front's "10" (it
        // opens `stagger` later, and a fast machine journaled ten events
        // in that time; it then stood at the point, and its first event
        // moved it, so the test failed whenever the machine was quick).
        0 => vec![
            Step::AwaitRequests(2),
            Step::Write(front.clone()),
            Step::Hold,
        ],
        1 => vec![
            Step::Pause(Duration::from_millis(300)),
            Step::Write(lagging.clone()),
            Step::Hold,
        ],
        _ => vec![Step::Hold],
    })
    .await;
    let relay = start_relay(&sprecord_toml_at(&server.url, 2, "")).await;
    relay.wait_for_seq(10, WAIT).await;
    eventually(WAIT, "the lagging stream's five duplicates", || {
        relay.duplicates("sprecord", ACCOUNT) >= 5
    })
    .await;
    let text = std::fs::read_to_string(&relay.config_path).unwrap();
    let dir = relay.stop().await;
    let again = common::start_relay_in(dir, &text).await;
    eventually(WAIT, "both streams back", || server.requests().len() == 4).await;
    let resumed: Vec<_> = server.requests()[2..]
        .iter()
        .map(|r| r.last_event_id.clone())
        .collect();
    assert_eq!(resumed, vec![Some("10".to_owned()), Some("10".to_owned())]);
    again.stop().await;
}

/// An event sent twice (the same payload under a new id: a duplicate of an
/// older journaled event), then one over the limit, its `id:` after its
/// data; the server then closes the stream: it reopens resuming after the
/// oversized one. With the point kept by journal seq (a form this round
/// tried), the duplicate's old seq held the point before it, and a server
/// with history would have sent both again, for ever; so did reading the
/// oversized event only up to the limit, before its `id:`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_after_a_resent_payload_is_resumed_after() {
    let (first, second) = (call_event(1, "incoming_call"), call_event(2, "call_end"));
    let frames = [
        sse_frame(1, &first),
        sse_frame(2, &second),
        sse_frame(3, &first),
    ]
    .concat();
    let server = RawSse::start(move |n| match n {
        0 => {
            let mut huge = b"data: ".to_vec();
            huge.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
            huge.extend(b"\nid: 4\n\n");
            vec![Step::Write(frames.clone()), Step::Write(huge)]
        }
        _ => vec![Step::Hold],
    })
    .await;
    let relay = start_relay(&sprecord_toml_at(&server.url, 1, "")).await;
    eventually(WAIT, "the reconnect after the server's close", || {
        server.requests().len() == 2
    })
    .await;
    assert_eq!(server.requests()[1].last_event_id.as_deref(), Some("4"));
    assert_eq!(reconnects(&relay, "too_large"), 0);
    assert_journal_is(&relay, &[first, second]);
    assert_eq!(relay.duplicates("sprecord", ACCOUNT), 1);
    relay.stop().await;
}

/// As the reload test, with SIGTERM's path (the relay drained and stopped)
/// instead: every event received before the stop is in the journal, as a
/// relay started again on the same directory finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_mid_burst_journals_every_received_event() {
    let (burst, server, relay) = relay_mid_burst("stop").await;
    let text = std::fs::read_to_string(&relay.config_path).expect("config");
    let dir = relay.stop().await;
    let again = common::start_relay_in(dir, &text).await;
    assert_journal_is(&again, &burst);
    // The ids the drain handed on were stored too: the restart resumes
    // after the burst's last event (the server keeps no history here, so
    // an older id would go unnoticed but for this).
    eventually(WAIT, "the restarted stream connects", || {
        server.requests().len() == 2
    })
    .await;
    assert_eq!(server.requests()[1].last_event_id.as_deref(), Some("300"));
    again.stop().await;
}

/// A proxy that takes the connection and never answers `CONNECT` is the
/// proxy's failure, named, with reconnect reason `proxy`: the stream's
/// `connect_timeout` (2 s here) passed before the tunnel's own 10 s wait, so
/// it was counted as the server's `timeout` and the proxy went unnamed
/// (proxy review, 2026-12-04).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_never_answers_is_named_within_connect_timeout() {
    let (port, held) = common::proxy::silent_proxy().await;
    let proxy = format!("\n[proxy]\nhttp = \"http://relay:pr0xy-pass@127.0.0.1:{port}\"\n");
    let relay = start_relay(&sprecord_toml_at("http://sprecord.example", 1, &proxy)).await;
    eventually(WAIT, "the silent proxy named on /status", || {
        last_errors(&relay)
            .iter()
            .any(|e| e.contains(&format!("the proxy http://127.0.0.1:{port} gave no tunnel")))
    })
    .await;
    assert!(reconnects(&relay, "proxy") >= 1);
    assert_eq!(reconnects(&relay, "timeout"), 0);
    let errors = last_errors(&relay);
    assert!(
        !errors.iter().any(|e| e.contains("pr0xy-pass")),
        "{errors:?}"
    );
    relay.stop().await;
    held.abort();
}

/// Behind an HTTP proxy (`[proxy] http`): every stream is a `CONNECT` tunnel
/// through it, the three streams open and their events are journaled once;
/// a stream the proxy refuses is named on `/status` with reconnect reason
/// `proxy`, without the proxy's password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_go_through_the_proxy_and_its_refusal_is_named() {
    let peer = Peer::start();
    let mut proxy = ProxyPeer::start_with_login("relay", "pr0xy-pass").await;
    let target = peer.base.trim_start_matches("http://").to_owned();

    let wrong = format!(
        "\n[proxy]\nhttp = {:?}\n",
        proxy.url(Some(("relay", "not-the-pass")))
    );
    let relay = start_relay(&sprecord_toml(&peer, 1, &wrong)).await;
    let tunnel = proxy.next_tunnel().await;
    assert_eq!(tunnel.target, target);
    assert!(!tunnel.authorized);
    eventually(WAIT, "the proxy's refusal on /status", || {
        last_errors(&relay)
            .iter()
            .any(|e| e.contains("asks for credentials (HTTP 407)"))
    })
    .await;
    assert!(reconnects(&relay, "proxy") >= 1);
    let errors = last_errors(&relay);
    assert!(
        !errors.iter().any(|e| e.contains("not-the-pass")),
        "{errors:?}"
    );
    relay.stop().await;
    assert_eq!(peer.state().await["total_accepted"], 0);

    let right = format!(
        "\n[proxy]\nhttp = {:?}\n",
        proxy.url(Some(("relay", "pr0xy-pass")))
    );
    let relay = start_relay(&sprecord_toml(&peer, 3, &right)).await;
    peer.wait("open=3").await;
    // Reports of the refused attempts may still be queued before these.
    let mut tunnelled = 0;
    while tunnelled < 3 {
        let tunnel = proxy.next_tunnel().await;
        assert_eq!(tunnel.target, target);
        tunnelled += usize::from(tunnel.authorized);
    }
    let events = calls(1, 5);
    peer.send(&events, json!("all")).await;
    relay.wait_for_seq(events.len() as u64, WAIT).await;
    assert_journal_is(&relay, &events);
    let shown: Vec<Option<String>> = relay
        .ctx
        .status
        .upstreams()
        .into_iter()
        .map(|u| u.proxy)
        .collect();
    assert_eq!(
        shown,
        vec![Some(proxy.url(None)); 3],
        "each stream's /status row"
    );
    relay.stop().await;
    peer.wait("concurrent=0").await;
}
