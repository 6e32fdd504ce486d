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
//! Guarantees: the check never holds the sink or its deliveries; every
//! foreseeable topic is looked up each time, one found before too (deleted
//! since, it is named missing once two answered lookups in a row lack it:
//! a broker just restarted can answer before it knows its topics; until
//! 2026-12-07 a topic found was not asked about again while the sink ran);
//! a topic the last answer lacked too, or never found, is named at once; a
//! broker that cannot be reached leaves the list as it was (the sink says
//! why it cannot deliver); with `create_topics` nothing is looked up (the
//! first event creates its topic), nor with `"allow.auto.create.topics" =
//! "true"` in the options (the broker's policy decides whether it does); a
//! template naming `{type}` is not foreseeable (CareSoft's types are
//! open-ended) and is not checked.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

use arc_swap::ArcSwap;

use crate::app::Context;
use crate::config::Config;
use crate::panic_restart::restart_on_panic;
use crate::status::StatusBoard;

use super::resume::{QuietContext, ScanError};
use super::topic::TopicTemplate;

/// How often the topics are looked up again.
const EVERY: Duration = Duration::from_secs(60);
/// How long the cluster's metadata may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How many topics a log line or `/status` names before it counts the rest.
const NAMED: usize = 10;

/// The topics `config`'s accounts can need, one per account and category
/// of its vendor (`vendor` for `vendor.unknown` included); `None` without
/// Kafka, with `create_topics` or `"allow.auto.create.topics" = "true"`,
/// or with a template naming `{type}`.
pub fn foreseeable(config: &Config) -> Option<BTreeSet<String>> {
    // Left to the broker, a missing topic may be created by the sink's
    // check at its first event (a lookup, which creates nothing, cannot
    // tell): naming it "missing, delivery stops" would be false there.
    let kafka = config
        .kafka
        .as_ref()
        .filter(|k| !k.create_topics && !k.leaves_topics_to_the_broker())?;
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

/// Up to how many foreseen topics a lookup asks for by name, one metadata
/// request each, rather than for the cluster's whole list.
const BY_NAME: usize = 20;

/// What a lookup asks the cluster about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Asking {
    /// These topics, one metadata request each.
    Named(Vec<String>),
    /// Every topic of the cluster, in one request.
    All,
}

/// How to look `foreseen` up: by name when they are few (a fixed topic
/// among them), since the cluster's list, on a shared cluster of thousands
/// of topics, is far more to ask for each minute; else one list for all,
/// however many accounts.
fn asking(foreseen: &BTreeSet<String>) -> Asking {
    if foreseen.len() <= BY_NAME {
        Asking::Named(foreseen.iter().cloned().collect())
    } else {
        Asking::All
    }
}

/// Up to [`NAMED`] topics, then how many more.
pub fn listed(topics: &[String]) -> String {
    crate::logging::first_then_more(topics.iter(), NAMED)
}

/// Looks the foreseeable topics up until `cancel`, keeping `/status` and
/// the log told of the missing ones; clears them when it ends. Started
/// again after a panic (a bug), like the forwarder: otherwise the list
/// stayed as it was, `/status` degraded and the gauge frozen, for as long
/// as the sink ran.
pub async fn watch(ctx: Arc<Context>, cancel: CancellationToken) {
    watch_with(
        &ctx.config,
        &ctx.status,
        cancel,
        EVERY,
        super::PANIC_WAITS,
        existing,
    )
    .await
}

