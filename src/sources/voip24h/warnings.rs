//! A Voip24h session's warnings: frames and `response` payloads that cannot
//! be read, and commits the journal refuses, at most one line per kind every
//! [`WARN_EVERY`], the next saying how many were held back; and a group left
//! to its commit at a stop, said once (a stop comes once).
//!
//! Why: a server can repeat a bad frame as fast as it can write it, and a
//! refusing journal (a full disk) was retried and logged every few seconds
//! per account, against operations.md's "things that repeat are logged once
//! and then at most every 30 s".

use std::time::Duration;

use crate::log_throttle::SharedLogThrottle;

/// How often each kind of warning is said.
pub const WARN_EVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    MalformedFrame,
    MalformedResponse,
    JournalRefused,
}

/// One session's warnings.
#[derive(Debug)]
pub struct SessionWarnings {
    throttle: SharedLogThrottle<Kind>,
}

impl Default for SessionWarnings {
    fn default() -> SessionWarnings {
        SessionWarnings {
            throttle: SharedLogThrottle::new(WARN_EVERY),
        }
    }
}

impl SessionWarnings {
    /// `Some(held_back)` when a line about `kind` is due.
    fn due(&self, kind: Kind) -> Option<u64> {
        self.throttle.admit_now(kind)
    }

    /// A socket.io frame that cannot be read, skipped.
    pub fn malformed_frame(&self, account: &str, why: &dyn std::fmt::Display) {
        if let Some(held_back) = self.due(Kind::MalformedFrame) {
            tracing::warn!(vendor = "voip24h", account, error = %why, held_back,
                "malformed socket.io frame; skipped");
        }
    }

    /// A `response` whose payload cannot be read, skipped. The payload may
    /// hold phone numbers: `why` says why, not what.
    pub fn malformed_response(&self, account: &str, why: &dyn std::fmt::Display) {
        if let Some(held_back) = self.due(Kind::MalformedResponse) {
            tracing::warn!(vendor = "voip24h", account, error = %why, held_back,
                "malformed `response` payload; skipped");
        }
    }

    /// A commit of `events` the journal refused, retried in `retry_in`.
    pub fn journal_refused(
        &self,
        account: &str,
        events: usize,
        why: &dyn std::fmt::Display,
        retry_in: Duration,
    ) {
        let retry_in_ms = crate::logging::millis(retry_in);
        match self.due(Kind::JournalRefused) {
            Some(held_back) => {
                tracing::warn!(vendor = "voip24h", account, events, error = %why, retry_in_ms, held_back,
                    "journal refused events; retrying");
            }
            None => tracing::debug!(vendor = "voip24h", account, events, error = %why, retry_in_ms,
                "journal refused events; retrying"),
        }
    }

    /// A group queued before the stop whose commit had not ended `grace`
    /// after the drain: said, once per stop; counted as lost only if that
    /// commit then fails (`deliver::count_lost_at_stop`).
    pub fn group_unanswered(&self, account: &str, events: usize, grace: Duration) {
        let grace_ms = crate::logging::millis(grace);
        tracing::warn!(
            vendor = "voip24h",
            account,
            events,
            grace_ms,
            "`response` events handed to the journal before the stop had no answer by the end of the drain's grace (a slow commit): they are journaled if that commit succeeds, and counted as lost if it fails"
        );
    }
}
