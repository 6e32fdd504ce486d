//! Model-based test of the resume decision ([`AlreadyDelivered`]) against a
//! small simulated Kafka: one or two topics of two or three partitions, each
//! an append-only log of messages (key, `ce_id`, seq; the offset is the index),
//! a key's partition a fixed function of the key that the decision never sees.
//!
//! A case draws the journal (events before the cursor, some already in the
//! logs; events after it, seq increasing, ids and keys from small pools so an
//! id comes back with another seq), what the crashed run had delivered (per
//! partition a prefix of what it sent there, as an idempotent producer
//! leaves it), optionally the re-sends of an earlier resume interrupted too
//! (per topic and key a suffix of its events, landed per partition as a
//! prefix), the offsets the cursor had noted, and what each read-back read
//! (a topic refused, or per partition all of it, part of it, or none). It
//! then runs the forwarder's side as `forwarder/resuming.rs` and
//! `forwarder.rs` do: every topic read back before its events, events taken
//! in seq order, a found one skipped and its offset noted when the cursor
//! passes it, one not found appended again to its partition; optionally that
//! resume is interrupted too (a prefix per partition of its re-sends lands,
//! the cursor stops at the first one that did not, a persisted state no
//! later than that), and a second resume starts from its cursor and offsets.
//!
//! Checked, as the module doc of `resume.rs` states them:
//! - no event after the cursor is lost: afterwards each is in its topic's
//!   log with its `ce_id` and seq;
//! - an event is skipped only when a message with its `ce_id` *and* seq was
//!   read from that topic, and at the position it was read;
//! - per-key order of the last copies: in each partition, the last copies of
//!   a key's events are in seq order (so the copy compaction keeps is the
//!   key's newest event);
//! - within one resume, a partition's noted offset never moves below one
//!   noted before in that resume, and a delivery is noted as it is.
//!
//! It found that a read cut part-way through a partition broke the order
//! of last copies (an event found before the cut was skipped while a later
//! copy of an earlier event of its key lay past it): such events are sent
//! again now ([`AlreadyDelivered::add`]), and the shrunk case is kept below,
//! with a second one that refutes a cheaper rule (skip a key's first event
//! found there).
//!
//! Not modelled: the bounds and deadlines themselves (a cut is drawn, not
//! timed), partitions added between runs, logs that start over, retention,
//! and reads of topics ahead (a topic is read before any of its events is
//! sent, so reading them all first gives the same reads).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;

use super::{AlreadyDelivered, Cut, DeliveredOffsets, Position, Scan, ScanError};

const TOPICS: [&str; 2] = ["calls.a", "calls.b"];
const PARTITIONS: [usize; 2] = [2, 3];
/// The widest topic's partitions: draws per partition come in this many per topic.
const MAX_PARTITIONS: usize = 3;
const KEYS: [&str; 3] = ["call-1", "call-2", "call-3"];
const IDS: [&str; 4] = ["ev-a", "ev-b", "ev-c", "ev-d"];

/// Where a key's messages go; the decision must hold whatever this is.
fn partition_of(topic: usize, key: usize) -> usize {
    (key + topic) % PARTITIONS[topic]
}

/// A draw per partition of each topic, indexed by [`slot`].
fn slot(topic: usize, partition: usize) -> usize {
    topic * MAX_PARTITIONS + partition
}

#[derive(Clone, Copy, Debug)]
struct Event {
    seq: u64,
    id: usize,
    key: usize,
    topic: usize,
}

impl Event {
    fn partition(&self) -> usize {
        partition_of(self.topic, self.key)
    }
}

#[derive(Clone, Copy, Debug)]
struct Message {
    id: usize,
    key: usize,
    seq: u64,
}

/// Per topic, per partition, the log; a message's offset is its index.
#[derive(Clone, Debug)]
struct Kafka {
    logs: Vec<Vec<Vec<Message>>>,
}

impl Kafka {
    fn new() -> Kafka {
        Kafka {
            logs: PARTITIONS.iter().map(|&n| vec![Vec::new(); n]).collect(),
        }
    }

