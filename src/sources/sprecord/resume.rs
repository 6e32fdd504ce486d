//! Where an account's streams resume: the id of the last event any of its
//! streams handed to ingest, per (account, url), kept for the life of the
//! relay and, through the journal, across restarts.
//!
//! Why not in the stream task: a reload that changes the source, or a stream
//! restarted after a panic, starts new tasks; an id held there was lost and
//! the new stream asked for no history, dropping what the server sent in
//! between. The ids live in the relay's [`Context`] (two relays in one
//! process, as in tests, do not share them). The url is part of the key
//! because an id means nothing to another server; without its credentials
//! and query (see [`key`]): they would be stored in the journal's file, and
//! a token rotated in the url would cost the resume point.
//!
//! Why only a stream at the front moves it: the account's streams hand on
//! the same events at their own pace, and the one that hands its event on
//! last is not always the one furthest on: a lagging stream's duplicate
//! moved the point back (and a restart after longer than `dedup.window`
//! then journaled again what the server re-sent). A stream is at the front
//! when it journals an event's first copy (no stream had it) newer than
//! every first copy that moved the point, or whose duplicate did (a first
//! copy's seq is the newest at its commit, so while every stream gets
//! history these follow the server's order; a stream handing on an older
//! one late, its task starved, is behind), or when the
//! last id it handed on (or opened with) is the point's: the event it hands
//! on next then follows the point in the server's order. Not the journal's
//! seq: a duplicate's seq is its first copy's, which may be far behind (a
//! payload sent twice, an event the webhook brought first), and a point
//! held there by it was never moved past the event after it. The first copy
//! keeps the point moving when the streams' sequences differ (one opened
//! without an id and got only newer events, while the front stream's
//! reconnects are refused). A stream opened without `Last-Event-ID` counts
//! as at the point: its first event can move the point past events a
//! sibling received and has not journaled yet (a crash then, within the
//! saver's gap, resumes after them); and from a server that keeps no
//! history, such a sibling's first copies of those events, newer in seq
//! but older in the server's order, take the point back to them (a
//! restart past `dedup.window` then journals again what followed: known,
//! `model_tests`' ignored no-history property; ids are opaque, so the
//! relay cannot tell the server's order there).
//!
//! Events without an `id:` line share the id before them (on a reconnected
//! stream, before its first `id:`, the `Last-Event-ID` it sent: see
//! [`super::sse::SseParser::resuming_after`]). So a stream hands on the
//! point's own id again: its duplicate of such an event raises the point's
//! first-copy seq as one moving the point does (else a sibling's late first
//! copy of it looks ahead and takes the point back). From a server that
//! sends on without resending (no history, or one resuming after the last
//! event of the id sent), a reconnected stream's first copies carry the id
//! it opened at and can take the point back to it (known: RELIABILITY.md).
//!
//! Why one id per account, not per stream: every stream carries the same
//! events, and a stream's own id goes stale while the others go on (its
//! connects refused for minutes while a browser holds one of the server's
//! three slots, or the stream removed by a reload and added back later). A
//! server that keeps history would send such a stream everything after its
//! stale id, and what is older than `dedup.window` would be journaled again.
//! The account's newest id asks only for what none of its streams had.
//!
//! Why in the journal too: a restart opened the streams without an id, so
//! what a device sent between the stop and the new connections was not
//! asked for again, even from a server that keeps history.
//! [`super::resume_save`] stores the ids soon after each change and at a
//! stop.
//!
//! Guarantees: an id set is returned by every later `get` for the same
//! account, url and relay; an id longer than [`MAX_ID_BYTES`], or holding a
//! control character, is not kept (it would go back as a header no server
//! takes, and the streams would be refused until a restart; or it cannot be
//! a header at all): the streams then ask for no history, which is said
//! once, naming the account; a
//! poisoned lock is recovered (the map is always consistent: single
//! inserts); every change is reported unsaved until the next
//! [`ResumeIds::to_save`] or [`ResumeIds::all_to_save`] takes it; ids of
//! accounts no longer configured are forgotten at the start and at each
//! reload ([`ResumeIds::keep_only`]), so a stale one never comes back;
//! when the start could not read the stored ids, a save keeps the stored
//! id of every configured account that has none in memory (the next start
//! resumes it; ids of accounts no longer configured are still dropped, by
//! a save made at the start and at each reload that changes the accounts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::app::Context;
use crate::config::{Config, url_without_credentials};
use crate::journal::{JournalError, SavedResumeId};

