//! A model-based property test of one SPRecord account's resume point,
//! driven as `stream.rs` drives it.
//!
//! The model: one server emits events e1, e2, ... in its order (some
//! malformed, passed over; some whose first copy a webhook brought, so every
//! stream's copy is a duplicate carrying that first copy's seq). Up to three streams of
//! the account open on url variants of one server (credentials, query,
//! default port differ: one key), each taking `open_point()` as `stream.rs`
//! does; a server that keeps history then sends the events after the
//! `Last-Event-ID`, otherwise only events emitted after the open. Each
//! stream, at its own pace, receives the next event, submits it to the
//! journal (first copy with a new, increasing seq if no copy was journaled
//! before, else a duplicate) and, maybe much later (its task starved, a
//! sibling's copy handed on meanwhile), hands it on with `hand_on(at, id,
//! answer)`, `at` being the last id it handed on or opened with. Streams
//! close (handing on their answered event, or not: a panic) and reopen on a
//! new `ResumeId` (a reload or panic restarts the task); a reload calls
//! `keep_only` with the same accounts; a relay restart restores the ids
//! from `all()`.
//!
//! Checked after every step, as the module doc promises: the point never
//! moves back in the server's order and, once set, stays set; it is always
//! an id a stream handed on; every server event up to it was journaled or
//! passed over, except the documented gap: events after the point that a
//! stream opened without history skipped (a sibling may not have journaled
//! them yet); another account, and the same account on another server, are
//! untouched; `unsaved()` reports exactly the changes since the last take.
//! At the end: once all hand-ons are done and a stream has caught up, a
//! fresh event it journals first moves the point to it, and events it then
//! passes over or finds journaled by a webhook move it on too (no stream
//! state holds the point for good).
//!
//! It found two ways the point moved back. A first copy handed on late,
//! after a sibling had moved the point on by its duplicate of the same
//! event, took it back: a duplicate now raises the point's first-copy seq.
//! A sibling's first copy of an event that a stream opened without history
//! had skipped takes it back too: journal order is not the server's there,
//! and the relay cannot know the server's order from opaque ids; that
//! property and its shrunk case stay ignored (docs/RELIABILITY.md).
//!
//! Events without an `id:` line carry the id before them on the stream's
//! connection, as the parser gives them: before the connection's first
//! `id:` line, the `Last-Event-ID` it sent (none sent: "", and `pump` hands
//! such an event on not at all). A stream hands an event sharing the id it
//! handed on last (the parser's `Arc`, the one sent included) on again only
//! as `pump` does: through `stream.rs`'s own `is_a_no_op`, standing where
//! its own `opening_ids` puts it, so a change to either shows here. A
//! server that keeps history resumes after the first event carrying the
//! id (the others are sent again). A late first copy of one of them took
//! the point back (found by a review, the model then made to generate
//! them), and so did one whose duplicate a reconnected stream read before
//! its first `id:` line and, with "", never handed on (found by a second
//! review, 2026-12-07).
//!
//! Deliberately not checked: ids that cannot go back as a header (the
//! unit tests cover them), accounts removed by a reload (their point is
//! forgotten, by design), the saver's timing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proptest::prelude::*;

use super::super::stream::{is_a_no_op, opening_ids};
use super::{HandedOn, ResumeId, ResumeIds, key};

const ACCOUNT: &str = "main";
/// One server, written as different streams' configs may write it: the key
/// holds none of the credentials, query, fragment or default port.
const URL_VARIANTS: [&str; 3] = [
    "http://sp.example/sys/events",
    "http://ops:s3cret@sp.example:80/sys/events?token=t0k3n",
    "http://sp.example/sys/events?token=rotated#frag",
];
/// Points that must never change: another account on the same server, and
/// the same account on another server.
const BYSTANDERS: [(&str, &str, &str); 2] = [
    ("other", "http://sp.example/sys/events", "b7"),
    (ACCOUNT, "http://sp2.example/sys/events", "c7"),
];
const STREAMS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventKind {
    /// Journaled by the first stream that submits it.
    Normal,
    /// Passed over by every stream (malformed, too large).
    Malformed,
    /// Its first copy came by webhook: every stream's copy is a duplicate.
    WebhookFirst,
}

