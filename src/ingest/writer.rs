//! The writer thread: takes what is queued (up to `max_batch`), commits it in
//! one transaction, answers every submitter, then wakes the sinks.
//!
//! Guarantees: a submitter is answered only after its batch committed, or
//! with the commit's error; a group is never split between commits; while
//! commits fail the store is asked to recover at most once a second; what
//! raced in after the shutdown message is refused, not dropped unanswered;
//! a reopen asked for from outside counts in the good commits the watchdog
//! reads only when the journal was writable before it; after a reopen,
//! `callrelay_journal_last_seq` is the store's seq, whether or not what
//! landed could be read back.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::event::PreparedEvent;
use crate::journal::{AppendOutcome, JournaledEvent};
use crate::metrics::Metrics;

use super::commit_health::{FailureKind, FailureTracker};
use super::{
    Ack, BatchStore, CommitHealth, Hub, IngestError, Message, Reply, Submission, WriterClocks,
};

pub(super) fn run(
    mut rx: mpsc::Receiver<Message>,
    store: Arc<dyn BatchStore>,
    hub: Hub,
    metrics: Arc<Metrics>,
    health: &CommitHealth,
    clocks: &WriterClocks,
    max_batch: usize,
) {
    let mut batch = Batch::with_capacity(max_batch);
    let mut failures = FailureTracker::default();
    // Reopens asked for from outside the writer: at most one per interval,
    // which doubles while they keep being asked (a retention pass over
    // `max_size` runs every second, a disk that stays full fails every
    // pass, and a reopen reads the file), back to the first once they stop.
    let mut asked_reopen_at: Option<Instant> = None;
    let mut ask_every = ASKED_REOPEN_EVERY;
    loop {
        let mut stop = false;
        let mut reopen_asked = false;
        match rx.blocking_recv() {
            Some(Message::Event(s)) => batch.push(s),
            Some(Message::Group(group)) => group.into_iter().for_each(|s| batch.push(s)),
            Some(Message::Reopen) => reopen_asked = true,
            Some(Message::Shutdown) | None => stop = true,
        }
        while !stop && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Message::Event(s)) => batch.push(s),
                Ok(Message::Group(group)) => group.into_iter().for_each(|s| batch.push(s)),
                Ok(Message::Reopen) => reopen_asked = true,
                Ok(Message::Shutdown) => stop = true,
                Err(_) => break,
            }
        }
        // A commit in this round settles it: one that succeeds proves the
        // journal takes writes, one that fails starts the reopen schedule.
        if reopen_asked
            && batch.is_empty()
            && !stop
            && asked_reopen_at.is_none_or(|at| at.elapsed() >= ask_every)
        {
            ask_every = match asked_reopen_at {
                Some(at) if at.elapsed() < ask_every * 4 => (ask_every * 2).min(ASKED_REOPEN_MAX),
                _ => ASKED_REOPEN_EVERY,
            };
            asked_reopen_at = Some(Instant::now());
            reopen_after_a_failed_write(
                store.as_ref(),
                &hub,
                &metrics,
                health,
                clocks,
                &mut failures,
            );
        }
        if !batch.is_empty() {
            let started = clocks.commit.start();
            let committed = commit(
                &mut batch,
                store.as_ref(),
                &hub,
                &metrics,
                health,
                &mut failures,
            );
            clocks.commit.stop(started);
            if committed {
                clocks.committed();
            }
            if !committed && failures.recover_due(Instant::now()) {
                match reopen(store.as_ref(), &hub, &metrics, clocks) {
                    Ok(()) => tracing::info!("journal opened again after a failed commit"),
                    Err(e) => {
                        failures.reopen_after_a_commit_failed(health, FailureKind::of(&e));
                        tracing::warn!(error = %e, "journal could not be opened again yet");
                    }
                }
            }
        }
        if stop {
            // Whatever raced in after the shutdown message is refused, not lost silently.
            rx.close();
            while let Ok(msg) = rx.try_recv() {
                let refused = match msg {
                    Message::Event(s) => vec![s],
                    Message::Group(group) => group,
                    Message::Reopen | Message::Shutdown => Vec::new(),
                };
                for s in refused {
                    s.reply.send(Err(IngestError::ShuttingDown));
                }
            }
            return;
        }
    }
}

