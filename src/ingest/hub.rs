//! How sinks learn of new commits: the last committed seq (a watch), the
//! committed events themselves (a bounded broadcast ring), and, for
//! WebSocket sessions that filter on one account, a smaller ring per
//! account that carries only that account's events.
//!
//! Guarantees: events are published in seq order, before the seq that
//! covers them; a receiver more than its ring's capacity behind gets
//! `Lagged` and re-reads the journal, so nothing is skipped silently. An
//! account's ring carries, with each event, a seq [`Routed::after`] such
//! that every seq between it and the event's own was published and is not
//! that account's: a receiver whose cursor is at or past it has missed
//! nothing of its account (seqs the ring skipped, see
//! [`Hub::publish`], raise it for every account).
//!
//! Why per account: a CRM screen listens for its own account's events,
//! and on the shared ring every session is woken for every event of every
//! account, a wake per session per event whatever its filter (5,000
//! screens at 400 events/s: two million wakes a second delivering nothing).
//! At most [`MOST_ACCOUNT_RINGS`] rings at once (each is allocated whole,
//! and a client may name any account): a session past them is served from
//! the shared ring, as every session was before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use crate::journal::JournaledEvent;

/// The most accounts with a ring of their own at once. A ring is allocated
/// whole (about 40 bytes an event it can hold: 80 KiB at the default
/// `client_queue`), and sessions name accounts as they like.
pub const MOST_ACCOUNT_RINGS: usize = 256;

/// Events the shared ring holds (about 64 MB of 1 KB events, pinned while
/// its slowest receiver is that far behind).
pub const SHARED_RING: usize = 65_536;

/// How sinks learn of new commits.
#[derive(Clone)]
pub struct Hub {
    committed: watch::Sender<u64>,
    live: broadcast::Sender<Arc<JournaledEvent>>,
    routes: Arc<Mutex<Routes>>,
    /// [`Routes::skipped_through`], for readers that must not wait on the
    /// lock the journal's writer publishes under; written before the
    /// commit's seq is announced.
    skipped_through: Arc<AtomicU64>,
}

/// An event on an account's ring (see the module's guarantees).
#[derive(Clone, Debug)]
pub struct Routed {
    pub event: Arc<JournaledEvent>,
    /// Every seq after this one and before the event's own was published
    /// and is another account's.
    pub after: u64,
}

/// The account rings and what each publish must know to fill them in.
struct Routes {
    by_account: HashMap<String, AccountRing>,
    /// The last seq published (events and skipped seqs alike).
    last_published: u64,
    /// The highest seq the ring skipped (never published): it may have
    /// been any account's.
    skipped_through: u64,
    /// How many rings make the next subscription drop those without a
    /// receiver (see [`Hub::subscribe_for`]).
    sweep_at: usize,
}

/// The fewest rings a sweep waits for.
const FIRST_SWEEP: usize = 64;

struct AccountRing {
    sender: broadcast::Sender<Routed>,
    /// The seq of the last event published on it, or the last seq
    /// published before it was made.
    last_sent: u64,
}

/// A session's live subscription: the shared ring, or its account's.
pub enum LiveReceiver {
    All(broadcast::Receiver<Arc<JournaledEvent>>),
    Account {
        receiver: broadcast::Receiver<Routed>,
        /// The last seq published when it subscribed: what came before is
        /// the journal's to give, whatever the ring says.
        subscribed_after: u64,
    },
}

impl LiveReceiver {
    /// The next event and the seq after which nothing of the receiver's
    /// was left out before it (see [`Routed::after`]; on the shared ring,
    /// the seq before the event's).
    pub async fn recv(&mut self) -> Result<(Arc<JournaledEvent>, u64), RecvError> {
        match self {
            LiveReceiver::All(receiver) => receiver.recv().await.map(|e| {
                let after = e.seq.saturating_sub(1);
                (e, after)
            }),
            LiveReceiver::Account {
                receiver,
                subscribed_after,
            } => receiver
                .recv()
                .await
                .map(|r| (r.event, r.after.max(*subscribed_after))),
        }
    }

    /// As [`LiveReceiver::recv`], without waiting.
    pub fn try_recv(&mut self) -> Result<(Arc<JournaledEvent>, u64), TryRecvError> {
        match self {
            LiveReceiver::All(receiver) => receiver.try_recv().map(|e| {
                let after = e.seq.saturating_sub(1);
                (e, after)
            }),
            LiveReceiver::Account {
                receiver,
                subscribed_after,
            } => receiver
                .try_recv()
                .map(|r| (r.event, r.after.max(*subscribed_after))),
        }
    }

