//! The forwarder: reads the journal from the `kafka` cursor, keeps many
//! records in flight, and moves the cursor over what Kafka acknowledged.
//!
//! Guarantees:
//! - the cursor only passes an event whose delivery report said delivered (or
//!   that Kafka can never take, e.g. too large — logged and counted), and only
//!   contiguously: reports are consumed in journal order, so one failure holds
//!   the cursor back even when later events were acknowledged;
//! - after any failure nothing is skipped: in-flight records are settled (or the
//!   producer is dropped), then reading resumes from the cursor after a backoff.
//!   A fatal producer error (fencing, sequence desynchronisation) always
//!   replaces the producer, and so does a stall: records in flight without
//!   any report for [`REPLACE_STALLED_AFTER`] while a broker is reachable
//!   (a broker that lost its idempotent producer state left the old
//!   producer waiting until a restart, after which a new one delivered),
//!   or while the producer says every broker is down and they answer a
//!   fresh client (librdkafka can drop every broker for good:
//!   `cluster::producer_wedged`);
//! - librdkafka retries a record until it is delivered (`message.timeout.ms=0`,
//!   which no option may change), so a broker outage leaves no gap that a re-send would
//!   fill out of order: per-key order is the idempotent producer's (but a
//!   batch the broker refuses for good fails alone, and its records, sent
//!   again, land after the partition's later ones: docs/kafka.md);
//! - a stored cursor past the journal's last seq (a damaged file) is taken
//!   as the last seq and written back at the start, so the events journaled
//!   from then on are delivered;
//! - the cursor is written every tick (non-durable, riding on the next ingest
//!   commit) and durably at shutdown, after in-flight reports (bounded wait),
//!   with whether the stop was clean and the offsets it passed per partition
//!   (those with a write every few seconds, and at every write while a resume
//!   is in progress: see `housekeeping`, which also forgets the topics idle
//!   for 25 h with nothing of theirs past the cursor), and the cluster they
//!   are positions in: offsets of another cluster are dropped, not read back
//!   from;
//! - after a crash, or a producer dropped with records in flight, what was
//!   handed to Kafka beyond the cursor is read back first ([`super::resume`]),
//!   so an event already delivered is not sent a second time; once records
//!   were let go of unreported (a dropped producer, a stop whose drain ran
//!   out, a panic), only [`Tuning::stall_read_back_delay`] after that, also
//!   in the next run (the time is saved with the cursor), so requests
//!   already sent land before it;
//! - the loop yields its runtime worker after [`Tuning::records_per_poll`]
//!   records handed over and reports taken, and looks at the stop and the
//!   tick then: a catch-up (the journal far ahead of the cursor, after an
//!   outage or at a start) handed over the whole read-ahead in one poll,
//!   tens of milliseconds during which the webhooks and WebSocket frames
//!   queued on that worker waited; the drains of reports (a recovery's, a
//!   stop's, the one after a stall or wedge check) count against the same
//!   budget and yield too.
//!
//! This file holds the delivery loop (read, hand over, take reports in
//! order); the rest is split by concern: `failure` (why forwarding stops and
//! its metric label), `recovery`, `housekeeping` (the tick: cursor writes, the
//! stall clock, the brokers-down probe), `in_flight` (the records handed
//! over, their reports taken in journal order), `resuming` (the read-back), `status`
//! (lag and `/status`), `held_drops` (what `max_size` dropped while the sink
//! held it) and `shutdown`.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use futures::FutureExt;
use futures::stream::StreamExt;
use prometheus::{Histogram, IntCounter};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer as _;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::event::format_time;
use crate::journal::{JournalError, JournaledEvent};
use crate::log_throttle::LogThrottle;

use super::CURSOR;
use super::cluster;
use super::config::KafkaConfig;
use super::producer::{self, Health};
use super::reader::{ReadError, Reader};
use super::readiness;
use super::resume::{
    self, AlreadyDelivered, ClusterIdentity, CursorState, DeliveredOffsets, OffsetsSeen, Position,
    UnplacedReports,
};
use super::topic::{KnownTopics, TopicError, TopicTemplate};

mod failure;
mod held_drops;
mod housekeeping;
mod in_flight;
mod recovery;
mod resuming;
mod shutdown;
mod status;

#[cfg(test)]
mod tests;

use failure::Failure;
pub use failure::PUBLISH_ERROR_REASONS;
use in_flight::{Entry, InFlight, State};
use recovery::OwnProducer;
pub(super) use recovery::wall_ms;

/// Tuning of the forwarder.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Records handed to librdkafka and not yet reported.
    pub max_in_flight: usize,
    /// Records handed over plus reports taken since the forwarder's task
    /// last yielded its worker, at most (0 counts as 1); then it yields.
    /// The count is reset only at a yield of its own, not at every poll:
    /// a wait that returns `Pending` in between does not reset it. A few µs each: 500 kept a catch-up's polls to 3–5 ms of CPU
    /// at no cost in rate (docs/kafka.md, "Forward rate", 2026-12-07).
    pub records_per_poll: usize,
    /// Events read from the journal per read.
    pub read_batch: usize,
    /// How often the cursor is written and the status refreshed.
    pub tick: Duration,
    /// How long shutdown waits for in-flight delivery reports.
    pub shutdown_deadline: Duration,
    /// How long a recovery waits for in-flight reports before dropping the producer.
    pub settle_deadline: Duration,
    /// How long a recovery that drops the producer waits, from the drop's
    /// start, for the reports of what the drop purged (a stop ends the wait
    /// sooner); those not in by then count as requests that may land.
    pub drop_reports_wait: Duration,
    /// In-flight records without a report for this long, with a broker
    /// reachable, make the sink not ready.
    pub stalled_after: Duration,
    /// ... and for this long, replace the producer.
    pub replace_stalled_after: Duration,
    /// After replacing a stalled producer, the wait before the new one; also
    /// the least time between letting go of records unreported (a dropped
    /// producer, a stop whose drain ran out, a panic) and a read-back, in
    /// this run or the next.
    pub stall_read_back_delay: Duration,
    /// Once a fresh client got an answer while the producer has said every
    /// broker is down for `replace_stalled_after`, how long the producer is
    /// given to answer too before it is replaced.
    pub wedge_grace: Duration,
    /// How long after a first "stuck" verdict (see `wedge_grace`) a second
    /// one replaces the producer; none in between: one verdict.
    pub wedge_confirm_after: Duration,
    /// How long the read-back of one topic may go without a message, or
    /// wait for the answer about a partition's ends
    /// ([`super::resume::SLOW_READ_WINDOWS`] times that in all for the
    /// read after the ends).
    pub read_back_deadline: Duration,
    /// A producer's creation that takes this long makes the sink not ready
    /// until it ends, saying why (librdkafka reading its files from a slow
    /// or hung mount).
    pub slow_creation: Duration,
    /// A topic whose saved offsets no delivery has moved for this long,
    /// with no record of it in flight and no resume in progress, is
    /// forgotten from them ([`FORGET_IDLE_TOPIC_AFTER`]); none is while a
    /// record handed over past the cursor has left the in-flight list
    /// without the cursor passing it (a drain that met a failed report).
    pub forget_idle_topic_after: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            max_in_flight: 20_000,
            records_per_poll: 500,
            read_batch: 2_048,
            tick: Duration::from_millis(250),
            shutdown_deadline: Duration::from_secs(10),
            settle_deadline: Duration::from_secs(5),
            drop_reports_wait: recovery::DROP_REPORTS_WAIT,
            stalled_after: STALLED_AFTER,
            replace_stalled_after: REPLACE_STALLED_AFTER,
            stall_read_back_delay: STALL_READ_BACK_DELAY,
            wedge_grace: WEDGE_GRACE,
            wedge_confirm_after: WEDGE_CONFIRM_AFTER,
            read_back_deadline: super::resume::DEADLINE,
            slow_creation: SLOW_CREATION,
            forget_idle_topic_after: FORGET_IDLE_TOPIC_AFTER,
        }
    }
}

