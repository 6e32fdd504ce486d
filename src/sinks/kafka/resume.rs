//! What an interrupted run already delivered: after a crash (or a producer
//! dropped with records in flight), the events after the cursor are read
//! from the journal again, and some of them may already be in Kafka. Before
//! sending them, the forwarder reads back the tail of each topic they go to
//! and skips the events whose `ce_id` and seq it finds there.
//!
//! Guarantees:
//! - an event is skipped only when a message carrying its `ce_id` *and its
//!   seq* was read from the topic it would be sent to now (an id alone is
//!   not enough: the same vendor event seen again after the dedup window is
//!   journaled again, same id, new seq); whatever was not read (a partition
//!   the bounds cut, a broker that refused the read, a topic the producer
//!   principal may not read) is sent again — the worst case is the
//!   at-least-once re-send of before, never a loss;
//! - a read no broker answered (its metadata, a partition's ends, or every
//!   fetch up to the deadline), one whose partition's leader was still
//!   moving for a whole deadline, or one a broker stopped answering
//!   part-way, is tried again by the forwarder ([`unanswered`]) before it
//!   sends anything again;
//! - per-key order of the last copies holds: once one event of a key is
//!   sent again, every later event of that key in the range and in its
//!   topic is sent again too, even if found — on a compacted topic, a found event must not end
//!   up before an earlier one sent again; and a found event whose copy sits
//!   before a found copy of an earlier event of its key in the same
//!   partition (a resume interrupted while it sent a key again) is sent
//!   again as well, and so is an event found in a partition a cut read did
//!   not reach the end of (a later copy of it, or of an earlier event of
//!   its key, may lie past the cut);
//! - within one resume, an event found in Kafka never moves a partition's
//!   noted offset (where the next read-back starts) below one noted during
//!   that resume ([`AlreadyDelivered::offset_to_note`]): a next read-back
//!   starting lower would find old copies the re-sends were meant to
//!   supersede; nor does a delivery whose report does not say where its
//!   record is, a batch acknowledged as a duplicate ([`UnplacedReports`]);
//! - offsets noted on another cluster than the one read (`[kafka] brokers`
//!   changed) are not read from ([`offsets_apply`]): its tails are read,
//!   as when there are none;
//! - a topic's offsets are forgotten only while nothing of it past the
//!   cursor may be in Kafka ([`DeliveredOffsets::forget_idle`]): a later
//!   read-back of it looks only for events handed over since, in its
//!   tails, as for a topic never delivered to;
//! - the read is bounded ([`scan_blocking`]): from where the cursor had
//!   passed (or a partition's last [`TAIL`] messages), at most [`MAX_READ`]
//!   messages per topic, for as long as each [`DEADLINE`] brings a message
//!   and [`SLOW_READ_WINDOWS`] times that in all (that many times more for
//!   a read one of several at once); before that read, the
//!   topic's metadata and each partition's ends have a [`DEADLINE`] each.

#[cfg(test)]
mod model_tests;
mod scan;
pub(crate) use scan::QuietContext;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use scan::{
    Cut, DEADLINE, MAX_READ, SLOW_READ_WINDOWS, Scan, ScanError, TAIL, scan_blocking, unanswered,
};

