//! Model-based property test of the hub: proptest draws a sequence of the
//! calls its users make (the journal writer's `publish`, with seqs the ring
//! skipped as after a landed commit not read back; WebSocket sessions'
//! `subscribe_for`, `try_recv` / `recv`, `vouched_after`, dropping the
//! receiver; a crowd of one route key's sessions, enough to pass its
//! [`QUEUES_PER_ROUTE`] queues and reach its rings; passers-by naming a
//! key once each), and a plain model of what was published and what each
//! receiver was sent says what the hub must answer. Route keys are of
//! every kind (account, subject, type, vendor), over the same few values
//! for each kind (so a route that took another kind's events would show),
//! and events may have no subject.
//!
//! Checked, as the module and item docs promise:
//! - a receiver gets only its route key's events (all, unfiltered), in seq
//!   order, each once, none published before it subscribed;
//! - nothing is skipped silently: a route queue gives exactly what it
//!   was sent until an event found it full (then what it holds, then
//!   `Lagged`, and `is_closed`); a ring (shared, or a route's) gives
//!   each event in turn, and skips only right after a `Lagged`, which it
//!   may say only when more than its depth behind (the shared ring's
//!   capacity; for a route's ring, the depth its session asked for);
//! - which receiver a session gets: a queue while its key has fewer than
//!   [`QUEUES_PER_ROUTE`] open ones, else a ring;
//! - `after`: the seq before the event's on the shared ring; on a route's,
//!   every seq between it and the event's was published as an event not
//!   of the key (skipped seqs and seqs from before the subscription are at
//!   or below it);
//! - `vouched_after`: when a route receiver is empty, every seq after it
//!   up to the last published was published (none skipped), and the
//!   key's among them were all given to the receiver (or read from the
//!   journal after a `Lagged`);
//! - `is_empty` / `is_closed` as documented; `committed()` is the last seq
//!   published; `live_receivers` counts the shared ring's receivers;
//!   `live_held` is at most the ring's capacity and none once every
//!   receiver has read everything; `route_queues` counts at least every
//!   open queue and at most those plus the queues of sessions gone that no
//!   event or subscription of their key has dropped since, and the gone
//!   queues of keys nobody comes back to stay bounded.
//!
//! Not checked (not promised): the count a `Lagged` carries, exactly when a
//! ring lags (tokio rounds depths up), how many rings a route has, and
//! anything about threads (the model is sequential; the publisher's lock
//! and the orderings are not exercised).

use std::collections::VecDeque;

use futures::FutureExt;
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

/// The values of each attribute of the events published, and of route keys
/// of each kind.
const VALUES: [&str; 3] = ["a", "b", "c"];

/// An event's account, subject, type and vendor, in [`RouteKey::parts`]'
/// order (by index into [`VALUES`]; a subject past them: none).
type Attrs = [usize; KINDS];

/// A route key: its kind (as [`RouteKey::parts`]) and value.
type Key = (usize, String);

fn route_key((kind, value): &Key) -> RouteKey<'_> {
    match kind {
        0 => RouteKey::Account(value),
        1 => RouteKey::Subject(value),
        2 => RouteKey::Type(value),
        _ => RouteKey::Vendor(value),
    }
}

/// Whether an event of `attrs` is `key`'s.
fn is_of(attrs: &Attrs, (kind, value): &Key) -> bool {
    VALUES.get(attrs[*kind]) == Some(&value.as_str())
}

/// A journaled event of `attrs` at `seq`.
fn event_of(seq: u64, attrs: &Attrs) -> Arc<JournaledEvent> {
    super::tests::event_with(
        seq,
        VALUES[attrs[0]],
        VALUES.get(attrs[1]).copied(),
        VALUES[attrs[2]],
        VALUES[attrs[3]],
    )
}

