//! A short-lived cache of API key records by digest, so that `Authorize` (called on every cache
//! miss of every event-service replica) answers from memory rather than from the database.
//!
//! Revocation stays prompt: every delete on this replica empties the cache before it returns,
//! and other replicas (sharing PostgreSQL) drop their copy within the TTL, which is therefore
//! part of the published revocation bound. Unknown digests are not cached, so a key created on
//! another replica works at once. Expiry is decided against the clock on every call, never
//! cached.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::future::Cache;
use tollgate::keys::KeyDigest;

use crate::api_keys::ApiKey;
use crate::metrics::CacheLookups;
use crate::store::{IdentityStore, StoreError};

/// Records held at most; about 400 bytes each.
const CAPACITY: u64 = 100_000;

/// A cached key record and when its use was last written.
#[derive(Debug)]
pub struct CachedKey {
    /// The record as read from the store.
    pub key: ApiKey,
    /// `last_used_at` as this replica last wrote or read it, in microseconds.
    last_use: AtomicI64,
}

impl CachedKey {
    /// Claims the right to write `now` as the key's last use, when the last write is older
    /// than `stale_before`. Only one of several concurrent callers wins.
    pub fn claim_use(&self, now: DateTime<Utc>, stale_before: DateTime<Utc>) -> bool {
        let last = self.last_use.load(Ordering::Relaxed);
        last < tollgate::time::to_micros(stale_before)
            && self
                .last_use
                .compare_exchange(
                    last,
                    tollgate::time::to_micros(now),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// The cache.
#[derive(Debug, Clone)]
pub struct KeyCache {
    cache: Cache<KeyDigest, Arc<CachedKey>>,
}

impl KeyCache {
    /// Records live for `ttl` (zero disables the cache).
    pub fn new(ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(if ttl.is_zero() { 0 } else { CAPACITY })
                .time_to_live(ttl.max(Duration::from_nanos(1)))
                .build(),
        }
    }

    /// The record with `digest`, from the cache or the store.
    pub async fn get(
        &self,
        store: &dyn IdentityStore,
        digest: &KeyDigest,
        lookups: &CacheLookups,
    ) -> Result<Option<Arc<CachedKey>>, StoreError> {
        if let Some(hit) = self.cache.get(digest).await {
            lookups.hit.inc();
            return Ok(Some(hit));
        }
        lookups.miss.inc();
        let Some(key) = store.find_api_key_by_digest(digest).await? else {
            return Ok(None);
        };
        let cached = Arc::new(CachedKey {
            last_use: AtomicI64::new(
                key.last_used_at
                    .map(tollgate::time::to_micros)
                    .unwrap_or(i64::MIN),
            ),
            key,
        });
        self.cache.insert(*digest, cached.clone()).await;
        Ok(Some(cached))
    }

    /// Forgets everything: called after any key or account is deleted on this replica.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }
}
