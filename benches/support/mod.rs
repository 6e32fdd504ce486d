//! What the benchmarks share: one realistic Voip24h "ringing" event,
//! normalized as the vendor module would, so every bench measures the same
//! payload, and the daemon's global allocator.

use callrelay::event::{IncomingEvent, Transport, Vendor, VendorEvent};
use serde_json::json;

/// The daemon's allocator (src/main.rs), so what a bench measures in-process
/// is what ships; a bench's baseline in the same process shares it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Event `n`, unique by identity; its call id (the Kafka key) is `n % calls`,
/// so `calls` bounds how many distinct keys a run has.
pub fn ringing_event(n: u64, calls: u64, transport: Transport) -> IncomingEvent {
    let call = format!("1287674{:06}.299", n % calls.max(1));
    IncomingEvent {
        vendor: Vendor::Voip24h,
        account: "bench".into(),
        transport,
        received_at: time::OffsetDateTime::now_utc(),
        event: VendorEvent {
            event_type: "call.ringing".into(),
            subject: Some(call.clone()),
            time: None,
            unread_time: None,
            fields: serde_json::Map::from_iter([
                ("call_id".to_owned(), json!(call)),
                ("direction".to_owned(), json!("inbound")),
                ("from".to_owned(), json!("0832666859")),
                ("extension".to_owned(), json!("130")),
            ]),
            identity: format!("{call}|ring|130|{n}"),
        },
        raw: json!({"extend": "130", "state": "Ring", "phone": "0832666859", "callid": call, "type": "inbound", "n": n}).into(),
    }
}

/// `name` from the environment as a number, else `default`.
#[allow(dead_code)] // the journal benches' knobs; other benches share this module
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A journal in `dir` that keeps everything a bench writes: a dedup window of
/// ten minutes, an hour's retention, no size bound a bench reaches.
#[allow(dead_code)] // the journal benches'; other benches share this module
pub fn journal_in(dir: &std::path::Path) -> callrelay::journal::Journal {
    callrelay::journal::Journal::open(callrelay::journal::JournalOptions {
        dir: dir.to_path_buf(),
        dedup_window: std::time::Duration::from_secs(600),
        retention: std::time::Duration::from_secs(3600),
        max_size: 1 << 34,
    })
    .expect("journal")
}