/// Per topic, per partition: the offset of the last message the cursor has
/// passed. Where a resume starts reading. A topic no delivery has moved for
/// a while, with nothing of it past the cursor, is forgotten
/// ([`DeliveredOffsets::forget_idle`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveredOffsets {
    topics: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl DeliveredOffsets {
    /// Records that the cursor passed the message at `offset`: the latest
    /// one, not the highest. A partition's offsets grow with the cursor, so
    /// a lower one means its log started over (the topic deleted and
    /// created again, the broker emptied): the highest would be an offset of
    /// the old log, and every later read-back would warn that the partition
    /// "ends before a message the relay had delivered", then start reading
    /// past events it should find (Kafka-topology audit, 2026-12-02). An
    /// event found by a read-back is not noted here as it is: see
    /// [`AlreadyDelivered::offset_to_note`].
    pub fn note(&mut self, topic: &str, partition: i32, offset: i64) {
        let partitions = match self.topics.get_mut(topic) {
            Some(p) => p,
            None => self.topics.entry(topic.to_owned()).or_default(),
        };
        partitions.insert(partition, offset);
    }

    pub fn of(&self, topic: &str) -> BTreeMap<i32, i64> {
        self.topics.get(topic).cloned().unwrap_or_default()
    }

    /// Forgets the topics whose offsets no delivery has moved for `idle`
    /// at `now` (as `seen` saw them at this and earlier writes of the
    /// offsets: compared whole at each write, not per report) and that
    /// `in_use` does not name; returns how many.
    ///
    /// With a topic per account over thousands of accounts that come and
    /// go, every topic ever delivered to stayed in each write for good
    /// (about 100 bytes each; long-runs audit). `in_use` names what may be
    /// in Kafka past the cursor unnoted: the topics of records handed over
    /// and not taken back, and every topic while a resume is in progress
    /// or while a record handed over past the cursor has left the
    /// in-flight list unpassed. A topic it does not name has nothing past
    /// the cursor in Kafka, so no read-back of what was handed over before
    /// this write needs its entry. A read-back after a crash of its events
    /// handed over later, before a write notes it again, reads its
    /// partitions' last [`TAIL`] messages, as for a topic first delivered
    /// to in that time: it finds them unless more than that landed in a
    /// partition past the forgotten offset, and does not warn that a
    /// partition ends before that offset. That lasts until the cursor
    /// passes its first new record (offsets are noted only then) and the
    /// offsets are next written after that: a failing or stalled record of
    /// another topic ahead of it holds the cursor, and so this, for as long
    /// as that record holds the cursor back. `idle` keeps the entries of the
    /// topics still written to.
    pub fn forget_idle(
        &mut self,
        seen: &mut OffsetsSeen,
        now: Instant,
        idle: Duration,
        mut in_use: impl FnMut(&str) -> bool,
    ) -> usize {
        let before = self.topics.len();
        self.topics.retain(|topic, partitions| {
            let digest = digest(partitions);
            let Some((seen_digest, since)) = seen.topics.get_mut(topic.as_str()) else {
                seen.topics.insert(topic.clone(), (digest, now));
                return true;
            };
            if *seen_digest != digest {
                (*seen_digest, *since) = (digest, now);
                return true;
            }
            if now.saturating_duration_since(*since) < idle || in_use(topic) {
                return true;
            }
            seen.topics.remove(topic.as_str());
            false
        });
        // Topics dropped with the rest of the offsets (another cluster's).
        if seen.topics.len() > self.topics.len() {
            seen.topics
                .retain(|topic, _| self.topics.contains_key(topic));
        }
        before - self.topics.len()
    }

    /// How many topics have offsets.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// The topics with offsets.
    #[cfg(test)]
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.keys().map(String::as_str)
    }
}

/// A topic's offsets in a word, to tell whether a delivery moved them
/// since the last write. Another delivery that leaves them as they were
/// (one noted at the very offset noted before, in a log started over) is
/// not told apart: that topic may be forgotten while still written to,
/// and is noted again at its next delivery.
fn digest(partitions: &BTreeMap<i32, i64>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    partitions.hash(&mut hasher);
    hasher.finish()
}

/// Per topic with offsets: a digest of them at the last write, and since
/// when they have been so (the first write of a run that saw them: a
/// restart starts every topic's clock again). See
/// [`DeliveredOffsets::forget_idle`].
#[derive(Debug, Default)]
pub struct OffsetsSeen {
    topics: HashMap<String, (u64, Instant)>,
}

/// The delivery reports that do not say where their record is: librdkafka
/// takes a batch the broker answers `DUPLICATE_SEQUENCE_NUMBER` (it landed
/// before and its acknowledgement was lost) as delivered, and numbers its
/// records from the answer's base offset, -1 (Kafka's and tansu's): -1, 0,
/// 1, …. Noted, such an offset started the next read-back after a crash at
/// the partition's beginning, where its bound cut the read and what lay
/// past the cut was sent again. A partition's offset stays the one noted
/// before the batch, which is before the batch's records, so a read-back
/// from there finds them.
///
/// Not the highest offset instead of the latest: a lower one is also a log
/// that started over ([`DeliveredOffsets::note`]).
#[derive(Debug, Default)]
pub struct UnplacedReports {
    /// Per topic and partition, the offset the next report of such a batch
    /// would say.
    next: HashMap<(Arc<str>, i32), i64>,
}

impl UnplacedReports {
    /// Whether the delivery reported at `at` in `topic` is where its record
    /// is. Not a negative offset, nor, in its partition's reports (which
    /// come in offset order), one going on by one from such an offset: the
    /// report after the batch is past the batch's records in Kafka, so at
    /// least the batch's length, and the count from -1 has reached only
    /// one below that.
    pub fn is_placed(&mut self, topic: &Arc<str>, at: Position) -> bool {
        let slot = (topic.clone(), at.partition);
        let unplaced = at.offset < 0 || self.next.get(&slot) == Some(&at.offset);
        if unplaced {
            self.next.insert(slot, at.offset.saturating_add(1));
        } else {
            self.next.remove(&slot);
        }
        !unplaced
    }
}