/// See [`Tuning::forget_idle_topic_after`]. A day and an hour: the clock
/// starts at the write that first saw a topic's offsets, after its
/// delivery, so with the hour's margin a topic written to at least once a
/// day keeps its entry (its next record passed by the cursor within that
/// hour), and its read-back after a crash starts where it always did.
/// Offsets are noted only as the cursor passes a record, and written at
/// the next offsets write after that: a forgotten topic delivered to again
/// is read back from its partitions' last 20,000 messages until then,
/// which a failing or stalled record of another topic ahead of it can hold
/// off for as long as that record holds the cursor back. The offsets hold
/// about a day's topics.
pub const FORGET_IDLE_TOPIC_AFTER: Duration = Duration::from_secs(25 * 60 * 60);
/// See [`Tuning::slow_creation`]: creating a producer takes milliseconds;
/// seconds are a disk or mount that does not answer.
const SLOW_CREATION: Duration = Duration::from_secs(5);
/// In-flight records without a report for this long make the sink not ready.
const STALLED_AFTER: Duration = Duration::from_secs(30);
/// In-flight records without a report for this long, with a broker reachable,
/// replace the producer. Long enough that a slow but working cluster (any
/// report at all restarts the clock) never meets it.
const REPLACE_STALLED_AFTER: Duration = Duration::from_secs(5 * 60);
/// While a stall is blamed on the cluster, how often its metadata is asked again.
const STALL_RECHECK_EVERY: Duration = Duration::from_secs(30);
/// After replacing a stalled producer (or dropping one with records in
/// flight), the wait before the new one reads back: longer than
/// librdkafka's request timeout (30 s), so a produce request a broker still
/// held has landed, or never will, by then.
const STALL_READ_BACK_DELAY: Duration = Duration::from_secs(35);
/// How long a producer that has said every broker is down is given to
/// answer once a fresh client did: longer than librdkafka's reconnect
/// backoff (`reconnect.backoff.max.ms`, 10 s, and its jitter), so one only
/// waiting to reconnect after an outage is not taken for stuck.
const WEDGE_GRACE: Duration = Duration::from_secs(15);
/// How long apart two "stuck" verdicts must be to replace the producer. The
/// grace does not cover a connection attempt under way: after an outage
/// that dropped packets, a producer waits out its 30 s
/// `socket.connection.setup.timeout.ms` and its backoff (more with a raised
/// `reconnect.backoff.max.ms` in `[kafka.options]`), 20-25 s after the
/// network is back, while a fresh client connects at once. With two verdicts
/// the producer has had 45 s or more; a stuck one stays stuck (review of
/// a1ff063, 2026-12-06, ninth round).
const WEDGE_CONFIRM_AFTER: Duration = Duration::from_secs(30);
/// How often a "brokers down" state is re-probed while nothing is delivered.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// The longest wait between two recoveries (each ±50 %). librdkafka's own
/// reconnect backoff stops growing at 10 s too (`reconnect.backoff.max.ms`):
/// a topic check that met an outage is tried again no later than librdkafka
/// would reach the broker anyway, where 30 s held delivery back up to 45 s
/// after the broker answered. A retry costs one metadata request.
const LONGEST_BACKOFF: Duration = Duration::from_secs(10);

enum Outcome {
    Delivered(Position),
    /// Found in Kafka by a resume: delivered by an earlier run, not sent again.
    AlreadyInKafka(Position),
    /// Kafka can never take it: the cursor passes it (logged and counted).
    Skipped,
    Failed(KafkaError),
    Dropped,
}

/// Who refused an event as too large, which decides the advice: librdkafka
/// before sending it (the client's `message.max.bytes`), or the broker in
/// its delivery report (the topic's `max.message.bytes`, held to a batch).
#[derive(Clone, Copy)]
enum Refuser {
    Client,
    Broker,
}

struct Report {
    seq: u64,
    topic: Arc<str>,
    received_at_ms: u64,
    done_ms: u64,
    outcome: Outcome,
}

impl Report {
    /// From the event's receipt to its report, in seconds.
    fn latency_s(&self) -> f64 {
        self.done_ms.saturating_sub(self.received_at_ms) as f64 / 1000.0
    }
}

/// How often a recovery for the same reason is logged at warn while the
/// sink has not delivered since (the rest at debug, counted in the next).
const RECOVERY_LOG_INTERVAL: Duration = Duration::from_secs(300);

/// How often a failing cursor write is logged at error: every tick tries
/// again (4 a second), and while the journal refuses writes (a full disk)
/// its own line says why once every 30 s.
const CURSOR_WRITE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// How often the stall check's "minimum unknown" WARN is logged while it
/// stays so: the check runs every [`STALL_RECHECK_EVERY`] for as long as a
/// stall and the under-replication last, hours of a maintenance.
const MINIMUM_UNKNOWN_LOG_INTERVAL: Duration = Duration::from_secs(300);

/// How often the stall check's WARN names a topic whose partitions cannot
/// take a record, while it stays so (as [`MINIMUM_UNKNOWN_LOG_INTERVAL`]).
const UNWRITABLE_LOG_INTERVAL: Duration = Duration::from_secs(300);

/// How many topics, or partitions that cannot take a record, a stall
/// check's log line or `/status` names before it counts the rest.
const TOPICS_NAMED: usize = 5;

/// Why a forwarder could not be made; the sink tries again (see
/// `super::run_forwarder`), and says which, so the operator looks at the
/// right thing.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the kafka cursor: {0}")]
    Read(#[source] JournalError),
    /// The cursor read was past the journal's last seq (a damaged file),
    /// and writing it back as the last seq failed: the start waits for the
    /// write, as a restart before it would read the damaged cursor again.
    #[error(
        "cannot write the kafka cursor's correction (stored {stored}, past the journal's last seq {last_seq}): {source}"
    )]
    Correction {
        stored: u64,
        last_seq: u64,
        source: Box<JournalError>,
    },
    /// The blocking task reading the cursor ended without an answer (the
    /// runtime shutting down): said as a read that failed.
    #[error("cannot read the kafka cursor: {0}")]
    Joined(#[source] tokio::task::JoinError),
}

impl StartError {
    /// What to say once a start that failed so no longer does; one text
    /// per kind of failure, so a failure of another kind is told apart.
    pub fn mended(&self) -> &'static str {
        match self {
            StartError::Read(_) | StartError::Joined(_) => "the kafka cursor is readable again",
            StartError::Correction { .. } => "the kafka cursor's correction is written",
        }
    }
}

