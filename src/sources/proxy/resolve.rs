//! Resolving the upstreams' host names: on the blocking pool, as hyper's
//! `GaiResolver` does, but at most [`LOOKUPS`] at a time across the process,
//! and at most [`LOOKUPS_PER_HOST`] of them for any one name.
//!
//! Why: `getaddrinfo` cannot be cancelled. A caller whose deadline passes
//! (an SPRecord stream's `connect_timeout`, a Voip24h handshake) drops its
//! future, but a lookup already running holds its blocking thread until the
//! resolver answers, 10–20 s per try when the DNS server is gone. Every
//! stream retried into a new lookup meanwhile, so a relay of a few hundred
//! streams on host names filled tokio's blocking pool, and the Kafka sink's
//! journal reads, WebSocket replays and retention queued behind them.
//! The pool is shared by every account of every vendor, so without a cap per
//! name one vendor whose name alone stopped answering (its authoritative
//! servers gone) and its hundreds of reconnecting accounts kept it full, and
//! another vendor's streams on a healthy host waited for a permit past their
//! `connect_timeout` and were reported as `timeout` on their own host.
//!
//! Guarantees: a lookup's permits (the process's and its name's) are held by
//! the thread running it until it returns, whether or not its caller is
//! still waiting, so no more than [`LOOKUPS`] blocking threads are ever held
//! by lookups, and no more than [`LOOKUPS_PER_HOST`] by lookups of one name;
//! a caller for a name at its cap waits for that name's lookups, holding
//! neither a thread nor one of the process's permits, so a name whose
//! lookups hang leaves the rest of the pool to the other names; a caller
//! waits without holding a thread, and gives its place up when dropped. A
//! name is kept in the table of names only while a lookup of it is running
//! or waited for.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::Service;

/// Lookups running at once, process-wide: enough that a slow but working
/// resolver (a second a lookup) does not hold a start of hundreds of streams
/// past their `connect_timeout` waiting for a permit, few enough to leave
/// most of tokio's 512 blocking threads to the rest when it does not answer.
pub const LOOKUPS: usize = 64;

/// Lookups of one name running at once: half the pool, so a name whose
/// lookups hang leaves the other half to every other name, while a start of
/// hundreds of streams on one name (a vendor's accounts all dialing its one
/// host) still has twice the 16 lookups at once that were found too few for
/// a slow but working resolver.
pub const LOOKUPS_PER_HOST: usize = LOOKUPS / 2;
// A name whose lookups hang must leave permits to the others (mutation
// testing, round 72: a per-name limit over the pool's passed every test).
const _: () = assert!(LOOKUPS_PER_HOST < LOOKUPS && LOOKUPS_PER_HOST >= 16);

static POOL: LazyLock<Arc<Pool>> = LazyLock::new(|| Arc::new(Pool::new(LOOKUPS, LOOKUPS_PER_HOST)));

/// The process's permits, and each name's while it is looked up.
#[derive(Debug)]
struct Pool {
    running: Arc<Semaphore>,
    per_host: usize,
    hosts: Mutex<HashMap<String, Host>>,
}

/// One name's permits, and how many callers wait for or hold one: the name
/// leaves the table when the last of them is done.
#[derive(Debug)]
struct Host {
    running: Arc<Semaphore>,
    users: usize,
}

impl Pool {
    fn new(lookups: usize, per_host: usize) -> Pool {
        Pool {
            running: Arc::new(Semaphore::new(lookups)),
            per_host,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a caller in for `host`, and gives the name's permits. A
    /// poisoned lock still holds a consistent table: nothing in it panics
    /// between two changes.
    fn enter(self: &Arc<Pool>, host: &str) -> (Arc<Semaphore>, HostUser) {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = hosts.entry(host.to_owned()).or_insert_with(|| Host {
            running: Arc::new(Semaphore::new(self.per_host)),
            users: 0,
        });
        entry.users += 1;
        let user = HostUser {
            pool: self.clone(),
            host: host.to_owned(),
        };
        (entry.running.clone(), user)
    }
}

/// A caller waiting for or holding a name's permit; counted out when
/// dropped (a caller that gave up while waiting, a lookup that returned).
struct HostUser {
    pool: Arc<Pool>,
    host: String,
}

impl Drop for HostUser {
    fn drop(&mut self) {
        let mut hosts = self
            .pool
            .hosts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = hosts.get_mut(&self.host) {
            entry.users -= 1;
            if entry.users == 0 {
                hosts.remove(&self.host);
            }
        }
    }
}

/// What a running lookup holds until it returns. Fields drop in order, the
/// name's permit before its user: counted out first, the name could leave
/// the table while its permit is held, and a caller's new semaphore for it
/// let one lookup more than its cap run.
struct Running {
    _process: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
    _user: HostUser,
}

/// How a name is looked up (a test replaces the system's resolver).
type Lookup = fn(&str) -> io::Result<Vec<SocketAddr>>;

/// The system's resolver, as `GaiResolver` asks it (port 0; the connector
/// sets the port).
fn system_lookup(host: &str) -> io::Result<Vec<SocketAddr>> {
    (host, 0).to_socket_addrs().map(Iterator::collect)
}

/// A resolver for hyper's `HttpConnector` bounded by [`LOOKUPS`] and
/// [`LOOKUPS_PER_HOST`].
#[derive(Clone, Debug)]
pub struct BoundedResolver {
    pool: Arc<Pool>,
    lookup: Lookup,
}

impl Default for BoundedResolver {
    fn default() -> Self {
        BoundedResolver {
            pool: POOL.clone(),
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
        let (pool, lookup) = (self.pool.clone(), self.lookup);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // DNS names ignore case: one name's cap whatever its spelling.
            let (host_running, user) = pool.enter(&host.to_ascii_lowercase());
            let closed = |_| io::Error::other("the resolver's permits are closed");
            // The name's permit first: a caller for a name at its cap waits
            // for that name's lookups without taking one of the process's.
            let host_permit = host_running.acquire_owned().await.map_err(closed)?;
            let process_permit = pool.running.clone().acquire_owned().await.map_err(closed)?;
            let running = Running {
                _process: process_permit,
                _host: host_permit,
                _user: user,
            };
            tokio::task::spawn_blocking(move || {
                // Held until the lookup returns, also when its caller gave up.
                let _running = running;
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

    /// Lookups started, and the gate they wait at until a test opens it
    /// (one gate a test: the tests run at once).
    struct Gate {
        started: AtomicUsize,
        open: AtomicBool,
    }

    impl Gate {
        const fn new() -> Gate {
            Gate {
                started: AtomicUsize::new(0),
                open: AtomicBool::new(false),
            }
        }

        /// Does not answer until the test opens the gate (on a blocking
        /// thread, as getaddrinfo does).
        fn wait(&self) -> io::Result<Vec<SocketAddr>> {
            self.started.fetch_add(1, Ordering::SeqCst);
            while !self.open.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], 0))])
        }

        fn started(&self) -> usize {
            self.started.load(Ordering::SeqCst)
        }

        async fn until_started(&self, count: usize) {
            until(|| self.started() >= count).await;
        }
    }

    /// Opened however the test ends: a panic would otherwise leave the
    /// lookups looping, and the runtime's drop waiting for them for good.
    struct OpenOnDrop(&'static Gate);

    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            self.0.open.store(true, Ordering::SeqCst);
        }
    }

