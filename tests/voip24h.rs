//! The Voip24h socket.io source against real socket.io servers (npm
//! `socket.io@2` and `socket.io@4`) playing Voip24h: `tests/peers/voip24h/peer.js`.
//!
//! Every scenario runs on both server versions. The peer reports what it sees
//! (connections, signs, hellos, disconnects, its maximum concurrency) as JSON
//! lines; the tests await those lines and the journal's seq instead of sleeping.
//! Intervals are shortened by editing the loaded config (a user's file cannot
//! go below the vendor's 10 s).

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use callrelay::config::{HumanDuration, unspanned};
use callrelay::event::Vendor;
use callrelay::status::{ConnState, UpstreamStatus};
use common::TestRelay;
use common::proxy::ProxyPeer;
use common::tls::TestCa;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(15);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
const BANDWIDTH_BACKOFF: Duration = Duration::from_millis(1500);
const HELLO_INTERVAL: Duration = Duration::from_millis(500);
const KEY: &str = "k-3f9a";
/// How late the peer's report lines may be, against the relay's own clock.
const REPORT_SLACK: Duration = Duration::from_millis(100);

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/voip24h")
}

/// Runs the peer's setup.sh once (npm ci when its lockfile changed).
fn setup_peer() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(peer_dir().join("setup.sh"))
            .status()
            .expect("run tests/peers/voip24h/setup.sh");
        assert!(status.success(), "tests/peers/voip24h/setup.sh failed");
    });
}

/// The scripted Voip24h server, one node process.
struct Peer {
    _child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<(Instant, Value)>,
    port: u16,
    sio: u8,
}

impl Peer {
    async fn start(sio: u8) -> Peer {
        Peer::spawn(sio, &[]).await
    }

    /// A peer serving https/wss with a certificate from `ca`.
    async fn start_tls(sio: u8, ca: &TestCa) -> Peer {
        let cert = ca.server_cert.to_string_lossy().into_owned();
        let key = ca.server_key.to_string_lossy().into_owned();
        Peer::spawn(sio, &["--tls-cert", &cert, "--tls-key", &key]).await
    }

    async fn spawn(sio: u8, extra_args: &[&str]) -> Peer {
        setup_peer();
        let mut child = Command::new("node")
            .arg(peer_dir().join("peer.js"))
            .args([
                "--sio",
                &sio.to_string(),
                "--key",
                KEY,
                "--secret",
                "s3cret",
            ])
            .args(["--say-ms", "300", "--hello-timeout-ms", "3000"])
            .args(extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node peer");
        let stdin = child.stdin.take().expect("peer stdin");
        let stdout = child.stdout.take().expect("peer stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"ev": "noise", "line": line}));
                if tx.send((Instant::now(), value)).is_err() {
                    break;
                }
            }
        });
        let mut peer = Peer {
            _child: child,
            stdin,
            lines,
            port: 0,
            sio,
        };
        let (_, listening) = peer.expect("listening").await;
        peer.port = listening["port"].as_u64().expect("port") as u16;
        peer
    }

    async fn send(&mut self, cmd: Value) {
        let line = format!("{cmd}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to peer");
    }

    /// The next report `ev` (earlier reports of other kinds are passed over).
    async fn expect(&mut self, ev: &str) -> (Instant, Value) {
        let sio = self.sio;
        let found = tokio::time::timeout(WAIT, async {
            while let Some((at, value)) = self.lines.recv().await {
                if value["ev"] == ev {
                    return Some((at, value));
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(found)) => found,
            Ok(None) => panic!("socket.io {sio} peer exited before reporting {ev}"),
            Err(_) => panic!("socket.io {sio} peer did not report {ev} within {WAIT:?}"),
        }
    }

    async fn emit(&mut self, event: &str, args: Value) {
        self.send(json!({"cmd": "emit", "event": event, "args": args}))
            .await;
        let (_, emitted) = self.expect("emitted").await;
        assert_eq!(emitted["to"], 1, "{event} reached one signed session");
    }

    async fn stats(&mut self) -> Value {
        self.send(json!({"cmd": "stats"})).await;
        self.expect("stats").await.1
    }

    /// The invariant of every test: never two connections, never two signed
    /// sessions for the key, at any moment.
    async fn assert_one_session_at_a_time(&mut self) {
        let stats = self.stats().await;
        assert_eq!(
            stats["max_concurrent"], 1,
            "socket.io {}: {stats}",
            self.sio
        );
        assert_eq!(
            stats["max_signed_per_key"], 1,
            "socket.io {}: {stats}",
            self.sio
        );
    }
}

/// A relay with one `[[voip24h]]` account on the peer, intervals shortened.
async fn start_relay(peer: &Peer, engine: &str, key: &str, sign: &str) -> TestRelay {
    start_relay_at(peer, "http", engine, key, sign, "", || {}).await
}

/// As `start_relay`, with the url's `scheme` and `extra` lines in the
/// account's table; `before_start` runs after the config was loaded and checked.
async fn start_relay_at(
    peer: &Peer,
    scheme: &str,
    engine: &str,
    key: &str,
    sign: &str,
    extra: &str,
    before_start: impl FnOnce(),
) -> TestRelay {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{}[[voip24h]]\naccount = \"main\"\nurl = \"{scheme}://127.0.0.1:{}\"\nkey = \"{key}\"\n\
         secret = \"s3cret\"\nengine_io = \"{engine}\"\nsign = \"{sign}\"\nhello_interval = \"10s\"\n{extra}\n",
        common::base_config(dir.path()),
        peer.port
    );
    common::start_relay_tuned(dir, &text, |config| {
        before_start();
        for source in &mut config.voip24h {
            let source = source.get_mut();
            source.hello_interval = unspanned(HumanDuration(HELLO_INTERVAL));
            source.backoff_min = unspanned(HumanDuration(BACKOFF_MIN));
            source.backoff_max = unspanned(HumanDuration(BACKOFF_MAX));
            source.bandwidth_backoff = unspanned(HumanDuration(BANDWIDTH_BACKOFF));
        }
    })
    .await
}

fn call_event(n: u32) -> Value {
    json!({"extend": 130, "state": "Ring", "phone": "0832666859",
           "callid": format!("1287674126.{n}"), "type": "inbound"})
}

fn reconnects(relay: &TestRelay, reason: &str) -> u64 {
    relay
        .ctx
        .metrics
        .upstream_reconnects
        .with_label_values(&["voip24h", "main", reason])
        .get()
}

fn received(relay: &TestRelay) -> u64 {
    relay
        .ctx
        .metrics
        .events_received
        .with_label_values(&["voip24h", "main", "socketio"])
        .get()
}

fn malformed(relay: &TestRelay) -> u64 {
    relay
        .ctx
        .metrics
        .upstream_malformed
        .with_label_values(&["voip24h", "main"])
        .get()
}

/// The account's `/status` row.
fn upstream(relay: &TestRelay) -> Option<UpstreamStatus> {
    relay
        .ctx
        .status
        .upstreams()
        .into_iter()
        .find(|u| u.account == "main")
}

fn upstream_state(relay: &TestRelay) -> Option<(ConnState, Option<String>)> {
    upstream(relay).map(|u| (u.state, u.detail))
}

/// The journaled `raw` payloads, in seq order; each event checked for shape.
fn journaled_raws(relay: &TestRelay) -> Vec<Value> {
    relay
        .event_values()
        .into_iter()
        .map(|e| {
            assert_eq!(e["source"], "/voip24h/main");
            assert_eq!(e["vendor"], "voip24h");
            // Every event the tests send is a `Ring` call event.
            assert_eq!(e["type"], "call.ringing", "{e}");
            assert_eq!(e["subject"], e["data"]["raw"]["callid"], "{e}");
            assert_eq!(e["data"]["direction"], "inbound", "{e}");
            e["data"]["raw"].clone()
        })
        .collect()
}

/// Waits until `/status` shows the session connected with the Engine.IO
/// version a socket.io `sio` server speaks (what `auto` must detect).
async fn connected_with_detected_engine(relay: &TestRelay, sio: u8) {
    let want = if sio == 2 {
        "engine.io 3"
    } else {
        "engine.io 4"
    };
    common::eventually(WAIT, "connected with the detected engine", || {
        upstream_state(relay) == Some((ConnState::Connected, Some(want.to_owned())))
    })
    .await;
}

async fn events_reach_the_journal_in_order(sio: u8) {
    let mut peer = Peer::start(sio).await;
    let relay = start_relay(&peer, "auto", KEY, "key").await;
    let (_, signed) = peer.expect("signed").await;
    assert_eq!(signed["form"], "string", "sign carries the key string");
    // The session answers `say` with `hello`.
    peer.expect("hello").await;
    // Auto-detection found the server's version.
    connected_with_detected_engine(&relay, sio).await;

    let sent: Vec<Value> = (1..=6).map(call_event).collect();
    let mut strings = Vec::new();
    for (i, event) in sent.iter().enumerate() {
        // Objects and JSON strings alike.
        let arg = if i % 2 == 0 {
            event.clone()
        } else {
            let text = serde_json::to_string_pretty(event).expect("json");
            strings.push((i, text.clone()));
            Value::String(text)
        };
        peer.emit("response", json!([arg])).await;
    }
    relay.wait_for_seq(6, WAIT).await;
    assert_eq!(journaled_raws(&relay), sent);
    // A JSON string's payload is journaled as the server wrote it.
    let journaled = relay.events();
    for (i, text) in strings {
        let json = String::from_utf8_lossy(&journaled[i].json).into_owned();
        assert!(json.ends_with(&format!("\"raw\":{text}}}}}")), "{json}");
    }
    assert_eq!(received(&relay), 6);
    assert_eq!(malformed(&relay), 0);
    peer.assert_one_session_at_a_time().await;
    relay.stop().await;
    // Shutdown closed the session in order.
    let (_, gone) = peer.expect("disconnect").await;
    assert_eq!(gone["concurrent"], 0);
}

