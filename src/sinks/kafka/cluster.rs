//! What the Kafka cluster says of the partitions the sink writes, asked when
//! records wait without any report: is it the cluster's trouble, which a new
//! producer would meet too, or the producer's?
//!
//! The sink produces with `acks=all`, so a partition takes a record while it
//! has a leader and at least `min.insync.replicas` replicas in sync (the
//! topic's value, or the broker default it inherits). That is what each
//! partition is judged by ([`partition_writable`]): a partition
//! under-replicated but still at that minimum (one broker of three down for
//! maintenance) takes records, so a stall then is the producer's.
//!
//! Guarantees:
//! - one metadata request, bounded by 5 s; then, only when a partition of
//!   the asked topics has fewer replicas in sync than assigned, one
//!   DescribeConfigs request for those topics, bounded by 5 s, through an
//!   admin client built from the sink's client settings unchanged, whose
//!   librdkafka logs go to debug. Both run on a blocking thread, and the
//!   caller waits at most [`CHECK_BOUND`] whatever librdkafka does;
//! - no answer counts as not healthy (the cluster is the likelier culprit);
//! - a topic whose `min.insync.replicas` cannot be read (refused, timed out,
//!   missing, not a number) is judged by the strict rule, every replica in
//!   sync: an unknown minimum never makes a partition healthy. The verdict
//!   names every such topic ([`StallCheck::minimum_unknown`]), a refusal
//!   rdkafka reports as an empty answer included, for the caller to log;
//!   so does every partition it found unable to take a record, and why
//!   ([`StallCheck::unwritable`]); this module logs nothing;
//! - nothing a broker answers makes it panic.
//!
//! It also answers, when the producer has said every broker is down for
//! long with records waiting, whether that is an outage or the producer's
//! own trouble ([`producer_wedged`]): librdkafka 2.12.1 can drop every
//! broker on a metadata answer listing none (a rolling restart) and never
//! connect again (confluentinc/librdkafka#5301, no fix released), and the
//! stall check, asking through that producer, could never tell. A fresh
//! client, built and logging as the DescribeConfigs one, asks first (5 s at
//! most); only when it gets an answer listing a broker is the producer
//! asked, and given a grace longer than its reconnect backoff; the caller
//! waits at most [`CHECK_BOUND`] and the grace whatever librdkafka does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResourceResult, OwnedResourceSpecifier, ResourceSpecifier,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::MetadataTopic;
use rdkafka::producer::Producer;

use super::producer::KafkaProducer;
use super::resume::QuietContext;

/// How long the metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the DescribeConfigs request may take, connecting included.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest the caller waits for a verdict: both requests, and room for
/// creating and destroying the admin client, which no request timeout covers.
const CHECK_BOUND: Duration = Duration::from_secs(15);
const _: () = assert!(
    METADATA_TIMEOUT.as_millis() + DESCRIBE_TIMEOUT.as_millis() < CHECK_BOUND.as_millis(),
    "both requests must fit in the caller's bound, with room for the client"
);

/// The topic setting that says how many replicas must be in sync for an
/// `acks=all` produce to succeed.
const MIN_INSYNC: &str = "min.insync.replicas";

/// What a stall check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StallCheck {
    /// Every partition of the asked topics would take a record from a new
    /// producer: a stall is the producer's.
    pub healthy: bool,
    /// The under-replicated topics whose `min.insync.replicas` could not be
    /// read (refused, the request failed or timed out, the value missing or
    /// not a number). They were judged by the strict rule, so while any is
    /// listed the check is not healthy and a stalled producer is kept.
    pub minimum_unknown: Vec<String>,
    /// Why the DescribeConfigs request failed as a whole, when it did.
    pub describe_error: Option<String>,
    /// The partitions (or whole topics) of the asked topics that cannot
    /// take a record, and why: the name the operator needs, when one
    /// account's topic holds every account's events (isolation review,
    /// 2026-12-06, ninth round). Empty with no answer at all. Not those of
    /// a topic in `minimum_unknown`, which may take a record.
    pub unwritable: Vec<Unwritable>,
}

