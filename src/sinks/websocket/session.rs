//! One connected WebSocket client: resume from the journal, then live events,
//! pings, and the slow-consumer bound, until the client or the relay ends it.
//!
//! Guarantees:
//! - no gap and no duplicate at the seam between history and live: the live
//!   subscription is taken *before* the journal is read (again, after a
//!   replay far behind or a wait for the replay budget let go of it,
//!   before the next read), history is read until a page short of full
//!   shows the journal has nothing newer than what that subscription
//!   receives, and live events at or below the last seq handled are
//!   skipped;
//! - a session listens on a queue of its route key's events (past the
//!   key's first 64 such sessions, on a ring of them it shares) when its
//!   filter names one subject, else one account, one literal type or one
//!   vendor (see [`Filter::route_key`] and
//!   [`crate::ingest::Hub::subscribe_for`]: other keys' commits do not wake
//!   it; it still applies its whole filter), else on the shared ring; its
//!   heartbeats and cursor follow every commit all the same, once nothing of
//!   its own waits and past whatever its queue or ring cannot vouch for;
//! - a session reading history far behind the head holds no live event in
//!   its ring or queue meanwhile;
//! - a client whose live receiver lagged behind its ring (or whose
//!   route queue filled) is
//!   caught up from the journal (same seam rule), never silently skipped;
//!   so is one that sees the ring skip seqs (a commit reported failed had
//!   landed, and reading it back for the ring failed);
//! - whenever the journal has dropped events the client would get next (a
//!   `since` older than retention kept, or a lag past what `max_size` kept),
//!   or cannot read one (a record damaged on disk, which its reads skip),
//!   the client gets `{"control":"gap","oldest_seq":N}` before event N, once
//!   per hole, wherever the hole is in a page, whether N comes from the
//!   journal or live (a journal that retention emptied has only live
//!   events to offer: its gap is told at once, N the next seq to commit);
//! - every frame is the journaled CloudEvent bytes, shared, not re-serialized;
//! - a client's queue is the events committed but not yet written to its
//!   socket that match its filters (events it filters out never wait for it).
//!   When its socket has refused live writes for 500 ms in all (in one
//!   write or across many: a client reading steadily but too slowly is
//!   caught too) since that queue was last seen within `client_queue` or
//!   smaller than when the refusing began, and the queue is over it, or any single write outlasts its bound
//!   (`pong_timeout` plus its bytes' time at 16 KiB/s, capped: see
//!   [`writer`]), it is closed with 4008 "slow consumer". Counting a filtered client's queue
//!   reads the journal's headers, only once the raw count of commits is past
//!   `client_queue`, a page at a time; no other client
//!   waits for it: each reads its ring or queue at its own pace, and a
//!   session that falls behind it (its own task starved, not its socket)
//!   catches up from the journal instead of being dropped (a route's
//!   queue or ring holds twice `client_queue`, so a slow client's overflows
//!   that first, unless more than that many of its events come in about the
//!   500 ms the rule allows, or `client_queue` is over 32,768: they hold
//!   65,536 at most);
//! - a ping every `ping_interval`; no pong within `pong_timeout` closes it;
//!   during a replay, a ping (and a heartbeat, if asked for) every
//!   `ping_interval` too, whose pong is not awaited, and the client's frames
//!   are read between pages: its close ends the session, its pings are
//!   answered, its pong counts;
//! - a client that asked for heartbeats (`?heartbeat=1`) gets
//!   `{"control":"heartbeat","seq":N}` once its replay is done (or at once,
//!   without `since`) and beside every ping: every event with a seq up to N
//!   that matches its filters is sent before that frame, so `since=N` resumes
//!   it without a loss even when no event of its own has come yet, and page
//!   script, which never sees pings, can tell a dead connection by silence;
//! - a scoped client is sent only its scope's accounts' events, from the
//!   journal and live alike: its filter was narrowed to its scope at the
//!   upgrade (`auth::Scope::narrow`), and that one filter is all the session
//!   matches with (gap frames are not events, and are sent as to anyone);
//! - a reload after which the client's token (without tokens: its page's
//!   origin, or its coming through a proxy) is no longer accepted closes it
//!   (1008 "no longer authorized"), and one after which its token opens
//!   other accounts than before, fewer or more, closes it with 4009 "token
//!   scope changed: reconnect" (its filter was made for the old scope; a
//!   reconnect is served the new one): at once, or once a replay page or a
//!   write in progress is done (the session subscribes to reloads before its
//!   token is checked, so none is missed); no page read and no live event
//!   taken after the session could see the reload is sent before it is
//!   judged (it looks after each read and before sending each live event); a
//!   session whose token and scope are unchanged stays open;
//! - every session's replay pages together hold at most
//!   `websocket.replay_memory` (see [`replay_budget`]); a session waiting for
//!   room is pinged, hears its client's close and a revocation, and replays
//!   in its turn, skipping nothing; a page is held at most `pong_timeout`
//!   plus its bytes' time at 16 KiB/s from its read: a client that has not
//!   taken it by then is closed with 4008 "slow consumer";
//! - on relay shutdown the client gets a 1001 close at once, even when its
//!   session is waiting on a write: a stalled socket must not hold shutdown
//!   for `pong_timeout` (the relay waits for every session, see [`super::drain`]).
//!
//! This file holds the session's loop (replay, live, pings, reloads);
//! `end` says how a session ends and `writer` bounds every socket write.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use prometheus::{Histogram, IntCounter};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};

use super::auth::Scope;
use super::filter::Filter;

mod end;
pub mod replay_budget;
mod writer;

use crate::app::Context;
use crate::ingest::LiveReceiver;
use crate::journal::{JournaledEvent, PageEntry};
pub use end::End;
use end::read_error_end;
use replay_budget::{PageHold, ReplayBudget};
use writer::{Handed, Unflushed, WriteGuard, Writer};

/// Events read from the journal per blocking call while replaying.
pub const REPLAY_PAGE: usize = 512;
/// JSON read per page at most (one event more when a single event is
/// larger): a page waits in memory while a slow client takes it, and 512
/// events of 60 KB held about 14 MB per such client (security audit). What
/// all sessions hold at once is bounded by `websocket.replay_memory`
/// ([`replay_budget`]).
pub const REPLAY_PAGE_BYTES: usize = replay_budget::PAGE_BYTES;
/// Live events written before one flush: one syscall for a burst, not one per
/// event. Small, because tungstenite's write buffer keeps the capacity of the
/// biggest burst for the life of the connection (~16 × 1 KiB per client).
const MAX_BURST: usize = 16;
/// Live events handled (sent or filtered out) per wake-up, so a firehose of
/// events this client filters out cannot starve its pings and reads.
const MAX_HANDLED: usize = 1024;
/// How long a closing session waits for its client's close reply once the
/// relay shuts down (the drain waits for every session).
const SHUTDOWN_CLOSE_GRACE: Duration = Duration::from_millis(250);

