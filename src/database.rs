//! Database URLs: SQLite (the embedded default, a file created on first start) or PostgreSQL.
//! Parsing happens once, at startup, so that a bad URL is a clear configuration error rather than
//! a failure on the first request; printing one never shows its password.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// How long a PostgreSQL pool waits for a connection (at startup: for the server) before
/// reporting it unreachable.
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a SQLite connection waits for another writer before giving up. Writes are short,
/// so this is only reached when something is badly wrong.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a service keeps its data.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite database file (created, with its folder, on first start).
    Sqlite(PathBuf),
    /// A PostgreSQL server (`postgres://` or `postgresql://`).
    Postgres(url::Url),
}

/// A database URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid database URL: {0}")]
pub struct DatabaseUrlError(String);

impl FromStr for DatabaseUrl {
    type Err = DatabaseUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let url = url::Url::parse(s)
                .map_err(|e| DatabaseUrlError(format!("not a valid postgres URL ({e})")))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(DatabaseUrlError("a postgres URL needs a host".into()));
            }
            return Ok(Self::Postgres(url));
        }
        let path = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                DatabaseUrlError(
                    "expected sqlite:<path> or postgres://user@host/database".to_owned(),
                )
            })?;
        // Query parameters (`?mode=rwc`) are sqlx's, not ours: the options below set what we need.
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(DatabaseUrlError(
                "a sqlite URL needs a file path (an in-memory database would lose every write)"
                    .to_owned(),
            ));
        }
        Ok(Self::Sqlite(PathBuf::from(path)))
    }
}

impl DatabaseUrl {
    /// Options for a SQLite file: created if missing, WAL (readers never block the writer),
    /// `synchronous = FULL` (an acknowledged write survives even power loss), foreign keys on.
    /// Creates the file's folder, which SQLite will not do.
    pub fn sqlite_options(path: &Path) -> std::io::Result<SqliteConnectOptions> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT))
    }

    /// Options for a PostgreSQL URL.
    pub fn postgres_options(url: &url::Url) -> Result<PgConnectOptions, sqlx::Error> {
        url.as_str().parse()
    }
}

/// A pool of at most `max_connections` on a SQLite file (created with its folder if missing).
pub async fn sqlite_pool(
    path: &Path,
    max_connections: u32,
) -> Result<sqlx::SqlitePool, sqlx::Error> {
    let options = DatabaseUrl::sqlite_options(path).map_err(sqlx::Error::Io)?;
    sqlite_pool_with(options, max_connections).await
}

/// A [`sqlite_pool`] whose connections each keep a page cache of `cache_kib` rather than
/// SQLite's default of 2 MiB.
pub async fn sqlite_pool_cached(
    path: &Path,
    max_connections: u32,
    cache_kib: u32,
) -> Result<sqlx::SqlitePool, sqlx::Error> {
    sqlite_pool_with(cached_options(path, cache_kib)?, max_connections).await
}

/// Connection options whose page cache is `cache_kib`.
fn cached_options(path: &Path, cache_kib: u32) -> Result<SqliteConnectOptions, sqlx::Error> {
    Ok(DatabaseUrl::sqlite_options(path)
        .map_err(sqlx::Error::Io)?
        // A negative cache_size is a size in KiB rather than a number of pages.
        .pragma("cache_size", format!("-{cache_kib}")))
}

