//! Opening the journal's redb file: created owner-only, with a bounded page
//! cache, read from the disk rather than the kernel's cache (which can hold
//! a commit whose write failed), and a repair (after an unclean close) that
//! says in the log why the start is slow and how far it got.
//!
//! A file redb finds damaged as it opens it (a repair checks every page's
//! checksum) is [`JournalError::DamagedAtOpen`], apart from other failures
//! to open, so that its message says to restore or move the file aside.
//!
//! A refusal to create or open the file or its directory carries an
//! [`AccessHint`]: what a read-only filesystem or a denied permission most
//! often means there (at the start, or on a reopen under the running
//! relay), and what to run.
//!
//! Guarantees: a file created here is 0600 from its first byte, and an
//! existing one others may read is made owner-only (or said); the file is
//! never opened through a symbolic link, nor when it is not a regular file
//! ([`JournalError::NotAFile`]); redb's page cache is at most 64 MiB.
//! A blank file, what a first start that failed as redb set it up leaves
//! (at most 256 KiB, no magic number, nothing but zeros past redb's
//! unfinished 320-byte header), opens as a new journal; one this start
//! created is removed if the open fails while it is blank. Any other file
//! without a journal header (a longer file of zeros: a journal whose
//! contents were lost) is never emptied nor removed: it is
//! [`JournalError::NotAJournal`]. A file with more than one link is never
//! made owner-only: it may be another file linked there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::Database;

use super::JournalError;

/// redb's own page cache. Its default, 1 GiB, fills with every page the
/// relay writes or reads, so with the default `max_size` a relay under
/// steady load held about 1.3 GB; the kernel's page cache keeps the file
/// anyway, so a page redb no longer holds costs a `pread`, not a disk read.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Why the journal is being opened: what a repair (a read of the whole
/// file, for a file not closed cleanly) is said to be for.
#[derive(Clone, Copy)]
pub(crate) enum Opening {
    Start,
    AfterIoError,
}

/// Creates the journal file, owner only (0600) whatever the umask and the
/// directory's mode, if it does not exist yet: it holds callers' phone
/// numbers. redb takes an empty file as a new journal. An existing file
/// others may read (made by a build before files were created owner-only,
/// from a shell with umask 022) is made owner-only, which is logged; it is
/// changed through the descriptor opened without following a link, so a
/// link planted at the path changes nothing ([`open_no_follow`]).
/// A blank file ([`is_blank`]) is what a first start that failed while
/// redb set the file up leaves (a full disk refuses the header's write
/// after the file was sized; a kill before the magic number's write): it
/// holds no event and is emptied, said, and taken as a new journal, where
/// redb refused it at every later start. Returns whether the journal is
/// new (the file created, or such a blank emptied).
pub(super) fn create_private(path: &Path) -> Result<bool, JournalError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let file = open_no_follow(path, Opening::Start)?;
            make_owner_only(&file, path);
            Ok(empty_if_blank(&file, path))
        }
        Err(source) => Err(create_file_failed(path, source)),
    }
}

/// The journal file at `path`, opened to read and write without following
/// a symbolic link, and only if it is a regular file: a link (dangling, or
/// to another file) at the path is [`JournalError::NotAFile`], where it
/// was followed, its target created with the umask's mode or made
/// owner-only before anything checked it was a journal. The type is looked
/// at before the open (`lstat`): a device node is never opened (an open
/// can act on the device), and a socket, which no open takes (`ENXIO`), is
/// said as one. The opened file is then checked to be the one looked at,
/// in case another took its place between. `O_NONBLOCK` until then: a FIFO
/// put there in between must not hold the start.
fn open_no_follow(path: &Path, opening: Opening) -> Result<std::fs::File, JournalError> {
    use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
    let not_a_file = |kind| JournalError::NotAFile {
        path: path.to_owned(),
        kind,
    };
    let io = |e: rustix::io::Errno| open_failed(path, opening, redb::Error::Io(e.into()));
    let not_regular = |mode| match FileType::from_raw_mode(mode) {
        FileType::RegularFile => None,
        FileType::Symlink => Some(not_a_file("a symbolic link")),
        FileType::Directory => Some(not_a_file("a directory")),
        FileType::Fifo => Some(not_a_file("a FIFO")),
        FileType::Socket => Some(not_a_file("a socket")),
        FileType::CharacterDevice | FileType::BlockDevice => Some(not_a_file("a device")),
        _ => Some(not_a_file("not a regular file")),
    };
    let looked = rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
    if let Some(refused) = not_regular(looked.st_mode) {
        return Err(refused);
    }
    let flags =
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => return Err(not_a_file("a symbolic link")),
        Err(rustix::io::Errno::ISDIR) => return Err(not_a_file("a directory")),
        Err(e) => return Err(io(e)),
    };
    let opened = rustix::fs::fstat(&fd).map_err(io)?;
    if let Some(refused) = not_regular(opened.st_mode) {
        return Err(refused);
    }
    if (opened.st_dev, opened.st_ino) != (looked.st_dev, looked.st_ino) {
        let replaced = std::io::Error::other("the file was replaced while it was opened");
        return Err(open_failed(path, opening, redb::Error::Io(replaced)));
    }
    rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(io)?;
    Ok(std::fs::File::from(fd))
}

