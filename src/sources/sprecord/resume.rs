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

/// Every account's last handed-on id, for one relay.
#[derive(Debug, Default)]
pub struct ResumeIds {
    ids: Mutex<Ids>,
    /// Woken at every change, for the saver.
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Ids {
    by_account: HashMap<Key, String>,
    /// Changed since the last [`ResumeIds::unsaved`].
    unsaved: bool,
}

impl ResumeIds {
    /// The ids the journal kept from the last run, for the accounts
    /// `configured` still names (an id means nothing to another account or
    /// server; those left out are gone from the journal at the next save).
    pub fn restored(saved: Vec<SavedResumeId>, configured: &[Key]) -> ResumeIds {
        let restored = ResumeIds::default();
        restored.lock().by_account = saved.into_iter().collect();
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
            .map(|(key, id)| (key.clone(), id.clone()))
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

    /// The last id any of the account's streams handed to ingest, if any.
    pub fn get(&self) -> Option<String> {
        self.ids.lock().by_account.get(&self.key).cloned()
    }

    /// Notes `id` as the last one handed on; one that cannot go back as
    /// `Last-Event-ID` (over [`MAX_ID_BYTES`], or holding a control
    /// character) clears the resume point instead.
    pub fn set(&self, id: &str) {
        let mut ids = self.ids.lock();
        let why = if id.len() > MAX_ID_BYTES {
            Some("is too long")
        } else if !is_header_text(id) {
            Some("holds a control character, so it cannot be a header, and")
        } else {
            None
        };
        if let Some(why) = why {
            if ids.by_account.remove(&self.key).is_some() {
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
            Some(kept) if kept == id => return,
            Some(kept) => id.clone_into(kept),
            None => {
                ids.by_account.insert(self.key.clone(), id.to_owned());
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
        let key = ("main".to_owned(), "http://a/sys/events".to_owned());
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

    /// The journal's ids come back for the accounts and servers still
    /// configured; the others are dropped, and the next save forgets them.
    #[test]
    fn restored_ids_are_kept_for_configured_accounts_only() {
        let key = |account: &str, url: &str| (account.to_owned(), url.to_owned());
        let saved = vec![
            (key("main", "http://a/sys/events"), "41".to_owned()),
            (key("main", "http://old/sys/events"), "7".to_owned()),
            (key("gone", "http://a/sys/events"), "9".to_owned()),
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
}
