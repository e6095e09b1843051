//! Meters in SQL: their definitions, the rollups the writer keeps in the same transaction as the
//! events, the backfill of events stored before a meter, and the queries.
//!
//! Rollups (all keyed by meter):
//! - `meter_days`: per customer, group and UTC day: what one customer used, day by day or month
//!   by month, and every customer's, read without touching an event.
//! - `meter_totals`: per group and minute, and per group and hour, across customers: a tenant's
//!   total over any range on minute boundaries.
//! - `meter_distinct`: for COUNT_UNIQUE meters, each distinct value per customer, group and day
//!   (counts of distinct values cannot be added up across days, the values can).
//!
//! What the rollups do not cover (per customer under a day, ranges off their boundaries) is
//! computed from the events with the same arithmetic ([`crate::model::meters`]), up to a bound
//! on the events read.
//!
//! Exactness rests on one rule: every event is counted by exactly one of the writer (events
//! stored after the meter) and the backfill (events up to `start_seq`, the last sequence number
//! handed out when the meter was created). On PostgreSQL, where several replicas write, each
//! insert transaction holds a shared advisory lock from before it reads the meter definitions
//! until it commits, and creating or deleting a meter takes that lock exclusively: a meter
//! appears between two transactions, never inside one. On SQLite the single writer's
//! transactions and the meter changes are serialised by the database's write lock.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tollgate::sql::{Arg, Backend, Db, Query, Tx};

use super::pending::{self, Entry};
use super::{Row, StoreError};
use crate::model::meters::{
    Aggregate, Backfill, DAY, HOUR, Latest, MINUTE, Measure, Meter, MeterAggregation,
    MeterDefinition, MeterKey, MeterQuery, MeterReport, PropertyPath, ReportBuilder, ReportSource,
    Window, parse_properties,
};
use serde_json::Value;

/// The advisory lock key that orders meter changes against insert transactions (PostgreSQL).
const METERS_LOCK: i64 = 0x746f_6c6c_6d65_7472; // "tollmetr"
/// Rows one rollup upsert statement writes at most (at most 13 binds each, far below both
/// limits).
const ROWS_PER_UPSERT: usize = 500;
/// Rows one PostgreSQL rollup upsert writes at most: about 100 bytes of binds each.
const ARRAY_ROWS: usize = 2000;
/// Events one backfill step counts.
pub const BACKFILL_CHUNK: i64 = 5000;
/// Staged rows one fold takes at most (each one meter's deltas from one insert transaction,
/// tens of KiB for a batch of 1000 events): bounds the fold's memory and its transaction.
pub const FOLD_ROWS: usize = 50;
/// Days listed one by one in a per-customer query (a seek each); longer ranges scan instead.
const MAX_LISTED_DAYS: i64 = 400;

/// Why a meter could not be created.
#[derive(Debug)]
pub enum CreateOutcome {
    /// Created.
    Created(Meter),
    /// A meter with this key exists in the scope.
    Exists,
}

/// Why a report was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It would have more rows than allowed.
    TooManyRows(usize),
    /// It would read more events than allowed (the rollups do not cover it).
    TooManyEvents(usize),
}

/// The meters an insert counts for, by scope and event name, as of a definitions version.
#[derive(Debug, Default)]
pub struct MeterSet {
    version: i64,
    /// By scope, then event name (looked up by `&str`, without a key to allocate per event):
    /// one entry per rollup series, however many meters read it.
    by_name: FastMap<i64, FastMap<String, Vec<Arc<StoredSeries>>>>,
}

/// A rollup series as the writer needs it.
#[derive(Debug)]
pub struct StoredSeries {
    /// Its id (see [`Meter::series`]).
    pub id: i64,
    /// The definition of one of its meters (they all read the same values).
    pub definition: MeterDefinition,
}

impl MeterSet {
    /// The series that count events of this scope and name, if any.
    fn for_event(&self, scope_id: i64, event_name: &str) -> Option<&[Arc<StoredSeries>]> {
        self.by_name
            .get(&scope_id)?
            .get(event_name)
            .map(Vec::as_slice)
    }

    /// Whether there are meters at all.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The writer's copy of the meter definitions, reloaded when their version moves.
#[derive(Debug, Default)]
pub struct MeterCache(std::sync::Mutex<Arc<MeterSet>>);

impl MeterCache {
    fn get(&self) -> Arc<MeterSet> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, set: Arc<MeterSet>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set;
    }

    /// The definitions as of this transaction, which from now until it commits no meter change
    /// can overtake (see the module comment).
    pub async fn current(
        &self,
        tx: &mut Tx,
        backend: Backend,
    ) -> Result<Arc<MeterSet>, StoreError> {
        let (version,): (i64,) = match backend {
            Backend::Sqlite => {
                tx.fetch_one(Query::new("SELECT version FROM meter_epoch"))
                    .await?
            }
            Backend::Postgres => {
                // Two statements: a statement reads the snapshot taken when it started, so
                // a read in the statement that waits for the lock could miss the meter whose
                // creation it waited for (and its events be counted by no one).
                tx.execute(Query::new("SELECT pg_advisory_xact_lock_shared($1)").bind(METERS_LOCK))
                    .await?;
                tx.fetch_one(Query::new("SELECT version FROM meter_epoch"))
                    .await?
            }
        };
        let cached = self.get();
        if cached.version == version {
            return Ok(cached);
        }
        let rows: Vec<MeterRow> = tx
            .fetch_all(Query::new(format!("SELECT {METER_COLUMNS} FROM meters")))
            .await?;
        let mut set = MeterSet {
            version,
            by_name: FastMap::default(),
        };
        for row in rows {
            let (scope_id, meter) = row.into_meter()?;
            let series = set
                .by_name
                .entry(scope_id)
                .or_default()
                .entry(meter.definition.event_name.clone())
                .or_default();
            // Counted once per series, not once per meter.
            if series.iter().all(|s| s.id != meter.series) {
                series.push(Arc::new(StoredSeries {
                    id: meter.series,
                    definition: meter.definition,
                }));
            }
        }
        let set = Arc::new(set);
        self.set(set.clone());
        Ok(set)
    }
}

