//! `[kafka]`: where and how the Kafka sink publishes.
//!
//! Guarantees: a config that validates has a usable topic template and
//! `[kafka.options]` that librdkafka itself accepts (checked by building its
//! native config, then a producer that knows no broker — no network), so
//! `callrelay check` catches a mistyped property, or a combination the
//! producer would refuse, before the daemon starts. One librdkafka setting
//! is not set under two of its names (an alias, or a topic property with and
//! without `topic.`), and the values the relay reads itself are refused
//! unless librdkafka reads them as the same number.

use std::collections::{BTreeMap, HashMap};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use serde::Deserialize;
use toml::Spanned;

use crate::config::Validator;

mod property_names;
mod spelling;

use property_names::{property_of, same_property};
use spelling::spelling_problem;

#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: Spanned<String>,
    /// Template: `{vendor}` `{account}` `{type}` `{category}`.
    #[serde(default = "default_topic")]
    pub topic: Spanned<String>,
    /// Create missing topics at start (with the broker's defaults).
    #[serde(default)]
    pub create_topics: bool,
    /// Raw librdkafka properties; values keep their place for error messages.
    #[serde(default)]
    pub options: BTreeMap<String, Spanned<String>>,
}

/// Kafka's own topics (consumer offsets, transactions, KRaft's metadata,
/// share groups): a broker refuses a client's records to them ("Cannot
/// append to internal topic"), a failure the sink retries for ever with
/// every account's events behind it, while the topic exists and so passes
/// the sink's look-up.
const KAFKAS_OWN_TOPICS: [&str; 4] = [
    "__consumer_offsets",
    "__transaction_state",
    "__cluster_metadata",
    "__share_group_state",
];

/// `name` if it is one of [`KAFKAS_OWN_TOPICS`].
fn kafkas_own_topic(name: &str) -> Option<&'static str> {
    KAFKAS_OWN_TOPICS.into_iter().find(|own| *own == name)
}

fn default_topic() -> Spanned<String> {
    crate::config::unspanned("callrelay.events".to_owned())
}

pub const TOPIC_PLACEHOLDERS: [&str; 4] = ["{vendor}", "{account}", "{type}", "{category}"];

/// The longest text each placeholder renders to: a vendor's name (8), an
/// account (`check` keeps it to 64), an event type and its category (the
/// contract's types are 23 at most; room is left. CareSoft's
/// `crm.{object}.{action}` has no bound: a name past the limit ends in a
/// hash of the whole name, `topic::within_kafkas_limit`).
const PLACEHOLDER_LONGEST: [(&str, usize); 4] = [
    ("{vendor}", 8),
    ("{account}", 64),
    ("{type}", 32),
    ("{category}", 24),
];

use super::topic::{TOPIC_MAX, TopicTemplate};
use crate::event::Vendor;

/// Properties the sink sets itself; an option may not weaken them.
/// `message.timeout.ms = 0` keeps a record retrying until it is delivered: a
/// timed-out record would leave a gap that the re-send from the cursor fills
/// after the records behind it, out of per-key order. A bounded retry count
/// (librdkafka's default is the largest) does the same. With
/// `delivery.report.only.error` a delivered record gets no report, so the
/// cursor, which moves on reports, would never pass it.
const FIXED: [(&str, &str); 5] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("message.timeout.ms", "0"),
    ("message.send.max.retries", "2147483647"),
    ("delivery.report.only.error", "false"),
];

/// The longest `linger.ms` the sink takes: a record lingering far longer
/// would be taken for a hung broker (no report for 30 s is a stall, and
/// after 5 minutes the producer is replaced before it ever sends).
const LINGER_MAX_MS: f64 = 10_000.0;

/// The partitioners that put one key's records in one partition (the
/// others, `random`, ignore the key: one call's events would be spread
/// over partitions, and per-key order lost).
const KEYED_PARTITIONERS: [&str; 6] = [
    "consistent_random",
    "consistent",
    "murmur2_random",
    "murmur2",
    "fnv1a_random",
    "fnv1a",
];

/// Set unless `[kafka.options]` sets the same librdkafka property, under
/// any of its names ([`same_property`]).
const DEFAULTS: [(&str, &str); 2] = [("linger.ms", "5"), ("client.id", "callrelay")];

/// What the read-back's consumer sets over the producer's properties, and
/// over the options under any name ([`same_property`]): librdkafka wants a
/// group even for an assigned consumer; nothing joins it and nothing is
/// committed, and its coordinator's errors are read past
/// (`scan::is_about_the_unused_group`). An offset retention removed
/// meanwhile: read from what is left, not from the end (librdkafka's
/// default), past what is to be found.
const READ_BACK_FIXED: [(&str, &str); 5] = [
    ("group.id", "callrelay-read-back"),
    ("enable.auto.commit", "false"),
    ("enable.partition.eof", "true"),
    ("auto.offset.reset", "earliest"),
    ("queued.max.messages.kbytes", "16384"),
];

/// librdkafka's `message.max.bytes` when the options leave it unset.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The producer's queue, in KiB, unless `[kafka.options]` sets
/// `queue.buffering.max.kbytes`: while every broker is down the sink still
/// hands records over (up to 20,000, which `message.timeout.ms = 0` keeps
/// until delivered), and librdkafka's own default of 1 GiB would let large
/// events hold that much for the whole outage. Raised to the largest
/// message when that is larger, as librdkafka refuses a record larger than
/// its queue.
const QUEUE_KBYTES: usize = 64 * 1024;

