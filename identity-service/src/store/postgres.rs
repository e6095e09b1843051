//! The PostgreSQL backend, for deployments with replicas sharing one database.

use sqlx::PgPool;

use super::{Dialect, StoreError};

/// Connections in the pool: enough for a busy replica, small enough that several replicas fit
/// under PostgreSQL's default limit of 100.
const MAX_CONNECTIONS: u32 = 16;

/// identity-service's store in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &url::Url) -> Result<Self, StoreError> {
        let pool = tollgate::database::postgres_pool(url, MAX_CONNECTIONS).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

impl Dialect for PostgresStore {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const LOCK_TENANT: Option<&'static str> =
        Some("SELECT id FROM tenants WHERE id = $1 FOR UPDATE");
}

identity_store_impl!(PostgresStore, sqlx::Postgres);
