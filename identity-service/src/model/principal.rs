//! Who a key belongs to and what it may do, and the decisions `Authorize` returns as data.

use chrono::{DateTime, Utc};
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::Environment;
use tollgate::permissions::Permission;

use crate::model::api_keys::ApiKey;
use crate::model::audit::Actor;
use crate::model::roles::RoleSet;
use crate::model::users::UserType;

/// Who a key belongs to and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The key's environment.
    pub environment: Environment,
    /// The owner.
    pub user_id: UserId,
    /// The owner's type.
    pub user_type: UserType,
    /// The key.
    pub key_id: ApiKeyId,
    /// The key's roles.
    pub roles: RoleSet,
    /// The key's permissions.
    pub permissions: Vec<Permission>,
    /// When the key stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// The caller's address as the server saw it, when the call came over the network.
    pub address: Option<String>,
}

/// A valid key without a permission it needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this API key lacks the permission {permission}{hint}")]
pub struct MissingPermission {
    /// The permission.
    pub permission: Permission,
    hint: &'static str,
}

impl Principal {
    /// The principal of a key.
    pub fn of(key: &ApiKey) -> Self {
        Self {
            tenant_id: key.tenant_id.clone(),
            environment: key.environment,
            user_id: key.user_id.clone(),
            user_type: key.user_type,
            key_id: key.id.clone(),
            roles: key.roles.clone(),
            permissions: key.permissions(),
            expires_at: key.expires_at,
            address: None,
        }
    }

    /// Who the audit log says made a change with this key.
    pub fn actor(&self) -> Actor {
        Actor::Key {
            key_id: self.key_id.clone(),
            user_id: self.user_id.clone(),
            environment: self.environment,
            address: self.address.clone(),
        }
    }

    /// Whether the key reaches `environment`: a production key reaches both (a tenant's
    /// production administrators manage its sandbox too), a sandbox key the sandbox only.
    pub fn reaches(&self, environment: Environment) -> bool {
        self.environment == Environment::Production || environment == self.environment
    }

    /// An error unless the key reaches `environment`.
    pub fn require_reach(&self, environment: Environment) -> Result<(), OutOfReach> {
        if self.reaches(environment) {
            Ok(())
        } else {
            Err(OutOfReach(environment))
        }
    }

    /// An error unless the key reaches every environment (a change to an account reaches all
    /// of its keys, production ones included).
    pub fn require_full_reach(&self) -> Result<(), OutOfReach> {
        self.require_reach(Environment::Production)
    }

    /// Whether the key holds `permission`.
    pub fn holds(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// An error naming the permission, unless the key holds it.
    pub fn require(&self, permission: Permission) -> Result<(), MissingPermission> {
        if self.holds(permission) {
            return Ok(());
        }
        let hint = match self.user_type {
            UserType::ServiceAccount => {
                "; service-account keys can only do what their roles grant, and cannot manage \
                 users or API keys: use a user account's key"
            }
            UserType::User => "",
        };
        Err(MissingPermission { permission, hint })
    }
}

/// A key managing what lies outside its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a sandbox key manages the sandbox only and cannot reach {0}: use a production key of the tenant"
)]
pub struct OutOfReach(pub Environment);

/// Why a request was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No key has the digest (never existed, deleted, or owner deleted).
    KeyNotFound,
    /// The key's `expires_at` has passed.
    KeyExpired,
    /// The key does not hold the permission.
    PermissionMissing,
}

/// The answer to "may this key do that?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `Ok` if allowed.
    pub outcome: Result<(), DenyReason>,
    /// The key's principal, whenever the key exists.
    pub principal: Option<Principal>,
    /// The key's expiry, so that callers never cache past it.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Decision {
    /// Decides for a key (or its absence) at `now`.
    pub fn decide(key: Option<&ApiKey>, permission: Permission, now: DateTime<Utc>) -> Self {
        let Some(key) = key else {
            return Self {
                outcome: Err(DenyReason::KeyNotFound),
                principal: None,
                expires_at: None,
            };
        };
        let principal = Principal::of(key);
        let outcome = if key.is_expired(now) {
            Err(DenyReason::KeyExpired)
        } else if !principal.holds(permission) {
            Err(DenyReason::PermissionMissing)
        } else {
            Ok(())
        };
        Self {
            outcome,
            principal: Some(principal),
            expires_at: key.expires_at,
        }
    }

    /// Whether the key may do it.
    pub fn allowed(&self) -> bool {
        self.outcome.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::api_keys::KeyName;
    use crate::model::users::{AccountKind, DisplayName, User};

    fn key_of(kind: AccountKind, expires_in: Option<i64>) -> ApiKey {
        let now = tollgate::time::now();
        let owner = User::new(TenantId::generate(), kind, DisplayName::default(), now);
        let expires_at = expires_in.map(|s| now + chrono::Duration::seconds(s));
        ApiKey::issue(
            &owner,
            Environment::Production,
            KeyName::parse("k").expect("name"),
            expires_at,
            now,
        )
        .expect("key")
        .0
    }

    #[test]
    fn decisions_follow_roles_and_expiry() {
        let now = tollgate::time::now();
        let ingestor = key_of(
            AccountKind::ServiceAccount(
                RoleSet::for_service_account(&["event_ingestor"]).expect("roles"),
            ),
            None,
        );
        assert!(Decision::decide(Some(&ingestor), Permission::EventWrite, now).allowed());
        assert_eq!(
            Decision::decide(Some(&ingestor), Permission::EventRead, now).outcome,
            Err(DenyReason::PermissionMissing)
        );
        assert_eq!(
            Decision::decide(Some(&ingestor), Permission::UsersManage, now).outcome,
            Err(DenyReason::PermissionMissing)
        );
        let person = key_of(AccountKind::Person, Some(60));
        for p in Permission::ALL {
            assert!(Decision::decide(Some(&person), p, now).allowed());
        }
        let later = now + chrono::Duration::seconds(61);
        let expired = Decision::decide(Some(&person), Permission::EventRead, later);
        assert_eq!(expired.outcome, Err(DenyReason::KeyExpired));
        assert!(expired.principal.is_some());
        assert_eq!(
            Decision::decide(None, Permission::EventRead, now).outcome,
            Err(DenyReason::KeyNotFound)
        );
    }
}
