//! One supervised SSE stream of an SPRecord account: connect, pump events into
//! ingest, and reconnect for ever with backoff until cancelled.
//!
//! Guarantees:
//! - every event read is submitted to ingest and retried on commit errors; a
//!   stream never drops an event it has read (only the drain deadline after
//!   a cancel stops a retry, or a wait for room in ingest's queue; a submit
//!   once queued is awaited to its answer, however long the commit takes);
//! - `Last-Event-ID` is advanced only after its event is journaled, and
//!   only by a stream at the account's front (a lagging stream's duplicates
//!   do not move it back), so a server that keeps history resumes after the
//!   newest durable event (the exceptions: [`super::resume`]'s module doc); it is kept in
//!   [`ResumeId`] (and the journal), so a stream restarted by a reload or a
//!   restart resumes too;
//! - an event without an `id:` line shares the id before it, across a
//!   reconnect too: the parser starts at the `Last-Event-ID` sent (as a
//!   browser's EventSource does), so what a server resends after it before
//!   the next `id:` is handed on as any event sharing an id (with "" it was
//!   not, and a sibling's late first copy of it took the point back); a
//!   stream opened without one hands on nothing before its first `id:`. An
//!   event sharing the id this stream handed on last is not handed on again
//!   ([`is_a_no_op`]) unless it is a first copy or a duplicate whose seq
//!   would raise the point's first-copy seq: asking that
//!   ([`ResumeId::would_raise_first_copy_seq`]) takes the relay-wide
//!   `ResumeIds` lock once per duplicate sharing the stream's last id (the
//!   compares of a long id are spared, not the lock);
//! - on cancel (reload, shutdown) every event already received — parsed,
//!   buffered, or whose bytes arrive without waiting — is still handed to
//!   ingest, within [`DRAIN_DEADLINE`], before the connection is closed;
//! - malformed data is counted (`upstream_malformed`) and logged; the stream stays up;
//! - an event over [`MAX_EVENT_BYTES`](super::sse::MAX_EVENT_BYTES) is
//!   skipped, as malformed data is (counted, logged without any of it), and
//!   the stream reads on: its id, read even after its data, is handed on, so
//!   a server that replays history does not send it again, and what the
//!   server sends next is not lost to a reconnect;
//! - delays: a stream that proved useful (it carried an event, or stayed
//!   open [`USEFUL_AFTER`]) and then ended is reopened after 100–300 ms, at
//!   most once per [`USEFUL_AFTER`] (a "too many connections" then is taken
//!   for its own old connection, not yet closed at the device: the usual
//!   backoff, not `busy_backoff`): a front end's idle timeout ends an
//!   account's streams together, and an event the device sent while none
//!   was open is lost on a server without history; otherwise network/5xx/closed stream
//!   → exponential backoff with jitter, reset only once a stream proved
//!   useful: a server that accepts and closes at once is
//!   retried ever more slowly, not every `backoff_min`; 429/"too many connections" → at least
//!   `busy_backoff`; 401/403 → `auth_backoff`, `/readyz` false, an error log;
//! - on cancel the connection is closed before [`StreamSupervisor::run`] returns.

use std::sync::Arc;
use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use rand::Rng;
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::Timings;
use super::connection::{BodyError, Endpoint, OpenError, SilenceTurn, SseConnection};
use super::limiter::ConnLimiter;
use super::payload::{StreamPayload, read_payload};
use super::resume::{HandedOn, ResumeId};
use super::sse::SseItem;
use super::warnings::StreamWarnings;
use crate::app::Context;
use crate::event::{IncomingEvent, Transport, Vendor};
use crate::ingest::IngestError;
use crate::log_throttle::LogThrottle;
use crate::sources::deadline::Deadline;
use crate::sources::retry_log::{REPEAT_EVERY, RetryLog, attempt_failed};
use crate::status::{ConnState, UpstreamReporter};

/// The longest wait between two tries of a failed journal commit.
const COMMIT_RETRY_MAX: Duration = Duration::from_secs(5);
/// On cancel, how long a stream may still spend handing received events to
/// ingest (reading them, retrying refused commits, waiting for room).
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(3);
/// How long past [`DRAIN_DEADLINE`] a stream still waits for the answer to
/// an event already handed to the journal, whose commit is slow: together
/// well under the source manager's stop timeout (10 s), which would abort
/// the whole account without a word.
const ANSWER_GRACE: Duration = Duration::from_secs(3);
/// While draining, bytes that do not arrive within this are not "already
/// received": the drain ends.
const DRAIN_IDLE: Duration = Duration::from_millis(100);
/// A stream open this long without an event still counts as working (a quiet
/// account): its end resets the backoff.
const USEFUL_AFTER: Duration = Duration::from_secs(10);

/// How one open stream ended.
#[derive(Debug)]
enum StreamEnd {
    Cancelled,
    /// The server closed the body.
    Closed,
    /// With the account's turn (see [`SilenceTurn`]) until it is taken.
    Silent(Duration, Option<SilenceTurn>),
    Transport(String),
}

impl StreamEnd {
    fn take_turn(&mut self) -> Option<SilenceTurn> {
        match self {
            StreamEnd::Silent(_, turn) => turn.take(),
            _ => None,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            StreamEnd::Cancelled => "shutdown",
            // Ended cleanly or cut mid-body: either way the server side went away.
            StreamEnd::Closed | StreamEnd::Transport(_) => "disconnect",
            StreamEnd::Silent(..) => "timeout",
        }
    }

    fn describe(&self) -> String {
        match self {
            StreamEnd::Cancelled => "shutting down".into(),
            StreamEnd::Closed => "the server closed the stream".into(),
            StreamEnd::Silent(t, _) => format!("no data or keep-alive for {t:?}"),
            StreamEnd::Transport(e) => format!("transport error: {e}"),
        }
    }
}

/// Whether a stream that ended had worked, which ends the run of failures
/// (the backoff starts over): it carried an event, or stayed open
/// [`USEFUL_AFTER`]. A 200 that closes at once is a failure too.
fn proved_useful(events: u64, lasted: Duration) -> bool {
    events > 0 || lasted >= USEFUL_AFTER
}

/// The wait before a quick reopen: long enough for the device to see the
/// old connection's close (it counts three per device), short against the
/// 1 s `backoff_min`.
fn quick_reopen_delay() -> Duration {
    Duration::from_millis(rand::rng().random_range(100..=300))
}

/// How many `read_timeout`s a stream refused as "too many" keeps the
/// account's silence turn: the others' silence is then found again, should
/// their connections be dead too (the device counting them).
const TURN_HELD_AT_MOST: u32 = 10;

/// Whether a stream whose reopen after a silence was refused so keeps the
/// account's silence turn. Only for "too many", and for at most
/// [`TURN_HELD_AT_MOST`] `read_timeout`s: a device that frees a closed
/// stream's place only when it next writes answers so, and passing the turn
/// on closed every stream in turn, losing the next event. Any other refusal
/// (credentials, a server down) passes it on at once, as before: held, the
/// others' silence would never be found, and their rows would say connected
/// through an outage.
fn keeps_the_turn(error: &OpenError, held_since: Option<Instant>, t: &Timings) -> bool {
    matches!(error, OpenError::TooMany { .. })
        && held_since.is_some_and(|at| at.elapsed() < t.read_timeout * TURN_HELD_AT_MOST)
}

