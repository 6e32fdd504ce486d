use super::*;
use crate::journal::JournalOptions;
use crate::journal::tests_support::event;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::app::tests_support::until;
use tokio::sync::broadcast;

struct Gate {
    journal: Journal,
    /// When set, commits wait for the gate to open (a slow disk).
    gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    fail: AtomicBool,
    /// When set, commits fail with this errno (ENOSPC: a full disk), then
    /// with redb's refusal that repeats it until a reopen.
    commits_fail_with: Mutex<Option<i32>>,
    /// That failure was met and not reopened since.
    latched: AtomicBool,
    /// When set, the next commit lands but is reported failed (a final sync
    /// that failed after the data was written).
    land_then_fail: AtomicBool,
    /// When set, the next read back fails.
    fail_next_read: AtomicBool,
    /// When set, commits panic (a bug in the store).
    panic: AtomicBool,
    /// Told when a commit has reached the gate (the writer is in it).
    reached_gate: std::sync::mpsc::Sender<()>,
    gate_reached: Mutex<std::sync::mpsc::Receiver<()>>,
    /// The number of events of each commit, in order.
    batches: Mutex<Vec<usize>>,
    recovers: AtomicUsize,
    /// When set, reopens fail (the disk still failing).
    fail_recover: AtomicBool,
    /// When set, reopens fail with this errno, as opening the file does.
    reopens_fail_with: Mutex<Option<i32>>,
    /// How long a reopen takes (a large journal read again).
    recover_takes: Mutex<Duration>,
    reads: AtomicUsize,
}

impl Gate {
    /// Waits until the writer is in a commit held by the gate.
    fn wait_at_gate(&self) {
        self.gate_reached.lock().unwrap().recv().unwrap();
    }
}

impl BatchStore for Gate {
    fn append_batch(
        &self,
        events: &mut [PreparedEvent],
    ) -> Result<Vec<AppendOutcome>, JournalError> {
        self.batches.lock().unwrap().push(events.len());
        if let Some(rx) = self.gate.lock().unwrap().take() {
            let _ = self.reached_gate.send(());
            let _ = rx.recv();
        }
        if let Some(errno) = *self.commits_fail_with.lock().unwrap() {
            return Err(JournalError::Storage(
                if self.latched.swap(true, Ordering::SeqCst) {
                    redb::Error::PreviousIo
                } else {
                    redb::Error::Io(std::io::Error::from_raw_os_error(errno))
                },
            ));
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(JournalError::Corrupt { seq: 0 });
        }
        assert!(!self.panic.load(Ordering::SeqCst), "a bug in the store");
        let outcomes = self.journal.append_prepared(events);
        if self.land_then_fail.swap(false, Ordering::SeqCst) {
            return Err(JournalError::Corrupt { seq: 0 });
        }
        outcomes
    }

    fn recover(&self) -> Result<(), JournalError> {
        self.recovers.fetch_add(1, Ordering::SeqCst);
        let takes = *self.recover_takes.lock().unwrap();
        std::thread::sleep(takes);
        if self.fail_recover.load(Ordering::SeqCst) {
            return Err(JournalError::Closed);
        }
        if let Some(errno) = *self.reopens_fail_with.lock().unwrap() {
            return Err(crate::journal::open_failed(
                "journal.redb".as_ref(),
                crate::journal::Opening::AfterIoError,
                redb::Error::Io(std::io::Error::from_raw_os_error(errno)),
            ));
        }
        self.latched.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<JournaledEvent>, JournalError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.fail_next_read.swap(false, Ordering::SeqCst) {
            return Err(JournalError::Closed);
        }
        self.journal.read_after(after, limit)
    }

    fn last_seq(&self) -> u64 {
        self.journal.last_seq()
    }
}

fn setup(dir: &std::path::Path) -> (Arc<Gate>, std::sync::mpsc::Sender<()>, Ingest, Hub) {
    let (store, open, ingest, hub, _) = setup_with(dir, IngestOptions::default());
    (store, open, ingest, hub)
}

/// A journal behind an opened gate, an ingest over it, and its handle;
/// the directory lives as long as the first value is held.
fn opened() -> (tempfile::TempDir, Arc<Gate>, Ingest, IngestHandle) {
    let dir = tempfile::tempdir().unwrap();
    let (store, open, ingest, _hub) = setup(dir.path());
    open.send(()).unwrap();
    let handle = ingest.handle();
    (dir, store, ingest, handle)
}

