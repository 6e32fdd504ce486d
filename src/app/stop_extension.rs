//! systemd is kept informed while a stop waits on the journal. The stop's
//! tail waits on it step after step: the resume ids' save, ingest's last
//! commits, the losses kept, the Kafka sink's cursor, the retention task's
//! last write, the close. Each is a write that waits its turn for redb's one
//! writer and syncs the disk: on a volume whose fsync takes 10 s or more
//! they outlast systemd's `TimeoutStopSec` (60 s) together, which killed the
//! relay with Voip24h responses uncommitted and uncounted, and the journal
//! not closed, so the next start read the whole file again. A reopen after
//! a failed commit reads the whole file (127 s for a full 1 GiB journal at
//! 150 IOPS) and held the stop likewise.
//!
//! Guarantees: while the awaited work runs, the journal is looked at every
//! [`LOOK_EVERY`]; at a look where the writer reports a reopen running for
//! less than [`MAX_REOPEN`], or the journal a write running for at least
//! [`SLOW_WRITE`] and less than [`COMMIT_LIMIT`] (the watchdog's bounds:
//! beyond them the disk counts as hung), `EXTEND_TIMEOUT_USEC` (30 s) and a
//! `STATUS=` line naming that look's wait go out, unless they went out less
//! than [`RENEW_EVERY`] before (the start's own pace and extension,
//! [`super::opening`]). So a slow write is told within about
//! [`SLOW_WRITE`] + [`LOOK_EVERY`] of its start, or 10 s after the last
//! extension, whichever is later. Nothing is sent otherwise, so a hung
//! disk, or a stop held by anything but the journal, gets systemd's own
//! stop timeout again (30 s after the last extension, or `TimeoutStopSec`,
//! whichever ends later); a relay not started by systemd sends nothing. A
//! write counts only if it runs at a look: a write shorter than
//! [`SLOW_WRITE`] is not a slow disk's, and on a slow disk the stop's writes
//! follow one another closely enough.

use std::future::Future;
use std::time::Duration;

use super::opening::{RENEW_EVERY, extend_timeout};
use super::watchdog::{COMMIT_LIMIT, MAX_REOPEN};

/// How long a write must have run to count as slow (below it, a disk's
/// usual commit: no reason to name in `STATUS=`).
pub(super) const SLOW_WRITE: Duration = Duration::from_secs(1);

/// How often the journal is looked at. A write counts only once it has run
/// [`SLOW_WRITE`]: looked at only every [`RENEW_EVERY`], writes each in
/// their first second at a look were never seen, and systemd killed the
/// stop 30 s after the last extension.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// What holds the journal at one look.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct JournalBusy {
    /// How long the writer's reopen in progress has run.
    pub(super) reopen: Option<Duration>,
    /// How long the journal's write in progress has run.
    pub(super) write: Option<Duration>,
}

impl JournalBusy {
    /// The `STATUS=` line for a wait worth extending the stop for.
    fn status(self) -> Option<String> {
        if let Some(running) = self.reopen.filter(|r| *r < MAX_REOPEN) {
            return Some(format!(
                "stopping: waiting for the journal's check after a failed write ({} s)",
                running.as_secs()
            ));
        }
        self.write
            .filter(|w| (SLOW_WRITE..COMMIT_LIMIT).contains(w))
            .map(|running| {
                format!(
                    "stopping: waiting for a journal write, slow on this disk ({} s)",
                    running.as_secs()
                )
            })
    }
}

/// Awaits `work`, telling systemd to wait longer while `busy` says the
/// journal is reopening, or writing slowly.
pub(super) async fn extend_while_journal_busy<T>(
    work: impl Future<Output = T>,
    busy: impl Fn() -> JournalBusy,
) -> T {
    extend_with(work, busy, extend_timeout).await
}

