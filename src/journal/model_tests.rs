//! A model-based property test of the journal: proptest draws a sequence of
//! operations (appends of small batches whose ids come from a pool of six,
//! some copies held by their source before the append; retention passes
//! with a small `max_size` and a choice of active sinks; cursor writes,
//! durable or not, with or without state; holding the dedup expiry; reads of
//! every kind; `reopen()` and a close followed by an open of the file), and
//! applies each to a real [`Journal`] in a temporary directory and to a plain
//! in-memory model, comparing the two after every operation.
//!
//! Guarantees checked (from the module docs of `journal`, `append`,
//! `dedup`, `retention`, `read` and `cursors`):
//! - every appended event gets a seq above every seq handed out before it,
//!   also after retention emptied the journal and across a reopen;
//! - a copy whose id was journaled within the dedup window before its
//!   receipt, or earlier in its batch, is a duplicate answered with the seq
//!   the id has; otherwise it is journaled; dedup entries outlive their
//!   event when `max_size` drops it, and expire a grace after the window
//!   (not while the expiry is held);
//! - reads hold exactly the events held, in seq order, bounded by count and
//!   by bytes of JSON (at least one read); a filtered page ends where the
//!   unfiltered one does; `count_after`, `first_seq`, `first_seq_after`,
//!   `last_seq` and `bytes` agree with the events held;
//! - retention expires only old events every active sink has passed,
//!   `max_size` removes oldest first, and its report counts each removal as
//!   the docs say; what it removed never comes back;
//! - a cursor and its state persist together; a non-durable write rides on
//!   the next durable commit, so after a reopen a cursor is one of the
//!   values it held since the last durable commit;
//! - after a reopen every figure, read and dedup decision is as before.
//!
//! Deliberately not checked: the exact seq handed out (only that it is above
//! every earlier one), the JSON's text (only that reads return the event the
//! append returned), the journal's own clock and the system clock (every
//! operation passes its time, and an append a system clock [`WALL_BEHIND_MS`]
//! behind it, so how long a copy was held is exact: read on the machine's
//! clock, a stall of the machine between making a copy and appending it
//! could tip a judgement, a cause of the test's one CI failure),
//! crash durability and damaged files (other tests inject those).
//!
//! Times move in steps of [`UNIT_MS`], and every bound of the journal lies
//! half a unit off that grid: no judgement falls on its edge, so which side
//! of it a bound's comparison takes is left to the hand-written tests
//! (`dedup::tests::the_window_is_half_open_and_the_latest_entry_wins`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;

use super::record::encode_record_head;
use super::retention::EXPIRY_GRACE;
use super::tests::event;
use super::{
    ActiveSink, AppendOutcome, Journal, JournalOptions, JournaledEvent, PageEntry, RetentionReport,
};
use crate::event::{HeaderRef, IncomingEvent};

/// The grid every operation's time is on.
const UNIT_MS: u64 = 10_000;
/// 10.5 units: off the grid by half a unit.
const DEDUP_WINDOW_MS: u64 = 105_000;
/// 20.5 units.
const RETENTION_MS: u64 = 205_000;
/// The window and its grace: 16.5 units.
const DEDUP_EXPIRY_MS: u64 = DEDUP_WINDOW_MS + EXPIRY_GRACE.as_millis() as u64;
/// The first operation's time: well behind the wall clock, so no stored time
/// looks ahead of the journal's clock (which would age it from the open).
const START_MS: u64 = 1_000_000_000_000;
/// How far the system clock the appends are told of reads behind the
/// journal's (1985 to its 2001): not zero, so a receipt read on the wrong
/// clock, or not translated from one to the other, is judged years off, and
/// every copy of an id whose dedup entry is still held is then taken for a
/// duplicate.
const WALL_BEHIND_MS: u64 = 500_000_000_000;
/// How many distinct event ids the copies are drawn from.
const POOL: usize = 6;
const SINKS: [&str; 2] = ["kafka", "ws"];

/// One copy of an event in a batch: which id, and how long its source held
/// it before this append (its receipt is that long before the append).
#[derive(Clone, Debug)]
struct ArrivingCopy {
    identity: usize,
    held_units: u64,
}

