//! Ingest: the one writer of the journal. Takes events from a bounded channel,
//! commits them in batches, then acknowledges each with `{id, seq, duplicate}`.
//!
//! Guarantees:
//! - an acknowledgement is sent only after the batch holding its event has
//!   committed (fsync'd); a failed commit fails every acknowledgement of that
//!   batch, and its events are journaled all or none: a commit whose last
//!   sync failed may have landed, and then the reopen finds it, its events go
//!   to the sinks ([`writer`]'s `publish_landed`) and a sender's retry is
//!   answered as a duplicate;
//! - batching is group commit: while one commit runs, arriving events queue and
//!   form the next batch (at most `max_batch`), so a lone event never waits for
//!   others and a burst costs one fsync per batch; the events of one
//!   `submit_all` are never split between commits;
//! - the channel is bounded: sources wait for room (`submit`), webhooks are
//!   told at once that it is full (`try_submit`, a 503);
//! - after a commit, sinks are woken (`Hub`) with the new last seq and the new
//!   events, in seq order;
//! - while commits fail, the store is asked to recover at most once a second
//!   (the journal opens its file again), so a disk that was full takes events
//!   again as soon as it has room, without a restart.
//!
//! Here: the submitting side (`IngestHandle`) and the thread's start and
//! stop; `writer` is the thread's loop, `hub` how sinks are woken,
//! `commit_health` whether commits succeed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::busy_clock::{BusyClock, Started};
use crate::event::{EventId, IncomingEvent, PreparedEvent};
use crate::journal::{AppendOutcome, Journal, JournalError, JournaledEvent};
use crate::metrics::Metrics;
use crate::sources::webhook::budget::Reservation;

mod commit_health;
mod hub;
mod writer;
pub use commit_health::CommitHealth;
pub use hub::{Hub, LiveReceiver, RouteKey, SHARED_RING};
use writer::run;

/// What a submitter learns once its event is durable (or was a duplicate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub id: EventId,
    pub seq: u64,
    pub duplicate: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("the journal queue is full")]
    Full,
    #[error("callrelay is shutting down")]
    ShuttingDown,
    #[error("the journal could not commit: {0}")]
    Commit(String),
}

/// Where batches are committed: the journal, or a stand-in in tests.
pub trait BatchStore: Send + Sync + 'static {
    /// Appended events' headers move into the outcomes.
    fn append_batch(
        &self,
        events: &mut [PreparedEvent],
    ) -> Result<Vec<AppendOutcome>, JournalError>;

    /// After a failed commit (at once, then backing off while commits keep
    /// failing: see `commit_health`): whatever lets a later commit succeed
    /// once the cause is gone.
    fn recover(&self) -> Result<(), JournalError> {
        Ok(())
    }

    /// Up to `limit` journaled events after seq `after`, in seq order: how
    /// the writer finds a commit that was reported failed but landed.
    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<JournaledEvent>, JournalError>;

    /// The newest seq the store holds (a cheap read: checked after every commit).
    fn last_seq(&self) -> u64;
}

impl BatchStore for Journal {
    fn append_batch(
        &self,
        events: &mut [PreparedEvent],
    ) -> Result<Vec<AppendOutcome>, JournalError> {
        Journal::append_prepared(self, events)
    }

    /// redb refuses every write after an I/O error (a full disk) until it is
    /// opened again: freeing space is not enough without this.
    fn recover(&self) -> Result<(), JournalError> {
        self.reopen()
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<JournaledEvent>, JournalError> {
        Journal::read_after(self, after, limit)
    }

    fn last_seq(&self) -> u64 {
        Journal::last_seq(self)
    }
}

struct Submission {
    event: PreparedEvent,
    reply: Reply,
}

/// Where a submission's answer goes, with what its submitter held for it
/// (a webhook body's share of the body budget). What is held is given back
/// once the event is journaled or refused, not when the submitter goes
/// away: a sender that hung up while its event waited in the queue gave the
/// budget back at once, and the next request took it again, so the queue
/// could hold 16,384 bodies while the budget read empty.
struct Reply {
    to: oneshot::Sender<Result<Ack, IngestError>>,
    held: Option<Reservation>,
}

impl Reply {
    fn new(to: oneshot::Sender<Result<Ack, IngestError>>, held: Option<Reservation>) -> Reply {
        Reply { to, held }
    }

