//! The PostgreSQL backend, for deployments with replicas sharing one database.

use sqlx::PgPool;

use super::{Dialect, StoreError};

/// Enough for a busy replica's reads plus the writer, small enough for several replicas.
const MAX_CONNECTIONS: u32 = 16;

/// event-service's store in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    scopes: std::sync::Arc<super::ScopeIds>,
}

impl PostgresStore {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &url::Url) -> Result<Self, StoreError> {
        let pool = tollgate::database::postgres_pool(url, MAX_CONNECTIONS).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            scopes: Default::default(),
        })
    }
}

impl Dialect for PostgresStore {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const PROPERTIES_CAST: &'static str = "::jsonb";
    const PROPERTIES_TEXT: &'static str = "properties::text";
    const NUMERIC_PROPERTY: [&'static str; 3] = [
        "CASE WHEN jsonb_typeof(properties -> ",
        "::text) = 'number' THEN (properties ->> ",
        "::text)::double precision END",
    ];
    const TEXT_PROPERTY: [&'static str; 2] = ["(properties ->> ", "::text)"];

    fn property_path(name: &str) -> String {
        name.to_owned()
    }
}

event_store_impl!(PostgresStore, sqlx::Postgres);