/// The Kafka cluster [`DeliveredOffsets`] were noted on: its id, as its
/// brokers give it in their metadata (none from a broker too old to give
/// one), and the `brokers` configured, normalised ([`normalised_brokers`]),
/// to compare when either side has no id, and to tell apart clusters that
/// share a fixed id ([`ClusterIdentity::is`]).
///
/// Offsets are positions in one cluster's logs: `[kafka] brokers` changed
/// to another cluster (a reload away from a failing one, or a restart)
/// made the read-back start the new cluster's partitions at the old one's
/// offsets, which skipped what lay before them there (and sent it again),
/// or warned that a partition ending before them had lost its log
/// (config-reload review, 2026-12-07).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub brokers: String,
}

impl ClusterIdentity {
    /// The cluster with id `id` (if it gives one) reached through `brokers`
    /// as configured.
    pub fn new(id: Option<String>, brokers: &str) -> ClusterIdentity {
        ClusterIdentity {
            id: id.filter(|id| !id.is_empty()),
            brokers: normalised_brokers(brokers),
        }
    }

    /// Whether this is the cluster `other` is: by id when both have one
    /// and their lists share a broker, else by their broker lists. Another
    /// list to the same cluster (a broker added or taken out) has the same
    /// id and a broker in common. The id alone is not enough: clusters set
    /// up with a fixed one may share it (a compose file's `CLUSTER_ID`
    /// copied from one environment to another; tansu's default,
    /// `tansu_cluster`). A cluster taken as another when it is not (no id,
    /// and its list changed; every broker's address changed at once) costs
    /// a read of its tails at worst.
    pub fn is(&self, other: &ClusterIdentity) -> bool {
        match (&self.id, &other.id) {
            (Some(id), Some(other_id)) => id == other_id && self.shares_a_broker_with(other),
            _ => self.brokers == other.brokers,
        }
    }

    /// Whether the two lists name a broker in common.
    fn shares_a_broker_with(&self, other: &ClusterIdentity) -> bool {
        fn listed(brokers: &str) -> impl Iterator<Item = &str> {
            brokers.split(',').filter(|b| !b.is_empty())
        }
        listed(&self.brokers).any(|b| listed(&other.brokers).any(|theirs| theirs == b))
    }

    /// Whether `other` answers at the same brokers with another id: a
    /// broker wiped and formatted again, or another cluster moved to the
    /// addresses, where what was delivered before may be gone.
    pub fn replaced_at_the_same_brokers(&self, other: &ClusterIdentity) -> bool {
        self.brokers == other.brokers
            && matches!((&self.id, &other.id), (Some(id), Some(other_id)) if id != other_id)
    }
}

/// A `brokers` list as a comparable string: each broker trimmed, empty ones
/// dropped, sorted, without repeats (the order of the list, or a space
/// after a comma, is no other cluster).
pub fn normalised_brokers(list: &str) -> String {
    let mut brokers: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    brokers.sort_unstable();
    brokers.dedup();
    brokers.join(",")
}

/// Whether offsets noted on `noted_on` are positions in `here`'s logs.
/// Unknown (`None`: the state of a build that did not record the cluster,
/// or no state) they are taken as they always were, so that an upgrade
/// reads back as before.
pub fn offsets_apply(noted_on: Option<&ClusterIdentity>, here: &ClusterIdentity) -> bool {
    noted_on.is_none_or(|noted_on| noted_on.is(here))
}

/// What the sink stores beside its cursor in the journal, as JSON: a field
/// added later has a default, so that an older build's state decodes (and
/// an older build ignores it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    /// The sink stopped with nothing handed to Kafka beyond the cursor:
    /// the next start has nothing to look for.
    pub clean: bool,
    pub offsets: DeliveredOffsets,
    /// The cluster `offsets` were noted on ([`offsets_apply`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterIdentity>,
    /// When (ms since the Unix epoch, wall clock: it must mean the same to
    /// the next process) a run let go of records whose reports never came:
    /// a stop whose drain ran out, or a dropped producer (a stall, reports
    /// that did not settle). Produce requests it had sent may still be
    /// appended after the next run's re-sends, so that run reads back only
    /// once `Tuning::stall_read_back_delay` has passed since. Absent in an
    /// older build's state (nothing to wait for); an older build ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_may_land_since_ms: Option<i64>,
}