    /// Gives back what was held, then answers: an answered sender holds
    /// nothing (given back after the answer, the sender's next request
    /// could find the budget still taken).
    fn send(self, answer: Result<Ack, IngestError>) {
        let Reply { to, held } = self;
        drop(held);
        let _ = to.send(answer);
    }
}

#[allow(clippy::large_enum_variant)] // one message per event; boxing would allocate twice
enum Message {
    Event(Submission),
    /// Events that go into one commit together: all journaled, or none.
    Group(Vec<Submission>),
    /// Another write to the journal (a retention pass) failed on I/O: redb
    /// refuses every write after one until the file is opened again.
    Reopen,
    Shutdown,
}

/// The sending side, cloned into every source and the webhook routes.
#[derive(Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Message>,
    closing: Arc<AtomicBool>,
    /// Whether commits succeed, and why not.
    health: Arc<CommitHealth>,
    /// The writer's commit and reopen in progress: lets the systemd
    /// watchdog see a writer wedged in a commit, and tell a reopen that is
    /// still working from a journal that refuses commits.
    clocks: Arc<WriterClocks>,
}

/// What the writer thread is doing, readable from any thread.
pub(crate) struct WriterClocks {
    /// The commit in progress.
    commit: BusyClock,
    /// The journal reopen in progress (after a failed commit).
    reopen: BusyClock,
    /// Milliseconds reopens took since the last good commit, the running
    /// one not counted.
    reopen_spent_ms: AtomicU64,
    /// Bumped at each good commit (and wherever else `reopen_spent_ms`
    /// restarts from zero), after the reset: the watchdog learns from it
    /// that the total restarted, which a total read between two of its
    /// looks cannot tell it.
    good_commits: AtomicU64,
}

impl WriterClocks {
    fn new() -> WriterClocks {
        let epoch = Instant::now();
        WriterClocks {
            commit: BusyClock::idle(epoch),
            reopen: BusyClock::idle(epoch),
            reopen_spent_ms: AtomicU64::new(0),
            good_commits: AtomicU64::new(0),
        }
    }

    fn reopen_ended(&self, started: Started) {
        let took = self.reopen.running_for().unwrap_or_default();
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.reopen_spent_ms.fetch_add(ms, Ordering::AcqRel);
        self.reopen.stop(started);
    }

    /// A good commit: the reopens before it are over and done with.
    fn committed(&self) {
        if self.reopen_spent_ms.load(Ordering::Acquire) != 0 {
            self.reopen_spent_ms.store(0, Ordering::Release);
        }
        self.good_commits.fetch_add(1, Ordering::AcqRel);
    }

    /// How many good commits there were: read before [`Self::reopen_spent`],
    /// a count that moved means that total restarted since.
    fn good_commits(&self) -> u64 {
        self.good_commits.load(Ordering::Acquire)
    }

    /// The time reopens took since the last good commit, the running one
    /// included.
    fn reopen_spent(&self) -> Duration {
        Duration::from_millis(self.reopen_spent_ms.load(Ordering::Acquire))
            + self.reopen.running_for().unwrap_or_default()
    }
}

/// A group in the journal's queue: it is committed (or refused) as a whole
/// whether or not its answer is awaited.
pub struct QueuedGroup {
    replies: Vec<oneshot::Receiver<Result<Ack, IngestError>>>,
}

impl QueuedGroup {
    /// Every event's answer, once the group's commit has ended.
    pub async fn answered(self) -> Result<Vec<Ack>, IngestError> {
        let mut acks = Vec::with_capacity(self.replies.len());
        for rx in self.replies {
            acks.push(rx.await.unwrap_or(Err(IngestError::ShuttingDown))?);
        }
        Ok(acks)
    }
}

impl IngestHandle {
    /// Submits and waits for room, then for the commit.
    pub async fn submit(&self, event: IncomingEvent) -> Result<Ack, IngestError> {
        self.submit_waiting(event, None).await
    }

    /// As [`IngestHandle::submit`], but gives up waiting for room at
    /// `give_up` (`Full`). Once queued, the event is committed whatever the
    /// caller does, so its answer is awaited.
    pub async fn submit_unless(
        &self,
        event: IncomingEvent,
        give_up: &CancellationToken,
    ) -> Result<Ack, IngestError> {
        self.submit_waiting(event, Some(give_up)).await
    }