impl KafkaConfig {
    /// The largest message the producer takes (`message.max.bytes`); a
    /// loaded config's value is one librdkafka accepted.
    pub fn message_max_bytes(&self) -> usize {
        self.option("message.max.bytes")
            .and_then(|(_, v)| v.get_ref().trim().parse().ok())
            .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES)
    }

    /// The option that sets librdkafka's `property`, under whichever of
    /// its names ([`same_property`]); a loaded config has one at most.
    fn option(&self, property: &str) -> Option<(&String, &Spanned<String>)> {
        self.options
            .iter()
            .find(|(key, _)| same_property(key, property))
    }

    /// One librdkafka property set under two of its names (an alias, or a
    /// topic property with and without `topic.`), at the later of the two
    /// in the file: which value librdkafka kept would change from one
    /// client to the next.
    fn alias_problem(&self) -> Option<(&Spanned<String>, String)> {
        let mut in_file_order: Vec<_> = self.options.iter().collect();
        in_file_order.sort_by_key(|(_, at)| at.span().start);
        in_file_order.iter().enumerate().find_map(|(i, &(later, at))| {
            let (earlier, _) = in_file_order[..i]
                .iter()
                .find(|(key, _)| same_property(key, later))?;
            Some((at, format!(
                "[kafka.options] `{later}` and `{earlier}` are one setting in librdkafka under two names: set only one (which of the two values it used would change from one client to the next)"
            )))
        })
    }

    /// A limit between options that librdkafka takes but the sink cannot
    /// work with, and the option to point at. Called once every option has
    /// passed [`option_problem`], whose [`spelling_problem`] leaves only
    /// values that parse here, to what librdkafka reads them as, and
    /// [`Self::alias_problem`], so each is set under one name at most.
    fn limits_problem(&self) -> Option<(&Spanned<String>, String)> {
        let kbytes = self
            .option("queue.buffering.max.kbytes")
            .and_then(|(key, v)| Some((key, v, v.get_ref().trim().parse::<usize>().ok()?)));
        if let Some((key, at, kbytes)) = kbytes
            && kbytes.saturating_mul(1024) < self.message_max_bytes()
        {
            return Some((
                at,
                format!(
                    "[kafka.options] `{key}` = {kbytes} is below `message.max.bytes` ({} bytes): librdkafka refuses a record larger than its queue, so an event the relay accepted would hold the sink for good; keep it at least message.max.bytes / 1024",
                    self.message_max_bytes()
                ),
            ));
        }
        let (key, at) = self.option("linger.ms")?;
        let ms = at.get_ref().trim().parse::<f64>().ok()?;
        (ms > LINGER_MAX_MS).then(|| (at, format!(
            "[kafka.options] `{key}` = {ms} is over {LINGER_MAX_MS} ms: a record waiting that long for its batch would be taken for a hung broker"
        )))
    }

    pub fn validate(&self, v: &mut Validator) {
        if self.brokers.get_ref().trim().is_empty() {
            v.error(self.brokers.span(), "`brokers` must not be empty");
        } else if self.brokers.get_ref().contains('@') {
            // Not quoted: the part before '@' would be a password.
            v.error(
                self.brokers.span(),
                "`brokers` holds an '@': credentials do not go in the broker list; set \"sasl.username\" and \"sasl.password\" in [kafka.options]",
            );
        } else if let Some((index, why)) =
            brokers_problem(self.brokers.get_ref(), &self.security_protocol())
        {
            // A malformed list looked like an outage at start ("all brokers
            // are down"), with the cause only in `last_error`.
            let message = format!(
                "`brokers` = {}: broker {index} {why}; write host:port, comma-separated (\"kafka-1:9092,kafka-2:9092\")",
                v.shown(&self.brokers)
            );
            v.error(self.brokers.span(), message);
        }
        let mut rest = self.topic.get_ref().clone();
        for p in TOPIC_PLACEHOLDERS {
            rest = rest.replace(p, "x");
        }
        let template = self.topic.get_ref();
        let longest = PLACEHOLDER_LONGEST
            .iter()
            .fold(template.clone(), |t, (p, n)| t.replace(p, &"x".repeat(*n)))
            .len();
        if rest.is_empty()
            || template == "."
            || template == ".."
            || rest.len() > TOPIC_MAX
            || !rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            let message = format!(
                "`topic` = {}: a Kafka topic has letters, digits, '.', '_', '-' and the placeholders {{vendor}} {{account}} {{type}} {{category}}",
                v.shown(&self.topic)
            );
            v.error(self.topic.span(), message);
        } else if let Some(internal) = kafkas_own_topic(template) {
            let message = format!(
                "`topic` = {}: {internal:?} is one of Kafka's own topics, which refuses every record a client sends it; name another",
                v.shown(&self.topic)
            );
            v.error(self.topic.span(), message);
        } else if longest > TOPIC_MAX {
            // Rendered names were cut at 249: two accounts' or types'
            // topics could become one.
            let message = format!(
                "`topic` = {}: renders to up to {longest} characters (an account of 64, a type of 32), and a Kafka topic holds at most {TOPIC_MAX}; shorten its fixed text",
                v.shown(&self.topic)
            );
            v.error(self.topic.span(), message);
        }
        let mut each_ok = true;
        for (key, value) in &self.options {
            if let Some(message) = option_problem(key, value.get_ref()) {
                v.error(value.span(), message);
                each_ok = false;
            }
        }
        // Once each key is one librdkafka knows: `topic.linger.ms` is no
        // second name of `linger.ms`, but refused as it is.
        if each_ok && let Some((at, message)) = self.alias_problem() {
            v.error(at.span(), message);
            each_ok = false;
        }
        if each_ok && let Some((at, message)) = self.limits_problem() {
            v.error(at.span(), message);
            each_ok = false;
        }
        if each_ok && let Some(message) = self.combined_problem() {
            // At the option librdkafka names (`ssl.ca.location failed: …`),
            // the longest when one key is part of another; else the first.
            let named = self
                .options
                .iter()
                .filter(|(key, _)| message.contains(key.as_str()))
                .max_by_key(|(key, _)| key.len());
            if let Some((_, at)) = named.or_else(|| self.options.iter().next()) {
                v.error(at.span(), message);
            }
        }
    }

    /// Refuses accounts whose topics Kafka cannot hold side by side: Kafka
    /// refuses to create a topic whose name differs from an existing one
    /// only by `.` against `_` (they would share metric names), so the
    /// second account's first event stopped the sink, every account's
    /// events behind it. `accounts` are the configured sources' vendor and
    /// account, in the file's order; the second of a colliding pair is
    /// placed.
    pub fn validate_topics_of(&self, v: &mut Validator, accounts: &[(Vendor, &Spanned<String>)]) {
        let template = TopicTemplate::parse(self.topic.get_ref());
        if template.fixed().is_some() {
            return;
        }
        let mut seen: HashMap<String, (String, Vendor, &Spanned<String>)> = HashMap::new();
        for (vendor, account) in accounts {
            let name = template
                .render_for(vendor.as_str(), account.get_ref(), "call.ringing")
                .into_owned();
            if let Some(internal) = kafkas_own_topic(&name) {
                let message = format!(
                    "{vendor} account {}'s Kafka topic is {internal:?}, one of Kafka's own topics, which refuses every record a client sends it (and holds every account's events behind it); rename the account, or change `kafka.topic`",
                    v.shown(account)
                );
                v.error(account.span(), message);
                continue;
            }
            let folded = name.replace('.', "_");
            match seen.get(&folded) {
                Some((other, other_vendor, other_account)) if *other != name => {
                    let message = format!(
                        "{vendor} account {}'s Kafka topic {name:?} collides with {other:?} ({other_vendor} account {}): Kafka refuses a topic whose name differs from an existing one only by `.` against `_`; rename one of the accounts, or take `{{account}}` out of `kafka.topic`",
                        v.shown(account),
                        v.shown(other_account)
                    );
                    v.error(account.span(), message);
                }
                Some(_) => {}
                None => {
                    seen.insert(folded, (name, *vendor, account));
                }
            }
        }
    }

    /// What librdkafka refuses only when a client is created: rules
    /// between properties (`max.in.flight` over 5 with idempotence),
    /// certificate files it cannot load, and Kerberos, which this build of
    /// librdkafka has not (SASL with no mechanism named is Kerberos). Found
    /// by creating a producer, and the read-back's consumer, that know no
    /// broker, so no connection is made; `None` with no options (the sink's
    /// own set is valid). The consumer has rules of its own: a
    /// `receive.message.max.bytes` below its fetch size passed `check`, and
    /// every read-back then failed, so what Kafka had was sent again.
    fn combined_problem(&self) -> Option<String> {
        if self.options.is_empty() {
            return None;
        }
        let mut c = self.client_config();
        c.remove("bootstrap.servers");
        let created = c
            .create_with_context::<_, BaseProducer<SilentContext>>(SilentContext)
            .map(drop)
            .and_then(|()| {
                let mut c = self.read_back_client_config();
                c.remove("bootstrap.servers");
                c.create_with_context::<_, BaseConsumer<SilentContext>>(SilentContext)
                    .map(drop)
            });
        match created {
            Ok(()) => None,
            Err(rdkafka::error::KafkaError::ClientCreation(desc))
                if self.quotes_a_secret(&desc) =>
            {
                Some("[kafka.options] librdkafka refuses these options together (its message quotes a secret value, so it is not shown)".to_owned())
            }
            Err(rdkafka::error::KafkaError::ClientCreation(desc)) => {
                // OpenSSL's own words ("x509 certificate routines::system
                // lib") do not say that a file is missing or unreadable.
                let hint = if self.uses_kerberos() {
                    " (Kerberos is not built into callrelay: set \"sasl.mechanism\" to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; with none set, SASL means Kerberos)"
                } else if desc.contains(".location") {
                    " (is the file it names there, and readable by the relay's user?)"
                } else {
                    ""
                };
                Some(format!(
                    "[kafka.options] librdkafka refuses these options together: {desc}{hint}"
                ))
            }
            Err(e) => Some(format!(
                "[kafka.options] librdkafka refuses these options: {e}"
            )),
        }
    }

    /// The values of options that may be secrets, for the producer's log
    /// lines and errors to leave out.
    /// Each as the pieces a message may quote of it (see [`shares_text`]),
    /// found once rather than per word of every line. A file's path is no
    /// secret (`ssl.key.location`, a keytab: its contents are), and its
    /// pieces (`/kafka`, `creden`) hid every broker named `kafka-1` in the
    /// lines (review of df6971e, 2026-12-06).
    pub(crate) fn secret_values(&self) -> Vec<String> {
        secret_pieces(
            self.options
                .iter()
                .map(|(key, value)| (key.as_str(), value.get_ref().as_str())),
        )
    }

    /// Whether `text` quotes the value of an option that may be a secret,
    /// a file's path included: `check` hides such a refusal whole, as a
    /// path from a `${file:…}` is shown unquoted by librdkafka, where the
    /// config's own redaction of it (quoted values) would not find it
    /// (review of 21a507c, 2026-12-06).
    fn quotes_a_secret(&self, text: &str) -> bool {
        self.options
            .iter()
            .any(|(key, value)| is_sensitive(key) && shares_text(text, value.get_ref()))
    }

    /// `security.protocol`, lowercase; librdkafka's default when unset.
    fn security_protocol(&self) -> String {
        self.option("security.protocol").map_or_else(
            || "plaintext".to_owned(),
            |(_, v)| v.get_ref().trim().to_ascii_lowercase(),
        )
    }

    fn uses_kerberos(&self) -> bool {
        let sasl = self.security_protocol().starts_with("sasl");
        let mechanism = self.option("sasl.mechanisms").map_or_else(
            || "gssapi".to_owned(),
            |(_, v)| v.get_ref().trim().to_ascii_lowercase(),
        );
        sasl && mechanism == "gssapi"
    }

    /// The librdkafka properties of the consumer that reads a topic back
    /// after an unclean stop: the producer's, and what an assigned consumer
    /// that never commits needs.
    pub fn read_back_client_config(&self) -> ClientConfig {
        let mut client = self.client_config();
        for (key, value) in READ_BACK_FIXED {
            // Under any other name of the property (`topic.auto.offset.reset`)
            // an option's value would win at random against this one. The
            // `topic.` form of one in both scopes (`enable.auto.commit`) is
            // a setting of its own, but no more the options' to make.
            for option in self.options.keys() {
                if same_property(option, key) || same_property(option, &format!("topic.{key}")) {
                    client.remove(option);
                }
            }
            client.set(key, value);
        }
        client
    }

    /// The librdkafka properties of the consumer that only looks topics up
    /// (`preflight`): the producer's, without a group, since a group sends
    /// librdkafka looking for its coordinator (more connections, TLS and
    /// SASL logins) at each lookup, for nothing.
    pub fn lookup_client_config(&self) -> ClientConfig {
        let mut client = self.client_config();
        // The options may name one; a metadata request needs none.
        client.remove("group.id");
        client
    }

    /// The librdkafka properties of the producer: ours, then the options.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.get_ref().trim());
        for (k, v) in DEFAULTS.iter().chain(FIXED.iter()) {
            // An option of a FIXED property holds its value (`option_problem`).
            if self.option(k).is_none() {
                c.set(*k, *v);
            }
        }
        c.set(
            "queue.buffering.max.kbytes",
            QUEUE_KBYTES
                .max(self.message_max_bytes().div_ceil(1024))
                .to_string(),
        );
        // librdkafka's producer asks the broker to create any topic its
        // metadata requests name, and Kafka's brokers do so by default
        // (`auto.create.topics.enable`): the check that a topic exists would
        // itself create it, whatever `create_topics` says.
        c.set(
            "allow.auto.create.topics",
            if self.create_topics { "true" } else { "false" },
        );
        for (k, v) in &self.options {
            c.set(k, v.get_ref());
        }
        c
    }

    /// Whether `[kafka.options]` leaves a missing topic to the broker's
    /// policy (`"allow.auto.create.topics" = "true"`, in any spelling
    /// librdkafka reads as true): the sink's metadata request for a topic
    /// then creates it on a broker with `auto.create.topics.enable`.
    pub fn leaves_topics_to_the_broker(&self) -> bool {
        self.option("allow.auto.create.topics")
            .is_some_and(|(_, v)| librdkafka_bool(v.get_ref()) == Some(true))
    }

    /// A digest of the files the options name (`ssl.ca.location`,
    /// `ssl.certificate.location`, `ssl.key.location`, … — every `*.location`),
    /// as they are now: librdkafka reads them when the producer is created,
    /// so a reload compares this with the digest taken when the sink started
    /// and restarts the sink when a certificate or key was replaced in place.
    /// `None` when no option names a file.
    pub fn files_digest(&self) -> Option<[u8; 32]> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut any = false;
        for (key, value) in self.options.iter().filter(|(k, _)| is_location(k)) {
            any = true;
            hasher.update(key.as_bytes());
            hasher.update([0]);
            hasher.update(value.get_ref().as_bytes());
            // Unreadable (a missing file): only the path counts.
            match crate::sources::tls::location_digest(std::path::Path::new(value.get_ref())) {
                Some(contents) => {
                    hasher.update([1]);
                    hasher.update(contents);
                }
                None => hasher.update([2]),
            }
        }
        any.then(|| hasher.finalize().into())
    }

    /// Whether an option names a file ([`Self::files_digest`] has any to read).
    pub fn names_files(&self) -> bool {
        self.options.keys().any(|k| is_location(k))
    }

    /// The first option librdkafka refuses on its own, worded for the
    /// operator (no secret value echoed). What it refuses only together is
    /// left to the producer's creation, which says so itself: building a
    /// second producer here would load the CA store again before every start.
    pub fn options_problem(&self) -> Option<String> {
        self.options
            .iter()
            .find_map(|(k, v)| option_problem(k, v.get_ref()))
            .or_else(|| self.alias_problem().map(|(_, message)| message))
    }
}

