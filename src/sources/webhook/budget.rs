//! The memory that webhook bodies being received, and their events waiting
//! for the journal (counted at their JSON's length once it is larger), may
//! hold together.
//!
//! A body is read whole before the vendor's check can run (CareSoft signs
//! the body; the contract checks size before auth), so without a shared
//! bound any sender, credentials or not, could make the relay hold
//! `max_body` per connection for as long as the body takes to arrive.
//!
//! Guarantees:
//! - the bytes held by all live [`Reservation`]s never exceed the limit a
//!   reservation grew under, and one webhook account's never exceed half of
//!   it, so a sender that can fill one account's share (CareSoft's, whose
//!   check needs the body) cannot turn the other accounts away; save that
//!   an event's JSON ([`Reservation::try_grow_event_to`]) may pass its
//!   account's half when no other reservation of its account holds bytes,
//!   and the limit when none at all does, so what is held is at most the
//!   larger of the limit and one event's JSON (and an account's the larger
//!   of its half and one event's JSON);
//! - a reservation gives its bytes back when dropped, however the request
//!   ends; a growth that would pass a limit is refused and changes nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The bytes held by bodies being received, or by their events waiting for
/// their answer.
#[derive(Debug, Default)]
pub struct BodyBudget {
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: u64,
    /// Per `vendor/account`; an account holding nothing has no entry.
    by_account: HashMap<String, u64>,
}

impl BodyBudget {
    pub fn new() -> Arc<BodyBudget> {
        Arc::new(BodyBudget::default())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Every change is made whole under the lock: a panic elsewhere
        // cannot leave it half done.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes held now, by every account together.
    pub fn in_use(&self) -> u64 {
        self.held().total
    }

    /// An empty reservation for `account` (`vendor/account`), grown as the
    /// body arrives.
    pub fn reservation(self: &Arc<Self>, account: String) -> Reservation {
        Reservation {
            budget: self.clone(),
            account,
            bytes: 0,
        }
    }

    /// Takes `more` bytes for `account` within `limit`, and within half of
    /// it for the account; `alone`, the bytes the taking reservation holds
    /// already when it may pass a bound of which no one else holds any.
    fn take(&self, account: &str, more: u64, limit: u64, alone: Option<u64>) -> Result<(), Full> {
        let mut held = self.held();
        let of_account = held.by_account.get(account).copied().unwrap_or(0);
        let fits = |held: u64, limit: u64| {
            held.checked_add(more).is_some_and(|t| t <= limit) || alone == Some(held)
        };
        // The account's half first: when two floods fill the budget, their
        // own senders are told it is their account's share, not given the
        // words every other account gets ("together").
        if !fits(of_account, Full::Account.bound(limit)) {
            return Err(Full::Account);
        }
        if !fits(held.total, limit) {
            return Err(Full::All);
        }
        held.total += more;
        // The key is copied only when the account holds nothing yet, not on
        // every frame of every body.
        match held.by_account.get_mut(account) {
            Some(of_account) => *of_account += more,
            None => {
                held.by_account.insert(account.to_owned(), more);
            }
        }
        Ok(())
    }

    fn give_back(&self, account: &str, bytes: u64) {
        let mut held = self.held();
        held.total = held.total.saturating_sub(bytes);
        if let Some(of_account) = held.by_account.get_mut(account) {
            *of_account = of_account.saturating_sub(bytes);
            if *of_account == 0 {
                held.by_account.remove(account);
            }
        }
    }
}

/// Which bound a body did not fit in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// The budget of every account together.
    All,
    /// This account's half of it.
    Account,
}

impl Full {
    /// The bound itself, of a budget of `limit`.
    pub fn bound(self, limit: u64) -> u64 {
        match self {
            Full::All => limit,
            Full::Account => limit / 2,
        }
    }
}

/// Bytes held for one request until it is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    account: String,
    bytes: u64,
}

impl Reservation {
    /// Holds at least `total` bytes; false (holding what it held) when the
    /// budget cannot give the difference within `limit`, or within half of
    /// it for this account.
    pub fn grow_to(&mut self, total: u64, limit: u64) -> bool {
        self.try_grow_to(total, limit).is_ok()
    }

    /// As [`Reservation::grow_to`], saying which bound refused.
    pub fn try_grow_to(&mut self, total: u64, limit: u64) -> Result<(), Full> {
        self.grow(total, limit, None)
    }

    /// As [`Reservation::try_grow_to`], for an event's JSON, which can be
    /// many times its body: it may pass its account's half while no other
    /// reservation of its account holds bytes, and the limit while none at
    /// all does. Refused beyond a bound held by itself alone, it would be
    /// refused on every retry, and a body within `max_body` must not be.
    pub fn try_grow_event_to(&mut self, total: u64, limit: u64) -> Result<(), Full> {
        self.grow(total, limit, Some(self.bytes))
    }

