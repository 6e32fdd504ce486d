//! Who may open the fan-out, and what each may see: a token from
//! `Authorization: Bearer TOKEN` or `?token=TOKEN`, checked against
//! `websocket.tokens`, whose entry gives its [`Scope`] (every account, or
//! the accounts its table lists).
//!
//! Guarantees: a check costs the same however many tokens are configured:
//! the presented token is hashed once (SHA-256), the digest looked up among
//! the configured tokens' ([`Tokens`], built when the config is read), and
//! the one entry found, if any, compared with the token in constant time
//! (`subtle`), lengths first, as `Secret` does. Nothing is compared byte by
//! byte with a configured token except in that last compare.
//! What timing shows: the presented token's own length (the hash reads it);
//! whether the token was accepted; once it was, what follows differs by its
//! scope (reading it, a filtered session, a 403 for a filter outside it),
//! which tells the token's holder its own scope. The look-up's time may
//! depend on the presented token's digest and on the configured digests
//! near it in the table (std's `HashMap`, keyed at random per table): at
//! most, how many leading bytes of a guess's digest some configured digest
//! shares, which SHA-256 makes useless for finding a token.
//! What it does not show: how close a wrong token came to any configured
//! one, its length, how many tokens there are, or which entry matched
//! beyond what its scope tells.
//! An empty token list (which `callrelay check` refuses unless the
//! listener is loopback) admits only requests that carry no proxy header
//! and, from a browser, only pages of this machine or of `allowed_origins`,
//! judged at the upgrade and again after each reload ([`tokenless_refusal`]).
//! A scoped session is served its `account` filter, or its scope's accounts
//! when it gave none ([`Scope::narrow`]); accounts are matched exactly, as
//! the filter matches them.
//! Nothing here logs a token; the one a client presented is kept by its
//! session only, so a reload that stops accepting it, or changes its scope,
//! can end the session.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use subtle::{Choice, ConstantTimeEq};

use super::config::{TokenEntry, Tokens, token_digest};
use super::filter::Filter;
use crate::config::Secret;

/// Why a client was refused (the 401 body says which check failed, never a value).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("a token is required: `Authorization: Bearer TOKEN` or `?token=TOKEN`")]
    Missing,
    #[error("the token is not accepted")]
    Wrong,
    /// Only `?token=` was sent, and its value does not decode to text.
    #[error(
        "the `?token=` value is not UTF-8 once percent-decoded, so no token can match it: percent-encode the token's UTF-8 bytes, or send `Authorization: Bearer TOKEN`"
    )]
    NotUtf8,
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

/// What a session may see: every account's events, or those of the
/// accounts its token's entry lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Every,
    /// Sorted, without repeats: the same accounts listed in another order
    /// are the same scope (a reload that reorders them changes nothing).
    Accounts(Arc<[String]>),
}

impl Scope {
    /// The scope an entry of `tokens` gives.
    pub fn of(entry: &TokenEntry) -> Scope {
        let Some(accounts) = &entry.accounts else {
            return Scope::Every;
        };
        let mut names: Vec<String> = accounts
            .get_ref()
            .iter()
            .map(|a| a.get_ref().clone())
            .collect();
        names.sort_unstable();
        names.dedup();
        Scope::Accounts(names.into())
    }

    /// The filter a session of this scope is served: the client's as it
    /// asked, when it named accounts of the scope only; with the scope's
    /// accounts as its `account` filter, when it named none. A client that
    /// named an account outside the scope is refused (a 403 before the
    /// upgrade) rather than served a part of what it asked for.
    pub fn narrow(&self, mut filter: Filter) -> Result<Filter, OutOfScope> {
        let Scope::Accounts(allowed) = self else {
            return Ok(filter);
        };
        // An empty `accounts` filter matches every account: a scope of none
        // (which `check` refuses) must not become one.
        if allowed.is_empty() {
            return Err(OutOfScope {
                asked: String::new(),
                allowed: allowed.clone(),
            });
        }
        if filter.accounts.is_empty() {
            filter.accounts = allowed.to_vec();
            return Ok(filter);
        }
        match filter.accounts.iter().find(|a| !allowed.contains(*a)) {
            None => Ok(filter),
            Some(outside) => Err(OutOfScope {
                asked: crate::logging::excerpt(outside),
                allowed: allowed.clone(),
            }),
        }
    }
}

