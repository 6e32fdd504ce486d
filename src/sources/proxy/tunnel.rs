//! Opening a TCP connection to an upstream: directly, or through an HTTP
//! proxy's `CONNECT` tunnel.
//!
//! Guarantees: addresses are dialled as hyper's `HttpConnector` does (IPv6
//! and IPv4 raced, the connect timeout split between a name's addresses),
//! for the upstream and for the proxy alike; nothing past the proxy's answer
//! is read from the tunnel; a proxy that does not answer `CONNECT` within
//! [`PROXY_ANSWER_LIMIT`] is an error that says so, and so is a caller's
//! own bound passing before the tunnel opened ([`Dialer::blame_proxy`]);
//! every proxy failure names the proxy as `http://host:port` and never
//! carries its password; a `407` whose `Proxy-Authenticate` offers only
//! schemes other than Basic (the one the relay sends) names them, short and
//! printable, rather than blaming the password;
//! nothing the proxy sends can panic.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::Service;

use super::resolve::BoundedResolver;
use super::settings::ProxyRoute;

/// How long a proxy may take to answer `CONNECT` (it connects to the
/// upstream first).
pub const PROXY_ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// The longest proxy answer to `CONNECT` read before giving up on it.
const MAX_CONNECT_ANSWER: usize = 8 * 1024;

/// Why a connection to an upstream (directly or through the proxy) failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {target}: {reason}")]
    Direct { target: String, reason: DialError },
    #[error("cannot connect to the proxy {proxy}: {reason}")]
    ProxyUnreachable { proxy: String, reason: DialError },
    #[error("the proxy {proxy} asks for credentials (HTTP 407): {hint}")]
    ProxyAuth { proxy: String, hint: AuthHint },
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
        why: TunnelError,
    },
    /// The caller's bound passed before the proxy gave a tunnel (it could
    /// not be reached, or did not answer `CONNECT`).
    #[error("the proxy {proxy} gave no tunnel to {target} within {waited:?}")]
    ProxyTimeout {
        proxy: String,
        target: String,
        waited: Duration,
    },
}

/// What a `407` from the proxy asks the operator to do.
#[derive(Debug, thiserror::Error)]
pub enum AuthHint {
    #[error("the user and password in the proxy URL were refused")]
    Refused,
    #[error("put them in the proxy URL, http://user:password@host:port")]
    Missing,
    /// The schemes its `Proxy-Authenticate` offered, none of them Basic
    /// (the only one the relay sends): the password is not what to change.
    #[error("the proxy asks for {0} authentication; callrelay speaks only Basic")]
    OtherSchemes(String),
}

/// Why one TCP connection (to an upstream, or to the proxy) was not made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// `host:port` that makes no URI.
    #[error(transparent)]
    Authority(#[from] hyper::http::uri::InvalidUri),
    /// The connector's error, said with its causes: it says only "tcp
    /// connect error" and keeps the reason (a refusal, a timeout) in its
    /// source. (Its type is private to hyper-util.)
    #[error("{}", crate::logging::with_causes(.0.as_ref()))]
    Tcp(Box<dyn std::error::Error + Send + Sync>),
}

/// How a proxy failed to give a tunnel once reached.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// Sending `CONNECT`, or reading the answer, failed.
    #[error(transparent)]
    Io(std::io::Error),
    #[error("it closed the connection before answering")]
    ClosedBeforeAnswering,
    #[error("its answer is longer than {MAX_CONNECT_ANSWER} bytes")]
    AnswerTooLong,
    #[error("no answer to CONNECT within {0:?}")]
    NoAnswer(Duration),
    #[error("its answer is not HTTP")]
    NotHttp,
}

impl ConnectError {
    /// The proxy, not the upstream, failed: reconnect reason `proxy`.
    pub fn is_proxy(&self) -> bool {
        !matches!(self, ConnectError::Direct { .. })
    }
}

/// Dials upstreams for one source: through its proxy, if it has one.
#[derive(Clone, Debug)]
pub struct Dialer {
    route: Option<ProxyRoute>,
    tcp: HttpConnector<BoundedResolver>,
    /// [`PROXY_ANSWER_LIMIT`], shorter in tests.
    answer_limit: Duration,
    /// Told when a connection gets past the proxy (see [`Dialer::watched`]).
    through: Option<TunnelWatch>,
}

