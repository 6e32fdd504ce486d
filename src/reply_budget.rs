//! The memory that rendered `/metrics` and `/status` replies hold together
//! until their clients have taken them.
//!
//! A reply is rendered whole before hyper writes it, and hyper writes it
//! only as fast as its client takes it: an HTTP/1.1 client that does not
//! read, or an HTTP/2 client that opens no flow-control window
//! (`SETTINGS_INITIAL_WINDOW_SIZE` 0, or 1 byte: h2 then takes the whole
//! chunk into its send queue), leaves it in the relay until the connection
//! closes, `idle` (75 s) after the reply's head went out. With no credentials
//! and nothing else bounding it, `server.max_connections` connections of 16
//! streams each held 32,768 replies: about 2 GB of a 62 KiB `/metrics`
//! (memory audit, 2026-12-07).
//!
//! Guarantees:
//! - the bytes of every [`ReplyBudget::body`] alive never pass the budget's
//!   limit, but for one reply alone: a reply larger than the whole budget is
//!   taken while nothing else is held, so that a scrape of a relay whose
//!   `/metrics` outgrew the budget still gets through;
//! - a reply counts what it allocates (its text, the render's spare
//!   capacity given back first);
//! - a reply's bytes count from its render until the last handle on them is
//!   dropped: written to the socket in full (hyper and h2 keep the chunk, not
//!   a copy, until then), or given up with its stream or its connection;
//! - a reply that does not fit is refused and changes nothing; a request
//!   whose route's last reply would not fit now is refused before the
//!   render, so a flood of requests while the budget is full costs no
//!   renders.
//!
//! Only these two routes count: their replies grow with the accounts (about
//! 1 MB each at 10,000). The others are not refused for a scraper's sake: a
//! webhook's answer, `/healthz` and the refusals are a few hundred bytes,
//! `/readyz` (a load balancer's probe) up to about 12 KB (it lists 20
//! reasons of each kind, then how many more), and the webhook path takes no
//! shared count per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;

use crate::log_throttle::LogThrottle;

/// A route whose replies count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Status,
}

impl Route {
    pub const ALL: [Route; 2] = [Route::Metrics, Route::Status];

    /// `callrelay_http_replies_refused_total`'s `route`.
    pub fn label(self) -> &'static str {
        match self {
            Route::Metrics => "metrics",
            Route::Status => "status",
        }
    }

    /// Its place in [`Route::ALL`].
    fn index(self) -> usize {
        match self {
            Route::Metrics => 0,
            Route::Status => 1,
        }
    }
}

/// How often refusals on one route are logged again while they go on.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// The bytes held by rendered replies not yet taken by their clients.
#[derive(Debug)]
pub struct ReplyBudget {
    held: AtomicU64,
    limit: u64,
    /// Each route's last rendered reply, in bytes, by [`Route::index`]: the
    /// size its next one is checked at before it is rendered.
    last_rendered: [AtomicU64; Route::ALL.len()],
    /// Taken on a refusal only, never on a reply that fits.
    refusals: Mutex<LogThrottle<&'static str>>,
}

/// A reply that did not fit in the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rendered replies not yet taken by their clients hold {held} bytes of the {limit} allowed")]
pub struct Full {
    pub held: u64,
    pub limit: u64,
}

impl ReplyBudget {
    pub fn new(limit: u64) -> Arc<ReplyBudget> {
        Arc::new(ReplyBudget {
            held: AtomicU64::new(0),
            limit,
            last_rendered: Route::ALL.map(|_| AtomicU64::new(0)),
            refusals: Mutex::new(LogThrottle::new(REFUSAL_LOG_INTERVAL)),
        })
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    fn fits(&self, held: u64, bytes: u64) -> bool {
        held == 0
            || held
                .checked_add(bytes)
                .is_some_and(|total| total <= self.limit)
    }

    fn full(&self, held: u64) -> Full {
        Full {
            held,
            limit: self.limit,
        }
    }

    /// What `render` gives, as `route`'s response body whose bytes stay
    /// counted for as long as any part of it is held; refused when they do
    /// not fit, and without rendering when the route's last reply would not.
    pub fn body(
        self: &Arc<Self>,
        route: Route,
        render: impl FnOnce() -> String,
    ) -> Result<Body, Full> {
        let last_rendered = &self.last_rendered[route.index()];
        let held = self.held();
        // A full budget sits within a reply of its limit, seldom at it: a
        // check for one byte let each refused request render its whole
        // reply to throw it away. A reply that shrank since its last is
        // refused while it would fit, at most until the replies held go.
        if !self.fits(held, last_rendered.load(Ordering::Relaxed).max(1)) {
            return Err(self.full(held));
        }
        let text = render();
        last_rendered.store(
            u64::try_from(text.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let counted = self.reserve(text)?;
        // The owner goes with the last `Bytes` handle on it, wherever hyper
        // or h2 keeps it: the count follows the memory, not the body.
        Ok(Body::from(Bytes::from_owner(counted)))
    }

    /// `text` counted in the budget until dropped; refused when it does
    /// not fit.
    fn reserve(self: &Arc<Self>, text: String) -> Result<Counted, Full> {
        // A render grows its `String` by doubling: the spare capacity,
        // up to as much again as the text, would be held with it uncounted.
        // A copy, not `shrink_to_fit`: mimalloc (the daemon's allocator)
        // keeps a block in place when shrunk to half or more of it, while
        // `capacity()` reads the size asked for, so a shrunk render held
        // its doubled block and counted its length. A copy of a render
        // (one per scrape) is a memcpy of at most a few MB.
        let text = if text.capacity() > text.len() {
            String::from(text.as_str())
        } else {
            text
        };
        let bytes = u64::try_from(text.capacity()).unwrap_or(u64::MAX);
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                self.fits(held, bytes).then(|| held.saturating_add(bytes))
            })
            .map_err(|held| self.full(held))?;
        Ok(Counted {
            text,
            bytes,
            budget: self.clone(),
        })
    }

    /// `Some(held_back)` when a refusal on `route` is to be logged: the
    /// first, then one per interval with how many were not.
    pub fn log_refusal(&self, route: Route) -> Option<u64> {
        self.refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(route.label(), Instant::now())
    }
}

/// A rendered reply and its place in the budget, given back when dropped.
struct Counted {
    text: String,
    bytes: u64,
    budget: Arc<ReplyBudget>,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A route's first refusal is logged, the next ones within the
    /// interval are not, and each route has its own (mutation testing,
    /// round 72: logging none, or every one, passed every unit test).
    #[test]
    fn refusals_are_logged_once_an_interval_per_route() {
        let budget = ReplyBudget::new(100);
        assert_eq!(budget.log_refusal(Route::Metrics), Some(0));
        assert_eq!(budget.log_refusal(Route::Metrics), None);
        assert_eq!(budget.log_refusal(Route::Metrics), None);
        assert_eq!(budget.log_refusal(Route::Status), Some(0));
    }

