//! The sending half of a session: frames queued and flushed in bursts, each
//! socket write bounded by `pong_timeout`, the slow-consumer rule and the
//! relay's shutdown, and the latency of what was written.
//!
//! Guarantees: a write waits at most `pong_timeout`, plus the time the bytes
//! it carries take at 16 KiB/s (a large event to a slow link), that extra at
//! most one largest frame's time (the configured largest or the largest it
//! carries, whichever is larger), or `ping_interval` + `pong_timeout` if
//! longer; a socket that has refused live writes for 500 ms in all, in one
//! write or across many, since the client's queue was last seen within
//! `client_queue` or smaller than when the refusing began, ends the write in progress as a slow consumer once more
//! than `client_queue` matching events were committed past it (a client
//! that reads steadily but more slowly than its events come is caught so,
//! not only one whose socket stops); a write that finds its socket ready at
//! once adds nothing to that time (a session starved of CPU is behind
//! without its client being slow); the writes of one replay page together
//! end by one deadline, `pong_timeout` plus the page's bytes at 16 KiB/s
//! from its read, or as a slow consumer; shutdown ends any write at once.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures::SinkExt;
use futures::stream::SplitSink;
use prometheus::local::LocalHistogram;
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use super::super::filter::Filter;
use super::{End, MAX_BURST, Settings, SinkMetrics, journal_read};
use crate::journal::{Journal, JournaledEvent};

/// How long a socket may refuse live writes, in all, while the client is
/// over `client_queue` behind before it is closed as slow: a commit burst
/// bigger than the queue must not drop a client that is reading.
const STALL_GRACE: Duration = Duration::from_millis(500);
/// The slowest link a write is given time for, beyond `pong_timeout`: one
/// event can be a megabyte (`max_body`), and a screen on a slow link that
/// reads steadily took more than `pong_timeout` to take it, was closed as
/// stalled, resumed before that event and was closed again, for good.
const SLOWEST_LINK_BYTES_PER_SEC: f64 = 16.0 * 1024.0;
/// Journal records read per blocking call while counting a filtered client's
/// queue: headers only, so a page is a few hundred KiB at most.
const COUNT_PAGE: usize = 4096;

/// The receive times of the live events written since the last flush, for
/// `callrelay_event_latency_seconds{sink="websocket"}`: observed once they are
/// flushed, with one clock read per burst rather than one per frame (at
/// 1,000 clients every event is 1,000 frames, and the clock read was a
/// twentieth of the session's CPU).
#[derive(Default)]
pub(super) struct Handed {
    received_at_ms: [u64; MAX_BURST],
    len: usize,
}

impl Handed {
    pub(super) fn push(&mut self, received_at_ms: u64) {
        if let Some(slot) = self.received_at_ms.get_mut(self.len) {
            *slot = received_at_ms;
            self.len += 1;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Observes the burst through the session's own `latency` and flushes
    /// it into the shared histogram once: one set of its atomics per burst,
    /// not per event (each observation took four, on cache lines every
    /// session's core shares, a fortieth of the machine at 1,000 clients).
    pub(super) fn observe(&mut self, latency: &LocalHistogram) {
        if self.is_empty() {
            return;
        }
        let now_ms = crate::journal::now_ms();
        for received_at_ms in &self.received_at_ms[..self.len] {
            latency.observe(now_ms.saturating_sub(*received_at_ms) as f64 / 1000.0);
        }
        latency.flush();
        self.len = 0;
    }
}

/// The sending half with its deadlines.
pub(super) struct Writer {
    pub(super) sink: SplitSink<WebSocket, Message>,
    pub(super) guard: WriteGuard,
    pub(super) metrics: SinkMetrics,
    /// `metrics.latency`, observed a burst at a time ([`Handed::observe`]).
    pub(super) latency: LocalHistogram,
    /// The frames fed since the last flush finished: what a write may still
    /// have to put on the socket.
    pub(super) unflushed: Unflushed,
    /// The payload bytes of the largest frame fed in this session: what a
    /// client that closed with 1009 is told to take at least.
    pub(super) largest_sent: usize,
}

/// The frames a write may still have to put on the socket.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Unflushed {
    /// Their payload bytes, in all.
    pub(super) bytes: usize,
    /// The largest one's payload bytes: a frame is handed to a client only
    /// once it is whole, so a write is never given less than its time.
    pub(super) largest: usize,
}

impl Unflushed {
    fn add(&mut self, frame: usize) {
        self.bytes = self.bytes.saturating_add(frame);
        self.largest = self.largest.max(frame);
    }
}

impl Writer {
    /// Queues one frame; tungstenite may write (and wait for the socket) here
    /// too, so the same guards as [`Writer::flush`] apply.
    pub(super) async fn feed(&mut self, msg: Message, live_seq: Option<u64>) -> Result<(), End> {
        let len = frame_len(&msg);
        self.unflushed.add(len);
        self.largest_sent = self.largest_sent.max(len);
        self.guard
            .run(self.sink.feed(msg), live_seq, self.unflushed)
            .await
    }

