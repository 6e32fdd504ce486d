//! The read-back's read of one topic: from the offsets the cursor had
//! passed up to each partition's end as of now, keeping the (`ce_id`, seq)
//! of every message in the range that may have been delivered.
//!
//! Guarantees:
//! - the read is bounded: a partition is read from the offset after the one
//!   the cursor had passed (or its last [`TAIL`] messages when unknown, or
//!   when the partition now ends before that offset: the broker lost its log
//!   or the topic was recreated, so what it holds was written since), at
//!   most [`MAX_READ`] messages per topic, for as long as each [`DEADLINE`]
//!   brings a message and [`SLOW_READ_WINDOWS`] times that in all for the
//!   read itself (times the reads started with it); before it, the metadata and each partition's ends are
//!   asked one after another, with a [`DEADLINE`] each; memory holds only
//!   the pairs in the range;
//! - a read cut short says why ([`Cut`]); one that never began is an error;
//! - a partition's ends a leader election withholds for a moment (not the
//!   leader, no leader, an epoch or high watermark not settled) are asked
//!   again within the [`DEADLINE`] of that request;
//! - [`unanswered`] tells a read worth trying again (no broker answered it,
//!   a partition's leader was still moving, or one stopped answering
//!   part-way) from one taken as it is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::super::config::KafkaConfig;
use super::super::{header, producer};
use super::{Found, Position};

/// Messages read from the end of a partition the cursor state does not know.
pub const TAIL: i64 = 20_000;
/// Messages read per topic at most.
pub const MAX_READ: usize = 200_000;
/// How long the read of one topic may go without a message (or an answer
/// about a partition's ends).
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How many [`DEADLINE`]s the read of one topic may take in all while it
/// keeps bringing messages: a slow broker is read to the end rather than
/// cut at the first (and what a cut leaves unread, with what was found in
/// the partitions it cut, sent again), and delivery, held
/// meanwhile, waits at most 30 s per topic for it, after the partitions'
/// ends (which are not counted, see [`scan_blocking`]).
pub const SLOW_READ_WINDOWS: u32 = 3;

/// Why a read is worth trying again rather than taken as it is: no broker
/// answered it, or one stopped answering part-way (a broker hung mid-read
/// holds the delivery of what is read back too, so sending again at once
/// gains nothing and duplicates what the read did not reach).
pub fn unanswered(scan: &Result<Scan, ScanError>) -> Option<String> {
    match scan {
        Err(e) => e.no_broker_answered().then(|| e.to_string()),
        Ok(Scan {
            read,
            cut: Some(cut @ Cut::Stalled(_)),
            ..
        }) => Some(format!("{}, with {read} messages read", cut.describe())),
        Ok(_) => None,
    }
}

/// The (`ce_id`, seq) pairs read from one topic.
#[derive(Debug, Default)]
pub struct Scan {
    pub found: Found,
    pub read: usize,
    /// What stopped the read before the end, if anything did.
    pub cut: Option<Cut>,
    /// The partitions a cut read did not reach the end of: what
    /// lies past the cut there is unknown (see
    /// [`super::AlreadyDelivered::add`]). Empty without a cut, and when the
    /// read was stopped while it asked for the partitions' ends (it found
    /// nothing then).
    pub unfinished: BTreeSet<i32>,
    /// Errors reaching a broker the read went on past (see `scan_blocking`).
    pub unreachable: u64,
}

/// Why a read-back stopped before the end of every partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// It read [`MAX_READ`] messages.
    MaxRead,
    /// The read took its whole time ([`SLOW_READ_WINDOWS`] ×
    /// [`DEADLINE`] unless tuned, times the reads at once beside it) while
    /// messages kept coming: the broker answered slowly.
    Deadline(Duration),
    /// No message came for [`DEADLINE`] (unless tuned) after some had: the
    /// broker stopped answering mid-read (one that read nothing at all is
    /// [`ScanError::NothingFetched`]).
    Stalled(Duration),
    /// The sink was stopping.
    Stopped,
}

impl Cut {
    pub(super) fn label(self) -> &'static str {
        match self {
            Cut::MaxRead => "max_read",
            Cut::Deadline(_) => "deadline",
            Cut::Stalled(_) => "stalled",
            Cut::Stopped => "stopping",
        }
    }

    pub(super) fn describe(self) -> String {
        match self {
            Cut::MaxRead => format!("the read-back reached its bound of {MAX_READ} messages"),
            Cut::Deadline(within) => format!(
                "the read-back timed out after {} s (the broker answered slowly)",
                within.as_secs_f32()
            ),
            Cut::Stalled(within) => format!(
                "the read-back got no message for {} s (the broker stopped answering mid-read)",
                within.as_secs_f32()
            ),
            Cut::Stopped => "the read-back was stopped (the sink is stopping)".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot create a consumer: {0}")]
    Create(producer::CreateError),
    #[error("cannot read metadata: {0}")]
    Metadata(KafkaError),
    #[error("the topic does not exist or has no partitions")]
    NoPartitions,
    #[error("cannot read the watermarks of partition {partition}: {error}")]
    Watermarks { partition: i32, error: KafkaError },
    #[error("cannot read: {0}")]
    Read(KafkaError),
    /// The metadata and the partitions' ends were read, then no message
    /// came before the deadline: the broker answers fetches with errors it
    /// retries (not the leader, not available) or not at all, as one
    /// restarted under load can for minutes (combined-faults audit,
    /// 2026-12-01).
    #[error("no message could be read in {} s{}", .0.as_secs_f32(), unreachable_note(.1))]
    NothingFetched(Duration, Option<String>),
    #[error("the read-back task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ScanError {
    /// No broker answered: down, cut off, hung (a timeout), or not resolved;
    /// or a partition's leader was still moving when its ends were asked.
    /// Nothing can be delivered then either, so the read-back is worth
    /// trying again rather than sending everything after the cursor again.
    pub fn no_broker_answered(&self) -> bool {
        let error = match self {
            ScanError::NothingFetched(..) => return true,
            ScanError::Metadata(e) | ScanError::Read(e) => e,
            ScanError::Watermarks { error, .. } => {
                return is_about_reaching_a_broker(error) || is_about_a_moving_leader(error);
            }
            _ => return false,
        };
        is_about_reaching_a_broker(error)
    }
}

/// The last error reaching a broker, said after a read that got nothing.
fn unreachable_note(error: &Option<String>) -> String {
    error
        .as_deref()
        .map(|e| format!(" (a broker could not be reached: {e})"))
        .unwrap_or_default()
}

/// An error about reaching a broker (down, cut off, hung, not resolved),
/// not about the topic or the read.
fn is_about_reaching_a_broker(error: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::Resolve
                | C::OperationTimedOut
                | C::RequestTimedOut
                | C::NetworkException
        )
    )
}