/// TCP keep-alive on every upstream connection: the first probe after 30 s
/// without traffic, then every 10 s, the connection given up after 3
/// unanswered (about a minute in all).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// Whether a dial got through its proxy: a caller whose own bound on the
/// whole connection passes first tells by it whether the proxy is to blame.
#[derive(Clone, Debug, Default)]
pub struct TunnelWatch(Arc<AtomicBool>);

impl TunnelWatch {
    fn through(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_through(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Dialer {
    /// `connect_timeout`, when given, bounds each TCP connect (split between
    /// a name's addresses, as hyper does).
    pub fn new(route: Option<ProxyRoute>, connect_timeout: Option<Duration>) -> Dialer {
        // Names resolved at most `resolve::LOOKUPS` at a time: a lookup
        // cannot be cancelled, and a dead DNS server's held the blocking pool.
        let mut tcp = HttpConnector::new_with_resolver(BoundedResolver::default());
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(connect_timeout);
        // An SSE stream writes nothing after its request: without probes, a
        // connection a NAT or firewall forgot (a WAN failover, a conntrack
        // flush) was found dead only by silence, one stream of an account at
        // a time, while its row said connected. Probes end it within about
        // a minute, and where the mapping was only forgotten, recreate it.
        tcp.set_keepalive(Some(KEEPALIVE_IDLE));
        tcp.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
        tcp.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
        Dialer {
            route,
            tcp,
            answer_limit: PROXY_ANSWER_LIMIT,
            through: None,
        }
    }

    /// The proxy this dialer tunnels through, if any.
    pub fn route(&self) -> Option<&ProxyRoute> {
        self.route.as_ref()
    }

    /// This dialer for one connection, with what tells whether it got
    /// through the proxy (for [`Dialer::blame_proxy`]).
    pub fn watched(&self) -> (Dialer, TunnelWatch) {
        let watch = TunnelWatch::default();
        let dialer = Dialer {
            through: Some(watch.clone()),
            ..self.clone()
        };
        (dialer, watch)
    }

    /// When the caller's bound of `waited` passed on a connection to
    /// `host:port` whose dial `watch` watched: the proxy's failure, if the
    /// dial never got through it (a proxy that cannot be reached or does not
    /// answer is reconnect reason `proxy`, not a timeout of the upstream's).
    pub fn blame_proxy(
        &self,
        watch: &TunnelWatch,
        host: &str,
        port: u16,
        waited: Duration,
    ) -> Option<ConnectError> {
        let route = self.route.as_ref().filter(|_| !watch.is_through())?;
        Some(ConnectError::ProxyTimeout {
            proxy: route.to_string(),
            target: authority(unbracket(host), port),
            waited,
        })
    }

    /// A TCP connection to `host:port` (a bracketed IPv6 address is fine),
    /// through the proxy's tunnel if there is one. The caller bounds it in
    /// time as a whole.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let target = authority(unbracket(host), port);
        let Some(route) = &self.route else {
            return self
                .tcp(&target)
                .await
                .map_err(|reason| ConnectError::Direct { target, reason });
        };
        let proxy = route.to_string();
        let mut stream = self
            .tcp(&authority(unbracket(&route.host), route.port))
            .await
            .map_err(|reason| ConnectError::ProxyUnreachable {
                proxy: proxy.clone(),
                reason,
            })?;
        let limit = self.answer_limit;
        let answer = tokio::time::timeout(limit, ask_for_tunnel(&mut stream, route, &target))
            .await
            .unwrap_or(Err(TunnelError::NoAnswer(limit)));
        let protocol = |why: TunnelError| ConnectError::ProxyProtocol {
            proxy: proxy.clone(),
            target: target.clone(),
            why,
        };
        match parse_connect_answer(&answer.map_err(protocol)?) {
            ConnectAnswer::Established => {
                if let Some(watch) = &self.through {
                    watch.through();
                }
                Ok(stream)
            }
            ConnectAnswer::AuthRequired { other_schemes } => Err(ConnectError::ProxyAuth {
                proxy,
                hint: match other_schemes {
                    Some(schemes) => AuthHint::OtherSchemes(schemes),
                    None if route.authorization.is_some() => AuthHint::Refused,
                    None => AuthHint::Missing,
                },
            }),
            ConnectAnswer::Refused(status) => Err(ConnectError::ProxyRefused {
                proxy,
                target,
                status,
            }),
            ConnectAnswer::Garbled => Err(protocol(TunnelError::NotHttp)),
        }
    }

    /// One TCP connection to `authority` (`host:port`), the way hyper dials.
    async fn tcp(&self, authority: &str) -> Result<TcpStream, DialError> {
        let uri: Uri = format!("http://{authority}/").parse()?;
        let mut tcp = self.tcp.clone();
        tcp.call(uri)
            .await
            .map(TokioIo::into_inner)
            .map_err(|e| DialError::Tcp(e.into()))
    }
}

/// Sends `CONNECT target` and reads the proxy's answer head, byte by byte so
/// that nothing past it (the upstream's first bytes) is taken from the tunnel.
async fn ask_for_tunnel(
    stream: &mut TcpStream,
    route: &ProxyRoute,
    target: &str,
) -> Result<Vec<u8>, TunnelError> {
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
        .map_err(TunnelError::Io)?;
    let mut head = Vec::with_capacity(256);
    while !(head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n")) {
        if head.len() >= MAX_CONNECT_ANSWER {
            return Err(TunnelError::AnswerTooLong);
        }
        let byte = stream.read_u8().await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                TunnelError::ClosedBeforeAnswering
            } else {
                TunnelError::Io(e)
            }
        })?;
        head.push(byte);
    }
    Ok(head)
}

