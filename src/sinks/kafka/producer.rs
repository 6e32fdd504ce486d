//! The rdkafka producer the forwarder drives: created from `[kafka]`, with a
//! client context that keeps the broker's health for `/status`, and the one
//! place a journaled event becomes a Kafka record.
//!
//! Guarantees: every record carries key = `subject` (else `id`), the CloudEvent
//! JSON as value, unchanged, and the headers of CONTRACT.md; librdkafka's own
//! errors and logs go to `tracing` and never carry a config secret.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::event::EventHeader;
use crate::journal::JournaledEvent;

use super::config::KafkaConfig;

pub type KafkaProducer = FutureProducer<HealthContext>;

pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// What librdkafka told us about the cluster, outside delivery reports.
#[derive(Default)]
pub struct Health {
    /// Every broker connection is down (cleared by the next delivery).
    pub all_brokers_down: AtomicBool,
    /// The last global error librdkafka reported.
    pub last_error: Mutex<Option<String>>,
}

impl Health {
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    pub fn delivered(&self) {
        self.all_brokers_down.store(false, Ordering::Release);
    }

    pub fn note(&self, error: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(error);
        }
    }
}

/// rdkafka's client context: errors into [`Health`], logs into `tracing`.
#[derive(Clone)]
pub struct HealthContext {
    pub health: Arc<Health>,
}

impl ClientContext for HealthContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", error = %error, "kafka: {reason}");
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.all_brokers_down.store(true, Ordering::Release);
        } else {
            // "All brokers are down" follows every connection failure and is
            // shown as `brokers_down`; the error worth keeping says why (a
            // refused TLS certificate or SASL login, a refused connection).
            self.health.note(reason.to_owned());
        }
    }
}

/// Creates the producer (no network round trip: librdkafka connects in the background).
pub fn create(config: &KafkaConfig, health: Arc<Health>) -> Result<KafkaProducer, KafkaError> {
    config
        .client_config()
        .create_with_context(HealthContext { health })
}

/// An event's Kafka key: its subject, else its id.
pub fn key_of(header: &EventHeader) -> &str {
    header.subject.as_deref().unwrap_or(header.id.as_str())
}

/// The record of one journaled event, to `topic`.
pub fn record<'a>(event: &'a JournaledEvent, topic: &'a str) -> FutureRecord<'a, str, [u8]> {
    let h = &event.header;
    let key = key_of(h);
    let headers = OwnedHeaders::new_with_capacity(4)
        .insert(Header {
            key: "content-type",
            value: Some(CONTENT_TYPE),
        })
        .insert(Header {
            key: "ce_id",
            value: Some(h.id.as_str()),
        })
        .insert(Header {
            key: "ce_type",
            value: Some(h.event_type.as_str()),
        })
        .insert(Header {
            key: "ce_source",
            value: Some(h.source.as_str()),
        });
    FutureRecord::to(topic)
        .key(key)
        .payload(&event.json[..])
        .headers(headers)
}

/// A short, bounded word for `publish_errors{reason}`.
pub fn reason(error: &KafkaError) -> &'static str {
    use RDKafkaErrorCode as C;
    if is_fatal(error) {
        return "fatal";
    }
    match error.rdkafka_error_code() {
        Some(C::MessageTimedOut) => "timeout",
        Some(C::QueueFull) => "queue_full",
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize) => "too_large",
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => "unknown_topic",
        Some(C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve) => "broker_down",
        Some(C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed | C::Authentication) => {
            "auth"
        }
        Some(C::PurgeQueue | C::PurgeInflight) => "purged",
        _ => "other",
    }
}

/// Errors after which this producer cannot go on: its idempotence state
/// (producer id, epoch, sequence numbers) is no longer the broker's, so every
/// retry through it fails the same way and it must be replaced. librdkafka
/// raises a fatal error for most of these itself, but not for all of them
/// (a broker that forgot the producer answers `ProducerFenced` per message).
pub fn is_fatal(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::Fatal
                | C::Fenced
                | C::ProducerFenced
                | C::InvalidProducerEpoch
                | C::OutOfOrderSequenceNumber
        )
    )
}

/// Errors that no retry of the same message can fix.
pub fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}
