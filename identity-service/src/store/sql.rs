//! The store in SQL, written once for SQLite and PostgreSQL: the statements are portable (`$N`
//! placeholders, times as integer microseconds), and the one place the backends differ (locking
//! a tenant's row, which SQLite's single write lock makes unnecessary) is decided by
//! [`Backend`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tollgate::database::DatabaseUrl;
use tollgate::ids::{ApiKeyId, AuditId, TenantId, UserId};
use tollgate::keys::{Environment, KeyDigest};
use tollgate::server::DatabaseHealth;
use tollgate::sql::{Backend, Db, Query, Tx};
use tollgate::time::{from_micros, to_micros};

use super::{
    ChangeSignal, DeleteUserOutcome, IdentityStore, KeyChange, KeyChangeKind, KeyLogSpan,
    KeyRecord, RotateOutcome, StoreError,
};
use crate::model::api_keys::{ApiKey, KeyName};
use crate::model::audit::{Actor, AuditAction, AuditEvent, AuditFilter, LOCAL_COMMANDS};
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
                               digest, display_hint, created_at, expires_at, last_used_at, \
                               replaced_by";
/// Column list of `audit_events`, in [`AuditRow`] order.
const AUDIT_COLUMNS: &str = "seq, id, tenant_id, at, action, actor_key_id, actor_user_id, \
                             actor_command, actor_address, target_id, environment, \
                             roles_before, roles_after, replacement_id";

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
            Some(_) => {
                // One read of the log covers every commit announced so far.
                while self.0.next_buffered().is_some() {}
                Ok(())
            }
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
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
    .bind(key.replaced_by.as_ref().map(|id| id.as_str()))
}

