//! One Voip24h session on an open [`Link`]: sign once the namespace is
//! connected, keep it alive with `hello`, journal every `response` and every
//! event it does not know (as the call event it carries when its first
//! argument reads as one with a call id, else as `vendor.unknown`; the
//! session's own events, `say`, `signing`, `connecting`, …, never), and end on
//! the first sign that the session is over.
//!
//! The account's key and secret never reach the journal in an event the
//! session does not know, from whenever in the session it comes: they are
//! `***` in its name and arguments, as in what the log and `/status` show.
//!
//! Guarantees: `sign` is sent only after the server acknowledged the namespace
//! (a socket.io 4 server drops a connection that emits earlier); two `hello`s
//! are never less than 10 s apart (the vendor: a loop under 10 s congests the
//! socket); a `say` is answered with a `hello` at once when the last one is
//! that old, else as soon as it is (early `say`s coalesce into one `hello`),
//! and a `hello` goes out anyway `hello_interval` after the last one; no
//! socket.io frame for 2 × `hello_interval` + 5 s (the Engine.IO heartbeat
//! does not count) ends the session as dead, and so does a namespace the
//! server has not opened by then. `response`s are journaled in order, those
//! already arrived together in one commit (up to [`GROUP_MAX`]). On a stop
//! (reload, shutdown) every `response` that has reached the relay is
//! journaled before the session returns, for at most DRAIN_LIMIT past the
//! stop (however fast the server still sends); what is left then is counted
//! and logged, including what the connection had read beyond the session's
//! queue. A session the server ends with one of its events (`Bandwidth`,
//! `disconnect`, …) is left the same way, reading for at most DRAIN_LIMIT:
//! what the server sent before it read the leave is journaled too. However a
//! session ends, the connection then stops reading and everything it had
//! read is journaled before the session returns (a stop's drain bounds it).
//! A session that ends but by a stop is shown down (`backing_off`, or
//! `auth_failed` for a refused sign-in, with the end's detail as the error)
//! as soon as its end is known, before that journaling, which lasts as long
//! as the journal refuses commits.
//! The session never closes the link itself: the caller does, so that
//! closing is always awaited in one place.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{SignForm, Voip24hConfig};
use super::deliver::{
    Malformed, Received, ShuttingDown, carries_a_call_event, count_malformed, deliver_all,
    payload_limit_of, unrecognised, unrecognised_len, without_secrets,
};
use super::engine_io::STOP_READING_WAIT;
use super::keep_alive::{HelloClock, KeepAlive};
use super::link::{Inbound, Link, LinkError, Masked};
use super::wire::Arg;
use crate::app::Context;
use crate::sources::deadline::Deadline;
use crate::status::{ConnState, UpstreamReporter};

mod end;
use end::is_unknown;
pub use end::{EndReason, SessionEnd};

/// How long after a stop the session may still spend journaling the events it
/// had received: inside SourceManager's 10 s stop timeout with what follows
/// it (a group already queued, up to 2 s more; the connection's goodbye, up
/// to 0.5 s; counting what is left, 0.25 s; the link's own close, up to
/// 4 s). Also how long a session the server
/// ended reads on after its leave.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// After the leave (`41`, at a stop or once the server ended the session),
/// the connection is read until nothing arrived for this long: a server
/// flushing what it had queued is done by then. The websocket's close
/// follows, and reading goes on until the server's close answers it.
const DRAIN_QUIET: Duration = Duration::from_millis(250);

/// Most `response`s journaled in one commit: a burst is taken as it arrives
/// (one commit each, a session journaled about 2,900 a second, and a stop
/// under a burst ran out of time to journal what it had received).
const GROUP_MAX: usize = 256;
/// How long a leave waits for its socket.io disconnect (`41`) to be written
/// before it drains anyway.
const LEAVE_WAIT: Duration = Duration::from_millis(250);

/// How many distinct unknown event names a session logs: the names come from
/// the server, so the set is bounded.
const UNKNOWN_NAMES_LOGGED: usize = 16;

/// The vendor's floor for the say/hello loop: "under 10 s congests the
/// socket". Config keeps `hello_interval` at 10 s or more; the gap used is the
/// smaller of the two only so that tests can shorten both.
const MIN_HELLO_GAP: Duration = Duration::from_secs(10);

/// How long without any frame before a session is taken as dead.
pub fn silence_limit(hello_interval: Duration) -> Duration {
    hello_interval * 2 + Duration::from_secs(5)
}

pub struct Session<'a> {
    pub config: &'a Voip24hConfig,
    pub ctx: &'a Arc<Context>,
    pub reporter: &'a UpstreamReporter,
    pub cancel: &'a CancellationToken,
    /// Names of unknown events already logged in this session.
    pub unknown_logged: Mutex<HashSet<String>>,
    pub warnings: super::warnings::SessionWarnings,
    /// The account's key and secret, masked in what the server sends
    /// ([`Masked::of`] its config): their forms are found once per session,
    /// not per event.
    pub masked: Masked,
}

