//! A differential test of the WebSocket client filters against a reference
//! model written from docs/websocket.md ("Filters", and the 400 rows of
//! "Connecting") and the module doc of `filter.rs`.
//!
//! The model: `glob` is a dynamic-programming matcher over characters where
//! `*` is any run of characters, `?` exactly one, and everything else
//! (`.`, `\`, `[`) literal; an event passes a filter when, for every attribute
//! whose list is non-empty, any value matches (`type` by glob, the others
//! exactly, and an event without a subject never passes a `subject` filter).
//!
//! Properties checked:
//! 1. `glob` agrees with the reference matcher on patterns and texts over a
//!    small alphabet holding `*`, `?`, multibyte characters and the empty
//!    string, including patterns made only of wildcards.
//! 2. `matches` and `matches_ref` agree with each other and with the model on
//!    every header (`matches_ref` on the header's `borrowed()` view).
//! 3. A query built from drawn filter lists (repeated parameters,
//!    comma-separated values with the comma raw or as `%2C`, each value
//!    percent-encoded by a standard encoder, unknown parameters between them)
//!    parses back to exactly those lists, and `since` wins over
//!    `Last-Event-ID`; a list of more than `MAX_FILTER_VALUES` values or a
//!    value longer than `MAX_FILTER_VALUE_BYTES` bytes is refused, and one
//!    at the limits is not.
//!
//! Deliberately not checked: the values' trimming (test values have no
//! whitespace at their ends), tokens,
//! heartbeat, and bytes that are not UTF-8 (the unit tests pin those).

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;

use super::*;

/// Reference glob: `matched[i][j]` says whether the first `i` characters of
/// the pattern match the first `j` characters of the text.
fn reference_glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let mut matched = vec![vec![false; text.len() + 1]; pattern.len() + 1];
    matched[0][0] = true;
    for i in 1..=pattern.len() {
        for j in 0..=text.len() {
            matched[i][j] = match pattern[i - 1] {
                '*' => matched[i - 1][j] || (j > 0 && matched[i][j - 1]),
                '?' => j > 0 && matched[i - 1][j - 1],
                literal => j > 0 && matched[i - 1][j - 1] && text[j - 1] == literal,
            };
        }
    }
    matched[pattern.len()][text.len()]
}

/// The model of `Filter::matches`: every non-empty list, any of its values.
fn reference_matches(filter: &Filter, header: &EventHeader) -> bool {
    let any_exact = |list: &[String], value: Option<&str>| {
        list.is_empty() || value.is_some_and(|value| list.iter().any(|v| v == value))
    };
    any_exact(&filter.vendors, Some(&header.vendor))
        && any_exact(&filter.accounts, Some(&header.account))
        && any_exact(&filter.subjects, header.subject.as_deref())
        && (filter.types.is_empty()
            || filter
                .types
                .iter()
                .any(|g| reference_glob(g, &header.event_type)))
}

fn string_of(alphabet: &'static [char], max_len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(alphabet), 0..=max_len)
        .prop_map(|chars| chars.into_iter().collect())
}

const PATTERN_CHARS: &[char] = &['a', 'b', '.', '*', '?', '\\', '[', '\u{e9}', '\u{1f600}'];
const TEXT_CHARS: &[char] = &['a', 'b', '.', '*', '?', '\\', '\u{e9}', '\u{1f600}'];

/// A text the pattern matches: each wildcard replaced by what it may take.
fn instance_of(pattern: String) -> impl Strategy<Value = (String, String)> {
    let fillers: Vec<_> = pattern
        .chars()
        .map(|c| match c {
            '*' => string_of(TEXT_CHARS, 3).boxed(),
            '?' => string_of(TEXT_CHARS, 1)
                .prop_filter("one character", |s| s.chars().count() == 1)
                .boxed(),
            literal => Just(literal.to_string()).boxed(),
        })
        .collect();
    fillers.prop_map(move |parts| (pattern.clone(), parts.concat()))
}

fn pattern_and_text() -> impl Strategy<Value = (String, String)> {
    let pattern = prop_oneof![
        string_of(PATTERN_CHARS, 8),
        // Patterns made only of wildcards.
        string_of(&['*', '?'], 6),
    ];
    prop_oneof![
        (pattern.clone(), string_of(TEXT_CHARS, 10)),
        pattern.prop_flat_map(instance_of),
    ]
}

const EVENT_TYPES: &[&str] = &[
    "call.ringing",
    "call.ended",
    "call",
    "crm.ticket.update",
    "",
    "\u{e9}.\u{1f600}",
];
const TYPE_GLOBS: &[&str] = &[
    "call.*",
    "*",
    "call.?nded",
    "crm.*.update",
    "call",
    "?",
    "\u{e9}.?",
];
const VENDORS: &[&str] = &["voip24h", "caresoft", "\u{e9}"];
const ACCOUNTS: &[&str] = &["main", "hn", "a b"];
const SUBJECTS: &[&str] = &["7", "8", "call-\u{1f600}"];