/// What a cursor write does with the state beside it.
#[derive(Clone, Debug)]
enum StateWrite {
    Remove,
    Keep,
    Replace(u8),
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        step_units: u64,
        copies: Vec<ArrivingCopy>,
    },
    /// A pass with each sink active (holding events in memory up to the
    /// index's seq) or not.
    Retention {
        step_units: u64,
        sinks: [Option<Index>; 2],
    },
    SetCursor {
        sink: usize,
        seq: Index,
        durable: bool,
        state: StateWrite,
    },
    RemoveCursor {
        sink: usize,
    },
    HoldDedupExpiry(bool),
    Reopen,
    CloseAndOpen,
    /// `read_after` when `max_bytes` is `None`, `read_page` otherwise.
    ReadPage {
        after: Index,
        limit: usize,
        max_bytes: Option<usize>,
    },
    ReadMatching {
        after: Index,
        limit: usize,
        max_bytes: usize,
        accepted: u8,
    },
    CountAfter {
        after: Index,
        up_to: Index,
        max_records: usize,
        accepted: u8,
    },
    FirstSeqAfter {
        after: Index,
    },
}

fn step_units() -> impl Strategy<Value = u64> {
    // Mostly within the window, sometimes past it, its grace or retention.
    prop_oneof![4 => 0..=3u64, 1 => 4..=20u64]
}

fn copy() -> impl Strategy<Value = ArrivingCopy> {
    // Held long enough, a copy's receipt is before an entry's expiry (the
    // grace is 6 units) or before the entry itself.
    (0..POOL, prop_oneof![5 => Just(0u64), 1 => 1..=20u64]).prop_map(|(identity, held_units)| {
        ArrivingCopy {
            identity,
            held_units,
        }
    })
}

fn max_bytes() -> impl Strategy<Value = usize> {
    prop_oneof![Just(usize::MAX), 0..2_000usize]
}

fn op() -> impl Strategy<Value = Op> {
    let state = prop_oneof![
        Just(StateWrite::Remove),
        Just(StateWrite::Keep),
        any::<u8>().prop_map(StateWrite::Replace),
    ];
    prop_oneof![
        6 => (step_units(), prop::collection::vec(copy(), 1..=5))
            .prop_map(|(step_units, copies)| Op::Append { step_units, copies }),
        3 => (step_units(), [any::<Option<Index>>(), any::<Option<Index>>()])
            .prop_map(|(step_units, sinks)| Op::Retention { step_units, sinks }),
        3 => (0..SINKS.len(), any::<Index>(), any::<bool>(), state).prop_map(
            |(sink, seq, durable, state)| Op::SetCursor { sink, seq, durable, state }
        ),
        1 => (0..SINKS.len()).prop_map(|sink| Op::RemoveCursor { sink }),
        1 => any::<bool>().prop_map(Op::HoldDedupExpiry),
        1 => Just(Op::Reopen),
        1 => Just(Op::CloseAndOpen),
        2 => (any::<Index>(), 0..8usize, prop::option::of(0..2_000usize))
            .prop_map(|(after, limit, max_bytes)| Op::ReadPage { after, limit, max_bytes }),
        2 => (any::<Index>(), 0..8usize, max_bytes(), any::<u8>()).prop_map(
            |(after, limit, max_bytes, accepted)| Op::ReadMatching { after, limit, max_bytes, accepted }
        ),
        1 => (any::<Index>(), any::<Index>(), 0..8usize, any::<u8>()).prop_map(
            |(after, up_to, max_records, accepted)| Op::CountAfter { after, up_to, max_records, accepted }
        ),
        1 => any::<Index>().prop_map(|after| Op::FirstSeqAfter { after }),
    ]
}

fn identity_name(identity: usize) -> String {
    format!("c{identity}")
}

/// The pool index of an event's subject (`c3`: 3).
fn identity_of(subject: Option<&str>) -> Option<usize> {
    subject?.strip_prefix('c')?.parse().ok()
}

/// Whether a filter with the pool bits `accepted` takes an event.
fn takes(accepted: u8, subject: Option<&str>) -> bool {
    identity_of(subject).is_some_and(|i| accepted & (1 << i) != 0)
}

/// A copy received `held_units` before `wall_now_ms` on the system clock
/// (where a copy's receipt is read).
fn received(copy: &ArrivingCopy, wall_now_ms: u64) -> IncomingEvent {
    let mut incoming = event(&identity_name(copy.identity));
    let receipt_ms = wall_now_ms - copy.held_units * UNIT_MS;
    incoming.received_at = time::OffsetDateTime::UNIX_EPOCH
        + time::Duration::milliseconds(i64::try_from(receipt_ms).unwrap());
    incoming
}