/// The forwarder's whole state; `run` drives it until cancelled.
pub struct Forwarder {
    config: KafkaConfig,
    ctx: Arc<Context>,
    tuning: Tuning,
    template: TopicTemplate,
    health: Arc<Health>,
    producer: Option<OwnProducer>,
    topics: KnownTopics,
    /// Last seq delivered contiguously (what is persisted).
    cursor: u64,
    /// Where the cursor's messages are: where a resume starts reading.
    offsets: DeliveredOffsets,
    /// How long each topic's offsets have stood still, as the writes of
    /// them saw it (see `housekeeping`).
    offsets_seen: OffsetsSeen,
    /// The cluster `offsets` were noted on, as stored or since checked;
    /// `None` when the stored state does not say (see
    /// [`resume::offsets_apply`]).
    offsets_noted_on: Option<ClusterIdentity>,
    /// `offsets_noted_on` was checked against the producer's cluster since
    /// the producer was made ([`Forwarder::check_cluster`]); until then no
    /// offset is noted ([`Forwarder::note_offset`]).
    cluster_checked: bool,
    /// The producer has had the cluster's metadata (a topic check or a
    /// listing it answered, which every record it hands over follows): its
    /// cluster id, if the brokers give one, is at hand. Without it, no id
    /// says nothing of the cluster (see `drop_producer`).
    had_metadata: bool,
    /// Deliveries whose reported offset is not where the record is.
    unplaced: UnplacedReports,
    /// Events up to a seq that may already be in Kafka (after a crash, or a
    /// producer dropped with records in flight).
    resume: Option<AlreadyDelivered>,
    /// What the last resume found, for `/status`.
    last_resume: serde_json::Value,
    /// The journal's cursor state says a run is in progress (or was interrupted).
    marked_unclean: bool,
    /// The last recovery dropped a producer whose records' reports did not
    /// come within the settle deadline: a purge drops their reports, not
    /// requests a slow broker already holds, which may still land (see
    /// [`Forwarder::retry_delay`]).
    requests_may_land: bool,
    /// When records were last let go of unreported, by this run or, as its
    /// saved state says, an earlier one (`CursorState::requests_may_land_since_ms`):
    /// kept, and saved with every state write, until
    /// [`Tuning::stall_read_back_delay`] has passed since.
    requests_may_land_since_ms: Option<i64>,
    persisted: u64,
    /// The last cursor write was durable (the cursor read at the start is).
    persisted_durably: bool,
    /// When the offsets were last written with the cursor; `None` when they
    /// are owed (none written in this run, or a resume in progress): see
    /// [`housekeeping::OFFSETS_WRITE_INTERVAL`].
    offsets_written_at: Option<Instant>,
    /// The journal's newest seq at the last tick: unchanged over a tick, no
    /// event's commit carries a non-durable cursor write to the disk soon.
    journaled_at_last_tick: u64,
    /// Last seq handed to the producer.
    next: u64,
    /// Records handed over and reports taken since the task last yielded
    /// its worker, in the loop or a drain (see [`Tuning::records_per_poll`]).
    spent: usize,
    buffer: VecDeque<JournaledEvent>,
    /// Reads ahead of the producer; restarted from the cursor after a failure.
    reader: Option<Reader>,
    in_flight: InFlight,
    /// The failure being recovered from; cleared by the next delivery.
    failure: Option<String>,
    /// What the sink last failed to do, and when.
    last_error: Option<(String, String)>,
    /// The stall clock of `/status`: the last delivery, or the first record
    /// handed over after none were in flight, moved on by the time every
    /// broker was down since.
    awaiting_reports_since: Instant,
    /// When any record's report last came (ms of `CLOCK_BOOTTIME`: on the
    /// wall clock a step back of an hour held a stall unnoticed for the
    /// hour; restart review, 2026-12-05), in whatever order: reports are
    /// taken in journal order, so one stuck record hides the reports of
    /// those behind it from `awaiting_reports_since`. Those are stamped
    /// when the tick's walk finds them (`InFlight::notice_reports_behind`,
    /// once no report has been taken in order for a second, not while
    /// every broker is down), and by a last look before a stall is called.
    last_report_ms: Arc<AtomicU64>,
    /// The stall now on (see `readiness::stalled`), logged when it began.
    stall: readiness::StallRecord,
    /// While a stall is blamed on the cluster, or the brokers are down for
    /// a fresh client too, when to ask it again.
    next_stall_check: Instant,
    /// Since when the ticks have found the producer saying every broker is
    /// down (see `housekeeping`).
    brokers_said_down_since: Option<Instant>,
    /// When the producer was first found stuck while the brokers answer a
    /// fresh client, with no report, outage or answer from it since: a
    /// second verdict [`Tuning::wedge_confirm_after`] later replaces it.
    wedged_first: Option<Instant>,
    /// The last housekeeping tick, for the time between two of them.
    last_housekeeping: Instant,
    last_probe: Instant,
    backoff: ExponentialBackoff,
    /// Which recoveries are logged at warn (per reason, until the sink
    /// delivers again): a missing topic or an unreachable cluster is tried
    /// again after every backoff, a dozen times in the first minute.
    recoveries_logged: LogThrottle<&'static str>,
    cursor_writes_logged: LogThrottle<()>,
    /// The stall check could not read `min.insync.replicas` of topics,
    /// one entry per topic: a topic newly unknown is named at once.
    minimum_unknown_logged: LogThrottle<String>,
    /// The stall check found partitions that cannot take a record, one
    /// entry per topic.
    unwritable_logged: LogThrottle<String>,
    /// What the last stall check found unable to take a record, for the
    /// stall's reason in `/status` while the stall lasts.
    stall_blame: Option<String>,
    published: IntCounter,
    latency: Histogram,
    /// Deliveries reported behind a failed record (seq → latency in s), not
    /// counted yet: counted when the cursor passes them as found by the
    /// read-back. Counted at once, they kept `events_published` rising
    /// while one topic's failing record held the cursor for hours, and
    /// `CallrelayKafkaNotDelivering` never fired; dropped, they were never
    /// counted at all. At most twice `max_in_flight` (one let go is still
    /// counted when found, without its latency), and none that `max_size`
    /// dropped (see `keep_uncounted`); those the cursor has passed are let
    /// go at a resume's end.
    delivered_behind_failure: std::collections::BTreeMap<u64, f64>,
    producers_created: u64,
    /// The held drops the sink let go of are not counted yet (see `held_drops`).
    held_drops_untaken: bool,
    /// Since when a producer is being created, while it is.
    creating_since: Option<Instant>,
    /// The log was told that this creation is slow.
    slow_creation_said: bool,
}

