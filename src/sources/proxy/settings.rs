//! Which proxy, if any, each upstream URL goes through: the `[proxy]` table,
//! the environment under it, `NO_PROXY`, and the proxy URL's own rules.
//!
//! Guarantees: a `[proxy]` key that cannot be used is a config error at the
//! key; a proxy from the environment that cannot be used is an error only
//! for a source that would go through it (at that source's `url`, naming the
//! variable), so a stray `ALL_PROXY=socks5://…` on the host does not stop a
//! relay that does not need it; no error quotes a proxy URL (it may hold a
//! password); the URL a route is chosen for is read as the sources read it
//! (the `url` crate), so no URL escapes the proxy by being spelled oddly;
//! `NO_PROXY` is read as curl reads it ([`super::no_proxy`]): one trailing
//! dot dropped from the host and from each entry, a bracketed IP address
//! unbracketed, and `*.` or `[*]` no wildcard.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use hyper::Uri;
use hyper_util::client::proxy::matcher::Matcher;
use serde::Deserialize;
use toml::Spanned;

use super::no_proxy::{no_proxy_entries, without_trailing_dot};
use crate::config::{Secret, Validator};

/// The `[proxy]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `false`: no upstream connection goes through a proxy.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Proxy for `http://` upstreams (default: `$HTTP_PROXY`, then
    /// `$ALL_PROXY`); `""` for none, whatever the environment says.
    pub http: Option<Spanned<Secret>>,
    /// Proxy for `https://` upstreams (default: `$HTTPS_PROXY`, then
    /// `$ALL_PROXY`); `""` for none.
    pub https: Option<Spanned<Secret>>,
    /// Hosts reached directly (default: `$NO_PROXY`): a list, or one
    /// comma-separated string as in the environment.
    pub no_proxy: Option<HostList>,
}

/// `no_proxy` as a TOML array or as one comma-separated string.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum HostList {
    Many(Vec<String>),
    One(String),
}

impl HostList {
    fn joined(&self) -> String {
        match self {
            HostList::Many(hosts) => hosts.join(","),
            HostList::One(hosts) => hosts.clone(),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            enabled: true,
            http: None,
            https: None,
            no_proxy: None,
        }
    }
}

fn default_enabled() -> bool {
    true
}

/// A usable proxy: where it is and how to authenticate to it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyRoute {
    pub(super) host: String,
    pub(super) port: u16,
    /// `Basic …` for `Proxy-Authorization`, from the URL's userinfo.
    pub(super) authorization: Option<Secret>,
}

/// What to say when a character of the password broke the URL apart.
const ENCODE_HINT: &str = "percent-encode `#`, `/`, `?`, `\\` and `%` in the user or password";

/// Why a proxy URL cannot be used. No variant holds the URL's text (it may
/// hold a password).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyUrlError {
    #[error("not a URL: {0}")]
    NotAUrl(url::ParseError),
    #[error(
        "a proxy reached over TLS (`https://`) is not supported; \
         give it as `http://` (the tunnel to the upstream is TLS \
         end to end either way)"
    )]
    OverTls,
    /// The scheme, `socks5` and the like.
    #[error("SOCKS proxies (`{0}://`) are not supported")]
    Socks(String),
    /// Another scheme than `http`, `https` or a SOCKS one.
    #[error("proxy scheme `{0}://` is not supported; use `http://`")]
    Scheme(String),
    #[error("no host")]
    NoHost,
    #[error("a proxy URL has no path, query or fragment ({ENCODE_HINT})")]
    PathQueryOrFragment,
    #[error(
        "the user or password is not UTF-8 once decoded (a `%` followed by two hex digits is read as the byte they encode: write a `%` itself as `%25`)"
    )]
    CredentialsNotUtf8,
    /// [`ProxyUrlError::NotAUrl`] or [`ProxyUrlError::NoHost`] for a URL
    /// with credentials: a `/`, `?` or `#` in them ends the authority early
    /// (`http://relay:ab/cd@proxy:3128` reads as host `relay`, port `ab`),
    /// so what is said about the rest would only mislead without the hint.
    #[error("{0} ({ENCODE_HINT})")]
    CutShort(Box<ProxyUrlError>),
}

