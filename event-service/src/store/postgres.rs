//! The PostgreSQL backend, for deployments with replicas sharing one database.

use sqlx::postgres::PgPoolCopyExt;
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

/// `COPY` of the insert columns, in the same order as `copy_data` writes them, in PostgreSQL's
/// binary format.
const COPY_IN: &str = concat!(
    "COPY events (",
    insert_columns!(),
    ") FROM STDIN (FORMAT binary)"
);

impl PostgresStore {
    /// Inserts every row with one `COPY`, all or nothing; fails with a unique violation, having
    /// written nothing, if an id is stored already or repeats. `COPY` writes the table's heap
    /// several rows at a time and reads the binary values as they are, where `INSERT … SELECT
    /// FROM UNNEST` inserts row by row after taking apart 8 arrays: in the server alone, 285k
    /// against 246k rows/s into this schema (300k rows, 3 alternating runs each).
    async fn insert_new(&self, rows: &[Row<'_>], ingested_at: i64) -> Result<(), sqlx::Error> {
        let data = copy_data(rows, ingested_at)?;
        // A COPY outside a transaction is one of its own: a failure leaves nothing written.
        let mut copy = self.write_pool().copy_in_raw(COPY_IN).await?;
        copy.send(data).await?;
        copy.finish().await?;
        Ok(())
    }

    /// One `INSERT … SELECT FROM UNNEST` of a column array per field: 8 binds whatever the row
    /// count, so the server plans one small statement instead of thousands of placeholders.
    /// Used where `ON CONFLICT` must sort out stored ids, which `COPY` cannot.
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
    /// `UNNEST` binds 8 arrays whatever the row count: sorting out a commit group's duplicates
    /// is one statement.
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

/// The rows as `COPY … (FORMAT binary)` data: a header, then per row the field count and each
/// field as its length and its value in the type's binary form (`int8` big-endian, `text` as
/// UTF-8, `jsonb` as version 1 and the JSON text), then an end marker.
fn copy_data(rows: &[Row<'_>], ingested_at: i64) -> Result<Vec<u8>, sqlx::Error> {
    const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
    const FIELDS: i16 = 8;
    const JSONB_VERSION: u8 = 1;
    let text: usize = rows
        .iter()
        .map(|(_, e)| {
            e.event_id.len()
                + e.event_name.len()
                + e.external_customer_id.len()
                + e.properties.len()
                + e.source.len()
        })
        .sum();
    // Per row: the field count, 8 lengths, 3 int8 values and the jsonb version.
    let mut buf =
        Vec::with_capacity(SIGNATURE.len() + 8 + rows.len() * (2 + 32 + 24 + 1) + text + 2);
    buf.extend_from_slice(SIGNATURE);
    buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
    buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
    let int8 = |buf: &mut Vec<u8>, value: i64| {
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&value.to_be_bytes());
    };
    let bytes = |buf: &mut Vec<u8>, prefix: &[u8], value: &str| -> Result<(), sqlx::Error> {
        let len = i32::try_from(prefix.len() + value.len())
            .map_err(|_| sqlx::Error::Encode("a value is over 2 GiB, too long for COPY".into()))?;
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(value.as_bytes());
        Ok(())
    };
    for (scope_id, e) in rows {
        buf.extend_from_slice(&FIELDS.to_be_bytes());
        int8(&mut buf, *scope_id);
        bytes(&mut buf, b"", &e.event_id)?;
        bytes(&mut buf, b"", &e.event_name)?;
        bytes(&mut buf, b"", &e.external_customer_id)?;
        int8(&mut buf, tollgate::time::to_micros(e.timestamp));
        bytes(&mut buf, &[JSONB_VERSION], &e.properties)?;
        bytes(&mut buf, b"", &e.source)?;
        int8(&mut buf, ingested_at);
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes()); // end of data
    Ok(buf)
}
