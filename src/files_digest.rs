//! What a reload knows of the files a running part was started with (a
//! source's CA file, the files the Kafka options name): their digest, read
//! on the blocking pool within [`READ_BOUND`], or unknown.
//!
//! Guarantees: a read never holds a runtime worker, nor a reload for longer
//! than [`READ_BOUND`] (a hung NFS mount); a digest that is unknown (the
//! read did not end in time, or its task failed) is never a reason to
//! restart: a part is restarted for its files only when both digests were
//! read and differ, and one never known takes the next one read.

use std::time::Duration;

/// How long a reload waits for the files it compares. A read past it goes
/// on on its blocking thread and is not waited for: the reload goes on with
/// the digest unknown (and says so), so that the rest of it (a token taken
/// away, an account added) is not held for as long as a mount hangs.
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
    /// Whether the files are known to differ: both read, and not alike.
    pub fn differs_from(&self, other: &FilesDigest) -> bool {
        matches!((self, other), (FilesDigest::Read(a), FilesDigest::Read(b)) if a != b)
    }

    /// `self`, or `newer` when `self` is unknown: a part kept running takes
    /// the digest read now for the next comparison, where one never known
    /// would otherwise stay unknown (and its files' next change unseen).
    pub fn or_if_unknown(self, newer: FilesDigest) -> FilesDigest {
        match self {
            FilesDigest::Unknown => newer,
            read => read,
        }
    }

    /// `digest` run on the blocking pool, waited for at most [`READ_BOUND`];
    /// `what` names the files in the warning when it is not known.
    pub async fn read_off_the_workers(
        what: &str,
        digest: impl FnOnce() -> Option<[u8; 32]> + Send + 'static,
    ) -> FilesDigest {
        match read_within(READ_BOUND, what, digest).await {
            Some(read) => FilesDigest::Read(read),
            None => FilesDigest::Unknown,
        }
    }
}

/// What `read` returns, run on the blocking pool and waited for at most
/// [`READ_BOUND`]; `None` (and a warning naming `what`) when it did not
/// return in time or its task failed.
pub async fn read_off_the_workers<T: Send + 'static>(
    what: &str,
    read: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    read_within(READ_BOUND, what, read).await
}

async fn read_within<T: Send + 'static>(
    bound: Duration,
    what: &str,
    read: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let task = tokio::task::spawn_blocking(read);
    match tokio::time::timeout(bound, task).await {
        Ok(Ok(read)) => Some(read),
        Ok(Err(error)) => {
            tracing::warn!(%error, "reading {what} failed; compared as unchanged");
            None
        }
        Err(_) => {
            tracing::warn!(
                bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
                "{what} were not read in time (a slow or hung mount?); compared as unchanged"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_two_digests_read_and_unlike_differ() {
        let (a, b) = (
            FilesDigest::Read(Some([1; 32])),
            FilesDigest::Read(Some([2; 32])),
        );
        let none = FilesDigest::Read(None);
        assert!(a.differs_from(&b) && a.differs_from(&none) && none.differs_from(&a));
        assert!(!a.differs_from(&a) && !none.differs_from(&none));
        for read in [a, none] {
            assert!(!read.differs_from(&FilesDigest::Unknown));
            assert!(!FilesDigest::Unknown.differs_from(&read));
        }
        assert!(
            matches!(FilesDigest::Unknown.or_if_unknown(a), FilesDigest::Read(Some(d)) if d == [1; 32])
        );
        assert!(matches!(b.or_if_unknown(a), FilesDigest::Read(Some(d)) if d == [2; 32]));
    }

    /// A read that does not end is not waited for past the bound, and one
    /// whose task panics is unknown, not "no file".
    #[tokio::test]
    async fn a_read_that_hangs_or_fails_is_unknown() {
        let (release, hung) = std::sync::mpsc::channel::<()>();
        let bound = Duration::from_millis(50);
        let read = read_within(bound, "the test's files", move || {
            let _ = hung.recv();
            Some([1; 32])
        });
        assert!(read.await.is_none());
        drop(release);
        let failed = FilesDigest::read_off_the_workers("the test's files", || panic!("a bug"));
        assert!(matches!(failed.await, FilesDigest::Unknown));
        let read = FilesDigest::read_off_the_workers("the test's files", || Some([3; 32]));
        assert!(matches!(read.await, FilesDigest::Read(Some(d)) if d == [3; 32]));
    }
}
