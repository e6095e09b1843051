//! The embedded SQLite backend: one file, WAL, created on first start.

use std::path::Path;
use std::sync::Arc;

use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, QueryBuilder, Sqlite, SqlitePool};

use super::{Dialect, INSERT_INTO, Row, StoreError};

/// Readers run in parallel under WAL; writes have a connection of their own besides these.
const MAX_CONNECTIONS: u32 = 8;
/// The writer connection's page cache (the readers keep SQLite's default of 2 MiB each). It
/// holds the upper levels and the recently written leaves of the four B-trees an insert changes:
/// 32 MiB measured 91-107k batched events/s against 84-95k with 8 MiB. Resident memory grows by
/// up to this much once the cache has filled.
const WRITER_CACHE_KIB: u32 = 32 * 1024;

/// event-service's store in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Every write goes through this one connection (see [`tollgate::database::sqlite_writer`]).
    /// Its commits are durable once `wal` has been synced.
    writer: Option<SqlitePool>,
    /// The write-ahead log, synced after commits (off the writer, so that the next commit group
    /// is written meanwhile).
    wal: Arc<Path>,
    scopes: std::sync::Arc<super::ScopeIds>,
}

impl SqliteStore {
    /// SQLite has one writer at a time: a second would only wait for the lock.
    const WRITERS: usize = 1;

    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn connect(path: &Path) -> Result<Self, StoreError> {
        let pool = tollgate::database::sqlite_pool(path, MAX_CONNECTIONS).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let writer = tollgate::database::sqlite_writer(path, WRITER_CACHE_KIB).await?;
        Ok(Self {
            pool,
            writer: Some(writer),
            wal: tollgate::database::sqlite_wal_path(path)?.into(),
            scopes: Default::default(),
        })
    }
}

impl SqliteStore {
    /// One multi-row `INSERT … VALUES`: SQLite parses it once (sqlx caches the prepared
    /// statement per row count) and every row costs only its binds. The placeholders are written
    /// as one repeated tuple: `QueryBuilder::push_values` formats each of a full statement's
    /// 8,000 placeholders and separators one by one, which `perf` put at 5% of the core on
    /// batched ingest.
    fn insert_statement<'a>(
        rows: &'a [Row<'a>],
        ingested_at: i64,
    ) -> Result<QueryBuilder<'a, Sqlite>, sqlx::Error> {
        const TUPLE: &str = "(?, ?, ?, ?, ?, ?, ?, ?)";
        const COLUMNS: usize = 8;
        let mut sql = String::with_capacity(
            INSERT_INTO.len()
                + "VALUES ".len()
                + rows.len() * (TUPLE.len() + 2)
                // Room for the ending the duplicate-sorting pass adds.
                + super::ON_CONFLICT.len()
                + 32,
        );
        sql.push_str(INSERT_INTO);
        sql.push_str("VALUES ");
        let mut args = SqliteArguments::default();
        args.reserve(rows.len() * COLUMNS, 0);
        for (n, (scope_id, e)) in rows.iter().enumerate() {
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(TUPLE);
            // The same order as INSERT_INTO's columns, one value per placeholder of TUPLE.
            let added = [
                args.add(*scope_id),
                args.add(e.event_id.as_str()),
                args.add(e.event_name.as_str()),
                args.add(e.external_customer_id.as_str()),
                args.add(tollgate::time::to_micros(e.timestamp)),
                args.add(e.properties.as_str()),
                args.add(e.source.as_str()),
                args.add(ingested_at),
            ];
            for result in added {
                result.map_err(sqlx::Error::Encode)?;
            }
        }
        Ok(QueryBuilder::with_arguments(sql, args))
    }

    /// Inserts every row, all or nothing; fails with a unique violation, having written
    /// nothing, if an id is stored already or repeats.
    async fn insert_new(&self, rows: &[Row<'_>], ingested_at: i64) -> Result<(), sqlx::Error> {
        if rows.len() <= Self::ROWS_PER_STATEMENT {
            // One statement is a transaction of its own: no round trips to begin and commit
            // one, which a group of single events would otherwise pay thrice.
            Self::insert_statement(rows, ingested_at)?
                .build()
                .execute(self.write_pool())
                .await?;
            return Ok(());
        }
        let mut tx = self.write_pool().begin_with(Self::BEGIN_WRITE).await?;
        for chunk in rows.chunks(Self::ROWS_PER_STATEMENT) {
            Self::insert_statement(chunk, ingested_at)?
                .build()
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
}

impl Dialect for SqliteStore {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// 8 binds a row: 8,000 stays far below SQLite's limit of 32,766 per statement.
    const ROWS_PER_STATEMENT: usize = 1000;
    const PROPERTIES_TEXT: &'static str = "properties";
    const NUMERIC_PROPERTY: [&'static str; 3] = [
        "CASE WHEN json_type(properties, ",
        ") IN ('integer', 'real') THEN json_extract(properties, ",
        ") END",
    ];
    const TEXT_PROPERTY: [&'static str; 2] = ["CAST(json_extract(properties, ", ") AS TEXT)"];

    fn property_path(name: &str) -> String {
        // Names are letters, digits, `_` and `-` (checked by PropertyName), so quoting is safe.
        format!("$.\"{name}\"")
    }
}

event_store_impl!(SqliteStore, sqlx::Sqlite, {
    fn syncs_separately(&self) -> bool {
        true
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || tollgate::database::sync_sqlite_wal(&wal))
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
    }
});
