//! The daemon's signals: SIGTERM and SIGINT drain, SIGHUP reloads, each
//! told to systemd (STOPPING, RELOADING then READY).
//!
//! Guarantees: the handlers are installed before the config is read, so a
//! SIGHUP during start waits for the relay instead of killing it, and a
//! SIGTERM or SIGINT during start is acted on at once (an exit while the
//! journal opens, a drain without READY after); a refused reload is logged with every problem and keeps the
//! running config.

use std::sync::Arc;

use super::Context;
use super::opening::Starting;

/// Tells systemd a reload began (with the monotonic time `Type=notify-reload` wants).
fn notify_reloading() {
    let mut states = vec![sd_notify::NotifyState::Reloading];
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    let _ = sd_notify::notify(false, &states);
}

/// The signals the daemon handles, installed before anything else.
#[cfg(unix)]
pub(super) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    pub(super) fn install() -> Option<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Some(Signals {
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
            hup: signal(SignalKind::hangup()).ok()?,
        })
    }
}

/// Until `started` fires, a SIGTERM or SIGINT is acted on at once
/// ([`Starting::stop`]); before, it waited for the start to finish, minutes
/// when the journal had to be checked. Returns the handlers for
/// [`signal_loop`].
#[cfg(unix)]
pub(super) async fn stop_while_starting(
    mut signals: Signals,
    starting: Arc<Starting>,
    started: tokio::sync::oneshot::Receiver<()>,
) -> Signals {
    let name = tokio::select! {
        // A signal already waiting counts even when the start has finished too.
        biased;
        _ = signals.term.recv() => "SIGTERM",
        _ = signals.int.recv() => "SIGINT",
        _ = started => return signals,
    };
    starting.stop(name);
    signals
}

#[cfg(unix)]
pub(super) async fn signal_loop(ctx: Arc<Context>, signals: Signals) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
            _ = hup.recv() => {
                notify_reloading();
                // How long a reload held its sources is worth seeing: it
                // stops every changed source before starting any.
                tracing::info!("SIGHUP: reloading the config");
                let started = std::time::Instant::now();
                let outcome = super::reload_request(&ctx).await;
                let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                match outcome {
                    Ok(outcome) if outcome.needs_restart.is_empty() => {
                        tracing::info!(took_ms, "SIGHUP: config re-read");
                    }
                    Ok(outcome) => tracing::warn!(
                        took_ms,
                        "SIGHUP: config re-read; {} setting(s) need a restart to take effect",
                        outcome.needs_restart.len()
                    ),
                    Err(e) => {
                        tracing::error!("SIGHUP: the new config is refused, the old one keeps running:\n{e}");
                    }
                }
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    ctx.shutdown.cancel();
}