/// The settings of one session, read from the config at connect.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub client_queue: usize,
    /// The largest payload any source takes, plus the envelope's room, in
    /// bytes: a write's time on a slow link is capped at this frame's time
    /// or its own largest frame's, whichever is longer (an event's JSON can
    /// be several times its body, so a frame can be larger than this).
    pub largest_frame: usize,
}

/// Shared per-sink metric handles, resolved once (not per frame).
#[derive(Clone)]
pub struct SinkMetrics {
    pub published: IntCounter,
    /// Observed only through each session's own local histogram, flushed
    /// once per burst (`Writer::latency`): observed here per event, it cost
    /// a fortieth of the machine at 1,000 clients.
    pub latency: Histogram,
}

/// What a client asked for when it connected.
pub struct Client {
    /// Its filters, narrowed to its scope.
    pub filter: Arc<Filter>,
    /// What its token opened at the upgrade, compared after every reload.
    pub scope: Scope,
    /// Replay after this seq first (`?since=`, `Last-Event-ID`).
    pub since: Option<u64>,
    /// Send heartbeat frames (`?heartbeat=1`).
    pub heartbeat: bool,
    /// The token it presented, checked again after every reload.
    pub token: Option<Vec<u8>>,
    /// Where it came from, checked again after a reload that leaves no
    /// tokens: its `Origin`, and whether a proxy forwarded it.
    pub origin: Option<Vec<u8>>,
    pub proxied: bool,
    /// Changes once per applied reload that changes who is let in
    /// (`WebSocketConfig::admits_as`); taken before the token was checked.
    pub reloads: watch::Receiver<()>,
}

/// Serves one upgraded socket until it ends. `on_end` learns why before the
/// close handshake (which may wait up to `pong_timeout` for a stalled client),
/// with the reason text of the client's close frame, cut short, if it sent one,
/// and the payload bytes of the largest frame the session sent.
pub async fn run(
    socket: WebSocket,
    ctx: Arc<Context>,
    client: Client,
    settings: Settings,
    metrics: SinkMetrics,
    budget: ReplayBudget,
    on_end: impl FnOnce(End, Option<&str>, usize),
) {
    let Client {
        filter,
        scope,
        since,
        heartbeat,
        token,
        origin,
        proxied,
        reloads,
    } = client;
    let (sink, stream) = socket.split();
    // Subscribe before anything is read from the journal: whatever commits from
    // here on is in `live`, whatever committed before is in the journal.
    let live = live_for(&ctx, &filter, settings);
    let committed = ctx.hub.committed();
    let last = ctx.journal.last_seq();
    let mut session = Session {
        out: Writer {
            sink,
            guard: WriteGuard {
                committed,
                journal: ctx.journal.clone(),
                filter: filter.clone(),
                shutdown: ctx.shutdown.clone(),
                settings,
                stall: None,
                page_deadline: None,
            },
            latency: metrics.latency.local(),
            metrics,
            unflushed: Unflushed::default(),
            largest_sent: 0,
        },
        stream,
        live: Some(live),
        filter,
        settings,
        heartbeat,
        token,
        scope,
        origin,
        proxied,
        reloads,
        // A `since` beyond the newest seq (a client of a wiped journal) is
        // treated as "from now" rather than skipping the next events.
        cursor: since.map_or(last, |s| s.min(last)),
        pong_deadline: None,
        last_ping: Instant::now(),
        budget,
        client_said: None,
    };
    let end = match session.serve(&ctx, since.is_some()).await {
        Ok(()) => End::Shutdown,
        Err(end) => end,
    };
    on_end(
        end,
        session.client_said.as_deref(),
        session.out.largest_sent,
    );
    session.close(end).await;
}

struct Session {
    out: Writer,
    stream: SplitStream<WebSocket>,
    /// `None` while the session reads history far behind the head (see
    /// [`Session::replay`]). A session with a route key (one account,
    /// subject, literal type or vendor) listens on a queue (or ring) of that
    /// key's events, and is not woken by the others' commits.
    live: Option<LiveReceiver>,
    filter: Arc<Filter>,
    settings: Settings,
    /// The client asked for heartbeat frames.
    heartbeat: bool,
    /// The token the client presented (see [`Client::token`]).
    token: Option<Vec<u8>>,
    /// See [`Client::scope`].
    scope: Scope,
    /// See [`Client::origin`] and [`Client::proxied`].
    origin: Option<Vec<u8>>,
    proxied: bool,
    /// Changes once per applied reload that changes who is let in.
    reloads: watch::Receiver<()>,
    /// The last seq handled (sent, or skipped by the filter).
    cursor: u64,
    /// When the pong for the last ping is due, while it is awaited: read in
    /// the live loop and between a replay's pages alike (a replay that
    /// consumed the pong left it set, and a healthy client was closed).
    pong_deadline: Option<Instant>,
    /// When the last ping (and heartbeat) went out, or the session began.
    last_ping: Instant,
    /// What every session's replay may hold in memory at once.
    budget: ReplayBudget,
    /// The reason text of the client's close frame, cut short: a client
    /// that could not take a frame may say why (its limit, its parser's
    /// complaint), and the operator is told.
    client_said: Option<String>,
}

impl Session {
    /// Sends the close frame for `end` (if any), waits for the client's reply
    /// — closing TCP first would reset the connection and lose frames the
    /// client has yet to read, the close frame among them — then shuts the
    /// socket. A stalled client gets `pong_timeout` to drain before it is
    /// dropped; once the relay shuts down (then or meanwhile), 250 ms at most.
    async fn close(mut self, end: End) {
        // Shutdown must not wait on slow clients, nor on one already closing
        // for its own reason when it comes.
        let shutdown_grace = SHUTDOWN_CLOSE_GRACE.min(self.settings.pong_timeout);
        let grace = if end == End::Shutdown {
            shutdown_grace
        } else {
            self.settings.pong_timeout
        };
        let shutdown = self.out.guard.shutdown.clone();
        let shutdown_bound = async {
            shutdown.cancelled().await;
            tokio::time::sleep(shutdown_grace).await;
        };
        let (sink, stream) = (&mut self.out.sink, &mut self.stream);
        let orderly = timeout(grace, async {
            if let Some(frame) = end.close_frame() {
                sink.send(Message::Close(Some(frame))).await?;
                while let Some(Ok(msg)) = stream.next().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            }
            sink.close().await
        });
        tokio::select! {
            _ = orderly => {}
            () = shutdown_bound => {}
        }
    }

