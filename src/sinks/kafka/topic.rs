//! Topic names: the `kafka.topic` template rendered per event, and the check
//! that a topic exists before anything is produced to it.
//!
//! Guarantees: a rendered name only holds characters Kafka accepts (anything
//! else from a vendor or account becomes `_`); a topic is produced to only
//! after the broker's metadata showed it (or `create_topics` created it), so a
//! missing topic is reported by name instead of as a stalled queue; a topic
//! the broker is still creating (no leader yet, or not yet in the metadata
//! of a broker just after our own create) is checked again a few times, for
//! [`CREATION_WAITS`] in all, before the check fails; a templated topic's
//! first check after a producer is created or the topics are forgotten
//! lists the cluster's topics in one request (not while every broker is
//! said down, nor for [`LISTING_AGAIN_AFTER`] after a listing failed), so
//! a topic per account is not one round trip each; a topic is known from
//! a listing only as its own check would find it.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer;

use crate::event::{EventHeader, category_of};

use super::producer::KafkaProducer;
use super::resume::QuietContext;

/// How long after a failed listing of the cluster's topics the checks go
/// on one topic at a time before one is asked again: a listing that fails
/// each time would add its timeout to every check, and one that failed
/// once in an outage would otherwise leave a producer that outlives it
/// checking a topic per account one at a time for good.
const LISTING_AGAIN_AFTER: Duration = Duration::from_secs(300);

/// How long a metadata or create request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The waits before each new check of a topic being created: 1.5 s in all,
/// far less than one request's [`ADMIN_TIMEOUT`]. Kafka elects a new
/// topic's leaders and spreads its metadata in a fraction of a second; the
/// first check's own metadata request is what creates the topic on a broker
/// that auto-creates, and its answer is always LEADER_NOT_AVAILABLE, which
/// failed the check (a WARN, `publish_errors{reason="metadata"}`, "not
/// ready") for every new topic (Kafka sink review, 2026-12-06).
const CREATION_WAITS: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
];

/// A parsed `kafka.topic` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Vendor,
    Account,
    Type,
    Category,
}

impl TopicTemplate {
    pub fn parse(template: &str) -> TopicTemplate {
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let next = [
                ("{vendor}", Part::Vendor),
                ("{account}", Part::Account),
                ("{type}", Part::Type),
                ("{category}", Part::Category),
            ]
            .into_iter()
            .filter_map(|(p, part)| rest.find(p).map(|at| (at, p.len(), part)))
            .min_by_key(|(at, _, _)| *at);
            match next {
                Some((at, len, part)) => {
                    if at > 0 {
                        parts.push(Part::Text(rest[..at].to_owned()));
                    }
                    parts.push(part);
                    rest = &rest[at + len..];
                }
                None => {
                    parts.push(Part::Text(rest.to_owned()));
                    rest = "";
                }
            }
        }
        TopicTemplate { parts }
    }

    /// Whether the template names the event's type, which only an event
    /// tells (CareSoft's types are open-ended).
    pub fn names_type(&self) -> bool {
        self.parts.contains(&Part::Type)
    }

    /// The one topic of a template without placeholders.
    pub fn fixed(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Whether `name` may be a topic this template renders: it begins with
    /// the template's text before its first placeholder. A filter for the
    /// topics kept from a listing of the cluster's, not a parse.
    pub fn may_render(&self, name: &str) -> bool {
        match self.parts.as_slice() {
            [Part::Text(fixed)] => name == fixed,
            [Part::Text(prefix), ..] => name.starts_with(prefix.as_str()),
            _ => true,
        }
    }

    /// The topic of one event; borrowed (no allocation) for a fixed topic.
    pub fn render(&self, header: &EventHeader) -> Cow<'_, str> {
        self.render_for(&header.vendor, &header.account, &header.event_type)
    }

    /// The topic of an event of `vendor`, `account` and `event_type`.
    pub fn render_for(&self, vendor: &str, account: &str, event_type: &str) -> Cow<'_, str> {
        if let Some(fixed) = self.fixed() {
            return Cow::Borrowed(fixed);
        }
        let mut out = String::new();
        for part in &self.parts {
            let value = match part {
                Part::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Part::Vendor => vendor,
                Part::Account => account,
                Part::Type => event_type,
                Part::Category => category_of(event_type),
            };
            out.extend(value.chars().map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            }));
        }
        Cow::Owned(within_kafkas_limit(out))
    }
}