/// A partition, or a whole topic, that cannot take an `acks=all` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unwritable {
    pub topic: String,
    /// `None` when the cluster answered the topic as a whole with an error.
    pub partition: Option<i32>,
    pub why: String,
}

impl std::fmt::Display for Unwritable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.partition {
            Some(partition) => write!(
                f,
                "topic \"{}\" partition {partition} ({})",
                self.topic, self.why
            ),
            None => write!(f, "topic \"{}\" ({})", self.topic, self.why),
        }
    }
}

impl StallCheck {
    /// Not healthy, with nothing more to say: no answer, an error, a
    /// partition without a leader.
    fn unhealthy() -> StallCheck {
        StallCheck::default()
    }
}

/// Whether every partition of `topics` would take a record from a new
/// producer (see the module doc), as the cluster answers through `producer`
/// and, for under-replicated topics, through an admin client built from
/// `admin` (the sink's client settings: brokers, security).
pub async fn partitions_healthy(
    producer: Option<KafkaProducer>,
    topics: Vec<Arc<str>>,
    admin: ClientConfig,
) -> StallCheck {
    let Some(producer) = producer else {
        return StallCheck::unhealthy();
    };
    let check = tokio::task::spawn_blocking(move || check_blocking(&producer, &topics, &admin));
    // A check that overruns is left to finish on its thread; its verdict
    // no longer matters.
    match tokio::time::timeout(CHECK_BOUND, check).await {
        Ok(Ok(found)) => found,
        _ => StallCheck::unhealthy(),
    }
}

fn check_blocking(
    producer: &KafkaProducer,
    topics: &[Arc<str>],
    admin: &ClientConfig,
) -> StallCheck {
    let Ok(metadata) = producer.client().fetch_metadata(None, METADATA_TIMEOUT) else {
        return StallCheck::unhealthy();
    };
    let asked: Vec<&MetadataTopic> = metadata
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|name| **name == *t.name()))
        .collect();
    // Not writable even at the loosest minimum (an error, a partition
    // without a leader): no setting can change the verdict, so none is asked.
    let hopeless: Vec<Unwritable> = asked.iter().flat_map(|t| unwritable(t, Some(1))).collect();
    if !hopeless.is_empty() {
        return StallCheck {
            unwritable: hopeless,
            ..StallCheck::unhealthy()
        };
    }
    let short: Vec<&str> = asked
        .iter()
        .filter(|t| {
            t.partitions()
                .iter()
                .any(|p| p.isr().len() < p.replicas().len())
        })
        .map(|t| t.name())
        .collect();
    // The usual case: every replica in sync, which is writable whatever the
    // minimum, so the cluster is asked nothing more.
    if short.is_empty() {
        return StallCheck {
            healthy: true,
            ..StallCheck::default()
        };
    }
    let minimums = minimums(&short, min_insync_replicas(admin, &short));
    let found: Vec<Unwritable> = asked
        .iter()
        .flat_map(|t| unwritable(t, minimums.known.get(t.name()).copied()))
        .collect();
    verdict(found, minimums)
}

/// The verdict once the minimums were asked: healthy only with nothing
/// `found` unable to take a record. A topic whose minimum is unknown is
/// judged by every replica in sync, but its partitions are named in
/// `minimum_unknown` only: writable at the loosest minimum (else the
/// verdict came before asking), they may well take a record, and calling
/// them unable to pointed the operator at the partitions rather than at the
/// missing DescribeConfigs right (review of 8aaffc1, 2026-12-06, ninth
/// round).
fn verdict(found: Vec<Unwritable>, minimums: Minimums) -> StallCheck {
    let healthy = found.is_empty();
    let unknown: HashSet<&str> = minimums.unknown.iter().map(String::as_str).collect();
    let unwritable = found
        .into_iter()
        .filter(|u| !unknown.contains(u.topic.as_str()))
        .collect();
    StallCheck {
        healthy,
        minimum_unknown: minimums.unknown,
        describe_error: minimums.error,
        unwritable,
    }
}