    async fn serve(&mut self, ctx: &Context, resume: bool) -> Result<(), End> {
        if resume {
            self.replay(ctx).await?;
        }
        // Before any live event: a client that has seen none of its own yet
        // learns where it stands.
        self.cursor_to_the_commits(ctx).await?;
        self.send_heartbeat(false).await?;
        let start = Instant::now() + self.settings.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.settings.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One wait for the shutdown for the session's life: a new one at each
        // wake joined, and left, the list of waiters every session shares,
        // under its lock, on every burst of every client.
        let shutdown = ctx.shutdown.cancelled();
        tokio::pin!(shutdown);
        loop {
            let pong_deadline = self.pong_deadline;
            tokio::select! {
                biased;
                _ = &mut shutdown => return Err(End::Shutdown),
                // Before the client's frames: a client that floods frames
                // (always ready to read) would otherwise never be pinged
                // or have a revocation applied (review, 2026-12-06).
                // Before live events: a busy stream must not delay a revocation.
                Ok(()) = self.reloads.changed() => self.still_authorized(ctx)?,
                _ = ping.tick() => {
                    self.cursor_to_the_commits(ctx).await?;
                    self.ping(true).await?;
                }
                // Before the pong deadline: a pong already received clears it.
                msg = self.stream.next() => self.on_client_frame(msg)?,
                // Built only when polled: select! evaluates a disabled
                // branch's expression too, and a timer built at each wake
                // read the clock and the runtime's handle for nothing.
                _ = async move { sleep_until(pong_deadline.unwrap_or_else(Instant::now)).await }, if pong_deadline.is_some() => {
                    return Err(End::PongTimeout);
                }
                received = next_live(&mut self.live) => self.on_live(ctx, received).await?,
            }
        }
    }

    /// Handles one live receive and whatever else is already waiting (up to a burst).
    async fn on_live(
        &mut self,
        ctx: &Context,
        first: Result<(Arc<JournaledEvent>, u64), RecvError>,
    ) -> Result<(), End> {
        let mut next = Some(first);
        let mut handled = 0usize;
        let mut latest_live: Option<u64> = None;
        let mut handed = Handed::default();
        while let Some(received) = next.take() {
            handled += 1;
            match received {
                Ok((event, after)) => {
                    // A burst's writes can wait on a slow socket: a reload
                    // meanwhile is judged before this event, which may have
                    // committed after it, is sent. What the burst fed is
                    // flushed (before the close) and counted first.
                    if let Err(end) = self.check_reloads(ctx) {
                        self.out.flush_burst(&mut handed, latest_live).await?;
                        return Err(end);
                    }
                    if after > self.cursor {
                        // The ring skipped seqs: a commit reported failed had
                        // landed and could not be read back to be published.
                        // The journal has them (or says where retention
                        // took them): read it, as after a lag. (On a
                        // route's queue: or the session's cursor is from
                        // before it subscribed.)
                        self.out.flush_burst(&mut handed, latest_live).await?;
                        self.replay(ctx).await?;
                    } else {
                        // The seqs between were published, of other
                        // route keys (on the shared ring there are none).
                        self.cursor = self.cursor.max(event.seq.saturating_sub(1));
                    }
                    if event.seq > self.cursor {
                        // A hole before a live event (a lag past what
                        // `max_size` kept, a journal emptied while the ring
                        // held this event) is told here.
                        self.announce_gap(event.seq).await?;
                        self.cursor = event.seq;
                        if self.filter.matches(&event.header) {
                            self.out.feed_event(&event, Some(event.seq)).await?;
                            handed.push(event.received_at_ms);
                            latest_live = Some(event.seq);
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // The ring moved past us: flush what we have, catch up
                    // from the journal.
                    self.out.flush_burst(&mut handed, latest_live).await?;
                    // A route's queue that fell behind was closed: the
                    // replay subscribes again once it reaches the head.
                    if self.live.as_ref().is_some_and(LiveReceiver::is_closed) {
                        self.live = None;
                    }
                    self.replay(ctx).await?;
                }
                Err(RecvError::Closed) => return Err(End::Shutdown),
            }
            if handed.len() < MAX_BURST && handled < MAX_HANDLED {
                let waiting = match self.live.as_mut() {
                    Some(live) => live.try_recv(),
                    None => Err(TryRecvError::Empty),
                };
                next = match waiting {
                    Ok(e) => Some(Ok(e)),
                    Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                    Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                    Err(TryRecvError::Empty) => None,
                };
            }
        }
        if !handed.is_empty() {
            self.out.flush_burst(&mut handed, latest_live).await?;
        }
        // Kept near the head between pings too: a lag's or a skip's replay
        // reads from the cursor, through every other route key's events.
        self.cursor_to_the_commits(ctx).await
    }

    /// Sends every matching journaled event after `cursor` until the journal has
    /// nothing newer; every hole in the seqs read is announced as a gap.
    ///
    /// Far behind (a full page read), the session lets go of its live
    /// subscription: a receiver that is not read keeps every event committed
    /// after it in its ring (the shared one: up to 65,536), for as long as the replay
    /// lasts (one client replaying more slowly than events came in added
    /// about 100 MB, steady-state audit of 2026-12-01), and the journal has
    /// them anyway. Once a read finds nothing newer it subscribes again and
    /// reads once more, so that what committed before the subscription comes
    /// from the journal and the rest live (live events up to the cursor are
    /// skipped). A session that waits for the budget lets go of it too, and
    /// takes it again before the read that follows the wait. A page short
    /// of full, read while subscribed, ends the replay: it reached the head
    /// of its snapshot, and everything after is on the subscription.
    async fn replay(&mut self, ctx: &Context) -> Result<(), End> {
        loop {
            if ctx.shutdown.is_cancelled() {
                return Err(End::Shutdown);
            }
            self.read_waiting_frames()?;
            // A long replay of events the filter drops writes nothing: the
            // client hears a heartbeat (its cursor moves on, so a reconnect
            // does not start the replay over) and a ping, as when live. Its
            // pong is not awaited: it may wait behind megabytes of replay at
            // a slow client's pace (the live loop holds to `pong_timeout`).
            // Due from the last ping, not from the replay's start: a
            // replay begun 20 s after a heartbeat (a lag) left a filtered
            // client silent up to twice `ping_interval`, where a heartbeat
            // is promised every `ping_interval` (a page with a watchdog
            // shorter than docs/websocket.md's took it for dead).
            if Instant::now() >= self.last_ping + self.settings.ping_interval {
                self.ping(false).await?;
            }
            // A replay of a large journal, or one that never catches up with
            // the head, runs for as long as it reads: a revoked token must
            // not be served meanwhile.
            self.check_reloads(ctx)?;
            // Held until the page is flushed (dropped with it at the end
            // of this turn): a slow client's page is in memory until then.
            let mut hold = self.page_of_the_budget(ctx).await?;
            let journal = ctx.journal.clone();
            let after = self.cursor;
            // Counted as a session until the read ends, on its own thread:
            // the drain waits for it (its bound), so the journal's close
            // does not find it still reading (review of 20e6404).
            let reading = ctx.ws_sessions.enter();
            let filter = self.filter.clone();
            let read = journal_read("websocket replay", move || {
                let _reading = reading;
                journal.read_matching_page_unless_reopening(
                    after,
                    REPLAY_PAGE,
                    REPLAY_PAGE_BYTES,
                    |header| filter.matches_ref(header),
                )
            });
            // A page read from a cold cache on a slow disk takes seconds: a
            // stop's 1001 does not wait for it; the drain does (above).
            let page = tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => return Err(End::Shutdown),
                page = read => page?,
            };
            // Its writes share one deadline from now: the page holds its
            // part of the budget until flushed (see `WriteGuard::page_deadline`).
            // For the JSON read, sent or not, as before the filter moved into
            // the read: from what it sends, a page of a few events right after
            // a full one would give the client only `pong_timeout` to take
            // both. Each write keeps its own bound besides.
            let deadline = Instant::now() + writer::page_bound(self.settings, page.json_read);
            // Again after the read: a reload during it (a slow disk, the
            // budget's wait) must not see a page read after it, which can
            // hold events a narrowed scope no longer opens, sent.
            self.check_reloads(ctx)?;
            // Its whole memory, not only its JSON: a filtered page of other
            // accounts' events holds its entries and little JSON.
            hold.keep(page.memory());
            if page.entries.is_empty() {
                // Nothing after the cursor: a `since` past what retention
                // left of a journal it emptied is told now, not with the
                // next commit, which may be hours away on a quiet relay.
                // Not while the live receiver holds events: the journal may
                // have dropped them (`max_size`) after they were published,
                // and they are delivered, behind the gap the live loop tells.
                if self.live.as_ref().is_none_or(LiveReceiver::is_empty) {
                    self.announce_what_the_journal_dropped(ctx).await?;
                }
                if self.live.is_some() {
                    return Ok(());
                }
                self.live = Some(self.subscribe(ctx));
                continue;
            }
            let full = page.full;
            if full {
                self.live = None;
            }
            // A page short of full reached the head of the read's snapshot,
            // and the receiver, taken before the read, has every later
            // commit: the replay is done. Reading on for an empty page would
            // ask the budget again, and while others wait, each turn would
            // bring what committed during the last wait, never going live.
            let caught_up = !full && self.live.is_some();
            self.out.guard.page_deadline = Some(deadline);
            let mut sent = 0u64;
            for entry in &page.entries {
                // At every event, not only the page's first: the read skips
                // a damaged record, and one mid-page left a hole unsaid.
                self.announce_gap(entry.seq()).await?;
                self.cursor = entry.seq();
                if let PageEntry::Matching(event) = entry {
                    self.out.feed_event(event, None).await?;
                    sent += 1;
                }
            }
            self.out.flush(None).await?;
            self.out.guard.page_deadline = None;
            self.out.metrics.published.inc_by(sent);
            if caught_up {
                return Ok(());
            }
        }
    }

    /// A page's worth of the replay budget, once other sessions' pages leave
    /// room. Meanwhile the session goes on as between pages: the client's
    /// close ends it, a revoked token closes it, it is pinged when due
    /// (its pong not awaited), and a shutdown ends it; its place in line is
    /// kept through all of these.
    async fn page_of_the_budget(&mut self, ctx: &Context) -> Result<PageHold, End> {
        if let Some(hold) = self.budget.page_now() {
            return Ok(hold);
        }
        // An unread receiver keeps every event committed after it in its
        // ring (the shared one: up to 65,536, about 100 MB), for as long as the wait
        // lasts: let go of it, and take a new one once the page is ours,
        // before the read (what commits meanwhile is in the journal). Not
        // taken again, a session that had caught up would read an empty
        // page without a receiver, subscribe, and queue again behind every
        // waiting session, never going live while any waits.
        let had_live = self.live.take().is_some();
        // A client resuming from before what the journal holds hears of
        // the gap first, before the heartbeats the wait's pings carry (a
        // heartbeat at its `since` would come before the gap otherwise).
        self.announce_what_the_journal_dropped(ctx).await?;
        let budget = self.budget.clone();
        let page = budget.page();
        tokio::pin!(page);
        loop {
            let ping_due = self.last_ping + self.settings.ping_interval;
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => return Err(End::Shutdown),
                hold = &mut page => {
                    let hold = hold.map_err(|_| End::Shutdown)?;
                    if had_live {
                        self.live = Some(self.subscribe(ctx));
                    }
                    return Ok(hold);
                }
                msg = self.stream.next() => self.on_client_frame(msg)?,
                Ok(()) = self.reloads.changed() => self.still_authorized(ctx)?,
                _ = sleep_until(ping_due) => self.ping(false).await?,
            }
        }
    }

