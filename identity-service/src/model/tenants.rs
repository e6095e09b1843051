//! Tenants: organisations, each with its own accounts, keys and events.

use chrono::{DateTime, Utc};
use tollgate::ids::TenantId;

/// An organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// `ten_…`.
    pub id: TenantId,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}
