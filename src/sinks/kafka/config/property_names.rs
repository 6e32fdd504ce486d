//! librdkafka's names for its properties: which `[kafka.options]` keys set
//! one property (its aliases, and a topic property given with or without
//! `topic.`), for the config to refuse one setting under two names and to
//! find an option under whichever name it is set.
//!
//! Guarantees: for two names librdkafka 2.12.1 accepts, [`same_property`]
//! is true exactly when it sets one property under both (a global
//! property prefixed `topic.`, which librdkafka refuses as unknown, is
//! mapped to the property too: callers refuse unknown names first). The
//! tables are that version's: redo them when librdkafka is upgraded (the
//! test pins the version).

// librdkafka reads a property under more than one name: its aliases
// (`_RK_C_ALIAS` in rdkafka_conf.c), and, for a topic property given at
// global level, the name as it is or prefixed `topic.` (`rd_kafka_conf_set`
// passes a name it does not know as a global property on to the default
// topic config, which strips the prefix). rdkafka applies a `ClientConfig`'s
// settings in hash order, with a fresh seed per map, so with two names of
// one property set, which value librdkafka kept changed at each creation of
// a client (the producer, its replacements, the read-back's and the
// lookups' consumers, `check`'s own). The tables are librdkafka 2.12.1's
// (rdkafka-sys 4.10.0); a test checks each entry against the linked
// library, and that it is still that version.

/// Global aliases and the property each stands for.
const GLOBAL_ALIASES: [(&str, &str); 9] = [
    ("bootstrap.servers", "metadata.broker.list"),
    ("max.in.flight", "max.in.flight.requests.per.connection"),
    ("sasl.mechanism", "sasl.mechanisms"),
    (
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.client.id",
    ),
    (
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.client.secret",
    ),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
    ("linger.ms", "queue.buffering.max.ms"),
    ("retries", "message.send.max.retries"),
    ("compression.type", "compression.codec"),
];

/// Topic-level aliases and the property each stands for.
const TOPIC_ALIASES: [(&str, &str); 4] = [
    ("acks", "request.required.acks"),
    ("delivery.timeout.ms", "message.timeout.ms"),
    ("compression.type", "compression.codec"),
    ("enable.auto.commit", "auto.commit.enable"),
];

/// Names librdkafka has both as a global and as a topic property: unprefixed
/// the global one is set, `topic.`-prefixed the topic one, so those two are
/// separate settings (which is used depends on the name: the topic's
/// `compression.codec` when set; the global one for the consumer group's
/// `enable.auto.commit` and `auto.commit.interval.ms`).
const IN_BOTH_SCOPES: [&str; 6] = [
    "auto.commit.interval.ms",
    "compression.codec",
    "compression.type",
    "enable.auto.commit",
    "offset.store.method",
    "opaque",
];

/// Global properties whose own names begin with `topic.`: no prefix is
/// stripped from them.
const GLOBAL_NAMED_TOPIC: [&str; 6] = [
    "topic.blacklist",
    "topic.metadata.propagation.max.ms",
    "topic.metadata.refresh.fast.cnt",
    "topic.metadata.refresh.fast.interval.ms",
    "topic.metadata.refresh.interval.ms",
    "topic.metadata.refresh.sparse",
];

/// The librdkafka property a `[kafka.options]` key sets: its name, and
/// whether it is the topic's, where a name is in both scopes
/// ([`IN_BOTH_SCOPES`]; elsewhere the name alone tells).
pub(super) fn property_of(key: &str) -> (&str, Option<bool>) {
    let in_scope =
        |name: &'static str, topic: bool| (name, IN_BOTH_SCOPES.contains(&name).then_some(topic));
    let alias = |table: &[(&'static str, &'static str)], name: &str| {
        table.iter().find_map(|&(a, p)| (a == name).then_some(p))
    };
    if GLOBAL_NAMED_TOPIC.contains(&key) {
        return (key, None);
    }
    match key.strip_prefix("topic.") {
        None => {
            if let Some(p) = alias(&GLOBAL_ALIASES, key) {
                return in_scope(p, false);
            }
            if let Some(&both) = IN_BOTH_SCOPES.iter().find(|&&n| n == key) {
                return in_scope(both, false);
            }
            match alias(&TOPIC_ALIASES, key) {
                Some(p) => in_scope(p, true),
                None => (key, None),
            }
        }
        Some(name) => match alias(&TOPIC_ALIASES, name) {
            Some(p) => in_scope(p, true),
            None => (name, IN_BOTH_SCOPES.contains(&name).then_some(true)),
        },
    }
}

