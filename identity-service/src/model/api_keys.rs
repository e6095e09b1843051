//! API keys: a secret shown once and stored as its SHA-256 digest, with roles copied from the
//! owner at creation and never changed afterwards.

use chrono::{DateTime, Utc};
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::invalid::Invalid;
use tollgate::keys::{ApiKeySecret, Environment, KeyDigest, RandomnessError};
use tollgate::permissions::Permission;

use crate::model::roles::RoleSet;
use crate::model::users::{MAX_NAME_CHARS, User, UserType};

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
    /// When it was last used (coarse: written at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// The key that replaced it, if a rotation did.
    pub replaced_by: Option<ApiKeyId>,
}

impl ApiKey {
    /// A new key for `owner`, copying the owner's roles, with its secret.
    pub fn issue(
        owner: &User,
        environment: Environment,
        name: KeyName,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(Self, ApiKeySecret), RandomnessError> {
        let secret = ApiKeySecret::generate(environment)?;
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
            replaced_by: None,
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
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Invalid::new(
                "name",
                "name is required: give the key a descriptive name, e.g. production-event-service",
            ));
        }
        if s.chars().count() > MAX_NAME_CHARS || s.chars().any(char::is_control) {
            return Err(Invalid::new(
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

/// How long a rotated key keeps working when the request names no grace period: a day, for a
/// deployment to roll the new key out.
pub const DEFAULT_ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The longest grace a rotation gives the old key: a month, so that a rotation cannot keep an
/// old key alive indefinitely.
pub const MAX_ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// What a rotation made of a key: the old key's record, now expiring at the end of the grace
/// and naming its replacement, and the new key with its secret.
#[derive(Debug)]
pub struct Rotated {
    /// The old key.
    pub replaced: ApiKey,
    /// The new key.
    pub key: ApiKey,
    /// The new key's secret: the only copy there will ever be.
    pub secret: ApiKeySecret,
}

impl ApiKey {
    /// The key that replaces this one: a new id and secret, the same name, owner, environment,
    /// expiry and this key's roles (not the owner's current ones: a rotation never changes what
    /// a key may do).
    pub fn successor(&self, now: DateTime<Utc>) -> Result<(ApiKey, ApiKeySecret), RandomnessError> {
        let secret = ApiKeySecret::generate(self.environment)?;
        let key = ApiKey {
            id: ApiKeyId::generate(),
            digest: secret.digest(),
            display_hint: secret.display_hint(),
            created_at: now,
            last_used_at: None,
            replaced_by: None,
            ..self.clone()
        };
        Ok((key, secret))
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