/// Voip24h says its socket also carries missed calls, without naming the
/// event. An event the session does not know whose first argument reads as
/// a call event is journaled as that event (here `call.missed`), so the
/// webhook's copy of the same missed call is its duplicate; before, it was
/// wrapped as `vendor.unknown` and the call came twice. Any other unknown
/// event is relayed as `vendor.unknown` with its name and arguments, in
/// order with the `response`s around it (it was once dropped).
#[tokio::test]
async fn an_unknown_socket_event_is_relayed_as_vendor_unknown() {
    let mut peer = Peer::start(4).await;
    let webhook =
        "\n[[webhook]]\nvendor = \"voip24h\"\naccount = \"main\"\ntoken = \"hook-token\"\n";
    let relay = start_relay_at(&peer, "http", "4", KEY, "key", webhook, || {}).await;
    peer.expect("signed").await;
    let missed = json!({"calldate": "2021-03-26 11:52:30", "src": "0832666859",
        "dst": "130", "linkedid": "1616734230.1099", "direction": "inbound"});
    peer.emit("response", json!([call_event(1)])).await;
    peer.emit("missed", json!([missed.clone(), "second argument"]))
        .await;
    peer.emit("notice", json!(["maintenance at 23:00", 5]))
        .await;
    peer.emit("response", json!([call_event(2)])).await;
    relay.wait_for_seq(4, WAIT).await;
    let events = relay.event_values();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "call.ringing",
            "call.missed",
            "vendor.unknown",
            "call.ringing"
        ]
    );
    assert_eq!(events[1]["data"]["call_id"], "1616734230.1099");
    assert_eq!(events[1]["data"]["raw"], missed);
    assert_eq!(
        events[2]["data"]["raw"],
        json!({"event": "notice", "args": ["maintenance at 23:00", 5]})
    );
    assert_eq!(events[2]["vendor"], "voip24h");
    assert_eq!(received(&relay), 4);
    // The webhook's copy of the missed call is the same event.
    let answer = reqwest::Client::new()
        .post(relay.url("/hooks/voip24h/main?token=hook-token"))
        .json(&missed)
        .send()
        .await
        .expect("webhook");
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["duplicate"], true, "{body}");
    relay.stop().await;
}

/// An event the session does not know that echoes the `sign` object, or
/// the key in a sentence ("key <KEY> không hợp lệ"), is journaled and
/// published with the key and the secret as `***`, inside strings too
/// (one holding JSON text as well), the rest of its arguments as sent;
/// before `connected` (the sign-in's own moment, where a refusal the
/// vendor does not document would come) as after it; and so is a
/// `response` the vendor module does not know (they went out as received
/// until the review of c8af6af). Before, `data.raw`
/// held them as received: on Kafka for the topic's retention, on every
/// screen of the account, in the journal's backups (review of where
/// secrets can go, 2026-12-07).
async fn an_unknown_event_echoing_the_sign_is_relayed_with_key_and_secret_masked(sio: u8) {
    const SECRET: &str = "s3cret";
    let sign = json!({"voip": KEY, "secret": SECRET});
    // Sent as the sign is accepted, before `signing` and `connected`.
    let early = format!("2{}", json!(["signEcho", sign]));
    let mut peer = Peer::spawn(sio, &["--raw-on-sign", &early]).await;
    let engine = if sio == 2 { "3" } else { "4" };
    let relay = start_relay(&peer, engine, KEY, "object").await;
    let (_, signed) = peer.expect("signed").await;
    assert_eq!(signed["form"], "object", "{signed}");
    connected_with_detected_engine(&relay, sio).await;
    let nested = json!({"sign": sign}).to_string();
    peer.emit(
        "unauthorized",
        json!([sign, format!("key {KEY} không hợp lệ"), nested, 7]),
    )
    .await;
    // A `response` the vendor module does not know is the server's text
    // too: its refusal, or the sign object echoed as a `response`.
    let refusal = json!({"status": 401, "message": format!("key {KEY} không hợp lệ")});
    peer.emit("response", json!([refusal])).await;
    peer.emit("response", json!([sign.to_string()])).await;
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(5, WAIT).await;

    let masked_sign = json!({"voip": "***", "secret": "***"});
    let events = relay.event_values();
    let raws: Vec<(&Value, &Value)> = events
        .iter()
        .map(|e| (&e["type"], &e["data"]["raw"]))
        .collect();
    assert_eq!(
        raws,
        [
            (
                &json!("vendor.unknown"),
                &json!({"event": "signEcho", "args": [masked_sign]})
            ),
            (
                &json!("vendor.unknown"),
                &json!({"event": "unauthorized", "args": [
                    masked_sign,
                    "key *** không hợp lệ",
                    json!({"sign": masked_sign}).to_string(),
                    7
                ]})
            ),
            (
                &json!("vendor.unknown"),
                &json!({"status": 401, "message": "key *** không hợp lệ"})
            ),
            (&json!("vendor.unknown"), &masked_sign),
            (&json!("call.ringing"), &call_event(1)),
        ],
        "socket.io {sio}"
    );
    let leaks = |text: &str| text.contains(KEY) || text.contains(SECRET);
    for event in relay.events() {
        let text = String::from_utf8_lossy(&event.json);
        assert!(!leaks(&text), "socket.io {sio}: journaled {text}");
    }
    // What a screen of the account is sent, from the start of the journal.
    let (mut screen, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{}/ws?since=0", relay.addr)),
    )
    .await
    .expect("websocket connect in time")
    .expect("websocket connect");
    let mut published = 0;
    while published < 5 {
        let frame = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut screen))
            .await
            .expect("a frame in time")
            .expect("the stream goes on")
            .expect("a frame");
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            assert!(!leaks(&text), "socket.io {sio}: published {text}");
            published += 1;
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn sio2_an_unknown_event_echoing_the_sign_is_relayed_with_key_and_secret_masked() {
    an_unknown_event_echoing_the_sign_is_relayed_with_key_and_secret_masked(2).await;
}

#[tokio::test]
async fn sio4_an_unknown_event_echoing_the_sign_is_relayed_with_key_and_secret_masked() {
    an_unknown_event_echoing_the_sign_is_relayed_with_key_and_secret_masked(4).await;
}

/// A `response` is journaled together with the `response`s queued right
/// behind it; another event met there is put back and handled next. A
/// burst alternating `response`s and unknown events keeps every one, in
/// order. The suite passed with the put-back made empty, which loses the event
/// met behind a group (twelfth mutation round): none of them sent two
/// kinds of event back to back.
#[tokio::test]
async fn a_burst_of_responses_and_unknown_events_keeps_every_one_in_order() {
    const PAIRS: u32 = 50;
    let mut peer = Peer::start(4).await;
    let relay = start_relay(&peer, "4", KEY, "key").await;
    peer.expect("signed").await;
    let events: Vec<Value> = (1..=PAIRS)
        .flat_map(|n| {
            [
                json!(["response", [call_event(n)]]),
                json!(["missed", [{"linkedid": n}]]),
            ]
        })
        .collect();
    peer.send(json!({"cmd": "burst", "events": events})).await;
    let (_, burst) = peer.expect("burst_sent").await;
    assert_eq!(burst["count"], 2 * PAIRS, "{burst}");
    relay.wait_for_seq(u64::from(2 * PAIRS), WAIT).await;
    let journaled = relay.event_values();
    let types: Vec<&str> = journaled
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    let sent: Vec<&str> = (1..=PAIRS)
        // The `missed` events carry a missed call (`linkedid`).
        .flat_map(|_| ["call.ringing", "call.missed"])
        .collect();
    assert_eq!(types, sent);
    relay.stop().await;
}

/// A `signing` from the server once the session is connected (the key
/// checked again) leaves it shown connected: before, the state went back
/// to `signing` for good, the gauge to 0, and `/readyz` and the
/// upstream-down alert said the account was down while its events flowed.
#[tokio::test]
async fn a_signing_after_connected_leaves_the_session_shown_connected() {
    let mut peer = Peer::start(4).await;
    let relay = start_relay(&peer, "4", KEY, "key").await;
    peer.expect("signed").await;
    connected_with_detected_engine(&relay, 4).await;

    peer.emit("signing", json!([])).await;
    // The documented `connecting` is the session's too.
    peer.emit("connecting", json!([])).await;
    // Handled in order: once this is journaled, the `signing` was seen.
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;

    assert_eq!(
        upstream_state(&relay),
        Some((ConnState::Connected, Some("engine.io 4".to_owned())))
    );
    // Neither session event was journaled: they fell through as
    // `vendor.unknown`, and the `response` was the third event.
    let types: Vec<Value> = relay
        .event_values()
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(types, [json!("call.ringing")]);
    relay.stop().await;
}

#[tokio::test]
async fn sio2_events_reach_the_journal_in_order() {
    events_reach_the_journal_in_order(2).await;
}

#[tokio::test]
async fn sio4_events_reach_the_journal_in_order() {
    events_reach_the_journal_in_order(4).await;
}

/// After a disconnect observed at `down`, the next connection comes no sooner
/// than `at_least`; returns that gap.
async fn next_connect_after(peer: &mut Peer, down: Instant, at_least: Duration) -> Duration {
    let (up, _) = peer.expect("connect").await;
    let gap = up.duration_since(down);
    // Slack for the two report lines' own latency: node may notice the
    // relay's close late, after the relay's wait began. Half the shortest
    // wait still tells a wait from none.
    assert!(
        gap + REPORT_SLACK >= at_least,
        "socket.io {}: reconnected after {gap:?}, expected at least {at_least:?}",
        peer.sio
    );
    gap
}

