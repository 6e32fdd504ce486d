//! The journal reader of the Kafka sink: reads ahead of the producer on the
//! blocking pool, so decoding events overlaps with producing them.
//!
//! Guarantees: batches come in seq order with nothing skipped after `after`
//! (except what retention removed); a read error is sent once and ends the
//! reader, so the forwarder recovers from its cursor. Dropping it stops it.
//! What it reads is in memory until delivered: it raises
//! `Context::kafka_held_up_to` after each read, so that `max_size` does not
//! count those events as lost while they are being delivered, and counts
//! the events waiting in its channel ([`Reader::queued`]) for the lag.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::app::Context;
use crate::journal::{JournalError, JournaledEvent};

/// JSON read per batch at most (one event more when a single event is
/// larger). The reader holds up to six batches (four in its channel, one it
/// waits to send, one the forwarder takes): by count alone, 2,048 events a
/// batch, large events (an SPRecord event may be 1 MiB) made gigabytes, kept
/// in memory after `max_size` dropped them from the journal.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Reads the journal ahead of the producer on the blocking pool, so decoding
/// events overlaps with producing them. Stops when dropped.
pub struct Reader {
    rx: mpsc::Receiver<Batch>,
    /// Events read and not yet taken from the channel.
    queued: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

type Batch = Result<Vec<JournaledEvent>, ReadError>;

/// Why the reader stopped (it sends one, then stops; the forwarder recovers
/// from its cursor with a new reader).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the journal read task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the journal reader stopped")]
    Stopped,
}

impl Reader {
    pub fn start(ctx: Arc<Context>, after: u64, batch: usize) -> Reader {
        let (tx, rx) = mpsc::channel(4);
        let queued = Arc::new(AtomicUsize::new(0));
        let queued_by_task = queued.clone();
        let task = tokio::spawn(async move {
            let mut committed = ctx.hub.committed();
            let mut after = after;
            loop {
                // Mark the current commit seen before looking, so a commit
                // landing after the look wakes `changed` below.
                committed.borrow_and_update();
                let last = ctx.journal.last_seq();
                if after >= last {
                    if committed.changed().await.is_err() {
                        return; // the hub is gone: the relay is stopping
                    }
                    continue;
                }
                let journal = ctx.journal.clone();
                let read = tokio::task::spawn_blocking(move || {
                    journal.read_page(after, batch, BATCH_BYTES)
                })
                .await;
                let events = match read {
                    Ok(Ok(events)) => events,
                    Ok(Err(e)) => {
                        // Reported, then stop: the forwarder recovers from its cursor.
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let Some(newest) = events.last().map(|e| e.seq) else {
                    // Nothing after `after` although `last` is newer: retention removed it.
                    after = last;
                    continue;
                };
                after = newest;
                // Said after the read: a retention pass between the read and
                // this line counts what it drops of it as undelivered, too
                // many rather than too few.
                ctx.kafka_held_up_to.fetch_max(newest, Ordering::AcqRel);
                queued_by_task.fetch_add(events.len(), Ordering::AcqRel);
                if tx.send(Ok(events)).await.is_err() {
                    return;
                }
            }
        });
        Reader { rx, queued, task }
    }

    /// The next batch; `None` once the reader has stopped.
    pub async fn recv(&mut self) -> Option<Batch> {
        let batch = self.rx.recv().await;
        self.taken(batch.as_ref());
        batch
    }

    /// The next batch if one is waiting.
    pub fn try_recv(&mut self) -> Result<Batch, mpsc::error::TryRecvError> {
        let batch = self.rx.try_recv();
        self.taken(batch.as_ref().ok());
        batch
    }

    /// Stops the reader and waits until its task has: nothing it read
    /// raises `kafka_held_up_to` after this returns.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Events read and waiting in the channel.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn taken(&self, batch: Option<&Batch>) {
        if let Some(Ok(events)) = batch {
            self.queued.fetch_sub(events.len(), Ordering::AcqRel);
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::app::tests_support::{relay_in, stop, until};
    use crate::journal::tests_support::event;

    const WITHIN: Duration = Duration::from_secs(10);

    async fn seqs(reader: &mut Reader) -> Vec<u64> {
        let batch = tokio::time::timeout(WITHIN, reader.recv()).await;
        let events = batch.expect("a batch in time").expect("a batch").unwrap();
        events.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn batches_come_in_seq_order_counted_while_queued_then_wait_for_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_in(dir.path(), "").await;
        let ctx = relay.ctx.clone();
        for i in 0..3 {
            ctx.ingest.submit(event(&format!("e{i}"))).await.unwrap();
        }
        let mut reader = Reader::start(ctx.clone(), 0, 2);
        until("3 read ahead", WITHIN, || reader.queued() >= 3).await;
        assert_eq!(reader.queued(), 3, "both batches read ahead and counted");
        assert_eq!(ctx.kafka_held_up_to.load(Ordering::Acquire), 3);
        assert_eq!(seqs(&mut reader).await, [1, 2]);
        assert_eq!(reader.queued(), 1, "a batch taken is not queued");
        assert_eq!(seqs(&mut reader).await, [3]);
        assert_eq!(reader.queued(), 0);

        let nothing = tokio::time::timeout(Duration::from_millis(100), reader.recv()).await;
        assert!(nothing.is_err(), "nothing after the last commit: it waits");
        ctx.ingest.submit(event("e3")).await.unwrap();
        assert_eq!(seqs(&mut reader).await, [4], "a commit wakes it");
        assert_eq!(ctx.kafka_held_up_to.load(Ordering::Acquire), 4);

        reader.stop().await;
        stop(relay).await;
    }

    /// A batch holds at most `BATCH_BYTES` of events (one more when one is
    /// larger): 2,048 events of 1 MiB were one batch, six of them read ahead.
    #[tokio::test]
    async fn a_batch_of_large_events_is_bounded_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_in(dir.path(), "").await;
        let ctx = relay.ctx.clone();
        for i in 0..12 {
            let mut large = event(&format!("e{i}"));
            large.raw = serde_json::json!({"pad": "x".repeat(1 << 20)}).into();
            ctx.ingest.submit(large).await.unwrap();
        }
        let mut reader = Reader::start(ctx.clone(), 0, 2048);
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < 12 {
            let batch = tokio::time::timeout(WITHIN, reader.recv()).await;
            let events = batch.expect("a batch in time").expect("a batch").unwrap();
            sizes.push(events.len());
        }
        // 4 MiB: three events and a bit, then the one that passes it.
        assert_eq!(sizes, [4, 4, 4]);
        reader.stop().await;
        stop(relay).await;
    }

    /// `stop` returns once the task has ended, so nothing it read raises
    /// `kafka_held_up_to` after the sink let go of it; dropping a reader
    /// ends its task too, which would otherwise wait for the next commit
    /// and read on for a sink that no longer holds what it reads. The
    /// task's end shows as its clone of the queued count being let go of.
    #[tokio::test]
    async fn stopping_or_dropping_a_reader_ends_its_task() {
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_in(dir.path(), "").await;
        let ctx = relay.ctx.clone();

        let reader = Reader::start(ctx.clone(), 0, 16);
        let queued = reader.queued.clone();
        assert_eq!(Arc::strong_count(&queued), 3, "the reader, its task, here");
        reader.stop().await;
        assert_eq!(Arc::strong_count(&queued), 1, "ended on return");

        let reader = Reader::start(ctx.clone(), 0, 16);
        let queued = reader.queued.clone();
        drop(reader);
        until("ended when dropped", WITHIN, || {
            Arc::strong_count(&queued) == 1
        })
        .await;

        stop(relay).await;
    }
}