/// A client's `account` filter names an account its token may not see
/// (answered 403 before the upgrade). The body names the account the client
/// asked for (cut short) and the accounts its own token opens; no token.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "this token may not see account {asked:?}: it opens {}; leave `account` out to get all of them, or name some of them",
    quoted(allowed)
)]
pub struct OutOfScope {
    asked: String,
    allowed: Arc<[String]>,
}

/// `"hn", "sg"`.
fn quoted(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(", ")
}

/// Checks a presented `token` (if any) against `tokens` (empty: anyone is
/// accepted, with every account) and answers the scope of the entry it is
/// (the first, should one be given twice).
pub fn check_token(tokens: &Tokens, token: Option<&[u8]>) -> Result<Scope, AuthError> {
    if tokens.is_empty() {
        return Ok(Scope::Every);
    }
    let token = token.ok_or(AuthError::Missing)?;
    let at = matching_entry(tokens, token).ok_or(AuthError::Wrong)?;
    tokens.get(at).map(Scope::of).ok_or(AuthError::Wrong)
}

/// The place of the first entry whose token is `token`. `ct_eq` is the
/// compare `Secret::matches` makes (lengths, then every byte), answering a
/// `Choice`.
fn matching_entry(tokens: &Tokens, token: &[u8]) -> Option<usize> {
    matching_entry_by(tokens, token, |secret, token| {
        secret.expose().as_bytes().ct_eq(token)
    })
}

