//! Shutdown's wait for the WebSocket sessions.
//!
//! Why this exists: once a connection is upgraded, hyper hands its socket to
//! the session task and forgets it, so axum's graceful shutdown does not wait
//! for sessions. A session holds the `Context` — and so the journal — until
//! its close handshake is over; without this wait `Relay::wait` could return
//! with the journal still open (a restart in the same process would find it
//! "already open") and the process could exit before clients got their 1001.
//!
//! Guarantees: every session is counted from the moment its `max_clients`
//! slot is taken (before the upgrade) until the slot is freed, so none can
//! slip between the HTTP server ending and the wait beginning; the wait is
//! bounded ([`SHUTDOWN_BOUND`]): sessions still running then are abandoned
//! and counted in a warning, so one client can never hold shutdown forever.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

/// How long shutdown waits for the sessions once the HTTP server has ended.
/// A session reacts to shutdown within its 250 ms close grace (even one stuck
/// in a write), so reaching this bound means something is wrong, or a
/// replay page is still being read from a slow disk (its session sent its
/// 1001 already; the read counts as a session until it ends).
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);

/// The running sessions of one relay.
#[derive(Debug)]
pub struct Sessions {
    tracker: TaskTracker,
    /// Told of every applied reload that changes who is let in (tokens,
    /// scopes, origins), so sessions can check their token again.
    reloaded: watch::Sender<()>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            tracker: TaskTracker::default(),
            reloaded: watch::Sender::new(()),
        }
    }
}

/// One session's presence; the session counts as running until it is dropped.
#[derive(Debug)]
pub(super) struct Running {
    _token: TaskTrackerToken,
}

impl Sessions {
    /// Counts a session as running until the returned value is dropped.
    pub(super) fn enter(&self) -> Running {
        Running {
            _token: self.tracker.token(),
        }
    }

    /// Tells every session that a reload that changes who is let in was
    /// applied (the config holds it).
    pub fn reloaded(&self) {
        self.reloaded.send_replace(());
    }

    /// Changes after each [`Sessions::reloaded`] from now on.
    pub(super) fn reloads(&self) -> watch::Receiver<()> {
        self.reloaded.subscribe()
    }

    /// How many sessions are running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Waits until every session has ended, at most `bound`; returns how many
    /// were abandoned (and logs them at warn). Call once no new session can
    /// start, i.e. after the HTTP server has ended.
    pub async fn drain(&self, bound: Duration) -> usize {
        self.tracker.close();
        if tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let abandoned = self.tracker.len();
        tracing::warn!(
            abandoned,
            bound_s = bound.as_secs_f64(),
            "shutdown: WebSocket sessions (or their replay reads from the journal) did not end in time; not waiting for them"
        );
        abandoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_running_sessions() {
        let sessions = Sessions::default();
        assert_eq!((sessions.len(), sessions.is_empty()), (0, true));
        let running = sessions.enter();
        assert_eq!((sessions.len(), sessions.is_empty()), (1, false));
        let ended = tokio::spawn(async move {
            tokio::task::yield_now().await;
            drop(running);
        });
        assert_eq!(sessions.drain(Duration::from_secs(30)).await, 0);
        assert!(sessions.is_empty());
        ended.await.unwrap();
    }

    #[tokio::test]
    async fn drain_gives_up_after_the_bound() {
        let sessions = Sessions::default();
        let _stuck = sessions.enter();
        assert_eq!(sessions.drain(Duration::from_millis(50)).await, 1);
    }

    #[test]
    fn every_session_subscribed_is_told_of_each_reload() {
        let sessions = Sessions::default();
        let mut first = sessions.reloads();
        assert!(!first.has_changed().unwrap(), "nothing reloaded yet");
        sessions.reloaded();
        let second = sessions.reloads();
        assert!(first.has_changed().unwrap());
        assert!(
            !second.has_changed().unwrap(),
            "only reloads after it subscribed"
        );
        first.mark_unchanged();
        sessions.reloaded();
        assert!(first.has_changed().unwrap() && second.has_changed().unwrap());
    }
}