/// Kafka's longest topic name.
pub(super) const TOPIC_MAX: usize = 249;

/// `name` if Kafka takes its length; else its first 240 characters, `-`
/// and 8 hex digits of its SHA-256: a name cut to the limit alone would be
/// one topic for every event type or account the cut part told apart
/// (CareSoft's `crm.{object}.{action}` types have no bound). `check` keeps
/// templates within the limit for the types and accounts it knows.
fn within_kafkas_limit(mut name: String) -> String {
    use sha2::{Digest, Sha256};
    if name.len() <= TOPIC_MAX {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    // ASCII only (rendering replaced the rest), so any cut is a char boundary.
    name.truncate(TOPIC_MAX - 9);
    name.push('-');
    name.push_str(&hex::encode(&digest[..4]));
    name
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error(
        "topic {0:?} does not exist on the broker (create it, or set `kafka.create_topics = true`)"
    )]
    Missing(String),
    #[error("cannot read metadata of topic {topic:?}: {reason}")]
    Metadata { topic: String, reason: String },
    #[error("cannot create topic {topic:?}: {reason}")]
    Create { topic: String, reason: String },
}

/// The topics seen to exist since the producer was created, by their own
/// checks or a listing of the cluster's, and whether a listing is due.
#[derive(Default)]
pub struct KnownTopics {
    known: HashSet<Arc<str>>,
    /// The cluster's topics were listed into `known` since the producer
    /// was created or a failure forgot them ([`KnownTopics::take_listing`]).
    filled: bool,
    /// When a listing last failed with this producer: not tried again
    /// for [`LISTING_AGAIN_AFTER`], or until a new producer (a fresh value).
    listing_failed_at: Option<std::time::Instant>,
}

impl KnownTopics {
    /// The shared name of a known topic (each report carries one).
    pub fn get(&self, topic: &str) -> Option<Arc<str>> {
        self.known.get(topic).cloned()
    }

    /// Forgets every topic, after a failure that may be a topic's (deleted,
    /// refused): each is checked again, and the next check lists the
    /// cluster's again. A listing that failed lately stays noted, so that
    /// failures do not add its timeout to every check.
    pub fn forget_all(&mut self) {
        self.known.clear();
        self.filled = false;
    }

    /// Whether the cluster's topics were listed since the producer was
    /// created or a failure forgot them.
    #[cfg(test)]
    pub fn filled(&self) -> bool {
        self.filled
    }

    /// The template to list the cluster's topics for, before the next
    /// check of one of `template`'s topics: none for a fixed topic (a
    /// listing of a shared cluster's thousands gains it nothing), while
    /// every broker is said down, once listed, or for a while after a
    /// listing failed.
    pub fn listing_for(
        &self,
        template: &TopicTemplate,
        brokers_down: bool,
    ) -> Option<TopicTemplate> {
        let due = !self.filled
            && self
                .listing_failed_at
                .is_none_or(|at| at.elapsed() >= LISTING_AGAIN_AFTER);
        (due && template.fixed().is_none() && !brokers_down).then(|| template.clone())
    }

    /// Whether the next check of a templated topic may list the cluster's.
    #[cfg(test)]
    pub fn may_list(&self) -> bool {
        self.listing_for(&TopicTemplate::parse("{account}"), false)
            .is_some()
    }