/// The one connection that writes a SQLite file, with a page cache of its own of `cache_kib`.
///
/// Each SQLite connection keeps its own page cache, and a connection that starts a transaction
/// after another connection has written throws its cache away. Writes taken round-robin from a
/// shared pool therefore each began cold, re-reading the B-tree pages they were about to change
/// (about 18 page reads per commit of single events). A single writer connection sees only its
/// own writes, so its cache stays valid from one commit to the next.
///
/// **Its commits are not durable when they return.** The connection runs with
/// `synchronous = NORMAL`, so a commit only writes its pages to the write-ahead log; the caller
/// must call [`sync_sqlite_wal`] before telling anyone the data is stored. Splitting the two lets
/// the next transaction be written while the previous one's fsync runs (with `FULL`, the writer
/// sat idle through each fsync). Everything else `NORMAL` does is what `FULL` does: SQLite still
/// syncs the log before a checkpoint, the database file after one, and the log's header when
/// the log is reused.
///
/// The writer copies the log into the database file itself (a checkpoint, inside the commit
/// that crossed the line) once the log holds `checkpoint_pages` pages; SQLite's default is 1000.
/// A caller that checkpoints from another connection sets it higher, as a backstop.
pub async fn sqlite_writer(
    path: &Path,
    cache_kib: u32,
    checkpoint_pages: u32,
) -> Result<sqlx::SqlitePool, sqlx::Error> {
    let options = cached_options(path, cache_kib)?
        .synchronous(SqliteSynchronous::Normal)
        .pragma("wal_autocheckpoint", checkpoint_pages.to_string());
    sqlite_pool_with(options, 1).await
}

/// Whether this build of SQLite pools all connections' page caches (it was compiled with
/// `SQLITE_ENABLE_MEMORY_MANAGEMENT`). Pooled, a connection at its `cache_size` takes the least
/// recently used page of any connection instead of one of its own, so small reader caches grow
/// by taking the writer's pages and the writer's `cache_size` no longer bounds the total. The
/// workspace's `.cargo/config.toml` builds SQLite without it.
pub async fn sqlite_caches_pooled(pool: &sqlx::SqlitePool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT sqlite_compileoption_used('ENABLE_MEMORY_MANAGEMENT')")
        .fetch_one(pool)
        .await
}

/// The write-ahead log of the SQLite file at `path`, as an absolute path: SQLite names it after
/// the database file with symbolic links resolved.
pub fn sqlite_wal_path(path: &Path) -> std::io::Result<PathBuf> {
    let mut wal = std::fs::canonicalize(path)?.into_os_string();
    wal.push("-wal");
    Ok(PathBuf::from(wal))
}

