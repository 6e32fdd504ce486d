//! The journal: the durable log every event passes through, its dedup index,
//! and the sinks' cursors, in one redb file.
//!
//! Guarantees:
//! - `append_batch` writes a whole batch in one transaction and returns only
//!   after redb's fsync'd commit, so an acknowledged event survives SIGKILL and
//!   power loss;
//! - `seq` is strictly increasing and never reused, also across restarts (the
//!   next seq is stored in the same transaction as the events);
//! - the dedup index is written in the same transaction as the log, so the two
//!   never disagree and the index survives restarts;
//! - retention removes only events that every active sink has passed, unless
//!   `max_size` forces it, and then it says so (the returned report is logged
//!   and counted by the caller).
//!
//! Here: opening, reopening and the figures; the rest is split by concern:
//! `append` (a batch into the log and the dedup log), `open` (the redb
//! file, its cache, its repair), `dir_lock` (the journal kept to this
//! process across its reopens), `record` (an event's stored
//! bytes), `read`, `cursors`, `retention`, `dedup`, `held_drop` and
//! `unsaid_loss` (what `max_size` dropped), `stop_losses` (what the last
//! shutdown gave up), `clock`, `resume_ids` (SPRecord's `Last-Event-ID`s),
//! `presence` (the file deleted or replaced under the relay),
//! `memory_backed` (a journal on tmpfs) and `compact` (`callrelay
//! compact`, giving freed space back to the filesystem).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::busy_clock::{BusyClock, Started};
use crate::event::{EventHeader, EventId};
use crate::log_throttle::LogThrottle;

mod append;
mod clock;
mod compact;
pub use clock::boot_ms;
pub use compact::{CompactError, Compacted, compact};
pub use memory_backed::memory_file_system;
mod cursors;
mod dedup;
mod dir_lock;
mod held_drop;
mod memory_backed;
mod off_the_workers;
pub use off_the_workers::{OffTheWorkersError, off_the_workers};
mod open;
pub use open::AccessHint;
pub(crate) use open::Opening;
#[cfg(test)]
pub(crate) use open::{create_file_failed, open_failed};
mod presence;
mod read;
use read::UNREADABLE_LOG_INTERVAL;
pub use read::{MatchingPage, PageEntry};
mod record;
mod resume_ids;
use resume_ids::SSE_RESUME;
pub use resume_ids::SavedResumeId;
pub use retention::EXPIRY_GRACE;
mod retention;
mod stop_losses;
mod unsaid_loss;
use clock::JournalClock;
use dedup::{DEDUP_LOG, DedupIndex};
use dir_lock::DirLock;
use open::{
    REOPEN_WAIT, create_dir_failed, create_private, discard_if_blank, missing_dirs, open_database,
    sync_dir,
};
use presence::FilePresence;
use record::record_time;

/// seq → [journaled_at_ms: u64 LE][received_at_ms: u64 LE][header length: u32 LE]
/// [header: the routing attributes, length-prefixed strings][CloudEvent JSON].
/// The header spares every reader a JSON parse per event (it was the Kafka
/// forwarder's largest cost).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// sink name → last delivered seq.
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
/// sink name → what the sink keeps beside its cursor (opaque to the journal;
/// the Kafka sink's delivered offsets), written in the cursor's transaction.
const CURSOR_STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("cursor_states");
/// counters: "next_seq", "bytes", "undelivered_unsaid" (see
/// [`unsaid_loss`]); and "format", the [`JOURNAL_FORMAT`] that wrote the file.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Per sink, the runs of events `max_size` dropped while the sink held them
/// in memory: (sink, first seq) → last seq (see [`held_drop`]).
const HELD_DROPS: TableDefinition<(&str, u64), u64> = TableDefinition::new("held_drops");