    async fn submit_waiting(
        &self,
        event: IncomingEvent,
        give_up: Option<&CancellationToken>,
    ) -> Result<Ack, IngestError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(IngestError::ShuttingDown);
        }
        // Hashing and serializing here, on the submitter's task, keeps them
        // off the one writer thread.
        let event = PreparedEvent::new(&event);
        let permit = self.room(give_up).await?;
        let (reply, rx) = oneshot::channel();
        let reply = Reply::new(reply, None);
        permit.send(Message::Event(Submission { event, reply }));
        rx.await.unwrap_or(Err(IngestError::ShuttingDown))
    }

    /// Submits `events` to be journaled in one commit, in order, and waits for
    /// room, then for the commit: all of them are journaled (or found
    /// duplicates), or none. One commit for a burst instead of one per event,
    /// and a failure retried as a whole keeps their order.
    pub async fn submit_all(&self, events: &[IncomingEvent]) -> Result<Vec<Ack>, IngestError> {
        self.queue_all(events, None).await?.answered().await
    }

    /// As [`IngestHandle::submit_all`], but gives up waiting for room at
    /// `give_up` (`Full`: nothing was queued) and returns once the group is
    /// queued: from then on it is committed whatever the caller does, and
    /// the caller may stop waiting for its answer ([`QueuedGroup::answered`])
    /// when a stop's drain runs out, rather than be aborted still waiting
    /// with what it read behind the group uncounted.
    pub async fn queue_all_unless(
        &self,
        events: &[IncomingEvent],
        give_up: &CancellationToken,
    ) -> Result<QueuedGroup, IngestError> {
        self.queue_all(events, Some(give_up)).await
    }

    async fn queue_all(
        &self,
        events: &[IncomingEvent],
        give_up: Option<&CancellationToken>,
    ) -> Result<QueuedGroup, IngestError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(IngestError::ShuttingDown);
        }
        let (group, replies): (Vec<Submission>, Vec<_>) = events
            .iter()
            .map(|event| {
                let (reply, rx) = oneshot::channel();
                let event = PreparedEvent::new(event);
                let reply = Reply::new(reply, None);
                (Submission { event, reply }, rx)
            })
            .unzip();
        let permit = self.room(give_up).await?;
        permit.send(Message::Group(group));
        Ok(QueuedGroup { replies })
    }

    /// Room in the queue for one message; `Full` if `give_up` fires first.
    async fn room(
        &self,
        give_up: Option<&CancellationToken>,
    ) -> Result<mpsc::Permit<'_, Message>, IngestError> {
        let room = self.tx.reserve();
        match give_up {
            None => room.await,
            // Room already there is taken, given up or not: which of the
            // two a wait ends in does not depend on a draw.
            Some(give_up) => tokio::select! {
                biased;
                permit = room => permit,
                () = give_up.cancelled() => return Err(IngestError::Full),
            },
        }
        .map_err(|_| IngestError::ShuttingDown)
    }

    /// Submits without waiting for room: `Full` when the queue is full.
    /// The returned receiver completes after the commit.
    pub fn try_submit(
        &self,
        event: IncomingEvent,
    ) -> Result<oneshot::Receiver<Result<Ack, IngestError>>, IngestError> {
        self.try_submit_prepared(PreparedEvent::new(&event), None)
    }

    /// [`IngestHandle::try_submit`] of an event the caller has prepared (to
    /// look at its size first), holding `held` until the event is journaled
    /// or refused.
    pub fn try_submit_prepared(
        &self,
        event: PreparedEvent,
        held: Option<Reservation>,
    ) -> Result<oneshot::Receiver<Result<Ack, IngestError>>, IngestError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(IngestError::ShuttingDown);
        }
        let (reply, rx) = oneshot::channel();
        let reply = Reply::new(reply, held);
        self.tx
            .try_send(Message::Event(Submission { event, reply }))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => IngestError::Full,
                mpsc::error::TrySendError::Closed(_) => IngestError::ShuttingDown,
            })?;
        Ok(rx)
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Asks the writer to open the journal again: a write outside it (a
    /// retention pass) failed on I/O, and redb refuses every later write
    /// until then. Only the writer's own failed commit did that, so on a
    /// quiet relay the journal stayed refusing until an event's commit
    /// failed (a 503) and the reopen that followed. Not waited for; with
    /// the queue full, events are flowing and their commit finds it.
    pub fn reopen_after_a_failed_write(&self) {
        let _ = self.tx.try_send(Message::Reopen);
    }

    /// Whether the last commit succeeded and new events are accepted.
    pub fn is_writable(&self) -> bool {
        self.health.is_writable() && !self.is_closing() && self.is_alive()
    }

    /// Why commits fail (the first error since the last good commit); `None`
    /// while they succeed.
    pub fn commit_failure(&self) -> Option<String> {
        self.health.cause()
    }

    /// Whether commits fail because the journal's disk is full (or its
    /// file at the filesystem's largest size): the watchdog does not count that
    /// time, a restart frees no space.
    pub fn is_journal_full(&self) -> bool {
        self.health.is_full()
    }

    /// Whether the writer thread still takes events (false once it has
    /// stopped, after shutdown or because it died).
    pub fn is_alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Completes once the writer thread has stopped taking events: after
    /// [`Ingest::shutdown`], or because it died (a panic).
    pub async fn stopped(&self) {
        self.tx.closed().await;
    }

    /// Ends the writer thread without the relay's shutdown, as a panic in it
    /// would (its queue closes; what it held is refused): for tests of what
    /// the rest of the relay does then.
    #[doc(hidden)]
    pub async fn end_writer_unannounced(&self) {
        let _ = self.tx.send(Message::Shutdown).await;
        self.stopped().await;
    }

    /// How long the commit in progress has been running; `None` while idle.
    pub fn commit_running_for(&self) -> Option<Duration> {
        self.clocks.commit.running_for()
    }

    /// How long the journal reopen in progress has been running; `None`
    /// when none is.
    pub fn reopen_running_for(&self) -> Option<Duration> {
        self.clocks.reopen.running_for()
    }

    /// The time reopens of the journal took since the last good commit, the
    /// one in progress included: time in which commits were not refused
    /// but waited for the journal to be read again.
    pub fn reopen_spent(&self) -> Duration {
        self.clocks.reopen_spent()
    }

    /// How many good commits the writer made (a reopen asked for from
    /// outside while the journal was writable counts as one, whether it
    /// leaves the journal writable or begins a refusal): each restarts
    /// [`IngestHandle::reopen_spent`]'s total from zero. Read it first: once
    /// it moved, the total read after it is the new one.
    pub fn good_commits(&self) -> u64 {
        self.clocks.good_commits()
    }
}