/// Takes group and other permissions off an existing journal file. A file
/// this cannot change (another owner) is said, and opened as it is.
fn make_owner_only(file: &std::fs::File, path: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = file.metadata() else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return;
    }
    // A hard link planted at the path (as root, with
    // `fs.protected_hardlinks=0`) would have any file made owner-only
    // before anything checked it is a journal: said, left as it is.
    if meta.nlink() > 1 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), links = meta.nlink(),
            "the journal file can be read by others (it holds callers' numbers), and has other names (hard links): not made owner-only, in case it is another file linked there; remove the other links, or chmod 600 it");
        return;
    }
    let private = std::fs::Permissions::from_mode(mode & 0o700);
    match file.set_permissions(private) {
        Ok(()) => tracing::warn!(path = %path.display(), was = format!("{mode:o}"),
            "the journal file could be read by others (it holds callers' numbers): made owner-only (0600)"),
        Err(e) => tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), error = %e,
            "the journal file can be read by others (it holds callers' numbers), and could not be made owner-only"),
    }
}

/// At most what a first start that failed as redb set the file up can
/// leave: redb 4.6 sizes a new file to its first region, 72 KiB with 4 KiB
/// pages, before it writes the header (`journal::tests::
/// a_file_killed_between_redbs_two_header_writes_opens_as_an_empty_journal`
/// checks it stays under this). A longer file of zeros is a journal whose
/// contents the storage lost (damage, a restore that preallocated):
/// refused, so that a backup can be restored before new seqs go out under
/// the old ones; and a multi-GiB file is not read before the start.
/// 256 KiB, not more (review of 1a5b48f): redb's new file is 72 KiB, and
/// a small real journal the storage zeroed deserves the refusal too.
pub(super) const BLANK_MAX_BYTES: u64 = 256 * 1024;

/// redb's file header (`DB_HEADER_SIZE` in its `header.rs`: 64 bytes, then
/// two 128-byte commit slots). redb 4.6 writes a new file's header twice,
/// each flushed: first without its magic number, then with it; a kill
/// between the two leaves this much that is not zero, and no magic.
const REDB_HEADER_BYTES: usize = 320;
/// redb's magic number's length: the first bytes of the header.
const REDB_MAGIC_BYTES: usize = 9;

/// Whether `file` is what a first start that failed as redb set it up
/// leaves, holding no event: at most [`BLANK_MAX_BYTES`], no magic number,
/// and no byte that is not zero past redb's header (which, without its
/// magic, holds no commit redb would read). An empty file is blank too.
fn is_blank(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    if file.metadata()?.len() > BLANK_MAX_BYTES {
        return Ok(false);
    }
    // One byte past the bound: the file may have grown since.
    let mut bytes = vec![0u8; BLANK_MAX_BYTES as usize + 1];
    let mut read = 0;
    while read < bytes.len() {
        match file.read_at(&mut bytes[read..], read as u64)? {
            0 => break,
            n => read += n,
        }
    }
    if read as u64 > BLANK_MAX_BYTES {
        return Ok(false);
    }
    bytes.truncate(read);
    let magic = bytes.len().min(REDB_MAGIC_BYTES);
    let header = bytes.len().min(REDB_HEADER_BYTES);
    Ok(bytes[..magic].iter().all(|b| *b == 0) && bytes[header..].iter().all(|b| *b == 0))
}

