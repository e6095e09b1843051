//! SQLite's idempotency keys: which event ids each scope has stored, kept apart from the events
//! table (migrations/sqlite/0007_event_keys.sql says why).
//!
//! The keys of the newest events live in memory, in the tail. Once it holds
//! [`KeyLimits::tail`] keys they are flushed, sorted: those above their scope's highest stored
//! id (time-ordered ids) straight into `event_keys_large`, where they append, the others into
//! `event_keys_small`. Once that holds an eighth of the large table (and at least
//! [`KeyLimits::merge`] keys) it is merged into it in key order, [`KeyLimits::merge_step`] keys
//! per writer turn. Sorted, many keys share each leaf they write, where a unique index on the
//! events wrote a random leaf per random id. A batch is checked against the tail and, for ids
//! not above their scope's highest stored one, both tables, inside the writer's transaction.
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

/// How far the tail and the small table grow (docs/benchmarks.md, "Random client ids").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    /// Keys held in memory before they are flushed; about 80 bytes each.
    pub tail: usize,
    /// The fewest keys the small table holds before it is merged into the large one; past
    /// eight times this, an eighth of the large table, so that a key is rewritten a bounded
    /// number of times whatever the volume.
    pub merge: u64,
    /// Keys one merge step moves: the longest the writer stops for a merge is one step.
    pub merge_step: u64,
}

impl Default for KeyLimits {
    fn default() -> Self {
        Self {
            tail: 100_000,
            merge: 500_000,
            merge_step: 50_000,
        }
    }
}

/// The keys in memory: scope id → event id → seq.
type TailMap = HashMap<i64, HashMap<Box<str>, i64>>;

/// The store's idempotency keys (see the module's docs).
#[derive(Debug)]
pub struct EventKeys {
    limits: KeyLimits,
    /// Read by any reader; changed only under a [`Turn`]. Behind an `Arc` so that a flush can
    /// read it without the lock while readers still find its keys (nobody changes it then).
    tail: Mutex<Arc<TailMap>>,
    writer: tokio::sync::Mutex<WriterState>,
}

/// What the writer knows of the key tables.
#[derive(Debug)]
struct WriterState {
    /// The seq the next inserted event gets: events are numbered here, so that the tail knows
    /// each new event's seq without reading it back.
    next_seq: i64,
    tail_len: usize,
    small_keys: u64,
    large_keys: u64,
    /// Whether the small table is being moved into the large one, step by step.
    merging: bool,
    /// The highest event id of each scope in the key tables. An id above it cannot be there,
    /// which spares time-ordered ids (the server's own, UUIDv7, ULID) the tables' probes.
    highest: HashMap<i64, Box<str>>,
}

/// The writer's exclusive turn: checking a batch, inserting it, recording its keys and the
/// flush or merge after it, with no other insert in between.
#[derive(Debug)]
pub struct Turn<'a> {
    keys: &'a EventKeys,
    state: tokio::sync::MutexGuard<'a, WriterState>,
}