#[derive(Clone, Debug)]
enum Op {
    Emit(EventKind),
    /// An event without an `id:` line: it carries the id before it.
    EmitSharingId(EventKind),
    /// Another source journals something: the journal's seq moves on.
    OtherIngest,
    Receive(usize),
    Submit(usize),
    /// The stream's loop turns once: it hands on what the journal answered,
    /// receives the next event and submits it (with prompt hand-ons, hands
    /// it on too). Siblings race ahead by these while a task sits on its
    /// answer.
    Advance(usize),
    HandOn(usize),
    /// The connection ends; `hand_pending`: the answered event is still
    /// handed on (a drain), or not (a panic).
    Close {
        stream: usize,
        hand_pending: bool,
    },
    /// A new task opens the stream (after a close, a reload or a panic).
    Open {
        stream: usize,
        url: usize,
        server_keeps_history: bool,
    },
    Reload,
    RelayRestart,
    TakeUnsaved,
}

/// Which of the streams' behaviours a property lets happen.
#[derive(Clone, Copy, Debug)]
struct Behaviours {
    /// A stream's task may hand on its answered event late, after its
    /// siblings handed on theirs (else it hands on as the journal answers).
    starved_hand_ons: bool,
    /// A server may ignore `Last-Event-ID` (keeps no history): the stream
    /// then gets only what is emitted after it opened.
    servers_without_history: bool,
}

fn op(behaviours: Behaviours) -> impl Strategy<Value = Op> {
    let stream = 0..STREAMS;
    let keeps_history = if behaviours.servers_without_history {
        prop::bool::weighted(0.7).boxed()
    } else {
        Just(true).boxed()
    };
    prop_oneof![
        4 => prop_oneof![
            // Events that are no first copy for any stream are what moves
            // the point without a seq: frequent, to meet late first copies.
            2 => Just(EventKind::Normal),
            1 => Just(EventKind::Malformed),
            1 => Just(EventKind::WebhookFirst),
        ]
        .prop_map(Op::Emit),
        1 => prop_oneof![Just(EventKind::Normal), Just(EventKind::Malformed)]
            .prop_map(Op::EmitSharingId),
        1 => Just(Op::OtherIngest),
        10 => stream.clone().prop_map(Op::Advance),
        3 => stream.clone().prop_map(Op::Receive),
        3 => stream.clone().prop_map(Op::Submit),
        3 => stream.clone().prop_map(Op::HandOn),
        1 => (stream.clone(), any::<bool>())
            .prop_map(|(stream, hand_pending)| Op::Close { stream, hand_pending }),
        3 => (stream, 0..URL_VARIANTS.len(), keeps_history).prop_map(
            |(stream, url, server_keeps_history)| Op::Open {
                stream,
                url,
                server_keeps_history
            }
        ),
        1 => Just(Op::Reload),
        1 => Just(Op::RelayRestart),
        1 => Just(Op::TakeUnsaved),
    ]
}

/// One open stream, as `stream.rs`'s `pump` holds it.
struct Stream {
    resume: ResumeId,
    /// The last id it handed on, or the point it opened at; the parser's
    /// `Arc` when it came from there (`is_a_no_op` compares those).
    at: Option<Arc<str>>,
    /// The `Last-Event-ID` this connection sent: the id events before its
    /// first `id:` line carry (none: "", never handed on).
    sent: Option<Arc<str>>,
    /// The newest `id:` line handed on, and the parser's `Arc` of it: the
    /// one events after it without an `id:` line share.
    id_line: Option<(usize, Arc<str>)>,
    /// Index of the first server event this connection gets.
    from: usize,
    /// Index of the next server event it submits.
    next_to_submit: usize,
    /// Index past the last server event it received.
    received_upto: usize,
    /// An event the journal answered, not yet handed on.
    answered: Option<(usize, HandedOn)>,
}

