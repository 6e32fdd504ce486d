//! Topics checked before any event needs them. With `create_topics = false`
//! a topic the template renders for a configured account, and the cluster
//! lacks, stopped the sink at that account's first event of the kind, with
//! every account's events behind it (the sink keeps order): a device's
//! reboot (`device.startup`) or a payload no parser knows (`vendor.unknown`)
//! could do it days after the start. The topics every configured account
//! can need are now looked up at the sink's start and once a minute (so an
//! account a reload adds is seen), and the missing ones are named in a WARN,
//! under `/status` `degraded` and in `callrelay_kafka_topics_missing` before
//! an event finds them.
//!
//! Guarantees: the check never holds the sink or its deliveries; a topic
//! found is not asked about again while the sink runs; a broker that cannot
//! be reached leaves the list as it was (the sink says why it cannot
//! deliver); with `create_topics` nothing is looked up (the first event
//! creates its topic); a template naming `{type}` is not foreseeable
//! (CareSoft's types are open-ended) and is not checked.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

use crate::app::Context;
use crate::config::Config;

use super::resume::{QuietContext, ScanError};
use super::topic::TopicTemplate;

/// How often the topics are looked up again while any is not found.
const EVERY: Duration = Duration::from_secs(60);
/// How long the cluster's metadata may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How many topics a log line or `/status` names before it counts the rest.
const NAMED: usize = 10;

/// The topics `config`'s accounts can need, one per account and category
/// of its vendor (`vendor` for `vendor.unknown` included); `None` without
/// Kafka, with `create_topics`, or with a template naming `{type}`.
pub fn foreseeable(config: &Config) -> Option<BTreeSet<String>> {
    let kafka = config.kafka.as_ref().filter(|k| !k.create_topics)?;
    let template = TopicTemplate::parse(kafka.topic.get_ref());
    if template.names_type() {
        return None;
    }
    let mut topics = BTreeSet::new();
    for (vendor, account) in config.accounts() {
        for category in vendor.categories() {
            // Any type of the category renders the same topic.
            let event_type = format!("{category}.any");
            let topic = template.render_for(vendor.as_str(), account.get_ref(), &event_type);
            topics.insert(topic.into_owned());
        }
    }
    Some(topics)
}

/// Up to [`NAMED`] topics, then how many more.
pub fn listed(topics: &[String]) -> String {
    crate::logging::first_then_more(topics.iter(), NAMED)
}

/// Looks the foreseeable topics up until `cancel`, keeping `/status` and
/// the log told of the missing ones; clears them when it ends.
pub async fn watch(ctx: Arc<Context>, cancel: CancellationToken) {
    let mut found: HashSet<String> = HashSet::new();
    let mut said: Vec<String> = Vec::new();
    loop {
        let config = ctx.config.load_full();
        let unknown: Vec<String> = foreseeable(&config)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !found.contains(t))
            .collect();
        // Topics are foreseen only with `[kafka]`: none unknown without it.
        let asking = config.kafka.as_ref().filter(|_| !unknown.is_empty());
        let missing = if let Some(kafka) = asking {
            let client_config = kafka.read_back_client_config();
            let looked_up = tokio::select! {
                () = cancel.cancelled() => break,
                looked_up = tokio::task::spawn_blocking(move || existing_blocking(&client_config)) => looked_up,
            };
            match looked_up {
                Ok(Ok(existing)) => {
                    let (there, missing): (Vec<String>, Vec<String>) =
                        unknown.into_iter().partition(|t| existing.contains(t));
                    found.extend(there);
                    Some(missing)
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, "kafka sink: could not look the topics up; trying again later");
                    None
                }
                Err(_) => None,
            }
        } else {
            Some(Vec::new())
        };
        if let Some(missing) = missing {
            say(&said, &missing);
            ctx.status.kafka_topics_missing(missing.clone());
            said = missing;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
    ctx.status.kafka_topics_missing(Vec::new());
}

/// Says a change in the missing topics: a WARN when one is newly missing,
/// an INFO when the last is found.
fn say(before: &[String], now: &[String]) {
    if now.iter().any(|t| !before.contains(t)) {
        tracing::warn!(
            missing = now.len(),
            topics = listed(now).as_str(),
            "Kafka topics that configured accounts will need do not exist: the first event for one stops Kafka delivery for every account until it exists (create them, or set kafka.create_topics = true)"
        );
    } else if now.is_empty() && !before.is_empty() {
        tracing::info!("the Kafka topics configured accounts will need all exist now");
    }
}

/// The names of the topics the cluster holds, asked by a consumer like the
/// read-back's (a producer would be given an id by the cluster each time).
fn existing_blocking(client_config: &rdkafka::ClientConfig) -> Result<HashSet<String>, ScanError> {
    // Quiet: the config carries producer settings a consumer warns about,
    // and a broker that is down is the sink's to report, throttled.
    let client: BaseConsumer<QuietContext> =
        QuietContext::create(client_config).map_err(ScanError::Create)?;
    let metadata = client
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(ScanError::Metadata)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kafka: &str, sources: &str) -> Config {
        let text = format!(
            "[journal]\npath = \"/tmp/callrelay-test\"\n[kafka]\nbrokers = \"127.0.0.1:9092\"\n{kafka}\n{sources}"
        );
        Config::from_text("relay.toml", &text, &|_| None).unwrap()
    }

    const SOURCES: &str = "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"hn\"\napi_key = \"k\"\n\n[[sprecord]]\naccount = \"office\"\nurl = \"http://127.0.0.1:1/sys/events\"\n";

    #[test]
    fn each_account_needs_a_topic_per_category_of_its_vendor() {
        let topics = foreseeable(&config("topic = \"cr.{account}.{category}\"", SOURCES)).unwrap();
        let expected: BTreeSet<String> = [
            "cr.hn.call",
            "cr.hn.autocall",
            "cr.hn.vendor",
            "cr.office.call",
            "cr.office.device",
            "cr.office.sms",
            "cr.office.vendor",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(topics, expected);
        let one = foreseeable(&config("topic = \"all-events\"", SOURCES)).unwrap();
        assert_eq!(one.into_iter().collect::<Vec<_>>(), ["all-events"]);
    }

    #[test]
    fn nothing_is_foreseen_with_create_topics_or_a_type_in_the_template() {
        assert_eq!(
            foreseeable(&config(
                "topic = \"cr.{category}\"\ncreate_topics = true",
                SOURCES
            )),
            None
        );
        assert_eq!(foreseeable(&config("topic = \"cr.{type}\"", SOURCES)), None);
    }

    #[test]
    fn a_long_list_names_ten_and_counts_the_rest() {
        let topics: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
        assert_eq!(
            listed(&topics),
            "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 and 2 more"
        );
        assert_eq!(listed(&topics[..2]), "t0, t1");
    }
}
