//! Fixtures shared by the Kafka modules' unit tests.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};

use super::config::KafkaConfig;

/// librdkafka's mock cluster, one broker holding `topic` (one partition).
pub(crate) type Mock = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster with `topic`, a producer to it, and the relay's `[kafka]`
/// config pointing at it. Messages the test produces are on the broker once
/// it calls [`flushed`].
pub(crate) fn mock_topic(topic: &str) -> (Mock, BaseProducer, KafkaConfig) {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(topic, 1, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .create()
        .unwrap();
    let config = config_for(&mock);
    (mock, producer, config)
}

/// The relay's `[kafka]` config pointing at `mock`.
pub(crate) fn config_for(mock: &Mock) -> KafkaConfig {
    toml::from_str(&format!("brokers = \"{}\"", mock.bootstrap_servers())).unwrap()
}

/// Waits until everything `producer` was given is on the broker.
pub(crate) fn flushed(producer: &BaseProducer) {
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// The journal's file deleted under the open journal, and found gone, as
/// the relay's check of it finds it.
pub(crate) fn lose_the_journal_file(journal: &crate::journal::Journal) {
    std::fs::remove_file(journal.path()).unwrap();
    journal.check_file();
    assert!(journal.is_file_gone());
}
