//! The dedup index: which event ids were journaled within the dedup window,
//! and as which seq.
//!
//! Lookups go to hash maps in memory; the durable copy is a table keyed by
//! seq (`dedup_log`), written in the same transaction as the events, so an
//! insert appends at the end of a B-tree instead of copying a random page per
//! event (the cost of the earlier id-keyed table), and expiry deletes from its
//! front. The map is rebuilt from the table when the journal opens.
//!
//! Guarantees: the map and the table hold the same entries after every
//! committed append (a refused batch leaves both untouched); an id's latest
//! entry wins; an entry outlives its event when `max_size` drops the event
//! early, and goes only when the window has passed. The map grows a 256th
//! at a time ([`SHARDS`]), so no append waits for the whole index to be
//! rehashed.

use std::collections::HashMap;

use redb::{ReadableTable, Table, TableDefinition};

use super::{JournalError, clock, storage};
use crate::event::EventId;

/// seq → [event id: 16 bytes][journaled_at_ms: u64 LE].
pub(super) const DEDUP_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("dedup_log");
/// The id-keyed index of journals written before `dedup_log`: id → (seq, journaled_at_ms).
pub(super) const LEGACY_DEDUP: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("dedup");
/// Its companion, which `dedup_log` makes unnecessary.
pub(super) const LEGACY_ORPHANS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("dedup_orphans");

const ENTRY_LEN: usize = 24;

/// One id's latest journaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seen {
    pub seq: u64,
    pub at_ms: u64,
}

/// Shards of the in-memory map, chosen by an id's first byte (ids are
/// SHA-256 output, so the shards fill evenly). A hash map doubles by
/// rehashing every entry at once: one map doubling at 29.4 million entries
/// (reached within a 24 h window at 400 events/s, 34.6 million) did so on
/// the writer thread for seconds, no commit answered meanwhile, and held
/// its old table beside one twice its size. A shard doubles alone, a 256th
/// of that.
const SHARDS: usize = 256;

/// Below this many slots a shard keeps its room: shrinking would only
/// rehash again at the next few events.
const SHARD_ROOM_KEPT: usize = 16;

/// The in-memory side of the index.
pub(super) struct DedupIndex {
    shards: Box<[HashMap<EventId, Seen>]>,
}

impl Default for DedupIndex {
    fn default() -> Self {
        DedupIndex::with_room_for(0)
    }
}

impl DedupIndex {
    /// An empty index with room for about `entries` ids without growing.
    /// A room that cannot be had (a count from a damaged table) is left to
    /// growth: a start must not abort on it.
    fn with_room_for(entries: usize) -> Self {
        let even = entries / SHARDS;
        // Four standard deviations over the even share (a shard's count of
        // SHA-256 ids is binomial): few enough to round few shards up to
        // twice the buckets, enough that none grows as the table loads.
        let each = if entries == 0 {
            0
        } else {
            even + 4 * even.isqrt() + 16
        };
        let shard = || {
            let mut map = HashMap::new();
            let _ = map.try_reserve(each);
            map
        };
        DedupIndex {
            shards: (0..SHARDS).map(|_| shard()).collect(),
        }
    }

    fn shard(&self, id: &EventId) -> &HashMap<EventId, Seen> {
        &self.shards[usize::from(id.0[0]) % SHARDS]
    }

    fn shard_mut(&mut self, id: &EventId) -> &mut HashMap<EventId, Seen> {
        &mut self.shards[usize::from(id.0[0]) % SHARDS]
    }