impl ProxyRoute {
    /// Parses a proxy URL (`http://[user:password@]host[:port]`, port 80 if
    /// none, `http://` if no scheme), refusing what we cannot honour.
    pub fn parse(text: &str) -> Result<ProxyRoute, ProxyUrlError> {
        // The URL parser takes the host from after the last `@` whenever the
        // authority reaches it; it does not when a `/`, `?` or `#` of the
        // credentials ends the authority first, and then the host is wrong
        // or missing, or a path, query or fragment is left (which says the
        // hint already).
        Self::parse_as_written(text).map_err(|why| match why {
            ProxyUrlError::NotAUrl(_) | ProxyUrlError::NoHost if text.contains('@') => {
                ProxyUrlError::CutShort(Box::new(why))
            }
            why => why,
        })
    }

    fn parse_as_written(text: &str) -> Result<ProxyRoute, ProxyUrlError> {
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let url = url::Url::parse(&with_scheme).map_err(ProxyUrlError::NotAUrl)?;
        match url.scheme() {
            "http" => {}
            "https" => return Err(ProxyUrlError::OverTls),
            s if s.starts_with("socks") => return Err(ProxyUrlError::Socks(s.to_owned())),
            s => return Err(ProxyUrlError::Scheme(s.to_owned())),
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(ProxyUrlError::NoHost)?
            .to_owned();
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(ProxyUrlError::PathQueryOrFragment);
        }
        let port = url.port().unwrap_or(80);
        let authorization = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| ProxyUrlError::CredentialsNotUtf8)
            };
            let user = decode(url.username())?;
            let password = decode(url.password().unwrap_or(""))?;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            Some(Secret::new(format!("Basic {token}")))
        };
        Ok(ProxyRoute {
            host,
            port,
            authorization,
        })
    }
}

/// `http://host:port`, without the credentials.
impl fmt::Display for ProxyRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for ProxyRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyRoute({self})")
    }
}

/// The proxy chosen for one scheme.
#[derive(Clone, Debug)]
enum Choice {
    Use(ProxyRoute),
    /// From the environment, and not usable: an error for whoever needs it.
    Unusable(UnusableProxy),
}

/// A proxy from the environment that cannot be used, for a source that
/// would go through it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the proxy in the environment variable {variable} cannot be used: {why} \
     (set `[proxy]` to override it)"
)]
pub struct UnusableProxy {
    /// The variable's name, `HTTPS_PROXY` or the like.
    variable: String,
    why: ProxyUrlError,
}

/// Which upstream goes through which proxy, resolved from `[proxy]` and the
/// environment.
#[derive(Clone, Debug, Default)]
pub struct ProxySettings {
    http: Option<Choice>,
    https: Option<Choice>,
    /// Only for its `NO_PROXY` rules (hyper-util's, as reqwest uses them).
    no_proxy: Option<Arc<Matcher>>,
}

/// The environment variables read for each setting, in order of preference
/// (upper case first, as Go and reqwest read them).
const HTTP_VARS: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];
const HTTPS_VARS: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// Whether `name` is one of the environment variables the proxy settings read.
pub fn is_proxy_variable(name: &str) -> bool {
    [&HTTP_VARS[..], &HTTPS_VARS, &NO_PROXY_VARS]
        .iter()
        .any(|vars| vars.contains(&name))
}

/// The first of `vars` set to something other than blanks.
fn first_set(lookup: &dyn Fn(&str) -> Option<String>, vars: &[&str]) -> Option<(String, String)> {
    vars.iter().find_map(|name| {
        lookup(name)
            .filter(|value| !value.trim().is_empty())
            .map(|value| (value, (*name).to_owned()))
    })
}