/// The longest id sent back as `Last-Event-ID`: far above any id a server
/// makes (a counter, a UUID, a timestamp), far below the header sizes
/// servers refuse (8–16 KiB in common front ends).
pub const MAX_ID_BYTES: usize = 1024;

/// (account, url).
pub type Key = (String, String);

/// How a stream handed an event on.
#[derive(Clone, Copy, Debug)]
pub enum HandedOn {
    /// It journaled the event's first copy, under `seq`.
    FirstCopy { seq: u64 },
    /// It was a duplicate of the event's first copy, journaled under `seq`.
    Duplicate { seq: u64 },
    /// Passed over (malformed, too large, a verification).
    Other,
}

/// Every account's last handed-on id, for one relay.
#[derive(Debug, Default)]
pub struct ResumeIds {
    ids: Mutex<Ids>,
    /// Woken at every change, for the saver.
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Ids {
    /// Where each account's streams are: the id of the last event a stream
    /// at the front handed on, kept even when it cannot go back as
    /// `Last-Event-ID` (the streams then ask for no history, and still
    /// know who is at the front).
    by_account: HashMap<Key, String>,
    /// The seq of the newest first copy that moved each account's point:
    /// a first copy journaled before it whose stream hands it on late (its
    /// task starved on a loaded worker) is behind the point, not at the
    /// front. A first copy's seq is the newest at its commit, so seqs of
    /// first copies follow the server's order while every stream gets
    /// history (see the module's doc for when they do not); a duplicate's
    /// do not, so a duplicate moving the point, or handed on at it by the
    /// stream at the front (events without an `id:` line share one id),
    /// only raises this to its first copy's seq: that first copy, handed on
    /// late by its stream, is then behind the point (it took the point
    /// back, found by the resume's model test, 2026-12-07, and by a review
    /// for a shared id).
    first_copy_seq: HashMap<Key, u64>,
    /// Changed since the last [`ResumeIds::to_save`].
    unsaved: bool,
    /// The accounts configured, while the ids the journal kept are unknown
    /// (the start could not read them): a save keeps the stored ids of
    /// those with none here. Replaced, such a save erased the resume point
    /// of every account that had no event in the run, for every later
    /// start (swallowed-errors audit, 2026-12-07).
    unread_configured: Option<Vec<Key>>,
}

impl Ids {
    /// Whether a first copy journaled under `seq` is newer than every
    /// first copy that moved `key`'s point or whose duplicate did.
    fn is_newer_first_copy(&self, key: &Key, seq: u64) -> bool {
        self.first_copy_seq
            .get(key)
            .is_none_or(|&newest| seq > newest)
    }

    /// Raises `key`'s first-copy seq to `seq` (never lowers it).
    fn raise_first_copy_seq(&mut self, key: &Key, seq: u64) {
        let newest = self.first_copy_seq.entry(key.clone()).or_insert(seq);
        *newest = (*newest).max(seq);
    }
}

impl ResumeIds {
    /// The ids for a start whose read of the stored ones gave `read`: those
    /// kept for the accounts `configured` still names; none when they
    /// cannot be read (the streams then open without history, as on a
    /// first start, and the saves keep the stored ids they do not replace).
    pub fn at_start(
        read: Result<Vec<SavedResumeId>, JournalError>,
        configured: &[Key],
    ) -> ResumeIds {
        match read {
            Ok(saved) => {
                let restored = ResumeIds::restored(saved, configured);
                tracing::debug!(
                    accounts = restored.accounts(),
                    "SPRecord resume ids read from the journal"
                );
                restored
            }
            Err(e) => {
                tracing::warn!(error = %e, "the SPRecord resume ids kept in the journal cannot be read: the SSE streams open without asking for history; the stored ids of accounts with no event in this run are kept for the next start if they can be read (a damaged table is replaced at the first save)");
                let unread = ResumeIds::default();
                {
                    let mut ids = unread.lock();
                    ids.unread_configured = Some(configured.to_vec());
                    // Saved at once, so the stored ids of accounts not
                    // configured are gone before a reload can name them
                    // again with their stale ids.
                    ids.unsaved = true;
                }
                unread.changed.notify_one();
                unread
            }
        }
    }