/// The journal's on-disk format. Raise it when a change would make an
/// older build misread the file; a build refuses a journal of a newer
/// format instead of guessing (an upgrade audit: a build from before the
/// seq-keyed dedup table opened a newer journal without a word, with an
/// empty dedup index, and journaled 320 vendor retries a second time).
/// A journal of an older format is marked this one at open, before this
/// build writes to it, so the refusal holds for journals that already exist.
/// Journals from before the marker are format 1, which this build reads,
/// except those of the first evening's builds (5fb7e1c..a3c3d0f, 2026-11-23
/// 18:27-19:38 UTC, never shipped), whose records carry no header: their
/// events read as damaged and are skipped.
pub const JOURNAL_FORMAT: u64 = 1;
const FORMAT_KEY: &str = "format";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create the journal directory {path}: {source}{hint}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
        hint: Box<AccessHint>,
    },
    #[error("cannot open or create the journal {path}: {source}{hint}")]
    CreateFile {
        path: PathBuf,
        source: std::io::Error,
        hint: Box<AccessHint>,
    },
    #[error(
        "the journal {path} is already open in another callrelay process (or its directory is locked by another program: `lsof` on the directory names it)"
    )]
    InUse { path: PathBuf },
    /// Something other than a regular file at the journal's path: a link is
    /// not followed, since the file is made owner-only and written (a link
    /// planted there would hand both to whatever it points to).
    #[error(
        "the journal file {path} is {kind}, not a regular file: the relay opens only a file of its own there, never through a link (it holds callers' numbers and is made owner-only): move it aside, or point `journal.path` at the directory the journal is in"
    )]
    NotAFile { path: PathBuf, kind: &'static str },
    /// A file with no journal header that is not the blank a first start
    /// that failed leaves (that is taken as an empty journal): another
    /// file, or a journal whose contents were lost (a file of zeros longer
    /// than any blank), which started anew would send seqs already sent.
    #[error(
        "the journal file {path} is not a callrelay journal (its storage library finds no header: {detail}): `journal.path` names a directory with another file of that name, or the journal's contents were lost (a file of zero bytes longer than a failed first start leaves: storage damage, a restore that preallocated the file): stop the relay, restore the journal from a backup or move the file aside, and start again"
    )]
    NotAJournal { path: PathBuf, detail: String },
    /// A reopen that this relay's own readers held up past [`REOPEN_WAIT`].
    #[error(
        "readers in this relay still held the journal {waited:?} after it was closed to be opened again (a long read: a retention pass, a Kafka batch or a WebSocket replay page, slow on a failing disk); the reopen is tried again"
    )]
    HeldByReaders { waited: Duration },
    #[error("cannot open the journal {path}: {source}{hint}")]
    Open {
        path: PathBuf,
        source: redb::Error,
        hint: Box<AccessHint>,
    },
    /// A file redb finds damaged as it opens it: most often at the repair
    /// after an unclean stop, which checks every page's checksum where plain
    /// reads check none, so damage the relay read past while it ran
    /// (records skipped as unreadable) stops the next start. A restart
    /// meets it again.
    #[error(
        "the journal file {path} is damaged: its storage library could not open it ({detail}); the relay cannot use it: stop the relay, then restore the file from a backup or move it aside to start an empty journal (events in it that a sink has not delivered would then be lost)"
    )]
    DamagedAtOpen { path: PathBuf, detail: String },
    #[error("journal storage error: {0}")]
    Storage(#[from] redb::Error),
    #[error(
        "the journal {path} was written by a newer callrelay (journal format {found}; this build reads format {supported} and older): run that version or a newer one, or move the journal aside to start with an empty one (events in it that a sink has not delivered would then be lost)"
    )]
    NewerFormat {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("journal record {seq} is corrupt")]
    Corrupt { seq: u64 },
    /// An entry of the dedup index that cannot be read: without it the
    /// journal cannot tell a retry from a new event, so it is not used.
    #[error(
        "the journal file {path} is damaged: its dedup index entry for seq {seq} cannot be read, so the relay cannot tell a vendor's retry from a new event; stop the relay, then restore the file from a backup or move it aside to start an empty journal (events in it that a sink has not delivered would then be lost)"
    )]
    DedupDamaged { path: PathBuf, seq: u64 },
    #[error("the journal is closed (the relay is stopping, or reopening it after an I/O error)")]
    Closed,
    #[error(
        "the journal file {path} is damaged: its storage library failed reading {what} (the `panicked` line logged before says where); the relay cannot read past it: stop the relay, then restore the file from a backup or move it aside to start an empty journal (events in it that a sink has not delivered would then be lost)"
    )]
    Damaged { path: PathBuf, what: &'static str },
    #[error(
        "the journal file {path} was deleted, moved or replaced while the relay ran: new events are refused, since they would be lost at the next stop; {held}"
    )]
    FileGone { path: PathBuf, held: String },
}

impl JournalError {
    /// Refused for an earlier I/O error: redb 4.6 latches the first access
    /// of the file that fails, a write's or a read's (a bad sector under old
    /// pages), and from then on refuses every write, and every read of a
    /// page it has not cached, until the file is opened again. The failed
    /// access itself is the plain I/O error, not this. So a read's I/O error
    /// also makes the writer's next commit fail (a 503) and the journal be
    /// reopened; a sector that stays unreadable under pages the journal
    /// holds fails the reopen too (its repair reads every page), and the
    /// journal stays closed, webhooks answered 503; a restart's repair
    /// meets the same sector.
    pub fn needs_a_reopen(&self) -> bool {
        matches!(self, JournalError::Storage(redb::Error::PreviousIo))
    }

    /// A `Corrupt` entry met in the dedup index, said as such with the file.
    fn in_dedup_index(self, path: &Path) -> JournalError {
        match self {
            JournalError::Corrupt { seq } => JournalError::DedupDamaged {
                path: path.to_owned(),
                seq,
            },
            other => other,
        }
    }
}

fn storage<E: Into<redb::Error>>(e: E) -> JournalError {
    JournalError::Storage(e.into())
}

/// A counter of the `meta` table, `default` when it was never written.
fn meta_count(
    meta: &impl ReadableTable<&'static str, u64>,
    key: &str,
    default: u64,
) -> Result<u64, JournalError> {
    Ok(meta
        .get(key)
        .map_err(storage)?
        .map_or(default, |v| v.value()))
}

/// Settings the journal needs from the config.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    pub dir: PathBuf,
    pub dedup_window: Duration,
    pub retention: Duration,
    pub max_size: u64,
}

/// How a change of a journal counter failed.
#[derive(Debug, thiserror::Error)]
pub enum NoteFailed {
    /// Before its commit: nothing was written, so it may be tried again.
    #[error(transparent)]
    NotWritten(JournalError),
    /// At its commit, which may have landed (a sync that failed after the
    /// data reached the disk).
    #[error(transparent)]
    MayHaveLanded(JournalError),
}

impl NoteFailed {
    pub fn into_error(self) -> JournalError {
        match self {
            NoteFailed::NotWritten(e) | NoteFailed::MayHaveLanded(e) => e,
        }
    }
}

/// An event as stored: its seq, times, routing attributes and CloudEvent bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct JournaledEvent {
    pub seq: u64,
    pub journaled_at_ms: u64,
    pub received_at_ms: u64,
    pub header: EventHeader,
    /// The CloudEvent JSON, exactly as every sink sends it.
    pub json: Bytes,
}