/// A journal behind a closed gate, and an ingest over it.
fn setup_with(
    dir: &std::path::Path,
    options: IngestOptions,
) -> (
    Arc<Gate>,
    std::sync::mpsc::Sender<()>,
    Ingest,
    Hub,
    Arc<Metrics>,
) {
    let journal = Journal::open(JournalOptions {
        dir: dir.to_path_buf(),
        dedup_window: Duration::from_secs(600),
        retention: Duration::from_secs(3600),
        max_size: 1 << 30,
    })
    .unwrap();
    let (open, gate) = std::sync::mpsc::channel();
    let (reached_gate, gate_reached) = std::sync::mpsc::channel();
    let store = Arc::new(Gate {
        journal,
        gate: Mutex::new(Some(gate)),
        fail: AtomicBool::new(false),
        commits_fail_with: Mutex::new(None),
        latched: AtomicBool::new(false),
        land_then_fail: AtomicBool::new(false),
        fail_next_read: AtomicBool::new(false),
        panic: AtomicBool::new(false),
        reached_gate,
        gate_reached: Mutex::new(gate_reached),
        batches: Mutex::new(Vec::new()),
        recovers: AtomicUsize::new(0),
        fail_recover: AtomicBool::new(false),
        reopens_fail_with: Mutex::new(None),
        recover_takes: Mutex::new(Duration::ZERO),
        reads: AtomicUsize::new(0),
    });
    let hub = Hub::new(0, 1024);
    let metrics = Arc::new(Metrics::new());
    let ingest =
        Ingest::start(store.clone(), hub.clone(), metrics.clone(), options).expect("ingest thread");
    (store, open, ingest, hub, metrics)
}

/// What a webhook held for its body is given back when its event is
/// journaled, also when the sender hung up while the event waited: it was
/// given back at once then, and the next request took it again, so the
/// queue could hold 16,384 bodies while the budget read empty.
#[tokio::test]
async fn a_body_held_for_an_event_is_given_back_at_its_commit_not_when_its_sender_goes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, open, ingest, _hub) = setup(dir.path());
    let handle = ingest.handle();
    let budget = crate::sources::webhook::budget::BodyBudget::new();
    let mut held = budget.reservation("tel4vn/main".to_owned());
    assert!(held.grow_to(1_000, 1 << 20));
    let answer = handle
        .try_submit_prepared(PreparedEvent::new(&event("a")), Some(held))
        .unwrap();
    store.wait_at_gate();
    // The sender hangs up while the commit is held.
    drop(answer);
    assert_eq!(
        budget.in_use(),
        1_000,
        "given back before the event was journaled"
    );
    open.send(()).unwrap();
    ingest.shutdown().await;
    assert_eq!(budget.in_use(), 0);
    assert_eq!(store.journal.last_seq(), 1);
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

/// `/status` said `journal.writable: true` after the writer thread had
/// died, while every webhook got 503 and `/readyz` said it had stopped.
#[tokio::test]
async fn a_writer_that_panicked_is_not_writable() {
    let (_dir, store, _ingest, handle) = opened();
    assert!(handle.is_writable());
    store.panic.store(true, Ordering::SeqCst);
    let err = handle.submit(event("a")).await.unwrap_err();
    assert!(matches!(err, IngestError::ShuttingDown), "{err:?}");
    // The thread's queue closes as it unwinds, just after the answer.
    tokio::time::timeout(Duration::from_secs(10), handle.tx.closed())
        .await
        .expect("the writer thread ends");
    assert!(!handle.is_writable());
}

#[tokio::test]
async fn a_commit_reported_failed_that_landed_reaches_the_sinks_without_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let (store, open, ingest, hub) = setup(dir.path());
    open.send(()).unwrap();
    let handle = ingest.handle();
    let mut live = hub.subscribe_live();
    let mut committed = hub.committed();
    store.land_then_fail.store(true, Ordering::SeqCst);
    let err = handle.submit(event("a")).await.unwrap_err();
    assert!(matches!(err, IngestError::Commit(_)));
    // Found when the store recovers, with no further commit to carry it.
    tokio::time::timeout(Duration::from_secs(5), committed.wait_for(|seq| *seq == 1))
        .await
        .expect("the landed event is announced")
        .unwrap();
    assert_eq!(live.recv().await.unwrap().seq, 1);
    // The submitter's retry is a duplicate of it; the next event follows on.
    let retry = handle.submit(event("a")).await.unwrap();
    assert_eq!((retry.seq, retry.duplicate), (1, true));
    let next = handle.submit(event("b")).await.unwrap();
    assert_eq!((next.seq, next.duplicate), (2, false));
    assert_eq!(live.recv().await.unwrap().seq, 2);
    ingest.shutdown().await;
}