async fn reconnects_after_drop_restart_and_silence(sio: u8) {
    // A heartbeat every second, which goes on while the server is silent.
    let mut peer = Peer::spawn(sio, &["--ping-ms", "1000"]).await;
    let relay = start_relay(&peer, "auto", KEY, "key").await;
    peer.expect("signed").await;
    let mut seq = 0;

    // The server cuts the TCP connection.
    peer.send(json!({"cmd": "drop", "how": "destroy"})).await;
    let (down, _) = peer.expect("disconnect").await;
    next_connect_after(&mut peer, down, BACKOFF_MIN).await;
    peer.expect("signed").await;
    peer.emit("response", json!([call_event(1)])).await;
    seq += 1;
    relay.wait_for_seq(seq, WAIT).await;

    // The server closes the transport in order.
    peer.send(json!({"cmd": "drop", "how": "close"})).await;
    let (down, _) = peer.expect("disconnect").await;
    next_connect_after(&mut peer, down, BACKOFF_MIN).await;
    peer.expect("signed").await;

    // The server restarts: down for a while, then back on the same port.
    peer.send(json!({"cmd": "restart", "down_ms": 700})).await;
    peer.expect("restarted").await;
    peer.expect("signed").await;
    peer.emit("response", json!([call_event(2)])).await;
    seq += 1;
    relay.wait_for_seq(seq, WAIT).await;

    // The server goes silent (no `say`, connection open, Engine.IO heartbeat
    // still going): the watchdog ends the session after 2 × hello_interval
    // + 5 s without a socket.io frame.
    peer.send(json!({"cmd": "silence"})).await;
    let (silent_from, _) = peer.expect("silenced").await;
    let (down, gone) = peer.expect("disconnect").await;
    let silent_for = down.duration_since(silent_from);
    assert!(
        silent_for >= HELLO_INTERVAL * 2 + Duration::from_secs(4),
        "socket.io {sio}: silent session closed after {silent_for:?}"
    );
    assert!(
        gone["reason"].as_str().unwrap_or("").contains("client"),
        "the relay closed the silent session itself: {gone}"
    );
    // Counted once the old socket is closed, which may end after the peer saw it go.
    common::eventually(WAIT, "silent session counted", || {
        reconnects(&relay, "silent") == 1
    })
    .await;
    peer.send(json!({"cmd": "unsilence"})).await;
    peer.expect("signed").await;
    peer.emit("response", json!([call_event(3)])).await;
    seq += 1;
    relay.wait_for_seq(seq, WAIT).await;

    assert_eq!(
        journaled_raws(&relay),
        vec![call_event(1), call_event(2), call_event(3)]
    );
    let counts: Vec<(&str, u64)> = ["closed", "error", "disconnect", "silent"]
        .into_iter()
        .map(|r| (r, reconnects(&relay, r)))
        .collect();
    assert!(
        reconnects(&relay, "closed") >= 3,
        "socket.io {sio}: drop, close and restart counted as closed: {counts:?}"
    );
    peer.assert_one_session_at_a_time().await;
    relay.stop().await;
}

/// A server that cannot be reached is reason `connect`, told apart from a
/// session that closed (`closed`), so an on-call engineer sees where to look.
#[tokio::test]
async fn an_unreachable_server_is_reconnect_reason_connect() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{}[[voip24h]]\naccount = \"main\"\nurl = \"http://127.0.0.1:{port}\"\nkey = \"{KEY}\"\nengine_io = \"4\"\n",
        common::base_config(dir.path())
    );
    let relay = common::start_relay_tuned(dir, &text, |config| {
        for source in &mut config.voip24h {
            let source = source.get_mut();
            source.backoff_min = unspanned(HumanDuration(BACKOFF_MIN));
            source.backoff_max = unspanned(HumanDuration(BACKOFF_MAX));
        }
    })
    .await;
    common::eventually(WAIT, "two `connect` reconnects", || {
        reconnects(&relay, "connect") >= 2
    })
    .await;
    assert_eq!(reconnects(&relay, "closed"), 0);
    relay.stop().await;
}

#[tokio::test]
async fn sio2_reconnects_after_drop_restart_and_silence() {
    reconnects_after_drop_restart_and_silence(2).await;
}

#[tokio::test]
async fn sio4_reconnects_after_drop_restart_and_silence() {
    reconnects_after_drop_restart_and_silence(4).await;
}

async fn server_refusals_close_and_back_off(sio: u8) {
    let mut peer = Peer::start(sio).await;
    let engine = if sio == 2 { "3" } else { "4" };
    let relay = start_relay(&peer, engine, KEY, "key").await;
    peer.expect("signed").await;
    for (event, reason, at_least) in [
        ("Bandwidth", "bandwidth", BANDWIDTH_BACKOFF),
        ("connectEnd", "connect_end", BACKOFF_MIN),
        ("connectionRefused", "connection_refused", BACKOFF_MIN),
        ("disconnectedServer", "disconnected_server", BACKOFF_MIN),
        ("connectTimeout", "connect_timeout", BACKOFF_MIN),
        ("error", "error", BACKOFF_MIN),
        ("disconnect", "disconnect", BACKOFF_MIN),
    ] {
        peer.emit(event, json!(["from the test"])).await;
        let (down, gone) = peer.expect("disconnect").await;
        // The relay closed the session in order (socket.io disconnect first).
        assert!(
            gone["reason"].as_str().unwrap_or("").contains("client"),
            "socket.io {sio}: after {event}: {gone}"
        );
        next_connect_after(&mut peer, down, at_least).await;
        peer.expect("signed").await;
        assert_eq!(reconnects(&relay, reason), 1, "{event} counted as {reason}");
        common::eventually(WAIT, "connected again", || {
            upstream_state(&relay).map(|s| s.0) == Some(ConnState::Connected)
        })
        .await;
    }
    // Still journaling after all that.
    peer.emit("response", json!([call_event(7)])).await;
    relay.wait_for_seq(1, WAIT).await;
    peer.assert_one_session_at_a_time().await;
    relay.stop().await;
}

