use super::*;
use crate::journal::JournalOptions;
use crate::journal::tests_support::event;
use std::sync::Mutex;
use std::time::Duration;

struct Gate {
    journal: Journal,
    /// When set, commits wait for the gate to open (a slow disk).
    gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    fail: AtomicBool,
}

impl BatchStore for Gate {
    fn append_batch(
        &self,
        events: &mut [PreparedEvent],
    ) -> Result<Vec<AppendOutcome>, JournalError> {
        if let Some(rx) = self.gate.lock().unwrap().take() {
            let _ = rx.recv();
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(JournalError::Corrupt { seq: 0 });
        }
        self.journal.append_prepared(events)
    }
}

fn setup(dir: &std::path::Path) -> (Arc<Gate>, std::sync::mpsc::Sender<()>, Ingest, Hub) {
    let journal = Journal::open(JournalOptions {
        dir: dir.to_path_buf(),
        dedup_window: Duration::from_secs(600),
        retention: Duration::from_secs(3600),
        max_size: 1 << 30,
    })
    .unwrap();
    let (open, gate) = std::sync::mpsc::channel();
    let store = Arc::new(Gate {
        journal,
        gate: Mutex::new(Some(gate)),
        fail: AtomicBool::new(false),
    });
    let hub = Hub::new(0, 1024);
    let ingest = Ingest::start(
        store.clone(),
        hub.clone(),
        Arc::new(Metrics::new()),
        IngestOptions::default(),
    );
    (store, open, ingest, hub)
}

#[tokio::test]
async fn ack_waits_for_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, open, ingest, hub) = setup(dir.path());
    let handle = ingest.handle();
    let mut pending = tokio::spawn(async move { handle.submit(event("a")).await });
    // The commit is held: the ack must not come.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut pending)
            .await
            .is_err()
    );
    assert_eq!(*hub.committed().borrow(), 0);
    open.send(()).unwrap();
    let ack = pending.await.unwrap().unwrap();
    assert_eq!((ack.seq, ack.duplicate), (1, false));
    assert_eq!(*hub.committed().borrow(), 1);
    ingest.shutdown().await;
}

#[tokio::test]
async fn a_failed_commit_fails_the_ack_and_journals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, open, ingest, _hub) = setup(dir.path());
    store.fail.store(true, Ordering::SeqCst);
    open.send(()).unwrap();
    let handle = ingest.handle();
    let err = handle.submit(event("a")).await.unwrap_err();
    assert!(matches!(err, IngestError::Commit(_)));
    assert!(!handle.is_writable());
    assert_eq!(store.journal.last_seq(), 0);
    store.fail.store(false, Ordering::SeqCst);
    let ack = handle.submit(event("a")).await.unwrap();
    assert_eq!(ack.seq, 1);
    assert!(handle.is_writable());
    ingest.shutdown().await;
}

#[tokio::test]
async fn concurrent_submissions_get_distinct_seqs_and_duplicates_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, open, ingest, hub) = setup(dir.path());
    open.send(()).unwrap();
    let mut live = hub.subscribe_live();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let h = ingest.handle();
        tasks.push(tokio::spawn(async move {
            h.submit(event(&format!("e{}", i % 100))).await
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.push(t.await.unwrap().unwrap());
    }
    let fresh: std::collections::BTreeSet<u64> = acks
        .iter()
        .filter(|a| !a.duplicate)
        .map(|a| a.seq)
        .collect();
    assert_eq!(fresh.len(), 100);
    assert_eq!(
        fresh.iter().copied().collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    assert_eq!(acks.iter().filter(|a| a.duplicate).count(), 100);
    for seq in 1..=100 {
        assert_eq!(live.recv().await.unwrap().seq, seq);
    }
    ingest.shutdown().await;
}

#[tokio::test]
async fn shutdown_commits_what_is_queued_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (store, open, ingest, _hub) = setup(dir.path());
    let handle = ingest.handle();
    let receivers: Vec<_> = (0..10)
        .map(|i| handle.try_submit(event(&format!("q{i}"))).unwrap())
        .collect();
    open.send(()).unwrap();
    ingest.shutdown().await;
    for rx in receivers {
        assert!(!rx.await.unwrap().unwrap().duplicate);
    }
    assert_eq!(store.journal.last_seq(), 10);
    assert_eq!(
        handle.submit(event("late")).await.unwrap_err(),
        IngestError::ShuttingDown
    );
}