impl ProxySettings {
    /// Resolves `config` over the environment seen through `lookup`; reports
    /// an unusable `[proxy]` key to `v` at the key.
    pub fn resolve(
        config: &ProxyConfig,
        lookup: &dyn Fn(&str) -> Option<String>,
        v: &mut Validator,
    ) -> ProxySettings {
        if !config.enabled {
            return ProxySettings::default();
        }
        let mut pick = |key: &str, configured: &Option<Spanned<Secret>>, vars: &[&str]| {
            if let Some(value) = configured {
                let text = value.get_ref().expose().trim();
                if text.is_empty() {
                    return None;
                }
                return match ProxyRoute::parse(text) {
                    Ok(route) => Some(Choice::Use(route)),
                    Err(why) => {
                        v.error(
                            value.span(),
                            format!("[proxy] `{key}`: the proxy cannot be used: {why}"),
                        );
                        None
                    }
                };
            }
            let (text, name) = first_set(lookup, vars)?;
            Some(match ProxyRoute::parse(text.trim()) {
                Ok(route) => Choice::Use(route),
                Err(why) => Choice::Unusable(UnusableProxy {
                    variable: name,
                    why,
                }),
            })
        };
        let http = pick("http", &config.http, &HTTP_VARS);
        let https = pick("https", &config.https, &HTTPS_VARS);
        let no_proxy = match &config.no_proxy {
            Some(hosts) => hosts.joined(),
            None => first_set(lookup, &NO_PROXY_VARS)
                .map(|(value, _)| value)
                .unwrap_or_default(),
        };
        // The matcher decides by NO_PROXY only; which proxy is ours to say.
        let no_proxy = (!no_proxy.trim().is_empty()).then(|| {
            Arc::new(
                Matcher::builder()
                    .all("http://no-proxy.invalid")
                    .no(no_proxy_entries(&no_proxy))
                    .build(),
            )
        });
        ProxySettings {
            http,
            https,
            no_proxy,
        }
    }

