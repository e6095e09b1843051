//! identity-service's own metrics, beside the request and pool metrics every service has.
//!
//! `Authorize` counts twice per call, so its counters are looked up by label once, here: a
//! lookup by label values hashes the labels and takes a lock on every call.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Authorize decisions, one counter per reason.
#[derive(Debug, Clone)]
pub struct Decisions {
    /// The key holds the permission.
    pub allowed: IntCounter,
    /// No key has the digest.
    pub key_not_found: IntCounter,
    /// The key has expired.
    pub key_expired: IntCounter,
    /// The key lacks the permission.
    pub permission_missing: IntCounter,
}

/// Key record lookups, by whether the cache held the record.
#[derive(Debug, Clone)]
pub struct CacheLookups {
    /// Answered from the cache.
    pub hit: IntCounter,
    /// Read from the store.
    pub miss: IntCounter,
}

/// Counters of the authorization path.
#[derive(Debug, Clone)]
pub struct IdentityMetrics {
    /// Authorize decisions by reason.
    pub decisions: Decisions,
    /// Key record lookups by cache result.
    pub key_cache: CacheLookups,
    families: [IntCounterVec; 2],
}

impl IdentityMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self::unregistered()?;
        for family in &metrics.families {
            registry.register(Box::new(family.clone()))?;
        }
        Ok(metrics)
    }

    /// The metrics, counted but not exported (one-shot commands, tests).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let decisions = IntCounterVec::new(
            Opts::new("authorize_decisions_total", "Authorize decisions by reason"),
            &["reason"],
        )?;
        let key_cache = IntCounterVec::new(
            Opts::new(
                "key_cache_lookups_total",
                "API key record lookups by result",
            ),
            &["result"],
        )?;
        let reason = |r: &str| decisions.with_label_values(&[r]);
        let result = |r: &str| key_cache.with_label_values(&[r]);
        Ok(Self {
            decisions: Decisions {
                allowed: reason("allowed"),
                key_not_found: reason("key_not_found"),
                key_expired: reason("key_expired"),
                permission_missing: reason("permission_missing"),
            },
            key_cache: CacheLookups {
                hit: result("hit"),
                miss: result("miss"),
            },
            families: [decisions, key_cache],
        })
    }
}
