//! How sinks learn of new commits: the last committed seq (a watch) and the
//! committed events themselves (a bounded broadcast ring).
//!
//! Guarantees: events are published in seq order, before the seq that
//! covers them; a receiver more than the ring's capacity behind gets
//! `Lagged` and re-reads the journal, so nothing is skipped silently.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::journal::JournaledEvent;

/// How sinks learn of new commits.
#[derive(Clone)]
pub struct Hub {
    committed: watch::Sender<u64>,
    live: broadcast::Sender<Arc<JournaledEvent>>,
}

impl Hub {
    pub fn new(last_seq: u64, live_capacity: usize) -> Hub {
        let (committed, _) = watch::channel(last_seq);
        let (live, _) = broadcast::channel(live_capacity.max(1));
        Hub { committed, live }
    }

    /// The last committed seq, changing after each commit.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Every event committed from now on, in seq order. A receiver that falls
    /// more than the capacity behind gets `Lagged` and must re-read the journal.
    pub fn subscribe_live(&self) -> broadcast::Receiver<Arc<JournaledEvent>> {
        self.live.subscribe()
    }

    /// Events the live ring holds for a receiver that has not read them yet
    /// (none while every receiver keeps up): the memory a lagging receiver
    /// pins, up to the ring's capacity.
    pub fn live_held(&self) -> usize {
        self.live.len()
    }

    /// Receivers of the live ring: a WebSocket session holds one while it
    /// is live (and while it reads history close to the head).
    #[cfg(test)]
    pub fn live_receivers(&self) -> usize {
        self.live.receiver_count()
    }

    /// The last seq handed to the sinks.
    pub(super) fn last_published(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Only the ingest writer publishes; tests of the sinks publish to make
    /// the ring skip seqs as a missed read-back does.
    pub(crate) fn publish(&self, events: Vec<Arc<JournaledEvent>>, last_seq: u64) {
        for e in events {
            // No receivers is fine: nobody is listening live.
            let _ = self.live.send(e);
        }
        self.committed.send_replace(last_seq);
    }
}
