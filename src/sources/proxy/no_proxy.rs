//! `NO_PROXY` as curl reads it, rewritten for hyper-util's matcher, which
//! compares names as written.
//!
//! Guarantees: one trailing dot is dropped from the host and from each
//! entry; a bracketed IP address (or range) is unbracketed; nothing else is
//! rewritten, so `*.` and `[*]` never become the every-host wildcard, nor
//! `[example.com]` a domain entry. Tested through
//! [`ProxySettings`](super::ProxySettings), in `settings`.

/// A fully qualified name (`host.`) is the same host as without its dot,
/// but hyper-util's matcher compares names as written: as curl does
/// (lib/noproxy.c), one trailing dot is dropped from the host and from each
/// `NO_PROXY` entry before they are compared.
pub(super) fn without_trailing_dot(name: &str) -> &str {
    // `*.` stays as written: without its dot it would be the matcher's
    // every-host wildcard, where curl takes it for a name no host has.
    match name.strip_suffix('.') {
        Some(bare) if bare != "*" => bare,
        _ => name,
    }
}

/// An IPv6 entry in brackets, as a URL writes the host (`[fd00::5]`,
/// `[fd00::]/64`), without them: the matcher reads a bracketed entry as a
/// domain name, which no host is. Only an address's characters are
/// unbracketed: `[*]` or `[example.com]` would otherwise become the
/// every-host wildcard or a domain entry.
fn unbracketed(entry: &str) -> String {
    // An address, not a name spelled in hex letters (`[cafe]`, `[bad.de]`).
    let address_like = |a: &str| a.parse::<std::net::IpAddr>().is_ok();
    match entry.strip_prefix('[').and_then(|e| e.split_once(']')) {
        Some((address, prefix))
            if address_like(address) && (prefix.is_empty() || prefix.starts_with('/')) =>
        {
            format!("{address}{prefix}")
        }
        _ => entry.to_owned(),
    }
}

/// A `NO_PROXY` list written the way hyper-util's matcher reads it.
pub(super) fn no_proxy_entries(list: &str) -> String {
    list.split(',')
        .map(|entry| unbracketed(without_trailing_dot(entry.trim())))
        .collect::<Vec<_>>()
        .join(",")
}