#[derive(Clone, Debug)]
enum Op {
    /// One `publish`: events of `attrs`, each after `gap` seqs the ring
    /// skipped, then `trailing` skipped seqs (at least one when
    /// there are no events: the writer publishes nothing otherwise).
    Publish {
        events: Vec<(Attrs, u64)>,
        trailing: u64,
    },
    /// A session: one route key (a kind, an index into `VALUES`) or all.
    Subscribe {
        key: Option<(usize, usize)>,
        capacity: usize,
    },
    /// [`QUEUES_PER_ROUTE`] sessions of one key, then one more per entry
    /// of `past` (with that capacity): past the key's queues.
    Crowd {
        key: (usize, usize),
        capacity: usize,
        past: Vec<usize>,
    },
    /// Up to `count` receives by one session; `waiting`: `recv` polled
    /// once, as the live loop's `select!` does, rather than `try_recv`.
    Receive {
        who: Index,
        count: usize,
        waiting: bool,
    },
    /// Every session reads all it has waiting (each keeps up).
    ReceiveAll,
    /// A session ends.
    Drop { who: Index },
    /// `count` sessions each of a key of its own of `kind`, ended at once.
    Passersby { kind: usize, count: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let gap = prop_oneof![8 => Just(0u64), 1 => 1..=2u64];
    let trailing = prop_oneof![6 => Just(0u64), 1 => 1..=2u64];
    let n = VALUES.len();
    // A subject of `n`: none.
    let attrs = [0..n, 0..n + 1, 0..n, 0..n];
    let key = (0..KINDS, 0..n);
    prop_oneof![
        4 => (prop::collection::vec((attrs, gap), 0..=6), trailing)
            .prop_map(|(events, trailing)| Op::Publish { events, trailing }),
        3 => (prop::option::weighted(0.8, key.clone()), 1..=5usize)
            .prop_map(|(key, capacity)| Op::Subscribe { key, capacity }),
        1 => (
            key,
            prop_oneof![1..=4usize, Just(64)],
            prop::collection::vec(1..=9usize, 0..=3),
        )
            .prop_map(|(key, capacity, past)| Op::Crowd { key, capacity, past }),
        4 => (any::<Index>(), 1..=6usize, any::<bool>())
            .prop_map(|(who, count, waiting)| Op::Receive { who, count, waiting }),
        1 => Just(Op::ReceiveAll),
        2 => any::<Index>().prop_map(|who| Op::Drop { who }),
        1 => (0..KINDS, 1..=2 * FIRST_SWEEP)
            .prop_map(|(kind, count)| Op::Passersby { kind, count }),
    ]
}

/// What the receiver should be holding for its session.
enum Expected {
    /// A route's queue, exactly: the seqs it holds, and whether an event
    /// found it full (then it gets nothing more).
    Queue {
        capacity: usize,
        held: VecDeque<u64>,
        closed: bool,
    },
    /// A ring (the shared one or a route's): the seqs sent to it and not
    /// read (those a lag skipped included, until the next event read), the
    /// depth it must hold, and whether the last receive was `Lagged`.
    Ring {
        depth: usize,
        unread: VecDeque<u64>,
        lag_heard: bool,
    },
}

struct Session {
    live: LiveReceiver,
    key: Option<Key>,
    /// The last seq published when it subscribed.
    subscribed_after: u64,
    expected: Expected,
    last_got: Option<u64>,
    /// The last seq published when it last heard `Lagged` from a ring: the
    /// session read the journal through it.
    replayed_through: u64,
}

/// What one receive answered.
enum Heard {
    Event(Arc<JournaledEvent>, u64),
    Lagged,
    Empty,
    Closed,
}

struct Model {
    hub: Hub,
    committed: watch::Receiver<u64>,
    live_capacity: usize,
    last_published: u64,
    /// The attributes of each seq published as an event, by seq (`None`:
    /// skipped, or from before the hub).
    published: Vec<Option<Attrs>>,
    sessions: Vec<Session>,
    /// The keys of queues whose sessions are gone and that neither an
    /// event nor a subscription of their key has dropped since.
    lingering: Vec<Key>,
    passersby: usize,
}

impl Model {
    fn new(initial: u64, live_capacity: usize) -> Model {
        let hub = Hub::new(initial, live_capacity);
        Model {
            committed: hub.committed(),
            hub,
            live_capacity,
            last_published: initial,
            published: vec![None; initial as usize + 1],
            sessions: Vec::new(),
            lingering: Vec::new(),
            passersby: 0,
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Publish { events, trailing } => self.publish(events, *trailing),
            Op::Subscribe { key, capacity } => {
                self.subscribe(key.map(|(kind, v)| (kind, VALUES[v].into())), *capacity)
            }
            Op::Crowd {
                key: (kind, v),
                capacity,
                past,
            } => {
                let key: Key = (*kind, VALUES[*v].into());
                for _ in 0..QUEUES_PER_ROUTE {
                    self.subscribe(Some(key.clone()), *capacity);
                }
                for capacity in past {
                    self.subscribe(Some(key.clone()), *capacity);
                }
            }
            Op::Receive {
                who,
                count,
                waiting,
            } => {
                if self.sessions.is_empty() {
                    return;
                }
                let who = who.index(self.sessions.len());
                for _ in 0..*count {
                    let heard = self.receive(who, *waiting);
                    self.check_heard(who, heard);
                }
            }
            Op::ReceiveAll => {
                for who in 0..self.sessions.len() {
                    // Bounded: a ring may lag again while it is read.
                    for _ in 0..self.published.len() + 2 {
                        let heard = self.receive(who, false);
                        let done = match &heard {
                            Heard::Empty | Heard::Closed => true,
                            Heard::Lagged => self.sessions[who].live.is_closed(),
                            Heard::Event(..) => false,
                        };
                        self.check_heard(who, heard);
                        if done {
                            break;
                        }
                    }
                }
            }
            Op::Drop { who } => {
                if self.sessions.is_empty() {
                    return;
                }
                let gone = self.sessions.remove(who.index(self.sessions.len()));
                if let Expected::Queue { closed: false, .. } = gone.expected {
                    self.lingering.push(gone.key.unwrap());
                }
            }
            Op::Passersby { kind, count } => {
                for _ in 0..*count {
                    self.passersby += 1;
                    let key = (*kind, format!("passer-by {}", self.passersby));
                    drop(self.hub.subscribe_for(Some(route_key(&key)), 1));
                    self.lingering.push(key);
                }
            }
        }
        self.check_state();
    }

