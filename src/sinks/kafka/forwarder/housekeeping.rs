//! The forwarder's tick: the cursor written, the stall clock held while
//! every broker is down, the reports behind a stuck record noticed (not
//! while every broker is down), a probe that notices a broker back, and
//! `/status`; and, for a producer that has said every broker is down for
//! longer than the stall bound with records waiting, whether the brokers
//! answer a fresh client (`wedged_to_replace`).
//!
//! Guarantees: the cursor is written every tick once it has moved; durably
//! when no event was journaled over the tick (nothing else would carry it to
//! the disk soon), else riding on the next event's commit; the first write
//! of a run marks its state unclean durably before anything is handed to
//! Kafka; time the tick spends waiting on a cursor write is not counted
//! toward a stall (no report is polled meanwhile). The offsets where a
//! read-back starts are written with the cursor once it moves after
//! [`OFFSETS_WRITE_INTERVAL`] since they last were, at every durable write, at the stop and at
//! every write while a resume is in progress, and are never newer than the
//! cursor; such a write forgets the topics no delivery has moved for
//! [`super::Tuning::forget_idle_topic_after`] (25 h), unless a record of
//! theirs is handed over past the cursor or a resume is in progress, and
//! forgets none while a record handed over past the cursor has left the
//! in-flight list unpassed (a drain that met a failed report).

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;

use super::super::CURSOR;
use super::super::cluster::{self, Wedge};
use super::super::resume::CursorState;
use super::{Failure, Forwarder, OwnProducer, PROBE_EVERY, STALL_RECHECK_EVERY};
use crate::journal::Journal;
use crate::journal::off_the_workers;

/// How long the stall clock of `/status` (`awaiting_reports_since`: the
/// last delivery taken, in journal order) must have run before the reports
/// of records behind the oldest, which nothing polls, are looked at: a walk
/// of every record in flight, once a tick. Skipping it sooner cannot cause a
/// replacement: `stalled_too_long` takes the smaller of the two clocks, and
/// this one is then far under `replace_stalled_after`.
const NOTICE_REPORTS_BEHIND_AFTER: Duration = Duration::from_secs(1);

/// How often the tick writes the offsets (every topic's partitions) with
/// the cursor; the ticks between write the cursor alone. Rewritten whole
/// every 250 ms, a topic per account made that state megabytes written
/// four times a second, each write holding the journal's one write
/// transaction against the webhooks' commits (Kafka audit at 10,000
/// topics, 2026-12-06). Offsets older than the cursor cost a read-back
/// after a crash more messages to read (it may reach its bound, on a topic
/// other producers write too) and, for a partition added or a topic made
/// anew meanwhile, a start from its last messages: duplicates at worst.
/// While a resume sends events again they are written every tick: the
/// next read-back must start after the copies sent again, or it would
/// take an older copy of a later event of the same key for delivered and
/// leave the key's last copy an older event (review of 38eedb7).
pub(super) const OFFSETS_WRITE_INTERVAL: Duration = Duration::from_secs(5);

impl Forwarder {
    /// Persists the cursor, refreshes lag and status.
    pub(super) async fn housekeeping(&mut self) {
        let persisting = Instant::now();
        let durable = self.cursor_write_durable();
        self.persist(durable).await;
        let persisted_in = persisting.elapsed();
        if self
            .resume
            .as_ref()
            .is_some_and(|r| self.cursor >= r.upto())
        {
            self.finish_resume();
        }
        let brokers_down = self.health.all_brokers_down.load(Ordering::Acquire);
        let now = Instant::now();
        self.note_brokers_said_down(brokers_down, now);
        if brokers_down {
            // The stall clock stops while every broker is down (why nothing
            // is delivered is known and shown as such) and goes on when one
            // is back: it is paused, not restarted, so brokers that flap
            // faster than `stalled_after` still add up to a stall.
            let down_for = now.saturating_duration_since(self.last_housekeeping);
            self.awaiting_reports_since = (self.awaiting_reports_since + down_for).min(now);
        }
        self.not_waiting_while(persisted_in);
        // Not while every broker is down: no stall is called then, and the
        // walk would run every tick of the outage.
        if !brokers_down
            && !self.in_flight.is_empty()
            && self.awaiting_reports_since.elapsed() >= NOTICE_REPORTS_BEHIND_AFTER
        {
            self.in_flight.notice_reports_behind();
        }
        self.last_housekeeping = now;
        if brokers_down
            && self.last_probe.elapsed() >= PROBE_EVERY
            && let Some(p) = self.producer.as_ref().map(OwnProducer::copy)
        {
            self.last_probe = Instant::now();
            let health = self.health.clone();
            // A metadata answer proves a broker is back even when nothing flows.
            tokio::task::spawn_blocking(move || {
                if p.client()
                    .fetch_metadata(None, Duration::from_secs(1))
                    .is_ok()
                {
                    health.brokers_answer();
                }
            });
        }
        self.publish_status();
    }