impl EventKeys {
    /// Reads the key tables' state and rebuilds the tail from the events after the last flush.
    pub async fn load(writer: &SqlitePool, limits: KeyLimits) -> Result<Self, StoreError> {
        let (flushed_seq, small_keys, large_keys): (i64, i64, i64) = sqlx::query_as(
            "SELECT flushed_seq, small_keys, large_keys FROM event_keys_state WHERE id = 1",
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
        let mut tail = TailMap::new();
        for (seq, scope_id, event_id) in &unflushed {
            tail.entry(*scope_id)
                .or_default()
                .insert(event_id.as_str().into(), *seq);
        }
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
                highest.insert(scope_id, id.into_boxed_str());
            }
        }
        let count = |n: i64| u64::try_from(n).map_err(|_| corrupt("a negative key count"));
        Ok(Self {
            limits,
            tail: Mutex::new(Arc::new(tail)),
            writer: tokio::sync::Mutex::new(WriterState {
                next_seq: last_seq + 1,
                tail_len: unflushed.len(),
                small_keys: count(small_keys)?,
                large_keys: count(large_keys)?,
                merging: false,
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
    /// tables. A key leaves memory only after its flush has committed, so a reader that misses
    /// it here finds it there.
    pub fn tail_seq(&self, scope_id: i64, event_id: &str) -> Option<i64> {
        self.lock_tail()
            .get(&scope_id)
            .and_then(|ids| ids.get(event_id))
            .copied()
    }

    fn lock_tail(&self) -> MutexGuard<'_, Arc<TailMap>> {
        // The map is replaced or changed whole under the lock: a poisoned one is still sound.
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
                let in_tail = tail
                    .get(scope_id)
                    .is_some_and(|ids| ids.contains_key(e.event_id.as_str()));
                let in_tables_range = self
                    .state
                    .highest
                    .get(scope_id)
                    .is_some_and(|highest| e.event_id.as_str() <= &**highest);
                if !repeat && !in_tail {
                    if in_tables_range {
                        unknown.push(i);
                    } else {
                        new[i] = true;
                    }
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

    /// Records the keys of `inserted`, numbered from [`Turn::next_seq`], once their transaction
    /// has committed.
    pub fn committed(&mut self, inserted: &[Row<'_>]) {
        let mut tail = self.keys.lock_tail();
        // Nobody else holds the map outside a flush, and flushes run in a turn: no copy.
        let map = Arc::make_mut(&mut tail);
        for (n, (scope_id, e)) in inserted.iter().enumerate() {
            let seq = self.state.next_seq + n as i64;
            map.entry(*scope_id)
                .or_default()
                .insert(e.event_id.as_str().into(), seq);
        }
        self.state.next_seq += inserted.len() as i64;
        self.state.tail_len += inserted.len();
    }

    /// The turn's upkeep after an insert: a flush once the tail is full, else a merge step while
    /// the small table is due. One of them per turn bounds the time a batch waits behind them.
    /// The inserted rows are committed whatever becomes of this; a failed step is retried at
    /// the next turn.
    pub async fn maintain(&mut self, writer: &SqlitePool) -> Result<(), StoreError> {
        let limits = self.keys.limits;
        if self.state.tail_len >= limits.tail {
            return self.flush(writer).await;
        }
        let due = limits.merge.max(self.state.large_keys / 8);
        if !self.state.merging && self.state.small_keys >= due {
            self.state.merging = true;
        }
        if self.state.merging {
            self.merge_step(writer).await?;
        }
        Ok(())
    }

    /// Writes the tail into the key tables, sorted, with the seq up to which every event's key
    /// is now in a table; then empties the tail.
    async fn flush(&mut self, writer: &SqlitePool) -> Result<(), StoreError> {
        let frozen = Arc::clone(&self.keys.lock_tail());
        let mut keys: Vec<(i64, &str, i64)> = frozen
            .iter()
            .flat_map(|(scope_id, ids)| ids.iter().map(|(id, seq)| (*scope_id, &**id, *seq)))
            .collect();
        keys.sort_unstable();
        let started = std::time::Instant::now();
        let flushed_seq = self.state.next_seq - 1;
        // Keys above their scope's highest stored id (time-ordered ids, mostly) cannot land
        // between stored ones: they go straight to the large table, where they append at the
        // end of their scope; the rest to the small one, to be merged.
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let (mut to_small, mut to_large) = (0, 0);
        for scope_keys in keys.chunk_by(|a, b| a.0 == b.0) {
            let split = match self.state.highest.get(&scope_keys[0].0) {
                Some(highest) => scope_keys.partition_point(|key| key.1 <= &**highest),
                None => 0,
            };
            let (below, above) = scope_keys.split_at(split);
            insert_keys(&mut tx, "event_keys_small", below).await?;
            insert_keys(&mut tx, "event_keys_large", above).await?;
            to_small += below.len() as u64;
            to_large += above.len() as u64;
        }
        sqlx::query(
            "UPDATE event_keys_state SET flushed_seq = ?, small_keys = small_keys + ?, \
             large_keys = large_keys + ? WHERE id = 1",
        )
        .bind(flushed_seq)
        .bind(to_small as i64)
        .bind(to_large as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Sorted: the last key of each scope is its highest.
        for scope_keys in keys.chunk_by(|a, b| a.0 == b.0) {
            if let Some(&(scope_id, id, _)) = scope_keys.last() {
                let highest = self.state.highest.entry(scope_id).or_default();
                if id > &**highest {
                    *highest = id.into();
                }
            }
        }
        tracing::debug!(
            to_small,
            to_large,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "event ids flushed from memory into the key tables"
        );
        drop(keys);
        drop(frozen);
        // Only now: until the flush committed, readers found these keys in memory.
        *self.keys.lock_tail() = Arc::default();
        self.state.tail_len = 0;
        self.state.small_keys += to_small;
        self.state.large_keys += to_large;
        Ok(())
    }

    /// Moves the small table's first [`KeyLimits::merge_step`] keys, in key order, into the
    /// large table, in one transaction: a key is always in exactly one of them.
    async fn merge_step(&mut self, writer: &SqlitePool) -> Result<(), StoreError> {
        let step = self.keys.limits.merge_step.max(1);
        let started = std::time::Instant::now();
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let last: Option<(i64, String)> = sqlx::query_as(
            "SELECT scope_id, event_id FROM event_keys_small ORDER BY scope_id, event_id \
             LIMIT 1 OFFSET ?",
        )
        .bind(step as i64 - 1)
        .fetch_optional(&mut *tx)
        .await?;
        // Up to the step's last key, or all that is left.
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
        sqlx::query(
            "UPDATE event_keys_state SET small_keys = small_keys - ?, \
             large_keys = large_keys + ? WHERE id = 1",
        )
        .bind(moved as i64)
        .bind(moved as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.state.small_keys = self.state.small_keys.saturating_sub(moved);
        self.state.large_keys += moved;
        self.state.merging = self.state.small_keys > 0;
        tracing::debug!(
            keys = moved,
            large_keys = self.state.large_keys,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "event ids merged from the small key table into the large one"
        );
        Ok(())
    }
}

/// Writes sorted keys into `table`.
async fn insert_keys(
    tx: &mut SqliteConnection,
    table: &str,
    keys: &[(i64, &str, i64)],
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