/// Runs `act` on `file` if it is blank ([`is_blank`]), under an exclusive `flock`:
/// redb holds one on a file it has open (it is how it keeps redb before 4.3
/// out), so a file another relay is setting up right now is left to redb,
/// which says it is in use. Returns whether `act` ran and succeeded.
fn if_blank(
    file: &std::fs::File,
    act: impl FnOnce(&std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<bool> {
    if !is_blank(file)? {
        return Ok(false);
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    // Again under the lock: nobody wrote a header in between.
    let acted = if is_blank(file)? {
        act(file).map(|()| true)
    } else {
        Ok(false)
    };
    let _ = file.unlock();
    acted
}

/// Empties an existing blank journal file ([`is_blank`], [`create_private`]).
/// Returns whether it did; a failure to look is left to redb's open.
fn empty_if_blank(file: &std::fs::File, path: &Path) -> bool {
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    if bytes == 0 {
        // Nothing to empty, and redb takes it as new; but it is not said
        // as a new journal, which it may not be (a truncated one).
        return false;
    }
    match if_blank(file, |file| file.set_len(0)) {
        Ok(true) => {
            tracing::warn!(path = %path.display(), bytes,
                "the journal file held only zero bytes (past an unfinished header at most), no journal: what a first start that failed while setting it up leaves (a full disk, a stop during it); it held no event, and an empty journal is started in it. If a relay ran with this journal before, the filesystem lost its contents: restore it from a backup");
            true
        }
        Ok(false) => false,
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "could not look for a blank journal file");
            false
        }
    }
}

/// Removes the journal file this start created when its first open failed
/// (a full disk as redb sized and wrote its header; a read-only
/// filesystem), if it is still blank ([`is_blank`]): it holds no event,
/// and left there it was found at every later start (not created, so not
/// new) and refused. A file redb wrote a journal header in is kept.
pub(super) fn discard_if_blank(path: &Path) {
    let Ok(file) = open_no_follow(path, Opening::Start) else {
        return;
    };
    match if_blank(&file, |_| std::fs::remove_file(path)) {
        Ok(true) => {
            tracing::info!(path = %path.display(), "removed the journal file this start created: it holds no event")
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "could not remove the journal file this start created")
        }
    }
}

/// Whether the file at `path` is blank ([`is_blank`]): `callrelay compact`
/// refuses it, as it refuses an empty one, where the open would start a
/// journal in it. A file that cannot be opened is not: the open says why.
pub(super) fn is_blank_at(path: &Path) -> bool {
    open_no_follow(path, Opening::Start).is_ok_and(|file| is_blank(&file).unwrap_or(false))
}

/// Drops the kernel's cached copy of the journal file, so that the open
/// reads what is on the disk. Linux marks a page whose write-back failed
/// clean and keeps serving it from its cache (PostgreSQL's "fsyncgate"):
/// opened through that cache after a failed commit, redb found the commit
/// whole, the relay took it as landed (its retries answered as duplicates)
/// and the next commits were built on pages the disk never got. Once the
/// cache lost them (an unmount, a reboot, memory pressure) the file was
/// corrupt: earlier events gone, or the journal unopenable. Read from the
/// disk, the failed commit fails redb's checksums and is rolled back.
/// A file that cannot be read here is left to the open to report.
fn forget_cached_pages(path: &Path) {
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    // Write-back still in flight is skipped by DONTNEED: wait for it. Its
    // error, if any, is the failure already being handled.
    let _ = file.sync_data();
    if let Err(e) = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed) {
        tracing::debug!(path = %path.display(), error = %e, "could not drop the journal's cached pages");
    }
}

/// Opens the journal's database, from the disk whenever the kernel's cache
/// may hold a failed write ([`forget_cached_pages`]): always after a failed
/// commit, and at start when the last run did not close the file (redb then
/// asks for a repair). A restart is the natural answer to a write error and
/// the cache outlives the process; but a start after a clean stop keeps the
/// cache, which a failed write cannot have left behind (a failure makes the
/// writer reopen from the disk, and redb closes a file cleanly only when no
/// write failed): dropping it there cost a 1 GiB journal's start 0.9 s on a
/// fast disk, and a slow one would read every page of the dedup index cold.
pub(super) fn open_database(path: &Path, opening: Opening) -> Result<Database, JournalError> {
    match opening {
        Opening::AfterIoError => {
            forget_cached_pages(path);
            open_once(path, opening, RepairNeeded::Repair)
        }
        Opening::Start => match open_once(path, opening, RepairNeeded::Refuse) {
            Err(JournalError::Open {
                source: redb::Error::RepairAborted,
                ..
            }) => {
                forget_cached_pages(path);
                open_once(path, opening, RepairNeeded::Repair)
            }
            opened => opened,
        },
    }
}