/// [`matching_entry`], with `same` the constant-time compare (the tests
/// count its calls). The digest alone would do, short of a SHA-256
/// collision; the compare makes the token itself what is accepted.
fn matching_entry_by(
    tokens: &Tokens,
    token: &[u8],
    mut same: impl FnMut(&Secret, &[u8]) -> Choice,
) -> Option<usize> {
    let at = tokens.first_with_digest(&token_digest(token))?;
    let entry = tokens.get(at)?;
    bool::from(same(entry.token.get_ref(), token)).then_some(at)
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

    fn table(entries: impl IntoIterator<Item = TokenEntry>) -> Tokens {
        Tokens::from(entries.into_iter().collect::<Vec<_>>())
    }

    /// What `connect` does with a request's header and query.
    fn check(
        tokens: &Tokens,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<(), AuthError> {
        check_token(tokens, presented(headers, query_token)).map(drop)
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
        let tokens = table(["s3cret", "other"].map(TokenEntry::every_account));
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
        assert_eq!(check(&Tokens::default(), &headers(None), None), Ok(()));
        // A token listed twice (a rotation half done) is still accepted.
        let twice = table(["s3cret", "s3cret"].map(TokenEntry::every_account));
        assert_eq!(check(&twice, &headers(Some("Bearer s3cret")), None), Ok(()));
    }

    /// A token is accepted wherever it is in the list, the last place too;
    /// a prefix of one, one with more after it,
    /// and an empty one are not.
    #[test]
    fn a_token_is_accepted_at_any_place_in_the_list() {
        let tokens = table(["first", "second", "third", "last"].map(TokenEntry::every_account));
        for token in ["first", "second", "third", "last"] {
            assert_eq!(
                check_token(&tokens, Some(token.as_bytes())),
                Ok(Scope::Every),
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

    /// The scope answered is the matching entry's, wherever it is in the
    /// list; a token given twice answers its first entry.
    #[test]
    fn the_matching_entrys_scope_is_selected_at_any_place() {
        let accounts =
            |names: &[&str]| Scope::Accounts(names.iter().map(|n| n.to_string()).collect());
        let tokens = table([
            TokenEntry::scoped("team-hn", &["hn"]),
            TokenEntry::every_account("all"),
            TokenEntry::scoped("team-sg", &["sg", "dn", "sg"]),
            TokenEntry::scoped("last", &["hn", "sg"]),
            TokenEntry::scoped("all", &["dn"]),
        ]);
        for (token, scope) in [
            ("team-hn", accounts(&["hn"])),
            ("all", Scope::Every),
            ("team-sg", accounts(&["dn", "sg"])),
            ("last", accounts(&["hn", "sg"])),
        ] {
            assert_eq!(
                check_token(&tokens, Some(token.as_bytes())),
                Ok(scope),
                "{token}"
            );
        }
        for wrong in ["team-h", "team-hnn", "", "ALL"] {
            assert_eq!(
                check_token(&tokens, Some(wrong.as_bytes())),
                Err(AuthError::Wrong),
                "{wrong:?}"
            );
        }
        assert_eq!(matching_entry(&tokens, b"all"), Some(1));
        assert_eq!(matching_entry(&tokens, b"last"), Some(3));
        assert_eq!(check_token(&tokens, None), Err(AuthError::Missing));
        assert_eq!(
            check_token(&Tokens::default(), Some(b"x")),
            Ok(Scope::Every)
        );
    }

    /// With a token per screen (docs/websocket.md's advice), a check
    /// compared the presented token with every configured one: 10,000
    /// tokens cost each upgrade, and each session on each reload, about
    /// 0.5 ms (cost audit, 2026-12-07). It compares one, wherever the
    /// token is in the list, and none for a token that is not there.
    #[test]
    fn a_check_compares_at_most_one_token_however_many_are_configured() {
        let tokens =
            table((0..10_000).map(|i| TokenEntry::every_account(format!("screen-token-{i:05}"))));
        for (presented, found) in [
            ("screen-token-00000", Some(0)),
            ("screen-token-04321", Some(4321)),
            ("screen-token-09999", Some(9999)),
            ("screen-token-10000", None),
            ("screen-token-0999", None),
            ("", None),
        ] {
            let compared = std::cell::Cell::new(0);
            let at = matching_entry_by(&tokens, presented.as_bytes(), |secret, token| {
                compared.set(compared.get() + 1);
                secret.expose().as_bytes().ct_eq(token)
            });
            assert_eq!(at, found, "{presented:?}");
            assert!(
                compared.get() <= usize::from(found.is_some()),
                "{presented:?}: {} tokens compared",
                compared.get()
            );
        }
    }

    /// The same accounts in another order, or repeated, are one scope: a
    /// reload that only reorders them must not close a session.
    #[test]
    fn a_scope_is_its_set_of_accounts() {
        assert_eq!(
            Scope::of(&TokenEntry::scoped("t", &["sg", "hn"])),
            Scope::of(&TokenEntry::scoped("u", &["hn", "sg", "hn"]))
        );
        assert_ne!(
            Scope::of(&TokenEntry::scoped("t", &["hn"])),
            Scope::of(&TokenEntry::scoped("t", &["hn", "sg"]))
        );
        assert_eq!(Scope::of(&TokenEntry::every_account("t")), Scope::Every);
    }

    /// A scoped client with no `account` filter gets its scope as one; one
    /// within it gets its own; one naming an account outside it is refused,
    /// told which account and what its token opens.
    #[test]
    fn a_scope_narrows_the_clients_filter_or_refuses_it() {
        let scope = Scope::of(&TokenEntry::scoped("s3cret-token", &["sg", "hn"]));
        let filter = |accounts: &[&str]| Filter {
            types: vec!["call.*".to_owned()],
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
            ..Filter::default()
        };
        assert_eq!(scope.narrow(filter(&[])), Ok(filter(&["hn", "sg"])));
        assert_eq!(scope.narrow(filter(&["sg"])), Ok(filter(&["sg"])));
        assert_eq!(
            scope.narrow(filter(&["hn", "sg", "hn"])),
            Ok(filter(&["hn", "sg", "hn"]))
        );
        let refused = scope.narrow(filter(&["hn", "dn"])).unwrap_err().to_string();
        assert_eq!(
            refused,
            "this token may not see account \"dn\": it opens \"hn\", \"sg\"; leave `account` \
             out to get all of them, or name some of them"
        );
        assert!(!refused.contains("s3cret"), "{refused}");
        assert_eq!(Scope::Every.narrow(filter(&["any"])), Ok(filter(&["any"])));
        // A scope of no account (which `check` refuses) opens nothing,
        // not every account as an empty filter would.
        let none = Scope::Accounts(Vec::new().into());
        assert!(none.narrow(filter(&[])).is_err());
        assert!(none.narrow(filter(&["hn"])).is_err());
        assert_eq!(Scope::Every.narrow(filter(&[])), Ok(filter(&[])));
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