impl Forwarder {
    pub fn new(
        config: KafkaConfig,
        ctx: Arc<Context>,
        tuning: Tuning,
    ) -> Result<Forwarder, StartError> {
        let stored = ctx.journal.cursor(CURSOR).map_err(StartError::Read)?;
        // Read after the cursor: it only grows, and no other run of this
        // sink writes the cursor meanwhile.
        let last_seq = ctx.journal.last_seq();
        // A stored cursor past the last seq whose correction could not be
        // written, and why.
        let mut unwritten = None;
        let cursor = match stored {
            // Not trusted as it is: the reader would wait past seqs that
            // are handed out next, so the events journaled up to it would
            // never reach Kafka, and the lag would read 0 meanwhile.
            Some(stored) if stored > last_seq => {
                // Written now, not with the first delivery: retention reads
                // the file's cursor, and a restart before a delivery (Kafka
                // down) would read the damaged one again and take the events
                // journaled meanwhile as delivered. Said once written (the
                // next try finds it corrected): a failed write fails the
                // start, which is retried.
                match ctx.journal.set_cursor_keeping_state(CURSOR, last_seq, true) {
                    Ok(()) => say_cursor_past_last_seq(&ctx, stored, last_seq),
                    // Once the file is gone no write ever lands, so a retry
                    // would hold the sink for good, against delivering what
                    // the open file holds. Nor is the write needed then:
                    // retention refuses to run, and a restart opens whatever
                    // file is at the path (a copy put back is corrected at
                    // its own start).
                    Err(error) if ctx.journal.is_file_gone() => unwritten = Some((stored, error)),
                    Err(source) => {
                        return Err(StartError::Correction {
                            stored,
                            last_seq,
                            source: Box::new(source),
                        });
                    }
                }
                last_seq
            }
            stored => stored.unwrap_or(0),
        };
        let state = match ctx.journal.cursor_state(CURSOR) {
            Ok(Some(bytes)) => Some(CursorState::decode(&bytes).unwrap_or_else(|e| {
                // Taken as an interrupted run without offsets: the tails are read.
                tracing::warn!(error = %e, "the kafka cursor's offsets are unreadable; reading back the topics' tails instead");
                CursorState::default()
            })),
            Ok(None) => None,
            Err(e) => return Err(StartError::Read(e)),
        };
        // Said once the start cannot fail any more (it is retried): a
        // correction not written is met again at each try.
        if let Some((stored, error)) = unwritten {
            say_cursor_past_last_seq(&ctx, stored, last_seq);
            tracing::warn!(
                cursor = stored,
                last_seq,
                %error,
                "kafka sink: its cursor's correction could not be written, as the journal's file is gone: it goes on from the last seq, held in memory; the file (and a copy of it put back) still holds the stored cursor, corrected again at the next start"
            );
        }
        if stored.is_some() {
            say_what_is_gone_past_the_cursor(cursor, ctx.journal.first_seq());
        }
        // A run that started (and so marked its state unclean) but did not
        // stop clean may have delivered anything after the cursor. No state
        // at all: no run of this sink ever handed a record to Kafka from
        // this journal.
        let interrupted = state.as_ref().is_some_and(|s| !s.clean);
        let resume = (last_seq > cursor && interrupted).then(|| AlreadyDelivered::new(last_seq));
        let published = ctx.metrics.events_published.with_label_values(&["kafka"]);
        let last_report_ms = Arc::new(AtomicU64::new(crate::journal::boot_ms()));
        let latency = ctx.metrics.event_latency.with_label_values(&["kafka"]);
        Ok(Forwarder {
            template: TopicTemplate::parse(config.topic.get_ref()),
            config,
            ctx,
            tuning,
            health: Arc::new(Health::default()),
            producer: None,
            topics: KnownTopics::default(),
            cursor,
            offsets_noted_on: state.as_ref().and_then(|s| s.cluster.clone()),
            requests_may_land_since_ms: state.as_ref().and_then(|s| s.requests_may_land_since_ms),
            cluster_checked: false,
            had_metadata: false,
            offsets: state.map(|s| s.offsets).unwrap_or_default(),
            offsets_seen: OffsetsSeen::default(),
            unplaced: UnplacedReports::default(),
            resume,
            last_resume: serde_json::Value::Null,
            delivered_behind_failure: Default::default(),
            marked_unclean: interrupted,
            requests_may_land: false,
            persisted: cursor,
            persisted_durably: true,
            offsets_written_at: None,
            journaled_at_last_tick: last_seq,
            next: cursor,
            spent: 0,
            buffer: VecDeque::new(),
            reader: None,
            in_flight: InFlight::new(last_report_ms.clone()),
            failure: None,
            last_error: None,
            awaiting_reports_since: Instant::now(),
            last_report_ms,
            stall: readiness::StallRecord::default(),
            next_stall_check: Instant::now(),
            brokers_said_down_since: None,
            wedged_first: None,
            last_probe: Instant::now(),
            last_housekeeping: Instant::now(),
            backoff: backoff::ExponentialBackoffBuilder::new()
                .with_initial_interval(Duration::from_millis(200))
                .with_max_interval(LONGEST_BACKOFF)
                .with_max_elapsed_time(None)
                .build(),
            recoveries_logged: LogThrottle::new(RECOVERY_LOG_INTERVAL),
            cursor_writes_logged: LogThrottle::new(CURSOR_WRITE_LOG_INTERVAL),
            minimum_unknown_logged: LogThrottle::new(MINIMUM_UNKNOWN_LOG_INTERVAL),
            unwritable_logged: LogThrottle::new(UNWRITABLE_LOG_INTERVAL),
            stall_blame: None,
            published,
            latency,
            producers_created: 0,
            held_drops_untaken: false,
            creating_since: None,
            slow_creation_said: false,
        })
    }

    /// A forwarder started after one that panicked at `at_ms` (see
    /// [`wall_ms`]): that one let go of what it had in flight unreported, and
    /// nobody knows how much, so its requests are taken as possibly still on
    /// the wire, as at a stop whose drain ran out.
    pub(super) fn after_a_panic_at(&mut self, at_ms: i64) {
        let since = self.requests_may_land_since_ms.unwrap_or(at_ms).max(at_ms);
        self.requests_may_land_since_ms = Some(since);
    }

    /// Forwards until `stop`, recovering from every failure; then drains.
    pub async fn run(mut self, stop: impl Into<super::SinkStop>) {
        let stop = stop.into();
        let cancel = stop.token().clone();
        tracing::info!(
            cursor = self.cursor,
            brokers = %self.config.brokers.get_ref(),
            topic = %self.config.topic.get_ref(),
            "kafka sink starting"
        );
        // Nothing in memory yet; what an earlier run held and `max_size`
        // dropped is lost unless it was delivered.
        self.ctx
            .kafka_held_up_to
            .store(self.cursor, Ordering::Release);
        // An error leaves the count to `pump`, which takes it before it reads on.
        let _ = self.count_held_drops_let_go().await;
        self.publish_status();
        // From now until the next clean stop, anything after the cursor may
        // be in Kafka: `persist` says so durably before a record is handed
        // over (and, should the write fail, tries again every tick).
        self.persist(false).await;
        if self.resume.is_some() && self.wait_for_requests_to_land(&cancel).await.is_none() {
            return self.shutdown(stop.reason()).await;
        }
        while !cancel.is_cancelled() {
            let Some(failure) = self.pump(&cancel).await else {
                break;
            };
            let stalled = matches!(failure, Failure::Stalled { .. });
            self.recover(failure, &cancel).await;
            let backoff = self.backoff.next_backoff().unwrap_or(LONGEST_BACKOFF);
            let delay = self.retry_delay(stalled, backoff);
            if self
                .wait_publishing(tokio::time::sleep(delay), &cancel)
                .await
                .is_none()
            {
                break;
            }
        }
        self.shutdown(stop.reason()).await;
    }

