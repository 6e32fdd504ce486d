//! Recovery after a failure: settle or drop what is in flight, replace the
//! producer when it must be, rewind to the cursor, and count what `max_size`
//! dropped while the sink held it and is now let go of (`held_drops`); and,
//! at a start, the wait before reading back what an earlier run let go of
//! unreported (`wait_for_requests_to_land`).
//!
//! Guarantees: reports drained before the failing one still move the cursor
//! (those of a dropped producer's purge are waited for within a bound, and
//! not once the sink is stopping: see `drain_after_the_drop`);
//! after it, nothing does, and a delivery reported after it is counted
//! (`events_published`, and the latency of the newest twice
//! `max_in_flight` of them; see `keep_uncounted`) once the cursor passes
//! it; whatever was handed over after the cursor is read back before it is
//! sent again; produce requests that may still land (a stalled broker's, a
//! dropped producer's, a stop's whose drain ran out, in this process or the
//! one before) are given `stall_read_back_delay` from when they were let go
//! of before the read-back; a producer the forwarder lets go of, also by
//! a panic, is purged, so a copy a check still holds sends nothing more
//! (`OwnProducer`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::stream::StreamExt;
use rdkafka::producer::{Producer, PurgeConfig};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::event::format_time;

use super::super::producer::KafkaProducer;
use super::super::resume::AlreadyDelivered;
use super::{Failure, Forwarder, Outcome, Report};

impl Forwarder {
    /// Settles what is in flight, replaces the producer when it must, and
    /// rewinds to the cursor. `cancel` (a stop) ends the wait for the
    /// reports of a producer it dropped.
    pub(super) async fn recover(&mut self, failure: Failure, cancel: &CancellationToken) {
        let mut fatal = failure.is_fatal();
        let mut text = failure.to_string();
        // A stall is fatal to the producer, but not an error Kafka reported.
        let stalled = matches!(failure, Failure::Stalled { .. });
        if stalled {
            // Its records are purged with the producer, not reported: the
            // stall is not over, and "no longer stalled" at the next look
            // told the on-call engineer it was. A new one is said if the
            // broker is still hung.
            self.stall = super::super::readiness::StallRecord::default();
        }
        // Its own reason, also for a fatal failure: an error Kafka reported
        // as fatal is `fatal` there, and a producer that cannot be created
        // (an unreadable CA file) is `config`. All were `fatal`, so
        // `config` stayed at 0, and the warn throttle keyed on the label let
        // a create failure hold back a real fatal error's warning for 5
        // minutes (Kafka sink review, 2026-12-06, eighth round).
        let mut label = failure.reason();
        if let Some(p) = &self.producer
            && let Some((code, reason)) = p.client().fatal_error()
        {
            fatal = true;
            label = "fatal";
            text = format!("fatal producer error ({code}): {reason}");
        }
        const RESUMING: &str = "kafka sink: resuming from the cursor after a backoff";
        let in_flight = self.in_flight.len();
        match self
            .recoveries_logged
            .admit(label, std::time::Instant::now())
        {
            Some(held_back) => {
                tracing::warn!(error = %text, cursor = self.cursor, in_flight, held_back, "{RESUMING}");
            }
            None => tracing::debug!(error = %text, cursor = self.cursor, in_flight, "{RESUMING}"),
        }
        self.ctx
            .metrics
            .publish_errors
            .with_label_values(&["kafka", label])
            .inc();
        if matches!(
            failure,
            Failure::Delivery { .. } | Failure::Enqueue { .. } | Failure::Topic(_)
        ) {
            // A topic may have been deleted, or may be created meanwhile. An
            // enqueue too: once librdkafka's metadata lacks a deleted topic it
            // refuses records for it locally (`UnknownTopic`) and no delivery
            // report ever comes, so only a new check can say the topic is
            // missing, or create it again (Kafka-topology audit: without
            // it, a deleted topic stopped the sink for good even with
            // `create_topics = true`).
            self.topics.forget_all();
        }
        self.last_error = Some((text.clone(), format_time(OffsetDateTime::now_utc())));

        // Reports still in flight: those before a failure still count.
        let mut broken = matches!(failure, Failure::Delivery { .. } | Failure::ProducerGone);
        if !fatal {
            let deadline = tokio::time::Instant::now() + self.tuning.settle_deadline;
            while let Ok(Some(report)) =
                tokio::time::timeout_at(deadline, self.in_flight.next()).await
            {
                broken = self.settle(report, broken);
                self.drained_one().await;
            }
        }
        // Reports that did not come within the settle deadline: a broker
        // that slow may still append the purged requests. (A fatal error
        // purges without settling: the broker answers, and the producer is
        // replaced at once.)
        self.requests_may_land = !fatal && !self.in_flight.is_empty();
        if fatal || failure.is_stale_topic_metadata() || !self.in_flight.is_empty() {
            let deadline = tokio::time::Instant::now() + self.tuning.drop_reports_wait;
            self.drop_producer().await;
            self.drain_after_the_drop(deadline, broken, cancel).await;
            // Their requests may be on the wire (or still queued behind a
            // broker's thread that has not taken the purge), as a stall's.
            if !self.in_flight.is_empty() {
                self.requests_may_land = true;
            }
        }
        let may_land = stalled || self.requests_may_land;
        if may_land {
            // Taken after the purge, as the stop takes it: nothing queued is
            // sent after it. Saved with the state: a stop during the delay
            // leaves the rest of it to the next run.
            self.requests_may_land_since_ms = Some(wall_ms());
        }
        // Set only now: a report drained above was delivered before this
        // failure, and would otherwise call it recovered, which resets the
        // backoff and the warn throttle at every recovery.
        self.failure = Some(text);
        self.let_go_of_memory().await;
        if self.next > self.cursor {
            // Records after the cursor were handed over and some of them may
            // have landed (a dropped producer's in-flight requests, reports
            // after the failed one): read them back before sending again.
            // An earlier resume's reads are stale now; its range still counts.
            let upto = self.resume.as_ref().map_or(0, |r| r.upto()).max(self.next);
            self.resume = Some(AlreadyDelivered::new(upto));
        }
        self.next = self.cursor;
        // An error leaves the count to `pump`, which takes it before it reads on.
        let _ = self.count_held_drops_let_go().await;
    }