/// What a group of events adds to the rollups. Keys borrow the events' (or the staged rows')
/// text where they can, are hashed as they are added and put in key order once, when written:
/// a B-tree of owned text keys was half of event-service's CPU on a metered batch (comparisons
/// and allocations), and SipHash a quarter of what was left.
#[derive(Debug, Default)]
pub struct Deltas<'a> {
    /// By meter, day, customer and group.
    days: FastMap<(i64, i64, &'a str, Cow<'a, str>), Aggregate>,
    /// By meter, width, bucket and group.
    totals: FastMap<(i64, i64, i64, Cow<'a, str>), Aggregate>,
    /// Meter, day, customer, group and value.
    distinct: HashSet<DistinctKey<'a>, FastHash>,
}

/// A distinct value's key: meter, day, customer, group and the value.
type DistinctKey<'a> = (i64, i64, &'a str, Cow<'a, str>, Cow<'a, str>);

/// foldhash, seeded per map: keys come from clients, but a map holds one transaction's or one
/// fold's deltas (bounded by the batch and [`FOLD_ROWS`]), so a flood of colliding keys would
/// cost that transaction time, not the service its memory.
type FastHash = foldhash::fast::RandomState;
type FastMap<K, V> = HashMap<K, V, FastHash>;

impl<'a> Deltas<'a> {
    /// Counts one event for `series`, given its parsed properties.
    pub fn add(&mut self, series: &StoredSeries, ts: i64, customer: &'a str, properties: &Value) {
        let reading = series.definition.read_value(properties);
        let Some(value) = reading.value else { return };
        let day = Window::Day.start_of(ts);
        let group = Cow::Owned(reading.group);
        match value {
            Measure::Distinct(v) => {
                self.distinct
                    .insert((series.id, day, customer, group, Cow::Owned(v)));
            }
            counted => {
                for width in [MINUTE, HOUR] {
                    self.totals
                        .entry((
                            series.id,
                            width,
                            ts.div_euclid(width) * width,
                            group.clone(),
                        ))
                        .or_default()
                        .add(&counted, ts);
                }
                self.days
                    .entry((series.id, day, customer, group))
                    .or_default()
                    .add(&counted, ts);
            }
        }
    }

    /// Counts the rows (those `new` says were stored) for every meter on their event names.
    pub fn of_rows(meters: &MeterSet, rows: &'a [Row<'a>], new: Option<&[bool]>) -> Self {
        let mut deltas = Deltas::default();
        // Most inserts have no meter to count for: spare them a lookup per row.
        if meters.is_empty() {
            return deltas;
        }
        for (i, (scope_id, event)) in rows.iter().enumerate() {
            if new.is_some_and(|new| !new[i]) {
                continue;
            }
            let Some(all_series) = meters.for_event(*scope_id, &event.event_name) else {
                continue;
            };
            let ts = tollgate::time::to_micros(event.timestamp);
            // Parsed once for all of the name's meters (as `read` would: unreadable is `{}`).
            let properties = parse_properties(&event.properties);
            for series in all_series {
                deltas.add(series, ts, &event.external_customer_id, &properties);
            }
        }
        deltas
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty() && self.totals.is_empty() && self.distinct.is_empty()
    }

    /// Stages the deltas in `meter_pending` (PostgreSQL's writer), one row per meter, for [`fold`] to add to the
    /// rollups: a few rows per transaction instead of an upsert per meter, customer, group and
    /// day, and the fold adds up many transactions' deltas for the same rows before it writes.
    pub async fn stage(&self, tx: &mut Tx) -> Result<(), StoreError> {
        let mut rows: BTreeMap<i64, pending::Writer> = BTreeMap::new();
        for ((meter, day, customer, group), aggregate) in &self.days {
            rows.entry(*meter).or_default().push(&Entry::Day {
                day: *day,
                customer,
                group,
                aggregate: *aggregate,
            });
        }
        for ((meter, width, bucket, group), aggregate) in &self.totals {
            rows.entry(*meter).or_default().push(&Entry::Total {
                width: *width,
                bucket: *bucket,
                group,
                aggregate: *aggregate,
            });
        }
        for (meter, day, customer, group, value) in &self.distinct {
            rows.entry(*meter).or_default().push(&Entry::Distinct {
                day: *day,
                customer,
                group,
                value,
            });
        }
        // One statement for all of them, whatever their number: a column array each, two
        // binds, rather than a round trip per meter (or per power-of-two chunk of them).
        let (meters, bytes): (Vec<i64>, Vec<Vec<u8>>) = rows
            .into_iter()
            .map(|(meter, row)| (meter, row.finish()))
            .unzip();
        tx.execute(
            Query::new(
                "INSERT INTO meter_pending (meter_id, deltas) \
                 SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[])",
            )
            .bind(Arg::IntArray(meters))
            .bind(Arg::BytesArray(bytes.iter().map(Vec::as_slice).collect())),
        )
        .await?;
        Ok(())
    }

    /// Adds one staged entry of `meter`.
    fn add_entry(&mut self, meter: i64, entry: Entry<'a>) {
        match entry {
            Entry::Day {
                day,
                customer,
                group,
                aggregate,
            } => self
                .days
                .entry((meter, day, customer, Cow::Borrowed(group)))
                .or_default()
                .merge(&aggregate),
            Entry::Total {
                width,
                bucket,
                group,
                aggregate,
            } => self
                .totals
                .entry((meter, width, bucket, Cow::Borrowed(group)))
                .or_default()
                .merge(&aggregate),
            Entry::Distinct {
                day,
                customer,
                group,
                value,
            } => {
                self.distinct.insert((
                    meter,
                    day,
                    customer,
                    Cow::Borrowed(group),
                    Cow::Borrowed(value),
                ));
            }
        }
    }

    /// Adds it all to the rollups, in key order (so that concurrent transactions lock shared
    /// rows in the same order and never deadlock).
    pub async fn write(&self, tx: &mut Tx, backend: Backend) -> Result<(), StoreError> {
        let (days, day_aggregates) = sorted(&self.days);
        let (totals, total_aggregates) = sorted(&self.totals);
        let mut distinct: Vec<_> = self.distinct.iter().collect();
        distinct.sort_unstable();
        let (days, totals, distinct) = (days.iter(), totals.iter(), distinct.iter());
        let upserts = [
            Upsert::adding(
                "meter_days",
                "meter_id, day, customer, grp",
                [
                    Arg::IntArray(days.clone().map(|k| k.0).collect()),
                    Arg::IntArray(days.clone().map(|k| k.1).collect()),
                    Arg::TextArray(days.clone().map(|k| k.2).collect()),
                    Arg::TextArray(days.map(|k| k.3.as_ref()).collect()),
                ],
                day_aggregates.iter().copied(),
            ),
            Upsert::adding(
                "meter_totals",
                "meter_id, width, bucket, grp",
                [
                    Arg::IntArray(totals.clone().map(|k| k.0).collect()),
                    Arg::IntArray(totals.clone().map(|k| k.1).collect()),
                    Arg::IntArray(totals.clone().map(|k| k.2).collect()),
                    Arg::TextArray(totals.map(|k| k.3.as_ref()).collect()),
                ],
                total_aggregates.iter().copied(),
            ),
            Upsert {
                table: "meter_distinct",
                key: "meter_id, day, customer, grp, value",
                rows: self.distinct.len(),
                columns: vec![
                    Arg::IntArray(distinct.clone().map(|k| k.0).collect()),
                    Arg::IntArray(distinct.clone().map(|k| k.1).collect()),
                    Arg::TextArray(distinct.clone().map(|k| k.2).collect()),
                    Arg::TextArray(distinct.clone().map(|k| k.3.as_ref()).collect()),
                    Arg::TextArray(distinct.map(|k| k.4.as_ref()).collect()),
                ],
                merge: Merge::Nothing,
            },
        ];
        for upsert in upserts {
            upsert.run(tx, backend).await?;
        }
        Ok(())
    }
}