/// An ingest whose commit of "a" landed but was reported failed, and whose
/// recovery could not read it back: the sinks have not had it yet.
async fn with_a_landed_commit_missed_at_recovery(
    dir: &std::path::Path,
) -> (
    Ingest,
    Hub,
    IngestHandle,
    broadcast::Receiver<Arc<JournaledEvent>>,
) {
    let (store, open, ingest, hub) = setup(dir);
    open.send(()).unwrap();
    let handle = ingest.handle();
    let live = hub.subscribe_live();
    store.land_then_fail.store(true, Ordering::SeqCst);
    store.fail_next_read.store(true, Ordering::SeqCst);
    assert!(handle.submit(event("a")).await.is_err());
    (ingest, hub, handle, live)
}

#[tokio::test]
async fn a_landed_commit_missed_at_recovery_goes_out_before_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, _hub, handle, mut live) =
        with_a_landed_commit_missed_at_recovery(dir.path()).await;
    let next = handle.submit(event("b")).await.unwrap();
    assert_eq!(next.seq, 2);
    assert_eq!(live.recv().await.unwrap().seq, 1);
    assert_eq!(live.recv().await.unwrap().seq, 2);
    // Each once: the landed one is not taken for part of the next commit.
    assert!(live.try_recv().is_err());
    ingest.shutdown().await;
}

#[tokio::test]
async fn a_landed_commit_missed_at_recovery_goes_out_with_the_retry_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, hub, handle, mut live) = with_a_landed_commit_missed_at_recovery(dir.path()).await;
    // The retry commits nothing new, but the sinks get what had landed.
    let retry = handle.submit(event("a")).await.unwrap();
    assert_eq!((retry.seq, retry.duplicate), (1, true));
    assert_eq!(*hub.committed().borrow(), 1);
    assert_eq!(live.recv().await.unwrap().seq, 1);
    ingest.shutdown().await;
}

/// A commit reported failed that landed, which the reopen could not read
/// back: `callrelay_journal_last_seq` still says the journal's seq once the
/// reopen is done. Left at the seq before it, it stayed there until the
/// next commit (on a quiet relay, for good), below what the journal holds.
#[tokio::test]
async fn the_last_seq_gauge_follows_a_reopen_that_could_not_read_back_what_landed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, open, ingest, _hub, metrics) = setup_with(dir.path(), IngestOptions::default());
    open.send(()).unwrap();
    let handle = ingest.handle();
    store.land_then_fail.store(true, Ordering::SeqCst);
    store.fail_next_read.store(true, Ordering::SeqCst);
    assert!(handle.submit(event("a")).await.is_err());
    // The writer reopens before it takes the shutdown: once its thread has
    // ended, the reopen and its read back are done.
    ingest.shutdown().await;
    assert_eq!(store.recovers.load(Ordering::SeqCst), 1);
    assert!(!store.fail_next_read.load(Ordering::SeqCst), "read back");
    assert_eq!(store.journal.last_seq(), 1, "the commit landed");
    assert_eq!(metrics.journal_last_seq.get(), 1);
}

#[tokio::test]
async fn a_group_is_journaled_whole_or_not_at_all_in_order() {
    let (_dir, store, ingest, handle) = opened();
    let group = [event("g1"), event("g2"), event("g1"), event("g3")];
    store.fail.store(true, Ordering::SeqCst);
    let err = handle.submit_all(&group).await.unwrap_err();
    assert!(matches!(err, IngestError::Commit(_)));
    assert_eq!(store.journal.last_seq(), 0, "none of the group");
    store.fail.store(false, Ordering::SeqCst);
    let acks = handle.submit_all(&group).await.unwrap();
    let seqs: Vec<(u64, bool)> = acks.iter().map(|a| (a.seq, a.duplicate)).collect();
    assert_eq!(seqs, vec![(1, false), (2, false), (1, true), (3, false)]);
    ingest.shutdown().await;
}