    /// How long to wait after a recovery before trying again: its `backoff`,
    /// or, when produce requests may still land (a stalled broker's, or
    /// those of a producer dropped with records in flight), at least
    /// `stall_read_back_delay`, so that the read-back after it sees them and
    /// does not send them again (nor put an older copy of a key last).
    pub(super) fn retry_delay(&self, stalled: bool, backoff: Duration) -> Duration {
        if stalled || self.requests_may_land {
            backoff.max(self.tuning.stall_read_back_delay)
        } else {
            backoff
        }
    }

    /// At a start with a read-back to make, waits out what is left of
    /// `stall_read_back_delay` since an earlier run let go of records
    /// unreported (`requests_may_land_since_ms`, from the saved state or a
    /// panic restart): the produce requests it had sent may be appended
    /// after the copies this run sends again, which a read-back made at
    /// once does not see. Not ready meanwhile, with why. `None`: cancelled.
    pub(super) async fn wait_for_requests_to_land(
        &mut self,
        cancel: &CancellationToken,
    ) -> Option<()> {
        let Some((since, left)) = self.landing_wait() else {
            return Some(());
        };
        let let_go_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(since) * 1_000_000)
            .map(format_time)
            .unwrap_or_default();
        tracing::info!(
            wait_ms = crate::logging::millis(left),
            let_go_at = %let_go_at,
            "kafka sink: waiting before its read-back: an earlier run let go of records whose delivery reports never came, and the produce requests it sent may still be appended; read back at once, an older copy of a key could land after the one sent again"
        );
        self.failure = Some(format!(
            "waiting up to {}s before reading back: produce requests of records an earlier run let go of unreported (at {let_go_at}) may still land",
            left.as_secs_f64().ceil()
        ));
        self.publish_status();
        let waited = self.wait_publishing(tokio::time::sleep(left), cancel).await;
        self.failure = None;
        waited
    }

    /// When records were let go of unreported, and what is left of
    /// `stall_read_back_delay` since; `None` (and forgotten) once it has
    /// passed. A time ahead of the clock (stepped back since, or a state
    /// from a host whose clock ran ahead) is taken as now: the whole delay
    /// once, then forgotten. Kept as it was, it counted as the whole delay,
    /// and was saved again, at every start until the clock reached it
    /// (hours after a step back; review of a1827a8/1514f9f).
    pub(super) fn landing_wait(&mut self) -> Option<(i64, Duration)> {
        let now = wall_ms();
        let since = self.requests_may_land_since_ms?.min(now);
        let left = landing_wait_left(since, now, self.tuning.stall_read_back_delay);
        self.requests_may_land_since_ms = (!left.is_zero()).then_some(since);
        self.requests_may_land_since_ms.map(|since| (since, left))
    }

    /// Drops what is in flight, buffered and read ahead: from here on, what
    /// `max_size` drops after the cursor is the sink's only if it reads it
    /// again, so what it holds goes back to its cursor.
    pub(super) async fn let_go_of_memory(&mut self) {
        self.in_flight.clear();
        self.buffer.clear();
        if let Some(reader) = self.reader.take() {
            reader.stop().await;
        }
        self.ctx
            .kafka_held_up_to
            .store(self.cursor, Ordering::Release);
    }

    /// Keeps a delivery behind a failed record to count when the cursor
    /// passes it. Bounded: while one record holds the cursor for hours,
    /// every recovery adds what the other topics delivered since; those
    /// `max_size` dropped are never passed, and past twice what can be in
    /// flight the oldest are let go (counted when found, without a latency).
    fn keep_uncounted(&mut self, seq: u64, latency_s: f64) {
        let first_held = self.ctx.journal.first_seq();
        self.delivered_behind_failure.insert(seq, latency_s);
        let kept = &mut self.delivered_behind_failure;
        while kept
            .first_key_value()
            .is_some_and(|(held, _)| *held < first_held)
            || kept.len() > 2 * self.tuning.max_in_flight
        {
            kept.pop_first();
        }
    }

    /// Counts a report drained during recovery; returns whether the run is broken.
    ///
    /// Behind a failed record the cursor stays, and a delivery is kept to
    /// be counted when the cursor passes it as found by the read-back
    /// (`delivered_behind_failure`): dropped, up to 20,000 acknowledged
    /// events per failure were never in `events_published` (Kafka sink
    /// review, 2026-12-06); counted here, the counter rose while the cursor
    /// stood still, and the not-delivering alert never fired.
    pub(super) fn settle(&mut self, report: Report, broken: bool) -> bool {
        if broken {
            if matches!(report.outcome, Outcome::Delivered(_)) {
                self.keep_uncounted(report.seq, report.latency_s());
            }
            return true;
        }
        self.on_report(report).is_err()
    }

    /// Takes the reports of the producer just dropped until `deadline` or
    /// `cancel`, `broken` as the run was before them (see
    /// [`Forwarder::settle`]). Those not in by then stay in flight.
    ///
    /// The drop's purge reports the records it takes at once, but a
    /// record in a broker's send queue is reported only by that broker's
    /// thread, and one in a name lookup DNS does not answer takes the purge
    /// only after it: the purge and the release are not waited for past
    /// their bounds (`drop_off_the_workers`), and this wait, unbounded,
    /// held delivery, and a stop behind it past systemd's stop timeout,
    /// until the lookup ended (review of c54689c).
    async fn drain_after_the_drop(
        &mut self,
        deadline: tokio::time::Instant,
        mut broken: bool,
        cancel: &CancellationToken,
    ) {
        loop {
            tokio::select! {
                // Reports already in are taken first, even after a stop.
                biased;
                report = tokio::time::timeout_at(deadline, self.in_flight.next()) => match report {
                    Ok(Some(report)) => {
                        broken = self.settle(report, broken);
                        self.drained_one().await;
                    }
                    _ => break,
                },
                _ = cancel.cancelled() => break,
            }
        }
        let unreported = self.in_flight.len();
        if unreported > 0 {
            tracing::warn!(
                unreported,
                cursor = self.cursor,
                "kafka sink: reports of records in flight did not come after the producer was dropped (a broker's name lookup may not answer); going on, they are read back once their requests had time to land"
            );
        }
    }

    pub(super) async fn drop_producer(&mut self) {
        // While the producer is at hand: reports a recovery drains after
        // the drop are then noted as the cluster's they were delivered to.
        // Left unnoted, a read-back in progress could start below a copy
        // sent again and skip a later event of its key (review of
        // e566410). Not a producer without the cluster's id where the
        // offsets' cluster gave one, unless it has had metadata: dropped
        // (or replaced as wedged) before it connected, judged so it dropped
        // the offsets of a list that shares a broker and took the place of
        // the id (review of d81ac2d). One that has had metadata and gives
        // no id is on a cluster that gives none, judged by the broker
        // lists: skipped too, its drained deliveries went unnoted and the
        // next read-back read the tails (review of 7a501d2).
        let without_metadata = !self.had_metadata
            && self.producer.as_ref().is_some_and(|p| {
                p.client().fetch_cluster_id(Duration::ZERO).is_none()
                    && self
                        .offsets_noted_on
                        .as_ref()
                        .is_some_and(|c| c.id.is_some())
            });
        if !without_metadata {
            self.check_cluster();
        }
        if let Some(p) = self.producer.take() {
            drop_off_the_workers(p).await;
        }
    }
}