/// Whether a stream that worked and ended so is reopened after
/// [`quick_reopen_delay`] rather than the backoff:
/// the server closed it, the connection broke, or it went silent (its
/// turn held, so the account's other streams stay open meanwhile).
fn reopens_quickly(end: &StreamEnd) -> bool {
    matches!(
        end,
        StreamEnd::Closed | StreamEnd::Transport(_) | StreamEnd::Silent(..)
    )
}

/// Everything one stream needs; [`run`](StreamSupervisor::run) consumes it.
pub struct StreamSupervisor {
    pub index: usize,
    pub account: String,
    pub endpoint: Arc<Endpoint>,
    pub limiter: ConnLimiter,
    pub timings: Timings,
    pub ctx: Arc<Context>,
    /// This stream's `/status` row: owned by the source (see [`super::run`]),
    /// so that it outlives a run that panicked.
    pub reporter: Arc<UpstreamReporter>,
    pub resume: ResumeId,
    pub warnings: StreamWarnings,
    /// When the account's source started: right after a reload that
    /// restarted it, or a restart of the relay, the device may still count
    /// the connections the previous run just closed.
    pub started_at: Instant,
}

impl StreamSupervisor {
    pub async fn run(&self, cancel: CancellationToken) {
        let stream = self.index.to_string();
        let reporter = &*self.reporter;
        let stagger = self
            .timings
            .stagger
            .saturating_mul(u32::try_from(self.index).unwrap_or(u32::MAX));
        if !sleep_or_cancel(stagger, &cancel).await {
            return;
        }
        let mut backoff = new_backoff(&self.timings);
        let mut retry_log = RetryLog::default();
        // Ends of streams that had worked, said at most once per reason per
        // `REPEAT_EVERY`: a quiet device's streams close for silence every
        // `read_timeout`, and a front end's idle timeout closes them, which
        // was a WARN and an INFO per stream per minute, all night.
        let mut ends_said = LogThrottle::<&'static str>::new(REPEAT_EVERY);
        // Whether the next open is said at info: the first, and any after
        // an end or failure that was said.
        let mut say_open = true;
        // Held from a silent end until this stream is open again, or until
        // a reopen is refused for another reason than "too many" (see
        // `keeps_the_turn`); since when it is held.
        let mut silence_turn: Option<SilenceTurn> = None;
        let mut turn_held_since: Option<Instant> = None;
        // When this stream last reopened quickly after working, and whether
        // the attempt under way is that reopen.
        let mut reopened_quickly: Option<Instant> = None;
        let mut reopening_quickly = false;
        let mut opened_yet = false;
        loop {
            let (last_event_id, at) = opening_ids(self.resume.open_point());
            reporter.set_state(ConnState::Connecting);
            let opened = tokio::select! {
                _ = cancel.cancelled() => return,
                opened = self.endpoint.open(&self.limiter, last_event_id.as_ref()) => opened,
            };
            let keep_turn = match &opened {
                Ok(_) => false,
                Err(error) => keeps_the_turn(error, turn_held_since, &self.timings),
            };
            if !keep_turn {
                drop(silence_turn.take());
                turn_held_since = None;
            }
            let delay = match opened {
                Ok(mut conn) => {
                    opened_yet = true;
                    reporter.set_state(ConnState::Connected);
                    let resume_after = last_event_id.as_deref().unwrap_or("");
                    if say_open {
                        tracing::info!(vendor = "sprecord", account = %self.account, stream = %stream,
                            resume_after, "SSE stream open");
                    } else {
                        tracing::debug!(vendor = "sprecord", account = %self.account, stream = %stream,
                            resume_after, "SSE stream open");
                    }
                    let opened_at = Instant::now();
                    let mut events = 0u64;
                    let mut end = self
                        .pump(&mut conn, reporter, at, &mut events, &cancel)
                        .await;
                    conn.close().await;
                    if matches!(end, StreamEnd::Cancelled) {
                        return;
                    }
                    silence_turn = end.take_turn();
                    turn_held_since = silence_turn.as_ref().map(|_| Instant::now());
                    let useful = proved_useful(events, opened_at.elapsed());
                    if useful {
                        backoff.reset();
                        retry_log.worked();
                    }
                    let quick = useful
                        && reopens_quickly(&end)
                        && reopened_quickly.is_none_or(|at| at.elapsed() >= USEFUL_AFTER);
                    reopening_quickly = quick;
                    let delay = if quick {
                        reopened_quickly = Some(Instant::now());
                        quick_reopen_delay()
                    } else {
                        next_delay(&mut backoff, &self.timings)
                    };
                    if useful {
                        // Not a failure: the stream worked, and a failure to
                        // open it again is a WARN at once (`worked`).
                        say_open = match ends_said.admit(end.reason(), std::time::Instant::now()) {
                            Some(held_back) => {
                                tracing::info!(vendor = "sprecord", account = %self.account, stream = %stream,
                                    reason = end.reason(), held_back, retry_in_ms = crate::logging::millis(delay),
                                    "SSE stream ended: {}; reopening", end.describe());
                                true
                            }
                            None => {
                                tracing::debug!(vendor = "sprecord", account = %self.account, stream = %stream,
                                    reason = end.reason(), "SSE stream ended: {}; reopening", end.describe());
                                false
                            }
                        };
                    } else {
                        say_open = retry_log.would_log(end.reason(), std::time::Instant::now());
                        attempt_failed!(retry_log, end.reason(), vendor = "sprecord", account = %self.account, stream = %stream,
                            reason = end.reason(), retry_in_ms = crate::logging::millis(delay), "SSE stream ended: {}", end.describe());
                    }
                    reporter.reconnecting(end.reason(), Some(end.describe()), delay);
                    delay
                }
                Err(error) => {
                    say_open = matches!(error, OpenError::Auth { .. })
                        || retry_log.would_log(error.reason(), std::time::Instant::now());
                    // Our own connection, just closed, is likely what the
                    // device still counts: after a quick reopen, and on the
                    // first opens after a reload restarted the account or
                    // the relay started (its old run's connections).
                    let own_connection_likely = std::mem::take(&mut reopening_quickly)
                        || (!opened_yet && self.started_at.elapsed() < USEFUL_AFTER);
                    self.refused(
                        &error,
                        &stream,
                        reporter,
                        &mut backoff,
                        &mut retry_log,
                        own_connection_likely,
                    )
                }
            };
            if !sleep_or_cancel(delay, &cancel).await {
                return;
            }
        }
    }