impl CursorState {
    pub fn encode(&self) -> Vec<u8> {
        // Cannot fail: a bool and string-keyed maps of integers (a map key
        // that is not a string is serde_json's only failure for such data).
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<CursorState, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Where a message sits in Kafka.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

/// A message's identity for the read-back: its `ce_id` and its seq.
type Found = HashMap<(String, u64), Position>;

/// A resume in progress: the events up to `upto` may already be in Kafka.
#[derive(Debug)]
pub struct AlreadyDelivered {
    upto: u64,
    /// topic → (`ce_id`, seq) → where it was found.
    found: HashMap<String, Found>,
    /// Per topic, keys with an event sent again: their later events in
    /// that topic are sent again too (order is kept per key in one topic).
    resent_keys: HashSet<(String, String)>,
    /// Per topic and key, where the last event of the key skipped so far is.
    last_found: HashMap<(String, String), Position>,
    /// Per topic and partition, the offset noted for this resume's reports
    /// so far (see [`AlreadyDelivered::offset_to_note`]).
    noted: HashMap<(Arc<str>, i32), i64>,
    pub skipped: u64,
    pub read: usize,
    pub errors: Vec<String>,
    /// Reads that failed because no broker answered, tried again.
    pub unanswered_reads: u32,
    /// Topics of events ahead whose check on the broker failed: not
    /// checked again ahead of their event in this resume.
    not_checked_ahead: HashSet<String>,
}

impl AlreadyDelivered {
    pub fn new(upto: u64) -> AlreadyDelivered {
        AlreadyDelivered {
            upto,
            found: HashMap::new(),
            resent_keys: HashSet::new(),
            last_found: HashMap::new(),
            noted: HashMap::new(),
            skipped: 0,
            read: 0,
            errors: Vec::new(),
            unanswered_reads: 0,
            not_checked_ahead: HashSet::new(),
        }
    }

    /// Notes that `topic`'s check, ahead of its event, failed.
    pub fn check_ahead_failed(&mut self, topic: String) {
        self.not_checked_ahead.insert(topic);
    }

    /// Whether `topic` is to be checked ahead of its event: not when that
    /// failed before in this resume (its event's own check will say why).
    pub fn may_check_ahead(&self, topic: &str) -> bool {
        !self.not_checked_ahead.contains(topic)
    }

    /// The last seq that may have been delivered.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// The offset the cursor's [`DeliveredOffsets`] is to note for a report
    /// taken while this resume is in progress: a record delivered at `at`
    /// (`found` false), or an event found there by the read-back.
    ///
    /// A delivery's offset is noted as it is, the latest (a lower one means
    /// the log started over, see [`DeliveredOffsets::note`]). A found event
    /// is noted at no less than what this resume noted before in its
    /// partition: found copies and copies sent again interleave (x sent
    /// again lands at 8, then y is found at 6), and noting 6 would start
    /// the next read-back below x's new copy, where it finds a later event
    /// of x's key at 7, takes it as delivered and skips it, leaving the
    /// key's last copy an older event (Kafka sink review, 2026-12-06).
    /// Offsets noted before this resume are not compared: they may be of a
    /// log that started over since, and this resume's read starts after
    /// them anyway unless it did.
    pub fn offset_to_note(&mut self, topic: &Arc<str>, at: Position, found: bool) -> i64 {
        let slot = self
            .noted
            .entry((topic.clone(), at.partition))
            .or_insert(at.offset);
        if found {
            *slot = (*slot).max(at.offset);
        } else {
            *slot = at.offset;
        }
        *slot
    }

    pub fn is_read(&self, topic: &str) -> bool {
        self.found.contains_key(topic)
    }

    /// What each of the reads done at once gave, `reads` as (topic, scan).
    /// One that no broker answered ([`unanswered`]) is left out to be read
    /// again while `retry`, and the first such is given back (its topic
    /// and why) with `unanswered_reads` counted once; otherwise, and for
    /// every other read, [`Self::add`].
    pub fn add_reads(
        &mut self,
        reads: impl IntoIterator<Item = (String, Result<Scan, ScanError>)>,
        retry: bool,
    ) -> Option<(String, String)> {
        let mut unanswered = None;
        for (topic, scan) in reads {
            match self::unanswered(&scan) {
                Some(error) if retry => {
                    unanswered.get_or_insert((topic, error));
                }
                _ => self.add(topic, scan),
            }
        }
        if unanswered.is_some() {
            self.unanswered_reads += 1;
        }
        unanswered
    }

    /// What reading `topic` gave (nothing, after an error: those events are
    /// sent again). Of a read cut short, the events found in a partition it
    /// did not read to the end are sent again too: past the cut may lie a
    /// later copy of an earlier event of their key (an interrupted resume's
    /// re-send), and skipping them would leave that older event the key's
    /// last copy (found by the resume's model test, 2026-12-07). Not even a
    /// key's first event found there is safe to skip: its own later copy
    /// may lie past the cut, behind a copy of a later event of its key,
    /// and once the cursor has passed it no read-back looks for that copy
    /// (`model_tests::not_even_a_keys_first_event_found_before_a_cut_is_skipped`).
    pub fn add(&mut self, topic: String, scan: Result<Scan, ScanError>) {
        let found = match scan {
            Ok(mut scan) => {
                tracing::info!(
                    topic,
                    read = scan.read,
                    found = scan.found.len(),
                    "kafka sink: read back"
                );
                self.read += scan.read;
                if let Some(cut) = scan.cut {
                    let found_read = scan.found.len();
                    scan.found
                        .retain(|_, at| !scan.unfinished.contains(&at.partition));
                    tracing::warn!(
                        topic,
                        read = scan.read,
                        cut = cut.label(),
                        unfinished_partitions = scan.unfinished.len(),
                        found_sent_again = found_read - scan.found.len(),
                        "kafka sink: {}; events not found, or found in a partition not read to its end, are sent again",
                        cut.describe()
                    );
                    // Shown in /status too: an operator counting duplicates
                    // looks there, not only in the log.
                    self.errors.push(format!(
                        "{topic}: {}, with {} messages read: events not found, or found in a partition not read to its end, are sent again",
                        cut.describe(),
                        scan.read
                    ));
                }
                scan.found
            }
            Err(error) => {
                tracing::warn!(
                    topic,
                    %error,
                    "kafka sink: cannot read back what was already delivered; the events after the cursor are sent again (duplicates possible)"
                );
                self.errors.push(format!("{topic}: {error}"));
                HashMap::new()
            }
        };
        self.found.insert(topic, found);
    }

    /// Where the event (`id`, `seq`, Kafka `key`) already is in `topic`,
    /// if it was found there after every earlier event of its key that was
    /// found, and no earlier event of its key is sent again; `None`: send it
    /// (and, from now on, the rest of its key in `topic`: the same key in
    /// another topic is another key, its order its own).
    ///
    /// Found *before* an earlier event of its key is what an earlier resume
    /// leaves when it was interrupted between sending a key's events again:
    /// the earlier one's new copy landed, the later one's did not. That
    /// resume's "send the rest of the key" is forgotten by now, so the order
    /// of the copies in the partition says it instead. A key found in
    /// another partition than before (partitions added since) is not: the
    /// old partition keeps its copies whatever is sent, so a copy would only
    /// add a duplicate; order is compared from there on.
    pub fn take(&mut self, topic: &str, id: &str, seq: u64, key: &str) -> Option<Position> {
        let slot = (topic.to_owned(), key.to_owned());
        if self.resent_keys.contains(&slot) {
            return None;
        }
        let found = self
            .found
            .get_mut(topic)
            .and_then(|f| f.remove(&(id.to_owned(), seq)));
        let in_order = |at: &Position| {
            self.last_found
                .get(&slot)
                .is_none_or(|last| last.partition != at.partition || last.offset < at.offset)
        };
        match found {
            Some(at) if in_order(&at) => {
                self.skipped += 1;
                self.last_found.insert(slot, at);
                Some(at)
            }
            _ => {
                self.resent_keys.insert(slot);
                None
            }
        }
    }
}

/// The line that ends a resume: what it found, and whether it could read
/// every topic it needed. Read errors make it a warning: "none of the
/// pending events was in Kafka already" after topics that could not be read
/// said more than was known (verification of 2026-12-01).
pub fn summary(skipped: u64, errors: usize) -> (tracing::Level, String) {
    if errors > 0 {
        return (
            tracing::Level::WARN,
            format!(
                "kafka sink: read-back done, but {errors} topic(s) could not be read whole (see /status sinks.kafka.resume.errors): the events not found there, or found in a partition not read to its end, were sent again, duplicates possible"
            ),
        );
    }
    let text = if skipped == 0 {
        "kafka sink: read-back done: none of the pending events was in Kafka already"
    } else {
        "kafka sink: read-back done: events already delivered before the restart were not sent again"
    };
    (tracing::Level::INFO, text.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn offsets_keep_the_latest_per_partition() {
        let mut o = DeliveredOffsets::default();
        o.note("t", 0, 5);
        o.note("t", 0, 3_786);
        // The topic created again: its partition 0 starts over.
        o.note("t", 0, 3);
        o.note("t", 1, 9);
        o.note("u", 0, 1);
        assert_eq!(o.of("t"), BTreeMap::from([(0, 3), (1, 9)]));
        assert_eq!(o.of("u"), BTreeMap::from([(0, 1)]));
        assert!(o.of("v").is_empty());
    }

    /// A topic is forgotten once its offsets have stood still for the
    /// bound, counted from the write that first saw them so (the first of
    /// the run for those it started with), unless `in_use` names it; a
    /// delivery that moves them starts the count again.
    #[test]
    fn offsets_unmoved_for_the_bound_are_forgotten_unless_in_use() {
        const DAY: Duration = Duration::from_secs(24 * 60 * 60);
        let hours = |h: u64| Duration::from_secs(h * 60 * 60);
        let start = Instant::now();
        let mut o = DeliveredOffsets::default();
        let mut seen = OffsetsSeen::default();
        for topic in ["idle", "busy", "handed-over"] {
            o.note(topic, 0, 5);
        }
        let in_flight = |topic: &str| topic == "handed-over";
        let topics = |o: &DeliveredOffsets| o.topics().collect::<Vec<_>>().join(" ");
        assert_eq!(o.forget_idle(&mut seen, start, DAY, in_flight), 0);
        o.note("busy", 0, 6);
        assert_eq!(
            o.forget_idle(&mut seen, start + hours(23), DAY, in_flight),
            0
        );
        assert_eq!(o.forget_idle(&mut seen, start + DAY, DAY, in_flight), 1);
        assert_eq!(topics(&o), "busy handed-over");
        // busy stood still from hour 23 on.
        assert_eq!(
            o.forget_idle(&mut seen, start + hours(46), DAY, in_flight),
            0
        );
        assert_eq!(
            o.forget_idle(&mut seen, start + hours(47), DAY, |_| false),
            2
        );
        assert!(o.is_empty() && seen.topics.is_empty());
        // Forgotten, then delivered to again: a new entry, its own clock.
        o.note("idle", 0, 9);
        assert_eq!(
            o.forget_idle(&mut seen, start + hours(48), DAY, |_| false),
            0
        );
        assert_eq!(o.of("idle"), BTreeMap::from([(0, 9)]));
        // Dropped with the rest (another cluster's): not seen any more.
        o = DeliveredOffsets::default();
        o.forget_idle(&mut seen, start + hours(49), DAY, |_| false);
        assert!(seen.topics.is_empty());
    }

    /// With the default bound, a topic delivered to once a day keeps its
    /// entry though the next day's record waits a while before the cursor
    /// passes it: the clock starts at the write that first saw the offsets,
    /// and a bound of exactly a day forgot the topic at any write made
    /// during that wait (review of 1aea785).
    #[test]
    fn a_topic_delivered_to_once_a_day_keeps_its_entry() {
        let bound = super::super::forwarder::FORGET_IDLE_TOPIC_AFTER;
        let day = Duration::from_secs(24 * 60 * 60);
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let start = Instant::now();
        let mut o = DeliveredOffsets::default();
        let mut seen = OffsetsSeen::default();
        let unused = |_: &str| false;
        o.note("daily", 0, 1);
        // The write that first sees it, seconds after the delivery.
        let first_seen = start + Duration::from_secs(5);
        assert_eq!(o.forget_idle(&mut seen, first_seen, bound, unused), 0);
        // The next day's record waits behind other topics' for half an
        // hour; their writes meanwhile keep the entry.
        let waiting = start + day + minutes(29);
        assert_eq!(o.forget_idle(&mut seen, waiting, bound, unused), 0);
        o.note("daily", 0, 2);
        let noted = start + day + minutes(30);
        assert_eq!(o.forget_idle(&mut seen, noted, bound, unused), 0);
        assert_eq!(o.of("daily"), BTreeMap::from([(0, 2)]));
    }

    #[test]
    fn a_batch_numbered_from_minus_one_is_not_placed_in_any_partition() {
        let mut reports = UnplacedReports::default();
        let (t, u): (Arc<str>, Arc<str>) = (Arc::from("t"), Arc::from("u"));
        let at = |partition, offset| Position { partition, offset };
        assert!(reports.is_placed(&t, at(0, 40)));
        assert!(!reports.is_placed(&t, at(0, -1)));
        // Another partition, and another topic's same partition, go on.
        assert!(reports.is_placed(&t, at(1, 0)));
        assert!(reports.is_placed(&u, at(0, 0)));
        assert!(!reports.is_placed(&t, at(0, 0)));
        assert!(!reports.is_placed(&t, at(0, 1)));
        assert!(reports.is_placed(&t, at(0, 43)));
        // The count ended with the batch.
        assert!(reports.is_placed(&t, at(0, 44)));
        // librdkafka's "no offset" (-1001) neither.
        assert!(!reports.is_placed(&u, at(0, -1001)));
    }

    #[test]
    fn cursor_state_round_trips_and_refuses_garbage() {
        let mut state = CursorState::default();
        state.offsets.note("callrelay.events", 2, 41);
        let bytes = state.encode();
        // Without a cluster, as an older build wrote it (and decodes it).
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"clean":false,"offsets":{"callrelay.events":{"2":41}}}"#
        );
        assert_eq!(CursorState::decode(&bytes).unwrap(), state);
        state.cluster = Some(ClusterIdentity::new(Some("Xy-1".into()), "k2:9092,k1:9092"));
        let bytes = state.encode();
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            r#"{"clean":false,"offsets":{"callrelay.events":{"2":41}},"cluster":{"id":"Xy-1","brokers":"k1:9092,k2:9092"}}"#
        );
        assert_eq!(CursorState::decode(&bytes).unwrap(), state);
        assert!(CursorState::decode(b"{not json").is_err());
    }

