//! identity-service: tenants, users and service accounts, the role table, API keys, and the
//! `Authorize` decisions other services ask for.
//!
//! Imports run one way: the gRPC adapter ([`grpc`]), and the HTTP/JSON adapter ([`http`]) that
//! frames the same calls as JSON, convert wire types into the domain types of
//! [`model`] and calls the operations of [`Identity`] ([`users`], [`api_keys`], [`authorize`],
//! [`revocations`], [`audit`], [`tenants`]), which talk to an [`store::IdentityStore`] (SQLite or PostgreSQL, behind a
//! key-record cache) and can be used without a server.
#![forbid(unsafe_code)]

pub mod api_keys;
pub mod audit;
pub mod authorize;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod model;
pub mod revocations;
pub mod startup;
pub mod store;
pub mod tenants;
#[cfg(feature = "testing")]
pub mod testing;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

pub use error::IdentityError;
use metrics::IdentityMetrics;
use store::IdentityStore;
use store::key_cache::CachedKeys;
use store::sql::SqlStore;

/// The identity domain: every operation the gRPC services expose, free of gRPC types.
#[derive(Debug, Clone)]
pub struct Identity {
    store: Arc<dyn IdentityStore>,
    metrics: IdentityMetrics,
    /// Every change to keys as the follower of the change log applies it, for the revocation
    /// stream; only a serving domain follows the log.
    changes: Option<tokio::sync::broadcast::Sender<store::KeyChange>>,
}

impl Identity {
    /// Wraps a store as it is (for one-shot commands, and tests that write to the store behind
    /// the service's back), counting into unregistered metrics.
    pub fn new(store: Arc<dyn IdentityStore>) -> Self {
        Self {
            store,
            // Creating unregistered counters cannot fail: the names are constant and valid.
            metrics: IdentityMetrics::unregistered().expect("metric definitions are valid"),
            changes: None,
        }
    }

    /// The domain over the database `url` names, uncached, for one-shot commands (`tenant
    /// create`, `tollgate dev-key`) that work on the database directly.
    pub async fn open(url: &tollgate::database::DatabaseUrl) -> Result<Self, store::StoreError> {
        Ok(Self::new(Arc::new(SqlStore::connect(url).await?)))
    }

    /// The service's domain: `store` with its key records cached for `ttl` and screened by the
    /// index of issued keys (see [`store::key_cache`]), counting into `metrics`; and the task
    /// that keeps them current from the change log (it ends when the domain is dropped).
    pub async fn serving(
        store: SqlStore,
        ttl: Duration,
        metrics: IdentityMetrics,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), store::StoreError> {
        let cached = Arc::new(CachedKeys::new(
            store,
            ttl,
            metrics.key_cache.clone(),
            metrics.key_index.clone(),
        ));
        let follower = cached.start().await?;
        let identity = Self {
            changes: Some(cached.changes()),
            store: cached,
            metrics,
        };
        Ok((identity, follower))
    }

    /// The store, for health checks.
    pub fn store(&self) -> &Arc<dyn IdentityStore> {
        &self.store
    }
}