impl Session<'_> {
    fn account(&self) -> &str {
        self.config.account.get_ref()
    }

    fn sign_payload(&self) -> Value {
        let key = self.config.key.expose();
        match self.config.sign {
            SignForm::Key => Value::String(key.to_owned()),
            SignForm::Object => json!({"voip": key, "secret": self.config.secret.expose()}),
        }
    }

    /// Runs the session on `link` until it ends. Events the server sent before
    /// the end are journaled even when the session ends early (a failed
    /// `hello` after the server hung up must not drop `response`s queued behind
    /// the `say` it answered), and when the source stops (reload, shutdown):
    /// the server sent those before it saw us go and will not send them again.
    pub async fn run(&self, link: &mut Link) -> SessionEnd {
        // Events received before a stop get DRAIN_LIMIT past it to reach the
        // journal (also when a commit is being retried): bounded, so that a
        // reload or shutdown is never held by a busy or failing journal.
        let deadline = Deadline::new(CancellationToken::new(), Some(self.cancel), DRAIN_LIMIT);
        let drain_over = &deadline.token;
        let end = self.run_until_end(link, drain_over).await;
        if end.reason == EndReason::Cancelled {
            self.leave_in_order(link, drain_over, drain_over).await;
        } else {
            // The key has no session at the vendor from here, and journaling
            // what was read may take as long as the journal refuses: shown
            // connected meanwhile, the account was not paged nor its
            // readiness failed. The state and words its reconnect will give.
            let state = if end.reason == EndReason::AuthRefused {
                ConnState::AuthFailed
            } else {
                ConnState::BackingOff
            };
            self.reporter.ended(state, end.detail.clone());
            if end.reason.leaves_the_link_open() {
                // The server ended the session and may have sent more before
                // it reads our leave; the close alone would read that off and
                // lose it, uncounted. Reading is bounded as at a stop.
                let reading = Deadline::new(drain_over.child_token(), None, DRAIN_LIMIT);
                self.leave_in_order(link, &reading.token, drain_over).await;
            }
        }
        self.journal_the_rest(link, drain_over).await;
        // What a stop's drain or a closing journal left; rarely, what a
        // connection stuck in a write hands on too late (see
        // `journal_the_rest`): lost either way, so counted.
        let left = count_left_behind(link).await;
        self.report_lost(left);
        end
    }

    /// Once reading is over: the connection stops reading and hands on all
    /// it had read, its backlog beyond the session's queue too, then that it
    /// closed; all of it is journaled, however long the journal takes, as a
    /// session's events always are (a stop's drain still bounds it). A
    /// connection that cannot take the word (stuck in a write to a server
    /// that reads nothing) gives what is queued.
    async fn journal_the_rest(&self, link: &mut Link, drain_over: &CancellationToken) {
        let emitter = link.emitter();
        // Its goodbye is bounded; the command's wait behind a write is not.
        if tokio::time::timeout(STOP_READING_WAIT * 2, emitter.stop_reading())
            .await
            .is_err()
        {
            self.deliver_queued(link, drain_over).await;
            return;
        }
        self.drain_while(link, drain_over, drain_over, None).await;
    }

    /// Once the session can journal no more (the journal is closing): the
    /// `response`s it received and did not journal — `abandoned` of a group
    /// whose commit was being retried, and what is queued — are lost.
    fn report_left_behind(&self, link: &mut Link, abandoned: u64) {
        let mut left = abandoned;
        while let Some(inbound) = link.try_recv() {
            left += u64::from(is_to_journal(&inbound));
        }
        self.report_lost(left);
    }

    /// `left` `response`s received and not journaled are lost.
    fn report_lost(&self, left: u64) {
        super::deliver::count_lost_at_stop(self.ctx, self.account(), left);
    }

    /// Journals the `response`s already received and not yet handled: those
    /// queued now (and the groups they head), not what the connection's
    /// reader goes on reading from a server that still sends; until a stop's
    /// drain is over, when what is left is counted as lost.
    async fn deliver_queued(&self, link: &mut Link, drain_over: &CancellationToken) {
        let mut queued = link.queued();
        while queued > 0 && !drain_over.is_cancelled() {
            let Some(inbound) = link.try_recv() else {
                return;
            };
            queued -= 1;
            if !self.deliver_inbound(link, inbound, drain_over).await {
                return;
            }
        }
    }

    /// Leaves in order and journals every `response` that has reached us,
    /// in order, including those still on their way: the socket.io leave
    /// (`41`) is sent, the connection read until nothing came for
    /// DRAIN_QUIET, then the websocket's close is sent and reading goes on
    /// until the server's close answers it (everything it sent before it
    /// read ours comes first); no longer than `reading_over`. The close's
    /// answer, not the quiet spell alone: over a link whose round trip is
    /// longer than the spell, an event the server sent just before it read
    /// the `41` came after the spell, and the close read it off and lost it.
    /// `drain_over` gives up on a commit being retried.
    async fn leave_in_order(
        &self,
        link: &mut Link,
        reading_over: &CancellationToken,
        drain_over: &CancellationToken,
    ) {
        // Bounded: a socket the server does not read would hold the `41`
        // and take the whole drain.
        let emitter = link.emitter();
        tokio::select! {
            _ = tokio::time::timeout(LEAVE_WAIT, emitter.leave()) => {}
            () = reading_over.cancelled() => {}
        }
        if !self
            .drain_while(link, reading_over, drain_over, Some(DRAIN_QUIET))
            .await
        {
            return;
        }
        tokio::select! {
            _ = emitter.finish() => {}
            () = reading_over.cancelled() => return,
        }
        self.drain_while(link, reading_over, drain_over, None).await;
    }

    /// Journals what arrives until the link closes, reading is over or the
    /// journal is closing (false), or nothing came for `quiet` (true).
    async fn drain_while(
        &self,
        link: &mut Link,
        reading_over: &CancellationToken,
        drain_over: &CancellationToken,
        quiet: Option<Duration>,
    ) -> bool {
        loop {
            // The select below prefers what has arrived: under a steady
            // stream it would never see the deadline.
            if reading_over.is_cancelled() {
                return false;
            }
            let inbound = tokio::select! {
                biased;
                inbound = link.recv() => inbound,
                _ = reading_over.cancelled() => return false,
                _ = tokio::time::sleep(quiet.unwrap_or(DRAIN_LIMIT)), if quiet.is_some() => return true,
            };
            if !self.deliver_inbound(link, inbound, drain_over).await {
                return false;
            }
        }
    }

    /// Journals `inbound` if it is a `response` or an unknown event; false once nothing more can be
    /// delivered (the link closed, the journal is closing, the drain is over).
    async fn deliver_inbound(
        &self,
        link: &mut Link,
        inbound: Inbound,
        drain_over: &CancellationToken,
    ) -> bool {
        match inbound {
            Inbound::Event { name, args, at } if is_journaled(&name) => {
                // Draining after the session's end: no more `hello`s.
                match self
                    .deliver_event(link, &name, (args, at), drain_over, None)
                    .await
                {
                    Ok(()) => true,
                    Err(ShuttingDown { abandoned }) => {
                        self.report_left_behind(link, abandoned);
                        false
                    }
                }
            }
            Inbound::Closed { .. } => false,
            Inbound::Malformed(_) => {
                count_malformed(self.ctx, self.account());
                true
            }
            _ => true,
        }
    }

    /// Journals `group` in one commit; the upstream counts as having sent
    /// an event when one of them was journaled or a duplicate.
    async fn journal(
        &self,
        group: &[Received],
        drain_over: &CancellationToken,
        keep_alive: Option<&mut KeepAlive<'_>>,
    ) -> Result<(), ShuttingDown> {
        let journaled = deliver_all(
            self.ctx,
            self.account(),
            group,
            drain_over,
            keep_alive,
            &self.warnings,
            &self.masked,
        )
        .await?;
        if journaled > 0 {
            self.reporter.event_seen();
        }
        Ok(())
    }

    /// Journals the `response` whose arguments are `first` together with the
    /// `response`s right behind it that have already arrived (up to
    /// [`GROUP_MAX`]), in one commit, in order. Whatever else comes after
    /// them is put back on the link, to be handled next as usual.
    async fn deliver_responses(
        &self,
        link: &mut Link,
        first: Received,
        drain_over: &CancellationToken,
        keep_alive: Option<&mut KeepAlive<'_>>,
    ) -> Result<(), ShuttingDown> {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match link.try_recv() {
                Some(Inbound::Event { name, args, at }) if name == "response" => {
                    group.push((args, at));
                }
                Some(other) => {
                    link.put_back(other);
                    break;
                }
                None => break,
            }
        }
        self.journal(&group, drain_over, keep_alive).await
    }

    /// Journals a `response` (with those already queued behind it) or an
    /// event the session does not know.
    async fn deliver_event(
        &self,
        link: &mut Link,
        name: &str,
        received: Received,
        drain_over: &CancellationToken,
        keep_alive: Option<&mut KeepAlive<'_>>,
    ) -> Result<(), ShuttingDown> {
        if name == "response" {
            self.deliver_responses(link, received, drain_over, keep_alive)
                .await
        } else if !is_journaled(name) {
            // The session's own (`connecting`, say): not the vendor's events.
            // It fell through to here and went out as `vendor.unknown`.
            Ok(())
        } else {
            self.deliver_unrecognised(name, received, drain_over, keep_alive)
                .await
        }
    }

    /// Journals an event the session does not know, the account's key and
    /// secret masked in its name and arguments ([`without_secrets`]): as the
    /// call event its first argument carries, else as `vendor.unknown`
    /// ([`unrecognised`]); each name is logged once per session (at most
    /// [`UNKNOWN_NAMES_LOGGED`] names), so that an operator can ask the vendor
    /// what it is without the log repeating it per event. Before `connected`
    /// too: an undocumented refusal of the sign-in comes then, and is the
    /// vendor's word on it, relayed as any unknown event is (the contract
    /// drops none); masked, it holds nothing the account's screens may not see.
    async fn deliver_unrecognised(
        &self,
        name: &str,
        (args, at): Received,
        drain_over: &CancellationToken,
        keep_alive: Option<&mut KeepAlive<'_>>,
    ) -> Result<(), ShuttingDown> {
        let masked = &self.masked;
        let limit = payload_limit_of(self.ctx);
        // The size as received, before masking: it allocates per token,
        // seconds of CPU for a 16 MiB frame, and one over the limit is not
        // journaled as `vendor.unknown`. Only the first argument may still
        // be, as the call event it carries: that alone is masked, if it
        // fits.
        let size = unrecognised_len(name, &args);
        let oversized = size as u64 > limit;
        let args = if oversized {
            let first = args.into_iter().take(1);
            without_secrets(
                first.filter(|a| a.json().len() as u64 <= limit).collect(),
                masked,
            )
        } else {
            without_secrets(args, masked)
        };
        let name = masked.mask(name);
        let name = name.as_str();
        let first_of_its_name = {
            let mut logged = self
                .unknown_logged
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            logged.len() < UNKNOWN_NAMES_LOGGED && logged.insert(name.to_owned())
        };
        let a_call = carries_a_call_event(self.ctx, &args);
        if first_of_its_name {
            let what = if a_call {
                "a socket.io event of another name than `response` carries a call event: journaled as one"
            } else {
                "relaying an unknown socket.io event as vendor.unknown"
            };
            // The server's word, up to the wire's bound on a name: an
            // excerpt is enough to ask the vendor about it.
            tracing::info!(
                vendor = "voip24h",
                account = self.account(),
                event = crate::logging::excerpt(name).as_str(),
                "{what}"
            );
        }
        if a_call {
            let group = [(args, at)];
            return self.journal(&group, drain_over, keep_alive).await;
        }
        if oversized {
            count_malformed(self.ctx, self.account());
            let why = Malformed::TooLarge(size, limit);
            self.warnings.malformed_response(self.account(), &why);
            return Ok(());
        }
        let Some(wrapped) = unrecognised(name, &args) else {
            count_malformed(self.ctx, self.account());
            return Ok(());
        };
        let group = [(vec![wrapped], at)];
        self.journal(&group, drain_over, keep_alive).await
    }

    /// The session's loop. `drain_over` (not the source's cancel) is what
    /// gives up on a `response` whose commit is being retried: a stop while it
    /// is retried must not drop it before DRAIN_LIMIT.
    async fn run_until_end(&self, link: &mut Link, drain_over: &CancellationToken) -> SessionEnd {
        let hello_interval = self.config.hello_interval.get_ref().get();
        let silence = silence_limit(hello_interval);
        let mut last_frame = Instant::now();
        let min_gap = MIN_HELLO_GAP.min(hello_interval);
        let mut hellos = HelloClock::default();
        let mut signed = false;
        let mut namespace_connected = false;
        let mut connected_at: Option<Instant> = None;
        // The server's pings keep the connection alive while it never opens
        // the namespace (a middleware that never answers): bounded apart.
        let namespace_deadline = Instant::now() + silence;
        let end = |reason, detail: String, ns, at: Option<Instant>| SessionEnd {
            reason,
            detail,
            namespace_connected: ns,
            connected_for: at.map(|t: Instant| t.elapsed()),
        };
        loop {
            // Checked here as well as in the select, which prefers what has
            // arrived: a server flooding events cannot hold off a stop, and
            // whatever is left is journaled by `leave_in_order`.
            if self.cancel.is_cancelled() {
                return end(
                    EndReason::Cancelled,
                    "stopping".into(),
                    namespace_connected,
                    connected_at,
                );
            }
            let watchdog = last_frame + silence;
            let mut wake = hellos.next.map_or(watchdog, |h| h.min(watchdog));
            if !namespace_connected {
                if Instant::now() >= namespace_deadline {
                    let detail =
                        format!("the server did not open the namespace within {silence:?}");
                    return end(EndReason::ConnectTimeout, detail, false, None);
                }
                wake = wake.min(namespace_deadline);
            }
            let inbound = tokio::select! {
                biased;
                inbound = link.recv() => Some(inbound),
                _ = self.cancel.cancelled() => continue,
                _ = tokio::time::sleep_until(wake) => None,
            };
            match inbound {
                // Before the namespace opens, its own deadline (at least as
                // early) ends the session with the reason that fits.
                None if Instant::now() >= watchdog && namespace_connected => {
                    let detail = format!(
                        "no socket.io frame for {silence:?} (the server answers no `hello` \
                         and sends no `say`; its Engine.IO heartbeat alone does not count)"
                    );
                    return end(EndReason::Silent, detail, namespace_connected, connected_at);
                }
                // A hello is due: sent below.
                None => {}
                Some(inbound) => {
                    // The Engine.IO heartbeat (`Alive`) does not count: a
                    // server whose socket.io side hangs keeps it going, and
                    // would look connected for ever.
                    if !matches!(inbound, Inbound::Alive) {
                        last_frame = Instant::now();
                    }
                    match inbound {
                        Inbound::Alive => {}
                        // Whenever it comes (before `connected` too), a frame
                        // that cannot be read says nothing about the key or
                        // the connection: skip it, as the Engine.IO 3 and 4
                        // transports alike report it.
                        Inbound::Malformed(why) => {
                            count_malformed(self.ctx, self.account());
                            self.warnings.malformed_frame(self.account(), &why);
                        }
                        Inbound::Closed { why, refused } => {
                            // After `sign` and before `connected`, a refused
                            // namespace is the sign-in's refusal, as an
                            // `error` event then is: not a dropped
                            // connection. (A 2.x server's
                            // `socket.error(msg)` comes as that event; a 3+
                            // server refusing that way ends the connection.)
                            let reason = if signed && connected_at.is_none() && refused {
                                EndReason::AuthRefused
                            } else {
                                EndReason::Closed
                            };
                            return end(reason, why, namespace_connected, connected_at);
                        }
                        Inbound::NamespaceConnected => {
                            if signed {
                                continue;
                            }
                            namespace_connected = true;
                            self.reporter.set_state(ConnState::Signing);
                            if let Err(e) =
                                emit(link, "sign", Some(self.sign_payload()), silence).await
                            {
                                return end(
                                    EndReason::Closed,
                                    format!("sign: {e}"),
                                    true,
                                    connected_at,
                                );
                            }
                            signed = true;
                            hellos.next = Some(Instant::now() + hello_interval);
                        }
                        Inbound::Event { name, args, at } => match name.as_str() {
                            "say" => {
                                // Answered as soon as the gap since the last
                                // hello allows: at once, or when it ends.
                                let allowed = hellos.last.map_or(Instant::now(), |t| t + min_gap);
                                hellos.next = Some(hellos.next.map_or(allowed, |h| h.min(allowed)));
                            }
                            // Only on the way in: once `connected`, nothing
                            // brings the state back, and a server checking the
                            // key again would leave the session shown down
                            // (and paged) while its events flow.
                            "signing" => {
                                if connected_at.is_none() {
                                    self.reporter.set_state(ConnState::Signing);
                                }
                            }
                            "connected" | "connection" => {
                                if connected_at.is_none() {
                                    connected_at = Some(Instant::now());
                                    self.reporter.set_state(ConnState::Connected);
                                    tracing::info!(
                                        vendor = "voip24h",
                                        account = self.account(),
                                        "session connected"
                                    );
                                }
                            }
                            "error" => {
                                let reason = if signed && connected_at.is_none() {
                                    EndReason::AuthRefused
                                } else {
                                    EndReason::Error
                                };
                                return end(
                                    reason,
                                    describe(&name, &args, &self.masked),
                                    namespace_connected,
                                    connected_at,
                                );
                            }
                            other => {
                                if let Some(reason) = EndReason::from_event(other) {
                                    return end(
                                        reason,
                                        describe(&name, &args, &self.masked),
                                        namespace_connected,
                                        connected_at,
                                    );
                                }
                                // `response`, or an event this does not know;
                                // `hello`s go on while the journal refuses it.
                                let mut keep_alive = KeepAlive {
                                    emitter: link.emitter(),
                                    clock: &mut hellos,
                                    interval: hello_interval,
                                    limit: silence,
                                };
                                let delivered = self
                                    .deliver_event(
                                        link,
                                        &name,
                                        (args, at),
                                        drain_over,
                                        Some(&mut keep_alive),
                                    )
                                    .await;
                                drop(keep_alive);
                                if let Err(ShuttingDown { abandoned }) = delivered {
                                    self.report_left_behind(link, abandoned);
                                    return end(
                                        EndReason::Cancelled,
                                        "journal closing".into(),
                                        namespace_connected,
                                        connected_at,
                                    );
                                }
                                // A commit retried while the journal failed is
                                // our wait, not the server's silence.
                                last_frame = Instant::now();
                            }
                        },
                    }
                }
            }
            if hellos.next.is_some_and(|h| Instant::now() >= h) {
                if let Err(e) = emit(link, "hello", None, silence).await {
                    return end(
                        EndReason::Closed,
                        format!("hello: {e}"),
                        namespace_connected,
                        connected_at,
                    );
                }
                // The proactive timer counts from this hello, whatever
                // prompted it, so it never follows a `say`'s answer closely.
                hellos.sent(hello_interval);
            }
        }
    }
}