/// A rollup's keys in order, and their aggregates in the same order.
fn sorted<K: Ord>(rows: &FastMap<K, Aggregate>) -> (Vec<&K>, Vec<&Aggregate>) {
    let mut rows: Vec<(&K, &Aggregate)> = rows.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    rows.into_iter().unzip()
}

/// The aggregate columns of `meter_days` and `meter_totals`, after their keys.
const AGGREGATE_COLUMNS: &str = "events, int_hi, int_lo, real_sum, reals, min_value, max_value";
/// Their LATEST columns, after [`AGGREGATE_COLUMNS`]; only upserts that carry a LATEST meter's
/// rows name them (they are NULL for every other meter, and two more columns to bind and merge
/// cost every other meter's upsert about a tenth of its rate on PostgreSQL).
const LATEST_COLUMNS: &str = "latest_ts, latest_value";

/// What an upsert does with a row already stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// Leaves it: the key is all there is.
    Nothing,
    /// Adds [`AGGREGATE_COLUMNS`] to its own.
    Add,
    /// Adds them and keeps the later of the two LATEST values ([`LATEST_COLUMNS`]).
    AddLatest,
}

/// One rollup upsert: its rows as one array per column, the key's columns first.
struct Upsert<'a> {
    table: &'static str,
    /// The primary key's columns.
    key: &'static str,
    rows: usize,
    columns: Vec<Arg<'a>>,
    /// What the rows carry after the key, and what becomes of a stored row.
    merge: Merge,
}

impl<'a> Upsert<'a> {
    /// An upsert that adds `aggregates` (one per key, in order) to the rows of `keys`.
    fn adding<'b>(
        table: &'static str,
        key: &'static str,
        keys: [Arg<'a>; 4],
        aggregates: impl ExactSizeIterator<Item = &'b Aggregate> + Clone,
    ) -> Self {
        let ints = |f: fn(&Aggregate) -> i64| Arg::IntArray(aggregates.clone().map(f).collect());
        let floats =
            |f: fn(&Aggregate) -> Option<f64>| Arg::FloatArray(aggregates.clone().map(f).collect());
        let values = [
            ints(|a| a.events),
            ints(|a| a.int_hi),
            ints(|a| a.int_lo),
            floats(|a| Some(a.real_sum)),
            ints(|a| a.reals),
            floats(|a| a.min),
            floats(|a| a.max),
        ];
        let mut columns: Vec<Arg<'a>> = keys.into_iter().chain(values).collect();
        let latest = aggregates.clone().any(|a| a.latest.is_some());
        if latest {
            columns.push(Arg::OptIntArray(
                aggregates.clone().map(|a| a.latest.map(|l| l.ts)).collect(),
            ));
            columns.push(floats(|a| a.latest.map(|l| l.value)));
        }
        Upsert {
            table,
            key,
            rows: aggregates.len(),
            columns,
            merge: if latest { Merge::AddLatest } else { Merge::Add },
        }
    }

    async fn run(self, tx: &mut Tx, backend: Backend) -> Result<(), StoreError> {
        let Upsert {
            table,
            key,
            rows,
            columns,
            merge,
        } = self;
        if rows == 0 {
            return Ok(());
        }
        let head = match merge {
            Merge::Nothing => format!("INSERT INTO {table} ({key}) "),
            Merge::Add => format!("INSERT INTO {table} ({key}, {AGGREGATE_COLUMNS}) "),
            Merge::AddLatest => {
                format!("INSERT INTO {table} ({key}, {AGGREGATE_COLUMNS}, {LATEST_COLUMNS}) ")
            }
        };
        let tail = |q: &mut Query<'_>| {
            q.push(&format!(" ON CONFLICT ({key}) "));
            if merge == Merge::Nothing {
                q.push("DO NOTHING");
            } else {
                q.push("DO UPDATE SET ");
                push_merge(q, table, backend, merge);
            }
        };
        match backend {
            // One array per column: a statement of a few binds whatever the row count, where
            // `VALUES` binds each value and the server plans them all on every execution.
            // A fold's rows are many: each statement takes at most ARRAY_ROWS of them, because
            // a connection keeps the buffer its largest statement needed for as long as it lives.
            Backend::Postgres => {
                for start in (0..rows).step_by(ARRAY_ROWS) {
                    let range = start..rows.min(start + ARRAY_ROWS);
                    let mut q = Query::new(format!("{head}SELECT * FROM UNNEST("));
                    q.push_binds(columns.iter().map(|c| c.slice(range.clone())))
                        .push(")");
                    tail(&mut q);
                    tx.execute(q).await?;
                }
            }
            // SQLite has no arrays: rows of `VALUES`, in few distinct statement sizes.
            Backend::Sqlite => {
                let rows: Vec<usize> = (0..rows).collect();
                for chunk in tollgate::sql::statement_chunks(&rows, ROWS_PER_UPSERT) {
                    let mut q = Query::new(format!("{head}VALUES "));
                    for (n, &row) in chunk.iter().enumerate() {
                        q.push(if n > 0 { ", (" } else { "(" })
                            .push_binds(columns.iter().map(|c| c.element(row)));
                        q.push(")");
                    }
                    tail(&mut q);
                    tx.execute(q).await?;
                }
            }
        }
        Ok(())
    }
}