fn one_of(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(pool).prop_map(str::to_owned)
}

fn list_of(values: impl Strategy<Value = String>) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(values, 0..=3)
}

fn filter() -> impl Strategy<Value = Filter> {
    (
        list_of(prop_oneof![one_of(TYPE_GLOBS), string_of(PATTERN_CHARS, 5)]),
        list_of(one_of(VENDORS)),
        list_of(one_of(ACCOUNTS)),
        list_of(one_of(SUBJECTS)),
    )
        .prop_map(|(types, vendors, accounts, subjects)| Filter {
            types,
            vendors,
            accounts,
            subjects,
        })
}

fn header() -> impl Strategy<Value = EventHeader> {
    (
        prop_oneof![one_of(EVENT_TYPES), string_of(TEXT_CHARS, 5)],
        one_of(VENDORS),
        one_of(ACCOUNTS),
        proptest::option::of(one_of(SUBJECTS)),
        any::<u64>(),
    )
        .prop_map(|(event_type, vendor, account, subject, seq)| EventHeader {
            id: "00".into(),
            source: format!("/{vendor}/{account}"),
            event_type,
            subject,
            vendor,
            account,
            seq,
        })
}

/// A filter value as a client may list it: no comma (the comma always
/// separates), not empty and without whitespace at its ends (what the
/// parser keeps of a value), but holding what a query must encode.
fn filter_value() -> impl Strategy<Value = String> {
    const VALUE_CHARS: &[char] = &[
        'a',
        'b',
        '.',
        '*',
        '?',
        ' ',
        '+',
        '&',
        '=',
        '%',
        '#',
        ';',
        '/',
        '\u{e9}',
        '\u{1f600}',
    ];
    string_of(VALUE_CHARS, 6)
        .prop_map(|s| s.trim().to_owned())
        .prop_filter("a value is not empty", |s| !s.is_empty())
}

const FILTER_NAMES: [&str; 4] = ["type", "vendor", "account", "subject"];

fn filter_lists(q: &ClientQuery) -> [&Vec<String>; 4] {
    [
        &q.filter.types,
        &q.filter.vendors,
        &q.filter.accounts,
        &q.filter.subjects,
    ]
}

/// How a client's library writes a value or a name into a query.
#[derive(Clone, Copy, Debug)]
enum Encoder {
    /// RFC 3986 style: every byte but ASCII letters and digits as `%XX`.
    Percent,
    /// `application/x-www-form-urlencoded` (`URLSearchParams`): space as `+`.
    Form,
    /// Every byte as `%XX`, letters too (`%74ype`).
    EveryByte,
}

impl Encoder {
    fn encode(self, text: &str) -> String {
        match self {
            Encoder::Percent => utf8_percent_encode(text, NON_ALPHANUMERIC).to_string(),
            Encoder::Form => url::form_urlencoded::byte_serialize(text.as_bytes()).collect(),
            Encoder::EveryByte => text.bytes().map(|b| format!("%{b:02X}")).collect(),
        }
    }
}

fn encoder() -> impl Strategy<Value = Encoder> {
    prop_oneof![
        Just(Encoder::Percent),
        Just(Encoder::Form),
        Just(Encoder::EveryByte)
    ]
}

/// One `name=v1,v2,…` parameter of the query.
#[derive(Clone, Debug)]
struct Parameter {
    filter: usize,
    values: Vec<String>,
    name_encoder: Option<Encoder>,
    value_encoder: Encoder,
    /// The comma between values, raw or percent-encoded.
    separator: &'static str,
}

impl Parameter {
    fn write(&self) -> String {
        let name = FILTER_NAMES[self.filter];
        let name = self
            .name_encoder
            .map_or(name.to_owned(), |e| e.encode(name));
        let values: Vec<String> = self
            .values
            .iter()
            .map(|v| self.value_encoder.encode(v))
            .collect();
        format!("{name}={}", values.join(self.separator))
    }
}

fn parameter() -> impl Strategy<Value = Parameter> {
    (
        0..FILTER_NAMES.len(),
        // An empty parameter (`vendor=`) adds no value.
        proptest::collection::vec(filter_value(), 0..=3),
        proptest::option::of(encoder()),
        encoder(),
        proptest::sample::select(&[",", "%2C", "%2c"][..]),
    )
        .prop_map(
            |(filter, values, name_encoder, value_encoder, separator)| Parameter {
                filter,
                values,
                name_encoder,
                value_encoder,
                separator,
            },
        )
}

