//! A model-based property test of [`InFlight`], driven as the forwarder
//! drives it.
//!
//! The model is a FIFO of the records pushed, each with what is known of it:
//! awaited (its outcome's sender still held by the test), or known (settled
//! when pushed, as a record found in Kafka or skipped is; or its report
//! came: delivered, failed, or dropped, which is what a `DeliveryFuture`
//! cancelled by a purged producer gives). Reports come in any order, for
//! any record. The forwarder's ways of polling are both modelled: its
//! `select!` polls `next()` with its task's waker until `Pending`, and
//! `take_reports_in` polls with a waker that wakes nothing (`now_or_never`)
//! and is always followed by a `select!` poll before the task sleeps.
//!
//! Guarantees checked (the module doc's, and the stall clock's field doc):
//! - the reports taken from `next()` are those of the records pushed, in
//!   push order, each once, with the outcome that came for it; `len()`
//!   matches the model after every step;
//! - `next()` never gives out a record whose outcome is not known, and polled
//!   until `Pending` it leaves no known report at the front;
//! - no lost wake-up: once `next()` said `Pending`, the waker of that poll is
//!   woken by the time the front record's outcome is known (a wake-up lost
//!   there hangs the Kafka sink for good);
//! - the stall clock (`last_report_ms`): a report taken from the front when
//!   it came stamps it; `notice_reports_behind` stamps it when a report
//!   behind the front came since last looked at, and leaves it alone when
//!   none did (a report noticed once is not a new one, nor is a record
//!   pushed settled, or one stuck record would hide a stall for good).
//!
//! Not checked: wake-ups for reports behind the front (documented as not
//! given), `done_ms` (wall clock), `topics_awaiting`.

use std::collections::VecDeque;

use futures::channel::oneshot;
use futures::{FutureExt, StreamExt};
use proptest::prelude::*;
use proptest::sample::Index;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::tests::{CountingWaker, entry};
use super::*;

#[derive(Clone, Copy, Debug)]
enum SettledWhenPushed {
    Skipped,
    AlreadyInKafka,
}

#[derive(Clone, Copy, Debug)]
enum DeliveryReport {
    Delivered,
    Failed,
    /// The sender is dropped: what a purged `DeliveryFuture` gives.
    Cancelled,
}

#[derive(Clone, Debug)]
enum Op {
    /// Handed to librdkafka: its report comes later.
    PushAwaited,
    PushSettled(SettledWhenPushed),
    /// The report of one of the records still awaited, picked at random.
    ReportComes {
        which: Index,
        report: DeliveryReport,
    },
    /// The forwarder's `select!` branch: its task's waker, until `Pending`.
    PollAsTheLoopDoes,
    /// `take_reports_in`: `now_or_never` until nothing is in.
    TakeReportsIn,
    NoticeReportsBehind,
    /// A recovery lets go of what is in flight.
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    let settled = prop_oneof![
        Just(SettledWhenPushed::Skipped),
        Just(SettledWhenPushed::AlreadyInKafka),
    ];
    let report = prop_oneof![
        3 => Just(DeliveryReport::Delivered),
        1 => Just(DeliveryReport::Failed),
        1 => Just(DeliveryReport::Cancelled),
    ];
    prop_oneof![
        8 => Just(Op::PushAwaited),
        2 => settled.prop_map(Op::PushSettled),
        8 => (any::<Index>(), report).prop_map(|(which, report)| Op::ReportComes { which, report }),
        5 => Just(Op::PollAsTheLoopDoes),
        2 => Just(Op::TakeReportsIn),
        4 => Just(Op::NoticeReportsBehind),
        1 => Just(Op::Clear),
    ]
}

/// An outcome as text: `Outcome` has neither `PartialEq` nor `Debug`.
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Delivered(at) => format!("delivered {}/{}", at.partition, at.offset),
        Outcome::AlreadyInKafka(at) => format!("already in kafka {}/{}", at.partition, at.offset),
        Outcome::Skipped => "skipped".to_string(),
        Outcome::Failed(e) => format!("failed: {e}"),
        Outcome::Dropped => "dropped".to_string(),
    }
}

