//! Crash safety of the journal and ingest: a child process submits events and
//! prints every acknowledgement; the parent kills it with SIGKILL at random
//! moments, reopens the journal, and checks that every acknowledged event is
//! there, that no seq repeats, and that seq continues after the last one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use callrelay::event::{IncomingEvent, Transport, Vendor, VendorEvent};
use callrelay::ingest::{Hub, Ingest, IngestOptions};
use callrelay::journal::{Journal, JournalOptions};
use callrelay::metrics::Metrics;
use serde_json::json;

const CHILD_ENV: &str = "CALLRELAY_CRASH_CHILD_DIR";

/// A crash child, killed if the round fails before its own kill: the child
/// appends for good and would outlive the test.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn options(dir: &std::path::Path) -> JournalOptions {
    JournalOptions {
        dir: dir.to_path_buf(),
        dedup_window: Duration::from_secs(600),
        retention: Duration::from_secs(3600),
        max_size: 1 << 30,
    }
}

fn event(identity: String) -> IncomingEvent {
    let raw = json!({"UniqueId": identity}).into();
    IncomingEvent {
        vendor: Vendor::Voipex,
        account: "crash".into(),
        transport: Transport::Webhook,
        received_at: time::OffsetDateTime::now_utc(),
        event: VendorEvent {
            event_type: "call.ringing".into(),
            subject: Some(identity.clone()),
            time: None,
            unread_time: None,
            fields: Default::default(),
            identity,
        },
        raw,
    }
}

/// The child: submits events from many tasks forever and prints `ACK seq identity`
/// for each acknowledgement. Ignored, so a plain run does not list it as a
/// test that passed; the parent runs it with `--ignored`.
#[test]
#[ignore = "the child process of acknowledged_events_survive_sigkill"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("CALLRELAY_CRASH_ROUND")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let journal = Arc::new(Journal::open(options(std::path::Path::new(&dir))).unwrap());
        let hub = Hub::new(journal.last_seq(), 16);
        let ingest = Ingest::start(
            journal,
            hub,
            Arc::new(Metrics::new()),
            IngestOptions::default(),
        )
        .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for task in 0..16u64 {
            let handle = ingest.handle();
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let identity = format!("r{round}-t{task}-{i}");
                    match handle.submit(event(identity.clone())).await {
                        Ok(ack) => {
                            let _ =
                                tx.send(format!("ACK {} {} {}", ack.seq, ack.duplicate, identity));
                        }
                        Err(e) => panic!("submit failed: {e}"),
                    }
                }
            });
        }
        let mut out = std::io::stdout().lock();
        while let Some(line) = rx.recv().await {
            // Each line is flushed before the next is taken: what the parent
            // reads was acknowledged.
            writeln!(out, "{line}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[test]
fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let rounds = 12;
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    let mut next_rand = move |bound: u64| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state % bound
    };
    for round in 0..rounds {
        let mut child = KilledOnDrop(
            Command::new(&exe)
                .args([
                    "--exact",
                    "crash_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, dir.path())
                .env("CALLRELAY_CRASH_ROUND", round.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("ACK ") && tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Once the child acknowledges, kill it at a random moment after.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("round {round}: the child acknowledged nothing in 60 s"));
        std::thread::sleep(Duration::from_millis(next_rand(300)));
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        reader.join().unwrap();
        let lines: Vec<String> = std::iter::once(first).chain(rx.try_iter()).collect();
        for line in lines {
            let mut parts = line.split(' ');
            let (Some(_), Some(seq), Some(dup), Some(identity)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue; // a line cut by the kill
            };
            let Ok(seq) = seq.parse::<u64>() else {
                continue;
            };
            assert_eq!(dup, "false", "fresh identities are never duplicates");
            if let Some(previous) = acked.insert(seq, identity.to_owned()) {
                panic!("seq {seq} acknowledged twice: {previous} and {identity}");
            }
        }

        // Reopen: every acknowledged event is there, seqs unique and increasing.
        let journal = Journal::open(options(dir.path())).unwrap();
        let events = journal.read_after(0, usize::MAX).unwrap();
        let mut seen = BTreeSet::new();
        let mut by_seq = BTreeMap::new();
        let mut last = 0;
        for e in &events {
            assert!(e.seq > last, "seqs strictly increase");
            last = e.seq;
            let subject = e.header.subject.clone().unwrap();
            assert!(
                seen.insert(subject.clone()),
                "event {subject} journaled twice"
            );
            by_seq.insert(e.seq, subject);
        }
        for (seq, identity) in &acked {
            assert_eq!(
                by_seq.get(seq),
                Some(identity),
                "round {round}: acknowledged seq {seq} ({identity}) lost"
            );
        }
        // Seq continues after the last one, never reusing.
        let max_acked = acked.keys().next_back().copied().unwrap_or(0);
        assert!(journal.last_seq() >= max_acked);
        let out = journal
            .append_batch(&[event(format!("probe-{round}"))])
            .unwrap();
        match &out[0] {
            callrelay::journal::AppendOutcome::Appended(e) => {
                assert_eq!(e.seq, journal.last_seq());
                assert!(e.seq > last);
                acked.insert(e.seq, format!("probe-{round}"));
            }
            other => panic!("probe was {other:?}"),
        }
    }
    assert!(acked.len() > rounds, "the children acknowledged events");
}
