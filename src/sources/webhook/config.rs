//! `[[webhook]]`: one pushed vendor account, with that vendor's credentials.
//!
//! Guarantees: a `[[webhook]]` that passes has exactly the credentials its
//! vendor needs and none of another vendor's fields.

use serde::Deserialize;
use toml::Spanned;

use crate::config::{Accepted, Validator, validate_account};
use crate::event::Vendor;
use crate::vendors::Credentials;

/// How SPRecord's verification handshake is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerificationReply {
    /// The MD5 hex as text/plain.
    #[default]
    Plain,
    /// `{"result": "<md5>"}`.
    Json,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub vendor: Vendor,
    pub account: Spanned<String>,
    /// CareSoft: the HMAC-SHA1 key.
    #[serde(default)]
    pub secret: Option<Spanned<Accepted>>,
    /// Tel4vn: the callback api key.
    #[serde(default)]
    pub api_key: Option<Spanned<Accepted>>,
    /// Tel4vn: the header carrying the key (`Bearer KEY` or the bare key).
    #[serde(default)]
    pub api_key_header: Option<Spanned<String>>,
    /// Tel4vn: take the key from this query parameter instead of a header.
    #[serde(default)]
    pub api_key_query: Option<Spanned<String>>,
    /// VOIPEX: HTTP Basic auth.
    #[serde(default)]
    pub username: Option<Spanned<String>>,
    #[serde(default)]
    pub password: Option<Spanned<Accepted>>,
    /// Voip24h (required) and SPRecord (optional): `?token=` on the URL.
    #[serde(default)]
    pub token: Option<Spanned<Accepted>>,
    /// SPRecord: how the verification handshake is answered.
    #[serde(default)]
    pub verification_reply: Option<Spanned<VerificationReply>>,
}

impl WebhookConfig {
    pub fn validate(&self, v: &mut Validator) {
        validate_account(v, &self.account);
        let at = self.account.span();
        let vendor = self.vendor;
        let mut require = |present: bool, field: &str| {
            if !present {
                v.error(at.clone(), format!("[[webhook]] {vendor} needs `{field}`"));
            }
        };
        match vendor {
            Vendor::Caresoft => require(self.secret.is_some(), "secret"),
            Vendor::Tel4vn => require(self.api_key.is_some(), "api_key"),
            Vendor::Voipex => {
                require(self.username.is_some(), "username");
                require(self.password.is_some(), "password");
            }
            Vendor::Voip24h => require(self.token.is_some(), "token"),
            Vendor::Sprecord => {}
        }
        let allowed: &[&str] = match vendor {
            Vendor::Caresoft => &["secret"],
            Vendor::Tel4vn => &["api_key", "api_key_header", "api_key_query"],
            Vendor::Voipex => &["username", "password"],
            Vendor::Voip24h => &["token"],
            Vendor::Sprecord => &["token", "verification_reply"],
        };
        let present = [
            ("secret", self.secret.as_ref().map(|s| s.span())),
            ("api_key", self.api_key.as_ref().map(|s| s.span())),
            (
                "api_key_header",
                self.api_key_header.as_ref().map(|s| s.span()),
            ),
            (
                "api_key_query",
                self.api_key_query.as_ref().map(|s| s.span()),
            ),
            ("username", self.username.as_ref().map(|s| s.span())),
            ("password", self.password.as_ref().map(|s| s.span())),
            ("token", self.token.as_ref().map(|s| s.span())),
            (
                "verification_reply",
                self.verification_reply.as_ref().map(|s| s.span()),
            ),
        ];
        for (field, span) in present {
            if let Some(span) = span
                && !allowed.contains(&field)
            {
                v.error(span, format!("`{field}` is not used by {vendor} webhooks"));
            }
        }
        if let Some(h) = &self.api_key_header
            && axum::http::HeaderName::from_bytes(h.get_ref().as_bytes()).is_err()
        {
            let message = format!(
                "`api_key_header` = {} is not an HTTP header name",
                v.shown(h)
            );
            v.error(h.span(), message);
        }
        if let Some(user) = &self.username
            && user.get_ref().is_empty()
        {
            // An empty `${VOIPEX_USERNAME}` would let Basic `:<password>` in.
            v.error(user.span(), "a credential must not be empty");
        }
        if let Some(user) = &self.username
            && user.get_ref().contains(':')
        {
            // RFC 7617: the first `:` ends the user-id, so the sender's
            // `user:with:colons:password` can never match.
            v.error(
                user.span(),
                "`username` must not contain `:`: HTTP Basic auth ends the user name at the first one, so no delivery could match",
            );
        }
        if let Some(q) = &self.api_key_query {
            if q.get_ref().is_empty() {
                v.error(q.span(), "`api_key_query` must not be empty");
            } else if q.get_ref().eq_ignore_ascii_case("event") {
                // `?event=`, in any case, names the hook's subscription
                // (vendors::tel4vn::hook_event).
                v.error(
                    q.span(),
                    "`api_key_query` must not be `event`: `?event=` names the Tel4vn hook event a callback URL is for",
                );
            }
        }
        for secret in [&self.secret, &self.api_key, &self.password, &self.token]
            .into_iter()
            .flatten()
        {
            if secret.get_ref().values().iter().any(|s| s.is_empty()) {
                v.error(secret.span(), "a credential must not be empty");
            }
            if secret.get_ref().values().len() > MAX_ACCEPTED {
                v.error(
                    secret.span(),
                    format!("at most {MAX_ACCEPTED} values: the new and the old during a rotation"),
                );
            }
        }
    }
}

