//! Outbound HTTP proxy for the connection sources (Voip24h socket.io,
//! SPRecord SSE): which upstream goes through which proxy ([`settings`]), and
//! the connection to it ([`tunnel`]).
//!
//! Settings come from `[proxy]` in relay.toml and, for what it leaves unset,
//! from the environment as Go and reqwest read it: `HTTPS_PROXY` /
//! `https_proxy` for `https://` upstreams, `HTTP_PROXY` / `http_proxy` for
//! `http://` ones, `ALL_PROXY` / `all_proxy` for both, `NO_PROXY` /
//! `no_proxy` for the hosts reached directly (`*`, domains with their
//! subdomains, IP addresses and CIDR ranges). `enabled = false` makes every
//! connection direct whatever the environment says.
//!
//! Every proxied connection is a `CONNECT host:port` tunnel (the way a
//! browser opens a websocket through a proxy), so TLS to the upstream is end
//! to end and the proxy sees only the host and port. The proxy's credentials
//! go only into the `Proxy-Authorization` header: logs, `/status` and errors
//! show it as `http://host:port`.

mod no_proxy;
mod resolve;
pub mod settings;
pub mod tunnel;

pub use settings::{ProxyConfig, ProxyRoute, ProxySettings, is_proxy_variable};
pub use tunnel::{ConnectError, Dialer, TunnelWatch, host_and_port};