    fn publish(&mut self, events: &[(Attrs, u64)], trailing: u64) {
        let mut seq = self.last_published;
        let mut batch = Vec::new();
        for (attrs, gap) in events {
            seq += 1 + gap;
            batch.push((event_of(seq, attrs), *attrs));
        }
        let trailing = if batch.is_empty() {
            trailing.max(1)
        } else {
            trailing
        };
        let last_seq = seq + trailing;
        let events = batch.iter().map(|(e, _)| e.clone()).collect();
        self.hub.publish(events, last_seq);

        self.published.resize(last_seq as usize + 1, None);
        for (e, attrs) in &batch {
            self.published[e.seq as usize] = Some(*attrs);
            // The hub drops gone sessions' queues at their key's event.
            self.lingering.retain(|gone| !is_of(attrs, gone));
            for session in &mut self.sessions {
                if session.key.as_ref().is_some_and(|k| !is_of(attrs, k)) {
                    continue;
                }
                match &mut session.expected {
                    Expected::Queue {
                        capacity,
                        held,
                        closed,
                    } => {
                        if *closed {
                        } else if held.len() == *capacity {
                            *closed = true;
                        } else {
                            held.push_back(e.seq);
                        }
                    }
                    Expected::Ring { unread, .. } => unread.push_back(e.seq),
                }
            }
        }
        self.last_published = last_seq;
    }

