//! `[kafka]`: where and how the Kafka sink publishes.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::config::Validator;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: Spanned<String>,
    /// Template: `{vendor}` `{account}` `{type}` `{category}`.
    #[serde(default = "default_topic")]
    pub topic: Spanned<String>,
    /// Create missing topics at start (with the broker's defaults).
    #[serde(default)]
    pub create_topics: bool,
    /// Raw librdkafka properties.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_topic() -> Spanned<String> {
    crate::config::unspanned("callrelay.events".to_owned())
}

pub const TOPIC_PLACEHOLDERS: [&str; 4] = ["{vendor}", "{account}", "{type}", "{category}"];

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
    }
}