    /// The ids the journal kept from the last run, for the accounts
    /// `configured` still names (an id means nothing to another account or
    /// server; those left out are gone from the journal at the next save).
    pub fn restored(saved: Vec<SavedResumeId>, configured: &[Key]) -> ResumeIds {
        let restored = ResumeIds::default();
        restored.lock().by_account = saved.into_iter().filter(|(_, id)| resumable(id)).collect();
        restored.keep_only(configured);
        restored
    }

    /// Forgets the ids of accounts (or urls) not in `configured`: kept,
    /// they would be stored again and again, and come back weeks later when
    /// the config did (a server with history would then send everything
    /// since, and what is older than `dedup.window` would be journaled twice).
    pub fn keep_only(&self, configured: &[Key]) {
        let mut ids = self.lock();
        let before = ids.by_account.len();
        ids.by_account.retain(|key, _| configured.contains(key));
        ids.first_copy_seq.retain(|key, _| configured.contains(key));
        let mut changed = ids.by_account.len() != before;
        // While the stored ids are unread, a save keeps those of the
        // accounts configured: one left out must be saved without before
        // it can be configured again, or its stale id comes back with it.
        if let Some(unread) = &mut ids.unread_configured
            && unread.as_slice() != configured
        {
            configured.clone_into(unread);
            changed = true;
        }
        if changed {
            ids.unsaved = true;
            self.changed.notify_one();
        }
    }

    /// Returns once an id changed since the last [`Self::to_save`] (at once
    /// if one did).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// How many accounts have an id.
    pub fn accounts(&self) -> usize {
        self.lock().by_account.len()
    }

    /// What to save, when an id changed since the last call; `None`
    /// otherwise.
    pub fn to_save(&self) -> Option<Saving> {
        self.take(false)
    }

    /// What to save, changed or not (for a save that must reach the disk).
    pub fn all_to_save(&self) -> Saving {
        self.take(true).unwrap_or_default()
    }

    /// Every id, when one changed since the last call; `None` otherwise.
    #[cfg(test)]
    pub fn unsaved(&self) -> Option<Vec<SavedResumeId>> {
        self.to_save().map(|saving| saving.ids)
    }

    /// Every id, changed or not.
    #[cfg(test)]
    pub fn all(&self) -> Vec<SavedResumeId> {
        self.all_to_save().ids
    }

    fn take(&self, even_unchanged: bool) -> Option<Saving> {
        let mut ids = self.lock();
        if !std::mem::take(&mut ids.unsaved) && !even_unchanged {
            return None;
        }
        let mut all: Vec<SavedResumeId> = ids
            .by_account
            .iter()
            .filter(|(_, id)| resumable(id))
            .map(|(key, id)| (key.clone(), id.clone()))
            .collect();
        all.sort_unstable();
        // Under the same lock as the ids: an account's first id, set
        // between the two, would have its stored one erased and not saved.
        let kept = ids
            .unread_configured
            .as_ref()
            .map_or(Vec::new(), |configured| {
                configured
                    .iter()
                    .filter(|key| !ids.by_account.contains_key(*key))
                    .cloned()
                    .collect()
            });
        Some(Saving { ids: all, kept })
    }

