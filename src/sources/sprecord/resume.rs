//! Where each stream resumes: the id of the last event it handed to ingest,
//! per (account, url, stream), kept for the life of the relay.
//!
//! Why not in the stream task: a reload that changes the source, or a stream
//! restarted after a panic, starts new tasks; an id held there was lost and
//! the new stream asked for no history, dropping what the server sent in
//! between. The ids live in the relay's [`Context`] (two relays in one
//! process, as in tests, do not share them). The url is part of the key
//! because an id means nothing to another server.
//!
//! Guarantees: an id set is returned by every later `get` for the same key
//! and relay; a poisoned lock is recovered (the map is always consistent:
//! single inserts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::app::Context;

type Key = (String, String, usize);

/// Every stream's last handed-on id, for one relay.
#[derive(Debug, Default)]
pub struct ResumeIds(Mutex<HashMap<Key, String>>);

impl ResumeIds {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One stream's resume point.
#[derive(Clone, Debug)]
pub struct ResumeId {
    ids: Arc<ResumeIds>,
    key: Key,
}

impl ResumeId {
    pub fn new(ctx: &Arc<Context>, account: &str, url: &str, stream: usize) -> ResumeId {
        ResumeId {
            ids: ctx.sse_resume.clone(),
            key: (account.to_owned(), url.to_owned(), stream),
        }
    }

    /// The last id handed to ingest on this stream, if any.
    pub fn get(&self) -> Option<String> {
        self.ids.lock().get(&self.key).cloned()
    }

    pub fn set(&self, id: &str) {
        self.ids.lock().insert(self.key.clone(), id.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resume(ids: &Arc<ResumeIds>, url: &str, stream: usize) -> ResumeId {
        ResumeId {
            ids: ids.clone(),
            key: ("main".to_owned(), url.to_owned(), stream),
        }
    }

    #[test]
    fn an_id_set_is_got_back_for_its_stream_only() {
        let ids = Arc::new(ResumeIds::default());
        let first = resume(&ids, "http://a/sys/events", 0);
        assert_eq!(first.get(), None);
        first.set("41");
        first.set("42");
        // A stream started anew (after a reload or a panic) finds it.
        assert_eq!(
            resume(&ids, "http://a/sys/events", 0).get().as_deref(),
            Some("42")
        );
        // Another stream, or another server, has its own.
        assert_eq!(resume(&ids, "http://a/sys/events", 1).get(), None);
        assert_eq!(resume(&ids, "http://b/sys/events", 0).get(), None);
    }
}