    /// Reads what the client has sent, without waiting, while a replay keeps
    /// the session from its loop: its close or its going ends the session
    /// (it went on replaying to the end, holding its `max_clients` slot),
    /// and its pings are answered at the next flush.
    fn read_waiting_frames(&mut self) -> Result<(), End> {
        use futures::FutureExt;
        while let Some(msg) = self.stream.next().now_or_never() {
            self.on_client_frame(msg)?;
        }
        Ok(())
    }

    /// What the client sent (`None`: its stream ended), in the live loop
    /// and between a replay's pages alike.
    fn on_client_frame(&mut self, msg: Option<Result<Message, axum::Error>>) -> Result<(), End> {
        match msg {
            None => Err(End::ClientGone),
            Some(Err(e)) => Err(read_error_end(e)),
            Some(Ok(Message::Close(frame))) => {
                let end =
                    end::client_close_end(frame.as_ref().map(|f| (f.code, f.reason.as_str())));
                self.client_said = frame.map(|f| crate::logging::excerpt(f.reason.as_str()));
                Err(end)
            }
            Some(Ok(Message::Pong(_))) => {
                self.pong_deadline = None;
                Ok(())
            }
            // Pings are answered by tungstenite on the next flush; the
            // fan-out takes no commands, so data frames are ignored.
            Some(Ok(_)) => Ok(()),
        }
    }

    /// A heartbeat (if asked for) and a ping; with `await_pong`, its pong
    /// is then awaited for `pong_timeout` (from the first ping not answered).
    async fn ping(&mut self, await_pong: bool) -> Result<(), End> {
        self.send_heartbeat(true).await?;
        self.out.feed(Message::Ping(Bytes::new()), None).await?;
        self.out.flush(None).await?;
        self.last_ping = Instant::now();
        if await_pong {
            let due = Instant::now() + self.settings.pong_timeout;
            self.pong_deadline.get_or_insert(due);
        }
        Ok(())
    }

    fn subscribe(&self, ctx: &Context) -> LiveReceiver {
        live_for(ctx, &self.filter, self.settings)
    }