    /// Takes in what a listing ([`KnownTopics::listed_blocking`]) gave:
    /// its topics become known, or its failure is noted.
    pub fn take_listing(&mut self, listed: Result<Vec<String>, rdkafka::error::KafkaError>) {
        match listed {
            Ok(topics) => {
                tracing::debug!(
                    topics = topics.len(),
                    "kafka sink: the cluster's topics the template may render are known"
                );
                self.known.extend(topics.into_iter().map(Arc::from));
                self.filled = true;
            }
            Err(e) => {
                tracing::debug!(error = %e, "kafka sink: the cluster's topics could not be listed; checking each topic on its own");
                self.listing_failed_at = Some(std::time::Instant::now());
            }
        }
    }

    /// The cluster's topics that exist (as a check of one judges it,
    /// [`exists`]) and that `template` may render, in one metadata
    /// request. With a topic per account, checking each in turn took a
    /// round trip per topic at every start and producer replacement, with
    /// nothing sent meanwhile (Kafka audit at 10,000 topics, 2026-12-06).
    /// Blocking: call from `spawn_blocking`.
    pub fn listed_blocking(
        producer: &KafkaProducer,
        template: &TopicTemplate,
    ) -> Result<Vec<String>, rdkafka::error::KafkaError> {
        let metadata = producer.client().fetch_metadata(None, ADMIN_TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| exists(t) && template.may_render(t.name()))
            .map(|t| t.name().to_owned())
            .collect())
    }

    /// Checks `topic` against the broker's metadata (creating it when allowed);
    /// remembers it once it exists. Blocking: call from `spawn_blocking`.
    pub fn ensure_blocking(
        producer: &KafkaProducer,
        topic: &str,
        create: bool,
        admin_config: &rdkafka::ClientConfig,
    ) -> Result<(), TopicError> {
        ensure_pausing(producer, topic, create, admin_config, std::thread::sleep)
    }

    pub fn insert(&mut self, topic: String) {
        self.known.insert(topic.into());
    }
}

/// [`KnownTopics::ensure_blocking`], with `pause` for the waits between
/// checks of a topic being created (a test's pause changes the broker).
fn ensure_pausing(
    producer: &KafkaProducer,
    topic: &str,
    create: bool,
    admin_config: &rdkafka::ClientConfig,
    mut pause: impl FnMut(Duration),
) -> Result<(), TopicError> {
    let state = || topic_state(producer, topic);
    match settled_state(state, false, &mut pause)? {
        TopicState::Exists => Ok(()),
        TopicState::BeingCreated => Err(still_being_created(topic)),
        TopicState::Missing if !create => Err(TopicError::Missing(topic.to_owned())),
        TopicState::Missing => {
            create_topic(admin_config, topic)?;
            match settled_state(state, true, &mut pause)? {
                TopicState::Exists => Ok(()),
                TopicState::BeingCreated => Err(still_being_created(topic)),
                // Not "does not exist (set create_topics)": it is set, and
                // the broker took the create.
                TopicState::Missing => Err(TopicError::Create {
                    topic: topic.to_owned(),
                    reason: format!(
                        "the broker took the request, but its metadata still did not show the topic after {:?}",
                        CREATION_WAITS.iter().sum::<Duration>()
                    ),
                }),
            }
        }
    }
}

/// The topic's state once it is no longer being created, asking `state`
/// again after each of [`CREATION_WAITS`] (passed to `pause`) while it is;
/// also while it is missing when we `just_created` it (the broker asked may
/// not have heard of the create yet). The last state when the waits ran
/// out.
fn settled_state(
    mut state: impl FnMut() -> Result<TopicState, TopicError>,
    just_created: bool,
    pause: &mut impl FnMut(Duration),
) -> Result<TopicState, TopicError> {
    let mut waits = CREATION_WAITS.iter();
    loop {
        let now = state()?;
        let being_created = match now {
            TopicState::BeingCreated => true,
            TopicState::Missing => just_created,
            TopicState::Exists => false,
        };
        match waits.next() {
            Some(&wait) if being_created => pause(wait),
            _ => return Ok(now),
        }
    }
}

