//! What identity-service keeps in memory about keys, wrapped around the store, so that
//! `Authorize` (called on every cache miss of every event-service replica) answers from memory
//! rather than from the database:
//!
//! - a short-lived cache of key records by digest;
//! - the index of issued digests ([`IssuedKeys`]): a digest no key has is answered without a
//!   lookup of its own;
//! - a follower of the change log that keeps both current across replicas: a key deleted on
//!   another replica leaves this one's cache as soon as the change arrives (PostgreSQL's
//!   `NOTIFY`, or this process's own commit on SQLite), and the TTL only bounds how long a copy
//!   can outlive a change while the log cannot be followed.
//!
//! Revocation stays prompt on this replica too: every delete through this wrapper empties the
//! cache before it returns. A lookup that read a record before a delete committed must not put it
//! into the cache after the delete emptied it: each delete bumps a generation counter, and a
//! lookup whose read spans a bump drops what it cached. Expiry is decided against the clock on
//! every call, never cached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use moka::future::Cache;
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::{Environment, KeyDigest};
use tollgate::server::DatabaseHealth;

use super::key_index::IssuedKeys;
use super::{
    ChangeSignal, DeleteUserOutcome, IdentityStore, KeyChange, KeyChangeKind, KeyLogSpan,
    KeyRecord, RotateOutcome, StoreError,
};
use crate::metrics::{CacheLookups, KeyIndexMetrics};
use crate::model::api_keys::ApiKey;
use crate::model::audit::{Actor, AuditEvent, AuditFilter};
use crate::model::roles::RoleSet;
use crate::model::tenants::Tenant;
use crate::model::users::{User, UserType};

/// Records held at most; about 400 bytes each.
const CAPACITY: u64 = 100_000;
/// Changes read from the log in one go.
const CHANGES_PER_READ: u32 = 1000;
/// Shortest time between two reads of the log on behalf of unknown digests: however many
/// forged keys arrive, they share at most this many reads a second (20), and none of them is
/// looked up by itself. A key issued on another replica a moment ago is found by the next read.
const MIN_CATCH_UP_INTERVAL: Duration = Duration::from_millis(50);
/// Shortest time between two reads of the log on a commit's signal: short, because a
/// revocation travels to every event-service replica after this read; not zero, so that a
/// burst of commits shares reads.
const MIN_FOLLOW_INTERVAL: Duration = Duration::from_millis(2);
/// How often the follower reads the log even without a signal, in case one was lost.
const POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How long the follower waits before it tries again to follow a log it lost.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How long a revoked digest is remembered as such: a key deleted a moment ago, presented
/// again (by every event-service replica whose cached decision the revocation just evicted),
/// is refused at once rather than after a read of the log on behalf of unknown digests.
const REVOKED_MEMORY: Duration = Duration::from_secs(600);
/// Revoked digests remembered at most.
const REVOKED_CAPACITY: u64 = 100_000;
/// How long changes are kept in the log: far longer than any follower is behind.
const CHANGE_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often the log is pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// A store whose digest lookups are cached for a TTL and screened by the index of issued keys.
#[derive(Debug)]
pub struct CachedKeys<S> {
    inner: S,
    cache: Cache<KeyDigest, Arc<KeyRecord>>,
    /// Bumped by every delete, after it committed and before the cache is emptied.
    generation: AtomicU64,
    index: IssuedKeys,
    /// Digests revoked lately. A digest is never issued again once its key is gone (it is the
    /// hash of a random secret), so one found here needs no read of the log to be refused.
    revoked: Cache<KeyDigest, ()>,
    /// When the last read of the log began: reads are spaced (see [`MIN_CATCH_UP_INTERVAL`])
    /// and shared by whoever waits.
    catch_up: tokio::sync::Mutex<Option<Instant>>,
    /// Every change applied, for whoever follows revocations (event-service's stream).
    changes: tokio::sync::broadcast::Sender<KeyChange>,
    lookups: CacheLookups,
    metrics: KeyIndexMetrics,
}

