//! The SPRecord accounts' resume ids (`Last-Event-ID`), kept in the journal
//! so that a restart resumes where the last run's streams stopped.
//!
//! Guarantees: a save replaces every stored id at once, in one transaction
//! (an id cleared in memory is cleared here too), but for the accounts the
//! caller says to keep (a run that could not read the stored ids keeps
//! those of the accounts it has none for); stored ids that cannot be read
//! (damaged) are dropped by the next save, said at WARN, and the save's own
//! stored; a non-durable save rides
//! on the next durable commit, the writer's or the final save at a stop, so
//! after a crash an id is at most the last save's age behind (a server that
//! keeps history re-sends those events, and dedup finds them if the relay
//! is back within `dedup.window`; after a longer outage they are journaled
//! again, with the same `id`).

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Journal, JournalError, storage};

/// (account, url) → the id to resume after. Named apart from "sse_resume",
/// which builds of this change's first days wrote with another value type
/// (redb refuses to open a table as another type; those builds never
/// shipped, and their table is left alone).
pub(super) const SSE_RESUME: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("sprecord_resume");

/// One account's resume point: (account, url) and the id.
pub type SavedResumeId = ((String, String), String);

impl Journal {
    /// The resume ids the last save stored. A damaged table is an error,
    /// not a panic (redb panics on text that is not UTF-8): read at every
    /// start, it would otherwise end each start of the relay.
    pub fn sse_resume_ids(&self) -> Result<Vec<SavedResumeId>, JournalError> {
        let db = self.db()?;
        self.stored_ids(&db)
    }

    fn stored_ids(&self, db: &redb::Database) -> Result<Vec<SavedResumeId>, JournalError> {
        self.read_unless_damaged("the SPRecord resume ids", || {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(SSE_RESUME).map_err(storage)?;
            let mut ids = Vec::new();
            for entry in table.iter().map_err(storage)? {
                let (key, id) = entry.map_err(storage)?;
                let (account, url) = key.value();
                ids.push(((account.to_owned(), url.to_owned()), id.value().to_owned()));
            }
            Ok(ids)
        })
    }

    /// Replaces the stored resume ids with `ids`, keeping the stored ids
    /// of the `kept` (account, url) keys that `ids` does not hold.
    /// `durable = false` rides on the next durable commit; use `true` at a
    /// stop. Stored ids that cannot be read (damaged) are all dropped, said
    /// at WARN: redb decodes what it hands out (`retain` included) and
    /// panics on text that is not UTF-8, so a save over them panicked in
    /// its write transaction, every second, storing nothing for the run.
    pub fn save_sse_resume_ids(
        &self,
        ids: &[SavedResumeId],
        kept: &[(String, String)],
        durable: bool,
    ) -> Result<(), JournalError> {
        let (held, txn) = self.begin_state_write(durable)?;
        // Read before any change, under the write lock: what the write
        // transaction sees, and a panic there only ends a read.
        let stored = match self.stored_ids(held.db()) {
            Ok(stored) => Some(stored),
            Err(JournalError::Damaged { path, .. }) => {
                tracing::warn!(path = %path.display(),
                    "the stored SPRecord resume ids could not be read: they are dropped, and the accounts without an id in this run open their streams without Last-Event-ID");
                None
            }
            Err(e) => return Err(e),
        };
        {
            let mut table = match stored {
                Some(stored) => {
                    let mut table = txn.open_table(SSE_RESUME).map_err(storage)?;
                    // By key, never decoding a stored id again.
                    for (key, _) in stored.iter().filter(|(key, _)| !kept.contains(key)) {
                        table
                            .remove((key.0.as_str(), key.1.as_str()))
                            .map_err(storage)?;
                    }
                    table
                }
                None => {
                    txn.delete_table(SSE_RESUME).map_err(storage)?;
                    txn.open_table(SSE_RESUME).map_err(storage)?
                }
            };
            for ((account, url), id) in ids {
                table
                    .insert((account.as_str(), url.as_str()), id.as_str())
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests_support::options;

    fn open_in(dir: &std::path::Path) -> Journal {
        Journal::open(options(dir)).unwrap()
    }

    fn saved(account: &str, url: &str, id: &str) -> SavedResumeId {
        ((account.to_owned(), url.to_owned()), id.to_owned())
    }

    #[test]
    fn saved_ids_are_read_back_after_a_reopen_and_a_save_replaces_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let journal = open_in(dir.path());
        assert_eq!(journal.sse_resume_ids().unwrap(), vec![]);
        let first = vec![
            saved("a", "http://x/sys/events", "41"),
            saved("b", "http://y/sys/events", "số-7"),
        ];
        journal.save_sse_resume_ids(&first, &[], false).unwrap();
        assert_eq!(journal.sse_resume_ids().unwrap(), first);
        // b's id was cleared in memory: the next save clears it here too.
        let second = vec![saved("a", "http://x/sys/events", "42")];
        journal.save_sse_resume_ids(&second, &[], true).unwrap();
        assert!(journal.close(std::time::Duration::from_secs(5)));
        drop(journal);
        let journal = open_in(dir.path());
        assert_eq!(journal.sse_resume_ids().unwrap(), second);
    }

    /// A journal in `dir` whose stored resume id is not UTF-8.
    fn damaged_in(dir: &std::path::Path) -> Journal {
        let journal = open_in(dir);
        let marker = "id-damaged-here-7a1f";
        journal
            .save_sse_resume_ids(&[saved("a", "http://x/sys/events", marker)], &[], true)
            .unwrap();
        assert!(journal.close(std::time::Duration::from_secs(5)));
        drop(journal);
        let file = dir.join("journal.redb");
        let mut bytes = std::fs::read(&file).unwrap();
        let mut found = 0;
        for at in 0..bytes.len().saturating_sub(marker.len()) {
            if &bytes[at..at + marker.len()] == marker.as_bytes() {
                bytes[at + 3] = 0xff;
                found += 1;
            }
        }
        assert!(found > 0, "the id is not in the file");
        std::fs::write(&file, bytes).unwrap();
        open_in(dir)
    }

    /// redb panics on a `&str` whose bytes are not UTF-8; the ids are read
    /// at every start, so one damaged byte ended every start.
    #[test]
    fn damaged_ids_are_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let journal = damaged_in(dir.path());
        let read = journal.sse_resume_ids();
        assert!(
            matches!(read, Err(JournalError::Damaged { .. })),
            "{read:?}"
        );
    }

    /// A save's `retain` decoded every stored id: over a damaged one each
    /// save panicked (on the blocking pool, every second, inside a write
    /// transaction) and no id was stored for the whole run. The unreadable
    /// ids are dropped, said once, and the save stores its own.
    #[test]
    fn a_save_over_damaged_ids_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let journal = damaged_in(dir.path());
        let fresh = vec![saved("b", "http://y/sys/events", "9")];
        let logged = crate::logging::tests_support::logged_json(|| {
            journal
                .save_sse_resume_ids(&fresh, &[("a".into(), "http://x/sys/events".into())], false)
                .unwrap();
        });
        assert!(logged.contains("could not be read"), "{logged}");
        assert_eq!(journal.sse_resume_ids().unwrap(), fresh);
        let again = crate::logging::tests_support::logged_json(|| {
            journal.save_sse_resume_ids(&fresh, &[], true).unwrap();
        });
        assert_eq!(again, "", "said once");
        assert_eq!(journal.sse_resume_ids().unwrap(), fresh);
    }
}
