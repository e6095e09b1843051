//! SQLite's idempotency keys: which event ids each scope has stored, kept apart from the events
//! table (migrations/sqlite/0007_event_keys.sql says why).
//!
//! The keys of the newest events live in memory, in the tail. Once it holds
//! [`KeyLimits::tail`] keys they are frozen and flushed, sorted: those above their scope's
//! highest stored id (time-ordered ids) straight into `event_keys_large`, where they append, the
//! others into `event_keys_small`. Once that holds an eighth of the large table (and at least
//! [`KeyLimits::merge`] keys) it is merged into it in key order. Sorted, many keys share each
//! leaf they write, where a unique index on the events wrote a random leaf per random id. A
//! batch is checked against memory and, for ids not above their scope's highest stored id, both
//! tables, inside the writer's transaction.
//!
//! Flushes and merges are paced: after each insert the writer writes the next
//! [`KeyLimits::pace`] keys per event it inserted, in key order, first of the flush under way,
//! then of the merge (saved up over turns of a few events, see [`KeyLimits::least`]). So the
//! upkeep grows with the load, never falls behind it, and never holds the writer for a whole
//! flush or merge at once. A flush's keys leave memory once its last part commits; the state
//! row records how far a flush got, so that a restart resumes it.
//!
//! Everything here that writes runs on the single writer connection under a [`Turn`], so the
//! layout relies on one process writing the file, which is what the SQLite store is for: a
//! second process writing the same file would not see this one's tail.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hashbrown::HashTable;

use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, SqliteConnection, SqlitePool};

use super::{Row, StoreError};

/// Ids one membership probe names: each is a bind, and a few statement sizes serve every
/// batch (see [`tollgate::sql::statement_chunks`]).
const PROBE_IDS: usize = 500;
/// Keys one flush statement writes, three binds each.
const FLUSH_ROWS: usize = 1000;

/// How far the tail and the small table grow, and how fast they are emptied
/// (docs/benchmarks.md, "Random client ids").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    /// Keys held in memory before they are flushed; about 63 bytes each for ids of 32
    /// characters (see [`Keys`]).
    pub tail: usize,
    /// The fewest keys the small table holds before it is merged into the large one; past
    /// eight times this, an eighth of the large table, so that a key is rewritten a bounded
    /// number of times whatever the volume.
    pub merge: u64,
    /// Keys flushed or merged per event an insert stores. A stored key costs the upkeep at
    /// most two writes (its flush, its merge), so anything above two keeps up with any load;
    /// four finishes a flush within a quarter of a tail's worth of events.
    pub pace: u64,
    /// The fewest keys an upkeep writes: turns of a few events save up their share until it
    /// is worth a transaction of its own.
    pub least: u64,
    /// The most keys one upkeep writes, however large its batch or its savings.
    pub most: u64,
}

impl Default for KeyLimits {
    fn default() -> Self {
        Self {
            tail: 100_000,
            merge: 500_000,
            pace: 4,
            least: 2_000,
            most: 20_000,
        }
    }
}

/// A key: scope id, event id, the seq of the event that holds it.
type Key<'a> = (i64, &'a str, i64);

/// Keys one [`Chunk`] holds at most.
const CHUNK_KEYS: usize = 1024;
/// Bytes of ids one [`Chunk`] holds at most (but for a first id longer than that): 1024 ids of
/// 32 characters, a UUID's hex digits. A chunk is full at either limit, so that it never grows.
const CHUNK_ID_BYTES: usize = 32 * CHUNK_KEYS;

/// A key in a [`Chunk`]: its scope id, the seq of the event that holds it, and where its event
/// id ends in the chunk's ids.
#[derive(Debug, Clone, Copy)]
struct Entry {
    scope_id: i64,
    seq: i64,
    end: usize,
}

/// Up to [`CHUNK_KEYS`] keys, their event ids end to end in one string.
#[derive(Debug)]
struct Chunk {
    ids: String,
    entries: Vec<Entry>,
}

impl Chunk {
    fn id(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.entries[i - 1].end,
        };
        &self.ids[start..self.entries[i].end]
    }
}