/// Where a record's message went, told apart per record.
fn position_of(seq: u64) -> Position {
    Position {
        partition: i32::try_from(seq % 3).unwrap(),
        offset: i64::try_from(seq).unwrap(),
    }
}

struct Record {
    seq: u64,
    /// Held while the record's report has not come.
    sender: Option<oneshot::Sender<Outcome>>,
    /// The outcome, once known.
    known: Option<String>,
    /// Its outcome came as a delivery report (not settled when pushed).
    by_report: bool,
    /// `InFlight` has looked at the report (at the front, or by the walk):
    /// a report counts for the stall clock once.
    looked_at: bool,
}

struct Harness {
    in_flight: InFlight,
    last_report_ms: Arc<AtomicU64>,
    model: VecDeque<Record>,
    next_seq: u64,
    pushed: Vec<u64>,
    cleared: Vec<u64>,
    taken: Vec<u64>,
    /// The waker of the last poll that said `Pending`, when it was the
    /// forwarder's task's: it must be woken when the front's outcome is known.
    parked: Option<Arc<CountingWaker>>,
}

impl Harness {
    fn new() -> Harness {
        // Zero, so that any stamp shows (`boot_ms` is far above it).
        let last_report_ms = Arc::new(AtomicU64::new(0));
        Harness {
            in_flight: InFlight::new(last_report_ms.clone()),
            last_report_ms,
            model: VecDeque::new(),
            next_seq: 1,
            pushed: Vec::new(),
            cleared: Vec::new(),
            taken: Vec::new(),
            parked: None,
        }
    }

    fn clock(&self) -> u64 {
        self.last_report_ms.load(Ordering::Acquire)
    }