/// An option whose file [`KafkaConfig::files_digest`] reads
/// (`ssl.ca.location`, …).
fn is_location(key: &str) -> bool {
    key.ends_with(".location")
}

/// The throw-away producer of [`KafkaConfig::combined_problem`]: its
/// librdkafka log ("no bootstrap.servers configured") is expected, not news.
struct SilentContext;

impl ClientContext for SilentContext {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _message: &str) {}
}

impl ConsumerContext for SilentContext {}

impl ProducerContext for SilentContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _report: &DeliveryResult<'_>, _opaque: ()) {}
}

/// Whether librdkafka accepts `key = value`, and that it does not weaken the
/// delivery guarantees the sink promises.
fn option_problem(key: &str, value: &str) -> Option<String> {
    // A name librdkafka does not know is said so first: the checks below
    // map names onto properties (`topic.linger.ms` onto `linger.ms`), and
    // would judge a value librdkafka never takes under that name.
    let refusal = librdkafka_refusal(key, value);
    if let Some(Refusal::UnknownName(message)) = refusal {
        // librdkafka names what it looked up at topic level, the name
        // without `topic.` ("No such configuration property:
        // \"enable.idempotence\""), which reads as if that did not exist.
        // Not for `topic.topic.X`: librdkafka strips one `topic.` and would
        // take the rest at topic level.
        if let Some(global) = key.strip_prefix("topic.")
            && !global.starts_with("topic.")
        {
            let is_global = format!(
                "[kafka.options] `{key}`: `{global}` is a global property, not a topic one"
            );
            if !matches!(
                librdkafka_refusal(global, value),
                Some(Refusal::UnknownName(_))
            ) {
                // Refused as that too (its value, or a property no config
                // may set): the global name's own refusal, not advice to
                // write what is refused again.
                return Some(match option_problem(global, value) {
                    None => format!("{is_global}: write it `{global}`"),
                    Some(inner) => {
                        let inner = inner.strip_prefix("[kafka.options] ").unwrap_or(&inner);
                        format!("{is_global}, and as that: {inner}")
                    }
                });
            }
        }
        return Some(message);
    }
    // Not `topic.metadata.broker.list`, which `property_of` resolves to the
    // same name but librdkafka refuses as unknown.
    if !key.starts_with("topic.") && same_property(key, "metadata.broker.list") {
        return Some(format!(
            "[kafka.options] `{key}`: set the brokers with `kafka.brokers`"
        ));
    }
    // Under any of its names ([`same_property`]).
    let (property, _) = property_of(key);
    if property == "partitioner" && !KEYED_PARTITIONERS.contains(&value.trim()) {
        return Some(format!(
            "[kafka.options] `{key}` = {value:?} ignores the record key: one call's events would be spread over partitions, out of order; use one of {}",
            KEYED_PARTITIONERS.join(", ")
        ));
    }
    if let Some((fixed, want)) = FIXED.iter().find(|(k, _)| same_property(k, key))
        && !same_value(fixed, value, want)
    {
        let why = if *fixed == "delivery.report.only.error" {
            "the sink moves its cursor on each record's delivery report"
        } else {
            "the sink promises an idempotent, fully acknowledged producer that retries each record until it is delivered, in per-key order"
        };
        return Some(format!("[kafka.options] `{key}` must stay {want:?}: {why}"));
    }
    if let Some(message) = spelling_problem(key, property, value) {
        return Some(message);
    }
    if key == "transactional.id" {
        return Some("[kafka.options] `transactional.id` is not supported: the sink is an idempotent, non-transactional producer".into());
    }
    refusal.map(Refusal::said)
}

/// Why librdkafka refuses an option, worded for the user.
enum Refusal {
    /// It knows no property of that name (`RD_KAFKA_CONF_UNKNOWN`).
    UnknownName(String),
    /// Its value, or a property no config may set.
    Other(String),
}

impl Refusal {
    fn of(unknown_name: bool, said: String) -> Refusal {
        if unknown_name {
            Refusal::UnknownName(said)
        } else {
            Refusal::Other(said)
        }
    }