/// Now on the wall clock, in ms since the Unix epoch: the form
/// `requests_may_land_since_ms` is saved in, for the next process.
pub(in super::super) fn wall_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// What is left of `delay` at `now_ms` since `since_ms`: all of it for a
/// time in the future (a clock stepped back, a state from a host whose clock
/// ran ahead), none once `delay` has passed, however long ago.
pub(super) fn landing_wait_left(since_ms: i64, now_ms: i64, delay: Duration) -> Duration {
    match u64::try_from(now_ms.saturating_sub(since_ms)) {
        Ok(passed) => delay.saturating_sub(Duration::from_millis(passed)),
        Err(_) => delay,
    }
}

/// The forwarder's own handle on its producer; checks on the blocking pool
/// get plain copies of it ([`OwnProducer::copy`]). Dropped, it purges
/// librdkafka's queue and requests in flight, however it is let go of:
/// `drop_off_the_workers` purges first (and waits for it), but a forwarder
/// that panics is dropped while the panic unwinds, with no stop, and a copy
/// a check held went on sending the queue for the 10–30 s the check takes,
/// beside the next forwarder's read-back (review of a1827a8/1514f9f). The
/// drop's purge does not wait for librdkafka's broker threads to take it
/// (it may run on a runtime worker); they take it at their next wake-up.
/// Its copy is then destroyed on a thread of its own when a runtime is at
/// hand, not waited for ([`LastCopy`]).
pub(super) struct OwnProducer {
    /// Dropped before `last` (fields drop in order), which holds another
    /// copy: this one never destroys the producer where it is dropped.
    producer: KafkaProducer,
    last: LastCopy,
}

