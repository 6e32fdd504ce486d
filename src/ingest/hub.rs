//! How sinks learn of new commits: the last committed seq (a watch), the
//! committed events themselves (a bounded broadcast ring), and, for
//! WebSocket sessions whose filter lets through one value of an attribute
//! (one subject, else one account, one literal type or one vendor: its
//! [`RouteKey`]), a queue per session that carries only that key's events.
//!
//! Guarantees: events are published in seq order, before the seq that
//! covers them; a receiver more than its ring's capacity behind gets
//! `Lagged` and re-reads the journal, so nothing is skipped silently. A
//! session's route queue that is full when an event comes is closed: its
//! session takes what it holds, then hears `Lagged` and re-reads the
//! journal (subscribing again). Each event on it carries a seq
//! [`Routed::after`] such that every seq between it and the event's own was
//! published and is not that route key's: a receiver whose cursor is at or
//! past it has missed nothing of its key (seqs the ring skipped, see
//! [`Hub::publish`], raise it for every route). Past a route key's first
//! [`QUEUES_PER_ROUTE`] such sessions, the others share a broadcast ring
//! of its events instead (same `after`; lag rule as the shared ring): the
//! first ring at least as deep as the session asks, or a new one (a reload
//! that raised `client_queue` makes a deeper ring beside the older one).
//! An event goes to the routes of its account, its subject (if it has
//! one), its type and its vendor; each kind is a map of its own, looked up
//! only while it holds a route.
//!
//! Why per route key: a CRM screen listens for its own account's events
//! (or one call's, one agent's), and on the shared ring every session is
//! woken for every event, a wake per session per event whatever its filter
//! (5,000 screens of 5,000 accounts at 1,000 events/s took 1.8 cores of a
//! 2-core machine, about 1,780 µs of CPU per event; 142–154 µs with a queue
//! per session, docs/websocket.md; 2,000 screens of a subject no event had
//! cut the durable webhook rate from 29,000 to 6,000 events/s). A queue per
//! session rather than a ring per key: a ring is allocated whole (twice
//! `client_queue` slots, 80 KiB at the default, for each key a client
//! names), a queue grows as it fills; but each queue is a send per event on
//! the journal writer's thread, so a key with many screens (a token per
//! tenant, scoped to its account) gives the rest one ring, one send.
//! Sessions whose filter gives no key (several values of each, or only
//! type globs) stay on the shared ring, woken at every commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, watch};

use crate::journal::JournaledEvent;

/// Events the shared ring holds (about 64 MB of 1 KB events, pinned while
/// its slowest receiver is that far behind).
pub const SHARED_RING: usize = 65_536;

/// How sinks learn of new commits.
#[derive(Clone)]
pub struct Hub {
    committed: watch::Sender<u64>,
    live: broadcast::Sender<Arc<JournaledEvent>>,
    routes: Arc<Mutex<Routes>>,
    /// The highest seq the ring skipped (never published): it may have
    /// been any route's. Written only under `routes`' lock, by the
    /// publisher, before the commit's seq is announced; read without it by
    /// sessions, which must not wait on the lock the journal's writer
    /// publishes under.
    skipped_through: Arc<AtomicU64>,
}