    pub(super) async fn feed_event(
        &mut self,
        event: &JournaledEvent,
        live_seq: Option<u64>,
    ) -> Result<(), End> {
        // Zero-copy: the frame shares the journaled bytes with every other client.
        match Utf8Bytes::try_from(event.json.clone()) {
            Ok(text) => self.feed(Message::Text(text), live_seq).await,
            Err(_) => {
                // Cannot happen for serde_json output; never send a broken frame.
                tracing::error!(seq = event.seq, "journaled event is not UTF-8; not sent");
                Ok(())
            }
        }
    }

    /// Writes out a burst of live events and counts them as published.
    pub(super) async fn flush_burst(
        &mut self,
        handed: &mut Handed,
        live_seq: Option<u64>,
    ) -> Result<(), End> {
        self.flush(live_seq).await?;
        self.metrics.published.inc_by(handed.len() as u64);
        handed.observe(&self.latency);
        Ok(())
    }

    /// Writes out what is queued; see [`WriteGuard::run`].
    pub(super) async fn flush(&mut self, live_seq: Option<u64>) -> Result<(), End> {
        self.guard
            .run(self.sink.flush(), live_seq, self.unflushed)
            .await?;
        self.unflushed = Unflushed::default();
        Ok(())
    }
}

/// What bounds a socket write: the deadline, the slow-consumer rule, shutdown.
pub(super) struct WriteGuard {
    pub(super) committed: watch::Receiver<u64>,
    /// Where a filtered client's queue is counted.
    pub(super) journal: Arc<Journal>,
    pub(super) filter: Arc<Filter>,
    /// The relay's shutdown: ends a write that waits on the socket.
    pub(super) shutdown: CancellationToken,
    pub(super) settings: Settings,
    /// The socket refusing live writes while the client's queue does not
    /// shrink (`None`: no live write has had to wait since the queue was
    /// last seen within `client_queue`, or smaller than when the stall
    /// began). Kept across writes: a client reading steadily but more
    /// slowly than its events come makes each write wait a little, never
    /// `STALL_GRACE`, and its queue grew without bound (up to the live
    /// ring's 65,536 events, held in memory for it).
    pub(super) stall: Option<Stall>,
    /// While a replay page is written: when all of its writes must be done
    /// ([`page_bound`] from its read). A page holds its share of the replay
    /// budget until flushed, and each write's own bound starts over: a
    /// client taking 16 KiB just inside each held a 1 MiB page for over an
    /// hour, and 64 such clients made every other resuming one wait.
    pub(super) page_deadline: Option<Instant>,
}

impl WriteGuard {
    /// Runs one socket write within [`write_bound`] of the `pending` frames it may have
    /// to write (`WriteStalled`), and within the page's deadline while a
    /// replay page is written (`SlowConsumer`, see
    /// [`WriteGuard::page_deadline`]). With `live_seq` (the newest live event in this write), it
    /// also gives up once the socket has refused live writes for
    /// `STALL_GRACE` in all (see [`WriteGuard::stall`]) and more than
    /// `client_queue` events matching the client's filters were committed
    /// past `live_seq`: that client's queue overflowed. The relay's shutdown
    /// ends it too, so a stalled client gets its 1001 close (or is dropped)
    /// within the close grace, not after `pong_timeout`.
    pub(super) async fn run(
        &mut self,
        write: impl Future<Output = Result<(), axum::Error>>,
        live_seq: Option<u64>,
        pending: Unflushed,
    ) -> Result<(), End> {
        tokio::pin!(write);
        // Ready at once, the socket refused nothing: a session behind only
        // because its task was starved is caught up from the journal
        // instead (its ring receiver lags), not closed. Most writes only
        // queue a frame or find the socket ready, so this is tried before
        // any deadline is set up: at 1,000 clients every event is 1,000
        // writes, and the clock read, the timer and the look at the commits
        // below cost a tenth of the relay's CPU there.
        if let Poll::Ready(r) = futures::poll!(write.as_mut()) {
            // The look at the commits (a lock every session shares) only
            // when there is a stall to end.
            if let Some(seq) = live_seq
                && self.stall.is_some()
            {
                let committed = *self.committed.borrow();
                self.end_stall_within(seq, committed);
            }
            return r.map_err(|_| End::ClientGone);
        }
        let own_deadline = Instant::now() + write_bound(self.settings, pending);
        let (deadline, missed) = match self.page_deadline {
            Some(page) if page <= own_deadline => (page, End::SlowConsumer),
            _ => (own_deadline, End::WriteStalled),
        };
        let write = timeout_at(deadline, write);
        tokio::pin!(write);
        let outcome = |r: Result<Result<(), axum::Error>, _>| match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::ClientGone),
            Err(_) => Err(missed),
        };
        let Some(seq) = live_seq else {
            return tokio::select! {
                biased;
                r = &mut write => outcome(r),
                _ = self.shutdown.cancelled() => Err(End::Shutdown),
            };
        };
        let limit = self.settings.client_queue as u64;
        let committed_now = *self.committed.borrow();
        self.end_stall_within(seq, committed_now);
        let queue_now = committed_now.saturating_sub(seq);
        // A queue smaller than when the stall began is being caught up
        // (a burst larger than `client_queue` drains at the link's speed,
        // the socket refusing most writes meanwhile): the stall begins
        // again. A steady slow reader's queue only grows.
        let stall = match self.stall.take() {
            Some(stall) if queue_now >= stall.queue_at_start => stall,
            _ => Stall {
                refused: Duration::ZERO,
                queue_at_start: queue_now,
                counted_at: None,
            },
        };
        let refused_before = stall.refused;
        // A filtered client's queue is counted from the journal once per
        // `STALL_GRACE` of refused time at most: a count the write outran is
        // dropped unfinished, and one begun at every refused write past the
        // grace read the journal on and on for a client whose backlog took
        // longer to count than a write's wait.
        let first_look = stall.counted_at.map_or(STALL_GRACE, |at| at + STALL_GRACE);
        // When a count began during this write, if one did.
        let mut count_began = None;
        let waiting_since = Instant::now();
        // Whether a look at the queue during this write found it within
        // `limit` (the stall ends with the write, then).
        let mut seen_within = false;
        let (committed, journal, filter) = (&mut self.committed, &self.journal, &self.filter);
        let overflow = async {
            tokio::time::sleep(first_look.saturating_sub(refused_before)).await;
            let mut queue = Queue::after(seq);
            loop {
                let now = *committed.borrow_and_update();
                // Only past `limit` commits is it worth counting what matches.
                if Queue::may_overflow(seq, now, limit) {
                    if filter.is_empty() {
                        return End::SlowConsumer;
                    }
                    count_began.get_or_insert(refused_before + waiting_since.elapsed());
                    match queue.count(journal, filter, now, limit).await {
                        Ok(true) => return End::SlowConsumer,
                        Ok(false) => seen_within = true,
                        Err(end) => return end,
                    }
                } else {
                    seen_within = true;
                }
                if committed.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        };
        let result = tokio::select! {
            biased;
            r = &mut write => outcome(r),
            _ = self.shutdown.cancelled() => Err(End::Shutdown),
            end = overflow => Err(end),
        };
        self.stall = (!seen_within).then(|| Stall {
            refused: refused_before + waiting_since.elapsed(),
            queue_at_start: stall.queue_at_start,
            counted_at: count_began.or(stall.counted_at),
        });
        result
    }