/// What happened to one event of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum AppendOutcome {
    Appended(JournaledEvent),
    /// Journaled before, within the dedup window: the first event's id and seq.
    Duplicate {
        id: EventId,
        seq: u64,
    },
}

/// A sink retention must respect: its cursor's `name`, and how far it has
/// read events into memory (`held_up_to`; 0, or its cursor, when it holds
/// none). An event after its cursor up to `held_up_to` that `max_size`
/// drops is on its way to the sink all the same (delivered from memory), so
/// it is not lost unless the sink lets go of its memory first.
///
/// `held_up_to` is the sink's own counter, not a copy: a pass reads it in
/// each of its transactions, since a sink may let go of its memory (and
/// count what was dropped from it) while a long pass runs, and a drop
/// recorded as held after that count would never be counted.
#[derive(Clone, Debug)]
pub struct ActiveSink<'a> {
    pub name: &'a str,
    pub held_up_to: Arc<AtomicU64>,
}

/// What a retention pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Old events every active sink had delivered.
    pub expired: u64,
    /// Events removed for `max_size` before every active sink had them.
    pub dropped_undelivered: u64,
    /// Events removed for `max_size` that were already delivered.
    pub dropped_delivered: u64,
    /// Events removed for `max_size` while every sink that had not
    /// delivered them held them in memory: recorded, not yet lost.
    pub dropped_held: u64,
    /// Not a count of this pass: every event `max_size` removed that a
    /// sink still holds only in memory, at the pass's last chunk (a
    /// restart now would lose them).
    pub held_in_memory: u64,
}

impl RetentionReport {
    /// Adds a chunk's counts to the pass's; what sinks hold is the chunk's,
    /// the pass's last.
    pub(crate) fn add_chunk(&mut self, chunk: &RetentionReport) {
        self.expired += chunk.expired;
        self.dropped_undelivered += chunk.dropped_undelivered;
        self.dropped_delivered += chunk.dropped_delivered;
        self.dropped_held += chunk.dropped_held;
        self.held_in_memory = chunk.held_in_memory;
    }
}

/// The durable log. Cheap reads from any thread; appends are serialized by redb.
pub struct Journal {
    /// `None` only while [`Journal::reopen`] is between closing and opening.
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    options: JournalOptions,
    /// The journal's own lock ([`dir_lock`]), held from the open to the
    /// close, so that the file stays this process's across a reopen, when
    /// redb's lock goes with the old database. `None` once closed.
    dir_lock: Mutex<Option<DirLock>>,
    first_seq: AtomicU64,
    last_seq: AtomicU64,
    bytes: AtomicU64,
    /// Ids journaled within the dedup window; only the writer and retention take it.
    dedup: Mutex<DedupIndex>,
    /// The index's size when last read: what `/status` shows while the
    /// writer or retention holds the index.
    dedup_entries_seen: AtomicUsize,
    /// What `journaled_at_ms`, the dedup window and retention are measured on.
    clock: JournalClock,
    /// Whether the open file is still the one at `path`.
    presence: FilePresence,
    /// Whether this open created the file (no journal was at the path).
    created: bool,
    /// Lines about records that cannot be read: every read passing one
    /// meets it again.
    unreadable_log: Mutex<LogThrottle<()>>,
    /// Retention passes leave the dedup log alone ([`Journal::hold_dedup_expiry`]).
    dedup_expiry_held: AtomicBool,
    /// The write in progress (redb's one write transaction, or the close),
    /// whoever makes it: a stop waits on each in turn, and tells systemd
    /// while one runs (`app::stop_extension`).
    writing: BusyClock,
    /// Test-only: cursor writes committed with durability asked of redb,
    /// so a test sees what the journal was asked, not only what the
    /// forwarder meant to ask.
    #[cfg(test)]
    durable_cursor_writes: AtomicU64,
    /// Test-only: cursor writes fail as on a full disk, while reads go on,
    /// so a test meets a refused write with the file still in place.
    #[cfg(test)]
    cursor_writes_refused: AtomicBool,
    /// Test-only: run by the next write just before it asks redb for the
    /// transaction, where it waits while another write holds it.
    #[cfg(test)]
    before_next_write: OnceHook,
    /// Test-only: run by the next reopen once it has let go of the old
    /// database, before it opens the file again.
    #[cfg(test)]
    in_reopen_gap: OnceHook,
}

/// Test-only: what a test leaves for the journal to run once, at a point
/// of the journal's work the test could not otherwise wait for.
#[cfg(test)]
#[derive(Default)]
struct OnceHook(Mutex<Option<Box<dyn FnOnce() + Send>>>);

#[cfg(test)]
impl OnceHook {
    fn set(&self, run: impl FnOnce() + Send + 'static) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(run));
    }

    /// Runs what was set, if anything, once; the lock is let go first.
    fn run(&self) {
        let run = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(run) = run {
            run();
        }
    }
}

/// The journal's write in progress, on its clock until dropped. The drop
/// may come after the next writer's start (redb wakes it inside `commit()`),
/// which it then leaves running ([`BusyClock::stop`]).
struct Writing<'a> {
    clock: &'a BusyClock,
    started: Option<Started>,
}

impl<'a> Writing<'a> {
    fn begun(clock: &'a BusyClock) -> Writing<'a> {
        Writing {
            clock,
            started: Some(clock.start()),
        }
    }
}

impl Writing<'_> {
    /// Times the write from now on, what ran before it being no part of
    /// the slow sync the clock's readers bound (a retention chunk's reads).
    fn restart(&mut self) {
        self.started = Some(self.clock.start());
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Some(started) = self.started.take() {
            self.clock.stop(started);
        }
    }
}