    /// Logs and reports a failed attempt; returns how long to wait.
    fn refused(
        &self,
        error: &OpenError,
        stream: &str,
        reporter: &UpstreamReporter,
        backoff: &mut ExponentialBackoff,
        retry_log: &mut RetryLog,
        own_connection_likely: bool,
    ) -> Duration {
        let t = &self.timings;
        match error {
            OpenError::Auth { status, body } => {
                let delay = jitter(t.auth_backoff);
                tracing::error!(vendor = "sprecord", account = %self.account, stream = %stream,
                    retry_in_ms = crate::logging::millis(delay), body = body.as_str(),
                    "SPRecord refused the credentials (HTTP {status}); check this account's credentials: its [[sprecord]] `headers`, or those in its `url`");
                // The row's state and the readiness reason already say
                // "credentials refused": the error says what answered.
                reporter.auth_failed(format!("HTTP {status}: {body}"), delay);
                delay
            }
            // Right after a quick reopen, or a reload or start that closed
            // the account's previous connections, "too many" is most likely
            // one of those, not yet seen closed by the device: the usual
            // backoff, not `busy_backoff` (30 s by default, with no stream
            // of this one open meanwhile; after a reload, none of the
            // account's, and what the device sent then was lost).
            OpenError::TooMany { .. } if own_connection_likely => {
                let delay = next_delay(backoff, t);
                attempt_failed!(retry_log, error.reason(), vendor = "sprecord", account = %self.account, stream = %stream,
                    retry_in_ms = crate::logging::millis(delay), "SPRecord refused the stream as one too many ({error}); a connection of this account it just closed may not be closed there yet");
                reporter.reconnecting(error.reason(), Some(error.to_string()), delay);
                delay
            }
            OpenError::TooMany { .. } => {
                let delay = jitter(t.busy_backoff).max(next_delay(backoff, t));
                attempt_failed!(retry_log, error.reason(), vendor = "sprecord", account = %self.account, stream = %stream,
                    retry_in_ms = crate::logging::millis(delay), "SPRecord refused the stream as one too many ({error}); backing off");
                reporter.reconnecting(error.reason(), Some(error.to_string()), delay);
                delay
            }
            _ => {
                let delay = next_delay(backoff, t);
                attempt_failed!(retry_log, error.reason(), vendor = "sprecord", account = %self.account, stream = %stream,
                    reason = error.reason(), retry_in_ms = crate::logging::millis(delay), "SSE stream could not open: {error}");
                reporter.reconnecting(error.reason(), Some(error.to_string()), delay);
                delay
            }
        }
    }

    /// Reads events until the stream ends or `cancel`; after `cancel`, drains
    /// (see [`next_draining`](Self::next_draining)) before returning `Cancelled`.
    async fn pump(
        &self,
        conn: &mut SseConnection,
        reporter: &UpstreamReporter,
        mut at: Option<Arc<str>>,
        events: &mut u64,
        cancel: &CancellationToken,
    ) -> StreamEnd {
        // What gives up on a commit being retried: DRAIN_DEADLINE after the
        // stop. A submit already handed to the journal is awaited to its
        // answer instead: the writer commits it anyway, and dropped, its
        // id was never handed on (a restart asked for it again) and the log
        // said it lost.
        let give_up = Deadline::new(CancellationToken::new(), Some(cancel), DRAIN_DEADLINE);
        let give_up = &give_up.token;
        // Set once cancelled: received events are still handed on until then.
        let mut drain_until: Option<Instant> = None;
        // `at`: the id of the last event this stream handed on; it opened
        // where the account's streams stood (the `Last-Event-ID` sent, which
        // the events resent before the first `id:` line carry). Shared with
        // the parser's id, not copied: an id may be near 1 MiB and last for
        // every later event.
        loop {
            let item = match drain_until {
                Some(deadline) => match Self::next_draining(conn, deadline).await {
                    Some(item) => item,
                    None => return StreamEnd::Cancelled,
                },
                None => tokio::select! {
                    biased;
                    _ = cancel.cancelled() => {
                        drain_until = Some(Instant::now() + DRAIN_DEADLINE);
                        continue;
                    }
                    next = conn.next_event() => match next {
                        None => return StreamEnd::Closed,
                        Some(Ok(item)) => item,
                        Some(Err(BodyError::Silent(t, turn))) => {
                            return StreamEnd::Silent(t, Some(turn));
                        }
                        Some(Err(BodyError::Transport(e))) => {
                            return StreamEnd::Transport(crate::logging::with_causes(&e));
                        }
                    },
                },
            };
            let (id, handed) = match item {
                SseItem::Event(next) => {
                    if next.lossy {
                        self.warnings.lossy(&self.account, self.index, &next.id);
                    }
                    let handled = self.handle(&next.data, reporter, events, give_up);
                    tokio::pin!(handled);
                    let handled = match drain_until {
                        Some(deadline) => self.answer_by(deadline, handled, &next.id, conn).await,
                        None => tokio::select! {
                            handled = &mut handled => Some(handled),
                            _ = cancel.cancelled() => {
                                // Keep this event: finish it; its retries end with
                                // the drain.
                                let deadline = Instant::now() + DRAIN_DEADLINE;
                                drain_until = Some(deadline);
                                self.answer_by(deadline, handled, &next.id, conn).await
                            }
                        },
                    };
                    let Some(handled) = handled else {
                        return StreamEnd::Cancelled;
                    };
                    let Some(handed) = handled else {
                        // Said, not counted in `dropped_at_stop`: the account's other
                        // streams carry the same events and may have journaled it.
                        let and_after = events_left(conn);
                        tracing::error!(vendor = "sprecord", account = %self.account, stream = self.index,
                            event_id = crate::logging::excerpt(&next.id).as_str(), and_after,
                            "an SSE event received before the stop (and {and_after} more received after it) was not journaled (the journal refused it, or the drain's time ran out); unless another of the account's streams journaled them, they are lost");
                        return StreamEnd::Cancelled;
                    };
                    (next.id, handed)
                }
                SseItem::Skipped { id, lossy } => {
                    if lossy {
                        self.warnings.lossy(&self.account, self.index, &id);
                    }
                    self.too_large(&id);
                    // Resumed after, as a malformed event: a server that
                    // replays history must not send it again (every event
                    // before it was handed on first).
                    (id, HandedOn::Other)
                }
            };
            if !id.is_empty()
                && !is_a_no_op(at.as_ref(), &id, handed, |seq| {
                    self.resume.would_raise_first_copy_seq(seq)
                })
            {
                self.resume.hand_on(at.as_deref(), &id, handed);
                at = Some(id);
            }
        }
    }

    /// `handled` after a stop, waited for until [`ANSWER_GRACE`] past the
    /// drain's `deadline`; `None` (said) if its answer is later still: the
    /// journal has it and commits it when its commit ends, but its id is not
    /// kept, and the events `conn` parsed behind it are not handed on.
    async fn answer_by(
        &self,
        deadline: Instant,
        handled: impl std::future::Future<Output = Option<HandedOn>>,
        id: &str,
        conn: &mut SseConnection,
    ) -> Option<Option<HandedOn>> {
        match tokio::time::timeout_at(deadline + ANSWER_GRACE, handled).await {
            Ok(handled) => Some(handled),
            Err(_) => {
                let and_after = events_left(conn);
                let first = format!(
                    "an SSE event handed to the journal before the stop had no answer within {:?} of it (a slow commit): it is journaled when the commit ends, but its id is not kept, so the next start may ask for it again (a duplicate within the dedup window is dropped)",
                    DRAIN_DEADLINE + ANSWER_GRACE
                );
                // A loss only when events followed it, said as the one of a
                // refused event is.
                if and_after == 0 {
                    tracing::warn!(vendor = "sprecord", account = %self.account, stream = self.index,
                        event_id = crate::logging::excerpt(id).as_str(), and_after, "{first}");
                } else {
                    tracing::error!(vendor = "sprecord", account = %self.account, stream = self.index,
                        event_id = crate::logging::excerpt(id).as_str(), and_after,
                        "{first}; the {and_after} more received after it were not journaled: unless another of the account's streams journaled them, they are lost");
                }
                None
            }
        }
    }