    /// Ends the stall once the raw count of commits past `seq` (up to
    /// `committed`), an upper bound of the client's queue, is within
    /// `client_queue`: nothing needs counting then.
    fn end_stall_within(&mut self, seq: u64, committed: u64) {
        if !Queue::may_overflow(seq, committed, self.settings.client_queue as u64) {
            self.stall = None;
        }
    }
}

/// The payload bytes of a frame.
fn frame_len(msg: &Message) -> usize {
    match msg {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
        Message::Close(_) => 0,
    }
}

/// How long a write of the `pending` frames may take: `pong_timeout`, plus
/// their bytes' time on the slowest link a screen is given time for, that
/// extra at most the largest of `largest_frame`'s time there, the largest
/// pending frame's, and `ping_interval` + `pong_timeout`: every event,
/// however its JSON grew past `largest_frame`, gets through a slow link,
/// while a replay page or a burst of large events cannot hold a dead
/// client's slot for many minutes after its page reconnected.
fn write_bound(settings: Settings, pending: Unflushed) -> Duration {
    // `largest_frame` is the body limit and the envelope's room, and an
    // event's JSON can be several times its body (a control byte is
    // `\u00XX`): a frame past it capped at its time was cut mid-frame on
    // every resume, for good.
    let most = on_a_slow_link(settings.largest_frame.max(pending.largest))
        .max(settings.ping_interval + settings.pong_timeout);
    settings.pong_timeout + on_a_slow_link(pending.bytes).min(most)
}

