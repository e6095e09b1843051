//! A short-lived cache of API key records by digest, wrapped around the store, so that
//! `Authorize` (called on every cache miss of every event-service replica) answers from memory
//! rather than from the database.
//!
//! Revocation stays prompt: every delete that goes through this wrapper empties the cache before
//! it returns, and other replicas (sharing PostgreSQL) drop their copy within the TTL, which is
//! therefore part of the published revocation bound. Unknown digests are not cached, so a key
//! created on another replica works at once. Expiry is decided against the clock on every call,
//! never cached.
//!
//! A lookup that read a record before a delete committed must not put it into the cache after
//! the delete emptied it: each delete bumps a generation counter, and a lookup whose read spans a
//! bump drops what it cached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use moka::future::Cache;
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::{Environment, KeyDigest};
use tollgate::server::DatabaseHealth;

use super::{DeleteUserOutcome, IdentityStore, KeyRecord, StoreError};
use crate::metrics::CacheLookups;
use crate::model::api_keys::ApiKey;
use crate::model::roles::RoleSet;
use crate::model::tenants::Tenant;
use crate::model::users::{User, UserType};

/// Records held at most; about 400 bytes each.
const CAPACITY: u64 = 100_000;

/// A store whose digest lookups are cached for a TTL.
#[derive(Debug)]
pub struct CachedKeys<S> {
    inner: S,
    cache: Cache<KeyDigest, Arc<KeyRecord>>,
    /// Bumped by every delete, after it committed and before the cache is emptied.
    generation: AtomicU64,
    lookups: CacheLookups,
}

impl<S: IdentityStore> CachedKeys<S> {
    /// Caches `inner`'s key records for `ttl` (zero: no caching, every lookup reads).
    pub fn new(inner: S, ttl: Duration, lookups: CacheLookups) -> Self {
        Self {
            inner,
            cache: Cache::builder()
                .max_capacity(if ttl.is_zero() { 0 } else { CAPACITY })
                .time_to_live(ttl.max(Duration::from_nanos(1)))
                .build(),
            generation: AtomicU64::new(0),
            lookups,
        }
    }

    /// Forgets every cached record: a delete on this replica has committed.
    fn revoked(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }

    async fn lookup(&self, digest: &KeyDigest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if let Some(hit) = self.cache.get(digest).await {
            self.lookups.hit.inc();
            return Ok(Some(hit));
        }
        self.lookups.miss.inc();
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(record) = self.inner.find_api_key_by_digest(digest).await? else {
            return Ok(None);
        };
        self.cache.insert(*digest, record.clone()).await;
        // A delete that committed after the read above bumped the generation: the record may be
        // a revoked key's, so it must not outlive this call. A delete that bumps it only after
        // this check empties the cache after the insert above, which removes the record too.
        if self.generation.load(Ordering::SeqCst) != generation {
            self.cache.invalidate(digest).await;
        }
        Ok(Some(record))
    }
}

#[async_trait]
impl<S: IdentityStore> DatabaseHealth for CachedKeys<S> {
    async fn reachable(&self) -> bool {
        self.inner.reachable().await
    }

    fn pool_stats(&self) -> (u32, usize) {
        self.inner.pool_stats()
    }
}

#[async_trait]
impl<S: IdentityStore> IdentityStore for CachedKeys<S> {
    async fn create_tenant(
        &self,
        tenant: &Tenant,
        user: &User,
        key: &ApiKey,
    ) -> Result<(), StoreError> {
        self.inner.create_tenant(tenant, user, key).await
    }

