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
//! in this process or another on this host, is [`JournalError::InUse`]
//! (whose text also names another program's `flock` on the directory: a
//! backup script's `flock`, say, refuses a start the same way). A `flock`
//! on a descriptor of its own: it goes at the drop, let go explicitly, or
//! at the process's end, not when the relay closes another descriptor of
//! the directory or the file, as a POSIX `fcntl` lock would (`sync_dir` and
//! the reopen's `forget_cached_pages` open and close them). Let go, not
//! left to the descriptor's close: a child process spawned meanwhile holds
//! a copy of the descriptor from its fork until its exec, and the lock,
//! held by every copy, refused an open right after a close (CI failed on
//! it twice, 2026-12-07; redb lets its own locks go the same way).
//! On the directory, not the file: redb 4.6 takes a `flock` on the file
//! itself (for redb before 4.3), which one of ours there would refuse.
//!
//! One host only: Linux hands a `flock` to the file system only where its
//! directories have a lock of their own, and NFS's, CIFS's (SMB's), 9p's and
//! FUSE's have none, so there the lock is kept by this host's kernel, and
//! a relay or `callrelay compact` on another host sharing the directory is
//! not refused by it. The open says so once (naming the path and the file
//! system); then only redb's lock on the file keeps another host's opener
//! out, where the file system carries that lock to the server, and not in
//! a reopen's gap. A directory the relay cannot open to read, or whose
//! `flock` fails, is said in the log and the journal is used without the
//! lock: redb's lock still refuses a second opener, except in a reopen's
//! gap. A failure for lack of permission is said only once the journal has
//! opened: a run as the wrong user fails to open the file anyway, and
//! said first, the lock's warning misled about why.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::JournalError;

/// The lock on a journal's directory, held until dropped.
#[derive(Debug)]
pub(super) struct DirLock {
    /// `None` where the lock could not be had.
    held: Option<OwnedFd>,
    /// Why the lock could not be had, where that waits for the open
    /// ([`said_when_taken`]).
    unsaid: Option<Errno>,
}

impl DirLock {
    /// Takes the lock on `dir`, the directory of the journal file `file`
    /// (which [`JournalError::InUse`] names), without waiting.
    pub(super) fn take(dir: &Path, file: &Path) -> Result<DirLock, JournalError> {
        let without = |error: Errno| {
            if said_when_taken(error) {
                say_without(dir, error);
                return Ok(DirLock {
                    held: None,
                    unsaid: None,
                });
            }
            Ok(DirLock {
                held: None,
                unsaid: Some(error),
            })
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir_fd = match rustix::fs::open(dir, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(error) => return without(error),
        };
        match rustix::fs::flock(&dir_fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DirLock {
                held: Some(dir_fd),
                unsaid: None,
            }),
            Err(Errno::WOULDBLOCK) => Err(JournalError::InUse {
                path: file.to_owned(),
            }),
            Err(error) => without(error),
        }
    }

    /// Says what the take left unsaid, now that the journal is open.
    pub(super) fn say_unsaid(&mut self, dir: &Path) {
        if let Some(error) = self.unsaid.take() {
            say_without(dir, error);
        }
    }

    /// What an open says once the journal is open: what the take left
    /// unsaid, and a lock that holds on this host only.
    pub(super) fn say_at_open(&mut self, dir: &Path) {
        self.say_unsaid(dir);
        let Some(fd) = &self.held else { return };
        // A file system the relay cannot look at is not called shared.
        let Ok(stat) = rustix::fs::fstatfs(fd) else {
            return;
        };
        // Magic numbers are 32 bits; `f_type` is an `i32` on 32-bit
        // targets, where CIFS's and SMB2's read negative and would not
        // match if widened (sign-extended) rather than cut to 32 bits.
        #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
        let kind = stat.f_type as u32;
        if let Some(file_system) = host_only_file_system(kind) {
            tracing::warn!(
                dir = %dir.display(),
                file_system,
                "{}",
                host_only_warning(file_system)
            );
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Some(fd) = &self.held {
            // A failure leaves the lock to the descriptor's close, right
            // after: as before the explicit release, nothing is lost.
            let _ = rustix::fs::flock(fd, FlockOperation::Unlock);
        }
    }
}

fn say_without(dir: &Path, error: Errno) {
    tracing::warn!(
        dir = %dir.display(),
        %error,
        "cannot lock the journal's directory: the journal is used without that lock, so a `callrelay compact` or a second relay on the same `journal.path` run while this relay reopens the journal after a failed write is not refused"
    );
}

fn host_only_warning(file_system: &str) -> String {
    format!(
        "the journal's directory is on {file_system}, where its lock holds on this host only: a `callrelay compact` or a second relay on another host sharing the directory is not refused by it (only by redb's lock on the file, where {file_system} carries that to the server, and not while this relay reopens the journal after a failed write); run one relay per journal directory, and `callrelay compact` on this host with the relay stopped"
    )
}

/// `statfs(2)` `f_type`s of file systems whose directories have no `flock`
/// of their own (`f_op->flock`), so that Linux keeps one on this host only:
/// NFS (`nfs_dir_operations`), the SMB clients (`cifs_dir_ops`; old smbfs)
/// FUSE (`fuse_dir_operations`: sshfs, s3fs, gcsfuse, GlusterFS's
/// client, virtiofs) and 9p (`v9fs_dir_operations`: QEMU's virtfs, WSL2's
/// drives). CephFS's directories take `ceph_flock`, kept by its MDS across
/// hosts; overlayfs's have none, but it is not shared between hosts.
const NFS: u32 = 0x6969;
const SMB: u32 = 0x517B;
const CIFS: u32 = 0xFF53_4D42;
const SMB2: u32 = 0xFE53_4D42;
const FUSE: u32 = 0x6573_5546;
const V9FS: u32 = 0x0102_1997;

/// The name of a file system whose directories take a `flock` on this
/// host only, by its `statfs` `f_type`.
fn host_only_file_system(kind: u32) -> Option<&'static str> {
    match kind {
        NFS => Some("nfs"),
        SMB => Some("smb"),
        CIFS => Some("cifs"),
        SMB2 => Some("smb2"),
        FUSE => Some("fuse"),
        V9FS => Some("9p"),
        _ => None,
    }
}

