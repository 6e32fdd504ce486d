//! Config value types: durations (`"250ms"`, `"15s"`, `"24h"`), sizes
//! (`"1MiB"`), and secrets that never print.
//!
//! Guarantees: parsing errors name the accepted forms; a `Secret` shows as
//! `***` in `Debug` and `Display`, so it cannot reach a log by accident.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use subtle::ConstantTimeEq;

/// A duration written as a string with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }
    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

/// In its largest whole unit, as a user would write it (`"365d"`, `"90s"`,
/// `"1500ms"`): humantime's own form reads "11months 30days 3h 50m 24s"
/// for 365 days.
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("\"0s\"");
        }
        if !self.0.subsec_nanos().is_multiple_of(1_000_000) {
            return write!(f, "\"{}\"", humantime::format_duration(self.0));
        }
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ];
        write!(
            f,
            "\"{}\"",
            in_whole_units(self.0.as_millis(), &units, "ms")
        )
    }
}

/// `amount` in the largest of `units` (each a multiple of the base) that
/// divides it, else in the base unit.
fn in_whole_units(amount: u128, units: &[(u128, &str)], base: &str) -> String {
    units
        .iter()
        .find(|(size, _)| amount != 0 && amount.is_multiple_of(*size))
        .map_or_else(
            || format!("{amount}{base}"),
            |(size, unit)| format!("{}{unit}", amount / size),
        )
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a duration string such as \"250ms\", \"15s\", \"10m\" or \"24h\"",
            )
        })?;
        // humantime reads `M` as months: "10M" is far more likely a typo for
        // ten minutes than a wish for 300 days, and it passes every range check.
        if text.contains('M') {
            return Err(serde::de::Error::custom(
                "`M` means months; write \"m\" for minutes, or the months as days (\"30d\")",
            ));
        }
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            // The parser's own words are left out: they quote part of the
            // value, which may come from the environment.
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a duration; write e.g. \"250ms\", \"15s\", \"10m\", \"24h\" \
                     (units: ms, s, m, h, d)"
                ))
            })
    }
}

/// A size in bytes written as a string with a unit (`"512KiB"`, `"1MiB"`, `"1GB"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn get(self) -> u64 {
        self.0
    }
}

/// In its largest whole binary unit (`"1MiB"`, `"1500B"`), as written in
/// the file, rather than bytesize's `"1.0 MiB"`.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            (1 << 50, "PiB"),
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        write!(f, "\"{}\"", in_whole_units(u128::from(self.0), &units, "B"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size string such as \"1MiB\" or \"512KiB\"")
        })?;
        text.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a size; write e.g. \"1MiB\", \"512KiB\", \"1GiB\""
                ))
            })
    }
}

/// A secret from the config: a key, password or token. Never printed, and
/// compared only in constant time (also by `==`, which a reload uses to tell
/// whether a config changed: a derived one would make `expected == presented`
/// a short-circuit compare that compiles).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret's text, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), presented)
    }
}

/// The values a webhook credential accepts: one (`secret = "x"`), or a few
/// during a rotation (`secret = ["new", "old"]`), so that deliveries made
/// with either are taken while the vendor switches at a moment the relay
/// cannot know. Compared like [`Secret`], against every value, with no
/// early stop: which one matched does not show in the time (how many there
/// are does: each costs a comparison, a CareSoft HMAC each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted(Vec<Secret>);

impl Accepted {
    /// Which accepted value `presented` is (0: the first, the new one
    /// during a rotation), if any: every value compared, the answer kept
    /// in `subtle`'s `Choice` so no comparison can be skipped.
    pub fn position(&self, presented: &[u8]) -> Option<usize> {
        self.first_of(|secret| secret.0.as_bytes().ct_eq(presented))
    }
    /// The first value for which `check` chooses, each value checked.
    pub fn first_of(&self, check: impl Fn(&Secret) -> subtle::Choice) -> Option<usize> {
        use subtle::ConditionallySelectable;
        let mut found = subtle::Choice::from(0);
        let mut at = 0u32;
        for (i, secret) in self.0.iter().enumerate() {
            let hit = check(secret) & !found;
            at = u32::conditional_select(&at, &u32::try_from(i).unwrap_or(u32::MAX), hit);
            found |= hit;
        }
        bool::from(found).then_some(at as usize)
    }
    /// Every accepted value, for a check that is no plain comparison (an HMAC key).
    pub fn values(&self) -> &[Secret] {
        &self.0
    }

    /// Whether any accepted value is one `test` finds (for `check`'s
    /// warnings about how a value is written; not a credential check).
    pub fn any_written(&self, test: impl Fn(&str) -> bool) -> bool {
        self.0.iter().any(|s| test(s.expose()))
    }
}

impl Accepted {
    /// One accepted value.
    pub fn one(value: impl Into<String>) -> Accepted {
        Accepted(vec![Secret::new(value)])
    }
}

impl From<Secret> for Accepted {
    fn from(secret: Secret) -> Accepted {
        Accepted(vec![secret])
    }
}

