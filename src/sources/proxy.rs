//! Outbound HTTP proxy for the connection sources (Voip24h socket.io,
//! SPRecord SSE): which upstream goes through which proxy, and the
//! `CONNECT` tunnel to it.
//!
//! Settings come from `[proxy]` in relay.toml and, for what it leaves unset,
//! from the environment as curl, Go and Vector read it: `HTTPS_PROXY` /
//! `https_proxy` for `https://` upstreams, `HTTP_PROXY` / `http_proxy` for
//! `http://` ones, `ALL_PROXY` / `all_proxy` for both, `NO_PROXY` /
//! `no_proxy` for the hosts that are reached directly (`*`, domains with
//! their subdomains, IP addresses and CIDR ranges). `enabled = false` makes
//! every connection direct whatever the environment says.
//!
//! Every proxied connection is a `CONNECT host:port` tunnel (the way a
//! browser opens a websocket through a proxy), so TLS to the upstream is end
//! to end and the proxy sees only the host and port.
//!
//! Guarantees: a proxy URL that cannot be used (a `https://` or SOCKS proxy,
//! no host, a path) is a config error naming the key or the environment
//! variable, never a silent direct connection; the proxy's credentials go
//! only into the `Proxy-Authorization` header: logs, `/status` and errors
//! show the proxy as `http://host:port`; a proxy's refusal is an error that
//! says the proxy refused and with which status.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use base64::Engine as _;
use hyper::Uri;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use toml::Spanned;

use crate::config::{Secret, Validator};

/// The `[proxy]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `false`: no upstream connection goes through a proxy.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Proxy for `http://` upstreams (default: `$HTTP_PROXY`, then `$ALL_PROXY`).
    pub http: Option<Spanned<Secret>>,
    /// Proxy for `https://` upstreams (default: `$HTTPS_PROXY`, then `$ALL_PROXY`).
    pub https: Option<Spanned<Secret>>,
    /// Hosts reached directly (default: `$NO_PROXY`).
    pub no_proxy: Option<Vec<String>>,
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
    host: String,
    port: u16,
    /// `Basic …` for `Proxy-Authorization`, from the URL's userinfo.
    authorization: Option<Secret>,
}

impl ProxyRoute {
    /// Parses a proxy URL as curl does, but refuses what we cannot honour
    /// instead of ignoring it. A URL without a scheme is `http://`.
    pub fn parse(text: &str) -> Result<ProxyRoute, String> {
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| format!("not a URL: {e}"))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err("a proxy reached over TLS (`https://`) is not supported; \
                            give it as `http://` (the tunnel to the upstream is TLS \
                            end to end either way)"
                    .into());
            }
            s if s.starts_with("socks") => {
                return Err(format!("SOCKS proxies (`{s}://`) are not supported"));
            }
            s => {
                return Err(format!(
                    "proxy scheme `{s}://` is not supported; use `http://`"
                ));
            }
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("no host")?
            .to_owned();
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err("a proxy URL has no path or query".into());
        }
        let port = url.port().unwrap_or(80);
        let authorization = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| "the user or password is not UTF-8 once decoded".to_owned())
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

    /// `host:port` of the proxy, for connecting to it.
    fn address(&self) -> (&str, u16) {
        (unbracket(&self.host), self.port)
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

/// Which upstream goes through which proxy, resolved from `[proxy]` and the
/// environment.
#[derive(Clone, Debug, Default)]
pub struct ProxySettings {
    http: Option<ProxyRoute>,
    https: Option<ProxyRoute>,
    /// Only for its `NO_PROXY` rules (hyper-util's, as reqwest uses them).
    no_proxy: Option<Arc<Matcher>>,
}

/// The environment variables read for each setting, in order of preference.
const HTTP_VARS: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];
const HTTPS_VARS: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];