    /// Loads every entry of `dedup_log` (expiry keeps it to about one window).
    pub fn load<T: ReadableTable<u64, &'static [u8]>>(table: &T) -> Result<Self, JournalError> {
        // Sized once from the table: grown by doubling, a start rehashed
        // every entry loaded so far at each of some twenty doublings.
        let entries = usize::try_from(table.len().map_err(storage)?).unwrap_or(usize::MAX);
        let mut index = DedupIndex::with_room_for(entries);
        for entry in table.iter().map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let seq = k.value();
            let (id, at_ms) = decode_entry(seq, v.value())?;
            // Entries come in seq order, so a later journaling of an id wins.
            index.shard_mut(&id).insert(id, Seen { seq, at_ms });
        }
        Ok(index)
    }

    /// The seq under which `id` was journaled less than `window_ms` before `now_ms`.
    pub fn within_window(&self, id: &EventId, now_ms: u64, window_ms: u64) -> Option<u64> {
        self.shard(id)
            .get(id)
            .filter(|seen| now_ms.saturating_sub(seen.at_ms) < window_ms)
            .map(|seen| seen.seq)
    }

    /// Records committed journalings.
    pub fn extend(&mut self, committed: impl IntoIterator<Item = (EventId, Seen)>) {
        for (id, seen) in committed {
            self.shard_mut(&id).insert(id, seen);
        }
    }

    /// Forgets the entries [`expire`] removed from the table, in a
    /// transaction that has committed.
    pub(super) fn forget_expired(&mut self, expired: &[(EventId, u64)]) {
        for (id, seq) in expired {
            self.forget(id, *seq);
        }
        if !expired.is_empty() {
            self.give_back_room();
        }
    }

    /// Forgets `id` if its latest entry is the one at `seq`.
    fn forget(&mut self, id: &EventId, seq: u64) {
        let shard = self.shard_mut(id);
        if shard.get(id).is_some_and(|seen| seen.seq == seq) {
            shard.remove(id);
        }
    }

    /// The journaling times held, in no order.
    pub fn times_ms(&self) -> impl Iterator<Item = u64> + '_ {
        self.shards
            .iter()
            .flat_map(|shard| shard.values().map(|seen| seen.at_ms))
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    /// Slots held, used or not.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.shards.iter().map(HashMap::capacity).sum()
    }

    /// The most entries one growth of the map may have to rehash at once.
    #[cfg(test)]
    fn largest_map_len(&self) -> usize {
        self.shards.iter().map(HashMap::len).max().unwrap_or(0)
    }

    /// Gives back the room a burst made once most of it is empty: a hash map
    /// keeps its largest size, so a vendor replaying its backlog would
    /// otherwise hold a table sized for that burst's window (hundreds of MB)
    /// for the life of the process. Halving only below a quarter full keeps
    /// the rehashing to a few times per burst.
    fn give_back_room(&mut self) {
        for shard in self.shards.iter_mut() {
            let (len, capacity) = (shard.len(), shard.capacity());
            if capacity > SHARD_ROOM_KEPT && len < capacity / 4 {
                shard.shrink_to(len.saturating_mul(2));
            }
        }
    }
}

/// Writes an entry of `dedup_log` in the append's transaction.
pub(super) fn insert_entry(
    table: &mut Table<u64, &[u8]>,
    id: &EventId,
    seen: Seen,
) -> Result<(), JournalError> {
    let mut entry = [0u8; ENTRY_LEN];
    entry[..16].copy_from_slice(&id.0);
    entry[16..].copy_from_slice(&seen.at_ms.to_le_bytes());
    table.insert(seen.seq, entry.as_slice()).map_err(storage)?;
    Ok(())
}

/// Removes up to `limit` entries from the front of `dedup_log` whose window
/// has passed, and returns them, for [`DedupIndex::forget_expired`] once the
/// transaction has committed (forgotten before, a pass whose commit failed
/// left the index without entries the table still had). Stops at the
/// first entry still within its window (entries are in seq order, which is
/// time order: the journal's clock never goes back; an entry written out of
/// order, by an older relay on a clock that stepped back, only lives longer;
/// one stamped after `now_ms` counts from `clock_started_ms`, see
/// [`clock::age_from`]).
pub(super) fn expire(
    table: &mut Table<u64, &[u8]>,
    now_ms: u64,
    clock_started_ms: u64,
    window_ms: u64,
    limit: usize,
) -> Result<Vec<(EventId, u64)>, JournalError> {
    let mut removed = Vec::new();
    while removed.len() < limit {
        let front = table
            .first()
            .map_err(storage)?
            .map(|(k, v)| (k.value(), v.value().to_vec()));
        let Some((seq, entry)) = front else { break };
        let (id, at_ms) = decode_entry(seq, &entry)?;
        let at_ms = clock::age_from(at_ms, now_ms, clock_started_ms);
        if now_ms.saturating_sub(at_ms) < window_ms {
            break;
        }
        table.remove(seq).map_err(storage)?;
        removed.push((id, seq));
    }
    Ok(removed)
}