#[derive(Debug, PartialEq)]
enum ConnectAnswer {
    Established,
    /// A `407`: `other_schemes` names what its `Proxy-Authenticate` headers
    /// offer when they offer something and Basic is not among it.
    AuthRequired {
        other_schemes: Option<String>,
    },
    /// The status line's code and reason, printable and short.
    Refused(String),
    Garbled,
}

/// The lines of an answer's head, each without its line end: HTTP asks for
/// `\r\n`, and a bare `\n` is taken too.
fn head_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// Reads the status line of a proxy's answer to `CONNECT` (and, for a
/// `407`, its `Proxy-Authenticate` headers).
fn parse_connect_answer(head: &[u8]) -> ConnectAnswer {
    let line = head_lines(head).next().unwrap_or_default();
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return ConnectAnswer::Garbled;
    };
    if !version.starts_with(b"HTTP/1.") || code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return ConnectAnswer::Garbled;
    }
    let code = code
        .iter()
        .fold(0u16, |n, digit| n * 10 + u16::from(digit - b'0'));
    match code {
        200..=299 => ConnectAnswer::Established,
        407 => ConnectAnswer::AuthRequired {
            other_schemes: other_auth_schemes(head),
        },
        _ => {
            let reason: String = String::from_utf8_lossy(parts.next().unwrap_or_default())
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
            ConnectAnswer::Refused(format!("HTTP {code} {reason}").trim_end().to_owned())
        }
    }
}

/// At most this many schemes are named, each cut to this many characters:
/// they come from the network and end up in `/status` and the log.
const MAX_SCHEMES_NAMED: usize = 4;
const MAX_SCHEME_CHARS: usize = 32;

/// The authentication schemes a `407` answer's `Proxy-Authenticate` headers
/// offer, joined for a message, when there is at least one and none is Basic
/// (the only scheme the relay sends); `None` otherwise, where refused
/// credentials are the likelier story.
fn other_auth_schemes(head: &[u8]) -> Option<String> {
    let mut schemes: Vec<String> = Vec::new();
    for line in head_lines(head).skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"proxy-authenticate") {
            continue;
        }
        for scheme in challenge_schemes(&line[colon + 1..]) {
            if scheme.eq_ignore_ascii_case(b"basic") {
                return None;
            }
            let name: String = String::from_utf8_lossy(scheme)
                .chars()
                .take(MAX_SCHEME_CHARS)
                .collect();
            if schemes.len() < MAX_SCHEMES_NAMED
                && !schemes.iter().any(|s| s.eq_ignore_ascii_case(&name))
            {
                schemes.push(name);
            }
        }
    }
    (!schemes.is_empty()).then(|| schemes.join(", "))
}

/// The scheme of each challenge in a `Proxy-Authenticate` value (RFC 9110
/// 11.6.1): challenges and their `name=value` parameters are both separated
/// by commas, so an element is a scheme when its leading token is not
/// followed by `=`. Commas inside quoted strings separate nothing. Only
/// token characters make a scheme, so none carries a control character.
fn challenge_schemes(value: &[u8]) -> Vec<&[u8]> {
    let mut elements = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in value.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                elements.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    elements.push(&value[start..]);
    elements
        .into_iter()
        .filter_map(|element| {
            let element = element.trim_ascii_start();
            let end = element
                .iter()
                .position(|&b| !is_token_char(b))
                .unwrap_or(element.len());
            let (token, rest) = element.split_at(end);
            let is_parameter = rest.trim_ascii_start().starts_with(b"=");
            let ends_there = rest.first().is_none_or(|b| b.is_ascii_whitespace());
            (!token.is_empty() && !is_parameter && ends_there).then_some(token)
        })
        .collect()
}