/// What asking a fresh client, then the producer, found while the producer
/// has said every broker is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wedge {
    /// No broker answers a fresh client either (or not in time): an outage,
    /// which a new producer would wait out too.
    Outage,
    /// The producer answers as well: it was only waiting to reconnect.
    ProducerAnswers,
    /// The brokers answer a fresh client, and the producer, given its
    /// grace, does not: it is stuck, and only a new one delivers again.
    Wedged,
}

/// Whether `producer`, which has said every broker is down, is stuck while
/// the brokers answer: a fresh client built from `admin` (the sink's client
/// settings) asks for metadata, then, if it got an answer, `producer` does,
/// given `grace` (see the module doc).
pub async fn producer_wedged(
    producer: Option<KafkaProducer>,
    admin: ClientConfig,
    grace: Duration,
) -> Wedge {
    // No producer: none to replace.
    let Some(producer) = producer else {
        return Wedge::Outage;
    };
    let asked = tokio::task::spawn_blocking(move || {
        wedge_of(
            || fresh_client_answers(&admin),
            || producer.client().fetch_metadata(None, grace).is_ok(),
        )
    });
    // Overrun, the asking is left to finish on its thread, as the check's.
    match tokio::time::timeout(CHECK_BOUND + grace, asked).await {
        Ok(Ok(found)) => found,
        _ => Wedge::Outage,
    }
}

/// The verdict from `fresh_answers`, then `producer_answers`, each asked
/// once. In that order: the brokers back, the producer may still be in its
/// reconnect backoff (`reconnect.backoff.max.ms`, 10 s), and asked first it
/// would be called stuck at the end of every outage longer than the bound.
fn wedge_of(
    fresh_answers: impl FnOnce() -> bool,
    producer_answers: impl FnOnce() -> bool,
) -> Wedge {
    if !fresh_answers() {
        Wedge::Outage
    } else if producer_answers() {
        Wedge::ProducerAnswers
    } else {
        Wedge::Wedged
    }
}

/// Whether a client just built from `admin` gets metadata naming a broker:
/// an answer listing none is what wedges librdkafka, and a new producer
/// would fare no better.
fn fresh_client_answers(admin: &ClientConfig) -> bool {
    let Ok(client) = admin_client(admin) else {
        return false;
    };
    client
        .inner()
        .fetch_metadata(None, METADATA_TIMEOUT)
        .is_ok_and(|metadata| !metadata.brokers().is_empty())
}

/// What the DescribeConfigs request told of the `short` topics' minimum.
#[derive(Debug)]
struct Minimums {
    known: HashMap<String, usize>,
    /// Every topic of `short` absent from `known`, in `short`'s order.
    unknown: Vec<String>,
    /// Why the request failed as a whole, when it did.
    error: Option<String>,
}

/// Sorts the `short` topics into those whose minimum `described` gave and
/// the rest. Not only a failed request leaves a topic unknown: rdkafka
/// answers a resource the broker refused (no DescribeConfigs right on the
/// topic) with no entries and no error, which [`min_insync_of`] leaves out
/// of its map, and so does a value missing or not a number.
fn minimums(short: &[&str], described: Result<HashMap<String, usize>, KafkaError>) -> Minimums {
    let (known, error) = match described {
        Ok(known) => (known, None),
        Err(e) => (HashMap::new(), Some(said_of(&e))),
    };
    let unknown = short
        .iter()
        .filter(|topic| !known.contains_key(**topic))
        .map(|topic| (*topic).to_owned())
        .collect();
    Minimums {
        known,
        unknown,
        error,
    }
}