    /// Creates the producer when there is none, on the blocking pool:
    /// librdkafka reads the files its options name (`ssl.ca.location`, a
    /// CA directory, on a cold or hung mount) inside `rd_kafka_new`, which
    /// held a runtime worker at each start and each replacement of the
    /// producer. `Ok(false)`: cancelled meanwhile (a creation still running
    /// is left to finish on its thread, and its producer dropped there).
    async fn ensure_producer(&mut self, cancel: &CancellationToken) -> Result<bool, Failure> {
        if self.producer.is_some() {
            return Ok(true);
        }
        let (config, health) = (self.config.clone(), self.health.clone());
        let mut create = tokio::task::spawn_blocking(move || producer::create(&config, health));
        let began = Instant::now();
        self.creating_since = Some(began);
        let created = self.wait_publishing(&mut create, cancel).await;
        self.creating_since = None;
        let (said_slow, took_s) = (
            std::mem::take(&mut self.slow_creation_said),
            began.elapsed().as_secs(),
        );
        let producer = match created {
            Some(Ok(created)) => {
                if said_slow {
                    tracing::info!(took_s, "kafka sink: the producer's slow creation ended");
                }
                created.map_err(Failure::Create)?
            }
            Some(Err(joined)) if joined.is_panic() => {
                std::panic::resume_unwind(joined.into_panic())
            }
            // Cancelled (`None`), or by the runtime's shutdown, the only
            // other error.
            abandoned => {
                if said_slow {
                    tracing::info!(
                        took_s,
                        "kafka sink: no longer waiting for the producer's slow creation (stopping)"
                    );
                }
                if abandoned.is_none() {
                    // Not dropped with the handle: a producer made just as
                    // the cancel came would be destroyed here, on a worker
                    // (its threads joined).
                    tokio::spawn(async move {
                        if let Ok(Ok(made)) = create.await {
                            recovery::drop_off_the_workers(OwnProducer::new(made)).await;
                        }
                    });
                }
                return Ok(false);
            }
        };
        self.producers_created += 1;
        self.producer = Some(OwnProducer::new(producer));
        // Another cluster may answer at the same addresses (a name moved).
        self.cluster_checked = false;
        self.had_metadata = false;
        self.wedged_first = None;
        // A new producer: a listing that failed with the old one is tried again.
        self.topics = KnownTopics::default();
        Ok(true)
    }

