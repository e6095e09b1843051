//! The store in SQL, written once for SQLite and PostgreSQL. Reads are portable statements with
//! a few backend fragments (how the properties column reads as JSON); inserts go through each
//! backend's fastest statement ([`sqlite`], [`postgres`]), and what they share (scopes, sorting
//! out stored ids) is here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use sqlx::{PgPool, SqlitePool};
use tollgate::database::DatabaseUrl;
use tollgate::server::DatabaseHealth;
use tollgate::sql::{Backend, Db, Query, Tx};

use super::keys::{EventKeys, KeyLimits};
use super::meters::{self, Deltas, MeterCache};
use super::{Batch, Checkpointed, EventStore, MeterStore, Row, StoreError, postgres, sqlite};
use crate::model::meters::{Meter, MeterDefinition, MeterKey, MeterQuery, MeterReport};
use crate::model::query::{Cursor, ListFilter};
use crate::model::usage::{Aggregation, UsageQuery, UsageReport, UsageRow};
use crate::model::{Event, Scope};

/// Where writes go.
#[derive(Debug, Clone)]
enum Writer {
    /// SQLite's dedicated writer connection, whose commits are durable once the log is synced,
    /// and the idempotency keys it keeps.
    Sqlite {
        pool: SqlitePool,
        wal: Arc<Path>,
        log: Arc<sqlite::LogCopier>,
        keys: Arc<EventKeys>,
    },
    /// Any connection of the PostgreSQL pool; commits are durable when they return.
    Postgres(PgPool),
}

/// event-service's store on SQLite or PostgreSQL.
#[derive(Debug)]
pub struct SqlStore {
    /// Reads (and, on PostgreSQL, writes).
    db: Db,
    writer: Writer,
    scopes: ScopeIds,
    /// The meter definitions as the writer last read them.
    meters: MeterCache,
    /// Insert transactions that committed staged meter deltas (see
    /// [`MeterStore::staged_commits`]).
    staged_commits: AtomicU64,
}

