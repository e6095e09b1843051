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
//! flush or merge at once. A flush's keys leave memory as their part commits; the state row
//! records how far a flush got, so that a restart resumes it.
//!
//! Everything here that writes runs on the single writer connection under a [`Turn`], so the
//! layout relies on one process writing the file, which is what the SQLite store is for: a
//! second process writing the same file would not see this one's tail.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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
    /// Keys held in memory before they are flushed; about 80 bytes each.
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
type Key = (i64, Arc<str>, i64);

/// Keys in memory by scope id, then event id: their seq. The ids are shared, so that a flush
/// sorts references to them rather than copies.
type TailMap = HashMap<i64, HashMap<Arc<str>, i64>>;

/// The keys in memory: read by any reader, changed only under a [`Turn`].
#[derive(Debug, Default)]
struct Tail {
    /// The newest keys, not yet being flushed. Behind an `Arc` so that a flush can sort them
    /// without the lock while readers still find them here.
    live: Arc<TailMap>,
    /// The keys of the flush under way that no committed part has written yet, sorted in
    /// descending order: each part takes its keys from the end, in ascending order.
    flushing: Vec<Key>,
}

impl Tail {
    fn seq(&self, scope_id: i64, event_id: &str) -> Option<i64> {
        if let Some(seq) = self.live.get(&scope_id).and_then(|ids| ids.get(event_id)) {
            return Some(*seq);
        }
        // Descending: an element comes first when it is the greater.
        self.flushing
            .binary_search_by(|(s, id, _)| (scope_id, event_id).cmp(&(*s, &**id)))
            .ok()
            .map(|i| self.flushing[i].2)
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
    /// Keys in the tail's live map.
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
    /// Keys of the flush under way written (the last ones of the tail's `flushing`).
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
        let mut live = TailMap::new();
        let mut flushing = Vec::new();
        for (seq, scope_id, event_id) in unflushed {
            if flushing_seq.is_some_and(|upto| seq <= upto) {
                let in_table = written.as_ref().is_some_and(|(scope, id)| {
                    (scope_id, event_id.as_str()) <= (*scope, id.as_str())
                });
                if !in_table {
                    flushing.push((scope_id, event_id.into(), seq));
                }
            } else {
                live.entry(scope_id)
                    .or_default()
                    .insert(event_id.into(), seq);
            }
        }
        flushing.sort_unstable_by(|a, b| b.cmp(a));
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
        let live_len = live.values().map(HashMap::len).sum();
        let small_keys = count(small_keys)?;
        Ok(Self {
            limits,
            tail: Mutex::new(Tail {
                live: Arc::new(live),
                flushing,
            }),
            writer: tokio::sync::Mutex::new(WriterState {
                next_seq: last_seq + 1,
                flushed_seq,
                flushing_seq,
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
        if let Some(upto) = flushing {
            let (part, rest) = self.flush_part(budget);
            budget -= part.len() as u64;
            done.flushed = part.len();
            for scope_keys in part.chunk_by(|a, b| a.0 == b.0) {
                let split = match self.state.highest.get(&scope_keys[0].0) {
                    Some(highest) => scope_keys.partition_point(|key| key.1 <= *highest),
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
                    done.highest.push((*scope_id, id.clone()));
                }
            }
            if rest == 0 {
                done.flush_done = true;
                flushed_seq = upto;
                flushing = None;
            } else {
                written = part.last().map(|(scope_id, id, _)| (*scope_id, id.clone()));
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
        .bind(after_id.as_deref())
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
            // Nobody else holds the live map outside a freeze, and freezes run in a turn: no
            // copy.
            let live = Arc::make_mut(&mut tail.live);
            for (n, (scope_id, e)) in inserted.iter().enumerate() {
                let seq = self.state.next_seq + n as i64;
                live.entry(*scope_id)
                    .or_default()
                    .insert(e.event_id.as_str().into(), seq);
            }
        }
        self.state.next_seq += inserted.len() as i64;
        self.state.live_len += inserted.len();
    }

    /// Records what an upkeep wrote, once its transaction has committed: its flushed keys
    /// leave memory only now, since until then readers found them there.
    fn record(&mut self, upkeep: Upkeep) {
        {
            let mut tail = self.keys.lock_tail();
            let written = tail.flushing.len().saturating_sub(upkeep.flushed);
            tail.flushing.truncate(written);
            if upkeep.flush_done {
                tail.flushing = Vec::new();
            }
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

    /// Starts a flush of the live keys: they move, sorted, to the tail's `flushing`, whose
    /// parts the next upkeeps write. Readers find every key in one place or the other.
    fn freeze(&mut self) {
        let live = Arc::clone(&self.keys.lock_tail().live);
        // Sorted outside the lock: readers still use the live map meanwhile.
        let mut keys: Vec<Key> = live
            .iter()
            .flat_map(|(scope_id, ids)| ids.iter().map(|(id, seq)| (*scope_id, id.clone(), *seq)))
            .collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        {
            let mut tail = self.keys.lock_tail();
            tail.flushing = keys;
            tail.live = Arc::default();
        }
        drop(live);
        tracing::debug!(
            keys = self.state.live_len,
            "event ids in memory begin their flush into the key tables"
        );
        self.state.flushing_seq = Some(self.state.next_seq - 1);
        self.state.live_len = 0;
    }

    /// The next `budget` keys of the flush under way, in ascending order, and how many stay
    /// for later parts.
    fn flush_part(&self, budget: u64) -> (Vec<Key>, usize) {
        let tail = self.keys.lock_tail();
        let take = tail.flushing.len().min(budget as usize);
        let rest = tail.flushing.len() - take;
        (tail.flushing[rest..].iter().rev().cloned().collect(), rest)
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
    keys: &[Key],
) -> Result<(), sqlx::Error> {
    for chunk in tollgate::sql::statement_chunks(keys, FLUSH_ROWS) {
        let mut sql = format!("INSERT INTO {table} (scope_id, event_id, seq) VALUES ");
        let mut args = SqliteArguments::default();
        for (n, (scope_id, event_id, seq)) in chunk.iter().enumerate() {
            sql.push_str(if n == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
            args.add(*scope_id).map_err(sqlx::Error::Encode)?;
            args.add(&**event_id).map_err(sqlx::Error::Encode)?;
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