    static GATE: Gate = Gate::new();

    fn gated_lookup(_: &str) -> io::Result<Vec<SocketAddr>> {
        GATE.wait()
    }

    /// `a.example` whose lookups hang until the test opens the gate; any
    /// other name answers at once.
    static A_GATE: Gate = Gate::new();

    fn a_hangs(host: &str) -> io::Result<Vec<SocketAddr>> {
        if host.eq_ignore_ascii_case("a.example") {
            A_GATE.wait()
        } else {
            Ok(vec![SocketAddr::from(([127, 0, 0, 2], 0))])
        }
    }

    fn resolve(
        resolver: &BoundedResolver,
        host: &str,
    ) -> <BoundedResolver as Service<Name>>::Future {
        resolver.clone().call(Name::from_str(host).unwrap())
    }

    async fn until(done: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !done() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("came in time");
    }

    fn users(pool: &Pool, host: &str) -> usize {
        pool.hosts.lock().unwrap().get(host).map_or(0, |h| h.users)
    }

    /// Callers that gave up (their futures dropped) do not free the threads
    /// their lookups hold: the next lookup waits for one to return.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_stuck_after_their_callers_gave_up_still_count_against_the_bound() {
        let answers_at_the_end = OpenOnDrop(&GATE);
        let resolver = BoundedResolver {
            pool: Arc::new(Pool::new(2, 2)),
            lookup: gated_lookup,
        };
        let stuck: Vec<_> = (0..2)
            .map(|i| tokio::spawn(resolve(&resolver, &format!("h{i}.example"))))
            .collect();
        GATE.until_started(2).await;
        for caller in stuck {
            caller.abort(); // a connect_timeout passing
        }
        let mut third = tokio::spawn(resolve(&resolver, "h2.example"));
        let waited = tokio::time::timeout(Duration::from_millis(200), &mut third).await;
        assert!(
            waited.is_err(),
            "a third lookup ran while two held their threads"
        );
        assert_eq!(GATE.started(), 2);

        drop(answers_at_the_end); // the resolver answers
        let addrs: Vec<SocketAddr> = third.await.unwrap().unwrap().collect();
        assert_eq!(addrs, [SocketAddr::from(([127, 0, 0, 1], 0))]);
        assert_eq!(GATE.started(), 3);
    }

    /// One name whose lookups hang (its authoritative servers gone, its
    /// hundreds of accounts reconnecting) takes at most its share of the
    /// pool: another name is looked up at once, and the hung name's callers
    /// beyond its cap wait for its own lookups, holding none of the pool's.
    /// The name leaves the table once nothing waits for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_name_whose_lookups_hang_leaves_the_rest_of_the_pool_to_other_names() {
        let answers_at_the_end = OpenOnDrop(&A_GATE);
        let pool = Arc::new(Pool::new(4, 2));
        let resolver = BoundedResolver {
            pool: pool.clone(),
            lookup: a_hangs,
        };
        // More callers for `a` than the whole pool holds.
        let stuck: Vec<_> = (0..6)
            .map(|_| tokio::spawn(resolve(&resolver, "A.example")))
            .collect();
        until(|| users(&pool, "a.example") == 6).await;
        A_GATE.until_started(2).await;

        let other = tokio::time::timeout(Duration::from_secs(10), resolve(&resolver, "b.example"))
            .await
            .expect("b.example was looked up while a.example's lookups hung")
            .unwrap();
        assert_eq!(
            other.collect::<Vec<_>>(),
            [SocketAddr::from(([127, 0, 0, 2], 0))]
        );
        assert_eq!(A_GATE.started(), 2, "a.example ran past its cap");
        // The four beyond the cap hold none of the process's permits.
        assert_eq!(pool.running.available_permits(), 2);
        assert_eq!(users(&pool, "b.example"), 0);

        for caller in stuck {
            caller.abort(); // a connect_timeout passing
        }
        drop(answers_at_the_end); // the resolver answers at last
        until(|| pool.hosts.lock().unwrap().is_empty()).await;
        assert_eq!(pool.running.available_permits(), 4);
        assert_eq!(A_GATE.started(), 2);
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
