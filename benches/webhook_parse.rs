//! The webhook handler's own work per delivery, without HTTP or the journal:
//! the vendor's check, `vendors::parse`, the event id and CloudEvent JSON
//! (`PreparedEvent`) and the 200's body, for one Tel4vn `ringing` hook as
//! `webhook_load` sends it. Deterministic in instructions, so it is the bench
//! to run under callgrind for A/B comparisons of the parse path:
//!
//!   cargo bench --bench webhook_parse                   # ns per delivery
//!   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*timed_deliveries' \
//!     target/release/deps/webhook_parse-* --bench
//!
//! Env: PARSE_DELIVERIES (default 200000).

/// The daemon's allocator (src/main.rs): allocation is much of this path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/tel4vn.rs"]
mod tel4vn;

use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use callrelay::config::Secret;
use callrelay::event::{IncomingEvent, PreparedEvent, Transport, Vendor};
use callrelay::ingest::Ack;
use callrelay::sources::webhook::response::Answer;
use callrelay::vendors::{self, Credentials, Delivery, Method, Parsed};

/// One delivery through everything the handler does between reading the
/// body and waiting for the commit, plus the 200's body; returns its length
/// so nothing is optimized away.
fn deliver(credentials: &Credentials, headers: &HeaderMap, body: &[u8], seq: u64) -> usize {
    let delivery = Delivery {
        method: Method::Post,
        headers,
        query: &[],
        body,
    };
    let Ok(verified) = credentials.verify(delivery) else {
        return 0;
    };
    let received_at = time::OffsetDateTime::now_utc();
    let Ok(Parsed::Event(event, raw)) = vendors::parse(Vendor::Tel4vn, &verified, received_at)
    else {
        return 0;
    };
    let incoming = IncomingEvent {
        vendor: Vendor::Tel4vn,
        account: "bench".to_owned(),
        transport: Transport::Webhook,
        received_at,
        event,
        raw,
    };
    let prepared = PreparedEvent::new(&incoming);
    let mut json = Vec::new();
    prepared.write_json(seq, &mut json);
    let answer = Answer::accepted(Ack {
        id: prepared.id,
        seq,
        duplicate: false,
    });
    json.len() + usize::from(answer.status().as_u16())
}

/// The measured part, a function of its own so that callgrind can count only
/// it: `--collect-atstart=no --toggle-collect='*timed_deliveries'`.
#[inline(never)]
fn timed_deliveries(credentials: &Credentials, headers: &HeaderMap, bodies: &[Bytes]) -> usize {
    deliveries(credentials, headers, bodies)
}

fn deliveries(credentials: &Credentials, headers: &HeaderMap, bodies: &[Bytes]) -> usize {
    bodies
        .iter()
        .enumerate()
        .map(|(seq, b)| deliver(credentials, headers, b, seq as u64))
        .sum()
}

/// The warm-up's deliveries, through a function of their own: callgrind's
/// `--toggle-collect='*timed_deliveries'` counts only the measured ones
/// (the warm-up went through `timed_deliveries` too until 2026-12-05, so
/// callgrind's count held up to 10,000 deliveries more than were divided by).
#[inline(never)]
fn warm_up_deliveries(credentials: &Credentials, headers: &HeaderMap, bodies: &[Bytes]) -> usize {
    deliveries(credentials, headers, bodies)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs benches without `--bench`: a smoke check.
        let bodies: Vec<Bytes> = (0..10).map(tel4vn::ringing_hook).collect();
        let (credentials, headers) = setup();
        assert!(timed_deliveries(&credentials, &headers, &bodies) > 0);
        return;
    }
    let count: u64 = std::env::var("PARSE_DELIVERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let (credentials, headers) = setup();
    let bodies: Vec<Bytes> = (0..count).map(tel4vn::ringing_hook).collect();
    // Warm-up: the allocator's pages and the caches.
    warm_up_deliveries(&credentials, &headers, &bodies[..bodies.len().min(10_000)]);
    let started = Instant::now();
    let total = timed_deliveries(&credentials, &headers, &bodies);
    let elapsed = started.elapsed();
    println!(
        "webhook_parse: {count} Tel4vn deliveries, {:.0} ns per delivery ({total} bytes out)",
        elapsed.as_nanos() as f64 / count as f64
    );
}

fn setup() -> (Credentials, HeaderMap) {
    let credentials = Credentials::Tel4vn {
        api_key: Secret::new("bench-key").into(),
        header: "Authorization".to_owned(),
        query: None,
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer bench-key"),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (credentials, headers)
}