/// Appends one audit record.
async fn insert_audit(tx: &mut Tx, event: &AuditEvent) -> Result<(), StoreError> {
    let (key_id, user_id, command, address) = match &event.actor {
        Actor::Key {
            key_id,
            user_id,
            address,
            ..
        } => (
            key_id.as_str(),
            user_id.as_str(),
            "",
            address.as_deref().unwrap_or_default(),
        ),
        Actor::Command(command) => ("", "", *command, ""),
    };
    let roles = |r: &Option<RoleSet>| r.as_ref().map(RoleSet::to_storage).unwrap_or_default();
    tx.execute(
        Query::new(
            "INSERT INTO audit_events (id, tenant_id, at, action, actor_key_id, actor_user_id, \
             actor_command, actor_address, target_id, environment, roles_before, roles_after, \
             replacement_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(event.id.as_str())
        .bind(event.tenant_id.as_str())
        .bind(to_micros(event.at))
        .bind(event.action.as_str())
        .bind(key_id)
        .bind(user_id)
        .bind(command)
        .bind(address)
        .bind(event.target_id.as_str())
        .bind(event.environment.as_str())
        .bind(roles(&event.roles_before))
        .bind(roles(&event.roles_after))
        .bind(
            event
                .replacement_id
                .as_ref()
                .map(|id| id.as_str())
                .unwrap_or_default(),
        ),
    )
    .await?;
    Ok(())
}

/// The record of a user's creation.
fn user_created(user: &User, actor: &Actor) -> AuditEvent {
    let mut event = AuditEvent::new(
        &user.tenant_id,
        AuditAction::UserCreated,
        actor,
        &user.id,
        actor.environment(),
        user.created_at,
    );
    event.roles_after = Some(user.roles.clone());
    event
}

/// The record of a key's creation.
fn key_created(key: &ApiKey, actor: &Actor) -> AuditEvent {
    let mut event = AuditEvent::new(
        &key.tenant_id,
        AuditAction::ApiKeyCreated,
        actor,
        &key.id,
        key.environment,
        key.created_at,
    );
    event.roles_after = Some(key.roles.clone());
    event
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
        actor: &Actor,
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
        let created = AuditEvent::new(
            &tenant.id,
            AuditAction::TenantCreated,
            actor,
            &tenant.id,
            Environment::Production,
            tenant.created_at,
        );
        insert_audit(&mut tx, &created).await?;
        insert_audit(&mut tx, &user_created(user, actor)).await?;
        insert_audit(&mut tx, &key_created(key, actor)).await?;
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

    async fn insert_user(&self, user: &User, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        tx.execute(insert_user(user)).await?;
        insert_audit(&mut tx, &user_created(user, actor)).await?;
        tx.commit().await?;
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
        actor: &Actor,
    ) -> Result<Option<User>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_tenant(&mut tx, self.db.backend(), tenant).await?;
        let before: Option<UserRow> = tx
            .fetch_optional(
                Query::new(format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2 \
                     AND user_type = 'service_account'"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str()),
            )
            .await?;
        let Some(before) = before.map(User::try_from).transpose()? else {
            return Ok(None);
        };
        let after: UserRow = tx
            .fetch_one(
                Query::new(format!(
                    "UPDATE users SET roles = $3, updated_at = $4 \
                     WHERE tenant_id = $1 AND id = $2 RETURNING {USER_COLUMNS}"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .bind(roles.to_storage())
                .bind(to_micros(now)),
            )
            .await?;
        let mut event = AuditEvent::new(
            tenant,
            AuditAction::UserRolesUpdated,
            actor,
            id,
            actor.environment(),
            now,
        );
        event.roles_before = Some(before.roles);
        event.roles_after = Some(roles.clone());
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(Some(after.try_into()?))
    }

    async fn delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        actor: &Actor,
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
        let revoked: Vec<ApiKeyRow> = tx
            .fetch_all(
                Query::new(format!(
                    "DELETE FROM api_keys WHERE tenant_id = $1 AND user_id = $2 \
                     RETURNING {API_KEY_COLUMNS}"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str()),
            )
            .await?;
        let revoked: Vec<ApiKey> = revoked
            .into_iter()
            .map(ApiKey::try_from)
            .collect::<Result<_, _>>()?;
        tx.execute(
            Query::new("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id.as_str()),
        )
        .await?;
        let digests: Vec<KeyDigest> = revoked.iter().map(|k| k.digest).collect();
        self.record_changes(&mut tx, &digests, KeyChangeKind::Revoked)
            .await?;
        let now = tollgate::time::now();
        insert_audit(
            &mut tx,
            &AuditEvent::new(
                tenant,
                AuditAction::UserDeleted,
                actor,
                id,
                actor.environment(),
                now,
            ),
        )
        .await?;
        for key in &revoked {
            let mut event = AuditEvent::new(
                tenant,
                AuditAction::ApiKeyRevoked,
                actor,
                &key.id,
                key.environment,
                now,
            );
            event.roles_before = Some(key.roles.clone());
            insert_audit(&mut tx, &event).await?;
        }
        tx.commit().await?;
        self.committed();
        Ok(DeleteUserOutcome::Deleted {
            revoked_api_keys: revoked.len() as u64,
        })
    }

    async fn insert_api_key(&self, key: &ApiKey, actor: &Actor) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        tx.execute(insert_api_key(key)).await?;
        self.record_changes(&mut tx, &[key.digest], KeyChangeKind::Issued)
            .await?;
        insert_audit(&mut tx, &key_created(key, actor)).await?;
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

    async fn delete_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let deleted: Option<ApiKeyRow> = tx
            .fetch_optional(
                Query::new(format!(
                    "DELETE FROM api_keys WHERE tenant_id = $1 AND id = $2 \
                     RETURNING {API_KEY_COLUMNS}"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str()),
            )
            .await?;
        let Some(deleted) = deleted.map(ApiKey::try_from).transpose()? else {
            return Ok(false);
        };
        self.record_changes(&mut tx, &[deleted.digest], KeyChangeKind::Revoked)
            .await?;
        let mut event = AuditEvent::new(
            tenant,
            AuditAction::ApiKeyDeleted,
            actor,
            id,
            deleted.environment,
            tollgate::time::now(),
        );
        event.roles_before = Some(deleted.roles);
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        self.committed();
        Ok(true)
    }

    async fn rotate_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
        replacement: &ApiKey,
        expires_at: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<RotateOutcome, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_tenant(&mut tx, self.db.backend(), tenant).await?;
        let old: Option<ApiKeyRow> = tx
            .fetch_optional(
                Query::new(format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str()),
            )
            .await?;
        let Some(old) = old.map(ApiKey::try_from).transpose()? else {
            return Ok(RotateOutcome::NotFound);
        };
        if let Some(by) = old.replaced_by {
            return Ok(RotateOutcome::AlreadyRotated(by));
        }
        tx.execute(insert_api_key(replacement)).await?;
        // Never later than it was: a rotation only brings an expiry forward.
        let expires_at = old.expires_at.map_or(expires_at, |at| at.min(expires_at));
        let rotated: ApiKeyRow = tx
            .fetch_one(
                Query::new(format!(
                    "UPDATE api_keys SET expires_at = $3, replaced_by = $4 \
                     WHERE tenant_id = $1 AND id = $2 RETURNING {API_KEY_COLUMNS}"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .bind(to_micros(expires_at))
                .bind(replacement.id.as_str()),
            )
            .await?;
        self.record_changes(&mut tx, &[replacement.digest], KeyChangeKind::Issued)
            .await?;
        self.record_changes(&mut tx, &[old.digest], KeyChangeKind::Changed)
            .await?;
        let mut event = AuditEvent::new(
            tenant,
            AuditAction::ApiKeyRotated,
            actor,
            id,
            old.environment,
            replacement.created_at,
        );
        event.roles_before = Some(old.roles.clone());
        event.roles_after = Some(replacement.roles.clone());
        event.replacement_id = Some(replacement.id.clone());
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        self.committed();
        Ok(RotateOutcome::Rotated(Box::new(rotated.try_into()?)))
    }

    async fn list_audit_events(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, AuditEvent)>, StoreError> {
        let mut q = Query::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE tenant_id = "
        ));
        q.push_bind(tenant.as_str());
        if let Some(before) = before {
            q.push(" AND seq < ").push_bind(before);
        }
        if let Some(actor) = &filter.actor_id {
            q.push(" AND (actor_key_id = ").push_bind(actor.as_str());
            q.push(" OR actor_user_id = ").push_bind(actor.as_str());
            q.push(")");
        }
        if let Some(target) = &filter.target_id {
            q.push(" AND target_id = ").push_bind(target.as_str());
        }
        if let Some(action) = filter.action {
            q.push(" AND action = ").push_bind(action.as_str());
        }
        if let Some(start) = filter.start {
            q.push(" AND at >= ").push_bind(to_micros(start));
        }
        if let Some(end) = filter.end {
            q.push(" AND at < ").push_bind(to_micros(end));
        }
        if let Some(environment) = filter.environment {
            q.push(" AND environment = ")
                .push_bind(environment.as_str());
        }
        q.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(limit));
        self.db
            .fetch_all::<AuditRow>(q)
            .await?
            .into_iter()
            .map(|row| Ok((row.seq, row.try_into()?)))
            .collect()
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
                        "changed" => KeyChangeKind::Changed,
                        other => return Err(corrupt("change", other)),
                    },
                })
            })
            .collect()
    }

    async fn key_log_span(&self) -> Result<KeyLogSpan, StoreError> {
        let (oldest, latest): (Option<i64>, Option<i64>) = self
            .db
            .fetch_one(Query::new("SELECT MIN(seq), MAX(seq) FROM key_changes"))
            .await?;
        Ok(KeyLogSpan {
            oldest: oldest.unwrap_or(0),
            latest: latest.unwrap_or(0),
        })
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
            // The latest change stays, whatever its age: it is the log's position, which a
            // follower resuming after it compares with (see `KeyLogSpan`).
            .execute(
                Query::new(
                    "DELETE FROM key_changes WHERE at < $1 \
                     AND seq < (SELECT MAX(seq) FROM key_changes)",
                )
                .bind(to_micros(before)),
            )
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

/// An `audit_events` row.
#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    seq: i64,
    id: String,
    tenant_id: String,
    at: i64,
    action: String,
    actor_key_id: String,
    actor_user_id: String,
    actor_command: String,
    actor_address: String,
    target_id: String,
    environment: String,
    roles_before: String,
    roles_after: String,
    replacement_id: String,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, Self::Error> {
        let environment = Environment::parse(&row.environment)
            .ok_or_else(|| corrupt("environment", &row.environment))?;
        let actor = if row.actor_key_id.is_empty() {
            // Commands are few and named in code; one this build does not know reads as such.
            Actor::Command(
                LOCAL_COMMANDS
                    .iter()
                    .find(|c| **c == row.actor_command)
                    .copied()
                    .unwrap_or("unknown command"),
            )
        } else {
            Actor::Key {
                key_id: parse_stored(&row.actor_key_id, ApiKeyId::parse)?,
                user_id: parse_stored(&row.actor_user_id, UserId::parse)?,
                environment,
                address: (!row.actor_address.is_empty()).then_some(row.actor_address),
            }
        };
        let roles = |s: &str| {
            (!s.is_empty())
                .then(|| RoleSet::from_storage(s).ok_or_else(|| corrupt("roles", s)))
                .transpose()
        };
        Ok(AuditEvent {
            id: parse_stored(&row.id, AuditId::parse)?,
            tenant_id: parse_stored(&row.tenant_id, TenantId::parse)?,
            at: from_micros(row.at),
            action: AuditAction::parse(&row.action)
                .ok_or_else(|| corrupt("action", &row.action))?,
            actor,
            target_id: row.target_id,
            environment,
            roles_before: roles(&row.roles_before)?,
            roles_after: roles(&row.roles_after)?,
            replacement_id: (!row.replacement_id.is_empty())
                .then(|| parse_stored(&row.replacement_id, ApiKeyId::parse))
                .transpose()?,
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
    replaced_by: Option<String>,
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
            replaced_by: row
                .replaced_by
                .as_deref()
                .map(|id| parse_stored(id, ApiKeyId::parse))
                .transpose()?,
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