    fn said(self) -> String {
        match self {
            Refusal::UnknownName(said) | Refusal::Other(said) => said,
        }
    }
}

/// librdkafka's refusal of `key = value` on its own, worded for the
/// operator, and whether it is of the name (a property it does not know).
fn librdkafka_refusal(key: &str, value: &str) -> Option<Refusal> {
    let mut c = ClientConfig::new();
    c.set(key, value);
    match c.create_native_config() {
        Ok(_) => None,
        Err(rdkafka::error::KafkaError::ClientConfig(code, desc, _, _)) => {
            let unknown = code == rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN;
            if is_sensitive(key) {
                // librdkafka's own words when they hold nothing of the value
                // ("No such configuration property", "Java JAAS configuration
                // is not supported", "Internal property not settable"); some
                // of its messages quote the value, and those are not shown.
                let what = if shares_text(&desc, value) {
                    if unknown {
                        "librdkafka has no property of this name".to_owned()
                    } else {
                        "librdkafka refuses this property or its value".to_owned()
                    }
                } else {
                    desc
                };
                Some(Refusal::of(
                    unknown,
                    format!("[kafka.options] `{key}`: {what}"),
                ))
            } else {
                // librdkafka ends some messages with the value unquoted
                // ("Invalid value for configuration property \"x\": VALUE"):
                // quoted, a value from `${VAR}` is found and shown as that.
                let desc = match desc.strip_suffix(value) {
                    Some(before) if !value.is_empty() => format!("{before}{value:?}"),
                    _ => desc,
                };
                Some(Refusal::of(
                    unknown,
                    format!("[kafka.options] `{key}`: {desc}"),
                ))
            }
        }
        Err(_) => Some(Refusal::Other(format!(
            "[kafka.options] `{key}`: librdkafka refuses it"
        ))),
    }
}

/// Whether `value` does not weaken the fixed setting `key = want`. A
/// boolean property is read by librdkafka's rule ([`librdkafka_bool`]):
/// only a value it reads as the other boolean is refused here, one it reads
/// as neither is left to its own refusal ("Expected bool value").
fn same_value(key: &str, value: &str, want: &str) -> bool {
    // By the property, not by `want`: `message.timeout.ms`'s `0` is a
    // boolean's spelling too.
    if matches!(key, "enable.idempotence" | "delivery.report.only.error")
        && let Some(want) = librdkafka_bool(want)
    {
        return librdkafka_bool(value) != Some(!want);
    }
    let v = value.trim().to_ascii_lowercase();
    match key {
        "acks" => v == "all" || v == "-1",
        _ => v == want,
    }
}

/// What librdkafka 2.12.1 reads a boolean property's value as
/// (`_RK_C_BOOL` in `rd_kafka_anyconf_set_prop`): `true`, `t` in any case
/// and `1` are true, `false`, `f` and `0` false; nothing is trimmed, and
/// anything else (`yes`, `on`, ` true`) it refuses.
fn librdkafka_bool(value: &str) -> Option<bool> {
    let is = |words: [&str; 3]| words.iter().any(|w| value.eq_ignore_ascii_case(w));
    if is(["true", "t", "1"]) {
        Some(true)
    } else if is(["false", "f", "0"]) {
        Some(false)
    } else {
        None
    }
}

/// The first entry of a `bootstrap.servers` list that librdkafka would not
/// use (1-based, counting non-empty entries), and why, following its parser
/// (`rd_kafka_broker_name_parse`): entries are split at ',' and empty ones
/// skipped; `[protocol://]host[:port]`, the protocol one librdkafka knows and
/// the same as `security.protocol` (else that entry and every later one are
/// dropped), a path after it ignored; an empty host is localhost; the port
/// is read with `atoi`, so a word or a number over 65535 is a wrong port; a
/// space inside an entry becomes part of the host name.
fn brokers_problem(list: &str, security_protocol: &str) -> Option<(usize, String)> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .find_map(|(i, entry)| broker_problem(entry, security_protocol).map(|why| (i + 1, why)))
}

fn broker_problem(entry: &str, security_protocol: &str) -> Option<String> {
    let address = match entry.split_once("://") {
        Some((scheme, rest)) => {
            const KNOWN: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
            let scheme = scheme.to_ascii_lowercase();
            if !KNOWN.contains(&scheme.as_str()) {
                return Some(format!(
                    "has protocol {scheme:?}, which librdkafka does not know (plaintext, ssl, sasl_plaintext, sasl_ssl)"
                ));
            }
            if scheme != security_protocol {
                return Some(format!(
                    "has protocol {scheme:?} but `security.protocol` is {security_protocol:?}: librdkafka drops it and every broker after it"
                ));
            }
            rest.split('/').next().unwrap_or_default()
        }
        None if entry.contains('/') => {
            return Some("holds a '/' (a path needs a protocol:// before it)".into());
        }
        None => entry,
    };
    if address.chars().any(char::is_whitespace) {
        return Some("holds a space (separate brokers with ',')".into());
    }
    // librdkafka's own rule: a port when there is one ':' or the last one
    // follows ']'; otherwise (a bare IPv6 address) none.
    let port = match (address.find(':'), address.rfind(':')) {
        (Some(first), Some(last)) if first == last || address[..last].ends_with(']') => {
            Some(&address[last + 1..])
        }
        _ => None,
    };
    match port {
        Some(p) if p.parse::<u16>().map_or(true, |p| p == 0) => {
            Some("has no valid port (1..65535) after ':'".into())
        }
        _ => None,
    }
}

/// How many characters of a secret in a row give part of it away (see
/// [`shares_text`]).
const SHARED_RUN: usize = 6;

/// A sensitive option whose value the producer's lines may show: a file's
/// path (`ssl.key.location`, `sasl.kerberos.keytab`) is where the secret
/// is, not the secret, and its pieces (`/kafka`) hid every broker of that
/// name. (`sasl.oauthbearer.token.endpoint.url`, whose address may hold
/// credentials, is refused by this build's librdkafka, which has no OIDC:
/// so `check` refuses it.)
fn names_a_file(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with(".location") || k.ends_with("keytab")
}

/// Properties whose values may be secrets: never echoed.
/// `sasl.oauthbearer.config` holds an unsecured JWT's extensions, which
/// may be API keys, and librdkafka quotes it when it cannot parse it.
pub(crate) fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key",
        "token",
        "jaas",
        "oauthbearer.config",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// Option values may hold credentials (`sasl.password`): only their names print.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", self.brokers.get_ref())
            .field("topic", self.topic.get_ref())
            .field("create_topics", &self.create_topics)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The pieces a message may quote of the values of `options` that may be
/// secrets ([`KafkaConfig::secret_values`]); also of a client's settings,
/// for the short-lived clients made from them: keys from
/// `ClientConfig::config_map`, values through `ClientConfig::get` (the map
/// shows some sensitive values as a placeholder).
pub(crate) fn secret_pieces<'a>(
    options: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let mut pieces: Vec<String> = options
        .into_iter()
        .filter(|(key, _)| is_sensitive(key) && !names_a_file(key))
        .flat_map(|(_, value)| quotable_pieces(value))
        .filter(|piece| !piece.is_empty())
        .collect();
    pieces.sort_unstable();
    pieces.dedup();
    pieces
}

/// Whether `text` holds `value` or any 6 characters of it in a row (a
/// message that quotes a secret cut short still gives part of it away;
/// fewer would match ordinary words: "nter" is in "Internal").
fn shares_text(text: &str, value: &str) -> bool {
    value.trim().is_empty()
        || quotable_pieces(value)
            .iter()
            .any(|piece| text.contains(piece.as_str()))
}