fn still_being_created(topic: &str) -> TopicError {
    TopicError::Metadata {
        topic: topic.to_owned(),
        reason: format!(
            "{} (the topic is being created, and still was after {:?})",
            RDKafkaErrorCode::LeaderNotAvailable,
            CREATION_WAITS.iter().sum::<Duration>()
        ),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TopicState {
    Exists,
    Missing,
    /// Its partitions have no leader yet: what Kafka answers while it
    /// creates a topic, also to the metadata request that created it.
    BeingCreated,
}

/// A topic in the broker's metadata that can be produced to: no error,
/// some partitions.
fn exists(t: &rdkafka::metadata::MetadataTopic) -> bool {
    t.error().is_none() && !t.partitions().is_empty()
}

fn topic_state(producer: &KafkaProducer, topic: &str) -> Result<TopicState, TopicError> {
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
        .map_err(|e| TopicError::Metadata {
            topic: topic.to_owned(),
            reason: e.to_string(),
        })?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(TopicState::Missing);
    };
    if exists(t) {
        return Ok(TopicState::Exists);
    }
    match t.error() {
        None => Ok(TopicState::Missing),
        Some(code) => match RDKafkaErrorCode::from(code) {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                Ok(TopicState::Missing)
            }
            RDKafkaErrorCode::LeaderNotAvailable => Ok(TopicState::BeingCreated),
            other => Err(TopicError::Metadata {
                topic: topic.to_owned(),
                reason: other.to_string(),
            }),
        },
    }
}

/// The client that creates a topic. Its librdkafka lines go to debug
/// ([`QuietContext`]), as the stall check's do: with rust-rdkafka's default
/// context every one of them (a broker of the list down: `Connect to …
/// failed`) reached the log at error, past the sink's throttles and its
/// redaction, for every new topic (Kafka sink review, 2026-12-06, eighth
/// round). Whether the topic was created is the sink's to say.
fn creation_client(
    config: &rdkafka::ClientConfig,
) -> Result<AdminClient<QuietContext>, super::producer::CreateError> {
    QuietContext::create(config)
}