    /// `callrelay_http_replies_refused_total`'s `route` values, as README
    /// and the alert rules name them (mutation testing, round 72: any text
    /// passed every unit test).
    #[test]
    fn each_route_is_labelled_as_documented() {
        let labels: Vec<&str> = Route::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels, ["metrics", "status"]);
        assert!(Route::ALL.iter().enumerate().all(|(i, r)| r.index() == i));
    }

    #[tokio::test]
    async fn replies_stay_within_the_limit_until_their_bytes_are_dropped() {
        let budget = ReplyBudget::new(100);
        let first = budget
            .body(Route::Metrics, || "a".repeat(60))
            .expect("fits");
        let second = budget
            .body(Route::Status, || "b".repeat(40))
            .expect("fits exactly");
        assert_eq!(budget.held(), 100);
        let refused = budget.body(Route::Status, || {
            unreachable!("rendered while the budget is full")
        });
        assert_eq!(refused.map(|_| ()), Err(budget.full(100)));
        // Taken out of the body, as hyper does, the bytes stay counted
        // until the chunk itself is dropped.
        let chunk = first.collect().await.expect("body").to_bytes();
        assert_eq!(budget.held(), 100);
        let part = chunk.slice(10..20);
        drop(chunk);
        assert_eq!(budget.held(), 100, "a part of it is still held");
        drop(part);
        assert_eq!(budget.held(), 40);
        // Its last reply would fit: rendered, larger, and refused.
        let refused = budget
            .body(Route::Metrics, || "c".repeat(61))
            .expect_err("40 + 61");
        assert_eq!(refused, budget.full(40));
        assert_eq!(budget.held(), 40, "a refusal takes nothing");
        drop(second);
        assert_eq!(budget.held(), 0);
    }

    /// A render's `String` grows by doubling: up to half of what it holds
    /// is spare capacity. Before (review of the reply budget, 2026-12-07)
    /// the budget counted its length only, and held up to twice its limit.
    #[test]
    fn a_reply_counts_all_the_memory_it_holds() {
        let budget = ReplyBudget::new(1 << 20);
        let mut text = String::with_capacity(4096);
        text.push_str(&"a".repeat(2049));
        let counted = budget.reserve(text).expect("fits");
        assert_eq!(
            budget.held(),
            u64::try_from(counted.text.capacity()).expect("u64"),
            "counted, against what the reply holds"
        );
        assert_eq!(budget.held(), 2049, "no spare capacity kept");
        drop(counted);
        assert_eq!(budget.held(), 0);
    }

    /// A full budget sits within one reply of its limit, seldom at it:
    /// before (review of the reply budget, 2026-12-07) only a budget at its
    /// limit refused unrendered, and every other refused request rendered
    /// its whole reply to throw it away.
    #[test]
    fn a_request_whose_routes_last_reply_would_not_fit_is_refused_unrendered() {
        let budget = ReplyBudget::new(100);
        drop(
            budget
                .body(Route::Metrics, || "m".repeat(40))
                .expect("fits"),
        );
        let status = budget.body(Route::Status, || "s".repeat(70)).expect("fits");
        let refused = budget.body(Route::Metrics, || {
            unreachable!("rendered though its last reply, 40 bytes, does not fit in 30")
        });
        assert_eq!(refused.map(|_| ()), Err(budget.full(70)));
        drop(status);
        // A route whose last reply fits is rendered.
        drop(
            budget
                .body(Route::Metrics, || "m".repeat(30))
                .expect("fits"),
        );
        let _status = budget.body(Route::Status, || "s".repeat(70)).expect("fits");
        let _metrics = budget
            .body(Route::Metrics, || "m".repeat(30))
            .expect("fits exactly");
        assert_eq!(budget.held(), 100);
    }

    #[test]
    fn one_reply_larger_than_the_whole_budget_is_taken_alone() {
        let budget = ReplyBudget::new(100);
        let large = budget
            .body(Route::Metrics, || "x".repeat(500))
            .expect("nothing else is held");
        assert_eq!(budget.held(), 500);
        assert!(budget.body(Route::Metrics, || "y".to_owned()).is_err());
        drop(large);
        assert!(budget.body(Route::Metrics, || "z".repeat(100)).is_ok());
        assert_eq!(budget.held(), 0);
    }
}
