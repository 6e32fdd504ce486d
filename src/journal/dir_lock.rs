//! The journal's own lock: an exclusive `flock` on its directory, taken by
//! every open of the journal ([`Journal::open`](super::Journal::open): the
//! relay's start, `callrelay compact`) and held across the relay's reopens
//! after a failed write. A [`Journal::close`](super::Journal::close) lets
//! it go (unless a reopen opened the file again meanwhile), and a reopen
//! after a close takes it again.
//!
//! Why: redb's lock on the file goes with the last handle to the database,
//! and a reopen closes the database before it opens it again. In that gap
//! a `callrelay compact`, or a second relay on the same `journal.path`,
//! took the file (audit, 2026-12-07): the reopen took their "in use" for
//! its own readers' for 2 s, then blamed them (`HeldByReaders`), and
//! commits failed while the other process held the file.
//!
//! Guarantees: while one [`DirLock`] of a directory holds, taking another,
//! in this process or another, is [`JournalError::InUse`] (whose text also
//! names another program's `flock` on the directory: a backup script's
//! `flock`, say, refuses a start the same way). A `flock` on a
//! descriptor of its own: it goes when that descriptor is closed (the drop,
//! or the process's end), not when the relay closes another descriptor of
//! the directory or the file, as a POSIX `fcntl` lock would (`sync_dir` and
//! the reopen's `forget_cached_pages` open and close them). On the
//! directory, not the file: redb 4.6 takes a `flock` on the file itself
//! (for redb before 4.3), which one of ours there would refuse. A
//! directory the relay cannot open to read, or a filesystem that refuses a
//! `flock` on it (NFS emulates `flock` with a byte-range lock, refused on a
//! descriptor not open for writing), is said in the log and the journal is
//! used without it: redb's lock still refuses a second opener, except in
//! a reopen's gap.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FlockOperation, Mode, OFlags};

use super::JournalError;

/// The lock on a journal's directory, held until dropped.
#[derive(Debug)]
pub(super) struct DirLock {
    /// `None` where the lock could not be had (said when taken). Only its
    /// drop uses it outside the tests, which rustc takes for unused.
    #[allow(dead_code)]
    held: Option<OwnedFd>,
}

impl DirLock {
    /// Takes the lock on `dir`, the directory of the journal file `file`
    /// (which [`JournalError::InUse`] names), without waiting.
    pub(super) fn take(dir: &Path, file: &Path) -> Result<DirLock, JournalError> {
        let without = |error: rustix::io::Errno| {
            tracing::warn!(
                dir = %dir.display(),
                %error,
                "cannot lock the journal's directory: the journal is used without that lock, so a `callrelay compact` or a second relay on the same `journal.path` run while this relay reopens the journal after a failed write is not refused"
            );
            Ok(DirLock { held: None })
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir_fd = match rustix::fs::open(dir, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(error) => return without(error),
        };
        match rustix::fs::flock(&dir_fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DirLock { held: Some(dir_fd) }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(JournalError::InUse {
                path: file.to_owned(),
            }),
            Err(error) => without(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closing another descriptor of the directory (as `sync_dir` does)
    /// keeps the lock, which a POSIX `fcntl` lock would not.
    #[test]
    fn the_lock_outlives_other_descriptors_of_the_directory_and_goes_with_its_drop() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("journal.redb");
        let held = DirLock::take(dir.path(), &file).unwrap();
        assert!(held.held.is_some(), "a tempdir can be locked");
        drop(std::fs::File::open(dir.path()).unwrap());
        assert!(matches!(
            DirLock::take(dir.path(), &file),
            Err(JournalError::InUse { .. })
        ));
        drop(held);
        DirLock::take(dir.path(), &file).unwrap();
    }
}