impl WebhookConfig {
    /// The credentials the vendor module checks deliveries against; `None`
    /// only for a config that skipped validation (a required field missing).
    pub fn credentials(&self) -> Option<Credentials> {
        let secret = |s: &Option<Spanned<Accepted>>| s.as_ref().map(|s| s.get_ref().clone());
        Some(match self.vendor {
            Vendor::Caresoft => Credentials::Caresoft {
                secret: secret(&self.secret)?,
            },
            Vendor::Tel4vn => Credentials::Tel4vn {
                api_key: secret(&self.api_key)?,
                header: self.api_key_header.as_ref().map_or_else(
                    || DEFAULT_API_KEY_HEADER.to_owned(),
                    |h| h.get_ref().clone(),
                ),
                query: self.api_key_query.as_ref().map(|q| q.get_ref().clone()),
            },
            Vendor::Voipex => Credentials::Voipex {
                username: self.username.as_ref()?.get_ref().clone(),
                password: secret(&self.password)?,
            },
            Vendor::Voip24h => Credentials::Voip24h {
                token: secret(&self.token)?,
            },
            Vendor::Sprecord => Credentials::Sprecord {
                token: secret(&self.token),
            },
        })
    }

    /// How SPRecord's verification is answered (`plain` unless configured).
    pub fn verification_reply(&self) -> VerificationReply {
        self.verification_reply
            .as_ref()
            .map(|r| *r.get_ref())
            .unwrap_or_default()
    }
}

/// The most values one credential accepts at once.
const MAX_ACCEPTED: usize = 4;