/// Voip24h allows one session per key: another client signed in with it
/// takes the session (`connectEnd`) about once a minute, and each side gets
/// part of the stream. The only sign was a generic `connect_end` reconnect;
/// three within ten minutes now name the likely cause in `/status`'s
/// `detail`, which stays through the sessions in between.
#[tokio::test]
async fn sessions_ended_by_connect_end_again_and_again_name_another_client() {
    let mut peer = Peer::start(4).await;
    let relay = start_relay(&peer, "4", KEY, "key").await;
    peer.expect("signed").await;
    for round in 1..=3 {
        peer.emit("connectEnd", json!(["taken by another client"]))
            .await;
        let (down, _) = peer.expect("disconnect").await;
        next_connect_after(&mut peer, down, BACKOFF_MIN).await;
        peer.expect("signed").await;
        let detail = upstream_state(&relay).and_then(|(_, detail)| detail);
        let named = detail
            .as_deref()
            .is_some_and(|d| d.contains("another client"));
        assert_eq!(named, round == 3, "after {round} ends: {detail:?}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn sio2_server_refusals_close_and_back_off() {
    server_refusals_close_and_back_off(2).await;
}

#[tokio::test]
async fn sio4_server_refusals_close_and_back_off() {
    server_refusals_close_and_back_off(4).await;
}

async fn wrong_key_is_refused_and_retried_with_backoff(sio: u8) {
    wrong_key_refused_with(sio, "event").await;
}

async fn wrong_key_refused_with(sio: u8, how: &str) {
    let mut peer = Peer::spawn(sio, &["--refuse-with", how]).await;
    let relay = start_relay(&peer, "auto", "not-the-key", "key").await;
    let mut gaps = Vec::new();
    let mut last_refusal = None;
    for _ in 0..3 {
        let (at, _) = peer.expect("refused").await;
        if let Some(previous) = last_refusal {
            gaps.push(at.duration_since(previous));
        }
        last_refusal = Some(at);
    }
    for gap in &gaps {
        assert!(
            *gap + REPORT_SLACK >= BACKOFF_MIN,
            "socket.io {sio}: retried after {gap:?}"
        );
    }
    common::eventually(WAIT, "refusals counted", || reconnects(&relay, "auth") >= 2).await;
    common::eventually(WAIT, "auth failure shown in /status", || {
        matches!(upstream_state(&relay), Some((ConnState::AuthFailed, _)))
    })
    .await;
    let ready = reqwest::get(relay.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.expect("readyz body");
    assert!(!body.contains("not-the-key"), "no key in /readyz: {body}");
    let stats = peer.stats().await;
    assert_eq!(stats["signed"], 0);
    assert!(stats["max_concurrent"] == 1, "socket.io {sio}: {stats}");
    relay.stop().await;
}

#[tokio::test]
async fn sio2_wrong_key_is_refused_and_retried_with_backoff() {
    wrong_key_is_refused_and_retried_with_backoff(2).await;
}

#[tokio::test]
async fn sio4_wrong_key_is_refused_and_retried_with_backoff() {
    wrong_key_is_refused_and_retried_with_backoff(4).await;
}

/// A stock socket.io 2 server refuses a client from a handler with
/// `socket.error(msg)`, a CONNECT_ERROR (`44`), not an `error` event (which
/// 2.x keeps local): after `sign` and before `connected` it is the sign-in's
/// refusal, with the auth backoff and /status's auth failure, not a dropped
/// connection retried at once (peer review, round 47).
#[tokio::test]
async fn sio2_a_wrong_key_refused_with_a_connect_error_is_an_auth_failure() {
    wrong_key_refused_with(2, "connect-error").await;
}

/// A socket.io 2 server's `socket.error(msg)` mid-session (`44"msg"`, the
/// connection left open) is how the vendor's documented `error` reaches a
/// 2.x client (2.x cannot emit an event of that name): the relay leaves in
/// order, as on the `error` event, and a `response` the server wrote right
/// behind it is journaled. The connection was cut at once, as a dropped
/// one, and that `response` lost uncounted.
#[tokio::test]
async fn sio2_a_socket_error_mid_session_leaves_in_order_and_journals_what_follows() {
    let mut peer = Peer::start(2).await;
    let relay = start_relay(&peer, "3", KEY, "key").await;
    peer.expect("signed").await;
    common::eventually(WAIT, "connected", || {
        upstream_state(&relay).map(|s| s.0) == Some(ConnState::Connected)
    })
    .await;
    peer.send(json!({"cmd": "socket_error", "text": "incident",
                     "then": [["response", [call_event(1)]]]}))
        .await;
    let (_, sent) = peer.expect("socket_error_sent").await;
    assert_eq!(sent["to"], 1, "{sent}");
    let (_, gone) = peer.expect("disconnect").await;
    assert_eq!(
        gone["reason"], "client namespace disconnect",
        "the relay left in order: {gone}"
    );
    // The session journals what it read before the next one opens.
    peer.expect("signed").await;
    assert_eq!(journaled_raws(&relay), vec![call_event(1)]);
    assert_eq!(
        (reconnects(&relay, "error"), reconnects(&relay, "closed")),
        (1, 0)
    );
    peer.assert_one_session_at_a_time().await;
    relay.stop().await;
}

async fn malformed_payloads_are_counted_and_the_session_stays(sio: u8) {
    let mut peer = Peer::start(sio).await;
    let engine = if sio == 2 { "3" } else { "4" };
    let relay = start_relay(&peer, engine, KEY, "object").await;
    let (_, signed) = peer.expect("signed").await;
    assert_eq!(signed["form"], "object", "sign carries {{voip, secret}}");
    let huge = "x".repeat(2 << 20);
    let bad = [
        json!(["{not json"]),
        json!([42]),
        json!([[1, 2, 3]]),
        json!(["\"a string\""]),
        json!([]),
        json!([huge]),
    ];
    for args in &bad {
        peer.emit("response", args.clone()).await;
    }
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;
    assert_eq!(malformed(&relay), bad.len() as u64);
    assert_eq!(journaled_raws(&relay), vec![call_event(1)]);
    assert_eq!(received(&relay), 1);
    let stats = peer.stats().await;
    assert_eq!(stats["connections"], 1, "the session stayed up: {stats}");
    assert_eq!(stats["concurrent"], 1, "the session stayed up: {stats}");
    relay.stop().await;
}

#[tokio::test]
async fn sio2_malformed_payloads_are_counted_and_the_session_stays() {
    malformed_payloads_are_counted_and_the_session_stays(2).await;
}

#[tokio::test]
async fn sio4_malformed_payloads_are_counted_and_the_session_stays() {
    malformed_payloads_are_counted_and_the_session_stays(4).await;
}

async fn reload_replaces_the_session_without_overlap(sio: u8) {
    let mut peer = Peer::start(sio).await;
    let relay = start_relay(&peer, "auto", KEY, "key").await;
    peer.expect("signed").await;
    // The file's config differs from the shortened one loaded: a reload
    // restarts the source, which must close the old session first.
    relay.reload().await;
    let (_, gone) = peer.expect("disconnect").await;
    assert_eq!(gone["concurrent"], 0);
    peer.expect("signed").await;
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;
    peer.assert_one_session_at_a_time().await;
    relay.stop().await;
    let (_, gone) = peer.expect("disconnect").await;
    assert_eq!(gone["concurrent"], 0);
}

/// An event the server sent just before it read the relay's leave (a
/// reload removing the source, or a stop) is journaled: the relay says
/// `41` first and drains what still comes. Sent `41` only as it closed, such
/// an event arrived while the close read the connection off, and was lost
/// without a count.
async fn an_event_sent_as_the_relay_leaves_is_journaled(sio: u8) {
    let late = json!(["response", call_event(7)]);
    let mut peer = Peer::spawn(sio, &["--write-on-leave", &format!("2{late}")]).await;
    let relay = start_relay(&peer, "auto", KEY, "key").await;
    peer.expect("signed").await;
    let text = std::fs::read_to_string(&relay.config_path).expect("config");
    let (base, _) = text.split_once("[[voip24h]]").expect("a voip24h table");
    let without =
        format!("{base}[[webhook]]\nvendor = \"tel4vn\"\naccount = \"t\"\napi_key = \"k\"\n");
    std::fs::write(&relay.config_path, without).expect("write config");
    relay.reload().await;
    peer.expect("disconnect").await;
    relay.wait_for_seq(1, WAIT).await;
    assert_eq!(journaled_raws(&relay), vec![call_event(7)]);
    relay.stop().await;
}

#[tokio::test]
async fn sio2_an_event_sent_as_the_relay_leaves_is_journaled() {
    an_event_sent_as_the_relay_leaves_is_journaled(2).await;
}

#[tokio::test]
async fn sio4_an_event_sent_as_the_relay_leaves_is_journaled() {
    an_event_sent_as_the_relay_leaves_is_journaled(4).await;
}

/// A server that ends the session with one of its events may have sent more
/// before it reads the relay's leave: the session leaves in order and
/// journals it, as at a stop. Before, the link's close read it off and lost
/// it, uncounted.
async fn an_event_sent_as_the_server_ends_the_session_is_journaled(sio: u8) {
    let late = json!(["response", call_event(9)]);
    let mut peer = Peer::spawn(sio, &["--write-on-leave", &format!("2{late}")]).await;
    let relay = start_relay(&peer, "auto", KEY, "key").await;
    for (round, event) in ["Bandwidth", "disconnectedServer", "error"]
        .into_iter()
        .enumerate()
    {
        peer.expect("signed").await;
        peer.emit(event, json!(["from the test"])).await;
        peer.expect("disconnect").await;
        // The same call event each time: journaled the first time, then
        // counted as its duplicate.
        if round == 0 {
            relay.wait_for_seq(1, WAIT).await;
        } else {
            common::eventually(WAIT, &format!("the late event read after {event}"), || {
                relay.duplicates("voip24h", "main") == round as u64
            })
            .await;
        }
        assert_eq!(journaled_raws(&relay), vec![call_event(9)], "after {event}");
    }
    let dropped = relay
        .ctx
        .metrics
        .ingest_errors
        .with_label_values(&["dropped_at_stop"])
        .get();
    assert_eq!(dropped, 0, "socket.io {sio}: nothing given up");
    peer.assert_one_session_at_a_time().await;
    relay.stop().await;
}

#[tokio::test]
async fn sio2_an_event_sent_as_the_server_ends_the_session_is_journaled() {
    an_event_sent_as_the_server_ends_the_session_is_journaled(2).await;
}

#[tokio::test]
async fn sio4_an_event_sent_as_the_server_ends_the_session_is_journaled() {
    an_event_sent_as_the_server_ends_the_session_is_journaled(4).await;
}

/// A TCP relay to `to` on 127.0.0.1 that holds what the client writes for
/// `delay` before passing it on (what the server writes goes back at once):
/// a link whose round trip is longer than `delay`. Returns its port.
async fn slow_uplink(to: u16, delay: Duration) -> u16 {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
            // Each chunk goes on `delay` after it came, in order.
            let (chunks, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
            tokio::spawn(async move {
                while let Some((at, chunk)) = due.recv().await {
                    tokio::time::sleep_until(at + delay).await;
                    if server_write.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                let _ = server_write.shutdown().await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = client_read.read(&mut buf).await {
                    if n == 0 || chunks.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Over a link whose round trip (400 ms here) is longer than a quiet spell,
/// an event the server sent just before it read the relay's leave arrives
/// late: the stopping session reads on until the server's close answers
/// its own. Before, it read until nothing came for 250 ms, and the close read
/// the event off and lost it, uncounted.
async fn an_event_arriving_late_over_a_slow_link_is_journaled_at_the_stop(sio: u8) {
    let late = json!(["response", call_event(9)]);
    let mut peer = Peer::spawn(sio, &["--write-on-leave", &format!("2{late}")]).await;
    peer.port = slow_uplink(peer.port, Duration::from_millis(400)).await;
    let relay = start_relay(&peer, "auto", KEY, "key").await;
    peer.expect("signed").await;
    let ctx = relay.ctx.clone();
    let _dir = relay.stop().await;
    peer.expect("disconnect").await;
    let raws: Vec<Value> = common::events_on_disk(&ctx)
        .iter()
        .map(|e| serde_json::from_slice::<Value>(&e.json).expect("JSON")["data"]["raw"].clone())
        .collect();
    assert_eq!(raws, vec![call_event(9)]);
}

#[tokio::test]
async fn sio2_an_event_arriving_late_over_a_slow_link_is_journaled_at_the_stop() {
    an_event_arriving_late_over_a_slow_link_is_journaled_at_the_stop(2).await;
}

#[tokio::test]
async fn sio4_an_event_arriving_late_over_a_slow_link_is_journaled_at_the_stop() {
    an_event_arriving_late_over_a_slow_link_is_journaled_at_the_stop(4).await;
}

#[tokio::test]
async fn sio2_reload_replaces_the_session_without_overlap() {
    reload_replaces_the_session_without_overlap(2).await;
}

#[tokio::test]
async fn sio4_reload_replaces_the_session_without_overlap() {
    reload_replaces_the_session_without_overlap(4).await;
}

fn last_error(relay: &TestRelay) -> Option<String> {
    upstream(relay).and_then(|u| u.last_error)
}

/// The first `/status` `last_error` that speaks of a certificate.
async fn certificate_error(relay: &TestRelay) -> String {
    let mut said = None;
    common::eventually(WAIT, "a certificate error on /status", || {
        said = last_error(relay).filter(|e| e.contains("certificate"));
        said.is_some()
    })
    .await;
    said.unwrap_or_default()
}

/// A wss server whose certificate a private CA signed: refused without
/// `tls.ca_file` (before any socket.io traffic, on either Engine.IO
/// version), saying to set it, and with another CA's file, naming that file;
/// with the signing CA's file auto-detection and the session go through
/// and events are journaled.
async fn tls_trusts_the_configured_ca(sio: u8) {
    let ca = TestCa::issue();
    let mut peer = Peer::start_tls(sio, &ca).await;

    let engine = if sio == 2 { "3" } else { "4" };
    let relay = start_relay_at(&peer, "https", engine, KEY, "key", "", || {}).await;
    let refused = certificate_error(&relay).await;
    // What to do, and rustls's own reason, which on-call engineers search for.
    assert!(
        refused.contains("not signed by a CA the relay trusts")
            && refused.contains("set `tls.ca_file` to a PEM file of the CA that signed it")
            && refused.contains("(invalid peer certificate: UnknownIssuer)"),
        "socket.io {sio}: {refused}"
    );
    // Counted as TLS, as SPRecord counts it, not as `closed` ("the
    // connection ended under the session"): operator-messages review.
    common::eventually(WAIT, "a reconnect counted as tls", || {
        reconnects(&relay, "tls") >= 1
    })
    .await;
    assert_eq!(reconnects(&relay, "closed"), 0);
    relay.stop().await;
    let stats = peer.stats().await;
    assert_eq!(stats["connections"], 0, "socket.io {sio}: {stats}");

    // Another CA's file: refused at the detection, naming the file.
    let other = TestCa::issue_named("another CA");
    let other_file = other.ca_file.display().to_string();
    let extra = format!("tls = {{ ca_file = {other_file:?} }}");
    let relay = start_relay_at(&peer, "https", "auto", KEY, "key", &extra, || {}).await;
    let refused = certificate_error(&relay).await;
    assert!(
        refused.contains(&format!(
            "not signed by the CA in `tls.ca_file` {other_file:?} nor by a public root"
        )) && refused.contains("(invalid peer certificate: UnknownIssuer)"),
        "socket.io {sio}: {refused}"
    );
    relay.stop().await;

    let ca_file = ca.ca_file.display().to_string();
    let extra = format!("tls = {{ ca_file = {ca_file:?} }}");
    let relay = start_relay_at(&peer, "https", "auto", KEY, "key", &extra, || {}).await;
    peer.expect("signed").await;
    connected_with_detected_engine(&relay, sio).await;
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;
    assert_eq!(journaled_raws(&relay), vec![call_event(1)]);
    peer.assert_one_session_at_a_time().await;
    relay.stop().await;
    peer.expect("disconnect").await;
}

/// A copy of `ca`'s certificate as `dir/name` (so a test can remove or
/// replace it), and the source's `tls` line naming it.
fn ca_file_in(dir: &tempfile::TempDir, name: &str, ca: &TestCa) -> (PathBuf, String) {
    let ca_file = dir.path().join(name);
    std::fs::copy(&ca.ca_file, &ca_file).expect("copy the CA");
    let extra = format!("tls = {{ ca_file = {:?} }}", ca_file.display().to_string());
    (ca_file, extra)
}

/// A CA bundle replaced at the same path (a rotated private CA): a reload
/// restarts the source, which then trusts the new file; a reload with the
/// file unchanged leaves the session alone.
#[tokio::test]
async fn a_replaced_ca_file_takes_effect_on_reload() {
    let ca = TestCa::issue();
    let stale = TestCa::issue();
    let mut peer = Peer::start_tls(4, &ca).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_file, extra) = ca_file_in(&dir, "bundle.pem", &stale);
    let relay = start_relay_at(&peer, "https", "4", KEY, "key", &extra, || {}).await;
    let source = (Vendor::Voip24h, "main".to_owned());
    common::eventually(WAIT, "the stale CA refused on /status", || {
        last_error(&relay).is_some_and(|e| e.contains("certificate"))
    })
    .await;
    // The file's settings differ from the shortened ones the test started
    // with: this first reload restarts the source whatever the CA.
    relay.reload().await;
    let unchanged = relay.reload().await;
    assert_eq!(unchanged.sources.unchanged, vec![source.clone()]);

    std::fs::copy(&ca.ca_file, &ca_file).expect("the rotated CA");
    let rotated = relay.reload().await;
    assert_eq!(rotated.sources.restarted, vec![source]);
    peer.expect("signed").await;
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;
    relay.stop().await;
    peer.expect("disconnect").await;
}

#[tokio::test]
async fn sio2_tls_trusts_the_configured_ca() {
    tls_trusts_the_configured_ca(2).await;
}

#[tokio::test]
async fn sio4_tls_trusts_the_configured_ca() {
    tls_trusts_the_configured_ca(4).await;
}

/// A `tls.ca_file` gone when the source starts (removed after the config was
/// checked) fails each attempt with the reason on `/status`; once the file is
/// back the next attempt connects.
#[tokio::test]
async fn a_ca_file_removed_after_the_check_is_reported_and_retried() {
    let ca = TestCa::issue();
    let mut peer = Peer::start_tls(4, &ca).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_file, extra) = ca_file_in(&dir, "dial-ca.pem", &ca);
    let relay = start_relay_at(&peer, "https", "auto", KEY, "key", &extra, || {
        std::fs::remove_file(&ca_file).expect("remove the CA after the check");
    })
    .await;
    common::eventually(WAIT, "the missing CA file on /status", || {
        last_error(&relay).is_some_and(|e| e.contains("dial-ca.pem"))
    })
    .await;
    common::eventually(WAIT, "a reconnect counted as tls", || {
        reconnects(&relay, "tls") >= 1
    })
    .await;
    assert_eq!(peer.stats().await["connections"], 0);

    std::fs::copy(&ca.ca_file, &ca_file).expect("put the CA back");
    peer.expect("signed").await;
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;
    relay.stop().await;
    peer.expect("disconnect").await;
}

/// How the relay lets go of a session in [`a_stop_journals_what_was_already_sent`].
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// A reload that restarts the source (the file's settings differ).
    Reload,
    /// Shutdown (SIGTERM).
    Shutdown,
}

/// A burst of `response`s, then at once a reload or a shutdown: every event
/// the server sent on the session before it saw the relay go is journaled, in
/// order (the server will not send them again). 5,000: with one commit per
/// event a debug build journaled about 1,700 of them within the 3 s a stop
/// allows, and dropped the rest.
async fn a_stop_journals_what_was_already_sent(sio: u8, stop: Stop) {
    const BURST: u32 = 5_000;
    let mut peer = Peer::start(sio).await;
    let engine = if sio == 2 { "3" } else { "4" };
    let relay = start_relay(&peer, engine, KEY, "key").await;
    peer.expect("signed").await;
    let sent: Vec<Value> = (1..=BURST).map(call_event).collect();
    let args_list: Vec<Value> = sent.iter().map(|e| json!([e])).collect();
    peer.send(json!({"cmd": "burst", "event": "response", "args_list": args_list}))
        .await;
    let (_, burst) = peer.expect("burst_sent").await;
    assert_eq!(burst["to"], 1, "socket.io {sio}: {burst}");
    let running = relay.relay.as_ref().expect("running");
    let ctx = relay.ctx.clone();
    match stop {
        Stop::Reload => running.reload().await.expect("reload"),
        Stop::Shutdown => running.shutdown(),
    }
    let (_, gone) = peer.expect("disconnect").await;
    let before_disconnect = gone["sent"].as_u64().expect("sent") as usize;
    assert_eq!(before_disconnect, sent.len(), "{gone}");
    let journaled = match stop {
        Stop::Reload => {
            // The replacement session is up: the old one has finished.
            peer.expect("signed").await;
            let raws = journaled_raws(&relay);
            relay.stop().await;
            raws
        }
        Stop::Shutdown => {
            let _dir = relay.stop().await;
            common::events_on_disk(&ctx)
                .iter()
                .map(|e| {
                    let v: Value = serde_json::from_slice(&e.json).expect("journaled JSON");
                    v["data"]["raw"].clone()
                })
                .collect()
        }
    };
    assert_eq!(
        journaled.len(),
        sent.len(),
        "socket.io {sio}, {stop:?}: journaled {} of {}",
        journaled.len(),
        sent.len()
    );
    assert_eq!(journaled, sent, "socket.io {sio}, {stop:?}: in order");
}

#[tokio::test]
async fn sio2_a_reload_journals_what_was_already_sent() {
    a_stop_journals_what_was_already_sent(2, Stop::Reload).await;
}

#[tokio::test]
async fn sio4_a_reload_journals_what_was_already_sent() {
    a_stop_journals_what_was_already_sent(4, Stop::Reload).await;
}

#[tokio::test]
async fn sio2_a_shutdown_journals_what_was_already_sent() {
    a_stop_journals_what_was_already_sent(2, Stop::Shutdown).await;
}

#[tokio::test]
async fn sio4_a_shutdown_journals_what_was_already_sent() {
    a_stop_journals_what_was_already_sent(4, Stop::Shutdown).await;
}

/// While the journal refuses commits, the session goes on saying `hello`
/// (the server drops a session after 30 s without one, and then sends its
/// events to nobody) as it retries the `response`. Before, the retries held
/// the session's loop, and its `hello`s with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_go_on_while_the_journal_refuses_a_response() {
    let mut peer = Peer::start(4).await;
    let relay = start_relay(&peer, "4", KEY, "key").await;
    peer.expect("signed").await;
    // The journal's file moved away: every commit is refused from the
    // moment the relay sees it gone.
    let file = relay.ctx.journal.path().to_path_buf();
    std::fs::rename(&file, file.with_extension("moved")).expect("move the journal");
    common::eventually(WAIT, "the journal's file seen gone", || {
        relay.ctx.journal.file_gone().is_some()
    })
    .await;

    peer.emit("response", json!([call_event(1)])).await;
    for _ in 0..4 {
        peer.expect("hello").await;
    }

    let stats = peer.stats().await;
    assert_eq!(stats["connections"], 1, "the session stayed up: {stats}");
    assert_eq!(
        relay.ctx.journal.last_seq(),
        0,
        "nothing journaled meanwhile"
    );
    relay.stop().await;
}

/// A session the server ended (`connectEnd`, the vendor's connection
/// lifetime) is shown down at once, while what it read is still being
/// journaled: here a `response` the server wrote as it read the leave,
/// retried as long as the journal refuses it. `/status` said `connected`
/// (the gauge 1, no error, readiness grace not started) until the journal
/// recovered, however long that took, though the key had no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_server_ended_is_shown_down_while_its_events_wait_on_the_journal() {
    let late = json!(["response", call_event(1)]);
    let mut peer = Peer::spawn(4, &["--write-on-leave", &format!("2{late}")]).await;
    let relay = start_relay(&peer, "4", KEY, "key").await;
    peer.expect("signed").await;
    common::eventually(WAIT, "connected", || {
        upstream_state(&relay).map(|s| s.0) == Some(ConnState::Connected)
    })
    .await;
    // Closed, and its file held open by another handle: every commit and
    // the writer's reopens are refused until the handle goes.
    assert!(relay.ctx.journal.close(WAIT), "the journal closes");
    let squatter = callrelay::journal::Journal::open(relay.ctx.journal.options().clone())
        .expect("hold the journal's file");

    peer.emit("connectEnd", json!(["lifetime over"])).await;
    let (_, gone) = peer.expect("disconnect").await;
    assert_eq!(gone["reason"], "client namespace disconnect", "{gone}");
    // The late `response` reached the session's drain, whose commit the
    // journal refuses.
    common::eventually(WAIT, "the late response received", || received(&relay) == 1).await;
    let row = upstream(&relay).expect("the account's row");
    assert_eq!(row.state, ConnState::BackingOff, "{row:?}");
    assert_eq!(
        row.last_error.as_deref(),
        Some("server sent `connectEnd`: lifetime over"),
        "{row:?}"
    );
    let gauge = relay
        .ctx
        .metrics
        .upstream_connected
        .with_label_values(&["voip24h", "main", "0"])
        .get();
    assert_eq!(gauge, 0);
    assert_eq!(relay.ctx.journal.last_seq(), 0, "still refused meanwhile");

    // Once the journal takes it, the session reconnects as before, the
    // end counted once.
    drop(squatter);
    relay.wait_for_seq(1, WAIT).await;
    peer.expect("signed").await;
    assert_eq!(journaled_raws(&relay), vec![call_event(1)]);
    assert_eq!(reconnects(&relay, "connect_end"), 1);
    peer.assert_one_session_at_a_time().await;
    relay.stop().await;
}

/// Voip24h sends the same call events by socket and by webhook: one account
/// configured both ways journals each event once, whichever way comes
/// first, and the later copy is answered (or counted) as a duplicate of the
/// same id and seq (CONTRACT.md: dedup keys are per vendor and account,
/// whatever the transport).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_by_socket_and_by_webhook_is_journaled_once() {
    let mut peer = Peer::start(4).await;
    let webhook =
        "\n[[webhook]]\nvendor = \"voip24h\"\naccount = \"main\"\ntoken = \"hook-token\"\n";
    let relay = start_relay_at(&peer, "http", "4", KEY, "key", webhook, || {}).await;
    peer.expect("signed").await;
    let hook = relay.url("/hooks/voip24h/main?token=hook-token");
    let client = reqwest::Client::new();
    let post = |event: Value| {
        let request = client.post(&hook).json(&event);
        async move {
            let answer = request.send().await.expect("POST");
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.expect("a JSON answer")
        }
    };

    // By socket first: the webhook's copy is a duplicate of seq 1.
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;
    let answer = post(call_event(1)).await;
    assert_eq!(
        (answer["seq"].as_u64(), answer["duplicate"].as_bool()),
        (Some(1), Some(true)),
        "{answer}"
    );
    let first = relay.ctx.journal.read_after(0, 10).expect("read");
    assert_eq!(
        answer["id"],
        serde_json::from_slice::<Value>(&first[0].json).expect("event")["id"]
    );

    // By webhook first: the socket's copy is counted as a duplicate.
    let answer = post(call_event(2)).await;
    assert_eq!(
        (answer["seq"].as_u64(), answer["duplicate"].as_bool()),
        (Some(2), Some(false)),
        "{answer}"
    );
    peer.emit("response", json!([call_event(2)])).await;
    common::eventually(WAIT, "the socket's copy counted as a duplicate", || {
        relay.duplicates("voip24h", "main") == 2
    })
    .await;
    assert_eq!(relay.ctx.journal.last_seq(), 2, "each event journaled once");
    relay.stop().await;
}

/// A `response` that arrives while an earlier one's commit is retried (here
/// the journal refuses commits for a while) keeps the time it arrived as its
/// receive time: Voip24h call events carry no time of their own, so that is
/// the CloudEvent's `time` (and where the latency histogram starts). It was
/// stamped when its own commit began, after the earlier one's, so a minute's
/// refusal moved a call's answer and hangup to the same instant as each
/// other (Voip24h mapping review, 2026-12-04).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_queued_behind_a_refused_commit_keeps_the_time_it_arrived() {
    let mut peer = Peer::start(4).await;
    let relay = start_relay(&peer, "4", KEY, "key").await;
    peer.expect("signed").await;
    // Closed, and its file held open by another handle: every commit and
    // the writer's reopens are refused until the handle goes.
    assert!(relay.ctx.journal.close(WAIT), "the journal closes");
    let squatter = callrelay::journal::Journal::open(relay.ctx.journal.options().clone())
        .expect("hold the journal's file");
    peer.emit("response", json!([call_event(1)])).await;
    for _ in 0..2 {
        peer.expect("hello").await;
    }
    let sent = time::OffsetDateTime::now_utc();
    peer.emit("response", json!([call_event(2)])).await;
    // Two more seconds of refused commits, the session saying `hello`.
    for _ in 0..4 {
        peer.expect("hello").await;
    }
    assert_eq!(
        relay.ctx.journal.last_seq(),
        0,
        "nothing journaled meanwhile"
    );
    // The first commit that can succeed comes after this, and so does a
    // time taken at it.
    let released = time::OffsetDateTime::now_utc();
    drop(squatter);
    relay.wait_for_seq(2, WAIT).await;
    let events = relay
        .ctx
        .journal
        .read_after(1, 10)
        .expect("read the journal");
    relay.stop().await;
    let event: Value = serde_json::from_slice(&events[0].json).expect("a CloudEvent");
    assert_eq!(event["subject"], "1287674126.2", "{event}");
    let stamped = time::OffsetDateTime::parse(
        event["time"].as_str().expect("time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("an RFC 3339 time");
    assert_eq!(
        i128::from(events[0].received_at_ms),
        stamped.unix_timestamp_nanos() / 1_000_000,
        "the receive time is the CloudEvent's time"
    );
    // Stamped before the journal took anything, as the receive time is:
    // an order on one clock, not a time, so a CI host stalled or its clock
    // stepped forward between the send and the receipt still passes (timed
    // as under half the hold, it failed so). The commit's time comes after
    // `released`, however late; in whole ms, as the stamp is, so that one
    // taken in the same ms is not before it.
    let released_ms = released.unix_timestamp_nanos() / 1_000_000;
    let stamped_ms = stamped.unix_timestamp_nanos() / 1_000_000;
    assert!(
        stamped_ms < released_ms,
        "stamped {} after it was sent and {} after the journal was let go, held for {}: {event}",
        stamped - sent,
        stamped - released,
        released - sent
    );
}

/// A server that answers every `hello` with a `say` at once, on top of its
/// periodic `say` every 600 ms (just after the 500 ms proactive hello): the
/// relay's hellos are never closer than the minimum gap (the vendor's 10 s,
/// here the shortened hello_interval), and they keep coming.
async fn hellos_keep_their_distance(sio: u8) {
    const HELLOS: usize = 8;
    let mut peer = Peer::spawn(sio, &["--say-on-hello", "1", "--say-ms", "600"]).await;
    let engine = if sio == 2 { "3" } else { "4" };
    let relay = start_relay(&peer, engine, KEY, "key").await;
    peer.expect("signed").await;
    let mut arrivals = Vec::new();
    for _ in 0..HELLOS {
        let (_, hello) = peer.expect("hello").await;
        arrivals.push(hello["at_ms"].as_f64().expect("at_ms"));
    }
    let gaps: Vec<f64> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    let min_gap = HELLO_INTERVAL.as_secs_f64() * 1000.0;
    // Slack for the two hellos' own trip over loopback and the peer's
    // event loop (a hello answered at each `say` would be a few ms apart);
    // above, 5 s for a busy 2-core machine, whose relay or node peer can
    // stall for a second or two: far below the 25 s a starved heartbeat
    // went silent for.
    for gap in &gaps {
        assert!(
            *gap >= min_gap - 200.0,
            "socket.io {sio}: hellos {gap:.0} ms apart, minimum {min_gap} ms: {gaps:?}"
        );
        assert!(
            *gap <= min_gap * 2.0 + 5000.0,
            "socket.io {sio}: no hello for {gap:.0} ms: {gaps:?}"
        );
    }
    let stats = peer.stats().await;
    assert_eq!(stats["connections"], 1, "the session stayed up: {stats}");
    relay.stop().await;
}

#[tokio::test]
async fn sio2_hellos_keep_their_distance() {
    hellos_keep_their_distance(2).await;
}

#[tokio::test]
async fn sio4_hellos_keep_their_distance() {
    hellos_keep_their_distance(4).await;
}

/// The Engine.IO heartbeat each version wants, at a server's short interval:
/// the client pings an Engine.IO 3 server and answers an Engine.IO 4 server's
/// pings (a client ping is an error there that closes the connection; no
/// answer and the server drops the client after `pingTimeout`). The session
/// outlives many rounds and journals after them, on its first connection.
async fn the_heartbeat_keeps_the_session(sio: u8) {
    // More rounds than ping + timeout last: a session that kept no
    // heartbeat would be dropped within them.
    const ROUNDS: usize = 15;
    let mut peer = Peer::spawn(sio, &["--ping-ms", "200", "--ping-timeout-ms", "2000"]).await;
    let engine = if sio == 2 { "3" } else { "4" };
    let relay = start_relay(&peer, engine, KEY, "key").await;
    peer.expect("signed").await;
    let client_packet = if sio == 2 { "ping" } else { "pong" };
    for _ in 0..ROUNDS {
        let (_, beat) = peer.expect("heartbeat").await;
        assert_eq!(beat["type"], client_packet, "socket.io {sio}: {beat}");
    }
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;
    assert_eq!(journaled_raws(&relay), vec![call_event(1)]);
    assert_eq!(reconnects(&relay, "closed"), 0, "socket.io {sio}");
    let stats = peer.stats().await;
    assert_eq!(stats["connections"], 1, "socket.io {sio}: {stats}");
    relay.stop().await;
}

#[tokio::test]
async fn sio2_the_heartbeat_keeps_the_session() {
    the_heartbeat_keeps_the_session(2).await;
}

#[tokio::test]
async fn sio4_the_heartbeat_keeps_the_session() {
    the_heartbeat_keeps_the_session(4).await;
}

/// A burst that takes the journal a while to take, from a server with a 0.6 s heartbeat timeout: the connection is read on while the session journals, so the
/// server's pings (socket.io 4) are answered and our own (socket.io 2) go
/// out, and `hello`s are not held behind the backlog. Before, the reader
/// waited on the session: the server timed the client out and dropped what
/// it still had to send.
async fn a_backlog_does_not_starve_the_heartbeat(sio: u8) {
    // Seconds of journaling in a debug build; a pong held that long is late.
    const BURST: u32 = 12_000;
    // The peer's loop is busy for a while sending the burst: the hellos that
    // arrive meanwhile are read after its own hello check has run.
    let mut peer = Peer::spawn(
        sio,
        &[
            "--ping-ms",
            "300",
            "--ping-timeout-ms",
            "600",
            "--hello-timeout-ms",
            "60000",
        ],
    )
    .await;
    let engine = if sio == 2 { "3" } else { "4" };
    let relay = start_relay(&peer, engine, KEY, "key").await;
    peer.expect("signed").await;
    eprintln!(
        "before burst: {} {:?}",
        peer.stats().await,
        last_error(&relay)
    );
    // Only a backlog that outlasts the heartbeat's ping + timeout (0.9 s)
    // tests anything: journaled faster, a starved heartbeat goes unseen
    // (5,000 events at a 1.5 s heartbeat did, in about 1 s). A faster
    // machine gets a larger burst, up to four times the first.
    let (mut journaled, mut size) = (0u32, BURST);
    let took = loop {
        let args_list: Vec<Value> = (journaled + 1..=journaled + size)
            .map(|n| json!([call_event(n)]))
            .collect();
        peer.send(json!({"cmd": "burst", "event": "response", "args_list": args_list}))
            .await;
        let (_, burst) = peer.expect("burst_sent").await;
        let sent = std::time::Instant::now();
        assert_eq!(burst["to"], 1, "socket.io {sio}: {burst}");
        journaled += size;
        relay
            .wait_for_seq(u64::from(journaled), Duration::from_secs(120))
            .await;
        let took = sent.elapsed();
        eprintln!("socket.io {sio}: a burst of {size} was journaled in {took:?}");
        if took > Duration::from_millis(1200) || size >= 4 * BURST {
            break took;
        }
        size *= 2;
    };
    assert!(
        took > Duration::from_millis(1200),
        "inconclusive: {size} events journaled in {took:?}, past the heartbeat's 0.9 s by too little"
    );
    assert_eq!(journaled_raws(&relay).len(), journaled as usize);
    assert_eq!(reconnects(&relay, "closed"), 0, "socket.io {sio}");
    let stats = peer.stats().await;
    assert_eq!(stats["connections"], 1, "socket.io {sio}: {stats}");
    relay.stop().await;
}

#[tokio::test]
async fn sio2_a_backlog_does_not_starve_the_heartbeat() {
    a_backlog_does_not_starve_the_heartbeat(2).await;
}

#[tokio::test]
async fn sio4_a_backlog_does_not_starve_the_heartbeat() {
    a_backlog_does_not_starve_the_heartbeat(4).await;
}

/// A reload while the server is still sending more than the journal takes:
/// the old session stops journaling DRAIN_LIMIT after the stop, counts what
/// it could not journal, and closes in order (the server sees the client leave the namespace), well before
/// the source manager's 10 s stop timeout would abort it (which it did: the
/// drain preferred what had arrived and never looked at its deadline).
/// The session leaves the namespace first, and a server stops sending
/// then; this one sends a burst more as it reads that, which the drain
/// cannot journal in time.
async fn a_stop_under_a_steady_stream_closes_in_order(sio: u8) {
    // The peer's loop is busy streaming: the hellos that arrive meanwhile
    // are read after its own hello check has run.
    let args = ["--hello-timeout-ms", "60000", "--burst-on-leave", "50000"];
    let mut peer = Peer::spawn(sio, &args).await;
    let engine = if sio == 2 { "3" } else { "4" };
    // The source manager's abort of a source past its stop timeout is an
    // ERROR of `callrelay::sources`; this test's relay runs on its thread.
    let (log, _capturing) = common::capture_log("callrelay::sources=info");
    let relay = start_relay(&peer, engine, KEY, "key").await;
    peer.expect("signed").await;
    // Offered faster than the journal takes them (20,000/s; a debug build
    // journals a few thousand a second of them).
    peer.send(json!({"cmd": "stream", "every_ms": 5, "per_tick": 100}))
        .await;
    peer.expect("streaming").await;
    relay.wait_for_seq(1000, WAIT).await;
    let stop_began = std::time::Instant::now();
    relay.reload().await;
    let took = stop_began.elapsed();
    eprintln!("socket.io {sio}: the reload took {took:?}");
    // Proves the old session's drain keeps to its deadline and the session
    // stops by itself: not aborted by the source manager, which gives a
    // source 10 s (its STOP_TIMEOUT) and then aborts it, with an ERROR.
    // Passing: DRAIN_LIMIT (3 s) and the link's close, about 3-4 s, and no
    // abort. Without the deadline the drain never ends under this stream:
    // the abort, always, and a reload of at least 10 s. Asserted on the
    // abort itself, and on a time under 10 s below.
    let logged = log.text();
    assert!(
        logged.contains("session connected"),
        "socket.io {sio}: the relay's log was not captured: {logged}"
    );
    assert!(
        !logged.contains("source did not stop in time"),
        "socket.io {sio}: the old session was aborted after the reload took {took:?}: {logged}"
    );
    // Proves the stop also ends well inside the 10 s, not just short of the
    // abort: a session using all the budget the relay allows itself after a
    // stop (DRAIN_LIMIT and what follows it in session.rs: 3 + 2 + 0.5 +
    // 0.25 + 4 = 9.75 s) came within 0.25 s of the abort. Passing about
    // 3.2 s; the bound sits some 4 s above that and 2.75 s below 9.75 s.
    assert!(
        took < Duration::from_secs(7),
        "socket.io {sio}: the reload took {took:?}"
    );
    let (_, gone) = peer.expect("disconnect").await;
    assert_eq!(
        gone["reason"], "client namespace disconnect",
        "socket.io {sio}: {gone}"
    );
    let left = relay
        .ctx
        .metrics
        .ingest_errors
        .with_label_values(&["dropped_at_stop"])
        .get();
    // Still far behind a stream this fast when the 3 s ran out: what it had
    // received and not journaled is counted (and logged), not dropped
    // without a word. Only a debug build (what the suite runs) is sure to be
    // behind: a release build journals about twice as fast as this peer sends.
    assert!(
        left > 0 || !cfg!(debug_assertions),
        "socket.io {sio}: sent {}, nothing counted as dropped at the stop",
        gone["sent"]
    );
    peer.expect("signed").await;
    // The shutdown gives up events too (the new session is behind the same
    // stream). The stopping process is seldom scraped again: the next start
    // says what the shutdown gave up, and only that (not the reload's).
    let metrics = relay.ctx.metrics.clone();
    let dir = relay.stop().await;
    let at_shutdown = metrics
        .ingest_errors
        .with_label_values(&["dropped_at_stop"])
        .get()
        - left;
    assert!(
        at_shutdown > 0 || !cfg!(debug_assertions),
        "socket.io {sio}: nothing given up at the shutdown"
    );
    let text = common::base_config(dir.path());
    let last_stop = |relay: &TestRelay| {
        relay
            .ctx
            .metrics
            .ingest_errors
            .with_label_values(&["dropped_at_last_stop"])
            .get()
    };
    let again = common::start_relay_in(dir, &text).await;
    assert_eq!(last_stop(&again), at_shutdown, "socket.io {sio}");
    // Said once.
    let dir = again.stop().await;
    let once_more = common::start_relay_in(dir, &text).await;
    assert_eq!(last_stop(&once_more), 0, "socket.io {sio}");
    once_more.stop().await;
}

#[tokio::test]
async fn sio2_a_stop_under_a_steady_stream_closes_in_order() {
    a_stop_under_a_steady_stream_closes_in_order(2).await;
}

#[tokio::test]
async fn sio4_a_stop_under_a_steady_stream_closes_in_order() {
    a_stop_under_a_steady_stream_closes_in_order(4).await;
}

/// A server whose middleware never opens the namespace keeps the connection
/// alive with its heartbeat: the session gives up after its silence limit
/// (2 × hello_interval + 5 s) and says why, instead of sitting in
/// `connecting` for as long as the server likes.
async fn a_namespace_never_opened_is_given_up(sio: u8) {
    let peer = Peer::spawn(sio, &["--namespace", "hold", "--ping-ms", "500"]).await;
    let engine = if sio == 2 { "3" } else { "4" };
    let relay = start_relay(&peer, engine, KEY, "key").await;
    common::eventually(Duration::from_secs(30), "a connect_timeout", || {
        reconnects(&relay, "connect_timeout") >= 1
    })
    .await;
    let error = last_error(&relay).unwrap_or_default();
    assert!(
        error.contains("did not open the namespace"),
        "socket.io {sio}: {error}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn sio2_a_namespace_never_opened_is_given_up() {
    a_namespace_never_opened_is_given_up(2).await;
}

#[tokio::test]
async fn sio4_a_namespace_never_opened_is_given_up() {
    a_namespace_never_opened_is_given_up(4).await;
}

/// The wrong `engine_io` for the server is said in /status in words that
/// lead to the fix: "4" against socket.io 2 (which opens a second, unasked
/// namespace session the server never ends) and "3" against socket.io 4
/// (which upgrades, then writes an HTTP 400 into the websocket). And `auto`
/// against a socket.io 2 server that refuses the namespace takes it for
/// Engine.IO 3 (socket.io 2 refuses in a string, 3+ in an object).
#[tokio::test]
async fn a_wrong_engine_io_setting_is_named() {
    for (sio, engine, words) in [
        (2, "4", "speaks socket.io 2"),
        (4, "3", "did not speak Engine.IO 3"),
    ] {
        let peer = Peer::start(sio).await;
        let relay = start_relay(&peer, engine, KEY, "key").await;
        common::eventually(WAIT, words, || {
            last_error(&relay).is_some_and(|e| e.contains(words))
        })
        .await;
        relay.stop().await;
    }
    let peer = Peer::spawn(2, &["--namespace", "refuse"]).await;
    let relay = start_relay(&peer, "auto", KEY, "key").await;
    common::eventually(WAIT, "the namespace refused", || {
        last_error(&relay).is_some_and(|e| e.contains("nope"))
    })
    .await;
    let detail = upstream_state(&relay).and_then(|s| s.1);
    assert_eq!(detail.as_deref(), Some("engine.io 3"));
    relay.stop().await;
}

/// Broken socket.io packets — an event whose JSON is cut off, an unknown
/// packet type — before `connected` (between `sign` and `connected`) and after
/// it: each is counted as malformed, never taken as an auth refusal, the
/// session stays (no reconnect: what the server sends next is not lost), and
/// the next valid event is journaled. The same on socket.io 2 and 4 (with
/// rust_socketio 0.6, a socket.io 4 session stopped reading after such a
/// frame and had to reconnect).
async fn malformed_frames_are_counted_never_auth(sio: u8) {
    const BROKEN_EVENT: &str = "2[\"response\",{bad";
    let mut peer = Peer::spawn(sio, &["--raw-on-sign", BROKEN_EVENT]).await;
    let engine = if sio == 2 { "3" } else { "4" };
    let relay = start_relay(&peer, engine, KEY, "key").await;
    peer.expect("signed").await;
    common::eventually(WAIT, "connected", || {
        upstream_state(&relay).map(|s| s.0) == Some(ConnState::Connected)
    })
    .await;
    for text in [BROKEN_EVENT, "9"] {
        peer.send(json!({"cmd": "raw", "text": text})).await;
        let (_, raw) = peer.expect("raw_sent").await;
        assert_eq!(raw["to"], 1, "socket.io {sio}: {raw}");
    }
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;
    assert_eq!(journaled_raws(&relay), vec![call_event(1)]);
    // Frames are handled in order: the three broken ones came before the event.
    assert_eq!(malformed(&relay), 3, "socket.io {sio}");
    assert_eq!(reconnects(&relay, "auth"), 0, "socket.io {sio}");
    assert_eq!(reconnects(&relay, "error"), 0, "socket.io {sio}");
    assert_eq!(reconnects(&relay, "closed"), 0, "socket.io {sio}");
    let stats = peer.stats().await;
    assert_eq!(stats["connections"], 1, "socket.io {sio}: {stats}");
    assert_eq!(stats["concurrent"], 1, "socket.io {sio}: {stats}");
    peer.assert_one_session_at_a_time().await;
    relay.stop().await;
}

#[tokio::test]
async fn sio2_malformed_frames_are_counted_never_auth() {
    malformed_frames_are_counted_never_auth(2).await;
}

#[tokio::test]
async fn sio4_malformed_frames_are_counted_never_auth() {
    malformed_frames_are_counted_never_auth(4).await;
}

/// A binary-event header whose attachment never comes, then the server closes
/// the connection (rust_socketio 0.6 panicked in its reader here, an
/// `unwrap()` on the ended engine.io stream, and reported nothing). With a
/// hello_interval of 60 s (no failing `hello` to tell; longer than a user
/// may set, so that one cannot pass for the notice), the session must still
/// notice at once and reconnect, and journal on the new session.
async fn a_reader_that_dies_silently_is_noticed(sio: u8) {
    const HELLO: Duration = Duration::from_secs(60);
    // Proves the closed connection is noticed when it closes. Passing: the
    // reconnect backoff (BACKOFF_MAX, 1 s, at most) and a handshake, about
    // 0.2-1.2 s. Unnoticed, the session would end only at its next `hello`,
    // which fails (HELLO after the last, about 60 s: the peer sends no `say`,
    // below, which would bring it to MIN_HELLO_GAP, 10 s, after the last),
    // or at the watchdog (2 × HELLO + 5 s) or socket.io 2's heartbeat ping
    // (25 s, the peer's default), whichever first: 24 s or more after the
    // close. The bound sits some 9 s above the one and 14 s below the other
    // (and under the peer's WAIT, so that its own words say why it fails).
    const PROMPTLY: Duration = Duration::from_secs(10);
    // `say` every 10 minutes (the peer's default is every 0.5 s): none comes
    // in this test, and the next `hello` is really HELLO away.
    let args = ["--hello-timeout-ms", "60000", "--say-ms", "600000"];
    let mut peer = Peer::spawn(sio, &args).await;
    // The old session's end, with its detail, is a WARN of
    // `callrelay::sources`; this test's relay runs on its thread.
    let (log, _capturing) = common::capture_log("callrelay::sources=info");
    let engine = if sio == 2 { "3" } else { "4" };
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{}[[voip24h]]\naccount = \"main\"\nurl = \"http://127.0.0.1:{}\"\nkey = \"{KEY}\"\n\
         engine_io = \"{engine}\"\nhello_interval = \"10s\"\n",
        common::base_config(dir.path()),
        peer.port
    );
    let relay = common::start_relay_tuned(dir, &text, |config| {
        for source in &mut config.voip24h {
            let source = source.get_mut();
            source.hello_interval = unspanned(HumanDuration(HELLO));
            source.backoff_min = unspanned(HumanDuration(BACKOFF_MIN));
            source.backoff_max = unspanned(HumanDuration(BACKOFF_MAX));
        }
    })
    .await;
    peer.expect("signed").await;
    common::eventually(WAIT, "connected", || {
        upstream_state(&relay).map(|s| s.0) == Some(ConnState::Connected)
    })
    .await;
    let header = "51-[\"response\",{\"_placeholder\":true,\"num\":0}]";
    peer.send(json!({"cmd": "raw", "text": header})).await;
    peer.expect("raw_sent").await;
    // The header is a valid packet whose data we do not assemble: counted,
    // never lost unseen.
    common::eventually(WAIT, "the binary event counted", || malformed(&relay) == 1).await;
    peer.send(json!({"cmd": "drop", "how": "close"})).await;
    let (down, _) = peer.expect("disconnect").await;
    let (up, _) = tokio::time::timeout(PROMPTLY, peer.expect("connect"))
        .await
        .unwrap_or_else(|_| {
            panic!("socket.io {sio}: no reconnect within {PROMPTLY:?} of the server's close")
        });
    let gap = up.duration_since(down);
    assert!(gap < PROMPTLY, "socket.io {sio}: reconnected after {gap:?}");
    peer.expect("signed").await;
    // Proves, whatever the timing, that the close itself ended the old
    // session: its end (logged before the reconnect's wait, the first of
    // this relay's) says the server closed the connection. Unnoticed, the
    // session ends when a write fails on the closed connection, its next
    // `hello` (`hello: …`) or a heartbeat ping, however soon that comes.
    let logged = log.text();
    let ends: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains("session ended; reconnecting"))
        .collect();
    let [end] = ends[..] else {
        panic!("socket.io {sio}: not one session end logged: {logged}");
    };
    assert!(
        end.contains("reason=\"closed\" detail=\"the connection was closed\""),
        "socket.io {sio}: the old session did not end on the server's close: {end}"
    );
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;
    assert_eq!(journaled_raws(&relay), vec![call_event(1)]);
    peer.assert_one_session_at_a_time().await;
    relay.stop().await;
}

#[tokio::test]
async fn sio2_a_reader_that_dies_silently_is_noticed() {
    a_reader_that_dies_silently_is_noticed(2).await;
}

#[tokio::test]
async fn sio4_a_reader_that_dies_silently_is_noticed() {
    a_reader_that_dies_silently_is_noticed(4).await;
}

/// Behind an HTTP proxy that wants credentials (`[proxy] https`): detection
/// and the session go through `CONNECT` tunnels, TLS stays end to end (the
/// server's certificate is still checked against the private CA), and the
/// events are journaled.
#[tokio::test]
async fn a_session_goes_through_an_authenticating_proxy() {
    let ca = TestCa::issue();
    let mut peer = Peer::start_tls(4, &ca).await;
    let mut proxy = ProxyPeer::start_with_login("relay", "pr0xy-pass").await;
    let ca_file = ca.ca_file.display().to_string();
    let extra = format!(
        "tls = {{ ca_file = {ca_file:?} }}\n\n[proxy]\nhttps = {:?}\n",
        proxy.url(Some(("relay", "pr0xy-pass")))
    );
    let relay = start_relay_at(&peer, "https", "auto", KEY, "key", &extra, || {}).await;
    // One tunnel to detect the Engine.IO version, one for the session.
    for _ in 0..2 {
        let tunnel = proxy.next_tunnel().await;
        assert_eq!(tunnel.target, format!("127.0.0.1:{}", peer.port));
        assert!(tunnel.authorized);
    }
    peer.expect("signed").await;
    connected_with_detected_engine(&relay, 4).await;
    assert_eq!(
        peer.stats().await["connections"],
        2,
        "every connection the server saw came through the proxy"
    );
    let shown = upstream(&relay).and_then(|u| u.proxy);
    assert_eq!(
        shown,
        Some(proxy.url(None)),
        "/status names the proxy, without the login"
    );
    peer.emit("response", json!([call_event(1)])).await;
    relay.wait_for_seq(1, WAIT).await;
    assert_eq!(journaled_raws(&relay), vec![call_event(1)]);
    relay.stop().await;
    peer.expect("disconnect").await;
}

/// A proxy that takes the connection and never answers `CONNECT` is the
/// proxy's failure, named, with reconnect reason `proxy`: the handshake's
/// bound (2 × hello_interval + 5 s) passed before the tunnel's own 10 s
/// wait, so it was counted as the server's `connect_timeout` and the proxy
/// went unnamed (proxy review, 2026-12-04).
#[tokio::test]
async fn a_proxy_that_never_answers_is_named_within_the_handshake_bound() {
    let mut peer = Peer::start(2).await;
    let (port, held) = common::proxy::silent_proxy().await;
    let extra = format!("\n[proxy]\nhttp = \"http://relay:pr0xy-pass@127.0.0.1:{port}\"\n");
    let relay = start_relay_at(&peer, "http", "auto", KEY, "key", &extra, || {}).await;
    common::eventually(WAIT, "the silent proxy named on /status", || {
        last_error(&relay).is_some_and(|e| {
            e.contains(&format!("the proxy http://127.0.0.1:{port} gave no tunnel"))
        })
    })
    .await;
    assert!(reconnects(&relay, "proxy") >= 1);
    assert_eq!(reconnects(&relay, "connect_timeout"), 0);
    let error = last_error(&relay).unwrap_or_default();
    assert!(!error.contains("pr0xy-pass"), "{error}");
    assert_eq!(peer.stats().await["connections"], 0);
    relay.stop().await;
    held.abort();
}

/// A proxy that refuses the relay's credentials: `/status` says so (without
/// the password), the reconnect reason is `proxy`, the server sees nothing,
/// and the relay keeps retrying with its backoff.
#[tokio::test]
async fn a_proxy_refusal_is_named_on_status_and_retried() {
    let mut peer = Peer::start(2).await;
    let mut proxy = ProxyPeer::start_with_login("relay", "pr0xy-pass").await;
    let extra = format!(
        "\n[proxy]\nhttp = {:?}\n",
        proxy.url(Some(("relay", "not-the-pass")))
    );
    let relay = start_relay_at(&peer, "http", "auto", KEY, "key", &extra, || {}).await;
    for _ in 0..2 {
        let tunnel = proxy.next_tunnel().await;
        assert_eq!(tunnel.target, format!("127.0.0.1:{}", peer.port));
        assert!(!tunnel.authorized);
    }
    common::eventually(WAIT, "the proxy's refusal on /status", || {
        last_error(&relay).is_some_and(|e| e.contains("asks for credentials (HTTP 407)"))
    })
    .await;
    assert!(reconnects(&relay, "proxy") >= 1);
    let error = last_error(&relay).unwrap_or_default();
    assert!(!error.contains("not-the-pass"), "{error}");
    assert_eq!(peer.stats().await["connections"], 0);
    relay.stop().await;
}
