//! The outbound-proxy peer: npm `proxy` (tests/peers/proxy) on 127.0.0.1,
//! tunnelling `CONNECT`s, with Basic credentials when given, and reporting
//! every `CONNECT` it is asked for.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

pub struct ProxyPeer {
    _child: Child,
    reports: mpsc::UnboundedReceiver<Value>,
    pub port: u16,
}

/// One `CONNECT` the proxy was asked for.
#[derive(Debug)]
pub struct Tunnel {
    /// `host:port` the client asked to reach.
    pub target: String,
    /// Whether it carried the right credentials (when the proxy wants them).
    pub authorized: bool,
}

impl ProxyPeer {
    /// A proxy that lets everyone through.
    pub async fn start() -> ProxyPeer {
        ProxyPeer::spawn(None).await
    }

    /// A proxy that answers 407 unless given `user:password`.
    pub async fn start_with_login(user: &str, password: &str) -> ProxyPeer {
        ProxyPeer::spawn(Some((user, password))).await
    }

    async fn spawn(login: Option<(&str, &str)>) -> ProxyPeer {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/proxy");
        assert!(
            std::path::Path::new(dir)
                .join("node_modules/proxy")
                .exists(),
            "run tests/peers/proxy/setup.sh first (scripts/test.sh does)"
        );
        let mut command = Command::new("node");
        command
            .arg("server.js")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some((user, password)) = login {
            command
                .env("PROXY_USER", user)
                .env("PROXY_PASSWORD", password);
        }
        let mut child = command.spawn().expect("start the proxy peer");
        let stdout = child.stdout.take().expect("proxy stdout");
        let (tx, reports) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && tx.send(value).is_err()
                {
                    break;
                }
            }
        });
        let mut peer = ProxyPeer {
            _child: child,
            reports,
            port: 0,
        };
        let listening = peer.next("listening").await;
        peer.port = listening["port"].as_u64().expect("port") as u16;
        peer
    }

    /// `http://[user:password@]127.0.0.1:port`, for `[proxy]`.
    pub fn url(&self, login: Option<(&str, &str)>) -> String {
        match login {
            Some((user, password)) => format!("http://{user}:{password}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// The next `CONNECT` the proxy was asked for.
    pub async fn next_tunnel(&mut self) -> Tunnel {
        let report = self.next("connect").await;
        Tunnel {
            target: report["target"].as_str().unwrap_or_default().to_owned(),
            authorized: report["authorized"] == true,
        }
    }

    async fn next(&mut self, ev: &str) -> Value {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(report) = self.reports.recv().await {
                if report["ev"] == ev {
                    return Some(report);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(report)) => report,
            Ok(None) => panic!("the proxy peer exited before reporting {ev}"),
            Err(_) => panic!("the proxy peer did not report {ev} within {WAIT:?}"),
        }
    }
}

/// A "proxy" that takes every connection and never answers, as a hung one
/// does: its port, and the task holding the connections (abort it to let
/// them go).
pub async fn silent_proxy() -> (u16, tokio::task::JoinHandle<()>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    (port, held)
}