/// `SET` of an upsert that adds the new aggregate to the stored one (and, with
/// [`Merge::AddLatest`], keeps the later of the two LATEST values).
fn push_merge(q: &mut Query<'_>, table: &str, backend: Backend, merge: Merge) {
    q.push(&format!(
        "events = {table}.events + excluded.events, int_hi = {table}.int_hi + excluded.int_hi, \
         int_lo = {table}.int_lo + excluded.int_lo, real_sum = {table}.real_sum + \
         excluded.real_sum, reals = {table}.reals + excluded.reals, "
    ));
    match backend {
        // LEAST and GREATEST leave NULLs out.
        Backend::Postgres => q.push(&format!(
            "min_value = LEAST({table}.min_value, excluded.min_value), \
             max_value = GREATEST({table}.max_value, excluded.max_value)"
        )),
        // SQLite's min() and max() of a NULL are NULL: COALESCE each side with the other.
        Backend::Sqlite => q.push(&format!(
            "min_value = min(COALESCE({table}.min_value, excluded.min_value), \
             COALESCE(excluded.min_value, {table}.min_value)), \
             max_value = max(COALESCE({table}.max_value, excluded.max_value), \
             COALESCE(excluded.max_value, {table}.max_value))"
        )),
    };
    if merge != Merge::AddLatest {
        return;
    }
    // The stored latest stays unless the new one is later, or as late and larger (see
    // `MeterAggregation::Latest`); both columns are NULL together. The right-hand sides all
    // read the stored row as it was, so one condition serves both columns.
    let keep = format!(
        "excluded.latest_ts IS NULL OR ({table}.latest_ts IS NOT NULL AND \
         ({table}.latest_ts > excluded.latest_ts OR ({table}.latest_ts = excluded.latest_ts \
         AND {table}.latest_value >= excluded.latest_value)))"
    );
    q.push(&format!(
        ", latest_ts = CASE WHEN {keep} THEN {table}.latest_ts ELSE excluded.latest_ts END, \
         latest_value = CASE WHEN {keep} THEN {table}.latest_value ELSE excluded.latest_value END"
    ));
}

/// Columns of `meters`, in [`MeterRow`] order.
const METER_COLUMNS: &str = "id, series_id, scope_id, meter_key, description, event_name, \
                             aggregation, property, group_by, created_at, ready, backfill_done, \
                             backfill_total";

/// A `meters` row.
#[derive(Debug, sqlx::FromRow)]
struct MeterRow {
    id: i64,
    series_id: i64,
    scope_id: i64,
    meter_key: String,
    description: String,
    event_name: String,
    aggregation: String,
    property: String,
    group_by: String,
    created_at: i64,
    ready: i64,
    backfill_done: i64,
    backfill_total: Option<i64>,
}

impl MeterRow {
    /// The meter and its scope id.
    fn into_meter(self) -> Result<(i64, Meter), StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("meter {}: {what}", self.id));
        let aggregation = MeterAggregation::from_storage(&self.aggregation, &self.property)
            .ok_or_else(|| corrupt("aggregation"))?;
        let paths: Vec<String> =
            serde_json::from_str(&self.group_by).map_err(|_| corrupt("group_by"))?;
        let group_by = paths
            .iter()
            .map(|p| PropertyPath::parse("group_by", p).map_err(|_| corrupt("group_by")))
            .collect::<Result<_, _>>()?;
        Ok((
            self.scope_id,
            Meter {
                id: self.id,
                series: self.series_id,
                definition: MeterDefinition {
                    key: MeterKey::from_storage(self.meter_key),
                    description: self.description,
                    event_name: self.event_name,
                    aggregation,
                    group_by,
                },
                created_at: tollgate::time::from_micros(self.created_at),
                backfill: if self.ready != 0 {
                    Backfill::Done
                } else {
                    Backfill::Running {
                        done: self.backfill_done,
                        total: self.backfill_total,
                    }
                },
            },
        ))
    }
}

/// Takes the meters lock exclusively (PostgreSQL): no insert transaction is in flight until
/// this one commits.
async fn lock_out_writers(tx: &mut Tx, backend: Backend) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        tx.execute(Query::new("SELECT pg_advisory_xact_lock($1)").bind(METERS_LOCK))
            .await?;
    }
    Ok(())
}