/// How long all the writes of a replay page of `bytes` may take together:
/// `pong_timeout`, plus their time on the slowest link a screen is given
/// time for. Not capped as [`write_bound`] is: a page is at most a
/// megabyte and one event, and a client reading at that rate gets through
/// the largest; a dead one is still cut by each write's own bound.
pub(super) fn page_bound(settings: Settings, bytes: usize) -> Duration {
    settings.pong_timeout + on_a_slow_link(bytes)
}

/// The time `bytes` take on the slowest link a screen is given time for.
fn on_a_slow_link(bytes: usize) -> Duration {
    Duration::from_secs_f64(bytes as f64 / SLOWEST_LINK_BYTES_PER_SEC)
}

/// Live writes the socket refused while the client's queue stayed over
/// `client_queue` and did not shrink.
#[derive(Debug)]
pub(super) struct Stall {
    /// The time refused, in all.
    refused: Duration,
    /// The raw queue (commits past the write's newest live event) when the
    /// stall began.
    queue_at_start: u64,
    /// The refused time at which the last count of a filtered client's
    /// queue began.
    counted_at: Option<Duration>,
}

/// A filtered client's queue during one stalled write: the events committed
/// after the write's newest live event that match its filters, counted from
/// the journal as commits arrive, each event read once.
pub(super) struct Queue {
    /// The last seq counted.
    through: u64,
    matching: u64,
}

impl Queue {
    pub(super) fn after(seq: u64) -> Queue {
        Queue {
            through: seq,
            matching: 0,
        }
    }

    /// Whether the events committed after `seq` up to `now` are more than
    /// `limit`: an upper bound of any client's queue, and an unfiltered
    /// client's queue itself. Exactly `limit` queued is not an overflow
    /// (the contract closes a client whose queue *overflows* `client_queue`).
    pub(super) fn may_overflow(seq: u64, now: u64, limit: u64) -> bool {
        now.saturating_sub(seq) > limit
    }

