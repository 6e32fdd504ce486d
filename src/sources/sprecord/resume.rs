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
//! Why the journal's seq beside the id: the account's streams journal the
//! same events at their own pace, and the one that hands its event on last
//! is not always the one furthest on: a lagging stream's duplicate moved the
//! point back (and a restart after longer than `dedup.window` then journaled
//! again what the server re-sent). An event's ack carries the seq of its
//! first copy, so the point moves only to a higher seq.
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
//! [`ResumeIds::unsaved`] or [`ResumeIds::all`] takes it; ids of accounts
//! no longer configured are forgotten at the start and at each reload
//! ([`ResumeIds::keep_only`]), so a stale one never comes back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::app::Context;
use crate::config::{Config, url_without_credentials};
use crate::journal::SavedResumeId;

/// The longest id sent back as `Last-Event-ID`: far above any id a server
/// makes (a counter, a UUID, a timestamp), far below the header sizes
/// servers refuse (8–16 KiB in common front ends).
pub const MAX_ID_BYTES: usize = 1024;

/// (account, url).
pub type Key = (String, String);

/// Where an account's streams are: the seq of the newest event they
/// journaled, and the id to resume after (`None` when that event's id
/// cannot go back as a header: the streams then ask for no history).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Point {
    seq: u64,
    id: Option<String>,
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
    by_account: HashMap<Key, Point>,
    /// Changed since the last [`ResumeIds::unsaved`].
    unsaved: bool,
}

impl ResumeIds {
    /// The ids the journal kept from the last run, for the accounts
    /// `configured` still names (an id means nothing to another account or
    /// server; those left out are gone from the journal at the next save).
    pub fn restored(saved: Vec<SavedResumeId>, configured: &[Key]) -> ResumeIds {
        let restored = ResumeIds::default();
        restored.lock().by_account = saved
            .into_iter()
            .map(|(key, (seq, id))| (key, Point { seq, id: Some(id) }))
            .collect();
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
        if ids.by_account.len() != before {
            ids.unsaved = true;
            self.changed.notify_one();
        }
    }

    /// Returns once an id changed since the last [`Self::unsaved`] (at once
    /// if one did).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// How many accounts have an id.
    pub fn accounts(&self) -> usize {
        self.lock().by_account.len()
    }

    /// Every id, when one changed since the last call; `None` otherwise.
    pub fn unsaved(&self) -> Option<Vec<SavedResumeId>> {
        self.take(false)
    }

    /// Every id, changed or not (for a save that must reach the disk).
    pub fn all(&self) -> Vec<SavedResumeId> {
        self.take(true).unwrap_or_default()
    }

    fn take(&self, even_unchanged: bool) -> Option<Vec<SavedResumeId>> {
        let mut ids = self.lock();
        if !std::mem::take(&mut ids.unsaved) && !even_unchanged {
            return None;
        }
        let mut all: Vec<SavedResumeId> = ids
            .by_account
            .iter()
            .filter_map(|(key, point)| Some((key.clone(), (point.seq, point.id.clone()?))))
            .collect();
        all.sort_unstable();
        Some(all)
    }