/// What a message may quote of `value` (trimmed) for [`shares_text`]: the
/// whole of it when shorter than [`SHARED_RUN`], else each run of that many
/// characters.
fn quotable_pieces(value: &str) -> Vec<String> {
    let chars: Vec<char> = value.trim().chars().collect();
    if chars.len() < SHARED_RUN {
        return vec![chars.into_iter().collect()];
    }
    chars
        .windows(SHARED_RUN)
        .map(|run| run.iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `[kafka]` on a local broker with the default topic and `options`.
    fn with_options(options: &[(&str, &str)]) -> KafkaConfig {
        KafkaConfig {
            brokers: crate::config::unspanned("127.0.0.1:9092".to_owned()),
            topic: default_topic(),
            create_topics: false,
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), crate::config::unspanned((*v).to_owned())))
                .collect(),
        }
    }

    fn problems(options: &[(&str, &str)]) -> Vec<String> {
        options
            .iter()
            .filter_map(|(k, v)| option_problem(k, v))
            .collect()
    }

    #[test]
    fn a_broker_list_librdkafka_cannot_use_is_found_by_check() {
        for good in [
            "kafka-1:9092",
            "kafka-1:9092, kafka-2:9092",
            "kafka-1:9092,",
            "kafka-1:9092,,kafka-2:9092",
            "kafka-1",
            "kafka_1.internal:9092",
            ":9092",
            "127.0.0.1:9092",
            "PLAINTEXT://kafka.example.com:9092",
            "plaintext://kafka.example.com:9092/",
            "[::1]:9092",
            "[::1]",
            "::1",
        ] {
            assert_eq!(brokers_problem(good, "plaintext"), None, "{good}");
        }
        assert_eq!(brokers_problem("SASL_SSL://k:9093", "sasl_ssl"), None);
        assert_eq!(brokers_problem("SSL://[::1]:9093", "ssl"), None);
        for (bad, index) in [
            ("not a broker list ::: ,,", 1),
            ("kafka-1:9092 kafka-2:9092", 1),
            ("kafka-1:9092,kafka-2:port", 2),
            ("kafka-1:0", 1),
            ("kafka-1:70000", 1),
            ("kafka-1:9092/path", 1),
            ("kafka-1/path", 1),
            ("http://kafka-1:9092", 1),
            ("kafka-1:9092,SASL_SSL://kafka-2:9093", 2),
        ] {
            assert_eq!(
                brokers_problem(bad, "plaintext").map(|(i, _)| i),
                Some(index),
                "{bad}"
            );
        }
    }

    #[test]
    fn librdkafka_properties_are_checked_without_a_network() {
        assert!(problems(&[("compression.type", "lz4"), ("linger.ms", "20")]).is_empty());
        let p = problems(&[("compression.typo", "lz4")]);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("compression.typo"), "{p:?}");
        let p = problems(&[("compression.type", "zip")]);
        assert_eq!(p.len(), 1, "{p:?}");
    }

    #[test]
    fn guarantees_cannot_be_weakened() {
        assert!(problems(&[("acks", "-1"), ("enable.idempotence", "true")]).is_empty());
        assert_eq!(problems(&[("acks", "1")]).len(), 1);
        assert_eq!(problems(&[("request.required.acks", "1")]).len(), 1);
        assert!(problems(&[("request.required.acks", "all")]).is_empty());
        assert_eq!(problems(&[("enable.idempotence", "false")]).len(), 1);
        // A finite timeout lets librdkafka drop a record and deliver the next.
        assert!(problems(&[("message.timeout.ms", "0")]).is_empty());
        assert_eq!(problems(&[("message.timeout.ms", "5000")]).len(), 1);
        assert_eq!(problems(&[("delivery.timeout.ms", "5000")]).len(), 1);
        assert!(problems(&[("delivery.timeout.ms", "0")]).is_empty());
        assert_eq!(problems(&[("transactional.id", "x")]).len(), 1);
        assert_eq!(problems(&[("bootstrap.servers", "x:9092")]).len(), 1);
        // A bounded retry count fails a record as a timeout does.
        assert_eq!(problems(&[("retries", "3")]).len(), 1);
        assert_eq!(problems(&[("message.send.max.retries", "3")]).len(), 1);
        assert!(problems(&[("retries", "2147483647")]).is_empty());
        // A topic property given with the `topic.` prefix is the same one.
        assert_eq!(problems(&[("topic.message.timeout.ms", "5000")]).len(), 1);
        assert_eq!(problems(&[("topic.request.required.acks", "1")]).len(), 1);
        assert!(problems(&[("topic.metadata.refresh.interval.ms", "60000")]).is_empty());
    }

    /// A partitioner that ignores the key spreads one call over partitions.
    #[test]
    fn only_partitioners_that_follow_the_key_are_taken() {
        let p = problems(&[("partitioner", "random")]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("murmur2"), "{p:?}");
        assert_eq!(problems(&[("topic.partitioner", "random")]).len(), 1);
        for keyed in ["consistent_random", "murmur2_random", "fnv1a"] {
            assert!(problems(&[("partitioner", keyed)]).is_empty(), "{keyed}");
        }
    }

    #[test]
    fn secret_values_are_not_echoed() {
        let p = problems(&[("sasl.password", "hunter2"), ("sasl.mechanism", "NOPE")]);
        assert!(p.iter().all(|m| !m.contains("hunter2")), "{p:?}");
        assert!(
            problems(&[("ssl.key.password", "s3cr3t-value")])
                .iter()
                .all(|m| !m.contains("s3cr3t"))
        );
        // For a property that may hold a secret, librdkafka's own words
        // only when they hold nothing of the value: it printed the C enum's
        // name (`RD_KAFKA_CONF_UNKNOWN`) for every refusal before
        // (operator-messages review, 2026-12-05).
        for (key, said) in [
            ("sasl_password", "No such configuration property"),
            ("sasl.jaas.config", "JAAS"),
            ("ssl_key", "not settable"),
        ] {
            let p = problems(&[(key, "zq9-Xk7!pw")]);
            assert!(p.len() == 1 && p[0].contains(said), "{key}: {p:?}");
            assert!(!p[0].contains("zq9") && !p[0].contains("RD_KAFKA"), "{p:?}");
        }
        assert!(shares_text("bad value \"hunter…\"", "hunter2"));
        assert!(!shares_text("No such configuration property", "hunter2"));
        for sensitive in [
            "sasl.password",
            "SSL.KEY.PASSWORD",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.token.endpoint.url",
            "sasl.jaas.config",
            "sasl.oauthbearer.config",
        ] {
            assert!(is_sensitive(sensitive), "{sensitive}");
        }
        assert!(!is_sensitive("compression.type"));
        // The config's `Debug` (in a panic or a log) names options, nothing more.
        let shown = format!("{:?}", with_options(&[("sasl.password", "hunter2")]));
        assert!(shown.contains("\"sasl.password\""), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn delivery_reports_for_errors_only_are_refused() {
        // A delivered record would get no report: the cursor never passes it.
        let p = problems(&[("delivery.report.only.error", "true")]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("delivery report"), "{p:?}");
        assert!(problems(&[("delivery.report.only.error", "false")]).is_empty());
    }

    /// librdkafka reads a boolean as true for `true`, `t` (any case) and
    /// `1`, false for `false`, `f` and `0`, nothing else (`_RK_C_BOOL`);
    /// the fixed booleans were compared as text, so `0` was refused as
    /// weakening `delivery.report.only.error = false`.
    #[test]
    fn a_fixed_boolean_is_read_as_librdkafka_reads_it() {
        let read_back = |key: &str, value: &str| {
            let mut c = ClientConfig::new();
            c.set(key, value);
            c.create_native_config().ok()?.get(key).ok()
        };
        for (key, want, same, other) in [
            (
                "delivery.report.only.error",
                "false",
                ["false", "FALSE", "f", "F", "0"],
                ["true", "True", "t", "T", "1"],
            ),
            (
                "enable.idempotence",
                "true",
                ["true", "True", "t", "T", "1"],
                ["false", "FALSE", "f", "F", "0"],
            ),
        ] {
            for value in same {
                assert_eq!(
                    read_back(key, value).as_deref(),
                    Some(want),
                    "{key} = {value:?}"
                );
                let p = problems(&[(key, value)]);
                assert!(p.is_empty(), "{key} = {value:?}: {p:?}");
            }
            for value in other {
                assert_ne!(
                    read_back(key, value).as_deref(),
                    Some(want),
                    "{key} = {value:?}"
                );
                let p = problems(&[(key, value)]);
                assert!(
                    p.len() == 1 && p[0].contains(&format!("must stay {want:?}")),
                    "{key} = {value:?}: {p:?}"
                );
            }
            // Neither boolean: librdkafka's own refusal says so.
            for value in ["yes", "on", " true", "false ", "00", ""] {
                assert_eq!(read_back(key, value), None, "{key} = {value:?}");
                let p = problems(&[(key, value)]);
                assert!(
                    p.len() == 1 && !p[0].contains("must stay"),
                    "{key} = {value:?}: {p:?}"
                );
            }
        }
    }

    /// `topic.` before a global property is a name librdkafka does not
    /// know: that is said first, not a check of the property it resembles.
    #[test]
    fn a_name_librdkafka_does_not_know_is_refused_as_unknown_first() {
        for (key, value) in [
            ("topic.enable.idempotence", "false"),
            ("topic.enable.idempotence", "true"),
            ("topic.delivery.report.only.error", "true"),
            ("topic.message.send.max.retries", "3"),
            ("topic.linger.ms", "20ms"),
            ("topic.linger.ms", "20"),
            ("topic.message.max.bytes", "0x100000"),
            ("topic.bootstrap.servers", "x:9092"),
            ("topic.sasl.password", "hunter2"),
        ] {
            let p = problems(&[(key, value)]);
            let global = &key["topic.".len()..];
            assert!(
                p.len() == 1
                    && p[0].contains(&format!("`{global}` is a global property"))
                    && !p[0].contains("No such configuration property"),
                "{key} = {value:?}: {p:?}"
            );
            assert!(!p[0].contains("hunter2"), "{p:?}");
        }
        // Accepted as the global name: the advice is to write that.
        let p = problems(&[("topic.linger.ms", "20")]);
        assert!(p[0].ends_with("write it `linger.ms`"), "{p:?}");
        // Refused as the global name too: no advice to write what is
        // refused again, but why.
        let p = problems(&[("topic.sasl.jaas.config", "x")]);
        assert!(
            p[0].contains("and as that: `sasl.jaas.config`: Java JAAS"),
            "{p:?}"
        );
        let p = problems(&[("topic.enable.idempotence", "false")]);
        assert!(
            p[0].contains("and as that: `enable.idempotence` must stay \"true\""),
            "{p:?}"
        );
        // One `topic.` too many: librdkafka strips one and takes `acks` at
        // topic level, so `topic.acks` is no global property.
        let p = problems(&[("topic.topic.acks", "all")]);
        assert!(!p[0].contains("global property"), "{p:?}");
        // A name known nowhere keeps librdkafka's words.
        for key in ["topic.no.such.thing", "no.such.thing"] {
            let p = problems(&[(key, "1")]);
            assert!(
                p.len() == 1 && p[0].contains("No such configuration property"),
                "{key}: {p:?}"
            );
        }
        // Every other refusal keeps its own words.
        let p = problems(&[("enable.idempotence", "false")]);
        assert!(p[0].contains("must stay \"true\""), "{p:?}");
        let p = problems(&[("linger.ms", "20ms")]);
        assert!(p[0].contains("plain decimal"), "{p:?}");
        let p = problems(&[("topic.message.timeout.ms", "5000")]);
        assert!(p[0].contains("must stay \"0\""), "{p:?}");
        let p = problems(&[("metadata.broker.list", "x:9092")]);
        assert!(p[0].contains("kafka.brokers"), "{p:?}");
    }

    #[test]
    fn message_max_bytes_is_refused_unless_written_in_decimal() {
        // librdkafka reads 0500000 as octal (163840) and 900000bytes as
        // 900000: the relay's 413 limit would be above the producer's.
        for bad in ["0500000", "900000bytes", "0x100000", ""] {
            let p = problems(&[("message.max.bytes", bad)]);
            assert_eq!(p.len(), 1, "{bad:?}: {p:?}");
            assert!(p[0].contains("decimal"), "{p:?}");
        }
        assert!(problems(&[("message.max.bytes", " 2000000 ")]).is_empty());
    }

    /// A `[kafka]` config text with `options` lines, checked as `check` does.
    fn checked(options: &str) -> Result<crate::config::Config, String> {
        let text = format!("[kafka]\nbrokers = \"127.0.0.1:9092\"\n[kafka.options]\n{options}");
        crate::config::Config::from_text("relay.toml", &text, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn the_producers_queue_is_bounded_to_64_mib_or_the_largest_message() {
        // librdkafka's own default is 1 GiB, which a Kafka outage would fill
        // with large events.
        let queue = |options: &[(&str, &str)]| {
            with_options(options)
                .client_config()
                .get("queue.buffering.max.kbytes")
                .map(str::to_owned)
        };
        assert_eq!(queue(&[]).as_deref(), Some("65536"));
        assert_eq!(
            queue(&[("message.max.bytes", "100000000")]).as_deref(),
            Some("97657")
        );
        assert_eq!(
            queue(&[("queue.buffering.max.kbytes", "2097151")]).as_deref(),
            Some("2097151")
        );
    }

    #[test]
    fn a_queue_smaller_than_the_largest_message_is_refused_at_its_line() {
        let shown = checked(
            "\"message.max.bytes\" = \"5000000\"\n\"queue.buffering.max.kbytes\" = \"4096\"\n",
        )
        .expect_err("a record over the queue's size is never taken");
        assert!(shown.contains("relay.toml:5:"), "{shown}");
        assert!(shown.contains("queue.buffering.max.kbytes"), "{shown}");
        assert!(
            checked(
                "\"message.max.bytes\" = \"4194304\"\n\"queue.buffering.max.kbytes\" = \"4096\"\n"
            )
            .is_ok()
        );
        // librdkafka's default message.max.bytes (1000000) counts too.
        assert!(checked("\"queue.buffering.max.kbytes\" = \"900\"\n").is_err());
    }

    /// The read-back's consumer fetches up to 16 MiB, and librdkafka refuses
    /// a consumer whose `receive.message.max.bytes` is below that: the
    /// producer took it, `check` passed, and every read-back after an
    /// unclean stop failed, so what Kafka had was sent again (edge review,
    /// round 47).
    #[test]
    fn options_the_read_back_consumer_refuses_are_refused_at_their_line() {
        let shown = checked("\"receive.message.max.bytes\" = \"10000000\"\n")
            .expect_err("the read-back's consumer refuses it");
        assert!(shown.contains("relay.toml:4:"), "{shown}");
        assert!(shown.contains("receive.message.max.bytes"), "{shown}");
        assert!(checked("\"receive.message.max.bytes\" = \"100000000\"\n").is_ok());
        // The consumer is built from this config by the read-back itself.
        let config = with_options(&[("receive.message.max.bytes", "100000000")]);
        let mut c = config.read_back_client_config();
        c.remove("bootstrap.servers");
        assert!(
            c.create_with_context::<_, BaseConsumer<SilentContext>>(SilentContext)
                .is_ok()
        );
    }

    #[test]
    fn a_linger_the_stall_rule_would_take_for_a_hung_broker_is_refused() {
        for key in ["linger.ms", "queue.buffering.max.ms"] {
            let shown = checked(&format!("\"{key}\" = \"60000\"\n"))
                .expect_err("a minute's linger is refused");
            assert!(
                shown.contains(key) && shown.contains("hung broker"),
                "{shown}"
            );
            assert!(
                checked(&format!("\"{key}\" = \"10000\"\n")).is_ok(),
                "{key}"
            );
        }
    }

    /// librdkafka reads integers with `strtol(value, &end, 0)` and decimals
    /// with `strtod`, trailing text ignored: `2048KB` and `0x800` are a
    /// 2 MiB queue and `600000ms` a 10-minute linger, while the relay's
    /// checks could not read them and let them pass (audit of 2026-12-07).
    #[test]
    fn values_the_relay_reads_are_refused_unless_written_plainly_at_their_line() {
        let big = "\"message.max.bytes\" = \"4000000\"\n";
        for bad in [
            "2048KB", "0x800", "04000", "+04000", "++4096", "-4096", "4096 KiB",
        ] {
            let shown = checked(&format!(
                "{big}\"queue.buffering.max.kbytes\" = \"{bad}\"\n"
            ))
            .expect_err(bad);
            assert!(shown.contains("relay.toml:5:"), "{bad:?}: {shown}");
            assert!(
                shown.contains("queue.buffering.max.kbytes") && shown.contains("decimal digits"),
                "{bad:?}: {shown}"
            );
        }
        assert!(
            checked(&format!(
                "{big}\"queue.buffering.max.kbytes\" = \" 4096 \"\n"
            ))
            .is_ok()
        );
        for key in ["linger.ms", "queue.buffering.max.ms"] {
            for bad in [
                "600000ms", "nan", "inf", "0x10", "5 ms", "1e", "1e+", ".", "+", "1e400", "",
            ] {
                let shown = checked(&format!("\"{key}\" = \"{bad}\"\n")).expect_err(bad);
                assert!(shown.contains("relay.toml:4:"), "{key} {bad:?}: {shown}");
                assert!(
                    shown.contains(key) && shown.contains("plain decimal"),
                    "{key} {bad:?}: {shown}"
                );
            }
            for good in ["5", "0", "0.5", "10000", "007"] {
                assert!(
                    checked(&format!("\"{key}\" = \"{good}\"\n")).is_ok(),
                    "{key} {good:?}"
                );
            }
        }
    }

    /// Spellings on which Rust's parse and librdkafka already agreed, and
    /// which worked before the spelling rule: refusing them made an upgrade
    /// refuse a working config (review of a2f4977, 2026-12-07).
    #[test]
    fn spellings_the_relay_and_librdkafka_read_alike_are_accepted() {
        for key in ["message.max.bytes", "queue.buffering.max.kbytes"] {
            for good in ["+4194304", "4194304", " +4194304 "] {
                let config = checked(&format!("\"{key}\" = \"{good}\"\n"))
                    .map_err(|e| format!("{key} {good:?}: {e}"));
                assert!(config.is_ok(), "{config:?}");
            }
        }
        assert_eq!(
            with_options(&[("message.max.bytes", "+2000000")]).message_max_bytes(),
            2_000_000
        );
        for key in ["linger.ms", "queue.buffering.max.ms"] {
            for good in [".5", "5.", "+5", "5e0", "-0", "5E-1", "1e4", "+.5e+1"] {
                let config = checked(&format!("\"{key}\" = \"{good}\"\n"))
                    .map_err(|e| format!("{key} {good:?}: {e}"));
                assert!(config.is_ok(), "{config:?}");
            }
            // Read as librdkafka reads it, the stall rule applies: 1e5 ms.
            let shown = checked(&format!("\"{key}\" = \"1e5\"\n")).expect_err("1e5");
            assert!(shown.contains("hung broker"), "{shown}");
        }
    }

    /// `linger.ms` is librdkafka's alias of `queue.buffering.max.ms`, and
    /// rdkafka applies a `ClientConfig`'s settings in hash order: with the
    /// sink's default `linger.ms = 5` beside an operator's
    /// `queue.buffering.max.ms = 100`, either won at each producer's
    /// creation (review of 2026-12-07).
    #[test]
    fn an_operators_linger_under_either_name_is_the_producers_alone() {
        for key in ["queue.buffering.max.ms", "linger.ms"] {
            let c = with_options(&[(key, "100")]).client_config();
            assert_eq!(c.get(key), Some("100"), "{key}");
            let other = if key == "linger.ms" {
                "queue.buffering.max.ms"
            } else {
                "linger.ms"
            };
            assert_eq!(c.get(other), None, "{key}: {other} set beside it");
            // librdkafka reads the one setting back under either name.
            let native = c.create_native_config().unwrap();
            assert_eq!(native.get("linger.ms").unwrap(), "100", "{key}");
        }
        let c = with_options(&[]).client_config();
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("queue.buffering.max.ms"), None);
    }

    /// librdkafka takes one property under two names (an alias, or a topic
    /// property with and without `topic.`), and rdkafka applies a
    /// `ClientConfig` in hash order: with both set, the value kept changed
    /// at each client's creation — partitions of one key before and after a
    /// producer's replacement, a login failing at times, `check` passing
    /// half the time (audit of 2026-12-07).
    #[test]
    fn one_setting_under_two_names_is_refused_at_the_second() {
        for [(a, x), (b, y)] in [
            [
                ("partitioner", "murmur2_random"),
                ("topic.partitioner", "consistent_random"),
            ],
            [
                ("sasl.mechanism", "PLAIN"),
                ("sasl.mechanisms", "SCRAM-SHA-256"),
            ],
            [
                ("max.in.flight", "5"),
                ("max.in.flight.requests.per.connection", "1"),
            ],
            [("compression.type", "lz4"), ("compression.codec", "zstd")],
            [
                ("max.partition.fetch.bytes", "1048576"),
                ("fetch.message.max.bytes", "2097152"),
            ],
            [
                ("auto.offset.reset", "latest"),
                ("topic.auto.offset.reset", "error"),
            ],
            [
                ("topic.compression.type", "lz4"),
                ("topic.compression.codec", "gzip"),
            ],
            [
                ("message.timeout.ms", "0"),
                ("topic.delivery.timeout.ms", "0"),
            ],
            [("linger.ms", "5"), ("queue.buffering.max.ms", "100")],
            // Equal, and equal to the sink's own default linger: refused
            // all the same (one name, one value, every time).
            [("linger.ms", "5"), ("queue.buffering.max.ms", "5")],
        ] {
            for [(first, v1), (second, v2)] in [[(a, x), (b, y)], [(b, y), (a, x)]] {
                let shown = checked(&format!(
                    "\"{first}\" = \"{v1}\"\n\"{second}\" = \"{v2}\"\n"
                ))
                .expect_err("one setting under two names");
                assert!(shown.contains("relay.toml:5:"), "{shown}");
                assert!(
                    shown.contains(&format!("`{first}`"))
                        && shown.contains(&format!("`{second}`"))
                        && shown
                            .contains("one setting in librdkafka under two names: set only one"),
                    "{shown}"
                );
            }
            let problem = with_options(&[(a, x), (b, y)]).options_problem();
            assert!(
                problem
                    .as_deref()
                    .is_some_and(|p| p.contains("one setting")),
                "{a} {b}: {problem:?}"
            );
        }
        // Two settings: the global codec, and the topic's, which is used.
        checked("\"compression.codec\" = \"lz4\"\n\"topic.compression.codec\" = \"zstd\"\n")
            .expect("a global and a topic property");
        for one in [
            ("topic.partitioner", "murmur2_random"),
            ("sasl.mechanism", "PLAIN"),
            ("max.in.flight", "5"),
            ("compression.type", "lz4"),
            ("topic.auto.offset.reset", "latest"),
        ] {
            checked(&format!("\"{}\" = \"{}\"\n", one.0, one.1)).expect("one name");
            assert_eq!(with_options(&[one]).options_problem(), None, "{one:?}");
        }
    }

    /// The read-back overwrote `auto.offset.reset` but left
    /// `topic.auto.offset.reset` in the map beside it: `latest` or `error`
    /// at random, and records past a trimmed partition's start sent again.
    #[test]
    fn the_read_back_holds_its_own_settings_under_any_name() {
        let options = [
            ("topic.auto.offset.reset", "latest"),
            ("topic.enable.auto.commit", "true"),
        ];
        let c = with_options(&options).read_back_client_config();
        assert_eq!(c.get("topic.auto.offset.reset"), None);
        assert_eq!(c.get("topic.enable.auto.commit"), None);
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        let earliest = with_options(&[])
            .read_back_client_config()
            .create_native_config()
            .unwrap()
            .get("auto.offset.reset")
            .unwrap();
        for _ in 0..20 {
            let native = with_options(&options)
                .read_back_client_config()
                .create_native_config()
                .unwrap();
            assert_eq!(native.get("auto.offset.reset").unwrap(), earliest);
        }
    }

    /// librdkafka keeps `(int)strtol(…)`, cut to 32 bits, and range-checks
    /// that: `message.max.bytes = 4295967296` is 1000000 to it, while the
    /// 413 bound held webhooks to 4295967296 (audit of 2026-12-07).
    #[test]
    fn a_number_librdkafka_would_cut_to_32_bits_is_refused_at_its_line() {
        for (key, value) in [
            ("message.max.bytes", "4295967296"),
            ("queue.buffering.max.kbytes", "4294971392"),
            ("queue.buffering.max.kbytes", "2147483648"),
        ] {
            let shown = checked(&format!("\"{key}\" = \"{value}\"\n")).expect_err(value);
            assert!(shown.contains("relay.toml:4:"), "{key} {value}: {shown}");
            assert!(
                shown.contains(key) && shown.contains("2147483647"),
                "{key} {value}: {shown}"
            );
        }
        assert!(checked("\"queue.buffering.max.kbytes\" = \"2147483647\"\n").is_ok());
    }

    #[test]
    fn credentials_in_the_broker_list_are_refused_without_being_quoted() {
        for brokers in [
            "SASL_SSL://user:hunter2@kafka:9093",
            "user:hunter2@kafka:9092",
        ] {
            let text = format!(
                "[kafka]\nbrokers = \"{brokers}\"\n[kafka.options]\n\"security.protocol\" = \"SASL_SSL\"\n"
            );
            let shown = crate::config::Config::from_text("relay.toml", &text, &|_| None)
                .expect_err("credentials in the broker list are refused")
                .to_string();
            assert!(shown.contains("sasl.password"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }

    #[test]
    fn check_reports_a_bad_option_at_its_place() {
        let text = "[kafka]\nbrokers = \"127.0.0.1:9092\"\n[kafka.options]\n\"compression.type\" = \"lz4\"\n\"linger.mss\" = \"5\"\n";
        let err = crate::config::Config::from_text("relay.toml", text, &|_| None)
            .expect_err("a misspelled property is refused");
        let shown = err.to_string();
        assert!(shown.contains("relay.toml:5:"), "{shown}");
        assert!(shown.contains("linger.mss"), "{shown}");
        assert!(!shown.contains("compression.type"), "{shown}");
    }

    #[test]
    fn the_files_digest_follows_the_named_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "one").unwrap();
        assert_eq!(with_options(&[("linger.ms", "5")]).files_digest(), None);
        let path = ca.display().to_string();
        let with_ca = with_options(&[("ssl.ca.location", &path), ("linger.ms", "5")]);
        let first = with_ca.files_digest();
        assert!(first.is_some());
        assert_eq!(with_ca.files_digest(), first);
        std::fs::write(&ca, "two").unwrap();
        assert_ne!(with_ca.files_digest(), first, "contents changed");
        std::fs::remove_file(&ca).unwrap();
        assert!(
            with_ca.files_digest().is_some(),
            "a missing file still counts by path"
        );
    }

    #[test]
    fn topics_kafka_refuses_are_refused() {
        let valid = |topic: &str| {
            let config = KafkaConfig {
                topic: crate::config::unspanned(topic.to_owned()),
                ..with_options(&[])
            };
            let mut v = Validator::new("");
            config.validate(&mut v);
            v.is_empty()
        };
        for refused in [
            ".",
            "..",
            "",
            "a b",
            "calls/{vendor}",
            "__consumer_offsets",
            "__transaction_state",
        ] {
            assert!(!valid(refused), "{refused:?}");
        }
        for accepted in [
            "callrelay.events",
            "cr.{vendor}.{category}",
            "...",
            "{type}",
        ] {
            assert!(valid(accepted), "{accepted:?}");
        }
    }

    #[test]
    fn the_largest_message_is_librdkafkas_unless_an_option_says() {
        assert_eq!(with_options(&[]).message_max_bytes(), 1_000_000);
        let larger = with_options(&[("message.max.bytes", " 2000000 ")]);
        assert_eq!(larger.message_max_bytes(), 2_000_000);
    }

    #[test]
    fn the_broker_is_asked_to_create_topics_only_with_create_topics() {
        let asked = |config: &KafkaConfig| {
            config
                .client_config()
                .get("allow.auto.create.topics")
                .map(str::to_owned)
        };
        assert_eq!(asked(&with_options(&[])).as_deref(), Some("false"));
        let creating = KafkaConfig {
            create_topics: true,
            ..with_options(&[])
        };
        assert_eq!(asked(&creating).as_deref(), Some("true"));
        // An operator who wants the broker's policy to decide can say so.
        let broker_decides = with_options(&[("allow.auto.create.topics", "true")]);
        assert_eq!(asked(&broker_decides).as_deref(), Some("true"));
    }

    #[test]
    fn a_topic_name_holds_at_most_249_characters() {
        let valid = |topic: String| {
            let config = KafkaConfig {
                topic: crate::config::unspanned(topic),
                ..with_options(&[])
            };
            let mut v = Validator::new("");
            config.validate(&mut v);
            v.is_empty()
        };
        assert!(valid("t".repeat(249)));
        assert!(!valid("t".repeat(250)));
        // A placeholder counts as what it stands for, not as its own text:
        // the longest it can render to.
        assert!(valid(format!("{}{{vendor}}", "t".repeat(240))));
        assert!(!valid(format!("{}{{vendor}}", "t".repeat(242))));
        assert!(valid(format!("{}{{account}}", "t".repeat(185))));
        // Rendered names were cut at 249, so two accounts' topics could
        // become one (Kafka docs review, 2026-12-05).
        assert!(!valid(format!("{}{{account}}", "t".repeat(186))));
        assert!(!valid(format!("{}.{{type}}.{{account}}", "t".repeat(160))));
    }

    #[test]
    fn the_security_protocol_decides_kerberos_and_the_broker_prefix() {
        let plain = with_options(&[]);
        assert_eq!(plain.security_protocol(), "plaintext");
        assert!(!plain.uses_kerberos());
        // SASL with no mechanism named is GSSAPI, librdkafka's default.
        let kerberos = with_options(&[("security.protocol", " SASL_SSL ")]);
        assert_eq!(kerberos.security_protocol(), "sasl_ssl");
        assert!(kerberos.uses_kerberos());
        let named = with_options(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "GSSAPI"),
        ]);
        assert!(named.uses_kerberos());
        let scram = with_options(&[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanisms", "SCRAM-SHA-256"),
            ("sasl.username", "relay"),
            ("sasl.password", "pw"),
        ]);
        assert!(!scram.uses_kerberos());
        // Not built in: `check` refuses it, saying what to set instead (it
        // passed `check` and the sink could never start).
        let unnamed = with_options(&[("security.protocol", "SASL_SSL")]);
        for kerberos in [unnamed, named] {
            let problem = kerberos.combined_problem().expect("Kerberos refused");
            assert!(
                problem.contains("Kerberos is not built into callrelay"),
                "{problem}"
            );
        }
        assert_eq!(scram.combined_problem(), None);
        // The broker list may name the protocol that is configured.
        let mut v = Validator::new("");
        KafkaConfig {
            brokers: crate::config::unspanned("SASL_SSL://k:9093".to_owned()),
            ..scram
        }
        .validate(&mut v);
        let problems = v.into_error("relay.toml").map(|e| e.to_string());
        assert_eq!(problems, None);
    }

    #[test]
    fn the_first_refused_option_is_named_at_start() {
        assert_eq!(with_options(&[("linger.ms", "20")]).options_problem(), None);
        let problem = with_options(&[("linger.ms", "20"), ("linger.mss", "5")]).options_problem();
        assert!(
            problem
                .as_deref()
                .is_some_and(|p| p.contains("`linger.mss`")),
            "{problem:?}"
        );
    }

    #[test]
    fn an_empty_value_is_not_quoted_onto_librdkafkas_message() {
        let p = problems(&[("compression.type", "")]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(!p[0].ends_with("\"\""), "{p:?}");
    }

    #[test]
    fn a_refusal_quoting_a_secret_option_is_not_shown() {
        let c = with_options(&[
            ("sasl.password", "hunter2-long"),
            ("client.id", "relay-one"),
        ]);
        assert!(c.quotes_a_secret("invalid value \"hunter2-long\" for sasl"));
        assert!(c.quotes_a_secret("cut short: \"hunter2…\""));
        assert!(
            !c.quotes_a_secret("client.id relay-one refused"),
            "not a secret"
        );
        // A key file's path is hidden here, unlike in the producer's lines:
        // one from a `${file:…}` is shown unquoted, where the config's own
        // redaction would not find it.
        let with_key_file = with_options(&[("ssl.key.location", "/etc/callrelay/kafka.key")]);
        assert!(with_key_file.quotes_a_secret(
            "ssl.key.location failed: calling fopen(/etc/callrelay/kafka.key, r)"
        ));
    }

    #[test]
    fn options_librdkafka_refuses_only_together_are_refused_by_check() {
        let problem = with_options(&[
            ("max.in.flight.requests.per.connection", "10"),
            ("linger.ms", "5"),
        ])
        .combined_problem();
        assert!(
            problem
                .as_deref()
                .is_some_and(|p| p.contains("max.in.flight") && p.contains("idempotence")),
            "{problem:?}"
        );
        let missing_ca = with_options(&[
            ("security.protocol", "ssl"),
            ("ssl.ca.location", "/nonexistent/ca.pem"),
        ]);
        assert!(
            missing_ca.combined_problem().is_some(),
            "an unreadable CA file"
        );
        assert_eq!(
            with_options(&[
                ("compression.type", "zstd"),
                ("acks", "-1"),
                ("linger.ms", "20")
            ])
            .combined_problem(),
            None
        );
        assert_eq!(with_options(&[]).combined_problem(), None);
    }

    #[test]
    fn a_ca_directory_is_compared_by_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.pem"), "one").unwrap();
        let location = dir.path().display().to_string();
        let config = with_options(&[("ssl.ca.location", &location)]);
        let first = config.files_digest();
        assert_eq!(config.files_digest(), first, "nothing changed");
        std::fs::write(dir.path().join("a.pem"), "two").unwrap();
        let rewritten = config.files_digest();
        assert_ne!(rewritten, first, "a file rewritten");
        std::fs::write(dir.path().join("b.pem"), "new").unwrap();
        let added = config.files_digest();
        assert_ne!(added, rewritten, "a file added");
        std::fs::remove_file(dir.path().join("b.pem")).unwrap();
        assert_eq!(config.files_digest(), rewritten, "the file removed again");
    }
}
