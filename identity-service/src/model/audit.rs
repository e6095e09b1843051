//! The audit log's records: who changed what, when, from where, and the roles before and after.
//! Records are written by the store in the same transaction as the change they describe.

use chrono::{DateTime, Utc};
use tollgate::ids::{ApiKeyId, AuditId, TenantId, UserId};
use tollgate::keys::Environment;

use crate::model::roles::RoleSet;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// A tenant was created with its first account and key.
    TenantCreated,
    /// An account was created.
    UserCreated,
    /// A service account's roles were replaced.
    UserRolesUpdated,
    /// An account was deleted.
    UserDeleted,
    /// A key was created.
    ApiKeyCreated,
    /// A key was replaced by a rotation.
    ApiKeyRotated,
    /// A key was deleted.
    ApiKeyDeleted,
    /// A key was revoked with its account.
    ApiKeyRevoked,
}

impl AuditAction {
    /// Every action, in a stable order.
    pub const ALL: [AuditAction; 8] = [
        AuditAction::TenantCreated,
        AuditAction::UserCreated,
        AuditAction::UserRolesUpdated,
        AuditAction::UserDeleted,
        AuditAction::ApiKeyCreated,
        AuditAction::ApiKeyRotated,
        AuditAction::ApiKeyDeleted,
        AuditAction::ApiKeyRevoked,
    ];

    /// The storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::TenantCreated => "tenant.created",
            AuditAction::UserCreated => "user.created",
            AuditAction::UserRolesUpdated => "user.roles_updated",
            AuditAction::UserDeleted => "user.deleted",
            AuditAction::ApiKeyCreated => "api_key.created",
            AuditAction::ApiKeyRotated => "api_key.rotated",
            AuditAction::ApiKeyDeleted => "api_key.deleted",
            AuditAction::ApiKeyRevoked => "api_key.revoked",
        }
    }

    /// Reads a storage name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The commands that change things on the database directly, as the audit log names them.
pub const LOCAL_COMMANDS: &[&str] = &[
    "identity-service tenant create",
    "tollgate up",
    "tollgate dev-key",
    "tollgate-bench",
    "test",
];

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A caller with an API key.
    Key {
        /// The key.
        key_id: ApiKeyId,
        /// Its account.
        user_id: UserId,
        /// The key's environment (the records of a user change carry it).
        environment: Environment,
        /// The caller's address as the server saw it.
        address: Option<String>,
    },
    /// A command run on the database directly (`identity-service tenant create`).
    Command(&'static str),
}

impl Actor {
    /// The environment a record about a change not tied to one key carries.
    pub fn environment(&self) -> Environment {
        match self {
            Actor::Key { environment, .. } => *environment,
            Actor::Command(_) => Environment::Production,
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// `aud_…`, time-ordered.
    pub id: AuditId,
    /// The tenant whose things changed.
    pub tenant_id: TenantId,
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub action: AuditAction,
    /// Who.
    pub actor: Actor,
    /// What was changed: a user, a key or the tenant.
    pub target_id: String,
    /// The environment of the key changed, or of the actor's key.
    pub environment: Environment,
    /// Roles before a change of roles, or of a revoked or deleted key.
    pub roles_before: Option<RoleSet>,
    /// Roles after a change, or copied by a new key.
    pub roles_after: Option<RoleSet>,
    /// For a rotation, the new key.
    pub replacement_id: Option<ApiKeyId>,
}

impl AuditEvent {
    /// A record of `action` on `target_id` by `actor`, now; roles and replacement to be filled
    /// in where they apply.
    pub fn new(
        tenant_id: &TenantId,
        action: AuditAction,
        actor: &Actor,
        target_id: impl std::fmt::Display,
        environment: Environment,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: AuditId::generate(),
            tenant_id: tenant_id.clone(),
            at,
            action,
            actor: actor.clone(),
            target_id: target_id.to_string(),
            environment,
            roles_before: None,
            roles_after: None,
            replacement_id: None,
        }
    }
}

/// Which records to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Made by this key or account.
    pub actor_id: Option<String>,
    /// About this account, key or tenant.
    pub target_id: Option<String>,
    /// This action.
    pub action: Option<AuditAction>,
    /// At or after.
    pub start: Option<DateTime<Utc>>,
    /// Before.
    pub end: Option<DateTime<Utc>>,
    /// Only this environment's records (a sandbox key's view).
    pub environment: Option<Environment>,
}
