//! `[[sprecord]]`: up to three SSE streams per device/account.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{
    HumanDuration, Secret, Validator, unspanned, validate_account, validate_http_url,
};

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
    /// A stream silent for this long is taken as dead and reopened.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: Spanned<HumanDuration>,
    /// `/readyz` is false while this account has had no open stream for this long.
    #[serde(default = "default_connect_grace")]
    pub connect_grace: Spanned<HumanDuration>,
}

fn default_streams() -> Spanned<u8> {
    unspanned(3)
}
fn default_read_timeout() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(60))
}
fn default_connect_grace() -> Spanned<HumanDuration> {
    unspanned(HumanDuration::from_secs(30))
}

impl SprecordConfig {
    pub fn validate(&self, v: &mut Validator) {
        validate_account(v, &self.account);
        validate_http_url(v, "url", &self.url);
        v.check_range("streams", &self.streams, 1, 3, u8::to_string);
        for name in self.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                v.error(
                    self.account.span(),
                    format!("header name {name:?} is not valid"),
                );
            }
        }
    }
}
