//! The embedded SQLite backend: one file, WAL, created on first start.

use std::path::Path;

use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;
use tollgate::database::DatabaseUrl;

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
        let options = DatabaseUrl::sqlite_options(path)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

impl Dialect for SqliteStore {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const LOCK_TENANT: Option<&'static str> = None;
}

identity_store_impl!(SqliteStore, sqlx::Sqlite);