    /// The next event already received, while draining: `None` once none is
    /// parsed or arrives within [`DRAIN_IDLE`], the stream ends or fails, or
    /// `deadline` passes.
    async fn next_draining(conn: &mut SseConnection, deadline: Instant) -> Option<SseItem> {
        let until = deadline.min(Instant::now() + DRAIN_IDLE);
        match tokio::time::timeout_at(until, conn.next_event()).await {
            Ok(Some(Ok(item))) => Some(item),
            _ => None,
        }
    }

    /// Parses one `data:` payload and journals it (the caller bounds how
    /// long it may retry). Hands `data` on: `Some(FirstCopy)` when its event was journaled for
    /// the first time, `Some(Duplicate)` when it was a duplicate,
    /// `Some(Other)` when it was skipped (malformed, a verification
    /// message), `None` once the journal is
    /// closing. `events` counts the payloads that were events, a duplicate
    /// included (a sibling stream's copy is all the second and third streams
    /// see): only those prove a stream useful, not a server's in-band error
    /// text, which reset the backoff and had a broken server reopened every
    /// `backoff_min`.
    async fn handle(
        &self,
        data: &str,
        reporter: &UpstreamReporter,
        events: &mut u64,
        give_up: &CancellationToken,
    ) -> Option<HandedOn> {
        let (event, raw) = match read_payload(data) {
            StreamPayload::Event(event, raw) => (event, raw),
            StreamPayload::Verification => {
                self.warnings.verification(&self.account, self.index);
                return Some(HandedOn::Other);
            }
            StreamPayload::Malformed(why) => {
                self.malformed(&why);
                return Some(HandedOn::Other);
            }
        };
        *events += 1;
        reporter.event_seen();
        self.ctx
            .metrics
            .events_received
            .with_label_values(&[
                Vendor::Sprecord.as_str(),
                &self.account,
                Transport::Sse.as_str(),
            ])
            .inc();
        let incoming = IncomingEvent {
            vendor: Vendor::Sprecord,
            account: self.account.clone(),
            transport: Transport::Sse,
            received_at: OffsetDateTime::now_utc(),
            event,
            raw,
        };
        self.ctx.unread_dates.say(&incoming);
        self.submit(incoming, give_up).await
    }

    /// Submits until journaled (or a duplicate): whether this was its first
    /// copy; retries commit errors with backoff until `give_up` (see
    /// `pump`), which also ends a wait for room in the journal's queue.
    /// `None` once the journal is closing or retrying is given up. A submit
    /// is never cut short once queued: the writer commits it.
    async fn submit(
        &self,
        incoming: IncomingEvent,
        give_up: &CancellationToken,
    ) -> Option<HandedOn> {
        let mut delay = self.timings.backoff_min;
        loop {
            match self
                .ctx
                .ingest
                .submit_unless(incoming.clone(), give_up)
                .await
            {
                Ok(ack) if ack.duplicate => return Some(HandedOn::Duplicate { seq: ack.seq }),
                Ok(ack) => return Some(HandedOn::FirstCopy { seq: ack.seq }),
                Err(IngestError::ShuttingDown) => return None,
                Err(e @ (IngestError::Commit(_) | IngestError::Full)) => {
                    if give_up.is_cancelled() {
                        return None;
                    }
                    self.warnings
                        .journal_refused(&self.account, self.index, &e, delay);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = give_up.cancelled() => return None,
                    }
                    delay = (delay * 2).min(COMMIT_RETRY_MAX);
                }
            }
        }
    }

    fn malformed(&self, why: &str) {
        self.count_malformed();
        self.warnings.malformed(&self.account, self.index, why);
    }

    /// An event skipped as too large, whose id at its end was `id`: counted
    /// as a malformed one, as it cannot be read either.
    fn too_large(&self, id: &str) {
        self.count_malformed();
        self.warnings.too_large(&self.account, self.index, id);
    }

    fn count_malformed(&self) {
        self.ctx
            .metrics
            .upstream_malformed
            .with_label_values(&[Vendor::Sprecord.as_str(), &self.account])
            .inc();
    }
}

/// How many events `conn` parsed behind one a stop gave up on, taken
/// without reading more: they are not journaled either, and were dropped
/// with no word but the first one's. A payload that is no event (malformed,
/// a verification message, one too large) would not have been journaled
/// anyway, and is not counted.
fn events_left(conn: &mut SseConnection) -> usize {
    conn.take_parsed()
        .filter(|item| match item {
            SseItem::Event(next) => matches!(read_payload(&next.data), StreamPayload::Event(..)),
            SseItem::Skipped { .. } => false,
        })
        .count()
}

/// From the account's [`ResumeId::open_point`], the id a stream sends as
/// `Last-Event-ID` and the one its `pump` stands at: one `Arc` when one is
/// sent, as the parser starts with it ([`Endpoint::open`]), so the events
/// resent before the first `id:` line, which share it, go through
/// [`is_a_no_op`] as any other sharing the id handed on last.
pub(super) fn opening_ids(
    (last_event_id, at): (Option<String>, Option<String>),
) -> (Option<Arc<str>>, Option<Arc<str>>) {
    match last_event_id {
        Some(id) => {
            let id: Arc<str> = Arc::from(id);
            (Some(Arc::clone(&id)), Some(id))
        }
        None => (None, at.map(Arc::from)),
    }
}

/// Whether handing `id` on after `at` cannot change the account's point,
/// so the compares of [`ResumeId::hand_on`] (two of an id that may be near
/// 1 MiB) are spared: the event carries the very id this stream handed on
/// last, or opened at when it sent it (no `id:` line since: the parser
/// shares one id until the next, starting with the one sent) and
/// was no first copy, nor a duplicate whose seq `would_raise` (asked only
/// then: [`ResumeId::would_raise_first_copy_seq`], which compares no ids).
/// Then `hand_on` gets `prev == id` with [`HandedOn::Duplicate`] or
/// [`HandedOn::Other`]: no first copy to move the point, and the stream is
/// at the front only if the point is that id already, so the point stays
/// and so does its first-copy seq. Unless the account has none, which
/// happens only once a reload removed it and this stream is stopping: not
/// putting it back is right too. A duplicate that raises the seq is handed
/// on: skipped, its first copy, handed on late by its stream after the
/// point moved past the shared id, took the point back to it.
/// Cost was ~3 MiB per 6-byte `data` event after a 1 MiB id.
pub(super) fn is_a_no_op(
    at: Option<&Arc<str>>,
    id: &Arc<str>,
    handed: HandedOn,
    would_raise: impl FnOnce(u64) -> bool,
) -> bool {
    at.is_some_and(|at| Arc::ptr_eq(at, id))
        && match handed {
            HandedOn::Other => true,
            HandedOn::Duplicate { seq } => !would_raise(seq),
            HandedOn::FirstCopy { .. } => false,
        }
}

fn new_backoff(t: &Timings) -> ExponentialBackoff {
    backoff::ExponentialBackoffBuilder::new()
        .with_initial_interval(t.backoff_min)
        .with_max_interval(t.backoff_max)
        .with_multiplier(2.0)
        // Jittered by `next_delay`, within the configured range.
        .with_randomization_factor(0.0)
        .with_max_elapsed_time(None)
        .build()
}

/// The next exponential delay (never exhausted: max_elapsed_time is None),
/// jittered: uniform over ±50 % of it, cut to `backoff_min..=backoff_max`
/// (the range, not the delay, is cut, so streams that failed together do not
/// all land on the floor or the ceiling together). `backoff_max` is the
/// ceiling the operator set: a delay of up to 1.5 × it was taken before.
fn next_delay(backoff: &mut ExponentialBackoff, t: &Timings) -> Duration {
    let (min, max) = (t.backoff_min, t.backoff_max.max(t.backoff_min));
    let delay = backoff.next_backoff().unwrap_or(max);
    let low = delay.mul_f64(0.5).clamp(min, max);
    let high = delay.mul_f64(1.5).clamp(min, max);
    if low >= high {
        return low;
    }
    rand::rng().random_range(low..=high)
}

