//! The PostgreSQL backend, for deployments with replicas sharing one database.

use sqlx::{PgPool, Postgres, QueryBuilder};

use super::{Dialect, INSERT_INTO, Row, StoreError};

/// Enough for a busy replica's reads plus the writer, small enough for several replicas.
const MAX_CONNECTIONS: u32 = 16;

/// event-service's store in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// None: PostgreSQL connections share the server's buffer cache, so writes take any
    /// connection of the pool.
    writer: Option<PgPool>,
    scopes: std::sync::Arc<super::ScopeIds>,
}

impl PostgresStore {
    /// Commit groups written at once, each on its own connection (and server process). A small
    /// share of the pool, which also serves reads.
    const WRITERS: usize = 4;

    /// Connects and applies pending migrations.
    pub async fn connect(url: &url::Url) -> Result<Self, StoreError> {
        let pool = tollgate::database::postgres_pool(url, MAX_CONNECTIONS).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            writer: None,
            scopes: Default::default(),
        })
    }
}

impl PostgresStore {
    /// One `INSERT … SELECT FROM UNNEST` of a column array per field: 8 binds whatever the row
    /// count, so the server plans one small statement instead of thousands of placeholders.
    fn insert_statement<'a>(
        rows: &'a [Row<'a>],
        ingested_at: i64,
    ) -> Result<QueryBuilder<'a, Postgres>, sqlx::Error> {
        let column = |f: fn(&Row<'a>) -> &'a str| rows.iter().map(f).collect::<Vec<&'a str>>();
        let mut qb = QueryBuilder::new(INSERT_INTO);
        qb.push("SELECT scope_id, event_id, event_name, external_customer_id, ts, properties::jsonb, source, ")
            .push_bind(ingested_at)
            .push(" FROM UNNEST(")
            .push_bind(rows.iter().map(|r| r.0).collect::<Vec<i64>>())
            .push(", ")
            .push_bind(column(|r| r.1.event_id.as_str()))
            .push(", ")
            .push_bind(column(|r| r.1.event_name.as_str()))
            .push(", ")
            .push_bind(column(|r| r.1.external_customer_id.as_str()))
            .push(", ")
            .push_bind(
                rows.iter()
                    .map(|r| tollgate::time::to_micros(r.1.timestamp))
                    .collect::<Vec<i64>>(),
            )
            .push(", ")
            .push_bind(column(|r| r.1.properties.as_str()))
            .push(", ")
            .push_bind(column(|r| r.1.source.as_str()))
            .push(") AS u (scope_id, event_id, event_name, external_customer_id, ts, properties, source)");
        Ok(qb)
    }
}

impl Dialect for PostgresStore {
    const BEGIN_WRITE: &'static str = "BEGIN";
    /// `UNNEST` binds 8 arrays whatever the row count: every commit group is one statement.
    const ROWS_PER_STATEMENT: usize = usize::MAX;
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
