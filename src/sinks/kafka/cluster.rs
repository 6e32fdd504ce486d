//! What the Kafka cluster says of the partitions the sink writes, asked when
//! records wait without any report: is it the cluster's trouble (a partition
//! without a leader, or with replicas out of sync), which a new producer
//! would meet too, or the producer's?
//!
//! Guarantees: one metadata request, bounded by 5 s, on a blocking thread;
//! no answer counts as not healthy (the cluster is the likelier culprit).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::Producer;

use super::producer::KafkaProducer;

/// How long the metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether every partition of `topics` has a leader and all its replicas in
/// sync, as the cluster answers through `producer`.
pub async fn partitions_healthy(producer: Option<KafkaProducer>, topics: Vec<Arc<str>>) -> bool {
    let Some(producer) = producer else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let Ok(metadata) = producer.client().fetch_metadata(None, METADATA_TIMEOUT) else {
            return false;
        };
        metadata
            .topics()
            .iter()
            .filter(|t| topics.iter().any(|name| **name == *t.name()))
            .all(|t| {
                t.error().is_none()
                    && t.partitions().iter().all(|p| {
                        p.error().is_none()
                            && p.leader() >= 0
                            && p.isr().len() >= p.replicas().len()
                    })
            })
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::kafka::tests_support::mock_topic;

    fn names(topics: &[&str]) -> Vec<Arc<str>> {
        topics.iter().map(|t| Arc::from(*t)).collect()
    }

    #[tokio::test]
    async fn a_partition_without_a_leader_is_the_clusters_trouble_for_its_topic_only() {
        let (mock, _, config) = mock_topic("calls");
        mock.create_topic("crm", 1, 1).unwrap();
        let producer =
            || Some(crate::sinks::kafka::producer::create(&config, Arc::default()).unwrap());
        assert!(partitions_healthy(producer(), names(&["calls", "crm"])).await);
        mock.partition_leader("crm", 0, None).unwrap();
        assert!(!partitions_healthy(producer(), names(&["calls", "crm"])).await);
        assert!(
            partitions_healthy(producer(), names(&["calls"])).await,
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
        assert!(!partitions_healthy(Some(producer), names(&["calls"])).await);
    }

    #[tokio::test]
    async fn no_producer_is_no_answer() {
        assert!(!partitions_healthy(None, names(&["calls"])).await);
    }
}
