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

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", humantime::format_duration(self.0))
    }
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

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", bytesize::ByteSize(self.0).display().iec())
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
