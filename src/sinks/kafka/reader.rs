//! The journal reader of the Kafka sink: reads ahead of the producer on the
//! blocking pool, so decoding events overlaps with producing them.
//!
//! Guarantees: batches come in seq order with nothing skipped after `after`
//! (except what retention removed); a read error is sent once and ends the
//! reader, so the forwarder recovers from its cursor. Dropping it stops it.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::app::Context;
use crate::journal::JournaledEvent;

/// Reads the journal ahead of the producer on the blocking pool, so decoding
/// events overlaps with producing them. Stops when dropped.
pub struct Reader {
    pub rx: mpsc::Receiver<Result<Vec<JournaledEvent>, String>>,
    task: JoinHandle<()>,
}

impl Reader {
    pub fn start(ctx: Arc<Context>, after: u64, batch: usize) -> Reader {
        let (tx, rx) = mpsc::channel(4);
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
                let read =
                    tokio::task::spawn_blocking(move || journal.read_after(after, batch)).await;
                let events = match read {
                    Ok(Ok(events)) => events,
                    Ok(Err(e)) => {
                        // Reported, then stop: the forwarder recovers from its cursor.
                        let _ = tx.send(Err(e.to_string())).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string())).await;
                        return;
                    }
                };
                let Some(newest) = events.last().map(|e| e.seq) else {
                    // Nothing after `after` although `last` is newer: retention removed it.
                    after = last;
                    continue;
                };
                after = newest;
                if tx.send(Ok(events)).await.is_err() {
                    return;
                }
            }
        });
        Reader { rx, task }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
