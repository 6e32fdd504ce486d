//! Resolving the upstreams' host names: on the blocking pool, as hyper's
//! `GaiResolver` does, but at most [`LOOKUPS`] at a time across the process.
//!
//! Why: `getaddrinfo` cannot be cancelled. A caller whose deadline passes
//! (an SPRecord stream's `connect_timeout`, a Voip24h handshake) drops its
//! future, but a lookup already running holds its blocking thread until the
//! resolver answers, 10–20 s per try when the DNS server is gone. Every
//! stream retried into a new lookup meanwhile, so a relay of a few hundred
//! streams on host names filled tokio's blocking pool, and the Kafka sink's
//! journal reads, WebSocket replays and retention queued behind them.
//!
//! Guarantees: a lookup's permit is held by the thread running it until it
//! returns, whether or not its caller is still waiting, so no more than
//! [`LOOKUPS`] blocking threads are ever held by lookups; a caller waits for
//! a permit without holding a thread, and gives it up when dropped.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context as TaskContext, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use tokio::sync::Semaphore;
use tower::Service;

/// Lookups running at once, process-wide: enough that a slow but working
/// resolver (a second a lookup) does not hold a start of hundreds of streams
/// past their `connect_timeout` waiting for a permit, few enough to leave
/// most of tokio's 512 blocking threads to the rest when it does not answer.
pub const LOOKUPS: usize = 64;

static RUNNING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(LOOKUPS)));

/// How a name is looked up (a test replaces the system's resolver).
type Lookup = fn(&str) -> io::Result<Vec<SocketAddr>>;

/// The system's resolver, as `GaiResolver` asks it (port 0; the connector
/// sets the port).
fn system_lookup(host: &str) -> io::Result<Vec<SocketAddr>> {
    (host, 0).to_socket_addrs().map(Iterator::collect)
}

/// A resolver for hyper's `HttpConnector` bounded by [`LOOKUPS`].
#[derive(Clone, Debug)]
pub struct BoundedResolver {
    running: Arc<Semaphore>,
    lookup: Lookup,
}

impl Default for BoundedResolver {
    fn default() -> Self {
        BoundedResolver {
            running: RUNNING.clone(),
            lookup: system_lookup,
        }
    }
}

impl Service<Name> for BoundedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (running, lookup) = (self.running.clone(), self.lookup);
        Box::pin(async move {
            let permit = running
                .acquire_owned()
                .await
                .map_err(|_| io::Error::other("the resolver's permits are closed"))?;
            let host = name.as_str().to_owned();
            tokio::task::spawn_blocking(move || {
                // Held until the lookup returns, also when its caller gave up.
                let _permit = permit;
                lookup(&host).map(Vec::into_iter)
            })
            .await
            .map_err(io::Error::other)?
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Lookups started, and the gate they wait at until a test opens it.
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    static OPEN: AtomicBool = AtomicBool::new(false);

    struct OpenOnDrop;

    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            OPEN.store(true, Ordering::SeqCst);
        }
    }

    /// A resolver that does not answer until the test opens the gate (it
    /// runs on a blocking thread, as getaddrinfo does).
    fn gated_lookup(_: &str) -> io::Result<Vec<SocketAddr>> {
        STARTED.fetch_add(1, Ordering::SeqCst);
        while !OPEN.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], 0))])
    }

    fn resolve(
        resolver: &BoundedResolver,
        host: &str,
    ) -> <BoundedResolver as Service<Name>>::Future {
        resolver.clone().call(Name::from_str(host).unwrap())
    }

    async fn until_started(count: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while STARTED.load(Ordering::SeqCst) < count {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("lookups started in time");
    }

    /// Callers that gave up (their futures dropped) do not free the threads
    /// their lookups hold: the next lookup waits for one to return.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_stuck_after_their_callers_gave_up_still_count_against_the_bound() {
        // Opened however the test ends: a panic would otherwise leave the
        // lookups looping, and the runtime's drop waiting for them for good.
        let answers_at_the_end = OpenOnDrop;
        let resolver = BoundedResolver {
            running: Arc::new(Semaphore::new(2)),
            lookup: gated_lookup,
        };
        let stuck: Vec<_> = (0..2)
            .map(|i| tokio::spawn(resolve(&resolver, &format!("h{i}.example"))))
            .collect();
        until_started(2).await;
        for caller in stuck {
            caller.abort(); // a connect_timeout passing
        }
        let mut third = tokio::spawn(resolve(&resolver, "h2.example"));
        let waited = tokio::time::timeout(Duration::from_millis(200), &mut third).await;
        assert!(
            waited.is_err(),
            "a third lookup ran while two held their threads"
        );
        assert_eq!(STARTED.load(Ordering::SeqCst), 2);

        drop(answers_at_the_end); // the resolver answers
        let addrs: Vec<SocketAddr> = third.await.unwrap().unwrap().collect();
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 0))]);
        assert_eq!(STARTED.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_system_resolver_answers_for_localhost() {
        let addrs: Vec<SocketAddr> = resolve(&BoundedResolver::default(), "localhost")
            .await
            .unwrap()
            .collect();
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 0),
            "{addrs:?}"
        );
        assert!(!addrs.is_empty());
    }
}
