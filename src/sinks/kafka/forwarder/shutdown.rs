//! The forwarder's stop: in-flight reports are waited for up to a deadline,
//! then the producer's queue and requests in flight are purged, then the
//! cursor is written durably, clean only when nothing after it may be in
//! Kafka, and with when it let go of records unreported, if it did (taken
//! after the purge: the next run's read-back waits for their requests to
//! land), then the producer is let go of, waited for up to a bound (its
//! drop may wait on a name lookup; see `let_go_off_the_workers`). At a
//! reload's stop, what `journal.max_size` dropped while the sink held it is
//! then counted as lost; at a process stop it is left to the next start.

use futures::stream::StreamExt;

use super::super::StopReason;
use super::recovery::{self, let_go_off_the_workers};
use super::{CURSOR_WRITE_LOG_INTERVAL, Forwarder};
use crate::log_throttle::LogThrottle;

impl Forwarder {
    /// Waits for in-flight reports up to the deadline, persists the cursor
    /// durably; at a reload's stop, counts the held drops it let go of.
    pub(super) async fn shutdown(mut self, reason: StopReason) {
        let deadline = tokio::time::Instant::now() + self.tuning.shutdown_deadline;
        let mut broken = false;
        // The drain may take the whole deadline against a slow broker (a
        // reload waits for it): `/status` and the lag gauge stay current.
        let mut tick = tokio::time::interval(self.tuning.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                report = tokio::time::timeout_at(deadline, self.in_flight.next()) => match report {
                    Ok(Some(report)) => {
                        broken = self.settle(report, broken);
                        // A reload stops the sink while the webhooks run on.
                        self.drained_one().await;
                    }
                    _ => break,
                },
                _ = tick.tick() => self.publish_status(),
            }
        }
        let unreported = self.in_flight.len();
        // Purged first: nothing queued is sent after it, so the time taken
        // next is not before the last send, however long the write after it
        // takes (taken before the write and the purge, a slow fsync moved
        // the last send past it; review of a1827a8/1514f9f).
        if let Some(p) = &self.producer {
            recovery::purge_off_the_workers(p).await;
        }
        #[cfg(test)]
        PURGE_ENDED.set(Some((
            recovery::wall_ms(),
            self.ctx.journal.durable_cursor_writes(),
        )));
        if unreported > 0 {
            // Their requests may be on the wire: the next run, in this
            // process or the next, reads back only once they had time to land.
            self.requests_may_land_since_ms = Some(recovery::wall_ms());
        }
        // Clean only when nothing beyond the cursor may be in Kafka: not
        // handed over by this run, nor left unread from a crashed one.
        let clean = unreported == 0
            && self.next == self.cursor
            && self.resume.as_ref().is_none_or(|r| r.upto() <= self.cursor);
        // The last write's error is said whatever the throttle held back.
        self.cursor_writes_logged = LogThrottle::new(CURSOR_WRITE_LOG_INTERVAL);
        let persisted = self.persist_state(true, clean).await;
        // Not `drop_producer`: its cluster check is for the reports a
        // recovery drains after the drop, and none are taken here. Made
        // after the save, it said the offsets just saved were dropped (a
        // producer not compared yet: nothing delivered since a `brokers`
        // change), and the next run compares them again. Purged above:
        // only dropped here, waited for within a bound.
        if let Some(p) = self.producer.take() {
            let_go_off_the_workers(p).await;
        }
        // The lag logged below is then what the journal still holds for the
        // next run.
        self.let_go_of_memory().await;
        // The process goes on after a reload: counted here, or with
        // `[kafka]` removed nothing counts them until one is added back,
        // maybe weeks later, whose start pages for an old loss. At a
        // process stop `/metrics` is closed already, so the journal keeps
        // the record for the next start, which counts them where they are
        // seen. An error leaves the record to that next start too, and so
        // does a process stop that came while a reload's stop drained (the
        // listener is closing: counted here, they would go unseen).
        if reason == StopReason::Reload && !self.ctx.shutdown.is_cancelled() {
            let _ = self.count_held_drops_let_go().await;
        }
        if persisted {
            tracing::info!(
                cursor = self.cursor,
                lag = self.lag(),
                unreported,
                "kafka sink stopped; the cursor is durable"
            );
        } else {
            // The next run starts from the last cursor written and reads
            // back what Kafka already holds after it, as after a crash.
            tracing::warn!(
                cursor = self.cursor,
                last_written_cursor = self.persisted,
                lag = self.lag(),
                unreported,
                "kafka sink stopped; its cursor could not be written, the next start resumes from the last one written and reads back what Kafka already holds"
            );
        }
        self.show_lag(self.lag());
        self.ctx.status.remove_sink("kafka");
    }
}

#[cfg(test)]
thread_local! {
    /// Test-only: when the last stop on this thread had purged its producer
    /// (`wall_ms`), and the journal's durable cursor writes by then.
    pub(super) static PURGE_ENDED: std::cell::Cell<Option<(i64, u64)>> =
        const { std::cell::Cell::new(None) };
}
