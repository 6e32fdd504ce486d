//! Why forwarding stopped: the failures the forwarder recovers from, the
//! `reason` label each gets in `callrelay_publish_errors_total`, and which of
//! them replace the producer.
//!
//! Guarantees: every reason a failure or a librdkafka error can give is in
//! [`PUBLISH_ERROR_REASONS`], so each series is exported at 0 from the start.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;

use super::super::producer;
use super::super::reader::ReadError;
use super::super::topic::TopicError;

/// Why forwarding stopped and must recover.
#[derive(Debug)]
pub(super) enum Failure {
    /// Its text is masked of the config's secrets (`CreateError`).
    Create(producer::CreateError),
    Topic(TopicError),
    Enqueue {
        seq: u64,
        topic: Arc<str>,
        error: KafkaError,
    },
    Delivery {
        seq: u64,
        /// Named in the WARN, `/status` and `/readyz`: one topic refusing
        /// writes holds every account's events behind it, and a bare seq
        /// left the operator to find whose topic it was (isolation review,
        /// 2026-12-06, ninth round).
        topic: Arc<str>,
        error: KafkaError,
    },
    ProducerGone,
    /// Records in flight got no report for this long with a broker reachable.
    /// Or, `brokers_said_down`, the producer has said every broker is down
    /// for this long while they answer a fresh client: librdkafka can drop
    /// every broker and never connect again (confluentinc/librdkafka#5301).
    Stalled {
        waited: Duration,
        in_flight: usize,
        brokers_said_down: bool,
    },
    Journal(ReadError),
    /// The cursor could not be marked in use (the journal refused the
    /// write, logged): nothing is handed over until it is.
    CursorWrite,
    /// The read-back of `topic` after an interrupted run found no broker
    /// answering, or one stopped answering part-way; it is tried again
    /// before anything to that topic is sent again.
    ReadBack {
        topic: String,
        error: String,
    },
}

/// Every `reason` label of `callrelay_publish_errors_total{sink="kafka"}`
/// (a failure's, librdkafka's error's, `fatal`), for exporting each at 0.
pub const PUBLISH_ERROR_REASONS: [&str; 14] = [
    "config",
    "unknown_topic",
    "metadata",
    "create_topic",
    "purged",
    "stalled",
    "journal",
    "fatal",
    "timeout",
    "queue_full",
    "too_large",
    "broker_down",
    "auth",
    "other",
];