    async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.inner.find_tenant_by_name(name).await
    }

    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        self.inner.insert_user(user).await
    }

    async fn get_user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>, StoreError> {
        self.inner.get_user(tenant, id).await
    }

    async fn list_users(
        &self,
        tenant: &TenantId,
        filter: Option<UserType>,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<Vec<User>, StoreError> {
        self.inner.list_users(tenant, filter, after, limit).await
    }

    async fn update_user_roles(
        &self,
        tenant: &TenantId,
        id: &UserId,
        roles: &RoleSet,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, StoreError> {
        // Keys keep the roles they copied: no cached record changes.
        self.inner.update_user_roles(tenant, id, roles, now).await
    }

    async fn delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
    ) -> Result<DeleteUserOutcome, StoreError> {
        let outcome = self.inner.delete_user(tenant, id).await?;
        if matches!(outcome, DeleteUserOutcome::Deleted { .. }) {
            self.revoked();
        }
        Ok(outcome)
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.inner.insert_api_key(key).await
    }

    async fn get_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError> {
        self.inner.get_api_key(tenant, id).await
    }

    async fn list_api_keys(
        &self,
        tenant: &TenantId,
        owner: Option<&UserId>,
        environment: Option<Environment>,
        after: Option<&ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        self.inner
            .list_api_keys(tenant, owner, environment, after, limit)
            .await
    }

    async fn delete_api_key(&self, tenant: &TenantId, id: &ApiKeyId) -> Result<bool, StoreError> {
        let deleted = self.inner.delete_api_key(tenant, id).await?;
        if deleted {
            self.revoked();
        }
        Ok(deleted)
    }

    async fn find_api_key_by_digest(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.lookup(digest).await
    }

    async fn touch_api_key(
        &self,
        id: &ApiKeyId,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.touch_api_key(id, now, stale_before).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use tokio::sync::Notify;
    use tollgate::keys::Environment;

    use super::*;
    use crate::model::api_keys::KeyName;
    use crate::model::users::{AccountKind, DisplayName};
    use crate::store::sql::SqlStore;

    /// A real store whose digest lookups, once paused, wait to be let go after their read: a
    /// lookup that read a key just before it was deleted.
    #[derive(Debug)]
    struct Paused {
        inner: SqlStore,
        paused: std::sync::atomic::AtomicBool,
        read: Notify,
        go: Notify,
    }

    #[async_trait]
    impl DatabaseHealth for Paused {
        async fn reachable(&self) -> bool {
            self.inner.reachable().await
        }
        fn pool_stats(&self) -> (u32, usize) {
            self.inner.pool_stats()
        }
    }

    #[async_trait]
    impl IdentityStore for Paused {
        async fn create_tenant(&self, t: &Tenant, u: &User, k: &ApiKey) -> Result<(), StoreError> {
            self.inner.create_tenant(t, u, k).await
        }
        async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
            self.inner.find_tenant_by_name(name).await
        }
        async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
            self.inner.insert_user(user).await
        }
        async fn get_user(&self, t: &TenantId, id: &UserId) -> Result<Option<User>, StoreError> {
            self.inner.get_user(t, id).await
        }
        async fn list_users(
            &self,
            t: &TenantId,
            f: Option<UserType>,
            after: Option<&UserId>,
            limit: u32,
        ) -> Result<Vec<User>, StoreError> {
            self.inner.list_users(t, f, after, limit).await
        }
        async fn update_user_roles(
            &self,
            t: &TenantId,
            id: &UserId,
            roles: &RoleSet,
            now: DateTime<Utc>,
        ) -> Result<Option<User>, StoreError> {
            self.inner.update_user_roles(t, id, roles, now).await
        }
        async fn delete_user(
            &self,
            t: &TenantId,
            id: &UserId,
        ) -> Result<DeleteUserOutcome, StoreError> {
            self.inner.delete_user(t, id).await
        }
        async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
            self.inner.insert_api_key(key).await
        }
        async fn get_api_key(
            &self,
            t: &TenantId,
            id: &ApiKeyId,
        ) -> Result<Option<ApiKey>, StoreError> {
            self.inner.get_api_key(t, id).await
        }
        async fn list_api_keys(
            &self,
            t: &TenantId,
            owner: Option<&UserId>,
            environment: Option<Environment>,
            after: Option<&ApiKeyId>,
            limit: u32,
        ) -> Result<Vec<ApiKey>, StoreError> {
            self.inner
                .list_api_keys(t, owner, environment, after, limit)
                .await
        }
        async fn delete_api_key(&self, t: &TenantId, id: &ApiKeyId) -> Result<bool, StoreError> {
            self.inner.delete_api_key(t, id).await
        }
        async fn find_api_key_by_digest(
            &self,
            digest: &KeyDigest,
        ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
            let found = self.inner.find_api_key_by_digest(digest).await;
            if self.paused.load(Ordering::SeqCst) {
                self.read.notify_one();
                self.go.notified().await;
            }
            found
        }
        async fn touch_api_key(
            &self,
            id: &ApiKeyId,
            now: DateTime<Utc>,
            stale_before: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            self.inner.touch_api_key(id, now, stale_before).await
        }
    }

    #[tokio::test]
    async fn a_record_read_before_a_delete_is_not_cached_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = tollgate::testing::sqlite_in(dir.path());
        let now = tollgate::time::now();
        let tenant = Tenant {
            id: TenantId::generate(),
            name: "t".into(),
            created_at: now,
        };
        let user = User::new(
            tenant.id.clone(),
            AccountKind::Person,
            DisplayName::default(),
            now,
        );
        let (key, _) = ApiKey::issue(
            &user,
            Environment::Production,
            KeyName::parse("k").unwrap(),
            None,
            now,
        )
        .unwrap();
        let paused = Paused {
            inner: SqlStore::connect(&url).await.unwrap(),
            paused: true.into(),
            read: Notify::new(),
            go: Notify::new(),
        };
        paused.create_tenant(&tenant, &user, &key).await.unwrap();
        let lookups = crate::metrics::IdentityMetrics::unregistered()
            .unwrap()
            .key_cache;
        let cache = Arc::new(CachedKeys::new(paused, Duration::from_secs(60), lookups));

        // A lookup reads the key, and is held before it caches what it read...
        let lookup = {
            let (cache, digest) = (cache.clone(), key.digest);
            tokio::spawn(async move { cache.find_api_key_by_digest(&digest).await })
        };
        cache.inner.read.notified().await;
        // ...while the key is deleted (which empties the cache)...
        assert!(cache.delete_api_key(&tenant.id, &key.id).await.unwrap());
        // ...and then goes on: it answers with what it read, but must not cache it.
        cache.inner.paused.store(false, Ordering::SeqCst);
        cache.inner.go.notify_one();
        assert!(lookup.await.unwrap().unwrap().is_some());
        assert_eq!(
            cache.find_api_key_by_digest(&key.digest).await.unwrap(),
            None,
            "a deleted key was served from the cache"
        );
    }
}