/// What [`open_once`] does when redb finds the file not closed cleanly.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RepairNeeded {
    /// Stop before reading the file (`RepairAborted`): the caller drops the
    /// kernel's cache and opens again.
    Refuse,
    Repair,
}

fn open_once(
    path: &Path,
    opening: Opening,
    repair_needed: RepairNeeded,
) -> Result<Database, JournalError> {
    let shown = path.display().to_string();
    let told = std::cell::Cell::new(false);
    let started = std::time::Instant::now();
    let mut builder = Database::builder();
    builder
        .set_cache_size(CACHE_BYTES)
        .set_repair_callback(move |session| {
            if repair_needed == RepairNeeded::Refuse {
                session.abort();
                return;
            }
            // Called while redb rebuilds its state, which takes a read of the
            // whole file (minutes on a slow disk): say why this start is slow,
            // then how far it got (redb reports 60 and 90 %, after its first
            // scan, which is most of the time; the app says it is still at it).
            if told.replace(true) {
                tracing::info!(
                    path = %shown,
                    done_percent = (session.progress() * 100.0).round() as u64,
                    elapsed_s = started.elapsed().as_secs(),
                    "checking the journal"
                );
            } else {
                match opening {
                    Opening::Start => tracing::warn!(
                        path = %shown,
                        "the journal was not closed cleanly (a crash, a kill, or a stop that could not close it): checking the whole file before starting"
                    ),
                    Opening::AfterIoError => tracing::warn!(
                        path = %shown,
                        "opening the journal again after a failed write: checking the whole file"
                    ),
                }
            }
        });
    // Never through a link (see `open_no_follow`), and never created here:
    // `create_private` made the file at the start, and on a reopen a file
    // gone from the path is the journal lost from under the relay.
    let file = open_no_follow(path, opening)?;
    if matches!(opening, Opening::AfterIoError) && file.metadata().is_ok_and(|m| m.len() == 0) {
        // redb's `create` takes an empty file as a new journal; `open`,
        // which a reopen used, refuses it: so does this.
        let empty =
            std::io::Error::new(std::io::ErrorKind::InvalidData, "the journal file is empty");
        return Err(open_failed(path, opening, redb::Error::Io(empty)));
    }
    let backend =
        redb::backends::FileBackend::new(file).map_err(|e| open_failed(path, opening, e.into()))?;
    builder.create_with_backend(backend).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => JournalError::InUse {
            path: path.to_owned(),
        },
        // Said as damage, with what to do: as a plain open error it read
        // like a permission or disk fault, and systemd restarted the relay
        // into the same failure with no word of restoring the file.
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
            JournalError::DamagedAtOpen {
                path: path.to_owned(),
                detail,
            }
        }
        // redb's "magic number mismatch": said as what it is, where it read
        // like damage. A blank file never gets here at a start.
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData && matches!(opening, Opening::Start) =>
        {
            JournalError::NotAJournal {
                path: path.to_owned(),
                detail: e.to_string(),
            }
        }
        other => open_failed(path, opening, other.into()),
    })
}

/// The journal's directory could not be created.
pub(super) fn create_dir_failed(dir: &Path, source: std::io::Error) -> JournalError {
    let hint = match source.kind() {
        std::io::ErrorKind::PermissionDenied => AccessHint::DirCannotBeMade {
            dir: dir.to_owned(),
        },
        kind => AccessHint::of(kind, dir),
    };
    JournalError::CreateDir {
        path: dir.to_owned(),
        source,
        hint: Box::new(hint),
    }
}

/// The journal's file could not be created in its directory.
pub(crate) fn create_file_failed(path: &Path, source: std::io::Error) -> JournalError {
    let dir = path.parent().unwrap_or(path);
    let hint = match source.kind() {
        std::io::ErrorKind::PermissionDenied => AccessHint::DirNotWritable {
            dir: dir.to_owned(),
        },
        kind => AccessHint::of(kind, dir),
    };
    JournalError::CreateFile {
        path: path.to_owned(),
        source,
        hint: Box::new(hint),
    }
}

