//! identity-service's own metrics, beside the request and pool metrics every service has.

use prometheus::{IntCounterVec, Opts, Registry};

/// Counters of the authorization path.
#[derive(Debug, Clone)]
pub struct IdentityMetrics {
    /// Authorize decisions by reason.
    pub decisions: IntCounterVec,
    /// Key record lookups by cache result (hit, miss).
    pub key_cache: IntCounterVec,
}

impl IdentityMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self::unregistered()?;
        registry.register(Box::new(metrics.decisions.clone()))?;
        registry.register(Box::new(metrics.key_cache.clone()))?;
        Ok(metrics)
    }

    /// The metrics, counted but not exported (one-shot commands, tests).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        Ok(Self {
            decisions: IntCounterVec::new(
                Opts::new("authorize_decisions_total", "Authorize decisions by reason"),
                &["reason"],
            )?,
            key_cache: IntCounterVec::new(
                Opts::new(
                    "key_cache_lookups_total",
                    "API key record lookups by result",
                ),
                &["result"],
            )?,
        })
    }
}
