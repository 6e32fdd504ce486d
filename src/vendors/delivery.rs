//! One pushed HTTP delivery as the vendor modules see it, and the type that
//! says it has been authenticated.
//!
//! Guarantees (svix-bridge style): a [`Verified`] can only be made by a vendor
//! module's `verify` function after the raw bytes passed that vendor's check,
//! and parsing a webhook takes a `Verified` — so nothing unauthenticated can
//! reach ingest. [`AuthError`] texts name the failed check, never a secret.

use axum::http::HeaderMap;

/// How the delivery came: the vendors POST, Voip24h's feedback callback GETs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Post,
    Get,
}

/// A delivery not yet authenticated: method, headers, query pairs and the raw body.
#[derive(Clone, Copy)]
pub struct Delivery<'a> {
    pub method: Method,
    pub headers: &'a HeaderMap,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Names and sizes only: the headers hold `Authorization` and
/// `X-Hub-Signature`, the query a `?token=`, and one `?delivery` in a log
/// line would have written every webhook's credentials (a derived `Debug`
/// printed them all).
impl std::fmt::Debug for Delivery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.keys().map(|k| k.as_str()).collect();
        let query_names: Vec<&str> = self.query.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Delivery")
            .field("method", &self.method)
            .field("headers", &header_names)
            .field("query", &query_names)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl<'a> Delivery<'a> {
    /// The first value of a header (name case-insensitive), as bytes.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }

    /// A header that carries a credential: refused when sent more than once,
    /// since a proxy in front may check or strip another copy than ours.
    pub fn credential_header(&self, name: &str) -> Result<Option<&'a [u8]>, AuthError> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(AuthError::Repeated(format!("header `{name}`")));
        }
        Ok(first.map(|v| v.as_bytes()))
    }

    /// A query parameter that carries a credential: refused when repeated.
    pub fn credential_param(&self, name: &str) -> Result<Option<&'a str>, AuthError> {
        let mut values = self.query.iter().filter(|(k, _)| k == name);
        let first = values.next();
        if values.next().is_some() {
            return Err(AuthError::Repeated(format!("query parameter `{name}`")));
        }
        Ok(first.map(|(_, v)| v.as_str()))
    }

    /// Whether the body is declared as an HTML form.
    pub fn is_form(&self) -> bool {
        self.header("content-type").is_some_and(|ct| {
            ct.len() >= 33 && ct[..33].eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
        })
    }
}

/// A delivery that passed its vendor's authentication check, and whether
/// it did with an older value of a credential under rotation (not the
/// list's first).
#[derive(Clone, Copy, Debug)]
pub struct Verified<'a>(Delivery<'a>, bool);

impl<'a> Verified<'a> {
    /// Only the vendor modules vouch for a delivery, after checking it.
    pub(super) fn new(delivery: Delivery<'a>) -> Self {
        Verified(delivery, false)
    }

    /// Vouched for by the credential's value at `position` in its list.
    pub(super) fn by_value_at(delivery: Delivery<'a>, position: usize) -> Self {
        Verified(delivery, position > 0)
    }

    /// Whether an older value of the credential let it in: the vendor has
    /// not switched to the new one yet.
    pub fn by_an_older_credential(&self) -> bool {
        self.1
    }

    pub fn delivery(&self) -> &Delivery<'a> {
        &self.0
    }
}

/// A delivery whose credentials, in a header or the query, passed before its
/// body was read; made only for vendors whose check does not read the body
/// ([`Credentials::verify_head`](super::Credentials::verify_head)), so
/// the body can be attached afterwards without checking again.
#[derive(Clone, Copy, Debug)]
pub struct VerifiedHead<'a>(pub(super) Verified<'a>);