/// Whether librdkafka sets one property under the names `a` and `b`.
pub(super) fn same_property(a: &str, b: &str) -> bool {
    property_of(a) == property_of(b)
}

#[cfg(test)]
mod tests {
    use rdkafka::ClientConfig;

    use super::*;

    /// The tables of librdkafka's names are taken from its rdkafka_conf.c;
    /// each entry is checked against the linked library, which reads a
    /// property back under any of its names.
    #[test]
    fn the_tables_of_names_hold_for_the_linked_librdkafka() {
        // Taken from this version: on another, take them again.
        assert_eq!(rdkafka::util::get_rdkafka_version().1, "2.12.1");
        let native = |settings: &[(&str, &str)]| {
            let mut c = ClientConfig::new();
            for (k, v) in settings {
                c.set(*k, *v);
            }
            c.create_native_config()
        };
        let global: [&str; GLOBAL_ALIASES.len()] = [
            "h:1", "3", "PLAIN", "an-id", "a-secret", "123456", "7", "3", "lz4",
        ];
        for ((alias, property), value) in GLOBAL_ALIASES.iter().zip(global) {
            assert!(same_property(alias, property), "{alias}");
            match native(&[(alias, value)]) {
                Ok(n) => assert_eq!(n.get(property).unwrap(), value, "{alias}"),
                // Not built in (OIDC): refused alike under the other name.
                Err(e) => assert_eq!(
                    native(&[(property, value)]).err().map(|e| e.to_string()),
                    Some(e.to_string().replace(alias, property)),
                    "{alias}"
                ),
            }
        }
        let topic: [&str; TOPIC_ALIASES.len()] = ["1", "1234", "bogus", "false"];
        for ((alias, property), value) in TOPIC_ALIASES.iter().zip(topic) {
            let prefixed = format!("topic.{alias}");
            assert!(
                same_property(&prefixed, &format!("topic.{property}")),
                "{alias}"
            );
            if IN_BOTH_SCOPES.contains(property) {
                // Read back as the global one: librdkafka's refusal names
                // the property the alias stands for.
                let e = native(&[(&prefixed, value)]).err().unwrap().to_string();
                assert!(e.contains(&format!("\"{property}\"")), "{e}");
            } else {
                let n = native(&[(&prefixed, value)]).unwrap();
                assert_eq!(n.get(property).unwrap(), value, "{alias}");
            }
        }
        // A name in both scopes: `topic.` sets the topic's, apart from the
        // global one; without, the global one.
        for (name, value) in [
            ("auto.commit.interval.ms", "1234"),
            ("compression.codec", "lz4"),
            ("compression.type", "lz4"),
            ("enable.auto.commit", "false"),
        ] {
            assert!(!same_property(name, &format!("topic.{name}")));
            let n = native(&[(&format!("topic.{name}"), value)]).unwrap();
            assert_ne!(n.get(name).unwrap(), value, "{name}");
            let n = native(&[(name, value)]).unwrap();
            assert_eq!(n.get(name).unwrap(), value, "{name}");
        }
        assert!(IN_BOTH_SCOPES.contains(&"offset.store.method"));
        // Global properties named `topic.…`: no prefix is stripped.
        let global_named_topic: [&str; GLOBAL_NAMED_TOPIC.len()] =
            ["x", "1234", "7", "123", "12345", "false"];
        for (name, value) in GLOBAL_NAMED_TOPIC.iter().zip(global_named_topic) {
            let n = native(&[(name, value)]).unwrap();
            assert_eq!(n.get(name).unwrap(), value, "{name}");
            assert!(!same_property(name, &name["topic.".len()..]));
        }
        // A topic property with and without `topic.`.
        for (name, value) in [
            ("partitioner", "murmur2"),
            ("auto.offset.reset", "latest"),
            ("request.required.acks", "1"),
            ("message.timeout.ms", "1234"),
        ] {
            assert!(same_property(name, &format!("topic.{name}")));
            let by_name = native(&[(name, value)]).unwrap().get(name).unwrap();
            let prefixed = native(&[(&format!("topic.{name}"), value)]).unwrap();
            assert_eq!(prefixed.get(name).unwrap(), by_name, "{name}");
            let default = native(&[]).unwrap().get(name).ok();
            assert_ne!(Some(by_name), default, "{name}");
        }
    }
}