/// The shortest time between two reopens asked for from outside the writer.
const ASKED_REOPEN_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest, while they keep being asked.
const ASKED_REOPEN_MAX: std::time::Duration = std::time::Duration::from_secs(16 * 60);

/// Opens the journal again after a write outside the writer failed on I/O.
/// Opened, it takes events again at once; not opened (the disk still
/// failing), the journal counts as refusing commits, as after a failed
/// commit: `/readyz`, `journal.writable` and the alert say so, and the next
/// events' failed commits go on with the reopen schedule.
pub(super) fn reopen_after_a_failed_write(
    store: &dyn BatchStore,
    hub: &Hub,
    metrics: &Metrics,
    health: &CommitHealth,
    clocks: &WriterClocks,
    failures: &mut FailureTracker,
) {
    let refusing_before = !health.is_writable();
    let reopened = reopen(store, hub, metrics, clocks);
    // Asked while the journal took events, opened or not: as after a good
    // commit, a refusal hours later must not have the watchdog subtract
    // this reopen's time from its own, which delayed the restart by as
    // much; a refusal that begins here is counted from now, without this
    // reopen's time, spent while the journal still took events (up to the
    // watchdog's hour). Asked while commits failed, it is no good commit:
    // the watchdog's count does not move and the reopen's time is not
    // forgotten; opened, the journal counts as writable until the next
    // commit fails. Counted, a disk that reads but fails writes had its
    // refusal restarted at each retention pass's reopen, and its restart
    // came late or never.
    if !refusing_before {
        clocks.committed();
    }
    match reopened {
        Ok(()) => {
            tracing::info!("journal opened again after a failed write outside a commit");
            failures.reopened(health);
        }
        Err(e) => {
            let error = format!("the journal could not be opened again after a failed write: {e}");
            failures.reopen_failed(health, &error, FailureKind::of(&e), Instant::now());
        }
    }
}

/// Opens the journal again, timed for the watchdog (a reopen that reads a
/// large journal again is working, not refusing commits); opened, what a
/// commit reported failed may have landed goes to the sinks.
fn reopen(
    store: &dyn BatchStore,
    hub: &Hub,
    metrics: &Metrics,
    clocks: &WriterClocks,
) -> Result<(), crate::journal::JournalError> {
    let started = clocks.reopen.start();
    let reopened = store.recover();
    clocks.reopen_ended(started);
    if reopened.is_ok() {
        publish_landed(store, hub, metrics, u64::MAX);
        // What landed may not have been read back (a failed read, events
        // retention has removed since): the gauge is the store's seq
        // anyway, or it stays below it until the next commit, on a quiet
        // relay for good. Set here, on the writer thread, no commit races it.
        crate::metrics::set_saturating(&metrics.journal_last_seq, store.last_seq());
    }
    reopened
}

/// The events of one commit and their submitters' reply channels, side by
/// side, so the store borrows the events without a copy.
struct Batch {
    events: Vec<PreparedEvent>,
    replies: Vec<Reply>,
}

