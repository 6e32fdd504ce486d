//! Who may open the fan-out: a token from `Authorization: Bearer TOKEN` or
//! `?token=TOKEN`, checked against `websocket.tokens`.
//!
//! Guarantees: every configured token is compared in constant time and the
//! loop does not stop at the first match, its answer kept in `subtle`'s
//! `Choice` (which token matched, if any, is not observable by timing; how
//! many there are is, as each costs a comparison); an empty token list (which
//! `callrelay check` refuses unless the listener is loopback) admits only
//! requests that carry no proxy header and, from a browser, only pages of
//! this machine or of `allowed_origins`, judged at the upgrade and again
//! after each reload ([`tokenless_refusal`]).
//! Nothing here logs a token; the one a client presented is kept by its
//! session only, so a reload that stops accepting it can end the session.

use axum::http::{HeaderMap, header};
use subtle::{Choice, ConstantTimeEq};

use crate::config::Secret;

/// Why a client was refused (the 401 body says which check failed, never a value).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("a token is required: `Authorization: Bearer TOKEN` or `?token=TOKEN`")]
    Missing,
    #[error("the token is not accepted")]
    Wrong,
    #[error(
        "the token is sent more than once (two `Authorization: Bearer` headers or two `?token=`)"
    )]
    Repeated,
}

/// Refuses a token sent twice in one place (two `Bearer` headers, or
/// `?token=` twice): a proxy in front may check or strip another copy than
/// the one the relay would take. Another scheme beside a `Bearer` (a proxy's
/// `Basic`) is not a second token.
pub fn sent_once(headers: &HeaderMap, query_token_repeated: bool) -> Result<(), AuthError> {
    let bearers = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| bearer(v.as_bytes()))
        .count();
    if query_token_repeated || bearers > 1 {
        Err(AuthError::Repeated)
    } else {
        Ok(())
    }
}

/// The token of an `Authorization: Bearer TOKEN` value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at(value.len().min(7));
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// The token the client presented: a `Bearer` header first, else the query.
pub fn presented<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<&'a [u8]> {
    let from_header = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .find_map(|v| bearer(v.as_bytes()));
    from_header.or(query_token.map(str::as_bytes))
}

/// Whether a browser page of `origin` (the upgrade's `Origin` header) may
/// open a fan-out that asks for no token. Browsers let any page open a
/// WebSocket to any address, the relay's loopback listener included, and
/// send the page's origin: without this, any site the call centre's agent
/// visited could read every call from a relay on the agent's PC. A page
/// served from the machine itself is let in (`localhost`, `*.localhost`,
/// `127.x.x.x`, `[::1]`, any port or scheme), and one of an origin in
/// `allowed` (`"*"`: any); `null` (a sandboxed frame, a `file:` page) is
/// refused unless allowed, as any site can make one. A request without
/// `Origin` is not a browser's (`callrelay tail`, a service) and is let in.
pub fn origin_may_open_without_token(origin: Option<&[u8]>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    let origin = origin.trim();
    let url = url::Url::parse(origin).ok();
    // Compared as browsers write an origin: an entry with the scheme's
    // default port (`https://crm.example:443`) or a Unicode host never
    // matched the `https://crm.example` or punycode a browser sends.
    let serialized = url.as_ref().map(|u| u.origin().ascii_serialization());
    let same_origin = |entry: &String| {
        entry.trim_end_matches('/').eq_ignore_ascii_case(origin)
            || url::Url::parse(entry).is_ok_and(|e| {
                let entry = e.origin();
                entry.is_tuple() && Some(entry.ascii_serialization()) == serialized
            })
    };
    if allowed.iter().any(|a| a == "*" || same_origin(a)) {
        return true;
    }
    let Some(url) = url else {
        return false;
    };
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            name.eq_ignore_ascii_case("localhost")
                || name
                    .get(name.len().saturating_sub(10)..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"))
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

/// The headers a proxy adds to what it forwards. A fan-out that asks for no
/// token is for this machine only (its listener is loopback), and a reverse
/// proxy on the same host connects from loopback too: a request carrying
/// one of these came from wherever the proxy serves, the internet perhaps.
const PROXY_HEADERS: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
];

/// Whether a request came through a proxy, by the headers proxies add.
pub fn came_through_a_proxy(headers: &axum::http::HeaderMap) -> bool {
    PROXY_HEADERS.iter().any(|name| headers.contains_key(*name))
}

/// Why a fan-out that asks for no token refuses a connection, if it does:
/// it came through a proxy (`proxied`), or it is a browser page of an
/// origin not let in ([`origin_may_open_without_token`]). Judged at the
/// upgrade and again after each reload that leaves no tokens.
pub fn tokenless_refusal(
    proxied: bool,
    origin: Option<&[u8]>,
    allowed: &[String],
) -> Option<super::Refusal> {
    if proxied {
        Some(super::Refusal::Proxied)
    } else if !origin_may_open_without_token(origin, allowed) {
        Some(super::Refusal::ForeignOrigin)
    } else {
        None
    }
}

/// Why an `allowed_origins` entry can never match a browser's `Origin`;
/// said after the entry.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginEntryError {
    #[error("is not an origin (scheme://host[:port])")]
    NotAUrl,
    #[error("is not an origin: scheme://host[:port], with no path, query or user")]
    NotBare,
}