    /// Reports the ids unsaved again: what [`Self::to_save`] returned was
    /// not stored.
    pub fn not_saved(&self) {
        self.lock().unsaved = true;
        self.changed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Ids> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a save stores: `ids` replace the stored ids, except the stored ids
/// of `kept`'s accounts, which stay (accounts configured but with no id in
/// a run that could not read the stored ones).
#[derive(Debug, Default, PartialEq)]
pub struct Saving {
    pub ids: Vec<SavedResumeId>,
    pub kept: Vec<Key>,
}

/// One account's resume point, shared by its streams.
#[derive(Clone, Debug)]
pub struct ResumeId {
    ids: Arc<ResumeIds>,
    key: Key,
}

impl ResumeId {
    pub fn new(ctx: &Arc<Context>, account: &str, url: &str) -> ResumeId {
        ResumeId {
            ids: ctx.sse_resume.clone(),
            key: key(account, url),
        }
    }

    /// The id a stream opens with as `Last-Event-ID`, if any, and the id it
    /// stands at (the point's, resumable or not): both under one look, so a
    /// stream is at the front from its first event when nothing moved since.
    pub fn open_point(&self) -> (Option<String>, Option<String>) {
        let ids = self.ids.lock();
        match ids.by_account.get(&self.key) {
            Some(id) => (resumable(id).then(|| id.clone()), Some(id.clone())),
            None => (None, None),
        }
    }

    /// The id to resume after, if any.
    pub fn get(&self) -> Option<String> {
        let ids = self.ids.lock();
        let id = ids.by_account.get(&self.key)?;
        resumable(id).then(|| id.clone())
    }

    /// Whether a duplicate whose first copy was journaled under `seq`,
    /// handed on at the point, raises the point's first-copy seq: the
    /// account has a point, and no first copy as new moved it (or had its
    /// duplicate do so). Compares no ids, so a stream can tell cheaply that
    /// handing on again the id it handed on last changes nothing.
    pub fn would_raise_first_copy_seq(&self, seq: u64) -> bool {
        let ids = self.ids.lock();
        ids.by_account.contains_key(&self.key) && ids.is_newer_first_copy(&self.key, seq)
    }

    /// Notes `id` as handed on (journaled, or passed over: malformed, too
    /// large) by a stream whose previous id was `prev`; `handed` says
    /// whether it journaled the event (its first copy, or a duplicate of
    /// one) and its first copy's seq. The point moves only for a stream at
    /// the front (a first copy newer than anything a stream at the front
    /// handed on, or `prev` is the point's id), or when there is none; a
    /// first copy or duplicate a stream at the front hands on raises the
    /// point's first-copy seq to its own, also when the id handed on is the
    /// point's already. An id that cannot go back as `Last-Event-ID`
    /// (over [`MAX_ID_BYTES`], or holding a control character) leaves the
    /// streams asking for no history until the next one.
    pub fn hand_on(&self, prev: Option<&str>, id: &str, handed: HandedOn) {
        let mut ids = self.ids.lock();
        let first_copy_ahead = matches!(handed,
            HandedOn::FirstCopy { seq } if ids.is_newer_first_copy(&self.key, seq));
        let kept = ids.by_account.get(&self.key).map(String::as_str);
        if !kept.is_none_or(|kept| first_copy_ahead || prev == Some(kept)) {
            return; // behind the front
        }
        let already_there = kept == Some(id);
        let was_resumable = kept.is_none_or(resumable);
        // Also a duplicate at the point (events without an `id:` line share
        // the id before them): else the late first copy of one, handed on
        // by a starved stream after the point moved past that id, looked
        // ahead and took the point back to it. A first copy that is not
        // ahead raises nothing (`max`).
        if let HandedOn::FirstCopy { seq } | HandedOn::Duplicate { seq } = handed {
            ids.raise_first_copy_seq(&self.key, seq);
        }
        if already_there {
            return;
        }
        let why = why_not_resumable(id);
        if let Some(why) = why
            && was_resumable
        {
            tracing::warn!(
                vendor = "sprecord",
                account = %self.key.0,
                bytes = id.len(),
                "an SSE event id {why} cannot go back as Last-Event-ID: the streams reconnect without asking for history"
            );
        }
        match ids.by_account.get_mut(&self.key) {
            Some(kept) => id.clone_into(kept),
            None => {
                ids.by_account.insert(self.key.clone(), id.to_owned());
            }
        }
        ids.unsaved = true;
        self.ids.changed.notify_one();
    }
}

/// Whether `id` can go back as `Last-Event-ID`.
fn resumable(id: &str) -> bool {
    why_not_resumable(id).is_none()
}

/// Why `id` cannot go back as `Last-Event-ID`, if it cannot.
fn why_not_resumable(id: &str) -> Option<&'static str> {
    if id.len() > MAX_ID_BYTES {
        Some("is too long")
    } else if !is_header_text(id) {
        Some("holds a control character, so it cannot be a header, and")
    } else {
        None
    }
}

#[cfg(test)]
impl ResumeId {
    /// An account's resume point in `ids`, without a relay.
    pub(crate) fn in_ids(ids: &Arc<ResumeIds>, account: &str, url: &str) -> ResumeId {
        ResumeId {
            ids: ids.clone(),
            key: key(account, url),
        }
    }

