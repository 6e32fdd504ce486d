//! Voip24h events a shutdown gave up (received, and not journaled within
//! the drain's time): kept in the journal once the sources drained, and
//! said at the next start.
//!
//! Guarantees: the count is said once at the next start, as an error and
//! in `callrelay_ingest_errors_total{reason="dropped_at_last_stop"}`, then
//! cleared (a clear that fails is warned: the start after says them again);
//! the stop writes it once, after the sources drained (so their stop never
//! waits on the disk) and ingest stopped (so a commit a source left to its
//! answer has been answered, and what it lost is in the count); a count that cannot be read or kept is logged, and
//! fails neither the start nor the stop.

use std::sync::atomic::Ordering;

use super::Context;
use crate::journal::Journal;
use crate::metrics::Metrics;

/// What the last shutdown gave up (see `journal::stop_losses`): said once,
/// as an error and as `callrelay_ingest_errors_total{reason="dropped_at_last_stop"}`.
pub(super) fn say_last_stop_losses(journal: &Journal, metrics: &Metrics) {
    let lost = match journal.dropped_at_last_stop() {
        Ok(lost) => lost,
        Err(e) => {
            tracing::warn!(error = %e, "could not read how many events the last shutdown gave up");
            return;
        }
    };
    if lost == 0 {
        return;
    }
    metrics
        .ingest_errors
        .with_label_values(&["dropped_at_last_stop"])
        .inc_by(lost);
    tracing::error!(
        events = lost,
        "the last shutdown gave up Voip24h `response` events it had received and could not journal within the drain's time (its log says which account); they are lost"
    );
    if let Err(e) = journal.dropped_at_last_stop_said() {
        tracing::warn!(error = %e, "could not clear the count of events the last shutdown gave up: the next start says them again");
    }
}

/// Keeps what this shutdown's sources gave up for the next start, once
/// they have drained (so their stop never waits on the disk) and ingest has
/// stopped (so late answers are in, and a reopen ingest made has run).
pub(super) async fn keep_shutdown_losses(ctx: &Context) {
    let lost = ctx.dropped_at_shutdown.load(Ordering::Acquire);
    if lost == 0 {
        return;
    }
    let journal = ctx.journal.clone();
    let kept = tokio::task::spawn_blocking(move || journal.add_dropped_at_last_stop(lost)).await;
    if let Ok(Err(e)) = kept {
        tracing::warn!(error = %e, events = lost,
            "could not keep the count of events this shutdown gave up for the next start (the error lines above say them)");
    }
}