    /// The offsets saved with the cursor are used only on the cluster they
    /// were noted on: by id, else (a broker that gives none) by the broker
    /// list as configured; a state that does not say (an older build's)
    /// keeps them, as that build did.
    #[test]
    fn offsets_apply_only_to_the_cluster_they_were_noted_on() {
        let cluster =
            |id: Option<&str>, brokers: &str| ClusterIdentity::new(id.map(Into::into), brokers);
        let a = cluster(Some("cluster-a"), "a1:9092,a2:9092");
        // The same cluster through another list of its brokers (one added,
        // one taken out).
        assert!(offsets_apply(
            Some(&a),
            &cluster(Some("cluster-a"), "a2:9092,a3:9092")
        ));
        assert!(!offsets_apply(
            Some(&a),
            &cluster(Some("cluster-b"), "b1:9092")
        ));
        // Another cluster behind the same addresses (a DNS name moved).
        assert!(!offsets_apply(
            Some(&a),
            &cluster(Some("cluster-b"), "a1:9092,a2:9092")
        ));
        // No id on either side: the lists, normalised, decide.
        let old = cluster(None, " a2:9092 , a1:9092,");
        assert!(offsets_apply(Some(&old), &cluster(None, "a1:9092,a2:9092")));
        assert!(offsets_apply(Some(&old), &a));
        assert!(offsets_apply(Some(&a), &old));
        assert!(!offsets_apply(Some(&old), &cluster(None, "a1:9092")));
        assert!(!offsets_apply(Some(&a), &cluster(None, "b1:9092")));
        // An empty id is none.
        assert!(offsets_apply(
            Some(&a),
            &cluster(Some(""), "a2:9092,a1:9092")
        ));
        // Not recorded (an older build's state): used.
        assert!(offsets_apply(None, &cluster(Some("cluster-b"), "b1:9092")));
        assert_eq!(normalised_brokers("b:1, a:1,b:1 ,,"), "a:1,b:1");
    }