/// An error a partition's leader election gives for a moment (a rolling
/// restart of the brokers moves leaders for minutes): librdkafka retries
/// none of them for a partition's ends (it refreshes the leader and
/// returns the error), and taken as an answer each sent everything after
/// the cursor in the topic again. `OffsetNotAvailable` is a new leader's
/// high watermark not yet caught up with what the old one acknowledged
/// (Kafka 2.2 and later, KIP-207): the end it would give is too low.
fn is_about_a_moving_leader(error: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::ReplicaNotAvailable
                | C::KafkaStorageError
                | C::OffsetNotAvailable
                | C::FencedLeaderEpoch
                | C::UnknownLeaderEpoch
        )
    )
}

/// How long to wait before asking a partition's ends again while its
/// leader moves: librdkafka refreshes the metadata meanwhile.
const LEADER_MOVE_PAUSE: Duration = Duration::from_millis(100);

/// A partition's `(low, high)` offsets, asked again while its leader moves
/// (see [`is_about_a_moving_leader`]) for up to `within` in all, until
/// `stop`.
fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    within: Duration,
    stop: &CancellationToken,
) -> Result<(i64, i64), KafkaError> {
    // In a span: the asking's own debug lines name the partition too.
    let span = tracing::debug_span!("kafka read-back ends", topic, partition);
    span.in_scope(|| {
        asked_while_the_leader_moves(within, stop, |left| {
            consumer.fetch_watermarks(topic, partition, left)
        })
    })
    .inspect_err(|e| tracing::debug!(topic, partition, error = %e, "kafka read-back: a partition's ends were not given"))
}

/// `ask` (given the time left) until it answers other than a leader's move,
/// `within` in all, until `stop`. The last try keeps a pause's time at
/// least: with none left, librdkafka answers "timed out" at once, and the
/// read-back's WARN named that rather than the leader's move; a timeout
/// after a move is reported as the move (also when the broker hung after
/// it: the read is tried again either way).
fn asked_while_the_leader_moves<T>(
    within: Duration,
    stop: &CancellationToken,
    mut ask: impl FnMut(Duration) -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let until = Instant::now() + within;
    let left = || until.saturating_duration_since(Instant::now());
    let mut moving = None;
    loop {
        match ask(left()) {
            // What is left after the refusal: a slow one (a metadata
            // refresh mid-restart) may have taken most of it.
            Err(e)
                if is_about_a_moving_leader(&e)
                    && left() > 2 * LEADER_MOVE_PAUSE
                    && !stop.is_cancelled() =>
            {
                tracing::debug!(error = %e, "kafka read-back: a partition's leader is moving; asking its ends again");
                moving = Some(e);
                std::thread::sleep(LEADER_MOVE_PAUSE);
            }
            Err(e)
                if e.rdkafka_error_code()
                    == Some(rdkafka::error::RDKafkaErrorCode::OperationTimedOut) =>
            {
                return Err(moving.unwrap_or(e));
            }
            answer => return answer,
        }
    }
}

/// An error about the read-back's consumer group, which the read never uses
/// (no join, no commit): its coordinator refused the principal, or is not
/// found or not ready.
fn is_about_the_unused_group(error: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::GroupAuthorizationFailed
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::CoordinatorLoadInProgress
        )
    )
}

/// librdkafka's logs of a short-lived client (this read-back's consumer,
/// the topic preflight's, the stall check's and the topic creation's admin
/// clients): the settings
/// of another client type it ignores ("is a producer property") are
/// expected, and a broker that is down is the sink's to report, so nothing
/// above debug. What they quote of a secret option is `***`, as in the
/// producer's lines: at debug too, a secret never reaches the log.
pub(crate) struct QuietContext {
    secrets: Vec<String>,
}

impl QuietContext {
    /// The context of a client made from `settings`. Each value through
    /// `get`: `config_map` shows some sensitive ones as a placeholder.
    pub(crate) fn of(settings: &rdkafka::ClientConfig) -> QuietContext {
        let keys = settings.config_map().into_keys();
        let options = keys.filter_map(|key| settings.get(key).map(|value| (key, value)));
        QuietContext {
            secrets: super::super::config::secret_pieces(options),
        }
    }