    /// Starts the clock of [`Forwarder::said_down_too_long`] when the
    /// producer says every broker is down (`brokers_down`), and ends it
    /// when it does not. Also from a failed topic check: while one fails
    /// after another, no tick runs.
    fn note_brokers_said_down(&mut self, brokers_down: bool, now: Instant) {
        if !brokers_down {
            self.brokers_said_down_since = None;
            self.wedged_first = None;
        } else if self.brokers_said_down_since.is_none() {
            self.brokers_said_down_since = Some(now);
        }
    }

    /// The producer has said every broker is down for longer than
    /// `replace_stalled_after`, with records waiting on it: no stall is
    /// called meanwhile, and the probe above asks that same producer, so
    /// one that dropped every broker for good (confluentinc/librdkafka#5301)
    /// held Kafka delivery until a restart, saying "all Kafka brokers are
    /// down" while the cluster was healthy (dependency review, 2026-12-06,
    /// ninth round). Waiting is also an event read and not handed over:
    /// one whose topic is being checked, through that same producer.
    pub(super) fn said_down_too_long(&self) -> bool {
        self.health.all_brokers_down.load(Ordering::Acquire)
            && !(self.in_flight.is_empty() && self.buffer.is_empty())
            && self
                .brokers_said_down_since
                .is_some_and(|since| since.elapsed() > self.tuning.replace_stalled_after)
    }

    /// Asks, through [`Forwarder::wedged_to_replace`], whether a producer
    /// [`Forwarder::said_down_too_long`] is stuck while the brokers answer,
    /// at most once per [`STALL_RECHECK_EVERY`]; `Continue` without asking
    /// otherwise. From the tick, and from a topic check that got no answer:
    /// a producer stuck with nothing in flight failed every check of the
    /// next event's topic, and the recovery, with nothing to purge, kept it
    /// and checked again for good, no tick between two checks (review of
    /// a1ff063, 2026-12-06, ninth round).
    pub(super) async fn replace_if_wedged(
        &mut self,
        cancel: &CancellationToken,
    ) -> ControlFlow<Option<Failure>> {
        let brokers_down = self.health.all_brokers_down.load(Ordering::Acquire);
        self.note_brokers_said_down(brokers_down, Instant::now());
        if !self.said_down_too_long() || Instant::now() < self.next_stall_check {
            return ControlFlow::Continue(());
        }
        let check = cluster::producer_wedged(
            self.producer.as_ref().map(OwnProducer::copy),
            self.config.client_config(),
            self.tuning.wedge_grace,
        );
        self.wedged_to_replace(check, cancel).await
    }

