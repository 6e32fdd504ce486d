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

/// A record handed over, and what is known of its delivery.
pub(super) enum Entry {
    /// Handed to librdkafka; its report has not been taken yet.
    Awaiting {
        seq: u64,
        topic: Arc<str>,
        received_at_ms: u64,
        delivery: DeliveryFuture,
    },
    /// Its outcome is known (found in Kafka, skipped, or reported already).
    Settled(Report),
    /// A report a test scripts (when it comes, and what it says).
    #[cfg(test)]
    Scripted(futures::future::BoxFuture<'static, Report>),
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

    /// Takes the reports that came for records behind the oldest one, which
    /// nothing polls until it is at the front, and stamps `last_report_ms`
    /// when there was one: the stall check asks whether *any* report came,
    /// and one stuck record must not hide the reports of those behind it.
    /// Walks every record: call it only once the oldest has waited a while.
    pub(super) fn notice_reports_behind(&mut self) {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut any = false;
        // The oldest is polled by the forwarder, with its waker: left alone.
        for entry in self.entries.iter_mut().skip(1) {
            if let Some(report) = poll_entry(entry, &mut cx) {
                *entry = Entry::Settled(report);
                any = true;
            }
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

/// The report of an entry if it is in; `Settled` is taken as it is.
fn poll_entry(entry: &mut Entry, cx: &mut Context<'_>) -> Option<Report> {
    match entry {
        Entry::Settled(_) => None,
        Entry::Awaiting {
            seq,
            topic,
            received_at_ms,
            delivery,
        } => {
            let Poll::Ready(delivery) = delivery.poll_unpin(cx) else {
                return None;
            };
            let outcome = match delivery {
                Ok(Ok(d)) => Outcome::Delivered(Position {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Err((e, _))) => Outcome::Failed(e),
                Err(_) => Outcome::Dropped,
            };
            Some(Report {
                seq: *seq,
                topic: topic.clone(),
                received_at_ms: *received_at_ms,
                // Wall time for the event's latency (its receive time is
                // wall time); the stall check's clock is never stepped.
                done_ms: crate::journal::now_ms(),
                outcome,
            })
        }
        #[cfg(test)]
        Entry::Scripted(report) => match report.poll_unpin(cx) {
            Poll::Ready(report) => Some(report),
            Poll::Pending => None,
        },
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
        if let Some(report) = poll_entry(front, cx) {
            this.note_a_report();
            this.entries.pop_front();
            return Poll::Ready(Some(report));
        }
        if !matches!(front, Entry::Settled(_)) {
            return Poll::Pending;
        }
        match this.entries.pop_front() {
            Some(Entry::Settled(report)) => Poll::Ready(Some(report)),
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use futures::channel::oneshot;

    use super::*;

    /// An entry whose report comes when its sender is given it.
    fn scripted(in_flight: &mut InFlight) -> oneshot::Sender<Report> {
        let (tx, rx) = oneshot::channel::<Report>();
        let later = async move { rx.await.expect("a report") };
        in_flight.push_back(Entry::Scripted(later.boxed()));
        tx
    }

    fn report(seq: u64) -> Report {
        Report {
            seq,
            topic: Arc::from("t"),
            received_at_ms: 0,
            done_ms: 0,
            outcome: Outcome::Skipped,
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
        let first = scripted(&mut in_flight);
        let second = scripted(&mut in_flight);
        in_flight.push_back(Entry::Settled(report(3)));
        let _ = second.send(report(2));
        assert_eq!(next_now(&mut in_flight), None, "the first is not in");
        let _ = first.send(report(1));
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
        let _stuck = scripted(&mut in_flight);
        let behind = scripted(&mut in_flight);
        let _ = behind.send(report(2));
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
}