/// Keys in memory, held flat: in chunks, in the order they came, and a hash table of their
/// numbers (chunk × [`CHUNK_KEYS`] + place in it). No key is an allocation of its own, and a
/// flush sorts key numbers. The chunks are all of one size, so that the allocator can hand a
/// flushed tail's memory to the next one's chunks: with one buffer for all ids, grown by
/// doubling, resident memory only ever rose (docs/benchmarks.md, "Random client ids").
#[derive(Debug, Default)]
struct Keys {
    chunks: Vec<Chunk>,
    /// Key numbers (fewer than 2^32 keys fit in memory), by the hash of scope id and event id.
    index: HashTable<u32>,
    /// SipHash, seeded per table: the ids are the clients', and a long-lived table of colliding
    /// ones would slow every insert.
    hasher: RandomState,
}

impl Keys {
    /// A hash table with room for `keys` keys, so that it fills without rehashing all it holds
    /// as it grows.
    fn with_capacity(keys: usize) -> Self {
        Self {
            index: HashTable::with_capacity(keys),
            ..Self::default()
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn key(&self, n: u32) -> Key<'_> {
        key_in(&self.chunks, n)
    }

    fn seq(&self, scope_id: i64, event_id: &str) -> Option<i64> {
        let hash = self.hasher.hash_one((scope_id, event_id));
        self.index
            .find(hash, |&n| {
                let (scope, id, _) = self.key(n);
                scope == scope_id && id == event_id
            })
            .map(|&n| self.key(n).2)
    }

    /// Adds the key of a stored event; no key of that scope and id is here (a scope's ids are
    /// unique among its events).
    fn push(&mut self, scope_id: i64, event_id: &str, seq: i64) {
        let Self {
            chunks,
            index,
            hasher,
        } = self;
        let full = |c: &Chunk| {
            c.entries.len() == CHUNK_KEYS
                || (!c.entries.is_empty() && c.ids.len() + event_id.len() > CHUNK_ID_BYTES)
        };
        if chunks.last().is_none_or(full) {
            chunks.push(Chunk {
                ids: String::with_capacity(CHUNK_ID_BYTES),
                entries: Vec::with_capacity(CHUNK_KEYS),
            });
        }
        // There is a last chunk now.
        let c = chunks.len() - 1;
        let chunk = &mut chunks[c];
        let n = (c * CHUNK_KEYS + chunk.entries.len()) as u32;
        chunk.ids.push_str(event_id);
        chunk.entries.push(Entry {
            scope_id,
            seq,
            end: chunk.ids.len(),
        });
        let hash = hasher.hash_one((scope_id, event_id));
        index.insert_unique(hash, n, |&m| {
            let (scope, id, _) = key_in(chunks, m);
            hasher.hash_one((scope, id))
        });
    }

    /// Key numbers in key order: by scope id, then event id.
    fn sorted(&self) -> Vec<u32> {
        let mut order: Vec<u32> = Vec::with_capacity(self.len());
        for (c, chunk) in self.chunks.iter().enumerate() {
            order.extend((0..chunk.entries.len()).map(|i| (c * CHUNK_KEYS + i) as u32));
        }
        order.sort_unstable_by(|&a, &b| {
            let (scope_a, id_a, _) = self.key(a);
            let (scope_b, id_b, _) = self.key(b);
            (scope_a, id_a).cmp(&(scope_b, id_b))
        });
        order
    }
}

/// Key `n` of `chunks`.
fn key_in(chunks: &[Chunk], n: u32) -> Key<'_> {
    let (chunk, i) = (n as usize / CHUNK_KEYS, n as usize % CHUNK_KEYS);
    let chunk = &chunks[chunk];
    let entry = chunk.entries[i];
    (entry.scope_id, chunk.id(i), entry.seq)
}

/// The keys in memory: read by any reader, changed only under a [`Turn`].
#[derive(Debug, Default)]
struct Tail {
    /// The newest keys, not yet being flushed.
    live: Keys,
    /// The keys of the flush under way, all of them until its last part has committed: a key
    /// that a committed part wrote is found here and in its table, with the same seq. Shared,
    /// so that the writer reads a part's keys without the lock.
    flushing: Option<Arc<Keys>>,
}

impl Tail {
    fn seq(&self, scope_id: i64, event_id: &str) -> Option<i64> {
        self.live
            .seq(scope_id, event_id)
            .or_else(|| self.flushing.as_ref()?.seq(scope_id, event_id))
    }
}