/// Whether a failure to lock is said when the lock is taken. Not one for
/// lack of permission: the open that follows fails with the true reason
/// (a run as the wrong user, a 0700 state directory), and where it does
/// not (a directory that may be written but not read), it is said then.
fn said_when_taken(error: Errno) -> bool {
    !matches!(error, Errno::ACCESS | Errno::PERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's `flock` calls a file system's own lock only where its
    /// directories have one; NFS's, CIFS's, FUSE's and 9p's have none, so the
    /// lock is kept by this host's kernel alone.
    #[test]
    fn network_file_systems_are_host_only_and_ceph_and_a_disk_are_not() {
        assert_eq!(host_only_file_system(0x6969), Some("nfs"));
        assert_eq!(host_only_file_system(0x517B), Some("smb"));
        assert_eq!(host_only_file_system(0xFF53_4D42), Some("cifs"));
        assert_eq!(host_only_file_system(0xFE53_4D42), Some("smb2"));
        assert_eq!(host_only_file_system(0x6573_5546), Some("fuse"));
        assert_eq!(host_only_file_system(0x0102_1997), Some("9p"));
        // A 32-bit target's `f_type` (an `i32`) cut to 32 bits, as read.
        let cifs_as_i32 = 0xFF53_4D42_u32 as i32;
        assert_eq!(host_only_file_system(cifs_as_i32 as u32), Some("cifs"));
        // CephFS's directories have their own `flock`, kept by its MDS.
        assert_eq!(host_only_file_system(0x00C3_6400), None, "ceph");
        assert_eq!(host_only_file_system(0xEF53), None, "ext4");
        assert_eq!(host_only_file_system(0x5846_5342), None, "xfs");
        assert_eq!(host_only_file_system(0x0102_1994), None, "tmpfs");
        let said = host_only_warning("nfs");
        assert!(
            said.contains("is on nfs, where its lock holds on this host only"),
            "{said}"
        );
    }

    /// A directory the user cannot read (a hand-run as the wrong user) is
    /// not said before the open, which then fails with the true reason.
    #[test]
    fn a_permission_failure_waits_for_the_open_and_others_are_said_at_once() {
        use rustix::io::Errno;
        assert!(!said_when_taken(Errno::ACCESS));
        assert!(!said_when_taken(Errno::PERM));
        assert!(said_when_taken(Errno::NOLCK));
        assert!(said_when_taken(Errno::BADF));
        assert!(said_when_taken(Errno::INTR));
        // Said once, at the open: a reopen's `say_unsaid` finds nothing.
        let mut lock = DirLock {
            held: None,
            unsaid: Some(Errno::ACCESS),
        };
        lock.say_unsaid(Path::new("/nowhere"));
        assert_eq!(lock.unsaid, None, "said, and said once");
    }

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

    /// The lock's descriptor closes at a spawned program's exec, so no
    /// program keeps a copy past it, and is the directory's: a path that is
    /// a file is no directory to lock (mutation testing, round 74: either
    /// flag dropped passed every test).
    #[test]
    fn the_locks_descriptor_is_the_directorys_and_closes_at_exec() {
        let (dir, file, held) = a_locked_tempdir();
        let fd = held.held.as_ref().expect("a tempdir can be locked");
        let flags = rustix::io::fcntl_getfd(fd).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC), "{flags:?}");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        let taken = DirLock::take(&plain, &file).unwrap();
        assert!(taken.held.is_none(), "a file is no directory to lock");
    }

    /// A child process spawned while the lock is held (by a test beside
    /// this one, say) holds a copy of its descriptor from its fork until
    /// its exec: a copy shares the lock, so the drop lets it go for every
    /// copy, and an open right after a close is not refused.
    #[test]
    fn the_drop_lets_the_lock_go_while_a_copy_of_its_descriptor_is_open() {
        let (dir, file, held) = a_locked_tempdir();
        let fd = held.held.as_ref().expect("a tempdir can be locked");
        let childs_copy = rustix::io::fcntl_dupfd_cloexec(fd, 0).unwrap();
        drop(held);
        DirLock::take(dir.path(), &file).expect("the lock went with the drop");
        drop(childs_copy);
    }

    /// A temporary directory, its journal file's path, and its lock.
    fn a_locked_tempdir() -> (tempfile::TempDir, std::path::PathBuf, DirLock) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("journal.redb");
        let held = DirLock::take(dir.path(), &file).unwrap();
        (dir, file, held)
    }
}