struct Model {
    ids: Arc<ResumeIds>,
    /// Hand on each event as soon as the journal answered it.
    prompt_hand_ons: bool,
    kinds: Vec<EventKind>,
    /// Per event, whether it came without an `id:` line.
    shares_id: Vec<bool>,
    /// Event index -> the seq its first copy was journaled under.
    journaled: HashMap<usize, u64>,
    passed_over: HashSet<usize>,
    next_seq: u64,
    streams: [Option<Stream>; STREAMS],
    /// Every id given to `hand_on`.
    handed_ids: HashSet<String>,
    /// Events a stream opened without history skipped past the point.
    skipped_by_open_without_history: HashSet<usize>,
    /// The point after the last step, as an event index.
    last_point: Option<usize>,
    changed_since_take: bool,
}

/// The id of an event that has an `id:` line (an event without one
/// carries its predecessor's, see [`Model::id_of`]).
fn event_id(index: usize) -> String {
    format!("e{}", index + 1)
}

/// The first event carrying `id`: a server that keeps history resumes
/// after it (the ones sharing its id are sent again, and are duplicates).
fn event_index(id: &str) -> usize {
    id.strip_prefix('e').unwrap().parse::<usize>().unwrap() - 1
}

fn configured() -> Vec<super::Key> {
    let mut keys = vec![key(ACCOUNT, URL_VARIANTS[0])];
    keys.extend(BYSTANDERS.iter().map(|(a, u, _)| key(a, u)));
    keys
}

impl Model {
    /// A relay restarted after a run that journaled e1 (seq 1) and kept
    /// it as the point: the streams open with history from the start.
    fn new(behaviours: Behaviours) -> Model {
        let mut saved: Vec<_> = BYSTANDERS
            .iter()
            .map(|(a, u, id)| (key(a, u), (*id).to_owned()))
            .collect();
        saved.push((key(ACCOUNT, URL_VARIANTS[0]), event_id(0)));
        let ids = Arc::new(ResumeIds::restored(saved, &configured()));
        Model {
            ids,
            prompt_hand_ons: !behaviours.starved_hand_ons,
            kinds: vec![EventKind::Normal],
            shares_id: vec![false],
            journaled: HashMap::from([(0, 1)]),
            passed_over: HashSet::new(),
            next_seq: 2,
            streams: [None, None, None],
            handed_ids: HashSet::from([event_id(0)]),
            skipped_by_open_without_history: HashSet::new(),
            last_point: Some(0),
            changed_since_take: false,
        }
    }

    fn point(&self) -> Option<String> {
        ResumeId::in_ids(&self.ids, ACCOUNT, URL_VARIANTS[0]).get()
    }

    fn emit(&mut self, kind: EventKind) -> usize {
        self.emit_with(kind, false)
    }

    fn emit_with(&mut self, kind: EventKind, shares_id: bool) -> usize {
        self.kinds.push(kind);
        self.shares_id.push(shares_id);
        let index = self.kinds.len() - 1;
        if kind == EventKind::WebhookFirst {
            self.journaled.insert(index, self.next_seq);
            self.next_seq += 1;
        }
        index
    }

    fn receive(&mut self, stream: usize) {
        let emitted = self.kinds.len();
        if let Some(s) = &mut self.streams[stream]
            && s.received_upto < emitted
        {
            s.received_upto += 1;
        }
    }

