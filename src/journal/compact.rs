//! `callrelay compact`: gives the disk space the journal no longer uses
//! back to the filesystem, with the relay stopped.
//!
//! Why: redb grows its file and never shrinks it on its own. After a Kafka
//! outage filled the journal to `max_size`, retention frees the pages once
//! Kafka catches up, but the file keeps its size, and the freed pages keep
//! old callers' data until they are used again. Compaction moves the pages
//! still in use to the front of the file and cuts off the rest.
//!
//! Guarantees:
//! - the journal is opened through [`Journal::open`], so whatever a start
//!   refuses (a newer format, a damaged dedup index, a file it cannot
//!   read) is refused here, with the start's words; a file the last run
//!   did not close cleanly is checked first, as at a start;
//! - nothing is created: with no journal at the path (nothing there, a
//!   path through a regular file, an empty file, a first start that
//!   never wrote, or a blank one, a first start that failed as it set the
//!   file up) it says so and stops; a path it cannot look at (not run
//!   as the service's user) is said as such, before any open;
//! - a journal open in another process (a running relay) is refused at
//!   once, without waiting, with what to do: stop the relay first; also
//!   while that relay reopens the journal after a failed write, when redb's
//!   lock on the file is let go for a moment: the journal's own lock on its
//!   directory (`dir_lock`), which the relay holds across its reopens, is
//!   taken by the open here and held until the close (a relay on this
//!   host: on NFS, CIFS, FUSE or 9p one on another host is not kept out by it,
//!   which the open says);
//! - nothing changes that a start would not change: compaction (redb
//!   4.6's `Database::compact`) relocates pages, it changes no key and no
//!   value, so every event, seq, cursor, cursor state, dedup entry,
//!   counter and SPRecord resume id reads back the same; the open may, as
//!   at any start, write the format marker, migrate a legacy dedup index
//!   or fix the file's mode;
//! - a kill or power loss during compaction loses nothing: in redb 4.6,
//!   `compact` is a sequence of ordinary write transactions (each moves
//!   the highest pages in use to free pages lower in the file, rewrites
//!   their parents and commits durably; then a two-phase commit frees the
//!   old pages and truncates the file's free end). Each commit is atomic,
//!   and redb reuses a freed page only once the commit that freed it is
//!   durable, so the file always holds one committed state, and every one
//!   of them holds the same rows. The file stays marked as open meanwhile,
//!   as while the relay runs: the next open after a kill (the relay's
//!   start, or this command again) checks the whole file first, as after
//!   any crash (redb's own note in `compact`: an interrupted compaction
//!   needs that full repair until its issue #829 is fixed). Tested by
//!   killing a compaction at random moments (`tests.rs`);
//! - it works inside the file (pages move to free ones lower down), so it
//!   needs no room for a second copy of it;
//! - the close's own writes (allocator state, final trim, the clean
//!   shutdown mark) are checked: if they fail, it says the journal was
//!   compacted but not closed cleanly (the next open checks the whole
//!   file), exit 1, not success;
//! - memory: what a start takes (the dedup index is loaded by the open).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use redb::{CompactionError, Database, StorageError};

use super::dir_lock::DirLock;
use super::{Journal, JournalError, JournalOptions, file_in};

/// Calls of redb's `compact` at most. redb 4.6 repeats its pass until it
/// moves nothing more, so a second call normally moves nothing and returns
/// `false` (it still makes durable commits: fast, not free);
/// it is called again all the same because earlier versions could stop
/// before the minimum (redb issue #934: users called it until it returned
/// false). Bounded, so a version that kept answering `true` cannot loop
/// for ever.
const MAX_COMPACT_CALLS: usize = 8;

/// What a compaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compacted {
    /// The journal file.
    pub path: PathBuf,
    /// Its size before and after, in bytes.
    pub before: u64,
    pub after: u64,
    /// From the open to the close, the check of a file not closed cleanly included.
    pub took: Duration,
}