/// The store's idempotency keys (see the module's docs).
#[derive(Debug)]
pub struct EventKeys {
    limits: KeyLimits,
    tail: Mutex<Tail>,
    writer: tokio::sync::Mutex<WriterState>,
}

/// What the writer knows of the key tables.
#[derive(Debug)]
struct WriterState {
    /// The seq the next inserted event gets: events are numbered here, so that the tail knows
    /// each new event's seq without reading it back.
    next_seq: i64,
    /// Every event up to this seq has its key in a table.
    flushed_seq: i64,
    /// The flush under way, if any: it covers the events after `flushed_seq` up to this seq.
    flushing_seq: Option<i64>,
    /// The keys of the flush under way in key order (key numbers of the tail's `flushing`),
    /// and how many of them committed parts have written.
    flush_order: Vec<u32>,
    flush_written: usize,
    /// Keys in the tail's live table.
    live_len: usize,
    small_keys: u64,
    large_keys: u64,
    /// Whether the small table is being moved into the large one, part by part.
    merging: bool,
    /// Keys of upkeep the turns since the last one have earned (see [`KeyLimits::least`]).
    earned: u64,
    /// The highest event id of each scope in the key tables. An id above it cannot be there,
    /// which spares time-ordered ids (the server's own, UUIDv7, ULID) the tables' probes.
    highest: HashMap<i64, Arc<str>>,
}

impl WriterState {
    /// Whether the small table, holding `small_keys`, is to be merged: once it holds an eighth
    /// of the large one (at least [`KeyLimits::merge`]), and then until it is empty.
    fn merge_due(&self, limits: KeyLimits, small_keys: u64) -> bool {
        self.merging || small_keys >= limits.merge.max(self.large_keys / 8)
    }
}

/// The writer's exclusive turn: checking a batch, inserting it with its share of the keys'
/// upkeep, and recording both once committed, with no other insert in between.
#[derive(Debug)]
pub struct Turn<'a> {
    keys: &'a EventKeys,
    state: tokio::sync::MutexGuard<'a, WriterState>,
}

/// What a turn's upkeep wrote, to be recorded once its transaction has committed.
#[derive(Debug, Default)]
struct Upkeep {
    /// Keys of the flush under way written (the next ones of its order).
    flushed: usize,
    /// Whether they were the flush's last.
    flush_done: bool,
    to_small: u64,
    to_large: u64,
    /// Keys moved from the small table into the large one.
    merged: u64,
    /// Each scope's highest key among those flushed.
    highest: Vec<(i64, Arc<str>)>,
}

impl EventKeys {
    /// Reads the key tables' state and rebuilds the tail, and the rest of a flush under way,
    /// from the events after the last flush.
    pub async fn load(writer: &SqlitePool, limits: KeyLimits) -> Result<Self, StoreError> {
        #[allow(clippy::type_complexity)]
        let (flushed_seq, flushing_seq, after_scope, after_id, small_keys, large_keys): (
            i64,
            i64,
            Option<i64>,
            Option<String>,
            i64,
            i64,
        ) = sqlx::query_as(
            "SELECT flushed_seq, flushing_seq, flushing_scope_id, flushing_event_id, \
             small_keys, large_keys FROM event_keys_state WHERE id = 1",
        )
        .fetch_one(writer)
        .await?;
        let (last_seq,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(writer)
            .await?;
        let unflushed: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT seq, scope_id, event_id FROM events WHERE seq > ?")
                .bind(flushed_seq)
                .fetch_all(writer)
                .await?;
        let flushing_seq = (flushing_seq > flushed_seq).then_some(flushing_seq);
        // The flush under way wrote its keys up to this one, in key order.
        let written = after_scope.zip(after_id);
        let mut live = Keys::with_capacity(limits.tail);
        let mut flushing = Keys::default();
        for (seq, scope_id, event_id) in &unflushed {
            if flushing_seq.is_some_and(|upto| *seq <= upto) {
                let in_table = written.as_ref().is_some_and(|(scope, id)| {
                    (*scope_id, event_id.as_str()) <= (*scope, id.as_str())
                });
                if !in_table {
                    flushing.push(*scope_id, event_id, *seq);
                }
            } else {
                live.push(*scope_id, event_id, *seq);
            }
        }
        drop(unflushed);
        let flush_order = flushing.sorted();
        let scopes: Vec<(i64,)> = sqlx::query_as("SELECT id FROM scopes")
            .fetch_all(writer)
            .await?;
        let mut highest = HashMap::new();
        for (scope_id,) in scopes {
            // Two descents of each table's primary key, whatever its size.
            let (id,): (Option<String>,) = sqlx::query_as(
                "SELECT MAX(event_id) FROM (SELECT MAX(event_id) AS event_id FROM \
                 event_keys_small WHERE scope_id = ?1 UNION ALL SELECT MAX(event_id) FROM \
                 event_keys_large WHERE scope_id = ?1)",
            )
            .bind(scope_id)
            .fetch_one(writer)
            .await?;
            if let Some(id) = id {
                highest.insert(scope_id, id.into());
            }
        }
        let count = |n: i64| u64::try_from(n).map_err(|_| corrupt("a negative key count"));
        let live_len = live.len();
        let small_keys = count(small_keys)?;
        Ok(Self {
            limits,
            tail: Mutex::new(Tail {
                live,
                flushing: flushing_seq.map(|_| Arc::new(flushing)),
            }),
            writer: tokio::sync::Mutex::new(WriterState {
                next_seq: last_seq + 1,
                flushed_seq,
                flushing_seq,
                flush_order,
                flush_written: 0,
                live_len,
                small_keys,
                large_keys: count(large_keys)?,
                // A merge under way when the process stopped goes on once due again.
                merging: false,
                earned: 0,
                highest,
            }),
        })
    }

    /// Waits for the writer's turn.
    pub async fn turn(&self) -> Turn<'_> {
        Turn {
            keys: self,
            state: self.writer.lock().await,
        }
    }

