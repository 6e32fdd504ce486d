//! `[[sprecord]]`: up to three SSE streams per device/account.
//!
//! Guarantees: a config that validates can be turned into a stream endpoint
//! (URL, header names and values are checked here, so the source never fails
//! on them at run time), and every timing is bounded below so no setting can
//! make a stream reconnect in a tight loop.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{
    HumanDuration, Secret, Validator, unspanned, validate_account, validate_http_url,
};
use crate::sources::proxy::ProxyRoute;
use crate::sources::tls::TlsSettings;

/// The vendor's limit: at most this many concurrent `/sys/events` connections per account.
pub const MAX_STREAMS: u8 = 3;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SprecordConfig {
    pub account: Spanned<String>,
    pub url: Spanned<String>,
    #[serde(default = "default_streams")]
    pub streams: Spanned<u8>,
    /// Request headers sent on every stream (authentication is not documented by the vendor).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// A stream silent for this long (no event, no keep-alive comment) is taken as dead and reopened.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Spanned<HumanDuration>,
    /// `/readyz` is false while this account has had no open stream for this long.
    #[serde(default = "default_connect_grace")]
    pub connect_grace: Spanned<HumanDuration>,
    /// Bound on TCP + TLS connect and on waiting for the response head.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Spanned<HumanDuration>,
    /// First reconnect delay after a network error, a 5xx or a closed stream;
    /// doubles per failure up to `backoff_max`, each delay jittered by ±50 %.
    #[serde(default = "default_backoff_min")]
    pub backoff_min: Spanned<HumanDuration>,
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Spanned<HumanDuration>,
    /// Delay (jittered) after a 429 or a "too many connections" answer.
    #[serde(default = "default_busy_backoff")]
    pub busy_backoff: Spanned<HumanDuration>,
    /// Delay (jittered) after a 401/403: the credentials need a human.
    #[serde(default = "default_auth_backoff")]
    pub auth_backoff: Spanned<HumanDuration>,
    /// Stream `i` first connects after `i × stagger`, so the streams do not move in lock-step.
    #[serde(default = "default_stagger")]
    pub stagger: Spanned<HumanDuration>,
    /// Extra certificate authorities for an `https://` url.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Not a key of the table: the proxy `[proxy]` and the environment
    /// choose for `url`, set when the config is loaded.
    #[serde(skip)]
    pub proxy: Option<ProxyRoute>,
}

fn default_streams() -> Spanned<u8> {
    unspanned(MAX_STREAMS)
}
fn default_read_timeout() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(60))
}
fn default_connect_grace() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(30))
}
fn default_connect_timeout() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(10))
}
fn default_backoff_min() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(1))
}
fn default_backoff_max() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(60))
}
fn default_busy_backoff() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(30))
}
fn default_auth_backoff() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(300))
}
fn default_stagger() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(1))
}

/// Smallest accepted reconnect delay: keeps a broken peer from being hammered
/// and leaves a closed socket time to be seen closed before the next opens.
/// The most `headers` a stream sends.
const MAX_HEADERS: usize = 100;
const MIN_DELAY: HumanDuration = HumanDuration::from_millis(10);
const HOUR: HumanDuration = HumanDuration::from_secs(3600);

impl SprecordConfig {
    pub fn validate(&self, v: &mut Validator) {
        validate_account(v, &self.account);
        validate_http_url(v, "url", &self.url);
        self.tls.validate(v, &self.url);
        v.check_range("streams", &self.streams, 1, MAX_STREAMS, u8::to_string);
        // http's header map panics past 32,768 entries: a config that
        // passed `check` took the account's task down at start (panic
        // audit of 2026-12-02). No device needs more than a few.
        if self.headers.len() > MAX_HEADERS {
            v.error(
                self.account.span(),
                format!(
                    "[[sprecord]] `headers` has {} entries; at most {MAX_HEADERS} are sent",
                    self.headers.len()
                ),
            );
        }
        // HTTP header names are one name in any case: the stream sends one
        // of the two values, and which one depended on the table's order.
        let mut seen = std::collections::BTreeSet::new();
        for name in self.headers.keys() {
            if !seen.insert(name.to_ascii_lowercase()) {
                v.error(
                    self.account.span(),
                    format!(
                        "header {name:?} is written twice, in different cases: HTTP names are one name in any case, and only one value would be sent"
                    ),
                );
            }
        }
        for (name, value) in &self.headers {
            // The relay's resume point: sent as written while the account has
            // none (a first start, an id that cannot be sent), it had the
            // device send again what followed it at every reconnect.
            if name.eq_ignore_ascii_case("last-event-id") {
                v.error(
                    self.account.span(),
                    format!(
                        "header {name:?} is the relay's own: each stream sends the id of the last \
                         event it handed on, so the device resumes after it; remove it from `headers`"
                    ),
                );
            }
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                v.error(
                    self.account.span(),
                    format!("header name {name:?} is not valid"),
                );
            }
            // The value is a secret: say which header, never what it holds.
            if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                v.error(
                    self.account.span(),
                    format!("the value of header {name:?} is not a valid HTTP header value"),
                );
            } else if looks_like_a_blank_variable(name, value.expose()) {
                // `Bearer ${TOKEN}` with TOKEN left blank: every stream would
                // be refused 401 and wait `auth_backoff`, while every other
                // blank credential is refused here.
                v.error(
                    self.account.span(),
                    format!(
                        "the value of header {name:?} is empty, or a scheme with no credential after it: is a `${{VAR}}` in it set to nothing?"
                    ),
                );
            }
        }
        let shown = |d: &HumanDuration| d.to_string();
        for (field, value) in [
            ("read_timeout", &self.read_timeout),
            ("connect_timeout", &self.connect_timeout),
            ("backoff_min", &self.backoff_min),
            ("backoff_max", &self.backoff_max),
            ("busy_backoff", &self.busy_backoff),
            ("auth_backoff", &self.auth_backoff),
            ("connect_grace", &self.connect_grace),
        ] {
            v.check_range(field, value, MIN_DELAY, HOUR, shown);
        }
        v.check_range(
            "stagger",
            &self.stagger,
            HumanDuration::from_secs(0),
            HOUR,
            shown,
        );
        if self.backoff_min.get_ref() > self.backoff_max.get_ref() {
            v.error(
                self.backoff_min.span(),
                "`backoff_min` must not exceed `backoff_max`",
            );
        }
    }

    /// The typed timings, read once by the source.
    pub fn timings(&self) -> Timings {
        Timings {
            read_timeout: self.read_timeout.get_ref().get(),
            connect_timeout: self.connect_timeout.get_ref().get(),
            backoff_min: self.backoff_min.get_ref().get(),
            backoff_max: self.backoff_max.get_ref().get(),
            busy_backoff: self.busy_backoff.get_ref().get(),
            auth_backoff: self.auth_backoff.get_ref().get(),
            stagger: self.stagger.get_ref().get(),
            connect_grace: self.connect_grace.get_ref().get(),
        }
    }
}