/// Moves a legacy id-keyed index into `dedup_log` and deletes the legacy tables.
pub(super) fn migrate_legacy(txn: &redb::WriteTransaction) -> Result<(), JournalError> {
    use redb::TableHandle;
    let has_legacy = txn
        .list_tables()
        .map_err(storage)?
        .any(|t| t.name() == LEGACY_DEDUP.name() || t.name() == LEGACY_ORPHANS.name());
    if !has_legacy {
        return Ok(());
    }
    let legacy: Vec<(Vec<u8>, (u64, u64))> = {
        let table = txn.open_table(LEGACY_DEDUP).map_err(storage)?;
        let mut all = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            all.push((k.value().to_vec(), v.value()));
        }
        all
    };
    {
        let mut log = txn.open_table(DEDUP_LOG).map_err(storage)?;
        for (id, (seq, at_ms)) in legacy {
            let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) else {
                return Err(JournalError::Corrupt { seq });
            };
            insert_entry(&mut log, &EventId(id), Seen { seq, at_ms })?;
        }
    }
    txn.delete_table(LEGACY_DEDUP).map_err(storage)?;
    txn.delete_table(LEGACY_ORPHANS).map_err(storage)?;
    Ok(())
}

fn decode_entry(seq: u64, entry: &[u8]) -> Result<(EventId, u64), JournalError> {
    let corrupt = || JournalError::Corrupt { seq };
    let id: [u8; 16] = entry
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    let at: [u8; 8] = entry
        .get(16..ENTRY_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(corrupt)?;
    Ok((EventId(id), u64::from_le_bytes(at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_a_short_one_is_corrupt() {
        let id = EventId([7; 16]);
        let mut entry = [0u8; ENTRY_LEN];
        entry[..16].copy_from_slice(&id.0);
        entry[16..].copy_from_slice(&42u64.to_le_bytes());
        assert_eq!(decode_entry(1, &entry).unwrap(), (id, 42));
        assert!(matches!(
            decode_entry(3, &entry[..23]),
            Err(JournalError::Corrupt { seq: 3 })
        ));
    }

    #[test]
    fn the_window_is_half_open_and_the_latest_entry_wins() {
        let mut index = DedupIndex::default();
        let id = EventId([1; 16]);
        index.extend([(
            id,
            Seen {
                seq: 1,
                at_ms: 1_000,
            },
        )]);
        assert_eq!(index.within_window(&id, 1_000, 600), Some(1));
        assert_eq!(index.within_window(&id, 1_599, 600), Some(1));
        assert_eq!(index.within_window(&id, 1_600, 600), None);
        index.extend([(
            id,
            Seen {
                seq: 9,
                at_ms: 1_700,
            },
        )]);
        assert_eq!(index.within_window(&id, 1_800, 600), Some(9));
        // The journal's clock starts no earlier than this.
        index.extend([(
            EventId([2; 16]),
            Seen {
                seq: 10,
                at_ms: 1_200,
            },
        )]);
        assert_eq!(index.times_ms().max(), Some(1_700));
        index.forget(&EventId([2; 16]), 10);
        // Forgetting the older entry leaves the newer one.
        index.forget(&id, 1);
        assert_eq!(index.len(), 1);
        index.forget(&id, 9);
        assert_eq!(index.len(), 0);
    }

    /// Expiry removes at most `limit` entries a call (retention commits
    /// chunk by chunk), only those past the window, and says how many.
    #[test]
    fn expiry_takes_the_front_past_the_window_a_limited_chunk_at_a_time() {
        use redb::ReadableTableMetadata;
        let db = crate::journal::tests_support::in_memory_db();
        let txn = db.begin_write().unwrap();
        let mut table = txn.open_table(DEDUP_LOG).unwrap();
        let mut index = DedupIndex::default();
        for seq in 1..=6u64 {
            let id = EventId([seq as u8; 16]);
            // Five old entries, the sixth within the window.
            let seen = Seen {
                seq,
                at_ms: if seq < 6 { seq } else { 9_000 },
            };
            insert_entry(&mut table, &id, seen).unwrap();
            index.extend([(id, seen)]);
        }
        let mut expire_chunk = || {
            let expired = expire(&mut table, 10_000, 0, 5_000, 2).unwrap();
            index.forget_expired(&expired);
            expired.len()
        };
        assert_eq!(expire_chunk(), 2);
        assert_eq!(expire_chunk(), 2);
        assert_eq!(expire_chunk(), 1);
        assert_eq!(expire_chunk(), 0);
        assert_eq!(table.len().unwrap(), 1);
        assert_eq!(index.len(), 1);
        assert_eq!(
            index.within_window(&EventId([6; 16]), 10_000, 5_000),
            Some(6)
        );
    }

    /// Journals `seqs` at time 1 under the ids `id_of` gives, in the table
    /// and in a fresh index, as committed appends leave both.
    fn journaled(
        table: &mut Table<u64, &[u8]>,
        seqs: std::ops::RangeInclusive<u64>,
        id_of: impl Fn(u64) -> EventId,
    ) -> DedupIndex {
        let mut index = DedupIndex::default();
        for seq in seqs {
            let id = id_of(seq);
            let seen = Seen { seq, at_ms: 1 };
            insert_entry(table, &id, seen).unwrap();
            index.extend([(id, seen)]);
        }
        index
    }

    /// A map doubles by rehashing all it holds, on the writer thread, no
    /// commit answered meanwhile: with real ids (SHA-256 output) no map
    /// holds more than a small share of the index, and a loaded index has
    /// room for what it loaded.
    #[test]
    fn no_growth_rehashes_more_than_a_small_share_of_the_index() {
        use crate::event::{EventId, Vendor};
        let db = crate::journal::tests_support::in_memory_db();
        let txn = db.begin_write().unwrap();
        let mut table = txn.open_table(DEDUP_LOG).unwrap();
        let entries = 100_000u64;
        let index = journaled(&mut table, 1..=entries, |seq| {
            EventId::for_key(Vendor::Tel4vn, "main", &format!("call-{seq}"))
        });
        assert_eq!(index.len(), entries as usize);
        // An even share is 391; before, one map held all 100,000.
        assert!(
            index.largest_map_len() < 600,
            "one map holds {} of {entries}",
            index.largest_map_len()
        );
        let loaded = DedupIndex::load(&table).unwrap();
        assert_eq!(loaded.len(), entries as usize);
        assert!(loaded.largest_map_len() < 600);
        assert_eq!(
            loaded.capacity(),
            DedupIndex::with_room_for(entries as usize).capacity(),
            "sized from the table, not grown to it"
        );
    }

    #[test]
    fn expiry_gives_back_the_room_a_burst_took() {
        let db = crate::journal::tests_support::in_memory_db();
        let txn = db.begin_write().unwrap();
        let mut table = txn.open_table(DEDUP_LOG).unwrap();
        let burst = 50_000u64;
        let mut index = journaled(&mut table, 1..=burst, |seq| {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&seq.to_le_bytes());
            EventId(id)
        });
        assert!(index.capacity() >= burst as usize);
        let expired = expire(&mut table, 10_000, 0, 5_000, usize::MAX).unwrap();
        index.forget_expired(&expired);
        assert_eq!(expired.len(), burst as usize);
        assert!(
            index.capacity() <= 4_096,
            "an empty index still has room for {} entries",
            index.capacity()
        );
    }
}