/// The bytes an event's record takes, the figure `max_size` bounds.
fn record_len(event: &JournaledEvent) -> u64 {
    let mut head = Vec::new();
    encode_record_head(
        &mut head,
        event.journaled_at_ms,
        event.received_at_ms,
        &event.header,
    );
    (head.len() + event.json.len()) as u64
}

/// A sink's cursor and the state beside it.
#[derive(Clone, Debug, Default, PartialEq)]
struct CursorSlot {
    cursor: Option<u64>,
    state: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default)]
struct CursorModel {
    now: CursorSlot,
    /// What a reopen may find: the slot as of the last durable commit, then
    /// each non-durable write since.
    after_a_reopen: Vec<CursorSlot>,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    seq: u64,
    at_ms: u64,
}

/// What a page read holds, as the model has it.
struct ModelPage<'a> {
    events: Vec<&'a JournaledEvent>,
    full: bool,
    json_read: usize,
}

#[derive(Default)]
struct Model {
    now_ms: u64,
    max_size: u64,
    /// The events held, with the bytes of their records.
    events: BTreeMap<u64, (JournaledEvent, u64)>,
    last_seq: u64,
    bytes: u64,
    /// Per pool id, its latest journaling, until it expires.
    dedup: HashMap<usize, Seen>,
    expiry_held: bool,
    cursors: [CursorModel; 2],
    /// Per sink, the seqs `max_size` dropped while it held them.
    held_drops: [BTreeSet<u64>; 2],
    unsaid_undelivered: u64,
}

impl Model {
    /// The seq `index` picks, from 0 to one past the last handed out.
    fn seq_at(&self, index: &Index) -> u64 {
        index.index(self.last_seq as usize + 2) as u64
    }

    /// A durable commit of any kind carries every cursor write before it.
    fn durable_commit(&mut self) {
        for cursor in &mut self.cursors {
            cursor.after_a_reopen = vec![cursor.now.clone()];
        }
    }

    /// The dedup judgement of a copy received at `receipt_ms`, unless an
    /// earlier copy of its batch decided it.
    fn journaled_within_window(&self, identity: usize, receipt_ms: u64) -> Option<u64> {
        self.dedup
            .get(&identity)
            .filter(|seen| receipt_ms.saturating_sub(seen.at_ms) < DEDUP_WINDOW_MS)
            .map(|seen| seen.seq)
    }

    fn cursor_or_zero(&self, sink: usize) -> u64 {
        self.cursors[sink].now.cursor.unwrap_or(0)
    }

    /// A retention pass at `now_ms` with `active` sinks (index, held up to).
    fn retention(&mut self, now_ms: u64, active: &[(usize, u64)]) -> RetentionReport {
        let mut report = RetentionReport::default();
        let delivered_up_to = if active.is_empty() {
            u64::MAX
        } else {
            active
                .iter()
                .map(|&(sink, _)| self.cursor_or_zero(sink))
                .min()
                .unwrap_or(0)
                .min(self.last_seq)
        };
        let sinks: Vec<(usize, u64, u64)> = active
            .iter()
            .map(|&(sink, held_up_to)| {
                let cursor = self.cursor_or_zero(sink);
                (sink, cursor, held_up_to.max(cursor))
            })
            .collect();
        // Drops a sink has since delivered are forgotten.
        for &(sink, cursor, _) in &sinks {
            self.held_drops[sink].retain(|&seq| seq > cursor);
        }
        while let Some((&seq, (event, len))) = self.events.first_key_value() {
            let old = now_ms.saturating_sub(event.journaled_at_ms) >= RETENTION_MS;
            let expired = old && seq <= delivered_up_to;
            let over_size = self.bytes > self.max_size;
            if !expired && !over_size {
                break;
            }
            let held_by_all = sinks
                .iter()
                .filter(|(_, cursor, _)| *cursor < seq)
                .all(|(_, _, held)| seq <= *held);
            if expired {
                report.expired += 1;
            } else if seq <= delivered_up_to {
                report.dropped_delivered += 1;
            } else if held_by_all {
                report.dropped_held += 1;
                for &(sink, cursor, _) in &sinks {
                    if cursor < seq {
                        self.held_drops[sink].insert(seq);
                    }
                }
            } else {
                report.dropped_undelivered += 1;
            }
            self.bytes -= len;
            self.events.remove(&seq);
        }
        if !self.expiry_held {
            self.dedup
                .retain(|_, seen| now_ms.saturating_sub(seen.at_ms) < DEDUP_EXPIRY_MS);
        }
        report.held_in_memory = sinks
            .iter()
            .map(|&(sink, cursor, _)| self.held_drops[sink].range(cursor + 1..).count() as u64)
            .sum();
        self.unsaid_undelivered += report.dropped_undelivered;
        self.durable_commit();
        report
    }