/// Whether the session journals the event `name`: a `response`, or an
/// event it does not know.
fn is_journaled(name: &str) -> bool {
    name == "response" || is_unknown(name)
}

/// Whether `inbound` is an event the session journals.
fn is_to_journal(inbound: &Inbound) -> bool {
    matches!(inbound, Inbound::Event { name, .. } if is_journaled(name))
}

/// What the connection still hands on once the session journals no more
/// (a stop's drain ran out, the journal is closing): its queue and, once it
/// stopped reading, its backlog, up to its end. Bounded by [`LEAVE_WAIT`]:
/// a connection stuck in a write hands on nothing more.
async fn count_left_behind(link: &mut Link) -> u64 {
    let until = Instant::now() + LEAVE_WAIT;
    let mut left = 0;
    loop {
        let next = match link.try_recv() {
            Some(inbound) => inbound,
            None => match tokio::time::timeout_at(until, link.recv()).await {
                Ok(inbound) => inbound,
                Err(_) => return left,
            },
        };
        match next {
            Inbound::Closed { .. } => return left,
            other => left += u64::from(is_to_journal(&other)),
        }
        if Instant::now() >= until {
            return left;
        }
    }
}

/// Why an [`emit`] did not go out.
#[derive(Debug, thiserror::Error)]
enum EmitError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("send blocked for {0:?}")]
    Blocked(Duration),
}

