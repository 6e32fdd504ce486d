//! What a start or a reload knows of the files a running part was started
//! with (a source's CA file, the files the Kafka options name): their
//! digest, read on the blocking pool by one deadline, or unknown.
//!
//! Guarantees: a read never holds a runtime worker; a comparison's reads
//! share one deadline ([`READ_BOUND`] from its start); the CA files are
//! read at most [`READS_AT_ONCE`] at a time ([`read_each_by`]; the Kafka
//! files are one more read beside them), and one whose turn comes after
//! the deadline is not started (no thread left waiting on a hung mount for
//! it); files
//! not read (not in time, not started, or their read's task failed)
//! restart nothing; a part whose own files were never read (it started
//! while they could not be) is restarted once at the first reload that
//! reads them, so that what it runs on is what a digest says; otherwise a
//! part is restarted for its files when the two digests differ.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// How long a start or a reload waits for the files it compares. A read
/// past it goes on on its blocking thread and is not waited for: the reload
/// goes on with the digest unknown (and says so), so that the rest of it is
/// not held for as long as a mount hangs (the config's own load, which
/// reads the same files to check them, has a bound of its own:
/// `app::config_load::RELOAD_LOAD_BOUND`).
pub const READ_BOUND: Duration = Duration::from_secs(10);

/// How many files [`read_each_by`] reads at once (the sources' CA files):
/// on a hung mount each read left waiting holds a thread of the blocking
/// pool until it answers.
const READS_AT_ONCE: usize = 4;

/// The deadline of a comparison that starts now.
pub fn deadline_from_now() -> Instant {
    Instant::now() + READ_BOUND
}

/// A digest of some files as a reload knows it.
#[derive(Clone, Copy, Debug)]
pub enum FilesDigest {
    /// Read: `None` when no file is named, or it could not be read.
    Read(Option<[u8; 32]>),
    /// Not known: the read did not end by its deadline, was not started
    /// before it, or failed.
    Unknown,
}

impl FilesDigest {
    /// Whether a part running on files whose digest is `self` is restarted
    /// for them, given what they read as `now`: not when they were not read
    /// now (nothing is known of them); when the part never knew its own
    /// (it loaded them itself, at some moment since, and a change before
    /// `now` would be missed for good were `now` taken as its digest);
    /// else when the two differ.
    pub fn calls_for_restart(&self, now: &FilesDigest) -> bool {
        match (self, now) {
            (_, FilesDigest::Unknown) => false,
            (FilesDigest::Unknown, FilesDigest::Read(_)) => true,
            (FilesDigest::Read(running), FilesDigest::Read(now)) => running != now,
        }
    }

    /// `digest` run on the blocking pool, waited for until `deadline` (see
    /// [`deadline_from_now`]); unknown, with a warning naming `what`, when
    /// it did not return in time or its task failed.
    pub async fn read_by(
        deadline: Instant,
        what: &str,
        digest: impl FnOnce() -> Option<[u8; 32]> + Send + 'static,
    ) -> FilesDigest {
        let task = tokio::task::spawn_blocking(digest);
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(read)) => FilesDigest::Read(read),
            Ok(Err(error)) => {
                tracing::warn!(%error, "{what}: the read failed; compared as unchanged");
                FilesDigest::Unknown
            }
            Err(_) => {
                tracing::warn!(
                    "{what}: not read in time (a slow or hung mount?); compared as unchanged"
                );
                FilesDigest::Unknown
            }
        }
    }
}