/// `base` scaled by a random factor in 0.5..1.5.
fn jitter(base: Duration) -> Duration {
    base.mul_f64(rand::rng().random_range(0.5..1.5))
}

/// Sleeps for `d`; false if cancelled first.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Account `a`, one stream, on a server at `port` of this machine; then
    /// `extra` keys of its table.
    fn one_stream_config(port: u16, extra: &str) -> String {
        format!(
            "[[sprecord]]\naccount = \"a\"\nurl = \"http://127.0.0.1:{port}\"\nstreams = 1\n{extra}"
        )
    }

    /// The account `a`'s events received over SSE.
    fn received_over_sse(relay: &crate::app::Relay) -> prometheus::IntCounter {
        relay
            .ctx
            .metrics
            .events_received
            .with_label_values(&["sprecord", "a", "sse"])
    }

    /// The JSON log lines in `text`.
    fn json_lines(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Stream "0" of account `a` on `url`, for a relay's `ctx` that runs no
    /// SPRecord source of its own: the test drives its `pump`.
    fn supervisor_of(ctx: &Arc<Context>, url: &str) -> StreamSupervisor {
        let text = format!("[[sprecord]]\naccount = \"a\"\nurl = \"{url}\"\n");
        let config = crate::config::Config::from_text("relay.toml", &text, &|_| None).unwrap();
        let config = config.sprecord[0].get_ref();
        let timings = config.timings();
        let reporter = ctx
            .status
            .upstream(Vendor::Sprecord, "a", "0", timings.connect_grace);
        StreamSupervisor {
            index: 0,
            account: "a".into(),
            endpoint: Arc::new(super::super::connection::Endpoint::new(config).unwrap()),
            limiter: ConnLimiter::new(3),
            timings,
            ctx: ctx.clone(),
            reporter: Arc::new(reporter),
            resume: ResumeId::new(ctx, "a", url),
            warnings: StreamWarnings::default(),
            started_at: Instant::now(),
        }
    }

    /// Opens one stream of `supervisor` at its account's point, as `run`
    /// does, to a server that sends `body` and closes, pumps it to its end;
    /// how it ended and the events it counted.
    async fn pump_once(
        supervisor: &StreamSupervisor,
        listener: tokio::net::TcpListener,
        body: Vec<u8>,
    ) -> (StreamEnd, u64) {
        use crate::sources::tests_support::read_head;
        use tokio::io::AsyncWriteExt;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_head(&mut socket).await;
            let mut answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n".to_vec();
            answer.extend(body);
            socket.write_all(&answer).await.unwrap();
        });
        let (last_event_id, at) = opening_ids(supervisor.resume.open_point());
        let mut conn = supervisor
            .endpoint
            .open(&supervisor.limiter, last_event_id.as_ref())
            .await
            .unwrap();
        let mut events = 0;
        let end = supervisor
            .pump(
                &mut conn,
                &supervisor.reporter,
                at,
                &mut events,
                &CancellationToken::new(),
            )
            .await;
        conn.close().await;
        server.await.unwrap();
        (end, events)
    }

    #[test]
    fn every_reason_a_stream_ends_for_is_exported_from_the_start() {
        let every = [
            StreamEnd::Closed,
            StreamEnd::Silent(Duration::from_secs(1), None),
            StreamEnd::Transport(String::new()),
        ];
        for end in every {
            assert!(
                super::super::RECONNECT_REASONS.contains(&end.reason()),
                "{} is not in RECONNECT_REASONS",
                end.reason()
            );
        }
        // A stop is no reconnect.
        assert!(!super::super::RECONNECT_REASONS.contains(&StreamEnd::Cancelled.reason()));
    }

    #[test]
    fn reconnect_delays_stay_within_backoff_min_and_max() {
        let second = Duration::from_secs(1);
        let t = Timings {
            read_timeout: second,
            connect_timeout: second,
            backoff_min: second,
            backoff_max: 4 * second,
            busy_backoff: second,
            auth_backoff: second,
            stagger: second,
            connect_grace: second,
        };
        let mut backoff = new_backoff(&t);
        let delays: Vec<Duration> = (0..200).map(|_| next_delay(&mut backoff, &t)).collect();
        assert!(
            delays
                .iter()
                .all(|d| (t.backoff_min..=t.backoff_max).contains(d)),
            "{delays:?}"
        );
        // Spread at the floor and at the ceiling, not pinned to either: at
        // most a few of the draws fall exactly on a bound.
        let on_a_bound = delays
            .iter()
            .filter(|d| **d == t.backoff_min || **d == t.backoff_max)
            .count();
        assert!(
            on_a_bound < 10,
            "{on_a_bound} of 200 on a bound: {delays:?}"
        );
        // And spread, not one value (the backoff's own steps are few).
        let distinct: std::collections::BTreeSet<&Duration> = delays.iter().collect();
        assert!(distinct.len() > 100, "{delays:?}");
    }

    #[test]
    fn a_stream_that_worked_reopens_quickly_unless_stopped() {
        assert!(reopens_quickly(&StreamEnd::Closed));
        assert!(reopens_quickly(&StreamEnd::Transport(String::new())));
        assert!(reopens_quickly(&StreamEnd::Silent(
            Duration::from_secs(1),
            None
        )));
        assert!(!reopens_quickly(&StreamEnd::Cancelled));
    }

    /// The silence turn stays with a reopen refused as "too many", for at
    /// most ten `read_timeout`s; any other refusal passes it on (review of
    /// round 47: held through an outage, the others' rows said connected).
    #[test]
    fn only_a_refusal_as_too_many_keeps_the_silence_turn_for_a_while() {
        let t = Timings {
            read_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            busy_backoff: Duration::from_secs(30),
            auth_backoff: Duration::from_secs(300),
            stagger: Duration::from_secs(1),
            connect_grace: Duration::from_secs(30),
        };
        let status = |s: u16| axum::http::StatusCode::from_u16(s).unwrap();
        let too_many = OpenError::TooMany {
            status: status(429),
            body: String::new(),
        };
        let now = Some(Instant::now());
        assert!(keeps_the_turn(&too_many, now, &t));
        let long_ago = Instant::now().checked_sub(t.read_timeout * TURN_HELD_AT_MOST);
        assert!(!keeps_the_turn(&too_many, long_ago, &t));
        assert!(!keeps_the_turn(&too_many, None, &t));
        for other in [
            OpenError::Auth {
                status: status(401),
                body: String::new(),
            },
            OpenError::Connect(String::new()),
            OpenError::Timeout(Duration::from_secs(1)),
            OpenError::Status {
                status: status(503),
                body: String::new(),
            },
        ] {
            assert!(!keeps_the_turn(&other, now, &t), "{other:?}");
        }
    }

    #[test]
    fn a_stream_proved_useful_by_an_event_or_by_staying_open() {
        assert!(proved_useful(1, Duration::ZERO));
        assert!(proved_useful(0, USEFUL_AFTER));
        assert!(!proved_useful(0, USEFUL_AFTER - Duration::from_millis(1)));
    }

    /// A server that answers 200, sends what is no event (an in-band error
    /// text, the webhook's verification message, an event too large to
    /// read) and closes: every SSE message counted as an event, so such a
    /// stream proved useful, reset the backoff, and three streams reopened
    /// every 1–1.5 s for good (review of 2026-12-06, seventh round). A
    /// duplicate is an event: the streams after the first see only those.
    #[tokio::test]
    async fn only_events_prove_a_stream_useful_duplicates_included() {
        use crate::app::tests_support::{relay_in, stop};
        use crate::sources::tests_support::listen;
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_in(dir.path(), "").await;
        let verification =
            include_str!("../../../tests/fixtures/vendors/sprecord/verification.json");
        let mut body = format!("data: device offline\n\ndata: {}\n\n", verification.trim());
        body.push_str(&format!(
            "id: 1\ndata: {}\n\n",
            "x".repeat(super::super::sse::MAX_EVENT_BYTES)
        ));
        let (listener, port) = listen().await;
        let supervisor = supervisor_of(&relay.ctx, &format!("http://127.0.0.1:{port}"));
        let (end, events) = pump_once(&supervisor, listener, body.into_bytes()).await;
        assert!(matches!(end, StreamEnd::Closed), "{end:?}");
        assert_eq!(events, 0);
        assert!(!proved_useful(events, Duration::ZERO));
        let malformed = relay
            .ctx
            .metrics
            .upstream_malformed
            .with_label_values(&["sprecord", "a"]);
        assert_eq!(malformed.get(), 2, "the error text and the large event");
        // The same event twice: its first copy and a duplicate.
        let event = r#"{"device_id":"dev-1","event_type":"incoming_call","payload":{"call_id":"1","call_src":"+79829900000","call_dst":"107","trunk":"GSM1"}}"#;
        let body = format!("id: 2\ndata: {event}\n\nid: 3\ndata: {event}\n\n");
        let (listener, port) = listen().await;
        let supervisor = supervisor_of(&relay.ctx, &format!("http://127.0.0.1:{port}"));
        let (end, events) = pump_once(&supervisor, listener, body.into_bytes()).await;
        assert!(matches!(end, StreamEnd::Closed), "{end:?}");
        assert_eq!(events, 2);
        stop(relay).await;
    }

    /// A stop that gives up on an event (here the journal is closed) with
    /// more events parsed behind it, from the same chunk: the line named the
    /// first, and the others vanished without a word (review of 2026-12-06,
    /// seventh round). Now it says how many more events it leaves, not
    /// counting a payload that is no event.
    #[tokio::test]
    async fn an_event_given_up_at_a_stop_says_how_many_were_parsed_behind_it() {
        use crate::app::tests_support::{relay_in, stop};
        use crate::sources::tests_support::listen;
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_in(dir.path(), "").await;
        let ctx = relay.ctx.clone();
        // Its journal closed: every submit is refused as shutting down.
        stop(relay).await;
        let event = |n: u32| {
            format!(
                r#"{{"device_id":"dev-1","event_type":"incoming_call","payload":{{"call_id":"{n}","call_src":"+79829900000","call_dst":"107","trunk":"GSM1"}}}}"#
            )
        };
        let body = format!(
            "id: 1\ndata: {}\n\nid: 2\ndata: {}\n\ndata: device offline\n\nid: 3\ndata: {}\n\n",
            event(1),
            event(2),
            event(3)
        );
        let (listener, port) = listen().await;
        let supervisor = supervisor_of(&ctx, &format!("http://127.0.0.1:{port}"));
        let (captured, guard) = crate::logging::tests_support::capture_json();
        let (end, _) = pump_once(&supervisor, listener, body.into_bytes()).await;
        drop(guard);
        assert!(matches!(end, StreamEnd::Cancelled), "{end:?}");
        let said: Vec<serde_json::Value> = json_lines(&captured.text())
            .into_iter()
            .filter(|l| l["level"] == "ERROR")
            .collect();
        assert_eq!(said.len(), 1, "{said:#?}");
        assert_eq!(said[0]["event_id"], "1", "{said:#?}");
        assert_eq!(said[0]["and_after"], 2, "{said:#?}");
        assert!(
            said[0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("and 2 more received after it")),
            "{said:#?}"
        );
    }

    /// An event whose `payload.date` is day-first (never guessed) is
    /// journaled with the receive time as its `time`, and the stream says
    /// so in one WARN naming the vendor, account, field and date.
    #[tokio::test]
    async fn an_unread_date_is_journaled_at_the_receive_time_and_said() {
        use crate::app::tests_support::{relay_in, stop};
        use crate::sources::tests_support::listen;
        use crate::sources::unread_dates::tests_support::{
            assert_said_once, assert_the_one_event_is_at_its_receive_time,
        };
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_in(dir.path(), "").await;
        let event = r#"{"device_id":"dev-1","event_type":"incoming_call","payload":{"call_id":"1","call_src":"+79829900000","call_dst":"107","trunk":"GSM1","date":"26/03/2021 11:50:30"}}"#;
        let body = format!("id: 1\ndata: {event}\n\n");
        let (listener, port) = listen().await;
        let supervisor = supervisor_of(&relay.ctx, &format!("http://127.0.0.1:{port}"));
        let (captured, guard) = crate::logging::tests_support::capture_json();
        let (end, events) = pump_once(&supervisor, listener, body.into_bytes()).await;
        drop(guard);
        assert!(matches!(end, StreamEnd::Closed), "{end:?}");
        assert_eq!(events, 1);
        assert_the_one_event_is_at_its_receive_time(&relay.ctx.journal);
        assert_said_once(
            &captured.text(),
            "sprecord",
            "a",
            "payload.date",
            "26/03/2021 11:50:30",
        );
        stop(relay).await;
    }

    /// A refusal's body is the device's text (or whatever answers at its
    /// `url`): in the human format it was written bare inside the message,
    /// so ` account="x"` in it read as a field of the line (area review of
    /// 2026-12-06, tenth round). Now it is a quoted `body` field.
    #[tokio::test]
    async fn a_refusals_body_is_a_quoted_field_in_the_human_format() {
        use crate::app::tests_support::{relay_in, stop};
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_in(dir.path(), "").await;
        let supervisor = supervisor_of(&relay.ctx, "http://127.0.0.1:1");
        let refusal = OpenError::Auth {
            status: axum::http::StatusCode::UNAUTHORIZED,
            body: r#"no account="x""#.to_owned(),
        };
        let mut backoff = new_backoff(&supervisor.timings);
        let line = crate::logging::tests_support::logged_human(|| {
            supervisor.refused(
                &refusal,
                "0",
                &supervisor.reporter,
                &mut backoff,
                &mut RetryLog::default(),
                false,
            );
        });
        assert!(
            line.contains(r#" body="no account=\"x\"""#) && !line.contains(r#" account="x""#),
            "{line}"
        );
        stop(relay).await;
    }

    /// What `/status` and the log say of a stream that ended, and the
    /// `reason` label its reconnect is counted under.
    #[test]
    fn each_way_a_stream_ends_has_its_reason_and_words() {
        let ends = [
            (StreamEnd::Cancelled, "shutdown", "shutting down".to_owned()),
            (
                StreamEnd::Closed,
                "disconnect",
                "the server closed the stream".to_owned(),
            ),
            (
                StreamEnd::Transport("reset".into()),
                "disconnect",
                "transport error: reset".to_owned(),
            ),
            (
                StreamEnd::Silent(Duration::from_secs(45), None),
                "timeout",
                "no data or keep-alive for 45s".to_owned(),
            ),
        ];
        for (end, reason, words) in ends {
            assert_eq!((end.reason(), end.describe()), (reason, words));
        }
    }

    #[test]
    fn only_the_id_handed_on_last_without_a_first_copy_is_not_handed_on_again() {
        let id: Arc<str> = Arc::from("7".repeat(1000));
        let raises_none = |_| false;
        assert!(is_a_no_op(
            Some(&id),
            &Arc::clone(&id),
            HandedOn::Other,
            raises_none
        ));
        assert!(is_a_no_op(
            Some(&id),
            &Arc::clone(&id),
            HandedOn::Duplicate { seq: 1 },
            raises_none
        ));
        assert!(!is_a_no_op(
            Some(&id),
            &id,
            HandedOn::FirstCopy { seq: 1 },
            raises_none
        ));
        // A new `id:` line, even one repeating the id, is handed on.
        let read_again: Arc<str> = Arc::from(&*id);
        assert!(!is_a_no_op(
            Some(&id),
            &read_again,
            HandedOn::Other,
            raises_none
        ));
        assert!(!is_a_no_op(None, &id, HandedOn::Other, raises_none));
    }

    /// Events without an `id:` line share the id before them: a duplicate
    /// of a later one, whose first copy no stream has handed on yet, is
    /// handed on so that it raises the point's first-copy seq (skipped, that
    /// first copy, handed on late, took the point back). One whose seq
    /// raises nothing, the common case, is still skipped.
    #[test]
    fn a_duplicate_sharing_the_id_handed_on_last_is_handed_on_when_its_seq_counts() {
        let ids = Arc::new(super::super::resume::ResumeIds::default());
        let point = ResumeId::in_ids(&ids, "a", "http://sp.example/sys/events");
        let id: Arc<str> = Arc::from("5");
        point.hand_on(Some("4"), &id, HandedOn::FirstCopy { seq: 100 });
        let would_raise = |seq| point.would_raise_first_copy_seq(seq);
        assert!(is_a_no_op(
            Some(&id),
            &Arc::clone(&id),
            HandedOn::Duplicate { seq: 100 },
            would_raise
        ));
        assert!(!is_a_no_op(
            Some(&id),
            &Arc::clone(&id),
            HandedOn::Duplicate { seq: 101 },
            would_raise
        ));
        // Not asked for an event passed over: it has no seq to count.
        assert!(is_a_no_op(
            Some(&id),
            &Arc::clone(&id),
            HandedOn::Other,
            |_| unreachable!()
        ));
        // An account without a point (a reload removed it) gets none back.
        let gone = ResumeId::in_ids(&ids, "gone", "http://sp.example/sys/events");
        assert!(is_a_no_op(
            Some(&id),
            &Arc::clone(&id),
            HandedOn::Duplicate { seq: 101 },
            |seq| gone.would_raise_first_copy_seq(seq)
        ));
    }

    /// The review's reconnect: point 5 after e5a (its first copy handed on);
    /// stream B journaled e5b (no `id:` line: 5) first and starves before
    /// handing it on; stream A reconnects with `Last-Event-ID: 5` and the
    /// server sends e5b again, then the malformed 6. A's e5b carried ""
    /// (a new parser's id), so it was never handed on and raised nothing;
    /// A's 6 moved the point on, and B's late first copy of e5b, newer than
    /// e5a's, looked ahead and took the point back to 5.
    #[tokio::test]
    async fn an_event_resent_without_an_id_after_a_reconnect_shares_the_id_resumed_after() {
        use crate::app::tests_support::{relay_in, stop};
        use crate::sources::tests_support::listen;
        let dir = tempfile::tempdir().unwrap();
        let relay = relay_in(dir.path(), "").await;
        let event = |n: u32| {
            format!(
                r#"{{"device_id":"dev-1","event_type":"incoming_call","payload":{{"call_id":"{n}","call_src":"+79829900000","call_dst":"107","trunk":"GSM1"}}}}"#
            )
        };
        let (e5a, e5b) = (event(1), event(2));
        let (listener, port) = listen().await;
        let supervisor = supervisor_of(&relay.ctx, &format!("http://127.0.0.1:{port}"));
        let point = &supervisor.resume;
        let cancel = CancellationToken::new();
        // B's copies, journaled first: e5a's is handed on, e5b's not yet.
        let journal = |data: String| {
            let cancel = cancel.clone();
            let supervisor = &supervisor;
            async move {
                match supervisor
                    .handle(&data, &supervisor.reporter, &mut 0, &cancel)
                    .await
                {
                    Some(HandedOn::FirstCopy { seq }) => seq,
                    other => panic!("{other:?}"),
                }
            }
        };
        let e5a_seq = journal(e5a).await;
        let e5b_seq = journal(e5b.clone()).await;
        point.hand_on(None, "5", HandedOn::FirstCopy { seq: e5a_seq });
        // A reconnects after 5: e5b again, then 6.
        let body = format!("data: {e5b}\n\nid: 6\ndata: device offline\n\n");
        let (end, events) = pump_once(&supervisor, listener, body.into_bytes()).await;
        assert!(matches!(end, StreamEnd::Closed), "{end:?}");
        assert_eq!(events, 1);
        assert_eq!(point.get().as_deref(), Some("6"));
        // B, late.
        point.hand_on(Some("5"), "5", HandedOn::FirstCopy { seq: e5b_seq });
        assert_eq!(point.get().as_deref(), Some("6"), "the point moved back");
        stop(relay).await;
    }

    /// An id near the limit, then many events without one: each was handed
    /// on again (a copy and two compares of the whole id per 6-byte event).
    /// Malformed events, a duplicate and a first copy later, the point is
    /// still the long id; the next `id:` moves it.
    #[tokio::test]
    async fn a_long_id_then_many_events_without_one_keeps_the_point_at_it() {
        use crate::app::tests_support::{relay_in, stop, until};
        use crate::sources::tests_support::{listen, read_head};
        use tokio::io::AsyncWriteExt;
        const BAD: usize = 20_000;
        let event = |n: u32| {
            format!(
                r#"{{"device_id":"dev-1","event_type":"incoming_call","payload":{{"call_id":"{n}","call_src":"+79829900000","call_dst":"107","trunk":"GSM1"}}}}"#
            )
        };
        let long = "7".repeat(1_000_000);
        let mut first = format!("id: {long}\ndata: {}\n\n", event(1)).into_bytes();
        first.extend(b"data\n\n".repeat(BAD));
        first.extend(format!("data: {}\n\ndata: {}\n\n", event(1), event(2)).into_bytes());
        let mut then = format!("id: 9\ndata: {}\n\n", event(3)).into_bytes();
        then.extend(b"data\n\n".repeat(BAD));
        let (listener, port) = listen().await;
        let (go_on, next) = tokio::sync::oneshot::channel::<()>();
        let _server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_head(&mut socket).await;
            let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
            socket.write_all(head).await.unwrap();
            socket.write_all(&first).await.unwrap();
            next.await.unwrap();
            socket.write_all(&then).await.unwrap();
            std::future::pending::<()>().await;
        });
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let config = one_stream_config(port, "");
        let relay = relay_in(dir.path(), &config).await;
        let point = ResumeId::new(&relay.ctx, "a", &url);
        let metrics = &relay.ctx.metrics;
        let received = received_over_sse(&relay);
        let malformed = metrics
            .upstream_malformed
            .with_label_values(&["sprecord", "a"]);
        let done = |events: u64, bad: usize| {
            let (received, malformed) = (received.clone(), malformed.clone());
            move || received.get() == events && malformed.get() == bad as u64
        };
        until("the first part read", Duration::from_secs(30), done(3, BAD)).await;
        assert!(
            point.open_point().1 == Some(long),
            "the point is not the long id"
        );
        go_on.send(()).unwrap();
        until(
            "the second part read",
            Duration::from_secs(30),
            done(4, 2 * BAD),
        )
        .await;
        assert_eq!(
            point.open_point(),
            (Some("9".to_owned()), Some("9".to_owned()))
        );
        stop(relay).await;
    }

    /// A quiet device whose streams close for silence after each event:
    /// every end of a stream that had worked was a WARN, and every open an
    /// INFO, all night. Now the first end is said at info, and the rest
    /// within `REPEAT_EVERY` are at debug with their opens.
    #[tokio::test]
    async fn a_stream_that_works_and_closes_for_silence_is_said_once() {
        use crate::app::tests_support::{relay_in, stop, until};
        use crate::sources::tests_support::{listen, read_head};
        use tokio::io::AsyncWriteExt;
        let (captured, guard) = crate::logging::tests_support::capture_json();
        let (listener, port) = listen().await;
        let _server = tokio::spawn(async move {
            for n in 1u32.. {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    read_head(&mut socket).await;
                    let event = format!(
                        r#"{{"device_id":"dev-1","event_type":"incoming_call","payload":{{"call_id":"{n}","call_src":"+79829900000","call_dst":"107","trunk":"GSM1"}}}}"#
                    );
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nid: {n}\ndata: {event}\n\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    // Then nothing: no keep-alive, as a quiet device.
                    std::future::pending::<()>().await;
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let config = one_stream_config(
            port,
            "read_timeout = \"100ms\"\nbackoff_min = \"10ms\"\nbackoff_max = \"20ms\"\n",
        );
        let relay = relay_in(dir.path(), &config).await;
        let received = received_over_sse(&relay);
        until(
            "six streams that each worked",
            Duration::from_secs(20),
            || received.get() >= 6,
        )
        .await;
        stop(relay).await;
        drop(guard);
        let lines = json_lines(&captured.text());
        let said = |level: &str, starts: &str| {
            lines
                .iter()
                .filter(|l| l["level"] == level)
                .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(starts)))
                .count()
        };
        assert_eq!(said("WARN", "SSE stream ended"), 0, "{lines:#?}");
        assert_eq!(said("INFO", "SSE stream ended"), 1, "{lines:#?}");
        // Six opens at least (an event each), two of them said (a third
        // after an open that failed, should a loaded machine make one).
        let opens = said("INFO", "SSE stream open");
        assert!((2..=3).contains(&opens), "{opens}: {lines:#?}");
    }

    /// A server repeating the webhook verification message: a WARN line
    /// each, as fast as it could write them; one per `WARN_EVERY` now, as
    /// the stream's other warnings.
    #[tokio::test]
    async fn a_repeated_verification_message_is_said_once() {
        use crate::app::tests_support::{relay_in, stop, until};
        use crate::sources::tests_support::{listen, read_head};
        use tokio::io::AsyncWriteExt;
        let (captured, guard) = crate::logging::tests_support::capture_json();
        let verification =
            include_str!("../../../tests/fixtures/vendors/sprecord/verification.json");
        let event = r#"{"device_id":"dev-1","event_type":"incoming_call","payload":{"call_id":"1","call_src":"+79829900000","call_dst":"107","trunk":"GSM1"}}"#;
        let mut body = format!("data: {}\n\n", verification.trim()).repeat(100);
        body.push_str(&format!("id: 1\ndata: {event}\n\n"));
        let (listener, port) = listen().await;
        let _server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_head(&mut socket).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
            socket
                .write_all(format!("{head}{body}").as_bytes())
                .await
                .unwrap();
            std::future::pending::<()>().await;
        });
        let dir = tempfile::tempdir().unwrap();
        let config = one_stream_config(port, "");
        let relay = relay_in(dir.path(), &config).await;
        let received = received_over_sse(&relay);
        until("the event after them", Duration::from_secs(10), || {
            received.get() == 1
        })
        .await;
        stop(relay).await;
        drop(guard);
        let said: Vec<serde_json::Value> = json_lines(&captured.text())
            .into_iter()
            .filter(|l: &serde_json::Value| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("verification message"))
            })
            .collect();
        assert_eq!(said.len(), 1, "{said:#?}");
        assert_eq!(said[0]["level"], "WARN", "{said:#?}");
    }

    /// A stop while an event's commit takes longer than the drain's
    /// deadline: the submit, already handed to the journal, is awaited, so
    /// the event's id is kept for the next start. Before, the deadline
    /// dropped it: the writer committed the event anyway, but its id was
    /// not handed on (the next start asked for it again, journaled a second
    /// time past the dedup window), and the log said it was lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_submit_slower_than_the_drain_deadline_is_awaited_and_its_id_kept() {
        use crate::app::tests_support::{relay_in, until};
        use crate::sources::tests_support::{listen, read_head};
        use tokio::io::AsyncWriteExt;
        let (listener, port) = listen().await;
        let (holding, writes_held) = tokio::sync::oneshot::channel();
        let _server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_head(&mut socket).await;
            // Sent once the journal takes no write: its commit waits.
            writes_held.await.unwrap();
            let event = r#"{"device_id":"dev-1","event_type":"incoming_call","payload":{"call_id":"1","call_src":"+79829900000","call_dst":"107","trunk":"GSM1"}}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\nid: 7\ndata: {event}\n\n"
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            std::future::pending::<()>().await;
        });
        let dir = tempfile::tempdir().unwrap();
        let config = one_stream_config(port, "");
        let relay = relay_in(dir.path(), &config).await;
        let (release, held) = std::sync::mpsc::channel();
        let journal = relay.ctx.journal.clone();
        let holder = tokio::task::spawn_blocking(move || journal.hold_writes_until(holding, held));
        let received = received_over_sse(&relay);
        until("the event read", Duration::from_secs(10), || {
            received.get() == 1
        })
        .await;
        let stopped_at = tokio::time::Instant::now();
        relay.shutdown();
        // Past the drain's deadline, within its grace for an answer. Nothing
        // happens at the deadline now to wait for: waited out, for the old
        // drop. The deadline starts with the stop (each source's cancel
        // token is a child of the shutdown token, so the SSE drain starts
        // at once, not after the HTTP drain): a second past it, counted from
        // the shutdown, leaves two of the answer's grace's three seconds.
        // From before the stop, not after `shutdown` returned: a late
        // wake-up on busy cores would eat the grace's two seconds.
        tokio::time::sleep_until(stopped_at + DRAIN_DEADLINE + Duration::from_secs(1)).await;
        release.send(()).unwrap();
        holder.await.unwrap();
        relay.wait().await.unwrap();
        let journal = crate::app::tests_support::journal_left_in(dir.path());
        assert_eq!(journal.last_seq(), 1, "journaled once");
        let ids: Vec<String> = journal
            .sse_resume_ids()
            .unwrap()
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        assert_eq!(ids, ["7"], "the event's id kept for the next start");
    }
}