/// What a state write holds until its transaction has ended: the database
/// (not to be closed under it) and its [`Writing`].
struct StateWriteHeld<'a> {
    db: Arc<Database>,
    _writing: Writing<'a>,
}

impl StateWriteHeld<'_> {
    /// The database the write is on, for a read beside it.
    fn db(&self) -> &Database {
        &self.db
    }
}

/// Wall-clock milliseconds since the Unix epoch: the unit of
/// [`JournaledEvent::received_at_ms`] (0 if the clock is set before 1970).
/// `journaled_at_ms` is on the journal's own clock ([`clock`]), which a step
/// of this one does not move.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The journal's file in `dir`, absolute in every message, `/status` and
/// the log: a relative `journal.path` named a file relative to a working
/// directory the operator cannot see (signals audit, 2026-12-02).
fn file_in(dir: &Path) -> PathBuf {
    let dir = std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_owned());
    dir.join("journal.redb")
}

impl Journal {
    /// Opens (or creates) the journal in `options.dir`.
    pub fn open(options: JournalOptions) -> Result<Journal, JournalError> {
        // Owner only, whatever the umask: the journal holds callers' phone
        // numbers, and a relay started from a shell (umask 022) made them
        // world-readable. A directory that exists is left as it is.
        let made = missing_dirs(&options.dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&options.dir)
            .map_err(|source| create_dir_failed(&options.dir, source))?;
        let path = file_in(&options.dir);
        // Before the file is created or opened: a second opener is refused
        // before it can touch it.
        let mut dir_lock = DirLock::take(&options.dir, &path)?;
        let created = create_private(&path)?;
        let db = match open_database(&path, Opening::Start) {
            Ok(db) => db,
            // Left behind, the file redb could not set up was found at every
            // later start, not new, and refused. Another relay's is kept.
            Err(error) => {
                if created && !matches!(error, JournalError::InUse { .. }) {
                    discard_if_blank(&path);
                }
                return Err(error);
            }
        };
        // The format first, in a read: a newer build may have changed a
        // table's types, and opening that table with this build's types
        // fails as a storage error that does not say to upgrade. META's
        // types (`&str` to `u64`) never change, for this reason.
        {
            let read = db.begin_read().map_err(storage)?;
            let found = match read.open_table(META) {
                Ok(meta) => meta.get(FORMAT_KEY).map_err(storage)?.map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(storage(e)),
            };
            if let Some(found) = found.filter(|found| *found > JOURNAL_FORMAT) {
                return Err(JournalError::NewerFormat {
                    path,
                    found,
                    supported: JOURNAL_FORMAT,
                });
            }
        }
        let txn = db.begin_write().map_err(storage)?;
        {
            txn.open_table(EVENTS).map_err(storage)?;
            txn.open_table(DEDUP_LOG).map_err(storage)?;
            txn.open_table(CURSORS).map_err(storage)?;
            txn.open_table(CURSOR_STATES).map_err(storage)?;
            txn.open_table(HELD_DROPS).map_err(storage)?;
            txn.open_table(SSE_RESUME).map_err(storage)?;
            let mut meta = txn.open_table(META).map_err(storage)?;
            let found = meta.get(FORMAT_KEY).map_err(storage)?.map(|v| v.value());
            match found {
                Some(found) if found > JOURNAL_FORMAT => {
                    return Err(JournalError::NewerFormat {
                        path,
                        found,
                        supported: JOURNAL_FORMAT,
                    });
                }
                Some(JOURNAL_FORMAT) => {}
                // Older, or from before the marker: marked this build's in
                // the transaction before its first write, so that a build of
                // the older format refuses the file rather than misread the
                // records this one writes.
                Some(_) | None => {
                    meta.insert(FORMAT_KEY, JOURNAL_FORMAT).map_err(storage)?;
                }
            }
        }
        dedup::migrate_legacy(&txn).map_err(|e| e.in_dedup_index(&path))?;
        txn.commit().map_err(storage)?;
        // redb syncs the file, not the directory entry that names it, nor
        // those of the directories made for it: without this a power cut
        // soon after the first start could lose the whole journal,
        // acknowledged events included.
        // Best effort: a directory the service may write but not read (or a
        // parent it cannot open) must not keep the relay from starting.
        if let Err(error) = sync_dir(&options.dir, &made) {
            tracing::warn!(dir = %options.dir.display(), %error, "cannot fsync the journal directory");
        }
        let (index, newest_record_ms) = {
            let read = db.begin_read().map_err(storage)?;
            let table = read.open_table(DEDUP_LOG).map_err(storage)?;
            let events = read.open_table(EVENTS).map_err(storage)?;
            // A record too short to hold its time is reported by the reads
            // that meet it; it must not keep the journal from opening.
            let newest = match events.last().map_err(storage)? {
                Some((seq, record)) => record_time(seq.value(), record.value()).unwrap_or(0),
                None => 0,
            };
            let index = DedupIndex::load(&table).map_err(|e| e.in_dedup_index(&path))?;
            (index, newest)
        };
        // A clock set back since the last run by up to `retention` is
        // followed from what is stored; beyond that the stored time is wrong.
        let trust_ahead_ms = options.retention.as_millis().try_into().unwrap_or(u64::MAX);
        let stored_ms = std::iter::once(newest_record_ms).chain(index.times_ms());
        let clock = JournalClock::start(stored_ms, trust_ahead_ms);
        // Once open: said before, a lock refused for lack of permission
        // came ahead of the open's own, true, error.
        dir_lock.say_at_open(&options.dir);
        let journal = Journal {
            db: RwLock::new(Some(Arc::new(db))),
            path,
            options,
            dir_lock: Mutex::new(Some(dir_lock)),
            first_seq: AtomicU64::new(0),
            last_seq: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dedup_entries_seen: AtomicUsize::new(index.len()),
            dedup: Mutex::new(index),
            clock,
            presence: FilePresence::default(),
            created,
            unreadable_log: Mutex::new(LogThrottle::new(UNREADABLE_LOG_INTERVAL)),
            dedup_expiry_held: AtomicBool::new(false),
            writing: BusyClock::idle(std::time::Instant::now()),
            #[cfg(test)]
            durable_cursor_writes: AtomicU64::new(0),
            #[cfg(test)]
            cursor_writes_refused: AtomicBool::new(false),
            #[cfg(test)]
            before_next_write: OnceHook::default(),
            #[cfg(test)]
            in_reopen_gap: OnceHook::default(),
        };
        journal.presence.opened(&journal.path);
        journal.refresh_stats()?;
        Ok(journal)
    }

