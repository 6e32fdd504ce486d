//! The daemon's signals: SIGTERM and SIGINT drain, SIGHUP reloads, each
//! told to systemd (STOPPING, RELOADING then READY); SIGUSR1 and SIGUSR2
//! are logged and ignored.
//!
//! Guarantees: the handlers are installed before the config is read, so a
//! SIGHUP during start waits for the relay instead of killing it, and a
//! SIGTERM or SIGINT during start is acted on at once (an exit while the
//! config is read or the journal opens, a drain without READY after); a
//! SIGTERM or SIGINT during a reload drains at once, and no READY follows
//! its STOPPING; a refused reload is logged with every problem and keeps
//! the running config.

use std::sync::Arc;

use super::Context;
use super::opening::Starting;

/// Tells systemd a reload began (with the monotonic time `Type=notify-reload` wants).
fn notify_reloading() {
    let mut states = vec![sd_notify::NotifyState::Reloading];
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    super::systemd_notify::tell(&states);
}

/// The signals the daemon handles, installed before anything else.
#[cfg(unix)]
pub(super) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    pub(super) fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The name of the next SIGTERM or SIGINT.
    pub(super) async fn stop_requested(&mut self) -> &'static str {
        tokio::select! {
            biased;
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
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
        name = signals.stop_requested() => name,
        _ = started => return signals,
    };
    starting.stop(name);
    signals
}

/// What the daemon tells systemd about its state, one message at a time:
/// with the drain's start ([`tell_stopping`]) under the same lock, a reload
/// that began just before a SIGTERM cannot say RELOADING or READY after
/// STOPPING (verification audit, 2026-12-02: 15 of 150 SIGHUP-then-SIGTERM
/// races did).
static STATE_TOLD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Tells systemd what `tell` sends unless the drain has begun; whether it did.
pub(super) fn tell_unless_stopping(ctx: &Context, tell: impl FnOnce()) -> bool {
    let _told = STATE_TOLD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let stopping = ctx.shutdown.is_cancelled();
    if !stopping {
        tell();
    }
    !stopping
}

/// Begins the drain and tells systemd STOPPING, as one step. Every stop
/// goes through here, the relay's own too: the watchdog's keep-alives end
/// with the drain, and systemd stops watching only a service that said
/// STOPPING (else it would kill a long drain half-way).
pub(super) fn tell_stopping(ctx: &Context) {
    let _told = STATE_TOLD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    ctx.shutdown.cancel();
    super::systemd_notify::tell(&[sd_notify::NotifyState::Stopping]);
}

/// Reloads the config once for a SIGHUP and tells systemd (READY again).
async fn reload_once(ctx: Arc<Context>) {
    if !tell_unless_stopping(&ctx, notify_reloading) {
        return;
    }
    // How long a reload held its sources is worth seeing: it stops every
    // changed source before starting any.
    tracing::info!("SIGHUP: reloading the config");
    let started = std::time::Instant::now();
    let outcome = super::reload_request(&ctx).await;
    let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        // A stop came first (the serve loop takes it before a reload).
        Ok(outcome) if !outcome.applied => {
            tracing::info!(took_ms, "SIGHUP: not applied: the relay is stopping");
        }
        Ok(outcome) if outcome.needs_restart.is_empty() => {
            tracing::info!(took_ms, "SIGHUP: config re-read");
        }
        Ok(outcome) => tracing::warn!(
            took_ms,
            "SIGHUP: config re-read; {} setting(s) need a restart to take effect",
            outcome.needs_restart.len()
        ),
        Err(e) => {
            // One line per problem, each with the words the alert and the
            // docs point at (one record holding them all was one line with
            // `\n` escaped in it).
            for line in e.lines() {
                tracing::error!(
                    "SIGHUP: the new config is refused, the old one keeps running: {line}"
                );
            }
        }
    }
    // A drain that began meanwhile has told systemd STOPPING: no READY after it.
    tell_unless_stopping(&ctx, || {
        super::systemd_notify::tell(&[sd_notify::NotifyState::Ready]);
    });
}

/// SIGTERM and SIGINT drain, also while a reload is in progress: a reload
/// runs beside this loop, not in it, so one that waits (a Kafka sink
/// stopping against a hung broker, a config file on a mount that does not
/// answer) does not hold the drain back while webhooks keep getting 200s
/// (signals audit, 2026-12-02: 9 s, 537 events after the SIGTERM). SIGHUPs
/// that come during a reload make one more reload after it.
#[cfg(unix)]
pub(super) async fn signal_loop(ctx: Arc<Context>, signals: Signals) {
    let Signals {
        mut term,
        mut int,
        mut hup,
        mut usr1,
        mut usr2,
    } = signals;
    let mut reloading: Option<tokio::task::JoinHandle<()>> = None;
    let mut reload_again = false;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
            _ = hup.recv() => {
                if reloading.is_some() {
                    reload_again = true;
                } else {
                    reloading = Some(tokio::spawn(reload_once(ctx.clone())));
                }
            }
            _ = async {
                if let Some(task) = reloading.as_mut() {
                    let _ = task.await;
                }
            }, if reloading.is_some() => {
                reloading = reload_again.then(|| tokio::spawn(reload_once(ctx.clone())));
                reload_again = false;
            }
            _ = usr1.recv() => ignored("SIGUSR1"),
            _ = usr2.recv() => ignored("SIGUSR2"),
        }
    }
    tell_stopping(&ctx);
}

/// A signal the relay has no use for: logged, not the default action, which
/// ends the process without a drain (and the next start then checks the
/// whole journal). A `kill -USR1` meant for another daemon's log rotation
/// did that.
fn ignored(name: &str) {
    tracing::warn!(
        "{name} ignored: the relay reloads its config on SIGHUP and drains and stops on SIGTERM or SIGINT"
    );
}