/// The forwarder's last hold on its producer, kept for its drop: it purges
/// at once and destroys its copy on a thread of its own. Destroyed where it
/// was dropped, a forwarder that panicked (dropped on the runtime worker
/// its task ran on) held that worker for the destroy: librdkafka's threads
/// joined and a 500 ms flush, 0.5–1.5 s, and as long as a broker's name
/// lookup that DNS does not answer when one is in it (review of c54689c).
struct LastCopy {
    producer: Option<KafkaProducer>,
    /// Test-only: the destroy waits until this hears or its sender goes, as
    /// the destroy of a producer whose broker thread is in a name lookup
    /// that does not answer waits (no test can make librdkafka's lookup hang).
    #[cfg(test)]
    release_held: Option<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>,
}

impl LastCopy {
    /// Purges without waiting, so a copy a check holds sends nothing more,
    /// and gives the destroy (blocking), or `None` once given.
    fn purge_and_take(&mut self) -> Option<impl FnOnce() + Send + 'static> {
        let producer = self.producer.take()?;
        producer.purge(PurgeConfig::default().queue().inflight().non_blocking());
        #[cfg(test)]
        let held = self.release_held.take();
        Some(move || {
            #[cfg(test)]
            if let Some(Ok(held)) = held.map(std::sync::Mutex::into_inner) {
                let _ = held.recv();
            }
            drop(producer);
        })
    }
}

