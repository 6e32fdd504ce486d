//! The rdkafka producer the forwarder drives: created from `[kafka]`, with a
//! client context that keeps the broker's health for `/status`, and the one
//! place a journaled event becomes a Kafka record.
//!
//! Guarantees: every record carries key = `subject` (else `id`), the CloudEvent
//! JSON as value, unchanged, and the headers of CONTRACT.md; librdkafka's own
//! errors and logs go to `tracing` (repeats throttled, see `error_log`) and,
//! like its refusal to create a client ([`CreateError`]), never carry a config secret.

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use time::OffsetDateTime;

use crate::event::{EventHeader, format_time};
use crate::journal::JournaledEvent;

use super::config::KafkaConfig;
use super::error_log::{ErrorLog, LibLog, Unsaid, Verdict};

pub type KafkaProducer = FutureProducer<HealthContext>;

pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// What librdkafka told us about the cluster, outside delivery reports.
#[derive(Default)]
pub struct Health {
    /// Every broker connection is down (cleared when a broker answers: see
    /// [`Health::brokers_answer`]).
    pub all_brokers_down: AtomicBool,
    /// The last global error librdkafka reported, and when (as `/status` shows times).
    pub last_error: Mutex<Option<(String, String)>>,
    /// Which of those errors are logged at `warn`.
    error_log: Mutex<ErrorLog>,
    /// Which of librdkafka's own log lines are logged at their level.
    lib_log: Mutex<LibLog>,
    /// The error just handled, expected once more: rust-rdkafka 0.39's
    /// producer hands each error event to the context twice (its client's
    /// `poll_event` and then `BaseProducer::poll`), which counted every
    /// error twice in [`ErrorLog`]'s "and N more like it".
    echo: Mutex<Option<(Option<i32>, String)>>,
}

impl Health {
    pub fn last_error(&self) -> Option<(String, String)> {
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// A broker answers: a delivery report, the producer's metadata answer,
    /// or a fresh client's when a producer stuck saying all brokers are
    /// down is replaced. The end of an outage that was said is said too, so
    /// the log's last word on Kafka is not "all brokers are down" while it
    /// delivers.
    pub fn brokers_answer(&self) {
        if self.all_brokers_down.swap(false, Ordering::AcqRel) {
            let outage_said = self
                .error_log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .reachable();
            if outage_said {
                tracing::info!("kafka: a broker answers again");
            }
        }
    }

    fn error_verdict(&self, code: Option<RDKafkaErrorCode>, reason: &str) -> Verdict {
        self.error_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .verdict(code, reason, Instant::now())
    }

    fn log_verdict(
        &self,
        fac: &str,
        message: &str,
        level: tracing::Level,
    ) -> (Verdict, Option<Unsaid>) {
        let mut lib_log = self.lib_log.lock().unwrap_or_else(PoisonError::into_inner);
        let verdict = lib_log.verdict(fac, message, level, Instant::now());
        (verdict, lib_log.take_unsaid())
    }

    /// Whether this error is the second handing of the one just handled;
    /// the two come back to back on the polling thread. Check again on an
    /// rdkafka upgrade: once it hands each error over once, this goes.
    fn is_echo(&self, code: Option<RDKafkaErrorCode>, reason: &str) -> bool {
        let mut echo = self.echo.lock().unwrap_or_else(PoisonError::into_inner);
        let this = (code.map(|c| c as i32), reason);
        if echo.as_ref().is_some_and(|(c, r)| (*c, r.as_str()) == this) {
            *echo = None;
            return true;
        }
        *echo = Some((this.0, reason.to_owned()));
        false
    }

    pub fn note(&self, error: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((error, format_time(OffsetDateTime::now_utc())));
        }
    }
}