impl<S: IdentityStore> CachedKeys<S> {
    /// Caches `inner`'s key records for `ttl` (zero: no caching, every lookup reads), with an
    /// empty index that lets every digest through until [`CachedKeys::start`] has loaded it.
    pub fn new(inner: S, ttl: Duration, lookups: CacheLookups, metrics: KeyIndexMetrics) -> Self {
        Self {
            inner,
            cache: Cache::builder()
                .max_capacity(if ttl.is_zero() { 0 } else { CAPACITY })
                .time_to_live(ttl.max(Duration::from_nanos(1)))
                .build(),
            generation: AtomicU64::new(0),
            index: IssuedKeys::default(),
            revoked: Cache::builder()
                .max_capacity(REVOKED_CAPACITY)
                .time_to_live(REVOKED_MEMORY)
                .build(),
            catch_up: tokio::sync::Mutex::new(None),
            changes: tokio::sync::broadcast::channel(4096).0,
            lookups,
            metrics,
        }
    }

    /// Loads the index of issued keys and starts following the change log; the follower ends
    /// with the last handle to the store.
    pub async fn start(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        // The log's position first: keys issued after it are applied from the log, again, which
        // only counts them twice (a stale "may exist", never a missed key).
        let seq = self.inner.key_log_span().await?.latest;
        let digests = self.inner.issued_digests().await?;
        self.index.load(&digests, seq);
        self.metrics.entries.set(self.index.len() as i64);
        let follower = Arc::downgrade(self);
        Ok(tokio::spawn(follow(follower)))
    }

    /// The channel on which every change is sent as it is applied, in the log's order.
    pub fn changes(&self) -> tokio::sync::broadcast::Sender<KeyChange> {
        self.changes.clone()
    }

    /// Forgets every cached record: a delete on this replica has committed.
    fn revoked(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }

    /// Reads the log from where the index stands and applies what it finds: the index learns
    /// of issued and revoked keys, the cache drops revoked ones, and subscribers hear of each.
    /// A read begun after `since` covers everyone who waited since then: such a caller returns
    /// without a read of its own. Reads are at least `spacing` apart.
    async fn catch_up(&self, since: Instant, spacing: Duration) -> Result<(), StoreError> {
        let mut last = self.catch_up.lock().await;
        if last.is_some_and(|started| started >= since) {
            return Ok(());
        }
        if let Some(wait) = last.map(|started| started + spacing) {
            tokio::time::sleep_until(wait.into()).await;
        }
        *last = Some(Instant::now());
        self.metrics.catch_ups.inc();
        loop {
            let changes = self
                .inner
                .key_changes_after(self.index.seq(), CHANGES_PER_READ)
                .await?;
            for change in &changes {
                self.index.apply(change);
                if change.kind != KeyChangeKind::Issued {
                    self.generation.fetch_add(1, Ordering::SeqCst);
                    self.cache.invalidate(&change.digest).await;
                }
                if change.kind == KeyChangeKind::Revoked {
                    self.revoked.insert(change.digest, ()).await;
                }
                // Nobody listening is fine.
                let _ = self.changes.send(*change);
            }
            if changes.len() < CHANGES_PER_READ as usize {
                break;
            }
        }
        self.metrics.entries.set(self.index.len() as i64);
        Ok(())
    }

    fn set_current(&self, current: bool) {
        if self.index.is_current() != current {
            if current {
                tracing::info!("following the key change log; the index of issued keys is current");
            } else {
                tracing::warn!(
                    "lost the key change log: every unknown digest is looked up, and other \
                     replicas' deletes reach this cache within its TTL, until it is followed again"
                );
            }
        }
        self.index.set_current(current);
        self.metrics.current.set(i64::from(current));
    }

    async fn lookup(&self, digest: &KeyDigest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if let Some(hit) = self.cache.get(digest).await {
            self.lookups.hit.inc();
            return Ok(Some(hit));
        }
        if !self.index.may_exist(digest) {
            if self.revoked.contains_key(digest) {
                self.metrics.not_issued.inc();
                return Ok(None);
            }
            // Perhaps issued on another replica a moment ago: the next read of the log, shared
            // with every other unknown digest, says so.
            self.catch_up(Instant::now(), MIN_CATCH_UP_INTERVAL).await?;
            if !self.index.may_exist(digest) {
                self.metrics.not_issued.inc();
                return Ok(None);
            }
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
        actor: &Actor,
    ) -> Result<(), StoreError> {
        self.inner.create_tenant(tenant, user, key, actor).await?;
        self.index.add(&key.digest);
        Ok(())
    }

    async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.inner.find_tenant_by_name(name).await
    }