    /// The seq of a stored event whose key is still in memory; `None` means: look in the key
    /// tables. A key leaves memory only after the part that wrote it has committed, so a
    /// reader that misses it here finds it there.
    pub fn tail_seq(&self, scope_id: i64, event_id: &str) -> Option<i64> {
        self.lock_tail().seq(scope_id, event_id)
    }

    fn lock_tail(&self) -> MutexGuard<'_, Tail> {
        // The tail is changed whole under the lock: a poisoned one is still sound.
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Turn<'_> {
    /// Which rows are new, inside the writer's transaction: not stored yet, and not a repeat of
    /// an earlier row. `rows` are sorted by scope id and event id, so repeats are neighbours
    /// and the first of them is the one stored. Only ids that are neither in memory nor above
    /// their scope's highest stored id are looked up in the tables.
    pub async fn sort_out(
        &self,
        tx: &mut SqliteConnection,
        rows: &[Row<'_>],
    ) -> Result<Vec<bool>, sqlx::Error> {
        let mut new = vec![false; rows.len()];
        let mut unknown: Vec<usize> = Vec::with_capacity(rows.len());
        {
            let tail = self.keys.lock_tail();
            for (i, (scope_id, e)) in rows.iter().enumerate() {
                let repeat =
                    i > 0 && rows[i - 1].0 == *scope_id && rows[i - 1].1.event_id == e.event_id;
                if repeat || tail.seq(*scope_id, &e.event_id).is_some() {
                    continue;
                }
                let in_tables_range = self
                    .state
                    .highest
                    .get(scope_id)
                    .is_some_and(|highest| e.event_id.as_str() <= &**highest);
                if in_tables_range {
                    unknown.push(i);
                } else {
                    new[i] = true;
                }
            }
        }
        let mut stored: HashMap<i64, HashSet<String>> = HashMap::new();
        for table in [
            ("event_keys_small", self.state.small_keys),
            ("event_keys_large", self.state.large_keys),
        ]
        .into_iter()
        .filter(|(_, keys)| *keys > 0)
        .map(|(table, _)| table)
        {
            // Rows of one scope are neighbours: one probe per scope and chunk.
            for group in unknown.chunk_by(|a, b| rows[*a].0 == rows[*b].0) {
                for chunk in tollgate::sql::statement_chunks(group, PROBE_IDS) {
                    let found = probe(tx, table, rows, chunk).await?;
                    for (scope_id, event_id) in found {
                        stored.entry(scope_id).or_default().insert(event_id);
                    }
                }
            }
        }
        for i in unknown {
            let (scope_id, e) = rows[i];
            new[i] = !stored
                .get(&scope_id)
                .is_some_and(|ids| ids.contains(e.event_id.as_str()));
        }
        Ok(new)
    }

    /// The seq the next inserted event gets; the events of an insert are numbered from it on,
    /// in order.
    pub fn next_seq(&self) -> i64 {
        self.state.next_seq
    }

    /// The turn's share of the keys' upkeep, in a transaction of its own after the insert's
    /// (not a savepoint of it, whose journal would copy every page the upkeep writes): the
    /// next [`KeyLimits::pace`] keys per inserted event of the flush under way (one begins once
    /// the tail is full), then of the merge under way (one begins once the small table is
    /// due), saved up over turns until they come to [`KeyLimits::least`]. The inserted rows
    /// are committed whatever becomes of this; a failed part is retried by a later turn.
    pub async fn maintain(
        &mut self,
        writer: &SqlitePool,
        inserted: usize,
    ) -> Result<(), StoreError> {
        let limits = self.keys.limits;
        let state = &mut *self.state;
        let due = state.flushing_seq.is_some()
            || state.live_len >= limits.tail
            || state.merge_due(limits, state.small_keys);
        if !due {
            state.earned = 0;
            return Ok(());
        }
        state.earned = state
            .earned
            .saturating_add((inserted as u64).saturating_mul(limits.pace));
        if state.earned < limits.least.max(1) {
            return Ok(());
        }
        let budget = state.earned.min(limits.most);
        state.earned -= budget;
        if state.flushing_seq.is_none() && state.live_len >= limits.tail {
            self.freeze();
        }
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let done = self.upkeep(&mut tx, budget).await?;
        tx.commit().await?;
        self.record(done);
        Ok(())
    }

    /// Writes `budget` keys of the flush and the merge under way, and the state row.
    async fn upkeep(
        &mut self,
        tx: &mut SqliteConnection,
        mut budget: u64,
    ) -> Result<Upkeep, StoreError> {
        let limits = self.keys.limits;
        let mut done = Upkeep::default();
        let mut flushed_seq = self.state.flushed_seq;
        let mut flushing = self.state.flushing_seq;
        let mut written = None;
        // The flush's keys, read without the lock: only a turn changes them.
        let frozen = self.keys.lock_tail().flushing.clone();
        let mut part: Vec<Key<'_>> = Vec::new();
        if let Some(upto) = flushing {
            let unwritten = &self.state.flush_order[self.state.flush_written..];
            if let Some(keys) = &frozen {
                let take = unwritten.len().min(budget as usize);
                part = unwritten[..take].iter().map(|&n| keys.key(n)).collect();
            }
            let rest = unwritten.len() - part.len();
            budget -= part.len() as u64;
            done.flushed = part.len();
            for scope_keys in part.chunk_by(|a, b| a.0 == b.0) {
                let split = match self.state.highest.get(&scope_keys[0].0) {
                    Some(highest) => scope_keys.partition_point(|key| key.1 <= &**highest),
                    None => 0,
                };
                // Keys above their scope's highest stored id (time-ordered ids, mostly) cannot
                // land between stored ones: they go straight to the large table, where they
                // append at the end of their scope; the rest to the small one, to be merged.
                let (below, above) = scope_keys.split_at(split);
                insert_keys(tx, "event_keys_small", below).await?;
                insert_keys(tx, "event_keys_large", above).await?;
                done.to_small += below.len() as u64;
                done.to_large += above.len() as u64;
                if let Some((scope_id, id, _)) = scope_keys.last() {
                    done.highest.push((*scope_id, Arc::from(*id)));
                }
            }
            if rest == 0 {
                done.flush_done = true;
                flushed_seq = upto;
                flushing = None;
            } else {
                written = part.last().map(|(scope_id, id, _)| (*scope_id, *id));
            }
        }
        let small_keys = self.state.small_keys + done.to_small;
        if budget > 0 && self.state.merge_due(limits, small_keys) {
            done.merged = merge_part(tx, budget).await?;
        }
        let (after_scope, after_id) = written.unzip();
        sqlx::query(
            "UPDATE event_keys_state SET flushed_seq = ?, flushing_seq = ?, \
             flushing_scope_id = ?, flushing_event_id = ?, small_keys = ?, large_keys = ? \
             WHERE id = 1",
        )
        .bind(flushed_seq)
        .bind(flushing.unwrap_or(0))
        .bind(after_scope)
        .bind(after_id)
        .bind(small_keys.saturating_sub(done.merged) as i64)
        .bind((self.state.large_keys + done.to_large + done.merged) as i64)
        .execute(&mut *tx)
        .await?;
        Ok(done)
    }

    /// Records the keys of `inserted`, numbered from [`Turn::next_seq`], once their transaction
    /// has committed.
    pub fn committed(&mut self, inserted: &[Row<'_>]) {
        {
            let mut tail = self.keys.lock_tail();
            for (n, (scope_id, e)) in inserted.iter().enumerate() {
                let seq = self.state.next_seq + n as i64;
                tail.live.push(*scope_id, &e.event_id, seq);
            }
        }
        self.state.next_seq += inserted.len() as i64;
        self.state.live_len += inserted.len();
    }

    /// Records what an upkeep wrote, once its transaction has committed: a finished flush's
    /// keys leave memory only now, since until then readers found them there.
    fn record(&mut self, upkeep: Upkeep) {
        self.state.flush_written += upkeep.flushed;
        if upkeep.flush_done {
            self.keys.lock_tail().flushing = None;
            self.state.flush_order = Vec::new();
            self.state.flush_written = 0;
        }
        let state = &mut *self.state;
        for (scope_id, id) in upkeep.highest {
            let highest = state.highest.entry(scope_id).or_default();
            if id > *highest {
                *highest = id;
            }
        }
        if upkeep.flush_done {
            if let Some(upto) = state.flushing_seq.take() {
                state.flushed_seq = upto;
            }
        }
        state.small_keys = (state.small_keys + upkeep.to_small).saturating_sub(upkeep.merged);
        state.large_keys += upkeep.to_large + upkeep.merged;
        // Once begun, a merge goes on until the small table is empty.
        state.merging = (state.merging || upkeep.merged > 0) && state.small_keys > 0;
        if upkeep.flushed > 0 || upkeep.merged > 0 {
            tracing::trace!(
                flushed = upkeep.flushed,
                merged = upkeep.merged,
                small_keys = state.small_keys,
                large_keys = state.large_keys,
                "event ids moved on into the key tables"
            );
        }
    }

    /// Starts a flush of the live keys: they move to the tail's `flushing`, whose parts the
    /// next upkeeps write in key order. Readers find every key in one place or the other.
    fn freeze(&mut self) {
        // Made outside the lock.
        let next = Keys::with_capacity(self.keys.limits.tail);
        let frozen = {
            let mut tail = self.keys.lock_tail();
            let frozen = Arc::new(std::mem::replace(&mut tail.live, next));
            tail.flushing = Some(Arc::clone(&frozen));
            frozen
        };
        // Sorted outside the lock: readers look keys up by their hash meanwhile.
        self.state.flush_order = frozen.sorted();
        self.state.flush_written = 0;
        tracing::debug!(
            keys = self.state.live_len,
            "event ids in memory begin their flush into the key tables"
        );
        self.state.flushing_seq = Some(self.state.next_seq - 1);
        self.state.live_len = 0;
    }
}

/// Moves the small table's first `budget` keys, in key order, into the large table: a key is
/// always in exactly one of them. How many moved.
async fn merge_part(tx: &mut SqliteConnection, budget: u64) -> Result<u64, sqlx::Error> {
    let last: Option<(i64, String)> = sqlx::query_as(
        "SELECT scope_id, event_id FROM event_keys_small ORDER BY scope_id, event_id \
         LIMIT 1 OFFSET ?",
    )
    .bind(budget as i64 - 1)
    .fetch_optional(&mut *tx)
    .await?;
    // Up to the part's last key, or all that is left.
    let filter = if last.is_some() {
        " WHERE (scope_id, event_id) <= (?, ?)"
    } else {
        ""
    };
    let insert = format!(
        "INSERT INTO event_keys_large (scope_id, event_id, seq) SELECT scope_id, event_id, \
         seq FROM event_keys_small{filter} ORDER BY scope_id, event_id"
    );
    let delete = format!("DELETE FROM event_keys_small{filter}");
    let (mut insert, mut delete) = (sqlx::query(&insert), sqlx::query(&delete));
    if let Some((scope_id, event_id)) = &last {
        insert = insert.bind(*scope_id).bind(event_id.as_str());
        delete = delete.bind(*scope_id).bind(event_id.as_str());
    }
    let moved = insert.execute(&mut *tx).await?.rows_affected();
    delete.execute(&mut *tx).await?;
    Ok(moved)
}

/// Writes sorted keys into `table`.
async fn insert_keys(
    tx: &mut SqliteConnection,
    table: &str,
    keys: &[Key<'_>],
) -> Result<(), sqlx::Error> {
    for chunk in tollgate::sql::statement_chunks(keys, FLUSH_ROWS) {
        let mut sql = format!("INSERT INTO {table} (scope_id, event_id, seq) VALUES ");
        let mut args = SqliteArguments::default();
        for (n, (scope_id, event_id, seq)) in chunk.iter().enumerate() {
            sql.push_str(if n == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
            args.add(*scope_id).map_err(sqlx::Error::Encode)?;
            args.add(*event_id).map_err(sqlx::Error::Encode)?;
            args.add(*seq).map_err(sqlx::Error::Encode)?;
        }
        sqlx::query_with(&sql, args).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Which of the rows at `chunk` (all of one scope) have their key in `table`.
async fn probe(
    tx: &mut SqliteConnection,
    table: &str,
    rows: &[Row<'_>],
    chunk: &[usize],
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let Some(&first) = chunk.first() else {
        return Ok(Vec::new());
    };
    let scope_id = rows[first].0;
    let mut sql =
        format!("SELECT scope_id, event_id FROM {table} WHERE scope_id = ? AND event_id IN (");
    let mut args = SqliteArguments::default();
    args.add(scope_id).map_err(sqlx::Error::Encode)?;
    for (n, &i) in chunk.iter().enumerate() {
        sql.push_str(if n == 0 { "?" } else { ", ?" });
        args.add(rows[i].1.event_id.as_str())
            .map_err(sqlx::Error::Encode)?;
    }
    sql.push(')');
    sqlx::query_as_with(&sql, args).fetch_all(&mut *tx).await
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("event_keys_state holds {what}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// An id as clients send them, most short (so that many land in one chunk), a few as long
    /// as allowed (so that some chunks fill by their bytes).
    fn id() -> impl Strategy<Value = String> {
        prop_oneof![9 => "[a-cé]{0,5}", 1 => "[a-c]{900,1020}"]
    }

    proptest! {
        // Each case pushes up to 2,500 keys.
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The flat table answers as a map of (scope id, event id) to seq would, and sorts its
        /// keys as that map orders them: ids of every length (the empty one too), the same id
        /// in several scopes, chunks filled by their count of keys or by their bytes, a table
        /// grown past its capacity.
        #[test]
        fn keys_find_and_sort_as_a_map_would(
            pushed in proptest::collection::vec((0i64..3, id()), 0..2500),
            asked in proptest::collection::vec((0i64..3, id()), 0..50),
            capacity in 0usize..64,
        ) {
            let mut keys = Keys::with_capacity(capacity);
            let mut model = BTreeMap::new();
            for (n, (scope_id, id)) in pushed.into_iter().enumerate() {
                // A scope's ids are unique among its events.
                if let std::collections::btree_map::Entry::Vacant(slot) = model.entry((scope_id, id)) {
                    let seq = 1000 + n as i64;
                    keys.push(scope_id, &slot.key().1, seq);
                    slot.insert(seq);
                }
            }
            prop_assert_eq!(keys.len(), model.len());
            for ((scope_id, id), seq) in &model {
                prop_assert_eq!(keys.seq(*scope_id, id), Some(*seq));
            }
            for (scope_id, id) in &asked {
                prop_assert_eq!(keys.seq(*scope_id, id), model.get(&(*scope_id, id.clone())).copied());
            }
            let sorted: Vec<(i64, String, i64)> = keys
                .sorted()
                .into_iter()
                .map(|n| {
                    let (scope_id, id, seq) = keys.key(n);
                    (scope_id, id.to_owned(), seq)
                })
                .collect();
            let expected: Vec<(i64, String, i64)> =
                model.into_iter().map(|((scope_id, id), seq)| (scope_id, id, seq)).collect();
            prop_assert_eq!(sorted, expected);
        }
    }
}