/// Creates a meter in the scope `scope_id`.
pub async fn create(
    write: &Db,
    scope_id: i64,
    definition: &MeterDefinition,
) -> Result<CreateOutcome, StoreError> {
    let backend = write.backend();
    let mut tx = write.begin_write().await?;
    lock_out_writers(&mut tx, backend).await?;
    // Every event numbered up to here is committed (no insert is in flight) and is the
    // backfill's to count; every later one is the writer's.
    let (start_seq,): (i64,) = match backend {
        Backend::Sqlite => {
            tx.fetch_one(Query::new("SELECT COALESCE(MAX(seq), 0) FROM events"))
                .await?
        }
        Backend::Postgres => {
            tx.fetch_one(Query::new(
                "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')), 0)",
            ))
            .await?
        }
    };
    let (earlier,): (i64,) = tx
        .fetch_one(
            Query::new(
                "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE scope_id = $1 AND \
                 event_name = $2 LIMIT 1) AS any_event",
            )
            .bind(scope_id)
            .bind(definition.event_name.as_str()),
        )
        .await?;
    let group_by: Vec<String> = definition
        .group_by
        .iter()
        .map(PropertyPath::as_string)
        .collect();
    let group_by = serde_json::to_string(&group_by).unwrap_or_else(|_| "[]".into());
    let property = definition
        .aggregation
        .property()
        .map(PropertyPath::as_string)
        .unwrap_or_default();
    // A finished series that reads the same values already counts every event this meter
    // would: the meter reads it too, with nothing to backfill, and inserts count it once.
    let mut q = Query::new("SELECT series_id FROM meters WHERE scope_id = ");
    q.push_bind(scope_id);
    q.push(" AND event_name = ")
        .push_bind(definition.event_name.as_str());
    q.push(" AND property = ").push_bind(property.as_str());
    q.push(" AND group_by = ").push_bind(group_by.as_str());
    q.push(" AND ready <> 0 AND aggregation IN (")
        .push_binds(definition.aggregation.same_rollups().iter().copied())
        .push(") ORDER BY id LIMIT 1");
    let shared: Option<(i64,)> = tx.fetch_optional(q).await?;
    let shared = shared.map(|(series,)| series);
    // Nothing stored before it, or a finished series: nothing to backfill.
    let ready = earlier == 0 || shared.is_some();
    let now = tollgate::time::now();
    let inserted = tx
        .fetch_optional::<(i64,)>(
            Query::new(
                "INSERT INTO meters (scope_id, meter_key, description, event_name, aggregation, \
                 property, group_by, created_at, start_seq, ready, backfill_done, series_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11) \
                 ON CONFLICT (scope_id, meter_key) DO NOTHING RETURNING id",
            )
            .bind(scope_id)
            .bind(definition.key.as_str())
            .bind(definition.description.as_str())
            .bind(definition.event_name.as_str())
            .bind(definition.aggregation.name())
            .bind(property.as_str())
            .bind(group_by.as_str())
            .bind(tollgate::time::to_micros(now))
            .bind(start_seq)
            .bind(i64::from(ready))
            .bind(shared.unwrap_or(0)),
        )
        .await?;
    let Some((id,)) = inserted else {
        return Ok(CreateOutcome::Exists);
    };
    let series = match shared {
        Some(series) => series,
        None => {
            // A series of its own, named by its id (which no series in use has: see the
            // migrations that added `series_id`).
            tx.execute(Query::new("UPDATE meters SET series_id = id WHERE id = $1").bind(id))
                .await?;
            id
        }
    };
    tx.execute(Query::new("UPDATE meter_epoch SET version = version + 1"))
        .await?;
    tx.commit().await?;
    Ok(CreateOutcome::Created(Meter {
        id,
        series,
        definition: definition.clone(),
        created_at: tollgate::time::from_micros(tollgate::time::to_micros(now)),
        backfill: if ready {
            Backfill::Done
        } else {
            Backfill::Running {
                done: 0,
                total: None,
            }
        },
    }))
}

/// One meter of the scope.
pub async fn get(db: &Db, scope_id: i64, key: &MeterKey) -> Result<Option<Meter>, StoreError> {
    let row: Option<MeterRow> = db
        .fetch_optional(
            Query::new(format!(
                "SELECT {METER_COLUMNS} FROM meters WHERE scope_id = $1 AND meter_key = $2"
            ))
            .bind(scope_id)
            .bind(key.as_str()),
        )
        .await?;
    row.map(|r| r.into_meter().map(|(_, m)| m)).transpose()
}

/// Up to `limit` meters of the scope in key order, after `after`.
pub async fn list(
    db: &Db,
    scope_id: i64,
    after: Option<&MeterKey>,
    limit: u32,
) -> Result<Vec<Meter>, StoreError> {
    let mut q = Query::new(format!(
        "SELECT {METER_COLUMNS} FROM meters WHERE scope_id = "
    ));
    q.push_bind(scope_id);
    if let Some(after) = after {
        q.push(" AND meter_key > ").push_bind(after.as_str());
    }
    q.push(" ORDER BY meter_key LIMIT ")
        .push_bind(i64::from(limit));
    let rows: Vec<MeterRow> = db.fetch_all(q).await?;
    rows.into_iter()
        .map(|r| r.into_meter().map(|(_, m)| m))
        .collect()
}

/// Deletes a meter, and its rollups unless another meter reads them; whether it existed.
pub async fn delete(write: &Db, scope_id: i64, key: &MeterKey) -> Result<bool, StoreError> {
    let backend = write.backend();
    let mut tx = write.begin_write().await?;
    lock_out_writers(&mut tx, backend).await?;
    let series: Option<(i64,)> = tx
        .fetch_optional(
            Query::new(
                "DELETE FROM meters WHERE scope_id = $1 AND meter_key = $2 RETURNING series_id",
            )
            .bind(scope_id)
            .bind(key.as_str()),
        )
        .await?;
    let Some((series,)) = series else {
        return Ok(false);
    };
    let (readers,): (i64,) = tx
        .fetch_one(
            Query::new("SELECT COUNT(*) FROM meters WHERE scope_id = $1 AND series_id = $2")
                .bind(scope_id)
                .bind(series),
        )
        .await?;
    if readers == 0 {
        for table in [
            "meter_days",
            "meter_totals",
            "meter_distinct",
            "meter_pending",
        ] {
            tx.execute(Query::new(format!("DELETE FROM {table} WHERE meter_id = $1")).bind(series))
                .await?;
        }
    }
    tx.execute(Query::new("UPDATE meter_epoch SET version = version + 1"))
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Adds staged deltas (at most [`FOLD_ROWS`] rows, oldest first) to the rollups and deletes
/// them, in one transaction: a query sees each either staged or added, never both. How many
/// staged rows it took.
///
/// Several replicas may fold at once on PostgreSQL: each takes rows no other fold has locked,
/// and both write the rollups in key order (see [`Deltas::write`]). The shared meters lock
/// keeps a meter from being deleted mid-fold (its rollups would come back).
pub async fn fold(db: &Db, write: &Db) -> Result<usize, StoreError> {
    // Looked for with a plain read first: an idle replica (and SQLite, whose writer never
    // stages) then begins no write transaction and takes no lock.
    let any: Option<(i64,)> = db
        .fetch_optional(Query::new("SELECT id FROM meter_pending LIMIT 1"))
        .await?;
    if any.is_none() {
        return Ok(0);
    }
    let backend = write.backend();
    let mut tx = write.begin_write().await?;
    let skip_locked = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => {
            tx.execute(Query::new("SELECT pg_advisory_xact_lock_shared($1)").bind(METERS_LOCK))
                .await?;
            " FOR UPDATE SKIP LOCKED"
        }
    };
    // The ids are taken in a materialized CTE: as a plain `IN (SELECT … LIMIT)` PostgreSQL may
    // run the subquery more than once and delete more than the limit (65-105 rows for 50 were
    // seen under load), which unbounds the fold's transaction.
    let staged: Vec<(i64, Vec<u8>)> = tx
        .fetch_all(
            Query::new(format!(
                "WITH taken AS MATERIALIZED (SELECT id FROM meter_pending ORDER BY id \
                 LIMIT $1{skip_locked}) \
                 DELETE FROM meter_pending WHERE id IN (SELECT id FROM taken) \
                 RETURNING meter_id, deltas"
            ))
            .bind(FOLD_ROWS as i64),
        )
        .await?;
    let mut deltas = Deltas::default();
    for (meter, bytes) in &staged {
        for entry in pending::read(bytes)? {
            deltas.add_entry(*meter, entry);
        }
    }
    deltas.write(&mut tx, backend).await?;
    tx.commit().await?;
    Ok(staged.len())
}