/// The line `callrelay compact` prints.
impl fmt::Display for Compacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "compacted {}: {} -> {} in {:.1} s",
            self.path.display(),
            Size(self.before),
            Size(self.after),
            self.took.as_secs_f64()
        )?;
        if self.after >= self.before {
            write!(f, " (nothing was freed: no unused space to give back)")?;
        }
        Ok(())
    }
}

/// Why the journal was not compacted.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(
        "there is no journal at {path}: nothing to compact (check `journal.path` in the config; compact creates no journal)"
    )]
    NoJournal { path: PathBuf },
    #[error(
        "the journal file {path} is empty (a first start that never wrote to it): nothing to compact"
    )]
    Empty { path: PathBuf },
    #[error(
        "the journal file {path} holds no journal, only zero bytes past an unfinished header (a first start that failed while setting it up): nothing to compact; the next start takes it as a new journal"
    )]
    Blank { path: PathBuf },
    #[error(
        "the journal {path} is open in a running relay (or another callrelay process, or its directory is locked by another program: `lsof` on the directory names it): stop the relay first (`systemctl stop callrelay`), then run `callrelay compact` again"
    )]
    InUse { path: PathBuf },
    /// What a start would say: the same error, the same words.
    #[error(transparent)]
    Open(JournalError),
    #[error("cannot read the size of the journal file {path}: {source}")]
    Size {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `then` is [`CHECKED_NEXT`] when the file was not closed cleanly
    /// (an I/O error, which redb latches: it writes nothing more), empty
    /// when it was (a savepoint or a transaction in the way: nothing was
    /// written by that call).
    #[error(
        "cannot compact the journal {path}: {source}; what compaction committed before the failure is kept, with every event and cursor{then}"
    )]
    Compact {
        path: PathBuf,
        source: CompactionError,
        then: &'static str,
    },
    /// The compaction's commits are durable; the close's own writes
    /// (allocator state, final trim, the clean-shutdown mark) failed.
    #[error(
        "the journal {path} was compacted, but its close failed: {source}; every event and cursor is kept, and unless the close had marked the file clean before failing, the next start (or compact) checks the whole file first, as after a crash (minutes on a large file)"
    )]
    NotClosed {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    /// The first look at the path failed other than by there being nothing.
    #[error("cannot look at the journal file {path}: {source}{hint}")]
    CannotLook {
        path: PathBuf,
        source: std::io::Error,
        /// Whom to run it as, when the look was not permitted.
        hint: &'static str,
    },
    /// redb panicked: it does on some damaged pages rather than return an error.
    #[error(
        "the journal file {path} is damaged: its storage library failed while {during} (the `panicked` line logged before says where); restore the file from a backup or move it aside (events in it that a sink has not delivered would then be lost)"
    )]
    Damaged { path: PathBuf, during: &'static str },
    /// Not expected: nothing but this module has the database right after the open.
    #[error("cannot compact the journal {path}: something in this process still holds it open")]
    StillHeld { path: PathBuf },
}

/// Said of a compaction error after which the file was not closed cleanly.
const CHECKED_NEXT: &str = ", and the next open checks the whole file first, as after a crash";

