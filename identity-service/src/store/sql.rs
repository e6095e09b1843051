//! The store in SQL, written once for SQLite and PostgreSQL: the statements are portable (`$N`
//! placeholders, times as integer microseconds), and the one place the backends differ (locking
//! a tenant's row, which SQLite's single write lock makes unnecessary) is decided by
//! [`Backend`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tollgate::database::DatabaseUrl;
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::{Environment, KeyDigest};
use tollgate::server::DatabaseHealth;
use tollgate::sql::{Backend, Db, Query, Tx};
use tollgate::time::{from_micros, to_micros};

use super::{
    ChangeSignal, DeleteUserOutcome, IdentityStore, KeyChange, KeyChangeKind, KeyRecord, StoreError,
};
use crate::model::api_keys::{ApiKey, KeyName};
use crate::model::roles::RoleSet;
use crate::model::tenants::Tenant;
use crate::model::users::{DisplayName, User, UserType};

/// SQLite connections: readers run in parallel under WAL; writers queue on SQLite's lock.
const SQLITE_CONNECTIONS: u32 = 8;
/// PostgreSQL connections: enough for a busy replica, small enough that several replicas fit
/// under PostgreSQL's default limit of 100.
const POSTGRES_CONNECTIONS: u32 = 16;

/// Column list of `users`, in [`UserRow`] order.
const USER_COLUMNS: &str = "id, tenant_id, user_type, name, roles, created_at, updated_at";
/// Column list of `api_keys`, in [`ApiKeyRow`] order.
const API_KEY_COLUMNS: &str = "id, tenant_id, user_id, user_type, environment, name, roles, \
                               digest, display_hint, created_at, expires_at, last_used_at";

/// The PostgreSQL channel on which a commit that changed keys is announced.
const KEY_CHANGES_CHANNEL: &str = "tollgate_key_changes";
/// The advisory lock that key-changing transactions take on PostgreSQL before they append to
/// the change log, so that its sequence numbers follow commit order (see the migration).
const KEY_CHANGES_LOCK: i64 = 0x746f_6c6c_6b65_7973; // "tollkeys"

/// identity-service's store on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: Db,
    /// Bumped after every commit that changed keys: SQLite has no NOTIFY, and its one process
    /// is the only writer, so an in-process signal reaches every follower.
    committed: Arc<watch::Sender<u64>>,
}