/// A failed request's error as the log may say it. librdkafka's words for
/// a client it would not create can quote a setting's value, a SASL
/// password among them; the producer was created from the same settings,
/// so that should not happen, and if it does, only that it did is said.
fn said_of(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => {
            "the admin client could not be created from the sink's settings".to_owned()
        }
        other => other.to_string(),
    }
}

/// What of `topic` cannot take a record at the minimum `min_insync`
/// (see [`partition_writable`]): the topic as a whole when it was answered
/// with an error, else each such partition; empty when it is writable.
fn unwritable(topic: &MetadataTopic, min_insync: Option<usize>) -> Vec<Unwritable> {
    let named = |partition, why| Unwritable {
        topic: topic.name().to_owned(),
        partition,
        why,
    };
    if let Some(error) = topic.error() {
        return vec![named(None, RDKafkaErrorCode::from(error).to_string())];
    }
    topic
        .partitions()
        .iter()
        .filter_map(|p| {
            let (isr, replicas) = (p.isr().len(), p.replicas().len());
            let why = match p.error() {
                Some(error) => RDKafkaErrorCode::from(error).to_string(),
                None if partition_writable(p.leader(), isr, replicas, min_insync) => return None,
                None => unwritable_why(p.leader(), isr, replicas, min_insync),
            };
            Some(named(Some(p.id()), why))
        })
        .collect()
}

/// Why a partition [`partition_writable`] refuses cannot take a record.
fn unwritable_why(leader: i32, isr: usize, replicas: usize, min_insync: Option<usize>) -> String {
    if leader < 0 {
        return "no leader".to_owned();
    }
    match min_insync {
        Some(min) => format!(
            "{isr} of {replicas} replicas in sync, below min.insync.replicas {}",
            min.max(1)
        ),
        // Shown nowhere today: `verdict` keeps such an entry only to call
        // the check unhealthy, then drops it, as its topic may take a
        // record. Kept rather than an empty reason, so no later reader of
        // `Unwritable` shows a partition with no why; a few short topics'
        // partitions, on the blocking thread.
        None => format!("{isr} of {replicas} replicas in sync, and min.insync.replicas unknown"),
    }
}

/// Whether a partition takes an `acks=all` record: it has a leader (`-1`
/// when none), and its in-sync replicas (`isr`, of `replicas` assigned)
/// number at least the topic's `min.insync.replicas` — at least one, the
/// leader's own copy.
///
/// With the minimum unknown every replica must be in sync. That holds a
/// producer replacement in a case where it would have helped (a stuck
/// producer during maintenance) until the replicas catch up; the other way
/// round, calling an unwritable partition healthy, would replace the
/// producer every recheck while a new one waits just the same.
fn partition_writable(leader: i32, isr: usize, replicas: usize, min_insync: Option<usize>) -> bool {
    leader >= 0
        && match min_insync {
            Some(min) => isr >= min.max(1),
            None => isr >= replicas,
        }
}

/// `min.insync.replicas` of each of `topics` whose value the cluster gave
/// and that parses; a topic absent from the map is unknown.
fn min_insync_replicas(
    admin: &ClientConfig,
    topics: &[&str],
) -> Result<HashMap<String, usize>, KafkaError> {
    let client = admin_client(admin)?;
    let resources: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(DESCRIBE_TIMEOUT));
    // The admin client's own thread completes this future: no runtime needed.
    let results = futures::executor::block_on(client.describe_configs(&resources, &options))?;
    Ok(min_insync_of(results))
}

/// An admin client on the sink's client settings, as they are: the sink's
/// producer was created from them, so librdkafka takes them. Overriding one
/// can make it refuse them: `enable.idempotence=false` (which only spared
/// the cluster a producer id request) is refused with
/// `enable.gapless.guarantee=true` in `[kafka.options]`, and removing that
/// too would be one more override to keep right. `create_topic`'s admin
/// client overrides nothing either. Its librdkafka logs go to debug
/// ([`QuietContext`]): a broker that is down is the sink's to report, and
/// the stall check runs every 30 s while it lasts.
fn admin_client(admin: &ClientConfig) -> Result<AdminClient<QuietContext>, KafkaError> {
    admin.create_with_context(QuietContext::of(admin))
}