/// Meters whose backfill is not done, oldest first.
pub async fn backfilling(db: &Db) -> Result<Vec<i64>, StoreError> {
    let rows: Vec<(i64,)> = db
        .fetch_all(Query::new(
            "SELECT id FROM meters WHERE ready = 0 ORDER BY id",
        ))
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The backfill's state of a meter, as read outside its write transaction.
#[derive(Debug, sqlx::FromRow)]
struct BackfillRow {
    scope_id: i64,
    event_name: String,
    start_seq: i64,
    ready: i64,
    cursor_ts: Option<i64>,
    cursor_seq: Option<i64>,
    backfill_total: Option<i64>,
}

/// An event as the backfill reads it.
#[derive(Debug, sqlx::FromRow)]
struct BackfillEvent {
    seq: i64,
    ts: i64,
    external_customer_id: String,
    properties: String,
}

/// Counts the next events stored before meter `id` into its rollups, in one transaction that
/// also moves its cursor (so a step is done once, whichever replica does it, and a crash
/// loses nothing). Whether the backfill is done now.
pub async fn backfill_step(db: &Db, write: &Db, id: i64) -> Result<bool, StoreError> {
    let backend = write.backend();
    let state: Option<BackfillRow> = db
        .fetch_optional(
            Query::new(
                "SELECT scope_id, event_name, start_seq, ready, cursor_ts, cursor_seq, \
                 backfill_total FROM meters WHERE id = $1",
            )
            .bind(id),
        )
        .await?;
    let Some(state) = state else { return Ok(true) };
    if state.ready != 0 {
        return Ok(true);
    }
    if state.backfill_total.is_none() {
        // Counted once, outside any write transaction (it reads every earlier event's entry).
        let (total,): (i64,) = db
            .fetch_one(
                Query::new(
                    "SELECT COUNT(*) FROM events WHERE scope_id = $1 AND event_name = $2 \
                     AND seq <= $3",
                )
                .bind(state.scope_id)
                .bind(state.event_name.as_str())
                .bind(state.start_seq),
            )
            .await?;
        write
            .execute(
                Query::new("UPDATE meters SET backfill_total = $2 WHERE id = $1")
                    .bind(id)
                    .bind(total),
            )
            .await?;
    }
    // The chunk is read outside the write transaction, which then checks the cursor did not
    // move meanwhile.
    let mut q = Query::new(format!(
        "SELECT seq, ts, external_customer_id, {} FROM events WHERE scope_id = ",
        properties_text(backend)
    ));
    q.push_bind(state.scope_id);
    q.push(" AND event_name = ")
        .push_bind(state.event_name.as_str());
    if let (Some(ts), Some(seq)) = (state.cursor_ts, state.cursor_seq) {
        q.push(" AND (ts, seq) > (").push_bind(ts);
        q.push(", ").push_bind(seq).push(")");
    }
    q.push(" ORDER BY ts, seq LIMIT ").push_bind(BACKFILL_CHUNK);
    let events: Vec<BackfillEvent> = db.fetch_all(q).await?;
    let done = events.len() < BACKFILL_CHUNK as usize;
    let meter = {
        let row: Option<MeterRow> = db
            .fetch_optional(
                Query::new(format!("SELECT {METER_COLUMNS} FROM meters WHERE id = $1")).bind(id),
            )
            .await?;
        match row {
            Some(row) => row.into_meter()?.1,
            None => return Ok(true),
        }
    };
    // Only a series' first meter ever backfills (a later one joins a finished series).
    let stored = StoredSeries {
        id: meter.series,
        definition: meter.definition,
    };
    let mut deltas = Deltas::default();
    let mut counted = 0i64;
    for e in events.iter().filter(|e| e.seq <= state.start_seq) {
        deltas.add(
            &stored,
            e.ts,
            &e.external_customer_id,
            &parse_properties(&e.properties),
        );
        counted += 1;
    }
    let mut tx = write.begin_write().await?;
    let lock = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    };
    let now: Option<(Option<i64>, Option<i64>, i64)> = tx
        .fetch_optional(
            Query::new(format!(
                "SELECT cursor_ts, cursor_seq, ready FROM meters WHERE id = $1{lock}"
            ))
            .bind(id),
        )
        .await?;
    match now {
        Some((ts, seq, 0)) if (ts, seq) == (state.cursor_ts, state.cursor_seq) => {}
        // Deleted, finished, or moved by another replica meanwhile: its step, not this one.
        _ => return Ok(false),
    }
    deltas.write(&mut tx, backend).await?;
    let last = events.last();
    tx.execute(
        Query::new(
            "UPDATE meters SET cursor_ts = $2, cursor_seq = $3, backfill_done = backfill_done \
             + $4, ready = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(last.map(|e| e.ts).or(state.cursor_ts))
        .bind(last.map(|e| e.seq).or(state.cursor_seq))
        .bind(counted)
        .bind(i64::from(done)),
    )
    .await?;
    tx.commit().await?;
    Ok(done)
}

/// The properties column as text.
fn properties_text(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "properties",
        Backend::Postgres => "properties::text AS properties",
    }
}