    /// Forwards until cancelled (`None`) or a failure.
    async fn pump(&mut self, cancel: &CancellationToken) -> Option<Failure> {
        if self.held_drops_untaken
            && let Err(e) = self.count_held_drops_let_go().await
        {
            return Some(Failure::Journal(e));
        }
        // Before anything is handed over: a crash after a record went out
        // must find the state unclean, or the next start skips the read-back
        // and sends again what Kafka has.
        // Once the journal's file is gone no mark can be written: the sink
        // delivers on what the open file holds (a crash then re-sends from
        // the older cursor of the copy put back, at least once).
        if !self.marked_unclean {
            self.persist(false).await;
            if !self.marked_unclean && !self.ctx.journal.is_file_gone() {
                return Some(Failure::CursorWrite);
            }
        }
        match self.ensure_producer(cancel).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(f) => return Some(f),
        }
        if self.reader.is_none() {
            self.reader = Some(Reader::start(
                self.ctx.clone(),
                self.next,
                self.tuning.read_batch,
            ));
        }
        let mut tick = tokio::time::interval(self.tuning.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.budget_spent() {
                // Every `records_per_poll`, not every record: a yield is a
                // trip through the scheduler. While reports keep coming in
                // the select below takes them before it looks at the tick,
                // so the tick is looked at here too.
                self.yield_worker().await;
                if cancel.is_cancelled() {
                    return None;
                }
                if tick.tick().now_or_never().is_some() {
                    // As the select would, reports before the tick: with
                    // the budget spent on hand-overs alone, a report in but
                    // not taken started a stall check of up to 15 s.
                    if let Err(f) = self.take_reports_within_budget() {
                        return Some(f);
                    }
                    if let ControlFlow::Break(end) = self.on_tick(cancel).await {
                        return end;
                    }
                }
            }
            match self.fill(cancel).await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(f) => return Some(f),
            }
            if self.budget_spent() {
                // `fill` stopped at the budget with more to hand over: the
                // select would wait for a report or the tick first.
                continue;
            }
            let Some(reader) = self.reader.as_mut() else {
                return Some(Failure::Journal(ReadError::Stopped));
            };
            let want = self.buffer.is_empty();
            let room = self.in_flight.len() < self.tuning.max_in_flight;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                Some(report) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    // Then the reports already in, before refilling.
                    self.spent += 1;
                    if let Err(f) = self.on_report(report).and_then(|()| self.take_reports_within_budget()) {
                        return Some(f);
                    }
                }
                batch = reader.recv(), if want && room => match batch {
                    Some(Ok(events)) => self.buffer.extend(events),
                    Some(Err(e)) => return Some(Failure::Journal(e)),
                    None => return Some(Failure::Journal(ReadError::Stopped)),
                },
                _ = tick.tick() => {
                    if let ControlFlow::Break(end) = self.on_tick(cancel).await {
                        return end;
                    }
                }
            }
        }
    }

    /// The share of records handed over and reports taken since the task
    /// last yielded its worker is used up: it yields before it does more.
    fn budget_spent(&self) -> bool {
        // 0 as 1: no record at all would be handed over.
        self.spent >= self.tuning.records_per_poll.max(1)
    }

    async fn yield_worker(&mut self) {
        self.spent = 0;
        tokio::task::yield_now().await;
    }

    /// Counts a report a drain took (a recovery's, a stop's, the one after
    /// a stall or wedge check) and yields the worker once the budget is
    /// spent. A report is a futures oneshot, which tokio's coop budget does
    /// not count: the 20,000 reports of a dropped producer's purge, all in
    /// at once, were settled in one poll.
    async fn drained_one(&mut self) {
        self.spent += 1;
        if self.budget_spent() {
            self.yield_worker().await;
        }
    }

    /// The loop's tick: housekeeping, then a stall or a wedged producer to
    /// replace. `Break` ends `pump` as [`Forwarder::stall_to_replace`] says.
    async fn on_tick(&mut self, cancel: &CancellationToken) -> ControlFlow<Option<Failure>> {
        self.housekeeping().await;
        if self.stall_after_a_last_look().is_some() && Instant::now() >= self.next_stall_check {
            let check = self.stall_check();
            self.stall_to_replace(check, cancel).await
        } else {
            // No stall is called while every broker is said to be down,
            // and a producer that dropped them all says so for good: it
            // was the producer.
            self.replace_if_wedged(cancel).await
        }
    }

    /// What the cluster says of the partitions the records in flight wait
    /// on (not of every topic used lately: see `InFlight::topics_awaiting`).
    fn stall_check(&self) -> impl Future<Output = cluster::StallCheck> + use<> {
        cluster::partitions_healthy(
            self.producer.as_ref().map(OwnProducer::copy),
            self.in_flight.topics_awaiting(),
            self.config.client_config(),
        )
    }

    /// Asks the cluster (`check`) whether a stall long enough to replace the
    /// producer is the producer's. `Break` ends `pump` with the stall to
    /// recover from, or `None` when cancelled meanwhile; `Continue` goes on
    /// forwarding.
    ///
    /// The check may take [`cluster`]'s 15 s bound. It is awaited as the
    /// loop's other waits are: `/status` stays current, a stop ends it at
    /// once, and the stall clocks do not run meanwhile (no report is polled).
    /// Reports that came during it are taken after it, and the stall is the
    /// one still on then: a report that ended it keeps the producer, and
    /// with no report the stall has waited as long as before the check.
    /// A cluster to blame (or no answer) is asked again only after
    /// [`STALL_RECHECK_EVERY`], not every tick: the clocks paused by the
    /// check leave the stall on, and the next tick would ask at once.
    async fn stall_to_replace(
        &mut self,
        check: impl Future<Output = cluster::StallCheck>,
        cancel: &CancellationToken,
    ) -> ControlFlow<Option<Failure>> {
        let Some(found) = self.wait_publishing(check, cancel).await else {
            return ControlFlow::Break(None);
        };
        self.say_minimum_unknown(&found);
        self.say_unwritable(&found);
        if let Err(f) = self.take_reports_in().await {
            return ControlFlow::Break(Some(f));
        }
        if !found.healthy {
            // A partition without a leader or with fewer replicas in sync
            // than `min.insync.replicas` (or unknown, or no answer): a new
            // producer would wait as well.
            self.next_stall_check = Instant::now() + STALL_RECHECK_EVERY;
            return ControlFlow::Continue(());
        }
        // Reports behind the stuck record that came meanwhile end it too.
        match self.stall_after_a_last_look() {
            Some(f) => ControlFlow::Break(Some(f)),
            None => ControlFlow::Continue(()),
        }
    }

    /// The stall still on after a last look at the reports behind the
    /// oldest record in flight: the tick's walk of them is skipped while
    /// every broker is down, and a probe may have found one back since; a
    /// stall check takes reports only in order.
    fn stall_after_a_last_look(&mut self) -> Option<Failure> {
        self.stalled_too_long()?;
        self.in_flight.notice_reports_behind();
        self.stalled_too_long()
    }

    /// A WARN naming the under-replicated topics whose `min.insync.replicas`
    /// the stall check cannot read, each at most once per
    /// [`MINIMUM_UNKNOWN_LOG_INTERVAL`]; none when every minimum it needed
    /// was read.
    fn say_minimum_unknown(&mut self, found: &cluster::StallCheck) {
        let Some((topics, held_back)) = topics_to_name(
            &mut self.minimum_unknown_logged,
            &found.minimum_unknown,
            Instant::now(),
        ) else {
            return;
        };
        tracing::warn!(
            topics = %crate::logging::first_then_more(topics.iter(), TOPICS_NAMED),
            error = found.describe_error.as_deref(),
            held_back,
            "kafka sink: a stalled producer is kept, as the stall check cannot read \
             min.insync.replicas of these under-replicated topics and judges them by every \
             replica in sync; grant the sink DescribeConfigs on them, or wait for their \
             replicas to catch up"
        );
    }

    /// Names the partitions the stall check found unable to take a record
    /// (no leader, too few replicas in sync, an error): in a WARN, each
    /// topic at most once per [`UNWRITABLE_LOG_INTERVAL`], and in the
    /// stall's reason in `/status`. The check found them and said only "the
    /// cluster's trouble"; the operator found the brokers healthy and had
    /// no pointer to the one account's topic holding every account's
    /// events (isolation review, 2026-12-06, ninth round).
    fn say_unwritable(&mut self, found: &cluster::StallCheck) {
        let unwritable = &found.unwritable;
        self.stall_blame = (!unwritable.is_empty()).then(|| {
            format!(
                "the cluster cannot take records in {}",
                crate::logging::first_then_more(unwritable.iter(), TOPICS_NAMED)
            )
        });
        // Sets, not `Vec::contains`: thousands of per-account topics made
        // two quadratic passes on a runtime worker every recheck (review,
        // 2026-12-06, ninth round).
        let mut seen = HashSet::new();
        let topics: Vec<String> = unwritable
            .iter()
            .filter(|u| seen.insert(u.topic.as_str()))
            .map(|u| u.topic.clone())
            .collect();
        let Some((named, held_back)) =
            topics_to_name(&mut self.unwritable_logged, &topics, Instant::now())
        else {
            return;
        };
        let named_set: HashSet<&str> = named.iter().copied().collect();
        let theirs: Vec<&cluster::Unwritable> = unwritable
            .iter()
            .filter(|u| named_set.contains(u.topic.as_str()))
            .collect();
        tracing::warn!(
            // Thousands of per-account topics made one line past
            // journald's 48 KiB (review of 8aaffc1, 2026-12-06, ninth round).
            topics = %crate::logging::first_then_more(named.iter(), TOPICS_NAMED),
            partitions = %crate::logging::first_then_more(theirs.iter(), TOPICS_NAMED),
            held_back,
            "kafka sink: a stalled producer is kept, as these partitions cannot take a record \
             and a new producer would wait on them too; every account's events wait behind them"
        );
    }

    /// A stall long enough to replace the producer: records in flight, a
    /// broker reachable, and no report for `replace_stalled_after`, neither
    /// for the oldest record in flight (that clock is held while every
    /// broker is down, see `housekeeping`) nor for any other.
    fn stalled_too_long(&self) -> Option<Failure> {
        let since_any_report = Duration::from_millis(
            crate::journal::boot_ms().saturating_sub(self.last_report_ms.load(Ordering::Acquire)),
        );
        let waited = self.awaiting_reports_since.elapsed().min(since_any_report);
        (!self.in_flight.is_empty()
            && !self.health.all_brokers_down.load(Ordering::Acquire)
            && waited > self.tuning.replace_stalled_after)
            .then(|| Failure::Stalled {
                waited,
                in_flight: self.in_flight.len(),
                brokers_said_down: false,
            })
    }

    /// Hands journaled events to the producer while there is room, and
    /// until the budget since the last yield is spent.
    /// `Ok(false)` when cancelled during a wait.
    async fn fill(&mut self, cancel: &CancellationToken) -> Result<bool, Failure> {
        while self.in_flight.len() < self.tuning.max_in_flight && !self.budget_spent() {
            if self.buffer.is_empty() {
                let Some(reader) = self.reader.as_mut() else {
                    return Err(Failure::Journal(ReadError::Stopped));
                };
                match reader.try_recv() {
                    Ok(Ok(events)) => self.buffer.extend(events),
                    Ok(Err(e)) => return Err(Failure::Journal(e)),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        return Err(Failure::Journal(ReadError::Stopped));
                    }
                }
            }
            let Some(event) = self.buffer.front() else {
                break;
            };
            let rendered = self.template.render(&event.header);
            let Some(topic) = self.topics.get(&rendered) else {
                let name = rendered.into_owned();
                if !self.check_topic(name, cancel).await? {
                    return Ok(false);
                }
                // Known now: the next round sends the event.
                continue;
            };
            let (seq, received_at_ms) = (event.seq, event.received_at_ms);
            if let Some(resume) = self.resume.as_mut()
                && seq <= resume.upto()
            {
                if !resume.is_read(&topic) {
                    if !self.read_back(&topic, cancel).await? {
                        return Ok(false);
                    }
                    continue;
                }
                if let Some(at) = resume.take(
                    &topic,
                    &event.header.id,
                    seq,
                    producer::key_of(&event.header),
                ) {
                    self.hand_over(Entry {
                        seq,
                        topic,
                        received_at_ms,
                        state: State::Settled {
                            outcome: Outcome::AlreadyInKafka(at),
                            done_ms: crate::journal::now_ms(),
                        },
                    });
                    self.next = seq;
                    self.buffer.pop_front();
                    continue;
                }
            }
            let Some(producer) = self.producer.as_ref() else {
                return Err(Failure::ProducerGone);
            };
            let sent = producer
                .send_result(producer::record(event, &topic))
                .map_err(|(e, _)| e);
            let state = match sent {
                Ok(delivery) => State::Awaiting(delivery),
                Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    // librdkafka's queue is full: wait for reports.
                    if self.in_flight.is_empty() {
                        return Err(Failure::Enqueue {
                            seq,
                            topic,
                            error: e,
                        });
                    }
                    break;
                }
                Err(e) if producer::is_permanent(&e) => {
                    self.skip(seq, &topic, &e, Refuser::Client);
                    State::Settled {
                        outcome: Outcome::Skipped,
                        done_ms: crate::journal::now_ms(),
                    }
                }
                Err(e) => {
                    return Err(Failure::Enqueue {
                        seq,
                        topic,
                        error: e,
                    });
                }
            };
            self.hand_over(Entry {
                seq,
                topic,
                received_at_ms,
                state,
            });
            self.next = seq;
            self.buffer.pop_front();
        }
        Ok(true)
    }

    /// Adds a record's report to those in flight. The stall clock starts
    /// when the first one goes out: records handed over after a quiet spell
    /// or a recovery have not waited since the last delivery.
    fn hand_over(&mut self, entry: Entry) {
        if self.in_flight.is_empty() {
            self.awaiting_reports_since = Instant::now();
        }
        self.in_flight.push_back(entry);
        self.spent += 1;
    }

    fn skip(&mut self, seq: u64, topic: &str, error: &KafkaError, by: Refuser) {
        // `/status` says so too: the sink is healthy, but this event is not in Kafka.
        let shown = match by {
            Refuser::Client => {
                tracing::error!(
                    seq,
                    topic,
                    %error,
                    "kafka can never take this event (raise message.max.bytes to carry it, and every topic's max.message.bytes to at least 100 bytes above it); it stays in the journal and the sink moves past it"
                );
                // Both limits, or the topics refuse whole batches next.
                format!(
                    "seq {seq} skipped: Kafka can never take it in topic {topic} ({error}); raise message.max.bytes, and every topic's max.message.bytes to at least 100 bytes above it"
                )
            }
            // The broker holds a whole batch to the topic's limit, so small
            // events are refused with a large one: raising the client's
            // limit alone, the client-side advice, makes that worse.
            Refuser::Broker => {
                tracing::error!(
                    seq,
                    topic,
                    %error,
                    "the broker refused this event, or the batch it was sent in, as too large: the topic's max.message.bytes is below what the sink sends (keep message.max.bytes at least 100 bytes below it, or raise the topic's); it stays in the journal and the sink moves past it"
                );
                format!(
                    "seq {seq} skipped: the broker refused it, or its batch, as too large in topic {topic} ({error}); keep message.max.bytes at least 100 bytes below the topic's max.message.bytes"
                )
            }
        };
        self.last_error = Some((shown, format_time(OffsetDateTime::now_utc())));
        self.ctx
            .metrics
            .publish_errors
            .with_label_values(&["kafka", producer::reason(error)])
            .inc();
    }

    /// Every report already in, in journal order, without waiting for one:
    /// after a stall or wedge check, before its verdict. The check may take
    /// 15 s and thousands of reports may be in by then: the worker is
    /// yielded every `records_per_poll` of them, and those that come in
    /// meanwhile are taken too.
    async fn take_reports_in(&mut self) -> Result<(), Failure> {
        while let Some(Some(report)) = self.in_flight.next().now_or_never() {
            self.on_report(report)?;
            self.drained_one().await;
        }
        Ok(())
    }

    /// The reports already in, in journal order, without waiting, until the
    /// budget since the last yield is spent; the rest are taken after it
    /// yields.
    fn take_reports_within_budget(&mut self) -> Result<(), Failure> {
        while !self.budget_spent()
            && let Some(Some(report)) = self.in_flight.next().now_or_never()
        {
            self.spent += 1;
            self.on_report(report)?;
        }
        Ok(())
    }

    /// Moves the cursor over a report in journal order.
    fn on_report(&mut self, report: Report) -> Result<(), Failure> {
        match report.outcome {
            Outcome::AlreadyInKafka(at) => {
                self.cursor = report.seq;
                self.note_offset(&report.topic, at, true);
                // Counted as the cursor passes it, as a delivery is: this
                // forwarder counted nothing after its cursor, and what an
                // earlier one (before a reload, a panic restart) handed
                // over unreported went uncounted for good (Kafka sink
                // review, 2026-12-06, eighth round). The latency is known
                // only for a report this forwarder took.
                self.published.inc();
                if let Some(latency) = self.delivered_behind_failure.remove(&report.seq) {
                    self.latency.observe(latency);
                }
                // Kafka has it: after a recovery whose read-back found
                // everything, no delivery may come for hours, and the sink
                // must not stay "not delivering" with nothing left to send.
                self.recovered();
                Ok(())
            }
            Outcome::Delivered(at) => {
                self.cursor = report.seq;
                self.check_cluster();
                if self.unplaced.is_placed(&report.topic, at) {
                    self.note_offset(&report.topic, at, false);
                }
                self.delivered_behind_failure.remove(&report.seq);
                self.published.inc();
                self.latency.observe(report.latency_s());
                self.awaiting_reports_since = Instant::now();
                self.health.brokers_answer();
                // It delivers: not stuck, whatever the tick saw of the flag.
                self.wedged_first = None;
                self.recovered();
                Ok(())
            }
            Outcome::Skipped => {
                self.cursor = report.seq;
                Ok(())
            }
            Outcome::Failed(error) if producer::is_permanent(&error) => {
                self.skip(report.seq, &report.topic, &error, Refuser::Broker);
                self.cursor = report.seq;
                Ok(())
            }
            Outcome::Failed(error) => Err(Failure::Delivery {
                seq: report.seq,
                topic: report.topic,
                error,
            }),
            Outcome::Dropped => Err(Failure::ProducerGone),
        }
    }

    /// Notes where the cursor's message is in `topic`: delivered there now,
    /// or `found` there by the resume in progress, which decides the offset
    /// ([`AlreadyDelivered::offset_to_note`]).
    ///
    /// Not before the producer's cluster is checked: the offsets are still
    /// `offsets_noted_on`'s, and a position in another cluster would be
    /// saved as theirs, which a reload back to it read back from (cluster
    /// review, 2026-12-07). A producer is checked before it is dropped
    /// (`drop_producer`), so a recovery's drain notes its reports. The
    /// resume takes the offset all the same.
    fn note_offset(&mut self, topic: &Arc<str>, at: Position, found: bool) {
        let offset = match self.resume.as_mut() {
            Some(resume) => resume.offset_to_note(topic, at, found),
            None => at.offset,
        };
        if self.cluster_checked {
            self.offsets.note(topic, at.partition, offset);
        }
    }

    /// Drops the offsets if they were noted on another cluster than the
    /// producer's ([`resume::offsets_apply`]), before they are read back
    /// from or noted on, and takes the producer's cluster as theirs; once
    /// per producer. The producer has the cluster's metadata by then (a
    /// topic checked, a delivery), so its cluster id, if the brokers give
    /// one, is at hand without a wait: none means they give none, and the
    /// broker lists decide (`drop_producer` does not ask a producer that
    /// may have had no metadata).
    fn check_cluster(&mut self) {
        if self.cluster_checked {
            return;
        }
        let Some(producer) = self.producer.as_ref() else {
            return;
        };
        let id = producer.client().fetch_cluster_id(Duration::ZERO);
        let here = ClusterIdentity::new(id, self.config.brokers.get_ref());
        if !resume::offsets_apply(self.offsets_noted_on.as_ref(), &here) {
            let noted_on = self.offsets_noted_on.as_ref();
            let cluster_id = here.id.as_deref().unwrap_or("none given");
            let noted_on_cluster_id = noted_on
                .and_then(|c| c.id.as_deref())
                .unwrap_or("none given");
            let noted_on_brokers = noted_on.map_or("", |c| c.brokers.as_str());
            // At WARN: with the offsets dropped, the read-back reads the
            // tails and no longer finds partitions ending before them,
            // whose WARN said what was delivered there is gone.
            if noted_on.is_some_and(|c| c.replaced_at_the_same_brokers(&here)) {
                tracing::warn!(
                    cluster_id,
                    brokers = %here.brokers,
                    noted_on_cluster_id,
                    noted_on_brokers,
                    "kafka sink: the Kafka cluster at `brokers` is not the one the relay delivered to (another cluster id at the same addresses: a broker wiped and formatted again, or another cluster moved there), so what was delivered before may be gone from Kafka; the offsets saved with the cursor are dropped, and until deliveries here note new ones a read-back reads the partitions' last messages"
                );
            } else {
                tracing::info!(
                    cluster_id,
                    brokers = %here.brokers,
                    noted_on_cluster_id,
                    noted_on_brokers,
                    "kafka sink: the offsets saved with the cursor were noted on another Kafka cluster (`brokers` changed, or another cluster answers at them): they are dropped, and until deliveries here note new ones a read-back reads the partitions' last messages"
                );
            }
            self.offsets = DeliveredOffsets::default();
        }
        self.offsets_noted_on = Some(here);
        self.cluster_checked = true;
    }

    /// Ends the failure being recovered from, if any: an event is in Kafka.
    fn recovered(&mut self) {
        if self.failure.take().is_some() {
            tracing::info!(cursor = self.cursor, "kafka sink recovered");
            self.backoff.reset();
            // The next failure is a new incident: logged at once.
            self.recoveries_logged = LogThrottle::new(RECOVERY_LOG_INTERVAL);
        }
    }

    /// Checks (or creates) topic `name` on the broker the first time it is
    /// met. `Ok(false)` when cancelled meanwhile.
    async fn check_topic(
        &mut self,
        name: String,
        cancel: &CancellationToken,
    ) -> Result<bool, Failure> {
        let Some(producer) = self.producer.as_ref().map(OwnProducer::copy) else {
            return Err(Failure::ProducerGone);
        };
        let (create, admin) = (self.config.create_topics, self.config.client_config());
        let topic = name.clone();
        // The first check since the producer was created (or a failure
        // forgot the topics) lists the cluster's topics, unless a listing
        // failed lately: a topic per account is then one
        // request, not one each. A fixed topic gains nothing from a
        // listing of a shared cluster's thousands, and while every broker
        // is down the topic's own check is all that is asked.
        let brokers_down = self.health.all_brokers_down.load(Ordering::Acquire);
        let listing = self.topics.listing_for(&self.template, brokers_down);
        tracing::debug!(topic = %name, "kafka sink: checking the topic on the broker");
        let check = tokio::task::spawn_blocking(move || {
            let existing =
                listing.map(|template| KnownTopics::listed_blocking(&producer, &template));
            let checked = match &existing {
                Some(Ok(names)) if names.contains(&topic) => Ok(()),
                // Also after a failed listing (one too large for its
                // timeout reads as one no broker answered): the topic's
                // own check is what decides.
                _ => KnownTopics::ensure_blocking(&producer, &topic, create, &admin),
            };
            (existing, checked)
        });
        // The metadata request may take its whole timeout against a broker
        // that is down or refuses us.
        let Some(ended) = self.wait_publishing(check, cancel).await else {
            return Ok(false);
        };
        let checked = ended.map(|(existing, checked)| {
            // Only an answer about the topic: a metadata error may be no
            // answer at all (a timeout, every broker down).
            self.had_metadata |= matches!(existing, Some(Ok(_)))
                || !matches!(checked, Err(TopicError::Metadata { .. }));
            if let Some(listed) = existing {
                self.topics.take_listing(listed);
            }
            checked
        });
        match checked {
            Ok(Ok(())) => {
                self.topics.insert(name);
                Ok(true)
            }
            Ok(Err(e)) => {
                // No answer through a producer that may have dropped every
                // broker for good: with nothing in flight, the recovery
                // keeps it and this check fails again and again.
                if matches!(e, TopicError::Metadata { .. }) {
                    match self.replace_if_wedged(cancel).await {
                        ControlFlow::Break(Some(stuck)) => return Err(stuck),
                        ControlFlow::Break(None) => return Ok(false),
                        ControlFlow::Continue(()) => {}
                    }
                }
                Err(Failure::Topic(e))
            }
            // The check's task panicked: as a metadata failure, checked again after the backoff.
            Err(e) => Err(Failure::Topic(TopicError::Metadata {
                topic: name,
                reason: format!("the check failed: {e}"),
            })),
        }
    }

    /// Waits for `work` (a backoff, a topic check that may take the metadata
    /// timeout) while keeping `/status` and the lag gauge current: events
    /// keep arriving in the journal while the sink waits, and an on-call
    /// engineer watches the lag grow. What `work` gives, or `None` when
    /// cancelled first.
    async fn wait_publishing<T>(
        // `&mut`: with a shared borrow the sink's future would be `Send`
        // only if the forwarder were `Sync`, which its records in flight
        // need not be (a test's scripted report is not).
        &mut self,
        work: impl std::future::Future<Output = T>,
        cancel: &CancellationToken,
    ) -> Option<T> {
        tokio::pin!(work);
        let mut tick = tokio::time::interval(self.tuning.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return None,
                done = &mut work => {
                    // Reports that came meanwhile were not polled.
                    self.not_waiting_while(started.elapsed());
                    return Some(done);
                }
                _ = tick.tick() => self.publish_status(),
            }
        }
    }
}

