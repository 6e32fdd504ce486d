//! The per-account connection budget: SPRecord accepts at most three
//! concurrent `/sys/events` connections per account.
//!
//! Guarantee: a connection may be opened only while holding a [`ConnPermit`],
//! and [`connection`](super::connection) moves the permit into the task that
//! owns the socket, so a permit is returned only once its socket is closed.
//! A stream that is still closing therefore still counts while another opens.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One right to hold one open connection.
pub type ConnPermit = OwnedSemaphorePermit;

/// Shared by every stream of one account.
#[derive(Clone, Debug)]
pub struct ConnLimiter {
    slots: Arc<Semaphore>,
}

impl ConnLimiter {
    pub fn new(max_connections: usize) -> ConnLimiter {
        ConnLimiter {
            slots: Arc::new(Semaphore::new(max_connections)),
        }
    }

    /// Waits until a connection may be opened.
    pub async fn acquire(&self) -> ConnPermit {
        // The semaphore is never closed, so this cannot fail; were it ever to,
        // waiting forever keeps the budget where opening anyway would break it.
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => std::future::pending().await,
        }
    }

    /// Connections that could be opened right now (for tests and /status detail).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_fourth_connection_waits_until_a_permit_is_returned() {
        let limiter = ConnLimiter::new(3);
        let held: Vec<_> = [(); 3].iter().map(|_| limiter.clone()).collect();
        let mut permits = Vec::new();
        for l in &held {
            permits.push(l.acquire().await);
        }
        assert_eq!(limiter.available(), 0);
        let fourth = tokio::time::timeout(Duration::from_millis(50), limiter.acquire()).await;
        assert!(fourth.is_err(), "a fourth permit must not be granted");
        permits.pop();
        let fourth = tokio::time::timeout(Duration::from_secs(1), limiter.acquire()).await;
        assert!(fourth.is_ok());
    }
}