    /// Closes the database for good, as a stop's last step: redb marks an
    /// open file as needing recovery and clears the mark only when the last
    /// reference is dropped, and a process that exits while something still
    /// holds one (the watchdog thread, a blocking task abandoned at exit)
    /// leaves the mark, so the next start reads the whole file to repair it.
    /// Waits up to `wait` for reads in progress; every later use of the
    /// journal gets [`JournalError::Closed`]. Returns whether the file was
    /// released (also when redb's close then failed, which is logged here).
    /// The journal's own lock ([`dir_lock`]) goes either way: a reader that
    /// outlives the wait holds redb's lock on the file until it lets go.
    pub fn close(&self, wait: Duration) -> bool {
        let released = self.close_database(wait);
        // Unless a reopen opened the file again meanwhile (it took the lock
        // again), which must keep it.
        let slot = self.db.read().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            drop(self.dir_lock().take());
        }
        released
    }

    fn close_database(&self, wait: Duration) -> bool {
        let taken = self
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut db) = taken else {
            return true;
        };
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    // A write and a sync, as slow as a commit on a slow disk.
                    let _writing = Writing::begun(&self.writing);
                    // Not a drop: redb's drop discards the close's error (the
                    // allocator state's write, the clean mark), and a stop
                    // on a full or failing disk said only `stopped`, leaving
                    // the next start's long check unexplained.
                    if let Err(e) = db.close() {
                        tracing::warn!(
                            path = %self.path.display(),
                            error = %e,
                            "the journal's close failed: every committed event is kept, and the next start checks the whole file first, as after a crash (minutes on a large file)"
                        );
                    }
                    return true;
                }
                Err(shared) if std::time::Instant::now() < deadline => {
                    db = shared;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
    }

    fn db(&self) -> Result<Arc<Database>, JournalError> {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(JournalError::Closed)
    }

    /// A write transaction for state kept beside the events (a sink's
    /// cursor, the SSE resume ids), with the database it must not outlive
    /// and its [`Writing`]. Refused once the file is gone; `durable = false`
    /// rides on the next durable commit.
    fn begin_state_write(
        &self,
        durable: bool,
    ) -> Result<(StateWriteHeld<'_>, redb::WriteTransaction), JournalError> {
        self.refuse_if_file_gone()?;
        let db = self.db()?;
        let (writing, mut txn) = self.begin_write(&db).map_err(storage)?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(storage)?;
        }
        Ok((
            StateWriteHeld {
                db,
                _writing: writing,
            },
            txn,
        ))
    }

    /// redb's one write transaction on `db`, timed from when it is ours
    /// (redb makes every other writer wait for it) until the [`Writing`]
    /// drops: keep it until the transaction has committed or aborted.
    fn begin_write(
        &self,
        db: &Database,
    ) -> Result<(Writing<'_>, redb::WriteTransaction), redb::TransactionError> {
        #[cfg(test)]
        self.before_next_write.run();
        let txn = db.begin_write()?;
        Ok((Writing::begun(&self.writing), txn))
    }

    /// How long the write in progress has run (a commit, a retention chunk,
    /// a cursor or a resume id save, the close), whichever part of the
    /// relay makes it; `None` when none runs. A slow disk's sync makes it
    /// long, a hung disk longer without end. A retention chunk's commit is
    /// timed apart from the reads before it.
    pub fn write_running_for(&self) -> Option<Duration> {
        self.writing.running_for()
    }

    /// A count kept in the `meta` table (0 when never written).
    fn meta_value(&self, key: &str) -> Result<u64, JournalError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        meta_count(&meta, key, 0)
    }

    /// Test-only: holds the journal's one write transaction until `release`
    /// says so (or is dropped), as a commit that slow would; says on
    /// `holding` once it holds it.
    #[cfg(test)]
    pub(crate) fn hold_writes_until(
        &self,
        holding: tokio::sync::oneshot::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    ) {
        self.hold_writes_then(holding, release, || ());
    }

    /// Test-only: runs `before` in the next write (an append, a retention
    /// chunk, a state write) just before it asks redb for the transaction,
    /// so a test knows that write is at redb's wait while another holds it.
    #[cfg(test)]
    pub(crate) fn before_next_write(&self, before: impl FnOnce() + Send + 'static) {
        self.before_next_write.set(before);
    }

    /// Test-only: [`Journal::hold_writes_until`], running `after_end` once
    /// the transaction has ended and before the write's clock is let go,
    /// where an append updates the dedup index and builds its outcomes.
    #[cfg(test)]
    pub(crate) fn hold_writes_then(
        &self,
        holding: tokio::sync::oneshot::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
        after_end: impl FnOnce(),
    ) {
        let (held, txn) = self.begin_state_write(false).expect("a write transaction"); // ok: test-only
        let _ = holding.send(());
        let _ = release.recv();
        txn.abort().expect("aborted"); // ok: test-only
        after_end();
        drop(held);
    }

    /// Test-only: `run` is called by the next reopen once it has let go of
    /// the old database, before it opens the file again.
    #[cfg(test)]
    pub(crate) fn in_reopen_gap(&self, run: impl FnOnce() + Send + 'static) {
        self.in_reopen_gap.set(run);
    }

    /// Test-only: holds the lock a reopen holds while it reads the file
    /// again, until the guard is dropped.
    #[cfg(test)]
    pub(crate) fn hold_as_a_reopen(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, Option<Arc<Database>>> {
        self.db.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets a count kept in the `meta` table to `change` of it, durably;
    /// returns the new count.
    fn change_meta_value(
        &self,
        key: &str,
        change: impl FnOnce(u64) -> u64,
    ) -> Result<u64, JournalError> {
        self.change_meta_value_telling(key, change)
            .map_err(NoteFailed::into_error)
    }

    /// As [`Journal::change_meta_value`], saying whether a failure came
    /// before the commit (nothing written) or at it (perhaps landed).
    fn change_meta_value_telling(
        &self,
        key: &str,
        change: impl FnOnce(u64) -> u64,
    ) -> Result<u64, NoteFailed> {
        let (_held, txn) = self
            .begin_state_write(true)
            .map_err(NoteFailed::NotWritten)?;
        let new = (|| {
            let mut meta = txn.open_table(META).map_err(storage)?;
            let new = change(meta_count(&meta, key, 0)?);
            meta.insert(key, new).map_err(storage)?;
            Ok(new)
        })()
        .map_err(NoteFailed::NotWritten)?;
        txn.commit()
            .map_err(|e| NoteFailed::MayHaveLanded(storage(e)))?;
        Ok(new)
    }

    /// Closes the database and opens it again, after an I/O error (a full
    /// disk): redb refuses every write once one has failed, until it is
    /// opened again, so without this freeing space would not be enough. The
    /// dedup index and the counters are read back from the file (a commit
    /// that failed at its last sync may have landed after all). Readers wait
    /// for it; one still holding the old database after [`REOPEN_WAIT`] makes
    /// it fail, and the journal stays closed until the next attempt.
    pub fn reopen(&self) -> Result<(), JournalError> {
        // Opening the path now would create an empty journal under seqs
        // already given out. Looked at here, not only by the once-a-second
        // check: a deletion between the two would otherwise be opened
        // (verification audit: 2 races of 2 against a reopen schedule).
        self.refuse_if_found_gone()?;
        {
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            // Held across the gap below, where redb's own lock is let go,
            // so that no other opener (`callrelay compact`, a second relay)
            // can take the file there. Taken again after a close.
            {
                let mut dir_lock = self.dir_lock();
                if dir_lock.is_none() {
                    let mut taken = DirLock::take(&self.options.dir, &self.path)?;
                    taken.say_unsaid(&self.options.dir);
                    *dir_lock = Some(taken);
                }
            }
            // Our reference goes; the last reader's drop closes the file
            // (possibly on its own thread, a moment after the count reaches
            // zero), so the open is retried while it reports the file in use.
            drop(slot.take());
            #[cfg(test)]
            self.in_reopen_gap.run();
            let deadline = std::time::Instant::now() + REOPEN_WAIT;
            let db = loop {
                match open_database(&self.path, Opening::AfterIoError) {
                    // Ours: the file was open here until just now, and
                    // every other opener of this build is kept out by
                    // the journal's lock (not a build from before it, nor
                    // a process that is not callrelay, nor one on another
                    // host sharing the directory over NFS, CIFS, FUSE or 9p,
                    // where the lock is this host's only).
                    Err(JournalError::InUse { .. }) if std::time::Instant::now() >= deadline => {
                        return Err(JournalError::HeldByReaders {
                            waited: REOPEN_WAIT,
                        });
                    }
                    Err(JournalError::InUse { .. }) => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    opened => break opened?,
                }
            };
            // All or nothing, and under the slot's lock: a file whose dedup
            // table cannot be read is not used (the index from before the
            // reopen lacks what a commit reported failed may have landed,
            // and those events would be journaled again), and a retention
            // pass cannot expire entries between the read and the swap.
            // The index in use goes first: loading the new one beside it
            // held both for a moment (3.4 GB for a 24 h window at 200
            // events/s, again at every reopen while a disk stays full), an
            // OOM kill in the middle of the recovery under a `MemoryMax`
            // sized for one. Nothing reads it meanwhile: the journal is
            // closed until the swap, and a failed load leaves it closed.
            drop(std::mem::take(&mut *self.dedup_index()));
            let index = {
                let read = db.begin_read().map_err(storage)?;
                let table = read.open_table(DEDUP_LOG).map_err(storage)?;
                DedupIndex::load(&table).map_err(|e| e.in_dedup_index(&self.path))?
            };
            *self.dedup_index() = index;
            *slot = Some(Arc::new(db));
            self.presence.opened(&self.path);
        }
        self.refresh_stats()
    }

    /// Looks whether the journal's file is still at its path (the app asks
    /// every second, and a reopen before it opens). The first time it is
    /// found deleted, moved or replaced, says so in the log; from then on
    /// every append and reopen fails with [`JournalError::FileGone`].
    pub fn check_file(&self) {
        if let Some(held) = self.presence.check(&self.path) {
            let gone = JournalError::FileGone {
                path: self.path.clone(),
                held,
            };
            tracing::error!(error = %gone, "the journal's file is gone");
        }
    }

    /// The error every write gets since the file was found gone, if it was:
    /// appends, reopens, and cursors, retention and loss counts too, so that
    /// the copy of the open file the operator is told to take
    /// (`/proc/PID/fd/N`) is of a file no longer written (redb reuses pages
    /// freed two durable commits before: a copy spanning a commit could
    /// take its header from one and pages from another). An older cursor in
    /// that copy only means re-sends.
    pub fn file_gone(&self) -> Option<JournalError> {
        self.presence.gone().map(|held| JournalError::FileGone {
            path: self.path.clone(),
            held,
        })
    }

    /// Whether the file was found gone (see [`Journal::file_gone`]), without
    /// building the error.
    pub fn is_file_gone(&self) -> bool {
        self.presence.is_gone()
    }

    fn refuse_if_file_gone(&self) -> Result<(), JournalError> {
        self.file_gone().map_or(Ok(()), Err)
    }

    /// Looks at the file now ([`Journal::check_file`]), then refuses if it
    /// is gone: before a write that must not land in a file found gone
    /// meanwhile (a reopen, a retention chunk and its commit).
    fn refuse_if_found_gone(&self) -> Result<(), JournalError> {
        self.check_file();
        self.refuse_if_file_gone()
    }

    /// The journal's own lock ([`dir_lock`]); a panic elsewhere while it
    /// was held leaves it as it was (each change is one assignment).
    fn dir_lock(&self) -> std::sync::MutexGuard<'_, Option<DirLock>> {
        self.dir_lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The in-memory dedup index; a panic elsewhere while it was held leaves
    /// it consistent (every change is a single map operation), so poisoning is ignored.
    fn dedup_index(&self) -> std::sync::MutexGuard<'_, DedupIndex> {
        self.dedup
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> &JournalOptions {
        &self.options
    }

    fn refresh_stats(&self) -> Result<(), JournalError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        let first = events.first().map_err(storage)?.map(|(k, _)| k.value());
        let last = events.last().map_err(storage)?.map(|(k, _)| k.value());
        let next = meta_count(&meta, "next_seq", 1)?;
        let bytes = meta_count(&meta, "bytes", 0)?;
        // Both only grow, and the retention thread reads them here while the
        // writer may commit: a stale read must not move them back (a false
        // gap frame, a lower seq in /status).
        // The last event held counts too: a damaged `next_seq` at or below
        // it would have the next batch overwrite events (the writer hands
        // out seqs past `last_seq` whatever the count says).
        self.last_seq.fetch_max(
            next.saturating_sub(1).max(last.unwrap_or(0)),
            Ordering::AcqRel,
        );
        self.first_seq
            .fetch_max(first.unwrap_or(next), Ordering::AcqRel);
        self.bytes.store(bytes, Ordering::Release);
        Ok(())
    }

    /// The oldest seq still held; `last_seq() + 1` when the journal is empty.
    pub fn first_seq(&self) -> u64 {
        self.first_seq.load(Ordering::Acquire)
    }

    /// For a sink that has let go of what it held in memory (a restart, a
    /// recovery that rewinds to `cursor`): how many events `max_size` dropped
    /// while it held them and it did not deliver (after `cursor`). They are
    /// lost for it now; the record of them is cleared, so each is counted
    /// once, and in the same transaction they join the losses no log line
    /// has named yet ([`unsaid_undelivered`](Self::unsaid_undelivered)):
    /// the caller names them, then calls [`undelivered_said`](Self::undelivered_said).
    ///
    /// Once the file is found gone nothing is taken (0): the record stays
    /// in the file, so a copy of it put back counts them at its next start,
    /// and the sink delivers on meanwhile.
    pub fn take_held_drops(&self, sink: &str, cursor: u64) -> Result<u64, JournalError> {
        let db = self.db()?;
        if self.is_file_gone() {
            return Ok(0);
        }
        // Asked in the write transaction, not in a read before it: a
        // retention chunk records held drops in its own, having read the
        // sink's hold before the sink let go, and a look between the two
        // saw no record; the sink then stepped over those events uncounted.
        // The write lock orders the two: the chunk's record is taken here,
        // or the chunk reads the hold as it is after the let-go.
        let (_writing, txn) = match self.begin_write(&db) {
            Ok(begun) => begun,
            // Writes refused until a reopen (an earlier I/O error, a
            // write's or a read's):
            // no retention chunk can commit a record meanwhile either, so
            // the committed state is the answer when it holds none. An
            // error here held the sink's every recovery for the length of
            // a disk-full incident.
            Err(e) => {
                let e = storage(e);
                if e.needs_a_reopen() && held_drop::none_recorded(&db, sink)? {
                    return Ok(0);
                }
                return Err(e);
            }
        };
        let lost = {
            let mut table = txn.open_table(HELD_DROPS).map_err(storage)?;
            if !held_drop::any_recorded(&table, sink)? {
                // Nothing written: no commit, no fsync.
                drop(table);
                txn.abort().map_err(storage)?;
                return Ok(0);
            }
            let lost = held_drop::take(&mut table, sink, cursor)?;
            let mut meta = txn.open_table(META).map_err(storage)?;
            unsaid_loss::add(&mut meta, lost)?;
            lost
        };
        txn.commit().map_err(storage)?;
        Ok(lost)
    }

    /// Events `max_size` dropped before a sink had them that no log line
    /// has named yet: counted in the transaction that drops them, so a
    /// relay killed before its next line leaves the count to the next start
    /// (see [`unsaid_loss`]).
    pub fn unsaid_undelivered(&self) -> Result<u64, JournalError> {
        self.meta_value(unsaid_loss::KEY)
    }

    /// A log line named `count` of the [`unsaid_undelivered`](Self::unsaid_undelivered)
    /// events; returns how many are left unsaid.
    pub fn undelivered_said(&self, count: u64) -> Result<u64, JournalError> {
        self.undelivered_said_telling(count)
            .map_err(NoteFailed::into_error)
    }

    /// As [`Journal::undelivered_said`], saying whether a failed note may
    /// be tried again: the count is taken off, not set, so a note that
    /// failed at its commit but landed, tried again, would take it off
    /// twice and leave losses no line named out of the next start's count.
    pub fn undelivered_said_telling(&self, count: u64) -> Result<u64, NoteFailed> {
        self.change_meta_value_telling(unsaid_loss::KEY, |unsaid| unsaid.saturating_sub(count))
    }

    /// Runs `read`, in which redb may panic: redb 4.6 panics on some
    /// damaged pages (a page type byte it does not know) instead of returning
    /// an error, and checks no checksum on a plain read, so one bad byte on
    /// the disk ended the task that read there: the Kafka sink stopped while
    /// `/readyz` said ready (panic audit of 2026-12-02). The panic becomes
    /// [`JournalError::Damaged`], which the caller reports as it reports any
    /// journal error; the panic hook has logged where it was.
    fn read_unless_damaged<T>(
        &self,
        what: &'static str,
        read: impl FnOnce() -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        damaged_on_panic(read, || JournalError::Damaged {
            path: self.path.clone(),
            what,
        })
    }

    /// The database, without waiting for a [`reopen`](Self::reopen) in
    /// progress: [`JournalError::Closed`] meanwhile. For callers on a runtime
    /// worker that can do without the answer, since a reopen reads the whole
    /// file and may take minutes on a slow disk.
    fn db_unless_reopening(&self) -> Result<Arc<Database>, JournalError> {
        let slot = match self.db.try_read() {
            Ok(slot) => slot,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(JournalError::Closed),
        };
        slot.clone().ok_or(JournalError::Closed)
    }

    /// The oldest seq held after `after`, if any: where a reader past
    /// `after` would start, `max_size` gaps skipped. Does not wait for a
    /// reopen ([`JournalError::Closed`] meanwhile): the Kafka sink asks on a
    /// runtime worker four times a second, for its lag figure, and waiting
    /// took that worker from webhooks and `/metrics` for the whole reopen
    /// (async-hazards audit of 2026-12-02).
    pub fn first_seq_after(&self, after: u64) -> Result<Option<u64>, JournalError> {
        let db = self.db_unless_reopening()?;
        self.read_unless_damaged("the oldest event after a seq", || {
            let txn = db.begin_read().map_err(storage)?;
            let log = txn.open_table(EVENTS).map_err(storage)?;
            let next = log
                .range(after.saturating_add(1)..)
                .map_err(storage)?
                .next()
                .transpose()
                .map_err(storage)?;
            Ok(next.map(|(seq, _)| seq.value()))
        })
    }

    /// The newest seq committed; 0 before the first event.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// Bytes of event records held (the figure `max_size` bounds).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Ids the dedup index holds in memory (those journaled within about
    /// one window; the index's memory grows with it).
    ///
    /// Never waits: the writer holds the index through a batch's inserts
    /// and retention through an expiry pass, which on a slow disk held the
    /// runtime workers that served `/status` (and every webhook behind
    /// them). While it is held, the size last read.
    pub fn dedup_entries(&self) -> usize {
        let len = match self.dedup.try_lock() {
            Ok(index) => index.len(),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner().len(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return self.dedup_entries_seen.load(Ordering::Acquire);
            }
        };
        self.dedup_entries_seen.store(len, Ordering::Release);
        len
    }

    /// Whether opening created the file: a first start, or a journal that
    /// was deleted or moved away.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Size of the journal file on disk.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

/// Runs `work`, in which redb may panic on a damaged page; a panic is
/// `damaged()`'s error instead. The panic hook says where it was, at most
/// once a minute per place (the same page is met again and again), so a
/// given panic's line may be held back.
fn damaged_on_panic<T, E>(
    work: impl FnOnce() -> Result<T, E>,
    damaged: impl FnOnce() -> E,
) -> Result<T, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::logging::while_panics_are_caught(work)
    }))
    .unwrap_or_else(|_| Err(damaged()))
}

/// Test fixtures shared with other modules' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::{
        event, kafka_holding_nothing, options, over_max_size, store_format,
    };

    /// Records `seqs` as dropped by `max_size` while `sink` held them, as a
    /// retention pass does.
    pub(crate) fn record_held_drops(
        journal: &super::Journal,
        sink: &str,
        seqs: std::ops::RangeInclusive<u64>,
    ) {
        let db = journal.db().unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(super::HELD_DROPS).unwrap();
            for seq in seqs {
                super::held_drop::record(&mut table, sink, seq).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    /// An empty journal database in memory, for tests of one table's code.
    pub(crate) fn in_memory_db() -> redb::Database {
        redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("an in-memory database") // ok: test fixture
    }
}
