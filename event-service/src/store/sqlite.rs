//! What only the SQLite backend does: a file with a dedicated writer connection, inserts as
//! multi-row `INSERT … VALUES` statements numbered by the writer, idempotency kept by the writer
//! ([`super::keys`]) and syncing the write-ahead log apart from the commit.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, SqliteConnection, SqlitePool};

use super::keys::{EventKeys, KeyLimits};
use super::{Checkpointed, INSERT_COLUMNS, Row, StoreError};

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
/// Log pages past which the log starts over ([`LogCopier`]): 64 MiB of 4 KiB pages. The log
/// goes past it by what the writer commits while the checkpointer copies (docs/benchmarks.md),
/// and its file keeps the largest size it reached: about 125 MiB. A quarter of it kept the file
/// at about 70 MiB for a load 5-7% slower, within the spread of runs, so disk is the price taken.
const LOG_RESTART_PAGES: i64 = 16 * 1024;
/// Log pages past which the writer checkpoints by itself, inside a commit: the backstop should
/// the checkpointer fall behind or fail. SQLite's default of 1000 had the writer copy about
/// 4 MiB at a time in the middle of its commits.
const WRITER_CHECKPOINT_PAGES: u32 = 32 * 1024;
/// Rows one insert statement takes at most: 9 binds a row, so 9,000 stays far below SQLite's
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
    /// What copies the log into the database file and has it start over.
    pub log: LogCopier,
    /// Which event ids are stored.
    pub keys: EventKeys,
}

/// Opens (creating if needed) the database file, applies pending migrations and loads the
/// idempotency keys.
pub async fn open(path: &Path, limits: KeyLimits) -> Result<Opened, StoreError> {
    let readers = tollgate::database::sqlite_pool_cached(path, READERS, READER_CACHE_KIB).await?;
    sqlx::migrate!("./migrations/sqlite").run(&readers).await?;
    let writer =
        tollgate::database::sqlite_writer(path, WRITER_CACHE_KIB, WRITER_CHECKPOINT_PAGES).await?;
    // A checkpoint reads the log and writes the database file directly, past the page cache.
    let checkpointer = tollgate::database::sqlite_pool_cached(path, 1, READER_CACHE_KIB).await?;
    if tollgate::database::sqlite_caches_pooled(&readers).await? {
        tracing::warn!(
            "SQLite was built with SQLITE_ENABLE_MEMORY_MANAGEMENT: the readers' page caches can \
             grow past their size by taking the writer's pages (build from the repository, whose \
             .cargo/config.toml turns it off)"
        );
    }
    let keys = EventKeys::load(&writer, limits).await?;
    Ok(Opened {
        readers,
        writer,
        keys,
        wal: tollgate::database::sqlite_wal_path(path)?.into(),
        log: LogCopier::new(checkpointer, LOG_RESTART_PAGES),
    })
}

/// Copies the write-ahead log into the database file beside the writer, and has the log start
/// over once it is long.
///
/// The checkpointer's turns ([`LogCopier::copy`]) copy what the log holds from a connection of
/// their own, taking that work out of the writer's commits. But only a writer starting a
/// transaction starts the log over, and only when all of it has been copied: a writer that
/// commits again while each copy runs would never find it so, and the log would grow without
/// end. So once the log holds `restart_pages`, the checkpointer stands aside and the writer's
/// next turn ([`LogCopier::restart`]) copies the rest itself, between two of its transactions,
/// where no commit can slip in: a commit or two's pages, once every `restart_pages`.
#[derive(Debug)]
pub struct LogCopier {
    checkpointer: SqlitePool,
    restart_pages: i64,
    restart_due: AtomicBool,
}

impl LogCopier {
    /// `checkpointer` is a connection of its own, never the writer's.
    pub fn new(checkpointer: SqlitePool, restart_pages: i64) -> Self {
        Self {
            checkpointer,
            restart_pages,
            restart_due: AtomicBool::new(false),
        }
    }

    /// The checkpointer's turn: copies the log as far as no reader still needs its older pages,
    /// waiting for nobody. `None` while the log is due to start over, which is the writer's turn.
    pub async fn copy(&self) -> Result<Option<Checkpointed>, StoreError> {
        if self.restart_due.load(Ordering::Acquire) {
            return Ok(None);
        }
        let found = checkpoint(&self.checkpointer).await?;
        if found.log >= self.restart_pages {
            self.restart_due.store(true, Ordering::Release);
        }
        Ok(Some(found))
    }

