//! Per-request authorization: every EventService RPC needs one permission, which identity-service
//! grants or refuses; decisions are cached for a short, bounded time.
//!
//! - [`client`]: the one long-lived connection to identity-service's `Authorize`.
//! - [`cache`]: decisions by (key digest, permission), with TTLs and single flight.
//! - [`layer`]: the tower layer that checks each request and hands handlers a [`Principal`].
//! - [`revocations`]: identity-service's revocation stream, which evicts a revoked key's
//!   decisions at once.

pub mod cache;
pub mod client;
pub mod layer;
pub mod revocations;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::Environment;
use tollgate::permissions::Permission;

use crate::model::Scope;

/// Who an authorized request comes from. Handlers find it in the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's tenant.
    pub tenant_id: TenantId,
    /// The key's environment.
    pub environment: Environment,
    /// The key's owner.
    pub user_id: UserId,
    /// The key.
    pub key_id: ApiKeyId,
    /// When the key expires.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Principal {
    /// Where this principal's events live.
    pub fn scope(&self) -> Scope {
        Scope {
            tenant_id: self.tenant_id.clone(),
            environment: self.environment,
        }
    }
}

/// identity-service's answer about one key and permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, for this principal.
    Allowed(Arc<Principal>),
    /// No such key (never existed, deleted, or its owner deleted).
    UnknownKey,
    /// The key has expired.
    ExpiredKey,
    /// The key is valid but lacks the permission.
    Missing(Permission),
}
