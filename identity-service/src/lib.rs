//! identity-service: tenants, users and service accounts, the role table, API keys, and the
//! `Authorize` decisions other services ask for.
//!
//! The gRPC adapter ([`grpc`]) converts wire types into the domain types of [`users`],
//! [`api_keys`] and [`authorize`] and back; the logic lives in [`Identity`], which talks to an
//! [`store::IdentityStore`] (SQLite or PostgreSQL) and can be used without a server.
#![forbid(unsafe_code)]

pub mod api_keys;
pub mod authorize;
pub mod config;
pub mod error;
pub mod grpc;
pub mod key_cache;
pub mod metrics;
pub mod roles;
pub mod startup;
pub mod store;
pub mod tenants;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

pub use error::IdentityError;
use key_cache::KeyCache;
use metrics::IdentityMetrics;
use store::IdentityStore;

/// The identity domain: every operation the gRPC services expose, free of gRPC types.
#[derive(Debug, Clone)]
pub struct Identity {
    store: Arc<dyn IdentityStore>,
    keys: KeyCache,
    metrics: IdentityMetrics,
}

impl Identity {
    /// Wraps a store, without caching key records (for one-shot commands and tests that write
    /// to the store behind the service's back).
    pub fn new(store: Arc<dyn IdentityStore>) -> Self {
        Self::with_key_cache(store, Duration::ZERO)
    }

    /// Wraps a store, caching key records for `ttl` (see [`key_cache`]).
    pub fn with_key_cache(store: Arc<dyn IdentityStore>, ttl: Duration) -> Self {
        Self {
            store,
            keys: KeyCache::new(ttl),
            // Creating unregistered counters cannot fail: the names are constant and valid.
            metrics: IdentityMetrics::unregistered().expect("metric definitions are valid"),
        }
    }

    /// Counts into `metrics` (registered in the service's registry).
    pub fn with_metrics(mut self, metrics: IdentityMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The store, for health checks.
    pub fn store(&self) -> &Arc<dyn IdentityStore> {
        &self.store
    }
}