/// Compacts the journal in `options.dir`, which no process may have open.
pub fn compact(options: JournalOptions) -> Result<Compacted, CompactError> {
    let path = file_in(&options.dir);
    let size = |path: &Path| {
        std::fs::metadata(path)
            .map(|meta| meta.len())
            .map_err(|source| CompactError::Size {
                path: path.to_owned(),
                source,
            })
    };
    let before = match std::fs::metadata(&path) {
        Ok(meta) if meta.len() == 0 => return Err(CompactError::Empty { path }),
        // The open would start a journal in it, as a start does.
        Ok(_) if super::open::is_blank_at(&path) => return Err(CompactError::Blank { path }),
        Ok(meta) => meta.len(),
        // Checked before the open, which would create the directories and
        // the file (a start does): any failure here stops. A file deleted
        // between the two is not guarded against: nothing runs on the
        // journal meanwhile, the relay being stopped.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(CompactError::NoJournal { path });
        }
        Err(source) => {
            let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
                "; run compact as the service's user (docs/operations.md, Compacting the journal)"
            } else {
                ""
            };
            return Err(CompactError::CannotLook { path, source, hint });
        }
    };
    let started = Instant::now();
    // The close's writes (allocator state, final trim, the clean-shutdown
    // mark) may fail: then it is not a success.
    let close = |db: Database| {
        unless_damaged(&path, "closing it", || {
            db.close().map_err(|source| CompactError::NotClosed {
                path: path.clone(),
                source,
            })
        })
    };
    // The lock until the function returns, after the close: redb's lock
    // alone would keep out no relay of this build taking the journal's.
    let (mut db, _dir_lock) = unless_damaged(&path, "opening it", || open_alone(options))?;
    let compacted = unless_damaged(&path, "compacting it", || Ok(compact_fully(&mut db)));
    match compacted {
        Ok(Ok(())) => {}
        Ok(Err(source)) => {
            // Closed for its answer: whether the file was left as closed
            // cleanly (redb writes nothing more after an I/O error).
            let closed = close(db);
            let io = matches!(
                source,
                CompactionError::Storage(StorageError::Io(_) | StorageError::PreviousIo)
            );
            let then = if io || closed.is_err() {
                CHECKED_NEXT
            } else {
                ""
            };
            return Err(CompactError::Compact { path, source, then });
        }
        Err(e) => {
            // Not closed: redb's close after its own panic may panic again.
            // The file stays marked as not closed cleanly, which has the
            // next open check it, and the lock goes with the process.
            std::mem::forget(db);
            return Err(e);
        }
    }
    // The size only after the close, which trims the file.
    close(db)?;
    let took = started.elapsed();
    let after = size(&path)?;
    Ok(Compacted {
        path,
        before,
        after,
        took,
    })
}

/// Calls redb's `compact` until it moves nothing more (at most
/// [`MAX_COMPACT_CALLS`] times).
fn compact_fully(db: &mut Database) -> Result<(), CompactionError> {
    for _ in 0..MAX_COMPACT_CALLS {
        if !db.compact()? {
            break;
        }
    }
    Ok(())
}

/// The journal opened as a start opens it, then its database alone:
/// compaction needs it exclusively (`&mut`), which the relay never has;
/// with the journal's lock, to be held until the database is closed.
fn open_alone(options: JournalOptions) -> Result<(Database, Option<DirLock>), CompactError> {
    let journal = Journal::open(options).map_err(|e| match e {
        JournalError::InUse { path } => CompactError::InUse { path },
        other => CompactError::Open(other),
    })?;
    let path = journal.path.clone();
    let dir_lock = journal
        .dir_lock
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let db = journal
        .db
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    db.and_then(|db| Arc::try_unwrap(db).ok())
        .map(|db| (db, dir_lock))
        .ok_or(CompactError::StillHeld { path })
}

/// Runs `work`, in which redb may panic on a damaged page (as reads do:
/// [`Journal::read_unless_damaged`]): the panic becomes
/// [`CompactError::Damaged`], an exit 1 with a message, not a crash. The
/// panic hook has logged where it was.
fn unless_damaged<T>(
    path: &Path,
    during: &'static str,
    work: impl FnOnce() -> Result<T, CompactError>,
) -> Result<T, CompactError> {
    super::damaged_on_panic(work, || CompactError::Damaged {
        path: path.to_owned(),
        during,
    })
}

/// A file size as people read it: `10.2 GiB`, `1.5 KiB`, `900 B`
/// (bytesize's binary units, as the config's sizes are read).
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bytesize::ByteSize(self.0).display().iec().fmt(f)
    }
}

#[cfg(test)]
mod tests;