impl Failure {
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Failure::Create(_) => "config",
            Failure::Topic(TopicError::Missing(_)) => "unknown_topic",
            Failure::Topic(TopicError::Metadata { .. }) => "metadata",
            Failure::Topic(TopicError::Create { .. }) => "create_topic",
            Failure::Enqueue { error, .. } | Failure::Delivery { error, .. } => {
                producer::reason(error)
            }
            Failure::ProducerGone => "purged",
            Failure::Stalled { .. } => "stalled",
            Failure::Journal(_) | Failure::CursorWrite => "journal",
            Failure::ReadBack { .. } => "broker_down",
        }
    }

    /// An enqueue librdkafka refused because its metadata says the topic
    /// does not exist. It keeps a deleted topic so until its next periodic
    /// refresh (`topic.metadata.refresh.interval.ms`, 5 minutes by default;
    /// some report it never recovers: rust-rdkafka#403), also once the topic
    /// is back, so the producer is replaced: a new one starts from fresh
    /// metadata.
    pub(super) fn is_stale_topic_metadata(&self) -> bool {
        matches!(
            self,
            Failure::Enqueue { error, .. }
                if error.rdkafka_error_code() == Some(rdkafka::error::RDKafkaErrorCode::UnknownTopic)
        )
    }

    pub(super) fn is_fatal(&self) -> bool {
        match self {
            Failure::Create(_) | Failure::ProducerGone | Failure::Stalled { .. } => true,
            Failure::Enqueue { error, .. } | Failure::Delivery { error, .. } => {
                producer::is_fatal(error)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Create(e) => write!(f, "cannot create the Kafka producer: {e}"),
            Failure::Topic(e) => write!(f, "{e}"),
            Failure::Enqueue { seq, topic, error } => {
                write!(
                    f,
                    "cannot enqueue event {seq} to topic \"{topic}\": {error}"
                )
            }
            Failure::Delivery { seq, topic, error } => write!(
                f,
                "event {seq} to topic \"{topic}\" was not delivered: {error}"
            ),
            Failure::ProducerGone => write!(f, "the producer was dropped with records in flight"),
            Failure::Stalled {
                waited,
                in_flight,
                brokers_said_down: false,
            } => write!(
                f,
                "no delivery report for {}s with {in_flight} records in flight and a broker reachable: replacing the producer",
                waited.as_secs()
            ),
            // Nothing in flight: events read wait to be sent (on a topic check
            // through that producer: 34205a8), and "0 records in flight" read as if
            // nothing waited.
            Failure::Stalled {
                waited,
                in_flight: 0,
                brokers_said_down: true,
            } => write!(
                f,
                "the brokers answer a new client while the producer has said all brokers are down for {}s, with nothing in flight and events waiting to be sent: replacing the producer",
                waited.as_secs()
            ),
            Failure::Stalled {
                waited,
                in_flight,
                brokers_said_down: true,
            } => write!(
                f,
                "the brokers answer a new client while the producer has said all brokers are down for {}s, with {in_flight} records in flight: replacing the producer",
                waited.as_secs()
            ),
            Failure::Journal(e) => write!(f, "cannot read the journal: {e}"),
            Failure::CursorWrite => write!(
                f,
                "cannot mark the kafka cursor in use (the journal refused the write): nothing is sent until it is, so that a crash cannot skip the read-back of what was sent"
            ),
            Failure::ReadBack { topic, error } => write!(
                f,
                "cannot read back what an interrupted run delivered to \"{topic}\" ({error}): it is read again before anything to that topic is sent again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::RDKafkaErrorCode as C;

    #[test]
    fn an_enqueue_refused_for_an_unknown_topic_names_it_and_asks_for_a_new_producer() {
        let produced = |code| KafkaError::MessageProduction(code);
        let enqueue = |code| Failure::Enqueue {
            seq: 7,
            topic: "callrelay.call".into(),
            error: produced(code),
        };
        let refused = enqueue(C::UnknownTopic);
        assert!(refused.is_stale_topic_metadata());
        assert!(
            refused
                .to_string()
                .starts_with("cannot enqueue event 7 to topic \"callrelay.call\": "),
            "{refused}"
        );
        assert!(!enqueue(C::QueueFull).is_stale_topic_metadata());
        let reported = Failure::Delivery {
            seq: 7,
            topic: "callrelay.call".into(),
            error: produced(C::UnknownTopic),
        };
        assert!(!reported.is_stale_topic_metadata());
    }

    /// A record a topic refused names the topic, as an enqueue does.
    #[test]
    fn a_delivery_failure_names_its_topic() {
        let refused = Failure::Delivery {
            seq: 7,
            topic: "cr.z".into(),
            error: KafkaError::MessageProduction(C::TopicAuthorizationFailed),
        };
        assert!(
            refused
                .to_string()
                .starts_with("event 7 to topic \"cr.z\" was not delivered: "),
            "{refused}"
        );
    }

    #[test]
    fn every_publish_error_reason_is_exported_from_the_start() {
        let produced = |code| KafkaError::MessageProduction(code);
        let failures = [
            Failure::Create(producer::CreateError::new(
                &KafkaError::ClientCreation("x".into()),
                &[],
            )),
            Failure::Topic(TopicError::Missing("t".into())),
            Failure::Topic(TopicError::Metadata {
                topic: "t".into(),
                reason: "r".into(),
            }),
            Failure::Topic(TopicError::Create {
                topic: "t".into(),
                reason: "r".into(),
            }),
            Failure::ProducerGone,
            Failure::Stalled {
                waited: Duration::ZERO,
                in_flight: 1,
                brokers_said_down: false,
            },
            Failure::Stalled {
                waited: Duration::ZERO,
                in_flight: 1,
                brokers_said_down: true,
            },
            Failure::Journal(ReadError::Stopped),
        ];
        let codes = [
            C::MessageTimedOut,
            C::QueueFull,
            C::MessageSizeTooLarge,
            C::UnknownTopicOrPartition,
            C::AllBrokersDown,
            C::TopicAuthorizationFailed,
            C::PurgeQueue,
            C::Fatal,
            C::InvalidProducerEpoch,
            C::BrokerNotAvailable,
        ];
        let reasons = failures
            .iter()
            .map(Failure::reason)
            .chain(codes.into_iter().map(|c| producer::reason(&produced(c))))
            .chain(["fatal"]);
        for reason in reasons {
            assert!(PUBLISH_ERROR_REASONS.contains(&reason), "{reason}");
        }
    }

    /// A producer replaced as stuck with nothing in flight (its events
    /// read and waiting, as on a topic check) says so, not "0 records in flight"
    /// (review of 34205a8, 2026-12-06, ninth round).
    #[test]
    fn a_stuck_producer_replaced_with_nothing_in_flight_says_what_waits() {
        let stuck = |in_flight| Failure::Stalled {
            waited: Duration::from_secs(301),
            in_flight,
            brokers_said_down: true,
        };
        let said = stuck(0).to_string();
        assert_eq!(
            said,
            "the brokers answer a new client while the producer has said all brokers are down \
             for 301s, with nothing in flight and events waiting to be sent: replacing the producer"
        );
        assert!(
            stuck(3)
                .to_string()
                .contains("with 3 records in flight: replacing the producer"),
            "{}",
            stuck(3)
        );
    }

    /// librdkafka refuses a property this build has not (OIDC's client
    /// secret: no libcurl) when the producer is created, and rust-rdkafka's
    /// error quotes the value after the property's name: the WARN and
    /// `/status` said the secret. Its words are short, so no word of the text
    /// holds a whole run of it: masked by the words, it went through.
    #[test]
    fn a_producer_librdkafka_will_not_create_is_said_with_its_secret_masked() {
        const SECRET: &str = "Zq1 Xw2 Vb3 Nm4";
        let config: super::super::super::config::KafkaConfig = toml::from_str(&format!(
            "brokers = \"127.0.0.1:9092\"\n[options]\n\"sasl.oauthbearer.client.secret\" = \"{SECRET}\""
        ))
        .unwrap();
        let Err(refused) = producer::create(&config, Arc::default()) else {
            panic!("librdkafka created a producer with an OIDC secret");
        };
        let said = Failure::Create(refused).to_string();
        assert!(
            said.starts_with("cannot create the Kafka producer: ")
                && said.contains("sasl.oauthbearer.client.secret")
                && said.contains("***"),
            "{said}"
        );
        for word in SECRET.split(' ') {
            assert!(!said.contains(word), "{said}");
        }
    }

    /// A fatal failure replaces the producer; the others retry with it.
    #[test]
    fn the_producer_is_replaced_only_after_a_fatal_failure() {
        let produced = |code| KafkaError::MessageProduction(code);
        let fatal = [
            Failure::Create(producer::CreateError::new(
                &KafkaError::ClientCreation("x".into()),
                &[],
            )),
            Failure::ProducerGone,
            Failure::Stalled {
                waited: Duration::from_secs(60),
                in_flight: 3,
                brokers_said_down: false,
            },
            Failure::Stalled {
                waited: Duration::from_secs(400),
                in_flight: 3,
                brokers_said_down: true,
            },
            Failure::Delivery {
                seq: 1,
                topic: "t".into(),
                error: produced(C::InvalidProducerEpoch),
            },
            Failure::Enqueue {
                seq: 1,
                topic: "t".into(),
                error: produced(C::Fatal),
            },
        ];
        for failure in &fatal {
            assert!(failure.is_fatal(), "{failure}");
        }
        let recoverable = [
            Failure::Topic(TopicError::Missing("t".into())),
            Failure::Journal(ReadError::Stopped),
            Failure::ReadBack {
                topic: "t".into(),
                error: "all brokers down".into(),
            },
            Failure::Delivery {
                seq: 1,
                topic: "t".into(),
                error: produced(C::MessageTimedOut),
            },
            Failure::Enqueue {
                seq: 1,
                topic: "t".into(),
                error: produced(C::QueueFull),
            },
        ];
        for failure in &recoverable {
            assert!(!failure.is_fatal(), "{failure}");
        }
    }
}