/// Why an `allowed_origins` entry can never match a browser's `Origin`
/// (`scheme://host[:port]`, no path), if it cannot.
pub fn check_allowed_origin(origin: &str) -> Result<(), OriginEntryError> {
    if origin == "*" || origin == "null" {
        return Ok(());
    }
    let url = url::Url::parse(origin).map_err(|_| OriginEntryError::NotAUrl)?;
    // A special scheme's (http, https) path is `/`; another's (a browser
    // extension's) is empty.
    let bare = matches!(url.path(), "/" | "") && url.query().is_none() && url.fragment().is_none();
    if url.host().is_none() || !bare || !url.username().is_empty() {
        return Err(OriginEntryError::NotBare);
    }
    Ok(())
}

/// Checks a presented `token` (if any) against `tokens` (empty: anyone is accepted).
pub fn check_token(tokens: &[Secret], token: Option<&[u8]>) -> Result<(), AuthError> {
    if tokens.is_empty() {
        return Ok(());
    }
    let token = token.ok_or(AuthError::Missing)?;
    // Folded in `subtle`'s `Choice`, which the optimiser cannot see through:
    // a fold of plain `bool`s may be compiled into a loop that stops at the
    // first match. `ct_eq` is the compare `Secret::matches` makes (lengths,
    // then every byte), answering a `Choice` instead of a `bool`.
    let accepted = tokens.iter().fold(Choice::from(0), |ok, t| {
        ok | t.expose().as_bytes().ct_eq(token)
    });
    if bool::from(accepted) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_a_page_of_this_machine_opens_a_fan_out_without_a_token() {
        for allowed in [
            None,
            Some("http://localhost.:3000"),
            Some("http://[::ffff:127.0.0.1]:8080"),
            Some("http://localhost:3000"),
            Some("https://LOCALHOST"),
            Some("http://crm.localhost:8081"),
            Some("http://127.0.0.1:8080"),
            Some("http://127.1.2.3"),
            Some("http://[::1]:5173"),
        ] {
            assert!(
                origin_may_open_without_token(allowed.map(str::as_bytes), &[]),
                "{allowed:?}"
            );
        }
        for refused in [
            "https://evil.example",
            "null",
            "http://localhost.evil.example",
            "http://evillocalhost",
            "http://10.0.0.5:8080",
            "http://192.168.1.10",
            "file://",
            "",
            "not a url",
        ] {
            assert!(
                !origin_may_open_without_token(Some(refused.as_bytes()), &[]),
                "{refused}"
            );
        }
        assert!(!origin_may_open_without_token(Some(b"http://\xff"), &[]));
        // Named origins, and any with "*".
        let crm = vec!["https://CRM.example/".to_owned()];
        assert!(origin_may_open_without_token(
            Some(b"https://crm.example"),
            &crm
        ));
        assert!(!origin_may_open_without_token(
            Some(b"https://crm.example:8443"),
            &crm
        ));
        assert!(!origin_may_open_without_token(
            Some(b"http://crm.example"),
            &crm
        ));
        assert!(origin_may_open_without_token(
            Some(b"null"),
            &["*".to_owned()]
        ));
        // An entry is compared as a browser writes an origin: the scheme's
        // default port left out, a Unicode host in punycode.
        for (entry, sent) in [
            ("https://crm.example.com:443", "https://crm.example.com"),
            ("http://crm.example.com:80", "http://crm.example.com"),
            ("https://bücher.example", "https://xn--bcher-kva.example"),
        ] {
            assert!(
                origin_may_open_without_token(Some(sent.as_bytes()), &[entry.to_owned()]),
                "{entry} / {sent}"
            );
        }
        assert!(!origin_may_open_without_token(
            Some(b"https://crm.example.com:8443"),
            &["https://crm.example.com:443".to_owned()]
        ));
        for good in [
            "*",
            "null",
            "https://crm.example",
            "http://10.0.0.5:8080",
            "chrome-extension://abcdef",
        ] {
            assert_eq!(check_allowed_origin(good), Ok(()), "{good}");
        }
        assert_eq!(
            check_allowed_origin("crm.example"),
            Err(OriginEntryError::NotAUrl)
        );
        for bad in [
            "https://crm.example/app",
            "https://u@crm.example",
            "https://crm.example/?x=1",
        ] {
            assert_eq!(
                check_allowed_origin(bad),
                Err(OriginEntryError::NotBare),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_request_through_a_proxy_is_told_by_the_headers_proxies_add() {
        assert!(!came_through_a_proxy(&HeaderMap::new()));
        for name in PROXY_HEADERS {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static("203.0.113.7"));
            assert!(came_through_a_proxy(&headers), "{name}");
        }
    }

    /// What `connect` does with a request's header and query.
    fn check(
        tokens: &[Secret],
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<(), AuthError> {
        check_token(tokens, presented(headers, query_token))
    }

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn bearer_or_query() {
        let tokens = [Secret::new("s3cret"), Secret::new("other")];
        assert_eq!(
            check(&tokens, &headers(Some("Bearer s3cret")), None),
            Ok(())
        );
        assert_eq!(check(&tokens, &headers(Some("bearer other")), None), Ok(()));
        assert_eq!(check(&tokens, &headers(None), Some("other")), Ok(()));
        assert_eq!(
            check(&tokens, &headers(Some("Bearer nope")), Some("s3cret")),
            Err(AuthError::Wrong),
            "a wrong header is not rescued by the query"
        );
        assert_eq!(
            check(&tokens, &headers(None), Some("s3cre")),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            check(&tokens, &headers(Some("Basic s3cret")), None),
            Err(AuthError::Missing)
        );
        assert_eq!(
            check(&tokens, &headers(None), None),
            Err(AuthError::Missing)
        );
        assert_eq!(check(&[], &headers(None), None), Ok(()));
        // A token listed twice (a rotation half done) is still accepted.
        let twice = [Secret::new("s3cret"), Secret::new("s3cret")];
        assert_eq!(check(&twice, &headers(Some("Bearer s3cret")), None), Ok(()));
    }

    /// A token is accepted wherever it is in the list, the last place too
    /// (every token is compared); a prefix of one, one with more after it,
    /// and an empty one are not.
    #[test]
    fn a_token_is_accepted_at_any_place_in_the_list() {
        let tokens = ["first", "second", "third", "last"].map(Secret::new);
        for token in ["first", "second", "third", "last"] {
            assert_eq!(
                check_token(&tokens, Some(token.as_bytes())),
                Ok(()),
                "{token}"
            );
        }
        for token in ["las", "lastt", "", "LAST"] {
            assert_eq!(
                check_token(&tokens, Some(token.as_bytes())),
                Err(AuthError::Wrong),
                "{token:?}"
            );
        }
    }

    #[test]
    fn two_bearer_tokens_are_refused_and_a_proxys_basic_beside_one_is_not() {
        let both = |a: &str, b: &str| {
            let mut h = HeaderMap::new();
            h.append(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
            h.append(header::AUTHORIZATION, HeaderValue::from_str(b).unwrap());
            h
        };
        let two = both("Bearer nope", "Bearer s3cret");
        assert_eq!(sent_once(&two, false), Err(AuthError::Repeated));
        let proxied = both("Basic cHJveHk6cHc=", "Bearer s3cret");
        assert_eq!(sent_once(&proxied, false), Ok(()));
        assert_eq!(presented(&proxied, None), Some(&b"s3cret"[..]));
        assert_eq!(sent_once(&headers(None), true), Err(AuthError::Repeated));
    }
}