/// A group is queued without waiting for its commit, and is committed
/// whether or not its answer is awaited (a Voip24h session past its drain
/// stops waiting); a wait for room ends at `give_up` with nothing queued.
#[tokio::test]
async fn a_queued_group_is_committed_unawaited_and_a_wait_for_room_ends_at_give_up() {
    let dir = tempfile::tempdir().unwrap();
    let options = IngestOptions {
        queue: 1,
        max_batch: 2_048,
    };
    let (store, open, ingest, _hub, _) = setup_with(dir.path(), options);
    let handle = ingest.handle();
    let first = handle.try_submit(event("first")).unwrap();
    store.wait_at_gate();
    let give_up = CancellationToken::new();
    let queued = handle
        .queue_all_unless(&[event("g1"), event("g2")], &give_up)
        .await
        .unwrap();
    // The queue is full behind the held commit.
    give_up.cancel();
    let refused = handle.queue_all_unless(&[event("late")], &give_up).await;
    assert!(
        matches!(refused, Err(IngestError::Full)),
        "{:?}",
        refused.err()
    );
    drop(queued);
    open.send(()).unwrap();
    assert!(!first.await.unwrap().unwrap().duplicate);
    ingest.shutdown().await;
    assert_eq!(
        store.journal.last_seq(),
        3,
        "the group left unawaited is journaled, the one given up is not"
    );
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

/// What queues while a commit runs goes into the next commits together, up
/// to `max_batch` each: one commit per event would hold the rate to the
/// disk's syncs. A commit reads nothing back from the journal (that is only
/// for one reported failed), and each journaled event is counted.
#[tokio::test]
async fn what_queues_during_a_commit_is_committed_together_up_to_max_batch() {
    let dir = tempfile::tempdir().unwrap();
    let options = IngestOptions {
        queue: 64,
        max_batch: 3,
    };
    let (store, open, ingest, hub, metrics) = setup_with(dir.path(), options);
    let mut live = hub.subscribe_live();
    let handle = ingest.handle();
    let mut receivers = vec![handle.try_submit(event("first")).unwrap()];
    store.wait_at_gate();
    receivers.extend((0..7).map(|i| handle.try_submit(event(&format!("q{i}"))).unwrap()));
    open.send(()).unwrap();
    for rx in receivers {
        assert!(!rx.await.unwrap().unwrap().duplicate);
    }
    // A receiver that has read nothing holds every event in the ring.
    assert_eq!(hub.live_held(), 8);
    assert_eq!(live.recv().await.unwrap().seq, 1);
    assert_eq!(hub.live_held(), 7);
    ingest.shutdown().await;
    assert_eq!(*store.batches.lock().unwrap(), [1, 3, 3, 1]);
    assert_eq!(store.reads.load(Ordering::SeqCst), 0);
    let journaled = metrics
        .events_journaled
        .with_label_values(&["tel4vn", "call"]);
    assert_eq!(journaled.get(), 8);
}

/// While commits keep failing, the store is asked to recover at once, then
/// not again for a second: a reopen on every failed commit would read the
/// whole file each time on a disk that is already failing.
#[tokio::test]
async fn failing_commits_ask_the_store_to_recover_once_not_each_time() {
    let (_dir, store, ingest, handle) = opened();
    store.fail.store(true, Ordering::SeqCst);
    for i in 0..3 {
        assert!(handle.submit(event(&format!("f{i}"))).await.is_err());
    }
    assert_eq!(store.recovers.load(Ordering::SeqCst), 1);
    ingest.shutdown().await;
}

/// A full disk's failing commits tell the watchdog so (it does not restart
/// the relay for one: a restart frees no space), also through redb's
/// refusals after the first, which only repeat it, and through a reopen
/// that failed; a fault that follows is not taken for a full disk.
#[tokio::test]
async fn a_full_disk_is_known_through_the_refusals_that_repeat_it() {
    let (_dir, store, ingest, handle) = opened();
    *store.commits_fail_with.lock().unwrap() = Some(ENOSPC);
    store.fail_recover.store(true, Ordering::SeqCst);
    for i in 0..3 {
        assert!(handle.submit(event(&format!("f{i}"))).await.is_err());
    }
    assert!(
        handle
            .commit_failure()
            .is_some_and(|c| c.contains("No space left on device")),
        "{:?}",
        handle.commit_failure()
    );
    assert!(handle.is_journal_full());
    *store.commits_fail_with.lock().unwrap() = None;
    store.fail.store(true, Ordering::SeqCst);
    assert!(handle.submit(event("a fault")).await.is_err());
    assert!(!handle.is_journal_full());
    ingest.shutdown().await;
}

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

/// Whether the journal counts as full after a commit failed with
/// `commit_errno` and the writer's reopen after it with `reopen_errno`.
async fn full_after_a_failed_commit_and_reopen(commit_errno: i32, reopen_errno: i32) -> bool {
    let (_dir, store, ingest, handle) = opened();
    *store.commits_fail_with.lock().unwrap() = Some(commit_errno);
    *store.reopens_fail_with.lock().unwrap() = Some(reopen_errno);
    assert!(handle.submit(event("a")).await.is_err());
    // Answered after the reopen that followed the first: redb's refusal,
    // which says nothing of its own.
    assert!(handle.submit(event("b")).await.is_err());
    assert!(store.recovers.load(Ordering::SeqCst) >= 1);
    let full = handle.is_journal_full();
    ingest.shutdown().await;
    full
}

/// The reopen that follows a failed commit says what it met of the disk:
/// a full disk after an I/O error, a fault after a full disk. The commits
/// after it fail with the journal closed, which says nothing.
#[tokio::test]
async fn the_reopen_after_a_failed_commit_tells_a_full_disk_from_a_fault() {
    assert!(full_after_a_failed_commit_and_reopen(EIO, ENOSPC).await);
    assert!(!full_after_a_failed_commit_and_reopen(ENOSPC, EIO).await);
}

/// A reopen asked for from outside the writer (a retention pass) says what
/// it met of the disk: a full disk on a journal that took writes, a fault
/// on one that was full.
#[tokio::test]
async fn a_reopen_asked_for_from_outside_tells_a_full_disk_from_a_fault() {
    let (_dir, store, ingest, handle) = opened();
    *store.reopens_fail_with.lock().unwrap() = Some(ENOSPC);
    handle.reopen_after_a_failed_write();
    until("the journal counted as not writable", WITHIN, || {
        !handle.is_writable()
    })
    .await;
    assert!(handle.is_journal_full());
    ingest.shutdown().await;

    let (_dir, store, ingest, handle) = opened();
    *store.commits_fail_with.lock().unwrap() = Some(ENOSPC);
    *store.reopens_fail_with.lock().unwrap() = Some(ENOSPC);
    assert!(handle.submit(event("a")).await.is_err());
    assert!(handle.submit(event("b")).await.is_err());
    assert!(handle.is_journal_full());
    let reopens = store.recovers.load(Ordering::SeqCst);
    *store.reopens_fail_with.lock().unwrap() = Some(EIO);
    handle.reopen_after_a_failed_write();
    until("the asked reopen begun", WITHIN, || {
        store.recovers.load(Ordering::SeqCst) > reopens
    })
    .await;
    // Answered after the asked reopen has ended.
    assert!(handle.submit(event("c")).await.is_err());
    assert!(!handle.is_journal_full());
    ingest.shutdown().await;
}

/// How long the tests below wait for what the writer thread does.
const WITHIN: Duration = Duration::from_secs(10);

/// Asks the writer to reopen the journal, as a retention pass's failed
/// write does, and waits until the store is being opened again.
async fn ask_a_reopen_and_see_it_begin(store: &Gate, handle: &IngestHandle) {
    handle.reopen_after_a_failed_write();
    until("a reopen", WITHIN, || {
        store.recovers.load(Ordering::SeqCst) > 0
    })
    .await;
}

/// A write outside the writer that failed on I/O (a retention pass) asks
/// it to open the journal again: redb refuses every write after one, and
/// only the writer's own failed commit reopened it, so a quiet relay's next
/// event was refused (503) first. A second ask right after does not reopen
/// again.
#[tokio::test]
async fn a_failed_write_outside_the_writer_reopens_the_journal_once_per_interval() {
    let (_dir, store, ingest, handle) = opened();
    ask_a_reopen_and_see_it_begin(&store, &handle).await;
    handle.reopen_after_a_failed_write();
    // Taken by the writer on its own (an event in the same round would
    // settle it without a reopen whatever the interval), then an event.
    until("the ask taken by the writer", WITHIN, || {
        handle.tx.capacity() >= handle.tx.max_capacity()
    })
    .await;
    handle.submit(event("after")).await.expect("a good commit");
    assert_eq!(
        store.recovers.load(Ordering::SeqCst),
        1,
        "within the interval"
    );
    assert!(handle.is_writable());
    ingest.shutdown().await;
}

/// A reopen asked for from outside the writer that succeeds leaves the
/// journal writable, and its time is forgotten as after a good commit: the
/// watchdog subtracts the reopens' time from a refusal's, and a stale
/// reopen of a quiet relay delayed a later refusal's restart by as much.
#[tokio::test]
async fn a_good_reopen_asked_for_from_outside_is_forgotten_by_the_watchdogs_clock() {
    let (_dir, store, ingest, handle) = opened();
    *store.recover_takes.lock().unwrap() = Duration::from_millis(300);
    ask_a_reopen_and_see_it_begin(&store, &handle).await;
    // Counted while it runs, then forgotten (before the fix, 300 ms for good).
    until("the reopen forgotten", WITHIN, || {
        handle.reopen_spent() == Duration::ZERO
    })
    .await;
    assert!(handle.is_writable());
    assert!(handle.reopen_running_for().is_none());
    ingest.shutdown().await;
}

/// The writer's state, driven without its thread: a journal behind an
/// opened gate, the ingest over it (whose own writer stays idle), and the
/// health, clocks and failure tracker a call into [`writer`] takes.
struct DirectWriter {
    _ingest: Ingest,
    store: Arc<Gate>,
    hub: Hub,
    metrics: Arc<Metrics>,
    health: CommitHealth,
    clocks: WriterClocks,
    failures: crate::ingest::commit_health::FailureTracker,
    _dir: tempfile::TempDir,
}

impl DirectWriter {
    fn new() -> DirectWriter {
        let dir = tempfile::tempdir().unwrap();
        let (store, open, ingest, hub, metrics) = setup_with(dir.path(), IngestOptions::default());
        drop(open);
        DirectWriter {
            _ingest: ingest,
            store,
            hub,
            metrics,
            health: CommitHealth::default(),
            clocks: WriterClocks::new(),
            failures: crate::ingest::commit_health::FailureTracker::default(),
            _dir: dir,
        }
    }

    /// A reopen asked for from outside the writer, as its thread makes it.
    fn reopen_after_a_failed_write(&mut self) {
        writer::reopen_after_a_failed_write(
            self.store.as_ref(),
            &self.hub,
            &self.metrics,
            &self.health,
            &self.clocks,
            &mut self.failures,
        );
    }
}

/// A reopen asked for from outside the writer that fails logs what failed
/// (no commit was tried, no batch refused), and the refusal it begins is
/// timed from its end: its own time, spent while the journal still took
/// events, is not taken off the refusal's by the watchdog.
#[test]
fn a_failed_reopen_asked_for_from_outside_says_so_and_starts_the_refusals_clock() {
    let mut w = DirectWriter::new();
    w.store.fail_recover.store(true, Ordering::SeqCst);
    *w.store.recover_takes.lock().unwrap() = Duration::from_millis(50);
    let text = crate::logging::tests_support::logged_json(|| w.reopen_after_a_failed_write());
    assert!(!w.health.is_writable());
    assert!(
        text.contains(
            "the journal could not be opened again after a failed write; new events are refused"
        ) && !text.contains("journal commit failed"),
        "{text}"
    );
    // No commit was tried: no batch's events, no count of failed commits.
    assert!(
        text.contains("\"failures\":1")
            && !text.contains("failed_commits")
            && !text.contains("\"events\""),
        "{text}"
    );
    assert_eq!(w.clocks.reopen_spent(), Duration::ZERO);
}

/// A reopen asked for from outside the writer that works while commits
/// were failing is no good commit (the next event's commit may fail as
/// before): the watchdog's count does not move and the reopen's time stays
/// off the refusal's, though the journal counts as writable until that
/// commit fails. Counted, a disk that reads
/// but fails writes, asked a reopen by each retention pass, had its refusal
/// restarted at each one and was restarted late or never (review of
/// 8599637).
#[test]
fn a_good_reopen_while_commits_fail_is_no_good_commit() {
    let mut w = DirectWriter::new();
    *w.store.recover_takes.lock().unwrap() = Duration::from_millis(50);
    w.failures.failed(
        &w.health,
        "Input/output error",
        crate::ingest::commit_health::FailureKind::Fault,
        1,
        Instant::now(),
    );
    assert!(!w.health.is_writable());
    let before = w.clocks.good_commits();
    w.reopen_after_a_failed_write();
    assert_eq!(w.store.recovers.load(Ordering::SeqCst), 1);
    assert_eq!(w.clocks.good_commits(), before);
    assert!(
        w.clocks.reopen_spent() >= Duration::from_millis(50),
        "{:?}",
        w.clocks.reopen_spent()
    );
}

/// A reopen asked for from outside the writer that fails leaves the journal
/// counted as refusing commits (`/readyz`, the alert, the watchdog see it):
/// it is closed, and the next event would be refused.
#[tokio::test]
async fn a_failed_reopen_asked_for_from_outside_counts_as_failing_commits() {
    let (_dir, store, ingest, handle) = opened();
    store.fail_recover.store(true, Ordering::SeqCst);
    handle.reopen_after_a_failed_write();
    until("the journal counted as not writable", WITHIN, || {
        !handle.is_writable()
    })
    .await;
    assert!(
        handle
            .commit_failure()
            .is_some_and(|e| e.contains("could not be opened again"))
    );
    ingest.shutdown().await;
}

/// The watchdog does not count the time the writer spends reopening the
/// journal as time the journal refused commits: the writer says how long
/// the reopen in progress has run and how long reopens took since the last
/// good commit, which forgets them.
#[tokio::test]
async fn the_writer_times_its_reopens_until_a_commit_succeeds() {
    let (_dir, store, ingest, handle) = opened();
    store.fail.store(true, Ordering::SeqCst);
    // Long enough that a test task starved for a moment on a loaded
    // machine still sees it run (at 300 ms it could miss it).
    *store.recover_takes.lock().unwrap() = Duration::from_secs(1);
    assert!(handle.submit(event("a")).await.is_err());
    // The reopen follows the failed commit's answer: seen while it runs.
    until("the reopen seen running", WITHIN, || {
        handle.reopen_running_for().is_some()
    })
    .await;
    until("the reopen ended", WITHIN, || {
        handle.reopen_running_for().is_none()
    })
    .await;
    assert!(
        handle.reopen_spent() >= Duration::from_secs(1),
        "{:?}",
        handle.reopen_spent()
    );
    store.fail.store(false, Ordering::SeqCst);
    *store.recover_takes.lock().unwrap() = Duration::ZERO;
    handle.submit(event("b")).await.expect("a good commit");
    // Forgotten by the writer once the commit's answers are out: a moment
    // after the answer, not before it.
    until("the reopens forgotten", WITHIN, || {
        handle.reopen_spent() == Duration::ZERO
    })
    .await;
    ingest.shutdown().await;
}

/// Each good commit moves the count the watchdog reads with the reopen
/// total, failed ones do not: a good commit between two of its looks
/// restarts the total, and the total alone did not always show it (one
/// that had not fallen below the first look's was taken for the same
/// refusal's, and the reopens before the commit counted as refusal; review
/// of 96e0a4c).
#[tokio::test]
async fn a_good_commit_moves_the_count_the_watchdog_reads_and_a_failed_one_does_not() {
    let (_dir, store, ingest, handle) = opened();
    let at_start = handle.good_commits();
    store.fail.store(true, Ordering::SeqCst);
    assert!(handle.submit(event("a")).await.is_err());
    until("the reopen after it ended", WITHIN, || {
        handle.reopen_running_for().is_none() && store.recovers.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert_eq!(handle.good_commits(), at_start, "a failed commit");
    store.fail.store(false, Ordering::SeqCst);
    handle.submit(event("b")).await.expect("a good commit");
    // Bumped once the commit's answers are out: a moment after the answer.
    until("the good commit counted", WITHIN, || {
        handle.good_commits() == at_start + 1
    })
    .await;
    handle.submit(event("c")).await.expect("a good commit");
    until("the next one counted", WITHIN, || {
        handle.good_commits() == at_start + 2
    })
    .await;
    ingest.shutdown().await;
}
