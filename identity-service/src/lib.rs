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
pub mod roles;
pub mod startup;
pub mod store;
pub mod tenants;
pub mod users;

use std::sync::Arc;

pub use error::IdentityError;
use store::IdentityStore;

/// The identity domain: every operation the gRPC services expose, free of gRPC types.
#[derive(Debug, Clone)]
pub struct Identity {
    store: Arc<dyn IdentityStore>,
}

impl Identity {
    /// Wraps a store.
    pub fn new(store: Arc<dyn IdentityStore>) -> Self {
        Self { store }
    }

    /// The store, for health checks.
    pub fn store(&self) -> &Arc<dyn IdentityStore> {
        &self.store
    }
}