/// The one value of an event attribute a session's filter lets through,
/// which it is fed the events of (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKey<'a> {
    Account(&'a str),
    Subject(&'a str),
    /// A type matched literally (a glob with no `*` or `?`).
    Type(&'a str),
    Vendor(&'a str),
}

/// How many kinds of [`RouteKey`] there are: one map of routes each.
const KINDS: usize = 4;

impl<'a> RouteKey<'a> {
    /// Its map's index in [`Routes::by_kind`], and the value looked up.
    fn parts(self) -> (usize, &'a str) {
        match self {
            RouteKey::Account(v) => (0, v),
            RouteKey::Subject(v) => (1, v),
            RouteKey::Type(v) => (2, v),
            RouteKey::Vendor(v) => (3, v),
        }
    }

    /// The values of `event` each kind of route is keyed on, in
    /// [`RouteKey::parts`]' order (`None`: no subject, no route of it).
    fn of(event: &JournaledEvent) -> [Option<&str>; KINDS] {
        let h = &event.header;
        [
            Some(h.account.as_str()),
            h.subject.as_deref(),
            Some(h.event_type.as_str()),
            Some(h.vendor.as_str()),
        ]
    }
}

/// An event on a route's queue (see the module's guarantees).
#[derive(Clone, Debug)]
pub struct Routed {
    pub event: Arc<JournaledEvent>,
    /// Every seq after this one and before the event's own was published
    /// and is not the route key's.
    pub after: u64,
}

/// An event of the shared ring, which skips nothing silently: nothing
/// before it was left out but what its seq says.
fn after_the_one_before(event: Arc<JournaledEvent>) -> (Arc<JournaledEvent>, u64) {
    let after = event.seq.saturating_sub(1);
    (event, after)
}

impl Routed {
    /// The event, and its `after` raised to the receiver's subscription:
    /// what came before that is the journal's to give.
    fn floored_at(self, subscribed_after: u64) -> (Arc<JournaledEvent>, u64) {
        (self.event, self.after.max(subscribed_after))
    }
}

/// The route queues and what each publish must know to fill them in.
struct Routes {
    /// Routes by key value, a map per kind (indexed as
    /// [`RouteKey::parts`]): the publisher looks an event's `&str`s up
    /// without building a key, and skips a kind nobody is routed on.
    by_kind: [HashMap<String, Route>; KINDS],
    /// The last seq published (events and skipped seqs alike).
    last_published: u64,
    /// How many routes (of every kind) make the next subscription drop the
    /// queues of sessions gone (see [`Hub::subscribe_for`]).
    sweep_at: usize,
}

impl Routes {
    fn len(&self) -> usize {
        self.by_kind.iter().map(HashMap::len).sum()
    }
}

/// The fewest routes a sweep waits for.
const FIRST_SWEEP: usize = 64;

/// A route key's sessions that get a queue each; the next ones share its
/// ring (see the module doc).
pub const QUEUES_PER_ROUTE: usize = 64;

struct Route {
    /// One per live session routed on the key, up to [`QUEUES_PER_ROUTE`]
    /// (and those of sessions gone, until dropped).
    queues: Vec<mpsc::Sender<Routed>>,
    /// The key's rings, while sessions past the queues listen on them,
    /// each with the events it was made to hold: one, unless a reload
    /// changed `client_queue` while sessions listened.
    rings: Vec<(broadcast::Sender<Routed>, usize)>,
    /// The seq of the last event published to the route, or the last seq
    /// published before its first session subscribed.
    last_sent: u64,
}

impl Route {
    /// Sends `event` to every session of the route; whether none is left.
    fn send(&mut self, event: &Arc<JournaledEvent>, skipped_through: u64) -> bool {
        let routed = Routed {
            event: event.clone(),
            after: self.last_sent.max(skipped_through),
        };
        self.last_sent = event.seq;
        // A full queue is dropped: its session takes what it holds, hears
        // `Lagged`, and reads the rest from the journal; a closed one's
        // session is gone.
        self.queues.retain(|q| q.try_send(routed.clone()).is_ok());
        self.rings
            .retain(|(ring, _)| ring.send(routed.clone()).is_ok());
        self.queues.is_empty() && self.rings.is_empty()
    }

    /// Drops what sessions gone left; whether anything is left.
    fn drop_the_gone(&mut self) -> bool {
        self.queues.retain(|q| !q.is_closed());
        self.rings.retain(|(ring, _)| ring.receiver_count() > 0);
        !self.queues.is_empty() || !self.rings.is_empty()
    }
}

/// A session's live subscription: the shared ring, or its route key's (a
/// queue of its own or the key's ring).
pub enum LiveReceiver {
    All(broadcast::Receiver<Arc<JournaledEvent>>),
    Route {
        receiver: RouteReceiver,
        /// The last seq published when it subscribed: what came before is
        /// the journal's to give, whatever the queue says.
        subscribed_after: u64,
    },
}

/// Where a session with a route key hears of its key's events.
pub enum RouteReceiver {
    Queue(mpsc::Receiver<Routed>),
    Ring(broadcast::Receiver<Routed>),
}

impl RouteReceiver {
    async fn recv(&mut self) -> Result<Routed, RecvError> {
        match self {
            RouteReceiver::Queue(queue) => queue.recv().await.ok_or(RecvError::Lagged(0)),
            RouteReceiver::Ring(ring) => ring.recv().await,
        }
    }

    fn try_recv(&mut self) -> Result<Routed, TryRecvError> {
        match self {
            RouteReceiver::Queue(queue) => queue.try_recv().map_err(|e| match e {
                mpsc::error::TryRecvError::Empty => TryRecvError::Empty,
                mpsc::error::TryRecvError::Disconnected => TryRecvError::Lagged(0),
            }),
            RouteReceiver::Ring(ring) => ring.try_recv(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            RouteReceiver::Queue(queue) => queue.is_empty() && !queue.is_closed(),
            RouteReceiver::Ring(ring) => ring.is_empty(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            RouteReceiver::Queue(queue) => queue.is_closed(),
            RouteReceiver::Ring(_) => false,
        }
    }
}

impl LiveReceiver {
    /// The next event and the seq after which nothing of the receiver's
    /// was left out before it (see [`Routed::after`]; on the shared ring,
    /// the seq before the event's). A route's queue that was closed (it
    /// was full) says `Lagged` once emptied: subscribe again.
    pub async fn recv(&mut self) -> Result<(Arc<JournaledEvent>, u64), RecvError> {
        match self {
            LiveReceiver::All(receiver) => receiver.recv().await.map(after_the_one_before),
            LiveReceiver::Route {
                receiver,
                subscribed_after,
            } => (receiver.recv().await).map(|r| r.floored_at(*subscribed_after)),
        }
    }

    /// As [`LiveReceiver::recv`], without waiting.
    pub fn try_recv(&mut self) -> Result<(Arc<JournaledEvent>, u64), TryRecvError> {
        match self {
            LiveReceiver::All(receiver) => receiver.try_recv().map(after_the_one_before),
            LiveReceiver::Route {
                receiver,
                subscribed_after,
            } => receiver.try_recv().map(|r| r.floored_at(*subscribed_after)),
        }
    }

    /// On a route's queue or ring, the seq up to which a session must have
    /// read the journal before it may take the route's silence for
    /// "nothing of mine" (what the ring skipped, what came before the
    /// subscription); `None` on the shared ring, which skips nothing
    /// silently.
    pub fn vouched_after(&self, hub: &Hub) -> Option<u64> {
        match self {
            LiveReceiver::All(_) => None,
            LiveReceiver::Route {
                subscribed_after, ..
            } => Some((*subscribed_after).max(hub.skipped_through())),
        }
    }

    /// Whether nothing published is waiting for this receiver (a closed
    /// queue is not: its `Lagged` waits).
    pub fn is_empty(&self) -> bool {
        match self {
            LiveReceiver::All(receiver) => receiver.is_empty(),
            LiveReceiver::Route { receiver, .. } => receiver.is_empty(),
        }
    }

    /// Whether this receiver gets nothing more: a session that heard
    /// `Lagged` from it must subscribe again.
    pub fn is_closed(&self) -> bool {
        match self {
            LiveReceiver::All(_) => false,
            LiveReceiver::Route { receiver, .. } => receiver.is_closed(),
        }
    }
}

impl Hub {
    pub fn new(last_seq: u64, live_capacity: usize) -> Hub {
        let (committed, _) = watch::channel(last_seq);
        let (live, _) = broadcast::channel(live_capacity.max(1));
        let routes = Routes {
            by_kind: Default::default(),
            last_published: last_seq,
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

    /// Events committed from now on that a session with route key `key`
    /// may want: a queue of that key's events (of up to `capacity`, closed
    /// when an event finds it full), or, past the key's first
    /// [`QUEUES_PER_ROUTE`] sessions, the first of its rings that holds
    /// `capacity` (or a new one that does), or the shared ring (`None`:
    /// every event).
    pub fn subscribe_for(&self, key: Option<RouteKey<'_>>, capacity: usize) -> LiveReceiver {
        let Some(key) = key else {
            return LiveReceiver::All(self.live.subscribe());
        };
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        // Queues of sessions gone are dropped by the next event of their
        // key, or here, for keys no event comes for (any name a client
        // gives): once the routes double, so that a reconnecting crowd
        // does not walk every route at each connect under the lock the
        // journal's writer publishes with.
        if routes.len() >= routes.sweep_at {
            for by_value in &mut routes.by_kind {
                by_value.retain(|_, route| route.drop_the_gone());
            }
            routes.sweep_at = (routes.len() * 2).max(FIRST_SWEEP);
        }
        let subscribed_after = routes.last_published;
        let (kind, value) = key.parts();
        let route = routes.by_kind[kind]
            .entry(value.to_owned())
            .or_insert_with(|| Route {
                queues: Vec::new(),
                rings: Vec::new(),
                last_sent: subscribed_after,
            });
        // This key's gone sessions' queues, whatever the other keys do: a
        // client reconnecting in a loop to a quiet account left one behind
        // at each connect.
        route.drop_the_gone();
        let receiver = if route.queues.len() < QUEUES_PER_ROUTE {
            let (sender, receiver) = mpsc::channel(capacity.max(1));
            route.queues.push(sender);
            RouteReceiver::Queue(receiver)
        } else {
            // Not one made before a reload raised `client_queue`: a slow
            // client would fall off it before its queue overflowed, and
            // not be closed for it.
            let deep_enough = route.rings.iter().find(|(_, held)| *held >= capacity);
            RouteReceiver::Ring(match deep_enough {
                Some((ring, _)) => ring.subscribe(),
                None => {
                    let (ring, receiver) = broadcast::channel(capacity.max(1));
                    // What it holds: tokio rounds up to a power of two.
                    route
                        .rings
                        .push((ring, capacity.max(1).next_power_of_two()));
                    receiver
                }
            })
        };
        LiveReceiver::Route {
            receiver,
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

    /// Route queues held, of every kind (of sessions live, or gone and not
    /// yet dropped).
    #[cfg(test)]
    pub fn route_queues(&self) -> usize {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let routes = routes.by_kind.iter().flat_map(HashMap::values);
        routes.map(|r| r.queues.len()).sum()
    }

    /// Route rings and routes, as [`Hub::route_queues`].
    #[cfg(test)]
    fn route_rings_and_routes(&self) -> (usize, usize) {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let rings = routes.by_kind.iter().flat_map(HashMap::values);
        (rings.map(|r| r.rings.len()).sum(), routes.len())
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
    /// with no event here is one the rings skipped: every route's next
    /// event says so in its [`Routed::after`].
    pub(crate) fn publish(&self, events: Vec<Arc<JournaledEvent>>, last_seq: u64) {
        {
            let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            let routes = &mut *routes;
            let mut skipped_through = self.skipped_through.load(Ordering::Relaxed);
            for e in events {
                if e.seq > routes.last_published.saturating_add(1) {
                    skipped_through = e.seq - 1;
                }
                routes.last_published = routes.last_published.max(e.seq);
                // A hash lookup per kind some session is routed on; none
                // while nobody is.
                for (by_value, value) in routes.by_kind.iter_mut().zip(RouteKey::of(&e)) {
                    if by_value.is_empty() {
                        continue;
                    }
                    let Some(value) = value else { continue };
                    let emptied = by_value
                        .get_mut(value)
                        .is_some_and(|route| route.send(&e, skipped_through));
                    if emptied {
                        by_value.remove(value);
                    }
                }
                // No receivers is fine: nobody is listening live.
                let _ = self.live.send(e);
            }
            if last_seq > routes.last_published {
                skipped_through = last_seq;
                routes.last_published = last_seq;
            }
            self.skipped_through
                .store(skipped_through, Ordering::Release);
        }
        self.committed.send_replace(last_seq);
    }
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventHeader;

    /// Events each route's queue holds in these tests.
    const QUEUE: usize = 8;

    /// A journaled event of `account` at `seq`.
    pub(super) fn event(seq: u64, account: &str) -> Arc<JournaledEvent> {
        Arc::new(JournaledEvent {
            seq,
            journaled_at_ms: 0,
            received_at_ms: 0,
            header: EventHeader {
                account: account.into(),
                seq,
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
    fn an_accounts_queue_carries_its_events_and_says_what_came_between() {
        let hub = Hub::new(0, 16);
        let mut mine = hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE);
        let mut all = hub.subscribe_for(None, QUEUE);
        assert!(mine.vouched_after(&hub).is_some() && all.vouched_after(&hub).is_none());
        hub.publish(vec![event(1, "a"), event(2, "b"), event(3, "b")], 3);
        hub.publish(vec![event(4, "a")], 4);
        assert_eq!(taken(&mut mine), [(1, 0), (4, 1)]);
        assert!(mine.is_empty());
        assert_eq!(taken(&mut all), [(1, 0), (2, 1), (3, 2), (4, 3)]);
    }

    /// A journaled event of `account` at `seq`, with a subject, type and
    /// vendor.
    pub(super) fn event_with(
        seq: u64,
        account: &str,
        subject: Option<&str>,
        ty: &str,
        vendor: &str,
    ) -> Arc<JournaledEvent> {
        let mut e = event(seq, account);
        let header = &mut Arc::get_mut(&mut e).expect("not shared yet").header;
        header.subject = subject.map(str::to_owned);
        header.event_type = ty.into();
        header.vendor = vendor.into();
        e
    }

    /// A session keyed on a subject, a type or a vendor gets that key's
    /// events alone, as one keyed on an account does, with the same
    /// `after`; an event goes to the route of each of its attributes, and
    /// a key of one kind takes nothing of another kind's same value.
    #[test]
    fn a_subjects_types_or_vendors_route_carries_its_events_alone() {
        let hub = Hub::new(0, 16);
        let shared_before = hub.live_receivers();
        let mut subject = hub.subscribe_for(Some(RouteKey::Subject("x")), QUEUE);
        let mut ty = hub.subscribe_for(Some(RouteKey::Type("call.ended")), QUEUE);
        let mut vendor = hub.subscribe_for(Some(RouteKey::Vendor("v2")), QUEUE);
        let mut account = hub.subscribe_for(Some(RouteKey::Account("x")), QUEUE);
        assert_eq!(
            hub.live_receivers(),
            shared_before,
            "none on the shared ring"
        );
        assert_eq!(hub.route_queues(), 4);
        hub.publish(
            vec![
                event_with(1, "a", Some("y"), "call.ringing", "v1"),
                event_with(2, "a", Some("x"), "call.ringing", "v1"),
                event_with(3, "a", None, "call.ended", "v1"),
                event_with(4, "b", Some("x"), "call.ended", "v2"),
                event_with(5, "a", Some("y"), "call.ringing", "v1"),
            ],
            5,
        );
        hub.publish(vec![event_with(7, "x", Some("x"), "call.ended", "v2")], 7);
        assert_eq!(taken(&mut subject), [(2, 0), (4, 2), (7, 6)]);
        assert_eq!(taken(&mut ty), [(3, 0), (4, 3), (7, 6)]);
        assert_eq!(taken(&mut vendor), [(4, 0), (7, 6)]);
        assert_eq!(taken(&mut account), [(7, 6)]);
        // Its sessions gone, a key's route goes at its next event.
        drop((subject, ty, vendor, account));
        hub.publish(vec![event_with(8, "x", Some("x"), "call.ended", "v2")], 8);
        assert_eq!(hub.route_rings_and_routes(), (0, 0));
    }

    /// A seq the rings skipped may have been any account's: each account's
    /// next event says it, wherever in a batch (or after it) the skip was.
    #[test]
    fn seqs_the_ring_skipped_are_said_to_every_account() {
        let hub = Hub::new(0, 16);
        let (mut a, mut b) = (
            hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE),
            hub.subscribe_for(Some(RouteKey::Account("b")), QUEUE),
        );
        hub.publish(vec![event(1, "a"), event(3, "b")], 4);
        hub.publish(vec![event(5, "a"), event(6, "b")], 6);
        assert_eq!(taken(&mut a), [(1, 0), (5, 4)]);
        assert_eq!(taken(&mut b), [(3, 2), (6, 4)]);
        assert_eq!(hub.skipped_through(), 4);
    }

    /// What committed before a receiver subscribed is the journal's to
    /// give: its first event says so, though its account had nothing since.
    #[test]
    fn a_receiver_hears_of_what_came_before_it_subscribed() {
        let hub = Hub::new(7, 16);
        let mut early = hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE);
        hub.publish(vec![event(8, "b"), event(9, "b")], 9);
        let mut late = hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE);
        hub.publish(vec![event(10, "a")], 10);
        assert_eq!(taken(&mut early), [(10, 7)]);
        assert_eq!(taken(&mut late), [(10, 9)]);
    }

    /// A session's queue goes with its session: at its account's next
    /// event, or, for accounts no event comes for, once their number
    /// doubles.
    #[test]
    fn an_accounts_queue_goes_with_its_session() {
        let hub = Hub::new(0, 16);
        let _kept = hub.subscribe_for(Some(RouteKey::Account("kept")), QUEUE);
        drop(hub.subscribe_for(Some(RouteKey::Account("c")), QUEUE));
        hub.publish(vec![event(1, "c")], 1);
        assert_eq!(hub.route_queues(), 1);
        for n in 1..FIRST_SWEEP {
            drop(hub.subscribe_for(Some(RouteKey::Account(&format!("gone{n}"))), QUEUE));
        }
        assert_eq!(hub.route_queues(), FIRST_SWEEP);
        drop(hub.subscribe_for(Some(RouteKey::Account("last")), QUEUE));
        assert_eq!(hub.route_queues(), 2, "the kept queue and the last");
    }

    /// A sweep waits for the routes to double since the last one, so a
    /// crowd of live screens is not walked at every connect (a sweep at
    /// every subscription, or every other one, passed the other tests:
    /// mutation testing, round 72).
    #[test]
    fn sweeps_wait_for_the_routes_to_double() {
        let hub = Hub::new(0, 16);
        let live: Vec<LiveReceiver> = (0..FIRST_SWEEP)
            .map(|n| hub.subscribe_for(Some(RouteKey::Account(&format!("live{n}"))), QUEUE))
            .collect();
        let gone = |n: usize| {
            drop(hub.subscribe_for(Some(RouteKey::Account(&format!("gone{n}"))), QUEUE));
        };
        // The first sweep (at FIRST_SWEEP routes) drops nothing: the next
        // is at twice what it left.
        for n in 0..FIRST_SWEEP {
            gone(n);
        }
        assert_eq!(hub.route_queues(), 2 * FIRST_SWEEP, "no sweep before 2×");
        gone(FIRST_SWEEP);
        assert_eq!(hub.route_queues(), FIRST_SWEEP + 1, "swept at 2×");
        drop(live);
    }

    /// A queue an event finds full is closed: its session takes what it
    /// holds, in order, then hears `Lagged` (and reads the journal); the
    /// other sessions of the account are not held back.
    #[test]
    fn a_full_queue_is_closed_after_what_it_holds() {
        let hub = Hub::new(0, 16);
        let mut slow = hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE);
        let mut other = hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE + 1);
        let events = (1..=QUEUE as u64 + 1).map(|seq| event(seq, "a")).collect();
        hub.publish(events, QUEUE as u64 + 1);
        let held: Vec<u64> = taken(&mut slow).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(held, (1..=QUEUE as u64).collect::<Vec<_>>());
        assert!(slow.is_closed() && !slow.is_empty());
        assert!(matches!(slow.try_recv(), Err(TryRecvError::Lagged(_))));
        assert_eq!(taken(&mut other).len(), QUEUE + 1);
        assert!(!other.is_closed());
    }

    /// Past an account's first queues, its sessions share its ring: the
    /// same events with the same `after`; behind by more than the ring they
    /// hear `Lagged` and stay subscribed (as on the shared ring). A session
    /// reconnecting in a loop to a quiet account leaves no queue behind.
    #[test]
    fn past_the_queues_an_accounts_sessions_share_its_ring() {
        let hub = Hub::new(0, 16);
        let mut queued: Vec<LiveReceiver> = (0..QUEUES_PER_ROUTE)
            .map(|_| hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE))
            .collect();
        let mut ringed = hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE);
        assert!(matches!(
            ringed,
            LiveReceiver::Route {
                receiver: RouteReceiver::Ring(_),
                ..
            }
        ));
        assert_eq!(hub.route_queues(), QUEUES_PER_ROUTE);
        hub.publish(vec![event(1, "b"), event(2, "a")], 2);
        assert_eq!(taken(&mut ringed), [(2, 0)]);
        assert_eq!(taken(&mut queued[0]), [(2, 0)]);
        let events = (3..=QUEUE as u64 + 3).map(|seq| event(seq, "a")).collect();
        hub.publish(events, QUEUE as u64 + 3);
        assert!(matches!(ringed.try_recv(), Err(TryRecvError::Lagged(1))));
        assert_eq!(taken(&mut ringed).len(), QUEUE);
        // Every queue was full and dropped; the ring, and its route, stay.
        assert_eq!(hub.route_queues(), 0);
        hub.publish(vec![event(QUEUE as u64 + 4, "a")], QUEUE as u64 + 4);
        let next = QUEUE as u64 + 4;
        assert_eq!(taken(&mut ringed), [(next, next - 1)]);

        // Past the queues again: a session asking for no deeper a ring
        // shares the account's; one asking for a deeper one (a reload
        // raised `client_queue`) gets a ring of its own beside it; a ring
        // nobody listens to goes at the next connect.
        let requeued: Vec<LiveReceiver> = (0..QUEUES_PER_ROUTE)
            .map(|_| hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE))
            .collect();
        let shallower = hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE / 2);
        assert_eq!(hub.route_rings_and_routes(), (1, 1));
        let deeper = hub.subscribe_for(Some(RouteKey::Account("a")), 2 * QUEUE - 1);
        assert!(matches!(
            deeper,
            LiveReceiver::Route {
                receiver: RouteReceiver::Ring(_),
                ..
            }
        ));
        assert_eq!(hub.route_rings_and_routes(), (2, 1));
        assert_eq!(hub.route_queues(), QUEUES_PER_ROUTE);
        // Both rings get the account's events, with the same `after`.
        hub.publish(vec![event(next + 1, "a")], next + 1);
        let (mut deeper, mut shallower) = (deeper, shallower);
        assert_eq!(taken(&mut deeper), [(next + 1, next)]);
        assert_eq!(taken(&mut shallower), [(next + 1, next)]);
        // A depth tokio's rounding already gave shares the ring.
        let rounded = hub.subscribe_for(Some(RouteKey::Account("a")), 2 * QUEUE);
        assert_eq!(hub.route_rings_and_routes(), (2, 1));
        drop((deeper, rounded));
        let again = hub.subscribe_for(Some(RouteKey::Account("a")), QUEUE);
        assert_eq!(hub.route_rings_and_routes(), (1, 1));
        drop((requeued, shallower, again, ringed));
        // Their account's next event drops them all, and the route.
        hub.publish(vec![event(next + 2, "a")], next + 2);
        assert_eq!(hub.route_queues(), 0);
        assert_eq!(hub.route_rings_and_routes(), (0, 0));

        // A quiet account: each connect drops the queue the last one left.
        for _ in 0..100 {
            drop(hub.subscribe_for(Some(RouteKey::Account("quiet")), QUEUE));
        }
        drop(queued);
        assert_eq!(hub.route_queues(), 1, "the last quiet one's");
    }
}
