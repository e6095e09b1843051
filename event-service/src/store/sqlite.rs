//! The embedded SQLite backend: one file, WAL, created on first start.

use std::path::Path;

use sqlx::SqlitePool;

use super::{Dialect, StoreError};

/// Readers run in parallel under WAL; the one ingest writer holds one connection.
const MAX_CONNECTIONS: u32 = 8;

/// event-service's store in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    scopes: std::sync::Arc<super::ScopeIds>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn connect(path: &Path) -> Result<Self, StoreError> {
        let pool = tollgate::database::sqlite_pool(path, MAX_CONNECTIONS).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            scopes: Default::default(),
        })
    }
}

impl Dialect for SqliteStore {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const PROPERTIES_CAST: &'static str = "";
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

event_store_impl!(SqliteStore, sqlx::Sqlite);
