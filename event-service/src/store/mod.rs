//! Storage: the [`EventStore`] trait the domain talks to, and its SQL implementation for SQLite
//! and PostgreSQL ([`sql`]), with what only one backend does in [`sqlite`] and [`postgres`].
//! This file holds only what they share, so that each imports it and it imports none of them.

pub mod keys;
pub mod meters;
pub mod pending;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use async_trait::async_trait;
use tollgate::server::DatabaseHealth;

use crate::model::meters::{Meter, MeterDefinition, MeterKey, MeterQuery, MeterReport};
use crate::model::query::{Cursor, ListFilter};
use crate::model::usage::{UsageQuery, UsageReport};
use crate::model::{Event, NewEvent, Scope};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Any database error.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Migrations failed at startup.
    #[error("cannot migrate the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row this build cannot read.
    #[error("unreadable row: {0}")]
    Corrupt(String),
    /// The SQLite file or its folder cannot be created, or its log cannot be synced.
    #[error("cannot write the database file")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether the database was unreachable rather than the request wrong: the caller may
    /// retry it (see [`tollgate::database::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Database(e) if tollgate::database::is_unavailable(e))
    }
}

/// Events of one scope to insert together.
pub type Batch<'a> = (&'a Scope, &'a [NewEvent]);

/// Everything event-service keeps. Every method is scoped to a tenant and environment.
#[async_trait]
pub trait EventStore: DatabaseHealth {
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
    /// Whether the store's log is copied into its database file by [`EventStore::checkpoint`],
    /// called beside the writer after its commits, rather than by the writer itself.
    fn checkpoints_separately(&self) -> bool {
        false
    }
    /// Copies what the log holds into the database file, as far as readers allow; `None` when
    /// the store had nothing to do this time.
    async fn checkpoint(&self) -> Result<Option<Checkpointed>, StoreError> {
        Ok(None)
    }
    /// One event by id.
    async fn get_event(&self, scope: &Scope, event_id: &str) -> Result<Option<Event>, StoreError>;
    /// Up to `limit` events matching `filter`, newest first, after `after`, stopping early once
    /// they hold about `max_bytes` of text (each event counted as its strings plus 64 bytes);
    /// whether they stopped early.
    async fn list_events(
        &self,
        scope: &Scope,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<(Vec<Event>, bool), StoreError>;
    /// A usage report of at most `max_rows` rows; `None` if it would have more.
    async fn usage(
        &self,
        scope: &Scope,
        query: &UsageQuery,
        max_rows: usize,
    ) -> Result<Option<UsageReport>, StoreError>;
}

/// Meters: definitions, their exact figures, the backfill and the fold. Apart from
/// [`EventStore`] because only the meter operations use it; the writer stages the figures inside
/// [`EventStore::insert`].
#[async_trait]
pub trait MeterStore: Send + Sync + std::fmt::Debug {
    /// Creates a meter; its rollups count every event stored after this returns, and the
    /// backfill counts those stored before.
    async fn create_meter(
        &self,
        scope: &Scope,
        definition: &MeterDefinition,
    ) -> Result<meters::CreateOutcome, StoreError>;
    /// One meter.
    async fn get_meter(&self, scope: &Scope, key: &MeterKey) -> Result<Option<Meter>, StoreError>;
    /// Up to `limit` meters in key order, after `after`.
    async fn list_meters(
        &self,
        scope: &Scope,
        after: Option<&MeterKey>,
        limit: u32,
    ) -> Result<Vec<Meter>, StoreError>;
    /// Deletes a meter and its rollups; whether it existed.
    async fn delete_meter(&self, scope: &Scope, key: &MeterKey) -> Result<bool, StoreError>;
    /// A meter's usage report (see [`meters::usage`]).
    async fn meter_usage(
        &self,
        scope: &Scope,
        meter: &Meter,
        query: &MeterQuery,
        max_rows: usize,
        max_events: usize,
    ) -> Result<Result<MeterReport, meters::Refused>, StoreError>;
    /// The meters whose backfill is not done.
    async fn meters_backfilling(&self) -> Result<Vec<i64>, StoreError>;
    /// Counts the next chunk of a meter's earlier events; whether its backfill is done.
    async fn backfill_meter(&self, id: i64) -> Result<bool, StoreError>;
    /// Adds the oldest staged deltas to the rollups (see [`meters::fold`]); how many staged
    /// rows it took (none: nothing was staged).
    async fn fold_meters(&self) -> Result<usize, StoreError>;
    /// How many insert transactions of this process have committed staged deltas so far: the
    /// fold task watches it to tell a writer that is still staging from one gone quiet.
    fn staged_commits(&self) -> u64;
}

/// What a checkpoint of a write-ahead log found and did, in log pages ([`EventStore::checkpoint`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpointed {
    /// Pages the log holds.
    pub log: i64,
    /// Pages of it copied into the database file, now or before. Fewer than `log` when a reader
    /// still reads the older pages they would overwrite; a later checkpoint copies the rest.
    pub copied: i64,
}

/// One event to insert, with the id of its scope.
pub type Row<'a> = (i64, &'a NewEvent);

/// The columns every insert writes, in the order each backend supplies their values.
pub const INSERT_COLUMNS: &str =
    "scope_id, event_id, event_name, external_customer_id, ts, properties, source, ingested_at";