    /// Hands `id` on as the stream at the front would.
    pub(crate) fn set(&self, id: &str) {
        let (_, at) = self.open_point();
        self.hand_on(at.as_deref(), id, HandedOn::Other);
    }
}

/// The key of an account's resume point: its name and its `url`'s scheme,
/// host, port and path, without user, password, query or fragment (a url
/// that does not parse, which validation refuses, is kept without what
/// [`url_without_credentials`] hides).
pub fn key(account: &str, url: &str) -> Key {
    let server = match url::Url::parse(url) {
        Ok(parsed) => {
            let host = parsed.host_str().unwrap_or("");
            let port = parsed
                .port_or_known_default()
                .map_or(String::new(), |p| format!(":{p}"));
            format!("{}://{host}{port}{}", parsed.scheme(), parsed.path())
        }
        Err(_) => url_without_credentials(url),
    };
    (account.to_owned(), server)
}

/// The keys of the accounts `config` has.
pub fn configured(config: &Config) -> Vec<Key> {
    config
        .sprecord
        .iter()
        .map(|s| {
            let s = s.get_ref();
            key(s.account.get_ref(), s.url.get_ref())
        })
        .collect()
}

/// Whether `id` can be an HTTP header value as it is (the bytes
/// `HeaderValue::from_str` takes: visible ASCII, tab, and any byte of UTF-8
/// beyond ASCII), checked without the copy `from_str` makes: this runs for
/// every event, under the account's lock.
fn is_header_text(id: &str) -> bool {
    id.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn resume(ids: &Arc<ResumeIds>, url: &str) -> ResumeId {
        ResumeId::in_ids(ids, "main", url)
    }

    #[test]
    fn an_id_set_is_got_back_for_its_account_and_server_only() {
        let ids = Arc::new(ResumeIds::default());
        let first = resume(&ids, "http://a/sys/events");
        assert_eq!(first.get(), None);
        first.set("41");
        first.set("42");
        // Another stream of the account, or one started anew (after a
        // reload or a panic), finds it.
        assert_eq!(
            resume(&ids, "http://a/sys/events").get().as_deref(),
            Some("42")
        );
        // Another server has its own.
        assert_eq!(resume(&ids, "http://b/sys/events").get(), None);
    }

    #[test]
    fn an_id_too_long_to_send_back_clears_the_resume_point() {
        let ids = Arc::new(ResumeIds::default());
        let stream = resume(&ids, "http://a/sys/events");
        stream.set("41");
        stream.set(&"x".repeat(MAX_ID_BYTES + 1));
        assert_eq!(stream.get(), None);
        let longest = "y".repeat(MAX_ID_BYTES);
        stream.set(&longest);
        assert_eq!(stream.get(), Some(longest));
    }

    /// An id with a control character cannot be a header: kept, every
    /// stream's every reconnect logged it again, naming no account.
    #[test]
    fn an_id_holding_a_control_character_clears_the_resume_point() {
        let ids = Arc::new(ResumeIds::default());
        let stream = resume(&ids, "http://a/sys/events");
        stream.set("41");
        stream.set("4\u{1}2");
        assert_eq!(stream.get(), None);
        // Text beyond ASCII goes back as the server wrote it.
        stream.set("số-43");
        assert_eq!(stream.get().as_deref(), Some("số-43"));
    }

    /// Each change is reported unsaved once; a failed save reports it again.
    #[test]
    fn a_change_is_unsaved_until_taken_and_again_after_a_failed_save() {
        let ids = Arc::new(ResumeIds::default());
        assert_eq!(ids.unsaved(), None);
        let stream = resume(&ids, "http://a/sys/events");
        stream.set("41");
        let key = super::key("main", "http://a/sys/events");
        assert_eq!(ids.unsaved(), Some(vec![(key.clone(), "41".to_owned())]));
        assert_eq!(ids.unsaved(), None);
        // The same id again (another stream's copy of the event) is no change.
        stream.set("41");
        assert_eq!(ids.unsaved(), None);
        ids.not_saved();
        assert_eq!(ids.unsaved(), Some(vec![(key, "41".to_owned())]));
        // A cleared id is a change: the journal must forget it too.
        stream.set(&"x".repeat(MAX_ID_BYTES + 1));
        assert_eq!(ids.unsaved(), Some(vec![]));
    }

    /// While the stored ids are unread, a save keeps those of the accounts
    /// configured. One not configured at the start, or left out by a
    /// reload, had its stored id kept until some id changed: configured
    /// again meanwhile, its stale pre-run id came back. Each change of the
    /// accounts is a save, which drops the ids of those left out.
    #[test]
    fn unread_ids_of_accounts_left_out_are_dropped_at_the_next_save() {
        let a = super::key("a", "http://a/sys/events");
        let b = super::key("b", "http://b/sys/events");
        let ids = ResumeIds::at_start(Err(JournalError::Closed), &[a.clone(), b.clone()]);
        let saving = |kept: &[&Key]| {
            Some(Saving {
                ids: vec![],
                kept: kept.iter().copied().cloned().collect(),
            })
        };
        assert_eq!(ids.to_save(), saving(&[&a, &b]), "the start's");
        ids.keep_only(std::slice::from_ref(&a));
        assert_eq!(ids.to_save(), saving(&[&a]), "b left out");
        ids.keep_only(std::slice::from_ref(&a));
        assert_eq!(ids.to_save(), None, "no change");
        ids.keep_only(&[a.clone(), b.clone()]);
        assert_eq!(ids.to_save(), saving(&[&a, &b]), "b back");
    }

    /// The journal's ids come back for the accounts and servers still
    /// configured; the others are dropped, and the next save forgets them.
    #[test]
    fn restored_ids_are_kept_for_configured_accounts_only() {
        let key = super::key;
        let saved = vec![
            (key("main", "http://a/sys/events"), "41".to_owned()),
            (key("main", "http://old/sys/events"), "7".to_owned()),
            (key("gone", "http://a/sys/events"), "9".to_owned()),
        ];
        let configured = [key("main", "http://a/sys/events")];
        // An id stored that could not go back as a header is not restored.
        let bad = vec![(key("main", "http://a/sys/events"), "4\u{1}2".to_owned())];
        assert_eq!(ResumeIds::restored(bad, &configured).accounts(), 0);
        let ids = Arc::new(ResumeIds::restored(saved.clone(), &configured));
        assert_eq!(
            resume(&ids, "http://a/sys/events").get().as_deref(),
            Some("41")
        );
        assert_eq!(resume(&ids, "http://old/sys/events").get(), None);
        assert_eq!(ids.unsaved(), Some(vec![saved[0].clone()]));
        // Nothing left out: nothing to save.
        let ids = ResumeIds::restored(saved[..1].to_vec(), &configured);
        assert_eq!(ids.unsaved(), None);
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    /// A url's credentials and query are not part of the key: they would be
    /// written into the journal's file, and a rotated token would lose the
    /// resume point.
    #[test]
    fn the_key_holds_no_credentials_and_outlives_a_rotated_token() {
        let (_, with_secret) = key(
            "main",
            "https://u:pa55word@sp.example/sys/events?token=t0k3n",
        );
        assert!(
            !with_secret.contains("pa55word") && !with_secret.contains("t0k3n"),
            "{with_secret}"
        );
        assert_eq!(
            key(
                "main",
                "https://u:pa55word@sp.example/sys/events?token=t0k3n"
            ),
            key(
                "main",
                "https://u:other@sp.example/sys/events?token=rotated"
            )
        );
        assert_ne!(
            key("main", "https://sp.example/sys/events"),
            key("main", "https://sp2.example/sys/events")
        );
        // An `@` in the query is not the end of credentials: the token
        // after it stays out, and two hosts stay two keys.
        let (_, with_at) = key(
            "main",
            "https://sp.example/sys/events?user=ops@corp.com&token=s3cret",
        );
        assert!(
            !with_at.contains("s3cret") && with_at.contains("sp.example"),
            "{with_at}"
        );
        assert_ne!(
            key("main", "https://h1/p?x=a@b"),
            key("main", "https://h2/p?x=a@b")
        );
        // Adding credentials or a query, or writing the default port, keeps it.
        assert_eq!(
            key("main", "https://sp.example/sys/events"),
            key("main", "https://u:p@sp.example:443/sys/events?token=t")
        );
    }

    /// An account removed or renamed by a reload is forgotten (and so is
    /// its stored copy, at the next save).
    #[test]
    fn ids_of_accounts_no_longer_configured_are_forgotten() {
        let ids = Arc::new(ResumeIds::default());
        ResumeId::in_ids(&ids, "kept", "http://a/sys/events").set("1");
        ResumeId::in_ids(&ids, "gone", "http://a/sys/events").set("2");
        ids.unsaved();
        ids.keep_only(&[key("kept", "http://a/sys/events")]);
        assert_eq!(
            ids.unsaved(),
            Some(vec![(key("kept", "http://a/sys/events"), "1".to_owned())])
        );
        ids.keep_only(&[key("kept", "http://a/sys/events")]);
        assert_eq!(ids.unsaved(), None, "nothing forgotten, nothing to save");
    }

    /// A stream catching up hands on its duplicates after the account's
    /// newest event: it is not at the front, and the point stays. Before,
    /// the last stream to hand one on set it, so a restart could resume from
    /// a lagging stream's older id.
    #[test]
    fn a_lagging_streams_duplicates_do_not_move_the_point_back() {
        let ids = Arc::new(ResumeIds::default());
        let point = ResumeId::in_ids(&ids, "main", "http://a/sys/events");
        point.hand_on(None, "e9", HandedOn::Other);
        point.hand_on(Some("e9"), "e10", HandedOn::Other);
        // The lagging stream, still at e8.
        point.hand_on(Some("e8"), "e9", HandedOn::Other);
        point.hand_on(Some("e9"), "e10", HandedOn::Other);
        assert_eq!(point.get().as_deref(), Some("e10"));
        // Now at e10 too: either stream moves it on, once.
        point.hand_on(Some("e10"), "e11", HandedOn::Other);
        point.hand_on(Some("e10"), "e11", HandedOn::Other);
        assert_eq!(point.get().as_deref(), Some("e11"));
        // An id that cannot be a header, from a stream not at the front,
        // clears nothing.
        point.hand_on(Some("e10"), &"x".repeat(MAX_ID_BYTES + 1), HandedOn::Other);
        assert_eq!(point.get().as_deref(), Some("e11"));
    }

    /// The front is the server's order, not the journal's: an event whose
    /// first copy was journaled long before (a payload sent twice) still
    /// moves the point, and so does an event passed over after it. With
    /// seqs, a too-large event after such a duplicate was never passed: the
    /// streams reopened before it for good.
    #[test]
    fn an_old_duplicate_and_a_passed_event_after_it_move_the_point() {
        let ids = Arc::new(ResumeIds::default());
        let point = ResumeId::in_ids(&ids, "main", "http://a/sys/events");
        point.hand_on(None, "10", HandedOn::Other);
        point.hand_on(Some("10"), "11", HandedOn::Other);
        point.hand_on(Some("11"), "12-too-large", HandedOn::Other);
        assert_eq!(point.get().as_deref(), Some("12-too-large"));
    }

    /// A stream whose events differ from the front's (it opened without
    /// an id and got only newer ones) moves the point with each event it
    /// journals first: held by the front stream's last id, the point would
    /// stay there for as long as that stream's reconnects were refused.
    #[test]
    fn a_first_copy_moves_the_point_whatever_the_stream_saw_before() {
        let ids = Arc::new(ResumeIds::default());
        let point = ResumeId::in_ids(&ids, "main", "http://a/sys/events");
        point.hand_on(None, "5", HandedOn::FirstCopy { seq: 5 });
        // Opened without an id before "5" was handed on: never at "5".
        point.hand_on(None, "7", HandedOn::Other);
        assert_eq!(point.get().as_deref(), Some("5"), "a duplicate does not");
        point.hand_on(Some("7"), "8", HandedOn::FirstCopy { seq: 8 });
        assert_eq!(point.get().as_deref(), Some("8"));
    }

    /// Two streams commit one event in one batch, A the first copy and B
    /// the duplicate; A's task is starved, so B hands on its duplicate and
    /// then its next event's first copy before A hands on its first copy.
    /// Before, any first copy moved the point: A's late one took it back to
    /// e10, and a restart then asked for e11 again (journaled twice past the
    /// dedup window).
    #[test]
    fn a_first_copy_handed_on_late_does_not_move_the_point_back() {
        let ids = Arc::new(ResumeIds::default());
        let point = ResumeId::in_ids(&ids, "main", "http://a/sys/events");
        point.hand_on(None, "e9", HandedOn::FirstCopy { seq: 9 });
        // B: e10's duplicate (at the point), then e11's first copy.
        point.hand_on(Some("e9"), "e10", HandedOn::Duplicate { seq: 10 });
        point.hand_on(Some("e10"), "e11", HandedOn::FirstCopy { seq: 11 });
        assert_eq!(point.get().as_deref(), Some("e11"));
        // A, late: e10's first copy.
        point.hand_on(Some("e9"), "e10", HandedOn::FirstCopy { seq: 10 });
        assert_eq!(point.get().as_deref(), Some("e11"));
        // A's next is a duplicate of B's e11, not at the point: it stays.
        point.hand_on(Some("e10"), "e11", HandedOn::Duplicate { seq: 11 });
        assert_eq!(point.get().as_deref(), Some("e11"));
        // A first copy after it moves it on.
        point.hand_on(Some("e11"), "e12", HandedOn::FirstCopy { seq: 12 });
        assert_eq!(point.get().as_deref(), Some("e12"));
    }

    /// As above, but B's next event after its duplicate is passed over
    /// (malformed): no first copy moved the point past e10, so A's late
    /// first copy of e10 looked newer than any and took the point back,
    /// until the duplicate's first-copy seq counted (model test,
    /// 2026-12-07).
    #[test]
    fn a_late_first_copy_of_an_event_whose_duplicate_moved_the_point_does_not_move_it_back() {
        let ids = Arc::new(ResumeIds::default());
        let point = ResumeId::in_ids(&ids, "main", "http://a/sys/events");
        point.hand_on(None, "e9", HandedOn::Other);
        // B: e10's duplicate (at the point), then e11 passed over.
        point.hand_on(Some("e9"), "e10", HandedOn::Duplicate { seq: 10 });
        point.hand_on(Some("e10"), "e11", HandedOn::Other);
        assert_eq!(point.get().as_deref(), Some("e11"));
        // A, late: e10's first copy.
        point.hand_on(Some("e9"), "e10", HandedOn::FirstCopy { seq: 10 });
        assert_eq!(point.get().as_deref(), Some("e11"));
        // A newer first copy moves it on.
        point.hand_on(Some("e10"), "e12", HandedOn::FirstCopy { seq: 11 });
        assert_eq!(point.get().as_deref(), Some("e12"));
    }

    /// Events without an `id:` line share the id before them. Two streams:
    /// A journals e5a's first copy (id 5), B e5b's (no `id:` line: 5 too)
    /// and A gets e5b's duplicate in the same commit; A hands on e5b's
    /// duplicate (the point is 5 already) and the malformed 6 before B's
    /// task hands on its first copy of e5b. That first copy looked newer
    /// than any that had moved the point (e5a's) and took it back to 5: a
    /// restart past `dedup.window` then journaled e5b again.
    #[test]
    fn a_late_first_copy_of_an_event_sharing_the_points_id_does_not_move_it_back() {
        let ids = Arc::new(ResumeIds::default());
        let point = ResumeId::in_ids(&ids, "main", "http://a/sys/events");
        point.hand_on(None, "4", HandedOn::FirstCopy { seq: 99 });
        // A: e5a's first copy.
        point.hand_on(Some("4"), "5", HandedOn::FirstCopy { seq: 100 });
        assert_eq!(point.get().as_deref(), Some("5"));
        // B: e5a's duplicate, then it journals e5b's first copy (seq 101).
        point.hand_on(Some("4"), "5", HandedOn::Duplicate { seq: 100 });
        ids.unsaved();
        // A: e5b's duplicate, at the point already: no change to save.
        assert!(point.would_raise_first_copy_seq(101));
        point.hand_on(Some("5"), "5", HandedOn::Duplicate { seq: 101 });
        assert_eq!(ids.unsaved(), None);
        // A: 6, passed over.
        point.hand_on(Some("5"), "6", HandedOn::Other);
        assert_eq!(point.get().as_deref(), Some("6"));
        // B, late: e5b's first copy.
        point.hand_on(Some("5"), "5", HandedOn::FirstCopy { seq: 101 });
        assert_eq!(point.get().as_deref(), Some("6"));
        // A first copy newer than e5b's still moves it on.
        point.hand_on(Some("5"), "7", HandedOn::FirstCopy { seq: 102 });
        assert_eq!(point.get().as_deref(), Some("7"));
    }

    /// A stream opening stands where the point is, even when the point's
    /// id cannot be sent: its first event moves the point on.
    #[test]
    fn a_stream_opens_at_the_point_even_without_a_header() {
        let ids = Arc::new(ResumeIds::default());
        let point = ResumeId::in_ids(&ids, "main", "http://a/sys/events");
        point.hand_on(None, "4\u{1}2", HandedOn::Other);
        let (header, at) = point.open_point();
        assert_eq!((header, at.as_deref()), (None, Some("4\u{1}2")));
        point.hand_on(at.as_deref(), "43", HandedOn::Other);
        assert_eq!(point.get().as_deref(), Some("43"));
    }
}