    fn append(&mut self, event: &Event) -> Position {
        let partition = event.partition();
        let log = &mut self.logs[event.topic][partition];
        log.push(Message {
            id: event.id,
            key: event.key,
            seq: event.seq,
        });
        Position {
            partition: partition as i32,
            offset: log.len() as i64 - 1,
        }
    }

    /// Sends `events` in order; per partition only the first
    /// `landed[slot] % (sent there + 1)` land (all when `landed` is `None`):
    /// an idempotent producer cut off mid-way. Where each landed.
    fn send(&mut self, events: &[Event], landed: Option<&[usize]>) -> Vec<Option<Position>> {
        let mut sent_to: HashMap<usize, usize> = HashMap::new();
        for e in events {
            *sent_to.entry(slot(e.topic, e.partition())).or_default() += 1;
        }
        let mut landed_so_far: HashMap<usize, usize> = HashMap::new();
        events
            .iter()
            .map(|e| {
                let slot = slot(e.topic, e.partition());
                let limit = landed.map_or(usize::MAX, |l| l[slot] % (sent_to[&slot] + 1));
                let so_far = landed_so_far.entry(slot).or_default();
                *so_far += 1;
                (*so_far <= limit).then(|| self.append(e))
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum PartitionRead {
    Whole,
    /// `n % (messages in the range)` of its first messages: a cut.
    Partly(usize),
    /// None of it (a cut, when it holds any).
    NotAtAll,
}

#[derive(Clone, Copy, Debug)]
enum CutKind {
    MaxRead,
    Deadline,
    /// Tried again ([`super::unanswered`]), then taken as it is.
    Stalled,
}

#[derive(Clone, Debug)]
enum TopicRead {
    /// An error: nothing of the topic is known.
    Refused,
    Read {
        cut: CutKind,
        partitions: Vec<PartitionRead>,
    },
}

/// An earlier resume (from the same persisted cursor) interrupted while it
/// sent again: per topic and key a suffix of the key's events (from
/// `from[topic * KEYS + key] % (events + 1)`), landed per partition as a prefix.
#[derive(Clone, Debug)]
struct EarlierResume {
    from: Vec<usize>,
    landed: Vec<usize>,
}

/// The drawn resume is interrupted too: its re-sends land per partition as
/// a prefix, and the state persisted is one of those its cursor went
/// through (`persisted % (states + 1)`).
#[derive(Clone, Debug)]
struct Interruption {
    landed: Vec<usize>,
    persisted: usize,
    second_reads: Vec<TopicRead>,
}

#[derive(Clone, Debug)]
struct Case {
    topics: usize,
    /// (id, key, topic) of the events the cursor passed, and whether the
    /// event is in Kafka.
    before: Vec<((usize, usize, usize), bool)>,
    /// (id, key, topic) of the events after the cursor.
    after: Vec<(usize, usize, usize)>,
    crashed_landed: Vec<usize>,
    earlier_resume: Option<EarlierResume>,
    /// Per partition: 0 unknown, else the offset `n - 1` (mod its messages).
    noted: Vec<usize>,
    first_reads: Vec<TopicRead>,
    interruption: Option<Interruption>,
}

/// One resume's effect beyond the logs: the states (cursor, offsets) its
/// cursor went through, starting from the one it started from.
struct ResumeRun {
    states: Vec<(u64, DeliveredOffsets)>,
}

/// Where a partition holding `high` messages is read from, as
/// `scan::read_start` does it (the tail, in the model, is the whole log).
fn read_start(passed: Option<i64>, high: i64) -> i64 {
    match passed {
        Some(passed) if passed < high => passed + 1,
        _ => 0,
    }
}

/// What reading `topic` as `how` gives, with a record of every pair read
/// and where (the last copy read wins, as in `scan_blocking`).
fn scan(
    kafka: &Kafka,
    topic: usize,
    from: &std::collections::BTreeMap<i32, i64>,
    seqs: std::ops::RangeInclusive<u64>,
    how: &TopicRead,
    read_pairs: &mut HashMap<(usize, usize, u64), Position>,
) -> Result<Scan, ScanError> {
    let TopicRead::Read { cut, partitions } = how else {
        return Err(ScanError::NoPartitions);
    };
    let mut result = Scan::default();
    let mut cut_short = false;
    for (partition, log) in kafka.logs[topic].iter().enumerate() {
        let high = log.len() as i64;
        let start = read_start(from.get(&(partition as i32)).copied(), high) as usize;
        let in_range = log.len() - start;
        let read = match partitions[partition] {
            PartitionRead::Whole => in_range,
            PartitionRead::Partly(n) => n % (in_range + 1),
            PartitionRead::NotAtAll => 0,
        };
        if read < in_range {
            cut_short = true;
            result.unfinished.insert(partition as i32);
        }
        for (offset, message) in log.iter().enumerate().skip(start).take(read) {
            result.read += 1;
            if seqs.contains(&message.seq) {
                let at = Position {
                    partition: partition as i32,
                    offset: offset as i64,
                };
                result
                    .found
                    .insert((IDS[message.id].to_owned(), message.seq), at);
                read_pairs.insert((topic, message.id, message.seq), at);
            }
        }
    }
    if cut_short {
        result.cut = Some(match cut {
            CutKind::MaxRead => Cut::MaxRead,
            CutKind::Deadline => Cut::Deadline(Duration::from_secs(30)),
            CutKind::Stalled => Cut::Stalled(Duration::from_secs(10)),
        });
    }
    Ok(result)
}

/// A resume from `cursor` with `offsets` over `journal` (every event after
/// the first cursor), as the forwarder runs it; its re-sends land per
/// `landed` (all when `None`). Checks what is decided within one resume.
fn resume(
    kafka: &mut Kafka,
    topics: usize,
    journal: &[Event],
    cursor: u64,
    offsets: &DeliveredOffsets,
    reads: &[TopicRead],
    landed: Option<&[usize]>,
) -> Result<ResumeRun, TestCaseError> {
    let upto = journal.last().expect("events after the cursor").seq;
    let pending: Vec<Event> = journal.iter().filter(|e| e.seq > cursor).copied().collect();
    let mut resume = AlreadyDelivered::new(upto);
    let mut read_pairs = HashMap::new();
    for (topic, how) in reads.iter().enumerate().take(topics) {
        let from = offsets.of(TOPICS[topic]);
        let mut read = || scan(kafka, topic, &from, cursor + 1..=upto, how, &mut read_pairs);
        let first = read();
        if resume
            .add_reads([(TOPICS[topic].to_owned(), first)], true)
            .is_some()
        {
            // Tried again, read the same, and past the retries taken as it is.
            let again = read();
            prop_assert!(
                resume
                    .add_reads([(TOPICS[topic].to_owned(), again)], false)
                    .is_none()
            );
        }
    }

    let mut found = Vec::with_capacity(pending.len());
    for e in &pending {
        let taken = resume.take(TOPICS[e.topic], IDS[e.id], e.seq, KEYS[e.key]);
        if let Some(at) = taken {
            prop_assert_eq!(
                read_pairs.get(&(e.topic, e.id, e.seq)),
                Some(&at),
                "seq {} skipped as found at {:?}, not where a message with its id and seq was read",
                e.seq,
                at
            );
        }
        found.push(taken);
    }
    let sent_again: Vec<Event> = pending
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(e, _)| *e)
        .collect();
    let mut delivered = kafka.send(&sent_again, landed).into_iter();

    // The cursor passes the reports in seq order and stops at the first
    // re-send that did not land.
    let mut offsets = offsets.clone();
    let mut states = vec![(cursor, offsets.clone())];
    let mut noted_here: HashMap<(usize, i32), i64> = HashMap::new();
    for (e, found) in pending.iter().zip(found) {
        let (at, is_found) = match found {
            Some(at) => (at, true),
            None => match delivered.next().expect("one report per re-send") {
                Some(at) => (at, false),
                None => break,
            },
        };
        let topic: Arc<str> = Arc::from(TOPICS[e.topic]);
        let offset = resume.offset_to_note(&topic, at, is_found);
        if !is_found {
            prop_assert_eq!(offset, at.offset, "a delivery is noted as it is");
        }
        if let Some(&before) = noted_here.get(&(e.topic, at.partition)) {
            prop_assert!(
                offset >= before,
                "seq {}: noted offset {} of {}/{} below {} noted before in this resume",
                e.seq,
                offset,
                TOPICS[e.topic],
                at.partition,
                before
            );
        }
        noted_here.insert((e.topic, at.partition), offset);
        offsets.note(TOPICS[e.topic], at.partition, offset);
        states.push((e.seq, offsets.clone()));
    }
    Ok(ResumeRun { states })
}

/// What must hold of the logs once a resume completed: every event after
/// `cursor` is there, and the last copies of each key are in seq order.
fn check_logs(kafka: &Kafka, journal: &[Event], cursor: u64) -> Result<(), TestCaseError> {
    for e in journal.iter().filter(|e| e.seq > cursor) {
        let in_topic = kafka.logs[e.topic]
            .iter()
            .flatten()
            .any(|m| m.id == e.id && m.seq == e.seq);
        prop_assert!(in_topic, "seq {} ({:?}) lost", e.seq, e);
    }
    for (topic, partitions) in kafka.logs.iter().enumerate() {
        for (partition, log) in partitions.iter().enumerate() {
            // Per key, each event's last copy (offset, seq), in offset order.
            let mut last_copies: HashMap<usize, Vec<(usize, u64)>> = HashMap::new();
            for (offset, message) in log.iter().enumerate() {
                let copies = last_copies.entry(message.key).or_default();
                copies.retain(|&(_, seq)| seq != message.seq);
                copies.push((offset, message.seq));
            }
            for (key, copies) in last_copies {
                let seqs: Vec<u64> = copies.iter().map(|&(_, seq)| seq).collect();
                prop_assert!(
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "{}/{} key {}: last copies (offset, seq) out of seq order: {:?}",
                    TOPICS[topic],
                    partition,
                    KEYS[key],
                    copies
                );
            }
        }
    }
    Ok(())
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let mut kafka = Kafka::new();
    let event = |index: usize, &(id, key, topic): &(usize, usize, usize)| Event {
        seq: index as u64 + 1,
        id,
        key,
        topic,
    };
    let history: Vec<Event> = case
        .before
        .iter()
        .enumerate()
        .map(|(i, (draw, _))| event(i, draw))
        .collect();
    for (e, (_, in_kafka)) in history.iter().zip(&case.before) {
        if *in_kafka {
            kafka.append(e);
        }
    }
    let cursor = history.len() as u64;
    let journal: Vec<Event> = case
        .after
        .iter()
        .enumerate()
        .map(|(i, draw)| event(history.len() + i, draw))
        .collect();

    // The crashed run sent every event after the cursor; part landed.
    kafka.send(&journal, Some(&case.crashed_landed));
    if let Some(earlier) = &case.earlier_resume {
        let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
        let mut of_key: HashMap<(usize, usize), usize> = HashMap::new();
        for e in &journal {
            *of_key.entry((e.topic, e.key)).or_default() += 1;
        }
        let sent_again: Vec<Event> = journal
            .iter()
            .filter(|e| {
                let at = seen.entry((e.topic, e.key)).or_default();
                *at += 1;
                let from =
                    earlier.from[e.topic * KEYS.len() + e.key] % (of_key[&(e.topic, e.key)] + 1);
                *at > from
            })
            .copied()
            .collect();
        kafka.send(&sent_again, Some(&earlier.landed));
    }

    // The offsets the cursor noted: those of messages it passed.
    let mut offsets = DeliveredOffsets::default();
    for topic in 0..case.topics {
        for partition in 0..PARTITIONS[topic] {
            // They come first in the log: the crashed run's follow them.
            let passed_in_kafka = kafka.logs[topic][partition]
                .iter()
                .filter(|m| m.seq <= cursor)
                .count();
            let noted = case.noted[slot(topic, partition)] % (passed_in_kafka + 1);
            if noted > 0 {
                offsets.note(TOPICS[topic], partition as i32, noted as i64 - 1);
            }
        }
    }

    let landed = case.interruption.as_ref().map(|i| i.landed.as_slice());
    let first = resume(
        &mut kafka,
        case.topics,
        &journal,
        cursor,
        &offsets,
        &case.first_reads,
        landed,
    )?;
    let Some(interruption) = &case.interruption else {
        return check_logs(&kafka, &journal, cursor);
    };
    let (cursor_then, offsets_then) = &first.states[interruption.persisted % first.states.len()];
    resume(
        &mut kafka,
        case.topics,
        &journal,
        *cursor_then,
        offsets_then,
        &interruption.second_reads,
        None,
    )?;
    check_logs(&kafka, &journal, cursor)
}

fn per_partition() -> impl Strategy<Value = Vec<usize>> {
    vec(0usize..8, TOPICS.len() * MAX_PARTITIONS)
}

fn topic_read(cut_part_way: bool) -> impl Strategy<Value = TopicRead> {
    let partition = if cut_part_way {
        prop_oneof![
            3 => Just(PartitionRead::Whole),
            2 => (1usize..8).prop_map(PartitionRead::Partly),
            1 => Just(PartitionRead::NotAtAll),
        ]
        .boxed()
    } else {
        prop_oneof![
            4 => Just(PartitionRead::Whole),
            1 => Just(PartitionRead::NotAtAll),
        ]
        .boxed()
    };
    let cut = prop_oneof![
        Just(CutKind::MaxRead),
        Just(CutKind::Deadline),
        Just(CutKind::Stalled)
    ];
    prop_oneof![
        1 => Just(TopicRead::Refused),
        6 => (cut, vec(partition, MAX_PARTITIONS))
            .prop_map(|(cut, partitions)| TopicRead::Read { cut, partitions }),
    ]
}

fn case(cut_part_way: bool) -> impl Strategy<Value = Case> {
    (1usize..=2).prop_flat_map(move |topics| {
        let draw = (0..IDS.len(), 0..KEYS.len(), 0..topics);
        let earlier = (vec(0usize..8, TOPICS.len() * KEYS.len()), per_partition())
            .prop_map(|(from, landed)| EarlierResume { from, landed });
        let interruption = (
            per_partition(),
            0usize..16,
            vec(topic_read(cut_part_way), TOPICS.len()),
        )
            .prop_map(|(landed, persisted, second_reads)| Interruption {
                landed,
                persisted,
                second_reads,
            });
        (
            vec((draw.clone(), any::<bool>()), 0..=3),
            vec(draw, 1..=7),
            per_partition(),
            proptest::option::weighted(0.6, earlier),
            per_partition(),
            vec(topic_read(cut_part_way), TOPICS.len()),
            proptest::option::weighted(0.5, interruption),
        )
            .prop_map(
                move |(
                    before,
                    after,
                    crashed_landed,
                    earlier_resume,
                    noted,
                    first_reads,
                    interruption,
                )| Case {
                    topics,
                    before,
                    after,
                    crashed_landed,
                    earlier_resume,
                    noted,
                    first_reads,
                    interruption,
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Reads that are whole, refused, or miss whole partitions.
    #[test]
    fn a_resume_loses_nothing_and_keeps_each_keys_last_copies_in_order(case in case(false)) {
        run(&case)?;
    }

    /// Reads cut part-way through a partition too.
    #[test]
    fn a_resume_after_a_read_cut_part_way_loses_nothing_and_keeps_each_keys_last_copies_in_order(
        case in case(true),
    ) {
        run(&case)?;
    }
}

/// The case proptest shrank the defect to (a key's last copy an older
/// event after a cut read, see the module doc). Seqs 3 and 5 (key call-2, in
/// calls.b/2) landed from the crashed run at 0 and 1; the first resume read
/// nothing (refused), sent everything again, and was interrupted once seq 3's
/// new copy landed at 2 (calls.a's re-sends did not, so the cursor stayed
/// at 0). The second resume's read of calls.b/2 was cut after two messages:
/// it found seq 3 at 0 and seq 5 at 1, in order, and skipped both. The
/// partition ended seq 3 (at 2) after seq 5 (at 1): compaction kept seq 3.
/// Now both are sent again, as found in a partition not read to its end.
#[test]
fn a_read_cut_before_an_interrupted_resumes_copy_keeps_the_keys_order() {
    let (a, b) = (0, 1);
    let (call_1, call_2) = (0, 1);
    let read = |partitions: [PartitionRead; MAX_PARTITIONS]| TopicRead::Read {
        cut: CutKind::MaxRead,
        partitions: partitions.to_vec(),
    };
    let case = Case {
        topics: 2,
        before: vec![],
        after: vec![
            (0, call_1, a),
            (0, call_1, a),
            (0, call_2, b),
            (0, call_1, a),
            (0, call_2, b),
        ],
        // calls.b/2: both of its events landed; nothing else did.
        crashed_landed: vec![0, 0, 0, 0, 0, 2],
        earlier_resume: None,
        noted: vec![0; TOPICS.len() * MAX_PARTITIONS],
        first_reads: vec![TopicRead::Refused, TopicRead::Refused],
        interruption: Some(Interruption {
            // calls.b/2: the first of its two re-sends landed.
            landed: vec![0, 0, 0, 0, 0, 1],
            persisted: 0,
            second_reads: vec![
                TopicRead::Refused,
                read([
                    PartitionRead::Whole,
                    PartitionRead::Whole,
                    PartitionRead::Partly(2),
                ]),
            ],
        }),
    };
    if let Err(error) = run(&case) {
        panic!("a key's last copy after a cut read: {error}");
    }
}

/// Why every event found in a partition not read to its end is sent again,
/// not only a key's events after its first one found there (a cheaper rule,
/// tried and refuted by this case). Seqs 1 and 2 of one key landed from the
/// crashed run at 0 and 1; an earlier resume's re-send of seq 1 landed at 2
/// (its seq 2 did not). Under that rule the first resume read one message
/// (seq 1 at 0), skipped seq 1 and noted offset 0, sent seq 2 again and was
/// interrupted before that landed. The second resume, its cursor past seq
/// 1, read from offset 1: seq 2 at 1 (seq 1's copy at offset 2 is not
/// looked for, seq 1 being at or before the cursor), skipped it, and the
/// key's last copy was seq 1. Now the first resume sends both again.
#[test]
fn not_even_a_keys_first_event_found_before_a_cut_is_skipped() {
    let (a, call_3, ev_a) = (0, 2, 0);
    let case = Case {
        topics: 1,
        before: vec![],
        after: vec![(ev_a, call_3, a), (ev_a, call_3, a)],
        // calls.a/0 (call-3's partition): both events landed.
        crashed_landed: vec![2, 0, 0, 0, 0, 0],
        // The earlier resume sent both again; the first landed.
        earlier_resume: Some(EarlierResume {
            from: vec![0; TOPICS.len() * KEYS.len()],
            landed: vec![1, 0, 0, 0, 0, 0],
        }),
        noted: vec![0; TOPICS.len() * MAX_PARTITIONS],
        first_reads: vec![
            TopicRead::Read {
                cut: CutKind::MaxRead,
                partitions: vec![
                    PartitionRead::Partly(1),
                    PartitionRead::Whole,
                    PartitionRead::Whole,
                ],
            },
            TopicRead::Refused,
        ],
        interruption: Some(Interruption {
            landed: vec![0; TOPICS.len() * MAX_PARTITIONS],
            persisted: 1,
            second_reads: vec![
                TopicRead::Read {
                    cut: CutKind::MaxRead,
                    partitions: vec![PartitionRead::Whole; MAX_PARTITIONS],
                },
                TopicRead::Refused,
            ],
        }),
    };
    if let Err(error) = run(&case) {
        panic!("a key's last copy after a cut read: {error}");
    }
}