    /// Two clusters set up with the same fixed id (a compose file's
    /// `CLUSTER_ID` copied from one environment to another; tansu's default
    /// id, `tansu_cluster`) are told apart by their brokers: the same id
    /// through lists with no broker in common is another cluster; a list
    /// that gained or lost a broker but shares one is the same.
    #[test]
    fn the_same_cluster_id_with_no_broker_in_common_is_another_cluster() {
        let cluster = |brokers: &str| ClusterIdentity::new(Some("tansu_cluster".into()), brokers);
        let a = cluster("a1:9092,a2:9092");
        assert!(!offsets_apply(Some(&a), &cluster("b1:9092")));
        assert!(!offsets_apply(Some(&cluster("b1:9092,b2:9092")), &a));
        assert!(offsets_apply(Some(&a), &cluster("a1:9092,a2:9092,a3:9092")));
        assert!(offsets_apply(Some(&a), &cluster(" a2:9092")));
        assert!(offsets_apply(Some(&a), &cluster("a3:9092,a1:9092")));
    }

    const AT: Position = Position {
        partition: 1,
        offset: 7,
    };

    /// A read that found `(id, seq)` pairs, all at [`AT`].
    fn scan_finding(pairs: &[(&str, u64)]) -> Scan {
        Scan {
            found: pairs
                .iter()
                .map(|&(id, seq)| ((id.to_owned(), seq), AT))
                .collect(),
            read: pairs.len(),
            cut: None,
            unfinished: std::collections::BTreeSet::new(),
            unreachable: 0,
        }
    }