impl SqlStore {
    /// Opens the database the URL names (creating a SQLite file if needed) and applies pending
    /// migrations.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        Self::connect_with(url, None).await
    }

    /// [`SqlStore::connect`], with PostgreSQL cancelling statements that run longer than
    /// `statement_timeout`.
    pub async fn connect_with(
        url: &DatabaseUrl,
        statement_timeout: Option<std::time::Duration>,
    ) -> Result<Self, StoreError> {
        match url {
            DatabaseUrl::Sqlite(path) => Self::open_sqlite(path, KeyLimits::default()).await,
            DatabaseUrl::Postgres(url) => {
                let pool = postgres::open(url, statement_timeout).await?;
                Ok(Self::new(
                    Db::Postgres(pool.clone()),
                    Writer::Postgres(pool),
                ))
            }
        }
    }

    /// Opens a SQLite file (creating it if needed) whose idempotency keys grow as `limits` say.
    pub async fn open_sqlite(path: &Path, limits: KeyLimits) -> Result<Self, StoreError> {
        let opened = sqlite::open(path, limits).await?;
        let writer = Writer::Sqlite {
            pool: opened.writer,
            wal: opened.wal,
            log: Arc::new(opened.log),
            keys: Arc::new(opened.keys),
        };
        Ok(Self::new(Db::Sqlite(opened.readers), writer))
    }

    fn new(db: Db, writer: Writer) -> Self {
        Self {
            db,
            writer,
            scopes: ScopeIds::default(),
            meters: MeterCache::default(),
            staged_commits: AtomicU64::new(0),
        }
    }

    /// The writer as a [`Db`], for the few portable statements that write (scopes).
    fn write_db(&self) -> Db {
        match &self.writer {
            Writer::Sqlite { pool, .. } => Db::Sqlite(pool.clone()),
            Writer::Postgres(pool) => Db::Postgres(pool.clone()),
        }
    }

    /// The scope's id, creating the scope first when `create`; `None` when it does not exist
    /// (nothing was ever written there).
    async fn scope_id(&self, scope: &Scope, create: bool) -> Result<Option<i64>, StoreError> {
        if let Some(id) = self.scopes.get(scope) {
            return Ok(Some(id));
        }
        if create {
            self.write_db()
                .execute(
                    Query::new(
                        "INSERT INTO scopes (tenant_id, environment) VALUES ($1, $2) \
                         ON CONFLICT (tenant_id, environment) DO NOTHING",
                    )
                    .bind(scope.tenant_id.as_str())
                    .bind(scope.environment.as_str()),
                )
                .await?;
        }
        let id: Option<(i64,)> = self
            .db
            .fetch_optional(
                Query::new("SELECT id FROM scopes WHERE tenant_id = $1 AND environment = $2")
                    .bind(scope.tenant_id.as_str())
                    .bind(scope.environment.as_str()),
            )
            .await?;
        if let Some((id,)) = id {
            self.scopes.insert(scope, id);
        }
        Ok(id.map(|(id,)| id))
    }

    /// Inserts the rows in one PostgreSQL transaction with what they add to the meters'
    /// rollups. With `sorting`, rows whose ids are stored already are skipped (and said to be);
    /// without it, a stored id fails the whole transaction with a unique violation, having
    /// written nothing. Whether each row was new.
    async fn insert_postgres(
        &self,
        pool: &PgPool,
        rows: &[Row<'_>],
        ingested_at: i64,
        sorting: bool,
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = Tx::Postgres(pool.begin().await?);
        let meters = self.meters.current(&mut tx, Backend::Postgres).await?;
        let Tx::Postgres(t) = &mut tx else {
            unreachable!("begun on PostgreSQL")
        };
        let new = if sorting {
            let returned = postgres::insert_returning(t, rows, ingested_at).await?;
            sort_out(rows, &returned)
        } else {
            postgres::insert_new(t, rows, ingested_at).await?;
            vec![true; rows.len()]
        };
        // Staged: the fold adds many transactions' deltas up before it writes the rollups,
        // where an upsert per rollup row here cost PostgreSQL half of its batched ingest
        // (docs/benchmarks.md).
        let deltas = Deltas::of_rows(&meters, rows, Some(&new));
        let staged = !deltas.is_empty();
        if staged {
            deltas.stage(&mut tx).await?;
        }
        tx.commit().await?;
        if staged {
            self.staged_commits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(new)
    }

    /// Inserts the rows whose ids are not stored yet in one SQLite transaction, with what they
    /// add to the meters' rollups, then records their keys and takes their share of the keys'
    /// upkeep, all in one writer turn. Whether each row was new.
    async fn insert_sqlite(
        &self,
        pool: &SqlitePool,
        keys: &EventKeys,
        rows: &[Row<'_>],
        ingested_at: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let mut turn = keys.turn().await;
        let mut tx = Db::Sqlite(pool.clone()).begin_write().await?;
        let meters = self.meters.current(&mut tx, Backend::Sqlite).await?;
        let Tx::Sqlite(t) = &mut tx else {
            unreachable!("begun on SQLite")
        };
        let new = turn.sort_out(t, rows).await?;
        let fresh: Vec<Row<'_>> = rows
            .iter()
            .zip(&new)
            .filter(|(_, new)| **new)
            .map(|(row, _)| *row)
            .collect();
        sqlite::insert(t, &fresh, turn.next_seq(), ingested_at).await?;
        // Upserted at once: the single writer's upserts are in-process B-tree writes (meters
        // cost it 13-21% of batched ingest), and staged rows, tens of KiB each, cost its page
        // cache and resident memory more than they saved.
        let deltas = Deltas::of_rows(&meters, &fresh, None);
        if !deltas.is_empty() {
            deltas.write(&mut tx, Backend::Sqlite).await?;
        }
        tx.commit().await?;
        turn.committed(&fresh);
        // The rows are committed whatever becomes of this: a failed part is a later turn's.
        if let Err(e) = turn.maintain(pool, fresh.len()).await {
            tracing::warn!(
                error = %tollgate::telemetry::error_chain(&e),
                "cannot move event ids from memory into the key tables"
            );
        }
        Ok(new)
    }

    /// `SELECT` of an event's columns, up to `WHERE scope_id = `.
    fn select_events(&self) -> Query<'static> {
        let properties = match self.db.backend() {
            Backend::Sqlite => "properties",
            Backend::Postgres => "properties::text",
        };
        Query::new(format!(
            "SELECT seq, event_id, event_name, external_customer_id, ts, {properties} AS \
             properties, source, ingested_at FROM events WHERE scope_id = "
        ))
    }

    /// The expression of a top-level property's value as a double when it is a JSON number,
    /// NULL otherwise.
    fn push_numeric_property<'a>(&self, q: &mut Query<'a>, name: &'a str) {
        match self.db.backend() {
            Backend::Sqlite => {
                q.push("CASE WHEN json_type(properties, ")
                    .push_bind(sqlite_path(name))
                    .push(") IN ('integer', 'real') THEN json_extract(properties, ")
                    .push_bind(sqlite_path(name))
                    .push(") END");
            }
            Backend::Postgres => {
                q.push("CASE WHEN jsonb_typeof(properties -> ")
                    .push_bind(name)
                    .push("::text) = 'number' THEN (properties ->> ")
                    .push_bind(name)
                    .push("::text)::double precision END");
            }
        }
    }

    /// The expression of a top-level property's value when it is a JSON number of the kind
    /// asked, NULL otherwise. `integer`: a whole number below 9e15, which is what the writer
    /// stores as a JSON integer (`tollgate::json`) and SQLite's `json_type` calls `integer`;
    /// PostgreSQL's `jsonb` writes every whole number without an exponent, so there the
    /// magnitude decides too. Integers come as BIGINT; the other numbers as REAL on SQLite and
    /// as exact NUMERIC on PostgreSQL.
    fn push_number_of_kind<'a>(&self, q: &mut Query<'a>, name: &'a str, integer: bool) {
        match self.db.backend() {
            Backend::Sqlite => {
                q.push("CASE WHEN json_type(properties, ")
                    .push_bind(sqlite_path(name))
                    .push(if integer {
                        ") = 'integer'"
                    } else {
                        ") = 'real'"
                    })
                    .push(" THEN json_extract(properties, ")
                    .push_bind(sqlite_path(name))
                    .push(") END");
            }
            Backend::Postgres => {
                // CASE, unlike AND, fixes the order: the casts only ever see a number's text.
                let text = |q: &mut Query<'a>| {
                    q.push("(properties ->> ").push_bind(name).push("::text)");
                };
                q.push("CASE WHEN jsonb_typeof(properties -> ")
                    .push_bind(name)
                    .push("::text) = 'number' THEN CASE WHEN ");
                text(q);
                q.push(" ~ '^-?[0-9]{1,16}$' AND abs(");
                text(q);
                q.push("::numeric) < 9000000000000000 THEN ");
                if integer {
                    text(q);
                    q.push("::bigint END END");
                } else {
                    q.push("NULL ELSE ");
                    text(q);
                    q.push("::numeric END END");
                }
            }
        }
    }

    /// The columns of an exact sum: the integers' sum in two halves (each value split at bit
    /// 32, so that neither half's sum can overflow 64 bits for billions of rows, and the whole
    /// is put together in 128 bits), the other numbers' sum (a double on SQLite, exact text on
    /// PostgreSQL, whose double sum raises an error past the double range), and how many of
    /// those there were.
    fn push_exact_sum<'a>(&self, q: &mut Query<'a>, name: &'a str) {
        q.push("CAST(SUM((");
        self.push_number_of_kind(q, name, true);
        q.push(") >> 32) AS BIGINT) AS int_hi, CAST(SUM((");
        self.push_number_of_kind(q, name, true);
        q.push(") & 4294967295) AS BIGINT) AS int_lo, ");
        match self.db.backend() {
            Backend::Sqlite => {
                q.push("TOTAL(");
                self.push_number_of_kind(q, name, false);
                q.push(") AS real_sum, CAST(NULL AS TEXT) AS real_text, ");
            }
            Backend::Postgres => {
                q.push("CAST(NULL AS DOUBLE PRECISION) AS real_sum, CAST(SUM(");
                self.push_number_of_kind(q, name, false);
                q.push(") AS TEXT) AS real_text, ");
            }
        }
        q.push("COUNT(");
        self.push_number_of_kind(q, name, false);
        q.push(") AS reals, ");
    }

    /// The expression of a top-level property's value as text, NULL when missing.
    fn push_text_property<'a>(&self, q: &mut Query<'a>, name: &'a str) {
        match self.db.backend() {
            Backend::Sqlite => {
                q.push("CAST(json_extract(properties, ")
                    .push_bind(sqlite_path(name))
                    .push(") AS TEXT)");
            }
            Backend::Postgres => {
                q.push("(properties ->> ").push_bind(name).push("::text)");
            }
        }
    }

    /// The aggregated expression over one event's value (not for SUM: see
    /// [`SqlStore::push_exact_sum`]), or (`counted`) the expression counting the events that
    /// have one.
    fn push_value<'a>(&self, q: &mut Query<'a>, aggregation: &'a Aggregation, counted: bool) {
        let (function, distinct) = match aggregation {
            Aggregation::Count => ("COUNT", false),
            Aggregation::Sum(_) => ("SUM", false),
            Aggregation::Min(_) => ("MIN", false),
            Aggregation::Max(_) => ("MAX", false),
            Aggregation::CountUnique(_) => ("COUNT", true),
        };
        q.push(if counted { "COUNT" } else { function });
        q.push(if distinct && !counted {
            "(DISTINCT "
        } else {
            "("
        });
        match aggregation {
            Aggregation::Count => {
                q.push("*");
            }
            Aggregation::Sum(p) | Aggregation::Min(p) | Aggregation::Max(p) => {
                self.push_numeric_property(q, p.as_str());
            }
            Aggregation::CountUnique(None) => {
                q.push("external_customer_id");
            }
            Aggregation::CountUnique(Some(p)) => self.push_text_property(q, p.as_str()),
        }
        q.push(")");
    }

    /// The report's rows (`grouped`: by window and customer as asked), or its one total row; at
    /// most `limit`.
    async fn usage_rows(
        &self,
        scope_id: i64,
        query: &UsageQuery,
        grouped: bool,
        limit: usize,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let window = query.window.filter(|_| grouped);
        let by_customer = query.group_by_customer && grouped;
        let mut q = Query::new("SELECT ");
        match window {
            Some(width) => {
                q.push("ts / ").push_bind(width).push(" AS win, ");
            }
            None => {
                q.push("CAST(NULL AS BIGINT) AS win, ");
            }
        }
        q.push(if by_customer {
            "external_customer_id AS customer, "
        } else {
            "CAST(NULL AS TEXT) AS customer, "
        });
        match &query.aggregation {
            Aggregation::Sum(p) => {
                q.push("CAST(NULL AS DOUBLE PRECISION) AS value, ");
                self.push_exact_sum(&mut q, p.as_str());
            }
            other => {
                q.push("CAST(");
                self.push_value(&mut q, other, false);
                q.push(
                    " AS DOUBLE PRECISION) AS value, CAST(NULL AS BIGINT) AS int_hi, \
                     CAST(NULL AS BIGINT) AS int_lo, CAST(NULL AS DOUBLE PRECISION) AS real_sum, \
                     CAST(NULL AS TEXT) AS real_text, CAST(0 AS BIGINT) AS reals, ",
                );
            }
        }
        self.push_value(&mut q, &query.aggregation, true);
        q.push(" AS n FROM events WHERE scope_id = ")
            .push_bind(scope_id);
        q.push(" AND event_name = ")
            .push_bind(query.event_name.as_str());
        q.push(" AND ts >= ").push_bind(query.start);
        q.push(" AND ts < ").push_bind(query.end);
        if let Some(customer) = &query.external_customer_id {
            q.push(" AND external_customer_id = ")
                .push_bind(customer.as_str());
        }
        match (window.is_some(), by_customer) {
            (true, true) => {
                q.push(" GROUP BY win, customer");
            }
            (true, false) => {
                q.push(" GROUP BY win");
            }
            (false, true) => {
                q.push(" GROUP BY customer");
            }
            (false, false) => {}
        }
        // Leave out windows and customers with nothing to count.
        q.push(" HAVING ");
        self.push_value(&mut q, &query.aggregation, true);
        q.push(" > 0");
        if window.is_some() || by_customer {
            q.push(" ORDER BY win, customer");
        }
        q.push(" LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        let rows: Vec<UsageRowRaw> = self.db.fetch_all(q).await?;
        Ok(rows
            .into_iter()
            .map(|r| r.into_row(&query.aggregation))
            .collect())
    }
}