/// The journal's file, there, could not be opened: at the start, or again
/// after a failed write ([`Journal::reopen`](super::Journal::reopen)), when
/// the relay had it open moments before, so that what changed is the
/// filesystem or the file under the running relay, not the unit.
pub(crate) fn open_failed(path: &Path, opening: Opening, source: redb::Error) -> JournalError {
    let dir = path.parent().unwrap_or(path);
    let hint = match (&source, opening) {
        (redb::Error::Io(e), Opening::Start)
            if e.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            AccessHint::FileNotOwned {
                dir: dir.to_owned(),
                file: path.to_owned(),
            }
        }
        (redb::Error::Io(e), Opening::Start) => AccessHint::of(e.kind(), dir),
        (redb::Error::Io(e), Opening::AfterIoError) => match e.kind() {
            std::io::ErrorKind::PermissionDenied => AccessHint::FileChangedWhileRunning {
                dir: dir.to_owned(),
                file: path.to_owned(),
            },
            std::io::ErrorKind::ReadOnlyFilesystem => AccessHint::WentReadOnly,
            _ => AccessHint::None,
        },
        _ => AccessHint::None,
    };
    JournalError::Open {
        path: path.to_owned(),
        source,
        hint: Box::new(hint),
    }
}

/// What to do about a journal the relay could not create or open, said
/// after the system's own words, which alone pointed the wrong way: the
/// runbook reads "Read-only file system" as a failed disk (fsck), where at
/// a start it is most often the shipped unit's `ProtectSystem=strict` over
/// a `journal.path` outside the state directory; and "Permission denied"
/// named no owner, for a journal restored with `cp` as root or left by
/// `sudo callrelay run`. A reopen after a failed write, the file open
/// moments before, is told what changed under the running relay instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessHint {
    None,
    /// `dir` (or its nearest existing ancestor) is on a filesystem the
    /// relay may not write.
    ReadOnly {
        dir: PathBuf,
    },
    /// The journal's directory, missing, cannot be made by the relay's user.
    DirCannotBeMade {
        dir: PathBuf,
    },
    /// The relay's user cannot create the file in the journal's directory.
    DirNotWritable {
        dir: PathBuf,
    },
    /// The file is there, and the relay's user may not open it.
    FileNotOwned {
        dir: PathBuf,
        file: PathBuf,
    },
    /// A reopen: the filesystem went read-only while the relay ran (ext4
    /// after a disk error), the runbook's failed disk.
    WentReadOnly,
    /// A reopen: the file, open moments before, may no longer be opened by
    /// the relay's user (its owner or mode changed while the relay ran).
    FileChangedWhileRunning {
        dir: PathBuf,
        file: PathBuf,
    },
}

impl AccessHint {
    fn of(kind: std::io::ErrorKind, dir: &Path) -> AccessHint {
        match kind {
            std::io::ErrorKind::ReadOnlyFilesystem => AccessHint::ReadOnly {
                dir: existing_ancestor(dir),
            },
            _ => AccessHint::None,
        }
    }
}

/// `path`, or the nearest of its ancestors that exists: `findmnt -T` finds
/// no mount for a path that does not.
fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .unwrap_or(path)
        .to_owned()
}

impl std::fmt::Display for AccessHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessHint::None => Ok(()),
            AccessHint::ReadOnly { dir } => write!(
                f,
                "; under the shipped systemd unit (`ProtectSystem=strict`) everything but /var/lib/callrelay is read-only to the relay: keep `journal.path` under it, or create the directory first, owned by the service's user (the fixed account of deploy/README.md §2: a dynamic user has no uid before it starts), then name it in `ReadWritePaths=` in a drop-in (`systemctl edit callrelay`; systemd refuses one that does not exist) and restart; otherwise the filesystem is mounted read-only: check `findmnt -T {}`",
                dir.display()
            ),
            AccessHint::DirCannotBeMade { dir } => write!(
                f,
                "; the user the relay runs as cannot create it: create it for that user (`install -d -m 0700 -o <user> {}`), or set `journal.path` to a directory that user can write",
                dir.display()
            ),
            AccessHint::DirNotWritable { dir } => write!(
                f,
                "; the user the relay runs as cannot create files in {dir}: a directory made by a relay run as root (`sudo callrelay run`) is root's: give it to that user (`chown -R <user>: {dir}`)",
                dir = dir.display()
            ),
            AccessHint::FileNotOwned { dir, file } => write!(
                f,
                "; give the file the owner of the journal's directory (`chown --reference={} {}`): a file made as root is root's (a journal restored with plain `cp`, or a relay once run with `sudo callrelay run`), and the relay's user cannot open it",
                dir.display(),
                file.display()
            ),
            AccessHint::WentReadOnly => f.write_str(
                "; the filesystem went read-only under the running relay (ext4 does after a disk error): the disk or the filesystem failed, see `dmesg`; it stays read-only after `mount -o remount,rw`: stop the relay, unmount, `fsck`, mount, start (docs/operations.md, CallrelayJournalCommitsFailing)",
            ),
            AccessHint::FileChangedWhileRunning { dir, file } => write!(
                f,
                "; the file's owner or mode changed while the relay ran: give it back to the relay's user (`chown --reference={} {file}`, `chmod 0600 {file}`)",
                dir.display(),
                file = file.display()
            ),
        }
    }
}