    fn push(&mut self, state: State, record: Record) {
        self.in_flight.push_back(entry(record.seq, state));
        self.pushed.push(record.seq);
        self.model.push_back(record);
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::PushAwaited => {
                let seq = self.take_seq();
                let (tx, rx) = oneshot::channel::<Outcome>();
                // A dropped sender is a cancelled `DeliveryFuture`, which
                // `Entry::settle` takes as `Outcome::Dropped`.
                let later = async move { rx.await.unwrap_or(Outcome::Dropped) };
                let record = Record {
                    seq,
                    sender: Some(tx),
                    known: None,
                    by_report: true,
                    looked_at: false,
                };
                self.push(State::Scripted(later.boxed()), record);
            }
            Op::PushSettled(how) => {
                let seq = self.take_seq();
                let outcome = match how {
                    SettledWhenPushed::Skipped => Outcome::Skipped,
                    SettledWhenPushed::AlreadyInKafka => Outcome::AlreadyInKafka(position_of(seq)),
                };
                let record = Record {
                    seq,
                    sender: None,
                    known: Some(describe(&outcome)),
                    by_report: false,
                    looked_at: false,
                };
                self.push(
                    State::Settled {
                        outcome,
                        done_ms: 0,
                    },
                    record,
                );
            }
            Op::ReportComes { which, report } => {
                let awaited: Vec<usize> = (0..self.model.len())
                    .filter(|&i| self.model[i].sender.is_some())
                    .collect();
                if awaited.is_empty() {
                    return;
                }
                let record = &mut self.model[*which.get(&awaited)];
                let sender = record.sender.take().unwrap();
                let outcome = match report {
                    DeliveryReport::Delivered => Outcome::Delivered(position_of(record.seq)),
                    DeliveryReport::Failed => Outcome::Failed(KafkaError::MessageProduction(
                        RDKafkaErrorCode::RequestTimedOut,
                    )),
                    DeliveryReport::Cancelled => Outcome::Dropped,
                };
                record.known = Some(describe(&outcome));
                match report {
                    DeliveryReport::Cancelled => drop(sender),
                    _ => assert!(sender.send(outcome).is_ok(), "the entry holds its receiver"),
                }
            }
            Op::PollAsTheLoopDoes => {
                let waker = Arc::new(CountingWaker::default());
                let task = futures::task::waker(waker.clone());
                let pending = self.poll_until_pending(&mut Context::from_waker(&task));
                self.parked = pending.then_some(waker);
            }
            Op::TakeReportsIn => {
                // `now_or_never`'s waker wakes nothing; the forwarder polls
                // with its own before it sleeps (the next `select!`).
                let noop = futures::task::noop_waker_ref();
                self.poll_until_pending(&mut Context::from_waker(noop));
                self.parked = None;
            }
            Op::NoticeReportsBehind => self.notice_reports_behind(),
            Op::Clear => {
                self.in_flight.clear();
                self.cleared.extend(self.model.drain(..).map(|r| r.seq));
                self.parked = None;
            }
        }
    }

    /// Polls `next()` until it is `Pending` (true) or says nothing is in
    /// flight (false), checking every report against the model.
    fn poll_until_pending(&mut self, cx: &mut Context<'_>) -> bool {
        let before_ms = crate::journal::boot_ms();
        let mut a_report_came = false;
        let pending = loop {
            match self.in_flight.poll_next_unpin(cx) {
                Poll::Ready(Some(report)) => {
                    let record = self
                        .model
                        .pop_front()
                        .unwrap_or_else(|| panic!("seq {} came out of nothing", report.seq));
                    assert_eq!(report.seq, record.seq, "reports in the order pushed");
                    let Some(known) = record.known else {
                        panic!("seq {} came out before its outcome was known", record.seq)
                    };
                    assert_eq!(describe(&report.outcome), known, "seq {}", record.seq);
                    a_report_came |= record.by_report && !record.looked_at;
                    self.taken.push(report.seq);
                }
                Poll::Ready(None) => {
                    assert!(self.model.is_empty(), "None with records in flight");
                    break false;
                }
                Poll::Pending => {
                    let front = self.model.front().expect("Pending with nothing in flight");
                    assert!(
                        front.known.is_none(),
                        "Pending with the report of seq {} in, at the front",
                        front.seq
                    );
                    break true;
                }
            }
        };
        if a_report_came {
            assert!(
                self.clock() >= before_ms,
                "a report taken from the front did not stamp the stall clock"
            );
        }
        pending
    }

    fn notice_reports_behind(&mut self) {
        let before = self.clock();
        let before_ms = crate::journal::boot_ms();
        self.in_flight.notice_reports_behind();
        let mut a_report_behind_came = false;
        for record in self.model.iter_mut().skip(1) {
            if record.by_report && record.known.is_some() && !record.looked_at {
                record.looked_at = true;
                a_report_behind_came = true;
            }
        }
        if a_report_behind_came {
            assert!(
                self.clock() >= before_ms,
                "a report behind the front was not noticed for the stall clock"
            );
        } else {
            assert_eq!(
                self.clock(),
                before,
                "the stall clock stamped with no new report behind the front"
            );
        }
    }

    /// What holds after every step.
    fn check(&self) {
        assert_eq!(self.in_flight.len(), self.model.len(), "len()");
        assert_eq!(
            self.in_flight.is_empty(),
            self.model.is_empty(),
            "is_empty()"
        );
        // The front is the record the parked poll looked at: only a poll
        // moves the front, and each poll sets `parked` anew.
        if let (Some(parked), Some(front)) = (&self.parked, self.model.front())
            && front.known.is_some()
        {
            assert!(
                parked.woken() > 0,
                "lost wake-up: seq {}'s outcome is known at the front and the task that polled Pending was not woken",
                front.seq
            );
        }
    }

    /// Every report comes (the latest first), and the loop takes them all.
    fn drain(&mut self) {
        for i in (0..self.model.len()).rev() {
            let record = &mut self.model[i];
            if let Some(sender) = record.sender.take() {
                let outcome = Outcome::Delivered(position_of(record.seq));
                record.known = Some(describe(&outcome));
                assert!(sender.send(outcome).is_ok(), "the entry holds its receiver");
                self.check();
            }
        }
        self.apply(&Op::PollAsTheLoopDoes);
        self.check();
        assert!(self.parked.is_none(), "every report in, and still Pending");
        let mut not_cleared = self.pushed.clone();
        not_cleared.retain(|seq| !self.cleared.contains(seq));
        assert_eq!(
            self.taken, not_cleared,
            "each record taken once, in push order"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn in_flight_keeps_push_order_and_loses_no_wake_up(ops in prop::collection::vec(op(), 1..80)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.apply(op);
            harness.check();
        }
        harness.drain();
    }
}
