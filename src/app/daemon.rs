//! `callrelay run`: the config read, the relay started, systemd told it is
//! ready, and the relay served until SIGTERM or SIGINT.
//!
//! Guarantees: the socket for systemd's notifications is made first, while
//! descriptors are free (a failure is warned, and it is tried again at each
//! notification); the signal handlers are installed before the config is
//! read ([`super::signals`]: a SIGHUP while starting waits instead of
//! killing, a SIGTERM or SIGINT exits at once while the config is read or
//! the journal opens, and drains without READY after), and handlers that
//! cannot be installed are an error in the log, not a failed start; READY
//! is sent only once the listener is bound and the journal open, and the
//! watchdog keep-alives begin after it.

use std::path::Path;
use std::sync::Arc;

use super::config_load::{load_off_the_workers, say_warnings};
use super::error::RunError;
use super::relay::Relay;
use super::signals::{
    Signals, signal_loop, stop_while_starting, tell_stopping, tell_unless_stopping,
};
use super::{opening, systemd_notify, watchdog};
use crate::config::Loading;

/// `callrelay run`: starts the relay and serves until SIGTERM/SIGINT.
pub async fn run_daemon(config_path: &Path) -> Result<(), RunError> {
    // Made now, while descriptors are free: a relay at its open-file limit
    // still tells systemd it lives.
    if let Err(e) = systemd_notify::prepare() {
        tracing::warn!(error = %e, "cannot make the socket for systemd's notifications (tried again at each)");
    }
    // Handlers first: from here on a SIGHUP reloads (or waits), it never kills.
    let installed = Signals::install();
    // Said below, with a failed watch of the start: one line for a relay
    // that runs without handlers, whichever the cause.
    let mut unhandled = installed
        .as_ref()
        .err()
        .map(|e| format!("cannot install signal handlers: {e}"));
    let mut signals = installed.ok();
    // A SIGTERM or SIGINT while the file is read (it may not answer) exits.
    let config = match signals.as_mut() {
        Some(signals) => tokio::select! {
            biased;
            name = signals.stop_requested() => {
                tracing::info!("{name} while reading the config: exiting now");
                systemd_notify::tell(&[
                        sd_notify::NotifyState::Stopping,
                        sd_notify::NotifyState::Status("stopped while reading the config"),
                    ],
                );
                return Ok(());
            }
            loaded = load_off_the_workers(config_path, Loading::Start) => loaded?,
        },
        None => load_off_the_workers(config_path, Loading::Start).await?,
    };
    let config = {
        let (config, loaded) = config;
        say_warnings(config_path, &config, &loaded);
        config
    };
    // A SIGTERM or SIGINT while starting is acted on at once: an exit while
    // the journal opens, a drain without READY once it is open.
    let starting = Arc::new(opening::Starting::new());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let watching =
        signals.map(|s| tokio::spawn(stop_while_starting(s, starting.clone(), started_rx)));
    let started = Relay::start_as(config, config_path.to_path_buf(), Some(starting.clone())).await;
    let _ = started_tx.send(());
    let signals = match watching {
        Some(task) => match task.await {
            Ok(signals) => Some(signals),
            Err(e) => {
                unhandled = Some(format!(
                    "the task watching for signals during the start failed: {e}"
                ));
                None
            }
        },
        None => None,
    };
    let relay = started?;
    let ctx = relay.ctx.clone();
    match signals {
        Some(signals) => {
            tokio::spawn(signal_loop(ctx.clone(), signals));
        }
        None => tracing::error!(
            "{}",
            unhandled
                .as_deref()
                .unwrap_or("cannot install signal handlers")
        ),
    }
    // Both through the lock the signal loop, spawned above, tells systemd
    // under: a SIGHUP it took could say RELOADING after this STOPPING, and
    // a SIGTERM it took just now STOPPING before this READY.
    if starting.stopped() {
        systemd_notify::tell(&[sd_notify::NotifyState::Status("stopping")]);
        tell_stopping(&ctx);
        return relay.wait().await;
    }
    let status = format!("listening on {}", relay.addr);
    tell_unless_stopping(&ctx, || {
        systemd_notify::tell(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    });
    watchdog::spawn(ctx, tokio::runtime::Handle::current());
    relay.wait().await
}