/// A stored cursor past the journal's last seq, taken as the last seq.
fn say_cursor_past_last_seq(ctx: &Context, stored: u64, last_seq: u64) {
    tracing::error!(
        cursor = stored,
        last_seq,
        path = %ctx.journal.path().display(),
        "kafka sink: its stored cursor is past the journal's last seq (a damaged journal file): taken as the last seq, so the events journaled from now on reach Kafka; the events the journal holds are taken as delivered, as the cursor says, which a damaged cursor may not have been right about"
    );
}

/// A sink that starts with events between its stored cursor and the
/// journal's oldest one: they are gone and Kafka will not get them. The
/// reader steps over such a hole without a word; while `[kafka]` was out of
/// the config, retention counted what it removed as delivered, so nothing
/// else says it (restart review, 2026-12-05).
fn say_what_is_gone_past_the_cursor(cursor: u64, first_seq: u64) {
    // Once per hole: a panic restart or a reload starts the sink again
    // from the same cursor before it delivers anything.
    static SAID: std::sync::Mutex<Option<(u64, u64)>> = std::sync::Mutex::new(None);
    let mut said = SAID
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if first_seq > cursor.saturating_add(1) && *said != Some((cursor, first_seq)) {
        *said = Some((cursor, first_seq));
        tracing::warn!(
            cursor,
            first_seq,
            missing = first_seq - cursor - 1,
            "kafka sink: the journal no longer holds the events after its cursor up to its oldest one, and Kafka will not get them (removed while [kafka] was not configured, or dropped by max_size and counted then)"
        );
    }
}

/// Which of `topics` (of unknown minimum, or unable to take a record) a
/// WARN names at `now`, each admitted by `throttle` on its own, and the most
/// occurrences held back of any of them; `None` when it names none. One
/// throttle for the whole list let a topic newly listed go unnamed for as
/// long as another had been named lately.
fn topics_to_name<'a>(
    throttle: &mut LogThrottle<String>,
    topics: &'a [String],
    now: Instant,
) -> Option<(Vec<&'a str>, u64)> {
    let mut held_back = 0;
    let named: Vec<&str> = topics
        .iter()
        .filter(|topic| match throttle.admit((*topic).clone(), now) {
            Some(held) => {
                held_back = held_back.max(held);
                true
            }
            None => false,
        })
        .map(String::as_str)
        .collect();
    (!named.is_empty()).then_some((named, held_back))
}