    /// On a route's queue the cursor moves only with the key's own
    /// events; when nothing waits on the ring, every commit up to the last
    /// has been handled (each reaches the rings before its seq is
    /// announced, so it is read first), and the cursor moves up to it.
    /// Else the heartbeat a client resumes from named its own last event,
    /// and a reconnect replayed every other key's events since.
    /// Only in the live loop: a replay's cursor is where its reads are.
    ///
    /// Not past what the ring cannot vouch for: seqs it skipped (a landed
    /// commit not read back, perhaps of this key) and what committed
    /// before the session subscribed that its replay did not reach. Those
    /// are read from the journal now, as the next event of its own would.
    async fn cursor_to_the_commits(&mut self, ctx: &Context) -> Result<(), End> {
        // Nothing to do on the shared ring, whose sessions' wakes must not
        // pay for the look at the commits (a lock every session shares).
        let Some(live @ LiveReceiver::Route { .. }) = &self.live else {
            return Ok(());
        };
        // Read first: every event and skip up to it was on the rings (and
        // in what they vouch for) by then.
        let committed = *self.out.guard.committed.borrow();
        let Some(vouched_after) = live.vouched_after(&ctx.hub) else {
            return Ok(());
        };
        if self.cursor < vouched_after {
            return self.replay(ctx).await;
        }
        if live.is_empty() {
            self.cursor = self.cursor.max(committed);
        }
        Ok(())
    }

    /// Judges a reload that came since the last look, if any, as the live
    /// loop's `select!` does (see [`Session::still_authorized`]).
    fn check_reloads(&mut self, ctx: &Context) -> Result<(), End> {
        if self.reloads.has_changed().unwrap_or(false) {
            self.reloads.borrow_and_update();
            self.still_authorized(ctx)?;
        }
        Ok(())
    }

    /// After a reload: whether the config still accepts the client (its
    /// token, or, with no tokens left, where it came from, as a new
    /// connection is judged: a page whose origin a reload took out of
    /// `allowed_origins` was served on), and with the scope it was served.
    fn still_authorized(&self, ctx: &Context) -> Result<(), End> {
        let config = ctx.config.load();
        let ws = &config.websocket;
        let scope = if ws.tokens.get_ref().is_empty() {
            let refused = super::auth::tokenless_refusal(
                self.proxied,
                self.origin.as_deref(),
                ws.allowed_origins.get_ref(),
            );
            if refused.is_some() {
                return Err(End::TokenRevoked);
            }
            Scope::Every
        } else {
            super::auth::check_token(ws.tokens.get_ref(), self.token.as_deref())
                .map_err(|_| End::TokenRevoked)?
        };
        // Widened too: its filter holds the old scope's accounts.
        if scope == self.scope {
            Ok(())
        } else {
            Err(End::ScopeChanged)
        }
    }