    /// The writer's turn, on its own connection between two of its transactions: when the log
    /// is due to start over, copies what the checkpointer has not, so that the writer's next
    /// transaction starts it over (unless a reader still reads the old pages: then the next
    /// turns try again). `None` when nothing was due.
    pub async fn restart(&self, writer: &SqlitePool) -> Result<Option<Checkpointed>, StoreError> {
        if !self.restart_due.load(Ordering::Acquire) {
            return Ok(None);
        }
        let found = checkpoint(writer).await;
        // Failed or not, the checkpointer resumes, and asks again if the log is still long.
        self.restart_due.store(false, Ordering::Release);
        found.map(Some)
    }
}

/// A `PASSIVE` checkpoint: copies the pages the log holds into the database file, as far as no
/// reader still needs the older ones, waiting for nobody. SQLite syncs the log before it copies
/// and the database file after, so what was durable stays durable.
async fn checkpoint(connection: &SqlitePool) -> Result<Checkpointed, StoreError> {
    let (_busy, log, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(connection)
        .await?;
    Ok(Checkpointed { log, copied })
}

/// One multi-row `INSERT … VALUES` of rows numbered from `first_seq` on. SQLite parses it once
/// (sqlx caches the prepared statement per row count) and every row costs only its binds. The
/// placeholders are one repeated `(?, …)` tuple: formatting each of a full statement's 9,000
/// numbered placeholders was a measurable share of batched ingest.
fn insert_statement<'a>(
    rows: &'a [Row<'a>],
    first_seq: i64,
    ingested_at: i64,
) -> Result<(String, SqliteArguments<'a>), sqlx::Error> {
    const TUPLE: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";
    const COLUMNS: usize = 9;
    let mut sql = String::with_capacity(64 + INSERT_COLUMNS.len() + rows.len() * (TUPLE.len() + 2));
    sql.push_str("INSERT INTO events (seq, ");
    sql.push_str(INSERT_COLUMNS);
    sql.push_str(") VALUES ");
    let mut args = SqliteArguments::default();
    args.reserve(rows.len() * COLUMNS, 0);
    for (n, (scope_id, e)) in rows.iter().enumerate() {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push_str(TUPLE);
        // seq, then the order of INSERT_COLUMNS, one value per placeholder of TUPLE.
        let added = [
            args.add(first_seq + n as i64),
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
    Ok((sql, args))
}

/// Inserts every row inside the caller's transaction, numbered from `first_seq` on, in order.
/// The caller has sorted out the rows whose ids are stored ([`super::keys::Turn::sort_out`]).
pub async fn insert(
    tx: &mut SqliteConnection,
    rows: &[Row<'_>],
    first_seq: i64,
    ingested_at: i64,
) -> Result<(), sqlx::Error> {
    let mut seq = first_seq;
    for chunk in tollgate::sql::statement_chunks(rows, ROWS_PER_STATEMENT) {
        let (sql, args) = insert_statement(chunk, seq, ingested_at)?;
        sqlx::query_with(&sql, args).execute(&mut *tx).await?;
        seq += chunk.len() as i64;
    }
    Ok(())
}

/// Makes every commit so far durable: syncs the write-ahead log, off the async threads.
pub async fn sync(wal: Arc<Path>) -> Result<(), StoreError> {
    tokio::task::spawn_blocking(move || tollgate::database::sync_sqlite_wal(&wal))
        .await
        .map_err(std::io::Error::other)??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of one page each, so that a commit adds about `rows` pages to the log.
    async fn insert(tx: &mut SqliteConnection, rows: usize) {
        for _ in 0..rows {
            sqlx::query("INSERT INTO t (x) VALUES (randomblob(3000))")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn the_log_starts_over_though_the_writer_is_always_mid_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        // No backstop: only the copier may keep the log short.
        let writer = tollgate::database::sqlite_writer(&path, 1024, 1_000_000)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x BLOB)")
            .execute(&writer)
            .await
            .unwrap();
        let checkpointer = tollgate::database::sqlite_pool_cached(&path, 1, 256)
            .await
            .unwrap();
        let copier = LogCopier::new(checkpointer, 200);
        let (mut longest, mut restarts, mut last) = (0, 0, 0);
        for _ in 0..40 {
            // As in the service, the writer has begun its next transaction by the time the
            // checkpointer copies the last one, so no copy ever leaves the log fully copied
            // when a transaction begins.
            let mut tx = writer.begin().await.unwrap();
            insert(&mut tx, 20).await;
            if let Some(found) = copier.copy().await.unwrap() {
                assert_eq!(
                    found.copied, found.log,
                    "no reader holds old pages: {found:?}"
                );
                longest = longest.max(found.log);
                if found.log < last {
                    restarts += 1;
                }
                last = found.log;
            }
            tx.commit().await.unwrap();
            copier.restart(&writer).await.unwrap();
        }
        // 40 commits of about 21 pages: 800 and more pages were the log never to start over.
        assert!(restarts >= 2, "the log started over {restarts} times");
        assert!(longest < 200 + 3 * 25, "the log reached {longest} pages");
    }
}
