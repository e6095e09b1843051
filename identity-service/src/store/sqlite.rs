//! The embedded SQLite backend: one file, WAL, created on first start.

use std::path::Path;

use sqlx::SqlitePool;

use super::{Dialect, StoreError};

/// Connections in the pool. Readers run in parallel under WAL; writers queue on SQLite's lock.
const MAX_CONNECTIONS: u32 = 8;

/// identity-service's store in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn connect(path: &Path) -> Result<Self, StoreError> {
        let pool = tollgate::database::sqlite_pool(path, MAX_CONNECTIONS).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

impl Dialect for SqliteStore {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const LOCK_TENANT: Option<&'static str> = None;
}

identity_store_impl!(SqliteStore, sqlx::Sqlite);