impl ProxySettings {
    /// Resolves `config` over the environment seen through `lookup`, reporting
    /// every unusable URL to `v` (at its key, or at 1:1 naming the variable).
    pub fn resolve(
        config: &ProxyConfig,
        lookup: &dyn Fn(&str) -> Option<String>,
        v: &mut Validator,
    ) -> ProxySettings {
        if !config.enabled {
            return ProxySettings::default();
        }
        let mut pick = |key: &str, configured: &Option<Spanned<Secret>>, vars: &[&str]| {
            let (text, span, origin) = match configured {
                Some(value) => (
                    value.get_ref().expose().to_owned(),
                    value.span(),
                    format!("[proxy] `{key}`"),
                ),
                None => {
                    let found = vars.iter().find_map(|name| {
                        lookup(name)
                            .filter(|value| !value.trim().is_empty())
                            .map(|value| (value, *name))
                    });
                    match found {
                        Some((value, name)) => {
                            (value, 0..0, format!("environment variable {name}"))
                        }
                        None => return None,
                    }
                }
            };
            match ProxyRoute::parse(text.trim()) {
                Ok(route) => Some(route),
                Err(why) => {
                    v.error(span, format!("{origin}: the proxy cannot be used: {why}"));
                    None
                }
            }
        };
        let http = pick("http", &config.http, &HTTP_VARS);
        let https = pick("https", &config.https, &HTTPS_VARS);
        let no_proxy = match &config.no_proxy {
            Some(hosts) => hosts.join(","),
            None => NO_PROXY_VARS
                .iter()
                .find_map(|name| lookup(name))
                .unwrap_or_default(),
        };
        // The matcher decides by NO_PROXY only; which proxy is ours to say.
        let no_proxy = (!no_proxy.trim().is_empty()).then(|| {
            Arc::new(
                Matcher::builder()
                    .all("http://no-proxy.invalid".to_owned())
                    .no(no_proxy)
                    .build(),
            )
        });
        ProxySettings {
            http,
            https,
            no_proxy,
        }
    }

    /// The proxy for an upstream at `url` (`http(s)://…`), if any.
    pub fn route_for(&self, url: &str) -> Option<ProxyRoute> {
        let uri: Uri = url.parse().ok()?;
        let route = match uri.scheme_str() {
            Some("http") => self.http.as_ref(),
            Some("https") => self.https.as_ref(),
            _ => None,
        }?;
        if let Some(matcher) = &self.no_proxy
            && matcher.intercept(&uri).is_none()
        {
            return None;
        }
        Some(route.clone())
    }
}

/// Why a connection to an upstream (directly or through the proxy) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {target}: {source}")]
    Direct {
        target: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the proxy {proxy}: {source}")]
    ProxyUnreachable {
        proxy: String,
        source: std::io::Error,
    },
    #[error("the proxy {proxy} asks for credentials (HTTP 407){hint}")]
    ProxyAuth { proxy: String, hint: &'static str },
    #[error("the proxy {proxy} refused the tunnel to {target}: {status}")]
    ProxyRefused {
        proxy: String,
        target: String,
        status: String,
    },
    #[error("the proxy {proxy} broke off the tunnel to {target}: {why}")]
    ProxyProtocol {
        proxy: String,
        target: String,
        why: String,
    },
}

impl ConnectError {
    /// The proxy, not the upstream, failed: reconnect reason `proxy`.
    pub fn is_proxy(&self) -> bool {
        !matches!(self, ConnectError::Direct { .. })
    }
}

/// The longest proxy answer to `CONNECT` read before giving up on it.
const MAX_CONNECT_ANSWER: usize = 8 * 1024;

/// Opens a TCP connection to `host:port`, through `route`'s tunnel if given.
/// The caller bounds it in time.
pub async fn connect(
    route: Option<&ProxyRoute>,
    host: &str,
    port: u16,
) -> Result<TcpStream, ConnectError> {
    let host = unbracket(host);
    let Some(route) = route else {
        let stream =
            TcpStream::connect((host, port))
                .await
                .map_err(|source| ConnectError::Direct {
                    target: authority(host, port),
                    source,
                })?;
        let _ = stream.set_nodelay(true);
        return Ok(stream);
    };
    let mut stream = TcpStream::connect(route.address())
        .await
        .map_err(|source| ConnectError::ProxyUnreachable {
            proxy: route.to_string(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let target = authority(host, port);
    let protocol = |why: String| ConnectError::ProxyProtocol {
        proxy: route.to_string(),
        target: target.clone(),
        why,
    };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &route.authorization {
        request.push_str("Proxy-Authorization: ");
        request.push_str(auth.expose());
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| protocol(e.to_string()))?;
    // Byte by byte, so nothing past the answer's head (the upstream's first
    // bytes, in principle) is taken from the tunnel.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_ANSWER {
            return Err(protocol(format!(
                "its answer is longer than {MAX_CONNECT_ANSWER} bytes"
            )));
        }
        let byte = stream.read_u8().await.map_err(|e| {
            protocol(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "it closed the connection before answering".to_owned()
            } else {
                e.to_string()
            })
        })?;
        head.push(byte);
    }
    match parse_connect_answer(&head) {
        ConnectAnswer::Established => Ok(stream),
        ConnectAnswer::AuthRequired => Err(ConnectError::ProxyAuth {
            proxy: route.to_string(),
            hint: if route.authorization.is_some() {
                ": the user and password in the proxy URL were refused"
            } else {
                ": put them in the proxy URL, http://user:password@host:port"
            },
        }),
        ConnectAnswer::Refused(status) => Err(ConnectError::ProxyRefused {
            proxy: route.to_string(),
            target,
            status,
        }),
        ConnectAnswer::Garbled => Err(protocol("its answer is not HTTP".into())),
    }
}

#[derive(Debug, PartialEq)]
enum ConnectAnswer {
    Established,
    AuthRequired,
    /// The status line's code and reason, printable and short.
    Refused(String),
    Garbled,
}

/// Reads the status line of a proxy's answer to `CONNECT`.
fn parse_connect_answer(head: &[u8]) -> ConnectAnswer {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return ConnectAnswer::Garbled;
    };
    let mut parts = line.trim_end().splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return ConnectAnswer::Garbled;
    };
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return ConnectAnswer::Garbled;
    }
    let Ok(code) = code.parse::<u16>() else {
        return ConnectAnswer::Garbled;
    };
    match code {
        200..=299 => ConnectAnswer::Established,
        407 => ConnectAnswer::AuthRequired,
        _ => {
            let reason: String = parts
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
            ConnectAnswer::Refused(format!("HTTP {code} {reason}").trim_end().to_owned())
        }
    }
}