/// How long [`Journal::reopen`] waits for readers to finish with the old
/// database (each holds it for one read transaction).
pub(super) const REOPEN_WAIT: Duration = Duration::from_secs(2);

/// Makes `dir`'s entries (the journal file's name) durable, with `dir`'s
/// own in its parent, and the entry of each directory of `made` (those this
/// start created for it, outermost first): each of them, and the one the
/// outermost was made in, the working directory for a relative path. Only
/// the last component and its parent were synced: `journal.path = "data"`
/// never synced the working directory, and `/srv/a/b` made with `a` left
/// `a`'s entry in `/srv` to the next write-back.
/// Each is tried: the first failure is returned after the others.
pub(super) fn sync_dir(dir: &Path, made: &[PathBuf]) -> std::io::Result<()> {
    let mut first_error = None;
    for dir in dirs_to_sync(dir, made) {
        if let Err(error) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The directories of `dir` that do not exist, outermost first: what a
/// recursive create makes, for [`sync_dir`].
pub(super) fn missing_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| {
            matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        })
        .map(Path::to_owned)
        .collect();
    missing.reverse();
    missing
}

/// The directories whose entries [`sync_dir`] syncs.
fn dirs_to_sync(dir: &Path, made: &[PathBuf]) -> Vec<PathBuf> {
    // `Path::parent` of a relative path's first component is "": the
    // working directory, which `open` names ".".
    let made_in = |path: &Path| {
        path.parent().map(|parent| {
            if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent.to_owned()
            }
        })
    };
    let mut dirs = made.to_vec();
    let more = [
        Some(dir.to_owned()),
        made_in(dir),
        made.first().and_then(|first| made_in(first)),
    ];
    for more in more.into_iter().flatten() {
        if !dirs.contains(&more) {
            dirs.push(more);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use redb::ReadableDatabase;

    use super::*;

    #[test]
    fn the_file_is_created_owner_only_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.redb");
        assert!(create_private(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!create_private(&path).unwrap(), "already there");
        // Any other failure is the error, not "already there".
        let missing = dir.path().join("missing").join("journal.redb");
        let error = create_private(&missing).unwrap_err();
        assert!(matches!(error, JournalError::CreateFile { .. }), "{error}");
    }

    /// What a first start that failed as redb set the file up leaves (the
    /// file sized, its header never written) is removed; a file with any
    /// byte that is not zero never is.
    #[test]
    fn only_a_file_of_zeros_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.redb");
        assert!(create_private(&path).unwrap());
        std::fs::write(&path, vec![0u8; BLANK_MAX_BYTES as usize]).unwrap();
        discard_if_blank(&path);
        assert!(!path.exists(), "a blank file is removed");

        assert!(create_private(&path).unwrap());
        discard_if_blank(&path);
        assert!(!path.exists(), "an empty file is removed");

        let mut bytes = vec![0u8; BLANK_MAX_BYTES as usize];
        bytes[BLANK_MAX_BYTES as usize - 1] = 1;
        std::fs::write(&path, &bytes).unwrap();
        discard_if_blank(&path);
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "kept as it was");
    }

    /// A directory or a FIFO at the file's path is said as such; the FIFO's
    /// open does not wait for a writer.
    #[test]
    fn what_is_not_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.redb");
        std::fs::create_dir(&path).unwrap();
        let error = create_private(&path).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("is a directory, not a regular file"),
            "{error}"
        );
        std::fs::remove_dir(&path).unwrap();
        crate::regular_file::hung_file::make(&path);
        let error = create_private(&path).unwrap_err();
        assert!(
            error.to_string().contains("is a FIFO, not a regular file"),
            "{error}"
        );
    }

    /// A power cut soon after a first start could lose the entry naming a
    /// directory it made, with the journal in it: each directory made is
    /// synced (its entries), and the one the outermost was made in (the
    /// working directory for a relative `journal.path`), not only the last
    /// component and its parent.
    #[test]
    fn every_directory_made_and_the_one_it_was_made_in_are_synced() {
        let synced = |dir: &str, made: &[&str]| {
            let made: Vec<PathBuf> = made.iter().map(PathBuf::from).collect();
            let mut dirs = dirs_to_sync(Path::new(dir), &made);
            dirs.sort();
            dirs
        };
        let paths = |dirs: &[&str]| dirs.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(synced("data", &["data"]), paths(&[".", "data"]));
        assert_eq!(
            synced("/srv/a/b", &["/srv/a", "/srv/a/b"]),
            paths(&["/srv", "/srv/a", "/srv/a/b"])
        );
        assert_eq!(
            synced("x/y/z", &["x", "x/y", "x/y/z"]),
            paths(&[".", "x", "x/y", "x/y/z"])
        );
        // Nothing made: the directory and the one it is in.
        assert_eq!(synced("data", &[]), paths(&[".", "data"]));
        assert_eq!(
            synced("/var/lib/callrelay", &[]),
            paths(&["/var/lib", "/var/lib/callrelay"])
        );
        assert_eq!(synced("/", &[]), paths(&["/"]));
    }

    /// What does not exist yet of a directory, outermost first.
    #[test]
    fn the_directories_to_make_are_found_outermost_first() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a").join("b");
        assert_eq!(
            missing_dirs(&deep),
            vec![dir.path().join("a"), deep.clone()]
        );
        assert!(missing_dirs(dir.path()).is_empty());
    }

    fn os_error(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::from(kind)
    }

    /// "Read-only file system" at the start sent the operator to fsck; it is
    /// most often the shipped unit's `ProtectSystem=strict` over a
    /// `journal.path` outside the state directory.
    #[test]
    fn a_read_only_filesystem_at_the_start_names_read_write_paths_then_findmnt() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join("journal");
        let file = journal_dir.join("journal.redb");
        let read_only = || os_error(std::io::ErrorKind::ReadOnlyFilesystem);
        for error in [
            create_dir_failed(&journal_dir, read_only()),
            create_file_failed(&file, read_only()),
            open_failed(&file, Opening::Start, redb::Error::Io(read_only())),
        ] {
            let text = error.to_string();
            assert!(text.contains("ProtectSystem=strict"), "{text}");
            assert!(text.contains("/var/lib/callrelay"), "{text}");
            assert!(text.contains("`ReadWritePaths="), "{text}");
            assert!(text.contains("systemctl edit callrelay"), "{text}");
            // systemd refuses a `ReadWritePaths=` that does not exist, and a
            // directory made by root is not the dynamic user's.
            assert!(text.contains("create the directory first"), "{text}");
            assert!(text.contains("fixed account"), "{text}");
            assert!(text.contains("deploy/README.md §2"), "{text}");
            assert!(text.contains("keep `journal.path` under"), "{text}");
            // The directory that exists, which findmnt can look up.
            assert!(
                text.contains(&format!("`findmnt -T {}`", dir.path().display()))
                    || text.contains(&format!("`findmnt -T {}`", journal_dir.display())),
                "{text}"
            );
            assert!(!text.contains("chown"), "{text}");
        }
    }

    /// A journal restored with `cp` as root, or left by `sudo callrelay
    /// run`, read as a bare "Permission denied".
    #[test]
    fn permission_denied_on_the_file_says_to_give_it_the_directorys_owner() {
        let dir = Path::new("/srv/relay/data");
        let file = dir.join("journal.redb");
        let denied = os_error(std::io::ErrorKind::PermissionDenied);
        let text = open_failed(&file, Opening::Start, redb::Error::Io(denied)).to_string();
        assert!(
            text.contains("`chown --reference=/srv/relay/data /srv/relay/data/journal.redb`"),
            "{text}"
        );
        assert!(text.contains("sudo callrelay run"), "{text}");
        assert!(text.contains("as root is root's"), "{text}");
        assert!(!text.contains("ReadWritePaths"), "{text}");
    }

    /// A reopen after a failed write meets a filesystem that went read-only
    /// under the running relay (ext4 after a disk error), not the unit's
    /// sandbox: the start's hint (`ReadWritePaths=`, restart) sent the
    /// operator to edit the unit, where the runbook says the disk failed.
    /// A permission refused on a reopen is not a restore with `cp` either.
    #[test]
    fn a_reopen_refused_says_what_changed_under_the_running_relay() {
        let dir = Path::new("/srv/relay/data");
        let file = dir.join("journal.redb");
        let read_only = os_error(std::io::ErrorKind::ReadOnlyFilesystem);
        let text =
            open_failed(&file, Opening::AfterIoError, redb::Error::Io(read_only)).to_string();
        assert!(
            text.contains("went read-only under the running relay"),
            "{text}"
        );
        for said in ["`dmesg`", "`fsck`", "remount,rw"] {
            assert!(text.contains(said), "{said:?} in {text}");
        }
        for start_only in ["ReadWritePaths", "ProtectSystem", "systemctl edit"] {
            assert!(!text.contains(start_only), "{start_only:?} in {text}");
        }
        let denied = os_error(std::io::ErrorKind::PermissionDenied);
        let text = open_failed(&file, Opening::AfterIoError, redb::Error::Io(denied)).to_string();
        assert!(text.contains("changed while the relay ran"), "{text}");
        assert!(
            text.contains("`chown --reference=/srv/relay/data /srv/relay/data/journal.redb`"),
            "{text}"
        );
        for start_only in ["sudo callrelay run", "plain `cp`"] {
            assert!(!text.contains(start_only), "{start_only:?} in {text}");
        }
    }

    /// The directory is not the relay's user's: a chown of the file would
    /// not do, and `--reference` has no right owner to copy.
    #[test]
    fn permission_denied_on_the_directory_says_whose_it_must_be() {
        let dir = Path::new("/srv/relay/data");
        let denied = || os_error(std::io::ErrorKind::PermissionDenied);
        let in_dir = create_file_failed(&dir.join("journal.redb"), denied()).to_string();
        assert!(
            in_dir.contains("cannot create files in /srv/relay/data"),
            "{in_dir}"
        );
        assert!(
            in_dir.contains("`chown -R <user>: /srv/relay/data`"),
            "{in_dir}"
        );
        assert!(in_dir.contains("sudo callrelay run"), "{in_dir}");
        let dir_itself = create_dir_failed(dir, denied()).to_string();
        assert!(
            dir_itself.contains("`install -d -m 0700 -o <user> /srv/relay/data`"),
            "{dir_itself}"
        );
        // Other failures keep the system's words alone.
        let other = create_file_failed(
            &dir.join("journal.redb"),
            os_error(std::io::ErrorKind::StorageFull),
        );
        assert!(
            other
                .to_string()
                .ends_with(&os_error(std::io::ErrorKind::StorageFull).to_string()),
            "{other}"
        );
    }

    /// A file not closed cleanly (here a copy taken while it was open): a
    /// start's first open stops before repairing it, so that the kernel's
    /// cached pages are dropped first; a reopen after a failed write drops
    /// them and repairs at once, and finds what was committed.
    #[test]
    fn a_file_not_closed_cleanly_is_repaired_only_when_asked_to() {
        const TABLE: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.redb");
        let unclean = dir.path().join("unclean.redb");
        assert!(create_private(&path).unwrap());
        let db = open_database(&path, Opening::Start).unwrap();
        let write = db.begin_write().unwrap();
        write.open_table(TABLE).unwrap().insert(1, 42).unwrap();
        write.commit().unwrap();
        std::fs::copy(&path, &unclean).unwrap();
        drop(db);

        let refused = open_once(&unclean, Opening::Start, RepairNeeded::Refuse);
        assert!(
            matches!(
                refused,
                Err(JournalError::Open {
                    source: redb::Error::RepairAborted,
                    ..
                })
            ),
            "{:?}",
            refused.err()
        );
        let repaired = open_database(&unclean, Opening::AfterIoError).unwrap();
        let read = repaired.begin_read().unwrap();
        let value = read
            .open_table(TABLE)
            .unwrap()
            .get(1)
            .unwrap()
            .map(|v| v.value());
        assert_eq!(value, Some(42));
    }
}
