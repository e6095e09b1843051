//! The embedded SQLite backend: one file, WAL, created on first start.

use std::path::Path;

use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::{Dialect, INSERT_INTO, ON_CONFLICT, Row, StoreError};

/// Readers run in parallel under WAL; the one ingest writer holds one connection.
const MAX_CONNECTIONS: u32 = 8;

/// event-service's store in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    scopes: std::sync::Arc<super::ScopeIds>,
}

impl SqliteStore {
    /// SQLite has one writer at a time: a second would only wait for the lock.
    const WRITERS: usize = 1;

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

impl SqliteStore {
    /// One multi-row `INSERT … VALUES`: SQLite parses it once (sqlx caches the prepared
    /// statement per row count) and every row costs only its binds.
    fn insert_statement<'a>(rows: &'a [Row<'a>], ingested_at: i64) -> QueryBuilder<'a, Sqlite> {
        let mut qb = QueryBuilder::new(INSERT_INTO);
        qb.push_values(rows, |mut row, (scope_id, e)| {
            row.push_bind(*scope_id)
                .push_bind(e.event_id.as_str())
                .push_bind(e.event_name.as_str())
                .push_bind(e.external_customer_id.as_str())
                .push_bind(tollgate::time::to_micros(e.timestamp))
                .push_bind(e.properties.as_str())
                .push_bind(e.source.as_str())
                .push_bind(ingested_at);
        });
        qb.push(ON_CONFLICT);
        qb
    }
}

impl Dialect for SqliteStore {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
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
