//! The memory that webhook bodies being received may hold together.
//!
//! A body is read whole before the vendor's check can run (CareSoft signs
//! the body; the contract checks size before auth), so without a shared
//! bound any sender, credentials or not, could make the relay hold
//! `max_body` per connection for as long as the body takes to arrive.
//!
//! Guarantees: the bytes reserved by all live [`Reservation`]s never exceed
//! the limit a reservation was made under; a reservation gives its bytes back
//! when dropped, however the request ends; a reservation that would pass the
//! limit is refused and leaves the count unchanged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes reserved by bodies being received or waiting for their answer.
#[derive(Debug, Default)]
pub struct BodyBudget {
    in_use: AtomicU64,
}

impl BodyBudget {
    pub fn new() -> Arc<BodyBudget> {
        Arc::new(BodyBudget::default())
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// An empty reservation, grown as the body arrives.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, bytes: u64, limit: u64) -> bool {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |in_use| {
                in_use.checked_add(bytes).filter(|&total| total <= limit)
            })
            .is_ok()
    }
}

/// Bytes held for one request until it is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl Reservation {
    /// Holds at least `total` bytes; false (holding what it held) when the
    /// budget cannot give the difference within `limit`.
    pub fn grow_to(&mut self, total: u64, limit: u64) -> bool {
        let more = total.saturating_sub(self.bytes);
        if more == 0 {
            return true;
        }
        if !self.budget.take(more, limit) {
            return false;
        }
        self.bytes = total;
        true
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.in_use.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_limit_and_give_back_on_drop() {
        let budget = BodyBudget::new();
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        assert!(a.grow_to(600, 1000));
        assert!(!b.grow_to(500, 1000), "600 + 500 is over 1000");
        assert_eq!(budget.in_use(), 600, "a refusal takes nothing");
        assert!(b.grow_to(400, 1000));
        assert!(a.grow_to(600, 1000), "holding as much already");
        assert!(!a.grow_to(601, 1000));
        assert_eq!((a.bytes(), b.bytes(), budget.in_use()), (600, 400, 1000));
        drop(a);
        assert_eq!(budget.in_use(), 400);
        assert!(b.grow_to(1000, 1000));
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_huge_request_cannot_wrap_the_count() {
        let budget = BodyBudget::new();
        let mut a = budget.reservation();
        assert!(a.grow_to(10, u64::MAX));
        let mut b = budget.reservation();
        assert!(!b.grow_to(u64::MAX, u64::MAX));
        assert_eq!(budget.in_use(), 10);
    }
}
