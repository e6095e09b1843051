//! API keys: created with a secret shown once, stored as a SHA-256 digest, with roles copied from
//! the owner at creation and never changed afterwards.

use chrono::{DateTime, Utc};
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::{ApiKeySecret, Environment, KeyDigest};
use tollgate::permissions::Permission;

use crate::authorize::Principal;
use crate::roles::RoleSet;
use crate::users::{MAX_NAME_CHARS, Page, User, UserType};
use crate::{Identity, IdentityError};

/// A key's stored record. It holds the digest, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// `sec_…`.
    pub id: ApiKeyId,
    /// The owner's tenant.
    pub tenant_id: TenantId,
    /// The owner.
    pub user_id: UserId,
    /// The owner's type, fixed for the owner's life, kept here so that a decision needs one row.
    pub user_type: UserType,
    /// The environment the key is pinned to.
    pub environment: Environment,
    /// Descriptive name.
    pub name: KeyName,
    /// Roles copied from the owner at creation.
    pub roles: RoleSet,
    /// SHA-256 of the secret.
    pub digest: KeyDigest,
    /// Prefix and last four characters of the secret.
    pub display_hint: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used (coarse, see [`crate::authorize::LAST_USED_RESOLUTION`]).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// A new key for `owner`, copying the owner's roles, with its secret.
    pub fn issue(
        owner: &User,
        environment: Environment,
        name: KeyName,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(Self, ApiKeySecret), IdentityError> {
        let secret = ApiKeySecret::generate(environment).map_err(IdentityError::internal)?;
        let key = Self {
            id: ApiKeyId::generate(),
            tenant_id: owner.tenant_id.clone(),
            user_id: owner.id.clone(),
            user_type: owner.user_type,
            environment,
            name,
            roles: owner.roles.clone(),
            digest: secret.digest(),
            display_hint: secret.display_hint(),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        Ok((key, secret))
    }

    /// The permissions the key holds: all of them for a person's key, its roles' otherwise.
    pub fn permissions(&self) -> Vec<Permission> {
        match self.user_type {
            UserType::User => Permission::ALL.to_vec(),
            UserType::ServiceAccount => self.roles.permissions().into_iter().collect(),
        }
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A key's descriptive name: required, trimmed, at most 255 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyName(String);

impl KeyName {
    /// Validates a requested name.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(IdentityError::invalid(
                "name",
                "name is required: give the key a descriptive name, e.g. production-event-service",
            ));
        }
        if s.chars().count() > MAX_NAME_CHARS || s.chars().any(char::is_control) {
            return Err(IdentityError::invalid(
                "name",
                format!(
                    "name must be at most {MAX_NAME_CHARS} characters, without control characters"
                ),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name read back from storage, where it was validated on the way in.
    pub fn from_storage(s: String) -> Self {
        Self(s)
    }
}

/// What CreateApiKey asks for, validated apart from what needs the store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Descriptive name.
    pub name: KeyName,
    /// The service account to create it for; the caller if `None`.
    pub service_account_id: Option<UserId>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// The environment; the caller's if `None`.
    pub environment: Option<Environment>,
}

impl Identity {
    /// Creates a key for the caller or one of the tenant's service accounts. The returned
    /// secret is the only copy there will ever be.
    pub async fn create_api_key(
        &self,
        caller: &Principal,
        request: NewApiKey,
    ) -> Result<(ApiKey, ApiKeySecret), IdentityError> {
        caller.require(Permission::ApiKeysManage)?;
        let now = tollgate::time::now();
        if let Some(at) = request.expires_at {
            if at <= now {
                return Err(IdentityError::invalid(
                    "expires_at",
                    "expires_at must be in the future (leave it unset for a key that never expires)",
                ));
            }
        }
        let owner = match &request.service_account_id {
            None => self
                .store
                .get_user(&caller.tenant_id, &caller.user_id)
                .await?
                // The caller's key was valid a moment ago; its owner was deleted since.
                .ok_or_else(|| IdentityError::Unauthenticated("invalid API key".to_owned()))?,
            Some(id) => {
                let owner = self
                    .store
                    .get_user(&caller.tenant_id, id)
                    .await?
                    .ok_or_else(|| IdentityError::not_found("service account", id))?;
                if owner.user_type != UserType::ServiceAccount {
                    return Err(IdentityError::invalid(
                        "service_account_id",
                        format!(
                            "service_account_id {id} names a user account, not a service account; \
                             leave it unset to create a key for yourself"
                        ),
                    ));
                }
                owner
            }
        };
        let environment = request.environment.unwrap_or(caller.environment);
        let (key, secret) =
            ApiKey::issue(&owner, environment, request.name, request.expires_at, now)?;
        match self.store.insert_api_key(&key).await {
            Ok(()) => {}
            // The owner was deleted between the read above and this insert.
            Err(crate::store::StoreError::ForeignKeyViolation) => {
                return Err(IdentityError::not_found("service account", &owner.id));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(key_id = %key.id, user_id = %key.user_id, environment = %key.environment, roles = %key.roles.to_storage(), "API key created");
        Ok((key, secret))
    }

    /// One key's record.
    pub async fn get_api_key(
        &self,
        caller: &Principal,
        id: &ApiKeyId,
    ) -> Result<ApiKey, IdentityError> {
        caller.require(Permission::ApiKeysManage)?;
        self.store
            .get_api_key(&caller.tenant_id, id)
            .await?
            .ok_or_else(|| IdentityError::not_found("API key", id))
    }

    /// A page of the tenant's keys, optionally of one account, oldest first; the second value is
    /// the last id when more may follow.
    pub async fn list_api_keys(
        &self,
        caller: &Principal,
        owner: Option<&UserId>,
        page: Page<ApiKeyId>,
    ) -> Result<(Vec<ApiKey>, Option<ApiKeyId>), IdentityError> {
        caller.require(Permission::ApiKeysManage)?;
        let mut keys = self
            .store
            .list_api_keys(&caller.tenant_id, owner, page.after.as_ref(), page.size + 1)
            .await?;
        let more = keys.len() > page.size as usize;
        keys.truncate(page.size as usize);
        let next = more.then(|| keys.last().map(|k| k.id.clone())).flatten();
        Ok((keys, next))
    }

    /// Revokes a key.
    pub async fn delete_api_key(
        &self,
        caller: &Principal,
        id: &ApiKeyId,
    ) -> Result<(), IdentityError> {
        caller.require(Permission::ApiKeysManage)?;
        if self.store.delete_api_key(&caller.tenant_id, id).await? {
            self.keys.invalidate_all();
            tracing::info!(key_id = %id, "API key revoked");
            Ok(())
        } else {
            Err(IdentityError::not_found("API key", id))
        }
    }
}