/// rdkafka's client context: errors into [`Health`], logs into `tracing`.
#[derive(Clone)]
pub struct HealthContext {
    pub health: Arc<Health>,
    /// The pieces of `[kafka.options]` values that may be secrets
    /// (`KafkaConfig::secret_values`): librdkafka quotes some settings back
    /// in its errors (a malformed `sasl.oauthbearer.config` from the point
    /// it could not parse), and those errors reach the log and `/status`
    /// (review, 2026-12-06).
    pub secrets: Arc<[String]>,
}

impl HealthContext {
    fn redacted<'a>(&self, message: &'a str) -> std::borrow::Cow<'a, str> {
        redacted(message, &self.secrets)
    }
}

/// `message` with every word that quotes part of a secret option value
/// (`secrets`, as `KafkaConfig::secret_values` gives them) replaced by
/// `***`: librdkafka quotes a value from where it stopped parsing, not whole.
/// A piece is found wherever it is, spaces included: looked for word by
/// word, a passphrase whose words are each shorter than a piece went
/// through whole. Pieces that overlap, or quote one secret across its
/// spaces, become one `***`; an empty piece masks nothing.
pub(crate) fn redacted<'a>(message: &'a str, secrets: &[String]) -> std::borrow::Cow<'a, str> {
    let mut quoted: Vec<(usize, usize)> = secrets
        .iter()
        .filter(|piece| !piece.is_empty())
        .flat_map(|piece| {
            message
                .match_indices(piece.as_str())
                .filter_map(|(at, found)| around_words(message, at, at + found.len()))
        })
        .collect();
    if quoted.is_empty() {
        return std::borrow::Cow::Borrowed(message);
    }
    quoted.sort_unstable();
    let mut masked = String::with_capacity(message.len());
    let mut done = 0;
    for (start, end) in quoted {
        if start < done {
            // Within or overlapping the span just masked: widen it.
            done = done.max(end);
            continue;
        }
        masked.push_str(&message[done..start]);
        masked.push_str("***");
        done = end;
    }
    masked.push_str(&message[done..]);
    std::borrow::Cow::Owned(masked)
}

/// The words of `message` that `start..end` touches, without the spaces at
/// its ends (a piece may begin or end with one, and the word beyond it is
/// not the secret's); `None` when it is only spaces.
fn around_words(message: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let found = &message[start..end];
    let start = start + (found.len() - found.trim_start().len());
    let end = end - (found.len() - found.trim_end().len());
    if start >= end {
        return None;
    }
    let start = message[..start].rfind(char::is_whitespace).map_or(0, |at| {
        at + message[at..].chars().next().map_or(1, char::len_utf8)
    });
    let end = message[end..]
        .find(char::is_whitespace)
        .map_or(message.len(), |at| end + at);
    Some((start, end))
}

/// A client librdkafka would not create, said with every secret of its
/// settings masked ([`redacted`]): rust-rdkafka's error for a property
/// librdkafka refuses ends with the value (`Client config error: …
/// sasl.oauthbearer.client.secret VALUE`), and this is what the WARN and
/// `/status` say. Made only with the settings' secrets at hand, so what it
/// holds is masked whatever path reports it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CreateError(String);

impl CreateError {
    pub(crate) fn new(error: &KafkaError, secrets: &[String]) -> CreateError {
        CreateError(redacted(&error.to_string(), secrets).into_owned())
    }
}

/// Says what librdkafka lines were held back under keys now forgotten, at
/// info: the count is all that is left of them, and without this line
/// they would be as if they had never come.
fn say_unsaid(unsaid: Unsaid) {
    if unsaid.lines > 0 {
        tracing::info!(
            target: "librdkafka",
            held_back = unsaid.lines,
            shapes = unsaid.shapes,
            "{} lines of {} shapes no longer seen were held back",
            unsaid.lines,
            unsaid.shapes
        );
    }
    if unsaid.shared > 0 {
        tracing::info!(
            target: "librdkafka",
            held_back = unsaid.shared,
            "{} lines of new shapes past the {} remembered were held back",
            unsaid.shared,
            super::error_log::MAX_LINE_SHAPES
        );
    }
}

