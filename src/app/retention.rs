//! The journal's retention pass: every 30 s, and within a second of the
//! journal passing `max_size`.
//!
//! Guarantees: an event a sink has not delivered is dropped only by
//! `max_size`, and then counted (`callrelay_journal_dropped_events_total`)
//! and logged, at most once per pass interval with the counts since the last
//! line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Context;
use crate::journal::RetentionReport;

const RETENTION_EVERY: Duration = Duration::from_secs(30);
/// How often the journal's size is compared with `max_size` between passes:
/// a burst would otherwise grow it (and redb's file, which does not shrink)
/// by up to 30 s of ingest past the limit.
const SIZE_CHECK_EVERY: Duration = Duration::from_secs(1);

pub(super) async fn retention_loop(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    let mut size_check = tokio::time::interval(SIZE_CHECK_EVERY);
    size_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max_size = ctx.journal.options().max_size;
    let mut drops = DropLog::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = size_check.tick() => {
                if ctx.journal.bytes() <= max_size {
                    continue;
                }
            }
        }
        let journal = ctx.journal.clone();
        let sinks = ctx.active_sinks();
        let result = tokio::task::spawn_blocking(move || journal.enforce_retention(&sinks)).await;
        match result {
            Ok(Ok(report)) => {
                let m = &ctx.metrics;
                m.journal_dropped
                    .with_label_values(&["delivered"])
                    .inc_by(report.dropped_delivered);
                ctx.status.dropped_undelivered(report.dropped_undelivered);
                drops.add(&report);
                if report.expired > 0 {
                    tracing::debug!(expired = report.expired, "retention removed old events");
                }
                m.journal_bytes.set(ctx.journal.bytes() as i64);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "retention pass failed"),
            Err(e) => tracing::error!(error = %e, "retention task failed"),
        }
    }
}

/// Events `max_size` dropped, logged at most once per [`RETENTION_EVERY`]
/// with the counts since the last line: at the limit under steady load every
/// size check drops a few, and a line a second would bury the rest.
#[derive(Default)]
struct DropLog {
    logged_at: Option<Instant>,
    undelivered: u64,
    delivered: u64,
    held: u64,
}

impl DropLog {
    fn add(&mut self, report: &RetentionReport) {
        self.undelivered += report.dropped_undelivered;
        self.delivered += report.dropped_delivered;
        self.held += report.dropped_held;
        if self.undelivered + self.delivered + self.held == 0
            || self
                .logged_at
                .is_some_and(|t| t.elapsed() < RETENTION_EVERY)
        {
            return;
        }
        if self.undelivered > 0 {
            tracing::error!(
                dropped = self.undelivered,
                "journal reached max_size: dropped events that a sink had not delivered"
            );
        }
        if self.delivered > 0 {
            tracing::warn!(
                dropped = self.delivered,
                "journal reached max_size: dropped delivered events before their retention"
            );
        }
        if self.held > 0 {
            // Not lost: the sink delivers them from memory, unless it has to
            // let go of them first (then counted as undelivered).
            tracing::warn!(
                dropped = self.held,
                "journal reached max_size: dropped events the Kafka sink holds in memory, not yet delivered; a restart before it delivers them loses them"
            );
        }
        *self = DropLog {
            logged_at: Some(Instant::now()),
            ..DropLog::default()
        };
    }
}
