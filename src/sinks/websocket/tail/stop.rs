//! `callrelay tail`'s stop signals: Ctrl-C (SIGINT) and SIGTERM end it with
//! exit 0, as the contract's signals line has it.
//!
//! Guarantees: the exit comes between two printed lines, never in the
//! middle of one, unless that line's write is blocked (a reader that does
//! not read, such as a paused pager) for [`STOP_GRACE`]: that line is then
//! cut, and the exit is still 0. The signals are heard on a thread of their
//! own, so a tail blocked on its stdout still stops. A signal whose listener
//! cannot be made keeps its default action (the process ends by the
//! signal), never caught and dropped; [`exit_at_stop_signals`] says which
//! ([`StopSignalsError`]). Where the thread that holds stdout through the
//! exit cannot be made, the exit does not wait for a line being written.

use std::io;
use std::sync::mpsc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long a stop signal waits for a line being written to finish: a
/// write blocked on a reader that does not read (a paused pager) is cut.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Which stop signals [`exit_at_stop_signals`] could not listen for, and
/// why; each such signal keeps its default action.
#[derive(Debug, thiserror::Error)]
pub enum StopSignalsError {
    #[error(
        "tail cannot listen for SIGINT (Ctrl-C) or SIGTERM: no thread for them could be made ({0})"
    )]
    NoThread(io::Error),
    #[error(
        "tail cannot listen for SIGINT (Ctrl-C) or SIGTERM: no runtime for them could be made on their thread ({0})"
    )]
    NoRuntime(io::Error),
    #[error("tail cannot listen for SIGINT (Ctrl-C): no listener for it could be made ({0})")]
    NoInterruptListener(io::Error),
    #[error("tail cannot listen for SIGTERM: no listener for it could be made ({0})")]
    NoTerminateListener(io::Error),
    /// Both failed, each with its own reason.
    #[error(
        "tail cannot listen for SIGINT (Ctrl-C) or SIGTERM: no listener could be made for SIGINT ({interrupt}) nor for SIGTERM ({terminate})"
    )]
    NoListeners {
        interrupt: io::Error,
        terminate: io::Error,
    },
    #[error(
        "tail cannot listen for SIGINT (Ctrl-C) or SIGTERM: their thread ended before it made the listeners"
    )]
    ThreadEnded,
}

/// Makes Ctrl-C (SIGINT) and SIGTERM end the process with 0 between two
/// printed lines: a thread of its own waits for them (the main thread may
/// be blocked writing to a reader that does not read, where a listener
/// polled beside the writes would never run), then takes stdout's lock,
/// which each line's one write holds, for up to [`STOP_GRACE`]. Each signal
/// is listened for on that thread alone, so one whose listener cannot be
/// made, or all where the thread cannot be, keeps its default action.
/// Returns once the listeners are in place, with what could not be made.
pub fn exit_at_stop_signals() -> Result<(), StopSignalsError> {
    let (ready, listening) = mpsc::channel();
    std::thread::Builder::new()
        .name("tail-signals".to_owned())
        .spawn(move || wait_then_exit(ready))
        .map_err(StopSignalsError::NoThread)?;
    listening
        .recv()
        .unwrap_or(Err(StopSignalsError::ThreadEnded))
}

/// [`exit_at_stop_signals`]' thread: says on `ready` which listeners it
/// has, waits for one to hear its signal, and exits between two lines.
fn wait_then_exit(ready: mpsc::Sender<Result<(), StopSignalsError>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(StopSignalsError::NoRuntime(e)));
            return;
        }
    };
    let (interrupt, terminate) = runtime.block_on(async {
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    });
    let (mut interrupt, no_interrupt) = split(interrupt);
    let (mut terminate, no_terminate) = split(terminate);
    let said = match (no_interrupt, no_terminate) {
        (None, None) => Ok(()),
        (Some(e), None) => Err(StopSignalsError::NoInterruptListener(e)),
        (None, Some(e)) => Err(StopSignalsError::NoTerminateListener(e)),
        (Some(interrupt), Some(terminate)) => Err(StopSignalsError::NoListeners {
            interrupt,
            terminate,
        }),
    };
    let _ = ready.send(said);
    /// The signal heard; never, without a listener.
    async fn heard(signal: Option<&mut Signal>) {
        match signal {
            Some(signal) => drop(signal.recv().await),
            None => std::future::pending::<()>().await,
        }
    }
    runtime.block_on(async {
        tokio::select! {
            () = heard(interrupt.as_mut()) => {}
            () = heard(terminate.as_mut()) => {}
        }
    });
    let (line_done, between_lines) = mpsc::channel();
    // Holds stdout until the exit, so no next line starts. Without this
    // thread (none can be made) the exit does not wait for the line.
    let _holder = std::thread::Builder::new().spawn(move || {
        let _stdout = std::io::stdout().lock();
        let _ = line_done.send(());
        loop {
            std::thread::park();
        }
    });
    let _ = between_lines.recv_timeout(STOP_GRACE);
    std::process::exit(0);
}

/// A listener, or why it could not be made.
fn split(made: io::Result<Signal>) -> (Option<Signal>, Option<io::Error>) {
    match made {
        Ok(signal) => (Some(signal), None),
        Err(e) => (None, Some(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both listeners failing are both said, each with its reason: only
    /// SIGINT's was, and a SIGTERM that ends tail by its default action
    /// went unexplained (tail's structural review, 2026-12-07).
    #[test]
    fn both_failed_listeners_are_said_with_their_reasons() {
        let said = StopSignalsError::NoListeners {
            interrupt: io::Error::other("first"),
            terminate: io::Error::other("second"),
        }
        .to_string();
        assert_eq!(
            said,
            "tail cannot listen for SIGINT (Ctrl-C) or SIGTERM: no listener could be made for SIGINT (first) nor for SIGTERM (second)"
        );
    }
}