/// [`watch`] of the config in force in `config`, told on `status`, looking
/// up every `every` which of the topics asked about the cluster holds with
/// `lookup` (`None`: it could not be asked), started again after `waits`
/// when it panics.
async fn watch_with<L, F>(
    config: &ArcSwap<Config>,
    status: &StatusBoard,
    cancel: CancellationToken,
    every: Duration,
    waits: (Duration, Duration),
    lookup: L,
) where
    L: Fn(rdkafka::ClientConfig, Asking) -> F,
    F: Future<Output = Option<HashSet<String>>>,
{
    let on_panic = |delay: Duration| {
        // The panic's message is left out: the panic hook logged it already.
        tracing::error!(
            retry_in_ms = crate::logging::millis(delay),
            "the Kafka topic lookup failed unexpectedly (panic); restarting it"
        );
    };
    let lookup = &lookup;
    restart_on_panic(waits, &cancel, on_panic, || {
        look_up_until(config, status, cancel.clone(), every, lookup)
    })
    .await;
    // Also when stopped while waiting to restart after a panic.
    status.kafka_topics_missing(Vec::new());
}

/// The lookups of [`watch_with`], until `cancel`.
async fn look_up_until<L, F>(
    config: &ArcSwap<Config>,
    status: &StatusBoard,
    cancel: CancellationToken,
    every: Duration,
    lookup: &L,
) where
    L: Fn(rdkafka::ClientConfig, Asking) -> F,
    F: Future<Output = Option<HashSet<String>>>,
{
    let mut said: Vec<String> = Vec::new();
    // The foreseen topics the last answered lookup found.
    let mut found_last: HashSet<String> = HashSet::new();
    loop {
        let config = config.load_full();
        // Every topic, each time, also those found before: one deleted since
        // (a cluster rebuilt behind the same brokers) is as missing as one
        // never created.
        let foreseen = foreseeable(&config).unwrap_or_default();
        // Topics are foreseen only with `[kafka]`: none to ask about without it.
        let with_kafka = config.kafka.as_ref().filter(|_| !foreseen.is_empty());
        let missing = if let Some(kafka) = with_kafka {
            let looked_up = tokio::select! {
                () = cancel.cancelled() => break,
                looked_up = lookup(kafka.lookup_client_config(), asking(&foreseen)) => looked_up,
            };
            looked_up.map(|existing| {
                // A broker just restarted (ZooKeeper mode) can answer before
                // its metadata cache is filled, with few topics or none: a
                // topic the last answer held is named only if the next one
                // lacks it too, or every rolling restart warned of them all.
                let (found, lacking): (Vec<String>, Vec<String>) =
                    foreseen.into_iter().partition(|t| existing.contains(t));
                let missing = lacking
                    .into_iter()
                    .filter(|t| !found_last.contains(t))
                    .collect::<Vec<String>>();
                found_last = found.into_iter().collect();
                missing
            })
        } else {
            Some(Vec::new())
        };
        if let Some(missing) = missing {
            say(&said, &missing);
            status.kafka_topics_missing(missing.clone());
            said = missing;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// The names of the topics asked about that the cluster holds; `None`
/// when it could not be asked (on the blocking pool: each metadata request
/// may take [`METADATA_TIMEOUT`]).
async fn existing(client_config: rdkafka::ClientConfig, asking: Asking) -> Option<HashSet<String>> {
    match tokio::task::spawn_blocking(move || existing_blocking(&client_config, &asking)).await {
        Ok(Ok(existing)) => Some(existing),
        Ok(Err(error)) => {
            tracing::debug!(%error, "kafka sink: could not look the topics up; trying again later");
            None
        }
        Err(_) => None,
    }
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

/// The names of the topics asked about that the cluster holds, asked by a
/// consumer without a group (a producer would be given an id by the
/// cluster each time).
fn existing_blocking(
    client_config: &rdkafka::ClientConfig,
    asking: &Asking,
) -> Result<HashSet<String>, ScanError> {
    // Quiet: the config carries producer settings a consumer warns about,
    // and a broker that is down is the sink's to report, throttled.
    let client: BaseConsumer<QuietContext> =
        QuietContext::create(client_config).map_err(ScanError::Create)?;
    let held = |metadata: rdkafka::metadata::Metadata| {
        // A topic the cluster lacks comes back with an error of its own
        // (UNKNOWN_TOPIC_OR_PART), as does one the principal may not describe.
        metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name().to_owned())
            .collect::<Vec<String>>()
    };
    let mut existing = HashSet::new();
    match asking {
        Asking::All => {
            let metadata = client
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map_err(ScanError::Metadata)?;
            existing.extend(held(metadata));
        }
        Asking::Named(topics) => {
            // Named, a topic is not created: librdkafka sends the client's
            // `allow.auto.create.topics`, false whenever topics are foreseen.
            // The first request that fails ends the lookup: the next would
            // wait for the same broker.
            for topic in topics {
                let metadata = client
                    .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                    .map_err(ScanError::Metadata)?;
                existing.extend(held(metadata));
            }
        }
    }
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests_support::until;

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

    /// With `"allow.auto.create.topics" = "true"` (docs/kafka.md's own
    /// advice, to leave creation to the broker's policy) the sink's check
    /// of a topic makes a broker with `auto.create.topics.enable` create
    /// it, and delivery goes on; the lookup, which creates nothing, named
    /// every topic not used yet missing, for good, saying its first event
    /// would stop delivery.
    #[test]
    fn nothing_is_foreseen_when_the_broker_is_left_to_create_topics() {
        let options = |value: &str| {
            format!(
                "topic = \"cr.{{category}}\"\n[kafka.options]\n\"allow.auto.create.topics\" = \"{value}\""
            )
        };
        for left_to_the_broker in ["true", "TRUE", "t", "1"] {
            assert_eq!(
                foreseeable(&config(&options(left_to_the_broker), SOURCES)),
                None,
                "{left_to_the_broker}"
            );
        }
        assert!(foreseeable(&config(&options("false"), SOURCES)).is_some());
    }

    const HN: &str = "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"hn\"\napi_key = \"k\"\n";

    fn holding(topics: &[&str]) -> Found {
        Some(topics.iter().map(|t| (*t).to_owned()).collect())
    }

    /// What one lookup finds (`None`: the cluster could not be asked).
    type Found = Option<HashSet<String>>;
    type Finding = std::pin::Pin<Box<dyn Future<Output = Found> + Send>>;

    /// A cluster for [`watch_with`] that answers each lookup with the next
    /// answer the test sends, and waits for it meanwhile: the test says what
    /// each lookup finds, in order.
    fn cluster() -> (
        tokio::sync::mpsc::UnboundedSender<Found>,
        impl Fn(rdkafka::ClientConfig, Asking) -> Finding + Clone,
    ) {
        let (answer, _asked, lookup) = asked_cluster();
        (answer, lookup)
    }

    /// [`cluster`], also telling each lookup as it starts: the watch has
    /// taken in every answer before it asks for the next one.
    fn asked_cluster() -> (
        tokio::sync::mpsc::UnboundedSender<Found>,
        tokio::sync::mpsc::UnboundedReceiver<()>,
        impl Fn(rdkafka::ClientConfig, Asking) -> Finding + Clone,
    ) {
        let (answer, answers) = tokio::sync::mpsc::unbounded_channel();
        let (ask, asked) = tokio::sync::mpsc::unbounded_channel();
        let answers = Arc::new(tokio::sync::Mutex::new(answers));
        let lookup = move |_: rdkafka::ClientConfig, _: Asking| {
            // A test that does not wait for the lookups has dropped `asked`.
            let _ = ask.send(());
            let answers = answers.clone();
            Box::pin(async move { answers.lock().await.recv().await.flatten() }) as Finding
        };
        (answer, asked, lookup)
    }

    /// Restarts at once: the test's panics are not to wait for.
    const NO_WAIT: (Duration, Duration) = (Duration::ZERO, Duration::ZERO);

    /// What the watch tests share: one account under a per-account
    /// template, the metrics and status board the watch tells, its stop.
    struct Watched {
        config: ArcSwap<Config>,
        metrics: Arc<crate::metrics::Metrics>,
        status: StatusBoard,
        cancel: CancellationToken,
    }

    impl Watched {
        fn new() -> Watched {
            let metrics = Arc::new(crate::metrics::Metrics::new());
            Watched {
                config: ArcSwap::from_pointee(config("topic = \"cr.{account}.{category}\"", HN)),
                status: StatusBoard::new(metrics.clone()),
                metrics,
                cancel: CancellationToken::new(),
            }
        }
    }

    /// The watch looking up with `lookup` every millisecond, started again
    /// at once after a panic.
    async fn watch_at_once<L, F>(
        config: &ArcSwap<Config>,
        status: &StatusBoard,
        cancel: CancellationToken,
        lookup: L,
    ) where
        L: Fn(rdkafka::ClientConfig, Asking) -> F,
        F: Future<Output = Option<HashSet<String>>>,
    {
        watch_with(
            config,
            status,
            cancel,
            Duration::from_millis(1),
            NO_WAIT,
            lookup,
        )
        .await
    }

    /// The watch was spawned bare: a panic in it (a bug) ended it, the list
    /// frozen as it was (`/status` degraded, the gauge as it stood) and no
    /// topic looked up again while the sink ran. It is started again.
    #[tokio::test]
    async fn a_watch_that_panics_is_started_again() {
        let Watched {
            config,
            metrics,
            status,
            cancel,
        } = Watched::new();
        let (answer, lookup) = cluster();
        let lookups = std::sync::atomic::AtomicUsize::new(0);
        let panicking_first = |client, asking| {
            let first = lookups.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
            assert!(!first, "the first lookup panics");
            lookup(client, asking)
        };
        let watching = watch_at_once(&config, &status, cancel.clone(), panicking_first);
        let steps = async {
            answer
                .send(holding(&["cr.hn.call", "cr.hn.autocall"]))
                .unwrap();
            until(
                "the restarted watch's lookup",
                Duration::from_secs(10),
                || metrics.kafka_topics_missing.get() == 1,
            )
            .await;
            cancel.cancel();
        };
        tokio::join!(watching, steps);
        assert_eq!(metrics.kafka_topics_missing.get(), 0, "cleared at its end");
        assert!(lookups.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    }

    /// A topic found at one lookup was never asked about again: deleted
    /// afterwards (by an operator, or a cluster rebuilt behind the same
    /// brokers), no WARN, the gauge stayed at 0 and the alert silent until
    /// its first event stopped Kafka delivery for every account.
    #[tokio::test]
    async fn a_topic_deleted_after_it_was_found_is_named_missing() {
        let Watched {
            config,
            metrics,
            status,
            cancel,
        } = Watched::new();
        let (answer, lookup) = cluster();
        let watching = watch_at_once(&config, &status, cancel.clone(), lookup);
        let steps = async {
            answer
                .send(holding(&["cr.hn.call", "cr.hn.autocall", "cr.hn.vendor"]))
                .unwrap();
            // Two lookups in a row lack it: one could be a restarted broker's.
            for _ in 0..2 {
                answer
                    .send(holding(&["cr.hn.call", "cr.hn.autocall"]))
                    .unwrap();
            }
            until(
                "the deleted topic named missing",
                Duration::from_secs(10),
                || {
                    metrics.kafka_topics_missing.get() == 1
                        && status
                            .degraded_reasons()
                            .iter()
                            .any(|r| r.contains("do not exist: cr.hn.vendor;"))
                },
            )
            .await;
            // Created again: the list clears at the next lookup.
            answer
                .send(holding(&["cr.hn.call", "cr.hn.autocall", "cr.hn.vendor"]))
                .unwrap();
            until("the list cleared", Duration::from_secs(10), || {
                metrics.kafka_topics_missing.get() == 0
            })
            .await;
            cancel.cancel();
        };
        tokio::join!(watching, steps);
    }

    /// A broker that just restarted (ZooKeeper mode) can answer before its
    /// metadata cache is filled, with few topics or none: during a rolling
    /// restart every topic found before was named missing, a WARN that its
    /// first event stops delivery, `/status` degraded and the gauge up, all
    /// cleared a minute later. One lookup that lacks a topic found before
    /// names nothing; a topic never found is named at once.
    #[tokio::test]
    async fn a_topic_found_before_is_not_named_missing_by_one_lookup() {
        let Watched {
            config,
            metrics,
            status,
            cancel,
        } = Watched::new();
        let (answer, mut asked, lookup) = asked_cluster();
        let watching = watch_at_once(&config, &status, cancel.clone(), lookup);
        let steps = async {
            // The answer is taken in once the next lookup is asked for.
            macro_rules! taken {
                ($found:expr) => {{
                    answer.send($found).unwrap();
                    asked.recv()
                }};
            }
            asked.recv().await.unwrap();
            // `cr.hn.vendor` was never found: named at once.
            taken!(holding(&["cr.hn.call", "cr.hn.autocall"]))
                .await
                .unwrap();
            assert_eq!(metrics.kafka_topics_missing.get(), 1, "never found");
            taken!(holding(&["cr.hn.call", "cr.hn.autocall", "cr.hn.vendor"]))
                .await
                .unwrap();
            assert_eq!(metrics.kafka_topics_missing.get(), 0, "found");
            // A restarted broker's empty cache, then a full answer.
            taken!(holding(&[])).await.unwrap();
            assert_eq!(
                metrics.kafka_topics_missing.get(),
                0,
                "one lookup lacks them"
            );
            assert!(status.degraded_reasons().is_empty());
            taken!(holding(&["cr.hn.call", "cr.hn.autocall", "cr.hn.vendor"]))
                .await
                .unwrap();
            // A cluster that could not be asked neither counts nor breaks the row.
            taken!(holding(&["cr.hn.call", "cr.hn.vendor"]))
                .await
                .unwrap();
            taken!(None).await.unwrap();
            assert_eq!(metrics.kafka_topics_missing.get(), 0, "one lookup lacks it");
            taken!(holding(&["cr.hn.call", "cr.hn.vendor"]))
                .await
                .unwrap();
            assert_eq!(
                metrics.kafka_topics_missing.get(),
                1,
                "two in a row lack it"
            );
            assert!(
                status
                    .degraded_reasons()
                    .iter()
                    .any(|r| r.contains("do not exist: cr.hn.autocall;"))
            );
            cancel.cancel();
        };
        tokio::join!(watching, steps);
    }

    /// The lookup's consumer carried the read-back's `group.id`: librdkafka
    /// looked for the group's coordinator at each lookup (connections, TLS
    /// and SASL logins) though nothing joins it.
    #[test]
    fn the_lookup_client_has_no_group() {
        let plain = config("topic = \"all-events\"", HN);
        let lookup = plain.kafka.as_ref().unwrap().lookup_client_config();
        assert_eq!(lookup.get("group.id"), None);
        assert_eq!(lookup.get("allow.auto.create.topics"), Some("false"));
        let grouped = config(
            "topic = \"all-events\"\n[kafka.options]\n\"group.id\" = \"g\"",
            HN,
        );
        let lookup = grouped.kafka.as_ref().unwrap().lookup_client_config();
        assert_eq!(lookup.get("group.id"), None, "not even from the options");
    }

    /// Every lookup asked for the whole cluster's list: with a fixed topic
    /// on a shared cluster of thousands, all their metadata each minute.
    #[test]
    fn few_topics_are_asked_for_by_name_many_in_one_list() {
        let fixed = foreseeable(&config("topic = \"all-events\"", SOURCES)).unwrap();
        assert_eq!(asking(&fixed), Asking::Named(vec!["all-events".to_owned()]));
        let few: BTreeSet<String> = (0..BY_NAME).map(|i| format!("t{i:02}")).collect();
        assert_eq!(
            asking(&few),
            Asking::Named(few.iter().cloned().collect::<Vec<_>>())
        );
        let many: BTreeSet<String> = (0..=BY_NAME).map(|i| format!("t{i:02}")).collect();
        assert_eq!(asking(&many), Asking::All);
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