    #[test]
    fn only_what_was_found_in_the_same_topic_is_skipped() {
        let mut resume = AlreadyDelivered::new(10);
        let at = AT;
        let scan = scan_finding(&[("a", 3), ("b", 4)]);
        assert!(!resume.is_read("t"));
        resume.add("t".into(), Ok(scan));
        resume.add("u".into(), Err(ScanError::NoPartitions));
        assert!(resume.is_read("t") && resume.is_read("u"));
        assert_eq!(resume.take("u", "a", 3, "k1"), None, "another topic");
        assert_eq!(resume.take("t", "a", 9, "k2"), None, "same id, another seq");
        assert_eq!(resume.take("t", "a", 3, "k3"), Some(at));
        assert_eq!(resume.take("t", "a", 3, "k3"), None, "taken once");
        assert_eq!((resume.skipped, resume.read), (1, 2));
        assert_eq!(resume.errors.len(), 1);
    }

    /// The status says what cut a read-back short. A broker whose fetches
    /// hung was reported as "read back only 0 messages (the bound)", which
    /// read as the 200,000-message bound (combined-faults audit, 2026-12-01).
    #[test]
    fn a_read_back_cut_short_says_why_in_the_status() {
        let mut resume = AlreadyDelivered::new(10);
        assert_eq!(resume.upto(), 10);
        let tuned = Duration::from_millis(1500);
        for (topic, cut) in [
            ("t", Cut::MaxRead),
            ("u", Cut::Deadline(DEADLINE * SLOW_READ_WINDOWS)),
            ("v", Cut::Deadline(tuned)),
            ("w", Cut::Stalled(DEADLINE)),
        ] {
            let mut scan = scan_finding(&[("a", 3)]);
            scan.cut = Some(cut);
            resume.add(topic.into(), Ok(scan));
        }
        assert_eq!(
            resume.errors,
            [
                "t: the read-back reached its bound of 200000 messages, with 1 messages read: events not found, or found in a partition not read to its end, are sent again",
                "u: the read-back timed out after 30 s (the broker answered slowly), with 1 messages read: events not found, or found in a partition not read to its end, are sent again",
                "v: the read-back timed out after 1.5 s (the broker answered slowly), with 1 messages read: events not found, or found in a partition not read to its end, are sent again",
                "w: the read-back got no message for 10 s (the broker stopped answering mid-read), with 1 messages read: events not found, or found in a partition not read to its end, are sent again",
            ]
        );
    }