    /// A client made from `settings` with its context; librdkafka's refusal
    /// masked of the settings' secrets, as the producer's is.
    pub(crate) fn create<T>(settings: &rdkafka::ClientConfig) -> Result<T, producer::CreateError>
    where
        T: rdkafka::config::FromClientConfigAndContext<QuietContext>,
    {
        let context = QuietContext::of(settings);
        let secrets = context.secrets.clone();
        settings
            .create_with_context(context)
            .map_err(|refused| producer::CreateError::new(&refused, &secrets))
    }
}

impl ClientContext for QuietContext {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, message: &str) {
        // Not redacted for nothing: with debug off (the service's level)
        // every line is dropped, and a broker outage brings many.
        if !tracing::enabled!(target: "librdkafka", tracing::Level::DEBUG) {
            return;
        }
        let message = producer::redacted(message, &self.secrets);
        tracing::debug!(target: "librdkafka", fac, "short-lived client: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if !tracing::enabled!(target: "librdkafka", tracing::Level::DEBUG) {
            return;
        }
        let error = error.to_string();
        let error = producer::redacted(&error, &self.secrets);
        let reason = producer::redacted(reason, &self.secrets);
        tracing::debug!(target: "librdkafka", %error, "short-lived client: {reason}");
    }
}

impl ConsumerContext for QuietContext {}

/// The seq in a CloudEvent value (its other members are skipped unparsed).
#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// Where a partition with offsets `low..high` is read from, given the offset
/// of the last message the cursor passed there (if known). A partition that
/// ends at or before that offset is not the one the offset came from (an
/// emptied broker, a recreated topic): its messages were all written since,
/// possibly by a producer dropped with records in flight, so its tail is
/// read; starting past its end would find none of them and send them twice.
fn read_start(passed: Option<i64>, low: i64, high: i64) -> i64 {
    match passed {
        Some(passed) if passed < high => passed.saturating_add(1).max(low),
        _ => high.saturating_sub(TAIL).max(low),
    }
}

/// When a read-back stops: `within` after its start or its last message, and
/// `windows` × `within` after its start in all ([`SLOW_READ_WINDOWS`] for a
/// read alone, that many for each read at once beside it).
#[derive(Clone, Copy, Debug)]
struct Deadlines {
    started: Instant,
    within: Duration,
    windows: u32,
    last_message: Instant,
}

/// Which of the [`Deadlines`] passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expired {
    /// No message for `within`.
    Quiet,
    /// The whole read's time.
    Whole,
}

impl Deadlines {
    /// The deadlines of a read that is one of `reads_at_once` sharing the
    /// brokers and the machine: its whole bound is what they would have had
    /// one after another, so that reading them at once cuts none short that
    /// alone would have been read whole.
    fn sharing(now: Instant, within: Duration, reads_at_once: usize) -> Deadlines {
        let reads = u32::try_from(reads_at_once.max(1)).unwrap_or(u32::MAX);
        Deadlines {
            started: now,
            within,
            windows: SLOW_READ_WINDOWS.saturating_mul(reads),
            last_message: now,
        }
    }

    fn whole(&self) -> Duration {
        self.within.saturating_mul(self.windows)
    }

    fn next(&self) -> Instant {
        (self.last_message + self.within).min(self.started + self.whole())
    }

    /// How long a call may wait at `now`.
    fn left(&self, now: Instant) -> Duration {
        self.next().saturating_duration_since(now)
    }

    fn expired(&self, now: Instant) -> Option<Expired> {
        if now >= self.started + self.whole() {
            Some(Expired::Whole)
        } else if now >= self.last_message + self.within {
            Some(Expired::Quiet)
        } else {
            None
        }
    }

    fn message_at(&mut self, now: Instant) {
        self.last_message = now;
    }
}