impl<'a> VerifiedHead<'a> {
    pub fn with_body(self, body: &'a [u8]) -> Verified<'a> {
        Verified(Delivery { body, ..self.0.0 }, self.0.1)
    }
}

/// Why a delivery was not authenticated (a 401). The text names the check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing X-Hub-Signature header")]
    MissingSignature,
    #[error("X-Hub-Signature is not a hex HMAC-SHA1")]
    MalformedSignature,
    #[error("X-Hub-Signature does not match the body")]
    BadSignature,
    #[error("missing api key ({0})")]
    MissingApiKey(String),
    #[error("the api key is wrong ({0})")]
    BadApiKey(String),
    #[error("missing HTTP Basic credentials")]
    MissingBasic,
    #[error("malformed HTTP Basic credentials")]
    MalformedBasic,
    #[error("wrong HTTP Basic username or password")]
    BadBasic,
    #[error("missing ?token= query parameter")]
    MissingToken,
    #[error("wrong ?token= query parameter")]
    BadToken,
    #[error("{0} is sent more than once")]
    Repeated(String),
    #[error("HTTP Basic credentials (header `authorization`) are sent more than once")]
    RepeatedBasic,
}

impl AuthError {
    /// Whether the answer should carry `WWW-Authenticate: Basic`: every
    /// refusal of a Basic check, as RFC 7235 asks of a 401.
    pub fn wants_basic(&self) -> bool {
        matches!(
            self,
            AuthError::MissingBasic
                | AuthError::MalformedBasic
                | AuthError::BadBasic
                | AuthError::RepeatedBasic
        )
    }
}

/// The query parameter Voip24h's and SPRecord's token travels in: one name
/// for the check, the webhook's bounded read of a refused query
/// ([`super::Credentials::query_param`]) and the feedback event's fields,
/// so that none of them looks for a parameter the others do not.
pub(super) const TOKEN_PARAM: &str = "token";

/// The `?token=` check shared by Voip24h and SPRecord, in constant time;
/// which accepted value matched.
pub(super) fn check_token(
    expected: &crate::config::Accepted,
    delivery: &Delivery<'_>,
) -> Result<usize, AuthError> {
    let presented = delivery
        .credential_param(TOKEN_PARAM)?
        .ok_or(AuthError::MissingToken)?;
    expected
        .position(presented.as_bytes())
        .ok_or(AuthError::BadToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_query(query: &[(String, String)]) -> Result<(), AuthError> {
        let headers = axum::http::HeaderMap::new();
        let delivery = Delivery {
            method: Method::Post,
            headers: &headers,
            query,
            body: b"",
        };
        check_token(&crate::config::Accepted::one("t0ken"), &delivery).map(drop)
    }

    #[test]
    fn a_delivery_shown_for_debugging_names_its_credentials_without_them() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("authorization", "Bearer s3cret-key".parse().unwrap());
        headers.insert("x-hub-signature", "sha1=0badc0de".parse().unwrap());
        let query = [("token".to_owned(), "query-s3cret".to_owned())];
        let delivery = Delivery {
            method: Method::Post,
            headers: &headers,
            query: &query,
            body: b"{\"password\":\"body-s3cret\"}",
        };
        let shown = format!("{:?}", Verified::new(delivery));
        for secret in ["s3cret-key", "0badc0de", "query-s3cret", "body-s3cret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("authorization") && shown.contains("token"),
            "{shown}"
        );
    }

    fn token(value: &str) -> (String, String) {
        ("token".to_owned(), value.to_owned())
    }

    #[test]
    fn the_query_token_must_be_there_once_and_equal() {
        assert_eq!(with_query(&[token("t0ken")]), Ok(()));
        assert_eq!(with_query(&[]), Err(AuthError::MissingToken));
        assert_eq!(with_query(&[token("t0ke")]), Err(AuthError::BadToken));
        assert_eq!(with_query(&[token("T0KEN")]), Err(AuthError::BadToken));
        assert_eq!(
            with_query(&[token("t0ken"), token("t0ken")]),
            Err(AuthError::Repeated("query parameter `token`".into()))
        );
    }

    #[test]
    fn a_head_checked_delivery_gets_the_body_read_after() {
        let headers = axum::http::HeaderMap::new();
        let head = Delivery {
            method: Method::Post,
            headers: &headers,
            query: &[],
            body: b"",
        };
        let verified = VerifiedHead(Verified::new(head)).with_body(b"{\"a\":1}");
        assert_eq!(verified.delivery().body, b"{\"a\":1}");
    }
}