/// Every duration the source uses, unwrapped from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub busy_backoff: Duration,
    pub auth_backoff: Duration,
    pub stagger: Duration,
    pub connect_grace: Duration,
}

/// A header value that is nothing once trimmed, or, in `Authorization` or
/// `Proxy-Authorization`, a scheme alone (`Bearer `, `Basic`): a `${VAR}`
/// left blank. Trailing spaces alone are sent as they are, and servers
/// ignore them; another header may well say `Basic`.
fn looks_like_a_blank_variable(name: &str, value: &str) -> bool {
    let value = value.trim();
    let authorization = ["Authorization", "Proxy-Authorization"]
        .iter()
        .any(|header| header.eq_ignore_ascii_case(name));
    value.is_empty()
        || (authorization
            && ["Bearer", "Basic", "Token", "Digest"]
                .iter()
                .any(|scheme| scheme.eq_ignore_ascii_case(value)))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(table: &str) -> Vec<String> {
        let text =
            format!("[[sprecord]]\naccount = \"office\"\nurl = \"http://127.0.0.1:9\"\n{table}");
        match Config::from_text("relay.toml", &text, &|_| None) {
            Ok(_) => vec![],
            Err(e) => e.problems.into_iter().map(|p| p.message).collect(),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let text = "[[sprecord]]\naccount = \"office\"\nurl = \"https://api.sprecord.cloud\"\n";
        let config = Config::from_text("relay.toml", text, &|_| None).unwrap();
        let sp = config.sprecord[0].get_ref();
        assert_eq!(*sp.streams.get_ref(), 3);
        let t = sp.timings();
        assert_eq!(t.read_timeout.as_secs(), 60);
        assert_eq!((t.backoff_min.as_secs(), t.backoff_max.as_secs()), (1, 60));
        assert_eq!(
            (t.busy_backoff.as_secs(), t.auth_backoff.as_secs()),
            (30, 300)
        );
    }

    #[test]
    fn bad_timings_and_header_values_are_reported_without_the_secret() {
        assert!(
            problems("backoff_min = \"2s\"\nbackoff_max = \"1s\"\n")
                .iter()
                .any(|p| p.contains("`backoff_min` must not exceed `backoff_max`"))
        );
        // A fixed delay is a valid choice.
        assert!(problems("backoff_min = \"5s\"\nbackoff_max = \"5s\"\n").is_empty());
        assert!(
            problems("read_timeout = \"0s\"\n")
                .iter()
                .any(|p| p.contains("read_timeout"))
        );
        assert!(
            problems("streams = 0\n")
                .iter()
                .any(|p| p.contains("streams"))
        );
        assert!(problems("speed = 1\n").iter().any(|p| p.contains("speed")));
        // A value with a control character cannot be sent; the message names
        // the header, never the value.
        let p = problems("headers = { Authorization = \"Bearer \\u0001secret\" }\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("Authorization") && !p[0].contains("secret"),
            "{p:?}"
        );
        // The resume point is the relay's, in any case.
        for name in ["Last-Event-ID", "last-event-id"] {
            let p = problems(&format!("headers = {{ {name} = \"42\" }}\n"));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].contains("is the relay's own"), "{p:?}");
        }
        // A blank `${VAR}` in the value.
        for blank in ["\"Bearer \"", "\"\"", "\"  \"", "\"basic\""] {
            let p = problems(&format!("headers = {{ Authorization = {blank} }}\n"));
            assert_eq!(p.len(), 1, "{blank}: {p:?}");
            assert!(p[0].contains("\"Authorization\" is empty"), "{p:?}");
        }
        // A value ending in a space is sent as it is (servers ignore it);
        // a scheme's name is a value like any other outside authorization.
        for fine in [
            "Authorization = \"Bearer t\"",
            "Authorization = \"t \"",
            "X-Auth-Type = \"Basic\"",
        ] {
            let p = problems(&format!("headers = {{ {fine} }}\n"));
            assert!(p.is_empty(), "{fine}: {p:?}");
        }
        let many = |n: usize| {
            let entries: Vec<String> = (0..n).map(|i| format!("X-{i} = \"v\"")).collect();
            format!("headers = {{ {} }}\n", entries.join(", "))
        };
        let p = problems(&many(101));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("`headers` has 101 entries; at most 100"),
            "{p:?}"
        );
        assert!(problems(&many(100)).is_empty());
    }
}