    fn submit(&mut self, stream: usize) {
        let Some(s) = &mut self.streams[stream] else {
            return;
        };
        if s.answered.is_some() || s.next_to_submit >= s.received_upto {
            return;
        }
        let index = s.next_to_submit;
        s.next_to_submit += 1;
        let answer = match self.kinds[index] {
            EventKind::Malformed => {
                self.passed_over.insert(index);
                HandedOn::Other
            }
            _ => match self.journaled.get(&index) {
                Some(&seq) => HandedOn::Duplicate { seq },
                None => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.journaled.insert(index, seq);
                    HandedOn::FirstCopy { seq }
                }
            },
        };
        s.answered = Some((index, answer));
        if self.prompt_hand_ons {
            self.hand_on(stream);
        }
    }

    /// As the end of `pump`'s loop: an event carrying "" (before the first
    /// `id:` line of a connection that sent no `Last-Event-ID`) is not
    /// handed on, nor what its `is_a_no_op` skips.
    fn hand_on(&mut self, stream: usize) {
        let Some(s) = &mut self.streams[stream] else {
            return;
        };
        let Some((index, handed)) = s.answered.take() else {
            return;
        };
        let own_line = (s.from..=index).rev().find(|&i| !self.shares_id[i]);
        let id = match (own_line, &s.sent) {
            (Some(own), _) => match &s.id_line {
                Some((line, id)) if *line == own => Arc::clone(id),
                _ => {
                    let id: Arc<str> = Arc::from(event_id(own));
                    s.id_line = Some((own, Arc::clone(&id)));
                    id
                }
            },
            (None, Some(sent)) => Arc::clone(sent),
            (None, None) => return,
        };
        let resume = &s.resume;
        if is_a_no_op(s.at.as_ref(), &id, handed, |seq| {
            resume.would_raise_first_copy_seq(seq)
        }) {
            return;
        }
        s.resume.hand_on(s.at.as_deref(), &id, handed);
        self.handed_ids.insert(id.to_string());
        s.at = Some(id);
    }

    fn close(&mut self, stream: usize, hand_pending: bool) {
        if hand_pending {
            self.hand_on(stream);
        }
        self.streams[stream] = None;
    }

    fn open(&mut self, stream: usize, url: usize, server_keeps_history: bool) {
        if self.streams[stream].is_some() {
            return;
        }
        let resume = ResumeId::in_ids(&self.ids, ACCOUNT, URL_VARIANTS[url]);
        let (last_event_id, at) = opening_ids(resume.open_point());
        let emitted = self.kinds.len();
        let from = match &last_event_id {
            Some(after) if server_keeps_history => event_index(after) + 1,
            _ => {
                // Only what comes next: what was emitted after the point
                // is not asked for (the documented gap).
                let after_point = at.as_deref().map_or(0, |id| event_index(id) + 1);
                self.skipped_by_open_without_history
                    .extend(after_point..emitted);
                emitted
            }
        };
        self.streams[stream] = Some(Stream {
            resume,
            at,
            sent: last_event_id,
            id_line: None,
            from,
            next_to_submit: from,
            received_upto: from,
            answered: None,
        });
    }

    fn relay_restart(&mut self) {
        let saved = self.ids.all();
        self.ids = Arc::new(ResumeIds::restored(saved, &configured()));
        self.streams = [None, None, None];
        self.changed_since_take = false;
    }

    fn take_unsaved(&mut self) {
        let unsaved = self.ids.unsaved();
        if std::mem::take(&mut self.changed_since_take) {
            let mut expected: Vec<_> = BYSTANDERS
                .iter()
                .map(|(a, u, id)| (key(a, u), (*id).to_owned()))
                .collect();
            if let Some(point) = self.point() {
                expected.push((key(ACCOUNT, URL_VARIANTS[0]), point));
            }
            expected.sort_unstable();
            assert_eq!(unsaved, Some(expected), "a change is reported unsaved");
        } else {
            assert_eq!(unsaved, None, "no change, nothing unsaved");
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Emit(kind) => {
                self.emit(kind);
            }
            Op::EmitSharingId(kind) => {
                self.emit_with(kind, true);
            }
            Op::OtherIngest => self.next_seq += 1,
            Op::Receive(s) => self.receive(s),
            Op::Submit(s) => self.submit(s),
            Op::HandOn(s) => self.hand_on(s),
            Op::Advance(s) => {
                self.hand_on(s);
                self.receive(s);
                self.submit(s);
            }
            Op::Close {
                stream,
                hand_pending,
            } => self.close(stream, hand_pending),
            Op::Open {
                stream,
                url,
                server_keeps_history,
            } => self.open(stream, url, server_keeps_history),
            Op::Reload => self.ids.keep_only(&configured()),
            Op::RelayRestart => self.relay_restart(),
            Op::TakeUnsaved => self.take_unsaved(),
        }
        self.check();
    }

    fn check(&mut self) {
        for (account, url, id) in BYSTANDERS {
            assert_eq!(
                ResumeId::in_ids(&self.ids, account, url).get().as_deref(),
                Some(id),
                "another key's point is untouched"
            );
        }
        let point = self.point();
        // Every variant of the url names the same point.
        for url in URL_VARIANTS {
            assert_eq!(ResumeId::in_ids(&self.ids, ACCOUNT, url).get(), point);
        }
        let point_index = point.as_deref().map(event_index);
        if self.last_point.is_some() {
            assert!(
                point_index >= self.last_point,
                "the point moved back: from {:?} to {point:?}",
                self.last_point.map(event_id)
            );
        }
        if let Some(point) = &point {
            assert!(
                self.handed_ids.contains(point),
                "the point {point} is an id a stream handed on"
            );
            for index in 0..=event_index(point) {
                assert!(
                    self.journaled.contains_key(&index)
                        || self.passed_over.contains(&index)
                        || self.skipped_by_open_without_history.contains(&index),
                    "{} is before the point {point} but was neither journaled nor passed over",
                    event_id(index)
                );
            }
        }
        if point_index != self.last_point {
            self.changed_since_take = true;
        }
        self.last_point = point_index;
    }

    /// Liveness: every hand-on done, one stream caught up, the point then
    /// follows that stream's new events, whatever kind they are.
    fn check_the_point_keeps_moving(&mut self) {
        for stream in 0..STREAMS {
            self.apply(&Op::HandOn(stream));
        }
        let front = match (0..STREAMS).find(|&s| self.streams[s].is_some()) {
            Some(stream) => stream,
            None => {
                self.apply(&Op::Open {
                    stream: 0,
                    url: 0,
                    server_keeps_history: true,
                });
                0
            }
        };
        let catch_up = |model: &mut Model| {
            while model.streams[front]
                .as_ref()
                .is_some_and(|s| s.next_to_submit < model.kinds.len())
            {
                model.apply(&Op::Receive(front));
                model.apply(&Op::Submit(front));
                model.apply(&Op::HandOn(front));
            }
        };
        catch_up(self);
        for kind in [
            EventKind::Normal,
            EventKind::Malformed,
            EventKind::WebhookFirst,
            EventKind::Normal,
        ] {
            let index = self.emit(kind);
            catch_up(self);
            assert_eq!(
                self.point(),
                Some(event_id(index)),
                "the caught-up stream's new {kind:?} event moves the point"
            );
        }
    }
}