/// The running ingest thread.
pub struct Ingest {
    handle: IngestHandle,
    thread: Option<thread::JoinHandle<()>>,
}

/// Tuning of the ingest loop.
#[derive(Clone, Copy, Debug)]
pub struct IngestOptions {
    /// Events queued before `try_submit` says `Full`.
    pub queue: usize,
    /// Events per commit at most.
    pub max_batch: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            queue: 16_384,
            max_batch: 2_048,
        }
    }
}

impl Ingest {
    /// Starts the ingest thread over `store`; fails only when the system
    /// refuses a thread (without it every event would be refused).
    pub fn start(
        store: Arc<dyn BatchStore>,
        hub: Hub,
        metrics: Arc<Metrics>,
        options: IngestOptions,
    ) -> std::io::Result<Ingest> {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let handle = IngestHandle {
            tx,
            closing: Arc::new(AtomicBool::new(false)),
            health: Arc::new(CommitHealth::default()),
            clocks: Arc::new(WriterClocks::new()),
        };
        let health = handle.health.clone();
        let clocks = handle.clocks.clone();
        let thread = thread::Builder::new()
            .name("callrelay-ingest".into())
            .spawn(move || {
                run(
                    rx,
                    store,
                    hub,
                    metrics,
                    &health,
                    &clocks,
                    options.max_batch.max(1),
                )
            })?;
        Ok(Ingest {
            handle,
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> IngestHandle {
        self.handle.clone()
    }

    /// Refuses new events, commits and acknowledges everything queued, and stops.
    pub async fn shutdown(mut self) {
        self.handle.closing.store(true, Ordering::Release);
        let _ = self.handle.tx.send(Message::Shutdown).await;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

#[cfg(test)]
mod tests;
