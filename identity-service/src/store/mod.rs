//! Storage: one trait, implemented for SQLite and PostgreSQL.
//!
//! The SQL is portable between the two (`$N` placeholders work on both with sqlx; timestamps are
//! integer microseconds), so one body, in [`queries`], is expanded for each backend; what differs
//! (how a write transaction begins, row locking) is a small [`Dialect`] of each backend.

#[macro_use]
mod queries;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tollgate::database::DatabaseUrl;
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::{Environment, KeyDigest};
use tollgate::time::from_micros;

use crate::api_keys::{ApiKey, KeyName};
use crate::roles::RoleSet;
use crate::tenants::Tenant;
use crate::users::{DisplayName, User, UserType};

/// A storage failure, classified where the caller can act on the class.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated.
    #[error("unique constraint violated")]
    UniqueViolation(#[source] sqlx::Error),
    /// A foreign key points nowhere (the parent was deleted concurrently).
    #[error("foreign key constraint violated")]
    ForeignKeyViolation,
    /// A stored row this build cannot read.
    #[error("unreadable row: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Migrations failed at startup.
    #[error("cannot migrate the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The SQLite file or its folder cannot be created.
    #[error("cannot create the database file")]
    Io(#[from] std::io::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match &e {
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => Self::UniqueViolation(e),
                ErrorKind::ForeignKeyViolation => Self::ForeignKeyViolation,
                _ => Self::Database(e),
            },
            _ => Self::Database(e),
        }
    }
}

/// What deleting a user came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteUserOutcome {
    /// Deleted, with this many of its keys.
    Deleted {
        /// Keys revoked with the account.
        revoked_api_keys: u64,
    },
    /// No such user in the tenant.
    NotFound,
    /// Refused: it is the tenant's last user account.
    LastUser,
}

/// Everything identity-service keeps. Every method is scoped to a tenant except the digest
/// lookup, which is how a tenant is found in the first place.
#[async_trait]
pub trait IdentityStore: Send + Sync + std::fmt::Debug + 'static {
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The connection pool's size and idle connections, for metrics.
    fn pool_stats(&self) -> (u32, usize);
    /// Stores a tenant, its first user and that user's key, all or nothing.
    async fn create_tenant(
        &self,
        tenant: &Tenant,
        user: &User,
        key: &ApiKey,
    ) -> Result<(), StoreError>;
    /// The oldest tenant with this name, if any.
    async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;
    /// Stores a new user.
    async fn insert_user(&self, user: &User) -> Result<(), StoreError>;
    /// One user of a tenant.
    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>, StoreError>;
    /// Up to `limit` users of a tenant in id (creation) order, after `after`.
    async fn list_users(
        &self,
        tenant: &TenantId,
        filter: Option<UserType>,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError>;
    /// Replaces a service account's roles; `None` if there is no such service account.
    async fn update_user_roles(
        &self,
        tenant: &TenantId,
        id: &UserId,
        roles: &RoleSet,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError>;
    /// Deletes a user and its keys in one transaction, unless it is the last user account.
    async fn delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
    ) -> Result<DeleteUserOutcome, StoreError>;
    /// Stores a new key.
    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// One key of a tenant.
    async fn get_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError>;
    /// Up to `limit` keys of a tenant (of one owner if given) in id order, after `after`.
    async fn list_api_keys(
        &self,
        tenant: &TenantId,
        owner: Option<&UserId>,
        after: Option<&ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError>;
    /// Deletes a key; whether it existed.
    async fn delete_api_key(&self, tenant: &TenantId, id: &ApiKeyId) -> Result<bool, StoreError>;
    /// The key with this digest, in any tenant.
    async fn find_api_key_by_digest(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<ApiKey>, StoreError>;
    /// Sets `last_used_at = now` unless it is already later than `stale_before`.
    async fn touch_api_key(
        &self,
        id: &ApiKeyId,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// What differs between the backends' SQL.
pub trait Dialect {
    /// How a transaction that will write begins. SQLite takes the write lock up front
    /// (`BEGIN IMMEDIATE`) so that a read followed by a write cannot fail half-way with
    /// SQLITE_BUSY; PostgreSQL begins normally.
    const BEGIN_WRITE: &'static str;
    /// Locks a tenant's row for the rest of the transaction, serialising checks such as "is this
    /// the last user account?" against concurrent deletes. `None` where the transaction already
    /// holds the database's only write lock (SQLite).
    const LOCK_TENANT: Option<&'static str>;
}

/// Connects to the database the URL names and brings its schema up to date.
pub async fn connect(url: &DatabaseUrl) -> Result<Arc<dyn IdentityStore>, StoreError> {
    Ok(match url {
        DatabaseUrl::Sqlite(path) => Arc::new(sqlite::SqliteStore::connect(path).await?),
        DatabaseUrl::Postgres(url) => Arc::new(postgres::PostgresStore::connect(url).await?),
    })
}

/// A `users` row as both backends return it.
#[derive(Debug, sqlx::FromRow)]
struct UserRow {
    id: String,
    tenant_id: String,
    user_type: String,
    name: String,
    roles: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        Ok(User {
            id: parse_stored(&row.id, UserId::parse)?,
            tenant_id: parse_stored(&row.tenant_id, TenantId::parse)?,
            user_type: UserType::parse(&row.user_type)
                .ok_or_else(|| corrupt("user_type", &row.user_type))?,
            name: DisplayName::from_storage(row.name),
            roles: RoleSet::from_storage(&row.roles).ok_or_else(|| corrupt("roles", &row.roles))?,
            created_at: from_micros(row.created_at),
            updated_at: from_micros(row.updated_at),
        })
    }
}

/// A `tenants` row as both backends return it.
#[derive(Debug, sqlx::FromRow)]
struct TenantRow {
    id: String,
    name: String,
    created_at: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(row: TenantRow) -> Result<Self, Self::Error> {
        Ok(Tenant {
            id: parse_stored(&row.id, TenantId::parse)?,
            name: row.name,
            created_at: from_micros(row.created_at),
        })
    }
}

/// An `api_keys` row as both backends return it.
#[derive(Debug, sqlx::FromRow)]
struct ApiKeyRow {
    id: String,
    tenant_id: String,
    user_id: String,
    user_type: String,
    environment: String,
    name: String,
    roles: String,
    digest: Vec<u8>,
    display_hint: String,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> Result<Self, Self::Error> {
        Ok(ApiKey {
            id: parse_stored(&row.id, ApiKeyId::parse)?,
            tenant_id: parse_stored(&row.tenant_id, TenantId::parse)?,
            user_id: parse_stored(&row.user_id, UserId::parse)?,
            user_type: UserType::parse(&row.user_type)
                .ok_or_else(|| corrupt("user_type", &row.user_type))?,
            environment: Environment::parse(&row.environment)
                .ok_or_else(|| corrupt("environment", &row.environment))?,
            name: KeyName::from_storage(row.name),
            roles: RoleSet::from_storage(&row.roles).ok_or_else(|| corrupt("roles", &row.roles))?,
            digest: KeyDigest::from_slice(&row.digest)
                .ok_or_else(|| corrupt("digest", "wrong length"))?,
            display_hint: row.display_hint,
            created_at: from_micros(row.created_at),
            expires_at: row.expires_at.map(from_micros),
            last_used_at: row.last_used_at.map(from_micros),
        })
    }
}

fn parse_stored<T, E>(s: &str, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<T, StoreError> {
    parse(s).map_err(|_| corrupt("id", s))
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{column} = {value:?}"))
}