    /// Counts up to `now`, a page per blocking call; whether the queue is over `limit`.
    pub(super) async fn count(
        &mut self,
        journal: &Arc<Journal>,
        filter: &Arc<Filter>,
        now: u64,
        limit: u64,
    ) -> Result<bool, End> {
        while self.through < now && self.matching <= limit {
            let (journal, filter, after) = (journal.clone(), filter.clone(), self.through);
            let (matching, through) =
                journal_read("websocket: counting a client's queue", move || {
                    journal.count_after(after, now, COUNT_PAGE, |h| filter.matches_ref(h))
                })
                .await?;
            self.matching += matching;
            self.through = through;
        }
        Ok(self.matching > limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests_support::{event, options};
    use crate::sinks::websocket::filter::ClientQuery;

    /// The default settings, with the largest frame a 1 MiB `max_body`
    /// gives (the event and its envelope).
    fn defaults_with_a_1_mib_max_body() -> Settings {
        Settings {
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            client_queue: 1024,
            largest_frame: (1 << 20) + (64 << 10),
        }
    }

    /// A write of a large event is given its time on a slow link, beyond
    /// `pong_timeout`: a 1 MiB frame to a screen reading at 100 KB/s took
    /// about 10 s, was cut as stalled at `pong_timeout`, and the page resumed
    /// before it and was cut again, for good. A small write keeps the bound.
    #[test]
    fn a_write_is_given_pong_timeout_and_its_bytes_time_on_a_slow_link() {
        let settings = defaults_with_a_1_mib_max_body();
        let pong = settings.pong_timeout;
        assert_eq!(write_bound(settings, one_frame(0)), pong);
        assert!(write_bound(settings, one_frame(2_000)) < pong + Duration::from_millis(150));
        assert_eq!(
            write_bound(settings, one_frame(256 << 10)),
            pong + Duration::from_secs(16)
        );
        // One largest event gets its whole time on the slow link...
        assert_eq!(
            write_bound(settings, one_frame(1 << 20)),
            pong + Duration::from_secs(64)
        );
        // ...and no write more: a burst of them to a dead client holds its
        // slot 78 s, not many minutes.
        assert_eq!(
            write_bound(
                settings,
                Unflushed {
                    bytes: 16 << 20,
                    largest: 1 << 20,
                }
            ),
            pong + Duration::from_secs(68)
        );
    }

    /// A write of one frame.
    fn one_frame(bytes: usize) -> Unflushed {
        Unflushed {
            bytes,
            largest: bytes,
        }
    }

    /// An event's frame can be several times its body, past `largest_frame`
    /// (a control byte in a form body is 6 bytes of JSON, a windows-125x
    /// body up to 3 in UTF-8): a write of one is given at least its own
    /// time on a slow link, alone or in a burst. Capped at `largest_frame`'s
    /// time, a 6 MiB frame got 78 s, a screen below ~80 KiB/s was cut as
    /// stalled in its middle, resumed before it and was cut again until
    /// retention removed the event. A burst's other frames still add
    /// nothing past the cap.
    #[test]
    fn a_frame_larger_than_largest_frame_gets_its_own_time_on_a_slow_link() {
        let settings = defaults_with_a_1_mib_max_body();
        let pong = settings.pong_timeout;
        let six_mib_on_a_slow_link = Duration::from_secs(384);
        assert_eq!(
            write_bound(settings, one_frame(6 << 20)),
            pong + six_mib_on_a_slow_link
        );
        assert_eq!(
            write_bound(
                settings,
                Unflushed {
                    bytes: 16 << 20,
                    largest: 6 << 20,
                }
            ),
            pong + six_mib_on_a_slow_link
        );
    }

    /// A guard for an unfiltered client with `client_queue = 10`, and the
    /// sender of its commits.
    fn guard_for_a_queue_of_ten(dir: &std::path::Path) -> (WriteGuard, watch::Sender<u64>) {
        let (commits, committed) = watch::channel(0);
        let guard = WriteGuard {
            committed,
            journal: Arc::new(Journal::open(options(dir)).unwrap()),
            filter: Arc::new(ClientQuery::parse(None).filter),
            shutdown: CancellationToken::new(),
            settings: Settings {
                ping_interval: Duration::from_secs(25),
                pong_timeout: Duration::from_secs(10),
                client_queue: 10,
                largest_frame: 1 << 20,
            },
            stall: None,
            page_deadline: None,
        };
        (guard, commits)
    }

    /// A burst larger than `client_queue` drains at the link's speed, the
    /// socket refusing most writes and the queue shrinking all along: not a
    /// slow consumer. The first form of the rule above added the refused
    /// time up regardless, and closed a screen on an ordinary link within
    /// 500 ms of a burst of 2,000 events it was taking (review of that fix).
    /// A write refused for the whole grace still ends it.
    #[tokio::test(start_paused = true)]
    async fn a_burst_being_taken_is_not_a_slow_consumer() {
        let dir = tempfile::tempdir().unwrap();
        let (mut guard, commits) = guard_for_a_queue_of_ten(dir.path());
        commits.send_replace(2_000);
        for seq in (100..=1_000).step_by(100) {
            let taken = guard
                .run(refused_for(200), Some(seq), Unflushed::default())
                .await;
            assert_eq!(taken, Ok(()), "at {seq}");
        }
        let stuck = guard
            .run(refused_for(800), Some(1_100), Unflushed::default())
            .await;
        assert_eq!(stuck, Err(End::SlowConsumer));
    }

    /// A write the socket takes only after `ms`.
    async fn refused_for(ms: u64) -> Result<(), axum::Error> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }

    /// The time a socket refuses live writes adds up across writes while
    /// the queue stays over `client_queue`: a client reading steadily but
    /// too slowly made each write wait less than `STALL_GRACE` and was
    /// never closed (review of the fan-out). A write the socket takes at
    /// once adds nothing, however far behind (a session starved of CPU),
    /// and a queue seen back within the limit starts the count over.
    #[tokio::test(start_paused = true)]
    async fn refused_time_adds_up_across_live_writes_while_the_queue_is_over() {
        let dir = tempfile::tempdir().unwrap();
        let (mut guard, commits) = guard_for_a_queue_of_ten(dir.path());
        commits.send_replace(1_000);
        for seq in 1..=5 {
            let taken = guard
                .run(std::future::ready(Ok(())), Some(seq), Unflushed::default())
                .await;
            assert_eq!(taken, Ok(()));
        }
        assert!(guard.stall.is_none(), "a ready socket refused nothing");

        assert_eq!(
            guard
                .run(refused_for(200), Some(10), Unflushed::default())
                .await,
            Ok(())
        );
        assert_eq!(
            guard
                .run(refused_for(200), Some(20), Unflushed::default())
                .await,
            Ok(())
        );
        // Caught up: the queue is within the limit at the next live write.
        let caught_up = guard
            .run(std::future::ready(Ok(())), Some(995), Unflushed::default())
            .await;
        assert_eq!(caught_up, Ok(()));
        assert!(guard.stall.is_none());

        // Events come faster than it reads: its queue grows.
        commits.send_replace(2_000);
        assert_eq!(
            guard
                .run(refused_for(200), Some(1_010), Unflushed::default())
                .await,
            Ok(())
        );
        commits.send_replace(2_100);
        assert_eq!(
            guard
                .run(refused_for(200), Some(1_020), Unflushed::default())
                .await,
            Ok(())
        );
        commits.send_replace(2_200);
        let started = Instant::now();
        let third = guard
            .run(refused_for(200), Some(1_030), Unflushed::default())
            .await;
        assert_eq!(third, Err(End::SlowConsumer));
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(100),
            "500 ms in all"
        );
    }

