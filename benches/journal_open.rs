//! What a start pays for the dedup index: `Journal::open` of a journal whose
//! `dedup_log` holds N ids (a long `dedup.window` at a high rate), after a
//! clean close, with the file in the kernel's page cache as a restart finds
//! it. Webhooks are answered 503 for that long (docs/operations.md).
//!
//! The events themselves are dropped by a 64 MiB `max_size` as the fill
//! goes (their dedup entries outlive them, as in a relay whose window is
//! longer than its journal holds), so the file holds mostly the dedup log
//! and the open measures the index's load, not the events'.
//!
//! Env: OPEN_IDS (dedup entries, default 2000000), OPEN_ROUNDS (default 3),
//! OPEN_DIR (where the journal goes, default the current directory: a disk,
//! not tmpfs).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use callrelay::event::{IncomingEvent, Transport};
use callrelay::journal::{Journal, JournalOptions};
use support::env_or;

fn options(dir: &std::path::Path) -> JournalOptions {
    JournalOptions {
        dir: dir.to_path_buf(),
        dedup_window: Duration::from_secs(24 * 3600),
        retention: Duration::from_secs(24 * 3600),
        max_size: 64 << 20,
    }
}

fn batch(from: u64, size: u64) -> Vec<IncomingEvent> {
    (from..from + size)
        .map(|n| support::ringing_event(n, u64::MAX, Transport::Webhook))
        .collect()
}

fn main() {
    let ids = env_or("OPEN_IDS", 2_000_000);
    let rounds = env_or("OPEN_ROUNDS", 3).max(1);
    let dir = tempfile::tempdir_in(std::env::var("OPEN_DIR").unwrap_or_else(|_| ".".into()))
        .expect("tempdir");
    let journal = Journal::open(options(dir.path())).expect("journal");
    let filling = Instant::now();
    let mut next = 0;
    while next < ids {
        let n = (ids - next).min(4_096);
        journal.append_batch(&batch(next, n)).expect("fill");
        next += n;
        if next % (64 * 4_096) == 0 {
            journal.enforce_retention(&[]).expect("retention");
        }
    }
    journal.enforce_retention(&[]).expect("retention");
    let entries = journal.dedup_entries();
    let file_bytes = journal.file_bytes();
    assert!(journal.close(Duration::from_secs(10)), "closed cleanly");
    drop(journal);
    println!(
        "journal_open: filled {entries} dedup entries in {:.1} s, file {:.0} MiB",
        filling.elapsed().as_secs_f64(),
        file_bytes as f64 / (1 << 20) as f64,
    );

    let mut took = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let journal = Journal::open(options(dir.path())).expect("reopen");
        took.push(started.elapsed());
        assert_eq!(journal.dedup_entries(), entries, "every entry loaded");
        assert!(journal.close(Duration::from_secs(10)), "closed cleanly");
    }
    took.sort();
    let ms: Vec<String> = took
        .iter()
        .map(|t| format!("{:.0}", t.as_secs_f64() * 1e3))
        .collect();
    let median = took[took.len() / 2].as_secs_f64();
    println!(
        "journal_open: {entries} ids, open after a clean close (ms, sorted): {}; median {:.0} ms, {:.2} s per 10 million ids",
        ms.join(" "),
        median * 1e3,
        median * 1e7 / entries.max(1) as f64,
    );
}
