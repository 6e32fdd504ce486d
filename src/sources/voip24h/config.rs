//! `[[voip24h]]`: one socket.io session per API key.
//!
//! Guarantees: a config that validates holds a `hello_interval` inside the
//! vendor's 10 s..29 s window and a sane reconnect backoff. Tests that need
//! shorter intervals load a valid file and then shorten the fields of the
//! loaded struct (they are public); nothing in a user's file can bypass the
//! range checks.

use serde::Deserialize;
use toml::Spanned;

use crate::config::{
    HumanDuration, Secret, Validator, unspanned, validate_account, validate_http_url,
};
use crate::sources::proxy::ProxyRoute;
use crate::sources::tls::TlsSettings;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum EngineIo {
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "3")]
    V3,
    #[serde(rename = "4")]
    V4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignForm {
    /// `sign` carries the key string, as in the vendor's example.
    Key,
    /// `sign` carries `{voip, secret}`.
    Object,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voip24hConfig {
    pub account: Spanned<String>,
    pub url: Spanned<String>,
    pub key: Secret,
    #[serde(default = "default_secret")]
    pub secret: Secret,
    #[serde(default = "default_engine_io")]
    pub engine_io: EngineIo,
    #[serde(default = "default_sign")]
    pub sign: SignForm,
    #[serde(default = "default_hello_interval")]
    pub hello_interval: Spanned<HumanDuration>,
    /// How long to stay away after a `Bandwidth` (rate limit) event.
    #[serde(default = "default_bandwidth_backoff")]
    pub bandwidth_backoff: Spanned<HumanDuration>,
    /// `/readyz` is false while this account has not been connected for this long.
    #[serde(default = "default_connect_grace")]
    pub connect_grace: Spanned<HumanDuration>,
    /// First wait before reconnecting; doubles (with jitter) up to `backoff_max`.
    #[serde(default = "default_backoff_min")]
    pub backoff_min: Spanned<HumanDuration>,
    /// Longest wait between reconnect attempts; retries never stop.
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Spanned<HumanDuration>,
    /// Extra certificate authorities for an `https://` url.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Not a key of the table: the proxy `[proxy]` and the environment
    /// choose for `url`, set when the config is loaded.
    #[serde(skip)]
    pub proxy: Option<ProxyRoute>,
}

fn default_secret() -> Secret {
    Secret::new("")
}
fn default_engine_io() -> EngineIo {
    EngineIo::Auto
}
fn default_sign() -> SignForm {
    SignForm::Key
}
fn default_hello_interval() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(15))
}
fn default_bandwidth_backoff() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(60))
}
fn default_connect_grace() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(30))
}
fn default_backoff_min() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(1))
}
fn default_backoff_max() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(60))
}

impl Voip24hConfig {
    pub fn validate(&self, v: &mut Validator) {
        validate_account(v, &self.account);
        validate_http_url(v, "url", &self.url);
        // Said of a url `validate_http_url` takes; another is refused there.
        if let Ok(url) = url::Url::parse(self.url.get_ref())
            && matches!(url.scheme(), "http" | "https")
            && (!url.username().is_empty() || url.password().is_some())
        {
            let message = format!(
                "[[voip24h]] `url` = {} has a user and password in it, which are never sent: a session signs in with `key` and `secret`",
                crate::config::shown_url(&v.shown(&self.url))
            );
            v.error(self.url.span(), message);
        }
        self.tls.validate(v, &self.url);
        if self.key.is_empty() {
            v.error(self.account.span(), "[[voip24h]] `key` must not be empty");
        }
        if self.sign == SignForm::Object && self.secret.is_empty() {
            v.error(
                self.account.span(),
                "[[voip24h]] sign = \"object\" needs `secret`",
            );
        }
        // The vendor: under 10 s congests the socket, over 30 s the server drops the session.
        v.check_range(
            "hello_interval",
            &self.hello_interval,
            HumanDuration::from_secs(10),
            HumanDuration::from_secs(29),
            HumanDuration::to_string,
        );
        v.check_range(
            "backoff_min",
            &self.backoff_min,
            HumanDuration::from_millis(100),
            HumanDuration::from_secs(60),
            HumanDuration::to_string,
        );
        if self.backoff_max.get_ref() < self.backoff_min.get_ref() {
            v.error(
                self.backoff_max.span(),
                "`backoff_max` must not be shorter than `backoff_min`",
            );
        }
        v.check_range(
            "backoff_max",
            &self.backoff_max,
            HumanDuration::from_secs(1),
            HumanDuration::from_secs(3600),
            HumanDuration::to_string,
        );
        // Unchecked, "10000y" passed `check` and the first `Bandwidth` event
        // panicked the account's task (a date past year 9999 in `/status`).
        for (field, value) in [
            ("bandwidth_backoff", &self.bandwidth_backoff),
            ("connect_grace", &self.connect_grace),
        ] {
            v.check_range(
                field,
                value,
                HumanDuration::from_secs(1),
                HumanDuration::from_secs(3600),
                HumanDuration::to_string,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(extra: &str) -> Result<Config, String> {
        let text = format!(
            "[[voip24h]]\naccount = \"m\"\nurl = \"http://127.0.0.1:1\"\nkey = \"k\"\n{extra}"
        );
        Config::from_text("relay.toml", &text, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn hello_interval_stays_in_the_vendors_window() {
        assert!(load("hello_interval = \"15s\"\n").is_ok());
        let err = load("hello_interval = \"5s\"\n").unwrap_err();
        assert!(
            err.contains("relay.toml:5:") && err.contains("hello_interval"),
            "{err}"
        );
        assert!(load("hello_interval = \"30s\"\n").is_err());
    }

    #[test]
    fn backoff_bounds_are_checked() {
        let c = load("").unwrap();
        let v = c.voip24h[0].get_ref();
        assert_eq!(v.backoff_min.get_ref().get().as_secs(), 1);
        assert_eq!(v.backoff_max.get_ref().get().as_secs(), 60);
        let err = load("backoff_min = \"10s\"\nbackoff_max = \"5s\"\n").unwrap_err();
        assert!(err.contains("backoff_max"), "{err}");
        // A fixed delay is a valid choice.
        assert!(load("backoff_min = \"5s\"\nbackoff_max = \"5s\"\n").is_ok());
        assert!(load("backoff_min = \"1ms\"\n").is_err());
    }

    /// The handshake drops a url's userinfo: it passed `check` and was
    /// never sent (vendor review, round 47).
    #[test]
    fn a_user_and_password_in_the_url_are_refused_without_being_shown() {
        let text =
            "[[voip24h]]\naccount = \"m\"\nurl = \"http://u:CANARY@127.0.0.1:1\"\nkey = \"k\"\n";
        let err = Config::from_text("relay.toml", text, &|_| None)
            .map_err(|e| e.to_string())
            .unwrap_err();
        assert!(
            err.starts_with("relay.toml:3:7: [[voip24h]] `url` = \"http://…@127.0.0.1:1/\" has a user and password"),
            "{err}"
        );
        assert!(!err.contains("CANARY"), "{err}");
    }

    #[test]
    fn object_sign_needs_the_secret() {
        assert!(load("sign = \"object\"\n").is_err());
        assert!(load("sign = \"object\"\nsecret = \"s\"\n").is_ok());
    }
}
