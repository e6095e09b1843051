//! What only the SQLite backend does: a file with a dedicated writer connection, inserts as
//! multi-row `INSERT … VALUES` statements, and syncing the write-ahead log apart from the commit.

use std::path::Path;
use std::sync::Arc;

use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, SqliteConnection, SqlitePool};

use super::{INSERT_COLUMNS, Row, StoreError};

/// Readers run in parallel under WAL; writes have a connection of their own besides these.
const READERS: u32 = 8;
/// Each reader's page cache. A reader's cache does not outlive the next commit (SQLite drops
/// it when another connection has written), so it mostly holds one query's pages, which the
/// operating system's page cache serves anyway. SQLite's default of 2 MiB each let the eight
/// add up to 16 MiB; 256 KiB measured a 6 MiB lower peak, same read latency (docs/benchmarks.md).
const READER_CACHE_KIB: u32 = 256;
/// The writer connection's page cache. It holds the upper levels and the recently written
/// leaves of the four B-trees an insert changes, which a smaller cache re-reads on every commit
/// (sizes measured in docs/benchmarks.md). Resident memory grows by up to this much once the
/// cache has filled.
const WRITER_CACHE_KIB: u32 = 32 * 1024;
/// Rows one insert statement takes at most: 8 binds a row, so 8,000 stays far below SQLite's
/// limit of 32,766 per statement.
pub const ROWS_PER_STATEMENT: usize = 1000;

/// An opened SQLite database.
#[derive(Debug)]
pub struct Opened {
    /// The pool that reads.
    pub readers: SqlitePool,
    /// The one connection that writes (see [`tollgate::database::sqlite_writer`]); its commits
    /// are durable once `wal` has been synced.
    pub writer: SqlitePool,
    /// The write-ahead log.
    pub wal: Arc<Path>,
}

/// Opens (creating if needed) the database file and applies pending migrations.
pub async fn open(path: &Path) -> Result<Opened, StoreError> {
    let readers = tollgate::database::sqlite_pool_cached(path, READERS, READER_CACHE_KIB).await?;
    sqlx::migrate!("./migrations/sqlite").run(&readers).await?;
    let writer = tollgate::database::sqlite_writer(path, WRITER_CACHE_KIB).await?;
    if tollgate::database::sqlite_caches_pooled(&readers).await? {
        tracing::warn!(
            "SQLite was built with SQLITE_ENABLE_MEMORY_MANAGEMENT: the readers' page caches can \
             grow past their size by taking the writer's pages (build from the repository, whose \
             .cargo/config.toml turns it off)"
        );
    }
    Ok(Opened {
        readers,
        writer,
        wal: tollgate::database::sqlite_wal_path(path)?.into(),
    })
}

/// One multi-row `INSERT … VALUES`, followed by `ending`. SQLite parses it once (sqlx caches
/// the prepared statement per row count) and every row costs only its binds. The placeholders
/// are one repeated `(?, …)` tuple: formatting each of a full statement's 8,000 numbered
/// placeholders was a measurable share of batched ingest.
fn insert_statement<'a>(
    rows: &'a [Row<'a>],
    ingested_at: i64,
    ending: &str,
) -> Result<(String, SqliteArguments<'a>), sqlx::Error> {
    const TUPLE: &str = "(?, ?, ?, ?, ?, ?, ?, ?)";
    const COLUMNS: usize = 8;
    let mut sql = String::with_capacity(
        64 + INSERT_COLUMNS.len() + rows.len() * (TUPLE.len() + 2) + ending.len(),
    );
    sql.push_str("INSERT INTO events (");
    sql.push_str(INSERT_COLUMNS);
    sql.push_str(") VALUES ");
    let mut args = SqliteArguments::default();
    args.reserve(rows.len() * COLUMNS, 0);
    for (n, (scope_id, e)) in rows.iter().enumerate() {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push_str(TUPLE);
        // The same order as INSERT_COLUMNS, one value per placeholder of TUPLE.
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
    sql.push_str(ending);
    Ok((sql, args))
}

/// Inserts every row inside the caller's transaction; fails with a unique violation if an id is
/// stored already or repeats (the caller then rolls back: nothing is written).
pub async fn insert_new(
    tx: &mut SqliteConnection,
    rows: &[Row<'_>],
    ingested_at: i64,
) -> Result<(), sqlx::Error> {
    for chunk in tollgate::sql::statement_chunks(rows, ROWS_PER_STATEMENT) {
        let (sql, args) = insert_statement(chunk, ingested_at, "")?;
        sqlx::query_with(&sql, args).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Inserts the rows whose ids are not stored yet, inside the caller's transaction, and returns
/// the key (scope id, event id) of each row inserted.
pub async fn insert_returning(
    tx: &mut SqliteConnection,
    rows: &[Row<'_>],
    ingested_at: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let mut inserted = Vec::with_capacity(rows.len());
    for chunk in tollgate::sql::statement_chunks(rows, ROWS_PER_STATEMENT) {
        let (sql, args) = insert_statement(chunk, ingested_at, super::ON_CONFLICT_RETURNING)?;
        let returned: Vec<(i64, String)> =
            sqlx::query_as_with(&sql, args).fetch_all(&mut *tx).await?;
        inserted.extend(returned);
    }
    Ok(inserted)
}

/// Makes every commit so far durable: syncs the write-ahead log, off the async threads.
pub async fn sync(wal: Arc<Path>) -> Result<(), StoreError> {
    tokio::task::spawn_blocking(move || tollgate::database::sync_sqlite_wal(&wal))
        .await
        .map_err(std::io::Error::other)??;
    Ok(())
}