/// A rollup row as a query reads it.
#[derive(Debug, sqlx::FromRow)]
struct RollupRow {
    bucket: i64,
    customer: Option<String>,
    grp: String,
    events: i64,
    int_hi: i64,
    int_lo: i64,
    real_sum: f64,
    reals: i64,
    min_value: Option<f64>,
    max_value: Option<f64>,
    latest_ts: Option<i64>,
    latest_value: Option<f64>,
    /// A staged row's deltas ([`STAGED_AS_ROLLUP`]); the other columns are then placeholders.
    pending: Option<Vec<u8>>,
}

/// Added with `UNION ALL` to a rollup query (whose rows end with `pending`, NULL): the meter's
/// staged rows, in the same statement so that the rollups and the staged deltas are read from
/// one snapshot (a fold between two statements could move deltas past both reads, or into
/// both). Completed with the meter's id.
const STAGED_AS_ROLLUP: &str = " UNION ALL SELECT CAST(0 AS BIGINT), CAST(NULL AS TEXT), '', \
     CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS BIGINT), CAST(0 AS DOUBLE PRECISION), \
     CAST(0 AS BIGINT), CAST(NULL AS DOUBLE PRECISION), CAST(NULL AS DOUBLE PRECISION), \
     CAST(NULL AS BIGINT), CAST(NULL AS DOUBLE PRECISION), deltas FROM meter_pending \
     WHERE meter_id = ";
/// [`STAGED_AS_ROLLUP`] for a query of distinct values.
const STAGED_AS_DISTINCT: &str =
    " UNION ALL SELECT CAST(0 AS BIGINT), '', '', '', deltas FROM meter_pending WHERE meter_id = ";

impl RollupRow {
    fn aggregate(&self) -> Aggregate {
        Aggregate {
            events: self.events,
            int_hi: self.int_hi,
            int_lo: self.int_lo,
            real_sum: self.real_sum,
            reals: self.reals,
            min: self.min_value,
            max: self.max_value,
            latest: self
                .latest_ts
                .zip(self.latest_value)
                .map(|(ts, value)| Latest { ts, value }),
        }
    }
}

/// An event as a scan reads it.
#[derive(Debug, sqlx::FromRow)]
struct ScannedEvent {
    ts: i64,
    external_customer_id: String,
    properties: String,
}

/// Where a report can be read from.
enum Plan {
    /// Per customer and day.
    Days,
    /// Across customers, per bucket of this width.
    Totals(i64),
    /// Distinct values per customer and day.
    Distinct,
    /// The events themselves.
    Scan,
}

fn plan(meter: &MeterDefinition, query: &MeterQuery) -> Plan {
    let aligned = |width: i64| query.start % width == 0 && query.end % width == 0;
    let coarse = |finest: Window| match query.window {
        None | Some(Window::Day) | Some(Window::Month) => true,
        Some(Window::Hour) => finest != Window::Day,
        Some(Window::Minute) => finest == Window::Minute,
    };
    let per_customer = query.customer.is_some() || query.by_customer;
    match &meter.aggregation {
        MeterAggregation::CountUnique(_) if aligned(DAY) && coarse(Window::Day) => Plan::Distinct,
        MeterAggregation::CountUnique(_) => Plan::Scan,
        _ if per_customer && aligned(DAY) && coarse(Window::Day) => Plan::Days,
        _ if per_customer => Plan::Scan,
        _ if aligned(HOUR) && coarse(Window::Hour) => Plan::Totals(HOUR),
        _ if aligned(MINUTE) => Plan::Totals(MINUTE),
        _ => Plan::Scan,
    }
}

