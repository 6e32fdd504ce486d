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
//!   admin client built from the sink's client settings. Both run on a
//!   blocking thread, and the caller waits at most [`CHECK_BOUND`] whatever
//!   librdkafka does;
//! - no answer counts as not healthy (the cluster is the likelier culprit);
//! - a topic whose `min.insync.replicas` cannot be read (refused, timed out,
//!   missing, not a number) is judged by the strict rule, every replica in
//!   sync: an unknown minimum never makes a partition healthy;
//! - nothing a broker answers makes it panic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResourceResult, OwnedResourceSpecifier, ResourceSpecifier,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::metadata::MetadataTopic;
use rdkafka::producer::Producer;

use super::producer::KafkaProducer;

/// How long the metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the DescribeConfigs request may take, connecting included.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest the caller waits for a verdict: both requests, and room for
/// creating and destroying the admin client, which no request timeout covers.
const CHECK_BOUND: Duration = Duration::from_secs(15);

/// The topic setting that says how many replicas must be in sync for an
/// `acks=all` produce to succeed.
const MIN_INSYNC: &str = "min.insync.replicas";

/// Whether every partition of `topics` would take a record from a new
/// producer (see the module doc), as the cluster answers through `producer`
/// and, for under-replicated topics, through an admin client built from
/// `admin` (the sink's client settings: brokers, security).
pub async fn partitions_healthy(
    producer: Option<KafkaProducer>,
    topics: Vec<Arc<str>>,
    admin: ClientConfig,
) -> bool {
    let Some(producer) = producer else {
        return false;
    };
    let check = tokio::task::spawn_blocking(move || writable_blocking(&producer, &topics, &admin));
    // A check that overruns is left to finish on its thread; its verdict
    // no longer matters.
    matches!(tokio::time::timeout(CHECK_BOUND, check).await, Ok(Ok(true)))
}

fn writable_blocking(producer: &KafkaProducer, topics: &[Arc<str>], admin: &ClientConfig) -> bool {
    let Ok(metadata) = producer.client().fetch_metadata(None, METADATA_TIMEOUT) else {
        return false;
    };
    let asked: Vec<&MetadataTopic> = metadata
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|name| **name == *t.name()))
        .collect();
    // Not writable even at the loosest minimum (an error, a partition
    // without a leader): no setting can change the verdict, so none is asked.
    if !asked.iter().all(|t| topic_writable(t, Some(1))) {
        return false;
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
        return true;
    }
    let min_insync = match min_insync_replicas(admin, &short) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(
                topics = ?short,
                error = %e,
                "kafka sink: could not read min.insync.replicas of under-replicated topics \
                 (the sink needs DescribeConfigs on them); they count as unhealthy, which \
                 holds a stalled producer, until every replica is back in sync"
            );
            HashMap::new()
        }
    };
    asked
        .iter()
        .all(|t| topic_writable(t, min_insync.get(t.name()).copied()))
}

fn topic_writable(topic: &MetadataTopic, min_insync: Option<usize>) -> bool {
    topic.error().is_none()
        && topic.partitions().iter().all(|p| {
            p.error().is_none()
                && partition_writable(p.leader(), p.isr().len(), p.replicas().len(), min_insync)
        })
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
    let mut config = admin.clone();
    // The admin client never produces: as an idempotent producer it would
    // only ask the cluster for a producer id it never uses.
    config.set("enable.idempotence", "false");
    let client: AdminClient<DefaultClientContext> = config.create()?;
    let resources: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(DESCRIBE_TIMEOUT));
    // The admin client's own thread completes this future: no runtime needed.
    let results = futures::executor::block_on(client.describe_configs(&resources, &options))?;
    Ok(min_insync_of(results))
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
        // The request's own timeout ends it, well before the caller's bound.
        let bound = DESCRIBE_TIMEOUT + Duration::from_secs(3);
        assert!(started.elapsed() < bound, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_partition_without_a_leader_is_the_clusters_trouble_for_its_topic_only() {
        let (mock, _, config) = mock_topic("calls");
        mock.create_topic("crm", 1, 1).unwrap();
        let producer =
            || Some(crate::sinks::kafka::producer::create(&config, Arc::default()).unwrap());
        let healthy =
            |topics: &[&str]| partitions_healthy(producer(), names(topics), config.client_config());
        assert!(healthy(&["calls", "crm"]).await);
        mock.partition_leader("crm", 0, None).unwrap();
        assert!(!healthy(&["calls", "crm"]).await);
        assert!(
            healthy(&["calls"]).await,
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
        assert!(
            !partitions_healthy(Some(producer), names(&["calls"]), config.client_config()).await
        );
    }

    #[tokio::test]
    async fn no_producer_is_no_answer() {
        assert!(!partitions_healthy(None, names(&["calls"]), ClientConfig::new()).await);
    }
}