/// `since` as a client may send it: a seq, or something that is not one.
fn since_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        any::<u64>().prop_map(|seq| seq.to_string()),
        proptest::sample::select(&["", "-1", "abc", "1.5", "undefined"][..])
            .prop_map(str::to_owned),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn glob_agrees_with_the_reference_matcher((pattern, text) in pattern_and_text()) {
        prop_assert_eq!(
            glob(&pattern, &text),
            reference_glob(&pattern, &text),
            "pattern {:?}, text {:?}", pattern, text
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_and_matches_ref_agree_with_the_model(filter in filter(), header in header()) {
        let expected = reference_matches(&filter, &header);
        prop_assert_eq!(filter.matches(&header), expected, "{:?} {:?}", filter, header);
        prop_assert_eq!(filter.matches_ref(&header.borrowed()), expected);
        prop_assert_eq!(
            Filter::default().matches_ref(&header.borrowed()),
            true,
            "no filter takes every event"
        );
    }

    #[test]
    fn a_query_of_filter_lists_parses_back_to_them(
        parameters in proptest::collection::vec(parameter(), 0..=6),
        cache_busters in proptest::collection::vec(
            proptest::sample::select(&["_=1700000000", "x=a,b", "%FF=%FE", "typ=call.*", ""][..]),
            0..=3,
        ),
        insert_at in proptest::collection::vec(any::<prop::sample::Index>(), 3),
        since in since_text(),
        last_event_id in proptest::option::of(any::<u64>()),
    ) {
        let mut pairs: Vec<String> = parameters.iter().map(Parameter::write).collect();
        for (buster, at) in cache_busters.iter().zip(&insert_at) {
            let at = at.index(pairs.len() + 1);
            pairs.insert(at, (*buster).to_owned());
        }
        if let Some(since) = &since {
            pairs.push(format!("since={}", utf8_percent_encode(since, NON_ALPHANUMERIC)));
        }
        let raw = pairs.join("&");
        let q = ClientQuery::parse(Some(&raw));

        for (filter, got) in filter_lists(&q).into_iter().enumerate() {
            let expected: Vec<String> = parameters
                .iter()
                .filter(|p| p.filter == filter)
                .flat_map(|p| p.values.iter().cloned())
                .collect();
            prop_assert_eq!(got, &expected, "`{}` of {:?}", FILTER_NAMES[filter], raw);
        }
        let header = last_event_id.map(|seq| seq.to_string());
        let expected_since = match (&since, &header) {
            (Some(text), _) => text.parse::<u64>().map(Some).map_err(|_| "since"),
            (None, Some(text)) => Ok(Some(text.parse::<u64>().unwrap())),
            (None, None) => Ok(None),
        };
        match (q.since(header.as_deref().map(Ok)), expected_since) {
            (Ok(got), Ok(expected)) => prop_assert_eq!(got, expected, "{:?}", raw),
            (Err(QueryError::BadSince { field, .. }), Err(expected)) => {
                prop_assert_eq!(field, expected);
            }
            (got, expected) => prop_assert!(false, "{:?}: got {:?}, expected {:?}", raw, got, expected),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// At most `MAX_FILTER_VALUES` values across a filter's parameters, each
    /// at most `MAX_FILTER_VALUE_BYTES` bytes once decoded; past either the
    /// query is refused, naming the filter, and keeps no more than that.
    #[test]
    fn a_filter_over_the_limits_is_refused_and_one_at_them_is_not(
        filter in 0..FILTER_NAMES.len(),
        count in prop_oneof![1..=3usize, MAX_FILTER_VALUES - 2..=MAX_FILTER_VALUES + 2],
        long_len in proptest::option::of(MAX_FILTER_VALUE_BYTES - 1..=MAX_FILTER_VALUE_BYTES + 1),
        long_at in any::<prop::sample::Index>(),
        per_parameter in 1..=300usize,
        value_encoder in encoder(),
    ) {
        let mut values: Vec<String> = (0..count).map(|i| format!("v{i}")).collect();
        if let Some(len) = long_len {
            // Two-byte characters, so bytes and characters differ.
            let long = format!("{}{}", "\u{e9}".repeat(len / 2), "a".repeat(len % 2));
            assert_eq!(long.len(), len);
            values[long_at.index(count)] = long;
        }
        let raw = values
            .chunks(per_parameter)
            .map(|chunk| {
                let encoded: Vec<String> = chunk.iter().map(|v| value_encoder.encode(v)).collect();
                format!("{}={}", FILTER_NAMES[filter], encoded.join(","))
            })
            .collect::<Vec<_>>()
            .join("&");
        let q = ClientQuery::parse(Some(&raw));
        let kept = filter_lists(&q)[filter];
        let within = count <= MAX_FILTER_VALUES
            && long_len.is_none_or(|len| len <= MAX_FILTER_VALUE_BYTES);
        if within {
            prop_assert_eq!(q.since(None), Ok(None));
            prop_assert_eq!(kept, &values);
        } else {
            let refused = q.since(None);
            let named = match refused {
                Err(QueryError::FilterTooLarge(Oversized::Values(name) | Oversized::Length(name))) => name,
                other => return Err(TestCaseError::fail(format!("{other:?} for {count} values, long {long_len:?}"))),
            };
            prop_assert_eq!(named, FILTER_NAMES[filter]);
            prop_assert!(kept.len() <= MAX_FILTER_VALUES, "{}", kept.len());
            prop_assert!(kept.iter().all(|v| v.len() <= MAX_FILTER_VALUE_BYTES));
        }
    }
}