    /// A page after `after`: up to `limit` events, stopping once those read
    /// hold `max_bytes` of JSON.
    fn page(&self, after: u64, limit: usize, max_bytes: usize) -> ModelPage<'_> {
        let mut page = ModelPage {
            events: Vec::new(),
            full: false,
            json_read: 0,
        };
        let at_a_bound =
            |page: &ModelPage<'_>| page.events.len() >= limit || page.json_read >= max_bytes;
        for (event, _) in self.events.range(after.saturating_add(1)..).map(|(_, e)| e) {
            if at_a_bound(&page) {
                break;
            }
            page.json_read = page.json_read.saturating_add(event.json.len());
            page.events.push(event);
        }
        page.full = at_a_bound(&page);
        page
    }

    /// `count_after`: the count and the seq read through.
    fn count_after(&self, after: u64, up_to: u64, max_records: usize, accepted: u8) -> (u64, u64) {
        if after >= up_to {
            return (0, up_to);
        }
        let (mut count, mut read, mut through) = (0, 0, after);
        for (&seq, (event, _)) in self.events.range(after + 1..=up_to) {
            if read >= max_records {
                return (count, through);
            }
            if takes(accepted, event.header.subject.as_deref()) {
                count += 1;
            }
            read += 1;
            through = seq;
        }
        (count, up_to)
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    options: JournalOptions,
    journal: Option<Journal>,
    model: Model,
}