impl SqlStore {
    /// Opens the database the URL names (creating a SQLite file if needed) and applies pending
    /// migrations.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        Self::connect_with(url, None).await
    }

    /// [`SqlStore::connect`], with PostgreSQL cancelling statements that run longer than
    /// `statement_timeout`.
    pub async fn connect_with(
        url: &DatabaseUrl,
        statement_timeout: Option<std::time::Duration>,
    ) -> Result<Self, StoreError> {
        let db = match url {
            DatabaseUrl::Sqlite(path) => {
                let pool = tollgate::database::sqlite_pool(path, SQLITE_CONNECTIONS).await?;
                sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
                Db::Sqlite(pool)
            }
            DatabaseUrl::Postgres(url) => {
                let pool =
                    tollgate::database::postgres_pool(url, POSTGRES_CONNECTIONS, statement_timeout)
                        .await?;
                sqlx::migrate!("./migrations/postgres").run(&pool).await?;
                Db::Postgres(pool)
            }
        };
        Ok(Self {
            db,
            committed: Arc::new(watch::channel(0).0),
        })
    }

    /// Appends changes to the change log inside `tx` (announced to every replica when it
    /// commits, on PostgreSQL; call [`SqlStore::committed`] after the commit for SQLite).
    async fn record_changes(
        &self,
        tx: &mut Tx,
        digests: &[KeyDigest],
        kind: KeyChangeKind,
    ) -> Result<(), StoreError> {
        if digests.is_empty() {
            return Ok(());
        }
        if self.db.backend() == Backend::Postgres {
            tx.execute(Query::new("SELECT pg_advisory_xact_lock($1)").bind(KEY_CHANGES_LOCK))
                .await?;
        }
        let at = to_micros(tollgate::time::now());
        for digest in digests {
            tx.execute(
                Query::new("INSERT INTO key_changes (digest, change, at) VALUES ($1, $2, $3)")
                    .bind(digest.as_bytes().as_slice())
                    .bind(kind.as_str())
                    .bind(at),
            )
            .await?;
        }
        if self.db.backend() == Backend::Postgres {
            tx.execute(Query::new("SELECT pg_notify($1, '')").bind(KEY_CHANGES_CHANNEL))
                .await?;
        }
        Ok(())
    }

    /// Tells this process's followers that a commit changed keys.
    fn committed(&self) {
        self.committed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// SQLite's signal: this process's commits.
struct Committed(watch::Receiver<u64>);

#[async_trait]
impl ChangeSignal for Committed {
    async fn changed(&mut self) -> Result<(), StoreError> {
        // The sender lives as long as the store, which outlives its followers.
        self.0
            .changed()
            .await
            .map_err(|_| StoreError::Corrupt("the store is gone".into()))
    }
}

/// PostgreSQL's signal: `NOTIFY` from any replica's commit. A lost connection is reported, and
/// the follower reads the log (notifications sent meanwhile are lost; changes are not).
struct Notified(sqlx::postgres::PgListener);

#[async_trait]
impl ChangeSignal for Notified {
    async fn changed(&mut self) -> Result<(), StoreError> {
        match self.0.try_recv().await? {
            Some(_) => Ok(()),
            None => Err(StoreError::Database(sqlx::Error::Protocol(
                "the key change channel was reconnected".into(),
            ))),
        }
    }
}

fn insert_user(user: &User) -> Query<'_> {
    Query::new(format!(
        "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(user.id.as_str())
    .bind(user.tenant_id.as_str())
    .bind(user.user_type.as_str())
    .bind(user.name.as_str())
    .bind(user.roles.to_storage())
    .bind(to_micros(user.created_at))
    .bind(to_micros(user.updated_at))
}

fn insert_api_key(key: &ApiKey) -> Query<'_> {
    Query::new(format!(
        "INSERT INTO api_keys ({API_KEY_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(key.id.as_str())
    .bind(key.tenant_id.as_str())
    .bind(key.user_id.as_str())
    .bind(key.user_type.as_str())
    .bind(key.environment.as_str())
    .bind(key.name.as_str())
    .bind(key.roles.to_storage())
    .bind(key.digest.as_bytes().as_slice())
    .bind(key.display_hint.as_str())
    .bind(to_micros(key.created_at))
    .bind(key.expires_at.map(to_micros))
    .bind(key.last_used_at.map(to_micros))
}

/// Locks a tenant's row for the rest of the transaction, serialising checks such as "is this
/// the last user account?" against concurrent deletes. SQLite's write transaction already
/// holds the database's only write lock.
async fn lock_tenant(tx: &mut Tx, backend: Backend, tenant: &TenantId) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        tx.execute(
            Query::new("SELECT id FROM tenants WHERE id = $1 FOR UPDATE").bind(tenant.as_str()),
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl DatabaseHealth for SqlStore {
    async fn reachable(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    fn pool_stats(&self) -> (u32, usize) {
        self.db.pool_stats()
    }
}

#[async_trait]
impl IdentityStore for SqlStore {
    async fn create_tenant(
        &self,
        tenant: &Tenant,
        user: &User,
        key: &ApiKey,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        tx.execute(
            Query::new("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(tenant.id.as_str())
                .bind(tenant.name.as_str())
                .bind(to_micros(tenant.created_at)),
        )
        .await?;
        tx.execute(insert_user(user)).await?;
        tx.execute(insert_api_key(key)).await?;
        self.record_changes(&mut tx, &[key.digest], KeyChangeKind::Issued)
            .await?;
        tx.commit().await?;
        self.committed();
        Ok(())
    }

    async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.db
            .fetch_optional::<TenantRow>(
                Query::new(
                    "SELECT id, name, created_at FROM tenants WHERE name = $1 ORDER BY id LIMIT 1",
                )
                .bind(name),
            )
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        self.db.execute(insert_user(user)).await?;
        Ok(())
    }

    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>, StoreError> {
        self.db
            .fetch_optional::<UserRow>(
                Query::new(format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str()),
            )
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    async fn list_users(
        &self,
        tenant: &TenantId,
        filter: Option<UserType>,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        let mut q = Query::new(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = "
        ));
        q.push_bind(tenant.as_str());
        if let Some(user_type) = filter {
            q.push(" AND user_type = ").push_bind(user_type.as_str());
        }
        if let Some(after) = after {
            q.push(" AND id > ").push_bind(after.as_str());
        }
        q.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
        self.db
            .fetch_all::<UserRow>(q)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    async fn update_user_roles(
        &self,
        tenant: &TenantId,
        id: &UserId,
        roles: &RoleSet,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        self.db
            .fetch_optional::<UserRow>(
                Query::new(format!(
                    "UPDATE users SET roles = $3, updated_at = $4 \
                     WHERE tenant_id = $1 AND id = $2 AND user_type = 'service_account' \
                     RETURNING {USER_COLUMNS}"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .bind(roles.to_storage())
                .bind(to_micros(now)),
            )
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    async fn delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
    ) -> Result<DeleteUserOutcome, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_tenant(&mut tx, self.db.backend(), tenant).await?;
        let user_type: Option<(String,)> = tx
            .fetch_optional(
                Query::new("SELECT user_type FROM users WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str()),
            )
            .await?;
        let Some((user_type,)) = user_type else {
            return Ok(DeleteUserOutcome::NotFound);
        };
        if user_type == UserType::User.as_str() {
            let (people,): (i64,) = tx
                .fetch_one(
                    Query::new(
                        "SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND user_type = 'user'",
                    )
                    .bind(tenant.as_str()),
                )
                .await?;
            if people <= 1 {
                return Ok(DeleteUserOutcome::LastUser);
            }
        }
        let revoked: Vec<(Vec<u8>,)> = tx
            .fetch_all(
                Query::new(
                    "DELETE FROM api_keys WHERE tenant_id = $1 AND user_id = $2 RETURNING digest",
                )
                .bind(tenant.as_str())
                .bind(id.as_str()),
            )
            .await?;
        tx.execute(
            Query::new("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id.as_str()),
        )
        .await?;
        let digests = digests_of(revoked)?;
        self.record_changes(&mut tx, &digests, KeyChangeKind::Revoked)
            .await?;
        tx.commit().await?;
        self.committed();
        Ok(DeleteUserOutcome::Deleted {
            revoked_api_keys: digests.len() as u64,
        })
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        tx.execute(insert_api_key(key)).await?;
        self.record_changes(&mut tx, &[key.digest], KeyChangeKind::Issued)
            .await?;
        tx.commit().await?;
        self.committed();
        Ok(())
    }

    async fn get_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError> {
        self.db
            .fetch_optional::<ApiKeyRow>(
                Query::new(format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str()),
            )
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    async fn list_api_keys(
        &self,
        tenant: &TenantId,
        owner: Option<&UserId>,
        environment: Option<Environment>,
        after: Option<&ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let mut q = Query::new(format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = "
        ));
        q.push_bind(tenant.as_str());
        if let Some(owner) = owner {
            q.push(" AND user_id = ").push_bind(owner.as_str());
        }
        if let Some(environment) = environment {
            q.push(" AND environment = ")
                .push_bind(environment.as_str());
        }
        if let Some(after) = after {
            q.push(" AND id > ").push_bind(after.as_str());
        }
        q.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit));
        self.db
            .fetch_all::<ApiKeyRow>(q)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    async fn delete_api_key(&self, tenant: &TenantId, id: &ApiKeyId) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let deleted: Vec<(Vec<u8>,)> = tx
            .fetch_all(
                Query::new(
                    "DELETE FROM api_keys WHERE tenant_id = $1 AND id = $2 RETURNING digest",
                )
                .bind(tenant.as_str())
                .bind(id.as_str()),
            )
            .await?;
        let digests = digests_of(deleted)?;
        self.record_changes(&mut tx, &digests, KeyChangeKind::Revoked)
            .await?;
        tx.commit().await?;
        self.committed();
        Ok(!digests.is_empty())
    }

    async fn key_changes_after(&self, seq: i64, limit: u32) -> Result<Vec<KeyChange>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, String)> = self
            .db
            .fetch_all(
                Query::new(
                    "SELECT seq, digest, change FROM key_changes WHERE seq > $1 \
                     ORDER BY seq LIMIT $2",
                )
                .bind(seq)
                .bind(i64::from(limit)),
            )
            .await?;
        rows.into_iter()
            .map(|(seq, digest, change)| {
                Ok(KeyChange {
                    seq,
                    digest: KeyDigest::from_slice(&digest)
                        .ok_or_else(|| corrupt("digest", "wrong length"))?,
                    kind: match change.as_str() {
                        "issued" => KeyChangeKind::Issued,
                        "revoked" => KeyChangeKind::Revoked,
                        other => return Err(corrupt("change", other)),
                    },
                })
            })
            .collect()
    }

    async fn latest_key_change(&self) -> Result<i64, StoreError> {
        let (latest,): (Option<i64>,) = self
            .db
            .fetch_one(Query::new("SELECT MAX(seq) FROM key_changes"))
            .await?;
        Ok(latest.unwrap_or(0))
    }

    async fn issued_digests(&self) -> Result<Vec<KeyDigest>, StoreError> {
        let rows: Vec<(Vec<u8>,)> = self
            .db
            .fetch_all(Query::new("SELECT digest FROM api_keys"))
            .await?;
        digests_of(rows)
    }

    async fn key_change_signal(&self) -> Result<Box<dyn ChangeSignal>, StoreError> {
        Ok(match &self.db {
            Db::Sqlite(_) => Box::new(Committed(self.committed.subscribe())),
            Db::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(KEY_CHANGES_CHANNEL).await?;
                Box::new(Notified(listener))
            }
        })
    }

    async fn prune_key_changes(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(self
            .db
            .execute(Query::new("DELETE FROM key_changes WHERE at < $1").bind(to_micros(before)))
            .await?)
    }

    async fn find_api_key_by_digest(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.db
            .fetch_optional::<ApiKeyRow>(
                Query::new(format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE digest = $1"
                ))
                .bind(digest.as_bytes().as_slice()),
            )
            .await?
            .map(|row| ApiKey::try_from(row).map(|key| Arc::new(KeyRecord::new(key))))
            .transpose()
    }

    async fn touch_api_key(
        &self,
        id: &ApiKeyId,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                Query::new(
                    "UPDATE api_keys SET last_used_at = $2 \
                     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
                )
                .bind(id.as_str())
                .bind(to_micros(now))
                .bind(to_micros(stale_before)),
            )
            .await?;
        Ok(())
    }
}

/// A `users` row.
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

/// A `tenants` row.
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

/// An `api_keys` row.
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

fn digests_of(rows: Vec<(Vec<u8>,)>) -> Result<Vec<KeyDigest>, StoreError> {
    rows.into_iter()
        .map(|(d,)| KeyDigest::from_slice(&d).ok_or_else(|| corrupt("digest", "wrong length")))
        .collect()
}

fn parse_stored<T, E>(s: &str, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<T, StoreError> {
    parse(s).map_err(|_| corrupt("id", s))
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{column} = {value:?}"))
}