impl<'de> Deserialize<'de> for Accepted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Accepted, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMore {
            One(Secret),
            More(Vec<Secret>),
        }
        match OneOrMore::deserialize(d) {
            Ok(OneOrMore::One(secret)) => Ok(Accepted(vec![secret])),
            Ok(OneOrMore::More(secrets)) if secrets.is_empty() => Err(serde::de::Error::custom(
                "an empty list: give the credential, or the new and the old during a rotation",
            )),
            Ok(OneOrMore::More(secrets)) => Ok(Accepted(secrets)),
            Err(_) => Err(serde::de::Error::custom(
                "invalid type: expected a string, or a list of strings (the new and the old during a rotation)",
            )),
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    // Lengths are not secret for our keys' formats; contents are.
    expected.len() == presented.len() && bool::from(expected.ct_eq(presented))
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        d: HumanDuration,
        s: ByteSize,
        k: Secret,
    }

    #[test]
    fn an_accepted_credential_is_one_value_or_a_few() {
        #[derive(Deserialize)]
        struct A {
            k: Accepted,
        }
        let one: A = toml::from_str("k = \"new\"").unwrap();
        assert!(one.k.position(b"new").is_some() && one.k.position(b"old").is_none());
        let two: A = toml::from_str("k = [\"new\", \"old\"]").unwrap();
        assert!(two.k.position(b"new").is_some() && two.k.position(b"old").is_some());
        assert!(two.k.position(b"other").is_none() && two.k.position(b"").is_none());
        assert_eq!(
            (
                two.k.position(b"new"),
                two.k.position(b"old"),
                two.k.position(b"ol")
            ),
            (Some(0), Some(1), None)
        );
        let empty = toml::from_str::<A>("k = []").err().unwrap().to_string();
        assert!(empty.contains("an empty list"), "{empty}");
        let number = toml::from_str::<A>("k = 5").err().unwrap().to_string();
        assert!(number.contains("a list of strings"), "{number}");
        assert!(!format!("{:?}", two.k).contains("new"), "never printed");
    }

    #[test]
    fn secrets_compare_by_content() {
        assert_eq!(Secret::new("hunter2"), Secret::new("hunter2"));
        assert_ne!(Secret::new("hunter2"), Secret::new("hunter3"));
        assert_ne!(Secret::new("hunter2"), Secret::new("hunter22"));
        assert_ne!(Secret::new(""), Secret::new("x"));
    }

    #[test]
    fn parses_durations_sizes_and_hides_secrets() {
        let t: T = toml::from_str("d = \"250ms\"\ns = \"1MiB\"\nk = \"hunter2\"").unwrap();
        assert_eq!(t.d.get(), Duration::from_millis(250));
        assert_eq!(t.s.get(), 1024 * 1024);
        assert_eq!(format!("{:?} {}", t.k, t.k), "Secret(***) ***");
        assert!(t.k.matches(b"hunter2"));
        assert!(!t.k.matches(b"hunter3"));
        assert!(!t.k.matches(b"hunter"));
    }

    #[test]
    fn values_show_in_their_largest_whole_unit_as_a_user_writes_them() {
        let shown = |d: Duration| HumanDuration(d).to_string();
        assert_eq!(shown(Duration::from_secs(365 * 86_400)), "\"365d\"");
        assert_eq!(shown(Duration::from_secs(3600)), "\"1h\"");
        assert_eq!(shown(Duration::from_secs(90)), "\"90s\"");
        assert_eq!(shown(Duration::from_millis(1500)), "\"1500ms\"");
        assert_eq!(shown(Duration::ZERO), "\"0s\"");
        assert_eq!(shown(Duration::from_micros(1500)), "\"1ms 500us\"");
        assert_eq!(ByteSize(1 << 20).to_string(), "\"1MiB\"");
        assert_eq!(ByteSize(1 << 50).to_string(), "\"1PiB\"");
        assert_eq!(ByteSize(2 << 40).to_string(), "\"2TiB\"");
        assert_eq!(ByteSize(1 << 30).to_string(), "\"1GiB\"");
        assert_eq!(ByteSize(1536).to_string(), "\"1536B\"");
        assert_eq!(ByteSize(3 << 10).to_string(), "\"3KiB\"");
        assert_eq!(ByteSize(0).to_string(), "\"0B\"");
        // Each reads back as the same value.
        for written in ["365d", "90s", "1500ms"] {
            let t: T =
                toml::from_str(&format!("d = \"{written}\"\ns = \"1B\"\nk = \"x\"")).unwrap();
            assert_eq!(t.d.to_string(), format!("\"{written}\""));
        }
        for written in ["1PiB", "3KiB", "1536B"] {
            let t: T =
                toml::from_str(&format!("d = \"1s\"\ns = \"{written}\"\nk = \"x\"")).unwrap();
            assert_eq!(t.s.to_string(), format!("\"{written}\""));
        }
    }

    #[test]
    fn bad_values_say_what_is_expected() {
        let e = toml::from_str::<T>("d = \"15 parsecs\"\ns = \"1MiB\"\nk = \"x\"")
            .err()
            .unwrap();
        assert!(e.to_string().contains("is not a duration"), "{e}");
        let e = toml::from_str::<T>("d = \"1s\"\ns = \"lots\"\nk = \"x\"")
            .err()
            .unwrap();
        assert!(e.to_string().contains("is not a size"), "{e}");
        let e = toml::from_str::<T>("d = 5\ns = \"1MiB\"\nk = \"x\"")
            .err()
            .unwrap();
        assert!(e.to_string().contains("duration string"), "{e}");
    }
}