    /// Asks (`check`: a fresh client, then the producer) whether a producer
    /// [`Forwarder::said_down_too_long`] is stuck while the brokers answer.
    /// `Break` ends `pump` with the stall to replace it through (the
    /// read-back after a stall follows) at the second "stuck" verdict, at
    /// least [`super::Tuning::wedge_confirm_after`] after the first with
    /// nothing in between, or `None` when cancelled meanwhile;
    /// `Continue` keeps it: a first verdict, a real outage, which a new producer would wait
    /// out too, is asked about again after [`STALL_RECHECK_EVERY`]. Awaited
    /// as the stall check is, `/status` kept current.
    pub(super) async fn wedged_to_replace(
        &mut self,
        check: impl Future<Output = Wedge>,
        cancel: &CancellationToken,
    ) -> ControlFlow<Option<Failure>> {
        let Some(found) = self.wait_publishing(check, cancel).await else {
            return ControlFlow::Break(None);
        };
        if let Err(f) = self.take_reports_in().await {
            return ControlFlow::Break(Some(f));
        }
        let now = Instant::now();
        self.next_stall_check = now + STALL_RECHECK_EVERY;
        match found {
            // Unless a report came meanwhile, or nothing waits any more.
            Wedge::Wedged if self.said_down_too_long() => {
                // Only at the second verdict, `wedge_confirm_after` after the
                // first: one only reconnecting after an outage that dropped
                // packets misses the grace (review of a1ff063, 2026-12-06,
                // ninth round).
                let Some(first) = self.wedged_first else {
                    self.wedged_first = Some(now);
                    self.next_stall_check = now + self.tuning.wedge_confirm_after;
                    return ControlFlow::Continue(());
                };
                let apart = now.saturating_duration_since(first);
                if apart < self.tuning.wedge_confirm_after {
                    return ControlFlow::Continue(());
                }
                self.wedged_first = None;
                let said_down_for = self
                    .brokers_said_down_since
                    .take()
                    .map_or(Duration::ZERO, |since| since.elapsed());
                let in_flight = self.in_flight.len();
                tracing::warn!(
                    said_down_s = said_down_for.as_secs(),
                    in_flight,
                    asked_apart_s = apart.as_secs(),
                    "kafka sink: the brokers answer a new client while the producer has said \
                     all brokers are down for {}s and got no answer itself, asked twice {}s \
                     apart; replacing it (librdkafka can drop every broker and never connect \
                     again: confluentinc/librdkafka#5301)",
                    said_down_for.as_secs(),
                    apart.as_secs()
                );
                // The brokers answer: the flag is shared, and nothing else
                // clears it before the read-back, which then retried
                // unanswered reads for good, while `/status` said "all Kafka
                // brokers are down" on a healthy cluster (review of a1ff063,
                // 2026-12-06, ninth round). The new producer says so again
                // if it finds them down.
                self.health.brokers_answer();
                ControlFlow::Break(Some(Failure::Stalled {
                    waited: said_down_for,
                    in_flight,
                    brokers_said_down: true,
                }))
            }
            Wedge::ProducerAnswers => {
                self.wedged_first = None;
                self.health.brokers_answer();
                ControlFlow::Continue(())
            }
            Wedge::Wedged | Wedge::Outage => {
                self.wedged_first = None;
                ControlFlow::Continue(())
            }
        }
    }

