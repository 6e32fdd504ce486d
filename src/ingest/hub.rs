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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use crate::journal::JournaledEvent;

/// Events an account's ring holds for a receiver that has not read them:
/// a receiver further behind re-reads the journal. Small, because each
/// account with a listening session has one, allocated whole (about 6 KiB
/// at 128), and a stalled session pins what it holds; a screen's account
/// gets a few events a second.
const ACCOUNT_RING: usize = 128;

/// How sinks learn of new commits.
#[derive(Clone)]
pub struct Hub {
    committed: watch::Sender<u64>,
    live: broadcast::Sender<Arc<JournaledEvent>>,
    routes: Arc<Mutex<Routes>>,
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
}

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

    /// Whether this receiver skips other accounts' events (a session's
    /// cursor then moves only with its own, unless told of the commits).
    pub fn is_routed(&self) -> bool {
        matches!(self, LiveReceiver::Account { .. })
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
        };
        Hub {
            committed,
            live,
            routes: Arc::new(Mutex::new(routes)),
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
    /// only account may want: that account's ring, or the shared ring when
    /// it has none (`None`: every account). Same lag rule as
    /// [`Hub::subscribe_live`].
    pub fn subscribe_for(&self, account: Option<&str>) -> LiveReceiver {
        let Some(account) = account else {
            return LiveReceiver::All(self.live.subscribe());
        };
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        // Rings whose sessions all left go here (a session ends without
        // the hub's lock); publishing drops those it meets first.
        routes
            .by_account
            .retain(|_, ring| ring.sender.receiver_count() > 0);
        let subscribed_after = routes.last_published;
        let ring = routes
            .by_account
            .entry(account.to_owned())
            .or_insert_with(|| AccountRing {
                sender: broadcast::channel(ACCOUNT_RING).0,
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
        }
        self.committed.send_replace(last_seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventHeader;

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
        let mut mine = hub.subscribe_for(Some("a"));
        let mut all = hub.subscribe_for(None);
        assert!(mine.is_routed() && !all.is_routed());
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
        let (mut a, mut b) = (hub.subscribe_for(Some("a")), hub.subscribe_for(Some("b")));
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
        let mut early = hub.subscribe_for(Some("a"));
        hub.publish(vec![event(8, "b"), event(9, "b")], 9);
        let mut late = hub.subscribe_for(Some("a"));
        hub.publish(vec![event(10, "a")], 10);
        assert_eq!(taken(&mut early), [(10, 7)]);
        assert_eq!(taken(&mut late), [(10, 9)]);
    }

    /// A ring whose receivers are all gone is dropped, at its next event or
    /// at the next subscription, whichever comes first.
    #[test]
    fn an_accounts_ring_goes_with_its_last_receiver() {
        let hub = Hub::new(0, 16);
        drop(hub.subscribe_for(Some("a")));
        let _b = hub.subscribe_for(Some("b"));
        assert_eq!(hub.account_rings(), 1);
        drop(hub.subscribe_for(Some("c")));
        hub.publish(vec![event(1, "c")], 1);
        assert_eq!(hub.account_rings(), 1);
    }

    /// A receiver more than its ring behind is told so, as on the shared
    /// ring, and re-reads the journal.
    #[test]
    fn an_accounts_ring_holds_a_bounded_number_of_events() {
        let hub = Hub::new(0, 16);
        let mut mine = hub.subscribe_for(Some("a"));
        let events = (1..=ACCOUNT_RING as u64 + 1)
            .map(|seq| event(seq, "a"))
            .collect();
        hub.publish(events, ACCOUNT_RING as u64 + 1);
        assert!(matches!(mine.try_recv(), Err(TryRecvError::Lagged(1))));
    }
}