/// The JSON path of a top-level property for SQLite's JSON functions. Names are letters,
/// digits, `_` and `-` (checked by `PropertyName`), so quoting is safe.
fn sqlite_path(name: &str) -> String {
    format!("$.\"{name}\"")
}

#[async_trait]
impl DatabaseHealth for SqlStore {
    async fn reachable(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    fn pool_stats(&self) -> (u32, usize) {
        let (size, idle) = self.db.pool_stats();
        match &self.writer {
            Writer::Sqlite { pool, .. } => (size + pool.size(), idle + pool.num_idle()),
            Writer::Postgres(_) => (size, idle),
        }
    }
}

#[async_trait]
impl EventStore for SqlStore {
    fn writers(&self) -> usize {
        match &self.writer {
            // SQLite has one writer at a time: a second would only wait for the lock.
            Writer::Sqlite { .. } => 1,
            Writer::Postgres(_) => postgres::WRITERS,
        }
    }

    async fn insert(&self, batches: &[Batch<'_>]) -> Result<Vec<Vec<bool>>, StoreError> {
        let ingested_at = tollgate::time::to_micros(tollgate::time::now());
        // Scopes are created outside the transaction: creating one is idempotent, and a cached
        // id must never point at a row a rollback removed.
        let mut scope_ids = Vec::with_capacity(batches.len());
        for (scope, _) in batches {
            scope_ids.push(
                self.scope_id(scope, true)
                    .await?
                    .ok_or(sqlx::Error::RowNotFound)?,
            );
        }
        // Rows go in ordered by their idempotency key, so that two writers inserting some of
        // the same new ids (a client resending a batch while the first is still in flight,
        // perhaps reordered) take those keys' locks in the same order: otherwise each could
        // wait for the other on the PostgreSQL index until the database failed one as a
        // deadlock. It also keeps each group's inserts into that index in key order, and puts
        // an id repeated in a group next to itself for SQLite's writer. The sort is stable, so
        // an id twice in a batch keeps its first occurrence. Events with equal timestamps in
        // one group are therefore numbered (and listed) by id, not arrival.
        let arrival: Vec<Row<'_>> = batches
            .iter()
            .zip(&scope_ids)
            .flat_map(|((_, events), id)| events.iter().map(move |e| (*id, e)))
            .collect();
        let mut order: Vec<usize> = (0..arrival.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&arrival[a], &arrival[b]);
            (a.0, a.1.event_id.as_str()).cmp(&(b.0, b.1.event_id.as_str()))
        });
        let rows: Vec<Row<'_>> = order.iter().map(|&i| arrival[i]).collect();
        let sorted_new = match &self.writer {
            Writer::Sqlite { pool, keys, .. } => {
                self.insert_sqlite(pool, keys, &rows, ingested_at).await?
            }
            // The common case: every row is new. Plain inserts are tried first: ON CONFLICT
            // makes PostgreSQL insert each row speculatively, probing the idempotency index
            // before and after, while a plain insert meets a stored id as a unique violation
            // that undoes the whole attempt. Only then are the duplicates sorted out.
            Writer::Postgres(pool) => {
                match self.insert_postgres(pool, &rows, ingested_at, false).await {
                    Ok(new) => new,
                    Err(StoreError::Database(sqlx::Error::Database(e)))
                        if e.is_unique_violation() =>
                    {
                        self.insert_postgres(pool, &rows, ingested_at, true).await?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let mut new_rows = vec![false; arrival.len()];
        for (&i, new) in order.iter().zip(sorted_new) {
            new_rows[i] = new;
        }
        if let Writer::Sqlite { pool, log, .. } = &self.writer {
            // The rows are committed whatever becomes of this: a failed turn is the next one's.
            if let Err(e) = log.restart(pool).await {
                tracing::warn!(
                    error = %tollgate::telemetry::error_chain(&e),
                    "cannot copy the write-ahead log into the database file before it starts over"
                );
            }
        }
        let mut flags = new_rows.into_iter();
        Ok(batches
            .iter()
            .map(|(_, events)| flags.by_ref().take(events.len()).collect())
            .collect())
    }

    fn syncs_separately(&self) -> bool {
        matches!(self.writer, Writer::Sqlite { .. })
    }

    async fn sync(&self) -> Result<(), StoreError> {
        match &self.writer {
            Writer::Sqlite { wal, .. } => sqlite::sync(wal.clone()).await,
            Writer::Postgres(_) => Ok(()),
        }
    }

    fn checkpoints_separately(&self) -> bool {
        matches!(self.writer, Writer::Sqlite { .. })
    }

    async fn checkpoint(&self) -> Result<Option<Checkpointed>, StoreError> {
        match &self.writer {
            Writer::Sqlite { log, .. } => log.copy().await,
            Writer::Postgres(_) => Ok(None),
        }
    }

    async fn get_event(&self, scope: &Scope, event_id: &str) -> Result<Option<Event>, StoreError> {
        let Some(scope_id) = self.scope_id(scope, false).await? else {
            return Ok(None);
        };
        let mut q = self.select_events();
        q.push_bind(scope_id);
        match &self.writer {
            Writer::Sqlite { keys, .. } => match keys.tail_seq(scope_id, event_id) {
                Some(seq) => {
                    q.push(" AND seq = ").push_bind(seq);
                }
                // Not in memory: in one of the key tables, if stored (see store::keys).
                None => {
                    q.push(" AND seq = (SELECT seq FROM event_keys_small WHERE scope_id = ")
                        .push_bind(scope_id)
                        .push(" AND event_id = ")
                        .push_bind(event_id)
                        .push(" UNION ALL SELECT seq FROM event_keys_large WHERE scope_id = ")
                        .push_bind(scope_id)
                        .push(" AND event_id = ")
                        .push_bind(event_id)
                        .push(")");
                }
            },
            Writer::Postgres(_) => {
                q.push(" AND event_id = ").push_bind(event_id);
            }
        }
        let row: Option<EventRow> = self.db.fetch_optional(q).await?;
        Ok(row.map(Into::into))
    }

    async fn list_events(
        &self,
        scope: &Scope,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<(Vec<Event>, bool), StoreError> {
        let Some(scope_id) = self.scope_id(scope, false).await? else {
            return Ok((Vec::new(), false));
        };
        let mut q = self.select_events();
        q.push_bind(scope_id);
        if let Some(name) = &filter.event_name {
            q.push(" AND event_name = ").push_bind(name.as_str());
        }
        if let Some(customer) = &filter.external_customer_id {
            q.push(" AND external_customer_id = ")
                .push_bind(customer.as_str());
        }
        if let Some(source) = &filter.source {
            q.push(" AND source = ").push_bind(source.as_str());
        }
        if let Some(start) = filter.start_time {
            q.push(" AND ts >= ")
                .push_bind(tollgate::time::to_micros(start));
        }
        if let Some(end) = filter.end_time {
            q.push(" AND ts < ")
                .push_bind(tollgate::time::to_micros(end));
        }
        if let Some(cursor) = after {
            // A row-value comparison, unlike the equivalent OR, lets both SQLite and PostgreSQL
            // seek the (ts DESC, seq DESC) index to the cursor instead of scanning every newer
            // row: a deep page costs what the first one does.
            q.push(" AND (ts, seq) < (").push_bind(cursor.ts);
            q.push(", ").push_bind(cursor.seq);
            q.push(")");
        }
        q.push(" ORDER BY ts DESC, seq DESC LIMIT ")
            .push_bind(i64::from(limit));
        let mut bytes = 0usize;
        let (rows, cut): (Vec<EventRow>, bool) = self
            .db
            .fetch_while(q, |row: &EventRow| {
                bytes = bytes.saturating_add(row.size());
                bytes <= max_bytes
            })
            .await?;
        Ok((rows.into_iter().map(Into::into).collect(), cut))
    }

    async fn usage(
        &self,
        scope: &Scope,
        query: &UsageQuery,
        max_rows: usize,
    ) -> Result<Option<UsageReport>, StoreError> {
        let Some(scope_id) = self.scope_id(scope, false).await? else {
            return Ok(Some(UsageReport {
                rows: Vec::new(),
                total: 0.0,
                total_exact: Some(0),
            }));
        };
        // One row more than allowed tells that the report would be too large.
        let rows = self
            .usage_rows(scope_id, query, true, max_rows.saturating_add(1))
            .await?;
        if rows.len() > max_rows {
            return Ok(None);
        }
        let total = if query.window.is_none() && !query.group_by_customer {
            rows.first().cloned()
        } else {
            // Distinct counts, minima and maxima do not add up: ask for the total.
            self.usage_rows(scope_id, query, false, 1)
                .await?
                .into_iter()
                .next()
        };
        let (total, total_exact) = match total {
            Some(row) => (row.value, row.exact),
            // Nothing to count: zero, exactly for counts and sums; minima and maxima have none.
            None => {
                let whole = !matches!(query.aggregation, Aggregation::Min(_) | Aggregation::Max(_));
                (0.0, whole.then_some(0))
            }
        };
        Ok(Some(UsageReport {
            rows,
            total,
            total_exact,
        }))
    }
}

#[async_trait]
impl MeterStore for SqlStore {
    async fn create_meter(
        &self,
        scope: &Scope,
        definition: &MeterDefinition,
    ) -> Result<meters::CreateOutcome, StoreError> {
        let scope_id = self
            .scope_id(scope, true)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        meters::create(&self.write_db(), scope_id, definition).await
    }

    async fn get_meter(&self, scope: &Scope, key: &MeterKey) -> Result<Option<Meter>, StoreError> {
        match self.scope_id(scope, false).await? {
            Some(scope_id) => meters::get(&self.db, scope_id, key).await,
            None => Ok(None),
        }
    }

    async fn list_meters(
        &self,
        scope: &Scope,
        after: Option<&MeterKey>,
        limit: u32,
    ) -> Result<Vec<Meter>, StoreError> {
        match self.scope_id(scope, false).await? {
            Some(scope_id) => meters::list(&self.db, scope_id, after, limit).await,
            None => Ok(Vec::new()),
        }
    }

    async fn delete_meter(&self, scope: &Scope, key: &MeterKey) -> Result<bool, StoreError> {
        match self.scope_id(scope, false).await? {
            Some(scope_id) => meters::delete(&self.write_db(), scope_id, key).await,
            None => Ok(false),
        }
    }

    async fn meter_usage(
        &self,
        scope: &Scope,
        meter: &Meter,
        query: &MeterQuery,
        max_rows: usize,
        max_events: usize,
    ) -> Result<Result<MeterReport, meters::Refused>, StoreError> {
        let scope_id = self
            .scope_id(scope, false)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        meters::usage(&self.db, scope_id, meter, query, max_rows, max_events).await
    }

    async fn meters_backfilling(&self) -> Result<Vec<i64>, StoreError> {
        meters::backfilling(&self.db).await
    }

    async fn backfill_meter(&self, id: i64) -> Result<bool, StoreError> {
        meters::backfill_step(&self.db, &self.write_db(), id).await
    }

    async fn fold_meters(&self) -> Result<usize, StoreError> {
        meters::fold(&self.db, &self.write_db()).await
    }

    fn staged_commits(&self) -> u64 {
        self.staged_commits.load(Ordering::Relaxed)
    }
}

/// The ids of the scopes seen so far. Scopes are few (tenants × 2) and never deleted, so they
/// are kept for the life of the process; a scope not yet known is looked up (and, for a write,
/// created) in the database.
#[derive(Debug, Default)]
struct ScopeIds(std::sync::Mutex<HashMap<Scope, i64>>);

impl ScopeIds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, i64>> {
        // The map holds no invariant a panic could break: a poisoned lock is still usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, scope: &Scope) -> Option<i64> {
        self.lock().get(scope).copied()
    }

    fn insert(&self, scope: &Scope, id: i64) {
        self.lock().insert(scope.clone(), id);
    }
}

/// Which rows an insert that skips stored ids inserted: the database returns the key of each
/// row it inserts, matched here as a multiset (an id sent twice is inserted once and is a
/// duplicate the second time).
fn sort_out(rows: &[Row<'_>], returned: &[(i64, String)]) -> Vec<bool> {
    let mut inserted: HashMap<(i64, &str), usize> = HashMap::new();
    for (scope_id, event_id) in returned {
        *inserted.entry((*scope_id, event_id.as_str())).or_default() += 1;
    }
    rows.iter()
        .map(|(scope_id, e)| {
            match inserted
                .get_mut(&(*scope_id, e.event_id.as_str()))
                .filter(|count| **count > 0)
            {
                Some(count) => {
                    *count -= 1;
                    true
                }
                None => false,
            }
        })
        .collect()
}

/// An `events` row.
#[derive(Debug, sqlx::FromRow)]
struct EventRow {
    seq: i64,
    event_id: String,
    event_name: String,
    external_customer_id: String,
    ts: i64,
    properties: String,
    source: String,
    ingested_at: i64,
}

impl EventRow {
    /// What the row weighs in a response, roughly: its text and a fixed share for the rest.
    fn size(&self) -> usize {
        64 + self.event_id.len()
            + self.event_name.len()
            + self.external_customer_id.len()
            + self.properties.len()
            + self.source.len()
    }
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Self {
        Event {
            seq: r.seq,
            event_id: r.event_id,
            event_name: r.event_name,
            external_customer_id: r.external_customer_id,
            timestamp: tollgate::time::from_micros(r.ts),
            properties: r.properties,
            source: r.source,
            ingested_at: tollgate::time::from_micros(r.ingested_at),
        }
    }
}

/// A usage row. A sum comes in parts (see [`SqlStore::push_exact_sum`]); any other figure in
/// `value`.
#[derive(Debug, sqlx::FromRow)]
struct UsageRowRaw {
    win: Option<i64>,
    customer: Option<String>,
    value: Option<f64>,
    int_hi: Option<i64>,
    int_lo: Option<i64>,
    real_sum: Option<f64>,
    real_text: Option<String>,
    reals: i64,
    n: i64,
}

impl UsageRowRaw {
    /// The row, its figure put together: a sum from its parts, a count exact as it is.
    fn into_row(self, aggregation: &Aggregation) -> UsageRow {
        let (value, exact) = match aggregation {
            Aggregation::Sum(_) => {
                // The integers exactly, in 128 bits, plus the other numbers.
                let integers = (i128::from(self.int_hi.unwrap_or(0)) << 32)
                    + i128::from(self.int_lo.unwrap_or(0));
                let others = self.real_sum.unwrap_or(0.0)
                    + self
                        .real_text
                        .as_deref()
                        .and_then(|t| t.parse::<f64>().ok())
                        .unwrap_or(0.0);
                let exact = (self.reals == 0).then_some(integers);
                (integers as f64 + others, exact)
            }
            Aggregation::Count | Aggregation::CountUnique(_) => {
                let value = self.value.unwrap_or_default();
                (value, Some(value as i128))
            }
            Aggregation::Min(_) | Aggregation::Max(_) => (self.value.unwrap_or_default(), None),
        };
        UsageRow {
            window: self.win,
            external_customer_id: self.customer,
            value,
            exact,
            event_count: self.n,
        }
    }
}