    fn subscribe(&mut self, key: Option<Key>, capacity: usize) {
        let live = self
            .hub
            .subscribe_for(key.as_ref().map(route_key), capacity);
        let expected = match &key {
            None => {
                assert!(matches!(live, LiveReceiver::All(_)));
                Expected::Ring {
                    depth: self.live_capacity,
                    unread: VecDeque::new(),
                    lag_heard: false,
                }
            }
            Some(key) => {
                // The key's gone sessions' queues go at its subscription.
                self.lingering.retain(|gone| gone != key);
                let open_queues = self
                    .sessions
                    .iter()
                    .filter(|s| s.key.as_ref() == Some(key))
                    .filter(|s| matches!(s.expected, Expected::Queue { closed: false, .. }))
                    .count();
                let LiveReceiver::Route { receiver, .. } = &live else {
                    panic!("{key:?}'s session got the shared ring");
                };
                match receiver {
                    RouteReceiver::Queue(_) => {
                        assert!(
                            open_queues < QUEUES_PER_ROUTE,
                            "{key:?}'s session got a queue past {open_queues} open ones"
                        );
                        Expected::Queue {
                            capacity,
                            held: VecDeque::new(),
                            closed: false,
                        }
                    }
                    RouteReceiver::Ring(_) => {
                        assert!(
                            open_queues >= QUEUES_PER_ROUTE,
                            "{key:?}'s session got a ring with {open_queues} open queues"
                        );
                        Expected::Ring {
                            depth: capacity,
                            unread: VecDeque::new(),
                            lag_heard: false,
                        }
                    }
                }
            }
        };
        self.sessions.push(Session {
            live,
            key,
            subscribed_after: self.last_published,
            expected,
            last_got: None,
            replayed_through: 0,
        });
    }

    fn receive(&mut self, who: usize, waiting: bool) -> Heard {
        let live = &mut self.sessions[who].live;
        if waiting {
            match live.recv().now_or_never() {
                Some(Ok((event, after))) => Heard::Event(event, after),
                Some(Err(RecvError::Lagged(_))) => Heard::Lagged,
                Some(Err(RecvError::Closed)) => Heard::Closed,
                None => Heard::Empty,
            }
        } else {
            match live.try_recv() {
                Ok((event, after)) => Heard::Event(event, after),
                Err(TryRecvError::Lagged(_)) => Heard::Lagged,
                Err(TryRecvError::Closed) => Heard::Closed,
                Err(TryRecvError::Empty) => Heard::Empty,
            }
        }
    }

    fn check_heard(&mut self, who: usize, heard: Heard) {
        let last_published = self.last_published;
        let session = &mut self.sessions[who];
        let name = format!("{:?}", session.key);
        match heard {
            Heard::Event(event, after) => {
                let seq = event.seq;
                if let Some(key) = &session.key {
                    let attrs = self.published[seq as usize].unwrap();
                    assert!(is_of(&attrs, key), "{name} got another's {seq}");
                    let (kind, value) = route_key(key).parts();
                    let field = RouteKey::of(&event)[kind];
                    assert_eq!(field, Some(value), "{name} got {seq}, of {attrs:?}");
                }
                assert!(
                    seq > session.subscribed_after,
                    "{name} got {seq}, published before it subscribed after {}",
                    session.subscribed_after
                );
                if let Some(last) = session.last_got {
                    assert!(seq > last, "{name} got {seq} after {last}");
                }
                session.last_got = Some(seq);
                match &mut session.expected {
                    Expected::Queue { held, .. } => {
                        assert_eq!(held.pop_front(), Some(seq), "{name}'s queue gave {seq}")
                    }
                    Expected::Ring {
                        unread, lag_heard, ..
                    } => {
                        let at = unread.iter().position(|&s| s == seq);
                        let at = at.unwrap_or_else(|| panic!("{name}'s ring gave {seq}, not sent"));
                        assert!(
                            at == 0 || *lag_heard,
                            "{name}'s ring skipped {:?} silently",
                            unread.range(..at).collect::<Vec<_>>()
                        );
                        unread.drain(..=at);
                        *lag_heard = false;
                    }
                }
                match &session.key {
                    None => assert_eq!(after, seq - 1, "the shared ring's after for {seq}"),
                    Some(key) => {
                        assert!(after < seq, "{name}'s {seq} after {after}");
                        for between in after + 1..seq {
                            let of = self.published[between as usize];
                            assert!(
                                of.is_some_and(|a| !is_of(&a, key)),
                                "{name}'s {seq} after {after}, but {between} was {of:?}"
                            );
                        }
                    }
                }
            }
            Heard::Lagged => match &mut session.expected {
                Expected::Queue { held, closed, .. } => assert!(
                    *closed && held.is_empty(),
                    "{name}'s queue said Lagged holding {held:?} (closed: {closed})"
                ),
                Expected::Ring {
                    depth,
                    unread,
                    lag_heard,
                } => {
                    assert!(
                        unread.len() > *depth,
                        "{name}'s ring of depth {depth} lagged {} behind",
                        unread.len()
                    );
                    *lag_heard = true;
                    session.replayed_through = last_published;
                }
            },
            Heard::Empty => match &session.expected {
                Expected::Queue { held, closed, .. } => assert!(
                    held.is_empty() && !closed,
                    "{name}'s queue said empty holding {held:?} (closed: {closed})"
                ),
                Expected::Ring { unread, .. } => {
                    assert!(
                        unread.is_empty(),
                        "{name}'s ring said empty, not sent {unread:?}"
                    )
                }
            },
            Heard::Closed => panic!("{name}'s receiver closed while the hub lives"),
        }
    }