impl Batch {
    fn with_capacity(n: usize) -> Batch {
        Batch {
            events: Vec::with_capacity(n),
            replies: Vec::with_capacity(n),
        }
    }
    fn push(&mut self, s: Submission) {
        self.events.push(s.event);
        self.replies.push(s.reply);
    }
    fn len(&self) -> usize {
        self.events.len()
    }
    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Commits `batch` and answers its submitters; false when the commit failed.
fn commit(
    batch: &mut Batch,
    store: &dyn BatchStore,
    hub: &Hub,
    metrics: &Metrics,
    health: &CommitHealth,
    failures: &mut FailureTracker,
) -> bool {
    let result = store.append_batch(&mut batch.events);
    // Drained, not taken: the batch keeps its capacity for the next commit.
    let events = batch.events.drain(..);
    let replies = batch.replies.drain(..);
    match result {
        Ok(outcomes) => {
            let mut fresh = Vec::new();
            let mut last = None;
            let mut acks = Vec::with_capacity(replies.len());
            for ((ev, reply), outcome) in events.zip(replies).zip(outcomes) {
                let ack = match outcome {
                    AppendOutcome::Appended(journaled) => {
                        count_journaled(metrics, &journaled);
                        let ack = Ack {
                            id: ev.id,
                            seq: journaled.seq,
                            duplicate: false,
                        };
                        last = Some(journaled.seq);
                        fresh.push(Arc::new(journaled));
                        ack
                    }
                    AppendOutcome::Duplicate { id, seq } => {
                        metrics
                            .events_duplicate
                            .with_label_values(&[&ev.header.vendor, &ev.header.account])
                            .inc();
                        Ack {
                            id,
                            seq,
                            duplicate: true,
                        }
                    }
                };
                acks.push((reply, ack));
            }
            // Sinks and readiness see the commit before any submitter hears of it.
            // Also after a commit of duplicates only: the likeliest next
            // delivery after a failed commit is the sender's retry of it, if
            // it retries.
            let first_fresh = fresh.first().map_or(u64::MAX, |e| e.seq);
            publish_landed(store, hub, metrics, first_fresh);
            if let Some(last) = last {
                crate::metrics::set_saturating(&metrics.journal_last_seq, last);
                hub.publish(fresh, last);
            }
            failures.succeeded(health, Instant::now());
            for (reply, ack) in acks {
                reply.send(Ok(ack));
            }
            true
        }
        Err(e) => {
            metrics.ingest_errors.with_label_values(&["commit"]).inc();
            let message = e.to_string();
            let kind = FailureKind::of(&e);
            failures.failed(health, &message, kind, events.len(), Instant::now());
            for reply in replies {
                reply.send(Err(IngestError::Commit(message.clone())));
            }
            false
        }
    }
}

fn count_journaled(metrics: &Metrics, event: &JournaledEvent) {
    metrics
        .events_journaled
        .with_label_values(&[&event.header.vendor, event.header.category()])
        .inc();
}

/// Events read back per page by [`publish_landed`].
const LANDED_PAGE: usize = 1024;

/// Hands the sinks the journaled events after the last one they were given
/// and before seq `before`. There are such events only when a commit was
/// reported failed but landed (its final sync failed after the data was
/// written): the journal finds it when it opens again. Without this the
/// Kafka sink would not see them until the next commit, and WebSocket
/// clients would be told of a gap that is not there.
pub(super) fn publish_landed(store: &dyn BatchStore, hub: &Hub, metrics: &Metrics, before: u64) {
    loop {
        let after = hub.last_published();
        if after.saturating_add(1) >= before || store.last_seq() <= after {
            return;
        }
        let landed: Vec<Arc<JournaledEvent>> = match store.read_after(after, LANDED_PAGE) {
            Ok(page) => page
                .into_iter()
                .take_while(|e| e.seq < before)
                .map(Arc::new)
                .collect(),
            Err(e) => {
                // The sinks read the journal by seq, so they still find these
                // events; a live WebSocket session that sees the ring skip
                // them reads them from the journal.
                tracing::warn!(error = %e, after, "could not read back a commit reported failed");
                return;
            }
        };
        let (Some(first), Some(last)) = (landed.first(), landed.last()) else {
            return;
        };
        tracing::warn!(
            first_seq = first.seq,
            last_seq = last.seq,
            "a commit reported failed had landed; its events go to the sinks (retries are answered as duplicates)"
        );
        let last = last.seq;
        for event in &landed {
            count_journaled(metrics, event);
        }
        crate::metrics::set_saturating(&metrics.journal_last_seq, last);
        hub.publish(landed, last);
    }
}