/// `tchar` of RFC 9110 5.6.2.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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

/// As a connector for hyper's client (under hyper-rustls): dials the URI's
/// host and port (443 for `https`, else 80 when it gives none).
impl Service<Uri> for Dialer {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dialer = self.clone();
        Box::pin(async move {
            let (host, port) = host_and_port(&uri);
            dialer.connect(host, port).await.map(TokioIo::new)
        })
    }
}

/// The host and port a URI dials: 443 for `https`, else 80 when it gives none.
pub fn host_and_port(uri: &Uri) -> (&str, u16) {
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    (uri.host().unwrap_or_default(), port)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::sources::tests_support::{listen, read_head};

    #[test]
    fn the_connect_answer_is_read_by_its_status_line() {
        use ConnectAnswer::*;
        assert_eq!(
            parse_connect_answer(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Established
        );
        assert_eq!(parse_connect_answer(b"HTTP/1.0 200\r\n\r\n"), Established);
        assert_eq!(parse_connect_answer(b"HTTP/1.1 200 OK\n\n"), Established);
        assert_eq!(
            parse_connect_answer(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"
            ),
            AuthRequired {
                other_schemes: None
            }
        );
        assert_eq!(
            parse_connect_answer(b"HTTP/1.1 403 Forbidden\r\n\r\n"),
            Refused("HTTP 403 Forbidden".into())
        );
        assert_eq!(
            parse_connect_answer(b"HTTP/1.1 502 Bad\x07Gateway\r\n\r\n"),
            Refused("HTTP 502 BadGateway".into())
        );
        assert_eq!(
            parse_connect_answer(b"HTTP/1.1 403 Verboten \xe4\r\n\r\n"),
            Refused("HTTP 403 Verboten \u{fffd}".into()),
            "a reason that is not UTF-8 is still a refusal"
        );
        assert_eq!(parse_connect_answer(b"SSH-2.0-OpenSSH\r\n\r\n"), Garbled);
        assert_eq!(parse_connect_answer(b"HTTP/1.1 2000 OK\r\n\r\n"), Garbled);
        assert_eq!(parse_connect_answer(b"HTTP/1.1 2x0 OK\r\n\r\n"), Garbled);
        assert_eq!(parse_connect_answer(b"\xff\xfe\r\n\r\n"), Garbled);
    }

    proptest::proptest! {
        /// Whatever a proxy answers (the fuzz targets' "no panic" for the
        /// one proxy reply the relay parses): a refusal's words, and the
        /// schemes a 407 names, are short and hold no control character,
        /// since they go into `/status` and the log.
        #[test]
        fn any_connect_answer_is_read_without_a_panic_into_a_short_printable_refusal(
            head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            code in 100u16..1000,
            reason in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let mut answers = vec![head];
            let mut with_code = format!("HTTP/1.1 {code} ").into_bytes();
            with_code.extend_from_slice(&reason);
            answers.push(with_code);
            let mut challenge = b"HTTP/1.1 407 Auth\r\nProxy-Authenticate: ".to_vec();
            challenge.extend_from_slice(&reason);
            answers.push(challenge);
            for answer in answers {
                match parse_connect_answer(&answer) {
                    ConnectAnswer::Refused(words)
                    | ConnectAnswer::AuthRequired { other_schemes: Some(words) } => {
                        proptest::prop_assert!(words.chars().count() <= 134, "{words:?}");
                        proptest::prop_assert!(!words.chars().any(char::is_control), "{words:?}");
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn ipv6_targets_are_bracketed() {
        assert_eq!(authority("::1", 443), "[::1]:443");
        assert_eq!(authority("example.com", 80), "example.com:80");
        assert_eq!(unbracket("[::1]"), "::1");
    }

    /// A one-shot stand-in that answers a CONNECT with `answer` (or stays
    /// silent for `None`) and hands back the request it read.
    async fn fake_proxy(
        answer: Option<&'static [u8]>,
    ) -> (ProxyRoute, tokio::task::JoinHandle<String>) {
        let (listener, port) = listen().await;
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let request = read_head(&mut socket).await;
            match answer {
                Some(answer) => {
                    socket.write_all(answer).await.unwrap();
                    // The tunnel's first bytes after the answer belong to the caller.
                    socket.write_all(b"upstream").await.unwrap();
                }
                None => std::future::pending::<()>().await,
            }
            String::from_utf8(request).unwrap()
        });
        let route = ProxyRoute::parse(&format!("http://u:pw@127.0.0.1:{port}")).unwrap();
        (route, task)
    }

    const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

    /// How connecting to `vendor.example:port` through a proxy answering
    /// `answer` fails.
    async fn failure_through(answer: &'static [u8], port: u16) -> ConnectError {
        let (route, _proxy) = fake_proxy(Some(answer)).await;
        Dialer::new(Some(route), None)
            .connect("vendor.example", port)
            .await
            .unwrap_err()
    }

    /// The failure is the proxy's, and its message says `says`.
    fn assert_proxy_failure(error: &ConnectError, says: &str) {
        assert!(error.is_proxy(), "{error}");
        assert!(error.to_string().contains(says), "{error}");
    }

    #[tokio::test]
    async fn a_tunnel_sends_connect_with_credentials_and_leaves_the_stream_untouched() {
        let (route, proxy) = fake_proxy(Some(ESTABLISHED)).await;
        let dialer = Dialer::new(Some(route), None);
        let mut stream = dialer.connect("vendor.example", 443).await.unwrap();
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

    /// Every upstream connection sends TCP keep-alive probes, so a connection
    /// a NAT forgot ends on its own instead of being found only by silence.
    #[tokio::test]
    async fn upstream_connections_probe_an_idle_link() {
        let (listener, port) = listen().await;
        let accepted = tokio::spawn(async move { listener.accept().await.unwrap() });
        let stream = Dialer::new(None, None)
            .connect("127.0.0.1", port)
            .await
            .unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
        drop(accepted);
    }

    #[tokio::test]
    async fn a_refused_tunnel_says_so_without_the_password() {
        let error =
            failure_through(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 443).await;
        assert!(error.is_proxy());
        let error = error.to_string();
        assert!(error.contains("asks for credentials (HTTP 407)"), "{error}");
        assert!(error.contains("were refused"), "{error}");
        assert!(!error.contains("pw"), "{error}");

        let error = failure_through(b"HTTP/1.1 403 Forbidden\r\n\r\n", 8443)
            .await
            .to_string();
        assert!(
            error.contains("refused the tunnel to vendor.example:8443: HTTP 403 Forbidden"),
            "{error}"
        );
    }

    /// A proxy that offers only schemes the relay cannot speak (NTLM,
    /// Negotiate, Digest) is not sent to rotate a password: the schemes are
    /// named instead, as `Proxy-Authenticate` gave them, cut short.
    #[tokio::test]
    async fn a_407_without_basic_names_the_schemes_offered() {
        let error = failure_through(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
              Proxy-Authenticate: NTLM\r\n\
              proxy-authenticate: Negotiate\r\n\
              Proxy-Authenticate: Digest realm=\"corp, inc\", nonce=\"a\", qop=auth\r\n\r\n",
            443,
        )
        .await;
        assert_proxy_failure(
            &error,
            "asks for credentials (HTTP 407): the proxy asks for NTLM, Negotiate, Digest \
             authentication; callrelay speaks only Basic",
        );
        assert!(!error.to_string().contains("refused"), "{error}");
        assert!(!error.to_string().contains("pw"), "{error}");

        // Basic among the offers (in any case, in a list): the credentials
        // were what it refused.
        let error = failure_through(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\
              Proxy-Authenticate: Negotiate, BASIC realm=\"corp\"\r\n\r\n",
            443,
        )
        .await;
        assert_proxy_failure(&error, "were refused");

        // Scheme names come from the network: control characters and
        // markup are not a scheme, a long name is cut short.
        let long = "X".repeat(200);
        let answer = format!("HTTP/1.1 407 No\r\nProxy-Authenticate: \x1b[31mEvil, {long}\r\n\r\n");
        let error = failure_through(answer.into_bytes().leak(), 443)
            .await
            .to_string();
        assert!(error.contains("speaks only Basic"), "{error}");
        assert!(!error.chars().any(char::is_control), "{error:?}");
        assert!(!error.contains(&long), "{error}");
    }

    /// A `200` answer to CONNECT padded with a header to `len` bytes.
    fn padded_answer(len: usize) -> &'static [u8] {
        let head = "HTTP/1.1 200 Connection established\r\nX-Pad: ";
        let end = "\r\n\r\n";
        let pad = "a".repeat(len - head.len() - end.len());
        format!("{head}{pad}{end}").into_bytes().leak()
    }

    #[tokio::test]
    async fn a_connect_answer_may_be_up_to_8_kib() {
        let (route, _proxy) = fake_proxy(Some(padded_answer(MAX_CONNECT_ANSWER))).await;
        let dialer = Dialer::new(Some(route), None);
        let mut stream = dialer.connect("vendor.example", 443).await.unwrap();
        let mut first = [0u8; 8];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"upstream");

        let error = failure_through(padded_answer(MAX_CONNECT_ANSWER + 1), 443).await;
        assert_proxy_failure(&error, "its answer is longer than 8192 bytes");
    }

    /// hyper's client dials through [`Dialer`] as a `Service<Uri>`: a URI
    /// without a port goes to its scheme's.
    #[tokio::test]
    async fn a_uri_without_a_port_is_dialed_at_its_schemes() {
        for (uri, target) in [
            ("https://vendor.example/sys/events", "vendor.example:443"),
            ("http://vendor.example/sys/events", "vendor.example:80"),
            ("https://vendor.example:8443/", "vendor.example:8443"),
        ] {
            let (route, proxy) = fake_proxy(Some(ESTABLISHED)).await;
            let mut dialer = Dialer::new(Some(route), None);
            std::future::poll_fn(|cx| dialer.poll_ready(cx))
                .await
                .unwrap();
            dialer.call(uri.parse().unwrap()).await.unwrap();
            let request = proxy.await.unwrap();
            assert!(
                request.starts_with(&format!("CONNECT {target} HTTP/1.1\r\n")),
                "{uri}: {request}"
            );
        }
    }

    #[tokio::test]
    async fn a_proxy_that_closes_before_answering_says_so() {
        // Eight bytes that are not an answer, then the connection closes.
        let (route, proxy) = fake_proxy(Some(b"")).await;
        let dialer = Dialer::new(Some(route), None);
        let connecting = dialer.connect("vendor.example", 443);
        let (error, _) = tokio::join!(connecting, proxy);
        let error = error.unwrap_err();
        assert_proxy_failure(&error, "it closed the connection before answering");
    }

    #[tokio::test]
    async fn a_proxy_that_never_answers_is_named() {
        let (route, _proxy) = fake_proxy(None).await;
        let mut dialer = Dialer::new(Some(route), None);
        dialer.answer_limit = Duration::from_millis(200);
        let error = dialer.connect("vendor.example", 443).await.unwrap_err();
        assert_proxy_failure(&error, "no answer to CONNECT within 200ms");
    }

    /// A caller's own bound that passes before the proxy answers blames the
    /// proxy; one that passes after the tunnel opened (a slow TLS or HTTP
    /// handshake of the upstream's) does not, nor does one without a proxy.
    #[tokio::test]
    async fn a_bound_passing_before_the_tunnel_blames_the_proxy() {
        let (route, _silent) = fake_proxy(None).await;
        let shown = route.to_string();
        let (dialer, watch) = Dialer::new(Some(route), None).watched();
        let waited = Duration::from_millis(100);
        let cut = tokio::time::timeout(waited, dialer.connect("vendor.example", 443)).await;
        assert!(cut.is_err(), "the silent proxy answered");
        let blamed = dialer
            .blame_proxy(&watch, "vendor.example", 443, waited)
            .expect("the proxy is blamed");
        assert_proxy_failure(
            &blamed,
            &format!("{shown} gave no tunnel to vendor.example:443"),
        );
        assert!(!blamed.to_string().contains("pw"), "{blamed}");

        let (route, _proxy) = fake_proxy(Some(ESTABLISHED)).await;
        let (dialer, watch) = Dialer::new(Some(route), None).watched();
        dialer.connect("vendor.example", 443).await.unwrap();
        assert!(
            dialer
                .blame_proxy(&watch, "vendor.example", 443, waited)
                .is_none()
        );

        let (direct, watch) = Dialer::new(None, None).watched();
        assert!(
            direct
                .blame_proxy(&watch, "vendor.example", 443, waited)
                .is_none()
        );
    }

    #[tokio::test]
    async fn direct_failures_name_the_target_and_their_cause() {
        let (listener, port) = listen().await;
        drop(listener);
        let error = Dialer::new(None, None)
            .connect("127.0.0.1", port)
            .await
            .unwrap_err();
        assert!(!error.is_proxy());
        let error = error.to_string();
        assert!(
            error.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
            "{error}"
        );
        assert!(error.to_lowercase().contains("refused"), "{error}");
    }
}