/// Each of `files` (a path, and what names it for the warning: accounts)
/// read by `read` on the blocking pool, each once, [`READS_AT_ONCE`] at a
/// time, all by `deadline`. A file not read by then, or whose read failed, is
/// unknown. One whose turn comes after the deadline is not started (no
/// thread left waiting on the mount for it); those are said in one
/// warning.
pub async fn read_each_by(
    files: BTreeMap<PathBuf, Vec<String>>,
    deadline: Instant,
    read: impl Fn(&Path) -> Option<[u8; 32]> + Clone + Send + 'static,
) -> BTreeMap<PathBuf, FilesDigest> {
    use futures::StreamExt;
    let read_each = futures::stream::iter(files).map(|(path, names)| {
        let read = read.clone();
        async move {
            if Instant::now() >= deadline {
                return (path, None);
            }
            let named = crate::logging::first_then_more(names.into_iter(), 5);
            let what = format!("{} (named by {named})", path.display());
            let file = path.clone();
            let digest = FilesDigest::read_by(deadline, &what, move || read(&file)).await;
            (path, Some(digest))
        }
    });
    let read: Vec<_> = read_each.buffer_unordered(READS_AT_ONCE).collect().await;
    let not_tried: Vec<_> = read
        .iter()
        .filter(|(_, digest)| digest.is_none())
        .map(|(path, _)| path.display().to_string())
        .collect();
    if !not_tried.is_empty() {
        tracing::warn!(
            "files not read ({}): the reads before them ran out the time (a slow or hung mount?); compared as unchanged: {}",
            not_tried.len(),
            crate::logging::first_then_more(not_tried.into_iter(), 5)
        );
    }
    read.into_iter()
        .map(|(path, digest)| (path, digest.unwrap_or(FilesDigest::Unknown)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_not_read_now_restart_nothing_and_a_part_that_never_read_its_own_restarts_once() {
        let (a, b) = (
            FilesDigest::Read(Some([1; 32])),
            FilesDigest::Read(Some([2; 32])),
        );
        let (none, unknown) = (FilesDigest::Read(None), FilesDigest::Unknown);
        assert!(
            a.calls_for_restart(&b) && a.calls_for_restart(&none) && none.calls_for_restart(&a)
        );
        assert!(!a.calls_for_restart(&a) && !none.calls_for_restart(&none));
        for running in [a, none, unknown] {
            assert!(!running.calls_for_restart(&unknown));
        }
        assert!(unknown.calls_for_restart(&a) && unknown.calls_for_restart(&none));
    }

    /// Lets the test's hung reads go when dropped, also when an assertion
    /// fails first: the runtime's drop waits for its blocking threads.
    struct Gate(std::sync::Arc<Freed>);

    type Freed = (std::sync::Mutex<bool>, std::sync::Condvar);

    /// Waits until the [`Gate`] of `freed` is dropped.
    fn wait_until(freed: &Freed) {
        let (lock, changed) = freed;
        let mut free = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while !*free {
            free = changed
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    impl Drop for Gate {
        fn drop(&mut self) {
            let (lock, changed) = &*self.0;
            *lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
            changed.notify_all();
        }
    }

    /// Two more reads that hang than are read at once: those started are
    /// not waited for past the deadline, and the two whose turn came after
    /// it are not started at all (each would be a thread left waiting on
    /// the mount), said in one warning.
    #[tokio::test]
    async fn reads_whose_turn_comes_after_the_deadline_are_not_started() {
        let gate = Gate(Default::default());
        let held = std::sync::Arc::clone(&gate.0);
        let hangs = move |_: &Path| {
            wait_until(&held);
            Some([1; 32])
        };
        let files: BTreeMap<PathBuf, Vec<String>> = (0..READS_AT_ONCE + 2)
            .map(|i| {
                (
                    PathBuf::from(format!("/hung/{i}.pem")),
                    vec!["a".into(), "b".into()],
                )
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(1);
        let (logs, guard) = crate::logging::tests_support::capture_json();
        let read = read_each_by(files, deadline, hangs).await;
        drop(guard);
        drop(gate);
        assert_eq!(read.len(), READS_AT_ONCE + 2);
        assert!(
            read.values().all(|d| matches!(d, FilesDigest::Unknown)),
            "{read:?}"
        );
        let said = logs.text();
        assert_eq!(
            said.matches("not read in time").count(),
            READS_AT_ONCE,
            "{said}"
        );
        assert!(
            said.contains("files not read (2): the reads before them"),
            "{said}"
        );
        assert!(said.contains("/hung/0.pem (named by a, b)"), "{said}");
        let quick = read_each_by(
            [(PathBuf::from("/a.pem"), vec!["x".into()])].into(),
            deadline_from_now(),
            |_: &Path| Some([2; 32]),
        );
        let quick = quick.await;
        assert!(
            matches!(quick.get(Path::new("/a.pem")), Some(FilesDigest::Read(Some(d))) if *d == [2; 32])
        );
    }

    /// A read that does not end is not waited for past the bound, and one
    /// whose task panics is unknown, not "no file".
    #[tokio::test]
    async fn a_read_that_hangs_or_fails_is_unknown() {
        let (release, hung) = std::sync::mpsc::channel::<()>();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let read = FilesDigest::read_by(deadline, "the test's files", move || {
            let _ = hung.recv();
            Some([1; 32])
        });
        assert!(matches!(read.await, FilesDigest::Unknown));
        drop(release);
        let failed =
            FilesDigest::read_by(deadline_from_now(), "the test's files", || panic!("a bug"));
        assert!(matches!(failed.await, FilesDigest::Unknown));
        let read = FilesDigest::read_by(deadline_from_now(), "the test's files", || Some([3; 32]));
        assert!(matches!(read.await, FilesDigest::Read(Some(d)) if d == [3; 32]));
    }
}