/// Emits, but gives up after `limit`: a server that stopped reading must not
/// hold the session (and its watchdog) in a blocked write.
async fn emit(
    link: &Link,
    event: &str,
    arg: Option<Value>,
    limit: Duration,
) -> Result<(), EmitError> {
    match tokio::time::timeout(limit, link.emit(event, arg)).await {
        Ok(emitted) => Ok(emitted?),
        Err(_) => Err(EmitError::Blocked(limit)),
    }
}

/// `name: first argument`, short and with the account's secrets masked,
/// for logs and `/status`.
fn describe(name: &str, args: &[Arg], masked: &Masked) -> String {
    let text = match args.first() {
        Some(arg) => arg.as_string().unwrap_or_else(|| arg.json().to_owned()),
        None => String::new(),
    };
    let text = masked.server_text(&text);
    if text.is_empty() {
        format!("server sent `{name}`")
    } else {
        format!("server sent `{name}`: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_refusal_has_a_reason() {
        for (name, label) in [
            ("Bandwidth", "bandwidth"),
            ("connectionRefused", "connection_refused"),
            ("connectTimeout", "connect_timeout"),
            ("connectEnd", "connect_end"),
            ("disconnectedServer", "disconnected_server"),
            ("disconnect", "disconnect"),
        ] {
            let reason = EndReason::from_event(name);
            assert_eq!(reason.map(EndReason::label), Some(label));
            // The server said it over an open connection: left in order,
            // and what it sent before it read the leave is journaled.
            assert_eq!(reason.map(EndReason::leaves_the_link_open), Some(true));
        }
        assert_eq!(EndReason::from_event("say"), None);
    }

    /// After the session, a connection is read on only where the server
    /// ended it: one that is gone or sends nothing is not (a stop has its
    /// own drain).
    #[test]
    fn only_the_servers_own_endings_are_read_on() {
        use EndReason::*;
        for (reason, read_on) in [
            (AuthRefused, true),
            (Error, true),
            (Cancelled, false),
            (Connect, false),
            (Closed, false),
            (Silent, false),
            (Proxy, false),
            (Tls, false),
        ] {
            assert_eq!(reason.leaves_the_link_open(), read_on, "{reason:?}");
        }
    }

    /// What is relayed as `vendor.unknown`: neither `response` nor an event
    /// of the session itself, nor one that ends it.
    #[test]
    fn only_events_the_session_does_not_know_are_unknown() {
        for known in [
            "response",
            "say",
            "signing",
            "connecting",
            "connected",
            "connection",
            "error",
            "Bandwidth",
            "bandwidth",
            "connectionRefused",
            "connectTimeout",
            "connectEnd",
            "disconnectedServer",
            "disconnect",
        ] {
            assert!(!is_unknown(known), "{known}");
        }
        for unknown in ["missedCall", "Response", "hello", ""] {
            assert!(is_unknown(unknown), "{unknown:?}");
        }
    }

    /// Two missed `hello` answers and 5 s of grace.
    #[test]
    fn a_session_is_silent_after_two_hello_intervals_and_five_seconds() {
        assert_eq!(
            silence_limit(Duration::from_secs(10)),
            Duration::from_secs(25)
        );
        assert_eq!(
            silence_limit(Duration::from_secs(30)),
            Duration::from_secs(65)
        );
    }

    /// An unknown event's name is the server's text: its log line names it
    /// by an excerpt, however long the name the wire let through.
    #[tokio::test]
    async fn an_unknown_event_name_is_logged_as_an_excerpt() {
        with_canary_session(async |session, _relay| {
            let name = "n".repeat(super::super::wire::MAX_EVENT_NAME);
            let args = vec![Arg::from_json("{}").unwrap()];
            let lines = delivered_unrecognised(session, &name, args, session.cancel).await;
            let line = lines
                .lines()
                .find(|l| l.contains("vendor.unknown"))
                .unwrap_or_else(|| panic!("no line for the unknown event: {lines}"));
            let line: Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                line["event"].as_str(),
                Some(crate::logging::excerpt(&name).as_str()),
                "{line}"
            );
        })
        .await;
    }

    /// An unknown event's name is the server's text too: one holding the
    /// key is logged and journaled with it masked, as its arguments are.
    #[tokio::test]
    async fn an_unknown_event_name_holding_the_key_is_masked() {
        with_canary_session(async |session, relay| {
            let args = vec![Arg::from_json(r#"["SECRET-CANARY"]"#).unwrap()];
            let lines =
                delivered_unrecognised(session, "badKEY-CANARY", args, session.cancel).await;
            assert!(lines.contains("bad***"), "{lines}");
            assert!(!lines.contains("CANARY"), "{lines}");
            let journaled = relay.ctx.journal.read_after(0, 10).unwrap();
            assert_eq!(journaled.len(), 1);
            let event: Value = serde_json::from_slice(&journaled[0].json).unwrap();
            assert_eq!(
                event["data"]["raw"],
                json!({"event": "bad***", "args": [["***"]]})
            );
        })
        .await;
    }

    /// A session over an account whose key and secret are canaries, for
    /// `check` to drive; the relay stopped after.
    /// Delivers an event the session does not recognise, `name` with
    /// `args`, asserts it was taken, and gives what was logged meanwhile.
    async fn delivered_unrecognised(
        session: &Session<'_>,
        name: &str,
        args: Vec<Arg>,
        cancel: &CancellationToken,
    ) -> String {
        let (logs, guard) = crate::logging::tests_support::capture_json();
        let delivered = session
            .deliver_unrecognised(name, (args, time::OffsetDateTime::now_utc()), cancel, None)
            .await;
        drop(guard);
        assert!(delivered.is_ok());
        logs.text()
    }

    async fn with_canary_session<F>(check: F)
    where
        F: AsyncFnOnce(&Session<'_>, &crate::app::Relay),
    {
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::app::tests_support::relay_in(dir.path(), "").await;
        let text = "[[voip24h]]\naccount = \"m\"\nurl = \"http://127.0.0.1:1\"\n\
                    key = \"KEY-CANARY\"\nsecret = \"SECRET-CANARY\"\n";
        let config = crate::config::Config::from_text("relay.toml", text, &|_| None).unwrap();
        let config = config.voip24h[0].get_ref().clone();
        let reporter = relay.ctx.status.upstream(
            crate::event::Vendor::Voip24h,
            "m",
            "0",
            Duration::from_secs(60),
        );
        let cancel = CancellationToken::new();
        let session = Session {
            config: &config,
            ctx: &relay.ctx,
            reporter: &reporter,
            cancel: &cancel,
            unknown_logged: Mutex::default(),
            warnings: Default::default(),
            masked: Masked::of(&config),
        };
        check(&session, &relay).await;
        drop(session);
        drop(reporter);
        crate::app::tests_support::stop(relay).await;
    }

    /// A `response` the vendor module does not know (no `state`, no
    /// `FeedbackID`, no `linkedid`): the server's refusal "key <KEY> không
    /// hợp lệ" or the `sign` object echoed back as a `response` is
    /// journaled as `vendor.unknown` with the key and secret masked, as an
    /// event of another name is; two that differ only by which secret they
    /// echo are one. Before, it went out as received (review of c8af6af).
    #[tokio::test]
    async fn an_unknown_response_is_journaled_with_the_key_and_secret_masked() {
        with_canary_session(async |session, relay| {
            let cancel = CancellationToken::new();
            let at = time::OffsetDateTime::now_utc();
            let group: Vec<Received> = [
                r#"{"status":"error","message":"key KEY-CANARY kh\u00f4ng h\u1ee3p l\u1ec7"}"#,
                r#"{"voip":"KEY-CANARY","secret":"SECRET-CANARY"}"#,
                r#"{"voip":"KEY-CANARY","secret":"KEY-CANARY"}"#,
                r#"{"state":"Ring","callid":"c-1","extend":"101"}"#,
            ]
            .iter()
            .map(|text| (vec![Arg::from_json(text).unwrap()], at))
            .collect();
            assert!(session.journal(&group, &cancel, None).await.is_ok());
            let journaled = relay.ctx.journal.read_after(0, 10).unwrap();
            let texts: Vec<String> = journaled
                .iter()
                .map(|e| String::from_utf8_lossy(&e.json).into_owned())
                .collect();
            assert!(texts.iter().all(|t| !t.contains("CANARY")), "{texts:?}");
            let raws: Vec<(Value, Value)> = texts
                .iter()
                .map(|t| serde_json::from_str::<Value>(t).unwrap())
                .map(|e| (e["type"].clone(), e["data"]["raw"].clone()))
                .collect();
            assert_eq!(
                raws,
                [
                    (
                        json!("vendor.unknown"),
                        json!({"status": "error", "message": "key *** không hợp lệ"})
                    ),
                    (
                        json!("vendor.unknown"),
                        json!({"voip": "***", "secret": "***"})
                    ),
                    (
                        json!("call.ringing"),
                        json!({"state": "Ring", "callid": "c-1", "extend": "101"})
                    ),
                ]
            );
        })
        .await;
    }

    /// An unknown event over the payload limit is refused before it is
    /// masked: masking costs allocations per token, seconds of CPU for a
    /// 16 MiB frame, for an event that is not journaled. Its warning gives
    /// the size as received, and no line holds the key.
    #[tokio::test]
    async fn an_oversized_unknown_event_is_refused_before_it_is_masked() {
        with_canary_session(async |session, relay| {
            let cancel = CancellationToken::new();
            let limit = super::super::deliver::payload_limit_of(&relay.ctx);
            let many = vec!["KEY-CANARY"; limit as usize / 12];
            let args = vec![
                Arg::from_json("\"KEY-CANARY\"").unwrap(),
                Arg::from_json(&serde_json::to_string(&many).unwrap()).unwrap(),
            ];
            let received = unrecognised("echo", &args).unwrap().json().len();
            assert!(received as u64 > limit);
            let lines = delivered_unrecognised(session, "echo", args, &cancel).await;
            assert!(relay.ctx.journal.read_after(0, 10).unwrap().is_empty());
            assert!(!lines.contains("CANARY"), "{lines}");
            assert!(
                lines.contains(&format!("payload of {received} bytes is over the limit")),
                "{lines}"
            );
        })
        .await;
    }

    /// The masks of an account whose `key` and `secret` are written as given
    /// (TOML, quotes included).
    fn masked_of(key: &str, secret: &str) -> Masked {
        let text = format!(
            "[[voip24h]]\naccount = \"m\"\nurl = \"http://127.0.0.1:1\"\n\
             key = {key}\nsecret = {secret}\nsign = \"object\"\n"
        );
        let config = crate::config::Config::from_text("relay.toml", &text, &|_| None).unwrap();
        Masked::of(config.voip24h[0].get_ref())
    }

    /// An `error` or ending event echoing the key or the secret (the
    /// vendor's "key <KEY> không hợp lệ", the `sign` object back) shows them
    /// masked, also where the 200-character cut falls inside one: they went
    /// into the log and `/status` (review of the Voip24h source, 2026-12-06).
    #[test]
    fn describes_the_servers_text_with_the_key_and_secret_masked() {
        let masked = masked_of("\"KEY-CANARY\"", "\"SECRET-CANARY\"");
        // Cut before it is masked, the key at the end is "KEY-CANA".
        let long = format!("\"{}KEY-CANARY\"", "x".repeat(192));
        for arg in [
            "\"key KEY-CANARY không hợp lệ\"",
            r#"{"voip":"KEY-CANARY","secret":"SECRET-CANARY"}"#,
            &long,
        ] {
            let said = describe("error", &[Arg::from_json(arg).unwrap()], &masked);
            assert!(said.contains("***"), "{said}");
            assert!(
                !said.contains("CANA") && !said.contains("KEY-") && !said.contains("SECRET-"),
                "{said}"
            );
        }
    }

    /// A secret with a `"` or a `/` echoed inside an object comes back
    /// JSON-escaped (`\"`, and `\/` from PHP's json_encode): masked too
    /// (review of 5018d17, 2026-12-06).
    #[test]
    fn a_secret_echoed_json_escaped_is_masked_too() {
        let masked = masked_of("\"KEY/CANARY\"", "'SE\"CRET-CANARY'");
        for arg in [
            r#"{"voip":"KEY\/CANARY","secret":"SE\"CRET-CANARY"}"#,
            r#"{"voip":"KEY/CANARY"}"#,
        ] {
            let said = describe("error", &[Arg::from_json(arg).unwrap()], &masked);
            assert!(!said.contains("CANARY") && !said.contains("KEY"), "{said}");
        }
    }

    #[test]
    fn describes_without_unbounded_text() {
        let frame = format!("42[\"error\",\"{}\"]", "x".repeat(1000));
        let super::super::wire::Frame::Message(super::super::wire::SioPacket::Event {
            args, ..
        }) = super::super::wire::decode(&frame)
        else {
            panic!("not an event");
        };
        let text = describe("error", &args, &Masked::default());
        assert!(
            text.starts_with("server sent `error`: xxx") && text.len() < 250,
            "{text}"
        );
        assert_eq!(
            describe("connectEnd", &[], &Masked::default()),
            "server sent `connectEnd`"
        );
    }
}
