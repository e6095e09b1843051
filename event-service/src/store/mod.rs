//! Storage: one trait, implemented for SQLite and PostgreSQL from one body ([`queries`]). What
//! differs between the backends (JSON functions, the properties column type) is each backend's
//! [`Dialect`].

#[macro_use]
mod queries;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use tollgate::database::DatabaseUrl;

use crate::events::query::{Cursor, ListFilter};
use crate::events::usage::{UsageQuery, UsageReport};
use crate::events::{Event, NewEvent, Scope};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Any database error.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Migrations failed at startup.
    #[error("cannot migrate the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The SQLite file or its folder cannot be created.
    #[error("cannot create the database file")]
    Io(#[from] std::io::Error),
}

/// Events of one scope to insert together.
pub type Batch<'a> = (&'a Scope, &'a [NewEvent]);

/// One event to insert and the id of its scope.
type Row<'a> = (i64, &'a NewEvent);

/// The start of every backend's insert statement (the columns are in `queries`).
const INSERT_INTO: &str = concat!("INSERT INTO events (", insert_columns!(), ") ");

/// What ends the insert statement once some ids are known to be stored already: such a row is
/// skipped. Only the pass that sorts out duplicates adds it (see `insert` in `queries`).
const ON_CONFLICT: &str = " ON CONFLICT (scope_id, event_id) DO NOTHING";

/// Everything event-service keeps. Every method is scoped to a tenant and environment.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug + 'static {
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The connection pool's size and idle connections, for metrics.
    fn pool_stats(&self) -> (u32, usize);
    /// How many commit groups may be written at once.
    fn writers(&self) -> usize;
    /// Inserts every batch in one transaction, skipping events whose id is already stored in
    /// their scope (idempotency, checked in that same transaction). Returns, per batch and event,
    /// whether the event was new. Nothing is written if an error is returned.
    async fn insert(&self, batches: &[Batch<'_>]) -> Result<Vec<Vec<bool>>, StoreError>;
    /// Whether [`EventStore::insert`] returns before its commit is durable. Such a store's
    /// inserts are not stored until a later [`EventStore::sync`] has returned; nobody may be told
    /// otherwise before.
    fn syncs_separately(&self) -> bool {
        false
    }
    /// Makes every insert committed so far durable.
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// One event by id.
    async fn get_event(&self, scope: &Scope, event_id: &str) -> Result<Option<Event>, StoreError>;
    /// Up to `limit` events matching `filter`, newest first, after `after`.
    async fn list_events(
        &self,
        scope: &Scope,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;
    /// A usage report.
    async fn usage(&self, scope: &Scope, query: &UsageQuery) -> Result<UsageReport, StoreError>;
}

/// What differs between the backends' SQL.
pub trait Dialect {
    /// How a writing transaction begins (`BEGIN IMMEDIATE` takes SQLite's write lock up front).
    const BEGIN_WRITE: &'static str;
    /// Rows one insert statement takes at most.
    const ROWS_PER_STATEMENT: usize;
    /// How the properties column is read back as JSON text.
    const PROPERTIES_TEXT: &'static str;
    /// The bind value that addresses a top-level property in [`Dialect::NUMERIC_PROPERTY`].
    fn property_path(name: &str) -> String;
    /// SQL pieces around two binds of [`Dialect::property_path`] giving the property's value as
    /// a double when it is a JSON number, NULL otherwise.
    const NUMERIC_PROPERTY: [&'static str; 3];
    /// SQL pieces around one bind of [`Dialect::property_path`] giving the property's value as
    /// text, NULL when missing.
    const TEXT_PROPERTY: [&'static str; 2];
}

/// Connects to the database the URL names and brings its schema up to date.
pub async fn connect(url: &DatabaseUrl) -> Result<Arc<dyn EventStore>, StoreError> {
    Ok(match url {
        DatabaseUrl::Sqlite(path) => Arc::new(sqlite::SqliteStore::connect(path).await?),
        DatabaseUrl::Postgres(url) => Arc::new(postgres::PostgresStore::connect(url).await?),
    })
}

/// The ids of the scopes seen so far. Scopes are few (tenants × 2) and never deleted, so they
/// are kept for the life of the process; a scope not yet known is looked up (and, for a write,
/// created) in the database.
#[derive(Debug, Default)]
pub(crate) struct ScopeIds(std::sync::Mutex<std::collections::HashMap<Scope, i64>>);

impl ScopeIds {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Scope, i64>> {
        // The map holds no invariant a panic could break: a poisoned lock is still usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, scope: &Scope) -> Option<i64> {
        self.lock().get(scope).copied()
    }

    pub(crate) fn insert(&self, scope: &Scope, id: i64) {
        self.lock().insert(scope.clone(), id);
    }
}

/// An `events` row as both backends return it.
#[derive(Debug, sqlx::FromRow)]
struct EventRow {
    seq: i64,
    event_id: String,
    event_name: String,
    external_customer_id: String,
    ts: i64,
    properties: String,
    source: String,
    ingested_at: i64,
}

impl From<EventRow> for Event {
    fn from(r: EventRow) -> Self {
        Event {
            seq: r.seq,
            event_id: r.event_id,
            event_name: r.event_name,
            external_customer_id: r.external_customer_id,
            timestamp: tollgate::time::from_micros(r.ts),
            properties: r.properties,
            source: r.source,
            ingested_at: tollgate::time::from_micros(r.ingested_at),
        }
    }
}

/// A usage row as both backends return it.
#[derive(Debug, sqlx::FromRow)]
struct UsageRowRaw {
    win: Option<i64>,
    customer: Option<String>,
    value: Option<f64>,
    n: i64,
}