    /// Moves the stall clocks on by `spent`, time the forwarder spent in its
    /// own awaits, polling no report: a cursor write that waited out a
    /// journal reopen (minutes on a slow disk) left every report already in
    /// unread, so the sink said `no delivery report` and, past 5 minutes,
    /// replaced a healthy producer (blocking review, 2026-12-05). Not while
    /// every broker is down: the tick pauses the clocks over that whole
    /// time already, this wait included.
    pub(super) fn not_waiting_while(&mut self, spent: Duration) {
        if self.health.all_brokers_down.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        self.awaiting_reports_since = (self.awaiting_reports_since + spent).min(now);
        // Paused through `spent` already: should every broker be down at the
        // next tick, its pause starts after it (a stall check that ended
        // just before they went down was paused twice, and the next stall
        // called up to its 15 s late).
        self.last_housekeeping = (self.last_housekeeping + spent).min(now);
        let spent_ms = u64::try_from(spent.as_millis()).unwrap_or(u64::MAX);
        let now_ms = crate::journal::boot_ms();
        let _ = self
            .last_report_ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(last.saturating_add(spent_ms).min(now_ms))
            });
    }

    /// Whether this tick's cursor write is durable: when no event was
    /// journaled since the last tick and the cursor is not on the disk
    /// already. A non-durable write waits in redb's write buffer for the
    /// next durable commit, and none comes while nothing is journaled: the
    /// cursor of a quiet relay stayed off the disk for good, and every read
    /// that missed redb's cache walked that buffer first (a catch-up after
    /// an outage at night read the journal measurably slower, docs/kafka.md).
    /// Under load an event's commit carries the write within milliseconds,
    /// and an fsync of its own each tick would only hold the journal's one
    /// write transaction against the webhooks' commits.
    fn cursor_write_durable(&mut self) -> bool {
        let journaled = self.ctx.journal.last_seq();
        let quiet = journaled == self.journaled_at_last_tick;
        self.journaled_at_last_tick = journaled;
        quiet && (self.cursor != self.persisted || !self.persisted_durably)
    }

    pub(super) async fn persist(&mut self, durable: bool) {
        if !self.marked_unclean {
            self.marked_unclean = self.persist_state(true, false).await;
            return;
        }
        if self.cursor == self.persisted && !durable {
            return;
        }
        if self.resume.is_some() {
            // Owed until a write with them lands: one that fails as the
            // resume ends must not leave the next writes to the cursor alone.
            self.offsets_written_at = None;
        }
        let offsets_due = self
            .offsets_written_at
            .is_none_or(|at| at.elapsed() >= OFFSETS_WRITE_INTERVAL);
        if durable || offsets_due {
            self.persist_state(durable, false).await;
        } else {
            self.persist_cursor(None, durable).await;
        }
    }

    /// Writes the cursor with its offsets; `clean` when nothing was handed
    /// to Kafka beyond it (a stop that settled every report). `false` when
    /// the write failed (logged).
    pub(super) async fn persist_state(&mut self, durable: bool, clean: bool) -> bool {
        self.forget_idle_topics();
        // Kept only while it still holds a read-back back.
        let since = self.landing_wait().map(|(since, _)| since);
        let state = CursorState {
            clean,
            offsets: self.offsets.clone(),
            cluster: self.offsets_noted_on.clone(),
            requests_may_land_since_ms: since,
        };
        self.persist_cursor(Some(state), durable).await
    }

    /// Forgets from the offsets the topics no delivery has moved for
    /// [`Tuning::forget_idle_topic_after`] (25 h), with no record handed
    /// over past the cursor and no resume in progress
    /// ([`DeliveredOffsets::forget_idle`]); none while the records in
    /// flight are fewer than those handed over past the cursor. Before a
    /// write of them: each write is the whole set, and a topic per account
    /// kept every account ever delivered to in it.
    ///
    /// [`Tuning::forget_idle_topic_after`]: super::Tuning::forget_idle_topic_after
    /// [`DeliveredOffsets::forget_idle`]: super::super::resume::DeliveredOffsets::forget_idle
    fn forget_idle_topics(&mut self) {
        // A drain that met a failed report (a stop's, a recovery's) takes
        // the deliveries behind it out of the in-flight list unnoted, and
        // the cursor stays: those records are in Kafka past it, and only
        // the list could have named their topics (review of 1aea785). A
        // `max_size` gap in the seqs handed over counts here too, and
        // holds the forgetting back only until the cursor passes it.
        let untracked =
            self.next > self.cursor && (self.in_flight.len() as u64) < self.next - self.cursor;
        let all_in_use = self.resume.is_some() || untracked;
        let in_flight = &self.in_flight;
        // Walked only once a topic is idle long enough: up to
        // `max_in_flight` records.
        let mut handed_over = None;
        let forgotten = self.offsets.forget_idle(
            &mut self.offsets_seen,
            Instant::now(),
            self.tuning.forget_idle_topic_after,
            |topic| {
                all_in_use
                    || handed_over
                        .get_or_insert_with(|| in_flight.topics())
                        .contains(topic)
            },
        );
        if forgotten > 0 {
            tracing::debug!(
                forgotten,
                kept = self.offsets.len(),
                idle_s = self.tuning.forget_idle_topic_after.as_secs(),
                "kafka sink: topics with no delivery for idle_s are forgotten from the offsets saved with the cursor"
            );
        }
    }

    /// Writes the cursor, with `state` or keeping the state last written.
    async fn persist_cursor(&mut self, state: Option<CursorState>, durable: bool) -> bool {
        let seq = self.cursor;
        let with_state = state.is_some();
        let state = state.map(|state| state.encode());
        let write = move |journal: &Journal| match &state {
            Some(state) => journal.set_cursor_with_state(CURSOR, seq, state, durable),
            None => journal.set_cursor_keeping_state(CURSOR, seq, durable),
        };
        let written = off_the_workers(self.ctx.journal.clone(), write).await;
        match written {
            Ok(()) => {
                self.persisted = seq;
                self.persisted_durably = durable;
                if with_state {
                    self.offsets_written_at = Some(Instant::now());
                }
                true
            }
            // Said once, when the file was found gone; the sink delivers
            // what the open file holds, and would say this every 250 ms.
            Err(e) if self.ctx.journal.is_file_gone() => {
                tracing::debug!(error = %e, "cannot persist the kafka cursor");
                false
            }
            Err(e) => {
                match self.cursor_writes_logged.admit((), Instant::now()) {
                    Some(held_back) => {
                        tracing::error!(error = %e, held_back, "cannot persist the kafka cursor");
                    }
                    None => tracing::debug!(error = %e, "cannot persist the kafka cursor"),
                }
                false
            }
        }
    }
}
