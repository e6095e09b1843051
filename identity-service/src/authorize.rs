//! Authorization decisions: whether a key (known by its digest) holds a permission. `Authorize`
//! returns them as data; the management RPCs turn a denial into an error.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::{ApiKeySecret, Environment, KeyDigest};
use tollgate::permissions::Permission;

use crate::api_keys::ApiKey;
use crate::key_cache::CachedKey;
use crate::roles::RoleSet;
use crate::users::UserType;
use crate::{Identity, IdentityError};

/// `last_used_at` is written at most once per this period per key, so that a busy key costs
/// one small write a minute rather than one per request.
pub const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

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
}

impl Principal {
    fn of(key: &ApiKey) -> Self {
        Self {
            tenant_id: key.tenant_id.clone(),
            environment: key.environment,
            user_id: key.user_id.clone(),
            user_type: key.user_type,
            key_id: key.id.clone(),
            roles: key.roles.clone(),
            permissions: key.permissions(),
        }
    }

    /// Whether the key holds `permission`.
    pub fn holds(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// PERMISSION_DENIED, naming the permission, unless the key holds it.
    pub fn require(&self, permission: Permission) -> Result<(), IdentityError> {
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
        Err(IdentityError::PermissionDenied(format!(
            "this API key lacks the permission {permission}{hint}"
        )))
    }
}

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

impl Identity {
    /// Decides whether the key with `digest` holds `permission`, and records the use of a live
    /// key (coarsely).
    #[tracing::instrument(level = "debug", skip_all, fields(digest = ?digest, %permission))]
    pub async fn authorize(
        &self,
        digest: &KeyDigest,
        permission: Permission,
    ) -> Result<Decision, IdentityError> {
        let now = tollgate::time::now();
        let cached = self
            .keys
            .get(self.store.as_ref(), digest, &self.metrics.key_cache)
            .await?;
        let decision = Decision::decide(cached.as_ref().map(|c| &c.key), permission, now);
        if let Some(cached) = cached.as_ref().filter(|c| !c.key.is_expired(now)) {
            self.record_use(cached, now).await;
        }
        let counted = &self.metrics.decisions;
        let (reason, counter) = match decision.outcome {
            Ok(()) => ("allowed", &counted.allowed),
            Err(DenyReason::KeyNotFound) => ("key_not_found", &counted.key_not_found),
            Err(DenyReason::KeyExpired) => ("key_expired", &counted.key_expired),
            Err(DenyReason::PermissionMissing) => {
                ("permission_missing", &counted.permission_missing)
            }
        };
        counter.inc();
        tracing::debug!(reason, "decided");
        Ok(decision)
    }

    /// The principal of a management call's key, if the key is live; UNAUTHENTICATED, saying
    /// whether it is unknown or expired, otherwise. What the principal may do is checked by each
    /// operation.
    pub async fn authenticate(&self, secret: &ApiKeySecret) -> Result<Principal, IdentityError> {
        let now = tollgate::time::now();
        match self
            .keys
            .get(
                self.store.as_ref(),
                &secret.digest(),
                &self.metrics.key_cache,
            )
            .await?
        {
            None => Err(IdentityError::Unauthenticated(
                "invalid API key: it does not exist or was revoked".to_owned(),
            )),
            Some(cached) if cached.key.is_expired(now) => {
                Err(IdentityError::Unauthenticated("expired API key".to_owned()))
            }
            Some(cached) => {
                self.record_use(&cached, now).await;
                Ok(Principal::of(&cached.key))
            }
        }
    }

    /// Writes `last_used_at` when it is older than the resolution, at most once per key per
    /// resolution on this replica (the store's conditional update keeps replicas from writing
    /// it more often). A failure must not fail the request it belongs to: it is logged.
    async fn record_use(&self, cached: &CachedKey, now: DateTime<Utc>) {
        let resolution = chrono::Duration::from_std(LAST_USED_RESOLUTION).unwrap_or_default();
        let stale_before = now - resolution;
        if !cached.claim_use(now, stale_before) {
            return;
        }
        if let Err(e) = self
            .store
            .touch_api_key(&cached.key.id, now, stale_before)
            .await
        {
            tracing::warn!(key_id = %cached.key.id, error = %e, "cannot record API key use");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_keys::KeyName;
    use crate::users::{AccountKind, DisplayName, User};

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
