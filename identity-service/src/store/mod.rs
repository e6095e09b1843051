//! Storage: the [`IdentityStore`] trait the domain talks to, the SQL implementation for SQLite
//! and PostgreSQL ([`sql`]), and the key-record cache that wraps it ([`key_cache`]). This file
//! holds only what they share, so that each imports it and it imports neither.

pub mod key_cache;
pub mod key_index;
pub mod sql;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::{Environment, KeyDigest};
use tollgate::server::DatabaseHealth;
use tollgate::time::to_micros;

use crate::model::api_keys::ApiKey;
use crate::model::audit::{Actor, AuditEvent, AuditFilter};
use crate::model::roles::RoleSet;
use crate::model::tenants::Tenant;
use crate::model::users::{User, UserType};

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

impl StoreError {
    /// Whether the database was unreachable rather than the request wrong: the caller may
    /// retry it (see [`tollgate::database::is_unavailable`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Database(e) if tollgate::database::is_unavailable(e))
    }
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

/// A key as read for authorization, with when its use was last written as this replica knows
/// it, so that `last_used_at` is written at most once per period per key, not on every request.
#[derive(Debug)]
pub struct KeyRecord {
    /// The key.
    pub key: ApiKey,
    /// `last_used_at` as this replica last wrote or read it, in microseconds.
    last_use: AtomicI64,
}

/// Records are the same when their keys are: when a use was last written is not part of it.
impl PartialEq for KeyRecord {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl KeyRecord {
    /// The record of a key just read.
    pub fn new(key: ApiKey) -> Self {
        let last_use = key.last_used_at.map(to_micros).unwrap_or(i64::MIN);
        Self {
            key,
            last_use: AtomicI64::new(last_use),
        }
    }

    /// Claims the right to write `now` as the key's last use, when the last write is older
    /// than `stale_before`. Only one of several concurrent callers wins.
    pub fn claim_use(&self, now: DateTime<Utc>, stale_before: DateTime<Utc>) -> bool {
        let last = self.last_use.load(Ordering::Relaxed);
        last < to_micros(stale_before)
            && self
                .last_use
                .compare_exchange(last, to_micros(now), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// A change to which keys exist, in the order replicas follow them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyChange {
    /// Its place in the change log; later changes have larger numbers.
    pub seq: i64,
    /// The key's digest.
    pub digest: KeyDigest,
    /// Whether the key came or went.
    pub kind: KeyChangeKind,
}

/// What the change log holds: changes numbered `oldest..=latest` (both 0 when it is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyLogSpan {
    /// The oldest change kept (older ones were pruned).
    pub oldest: i64,
    /// The latest change.
    pub latest: i64,
}

impl KeyLogSpan {
    /// Whether a follower that has seen every change up to `seq` can read all that came after
    /// it from the log: nothing it has not seen was pruned, and the log is the one it followed
    /// (a number beyond the latest means another database).
    pub fn continues(&self, seq: i64) -> bool {
        seq <= self.latest && (self.oldest <= seq + 1 || seq == self.latest)
    }
}

/// Whether a key came into existence or stopped working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChangeKind {
    /// Created (also by a rotation).
    Issued,
    /// Deleted, with its account or alone.
    Revoked,
    /// Still there, but changed: a rotation brought its expiry forward. Caches drop it.
    Changed,
}

impl KeyChangeKind {
    /// The storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyChangeKind::Issued => "issued",
            KeyChangeKind::Revoked => "revoked",
            KeyChangeKind::Changed => "changed",
        }
    }
}

/// Wakes a follower of the change log when changes may have been committed, by this replica
/// or any other.
#[async_trait]
pub trait ChangeSignal: Send {
    /// Resolves once there may be new changes to read; an error when the signal was lost (the
    /// follower then reads the log and asks for a new signal).
    async fn changed(&mut self) -> Result<(), StoreError>;
}

/// What a rotation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// Rotated: the old key as it is now.
    Rotated(Box<ApiKey>),
    /// No such key in the tenant.
    NotFound,
    /// Rotated already, by this key.
    AlreadyRotated(ApiKeyId),
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
pub trait IdentityStore: DatabaseHealth {
    /// Stores a tenant, its first user and that user's key, all or nothing, with their audit
    /// records (every change below writes its records in its own transaction, by `actor`).
    async fn create_tenant(
        &self,
        tenant: &Tenant,
        user: &User,
        key: &ApiKey,
        actor: &Actor,
    ) -> Result<(), StoreError>;
    /// The oldest tenant with this name, if any.
    async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;
    /// Stores a new user.
    async fn insert_user(&self, user: &User, actor: &Actor) -> Result<(), StoreError>;
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
        actor: &Actor,
    ) -> Result<Option<User>, StoreError>;
    /// Deletes a user and its keys in one transaction, unless it is the last user account.
    async fn delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        actor: &Actor,
    ) -> Result<DeleteUserOutcome, StoreError>;
    /// Stores a new key.
    async fn insert_api_key(&self, key: &ApiKey, actor: &Actor) -> Result<(), StoreError>;
    /// One key of a tenant.
    async fn get_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError>;
    /// Up to `limit` keys of a tenant (of one owner, of one environment, if given) in id order,
    /// after `after`.
    async fn list_api_keys(
        &self,
        tenant: &TenantId,
        owner: Option<&UserId>,
        environment: Option<Environment>,
        after: Option<&ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError>;
    /// Deletes a key; whether it existed.
    async fn delete_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
        actor: &Actor,
    ) -> Result<bool, StoreError>;
    /// Replaces the key `id` by `replacement` in one transaction: stores the new key, and gives
    /// the old one `expires_at` and names its replacement, unless it was rotated already.
    async fn rotate_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
        replacement: &ApiKey,
        expires_at: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<RotateOutcome, StoreError>;
    /// Up to `limit` audit records of a tenant matching `filter`, newest first, before the
    /// record numbered `before` (with their numbers, for paging).
    async fn list_audit_events(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, AuditEvent)>, StoreError>;
    /// The key with this digest, in any tenant.
    async fn find_api_key_by_digest(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError>;
    /// Changes to which keys exist after `seq`, oldest first, at most `limit`.
    async fn key_changes_after(&self, seq: i64, limit: u32) -> Result<Vec<KeyChange>, StoreError>;
    /// The numbers of the oldest and the latest change the log holds (0 for none). Pruning
    /// always keeps the latest, so the latest never goes back.
    async fn key_log_span(&self) -> Result<KeyLogSpan, StoreError>;
    /// The digest of every key that exists.
    async fn issued_digests(&self) -> Result<Vec<KeyDigest>, StoreError>;
    /// A signal of committed changes, for a follower of the change log.
    async fn key_change_signal(&self) -> Result<Box<dyn ChangeSignal>, StoreError>;
    /// Forgets changes older than `before`; how many.
    async fn prune_key_changes(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Records that the key was used at `now`, unless its last recorded use is later than
    /// `stale_before` (the condition holds across replicas).
    async fn touch_api_key(
        &self,
        id: &ApiKeyId,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}
