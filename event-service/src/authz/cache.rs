//! Cached decisions, keyed by (SHA-256 of the key, permission) — never by the key itself.
//!
//! - An allowed decision lives for the TTL (the published bound on how long a deleted key keeps
//!   working), and never past the key's own `expires_at`.
//! - A denial lives for the shorter denial TTL.
//! - The cache is bounded in entries (moka evicts by TinyLFU).
//! - Concurrent misses for the same entry make one `Authorize` call: moka's `try_get_with` runs
//!   one initialiser and hands its result to every waiter (single flight).
//! - A failed call is not cached: the request fails closed with UNAVAILABLE, and the next one
//!   tries again.
//! - A revocation pushed by identity-service (see [`super::revocations`]) evicts the key's
//!   decisions at once. A call that was answered before the revocation but returns after it
//!   must not put its decision back: every revocation bumps a generation counter, and a call
//!   whose flight spans a bump drops what it cached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use tollgate::keys::{ApiKeySecret, KeyDigest};
use tollgate::permissions::Permission;

use super::client::{IdentityClient, Unavailable};
use super::{Decision, Principal};
use crate::metrics::EventMetrics;

/// A decision and how long it may be trusted, fixed when it is cached.
#[derive(Debug, Clone)]
struct Entry {
    decision: Decision,
    ttl: Duration,
}

struct EntryTtl;

impl Expiry<(KeyDigest, Permission), Entry> for EntryTtl {
    fn expire_after_create(
        &self,
        _key: &(KeyDigest, Permission),
        entry: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No such key, or a deleted one.
    #[error("invalid API key: it does not exist or was revoked")]
    UnknownKey,
    /// An expired key.
    #[error("expired API key")]
    ExpiredKey,
    /// The key lacks the permission.
    #[error("this API key lacks the permission {0}; {hint}", hint = missing_hint(*.0))]
    Missing(Permission),
    /// No decision could be had.
    #[error("authorization is unavailable: identity-service cannot be reached")]
    Unavailable(#[source] Arc<Unavailable>),
}

/// What to do about a missing permission.
fn missing_hint(permission: Permission) -> &'static str {
    if permission.granted_by_roles() {
        "give the service account a role that grants it and create a new key"
    } else {
        "only a person's key has it"
    }
}

/// The decision cache in front of identity-service.
#[derive(Debug, Clone)]
pub struct AuthCache {
    cache: Cache<(KeyDigest, Permission), Entry>,
    client: IdentityClient,
    ttl: Duration,
    denial_ttl: Duration,
    metrics: EventMetrics,
    /// Bumped by every revocation, before its decisions are evicted.
    generation: Arc<AtomicU64>,
}

impl AuthCache {
    /// A cache of at most `capacity` decisions in front of `client`.
    pub fn new(
        client: IdentityClient,
        ttl: Duration,
        denial_ttl: Duration,
        capacity: u64,
        metrics: EventMetrics,
    ) -> Self {
        let evictions = metrics.auth_cache_evictions.clone();
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(EntryTtl)
                .eviction_listener(move |_key, _entry, cause| {
                    let cause = match cause {
                        RemovalCause::Expired => "expired",
                        RemovalCause::Size => "size",
                        RemovalCause::Explicit => "explicit",
                        RemovalCause::Replaced => "replaced",
                    };
                    evictions.with_label_values(&[cause]).inc();
                })
                .build(),
            client,
            ttl,
            denial_ttl: denial_ttl.min(ttl),
            metrics,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The client, for the revocation stream.
    pub fn client(&self) -> &IdentityClient {
        &self.client
    }

    /// Evicts every decision about the key with `digest`: it was deleted, or its expiry moved.
    pub async fn revoke(&self, digest: &KeyDigest) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for permission in Permission::ALL {
            self.cache.invalidate(&(*digest, permission)).await;
        }
    }

    /// Evicts every decision: revocations may have been missed.
    pub fn revoke_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }

    /// The principal of `secret` if it holds `permission`.
    pub async fn check(
        &self,
        secret: &ApiKeySecret,
        permission: Permission,
    ) -> Result<Arc<Principal>, Refusal> {
        let digest = secret.digest();
        let cached = self.cache.get(&(digest, permission)).await;
        let result = if cached.is_some() { "hit" } else { "miss" };
        self.metrics.auth_cache.with_label_values(&[result]).inc();
        let entry = match cached {
            Some(entry) => entry,
            None => self.fetch(digest, permission).await?,
        };
        match entry.decision {
            // The TTL already stops at the key's expiry; this guards the instant in between.
            Decision::Allowed(principal)
                if principal
                    .expires_at
                    .is_some_and(|at| at <= tollgate::time::now()) =>
            {
                Err(Refusal::ExpiredKey)
            }
            Decision::Allowed(principal) => Ok(principal),
            Decision::UnknownKey => Err(Refusal::UnknownKey),
            Decision::ExpiredKey => Err(Refusal::ExpiredKey),
            Decision::Missing(p) => Err(Refusal::Missing(p)),
        }
    }

    /// A miss: one `Authorize` call however many requests miss the same entry at once.
    async fn fetch(&self, digest: KeyDigest, permission: Permission) -> Result<Entry, Refusal> {
        let generation = self.generation.load(Ordering::SeqCst);
        let entry = self
            .cache
            .try_get_with((digest, permission), async {
                let decision = self.client.authorize(&digest, permission).await?;
                Ok::<_, Unavailable>(self.entry(decision))
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot authorize: failing closed");
                Refusal::Unavailable(e)
            })?;
        // A revocation arrived while the call was in flight: the answer may predate it, so it
        // serves this request (which raced the revocation) but is not kept for the next.
        if self.generation.load(Ordering::SeqCst) != generation {
            self.cache.invalidate(&(digest, permission)).await;
        }
        Ok(entry)
    }

    fn entry(&self, decision: Decision) -> Entry {
        let ttl = match &decision {
            Decision::Allowed(principal) => match principal.expires_at {
                Some(at) => (at - tollgate::time::now())
                    .to_std()
                    .unwrap_or_default()
                    .min(self.ttl),
                None => self.ttl,
            },
            _ => self.denial_ttl,
        };
        Entry { decision, ttl }
    }

    /// How many `Authorize` calls were made (cache misses that reached identity-service).
    pub fn identity_calls(&self) -> u64 {
        self.client.calls()
    }
}