    /// One write refused for `STALL_GRACE` with the queue over ends as
    /// before, and one with the queue within the limit does not (and ends
    /// the stall).
    #[tokio::test(start_paused = true)]
    async fn one_write_refused_for_the_grace_with_the_queue_over_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut guard, commits) = guard_for_a_queue_of_ten(dir.path());
        commits.send_replace(15);
        assert_eq!(
            guard
                .run(refused_for(800), Some(10), Unflushed::default())
                .await,
            Ok(())
        );
        assert!(guard.stall.is_none(), "seen within the limit");
        commits.send_replace(100);
        let started = Instant::now();
        let stuck = guard
            .run(refused_for(800), Some(20), Unflushed::default())
            .await;
        assert_eq!(stuck, Err(End::SlowConsumer));
        assert_eq!(started.elapsed(), STALL_GRACE);
    }

    /// The writes of a replay page share one deadline: each within its own
    /// bound (`pong_timeout`, 10 s here), two of 600 ms miss a page's 1 s,
    /// and the second ends as a slow consumer. Before (review of the
    /// fan-out), each write's bound started over, and a client reading a
    /// trickle held its page, and the replay budget, for over an hour.
    #[tokio::test(start_paused = true)]
    async fn a_replay_pages_writes_share_one_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let (mut guard, _commits) = guard_for_a_queue_of_ten(dir.path());
        let started = Instant::now();
        guard.page_deadline = Some(started + Duration::from_secs(1));
        assert_eq!(
            guard
                .run(refused_for(600), None, Unflushed::default())
                .await,
            Ok(())
        );
        let second = guard
            .run(refused_for(600), None, Unflushed::default())
            .await;
        assert_eq!(second, Err(End::SlowConsumer));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // A write's own bound, when it ends first, is still a stalled write.
        guard.page_deadline = Some(Instant::now() + Duration::from_secs(60));
        let stalled = guard
            .run(refused_for(20_000), None, Unflushed::default())
            .await;
        assert_eq!(stalled, Err(End::WriteStalled));
    }

    /// A page is given its bytes' whole time at 16 KiB/s beyond
    /// `pong_timeout`, uncapped: a full page and a 1 MiB event after it.
    #[test]
    fn a_page_is_given_pong_timeout_and_its_bytes_time_on_a_slow_link() {
        let settings = defaults_with_a_1_mib_max_body();
        assert_eq!(page_bound(settings, 0), settings.pong_timeout);
        assert_eq!(page_bound(settings, 1 << 20), Duration::from_secs(74));
        assert_eq!(page_bound(settings, 2 << 20), Duration::from_secs(138));
    }

    /// An unfiltered stalled client is closed as slow only once more than
    /// `client_queue` events were committed past its write, not at exactly
    /// that many (the slow-consumer check's `>` as `>=` passed every test).
    #[test]
    fn a_queue_overflows_only_past_its_limit() {
        assert!(!Queue::may_overflow(10, 10, 0));
        assert!(Queue::may_overflow(10, 11, 0));
        assert!(!Queue::may_overflow(10, 10 + 256, 256));
        assert!(Queue::may_overflow(10, 11 + 256, 256));
        // A `now` behind `seq` (not expected) is no overflow, not a wrapped count.
        assert!(!Queue::may_overflow(10, 3, 0));
    }

    #[test]
    fn a_burst_keeps_up_to_max_burst_receive_times_and_observes_each_once() {
        let latency =
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("l", "l")).unwrap();
        let local = latency.local();
        let mut handed = Handed::default();
        assert!(handed.is_empty());
        let two_seconds_ago = crate::journal::now_ms() - 2_000;
        for _ in 0..3 {
            handed.push(two_seconds_ago);
        }
        assert_eq!(handed.len(), 3);
        assert!(!handed.is_empty());
        for _ in 0..MAX_BURST {
            handed.push(two_seconds_ago);
        }
        assert_eq!(handed.len(), MAX_BURST, "a full burst takes no more");
        handed.observe(&local);
        assert!(handed.is_empty(), "observed once, then cleared");
        assert_eq!(latency.get_sample_count(), MAX_BURST as u64);
        let mean = latency.get_sample_sum() / MAX_BURST as f64;
        assert!((2.0..3.0).contains(&mean), "seconds, not ms: {mean}");
        handed.observe(&local);
        assert_eq!(latency.get_sample_count(), MAX_BURST as u64);
    }

    /// A filtered client's queue counts only the events its filter takes,
    /// and only past `limit` is it over.
    #[tokio::test]
    async fn a_filtered_queue_counts_matching_events_after_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(options(dir.path())).unwrap());
        // Seqs 1..=10 hold subjects e0..e9.
        let batch: Vec<_> = (0..10).map(|i| event(&format!("e{i}"))).collect();
        journal.append_batch(&batch).unwrap();
        // e2, e5 and e8 are seqs 3, 6 and 9; the write's newest event is seq 3.
        let filter = Arc::new(ClientQuery::parse(Some("subject=e2,e5,e8")).filter);
        let over = |limit| {
            let (journal, filter) = (journal.clone(), filter.clone());
            async move {
                let mut queue = Queue::after(3);
                let over = queue.count(&journal, &filter, 10, limit).await;
                (over.ok(), queue.matching, queue.through)
            }
        };
        assert_eq!(over(1).await, (Some(true), 2, 10));
        assert_eq!(
            over(2).await,
            (Some(false), 2, 10),
            "at the limit is not over"
        );
        let mut counted = Queue::after(3);
        assert_eq!(
            counted.count(&journal, &filter, 6, 5).await.ok(),
            Some(false)
        );
        assert_eq!((counted.matching, counted.through), (1, 6));
        assert_eq!(
            counted.count(&journal, &filter, 10, 5).await.ok(),
            Some(false)
        );
        assert_eq!(
            (counted.matching, counted.through),
            (2, 10),
            "each event is counted once"
        );
    }
}
