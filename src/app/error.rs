//! Why the relay could not start, or stopped with an error: what
//! `callrelay run` ends with.
//!
//! Guarantees: a port that cannot be had names the address, the system's
//! reason and, when it is one an operator can act on (in use, not
//! permitted, not one of this host's addresses), what to do about it; a
//! config's problems stay whole ([`RunError::Config`]), for `main` to print
//! one line each.

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::journal::JournalError;

/// What to do about a port that cannot be had, for the error line.
fn bind_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another process listens there (another callrelay?): `ss -ltnp` names it, or change [server] listen"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; a port below 1024 needs CAP_NET_BIND_SERVICE in the unit's CapabilityBoundingSet= and AmbientCapabilities=, and PrivateUsers=no, or take a higher port"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "; the address is not one of this host's (`ip -brief address` lists them), or 0.0.0.0 for all of them"
        }
        _ => "",
    }
}

/// Why the relay could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("cannot listen on {addr}: {source}{}", bind_hint(source))]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(ServeError),
    #[error(
        "the task that serves the relay (its reloads and its drain) failed: {0} (a bug: its panic is logged above); the relay stopped without a drain so that it is started again"
    )]
    ServeTask(tokio::task::JoinError),
    #[error("cannot start the journal writer thread: {0}")]
    IngestThread(std::io::Error),
    #[error("opening the journal failed: {0}")]
    JournalOpenTask(tokio::task::JoinError),
    #[error(
        "the journal writer stopped unexpectedly (a bug: its panic is logged above); the relay drained and stopped so that it is started again"
    )]
    WriterStopped,
}

/// How the HTTP server, or the task that serves the relay, ended when only
/// a stop should end it (a bug either way).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The task panicked, or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The accept loop returned before a stop.
    #[error("the HTTP server stopped unexpectedly")]
    StoppedUnexpectedly,
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    #[test]
    fn a_port_that_cannot_be_had_says_what_to_do() {
        let hint = |kind: ErrorKind| super::bind_hint(&Error::from(kind));
        assert!(hint(ErrorKind::AddrInUse).contains("ss -ltnp"));
        assert!(hint(ErrorKind::PermissionDenied).contains("CAP_NET_BIND_SERVICE"));
        assert!(hint(ErrorKind::AddrNotAvailable).contains("ip -brief address"));
        assert_eq!(hint(ErrorKind::Other), "");
    }

    /// The address a host does not have is refused by the kernel as such,
    /// and the error says what to do about it.
    #[tokio::test]
    async fn an_address_this_host_lacks_is_named_with_a_hint() {
        // TEST-NET-1 (RFC 5737): never one of a host's addresses.
        let addr: std::net::SocketAddr = "192.0.2.1:0".parse().unwrap();
        let source = tokio::net::TcpListener::bind(addr).await.unwrap_err();
        let error = super::RunError::Bind { addr, source }.to_string();
        assert!(
            error.starts_with("cannot listen on 192.0.2.1:0: ")
                && error.contains("not one of this host's"),
            "{error}"
        );
    }
}
