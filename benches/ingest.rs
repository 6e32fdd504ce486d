//! Ingest → journal commit → ack: events per second and submit-to-ack latency
//! at several concurrency levels (how many submitters wait at once, like
//! webhook requests in flight). Run: `cargo bench --bench ingest`.
//! Prints a Markdown table; docs/PERFORMANCE.md holds the figures.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use callrelay::event::{IncomingEvent, Transport};
use callrelay::ingest::{Hub, Ingest, IngestOptions};
use callrelay::journal::{Journal, JournalOptions};
use callrelay::metrics::Metrics;

fn event(n: u64) -> IncomingEvent {
    support::ringing_event(n, u64::MAX, Transport::Webhook)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn run(concurrency: usize, total: u64, max_batch: usize) -> (f64, Duration, Duration, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Arc::new(
        Journal::open(JournalOptions {
            dir: dir.path().to_path_buf(),
            dedup_window: Duration::from_secs(600),
            retention: Duration::from_secs(3600),
            max_size: 1 << 34,
        })
        .expect("journal"),
    );
    let hub = Hub::new(0, 1024);
    let ingest = Ingest::start(
        journal.clone(),
        hub,
        Arc::new(Metrics::new()),
        IngestOptions {
            queue: 65_536,
            max_batch,
        },
    )
    .expect("ingest thread");
    let per_task = total / concurrency as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency as u64 {
        let handle = ingest.handle();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task as usize);
            for i in 0..per_task {
                let ev = event(t * per_task + i);
                let at = Instant::now();
                handle.submit(ev).await.expect("ack");
                latencies.push(at.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed();
    let count = latencies.len() as f64;
    latencies.sort();
    let commits_per_event = 0.0; // not tracked; see batch bound
    ingest.shutdown().await;
    let _ = commits_per_event;
    (
        count / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        journal.bytes() as f64 / count,
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let total = if quick { 20_000 } else { 100_000 };
    println!(
        "| submitters | max_batch | events/s (acked) | p50 submit→ack | p99 submit→ack | bytes/event |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (concurrency, max_batch) in [
        (1, 2048),
        (16, 2048),
        (256, 2048),
        (1024, 2048),
        (1024, 256),
    ] {
        let n = if concurrency == 1 { total / 20 } else { total };
        let (rate, p50, p99, bytes) = runtime.block_on(run(concurrency, n, max_batch));
        println!(
            "| {concurrency} | {max_batch} | {rate:.0} | {:.2} ms | {:.2} ms | {bytes:.0} |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}
