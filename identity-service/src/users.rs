//! Users and service accounts.

use chrono::{DateTime, Utc};
use tollgate::ids::{TenantId, UserId};
use tollgate::permissions::Permission;

use crate::authorize::Principal;
use crate::roles::RoleSet;
use crate::store::DeleteUserOutcome;
use crate::{Identity, IdentityError};

/// Longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Page size when the request names none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest page size accepted.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Whether an account is a person or an automated service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserType {
    /// A person: full access, no roles.
    User,
    /// An automated service: exactly the permissions of its roles.
    ServiceAccount,
}

impl UserType {
    /// The storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::User => "user",
            UserType::ServiceAccount => "service_account",
        }
    }

    /// Reads a storage name.
    pub fn parse(s: &str) -> Option<Self> {
        [UserType::User, UserType::ServiceAccount]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// What kind of account to create. Roles exist only for service accounts, so a person's account
/// with roles, or a service account without, cannot be expressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountKind {
    /// A person's account.
    Person,
    /// A service account with at least one role.
    ServiceAccount(RoleSet),
}

impl AccountKind {
    /// Validates a requested type and roles.
    pub fn parse<S: AsRef<str>>(
        user_type: Option<UserType>,
        roles: &[S],
    ) -> Result<Self, IdentityError> {
        match user_type {
            None => Err(IdentityError::invalid(
                "type",
                "type is required: USER_TYPE_USER (a person, full access) or \
                 USER_TYPE_SERVICE_ACCOUNT (an automated service with roles)",
            )),
            Some(UserType::User) if !roles.is_empty() => Err(IdentityError::invalid(
                "roles",
                "roles are for service accounts only: a user account has full access",
            )),
            Some(UserType::User) => Ok(Self::Person),
            Some(UserType::ServiceAccount) => {
                RoleSet::for_service_account(roles).map(Self::ServiceAccount)
            }
        }
    }

    fn user_type(&self) -> UserType {
        match self {
            AccountKind::Person => UserType::User,
            AccountKind::ServiceAccount(_) => UserType::ServiceAccount,
        }
    }
}

/// A display name: trimmed, at most [`MAX_NAME_CHARS`] characters, may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisplayName(String);

impl DisplayName {
    /// Validates a requested name.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, IdentityError> {
        let s = s.trim();
        if s.chars().count() > MAX_NAME_CHARS {
            return Err(IdentityError::invalid(
                field,
                format!("{field} must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(IdentityError::invalid(
                field,
                format!("{field} must not contain control characters"),
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

/// An account of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `usr_…`.
    pub id: UserId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Person or service account.
    pub user_type: UserType,
    /// Display name.
    pub name: DisplayName,
    /// Roles; empty for a person.
    pub roles: RoleSet,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its roles last changed.
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// A new account, not yet stored.
    pub fn new(
        tenant_id: TenantId,
        kind: AccountKind,
        name: DisplayName,
        now: DateTime<Utc>,
    ) -> Self {
        let user_type = kind.user_type();
        let roles = match kind {
            AccountKind::Person => RoleSet::empty(),
            AccountKind::ServiceAccount(roles) => roles,
        };
        Self {
            id: UserId::generate(),
            tenant_id,
            user_type,
            name,
            roles,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A page request: how many, and after which id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<Id> {
    /// At most this many items.
    pub size: u32,
    /// Items after this id (exclusive), or from the start.
    pub after: Option<Id>,
}

impl<Id> Page<Id> {
    /// Validates a requested page size (0 means the default).
    pub fn size_from_request(requested: i32) -> Result<u32, IdentityError> {
        match u32::try_from(requested) {
            Ok(0) => Ok(DEFAULT_PAGE_SIZE),
            Ok(n) if n <= MAX_PAGE_SIZE => Ok(n),
            _ => Err(IdentityError::invalid(
                "page_size",
                format!(
                    "page_size must be between 0 (default {DEFAULT_PAGE_SIZE}) and {MAX_PAGE_SIZE}"
                ),
            )),
        }
    }
}

impl Identity {
    /// Creates an account in the caller's tenant.
    pub async fn create_user(
        &self,
        caller: &Principal,
        kind: AccountKind,
        name: DisplayName,
    ) -> Result<User, IdentityError> {
        caller.require(Permission::UsersManage)?;
        let user = User::new(caller.tenant_id.clone(), kind, name, tollgate::time::now());
        self.store.insert_user(&user).await?;
        tracing::info!(user_id = %user.id, user_type = user.user_type.as_str(), roles = %user.roles.to_storage(), "user created");
        Ok(user)
    }

    /// One account of the caller's tenant.
    pub async fn get_user(&self, caller: &Principal, id: &UserId) -> Result<User, IdentityError> {
        caller.require(Permission::UsersManage)?;
        self.store
            .get_user(&caller.tenant_id, id)
            .await?
            .ok_or_else(|| IdentityError::not_found("user", id))
    }

    /// A page of the caller's tenant's accounts, oldest first; the second value is the last id
    /// when more may follow.
    pub async fn list_users(
        &self,
        caller: &Principal,
        filter: Option<UserType>,
        page: Page<UserId>,
    ) -> Result<(Vec<User>, Option<UserId>), IdentityError> {
        caller.require(Permission::UsersManage)?;
        // One extra row tells whether another page exists without a second query.
        let mut users = self
            .store
            .list_users(
                &caller.tenant_id,
                filter,
                page.after.as_ref(),
                page.size + 1,
            )
            .await?;
        let more = users.len() > page.size as usize;
        users.truncate(page.size as usize);
        let next = more.then(|| users.last().map(|u| u.id.clone())).flatten();
        Ok((users, next))
    }

    /// Replaces a service account's roles. Existing keys keep the roles they copied.
    pub async fn update_user_roles(
        &self,
        caller: &Principal,
        id: &UserId,
        roles: RoleSet,
    ) -> Result<User, IdentityError> {
        caller.require(Permission::UsersManage)?;
        let existing = self.get_user(caller, id).await?;
        if existing.user_type != UserType::ServiceAccount {
            return Err(IdentityError::invalid(
                "id",
                "roles can only be set on a service account: a user account has full access",
            ));
        }
        let user = self
            .store
            .update_user_roles(&caller.tenant_id, id, &roles, tollgate::time::now())
            .await?
            .ok_or_else(|| IdentityError::not_found("user", id))?;
        tracing::info!(user_id = %id, roles = %roles.to_storage(), "service account roles replaced");
        Ok(user)
    }

    /// Deletes an account and, with it, all its API keys. Returns how many keys were revoked.
    pub async fn delete_user(&self, caller: &Principal, id: &UserId) -> Result<u64, IdentityError> {
        caller.require(Permission::UsersManage)?;
        match self.store.delete_user(&caller.tenant_id, id).await? {
            DeleteUserOutcome::Deleted { revoked_api_keys } => {
                self.keys.invalidate_all();
                tracing::info!(user_id = %id, revoked_api_keys, "user deleted");
                Ok(revoked_api_keys)
            }
            DeleteUserOutcome::NotFound => Err(IdentityError::not_found("user", id)),
            DeleteUserOutcome::LastUser => Err(IdentityError::FailedPrecondition(
                "cannot delete the last user account of a tenant: nobody could manage it afterwards"
                    .to_owned(),
            )),
        }
    }
}