/// `host:port` as a `CONNECT` target: an IPv6 address in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A connector for hyper's client (under hyper-rustls): dials the URI's host
/// and port, through the proxy tunnel when there is one.
#[derive(Clone, Debug)]
pub struct UpstreamConnector {
    route: Option<ProxyRoute>,
}

impl UpstreamConnector {
    pub fn new(route: Option<ProxyRoute>) -> Self {
        UpstreamConnector { route }
    }
}

impl tower::Service<Uri> for UpstreamConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let route = self.route.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_owned();
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            connect(route.as_ref(), &host, port).await.map(TokioIo::new)
        })
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

    fn shown(route: Option<ProxyRoute>) -> Option<String> {
        route.map(|r| r.to_string())
    }

    #[test]
    fn the_environment_gives_a_proxy_per_scheme_as_curl_reads_it() {
        let (s, problems) = resolve(
            "",
            &[
                ("https_proxy", "http://secure.proxy:3128"),
                ("HTTP_PROXY", "plain.proxy:8080"),
            ],
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            shown(s.route_for("https://vendor.example/x")).as_deref(),
            Some("http://secure.proxy:3128")
        );
        assert_eq!(
            shown(s.route_for("http://10.1.2.3:8000")).as_deref(),
            Some("http://plain.proxy:8080")
        );
        // Upper case wins over lower case, as in curl and Go.
        let (s, _) = resolve(
            "",
            &[
                ("HTTPS_PROXY", "http://upper:1"),
                ("https_proxy", "http://lower:2"),
            ],
        );
        assert_eq!(
            shown(s.route_for("https://v")).as_deref(),
            Some("http://upper:1")
        );
    }

    #[test]
    fn all_proxy_stands_in_for_either_scheme() {
        let (s, _) = resolve("", &[("ALL_PROXY", "http://all:3128")]);
        assert_eq!(
            shown(s.route_for("https://v")).as_deref(),
            Some("http://all:3128")
        );
        assert_eq!(
            shown(s.route_for("http://v")).as_deref(),
            Some("http://all:3128")
        );
        let (s, _) = resolve(
            "",
            &[
                ("ALL_PROXY", "http://all:3128"),
                ("HTTP_PROXY", "http://h:1"),
            ],
        );
        assert_eq!(
            shown(s.route_for("http://v")).as_deref(),
            Some("http://h:1")
        );
    }

    #[test]
    fn no_proxy_hosts_domains_and_ranges_go_direct() {
        let env = [
            ("HTTPS_PROXY", "http://p:3128"),
            ("HTTP_PROXY", "http://p:3128"),
            ("NO_PROXY", "localhost, .internal.example,10.0.0.0/8"),
        ];
        let (s, _) = resolve("", &env);
        assert_eq!(s.route_for("http://localhost:8000"), None);
        assert_eq!(s.route_for("https://rec.internal.example"), None);
        assert_eq!(s.route_for("https://internal.example"), None);
        assert_eq!(s.route_for("http://10.20.30.40:80"), None);
        assert!(s.route_for("http://11.0.0.1").is_some());
        assert!(s.route_for("https://dial.voip24h.vn").is_some());
        let (s, _) = resolve("", &[("HTTPS_PROXY", "http://p:3128"), ("no_proxy", "*")]);
        assert_eq!(s.route_for("https://anything.example"), None);
    }

    #[test]
    fn the_config_file_overrides_the_environment_and_can_turn_proxies_off() {
        let env = [
            ("HTTPS_PROXY", "http://env:1"),
            ("NO_PROXY", "vendor.example"),
        ];
        let (s, problems) = resolve(
            "https = \"http://file:2\"\nno_proxy = [\"other.example\"]",
            &env,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            shown(s.route_for("https://vendor.example")).as_deref(),
            Some("http://file:2"),
            "the file's no_proxy replaces the environment's"
        );
        assert_eq!(s.route_for("https://other.example"), None);
        let (s, _) = resolve("enabled = false", &env);
        assert_eq!(s.route_for("https://vendor.example"), None);
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
        assert_eq!(ProxyRoute::parse("http://proxy").unwrap().port, 80);
    }

    #[test]
    fn unusable_proxies_are_errors_naming_where_they_came_from() {
        let (s, problems) = resolve("", &[("HTTPS_PROXY", "socks5://p:1080")]);
        assert_eq!(s.route_for("https://v"), None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("environment variable HTTPS_PROXY"),
            "{problems:?}"
        );
        assert!(problems[0].contains("SOCKS"), "{problems:?}");

        let (_, problems) = resolve("http = \"https://user:hunter2@p:3128\"", &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("[proxy] `http`"), "{problems:?}");
        assert!(problems[0].contains("TLS"), "{problems:?}");
        assert!(!problems[0].contains("hunter2"), "{problems:?}");

        for bad in ["http://", "http://p:3128/path", "ftp://p", "http://p:99999"] {
            assert!(ProxyRoute::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_connect_answer_is_read_by_its_status_line() {
        use ConnectAnswer::*;
        assert_eq!(
            parse_connect_answer(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Established
        );
        assert_eq!(parse_connect_answer(b"HTTP/1.0 200\r\n\r\n"), Established);
        assert_eq!(
            parse_connect_answer(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"
            ),
            AuthRequired
        );
        assert_eq!(
            parse_connect_answer(b"HTTP/1.1 403 Forbidden\r\n\r\n"),
            Refused("HTTP 403 Forbidden".into())
        );
        assert_eq!(
            parse_connect_answer(b"HTTP/1.1 502 Bad\x07Gateway\r\n\r\n"),
            Refused("HTTP 502 BadGateway".into())
        );
        assert_eq!(parse_connect_answer(b"SSH-2.0-OpenSSH\r\n\r\n"), Garbled);
        assert_eq!(parse_connect_answer(b"HTTP/1.1 2000 OK\r\n\r\n"), Garbled);
        assert_eq!(parse_connect_answer(b"\xff\xfe\r\n\r\n"), Garbled);
    }

    #[test]
    fn ipv6_targets_are_bracketed() {
        assert_eq!(authority("::1", 443), "[::1]:443");
        assert_eq!(authority("example.com", 80), "example.com:80");
        assert_eq!(unbracket("[::1]"), "::1");
    }

    /// A one-shot stand-in that answers a CONNECT with `answer` and records the request.
    async fn fake_proxy(answer: &'static [u8]) -> (ProxyRoute, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                request.push(socket.read_u8().await.unwrap());
            }
            socket.write_all(answer).await.unwrap();
            // The tunnel's first bytes after the answer belong to the caller.
            socket.write_all(b"upstream").await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let route = ProxyRoute::parse(&format!("http://u:pw@127.0.0.1:{port}")).unwrap();
        (route, task)
    }

    #[tokio::test]
    async fn a_tunnel_sends_connect_with_credentials_and_leaves_the_stream_untouched() {
        let (route, proxy) = fake_proxy(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
        let mut stream = connect(Some(&route), "vendor.example", 443).await.unwrap();
        let mut first = [0u8; 8];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"upstream");
        let request = proxy.await.unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("u:pw");
        assert_eq!(
            request,
            format!(
                "CONNECT vendor.example:443 HTTP/1.1\r\nHost: vendor.example:443\r\n\
                 Proxy-Authorization: Basic {auth}\r\n\r\n"
            )
        );
    }

    #[tokio::test]
    async fn a_refused_tunnel_says_so_without_the_password() {
        let (route, _proxy) =
            fake_proxy(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let error = connect(Some(&route), "vendor.example", 443)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("asks for credentials (HTTP 407)"), "{error}");
        assert!(error.contains("were refused"), "{error}");
        assert!(!error.contains("pw"), "{error}");

        let (route, _proxy) = fake_proxy(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
        let error = connect(Some(&route), "vendor.example", 8443)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("refused the tunnel to vendor.example:8443: HTTP 403 Forbidden"),
            "{error}"
        );
    }
}