    fn grow(&mut self, total: u64, limit: u64, alone: Option<u64>) -> Result<(), Full> {
        let more = total.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        self.budget.take(&self.account, more, limit, alone)?;
        self.bytes = total;
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Gives back what it holds, before the request is over (a refused
    /// body being read off holds nothing).
    pub fn release(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(&self.account, self.bytes);
            self.bytes = 0;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_limit_and_give_back_on_drop() {
        let budget = BodyBudget::new();
        let mut a = budget.reservation("tel4vn/a".into());
        let mut b = budget.reservation("voipex/b".into());
        let mut c = budget.reservation("voip24h/c".into());
        assert!(a.grow_to(400, 1000));
        assert!(b.grow_to(400, 1000));
        assert!(!c.grow_to(300, 1000), "400 + 400 + 300 is over 1000");
        assert_eq!(budget.in_use(), 800, "a refusal takes nothing");
        assert!(c.grow_to(200, 1000));
        assert!(a.grow_to(400, 1000), "holding as much already");
        assert!(!a.grow_to(401, 1000));
        assert_eq!((a.bytes(), b.bytes(), c.bytes()), (400, 400, 200));
        drop(a);
        assert_eq!(budget.in_use(), 600);
        drop((b, c));
        assert_eq!(budget.in_use(), 0);
        assert!(budget.held().by_account.is_empty());
    }

    #[test]
    fn one_account_holds_at_most_half() {
        let budget = BodyBudget::new();
        let mut first = budget.reservation("caresoft/cs".into());
        let mut second = budget.reservation("caresoft/cs".into());
        assert!(first.grow_to(300, 1000));
        assert!(second.grow_to(200, 1000), "500 is half");
        assert!(!second.grow_to(201, 1000), "the account's half is full");
        let mut other = budget.reservation("tel4vn/t4".into());
        assert!(other.grow_to(500, 1000), "another account still has room");
        drop(first);
        assert!(second.grow_to(500, 1000));
        second.release();
        assert_eq!((second.bytes(), budget.in_use()), (0, 500));
        drop(second);
        assert_eq!(
            budget.in_use(),
            500,
            "released bytes are not given back twice"
        );
    }

    /// Two accounts that fill the budget between them are each told their
    /// own half is full; only a third account hears "together". All of them
    /// heard "together", so nothing told the holders from the accounts they
    /// turned away (isolation review, 2026-12-06).
    #[test]
    fn the_accounts_filling_the_budget_are_told_it_is_their_half() {
        let budget = BodyBudget::new();
        let mut a = budget.reservation("caresoft/a".into());
        let mut b = budget.reservation("caresoft/b".into());
        assert!(a.grow_to(500, 1000));
        assert!(b.grow_to(500, 1000));
        let mut more_of_a = budget.reservation("caresoft/a".into());
        assert_eq!(more_of_a.try_grow_to(1, 1000), Err(Full::Account));
        let mut other = budget.reservation("tel4vn/c".into());
        assert_eq!(other.try_grow_to(1, 1000), Err(Full::All));
    }

    /// An event's JSON passes a bound only while no other reservation
    /// holds any of it, and none grows beside it then: what is held is at
    /// most the larger of the limit and that one event.
    #[test]
    fn an_event_passes_a_bound_only_alone_and_none_grows_beside_it() {
        let budget = BodyBudget::new();
        let mut event = budget.reservation("voip24h/a".into());
        assert!(event.grow_to(400, 1000));
        let mut other = budget.reservation("tel4vn/b".into());
        assert!(other.grow_to(200, 1000));
        assert_eq!(event.try_grow_event_to(800, 1000), Ok(()), "past its half");
        assert_eq!(
            event.try_grow_event_to(801, 1000),
            Err(Full::All),
            "not past the limit while another account holds bytes"
        );
        let mut of_a = budget.reservation("voip24h/a".into());
        assert_eq!(of_a.try_grow_event_to(1, 1000), Err(Full::Account));
        assert_eq!(of_a.try_grow_to(1, 1000), Err(Full::Account));
        drop(other);
        assert_eq!(event.try_grow_event_to(5000, 1000), Ok(()), "alone");
        assert_eq!(budget.in_use(), 5000);
        let mut of_b = budget.reservation("tel4vn/b".into());
        assert_eq!(of_b.try_grow_to(1, 1000), Err(Full::All));
        assert_eq!(of_b.try_grow_event_to(1, 1000), Err(Full::All));
        assert_eq!(of_a.try_grow_event_to(1, 1000), Err(Full::Account));
        assert_eq!(
            event.try_grow_to(5001, 1000),
            Err(Full::Account),
            "a body never passes a bound"
        );
        drop(event);
        assert_eq!(budget.in_use(), 0);
        assert!(budget.held().by_account.is_empty());
    }

    #[test]
    fn a_huge_request_cannot_wrap_the_count() {
        let budget = BodyBudget::new();
        let mut a = budget.reservation("a/a".into());
        assert!(a.grow_to(10, u64::MAX));
        let mut b = budget.reservation("b/b".into());
        assert!(!b.grow_to(u64::MAX, u64::MAX));
        assert_eq!(budget.in_use(), 10);
    }
}