fn run(behaviours: Behaviours, ops: &[Op]) {
    let mut model = Model::new(behaviours);
    // An account's streams start together, as the relay starts them.
    for stream in 0..STREAMS {
        model.apply(&Op::Open {
            stream,
            url: stream,
            server_keeps_history: true,
        });
    }
    for op in ops {
        model.apply(op);
    }
    model.check_the_point_keeps_moving();
}

const PROMPT_WITH_HISTORY: Behaviours = Behaviours {
    starved_hand_ons: false,
    servers_without_history: false,
};
const STARVED_WITH_HISTORY: Behaviours = Behaviours {
    starved_hand_ons: true,
    servers_without_history: false,
};
const PROMPT_WITHOUT_HISTORY: Behaviours = Behaviours {
    starved_hand_ons: false,
    servers_without_history: true,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every stream hands each event on as soon as the journal answers,
    /// every server keeps history.
    #[test]
    fn the_point_follows_the_front_when_hand_ons_are_prompt(
        ops in prop::collection::vec(op(PROMPT_WITH_HISTORY), 1..60)
    ) {
        run(PROMPT_WITH_HISTORY, &ops);
    }

    /// A starved task hands its first copy on after a sibling handed on
    /// the duplicate and what followed.
    #[test]
    fn the_point_follows_the_front_when_a_task_hands_on_late(
        ops in prop::collection::vec(op(STARVED_WITH_HISTORY), 1..60)
    ) {
        run(STARVED_WITH_HISTORY, &ops);
    }

    /// A server without history gives a reopened stream only new events:
    /// the documented gap, and nothing more.
    #[test]
    #[ignore = "defect: after a stream opened without history moved the point past a sibling's events, the sibling's first copies of them move it back; and a reconnected stream's first copies of events without an id line, carrying the id it sent, swing it back to that id (resume.rs hand_on)"]
    fn the_point_follows_the_front_when_a_server_keeps_no_history(
        ops in prop::collection::vec(op(PROMPT_WITHOUT_HISTORY), 1..60)
    ) {
        run(PROMPT_WITHOUT_HISTORY, &ops);
    }
}

