//! The session's `hello`s while it waits on something else: a commit the
//! journal refuses is retried for as long as it takes, and the Voip24h
//! server drops a session that sends no `hello` for 30 s, after which it
//! sends that session's events to nobody. So the wait goes on saying
//! `hello` on the session's own clock.
//!
//! Guarantees: a `hello` goes out when the session's clock says one is due,
//! and the clock moves on with it, so the session's next one keeps its
//! distance; one that fails or does not go out within `limit` ends the
//! `hello`s of this wait (the session finds the link's end itself).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::engine_io::Emitter;

/// When the session's next `hello` is due (none before `sign`, unless a
/// `say` asks), and when the last one went out.
#[derive(Debug, Default)]
pub struct HelloClock {
    pub next: Option<Instant>,
    pub last: Option<Instant>,
}

impl HelloClock {
    /// Notes a `hello` sent now; the next one is due `interval` later.
    pub fn sent(&mut self, interval: Duration) {
        let now = Instant::now();
        self.last = Some(now);
        self.next = Some(now + interval);
    }
}

/// Says `hello` on the session's clock while a wait lasts.
pub struct KeepAlive<'a> {
    pub emitter: Emitter,
    pub clock: &'a mut HelloClock,
    pub interval: Duration,
    /// How long one `hello` may take to go out.
    pub limit: Duration,
}

impl KeepAlive<'_> {
    /// Runs `work` to its end, saying `hello` whenever one is due meanwhile.
    pub async fn during<F: Future>(&mut self, work: F) -> F::Output {
        tokio::pin!(work);
        loop {
            let Some(due) = self.clock.next else {
                return work.await;
            };
            tokio::select! {
                biased;
                out = &mut work => return out,
                _ = tokio::time::sleep_until(due) => {
                    let said = tokio::time::timeout(self.limit, self.emitter.emit("hello", None)).await;
                    if !matches!(said, Ok(Ok(()))) {
                        return work.await;
                    }
                    self.clock.sent(self.interval);
                }
            }
        }
    }
}
