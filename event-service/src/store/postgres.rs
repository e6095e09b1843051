//! What only the PostgreSQL backend does: new rows go in with a binary `COPY`, and a group
//! with stored ids is sorted out by one `INSERT … SELECT FROM UNNEST … ON CONFLICT`.

use std::sync::LazyLock;

use sqlx::{PgConnection, PgPool};
use tollgate::sql::{Arg, Query};

use super::{INSERT_COLUMNS, Row, StoreError};

/// Enough for a busy replica's reads plus the writers, small enough for several replicas.
const CONNECTIONS: u32 = 16;
/// Commit groups written at once, each on its own connection (and server process), so that a
/// second group is inserted while the first waits for its commit. A small share of the pool,
/// which also serves reads.
pub const WRITERS: usize = 4;

/// Connects and applies pending migrations; statements running longer than `statement_timeout`
/// are cancelled.
pub async fn open(
    url: &url::Url,
    statement_timeout: Option<std::time::Duration>,
) -> Result<PgPool, StoreError> {
    let pool = tollgate::database::postgres_pool(url, CONNECTIONS, statement_timeout).await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(pool)
}

/// `COPY` of the insert columns, in the order `copy_data` writes them, in PostgreSQL's binary
/// format.
static COPY_IN: LazyLock<String> =
    LazyLock::new(|| format!("COPY events ({INSERT_COLUMNS}) FROM STDIN (FORMAT binary)"));

/// Inserts every row with one `COPY` inside the caller's transaction; fails with a unique
/// violation if an id is stored already or repeats (the transaction is then aborted: nothing
/// is written). `COPY` writes the table's heap several rows at a time and reads the binary
/// values as they are, where an `INSERT` takes them apart row by row (the comparison is in
/// docs/benchmarks.md).
pub async fn insert_new(
    tx: &mut PgConnection,
    rows: &[Row<'_>],
    ingested_at: i64,
) -> Result<(), sqlx::Error> {
    let data = copy_data(rows, ingested_at)?;
    let mut copy = tx.copy_in_raw(&COPY_IN).await?;
    copy.send(data).await?;
    copy.finish().await?;
    Ok(())
}

/// Inserts the rows whose ids are not stored yet, inside the caller's transaction, and returns
/// the key (scope id, event id) of each row inserted: one `INSERT … SELECT FROM UNNEST` of a
/// column array per field, 8 binds whatever the row count, so the server plans one small
/// statement. Used where `ON CONFLICT` must sort out stored ids, which `COPY` cannot.
pub async fn insert_returning<'a>(
    tx: &mut PgConnection,
    rows: &'a [Row<'a>],
    ingested_at: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let column = |f: fn(&'a Row<'a>) -> &'a str| Arg::TextArray(rows.iter().map(f).collect());
    let mut q = Query::new(format!(
        "INSERT INTO events ({INSERT_COLUMNS}) SELECT scope_id, event_id, event_name, \
         external_customer_id, ts, properties::jsonb, source, "
    ));
    q.push_bind(ingested_at)
        .push(" FROM UNNEST(")
        .push_bind(Arg::IntArray(rows.iter().map(|r| r.0).collect()))
        .push(", ")
        .push_bind(column(|r| &r.1.event_id))
        .push(", ")
        .push_bind(column(|r| &r.1.event_name))
        .push(", ")
        .push_bind(column(|r| &r.1.external_customer_id))
        .push(", ")
        .push_bind(Arg::IntArray(
            rows.iter()
                .map(|r| tollgate::time::to_micros(r.1.timestamp))
                .collect(),
        ))
        .push(", ")
        .push_bind(column(|r| &r.1.properties))
        .push(", ")
        .push_bind(column(|r| &r.1.source))
        .push(
            ") AS u (scope_id, event_id, event_name, external_customer_id, ts, properties, source)",
        )
        .push(" ON CONFLICT (scope_id, event_id) DO NOTHING RETURNING scope_id, event_id");
    tollgate::sql::fetch_all_on(tx, q).await
}

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
    // The same order as INSERT_COLUMNS.
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