async fn extend_with<T>(
    work: impl Future<Output = T>,
    busy: impl Fn() -> JournalBusy,
    mut say: impl FnMut(&str),
) -> T {
    tokio::pin!(work);
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut said_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            // The look's scheduled time, not the time it ran: a look a
            // little late must not put the next extension off by a whole look.
            at = look.tick() => {
                if said_at.is_some_and(|said| at.duration_since(said) < RENEW_EVERY) {
                    continue;
                }
                if let Some(status) = busy().status() {
                    say(&status);
                    said_at = Some(at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn reopening(running: Duration) -> impl Fn() -> JournalBusy {
        move || JournalBusy {
            reopen: Some(running),
            write: None,
        }
    }

    fn writing(running: Duration) -> impl Fn() -> JournalBusy {
        move || JournalBusy {
            reopen: None,
            write: Some(running),
        }
    }

    /// What is said while `busy` holds for a stop of 35 s.
    async fn said_during_a_35_s_stop(busy: impl Fn() -> JournalBusy) -> Vec<String> {
        let said = RefCell::new(Vec::new());
        let work = tokio::time::sleep(Duration::from_secs(35));
        extend_with(work, busy, |s| said.borrow_mut().push(s.to_owned())).await;
        said.into_inner()
    }

    #[tokio::test(start_paused = true)]
    async fn the_stop_is_extended_while_a_reopen_runs_and_not_otherwise() {
        let said = said_during_a_35_s_stop(reopening(Duration::from_secs(7))).await;
        // At 0, 10, 20 and 30 s.
        assert_eq!(said.len(), 4, "{said:?}");
        assert!(said[0].contains("journal's check"), "{said:?}");
        let said = said_during_a_35_s_stop(JournalBusy::default).await;
        assert!(said.is_empty(), "{said:?}");
        // A reopen past the watchdog's bound is stuck: systemd's own timeout applies.
        let said = said_during_a_35_s_stop(reopening(MAX_REOPEN)).await;
        assert!(said.is_empty(), "{said:?}");
    }

    /// A slow write extends the stop as a reopen does, within the bounds
    /// the watchdog gives a commit: not for a write as quick as usual, and
    /// not for one past [`COMMIT_LIMIT`], a hung disk that must end in
    /// systemd's kill rather than a stop without end.
    #[tokio::test(start_paused = true)]
    async fn the_stop_is_extended_while_a_slow_write_runs_within_the_commit_limit() {
        let said = said_during_a_35_s_stop(writing(Duration::from_secs(12))).await;
        assert_eq!(said.len(), 4, "{said:?}");
        assert_eq!(
            said[0],
            "stopping: waiting for a journal write, slow on this disk (12 s)"
        );
        let below_limit = COMMIT_LIMIT - Duration::from_millis(1);
        let said = said_during_a_35_s_stop(writing(below_limit)).await;
        assert_eq!(said.len(), 4, "{said:?}");
        for not_slow_or_hung in [SLOW_WRITE - Duration::from_millis(1), COMMIT_LIMIT] {
            let said = said_during_a_35_s_stop(writing(not_slow_or_hung)).await;
            assert!(said.is_empty(), "{not_slow_or_hung:?}: {said:?}");
        }
    }

    /// Writes one after another on a slow disk, each begun half a second
    /// before a 10 s mark and ended before the next: a look only every
    /// 10 s saw each in its first second, not yet slow, and sent nothing
    /// in a stop of 45 s (systemd kills 30 s after the last extension).
    /// Looked at every second, each is seen once it has run a second, and
    /// the extension goes out then, at most every 10 s.
    #[tokio::test(start_paused = true)]
    async fn a_write_in_its_first_second_at_a_look_is_seen_once_it_is_slow() {
        let began = tokio::time::Instant::now();
        let busy = move || {
            // From 9.5 s on, a write begins every 10 s and runs 9.5 s.
            let t = began.elapsed() + Duration::from_millis(500);
            let into = Duration::from_millis(t.as_millis() as u64 % 10_000);
            let writing = t >= Duration::from_secs(10) && into < Duration::from_millis(9_500);
            JournalBusy {
                reopen: None,
                write: writing.then_some(into),
            }
        };
        let said = RefCell::new(Vec::new());
        let work = tokio::time::sleep(Duration::from_secs(45));
        extend_with(work, busy, |s| {
            said.borrow_mut()
                .push((began.elapsed().as_secs_f64(), s.to_owned()))
        })
        .await;
        let said = said.into_inner();
        let at: Vec<f64> = said.iter().map(|(at, _)| *at).collect();
        assert_eq!(at, [11.0, 21.0, 31.0, 41.0], "{said:?}");
        assert_eq!(
            said[0].1,
            "stopping: waiting for a journal write, slow on this disk (1 s)"
        );
    }

    const CHILD_DIR: &str = "CALLRELAY_STOP_EXTENSION_CHILD_DIR";

    /// A stop waits on the journal's writes in turn (the resume ids'
    /// save, ingest's last commit, the losses kept, the Kafka cursor,
    /// retention, the close), and a slow disk's sync makes each long: a
    /// commit held slow during a stop makes the relay tell systemd to wait
    /// longer. Before, only a reopen did, and `TimeoutStopSec` killed a
    /// stop on a volume whose fsync took 10 s (review of the stop sequence).
    /// In a child process: `NOTIFY_SOCKET` is the whole process's.
    #[test]
    fn a_slow_commit_during_a_stop_extends_the_stop_timeout() {
        use std::io::Write;
        use std::os::unix::net::UnixDatagram;
        use std::process::{Command, Stdio};
        use std::time::Instant;

        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut child = Reaped(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "app::stop_extension::tests::a_stop_held_by_a_slow_commit_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, dir.path())
                .env("NOTIFY_SOCKET", &socket_path)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Datagram by datagram: the start's own extension (`STATUS=opening
        // the journal …`) comes first.
        let mut datagrams: Vec<Vec<String>> = Vec::new();
        let stop_extended = |datagram: &Vec<String>| {
            datagram.iter().any(|n| n == "EXTEND_TIMEOUT_USEC=30000000")
                && datagram
                    .iter()
                    .any(|n| n.starts_with("STATUS=stopping: waiting for a journal write"))
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while !datagrams.iter().any(stop_extended) && Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                let lines = String::from_utf8_lossy(&buf[..n]);
                datagrams.push(lines.lines().map(str::to_owned).collect());
            }
        }
        // Released either way, so that a failure below does not wait on it.
        let mut release = child.0.stdin.take().unwrap();
        let _ = writeln!(release, "release");
        drop(release);
        let status = wait_with_deadline(&mut child.0, Duration::from_secs(30));
        assert!(status.success(), "the child's stop: {status}");
        assert!(datagrams.iter().any(stop_extended), "told: {datagrams:?}");
    }

    /// The child of [`a_slow_commit_during_a_stop_extends_the_stop_timeout`]:
    /// a relay in `CALLRELAY_STOP_EXTENSION_CHILD_DIR` stopped while a write
    /// holds the journal, released once its stdin says so. Ignored, so a
    /// plain run does not list it; the parent runs it with `--ignored`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "the child process of a_slow_commit_during_a_stop_extends_the_stop_timeout"]
    async fn a_stop_held_by_a_slow_commit_child() {
        let Ok(dir) = std::env::var(CHILD_DIR) else {
            return;
        };
        let relay = crate::app::tests_support::relay_in(std::path::Path::new(&dir), "").await;
        let (holding, writes_held) = tokio::sync::oneshot::channel();
        let (release, held) = std::sync::mpsc::channel();
        let journal = relay.ctx.journal.clone();
        let holder = tokio::task::spawn_blocking(move || journal.hold_writes_until(holding, held));
        writes_held.await.unwrap();
        let journal = relay.ctx.journal.clone();
        crate::app::tests_support::until(
            "the held write counts as slow",
            Duration::from_secs(10),
            || journal.write_running_for().is_some_and(|t| t >= SLOW_WRITE),
        )
        .await;
        relay.shutdown();
        tokio::task::spawn_blocking(move || {
            let _ = std::io::stdin().read_line(&mut String::new());
            let _ = release.send(());
        });
        holder.await.unwrap();
        relay.wait().await.unwrap();
    }

    /// A child process, killed and reaped when dropped: a test that fails
    /// half-way does not leave it running.
    struct Reaped(std::process::Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The child's exit status, once it ended; fails after `within`.
    fn wait_with_deadline(
        child: &mut std::process::Child,
        within: Duration,
    ) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the child ended within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
