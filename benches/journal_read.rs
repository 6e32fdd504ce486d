//! What a WebSocket replay pays to read the journal, for a client filtered
//! to one account among many, against reading every event as an unfiltered
//! client does; both in the same run, alternated per round.
//!
//!   cargo bench --bench journal_read
//!
//! It fills a journal with READ_EVENTS call events (default 100,000, ~600
//! bytes of JSON each) spread over READ_ACCOUNTS accounts (default 100),
//! then reads it all, from seq 0, in the replay's pages (`REPLAY_PAGE`
//! records, `REPLAY_PAGE_BYTES` of JSON), READ_ROUNDS times (default 5):
//!
//! - **every event copied**: `Journal::read_page`, then the filter on each
//!   event's header, as a filtered replay did before it read its pages with
//!   `read_matching_page_unless_reopening` (and as the Kafka sink reads);
//! - **one account's copied**: `read_matching_page_unless_reopening` with
//!   the filter `account=acct0`;
//! - **every event taken**: the same with no filter (an unfiltered replay).
//!
//! It prints µs per journaled event read for each, per round, their medians,
//! and the median of the per-round ratio (one account's ÷ every event copied).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use callrelay::event::{HeaderRef, Transport};
use callrelay::journal::Journal;
use callrelay::sinks::websocket::session::{REPLAY_PAGE, REPLAY_PAGE_BYTES};
use support::env_or;

const ACCOUNT: &str = "acct0";

fn of_the_account(header: &HeaderRef<'_>) -> bool {
    header.account == ACCOUNT
}

/// Every event copied, then filtered: (events read, events kept).
fn every_event_copied(journal: &Journal) -> (u64, u64) {
    let (mut after, mut read, mut kept) = (0, 0, 0);
    loop {
        let page = journal
            .read_page(after, REPLAY_PAGE, REPLAY_PAGE_BYTES)
            .expect("read");
        let Some(last) = page.last() else {
            return (read, kept);
        };
        after = last.seq;
        read += page.len() as u64;
        kept += page
            .iter()
            .filter(|e| of_the_account(&e.header.borrowed()))
            .count() as u64;
    }
}

/// Pages read with the filter in the read: (events read, events kept).
fn matching_pages(journal: &Journal, accept: fn(&HeaderRef<'_>) -> bool) -> (u64, u64) {
    let (mut after, mut read, mut kept) = (0, 0, 0);
    loop {
        let page = journal
            .read_matching_page_unless_reopening(after, REPLAY_PAGE, REPLAY_PAGE_BYTES, accept)
            .expect("read");
        let Some(last) = page.entries.last() else {
            return (read, kept);
        };
        after = last.seq();
        read += page.entries.len() as u64;
        kept += page
            .entries
            .iter()
            .filter(|e| matches!(e, callrelay::journal::PageEntry::Matching(_)))
            .count() as u64;
    }
}

fn timed(read: impl FnOnce() -> (u64, u64)) -> (Duration, u64, u64) {
    let started = Instant::now();
    let (read, kept) = read();
    (started.elapsed(), read, kept)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let events = env_or("READ_EVENTS", 100_000);
    let accounts = env_or("READ_ACCOUNTS", 100).max(1);
    let rounds = env_or("READ_ROUNDS", 5).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = support::journal_in(dir.path());
    for from in (0..events).step_by(1_000) {
        let batch: Vec<_> = (from..(from + 1_000).min(events))
            .map(|n| {
                let mut event = support::ringing_event(n, u64::MAX, Transport::Webhook);
                event.account = format!("acct{}", n % accounts);
                event
            })
            .collect();
        journal.append_batch(&batch).expect("append");
    }
    println!("journal_read: {events} events over {accounts} accounts, {rounds} rounds");
    println!(
        "round | every event copied µs/event | one account's copied | every event taken | ratio"
    );
    let (mut copied, mut one, mut taken, mut ratios) = (vec![], vec![], vec![], vec![]);
    let per_event = |d: Duration, read: u64| d.as_secs_f64() * 1e6 / read.max(1) as f64;
    for round in 0..rounds {
        let mut runs: [Option<(Duration, u64, u64)>; 3] = [None; 3];
        // Alternated, so that neither always reads a cache the other warmed.
        let order: [usize; 3] = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for which in order {
            runs[which] = Some(match which {
                0 => timed(|| every_event_copied(&journal)),
                1 => timed(|| matching_pages(&journal, of_the_account)),
                _ => timed(|| matching_pages(&journal, |_| true)),
            });
        }
        let [Some(a), Some(b), Some(c)] = runs else {
            unreachable!("each of the three ran")
        };
        assert_eq!(
            (a.1, a.2),
            (b.1, b.2),
            "both read every event, kept the same"
        );
        assert_eq!((c.1, c.2), (events, events));
        let (a, b, c) = (
            per_event(a.0, a.1),
            per_event(b.0, b.1),
            per_event(c.0, c.1),
        );
        println!("{round} | {a:.3} | {b:.3} | {c:.3} | {:.2}", b / a);
        copied.push(a);
        one.push(b);
        taken.push(c);
        ratios.push(b / a);
    }
    println!(
        "median | {:.3} | {:.3} | {:.3} | {:.2} (median per-round ratio)",
        median(copied),
        median(one),
        median(taken),
        median(ratios)
    );
}
