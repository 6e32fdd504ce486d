//! How much journal history the fan-out's sessions hold in memory at once
//! while they replay it (`websocket.replay_memory`).
//!
//! A replay reads a page of up to [`PAGE_BYTES`] from the journal and holds
//! it until the client's socket has taken it, which a slow client makes
//! last (the session gives it `pong_timeout` plus the page's time at
//! 16 KiB/s, then closes the client as slow). Without a bound, every screen reconnecting at once after a relay
//! restart (or a network blip), each far behind, held a page: up to
//! `max_clients` MiB, past a unit's `MemoryMax`, and the restart that kill
//! caused brought them all back again.
//!
//! Guarantees: the pages every session holds, counted in KiB and each at
//! most [`PAGE_BYTES`] (a page one event over that is counted at it), never
//! add up to more than the budget, and never more than a page's worth while
//! it is read: so also at most `budget / PAGE_BYTES` journal reads run at
//! once on the blocking pool. A session holds one page at a time (it reads
//! the next once the last is flushed), so no wait can deadlock; sessions are
//! served in the order they asked (tokio's semaphore is fair).
//! `callrelay_ws_replays_waiting` counts the sessions waiting, for as long
//! as they wait, whichever way the wait ends.

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The most a replay page holds (JSON read per page; one event more when a
/// single event is larger).
pub const PAGE_BYTES: usize = 1024 * 1024;
/// The budget's unit: pages are counted in KiB, so a short page (a screen a
/// few events behind) frees nearly all it took.
const UNIT: usize = 1024;
const PAGE_UNITS: u32 = (PAGE_BYTES / UNIT) as u32;

/// The fan-out's replay budget, shared by every session.
#[derive(Clone)]
pub struct ReplayBudget {
    units: Arc<Semaphore>,
    waiting: IntGauge,
}

/// One session's hold on the budget: a page's worth while it reads, what
/// the page it read takes once [`PageHold::keep`] is told.
pub struct PageHold(OwnedSemaphorePermit);

/// The budget is never closed; only a relay that drops it meanwhile could
/// see this.
#[derive(Debug, thiserror::Error)]
#[error("the replay budget is gone")]
pub struct BudgetGone;

impl ReplayBudget {
    /// A budget of `bytes` (at least one page: a smaller one could never
    /// let a page be read).
    pub fn new(bytes: u64, waiting: IntGauge) -> ReplayBudget {
        let units = usize::try_from(bytes / UNIT as u64)
            .unwrap_or(usize::MAX)
            .clamp(PAGE_UNITS as usize, Semaphore::MAX_PERMITS);
        ReplayBudget {
            units: Arc::new(Semaphore::new(units)),
            waiting,
        }
    }

    /// A page's worth of the budget if there is room for it now (and no
    /// session waits before this one: tokio gives what is released to the
    /// first in line).
    pub fn page_now(&self) -> Option<PageHold> {
        match self.units.clone().try_acquire_many_owned(PAGE_UNITS) {
            Ok(permit) => Some(PageHold(permit)),
            Err(TryAcquireError::Closed | TryAcquireError::NoPermits) => None,
        }
    }

    /// A page's worth of the budget, once the pages other sessions hold
    /// leave room for it.
    pub async fn page(&self) -> Result<PageHold, BudgetGone> {
        if let Some(hold) = self.page_now() {
            return Ok(hold);
        }
        let _waiting = Waiting::new(&self.waiting);
        self.units
            .clone()
            .acquire_many_owned(PAGE_UNITS)
            .await
            .map(PageHold)
            .map_err(|_| BudgetGone)
    }
}

impl PageHold {
    /// Keeps what a page of `bytes` takes (rounded up to the unit, at most a
    /// page) and gives the rest back to the budget.
    pub fn keep(&mut self, bytes: usize) {
        let keep = bytes.div_ceil(UNIT).clamp(1, PAGE_UNITS as usize);
        let spare = self.0.num_permits().saturating_sub(keep);
        drop(self.0.split(spare));
    }
}

/// Counts a session in `callrelay_ws_replays_waiting` until dropped: a wait
/// ends by its page, or by the session ending (a close, a shutdown, a
/// revoked token) while the acquire is dropped.
struct Waiting<'a>(&'a IntGauge);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn budget(bytes: u64) -> (ReplayBudget, IntGauge) {
        let waiting = IntGauge::new("waiting", "test").unwrap();
        (ReplayBudget::new(bytes, waiting.clone()), waiting)
    }

    /// A budget of two pages: a third session waits, is counted waiting,
    /// and gets its page when one is given back, in the order asked.
    #[tokio::test]
    async fn a_session_waits_while_others_hold_the_budget() {
        let (budget, waiting) = budget(2 * PAGE_BYTES as u64);
        let first = budget.page().await.unwrap();
        let _second = budget.page_now().unwrap();
        assert!(budget.page_now().is_none());
        let mut third = Box::pin(budget.page());
        assert!((&mut third).now_or_never().is_none());
        assert_eq!(waiting.get(), 1);
        drop(first);
        assert!((&mut third).now_or_never().is_some());
        assert_eq!(waiting.get(), 0);
    }

    /// A short page frees what it did not need: sessions a few events
    /// behind do not wait for each other.
    #[tokio::test]
    async fn a_short_page_gives_back_what_it_did_not_need() {
        let (budget, waiting) = budget(PAGE_BYTES as u64);
        let mut first = budget.page().await.unwrap();
        let mut second = Box::pin(budget.page());
        assert!((&mut second).now_or_never().is_none());
        first.keep(PAGE_BYTES / 2);
        // Half a page is free, and a page is asked for: still waiting.
        assert!((&mut second).now_or_never().is_none());
        assert_eq!(waiting.get(), 1);
        drop(first);
        let mut second = (&mut second).now_or_never().unwrap().unwrap();
        second.keep(3 * UNIT + 1);
        assert_eq!(second.0.num_permits(), 4);
        // An empty page still holds a unit; a page over the bound holds a page.
        second.keep(0);
        assert_eq!(second.0.num_permits(), 1);
        drop(second);
        let mut third = budget.page().await.unwrap();
        third.keep(5 * PAGE_BYTES);
        assert_eq!(third.0.num_permits(), PAGE_UNITS as usize);
        assert_eq!(waiting.get(), 0);
    }

    /// A session that ends while it waits (its client closed) is no longer
    /// counted waiting, and its place does not hold the budget.
    #[tokio::test]
    async fn a_wait_given_up_is_no_longer_counted() {
        let (budget, waiting) = budget(PAGE_BYTES as u64);
        let first = budget.page().await.unwrap();
        let mut given_up = Box::pin(budget.page());
        assert!((&mut given_up).now_or_never().is_none());
        assert_eq!(waiting.get(), 1);
        drop(given_up);
        assert_eq!(waiting.get(), 0);
        drop(first);
        assert!(budget.page().now_or_never().is_some());
    }

    /// A budget below a page is a page: a replay can always read.
    #[tokio::test]
    async fn a_budget_below_a_page_is_a_page() {
        let (budget, _) = budget(1);
        assert!(budget.page().now_or_never().is_some());
    }
}