/// Shrunk from the starved property: stream 1 journals e2's first copy
/// and sits on it; stream 0 hands on e2's duplicate (at the point: moves
/// it) and the malformed e3 (moves it); stream 1's late first copy is
/// "ahead" (no first copy moved the point since the restart) and took it
/// back to e2. The duplicate now raises the point's first-copy seq to e2's.
#[test]
fn a_late_first_copy_after_passed_over_events_does_not_move_the_point_back() {
    use EventKind::*;
    use Op::*;
    let ops = [
        Emit(Normal),
        Emit(Malformed),
        Advance(1),
        Advance(0),
        Advance(0),
        HandOn(0),
        HandOn(1),
    ];
    run(STARVED_WITH_HISTORY, &ops);
}

/// Shrunk from the property without history: stream 1 reopens on a server
/// without history after e2 and journals e3 first (the documented gap: the
/// point passes e2); stream 2, resuming after e1, then journals e2's first
/// copy under a newer seq, and the point goes back from e3 to e2.
#[test]
#[ignore = "defect: a sibling's first copy of an event the gap skipped moves the point back (resume.rs hand_on)"]
fn a_first_copy_behind_a_stream_opened_without_history_does_not_move_the_point_back() {
    use EventKind::*;
    use Op::*;
    let ops = [
        RelayRestart,
        Emit(Normal),
        Open {
            stream: 1,
            url: 0,
            server_keeps_history: false,
        },
        Emit(Normal),
        Open {
            stream: 2,
            url: 0,
            server_keeps_history: true,
        },
        Advance(1),
        Advance(2),
    ];
    run(PROMPT_WITHOUT_HISTORY, &ops);
}

/// The first review's case, as production takes it: e3 carries e2's id
/// (the point once stream 1 hands e2 on); stream 1 journals e3's first
/// copy and sits on it; stream 0 hands on e2's duplicate (behind), then
/// e3's, which shares the very id it handed on last: the point is e2
/// already, so that duplicate only raises the point's first-copy seq
/// (without that raise in `hand_on`, or with `is_a_no_op` skipping it,
/// nothing did); stream 0 hands on the malformed e4 (moves it); stream 1's
/// late first copy of e3 looked ahead and took the point back to e2.
#[test]
fn a_late_first_copy_of_an_event_sharing_the_points_id_does_not_move_it_back() {
    use EventKind::*;
    use Op::*;
    let ops = [
        Emit(Normal),
        EmitSharingId(Normal),
        Emit(Malformed),
        Advance(1),
        Advance(1),
        Advance(0),
        Advance(0),
        Advance(0),
        Advance(0),
        HandOn(1),
    ];
    run(STARVED_WITH_HISTORY, &ops);
}

/// The second review's case: the point e2 after stream 1 handed on e2's
/// first copy; stream 1 journals e3's (no `id:` line: e2) and sits on it;
/// stream 0 reconnects with `Last-Event-ID: e2` and the server sends e3
/// again, then the malformed e4. A new parser's id was "", so stream 0's
/// duplicate of e3 was never handed on; its e4 moved the point on, and
/// stream 1's late first copy of e3 took it back to e2. The property found
/// it only in thousands of cases (with the id sent made "" again in the
/// model, as production had it): a reconnect at the right moment is rare.
#[test]
fn an_event_resent_without_an_id_after_a_reconnect_does_not_let_the_point_move_back() {
    use EventKind::*;
    use Op::*;
    let ops = [
        Emit(Normal),
        EmitSharingId(Normal),
        Advance(1),
        Advance(1),
        Close {
            stream: 0,
            hand_pending: false,
        },
        Open {
            stream: 0,
            url: 0,
            server_keeps_history: true,
        },
        Emit(Malformed),
        Advance(0),
        Advance(0),
        Advance(0),
        HandOn(1),
    ];
    run(STARVED_WITH_HISTORY, &ops);
}