    #[test]
    fn a_read_back_that_could_not_read_a_topic_does_not_end_saying_nothing_was_there() {
        let (level, text) = summary(0, 2);
        assert_eq!(level, tracing::Level::WARN);
        assert!(
            text.contains("2 topic(s) could not be read whole"),
            "{text}"
        );
        let (level, text) = summary(0, 0);
        assert_eq!(level, tracing::Level::INFO);
        assert!(text.contains("none of the pending events"), "{text}");
        assert!(summary(3, 0).1.contains("were not sent again"));
    }

    #[test]
    fn after_a_key_is_sent_again_its_later_events_are_too() {
        let mut resume = AlreadyDelivered::new(10);
        let at = AT;
        resume.add("t".into(), Ok(scan_finding(&[("e2", 2), ("f2", 4)])));
        // e1 was not found (compacted away, say): e2 must follow it again.
        assert_eq!(resume.take("t", "e1", 1, "call-e"), None);
        assert_eq!(resume.take("t", "e2", 2, "call-e"), None);
        // Another key is not affected.
        assert_eq!(resume.take("t", "f2", 4, "call-f"), Some(at));
    }

    /// Order is kept per key in one topic: the same key in another topic
    /// (a topic per account or per type, where keys such as `9` recur) is
    /// another key. Every found event of the key in every topic was sent
    /// again once one of them was.
    #[test]
    fn a_key_sent_again_in_one_topic_is_not_sent_again_in_another() {
        let mut resume = AlreadyDelivered::new(10);
        resume.add("t".into(), Ok(scan_finding(&[("a2", 2)])));
        resume.add("u".into(), Ok(scan_finding(&[("b3", 3)])));
        assert_eq!(resume.take("t", "a1", 1, "9"), None, "not found");
        assert_eq!(resume.take("t", "a2", 2, "9"), None, "the rest of the key");
        assert_eq!(resume.take("u", "b3", 3, "9"), Some(AT));
        assert_eq!(resume.skipped, 1);
    }

    /// A resume interrupted after sending e1 again (it landed at 200) and
    /// before e2's new copy landed leaves e2's old copy (51) before e1's: the
    /// next resume finds both, and must send e2 again so that the key's last
    /// copy is its last event (Kafka recovery review, 2026-12-04).
    #[test]
    fn a_found_event_before_an_earlier_one_of_its_key_is_sent_again() {
        let at = |partition, offset| Position { partition, offset };
        let mut resume = AlreadyDelivered::new(10);
        let mut scan = scan_finding(&[]);
        scan.found = HashMap::from([
            (("e1".to_owned(), 1), at(0, 200)),
            (("e2".to_owned(), 2), at(0, 51)),
            (("e3".to_owned(), 3), at(0, 52)),
            (("f1".to_owned(), 4), at(0, 60)),
            (("f2".to_owned(), 5), at(0, 61)),
            (("g1".to_owned(), 6), at(0, 70)),
            (("g2".to_owned(), 7), at(1, 80)),
        ]);
        resume.add("t".into(), Ok(scan));
        assert_eq!(resume.take("t", "e1", 1, "e"), Some(at(0, 200)));
        assert_eq!(resume.take("t", "e2", 2, "e"), None, "before e1's copy");
        assert_eq!(resume.take("t", "e3", 3, "e"), None, "the rest of the key");
        // In order: both skipped.
        assert_eq!(resume.take("t", "f1", 4, "f"), Some(at(0, 60)));
        assert_eq!(resume.take("t", "f2", 5, "f"), Some(at(0, 61)));
        // Another partition than the key's earlier copy (partitions added):
        // sending it again would only add a duplicate.
        assert_eq!(resume.take("t", "g1", 6, "g"), Some(at(0, 70)));
        assert_eq!(resume.take("t", "g2", 7, "g"), Some(at(1, 80)));
        assert_eq!(resume.skipped, 5);
    }
}
