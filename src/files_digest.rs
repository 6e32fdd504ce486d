//! What a reload knows of the files a running part was started with (a
//! source's CA file, the files the Kafka options name): their digest, read
//! on the blocking pool within [`READ_BOUND`], or unknown.
//!
//! Guarantees: a read never holds a runtime worker, nor the comparison for
//! longer than [`READ_BOUND`] (a hung NFS mount); files not read now
//! (the read did not end in time, or its task failed) restart nothing; a
//! part whose own files were never read (it started while they could not
//! be) is restarted once at the first reload that reads them, so that what
//! it runs on is what a digest says; otherwise a part is restarted for its
//! files when the two digests differ.

use std::time::Duration;

/// How long a reload waits for the files it compares. A read past it goes
/// on on its blocking thread and is not waited for: the reload goes on with
/// the digest unknown (and says so), so that the rest of it is not held
/// for as long as a mount hangs (the config's own load, which reads the
/// same files to check them, has a bound of its own:
/// `app::config_load::RELOAD_LOAD_BOUND`).
pub const READ_BOUND: Duration = Duration::from_secs(10);

/// A digest of some files as a reload knows it.
#[derive(Clone, Copy, Debug)]
pub enum FilesDigest {
    /// Read: `None` when no file is named, or it could not be read.
    Read(Option<[u8; 32]>),
    /// Not known: the read did not end within [`READ_BOUND`], or failed.
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

    /// `digest` run on the blocking pool, waited for until `deadline` (a
    /// comparison's reads share one, [`READ_BOUND`] from its start); `what`
    /// names the files in the warning when it is not known.
    pub async fn read_by(
        deadline: tokio::time::Instant,
        what: &str,
        digest: impl FnOnce() -> Option<[u8; 32]> + Send + 'static,
    ) -> FilesDigest {
        match read_by(deadline, what, digest).await {
            Some(read) => FilesDigest::Read(read),
            None => FilesDigest::Unknown,
        }
    }
}

/// What `read` returns, run on the blocking pool and waited for until
/// `deadline`; `None` (and a warning naming `what`) when it did not return
/// in time or its task failed.
async fn read_by<T: Send + 'static>(
    deadline: tokio::time::Instant,
    what: &str,
    read: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let task = tokio::task::spawn_blocking(read);
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(read)) => Some(read),
        Ok(Err(error)) => {
            tracing::warn!(%error, "{what}: the read failed; compared as unchanged");
            None
        }
        Err(_) => {
            tracing::warn!(
                "{what}: not read in time (a slow or hung mount?); compared as unchanged"
            );
            None
        }
    }
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

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + READ_BOUND
    }

    /// A read that does not end is not waited for past the bound, and one
    /// whose task panics is unknown, not "no file".
    #[tokio::test]
    async fn a_read_that_hangs_or_fails_is_unknown() {
        let (release, hung) = std::sync::mpsc::channel::<()>();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let read = read_by(deadline, "the test's files", move || {
            let _ = hung.recv();
            Some([1; 32])
        });
        assert!(read.await.is_none());
        drop(release);
        let failed = FilesDigest::read_by(soon(), "the test's files", || panic!("a bug"));
        assert!(matches!(failed.await, FilesDigest::Unknown));
        let read = FilesDigest::read_by(soon(), "the test's files", || Some([3; 32]));
        assert!(matches!(read.await, FilesDigest::Read(Some(d)) if d == [3; 32]));
    }
}