    /// Reports the ids unsaved again: what [`Self::unsaved`] returned was
    /// not stored.
    pub fn not_saved(&self) {
        self.lock().unsaved = true;
        self.changed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Ids> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
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

    /// The id of the newest event the account's streams journaled (or
    /// passed), if any.
    pub fn get(&self) -> Option<String> {
        self.ids.lock().by_account.get(&self.key)?.id.clone()
    }

    /// The seq of the newest event the account's streams journaled (0 for
    /// none): where a stream opened now stands.
    pub fn seq(&self) -> u64 {
        self.ids
            .lock()
            .by_account
            .get(&self.key)
            .map_or(0, |point| point.seq)
    }

    /// Notes `id` as handed on, its event journaled as `seq` (the first
    /// copy's, for a duplicate): the point moves only to a higher seq.
    pub fn advance(&self, seq: u64, id: &str) {
        self.put(seq, id, |kept| seq > kept);
    }

    /// Notes `id` as passed without journaling (malformed, or too large) by
    /// a stream whose last journaled event is `stream_seq`: the point moves
    /// only for a stream at its front, not for one still catching up.
    pub fn pass(&self, stream_seq: u64, id: &str) {
        self.put(stream_seq, id, |kept| stream_seq >= kept);
    }

    /// Puts (seq, id) when `moves(kept seq)` allows it; an id that cannot go
    /// back as `Last-Event-ID` (over [`MAX_ID_BYTES`], or holding a control
    /// character) leaves the point without an id instead.
    fn put(&self, seq: u64, id: &str, moves: impl Fn(u64) -> bool) {
        let mut ids = self.ids.lock();
        if let Some(kept) = ids.by_account.get(&self.key)
            && !moves(kept.seq)
        {
            return;
        }
        let why = if id.len() > MAX_ID_BYTES {
            Some("is too long")
        } else if !is_header_text(id) {
            Some("holds a control character, so it cannot be a header, and")
        } else {
            None
        };
        if let Some(why) = why {
            let cleared = Point { seq, id: None };
            let had_id = ids
                .by_account
                .insert(self.key.clone(), cleared)
                .is_some_and(|kept| kept.id.is_some());
            if had_id {
                ids.unsaved = true;
                self.ids.changed.notify_one();
                tracing::warn!(
                    vendor = "sprecord",
                    account = %self.key.0,
                    bytes = id.len(),
                    "an SSE event id {why} cannot go back as Last-Event-ID: the streams reconnect without asking for history"
                );
            }
            return;
        }
        match ids.by_account.get_mut(&self.key) {
            Some(kept) if kept.seq == seq && kept.id.as_deref() == Some(id) => return,
            Some(kept) => {
                kept.seq = seq;
                match &mut kept.id {
                    Some(kept_id) => id.clone_into(kept_id),
                    None => kept.id = Some(id.to_owned()),
                }
            }
            None => {
                let point = Point {
                    seq,
                    id: Some(id.to_owned()),
                };
                ids.by_account.insert(self.key.clone(), point);
            }
        }
        ids.unsaved = true;
        self.ids.changed.notify_one();
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
}

/// The key of an account's resume point: its name and its `url` without
/// credentials or query.
pub fn key(account: &str, url: &str) -> Key {
    (account.to_owned(), url_without_credentials(url))
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
        first.advance(41, "41");
        first.advance(42, "42");
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
        stream.advance(41, "41");
        stream.advance(42, &"x".repeat(MAX_ID_BYTES + 1));
        assert_eq!(stream.get(), None);
        let longest = "y".repeat(MAX_ID_BYTES);
        stream.advance(43, &longest);
        assert_eq!(stream.get(), Some(longest));
    }

    /// An id with a control character cannot be a header: kept, every
    /// stream's every reconnect logged it again, naming no account.
    #[test]
    fn an_id_holding_a_control_character_clears_the_resume_point() {
        let ids = Arc::new(ResumeIds::default());
        let stream = resume(&ids, "http://a/sys/events");
        stream.advance(41, "41");
        stream.advance(42, "4\u{1}2");
        assert_eq!(stream.get(), None);
        // Text beyond ASCII goes back as the server wrote it.
        stream.advance(43, "số-43");
        assert_eq!(stream.get().as_deref(), Some("số-43"));
    }

    /// Each change is reported unsaved once; a failed save reports it again.
    #[test]
    fn a_change_is_unsaved_until_taken_and_again_after_a_failed_save() {
        let ids = Arc::new(ResumeIds::default());
        assert_eq!(ids.unsaved(), None);
        let stream = resume(&ids, "http://a/sys/events");
        stream.advance(41, "41");
        let key = ("main".to_owned(), "http://a/sys/events".to_owned());
        assert_eq!(
            ids.unsaved(),
            Some(vec![(key.clone(), (41, "41".to_owned()))])
        );
        assert_eq!(ids.unsaved(), None);
        // The same id again (another stream's copy of the event) is no change.
        stream.advance(41, "41");
        assert_eq!(ids.unsaved(), None);
        ids.not_saved();
        assert_eq!(ids.unsaved(), Some(vec![(key, (41, "41".to_owned()))]));
        // A cleared id is a change: the journal must forget it too.
        stream.advance(42, &"x".repeat(MAX_ID_BYTES + 1));
        assert_eq!(ids.unsaved(), Some(vec![]));
    }

    /// The journal's ids come back for the accounts and servers still
    /// configured; the others are dropped, and the next save forgets them.
    #[test]
    fn restored_ids_are_kept_for_configured_accounts_only() {
        let key = |account: &str, url: &str| (account.to_owned(), url.to_owned());
        let saved = vec![
            (key("main", "http://a/sys/events"), (41, "41".to_owned())),
            (key("main", "http://old/sys/events"), (7, "7".to_owned())),
            (key("gone", "http://a/sys/events"), (9, "9".to_owned())),
        ];
        let configured = [key("main", "http://a/sys/events")];
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
    }

    /// An account removed or renamed by a reload is forgotten (and so is
    /// its stored copy, at the next save).
    #[test]
    fn ids_of_accounts_no_longer_configured_are_forgotten() {
        let ids = Arc::new(ResumeIds::default());
        ResumeId::in_ids(&ids, "kept", "http://a/sys/events").advance(1, "1");
        ResumeId::in_ids(&ids, "gone", "http://a/sys/events").advance(2, "2");
        ids.unsaved();
        ids.keep_only(&[key("kept", "http://a/sys/events")]);
        assert_eq!(
            ids.unsaved(),
            Some(vec![(
                key("kept", "http://a/sys/events"),
                (1, "1".to_owned())
            )])
        );
        ids.keep_only(&[key("kept", "http://a/sys/events")]);
        assert_eq!(ids.unsaved(), None, "nothing forgotten, nothing to save");
    }

    /// A stream catching up hands on its duplicates after the account's
    /// newest event: they carry their first copy's (lower) seq, and the
    /// point stays. Before, the last stream to hand one on set it, so a
    /// restart could resume from a lagging stream's older id.
    #[test]
    fn a_lagging_streams_duplicates_do_not_move_the_point_back() {
        let ids = Arc::new(ResumeIds::default());
        let front = ResumeId::in_ids(&ids, "main", "http://a/sys/events");
        let lagging = front.clone();
        front.advance(100, "e100");
        lagging.advance(99, "e99");
        lagging.advance(100, "e100");
        assert_eq!(front.get().as_deref(), Some("e100"));
        assert_eq!(front.seq(), 100);
        // A malformed event after it, seen by the front stream, moves the
        // id on; the lagging stream, still at 99, passing an older one does not.
        front.pass(100, "bad101");
        lagging.pass(99, "bad98");
        assert_eq!(front.get().as_deref(), Some("bad101"));
        front.advance(102, "e102");
        assert_eq!((front.seq(), front.get().as_deref()), (102, Some("e102")));
        // An id that cannot be a header from a lagging stream clears nothing.
        lagging.advance(101, &"x".repeat(MAX_ID_BYTES + 1));
        assert_eq!(front.get().as_deref(), Some("e102"));
    }
}