fn create_topic(config: &rdkafka::ClientConfig, topic: &str) -> Result<(), TopicError> {
    let err = |reason: String| TopicError::Create {
        topic: topic.to_owned(),
        reason,
    };
    let admin = creation_client(config).map_err(|e| err(e.to_string()))?;
    // -1: the broker's default partition count and replication factor (KIP-464).
    let new = NewTopic::new(topic, -1, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    // The admin client's own thread completes this future: no runtime needed.
    let results = futures::executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| err(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(code.to_string())),
        }
    }
    tracing::info!(topic, "created the Kafka topic");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(vendor: &str, account: &str, ty: &str) -> EventHeader {
        EventHeader {
            id: "0".repeat(32),
            event_type: ty.into(),
            source: format!("/{vendor}/{account}"),
            subject: None,
            vendor: vendor.into(),
            account: account.into(),
            seq: 1,
        }
    }

    /// The listing of the cluster's topics keeps those that begin as the
    /// template's renders do; one placeholder first keeps every topic.
    #[test]
    fn a_listed_topic_is_kept_when_it_begins_as_the_templates_do() {
        let per_account = TopicTemplate::parse("cr.{account}.calls");
        assert!(per_account.may_render("cr.acme.calls"));
        assert!(!per_account.may_render("billing.invoices"));
        let fixed = TopicTemplate::parse("callrelay.events");
        assert!(fixed.may_render("callrelay.events"));
        assert!(!fixed.may_render("callrelay.events.old"));
        assert!(TopicTemplate::parse("{account}.calls").may_render("billing.invoices"));
    }

    #[test]
    fn renders_every_placeholder() {
        let t = TopicTemplate::parse("ev.{vendor}.{account}.{category}.{type}");
        assert_eq!(t.fixed(), None);
        assert_eq!(
            t.render(&header("caresoft", "cs", "crm.ticket.update")),
            "ev.caresoft.cs.crm.crm.ticket.update"
        );
    }

    /// A rendered name past Kafka's 249 characters is cut and ends in a
    /// hash of the whole name: cut alone, two types (CareSoft's
    /// `crm.{object}.{action}` have no bound) or accounts that differ past
    /// the cut went to one topic (review, 2026-12-05).
    #[test]
    fn a_name_past_kafkas_limit_keeps_its_events_apart() {
        let t = TopicTemplate::parse(&format!("{}.{{type}}", "t".repeat(230)));
        let render = |ty: &str| t.render(&header("caresoft", "cs", ty)).into_owned();
        let (one, other) = (
            render("crm.organization.update_custom_field_a"),
            render("crm.organization.update_custom_field_b"),
        );
        assert_eq!((one.len(), other.len()), (249, 249));
        assert_ne!(one, other);
        assert_eq!(one, render("crm.organization.update_custom_field_a"));
        assert!(
            one.is_ascii()
                && one
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        );
        // Within the limit, a name is as rendered.
        assert_eq!(
            render("crm.ticket.update"),
            format!("{}.crm.ticket.update", "t".repeat(230))
        );
    }

    #[test]
    fn fixed_topics_are_recognised() {
        let t = TopicTemplate::parse("callrelay.events");
        assert_eq!(t.fixed(), Some("callrelay.events"));
        assert_eq!(t.render(&header("a", "b", "c")), "callrelay.events");
    }

    #[test]
    fn known_topics_are_remembered_shared_and_forgotten() {
        let mut known = KnownTopics::default();
        known.insert("calls".into());
        known.insert("crm".into());
        known.insert("calls".into());
        let first = known.get("calls").unwrap();
        assert_eq!(&*first, "calls");
        assert!(Arc::ptr_eq(&first, &known.get("calls").unwrap()));
        assert!(known.get("other").is_none());
        assert_eq!(&*known.get("crm").unwrap(), "crm");
        known.forget_all();
        assert!(known.get("calls").is_none());
        assert!(known.get("crm").is_none());
    }

    /// The relay's producer and admin config against a mock cluster holding
    /// topic `present`. The mock, like a broker with
    /// `auto.create.topics.enable` (Kafka's default), creates any topic a
    /// metadata request names unless the client says not to.
    fn against_mock() -> (
        super::super::tests_support::Mock,
        KafkaProducer,
        rdkafka::ClientConfig,
    ) {
        let (mock, _, config) = super::super::tests_support::mock_topic("present");
        let producer = super::super::producer::create(&config, Arc::default()).unwrap();
        (mock, producer, config.client_config())
    }

    /// [`against_mock`], its topic `present` answered LEADER_NOT_AVAILABLE,
    /// as a broker answers while it creates a topic.
    fn against_a_topic_being_created() -> (
        super::super::tests_support::Mock,
        KafkaProducer,
        rdkafka::ClientConfig,
    ) {
        use rdkafka::types::RDKafkaRespErr as E;
        let (mock, producer, admin) = against_mock();
        mock.topic_error("present", E::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
            .unwrap();
        (mock, producer, admin)
    }

    #[test]
    fn a_topic_the_broker_holds_passes_the_check() {
        let (_mock, producer, admin) = against_mock();
        for create in [false, true] {
            KnownTopics::ensure_blocking(&producer, "present", create, &admin).unwrap();
        }
    }

    /// Creating it is tried against tansu (tests/kafka.rs
    /// `tansu_end_to_end_topic_key_headers_and_a_missing_topic`): the mock
    /// does not answer CreateTopics.
    #[test]
    fn a_missing_topic_is_refused_by_name() {
        let (_mock, producer, admin) = against_mock();
        let refused = KnownTopics::ensure_blocking(&producer, "absent", false, &admin);
        assert!(
            matches!(&refused, Err(TopicError::Missing(topic)) if topic == "absent"),
            "{refused:?}"
        );
    }

    /// With `create_topics` the broker may create it on the metadata request
    /// itself, as the mock does; the check then finds it there.
    #[test]
    fn a_missing_topic_the_broker_creates_on_request_passes_with_create_topics() {
        let (mock, _, mut config) = super::super::tests_support::mock_topic("present");
        config.create_topics = true;
        let producer = super::super::producer::create(&config, Arc::default()).unwrap();
        KnownTopics::ensure_blocking(&producer, "absent", true, &config.client_config()).unwrap();
        drop(mock);
    }

    /// The metadata request that makes a broker auto-create a topic is
    /// answered LEADER_NOT_AVAILABLE: the check asks again after a short
    /// wait and passes, where it failed as a metadata error (a WARN and
    /// `publish_errors{reason="metadata"}` for every new topic; Kafka sink
    /// review, 2026-12-06). Here the test's pause ends the creation.
    #[test]
    fn a_topic_being_created_is_checked_again_and_passes() {
        use rdkafka::types::RDKafkaRespErr as E;
        let (mock, producer, admin) = against_a_topic_being_created();
        let mut waits = Vec::new();
        let checked = ensure_pausing(&producer, "present", true, &admin, |wait| {
            waits.push(wait);
            mock.topic_error("present", E::RD_KAFKA_RESP_ERR_NO_ERROR)
                .unwrap();
        });
        assert_eq!(checked, Ok(()));
        assert_eq!(waits, [CREATION_WAITS[0]]);
    }

    /// A topic whose leader never comes fails the check after the bounded
    /// waits, as a metadata error that says so.
    #[test]
    fn a_topic_still_being_created_after_every_wait_is_a_metadata_error() {
        let (_mock, producer, admin) = against_a_topic_being_created();
        let mut waits = Vec::new();
        let checked = ensure_pausing(&producer, "present", true, &admin, |wait| {
            waits.push(wait);
        });
        assert_eq!(waits, CREATION_WAITS);
        let Err(TopicError::Metadata { topic, reason }) = checked else {
            panic!("{checked:?}");
        };
        assert_eq!(topic, "present");
        assert!(
            reason.contains("Leader not available") && reason.contains("being created"),
            "{reason}"
        );
    }

    /// Right after our own create, a topic missing from the metadata is one
    /// the broker asked has not heard of yet: asked again (the mock does
    /// not answer CreateTopics, so the states are scripted). Before any
    /// create, missing is missing at once.
    #[test]
    fn a_topic_missing_just_after_our_create_is_checked_again() {
        use TopicState::{BeingCreated, Exists, Missing};
        let settle = |states: &[TopicState], just_created: bool| {
            let mut states = states.iter().copied();
            let mut waits = Vec::new();
            let state = || Ok(states.next().unwrap_or(Exists));
            let last = settled_state(state, just_created, &mut |wait| waits.push(wait));
            (last, waits.len())
        };
        assert_eq!(settle(&[Missing, BeingCreated], true), (Ok(Exists), 2));
        assert_eq!(settle(&[Missing], false), (Ok(Missing), 0));
        assert_eq!(settle(&[BeingCreated, Missing], false), (Ok(Missing), 1));
        assert_eq!(settle(&[Missing; 9], true), (Ok(Missing), 4));
        assert_eq!(settle(&[Exists], true), (Ok(Exists), 0));
    }

    /// The topic creation's client logs through [`QuietContext`] (debug),
    /// not rust-rdkafka's default context (error, unthrottled). librdkafka
    /// logs from its own threads, where a test's capture does not see it:
    /// the client's type is what is checked.
    #[test]
    fn the_topic_creation_client_logs_at_debug() {
        let (_mock, _producer, admin) = against_mock();
        let client: AdminClient<QuietContext> = creation_client(&admin).unwrap();
        drop(client);
    }

    #[test]
    fn a_broker_that_cannot_be_reached_is_a_metadata_error_not_a_missing_topic() {
        let (mock, producer, admin) = against_mock();
        mock.broker_down(1).unwrap();
        let refused = KnownTopics::ensure_blocking(&producer, "present", true, &admin);
        assert!(
            matches!(&refused, Err(TopicError::Metadata { topic, .. }) if topic == "present"),
            "{refused:?}"
        );
    }

    #[test]
    fn characters_kafka_refuses_become_underscores() {
        let t = TopicTemplate::parse("{account}-x");
        assert_eq!(t.render(&header("v", "my acct/ü", "t")), "my_acct__-x");
    }
}