    async fn insert_user(&self, user: &User, actor: &Actor) -> Result<(), StoreError> {
        self.inner.insert_user(user, actor).await
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
        actor: &Actor,
    ) -> Result<Option<User>, StoreError> {
        // Keys keep the roles they copied: no cached record changes.
        self.inner
            .update_user_roles(tenant, id, roles, now, actor)
            .await
    }

    async fn delete_user(
        &self,
        tenant: &TenantId,
        id: &UserId,
        actor: &Actor,
    ) -> Result<DeleteUserOutcome, StoreError> {
        let outcome = self.inner.delete_user(tenant, id, actor).await?;
        if matches!(outcome, DeleteUserOutcome::Deleted { .. }) {
            self.revoked();
        }
        Ok(outcome)
    }

    async fn insert_api_key(&self, key: &ApiKey, actor: &Actor) -> Result<(), StoreError> {
        self.inner.insert_api_key(key, actor).await?;
        // Known here at once; other replicas learn of it from the log.
        self.index.add(&key.digest);
        Ok(())
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

    async fn delete_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let deleted = self.inner.delete_api_key(tenant, id, actor).await?;
        if deleted {
            self.revoked();
        }
        Ok(deleted)
    }

    async fn rotate_api_key(
        &self,
        tenant: &TenantId,
        id: &ApiKeyId,
        replacement: &ApiKey,
        expires_at: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<RotateOutcome, StoreError> {
        let outcome = self
            .inner
            .rotate_api_key(tenant, id, replacement, expires_at, actor)
            .await?;
        if let RotateOutcome::Rotated(old) = &outcome {
            self.index.add(&replacement.digest);
            // The old key's cached record has its old expiry.
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.cache.invalidate(&old.digest).await;
        }
        Ok(outcome)
    }

    async fn list_audit_events(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, AuditEvent)>, StoreError> {
        self.inner
            .list_audit_events(tenant, filter, before, limit)
            .await
    }

    async fn find_api_key_by_digest(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.lookup(digest).await
    }

    async fn key_changes_after(&self, seq: i64, limit: u32) -> Result<Vec<KeyChange>, StoreError> {
        self.inner.key_changes_after(seq, limit).await
    }

    async fn key_log_span(&self) -> Result<KeyLogSpan, StoreError> {
        self.inner.key_log_span().await
    }

    async fn issued_digests(&self) -> Result<Vec<KeyDigest>, StoreError> {
        self.inner.issued_digests().await
    }

    async fn key_change_signal(&self) -> Result<Box<dyn ChangeSignal>, StoreError> {
        self.inner.key_change_signal().await
    }

    async fn prune_key_changes(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.prune_key_changes(before).await
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

/// Follows the change log for as long as the store lives: reads it whenever a commit may have
/// changed keys (and every few seconds besides), and when the signal is lost, marks the index
/// not current (every digest is then looked up) until it has read the log again.
async fn follow<S: IdentityStore>(keys: std::sync::Weak<CachedKeys<S>>) {
    let mut last_prune: Option<Instant> = None;
    loop {
        let Some(cached) = keys.upgrade() else { return };
        let followed = follow_once(&cached, &mut last_prune).await;
        cached.set_current(false);
        if let Err(e) = followed {
            tracing::warn!(error = %tollgate::telemetry::error_chain(&e), "cannot follow the key change log");
        }
        drop(cached);
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

/// Follows until the signal or a read fails.
async fn follow_once<S: IdentityStore>(
    cached: &Arc<CachedKeys<S>>,
    last_prune: &mut Option<Instant>,
) -> Result<(), StoreError> {
    let mut signal = cached.inner.key_change_signal().await?;
    // Whatever was announced while nobody listened is in the log.
    cached.catch_up(Instant::now(), MIN_FOLLOW_INTERVAL).await?;
    cached.set_current(true);
    loop {
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_INTERVAL) {
            let before = tollgate::time::now()
                - chrono::Duration::from_std(CHANGE_RETENTION).unwrap_or_default();
            cached.inner.prune_key_changes(before).await?;
            *last_prune = Some(Instant::now());
        }
        tokio::select! {
            changed = signal.changed() => changed?,
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        // Only the follower still holds the store: the service is gone.
        if Arc::strong_count(cached) == 1 {
            return Ok(());
        }
        cached.catch_up(Instant::now(), MIN_FOLLOW_INTERVAL).await?;
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
        async fn create_tenant(
            &self,
            t: &Tenant,
            u: &User,
            k: &ApiKey,
            a: &Actor,
        ) -> Result<(), StoreError> {
            self.inner.create_tenant(t, u, k, a).await
        }
        async fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
            self.inner.find_tenant_by_name(name).await
        }
        async fn insert_user(&self, user: &User, a: &Actor) -> Result<(), StoreError> {
            self.inner.insert_user(user, a).await
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
            a: &Actor,
        ) -> Result<Option<User>, StoreError> {
            self.inner.update_user_roles(t, id, roles, now, a).await
        }
        async fn delete_user(
            &self,
            t: &TenantId,
            id: &UserId,
            a: &Actor,
        ) -> Result<DeleteUserOutcome, StoreError> {
            self.inner.delete_user(t, id, a).await
        }
        async fn insert_api_key(&self, key: &ApiKey, a: &Actor) -> Result<(), StoreError> {
            self.inner.insert_api_key(key, a).await
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
        async fn delete_api_key(
            &self,
            t: &TenantId,
            id: &ApiKeyId,
            a: &Actor,
        ) -> Result<bool, StoreError> {
            self.inner.delete_api_key(t, id, a).await
        }
        async fn rotate_api_key(
            &self,
            t: &TenantId,
            id: &ApiKeyId,
            r: &ApiKey,
            e: DateTime<Utc>,
            a: &Actor,
        ) -> Result<RotateOutcome, StoreError> {
            self.inner.rotate_api_key(t, id, r, e, a).await
        }
        async fn list_audit_events(
            &self,
            t: &TenantId,
            f: &AuditFilter,
            b: Option<i64>,
            l: u32,
        ) -> Result<Vec<(i64, AuditEvent)>, StoreError> {
            self.inner.list_audit_events(t, f, b, l).await
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
        async fn key_changes_after(
            &self,
            seq: i64,
            limit: u32,
        ) -> Result<Vec<KeyChange>, StoreError> {
            self.inner.key_changes_after(seq, limit).await
        }
        async fn key_log_span(&self) -> Result<KeyLogSpan, StoreError> {
            self.inner.key_log_span().await
        }
        async fn issued_digests(&self) -> Result<Vec<KeyDigest>, StoreError> {
            self.inner.issued_digests().await
        }
        async fn key_change_signal(&self) -> Result<Box<dyn ChangeSignal>, StoreError> {
            self.inner.key_change_signal().await
        }
        async fn prune_key_changes(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
            self.inner.prune_key_changes(before).await
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
        paused
            .create_tenant(&tenant, &user, &key, &Actor::Command("test"))
            .await
            .unwrap();
        let metrics = crate::metrics::IdentityMetrics::unregistered().unwrap();
        let cache = Arc::new(CachedKeys::new(
            paused,
            Duration::from_secs(60),
            metrics.key_cache,
            metrics.key_index,
        ));

        // A lookup reads the key, and is held before it caches what it read...
        let lookup = {
            let (cache, digest) = (cache.clone(), key.digest);
            tokio::spawn(async move { cache.find_api_key_by_digest(&digest).await })
        };
        cache.inner.read.notified().await;
        // ...while the key is deleted (which empties the cache)...
        assert!(
            cache
                .delete_api_key(&tenant.id, &key.id, &Actor::Command("test"))
                .await
                .unwrap()
        );
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
