//! The sinks' cursors: the last seq each has delivered, and the state a sink
//! keeps beside it (the Kafka sink's offsets and whether it stopped clean).
//!
//! Guarantees: a cursor and its state are written in one transaction, so a
//! crash never leaves one without the other (a cursor written alone keeps
//! the state last written with it: the sink's state may be older than its
//! cursor, never newer); a non-durable write rides on the next durable
//! commit (a stale cursor only re-sends: at least once).

use redb::ReadableDatabase;

use super::{CURSOR_STATES, CURSORS, Journal, JournalError, storage};

/// What a cursor write does with the sink's state beside it.
enum StateWrite<'a> {
    Replace(&'a [u8]),
    Remove,
    Keep,
}

impl Journal {
    /// The persisted cursor of a sink (0 when it has none yet).
    pub fn cursor(&self, name: &str) -> Result<Option<u64>, JournalError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(storage)?;
        let cursors = txn.open_table(CURSORS).map_err(storage)?;
        Ok(cursors.get(name).map_err(storage)?.map(|v| v.value()))
    }

    /// Stores a sink's cursor and removes any state stored with it.
    /// `durable = false` rides on the next durable commit (a stale cursor
    /// only re-sends, at-least-once); use `true` at shutdown.
    pub fn set_cursor(&self, name: &str, seq: u64, durable: bool) -> Result<(), JournalError> {
        self.write_cursor(name, seq, StateWrite::Remove, durable)
    }

    /// Stores a sink's cursor and keeps the state last stored with it.
    /// Durability as in [`Self::set_cursor`].
    pub fn set_cursor_keeping_state(
        &self,
        name: &str,
        seq: u64,
        durable: bool,
    ) -> Result<(), JournalError> {
        self.write_cursor(name, seq, StateWrite::Keep, durable)
    }

    /// The state a sink stored with its cursor, if any.
    pub fn cursor_state(&self, name: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let db = self.db()?;
        let txn = db.begin_read().map_err(storage)?;
        let states = txn.open_table(CURSOR_STATES).map_err(storage)?;
        Ok(states
            .get(name)
            .map_err(storage)?
            .map(|v| v.value().to_vec()))
    }

    /// Stores a sink's cursor and its state in one transaction, so a crash
    /// never leaves one without the other. Durability as in [`Self::set_cursor`].
    pub fn set_cursor_with_state(
        &self,
        name: &str,
        seq: u64,
        state: &[u8],
        durable: bool,
    ) -> Result<(), JournalError> {
        self.write_cursor(name, seq, StateWrite::Replace(state), durable)
    }

    fn write_cursor(
        &self,
        name: &str,
        seq: u64,
        state: StateWrite<'_>,
        durable: bool,
    ) -> Result<(), JournalError> {
        #[cfg(test)]
        if self
            .cursor_writes_refused
            .load(std::sync::atomic::Ordering::Acquire)
        {
            // ENOSPC: a refusal that is not the file's being gone.
            return Err(super::storage(std::io::Error::from_raw_os_error(28)));
        }
        let (_held, txn) = self.begin_state_write(durable)?;
        {
            let mut cursors = txn.open_table(CURSORS).map_err(storage)?;
            cursors.insert(name, seq).map_err(storage)?;
            let mut states = txn.open_table(CURSOR_STATES).map_err(storage)?;
            match state {
                StateWrite::Replace(state) => states.insert(name, state).map(drop),
                StateWrite::Remove => states.remove(name).map(drop),
                StateWrite::Keep => Ok(()),
            }
            .map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        #[cfg(test)]
        if durable {
            self.durable_cursor_writes
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        Ok(())
    }

    /// Test-only: how many cursor writes were committed durably.
    #[cfg(test)]
    pub(crate) fn durable_cursor_writes(&self) -> u64 {
        self.durable_cursor_writes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Test-only: makes every cursor write fail (see `cursor_writes_refused`)
    /// while `refused`.
    #[cfg(test)]
    pub(crate) fn refuse_cursor_writes(&self, refused: bool) {
        self.cursor_writes_refused
            .store(refused, std::sync::atomic::Ordering::Release);
    }

    pub fn remove_cursor(&self, name: &str) -> Result<(), JournalError> {
        self.refuse_if_file_gone()?;
        let db = self.db()?;
        let (_writing, txn) = self.begin_write(&db).map_err(storage)?;
        {
            let mut cursors = txn.open_table(CURSORS).map_err(storage)?;
            cursors.remove(name).map_err(storage)?;
            let mut states = txn.open_table(CURSOR_STATES).map_err(storage)?;
            states.remove(name).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(())
    }
}