/// A meter's report over `query`, of at most `max_rows` rows, reading at most `max_events`
/// events where the rollups do not cover it.
pub async fn usage(
    db: &Db,
    scope_id: i64,
    meter: &Meter,
    query: &MeterQuery,
    max_rows: usize,
    max_events: usize,
) -> Result<Result<MeterReport, Refused>, StoreError> {
    let definition = &meter.definition;
    let mut report = ReportBuilder::default();
    let customer_of = |c: Option<String>| c.filter(|_| query.by_customer);
    let chosen = plan(definition, query);
    let source = match chosen {
        Plan::Days | Plan::Totals(_) => {
            let mut q = match chosen {
                Plan::Totals(width) => {
                    let mut q = Query::new(
                        "SELECT bucket, CAST(NULL AS TEXT) AS customer, grp, events, int_hi, \
                         int_lo, real_sum, reals, min_value, max_value, latest_ts, latest_value, \
                         CAST(NULL AS BYTEA) AS pending FROM meter_totals WHERE meter_id = ",
                    );
                    q.push_bind(meter.series);
                    q.push(" AND width = ").push_bind(width);
                    q.push(" AND bucket >= ").push_bind(query.start);
                    q.push(" AND bucket < ").push_bind(query.end);
                    q
                }
                _ => {
                    let mut q = Query::new(
                        "SELECT day AS bucket, customer, grp, events, int_hi, int_lo, real_sum, \
                         reals, min_value, max_value, latest_ts, latest_value, \
                         CAST(NULL AS BYTEA) AS pending FROM meter_days WHERE meter_id = ",
                    );
                    q.push_bind(meter.series);
                    push_days(&mut q, query);
                    q
                }
            };
            q.push(STAGED_AS_ROLLUP).push_bind(meter.series);
            // Added to the report as read: all customers daily is tens of thousands of rows,
            // which as a vector of rows beside the report cost resident memory for good
            // (freed, but kept by the allocator).
            let too_many = db
                .for_each(q, |row: RollupRow| {
                    // A stored rollup row, or the entries of a staged row that the query covers.
                    let staged = match &row.pending {
                        None => Vec::new(),
                        Some(bytes) => pending::read(bytes)?
                            .into_iter()
                            .filter_map(|entry| staged_rollup(&chosen, query, entry))
                            .collect(),
                    };
                    let stored = row.pending.is_none().then(|| {
                        let aggregate = row.aggregate();
                        (row.bucket, row.customer, row.grp, aggregate)
                    });
                    for (bucket, customer, group, aggregate) in stored.into_iter().chain(staged) {
                        report.add(
                            (query.bucket(bucket), customer_of(customer), group),
                            &aggregate,
                        );
                    }
                    Ok::<_, StoreError>(report.len() <= max_rows)
                })
                .await?;
            if too_many {
                return Ok(Err(Refused::TooManyRows(max_rows)));
            }
            ReportSource::Rollups
        }
        Plan::Distinct => {
            let mut q = Query::new(
                "SELECT day, customer, grp, value, CAST(NULL AS BYTEA) AS pending \
                 FROM meter_distinct WHERE meter_id = ",
            );
            q.push_bind(meter.series);
            push_days(&mut q, query);
            q.push(STAGED_AS_DISTINCT).push_bind(meter.series);
            type DistinctRow = (i64, String, String, String, Option<Vec<u8>>);
            let (rows, more) = db
                .fetch_while::<DistinctRow>(q, at_most(max_events))
                .await?;
            if more {
                return Ok(Err(Refused::TooManyEvents(max_events)));
            }
            // Staged values count against the bound too (the rows above counted once each).
            let mut staged_values = 0usize;
            let mut found = Vec::with_capacity(rows.len());
            for (day, customer, group, value, staged) in rows {
                let Some(bytes) = staged else {
                    found.push((day, customer, group, value));
                    continue;
                };
                for entry in pending::read(&bytes)? {
                    if let Entry::Distinct {
                        day,
                        customer,
                        group,
                        value,
                    } = entry
                        && covers(query, day, customer)
                    {
                        staged_values += 1;
                        if staged_values > max_events {
                            return Ok(Err(Refused::TooManyEvents(max_events)));
                        }
                        found.push((day, customer.to_owned(), group.to_owned(), value.to_owned()));
                    }
                }
            }
            for (day, customer, group, value) in found {
                report.add_distinct(
                    (query.bucket(day), customer_of(Some(customer)), group),
                    &value,
                );
                if report.len() > max_rows {
                    return Ok(Err(Refused::TooManyRows(max_rows)));
                }
            }
            ReportSource::Rollups
        }
        Plan::Scan => {
            let mut q = Query::new(format!(
                "SELECT ts, external_customer_id, {} FROM events WHERE scope_id = ",
                properties_text(db.backend())
            ));
            q.push_bind(scope_id);
            q.push(" AND event_name = ")
                .push_bind(definition.event_name.as_str());
            if let Some(customer) = &query.customer {
                q.push(" AND external_customer_id = ")
                    .push_bind(customer.as_str());
            }
            q.push(" AND ts >= ").push_bind(query.start);
            q.push(" AND ts < ").push_bind(query.end);
            let (events, more) = db
                .fetch_while::<ScannedEvent>(q, at_most(max_events))
                .await?;
            if more {
                return Ok(Err(Refused::TooManyEvents(max_events)));
            }
            for e in events {
                let reading = definition.read(&e.properties);
                if let Some(value) = reading.value {
                    report.add_reading(
                        (
                            query.bucket(e.ts),
                            customer_of(Some(e.external_customer_id)),
                            reading.group,
                        ),
                        &value,
                        e.ts,
                    );
                }
                if report.len() > max_rows {
                    return Ok(Err(Refused::TooManyRows(max_rows)));
                }
            }
            ReportSource::Events
        }
    };
    Ok(Ok(report.finish(definition, source)))
}

/// A `fetch_while` test that takes `n` rows and refuses the next.
fn at_most<R>(n: usize) -> impl FnMut(&R) -> bool + Send {
    let mut seen = 0usize;
    move |_| {
        seen += 1;
        seen <= n
    }
}

/// A staged entry as a row of a rollup query of `plan` (bucket, customer, group, aggregate), when
/// that query reads its rollup and covers it.
fn staged_rollup(
    plan: &Plan,
    query: &MeterQuery,
    entry: Entry<'_>,
) -> Option<(i64, Option<String>, String, Aggregate)> {
    match (plan, entry) {
        (
            Plan::Totals(width),
            Entry::Total {
                width: w,
                bucket,
                group,
                aggregate,
            },
        ) if w == *width && bucket >= query.start && bucket < query.end => {
            Some((bucket, None, group.to_owned(), aggregate))
        }
        (
            Plan::Days,
            Entry::Day {
                day,
                customer,
                group,
                aggregate,
            },
        ) if covers(query, day, customer) => {
            Some((day, Some(customer.to_owned()), group.to_owned(), aggregate))
        }
        _ => None,
    }
}

/// Whether a per-day rollup row of `day` and `customer` is one the query asks for: what
/// [`push_days`] selects, for staged rows.
fn covers(query: &MeterQuery, day: i64, customer: &str) -> bool {
    day >= Window::Day.start_of(query.start)
        && day < query.end
        && query.customer.as_deref().is_none_or(|c| c == customer)
}

/// The day condition of a per-day rollup query (and the customer's, if one is asked for): each
/// day listed when a customer is asked for (one seek per day into rows keyed by day then
/// customer), a range otherwise.
fn push_days<'a>(q: &mut Query<'a>, query: &'a MeterQuery) {
    let days = (query.end - query.start) / DAY;
    match &query.customer {
        Some(customer) if days <= MAX_LISTED_DAYS => {
            let first = Window::Day.start_of(query.start);
            q.push(" AND day IN (")
                .push_binds((0..days.max(1)).map(|n| first + n * DAY));
            q.push(") AND customer = ").push_bind(customer.as_str());
        }
        customer => {
            q.push(" AND day >= ")
                .push_bind(Window::Day.start_of(query.start));
            q.push(" AND day < ").push_bind(query.end);
            if let Some(customer) = customer {
                q.push(" AND customer = ").push_bind(customer.as_str());
            }
        }
    }
}