/// Reads `topic` from the offsets in `from` (the last 20,000 messages of a
/// partition it does not name) up to each partition's end as of now,
/// keeping the `ce_id` and seq of every message whose seq is in `seqs`.
/// Stops early (`cut`) when `stop` is cancelled, when no message came for
/// `within`, or after [`SLOW_READ_WINDOWS`] × `within` of reading, times
/// `reads_at_once`, the reads started together with this one (see
/// [`Deadlines::sharing`]). The
/// metadata and the partitions' ends, asked one by one before the read,
/// have `within` each and are not counted in that bound (so they take up
/// to partitions × `within`): a topic of many partitions on a slow link
/// would otherwise spend the whole bound on them, and never be read.
/// Blocking.
pub fn scan_blocking(
    config: &KafkaConfig,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    seqs: RangeInclusive<u64>,
    stop: &CancellationToken,
    within: Duration,
    reads_at_once: usize,
) -> Result<Scan, ScanError> {
    let settings = config.read_back_client_config();
    let consumer: BaseConsumer<QuietContext> =
        QuietContext::create(&settings).map_err(ScanError::Create)?;
    // Before the read, each request has `within` to itself: `within`
    // bounds a broker's silence, and every answer is progress. Under the
    // read's whole bound, the ends of a topic of a hundred partitions
    // behind a slow link were cut at 30 s from the start, the partitions
    // left got a timeout of 0, and that timeout, taken for a broker that did
    // not answer, failed every try (Kafka sink review, 2026-12-06).
    let metadata = consumer
        .fetch_metadata(Some(topic), within)
        .map_err(ScanError::Metadata)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(ScanError::NoPartitions);
    }
    let mut assignment = TopicPartitionList::new();
    let mut end_of: HashMap<i32, i64> = HashMap::new();
    for partition in partitions {
        // Not bounded in all, so a stop must not wait for every partition.
        if stop.is_cancelled() {
            return Ok(Scan {
                cut: Some(Cut::Stopped),
                ..Scan::default()
            });
        }
        let (low, high) = watermarks(&consumer, topic, partition, within, stop)
            .map_err(|error| ScanError::Watermarks { partition, error })?;
        let passed = from.get(&partition).copied();
        if let Some(passed) = passed.filter(|&passed| passed >= high) {
            tracing::warn!(
                topic,
                partition,
                delivered_offset = passed,
                end_offset = high,
                "a Kafka partition ends before a message the relay had delivered to it: the broker lost its log or the topic was recreated, and what was delivered there before is gone from Kafka; reading back what it holds now"
            );
        }
        let start = read_start(passed, low, high);
        if start < high {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(ScanError::Read)?;
            end_of.insert(partition, high);
        }
    }
    let mut scan = Scan::default();
    // The last error reaching a broker the read went on past.
    let mut last_unreachable = None;
    if end_of.is_empty() {
        return Ok(scan);
    }
    let mut deadlines = Deadlines::sharing(Instant::now(), within, reads_at_once);
    consumer.assign(&assignment).map_err(ScanError::Read)?;
    while !end_of.is_empty() {
        let expired = deadlines.expired(Instant::now());
        if expired.is_some() && scan.read == 0 {
            // Not a read cut short but one that never began: tried again
            // like an unanswered metadata request, rather than every
            // pending event being sent again at once (fault-injection
            // round, 2026-12-03).
            return Err(ScanError::NothingFetched(within, last_unreachable));
        }
        scan.cut = if scan.read >= MAX_READ {
            Some(Cut::MaxRead)
        } else if let Some(expired) = expired {
            Some(match expired {
                Expired::Whole => Cut::Deadline(deadlines.whole()),
                Expired::Quiet => Cut::Stalled(within),
            })
        } else if stop.is_cancelled() {
            Some(Cut::Stopped)
        } else {
            None
        };
        if scan.cut.is_some() {
            scan.unfinished = end_of.keys().copied().collect();
            break;
        }
        let wait = deadlines
            .left(Instant::now())
            .min(Duration::from_millis(200));
        let message = match consumer.poll(wait) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                end_of.remove(&partition);
                continue;
            }
            // librdkafka hands every client error to the consumer's poll,
            // one broker of the list refusing its connection among them:
            // the read goes on through the others, within its deadlines
            // (which still end a read no broker answers). It ended here,
            // and with one broker of a cluster down every read-back failed
            // and everything after the cursor was sent again.
            Some(Err(e)) if is_about_reaching_a_broker(&e) => {
                tracing::debug!(error = %e, "kafka read-back: a broker could not be reached; reading on");
                scan.unreachable += 1;
                last_unreachable = Some(e.to_string());
                continue;
            }
            // The group is librdkafka's need (an assigned consumer has one),
            // not the read's: it is never joined, yet librdkafka looks up
            // its coordinator, and a principal with READ on the topic alone
            // is refused. The read ended here, and on a cluster with ACLs
            // every read-back failed and everything after the cursor was
            // sent again.
            Some(Err(e)) if is_about_the_unused_group(&e) => {
                tracing::debug!(error = %e, "kafka read-back: its group's coordinator refused or not found (the read does not use it); reading on");
                continue;
            }
            Some(Err(e)) => return Err(ScanError::Read(e)),
            Some(Ok(m)) => m,
        };
        deadlines.message_at(Instant::now());
        scan.read += 1;
        let at = Position {
            partition: message.partition(),
            offset: message.offset(),
        };
        let id = header::value_of(&message, producer::ID_HEADER)
            .and_then(|v| std::str::from_utf8(v).ok());
        let seq = message
            .payload()
            .and_then(|v| serde_json::from_slice::<SeqOnly>(v).ok())
            .map(|v| v.seq);
        // Only the range matters: memory stays bounded by the events that
        // may be skipped, whatever else the topic holds.
        if let (Some(id), Some(seq)) = (id, seq)
            && seqs.contains(&seq)
        {
            // A later copy (sent again) replaces an earlier one: the order of
            // the last copies is what `AlreadyDelivered::take` checks.
            scan.found.insert((id.to_owned(), seq), at);
        }
        if end_of
            .get(&at.partition)
            // Not `offset + 1`: a broker's offset is its to choose, and at
            // i64::MAX the add would overflow (a panic in a debug build).
            .is_some_and(|&end| at.offset >= end.saturating_sub(1))
        {
            end_of.remove(&at.partition);
        }
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_back_is_tried_again_only_when_no_broker_answered() {
        use rdkafka::error::RDKafkaErrorCode as C;
        let unanswered = [
            ScanError::Metadata(KafkaError::MetadataFetch(C::AllBrokersDown)),
            ScanError::Read(KafkaError::MessageConsumption(C::OperationTimedOut)),
            ScanError::NothingFetched(DEADLINE, None),
            ScanError::Watermarks {
                partition: 2,
                error: KafkaError::MetadataFetch(C::BrokerTransportFailure),
            },
        ];
        for error in &unanswered {
            assert!(error.no_broker_answered(), "{error}");
        }
        // A read that got nothing says which broker error it read past.
        let past = ScanError::NothingFetched(DEADLINE, Some("Connection refused".into()));
        assert!(past.no_broker_answered());
        assert!(
            past.to_string()
                .ends_with("(a broker could not be reached: Connection refused)"),
            "{past}"
        );
        // A partition's leader moving (a rolling restart) was taken as an
        // answer, and everything after the cursor in the topic sent again.
        for code in [
            C::NotLeaderForPartition,
            C::LeaderNotAvailable,
            C::OffsetNotAvailable,
            C::FencedLeaderEpoch,
            C::UnknownLeaderEpoch,
        ] {
            let moving = ScanError::Watermarks {
                partition: 0,
                error: KafkaError::MetadataFetch(code),
            };
            assert!(moving.no_broker_answered(), "{moving}");
        }
        let answered = [
            ScanError::Metadata(KafkaError::MetadataFetch(C::TopicAuthorizationFailed)),
            ScanError::Read(KafkaError::MessageConsumption(C::UnknownTopicOrPartition)),
            ScanError::Watermarks {
                partition: 0,
                error: KafkaError::MetadataFetch(C::UnknownTopicOrPartition),
            },
            ScanError::NoPartitions,
        ];
        for error in &answered {
            assert!(!error.no_broker_answered(), "{error}");
        }
        let labels = [
            Cut::MaxRead,
            Cut::Deadline(DEADLINE),
            Cut::Stalled(DEADLINE),
            Cut::Stopped,
        ]
        .map(Cut::label);
        assert_eq!(labels, ["max_read", "deadline", "stalled", "stopping"]);
    }

    /// A broker that answers metadata and list-offsets requests but fails
    /// every fetch with an error librdkafka retries (a restarted broker
    /// not yet leading its partitions) gave a read cut at the deadline
    /// with nothing read, and every pending event was sent again; it is an
    /// unanswered read now, and the same read succeeds once fetches do.
    #[test]
    fn a_read_back_whose_fetches_all_fail_is_unanswered_not_cut_short() {
        use rdkafka::producer::BaseRecord;
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

        use crate::sinks::kafka::tests_support::{flushed, mock_topic};

        let (mock, producer, config) = mock_topic("relay.events");
        let record = BaseRecord::<(), _>::to("relay.events").payload(r#"{"seq":1}"#);
        producer.send(record).unwrap();
        flushed(&producer);
        let scan = || {
            let from = BTreeMap::new();
            let stop = CancellationToken::new();
            let within = Duration::from_secs(2);
            scan_blocking(&config, "relay.events", &from, 1..=1, &stop, within, 1)
        };

        let refused = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 1000];
        mock.request_errors(RDKafkaApiKey::Fetch, &refused);
        let error = scan().unwrap_err();
        assert!(matches!(error, ScanError::NothingFetched(..)), "{error}");
        assert!(error.no_broker_answered());
        assert_eq!(error.to_string(), "no message could be read in 2 s");

        mock.clear_request_errors(RDKafkaApiKey::Fetch);
        let read = scan().unwrap();
        assert_eq!((read.read, read.found.len(), read.cut), (1, 0, None));
    }

    /// A partition's leader moving while its ends are asked (a rolling
    /// restart of the brokers): the ends are asked again and the read goes
    /// on. The first refusal ended the read-back, and everything after the
    /// cursor in the topic was sent again (Kafka sink review, 2026-12-06,
    /// eighth round).
    #[test]
    fn a_read_back_asks_again_for_the_ends_of_a_partition_whose_leader_moves() {
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr as E};

        use crate::sinks::kafka::tests_support::mock_topic;

        let (mock, producer, config) = mock_topic("relay.events");
        one_event_on_the_broker(&producer);
        // Errors librdkafka hands back without retrying them itself: one it
        // retries (LEADER_NOT_AVAILABLE, the leader epochs) came back, in
        // some runs, as a wrong low offset from the mock cluster (1 of 1),
        // and the read found nothing.
        mock.request_errors(
            RDKafkaApiKey::ListOffsets,
            &[
                E::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                E::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                E::RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE,
                E::RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE,
            ],
        );
        the_one_event_is_read_and_found(&config);
    }

    /// A read-back of seq 1 on `relay.events` within 10 s reads the one
    /// event there and finds it, the read whole.
    fn the_one_event_is_read_and_found(config: &KafkaConfig) {
        let scan = scan_blocking(
            config,
            "relay.events",
            &BTreeMap::new(),
            1..=1,
            &CancellationToken::new(),
            Duration::from_secs(10),
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((scan.read, scan.found.len(), scan.cut), (1, 1, None));
    }

    /// The read-back's consumer librdkafka will not create (a property this
    /// build has not, OIDC's client secret) was said with rust-rdkafka's
    /// error, which quotes the value: in the WARN and `/status`.
    #[test]
    fn a_read_back_consumer_librdkafka_will_not_create_is_said_with_its_secret_masked() {
        const SECRET: &str = "Zq1 Xw2 Vb3 Nm4";
        let config: KafkaConfig = toml::from_str(&format!(
            "brokers = \"127.0.0.1:9092\"\n[options]\n\"sasl.oauthbearer.client.secret\" = \"{SECRET}\""
        ))
        .unwrap();
        let refused = scan_blocking(
            &config,
            "t",
            &BTreeMap::new(),
            1..=1,
            &CancellationToken::new(),
            Duration::from_secs(1),
            1,
        );
        let Err(refused @ ScanError::Create(_)) = refused else {
            panic!("not refused at its creation: {refused:?}");
        };
        let said = refused.to_string();
        assert!(
            said.contains("sasl.oauthbearer.client.secret") && said.contains("***"),
            "{said}"
        );
        for word in SECRET.split(' ') {
            assert!(!said.contains(word), "{said}");
        }
    }

    /// The read-back's, preflight's, stall check's and topic creation's
    /// clients logged librdkafka's lines unredacted (at debug): a line
    /// quoting a secret option's value shows it as `***` now, as the
    /// producer's lines do, a broker's name and a key file's path as they
    /// are.
    #[test]
    fn a_short_lived_clients_lines_show_no_secret_option() {
        let mut settings = rdkafka::ClientConfig::new();
        settings
            .set("bootstrap.servers", "kafka-1:9092")
            .set("sasl.password", "hunter2-secret")
            .set("ssl.key.location", "/etc/kafka/creds/key.pem");
        let quiet = QuietContext::of(&settings);
        let line = "sasl.password=\"hunter2-secret\" refused by kafka-1:9092 (key /etc/kafka/creds/key.pem)";
        // Through the context's own log and error, captured at debug (the
        // level they log at; the usual capture keeps info and above).
        crate::logging::tests_support::interest_in_every_callsite();
        let captured = crate::logging::tests_support::Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            quiet.log(RDKafkaLogLevel::Error, "SASL", line);
            quiet.error(KafkaError::ClientCreation(line.to_owned()), line);
        });
        let shown = captured.text();
        assert_eq!(shown.lines().count(), 2, "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        assert!(
            shown.contains("kafka-1:9092") && shown.contains("/etc/kafka/creds/key.pem"),
            "{shown}"
        );
    }

    /// Scripted answers: refusals of a moving leader are asked again, a
    /// timeout after one is reported as the move, a timeout alone as the
    /// timeout, and a stop ends the asking at the refusal.
    #[test]
    fn a_moving_leader_is_asked_again_and_named_when_the_last_try_times_out() {
        use rdkafka::error::RDKafkaErrorCode as C;
        let error = |code| KafkaError::MetadataFetch(code);
        let scripted = |answers: Vec<Result<i64, KafkaError>>, stop: &CancellationToken| {
            let mut answers = answers.into_iter();
            let mut asked = 0;
            let answer = asked_while_the_leader_moves(Duration::from_secs(10), stop, |_| {
                asked += 1;
                answers.next().unwrap_or(Ok(0))
            });
            (answer, asked)
        };
        let running = CancellationToken::new();
        let moved = vec![Err(error(C::NotLeaderForPartition)), Ok(7)];
        assert_eq!(scripted(moved, &running), (Ok(7), 2));

        let cut_short = vec![
            Err(error(C::NotLeaderForPartition)),
            Err(error(C::OperationTimedOut)),
        ];
        let (answer, asked) = scripted(cut_short, &running);
        assert_eq!(asked, 2);
        assert_eq!(
            answer.unwrap_err().rdkafka_error_code(),
            Some(C::NotLeaderForPartition)
        );

        let hung = vec![Err(error(C::OperationTimedOut))];
        let (answer, asked) = scripted(hung, &running);
        assert_eq!(asked, 1);
        assert_eq!(
            answer.unwrap_err().rdkafka_error_code(),
            Some(C::OperationTimedOut)
        );

        let stopped = CancellationToken::new();
        stopped.cancel();
        let (answer, asked) = scripted(vec![Err(error(C::NotLeaderForPartition))], &stopped);
        assert_eq!(asked, 1);
        assert_eq!(
            answer.unwrap_err().rdkafka_error_code(),
            Some(C::NotLeaderForPartition)
        );
    }

    /// Event seq 1, id `an-id`, on the broker's `relay.events`.
    fn one_event_on_the_broker(producer: &rdkafka::producer::BaseProducer) {
        use rdkafka::producer::BaseRecord;
        let record = BaseRecord::<(), _>::to("relay.events")
            .payload(r#"{"seq":1}"#)
            .headers(
                rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                    key: "ce_id",
                    value: Some("an-id"),
                }),
            );
        producer.send(record).unwrap();
        crate::sinks::kafka::tests_support::flushed(producer);
    }

    /// One broker of the list down (here a port nothing listens on) while
    /// another holds the topic: the read goes through the one that answers.
    /// librdkafka hands the dead broker's connection error to the poll, and
    /// the read ended on it, so with one broker of a cluster down every
    /// read-back failed and everything after the cursor was sent again.
    /// librdkafka picks the broker it tries first at random: several reads.
    #[test]
    fn a_read_back_goes_on_past_a_broker_of_the_list_that_is_down() {
        use crate::sinks::kafka::tests_support::mock_topic;

        let (mock, producer, _) = mock_topic("relay.events");
        one_event_on_the_broker(&producer);
        // Port 1: nothing listens there, and no other test can take it.
        let config: KafkaConfig = toml::from_str(&format!(
            "brokers = \"127.0.0.1:1,{}\"",
            mock.bootstrap_servers()
        ))
        .unwrap();
        // Until one read meets the dead broker: with 8 reads, all picked
        // the live one first in 1 run of 256.
        let mut unreachable = 0;
        for attempt in 0..32 {
            if unreachable > 0 {
                break;
            }
            let from = BTreeMap::new();
            let stop = CancellationToken::new();
            let scan = scan_blocking(
                &config,
                "relay.events",
                &from,
                1..=1,
                &stop,
                Duration::from_secs(10),
                1,
            )
            .unwrap_or_else(|e| panic!("read {attempt}: {e}"));
            assert_eq!(
                (scan.read, scan.found.len(), scan.cut),
                (1, 1, None),
                "read {attempt}"
            );
            unreachable += scan.unreachable;
        }
        // The dead broker was met, and read past.
        assert!(unreachable > 0, "no read met the broker that is down");
    }

    /// A principal granted READ on the topic and nothing on the read-back's
    /// group: the group is never joined, but librdkafka looks up its
    /// coordinator anyway and hands the broker's refusal to the poll. The
    /// read ended on it, so on a cluster with ACLs set as the docs said
    /// every read-back failed and everything after the cursor was sent
    /// again (Kafka docs review, 2026-12-05).
    #[test]
    fn a_read_back_goes_on_past_a_refusal_of_its_unused_group() {
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

        use crate::sinks::kafka::tests_support::mock_topic;

        let (mock, producer, config) = mock_topic("relay.events");
        one_event_on_the_broker(&producer);
        mock.request_errors(
            RDKafkaApiKey::FindCoordinator,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 50],
        );
        the_one_event_is_read_and_found(&config);
    }

    /// Which reads are tried again: none answered, or stopped part-way;
    /// a read that ended, hit its bounds or was stopped is taken as it is.
    #[test]
    fn reads_no_broker_answered_or_one_stopped_answering_are_tried_again() {
        let within = Duration::from_secs(10);
        let cut = |cut| {
            Ok(Scan {
                found: Found::default(),
                read: 7,
                cut,
                unfinished: BTreeSet::new(),
                unreachable: 0,
            })
        };
        assert_eq!(
            unanswered(&cut(Some(Cut::Stalled(within)))).as_deref(),
            Some(
                "the read-back got no message for 10 s (the broker stopped answering mid-read), with 7 messages read"
            )
        );
        for taken in [
            None,
            Some(Cut::Deadline(within)),
            Some(Cut::MaxRead),
            Some(Cut::Stopped),
        ] {
            assert_eq!(unanswered(&cut(taken)), None, "{taken:?}");
        }
        assert_eq!(
            unanswered(&Err(ScanError::NothingFetched(within, None))).as_deref(),
            Some("no message could be read in 10 s")
        );
        assert_eq!(unanswered(&Err(ScanError::NoPartitions)), None);
    }

    /// A read-back stops when no message came for its deadline, or after
    /// three of them in all however fast the messages come; it used to
    /// stop after one in all, a slow broker's read with it.
    #[test]
    fn a_read_back_goes_on_while_messages_come_within_its_bounds() {
        let start = Instant::now();
        let within = Duration::from_secs(10);
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut deadlines = Deadlines::sharing(start, within, 1);
        assert_eq!(deadlines.expired(at(9)), None);
        assert_eq!(deadlines.left(at(4)), Duration::from_secs(6));
        assert_eq!(deadlines.expired(at(10)), Some(Expired::Quiet));

        deadlines.message_at(at(8));
        assert_eq!(deadlines.expired(at(17)), None, "10 s from the message");
        assert_eq!(deadlines.left(at(12)), Duration::from_secs(6));
        assert_eq!(deadlines.expired(at(18)), Some(Expired::Quiet));
        let beside_three = Deadlines::sharing(start, within, 3);
        assert_eq!(beside_three.whole(), 3 * SLOW_READ_WINDOWS * within);

        deadlines.message_at(at(25));
        assert_eq!(
            deadlines.left(at(25)),
            Duration::from_secs(5),
            "30 s in all"
        );
        assert_eq!(deadlines.expired(at(29)), None);
        assert_eq!(deadlines.expired(at(30)), Some(Expired::Whole));
        assert_eq!(deadlines.whole(), Duration::from_secs(30));
    }

    /// Settings that have the mock broker answer a fetch with one batch.
    fn one_batch_per_fetch(mock: &crate::sinks::kafka::tests_support::Mock) -> KafkaConfig {
        toml::from_str(&format!(
            "brokers = \"{}\"\n[options]\n\"fetch.message.max.bytes\" = \"1\"",
            mock.bootstrap_servers()
        ))
        .unwrap()
    }

    /// A broker that answers every fetch, one message a time, slower than
    /// a read-back's deadline in all: the read goes on to the end. It was
    /// cut at the deadline and what it had not reached sent again.
    #[test]
    fn a_slow_broker_is_read_back_to_the_end() {
        use rdkafka::producer::BaseRecord;

        use crate::sinks::kafka::tests_support::{flushed, mock_topic};

        let (mock, producer, _) = mock_topic("relay.events");
        const SENT: u64 = 24;
        // One batch each: the mock broker answers a fetch with one.
        for seq in 1..=SENT {
            let payload = format!(r#"{{"seq":{seq}}}"#);
            let record = BaseRecord::<(), _>::to("relay.events").payload(&payload);
            producer.send(record).unwrap();
            flushed(&producer);
        }
        let config = one_batch_per_fetch(&mock);
        let rtt = Duration::from_millis(150);
        mock.broker_round_trip_time(1, rtt).unwrap();
        let within = Duration::from_millis(2500);
        let started = Instant::now();
        let from = BTreeMap::new();
        let stop = CancellationToken::new();
        let scan =
            scan_blocking(&config, "relay.events", &from, 1..=SENT, &stop, within, 1).unwrap();
        let took = started.elapsed();
        assert_eq!((scan.read, scan.cut), (SENT as usize, None), "{took:?}");
        assert!(took > within, "not slower than the deadline: {took:?}");
    }

    /// A read cut at its bound names the partitions it did not read to the
    /// end, and only those: one finished early, one never to read are not
    /// (the resume sends again what it found in the others).
    #[test]
    fn a_read_cut_at_its_bound_names_the_partitions_it_did_not_finish() {
        use rdkafka::producer::BaseRecord;

        use crate::sinks::kafka::tests_support::{flushed, mock_topic};

        let (mock, producer, _) = mock_topic("relay.other");
        mock.create_topic("relay.cut", 3, 1).unwrap();
        const LONG: u64 = 100;
        // Partition 0 one batch per message (the mock broker answers a
        // fetch with one), far more than the bound lets it read; partition
        // 1 one message; partition 2 none.
        for seq in 1..=LONG {
            let payload = format!(r#"{{"seq":{seq}}}"#);
            let record = BaseRecord::<(), _>::to("relay.cut")
                .payload(&payload)
                .partition(0);
            producer.send(record).unwrap();
            flushed(&producer);
        }
        let payload = format!(r#"{{"seq":{}}}"#, LONG + 1);
        let record = BaseRecord::<(), _>::to("relay.cut")
            .payload(&payload)
            .partition(1);
        producer.send(record).unwrap();
        flushed(&producer);
        let config = one_batch_per_fetch(&mock);
        // A fetch each 150 ms, well within the quiet bound; the whole bound,
        // 3 × 2 s, ends the read some 60 messages short of partition 0's
        // end (and leaves the metadata and the ends several round trips). A
        // pause past the quiet bound on a loaded machine cuts it as stalled
        // instead, which names the same partition.
        mock.broker_round_trip_time(1, Duration::from_millis(150))
            .unwrap();
        let within = Duration::from_secs(2);
        let scan = scan_blocking(
            &config,
            "relay.cut",
            &BTreeMap::new(),
            1..=LONG + 1,
            &CancellationToken::new(),
            within,
            1,
        )
        .unwrap();
        assert!(
            matches!(scan.cut, Some(Cut::Deadline(_) | Cut::Stalled(_))),
            "{:?} after {} read",
            scan.cut,
            scan.read
        );
        assert_eq!(scan.unfinished, BTreeSet::from([0]), "{} read", scan.read);
    }

    /// A topic of many partitions behind a slow link: each partition's ends
    /// are one request, answered, and the read goes on. They shared the
    /// first `within`, so partitions × round trip beyond it failed every
    /// try, and everything after the cursor was sent again (Kafka recovery
    /// review, 2026-12-04); then the read's whole bound, 3 × `within` from
    /// the start, with the same result for more partitions (Kafka sink
    /// review, 2026-12-06).
    #[test]
    fn a_topic_of_many_partitions_behind_a_slow_link_is_read_back() {
        use rdkafka::producer::BaseRecord;

        use crate::sinks::kafka::tests_support::{flushed, mock_topic};

        let (mock, producer, config) = mock_topic("relay.other");
        const PARTITIONS: i32 = 32;
        mock.create_topic("relay.many", PARTITIONS, 1).unwrap();
        for partition in 0..PARTITIONS {
            let payload = format!(r#"{{"seq":{}}}"#, partition + 1);
            let record = BaseRecord::<(), _>::to("relay.many")
                .payload(&payload)
                .partition(partition);
            producer.send(record).unwrap();
        }
        flushed(&producer);
        let rtt = Duration::from_millis(200);
        mock.broker_round_trip_time(1, rtt).unwrap();
        // Less than a third of what the ends take (a round trip or more
        // each), more than any one of them takes: cut at the read's whole
        // bound, the partitions not asked by then got a timeout of 0.
        let within = Duration::from_millis(1500);
        let started = Instant::now();
        let scan = scan_blocking(
            &config,
            "relay.many",
            &BTreeMap::new(),
            1..=PARTITIONS as u64,
            &CancellationToken::new(),
            within,
            1,
        );
        let took = started.elapsed();
        let scan = scan.unwrap_or_else(|e| panic!("after {took:?}: {e}"));
        assert_eq!(
            (scan.read, scan.cut),
            (PARTITIONS as usize, None),
            "{took:?}"
        );
        let whole = within * SLOW_READ_WINDOWS;
        assert!(
            took > whole,
            "the ends took less than 3 × `within`: {took:?}"
        );
    }

    #[test]
    fn a_partition_is_read_after_the_passed_offset_or_its_tail() {
        // The usual case: after the last message the cursor passed.
        assert_eq!(read_start(Some(41), 0, 100), 42);
        // Nothing written since: starts at the end, reads nothing.
        assert_eq!(read_start(Some(99), 0, 100), 100);
        // Retention removed the start of what it would read.
        assert_eq!(read_start(Some(41), 60, 100), 60);
        // Unknown partition: its last TAIL messages.
        assert_eq!(read_start(None, 0, TAIL + 500), 500);
        assert_eq!(read_start(None, 0, 7), 0);
        // An emptied broker or a recreated topic: the partition ends before
        // the passed offset, and all it holds was written since.
        assert_eq!(read_start(Some(5_000), 0, 30), 0);
        assert_eq!(read_start(Some(30), 0, 30), 0);
        assert_eq!(read_start(Some(90_000), 0, TAIL + 10), 10);
    }
}