impl Harness {
    fn new(max_size: u64) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let options = JournalOptions {
            dir: dir.path().to_path_buf(),
            dedup_window: Duration::from_millis(DEDUP_WINDOW_MS),
            retention: Duration::from_millis(RETENTION_MS),
            max_size,
        };
        let journal = Journal::open(options.clone()).unwrap();
        let mut model = Model {
            now_ms: START_MS,
            max_size,
            ..Model::default()
        };
        // No cursor yet, as of the file's creation.
        model.durable_commit();
        Harness {
            _dir: dir,
            options,
            journal: Some(journal),
            model,
        }
    }

    fn journal(&self) -> &Journal {
        self.journal.as_ref().unwrap()
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append { step_units, copies } => self.append(*step_units, copies),
            Op::Retention { step_units, sinks } => self.retention(*step_units, sinks),
            Op::SetCursor {
                sink,
                seq,
                durable,
                state,
            } => self.set_cursor(*sink, seq, *durable, state),
            Op::RemoveCursor { sink } => {
                self.journal().remove_cursor(SINKS[*sink]).unwrap();
                self.model.cursors[*sink].now = CursorSlot::default();
                self.model.durable_commit();
            }
            Op::HoldDedupExpiry(held) => {
                self.journal().hold_dedup_expiry(*held);
                self.model.expiry_held = *held;
            }
            Op::Reopen => {
                self.journal().reopen().unwrap();
                self.cursors_after_a_reopen();
            }
            Op::CloseAndOpen => {
                let journal = self.journal.take().unwrap();
                assert!(journal.close(Duration::from_secs(5)), "closed");
                drop(journal);
                self.journal = Some(Journal::open(self.options.clone()).unwrap());
                // The hold is the running relay's, not the file's.
                self.model.expiry_held = false;
                self.cursors_after_a_reopen();
            }
            Op::ReadPage {
                after,
                limit,
                max_bytes,
            } => {
                let after = self.model.seq_at(after);
                let read = match max_bytes {
                    None => self.journal().read_after(after, *limit),
                    Some(max_bytes) => self.journal().read_page(after, *limit, *max_bytes),
                };
                let expected = self
                    .model
                    .page(after, *limit, max_bytes.unwrap_or(usize::MAX));
                let expected: Vec<&JournaledEvent> = expected.events;
                assert_eq!(
                    read.unwrap().iter().collect::<Vec<_>>(),
                    expected,
                    "a page after {after}, limit {limit}, max_bytes {max_bytes:?}"
                );
            }
            Op::ReadMatching {
                after,
                limit,
                max_bytes,
                accepted,
            } => self.read_matching(after, *limit, *max_bytes, *accepted),
            Op::CountAfter {
                after,
                up_to,
                max_records,
                accepted,
            } => {
                let (after, up_to) = (self.model.seq_at(after), self.model.seq_at(up_to));
                let counted = self
                    .journal()
                    .count_after(after, up_to, *max_records, |h: &HeaderRef<'_>| {
                        takes(*accepted, h.subject)
                    })
                    .unwrap();
                assert_eq!(
                    counted,
                    self.model
                        .count_after(after, up_to, *max_records, *accepted),
                    "count after {after} up to {up_to}, at most {max_records}"
                );
            }
            Op::FirstSeqAfter { after } => {
                let after = self.model.seq_at(after);
                let expected = self
                    .model
                    .events
                    .range(after.saturating_add(1)..)
                    .next()
                    .map(|(&seq, _)| seq);
                assert_eq!(
                    self.journal().first_seq_after(after).unwrap(),
                    expected,
                    "the first seq after {after}"
                );
            }
        }
    }

    fn append(&mut self, step_units: u64, copies: &[ArrivingCopy]) {
        self.model.now_ms += step_units * UNIT_MS;
        let now_ms = self.model.now_ms;
        let wall_now_ms = now_ms - WALL_BEHIND_MS;
        let incoming: Vec<IncomingEvent> =
            copies.iter().map(|c| received(c, wall_now_ms)).collect();
        let outcomes = self
            .journal()
            .append_batch_at_wall(&incoming, now_ms, wall_now_ms)
            .unwrap();
        assert_eq!(outcomes.len(), copies.len(), "an outcome per copy");
        let model = &mut self.model;
        // Ids journaled by this batch, for the copies after them in it.
        let mut fresh: HashMap<usize, u64> = HashMap::new();
        for ((copy, incoming), outcome) in copies.iter().zip(&incoming).zip(outcomes) {
            let receipt_ms = now_ms - copy.held_units * UNIT_MS;
            let earlier = fresh
                .get(&copy.identity)
                .copied()
                .or_else(|| model.journaled_within_window(copy.identity, receipt_ms));
            match (earlier, outcome) {
                (Some(expected), AppendOutcome::Duplicate { id, seq }) => {
                    assert_eq!(id, incoming.id(), "a duplicate names its id");
                    assert_eq!(
                        seq, expected,
                        "c{} received at {receipt_ms} is a duplicate of seq {expected}",
                        copy.identity
                    );
                }
                (None, AppendOutcome::Appended(event)) => {
                    assert!(
                        event.seq > model.last_seq,
                        "seq {} handed out after seq {}",
                        event.seq,
                        model.last_seq
                    );
                    assert_eq!(event.header.seq, event.seq);
                    assert_eq!(event.journaled_at_ms, now_ms);
                    assert_eq!(
                        event.received_at_ms,
                        (incoming.received_at.unix_timestamp_nanos() / 1_000_000) as u64
                    );
                    assert_eq!(
                        identity_of(event.header.subject.as_deref()),
                        Some(copy.identity)
                    );
                    model.last_seq = event.seq;
                    fresh.insert(copy.identity, event.seq);
                    let len = record_len(&event);
                    model.bytes += len;
                    model.events.insert(event.seq, (event, len));
                }
                (expected, outcome) => panic!(
                    "c{} received at {receipt_ms} (append at {now_ms}): expected {}, got {outcome:?}",
                    copy.identity,
                    match expected {
                        Some(seq) => format!("a duplicate of seq {seq}"),
                        None => "a new event".to_owned(),
                    }
                ),
            }
        }
        for (identity, seq) in fresh {
            model.dedup.insert(identity, Seen { seq, at_ms: now_ms });
        }
        model.durable_commit();
    }

    fn retention(&mut self, step_units: u64, sinks: &[Option<Index>; 2]) {
        self.model.now_ms += step_units * UNIT_MS;
        let now_ms = self.model.now_ms;
        let active: Vec<(usize, u64)> = sinks
            .iter()
            .enumerate()
            .filter_map(|(sink, held)| Some((sink, self.model.seq_at(held.as_ref()?))))
            .collect();
        let active_sinks: Vec<ActiveSink<'_>> = active
            .iter()
            .map(|&(sink, held_up_to)| ActiveSink {
                name: SINKS[sink],
                held_up_to: Arc::new(AtomicU64::new(held_up_to)),
            })
            .collect();
        let report = self
            .journal()
            .enforce_retention_at(&active_sinks, now_ms)
            .unwrap();
        let expected = self.model.retention(now_ms, &active);
        assert_eq!(
            report, expected,
            "a pass at {now_ms} with sinks (index, held up to) {active:?}"
        );
    }

    fn set_cursor(&mut self, sink: usize, seq: &Index, durable: bool, state: &StateWrite) {
        let seq = self.model.seq_at(seq);
        let name = SINKS[sink];
        let journal = self.journal.as_ref().unwrap();
        let slot = &mut self.model.cursors[sink];
        match state {
            StateWrite::Remove => {
                journal.set_cursor(name, seq, durable).unwrap();
                slot.now.state = None;
            }
            StateWrite::Keep => journal
                .set_cursor_keeping_state(name, seq, durable)
                .unwrap(),
            StateWrite::Replace(byte) => {
                let state = vec![*byte; 3];
                journal
                    .set_cursor_with_state(name, seq, &state, durable)
                    .unwrap();
                slot.now.state = Some(state);
            }
        }
        slot.now.cursor = Some(seq);
        if durable {
            self.model.durable_commit();
        } else {
            let now = slot.now.clone();
            slot.after_a_reopen.push(now);
        }
    }

    /// Each cursor as a reopen found it must be one it held since the last
    /// durable commit; the model goes on from it.
    fn cursors_after_a_reopen(&mut self) {
        for (sink, name) in SINKS.iter().enumerate() {
            let found = CursorSlot {
                cursor: self.journal().cursor(name).unwrap(),
                state: self.journal().cursor_state(name).unwrap(),
            };
            let cursor = &mut self.model.cursors[sink];
            assert!(
                cursor.after_a_reopen.contains(&found),
                "the {name} cursor after a reopen is {found:?}, not one of {:?}",
                cursor.after_a_reopen
            );
            cursor.now = found.clone();
            cursor.after_a_reopen = vec![found];
        }
    }

    fn read_matching(&self, after: &Index, limit: usize, max_bytes: usize, accepted: u8) {
        let after = self.model.seq_at(after);
        let page = self
            .journal()
            .read_matching_page_unless_reopening(after, limit, max_bytes, |h| {
                takes(accepted, h.subject)
            })
            .unwrap();
        let expected = self.model.page(after, limit, max_bytes);
        let what = format!("a page after {after}, limit {limit}, max_bytes {max_bytes}");
        assert_eq!(
            page.entries.iter().map(PageEntry::seq).collect::<Vec<_>>(),
            expected.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            "{what}: where a filtered page ends"
        );
        assert_eq!(page.full, expected.full, "{what}: full");
        assert_eq!(page.json_read, expected.json_read, "{what}: JSON read");
        for (entry, event) in page.entries.iter().zip(&expected.events) {
            match entry {
                PageEntry::Matching(got) => {
                    assert!(takes(accepted, event.header.subject.as_deref()));
                    assert_eq!(&**got, *event, "{what}");
                }
                PageEntry::Passed { .. } => {
                    assert!(!takes(accepted, event.header.subject.as_deref()), "{what}");
                }
            }
        }
    }

    /// The figures and the whole log, after every operation.
    fn check(&self) {
        let journal = self.journal();
        let model = &self.model;
        assert_eq!(journal.last_seq(), model.last_seq, "last_seq");
        let first = model
            .events
            .keys()
            .next()
            .copied()
            .unwrap_or(model.last_seq + 1);
        assert_eq!(journal.first_seq(), first, "first_seq");
        assert_eq!(journal.bytes(), model.bytes, "bytes");
        assert_eq!(journal.dedup_entries(), model.dedup.len(), "dedup entries");
        let held: Vec<&JournaledEvent> = model.events.values().map(|(e, _)| e).collect();
        assert_eq!(
            journal
                .read_after(0, usize::MAX)
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            held,
            "the events held"
        );
        for (sink, name) in SINKS.iter().enumerate() {
            let slot = &model.cursors[sink].now;
            assert_eq!(journal.cursor(name).unwrap(), slot.cursor, "{name} cursor");
            assert_eq!(
                journal.cursor_state(name).unwrap(),
                slot.state,
                "{name} cursor state"
            );
        }
        assert_eq!(
            journal.unsaid_undelivered().unwrap(),
            model.unsaid_undelivered,
            "losses no line named"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The journal and the model agree after every operation of a sequence.
    #[test]
    fn the_journal_behaves_as_its_model(
        max_size in 300..4_000u64,
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let mut harness = Harness::new(max_size);
        for op in &ops {
            harness.apply(op);
            harness.check();
        }
    }
}