impl Drop for LastCopy {
    fn drop(&mut self) {
        let Some(destroy) = self.purge_and_take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return destroy();
        }
        // A thread of its own, not waited for, rather than the runtime's
        // blocking pool: tokio panics when the OS refuses it a thread
        // (`TasksMax` reached), and this drop may run while a forwarder's
        // panic unwinds, where a second panic aborts the relay. A thread
        // refused here drops `destroy` unrun, which destroys the producer
        // on this thread after all.
        let _ = std::thread::Builder::new()
            .name("kafka-release".into())
            .spawn(destroy);
    }
}

impl OwnProducer {
    pub(super) fn new(producer: KafkaProducer) -> OwnProducer {
        OwnProducer {
            last: LastCopy {
                producer: Some(producer.clone()),
                #[cfg(test)]
                release_held: None,
            },
            producer,
        }
    }

    /// A copy for a check: it purges nothing when dropped.
    pub(super) fn copy(&self) -> KafkaProducer {
        self.producer.clone()
    }

    /// Purges and destroys the producer on this thread, blocking: for the
    /// blocking pool, where the drop would hand the destroy on again and
    /// `let_go_off_the_workers` could not tell when it ended.
    fn release_here(self) {
        let OwnProducer { producer, mut last } = self;
        drop(producer);
        if let Some(destroy) = last.purge_and_take() {
            destroy();
        }
    }

    /// Test-only: the producer's destroy waits until `held` hears or its
    /// sender goes (see `LastCopy::release_held`).
    #[cfg(test)]
    pub(super) fn hold_release(&mut self, held: std::sync::mpsc::Receiver<()>) {
        self.last.release_held = Some(std::sync::Mutex::new(held));
    }
}

impl std::ops::Deref for OwnProducer {
    type Target = KafkaProducer;

    fn deref(&self) -> &KafkaProducer {
        &self.producer
    }
}

/// Purges `producer`'s queue and requests in flight on the blocking pool,
/// and waits until librdkafka's broker threads have taken the purge:
/// nothing is sent after it, though a request already on the wire may
/// still land (see `Tuning::stall_read_back_delay`).
pub(super) async fn purge_off_the_workers(producer: &OwnProducer) {
    let copy = producer.copy();
    let purged = tokio::task::spawn_blocking(move || {
        copy.purge(PurgeConfig::default().queue().inflight());
    });
    // The wait has no bound in librdkafka, and a broker thread in a slow
    // name lookup (brokers down, DNS hanging) takes the purge only after
    // it: the stop's durable write waited behind it, past systemd's stop
    // timeout. The purge is queued ahead of anything that thread would
    // send, so waiting longer buys nothing (review of ea563f6).
    if tokio::time::timeout(PURGE_WAIT, purged).await.is_err() {
        // Said here: the purge's thread then holds a copy of the producer,
        // so its release returns at once and says nothing of it.
        tracing::warn!(
            waited = ?PURGE_WAIT,
            "kafka sink: librdkafka's broker threads did not take the purge within the wait (a broker's name lookup hanging, or brokers cut off): going on; the producer is destroyed on its own thread once they do"
        );
    }
}

