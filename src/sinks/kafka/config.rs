//! `[kafka]`: where and how the Kafka sink publishes.
//!
//! Guarantees: a config that validates has a usable topic template and
//! `[kafka.options]` that librdkafka itself accepts (checked by building its
//! native config — no network), so `callrelay check` catches a mistyped
//! property before the daemon starts.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;
use toml::Spanned;

use crate::config::Validator;

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

fn default_topic() -> Spanned<String> {
    crate::config::unspanned("callrelay.events".to_owned())
}

pub const TOPIC_PLACEHOLDERS: [&str; 4] = ["{vendor}", "{account}", "{type}", "{category}"];

/// Properties the sink sets itself; an option may not weaken them.
const FIXED: [(&str, &str); 2] = [("enable.idempotence", "true"), ("acks", "all")];

/// Set unless `[kafka.options]` says otherwise. `message.timeout.ms = 0` keeps a
/// message retrying until it is delivered: a timed-out message would leave a
/// gap that a re-send fills out of order.
const DEFAULTS: [(&str, &str); 3] = [
    ("message.timeout.ms", "0"),
    ("linger.ms", "5"),
    ("client.id", "callrelay"),
];

impl KafkaConfig {
    pub fn validate(&self, v: &mut Validator) {
        if self.brokers.get_ref().trim().is_empty() {
            v.error(self.brokers.span(), "`brokers` must not be empty");
        }
        let mut rest = self.topic.get_ref().clone();
        for p in TOPIC_PLACEHOLDERS {
            rest = rest.replace(p, "x");
        }
        if rest.is_empty()
            || rest.len() > 249
            || !rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            v.error(
                self.topic.span(),
                format!(
                    "`topic` = {:?}: a Kafka topic has letters, digits, '.', '_', '-' and the placeholders {{vendor}} {{account}} {{type}} {{category}}",
                    self.topic.get_ref()
                ),
            );
        }
        for (key, value) in &self.options {
            if let Some(message) = option_problem(key, value.get_ref()) {
                v.error(value.span(), message);
            }
        }
    }

    /// The librdkafka properties of the producer: ours, then the options.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.get_ref().trim());
        for (k, v) in DEFAULTS.iter().chain(FIXED.iter()) {
            c.set(*k, *v);
        }
        for (k, v) in &self.options {
            c.set(k, v.get_ref());
        }
        c
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
        for (key, value) in self
            .options
            .iter()
            .filter(|(k, _)| k.ends_with(".location"))
        {
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

    /// The first problem librdkafka finds in the whole property set, worded
    /// for the operator (no secret value echoed).
    pub fn options_problem(&self) -> Option<String> {
        self.options
            .iter()
            .find_map(|(k, v)| option_problem(k, v.get_ref()))
    }
}

/// Whether librdkafka accepts `key = value`, and that it does not weaken the
/// delivery guarantees the sink promises.
fn option_problem(key: &str, value: &str) -> Option<String> {
    if key == "bootstrap.servers" || key == "metadata.broker.list" {
        return Some(format!(
            "[kafka.options] `{key}`: set the brokers with `kafka.brokers`"
        ));
    }
    if let Some((_, want)) = FIXED.iter().find(|(k, _)| *k == key)
        && !same_value(key, value, want)
    {
        return Some(format!(
            "[kafka.options] `{key}` must stay {want:?}: the sink promises an idempotent, fully acknowledged producer"
        ));
    }
    if key == "transactional.id" {
        return Some("[kafka.options] `transactional.id` is not supported: the sink is an idempotent, non-transactional producer".into());
    }
    let mut c = ClientConfig::new();
    c.set(key, value);
    match c.create_native_config() {
        Ok(_) => None,
        Err(rdkafka::error::KafkaError::ClientConfig(code, desc, _, _)) => {
            if is_sensitive(key) {
                Some(format!(
                    "[kafka.options] `{key}`: librdkafka refuses this property or its value ({code:?})"
                ))
            } else {
                Some(format!("[kafka.options] `{key}`: {desc}"))
            }
        }
        Err(_) => Some(format!("[kafka.options] `{key}`: librdkafka refuses it")),
    }
}

fn same_value(key: &str, value: &str, want: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    match key {
        "acks" => v == "all" || v == "-1",
        _ => v == want,
    }
}

/// Properties whose values may be secrets: never echoed.
pub(crate) fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "key", "token", "jaas"]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(options: &[(&str, &str)]) -> Vec<String> {
        options
            .iter()
            .filter_map(|(k, v)| option_problem(k, v))
            .collect()
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
        assert_eq!(problems(&[("enable.idempotence", "false")]).len(), 1);
        assert_eq!(problems(&[("transactional.id", "x")]).len(), 1);
        assert_eq!(problems(&[("bootstrap.servers", "x:9092")]).len(), 1);
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
        let config = |options: &[(&str, &str)]| KafkaConfig {
            brokers: crate::config::unspanned("127.0.0.1:9092".to_owned()),
            topic: default_topic(),
            create_topics: false,
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), crate::config::unspanned((*v).to_owned())))
                .collect(),
        };
        assert_eq!(config(&[("linger.ms", "5")]).files_digest(), None);
        let path = ca.display().to_string();
        let with_ca = config(&[("ssl.ca.location", &path), ("linger.ms", "5")]);
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
    fn a_ca_directory_is_compared_by_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.pem"), "one").unwrap();
        let config = KafkaConfig {
            brokers: crate::config::unspanned("127.0.0.1:9092".to_owned()),
            topic: default_topic(),
            create_topics: false,
            options: [(
                "ssl.ca.location".to_owned(),
                crate::config::unspanned(dir.path().display().to_string()),
            )]
            .into_iter()
            .collect(),
        };
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