impl ClientContext for HealthContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let message = &*self.redacted(message);
        if matches!(level, RDKafkaLogLevel::Debug) {
            tracing::debug!(target: "librdkafka", fac, "{message}");
            return;
        }
        let level = match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::Level::ERROR,
            RDKafkaLogLevel::Warning => tracing::Level::WARN,
            _ => tracing::Level::INFO,
        };
        let (verdict, unsaid) = self.health.log_verdict(fac, message, level);
        if let Some(unsaid) = unsaid {
            say_unsaid(unsaid);
        }
        let held_back = match verdict {
            Verdict::Warn { held_back } => held_back,
            Verdict::Quiet => {
                tracing::debug!(target: "librdkafka", fac, "{message}");
                return;
            }
        };
        match level {
            tracing::Level::ERROR => {
                tracing::error!(target: "librdkafka", fac, held_back, "{message}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "librdkafka", fac, held_back, "{message}")
            }
            _ => tracing::info!(target: "librdkafka", fac, held_back, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = &*self.redacted(reason);
        let code = error.rdkafka_error_code();
        if self.health.is_echo(code, reason) {
            return;
        }
        match self.health.error_verdict(code, reason) {
            Verdict::Warn { held_back: 0 } => {
                tracing::warn!(target: "librdkafka", error = %error, "kafka: {reason}")
            }
            Verdict::Warn { held_back } => {
                tracing::warn!(target: "librdkafka", error = %error, held_back, "kafka: {reason} (and {held_back} more like it since last logged)")
            }
            Verdict::Quiet => {
                tracing::debug!(target: "librdkafka", error = %error, "kafka: {reason}")
            }
        }
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
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
pub fn create(config: &KafkaConfig, health: Arc<Health>) -> Result<KafkaProducer, CreateError> {
    let secrets: Arc<[String]> = config.secret_values().into();
    config
        .client_config()
        .create_with_context(HealthContext {
            health,
            secrets: secrets.clone(),
        })
        .map_err(|refused| CreateError::new(&refused, &secrets))
}

/// An event's Kafka key: its subject, else its id.
pub fn key_of(header: &EventHeader) -> &str {
    header.subject.as_deref().unwrap_or(header.id.as_str())
}

/// The record's own bytes around key, value and headers, at most, as
/// librdkafka counts them (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`: length,
/// attributes, timestamp and offset deltas, key and value lengths, header count).
const RECORD_OVERHEAD: usize = 36;
/// Each header's two length varints, at most.
const HEADER_OVERHEAD: usize = 10;
/// The digits of a seq, at most.
const SEQ_DIGITS: usize = 20;

/// An upper bound of what librdkafka holds against `message.max.bytes` for
/// the event whose header is `h` and whose CloudEvent JSON, without its seq,
/// is `json_len` bytes: the record [`record`] builds.
pub fn wire_size_bound(h: &EventHeader, json_len: usize) -> usize {
    let headers: usize = header_pairs(h)
        .iter()
        .map(|(key, value)| key.len() + value.len() + HEADER_OVERHEAD)
        .sum();
    RECORD_OVERHEAD + key_of(h).len() + json_len + SEQ_DIGITS + headers
}

/// The record of one journaled event, to `topic`.
pub fn record<'a>(event: &'a JournaledEvent, topic: &'a str) -> FutureRecord<'a, str, [u8]> {
    FutureRecord::to(topic)
        .key(key_of(&event.header))
        .payload(&event.json[..])
        .headers(headers_of(&event.header))
}

/// The header holding the event's id: written on every message, and looked
/// up by the read-back ([`super::resume`]) as a C string.
pub const ID_HEADER: &CStr = c"ce_id";
const ID_HEADER_TEXT: &str = match ID_HEADER.to_str() {
    Ok(text) => text,
    Err(_) => panic!("the id header's name is ASCII"),
};

/// The CloudEvents binary-mode headers of an event's message, as (key, value).
fn header_pairs(h: &EventHeader) -> [(&'static str, &str); 4] {
    [
        ("content-type", CONTENT_TYPE),
        (ID_HEADER_TEXT, h.id.as_str()),
        ("ce_type", h.event_type.as_str()),
        ("ce_source", h.source.as_str()),
    ]
}

/// [`header_pairs`] as librdkafka headers.
fn headers_of(h: &EventHeader) -> OwnedHeaders {
    header_pairs(h).into_iter().fold(
        OwnedHeaders::new_with_capacity(4),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        },
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord};

    fn header(subject: Option<&str>) -> EventHeader {
        EventHeader {
            id: "0123456789abcdef0123456789abcdef".into(),
            event_type: "call.hangup".into(),
            source: "/tel4vn/t4".into(),
            subject: subject.map(str::to_owned),
            vendor: "tel4vn".into(),
            account: "t4".into(),
            seq: 0,
        }
    }

    /// Whether librdkafka takes the record of `h` with a value of `len` bytes
    /// under `message.max.bytes = limit` (checked when it is enqueued; no
    /// broker is needed).
    fn librdkafka_takes(h: &EventHeader, len: usize, limit: usize) -> bool {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("message.max.bytes", limit.to_string())
            .create()
            .unwrap();
        let value = vec![b'x'; len];
        let record = BaseRecord::to("t")
            .key(key_of(h))
            .payload(&value[..])
            .headers(headers_of(h));
        producer.send(record).is_ok()
    }

    /// The key is the subject, else the id (CONTRACT: per-call order).
    #[test]
    fn the_key_is_the_subject_else_the_id() {
        assert_eq!(key_of(&header(Some("1287674126.299"))), "1287674126.299");
        assert_eq!(key_of(&header(None)), "0123456789abcdef0123456789abcdef");
    }

    /// The CloudEvents binary-mode headers CONTRACT.md lists, in its order.
    #[test]
    fn a_record_carries_the_contract_headers() {
        use rdkafka::message::Headers;

        let headers = headers_of(&header(Some("call")));
        let pairs: Vec<(String, String)> = (0..headers.count())
            .map(|i| {
                let h = headers.get(i);
                let value = String::from_utf8(h.value.unwrap().to_vec()).unwrap();
                (h.key.to_owned(), value)
            })
            .collect();
        let expected = [
            ("content-type", "application/cloudevents+json"),
            ("ce_id", "0123456789abcdef0123456789abcdef"),
            ("ce_type", "call.hangup"),
            ("ce_source", "/tel4vn/t4"),
        ];
        assert_eq!(
            pairs,
            expected.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
    }

    /// Each error librdkafka reports on a message has its own word in
    /// `callrelay_publish_errors_total{reason}`; the rest are `other`.
    #[test]
    fn each_kind_of_produce_error_has_its_reason() {
        use RDKafkaErrorCode as C;
        for (code, expected) in [
            (C::MessageTimedOut, "timeout"),
            (C::QueueFull, "queue_full"),
            (C::MessageSizeTooLarge, "too_large"),
            (C::InvalidMessageSize, "too_large"),
            (C::UnknownTopicOrPartition, "unknown_topic"),
            (C::UnknownTopic, "unknown_topic"),
            (C::UnknownPartition, "unknown_topic"),
            (C::AllBrokersDown, "broker_down"),
            (C::BrokerTransportFailure, "broker_down"),
            (C::Resolve, "broker_down"),
            (C::TopicAuthorizationFailed, "auth"),
            (C::ClusterAuthorizationFailed, "auth"),
            (C::Authentication, "auth"),
            (C::PurgeQueue, "purged"),
            (C::PurgeInflight, "purged"),
            (C::ProducerFenced, "fatal"),
            (C::OutOfOrderSequenceNumber, "fatal"),
            (C::BrokerNotAvailable, "other"),
        ] {
            let error = KafkaError::MessageProduction(code);
            assert_eq!(reason(&error), expected, "{code:?}");
            // Only a record too large for the broker fails every retry.
            assert_eq!(is_permanent(&error), expected == "too_large", "{code:?}");
        }
    }

    /// librdkafka's global errors: "all brokers are down" is a state that
    /// the next delivery clears; any other is kept, with its time, as the
    /// last error `/status` shows.
    /// Each error event reaches the context twice (rust-rdkafka 0.39): the
    /// second is the first's echo, and a later one is news again.
    #[test]
    fn an_error_handed_over_twice_in_a_row_counts_once() {
        let health = Health::default();
        let refused = Some(RDKafkaErrorCode::BrokerTransportFailure);
        let reason = "127.0.0.1:1/bootstrap: Connection refused";
        assert!(!health.is_echo(refused, reason));
        assert!(health.is_echo(refused, reason));
        assert!(!health.is_echo(refused, reason), "the next event");
        assert!(!health.is_echo(refused, "127.0.0.1:2/bootstrap: Connection refused"));
        assert!(health.is_echo(refused, "127.0.0.1:2/bootstrap: Connection refused"));
    }

    #[test]
    fn brokers_down_is_a_state_and_other_errors_are_kept() {
        let context = HealthContext {
            health: Arc::new(Health::default()),
            secrets: Arc::new([]),
        };
        let health = &context.health;
        assert_eq!(health.last_error(), None);

        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        context.error(down, "1/1 brokers are down");
        assert!(health.all_brokers_down.load(Ordering::Acquire));
        assert_eq!(health.last_error(), None, "brokers down is not kept");

        let refused = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        context.error(refused, "127.0.0.1:1/bootstrap: Connection refused");
        let (error, at) = health.last_error().unwrap();
        assert_eq!(error, "127.0.0.1:1/bootstrap: Connection refused");
        assert!(at.starts_with("20") && at.ends_with('Z'), "{at}");

        let said = crate::logging::tests_support::logged_json(|| health.brokers_answer());
        assert!(!health.all_brokers_down.load(Ordering::Acquire));
        assert!(health.last_error().is_some(), "kept until replaced");
        assert!(
            said.contains("kafka: a broker answers again"),
            "the outage's end is said as its start was: {said}"
        );
        let again = crate::logging::tests_support::logged_json(|| health.brokers_answer());
        assert!(again.is_empty(), "once: {again}");
    }

    /// Every occurrence of a secret is masked, also one whose words are
    /// each shorter than the run [`redacted`] looks for (a passphrase), one
    /// that overlaps another secret, a short one, and one quoted only in
    /// part; an empty piece masks nothing.
    #[test]
    fn every_occurrence_of_a_secret_is_masked() {
        let secrets = crate::sinks::kafka::config::secret_pieces([
            ("sasl.password", "Zq1 Xw2 Vb3 Nm4"),
            ("ssl.key.password", "abcdefgh"),
            ("sasl.oauthbearer.client.secret", "efghijkl"),
            ("ssl.keystore.password", "pw9"),
            ("sasl.oauthbearer.config", ""),
        ]);
        let masked = |text: &str| redacted(text, &secrets).into_owned();
        assert_eq!(
            masked("sasl.password Zq1 Xw2 Vb3 Nm4 refused"),
            "sasl.password *** refused"
        );
        assert_eq!(masked("value \"Zq1 Xw2 Vb3 Nm4\""), "value ***");
        assert_eq!(
            masked("at abcdefghijkl, twice: Zq1 Xw2 Vb3 Nm4 abcdefgh"),
            "at *** twice: *** ***"
        );
        assert_eq!(masked("key pw9 and pw9"), "key *** and ***");
        assert_eq!(
            masked("beginning at: cdefgh (cut)"),
            "beginning at: *** (cut)"
        );
        assert_eq!(masked("nothing secret here"), "nothing secret here");
        assert_eq!(redacted("every word", &[String::new()]), "every word");
    }

    /// librdkafka quotes a `sasl.oauthbearer.config` it cannot parse from
    /// the point it failed, secret extensions included; the log line and
    /// `/status`'s last error carry `***` in their place.
    #[test]
    fn a_secret_librdkafka_quotes_reaches_neither_the_log_nor_the_status() {
        let config: KafkaConfig = toml::from_str(
            r#"
            brokers = "127.0.0.1:9092"
            [options]
            "sasl.oauthbearer.config" = "principal=relay extention_apiKey=S3CR3T-v4lue"
            "sasl.password" = "hunter2-long"
            "sasl.username" = "relay"
            "ssl.key.location" = "/run/credentials/callrelay.service/kafka.key"
            "#,
        )
        .unwrap();
        let context = HealthContext {
            health: Arc::new(Health::default()),
            secrets: config.secret_values().into(),
        };
        let reason = "Failed to acquire SASL OAUTHBEARER token: Unrecognized sasl.oauthbearer.config beginning at: extention_apiKey=S3CR3T-v4lue (password hunter2-long, user relay)";
        let said = crate::logging::tests_support::logged_json(|| {
            context.error(KafkaError::Global(RDKafkaErrorCode::Authentication), reason);
            context.log(RDKafkaLogLevel::Warning, "SASL", reason);
        });
        let (kept, _) = context.health.last_error().unwrap();
        for shown in [&said, &kept] {
            assert!(
                !shown.contains("S3CR3T") && !shown.contains("hunter2"),
                "{shown}"
            );
            assert!(
                shown.contains("beginning at: *** (password *** user relay)"),
                "{shown}"
            );
        }
        // A key file's path is no secret: its pieces (`/kafka`, `creden`)
        // hid every broker of that name.
        let line = "sasl_ssl://kafka-1.corp:9093/1: Connect to ipv4#10.0.0.5:9093 failed (credentials file /run/credentials/callrelay.service/kafka.key)";
        assert_eq!(context.redacted(line), line);
    }

    /// The largest value librdkafka takes for `h` under `limit`, found by
    /// bisection.
    fn largest_librdkafka_takes(h: &EventHeader, limit: usize) -> usize {
        let (mut taken, mut refused) = (0, limit);
        while refused - taken > 1 {
            let len = (taken + refused) / 2;
            if librdkafka_takes(h, len, limit) {
                taken = len;
            } else {
                refused = len;
            }
        }
        taken
    }

    /// The bound is not so loose that it refuses what librdkafka would take:
    /// within the varints it counts at their widest.
    #[test]
    fn the_bound_is_close_to_what_librdkafka_counts() {
        let limit = 4_000;
        for subject in [None, Some("a-call-id-of-some-length")] {
            let h = header(subject);
            let bound_allows = limit - wire_size_bound(&h, 0) + SEQ_DIGITS;
            let takes = largest_librdkafka_takes(&h, limit);
            assert!(
                bound_allows <= takes && takes <= bound_allows + 32,
                "the bound allows {bound_allows} bytes, librdkafka takes {takes}"
            );
        }
    }

    #[test]
    fn an_event_within_the_bound_is_one_librdkafka_takes() {
        let limit = 4_000;
        for subject in [None, Some("a-call-id-of-some-length")] {
            let h = header(subject);
            // The largest JSON (before its seq digits) the bound lets through,
            // with the longest seq the bound allows for.
            let json_len = limit - wire_size_bound(&h, 0);
            assert_eq!(wire_size_bound(&h, json_len), limit);
            assert!(librdkafka_takes(&h, json_len + SEQ_DIGITS, limit));
            // And the limit is real: well past it, librdkafka refuses.
            assert!(!librdkafka_takes(&h, limit, limit));
        }
    }
}
