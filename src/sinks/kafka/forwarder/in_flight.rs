//! The records handed to librdkafka and not yet taken back, in journal
//! order, with their delivery reports.
//!
//! Guarantees: reports come out in the order the records went in, whatever
//! order librdkafka reports them in; only the oldest record's report wakes
//! the forwarder (a report behind it is taken once it is at the front, or
//! noticed by [`InFlight::notice_reports_behind`] for the stall clock).
//!
//! Why not `FuturesOrdered` of boxed futures, as before: each record cost a
//! box, a task node and a wake of the forwarder when its report came, which
//! a profile of the forward phase put among the sink's own costs beyond a
//! plain producer's (docs/kafka.md, "Where the forward phase's time goes").

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::stream::Stream;
use rdkafka::producer::DeliveryFuture;

use super::{Outcome, Report};
use crate::sinks::kafka::resume::Position;

/// A record handed over (or passed over), and what is known of its delivery.
pub(super) struct Entry {
    pub(super) seq: u64,
    pub(super) topic: Arc<str>,
    pub(super) received_at_ms: u64,
    pub(super) state: State,
}

pub(super) enum State {
    /// Handed to librdkafka; its report has not come, or not been looked at.
    Awaiting(DeliveryFuture),
    /// Its outcome is known (found in Kafka, skipped, or its report came),
    /// since `done_ms` (wall clock, for the event's latency).
    Settled { outcome: Outcome, done_ms: u64 },
    /// An outcome a test scripts (when it comes, and what it is).
    #[cfg(test)]
    Scripted(futures::future::BoxFuture<'static, Outcome>),
}

impl Entry {
    /// Looks whether the record's report has come; true when it came just
    /// now (the entry is `Settled` from here on).
    fn settle(&mut self, cx: &mut Context<'_>) -> bool {
        let outcome = match &mut self.state {
            State::Settled { .. } => return false,
            State::Awaiting(delivery) => match delivery.poll_unpin(cx) {
                Poll::Pending => return false,
                Poll::Ready(Ok(Ok(d))) => Outcome::Delivered(Position {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Poll::Ready(Ok(Err((e, _)))) => Outcome::Failed(e),
                Poll::Ready(Err(_)) => Outcome::Dropped,
            },
            #[cfg(test)]
            State::Scripted(outcome) => match outcome.poll_unpin(cx) {
                Poll::Pending => return false,
                Poll::Ready(outcome) => outcome,
            },
        };
        // Stamped when the report is looked at, not when it came: for a
        // record behind slower ones, when they are taken or the tick's walk
        // looks (docs/kafka.md, the latency metric).
        let done_ms = crate::journal::now_ms();
        self.state = State::Settled { outcome, done_ms };
        true
    }

    fn into_report(self) -> Report {
        let (outcome, done_ms) = match self.state {
            State::Settled { outcome, done_ms } => (outcome, done_ms),
            // Not taken so: `poll_next` pops the front only once it is
            // settled. Were it so, as a report that will never come: the
            // sink recovers from its cursor, it neither waits nor skips.
            State::Awaiting(_) => (Outcome::Dropped, crate::journal::now_ms()),
            #[cfg(test)]
            State::Scripted(_) => (Outcome::Dropped, crate::journal::now_ms()),
        };
        Report {
            seq: self.seq,
            topic: self.topic,
            received_at_ms: self.received_at_ms,
            done_ms,
            outcome,
        }
    }
}

pub(super) struct InFlight {
    entries: VecDeque<Entry>,
    /// When any record's report last came (ms of `CLOCK_BOOTTIME`); shared
    /// with the forwarder's stall check.
    last_report_ms: Arc<AtomicU64>,
}

impl InFlight {
    pub(super) fn new(last_report_ms: Arc<AtomicU64>) -> InFlight {
        InFlight {
            entries: VecDeque::new(),
            last_report_ms,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn push_back(&mut self, entry: Entry) {
        self.entries.push_back(entry);
    }

    /// Lets go of every record (their reports are not waited for).
    pub(super) fn clear(&mut self) {
        self.entries = VecDeque::new();
    }

    /// The topics of every record handed over and not taken back, settled
    /// or not: what may be in Kafka past the cursor.
    pub(super) fn topics(&self) -> std::collections::HashSet<Arc<str>> {
        self.entries
            .iter()
            .map(|entry| entry.topic.clone())
            .collect()
    }

    /// The topics of the records whose report has not been seen, each once,
    /// in journal order: what a stall waits on, and all the stall check is
    /// to judge. A report that came behind the front is seen only by a walk
    /// ([`InFlight::notice_reports_behind`]), which runs before a stall is
    /// called (the forwarder's `stall_after_a_last_look`). Every topic used since the last failure was judged instead,
    /// and one idle account's topic with a partition offline blamed every
    /// stall on the cluster, keeping a stuck producer for good (isolation
    /// review, 2026-12-06, ninth round).
    pub(super) fn topics_awaiting(&self) -> Vec<Arc<str>> {
        let mut seen = std::collections::HashSet::new();
        self.entries
            .iter()
            .filter(|entry| !matches!(entry.state, State::Settled { .. }))
            .filter(|entry| seen.insert(entry.topic.clone()))
            .map(|entry| entry.topic.clone())
            .collect()
    }

    /// Takes the reports that came for records behind the oldest one, which
    /// nothing polls until it is at the front, and stamps `last_report_ms`
    /// when there was one: the stall check asks whether *any* report came,
    /// and one stuck record must not hide the reports of those behind it.
    /// Walks every record: call it only once no report has been taken for a while.
    pub(super) fn notice_reports_behind(&mut self) {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut any = false;
        // The oldest is polled by the forwarder with its own waker, which a
        // poll here would replace with one that wakes nothing.
        for entry in self.entries.iter_mut().skip(1) {
            any |= entry.settle(&mut cx);
        }
        if any {
            self.note_a_report();
        }
    }

    fn note_a_report(&self) {
        self.last_report_ms
            .fetch_max(crate::journal::boot_ms(), Ordering::AcqRel);
    }
}

impl Stream for InFlight {
    type Item = Report;

    /// The oldest record's report once it is in; `None` when nothing is in flight.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Report>> {
        let this = self.get_mut();
        let Some(front) = this.entries.front_mut() else {
            return Poll::Ready(None);
        };
        let came = front.settle(cx);
        let settled = matches!(front.state, State::Settled { .. });
        if came {
            this.note_a_report();
        }
        if !settled {
            return Poll::Pending; // the front's delivery holds `cx`'s waker
        }
        Poll::Ready(this.entries.pop_front().map(Entry::into_report))
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures::StreamExt;
    use futures::channel::oneshot;
    use futures::task::ArcWake;

    use super::*;

    /// An entry whose outcome comes when its sender is given it.
    fn scripted(in_flight: &mut InFlight, seq: u64) -> oneshot::Sender<Outcome> {
        let (tx, rx) = oneshot::channel::<Outcome>();
        let later = async move { rx.await.expect("the test sends an outcome") };
        in_flight.push_back(entry(seq, State::Scripted(later.boxed())));
        tx
    }

    pub(super) fn entry(seq: u64, state: State) -> Entry {
        Entry {
            seq,
            topic: Arc::from("t"),
            received_at_ms: 0,
            state,
        }
    }

    fn next_now(in_flight: &mut InFlight) -> Option<Option<u64>> {
        in_flight
            .next()
            .now_or_never()
            .map(|report| report.map(|r| r.seq))
    }

    #[test]
    fn reports_come_out_in_the_order_the_records_went_in() {
        let mut in_flight = InFlight::new(Arc::new(AtomicU64::new(0)));
        let first = scripted(&mut in_flight, 1);
        let second = scripted(&mut in_flight, 2);
        let skipped = State::Settled {
            outcome: Outcome::Skipped,
            done_ms: 0,
        };
        in_flight.push_back(entry(3, skipped));
        let _ = second.send(Outcome::Skipped);
        assert_eq!(next_now(&mut in_flight), None, "the first is not in");
        let _ = first.send(Outcome::Skipped);
        assert_eq!(next_now(&mut in_flight), Some(Some(1)));
        assert_eq!(next_now(&mut in_flight), Some(Some(2)));
        assert_eq!(next_now(&mut in_flight), Some(Some(3)), "settled as pushed");
        assert_eq!(next_now(&mut in_flight), Some(None), "nothing in flight");
        assert!(in_flight.is_empty());
    }

    /// The stall check asks whether any report came: one behind a stuck
    /// record is noticed by the walk, though nothing polls it.
    #[test]
    fn a_report_behind_a_stuck_record_is_noticed_by_the_walk_only() {
        let last_report_ms = Arc::new(AtomicU64::new(0));
        let mut in_flight = InFlight::new(last_report_ms.clone());
        let _stuck = scripted(&mut in_flight, 1);
        let behind = scripted(&mut in_flight, 2);
        let _ = behind.send(Outcome::Skipped);
        assert_eq!(next_now(&mut in_flight), None);
        assert_eq!(last_report_ms.load(Ordering::Acquire), 0, "not polled");

        in_flight.notice_reports_behind();
        assert!(last_report_ms.load(Ordering::Acquire) > 0, "noticed");
        assert_eq!(next_now(&mut in_flight), None, "still in journal order");
        assert_eq!(in_flight.len(), 2, "the report is kept for its turn");

        last_report_ms.store(0, Ordering::Release);
        in_flight.notice_reports_behind();
        assert_eq!(
            last_report_ms.load(Ordering::Acquire),
            0,
            "a report noticed once is not a new one"
        );
    }

    /// Only records still waiting for their report name a topic, each once.
    #[test]
    fn the_topics_awaiting_are_those_of_records_without_a_report() {
        let mut in_flight = InFlight::new(Arc::new(AtomicU64::new(0)));
        let on = |seq: u64, topic: &str, state: State| Entry {
            topic: Arc::from(topic),
            ..entry(seq, state)
        };
        let waiting = || State::Scripted(futures::future::pending().boxed());
        let settled = || State::Settled {
            outcome: Outcome::Skipped,
            done_ms: 0,
        };
        in_flight.push_back(on(1, "cr.a", waiting()));
        in_flight.push_back(on(2, "cr.z", settled()));
        in_flight.push_back(on(3, "cr.b", waiting()));
        in_flight.push_back(on(4, "cr.a", waiting()));
        let topics: Vec<String> = in_flight
            .topics_awaiting()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(topics, ["cr.a", "cr.b"]);
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    pub(super) struct CountingWaker(AtomicUsize);

    impl ArcWake for CountingWaker {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, Ordering::AcqRel);
        }
    }

    impl CountingWaker {
        pub(super) fn woken(&self) -> usize {
            self.0.load(Ordering::Acquire)
        }
    }

    /// The walk leaves the oldest record alone: polling it there would put
    /// a waker that wakes nothing in place of the forwarder's, and its
    /// report would wait for the next tick.
    #[test]
    fn the_walk_leaves_the_forwarders_waker_on_the_oldest_record() {
        let mut in_flight = InFlight::new(Arc::new(AtomicU64::new(0)));
        let oldest = scripted(&mut in_flight, 1);
        let _behind = scripted(&mut in_flight, 2);
        let forwarder = Arc::new(CountingWaker::default());
        let waker = futures::task::waker(forwarder.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(in_flight.poll_next_unpin(&mut cx).is_pending());

        in_flight.notice_reports_behind();
        let _ = oldest.send(Outcome::Skipped);
        assert_eq!(forwarder.woken(), 1, "woken");
        assert_eq!(next_now(&mut in_flight), Some(Some(1)));
    }
}
