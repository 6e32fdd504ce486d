//! The journal writer's own cost: `Journal::append_batch` of fixed-size
//! batches into a journal that already holds a dedup window's worth of
//! events, so that what one commit touches is realistic. Deterministic in
//! instructions (batch sizes do not depend on timing), which makes it the
//! bench to run under `valgrind --tool=callgrind` for A/B comparisons:
//!
//!   cargo bench --bench journal_append                 # wall time per event
//!   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*timed_appends' \
//!     target/release/deps/journal_append-* --bench
//!
//! Env: APPEND_PREFILL (events already journaled, default 200000),
//! APPEND_BATCH (events per commit, default 64), APPEND_BATCHES (default 200).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use callrelay::event::{IncomingEvent, Transport};
use callrelay::journal::Journal;
use support::env_or;

fn batch(from: u64, size: u64) -> Vec<IncomingEvent> {
    (from..from + size)
        .map(|n| support::ringing_event(n, u64::MAX, Transport::Webhook))
        .collect()
}

/// The measured part, a function of its own so that callgrind can count only
/// it: `--collect-atstart=no --toggle-collect='*timed_appends'`.
#[inline(never)]
fn timed_appends(journal: &Journal, work: &[Vec<IncomingEvent>]) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let mut commits = Vec::with_capacity(work.len());
    for events in work {
        let t = Instant::now();
        journal.append_batch(events).expect("append");
        commits.push(t.elapsed());
    }
    (started.elapsed(), commits)
}

fn main() {
    let prefill = env_or("APPEND_PREFILL", 200_000);
    let size = env_or("APPEND_BATCH", 64).max(1);
    let batches = env_or("APPEND_BATCHES", 200);
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = support::journal_in(dir.path());
    let mut next = 0;
    while next < prefill {
        let n = (prefill - next).min(4_096);
        journal.append_batch(&batch(next, n)).expect("prefill");
        next += n;
    }
    // Batches are built before the clock starts: only the append is timed.
    let work: Vec<Vec<IncomingEvent>> = (0..batches)
        .map(|b| batch(prefill + b * size, size))
        .collect();
    let (elapsed, mut commits) = timed_appends(&journal, &work);
    commits.sort();
    let at =
        |p: f64| commits[((commits.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    let events = batches * size;
    println!(
        "journal_append: prefill {prefill}, {batches} batches × {size}: {:.1} µs/event, {:.0} events/s; \
         ms per append: mean {:.2}, p50 {:.2}, p99 {:.2}, max {:.2}",
        elapsed.as_secs_f64() * 1e6 / events as f64,
        events as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / batches as f64,
        at(0.5),
        at(0.99),
        at(1.0),
    );
}
