//! Checks several sections share: account names, http(s) URLs, and a URL
//! shown in an error without its credentials.
//!
//! Guarantees: an account name that passes is 1..64 ASCII letters, digits,
//! `-`, `_` or `.`, and not `.` or `..` (it is a URL path segment and part
//! of a Kafka topic); a URL shown in a message built here carries no
//! userinfo, query or fragment.

use toml::Spanned;

use super::Validator;

/// Checks an account name: it appears in URLs, metric labels, CloudEvent
/// sources and Kafka topics. `.` and `..` are path segments clients and
/// proxies collapse (`/hooks/tel4vn/..`), and topics Kafka refuses.
pub fn validate_account(v: &mut Validator, account: &Spanned<String>) {
    let name = account.get_ref();
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        let message = format!(
            "`account` = {} must be 1..64 characters of ASCII letters, digits, '-', '_' or '.', and not `.` or `..`",
            v.shown(account)
        );
        v.error(account.span(), message);
    }
}

/// Checks that a URL is http(s) with a host. The refusal shows the URL
/// without its userinfo and query, which may hold a password or token.
pub fn validate_http_url(v: &mut Validator, field: &str, value: &Spanned<String>) {
    match url::Url::parse(value.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => {
            let message = format!(
                "`{field}` = {} is not an http:// or https:// URL",
                shown_url(&v.shown(value))
            );
            v.error(value.span(), message);
        }
    }
}

/// A URL as `Validator::shown` quotes it, without credentials, still quoted.
pub fn shown_url(shown: &str) -> String {
    match shown
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
    {
        Some(inner) => format!("\"{}\"", url_without_credentials(inner)),
        None => url_without_credentials(shown),
    }
}

/// `url` as an error may show it: a `?token=` or a `user:password@` in it is
/// a secret, so the query and fragment are cut and the user information
/// left out.
pub fn url_without_credentials(url: &str) -> String {
    // A password written with an unencoded `/` or `?`
    // (`http://ops:2024/Summer@h/`, `http://u:99?x@h`) parses as a host,
    // a port and a path or query holding the rest: an `@` the parse did not
    // take for userinfo sends the text to the cut below, which hides all
    // before the last `@`, or all of it when a `?` or `#` comes first (it
    // cannot tell such a password from a query holding an `@`).
    let parsed = url::Url::parse(url).ok().filter(|parsed| {
        parsed.has_host()
            && (!url.contains('@') || !parsed.username().is_empty() || parsed.password().is_some())
    });
    if let Some(mut parsed) = parsed {
        let had_userinfo = !parsed.username().is_empty() || parsed.password().is_some();
        let cut = parsed.query().is_some() || parsed.fragment().is_some();
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        parsed.set_query(None);
        parsed.set_fragment(None);
        let mut shown = parsed.to_string();
        if had_userinfo && let Some((scheme, rest)) = shown.split_once("://") {
            shown = format!("{scheme}://…@{rest}");
        }
        if cut {
            shown.push_str("?…");
        }
        return shown;
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    // Whatever stands before the last `@` may be `user:password`, and a
    // password written unencoded may hold `/` or `?`: it all goes, wherever
    // it falls. When a `?` or `#` stands before that `@`, the `@` may be in
    // a query (`?user=a@b&token=…`), whose rest is as secret: nothing after
    // the scheme is shown.
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) if rest[..at].contains(['?', '#']) => return format!("{scheme}…"),
        Some(at) => ("…@", &rest[at + 1..]),
        None => ("", rest),
    };
    match rest.split_once(['?', '#']) {
        Some((base, _)) => format!("{scheme}{userinfo}{base}?…"),
        None => format!("{scheme}{userinfo}{rest}"),
    }
}
