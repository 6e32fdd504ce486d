//! The relay's housekeeping tasks, the retention pass and the SPRecord
//! resume id saver, started again after a panic.
//!
//! Guarantees: a panic (a bug) is logged as an error naming the task, and
//! the task is started again after 1 s, the wait doubling to 60 s while it
//! keeps panicking (back to 1 s after a run that lasted a minute:
//! [`crate::panic_restart`]); none is started again once `stop` is
//! cancelled; the resume ids' durable save at the stop runs even when the
//! saver was waiting to be started again.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Context;
use super::retention::retention_loop;

/// The SPRecord resume id saver, started again after a panic (a bug):
/// without it no id would be stored again; then the stop's durable save.
pub(super) async fn resume_saving_restarting(ctx: Arc<Context>, stop: CancellationToken) {
    use crate::sources::sprecord::resume_save::{keep_saved, save_at_stop};
    restarting_after_panic("the SPRecord resume id saver", &stop, || {
        keep_saved(ctx.sse_resume.clone(), ctx.journal.clone(), stop.clone())
    })
    .await;
    save_at_stop(&ctx.sse_resume, &ctx.journal).await;
}

/// The retention task, started again after a panic (a bug): without it the
/// journal grew past `max_size` until the disk filled, with no word but the
/// panic's (panic-containment audit of 2026-12-02).
pub(super) async fn retention_restarting(ctx: Arc<Context>, stop: CancellationToken) {
    restarting_after_panic("the retention task", &stop, || {
        retention_loop(ctx.clone(), stop.clone())
    })
    .await;
}

/// Runs a housekeeping task until it ends, started again after a panic 1 s
/// later (doubling to 60 s), said naming `what`.
async fn restarting_after_panic<F: std::future::Future<Output = ()>>(
    what: &'static str,
    stop: &CancellationToken,
    run: impl FnMut() -> F,
) {
    let waits = (Duration::from_secs(1), Duration::from_secs(60));
    let on_panic = |delay: Duration| {
        tracing::error!(
            retry_in_ms = crate::logging::millis(delay),
            "{what} failed unexpectedly (panic); restarting it"
        );
    };
    crate::panic_restart::restart_on_panic(waits, stop, on_panic, run).await;
}
