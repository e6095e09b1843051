//! identity-service's own metrics, beside the request and pool metrics every service has.
//!
//! `Authorize` counts twice per call, so its counters are looked up by label once, here: a
//! lookup by label values hashes the labels and takes a lock on every call.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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

/// The index of issued keys and the change log it follows.
#[derive(Debug, Clone)]
pub struct KeyIndexMetrics {
    /// Digest prefixes held.
    pub entries: IntGauge,
    /// 1 while the change log is followed (the index answers "not issued"), 0 otherwise.
    pub current: IntGauge,
    /// Reads of the change log.
    pub catch_ups: IntCounter,
    /// Digests answered as never issued, without a lookup of their own.
    pub not_issued: IntCounter,
}

/// Counters of the authorization path.
#[derive(Debug, Clone)]
pub struct IdentityMetrics {
    /// Authorize decisions by reason.
    pub decisions: Decisions,
    /// Key record lookups by cache result.
    pub key_cache: CacheLookups,
    /// The index of issued keys.
    pub key_index: KeyIndexMetrics,
    families: [IntCounterVec; 2],
}

impl IdentityMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self::unregistered()?;
        for family in &metrics.families {
            registry.register(Box::new(family.clone()))?;
        }
        let index = &metrics.key_index;
        registry.register(Box::new(index.entries.clone()))?;
        registry.register(Box::new(index.current.clone()))?;
        registry.register(Box::new(index.catch_ups.clone()))?;
        registry.register(Box::new(index.not_issued.clone()))?;
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
            key_index: KeyIndexMetrics {
                entries: IntGauge::new(
                    "key_index_entries",
                    "digest prefixes in the index of issued keys",
                )?,
                current: IntGauge::new(
                    "key_index_current",
                    "1 while the key change log is followed, 0 while it is not",
                )?,
                catch_ups: IntCounter::new(
                    "key_change_log_reads_total",
                    "reads of the key change log",
                )?,
                not_issued: IntCounter::new(
                    "key_lookups_not_issued_total",
                    "digests answered as never issued without a lookup of their own",
                )?,
            },
            families: [decisions, key_cache],
        })
    }
}