    fn check_state(&self) {
        assert_eq!(*self.committed.borrow(), self.last_published, "committed");

        let shared: Vec<&Session> = self.sessions.iter().filter(|s| s.key.is_none()).collect();
        assert_eq!(self.hub.live_receivers(), shared.len(), "live_receivers");
        let held = self.hub.live_held();
        assert!(
            held <= self.live_capacity.next_power_of_two(),
            "live_held {held}"
        );
        let caught_up = shared
            .iter()
            .all(|s| matches!(&s.expected, Expected::Ring { unread, .. } if unread.is_empty()));
        if caught_up {
            assert_eq!(held, 0, "live_held with every receiver caught up");
        }

        let open_queues = self
            .sessions
            .iter()
            .filter(|s| matches!(s.expected, Expected::Queue { closed: false, .. }))
            .count();
        let lingering_of_values = self
            .lingering
            .iter()
            .filter(|(_, gone)| VALUES.contains(&gone.as_str()))
            .count();
        let queues = self.hub.route_queues();
        assert!(queues >= open_queues, "{queues} queues, {open_queues} open");
        assert!(
            queues <= open_queues + self.lingering.len(),
            "{queues} queues, {open_queues} open, {} gone",
            self.lingering.len()
        );
        assert!(
            queues <= open_queues + lingering_of_values + FIRST_SWEEP,
            "{queues} queues, {open_queues} open: quiet keys' gone queues pile up"
        );

        for session in &self.sessions {
            self.check_session(session);
        }
    }

    fn check_session(&self, session: &Session) {
        let name = format!("{:?}", session.key);
        let (waiting, closed) = match &session.expected {
            Expected::Queue { held, closed, .. } => (!held.is_empty() || *closed, *closed),
            Expected::Ring { unread, .. } => (!unread.is_empty(), false),
        };
        assert_eq!(session.live.is_empty(), !waiting, "{name}'s is_empty");
        assert_eq!(session.live.is_closed(), closed, "{name}'s is_closed");

        let vouched_after = session.live.vouched_after(&self.hub);
        let Some(key) = &session.key else {
            assert_eq!(vouched_after, None, "vouched_after on the shared ring");
            return;
        };
        let vouched_after = vouched_after.expect("a route's receiver vouches");
        if waiting {
            return;
        }
        // Silent: what it vouches for is published, and the key's
        // part of it was given (or read from the journal after a lag).
        for seq in vouched_after + 1..=self.last_published {
            let of = self.published[seq as usize];
            assert!(
                of.is_some(),
                "{name}'s receiver vouches after {vouched_after}, but {seq} was skipped"
            );
            if of.is_some_and(|a| is_of(&a, key)) {
                assert!(
                    seq > session.subscribed_after || seq <= session.replayed_through,
                    "{name}'s receiver (subscribed after {}) vouches after \
                     {vouched_after}, but its {seq} came before",
                    session.subscribed_after
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_hub_gives_each_receiver_what_its_docs_promise(
        initial in 0..=3u64,
        live_capacity in 1..=6usize,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut model = Model::new(initial, live_capacity);
        model.check_state();
        for op in &ops {
            model.apply(op);
        }
    }
}