    /// On an account's ring, the seq up to which a session must have read
    /// the journal before it may take the ring's silence for "nothing of
    /// mine" (what the ring skipped, what came before the subscription);
    /// `None` on the shared ring, which skips nothing silently.
    pub fn vouched_after(&self, hub: &Hub) -> Option<u64> {
        match self {
            LiveReceiver::All(_) => None,
            LiveReceiver::Account {
                subscribed_after, ..
            } => Some((*subscribed_after).max(hub.skipped_through())),
        }
    }

    /// Whether nothing published is waiting for this receiver.
    pub fn is_empty(&self) -> bool {
        match self {
            LiveReceiver::All(receiver) => receiver.is_empty(),
            LiveReceiver::Account { receiver, .. } => receiver.is_empty(),
        }
    }
}

impl Hub {
    pub fn new(last_seq: u64, live_capacity: usize) -> Hub {
        let (committed, _) = watch::channel(last_seq);
        let (live, _) = broadcast::channel(live_capacity.max(1));
        let routes = Routes {
            by_account: HashMap::new(),
            last_published: last_seq,
            skipped_through: 0,
            sweep_at: FIRST_SWEEP,
        };
        Hub {
            committed,
            live,
            routes: Arc::new(Mutex::new(routes)),
            skipped_through: Arc::default(),
        }
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

    /// Events committed from now on that a session with `account` as its
    /// only account may want: that account's ring (made to hold `capacity`
    /// events, if it is new), or the shared ring (`None`: every account; or
    /// [`MOST_ACCOUNT_RINGS`] other accounts have theirs). Same lag rule as
    /// [`Hub::subscribe_live`].
    pub fn subscribe_for(&self, account: Option<&str>, capacity: usize) -> LiveReceiver {
        let Some(account) = account else {
            return LiveReceiver::All(self.live.subscribe());
        };
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        // Rings whose sessions all left (a session ends without the hub's
        // lock) are dropped by the next event of their account, or here,
        // for accounts no event comes for (any name a client gives): once
        // their number doubles, so that a reconnecting crowd does not walk
        // every ring at each connect under the lock the journal's writer
        // publishes with, and there are never more than twice the rings
        // in use (and 64).
        let full = routes.by_account.len() >= MOST_ACCOUNT_RINGS;
        if full || routes.by_account.len() >= routes.sweep_at {
            routes
                .by_account
                .retain(|_, ring| ring.sender.receiver_count() > 0);
            routes.sweep_at = (routes.by_account.len() * 2).max(FIRST_SWEEP);
        }
        if routes.by_account.len() >= MOST_ACCOUNT_RINGS && !routes.by_account.contains_key(account)
        {
            return LiveReceiver::All(self.live.subscribe());
        }
        let subscribed_after = routes.last_published;
        let ring = routes
            .by_account
            .entry(account.to_owned())
            .or_insert_with(|| AccountRing {
                sender: broadcast::channel(capacity.max(1)).0,
                last_sent: subscribed_after,
            });
        LiveReceiver::Account {
            receiver: ring.sender.subscribe(),
            subscribed_after,
        }
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

    /// Accounts that have a ring of their own (with a receiver or not yet
    /// dropped).
    #[cfg(test)]
    pub fn account_rings(&self) -> usize {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.by_account.len()
    }

    /// The highest seq the rings skipped, up to the last announced commit
    /// at least (when that was read first).
    fn skipped_through(&self) -> u64 {
        self.skipped_through.load(Ordering::Acquire)
    }

    /// The last seq handed to the sinks.
    pub(super) fn last_published(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Only the ingest writer publishes; tests of the sinks publish to make
    /// the ring skip seqs as a missed read-back does. A seq up to `last_seq`
    /// with no event here is one the rings skipped: every account's next
    /// event says so in its [`Routed::after`].
    pub(crate) fn publish(&self, events: Vec<Arc<JournaledEvent>>, last_seq: u64) {
        {
            let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            let routes = &mut *routes;
            for e in events {
                if e.seq > routes.last_published.saturating_add(1) {
                    routes.skipped_through = e.seq - 1;
                }
                routes.last_published = routes.last_published.max(e.seq);
                if let Some(ring) = routes.by_account.get_mut(&e.header.account) {
                    let routed = Routed {
                        event: e.clone(),
                        after: ring.last_sent.max(routes.skipped_through),
                    };
                    ring.last_sent = e.seq;
                    if ring.sender.send(routed).is_err() {
                        routes.by_account.remove(&e.header.account);
                    }
                }
                // No receivers is fine: nobody is listening live.
                let _ = self.live.send(e);
            }
            if last_seq > routes.last_published {
                routes.skipped_through = last_seq;
                routes.last_published = last_seq;
            }
            self.skipped_through
                .store(routes.skipped_through, Ordering::Release);
        }
        self.committed.send_replace(last_seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventHeader;

    /// Events each account's ring holds in these tests.
    const RING: usize = 8;

    fn event(seq: u64, account: &str) -> Arc<JournaledEvent> {
        Arc::new(JournaledEvent {
            seq,
            journaled_at_ms: 0,
            received_at_ms: 0,
            header: EventHeader {
                account: account.into(),
                ..Default::default()
            },
            json: Default::default(),
        })
    }

    /// What a receiver has waiting: (seq, after) of each.
    fn taken(live: &mut LiveReceiver) -> Vec<(u64, u64)> {
        std::iter::from_fn(|| live.try_recv().ok())
            .map(|(e, after)| (e.seq, after))
            .collect()
    }

    #[test]
    fn an_accounts_ring_carries_its_events_and_says_what_came_between() {
        let hub = Hub::new(0, 16);
        let mut mine = hub.subscribe_for(Some("a"), RING);
        let mut all = hub.subscribe_for(None, RING);
        assert!(mine.vouched_after(&hub).is_some() && all.vouched_after(&hub).is_none());
        hub.publish(vec![event(1, "a"), event(2, "b"), event(3, "b")], 3);
        hub.publish(vec![event(4, "a")], 4);
        assert_eq!(taken(&mut mine), [(1, 0), (4, 1)]);
        assert!(mine.is_empty());
        assert_eq!(taken(&mut all), [(1, 0), (2, 1), (3, 2), (4, 3)]);
    }

    /// A seq the rings skipped may have been any account's: each account's
    /// next event says it, wherever in a batch (or after it) the skip was.
    #[test]
    fn seqs_the_ring_skipped_are_said_to_every_account() {
        let hub = Hub::new(0, 16);
        let (mut a, mut b) = (
            hub.subscribe_for(Some("a"), RING),
            hub.subscribe_for(Some("b"), RING),
        );
        hub.publish(vec![event(1, "a"), event(3, "b")], 4);
        hub.publish(vec![event(5, "a"), event(6, "b")], 6);
        assert_eq!(taken(&mut a), [(1, 0), (5, 4)]);
        assert_eq!(taken(&mut b), [(3, 2), (6, 4)]);
    }

    /// What committed before a receiver subscribed is the journal's to
    /// give: its first event says so, though its ring had nothing since.
    #[test]
    fn a_receiver_hears_of_what_came_before_it_subscribed() {
        let hub = Hub::new(7, 16);
        let mut early = hub.subscribe_for(Some("a"), RING);
        hub.publish(vec![event(8, "b"), event(9, "b")], 9);
        let mut late = hub.subscribe_for(Some("a"), RING);
        hub.publish(vec![event(10, "a")], 10);
        assert_eq!(taken(&mut early), [(10, 7)]);
        assert_eq!(taken(&mut late), [(10, 9)]);
    }

    /// A ring whose receivers are all gone is dropped at its next event;
    /// rings no event comes for, once their number doubles.
    #[test]
    fn an_accounts_ring_goes_with_its_last_receiver() {
        let hub = Hub::new(0, 16);
        let _kept = hub.subscribe_for(Some("kept"), RING);
        drop(hub.subscribe_for(Some("c"), RING));
        hub.publish(vec![event(1, "c")], 1);
        assert_eq!(hub.account_rings(), 1);
        for n in 1..FIRST_SWEEP {
            drop(hub.subscribe_for(Some(&format!("gone{n}")), RING));
        }
        assert_eq!(hub.account_rings(), FIRST_SWEEP);
        drop(hub.subscribe_for(Some("last"), RING));
        assert_eq!(hub.account_rings(), 2, "the kept ring and the last");
    }

    /// Past the most rings, a new account's session is served from the
    /// shared ring; an account that has a ring still gets it.
    #[test]
    fn past_the_most_rings_a_new_account_gets_the_shared_ring() {
        let hub = Hub::new(0, 16);
        let kept: Vec<LiveReceiver> = (0..MOST_ACCOUNT_RINGS)
            .map(|n| hub.subscribe_for(Some(&format!("a{n}")), RING))
            .collect();
        assert!(
            hub.subscribe_for(Some("new"), RING)
                .vouched_after(&hub)
                .is_none()
        );
        assert!(
            hub.subscribe_for(Some("a0"), RING)
                .vouched_after(&hub)
                .is_some()
        );
        drop(kept);
        assert!(
            hub.subscribe_for(Some("new"), RING)
                .vouched_after(&hub)
                .is_some()
        );
        assert_eq!(hub.account_rings(), 1);
    }

    /// A receiver more than its ring behind is told so, as on the shared
    /// ring, and re-reads the journal.
    #[test]
    fn an_accounts_ring_holds_a_bounded_number_of_events() {
        let hub = Hub::new(0, 16);
        let mut mine = hub.subscribe_for(Some("a"), RING);
        let events = (1..=RING as u64 + 1).map(|seq| event(seq, "a")).collect();
        hub.publish(events, RING as u64 + 1);
        assert!(matches!(mine.try_recv(), Err(TryRecvError::Lagged(1))));
    }
}