/// Makes every transaction committed so far through a [`sqlite_writer`] durable: syncs the
/// write-ahead log at `wal` (see [`sqlite_wal_path`]). Blocking.
///
/// The log is opened anew each time rather than held open, because SQLite deletes it when its
/// last connection closes and creates a new one on the next open; a held descriptor would go on
/// syncing the deleted file. Opening and closing another descriptor on the log is safe: SQLite
/// takes its POSIX locks on the database and `-shm` files, never on the log, so closing ours
/// releases none of them. A missing log means SQLite closed it after a checkpoint, which synced
/// everything into the database file already.
pub fn sync_sqlite_wal(wal: &Path) -> std::io::Result<()> {
    match std::fs::File::open(wal) {
        // fdatasync: the log's size is data it needs, and its times are not. Once the log has
        // wrapped after a checkpoint, its size no longer changes, and the sync skips the inode
        // write and journal commit that an fsync of the new mtime would cost.
        Ok(log) => log.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

async fn sqlite_pool_with(
    options: SqliteConnectOptions,
    max_connections: u32,
) -> Result<sqlx::SqlitePool, sqlx::Error> {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(max_connections)
        // An embedded database's connection cannot drop: pinging it on every acquire only cost
        // a round trip to its worker thread per query (about 1% of ingest).
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

/// Whether `e` says the database could not be reached or went away mid-request (a restart, a
/// failover, a full pool), rather than refusing the statement. Such a request may be retried as
/// it was, so clients are told UNAVAILABLE rather than INTERNAL. A write that failed this way
/// during its commit may or may not have been stored: event ids and idempotent operations are
/// what make the retry safe.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), and the server shutting down (57P01 admin,
        // 57P02 crash), starting up (57P03) or out of connections (53300).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// A pool of at most `max_connections` on a PostgreSQL server, each connection cancelling any
/// statement that runs longer than `statement_timeout` (PostgreSQL's `statement_timeout`), if
/// given.
pub async fn postgres_pool(
    url: &url::Url,
    max_connections: u32,
    statement_timeout: Option<Duration>,
) -> Result<sqlx::PgPool, sqlx::Error> {
    let mut options = DatabaseUrl::postgres_options(url)?;
    if let Some(timeout) = statement_timeout {
        options = options.options([("statement_timeout", timeout.as_millis().to_string())]);
    }
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Postgres(url) => {
                let mut shown = url.clone();
                if shown.password().is_some() {
                    // set_password only fails for URLs that cannot have one, which a parsed
                    // postgres URL with a host always can.
                    let _ = shown.set_password(Some("***"));
                }
                // libpq and sqlx also take a password as a query parameter.
                if shown.query().is_some() {
                    let pairs: Vec<(String, String)> = url
                        .query_pairs()
                        .map(|(k, v)| {
                            let secret = k.eq_ignore_ascii_case("password")
                                || k.eq_ignore_ascii_case("sslpassword");
                            (
                                k.into_owned(),
                                if secret {
                                    "***".to_owned()
                                } else {
                                    v.into_owned()
                                },
                            )
                        })
                        .collect();
                    shown.query_pairs_mut().clear().extend_pairs(pairs);
                }
                write!(f, "{shown}")
            }
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_backends_and_hides_passwords() {
        let pg: DatabaseUrl = "postgres://app:hunter2@db:5432/tollgate"
            .parse()
            .expect("pg");
        assert_eq!(pg.to_string(), "postgres://app:***@db:5432/tollgate");
        assert!(!format!("{pg:?}").contains("hunter2"));
        let query: DatabaseUrl = "postgres://db/tollgate?user=app&password=hunter2&sslmode=require"
            .parse()
            .expect("pg");
        assert_eq!(
            query.to_string(),
            "postgres://db/tollgate?user=app&password=***&sslmode=require"
        );
        let lite: DatabaseUrl = "sqlite:./data/x.db?mode=rwc".parse().expect("sqlite");
        assert_eq!(lite, DatabaseUrl::Sqlite(PathBuf::from("./data/x.db")));
        assert_eq!(
            "sqlite:///tmp/x.db".parse::<DatabaseUrl>(),
            Ok(DatabaseUrl::Sqlite(PathBuf::from("/tmp/x.db")))
        );
    }

    #[tokio::test]
    async fn each_sqlite_connection_has_a_page_cache_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let pool = sqlite_pool(&dir.path().join("t.db"), 1).await.unwrap();
        assert!(
            !sqlite_caches_pooled(&pool).await.unwrap(),
            "SQLite was built with SQLITE_ENABLE_MEMORY_MANAGEMENT: is LIBSQLITE3_FLAGS from \
             .cargo/config.toml overridden?"
        );
    }

    #[tokio::test]
    async fn the_writer_leaves_the_sync_to_its_caller_and_finds_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.db");
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        // Opened through a symbolic link, as a deployment's data path may be.
        let writer = sqlite_writer(&link, 1024, 4000).await.unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&writer)
            .await
            .unwrap();
        assert_eq!(synchronous, 1, "NORMAL: commits do not fsync");
        let checkpoint_pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&writer)
            .await
            .unwrap();
        assert_eq!(checkpoint_pages, 4000);
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&writer)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&writer)
            .await
            .unwrap();
        let wal = sqlite_wal_path(&link).unwrap();
        assert_eq!(
            wal,
            std::fs::canonicalize(dir.path())
                .unwrap()
                .join("real.db-wal")
        );
        assert!(
            wal.metadata().unwrap().len() > 0,
            "the commit is in the log"
        );
        sync_sqlite_wal(&wal).unwrap();
        writer.close().await;
        assert!(
            !wal.exists(),
            "SQLite removes the log with its last connection"
        );
        sync_sqlite_wal(&wal).expect("nothing left to sync");
    }

    #[test]
    fn rejects_what_cannot_work() {
        for bad in [
            "mysql://x/y",
            "sqlite::memory:",
            "sqlite:",
            "x.db",
            "postgres:///db",
        ] {
            assert!(bad.parse::<DatabaseUrl>().is_err(), "{bad}");
        }
    }
}