/// The parsed `min.insync.replicas` per topic. A resource the broker
/// refused arrives without entries (rdkafka does not pass on its error
/// code), so it, like an `Err`, leaves its topic out: unknown.
fn min_insync_of(results: Vec<ConfigResourceResult>) -> HashMap<String, usize> {
    results
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|resource| {
            let min = parse_min_insync(resource.get(MIN_INSYNC)?.value.as_deref()?)?;
            match resource.specifier {
                OwnedResourceSpecifier::Topic(name) => Some((name, min)),
                _ => None,
            }
        })
        .collect()
}

/// A value that is not a whole number is unknown. Kafka refuses a minimum
/// below 1, so 0 or a negative one comes from something else than the
/// topic's setting; it counts as 1, which still asks for a replica in sync.
fn parse_min_insync(value: &str) -> Option<usize> {
    let n: i64 = value.trim().parse().ok()?;
    Some(if n < 1 {
        1
    } else {
        usize::try_from(n).unwrap_or(usize::MAX)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rdkafka::admin::{ConfigEntry, ConfigResource, ConfigSource};

    use super::*;
    use crate::sinks::kafka::tests_support::mock_topic;

    fn names(topics: &[&str]) -> Vec<Arc<str>> {
        topics.iter().map(|t| Arc::from(*t)).collect()
    }

    #[test]
    fn a_partition_without_a_leader_takes_nothing_whatever_the_replicas() {
        assert!(!partition_writable(-1, 3, 3, None));
        assert!(!partition_writable(-1, 3, 3, Some(1)));
        assert!(partition_writable(0, 3, 3, None));
        assert!(partition_writable(0, 3, 3, Some(2)));
    }

    #[test]
    fn with_the_minimum_known_enough_replicas_in_sync_is_writable() {
        // One broker of three down for maintenance: under-replicated, writable.
        assert!(partition_writable(1, 2, 3, Some(2)));
        assert!(partition_writable(1, 1, 3, Some(1)));
        // Below the minimum Kafka refuses an acks=all produce.
        assert!(!partition_writable(1, 1, 3, Some(2)));
        assert!(!partition_writable(1, 2, 3, Some(3)));
        // A minimum above the replication factor refuses every produce.
        assert!(!partition_writable(1, 3, 3, Some(4)));
    }

    #[test]
    fn a_minimum_of_zero_still_asks_for_one_replica_in_sync() {
        assert!(!partition_writable(1, 0, 3, Some(0)));
        assert!(partition_writable(1, 1, 3, Some(0)));
    }

    #[test]
    fn with_the_minimum_unknown_every_replica_must_be_in_sync() {
        assert!(!partition_writable(1, 2, 3, None));
        assert!(!partition_writable(1, 1, 2, None));
        assert!(partition_writable(1, 3, 3, None));
        assert!(partition_writable(1, 1, 1, None));
    }

    /// librdkafka's refusal of a client quotes the setting it refuses,
    /// whatever its value: a password must not reach the WARN through it.
    #[test]
    fn a_client_creation_error_is_said_without_its_text() {
        let refused =
            KafkaError::ClientCreation("invalid value \"hunter2\" for sasl.password".into());
        assert!(
            !said_of(&refused).contains("hunter2"),
            "{}",
            said_of(&refused)
        );
        let timed_out = KafkaError::AdminOp(rdkafka::types::RDKafkaErrorCode::OperationTimedOut);
        assert_eq!(said_of(&timed_out), timed_out.to_string());
    }

    #[test]
    fn the_minimum_is_a_whole_number_at_least_one_or_unknown() {
        assert_eq!(parse_min_insync("2"), Some(2));
        assert_eq!(parse_min_insync(" 3\n"), Some(3));
        assert_eq!(parse_min_insync("0"), Some(1));
        assert_eq!(parse_min_insync("-4"), Some(1));
        assert_eq!(parse_min_insync(""), None);
        assert_eq!(parse_min_insync("two"), None);
        assert_eq!(parse_min_insync("2.5"), None);
        assert_eq!(parse_min_insync("99999999999999999999999"), None);
    }

    fn resource(
        specifier: OwnedResourceSpecifier,
        entries: &[(&str, Option<&str>)],
    ) -> ConfigResourceResult {
        Ok(ConfigResource {
            specifier,
            entries: entries
                .iter()
                .map(|(name, value)| ConfigEntry {
                    name: (*name).to_owned(),
                    value: value.map(str::to_owned),
                    source: ConfigSource::Default,
                    is_read_only: false,
                    is_default: true,
                    is_sensitive: false,
                })
                .collect(),
        })
    }

    #[test]
    fn only_a_topics_own_parsed_minimum_is_known() {
        let topic = |name: &str| OwnedResourceSpecifier::Topic(name.to_owned());
        let found = min_insync_of(vec![
            resource(
                topic("calls"),
                &[("retention.ms", Some("1")), (MIN_INSYNC, Some("2"))],
            ),
            resource(topic("zero"), &[(MIN_INSYNC, Some("0"))]),
            resource(topic("garbled"), &[(MIN_INSYNC, Some("many"))]),
            resource(topic("hidden"), &[(MIN_INSYNC, None)]),
            // A refused resource: no entries.
            resource(topic("refused"), &[]),
            resource(topic("other"), &[("retention.ms", Some("3"))]),
            resource(
                OwnedResourceSpecifier::Broker(1),
                &[(MIN_INSYNC, Some("1"))],
            ),
            Err(rdkafka::error::RDKafkaErrorCode::TopicAuthorizationFailed),
        ]);
        assert_eq!(
            found,
            HashMap::from([("calls".to_owned(), 2), ("zero".to_owned(), 1)])
        );
    }

    /// A topic the broker refused to describe comes back as an empty
    /// resource, not an error: it is named as unknown like one of a request
    /// that failed as a whole, so the forwarder's WARN names it too (it
    /// used to warn only on a failed request).
    #[test]
    fn every_short_topic_without_a_known_minimum_is_named() {
        let topic = |name: &str| OwnedResourceSpecifier::Topic(name.to_owned());
        let described = min_insync_of(vec![
            resource(topic("calls"), &[(MIN_INSYNC, Some("2"))]),
            resource(topic("refused"), &[]),
            resource(topic("garbled"), &[(MIN_INSYNC, Some("many"))]),
        ]);
        let short = ["calls", "refused", "garbled", "unanswered"];
        let found = minimums(&short, Ok(described));
        assert_eq!(found.unknown, ["refused", "garbled", "unanswered"]);
        assert_eq!(found.known, HashMap::from([("calls".to_owned(), 2)]));
        assert_eq!(found.error, None);

        let failed = KafkaError::AdminOp(rdkafka::error::RDKafkaErrorCode::OperationTimedOut);
        let said = failed.to_string();
        let found = minimums(&["calls", "crm"], Err(failed));
        assert_eq!(found.unknown, ["calls", "crm"]);
        assert!(found.known.is_empty());
        assert_eq!(found.error, Some(said));

        let all_known = HashMap::from([("calls".to_owned(), 2), ("crm".to_owned(), 1)]);
        let found = minimums(&["calls", "crm"], Ok(all_known));
        assert!(found.unknown.is_empty(), "{:?}", found.unknown);
    }

    /// librdkafka refuses a client with `enable.gapless.guarantee` but not
    /// idempotence; the admin client used to force idempotence off, so a
    /// sink with gapless set could never read a minimum.
    #[test]
    fn the_admin_client_takes_every_setting_the_producer_takes() {
        let (_mock, _, mut config) = mock_topic("calls");
        let gapless = crate::config::unspanned("true".to_owned());
        config
            .options
            .insert("enable.gapless.guarantee".to_owned(), gapless);
        let settings = config.client_config();
        assert!(crate::sinks::kafka::producer::create(&config, Arc::default()).is_ok());
        let created = admin_client(&settings);
        assert!(created.is_ok(), "{:?}", created.err());
    }

    #[test]
    fn a_cluster_that_cannot_describe_configs_leaves_the_minimum_unknown_in_bounded_time() {
        // librdkafka's mock cluster does not implement DescribeConfigs.
        let (_mock, _, config) = mock_topic("calls");
        let started = Instant::now();
        let found = min_insync_replicas(&config.client_config(), &["calls"]);
        assert!(
            found.as_ref().map_or(true, |m| !m.contains_key("calls")),
            "{found:?}"
        );
        // The request's own timeout ends it, within what the caller's bound
        // leaves it after the metadata request: without one it waits
        // librdkafka's (`socket.timeout.ms`, 60 s), and the caller gives the
        // whole check up. Normally ~5 s; 10 s leaves a stall of the host 5 s
        // and still fails that 60 s (a DESCRIBE_TIMEOUT raised past the
        // budget is refused at compile time, beside the constants).
        let bound = CHECK_BOUND - METADATA_TIMEOUT;
        assert!(started.elapsed() < bound, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_partition_without_a_leader_is_the_clusters_trouble_for_its_topic_only() {
        let (mock, _, config) = mock_topic("calls");
        mock.create_topic("crm", 1, 1).unwrap();
        let producer =
            || Some(crate::sinks::kafka::producer::create(&config, Arc::default()).unwrap());
        let check =
            |topics: &[&str]| partitions_healthy(producer(), names(topics), config.client_config());
        // The mock reports every replica in sync: no minimum is asked.
        let all_in_sync = StallCheck {
            healthy: true,
            ..StallCheck::default()
        };
        assert_eq!(check(&["calls", "crm"]).await, all_in_sync);
        mock.partition_leader("crm", 0, None).unwrap();
        let found = check(&["calls", "crm"]).await;
        assert!(!found.healthy);
        let named: Vec<String> = found.unwritable.iter().map(|u| u.to_string()).collect();
        assert_eq!(named, ["topic \"crm\" partition 0 (no leader)"]);
        assert_eq!(
            check(&["calls"]).await,
            all_in_sync,
            "a topic the sink does not write is not asked about"
        );
    }

    #[tokio::test]
    async fn a_topic_the_cluster_answers_with_an_error_is_not_healthy() {
        let (mock, _, config) = mock_topic("calls");
        mock.topic_error(
            "calls",
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
        let producer = crate::sinks::kafka::producer::create(&config, Arc::default()).unwrap();
        let found = partitions_healthy(Some(producer), names(&["calls"]), config.client_config());
        let found = found.await;
        assert!(!found.healthy);
        let named: Vec<String> = found.unwritable.iter().map(|u| u.to_string()).collect();
        assert_eq!(
            named,
            [format!(
                "topic \"calls\" ({})",
                RDKafkaErrorCode::TopicAuthorizationFailed
            )]
        );
    }

    /// Partitions judged unable only for want of their topic's minimum
    /// keep the producer, and are named as of unknown minimum, not as
    /// unable to take a record (review of 8aaffc1, 2026-12-06, ninth round).
    #[test]
    fn a_partition_of_unknown_minimum_is_not_said_to_be_unable_to_take_a_record() {
        let short = |topic: &str, why: &str| Unwritable {
            topic: topic.to_owned(),
            partition: Some(0),
            why: why.to_owned(),
        };
        let below = short(
            "calls",
            "1 of 3 replicas in sync, below min.insync.replicas 2",
        );
        let unknown = short("crm", &unwritable_why(1, 2, 3, None));
        let minimums = || Minimums {
            known: HashMap::from([("calls".to_owned(), 2)]),
            unknown: vec!["crm".to_owned()],
            error: None,
        };
        let found = verdict(vec![below.clone(), unknown.clone()], minimums());
        assert!(!found.healthy);
        assert_eq!(found.unwritable, [below]);
        assert_eq!(found.minimum_unknown, ["crm"]);

        let found = verdict(vec![unknown], minimums());
        assert!(!found.healthy, "judged by every replica in sync");
        assert!(found.unwritable.is_empty(), "{:?}", found.unwritable);
    }

    /// Each partition that cannot take a record says why: the operator
    /// looks for a topic, not for a broker that is down.
    #[test]
    fn an_unwritable_partition_says_why() {
        assert_eq!(unwritable_why(-1, 3, 3, Some(2)), "no leader");
        assert_eq!(
            unwritable_why(1, 1, 3, Some(2)),
            "1 of 3 replicas in sync, below min.insync.replicas 2"
        );
        assert_eq!(
            unwritable_why(1, 2, 3, None),
            "2 of 3 replicas in sync, and min.insync.replicas unknown"
        );
        assert_eq!(
            unwritable_why(1, 0, 3, Some(0)),
            "0 of 3 replicas in sync, below min.insync.replicas 1"
        );
    }

    /// Scripted answers: the producer is asked only once a fresh client
    /// got an answer, and is stuck only if it then gets none itself.
    #[test]
    fn a_producer_is_wedged_only_when_a_fresh_client_answers_and_it_does_not() {
        let asked = std::cell::Cell::new(Vec::new());
        let ask = |who: &'static str, answers: bool| {
            let asked = &asked;
            move || {
                let mut so_far = asked.take();
                so_far.push(who);
                asked.set(so_far);
                answers
            }
        };
        let outage = wedge_of(ask("fresh", false), ask("producer", false));
        assert_eq!((outage, asked.take()), (Wedge::Outage, vec!["fresh"]));
        let back = wedge_of(ask("fresh", true), ask("producer", true));
        assert_eq!(
            (back, asked.take()),
            (Wedge::ProducerAnswers, vec!["fresh", "producer"])
        );
        let wedged = wedge_of(ask("fresh", true), ask("producer", false));
        assert_eq!(
            (wedged, asked.take()),
            (Wedge::Wedged, vec!["fresh", "producer"])
        );
    }

    /// The same against real clients: a producer that reaches no broker
    /// (here one pointed at a closed port, standing for librdkafka's
    /// wedged one) while a fresh client on the sink's settings gets an
    /// answer is wedged; one that reaches the cluster is not; with the
    /// cluster down for a fresh client too, it is an outage.
    #[tokio::test]
    async fn a_producer_that_gets_no_answer_while_a_fresh_client_does_is_wedged() {
        let (_mock, _, config) = mock_topic("calls");
        let grace = Duration::from_millis(500);
        let nowhere: super::super::config::KafkaConfig =
            toml::from_str("brokers = \"127.0.0.1:1\"").unwrap();
        let producer_of = |config: &super::super::config::KafkaConfig| {
            Some(crate::sinks::kafka::producer::create(config, Arc::default()).unwrap())
        };
        let wedged = producer_wedged(producer_of(&nowhere), config.client_config(), grace);
        assert_eq!(wedged.await, Wedge::Wedged);
        // The answer ends the wait: 5 s only so that a slow machine does
        // not read a working producer as wedged.
        let working = producer_of(&config);
        let working = producer_wedged(working, config.client_config(), Duration::from_secs(5));
        assert_eq!(working.await, Wedge::ProducerAnswers);
        let down = producer_wedged(producer_of(&nowhere), nowhere.client_config(), grace);
        assert_eq!(down.await, Wedge::Outage);
        assert_eq!(
            producer_wedged(None, config.client_config(), grace).await,
            Wedge::Outage
        );
    }

    #[tokio::test]
    async fn no_producer_is_no_answer() {
        let found = partitions_healthy(None, names(&["calls"]), ClientConfig::new()).await;
        assert_eq!(found, StallCheck::unhealthy());
    }
}