    /// The proxy for an upstream at `url` (`http(s)://…`, as configured):
    /// `None` to connect directly, an error when the proxy it would take
    /// (from the environment) cannot be used.
    pub fn route_for(&self, url: &str) -> Result<Option<ProxyRoute>, UnusableProxy> {
        // Read as the sources read it, then handed to the matcher in the
        // form it understands: IDN hosts in ASCII, spaces trimmed.
        let Ok(url) = url::Url::parse(url.trim()) else {
            return Ok(None);
        };
        let choice = match url.scheme() {
            "http" => self.http.as_ref(),
            "https" => self.https.as_ref(),
            _ => None,
        };
        let Some(choice) = choice else {
            return Ok(None);
        };
        if let Some(matcher) = &self.no_proxy {
            let host = without_trailing_dot(url.host_str().unwrap_or_default());
            let port = url.port_or_known_default().unwrap_or(80);
            let origin = format!("{}://{host}:{port}/", url.scheme());
            if let Ok(uri) = origin.parse::<Uri>()
                && matcher.intercept(&uri).is_none()
            {
                return Ok(None);
            }
        }
        match choice {
            Choice::Use(route) => Ok(Some(route.clone())),
            Choice::Unusable(why) => Err(why.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml_text: &str, env: &[(&str, &str)]) -> (ProxySettings, Vec<String>) {
        let config: ProxyConfig = toml::from_str(toml_text).expect("proxy table");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut v = Validator::new(toml_text);
        let settings = ProxySettings::resolve(&config, &lookup, &mut v);
        let problems = v
            .into_error("t.toml")
            .map(|e| e.problems.into_iter().map(|p| p.message).collect())
            .unwrap_or_default();
        (settings, problems)
    }

    /// The proxy `url` goes through, shown as logs show it.
    fn via(s: &ProxySettings, url: &str) -> Option<String> {
        s.route_for(url)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .map(|r| r.to_string())
    }

    #[test]
    fn the_environment_gives_a_proxy_per_scheme_upper_case_first() {
        let (s, problems) = resolve(
            "",
            &[
                ("https_proxy", "http://secure.proxy:3128"),
                ("HTTP_PROXY", "plain.proxy:8080"),
            ],
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            via(&s, "https://vendor.example/x").as_deref(),
            Some("http://secure.proxy:3128")
        );
        assert_eq!(
            via(&s, "http://10.1.2.3:8000").as_deref(),
            Some("http://plain.proxy:8080")
        );
        let (s, _) = resolve(
            "",
            &[
                ("HTTPS_PROXY", "http://upper:1"),
                ("https_proxy", "http://lower:2"),
            ],
        );
        assert_eq!(via(&s, "https://v").as_deref(), Some("http://upper:1"));
    }

    #[test]
    fn all_proxy_stands_in_for_either_scheme() {
        let (s, _) = resolve("", &[("ALL_PROXY", "http://all:3128")]);
        assert_eq!(via(&s, "https://v").as_deref(), Some("http://all:3128"));
        assert_eq!(via(&s, "http://v").as_deref(), Some("http://all:3128"));
        let (s, _) = resolve(
            "",
            &[
                ("ALL_PROXY", "http://all:3128"),
                ("HTTP_PROXY", "http://h:1"),
            ],
        );
        assert_eq!(via(&s, "http://v").as_deref(), Some("http://h:1"));
    }

    #[test]
    fn no_proxy_hosts_domains_and_ranges_go_direct() {
        let env = [
            ("HTTPS_PROXY", "http://p:3128"),
            ("HTTP_PROXY", "http://p:3128"),
            ("NO_PROXY", "localhost, .internal.example,10.0.0.0/8"),
        ];
        let (s, _) = resolve("", &env);
        assert_eq!(via(&s, "http://localhost:8000"), None);
        assert_eq!(via(&s, "https://rec.internal.example"), None);
        assert_eq!(via(&s, "https://internal.example"), None);
        assert_eq!(via(&s, "http://10.20.30.40:80"), None);
        assert!(via(&s, "http://11.0.0.1").is_some());
        assert!(via(&s, "https://dial.voip24h.vn").is_some());
        let (s, _) = resolve("", &[("HTTPS_PROXY", "http://p:3128"), ("no_proxy", "*")]);
        assert_eq!(via(&s, "https://anything.example"), None);
        // An empty NO_PROXY does not hide a set no_proxy (as in Go).
        let (s, _) = resolve(
            "",
            &[
                ("HTTP_PROXY", "http://p:3128"),
                ("NO_PROXY", ""),
                ("no_proxy", "10.0.0.0/8"),
            ],
        );
        assert_eq!(via(&s, "http://10.1.1.1"), None);
    }

    /// A fully qualified name (`host.`) is the same host: curl strips one
    /// trailing dot from the host and from each `NO_PROXY` entry.
    #[test]
    fn a_trailing_dot_on_a_host_or_an_entry_still_matches() {
        let env = [
            ("HTTPS_PROXY", "http://p:3128"),
            ("NO_PROXY", ".corp.example, rec.other.example., 10.9.9.9."),
        ];
        let (s, _) = resolve("", &env);
        assert_eq!(via(&s, "https://rec.corp.example.:8443"), None);
        assert_eq!(via(&s, "https://corp.example."), None);
        assert_eq!(via(&s, "https://rec.other.example"), None);
        assert_eq!(via(&s, "https://rec.other.example."), None);
        assert_eq!(via(&s, "https://10.9.9.9"), None);
        assert!(via(&s, "https://notcorp.example.").is_some());
        assert!(via(&s, "https://rec.other.example..").is_some());
    }

    /// IPv6 entries may be written bare or in brackets (as a URL writes
    /// the host), a range too.
    #[test]
    fn bracketed_ipv6_entries_match() {
        let env = [
            ("HTTPS_PROXY", "http://p:3128"),
            ("NO_PROXY", "[fd00::5], [fd01:1::]/64, fd02::7"),
        ];
        let (s, _) = resolve("", &env);
        assert_eq!(via(&s, "https://[fd00::5]:8443"), None);
        assert_eq!(via(&s, "https://[fd01:1::9]"), None);
        assert_eq!(via(&s, "https://[fd02::7]"), None);
        assert!(via(&s, "https://[fd00::6]").is_some());
        assert!(via(&s, "https://[fd01:2::9]").is_some());
    }

    /// Taking off a dot or brackets never makes the every-host wildcard or
    /// a domain entry out of what curl reads as a name no host has.
    #[test]
    fn a_star_with_a_dot_or_in_brackets_is_no_wildcard() {
        for list in ["*.", "[*]", "[example.com]", "[cafe]", "[bad.de]"] {
            let env = [("HTTPS_PROXY", "http://p:3128"), ("NO_PROXY", list)];
            let (s, _) = resolve("", &env);
            assert!(via(&s, "https://rec.corp.example").is_some(), "{list}");
            assert!(via(&s, "https://example.com").is_some(), "{list}");
            assert!(via(&s, "https://www.cafe").is_some(), "{list}");
            assert!(via(&s, "https://rec.bad.de").is_some(), "{list}");
        }
    }

    #[test]
    fn urls_spelled_oddly_do_not_escape_the_proxy() {
        let (s, _) = resolve(
            "",
            &[
                ("HTTPS_PROXY", "http://p:3128"),
                ("HTTP_PROXY", "http://p:3128"),
            ],
        );
        for url in [
            "http://127.0.0.1:45779 ",
            "http://127.0.0.1:45779/a b",
            "https://bücher.example",
        ] {
            assert_eq!(via(&s, url).as_deref(), Some("http://p:3128"), "{url:?}");
        }
        let (s, _) = resolve(
            "",
            &[
                ("HTTPS_PROXY", "http://p:3128"),
                ("NO_PROXY", "xn--bcher-kva.example"),
            ],
        );
        assert_eq!(via(&s, "https://bücher.example"), None);
    }

    #[test]
    fn the_config_file_overrides_the_environment_and_can_turn_proxies_off() {
        let env = [
            ("HTTPS_PROXY", "http://env:1"),
            ("HTTP_PROXY", "http://env:1"),
            ("NO_PROXY", "vendor.example"),
        ];
        let (s, problems) = resolve(
            "https = \"http://file:2\"\nno_proxy = [\"other.example\"]",
            &env,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            via(&s, "https://vendor.example").as_deref(),
            Some("http://file:2"),
            "the file's no_proxy replaces the environment's"
        );
        assert_eq!(via(&s, "https://other.example"), None);
        let (s, _) = resolve("no_proxy = \"a.example, other.example\"", &env);
        assert_eq!(via(&s, "https://other.example"), None, "a string works too");
        let (s, _) = resolve("http = \"\"", &env);
        assert_eq!(
            via(&s, "http://x.example"),
            None,
            "\"\": none for that scheme"
        );
        assert!(via(&s, "https://x.example").is_some());
        let (s, _) = resolve("enabled = false", &env);
        assert_eq!(via(&s, "https://x.example"), None);
    }

    #[test]
    fn the_proxy_variables_are_known_by_name() {
        for name in ["HTTP_PROXY", "https_proxy", "ALL_PROXY", "no_proxy"] {
            assert!(is_proxy_variable(name), "{name}");
        }
        for name in ["PATH", "Http_Proxy", "PROXY"] {
            assert!(!is_proxy_variable(name), "{name}");
        }
    }

    #[test]
    fn a_scheme_other_than_http_is_refused_by_name() {
        let refusal = |text: &str| {
            ProxyRoute::parse(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refusal("socks5://p:1080").starts_with("SOCKS proxies (`socks5://`)"));
        assert!(refusal("https://p:3128").contains("over TLS"));
        assert!(refusal("ftp://p:21").starts_with("proxy scheme `ftp://`"));
        assert!(ProxyRoute::parse("p:3128").is_ok());
    }

    /// The refusals read as they did when they were built as text.
    #[test]
    fn refusals_read_in_full() {
        assert_eq!(
            ProxyRoute::parse("https://p:3128").unwrap_err().to_string(),
            "a proxy reached over TLS (`https://`) is not supported; give it as `http://` \
             (the tunnel to the upstream is TLS end to end either way)"
        );
        let (s, _) = resolve("", &[("HTTPS_PROXY", "http://p:3128/x")]);
        assert_eq!(
            s.route_for("https://v").unwrap_err().to_string(),
            "the proxy in the environment variable HTTPS_PROXY cannot be used: \
             a proxy URL has no path, query or fragment (percent-encode `#`, `/`, `?`, \
             `\\` and `%` in the user or password) (set `[proxy]` to override it)"
        );
    }

    #[test]
    fn credentials_become_basic_auth_and_are_never_shown() {
        let route = ProxyRoute::parse("http://us%40er:p%3Ass@proxy.example:3128/").unwrap();
        assert_eq!(route.to_string(), "http://proxy.example:3128");
        assert_eq!(
            format!("{route:?}"),
            "ProxyRoute(http://proxy.example:3128)"
        );
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(
            route.authorization.as_ref().map(Secret::expose),
            Some(format!("Basic {expected}").as_str())
        );
        assert_eq!(ProxyRoute::parse("proxy:8080").unwrap().authorization, None);
        // A user without a password is still a credential (`user:`).
        let user_only = ProxyRoute::parse("http://relay@proxy:8080").unwrap();
        let expected = base64::engine::general_purpose::STANDARD.encode("relay:");
        assert_eq!(
            user_only.authorization.as_ref().map(Secret::expose),
            Some(format!("Basic {expected}").as_str())
        );
        assert_eq!(ProxyRoute::parse("http://proxy").unwrap().port, 80);
    }

    #[test]
    fn a_password_that_breaks_the_url_apart_is_refused_with_a_hint() {
        // `#` would start a fragment: the user would pass for the host and
        // the password's start for the port.
        for bad in [
            "http://relay:12#hunter2@proxy:3128",
            "http://relay:12/hunter2@proxy:3128",
        ] {
            let why = ProxyRoute::parse(bad).unwrap_err().to_string();
            assert!(why.contains("percent-encode"), "{bad}: {why}");
            assert!(!why.contains("hunter2"), "{why}");
        }
        assert!(ProxyRoute::parse("http://relay:12%23hunter2@proxy:3128").is_ok());
        // A password that does not start with digits makes a bad port, a
        // user cut at `/` an empty host: the hint holds for those too.
        for bad in [
            "http://callrelay:ab/hunter2@proxy.internal:3128",
            "http://callrelay:ab?hunter2@proxy.internal:3128",
            "http://callrelay:ab#hunter2@proxy.internal:3128",
            "callrelay:ab/hunter2@proxy.internal:3128",
            "http://:hunter2/x@proxy.internal:3128",
            "http://call/relay:hunter2@proxy.internal:3128",
            "http://callrelay:ab\\hunter2@proxy.internal:3128",
        ] {
            let why = ProxyRoute::parse(bad).unwrap_err().to_string();
            assert!(why.contains("percent-encode"), "{bad}: {why}");
            assert!(!why.contains("hunter2"), "{why}");
        }
        assert_eq!(
            ProxyRoute::parse("http://callrelay:ab/hunter2@proxy.internal:3128")
                .unwrap_err()
                .to_string(),
            "not a URL: invalid port number (percent-encode `#`, `/`, `?`, `\\` and `%` \
             in the user or password)"
        );
        let why = ProxyRoute::parse("http://proxy.internal:ab").unwrap_err();
        assert!(!why.to_string().contains("percent-encode"), "{why}");
    }

    #[test]
    fn an_unusable_key_is_a_problem_an_unusable_variable_only_where_used() {
        let (s, problems) = resolve("", &[("ALL_PROXY", "socks5://p:1080")]);
        assert!(problems.is_empty(), "not a problem until a source needs it");
        let why = s.route_for("https://v").unwrap_err().to_string();
        assert!(why.contains("environment variable ALL_PROXY"), "{why}");
        assert!(why.contains("SOCKS"), "{why}");
        let (s, _) = resolve("", &[("ALL_PROXY", "socks5://p:1080"), ("NO_PROXY", "v")]);
        assert_eq!(s.route_for("https://v"), Ok(None), "NO_PROXY spares it");

        let (_, problems) = resolve("http = \"https://user:hunter2@p:3128\"", &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("[proxy] `http`"), "{problems:?}");
        assert!(problems[0].contains("TLS"), "{problems:?}");
        assert!(!problems[0].contains("hunter2"), "{problems:?}");

        for bad in ["http://", "http://p:3128/path", "ftp://p", "http://p:99999"] {
            assert!(ProxyRoute::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