/// Tel4vn's api key header when `api_key_header` is not set.
pub const DEFAULT_API_KEY_HEADER: &str = "Authorization";

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::vendors::Credentials;

    fn load(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_text("relay.toml", text, &|_| None)
    }

    #[test]
    fn the_embedded_default_has_one_demo_webhook_per_vendor() {
        let text = include_str!("../../../relay.toml");
        let c = load(text).unwrap_or_else(|e| panic!("{e}"));
        let mut vendors: Vec<_> = c.webhook.iter().map(|w| w.get_ref().vendor).collect();
        vendors.sort();
        vendors.dedup();
        assert_eq!(vendors.len(), 5);
        for w in &c.webhook {
            assert!(
                w.get_ref().credentials().is_some(),
                "{:?}",
                w.get_ref().vendor
            );
        }
    }

    #[test]
    fn credentials_carry_the_tel4vn_defaults_and_choices() {
        let c = load(
            "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"a\"\napi_key = \"k\"\n\n\
             [[webhook]]\nvendor = \"tel4vn\"\naccount = \"b\"\napi_key = \"k\"\n\
             api_key_header = \"X-Api-Key\"\napi_key_query = \"apikey\"\n",
        )
        .unwrap();
        match c.webhook[0].get_ref().credentials() {
            Some(Credentials::Tel4vn { header, query, .. }) => {
                assert_eq!(header, "Authorization");
                assert_eq!(query, None);
            }
            other => panic!("{other:?}"),
        }
        match c.webhook[1].get_ref().credentials() {
            Some(Credentials::Tel4vn { header, query, .. }) => {
                assert_eq!(header, "X-Api-Key");
                assert_eq!(query.as_deref(), Some("apikey"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_voipex_username_cannot_hold_a_colon() {
        let Err(e) = load(
            "[[webhook]]\nvendor = \"voipex\"\naccount = \"v\"\nusername = \"ops:team\"\npassword = \"p:w\"\n",
        ) else {
            panic!("Basic auth ends the user name at the first `:`");
        };
        let e = e.to_string();
        assert!(e.contains("4:12: `username` must not contain `:`"), "{e}");
        assert!(
            !e.contains("password"),
            "a `:` in the password is fine: {e}"
        );
    }

    /// An unset or empty `${VOIPEX_USERNAME}` made the user name empty, and
    /// Basic `:<password>` was then accepted (audit of 2026-12-07).
    #[test]
    fn an_empty_voipex_username_is_refused_like_a_credential() {
        let text = "[[webhook]]\nvendor = \"voipex\"\naccount = \"v\"\nusername = \"${VOIPEX_USERNAME}\"\npassword = \"pw\"\n";
        let lookup = |name: &str| (name == "VOIPEX_USERNAME").then(String::new);
        let Err(e) = Config::from_text("relay.toml", text, &lookup) else {
            panic!("an empty user name lets `:<password>` in");
        };
        let e = e.to_string();
        assert!(e.contains("relay.toml:4:"), "{e}");
        assert!(e.contains("a credential must not be empty"), "{e}");
        assert!(
            load("[[webhook]]\nvendor = \"voipex\"\naccount = \"v\"\nusername = \"\"\npassword = \"pw\"\n")
                .is_err()
        );
    }

    #[test]
    fn the_tel4vn_key_cannot_travel_in_the_event_parameter() {
        let Err(e) = load(
            "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"a\"\napi_key = \"k\"\napi_key_query = \"event\"\n",
        ) else {
            panic!("`event` is the hook event's parameter");
        };
        assert!(
            e.to_string()
                .contains("5:17: `api_key_query` must not be `event`"),
            "{e}"
        );
        let Err(e) = load(
            "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"a\"\napi_key = \"k\"\napi_key_query = \"Event\"\n",
        ) else {
            panic!("`Event` is the hook event's parameter too");
        };
        assert!(e.to_string().contains("must not be `event`"), "{e}");
    }

    #[test]
    fn a_header_name_that_is_not_one_is_a_config_error() {
        let e = load(
            "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"a\"\napi_key = \"k\"\n\
             api_key_header = \"Bad Header\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("relay.toml:5:"), "{e}");
        assert!(e.contains("not an HTTP header name"), "{e}");
    }

    #[test]
    fn the_sprecord_verification_is_answered_plain_unless_configured() {
        let c = load(
            "[[webhook]]\nvendor = \"sprecord\"\naccount = \"a\"\n\n\
             [[webhook]]\nvendor = \"sprecord\"\naccount = \"b\"\nverification_reply = \"json\"\n\n\
             [[webhook]]\nvendor = \"sprecord\"\naccount = \"c\"\nverification_reply = \"plain\"\n",
        )
        .unwrap();
        let replies: Vec<_> = c
            .webhook
            .iter()
            .map(|w| w.get_ref().verification_reply())
            .collect();
        use super::VerificationReply::{Json, Plain};
        assert_eq!(replies, [Plain, Json, Plain]);
    }

    /// During a rotation a credential takes a few values, none empty.
    #[test]
    fn a_credential_takes_up_to_four_values_none_empty() {
        let hook = |secret: &str| {
            load(&format!(
                "[[webhook]]\nvendor = \"caresoft\"\naccount = \"cs\"\nsecret = {secret}\n"
            ))
        };
        assert!(hook(r#"["new", "old"]"#).is_ok());
        let empty = hook(r#"["new", ""]"#).unwrap_err().to_string();
        assert!(empty.contains("must not be empty"), "{empty}");
        let many = hook(r#"["a", "b", "c", "d", "e"]"#)
            .unwrap_err()
            .to_string();
        assert!(many.contains("at most 4 values"), "{many}");
    }
}