/// How long a purge is waited for (see [`purge_off_the_workers`]).
const PURGE_WAIT: Duration = Duration::from_secs(2);

/// The default of `Tuning::drop_reports_wait`: as long as the purge and the
/// release are waited for. Past both, the reports still missing wait on a
/// broker's thread that has not taken the purge; with it taken, they come
/// at once.
pub(super) const DROP_REPORTS_WAIT: Duration = PURGE_WAIT.saturating_add(RELEASE_WAIT);

/// Purges `producer`'s queue and requests in flight, then drops it, on the
/// blocking pool (both block: the drop joins librdkafka's threads), each
/// waited for within its bound.
///
/// The purge is explicit because `producer` is one copy of several: a
/// check on the blocking pool (a topic check, the checks ahead of a
/// read-back, the stall and wedge checks, the brokers-down probe) may hold
/// another, and librdkafka purges on the drop of the last one only. Until
/// then it kept sending what it held, up to 20,000 records, for the 10–30 s
/// such a check takes, beside the next producer's read-back and re-sends:
/// copies, and an older copy of a key landing last (ordering audit). The
/// purged records are reported failed to whoever still waits on them, as
/// the drop's own purge reports them; a request already on the wire may
/// still land (see `Tuning::stall_read_back_delay`).
pub(super) async fn drop_off_the_workers(producer: OwnProducer) {
    purge_off_the_workers(&producer).await;
    let_go_off_the_workers(producer).await;
}

/// Drops `producer` on the blocking pool, and waits for it up to
/// [`RELEASE_WAIT`]: past it the drop is left to end on its thread.
///
/// The drop of the last copy purges again and waits for it, flushes for up
/// to 500 ms, and joins librdkafka's threads, none with a bound: a broker
/// thread in a name lookup that does not answer (DNS hanging) ends only
/// when the lookup does, tens of seconds later. A stop waited for it after
/// its durable write, and the journal's close behind it was killed at
/// systemd's stop timeout (the next start then read the whole file); a
/// reload waited in the serve loop, a recovery held delivery (task
/// lifetimes audit). Nothing is lost by not waiting: the purge before
/// (`purge_off_the_workers`) is queued ahead of anything that thread
/// would send, and at exit the runtime gives leftover blocking work 1 s.
pub(super) async fn let_go_off_the_workers(producer: OwnProducer) {
    let began = Instant::now();
    let abandoned = Arc::new(AtomicBool::new(false));
    let released = tokio::task::spawn_blocking({
        let abandoned = abandoned.clone();
        move || {
            producer.release_here();
            if abandoned.load(Ordering::Acquire) {
                tracing::info!(
                    took_s = began.elapsed().as_secs(),
                    "kafka sink: a producer let go of without waiting has now ended"
                );
            }
        }
    });
    if tokio::time::timeout(RELEASE_WAIT, released).await.is_err() {
        abandoned.store(true, Ordering::Release);
        tracing::warn!(
            wait_s = RELEASE_WAIT.as_secs(),
            "kafka sink: letting go of the producer takes longer than the wait (a broker's name lookup may not answer); going on, it ends on its own thread"
        );
    }
}

/// How long the drop of a producer is waited for (see
/// [`let_go_off_the_workers`]): above the drop's own flush (500 ms at
/// most) and the join of threads that are not held in a lookup.
const RELEASE_WAIT: Duration = Duration::from_secs(2);
