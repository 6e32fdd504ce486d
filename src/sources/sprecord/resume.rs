//! Where each stream resumes: the id of the last event it handed to ingest,
//! per (account, url, stream), kept for the life of the relay.
//!
//! Why not in the stream task: a reload that changes the source, or a stream
//! restarted after a panic, starts new tasks; an id held there was lost and
//! the new stream asked for no history, dropping what the server sent in
//! between. Why a registry keyed by the relay's [`Context`] and not a field of
//! it: the id must outlive the source, and two relays in one process (tests)
//! must not share ids. The url is part of the key because an id means nothing
//! to another server.
//!
//! Guarantees: an id set is returned by every later `get` for the same key
//! and relay, until the relay's `Context` is dropped; a poisoned lock is
//! recovered (the map is always consistent: single inserts).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use crate::app::Context;

type Key = (String, String, usize);
type Relays = Vec<(Weak<Context>, HashMap<Key, String>)>;

static IDS: LazyLock<Mutex<Relays>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// One stream's resume point.
#[derive(Clone, Debug)]
pub struct ResumeId {
    relay: Weak<Context>,
    key: Key,
}

impl ResumeId {
    pub fn new(ctx: &Arc<Context>, account: &str, url: &str, stream: usize) -> ResumeId {
        ResumeId {
            relay: Arc::downgrade(ctx),
            key: (account.to_owned(), url.to_owned(), stream),
        }
    }

    /// The last id handed to ingest on this stream, if any.
    pub fn get(&self) -> Option<String> {
        let mut relays = IDS.lock().unwrap_or_else(PoisonError::into_inner);
        Self::ids(&mut relays, &self.relay).get(&self.key).cloned()
    }

    pub fn set(&self, id: &str) {
        let mut relays = IDS.lock().unwrap_or_else(PoisonError::into_inner);
        Self::ids(&mut relays, &self.relay).insert(self.key.clone(), id.to_owned());
    }

    /// This relay's ids; forgets relays that are gone.
    fn ids<'a>(relays: &'a mut Relays, relay: &Weak<Context>) -> &'a mut HashMap<Key, String> {
        relays.retain(|(r, _)| r.strong_count() > 0);
        let at = match relays.iter().position(|(r, _)| r.ptr_eq(relay)) {
            Some(at) => at,
            None => {
                relays.push((relay.clone(), HashMap::new()));
                relays.len() - 1
            }
        };
        &mut relays[at].1
    }
}