    /// Sends `{"control":"heartbeat","seq":cursor}` if the client asked for
    /// heartbeats, flushed unless `with_ping` (the ping's flush follows).
    /// Every matching event up to the cursor was fed to the socket before.
    async fn send_heartbeat(&mut self, with_ping: bool) -> Result<(), End> {
        if !self.heartbeat {
            return Ok(());
        }
        let frame = format!(r#"{{"control":"heartbeat","seq":{}}}"#, self.cursor);
        self.out.feed(Message::Text(frame.into()), None).await?;
        if !with_ping {
            self.out.flush(None).await?;
        }
        Ok(())
    }

    /// The gap between the cursor and the oldest event the journal holds,
    /// or, when retention emptied it, the next seq it will hand out (the
    /// contract's gap frame comes first, before any heartbeat); the cursor
    /// moves up to it.
    async fn announce_what_the_journal_dropped(&mut self, ctx: &Context) -> Result<(), End> {
        let oldest = ctx
            .journal
            .first_seq()
            .min(ctx.journal.last_seq().saturating_add(1));
        self.announce_gap(oldest).await?;
        self.cursor = self.cursor.max(oldest.saturating_sub(1));
        Ok(())
    }

    /// Sends `{"control":"gap","oldest_seq":seq}` when `seq`, the next event
    /// this session handles, is not the one right after its cursor. Seqs are
    /// contiguous in the journal, and a jump on the live ring is read from
    /// the journal first (a receiver that misses some is told `Lagged` and
    /// replays), so a jump here means retention or `max_size` removed what
    /// this client asked for, or the journal could not read a record
    /// (damaged on disk: its reads skip it). Checked on the raw seq,
    /// before the filter: the client's cursor covers events it filters out too.
    async fn announce_gap(&mut self, seq: u64) -> Result<(), End> {
        if seq > self.cursor.saturating_add(1) {
            let gap = format!(r#"{{"control":"gap","oldest_seq":{seq}}}"#);
            self.out.feed(Message::Text(gap.into()), None).await?;
            // Flushed now: a live event the filter drops would not flush it.
            self.out.flush(None).await?;
        }
        Ok(())
    }
}

/// A new live subscription: a queue (or ring) of the route key's events
/// when `filter` gives one ([`Filter::route_key`]), else the shared ring. It holds twice
/// `client_queue` (the shared ring's size at most): a client too slow for
/// its events overflows its `client_queue`, and is closed 4008 for it,
/// well before its queue fills (a session whose queue did would read the
/// journal at its client's pace, where that rule does not reach), unless
/// `client_queue` is over half the shared ring.
fn live_for(ctx: &Context, filter: &Filter, settings: Settings) -> LiveReceiver {
    let capacity = settings
        .client_queue
        .saturating_mul(2)
        .min(crate::ingest::SHARED_RING);
    ctx.hub.subscribe_for(filter.route_key(), capacity)
}

/// The next live event, with the seq after which nothing of the session's
/// was left out before it ([`LiveReceiver::recv`]), or never while the
/// session is not subscribed.
async fn next_live(
    live: &mut Option<LiveReceiver>,
) -> Result<(Arc<JournaledEvent>, u64), RecvError> {
    match live {
        Some(live) => live.recv().await,
        None => std::future::pending().await,
    }
}

/// Read failures logged, per kind of read: at most one line per 30 s. A
/// journal that cannot be read (a reopen after failed commits, minutes on a
/// slow disk, again every 16 s on a full one: the reads do not wait for it)
/// fails every replaying client, which reconnects and fails again: a line
/// each buried the journal's own.
static READ_FAILURES: std::sync::LazyLock<
    std::sync::Mutex<crate::log_throttle::LogThrottle<&'static str>>,
> = std::sync::LazyLock::new(|| {
    std::sync::Mutex::new(crate::log_throttle::LogThrottle::new(
        std::time::Duration::from_secs(30),
    ))
});

/// Runs a journal read off the runtime's workers; a failure ends the
/// session, logged as `what`.
async fn journal_read<T: Send + 'static>(
    what: &'static str,
    read: impl FnOnce() -> Result<T, crate::journal::JournalError> + Send + 'static,
) -> Result<T, End> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|_| End::JournalError)?
        .map_err(|e| {
            let admitted = READ_FAILURES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .admit(what, std::time::Instant::now());
            if let Some(held_back) = admitted {
                tracing::error!(error = %e, held_back, "{what}: journal read failed");
            }
            End::JournalError
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The live ring skips seqs when a commit reported failed had landed
    /// and reading it back for the ring failed: a live session reads what
    /// it skipped from the journal instead of telling its client of a gap
    /// that is not there (before: `{"control":"gap","oldest_seq":3}`, then
    /// event 3 alone).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_session_reads_seqs_the_ring_skipped_from_the_journal() {
        a_session_reads_seqs_the_ring_skipped_from_the_journal("").await;
    }

    /// As above, for a session on its account's queue: the seqs skipped may
    /// have been its account's, so its next event sends it to the journal
    /// too (before the ring said so: event 3 alone).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_on_its_accounts_queue_reads_seqs_the_ring_skipped_from_the_journal() {
        a_session_reads_seqs_the_ring_skipped_from_the_journal("&account=t").await;
    }

    /// A session filtered to one account listens on a queue of that account's events,
    /// not the shared one, so other accounts' commits do not wake it; its
    /// heartbeats still follow every commit, so a client resuming from one
    /// is not replayed the other accounts' events since its own last.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_filtered_to_one_account_hears_only_its_accounts_commits() {
        use crate::journal::tests_support::event;
        let dir = tempfile::tempdir().unwrap();
        let (relay, mut client, shared_before) = a_live_client_of_account_t(dir.path()).await;
        assert_eq!(relay.ctx.hub.live_receivers(), shared_before);
        assert_eq!(relay.ctx.hub.route_queues(), 1);

        let other = another_accounts;
        for e in [other("o1"), other("o2"), event("mine"), other("o3")] {
            relay.ctx.ingest.submit(e).await.unwrap();
        }
        let mut events = Vec::new();
        let mut heartbeats = Vec::new();
        while heartbeats.last() != Some(&4) {
            assert!(heartbeats.len() < 5, "heartbeats {heartbeats:?}");
            let frame = next_json(&mut client).await;
            if frame["control"] == "heartbeat" {
                let seq = frame["seq"].as_u64().unwrap();
                assert!(seq < 3 || events == [3], "heartbeat {seq} before event 3");
                heartbeats.push(seq);
            } else {
                assert_eq!(frame["account"], "t", "{frame}");
                events.push(frame["seq"].as_u64().unwrap());
            }
        }
        assert_eq!(events, [3]);
        drop(client);
        crate::app::tests_support::stop(relay).await;
    }

    /// A screen filtered to one subject and no account listens on a queue
    /// of that subject's events, not the shared ring (which woke it at
    /// every commit): it gets its subject's events live, in order, then
    /// from `since` on a resume and live again, and the other subjects'
    /// commits reach no receiver of its.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_filtered_to_one_subject_hears_only_its_subjects_commits() {
        use crate::journal::tests_support::event;
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let shared_before = relay.ctx.hub.live_receivers();
        let of_x = |identity: &str| {
            let mut e = event(identity);
            e.event.subject = Some("X".into());
            e
        };
        let submit = |events: Vec<crate::event::IncomingEvent>| {
            let ingest = relay.ctx.ingest.clone();
            async move {
                let mut seqs = Vec::new();
                for e in events {
                    seqs.push(ingest.submit(e).await.unwrap().seq);
                }
                seqs
            }
        };
        let connect = |query: String| {
            let url = format!("ws://{}/ws?subject=X&heartbeat=1{query}", relay.addr);
            async move { tokio_tungstenite::connect_async(url).await.unwrap().0 }
        };

        let mut client = connect(String::new()).await;
        // Its first heartbeat, without `since`: the session is live.
        let frame = next_json(&mut client).await;
        assert_eq!(frame["control"], "heartbeat", "{frame}");
        assert_eq!(
            relay.ctx.hub.live_receivers(),
            shared_before,
            "no new receiver on the shared ring: the session is on its subject's route"
        );
        assert_eq!(relay.ctx.hub.route_queues(), 1);
        let seqs = submit(vec![
            event("o1"),
            of_x("x1"),
            event("o2"),
            of_x("x2"),
            event("o3"),
            of_x("x3"),
        ])
        .await;
        let x = [seqs[1], seqs[3], seqs[5]];
        assert_eq!(subjects_events_until(&mut client, x[2]).await, x, "live");
        drop(client);

        let seqs = submit(vec![of_x("x4"), event("o4")]).await;
        let mut resumed = connect(format!("&since={}", x[0])).await;
        assert_eq!(
            subjects_events_until(&mut resumed, seqs[0]).await,
            [x[1], x[2], seqs[0]],
            "replayed"
        );
        let seqs = submit(vec![event("o5"), of_x("x5")]).await;
        assert_eq!(
            subjects_events_until(&mut resumed, seqs[1]).await,
            [seqs[1]],
            "live after the replay"
        );
        assert_eq!(
            relay.ctx.hub.live_receivers(),
            shared_before,
            "no new receiver on the shared ring: the session is on its subject's route"
        );
        drop(resumed);
        crate::app::tests_support::stop(relay).await;
    }

    /// The seqs of the events `client` is sent (each of subject `X`) up
    /// to `last`, heartbeats aside.
    async fn subjects_events_until(client: &mut TestClient, last: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        while seqs.last() < Some(&last) {
            let frame = next_json(client).await;
            if frame["control"] == "heartbeat" {
                continue;
            }
            assert_eq!(frame["subject"], "X", "{frame}");
            seqs.push(frame["seq"].as_u64().unwrap());
        }
        seqs
    }

    /// A seq the ring skipped may have been the session's own account's:
    /// the ring's silence after it (another account's event, then a ping)
    /// does not move the session's cursor past it; the ping reads it from
    /// the journal first. Before (review of the account routes), the
    /// heartbeat named seq 2 and event 1 was never sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ping_reads_a_seq_the_ring_skipped_before_it_names_a_later_one() {
        use crate::journal::{AppendOutcome, tests_support::event};
        let dir = tempfile::tempdir().unwrap();
        let (relay, mut client, _) = a_live_client_of_account_t(dir.path()).await;
        let other = another_accounts("o");
        let outcomes = relay
            .ctx
            .journal
            .append_batch(&[event("mine"), other])
            .unwrap();
        let Some(AppendOutcome::Appended(second)) = outcomes.into_iter().nth(1) else {
            panic!("the second event appended");
        };
        relay.ctx.hub.publish(vec![Arc::new(second)], 2);
        // Heartbeats of seq 0 may come first (a ping due before the publish).
        let mut sent = Vec::new();
        loop {
            let frame = next_json(&mut client).await;
            let seq = frame["seq"].as_u64().unwrap();
            if frame["control"] != "heartbeat" {
                assert_eq!(frame["account"], "t", "{frame}");
                sent.push(seq);
            } else if seq > 0 {
                assert_eq!((seq, &sent[..]), (2, &[1][..]));
                break;
            }
        }
        drop(client);
        crate::app::tests_support::stop(relay).await;
    }

    /// A relay pinging each second, with a client filtered to account `t`
    /// (the test events') that asked for heartbeats and has had its first
    /// (seq 0); and the shared ring's receivers before it connected.
    async fn a_live_client_of_account_t(
        dir: &std::path::Path,
    ) -> (crate::app::Relay, TestClient, usize) {
        let relay =
            crate::app::tests_support::relay_in(dir, "[websocket]\nping_interval = \"1s\"\n").await;
        let shared_before = relay.ctx.hub.live_receivers();
        let url = format!("ws://{}/ws?account=t&heartbeat=1", relay.addr);
        let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        assert_eq!(
            next_json(&mut client).await,
            serde_json::json!({"control": "heartbeat", "seq": 0})
        );
        (relay, client, shared_before)
    }

    /// A filtered replay goes on past a page that held none of its events:
    /// the page was full (its records, whatever the filter took), so the
    /// journal may hold more. Judged by what the filter took, the replay
    /// ended at that page with the client's events still unread behind it.
    /// The appends go past the ingest, so the hub's commits do not tell a
    /// one-account session's queue of them and cannot hide that.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_filtered_replay_reads_on_past_a_full_page_of_other_accounts_events() {
        a_replay_reads_on_past_a_full_page_of_other_accounts_events("account=t").await;
    }

    /// As above, for a session on the shared ring (two accounts).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_of_two_accounts_reads_on_past_a_full_page_of_a_third_accounts_events() {
        a_replay_reads_on_past_a_full_page_of_other_accounts_events("account=t,x").await;
    }

    async fn a_replay_reads_on_past_a_full_page_of_other_accounts_events(filter: &str) {
        use crate::journal::tests_support::event;
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let others: Vec<_> = (0..REPLAY_PAGE + 10)
            .map(|i| another_accounts(&format!("o{i}")))
            .collect();
        relay.ctx.journal.append_batch(&others).unwrap();
        relay
            .ctx
            .journal
            .append_batch(&[event("mine1"), event("mine2")])
            .unwrap();
        let url = format!("ws://{}/ws?since=0&{filter}", relay.addr);
        let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let first = REPLAY_PAGE as u64 + 11;
        for seq in [first, first + 1] {
            let frame = next_json(&mut client).await;
            assert_eq!(
                (frame["seq"].as_u64(), &frame["account"]),
                (Some(seq), &serde_json::json!("t")),
                "{frame}"
            );
        }
        drop(client);
        crate::app::tests_support::stop(relay).await;
    }

    /// A test event of another account than `t`.
    fn another_accounts(identity: &str) -> crate::event::IncomingEvent {
        let mut e = crate::journal::tests_support::event(identity);
        e.account = "other".into();
        e
    }

    type TestClient = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// The next text frame's JSON, within 10 s.
    async fn next_json(client: &mut TestClient) -> serde_json::Value {
        loop {
            let frame = timeout(Duration::from_secs(10), client.next())
                .await
                .expect("a frame within 10 s")
                .expect("the session is open")
                .expect("a frame");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    async fn a_session_reads_seqs_the_ring_skipped_from_the_journal(filter: &str) {
        use crate::journal::{AppendOutcome, tests_support::event};
        use serde_json::Value;
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let url = format!("ws://{}/ws?since=0&heartbeat=1{filter}", relay.addr);
        let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        // The replay is over and the session is live.
        assert_eq!(
            next_json(&mut client).await,
            serde_json::json!({"control": "heartbeat", "seq": 0})
        );

        let outcomes = relay
            .ctx
            .journal
            .append_batch(&[event("a"), event("b"), event("c")])
            .unwrap();
        let Some(AppendOutcome::Appended(third)) = outcomes.into_iter().nth(2) else {
            panic!("the third event appended");
        };
        assert_eq!(third.seq, 3);
        relay.ctx.hub.publish(vec![Arc::new(third)], 3);

        let mut frames = Vec::new();
        while frames.last() != Some(&Value::from(3)) {
            let frame = next_json(&mut client).await;
            frames.push(frame.get("seq").cloned().unwrap_or(frame));
        }
        assert_eq!(frames, [1, 2, 3].map(Value::from));
        crate::app::tests_support::stop(relay).await;
    }

    /// A session whose replay finds the budget held by others waits for it,
    /// counted in `callrelay_ws_replays_waiting`, pinged meanwhile, and
    /// replays once a page is given back. Before (eleventh-round review),
    /// every replay read at once: `max_clients` pages in memory at worst.
    /// Its `since` is older than the journal holds: the gap frame still
    /// comes first, before the wait's heartbeats; and it holds no live
    /// event while it waits (review of the change).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replay_waits_for_the_budget_and_is_pinged_meanwhile() {
        use crate::journal::tests_support::event;
        use tokio_tungstenite::tungstenite::Message as Frame;
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let ctx = relay.ctx.clone();
        // Seqs 1 and 2 journaled and gone by retention, 3..5 held.
        ctx.journal.append_batch(&[event("a"), event("b")]).unwrap();
        let later = crate::journal::now_ms() + 30 * 86_400_000;
        ctx.journal.enforce_retention_at(&[], later).unwrap();
        ctx.journal
            .append_batch(&[event("c"), event("d"), event("e")])
            .unwrap();
        assert_eq!(ctx.journal.first_seq(), 3);
        let waiting = ctx.metrics.ws_replays_waiting.clone();
        let budget = ReplayBudget::new(REPLAY_PAGE_BYTES as u64, waiting.clone());
        let held = budget.page().await.unwrap();
        let (addr, mut ended) =
            sessions_on_budget(ctx.clone(), budget, Duration::from_secs(1)).await;
        let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/t"))
            .await
            .unwrap();

        // Waiting, and counted so.
        until_waiting(&waiting, 1).await;
        // The gap first; then pinged while it waits, with the heartbeat it
        // asked for, which says where it stands: its replay has not begun.
        let mut next_frame = async || {
            timeout(Duration::from_secs(10), client.next())
                .await
                .expect("a frame within 10 s")
                .unwrap()
                .unwrap()
        };
        let gap = next_frame().await;
        assert_eq!(
            gap,
            Frame::text(r#"{"control":"gap","oldest_seq":3}"#),
            "{gap:?}"
        );
        let heartbeat = next_frame().await;
        assert_eq!(
            heartbeat,
            Frame::text(r#"{"control":"heartbeat","seq":2}"#),
            "{heartbeat:?}"
        );
        let ping = next_frame().await;
        assert!(matches!(ping, Frame::Ping(_)), "{ping:?}");
        assert_eq!(waiting.get(), 1);
        // While it waits it holds no live event in the shared ring: one
        // committed now is read from the journal with the rest.
        let outcomes = ctx.journal.append_batch(&[event("f")]).unwrap();
        let Some(crate::journal::AppendOutcome::Appended(sixth)) = outcomes.into_iter().next()
        else {
            panic!("the sixth event appended");
        };
        ctx.hub.publish(vec![Arc::new(sixth)], 6);
        assert_eq!(ctx.hub.live_held(), 0);

        drop(held);
        let mut seqs = Vec::new();
        loop {
            let frame = timeout(Duration::from_secs(10), client.next())
                .await
                .expect("a frame within 10 s")
                .unwrap()
                .unwrap();
            if let Frame::Text(text) = frame {
                let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                // More of the wait's heartbeats may come on a slow machine,
                // before the replay's events.
                if json["control"] == "heartbeat" {
                    if json["seq"] == 6 {
                        break;
                    }
                    assert!(seqs.is_empty() && json["seq"] == 2, "{json}");
                    continue;
                }
                seqs.push(json["seq"].as_u64().unwrap());
            }
        }
        assert_eq!(seqs, [3, 4, 5, 6]);
        assert_eq!(waiting.get(), 0);
        drop(client);
        assert_eq!(
            timeout(Duration::from_secs(10), ended.recv())
                .await
                .unwrap(),
            Some(End::ClientGone)
        );
        crate::app::tests_support::stop(relay).await;
    }

    /// Serves sessions as the fan-out runs them (`since=0`, heartbeats, a
    /// ping every `ping_interval`), with `budget`, at `ws://{addr}/t`; each
    /// session's end is sent on the receiver.
    async fn sessions_on_budget(
        ctx: Arc<Context>,
        budget: ReplayBudget,
        ping_interval: Duration,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<End>,
    ) {
        use axum::extract::ws::WebSocketUpgrade;
        let (ended_tx, ended) = tokio::sync::mpsc::unbounded_channel();
        let router = axum::Router::new().route(
            "/t",
            axum::routing::get(move |upgrade: WebSocketUpgrade| async move {
                let client = Client {
                    filter: Arc::new(super::super::filter::ClientQuery::parse(None).filter),
                    scope: Scope::Every,
                    since: Some(0),
                    heartbeat: true,
                    token: None,
                    origin: None,
                    proxied: false,
                    reloads: ctx.ws_sessions.reloads(),
                };
                let settings = Settings {
                    ping_interval,
                    pong_timeout: Duration::from_secs(10),
                    client_queue: 1024,
                    largest_frame: 1 << 20,
                };
                let metrics = SinkMetrics {
                    published: ctx.metrics.events_published.with_label_values(&["t"]),
                    latency: ctx.metrics.event_latency.with_label_values(&["t"]),
                };
                upgrade.on_upgrade(move |socket| async move {
                    run(
                        socket,
                        ctx,
                        client,
                        settings,
                        metrics,
                        budget,
                        |end, _, _| {
                            let _ = ended_tx.send(end);
                        },
                    )
                    .await;
                })
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (addr, ended)
    }

    /// A relay whose journal holds events 1..3, and a one-page replay
    /// budget counted in its `callrelay_ws_replays_waiting`.
    async fn three_events_and_a_budget(
        dir: &std::path::Path,
    ) -> (crate::app::Relay, prometheus::IntGauge, ReplayBudget) {
        use crate::journal::tests_support::event;
        let relay = crate::app::tests_support::relay_in(dir, "").await;
        relay
            .ctx
            .journal
            .append_batch(&[event("a"), event("b"), event("c")])
            .unwrap();
        let waiting = relay.ctx.metrics.ws_replays_waiting.clone();
        let budget = ReplayBudget::new(REPLAY_PAGE_BYTES as u64, waiting.clone());
        (relay, waiting, budget)
    }

    /// Until `n` sessions wait for the budget (10 s at most): no event says
    /// so, the gauge is polled.
    async fn until_waiting(waiting: &prometheus::IntGauge, n: i64) {
        let within = Duration::from_secs(10);
        crate::app::tests_support::until("sessions wait for the budget", within, || {
            waiting.get() == n
        })
        .await;
    }

    /// The seqs of the events a session sends until the heartbeat it sends
    /// once its replay is done (the only one when no ping is due), which
    /// must say `live_at`; 10 s at most for each frame.
    async fn events_until_live(client: &mut TestClient, live_at: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        loop {
            let frame = timeout(Duration::from_secs(10), client.next())
                .await
                .expect("the session goes live within 10 s")
                .unwrap()
                .unwrap();
            let tokio_tungstenite::tungstenite::Message::Text(text) = frame else {
                continue;
            };
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            if json["control"] == "heartbeat" {
                assert_eq!(json["seq"], live_at);
                return seqs;
            }
            seqs.push(json["seq"].as_u64().unwrap());
        }
    }

    /// Sessions that wait for the budget in turn still go live: the one
    /// that caught up takes its live receiver again once the page is its
    /// own. Before (second review of the budget), a session that had to
    /// wait read its last, empty page without a receiver, subscribed, and
    /// queued again behind the other: two screens on a one-page budget
    /// took turns reading empty pages, and neither went live.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_taking_turns_on_the_budget_go_live() {
        let dir = tempfile::tempdir().unwrap();
        let (relay, waiting, budget) = three_events_and_a_budget(dir.path()).await;
        let ctx = relay.ctx.clone();
        // Both wait from the start, so that they take turns.
        let held = budget.page().await.unwrap();
        // No ping to interrupt their turns.
        let (addr, _ended) =
            sessions_on_budget(ctx.clone(), budget, Duration::from_secs(3600)).await;
        let before = ctx.hub.live_receivers();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let (client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/t"))
                .await
                .unwrap();
            clients.push(client);
        }
        until_waiting(&waiting, 2).await;
        drop(held);
        // Live: the heartbeat a session sends once its replay is done (the
        // only one: no ping is due), after events 1..3.
        for client in &mut clients {
            assert_eq!(events_until_live(client, 3).await, [1, 2, 3]);
        }
        assert_eq!(ctx.hub.live_receivers(), before + 2);
        assert_eq!(waiting.get(), 0);
        drop(clients);
        crate::app::tests_support::stop(relay).await;
    }

    /// A session that caught up while others wait for the budget goes live
    /// with the page it read, though events committed during its wait made
    /// that page not empty. Before (third review of the budget), it read on
    /// for an empty page, asked the budget again, and queued behind every
    /// waiting session: while commits kept coming, each turn brought what
    /// committed during the last wait, and it never went live.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_that_caught_up_goes_live_while_others_wait() {
        use crate::journal::tests_support::event;
        let dir = tempfile::tempdir().unwrap();
        let (relay, waiting, budget) = three_events_and_a_budget(dir.path()).await;
        let ctx = relay.ctx.clone();
        let held = budget.page().await.unwrap();
        let (addr, _ended) =
            sessions_on_budget(ctx.clone(), budget.clone(), Duration::from_secs(3600)).await;
        let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/t"))
            .await
            .unwrap();
        until_waiting(&waiting, 1).await;
        // Committed during its wait; then another session (this test) asks
        // for the budget right after the page is given, and keeps it.
        ctx.journal.append_batch(&[event("d")]).unwrap();
        drop(held);
        let other = tokio::spawn(async move { budget.page().await });
        assert_eq!(events_until_live(&mut client, 4).await, [1, 2, 3, 4]);
        let _other_holds = other.await.unwrap().unwrap();
        drop(client);
        crate::app::tests_support::stop(relay).await;
    }
}
