//! Accounts: a person's (full access, no roles) or a service account (exactly its roles).

use chrono::{DateTime, Utc};
use tollgate::ids::{TenantId, UserId};
use tollgate::invalid::Invalid;

use crate::model::roles::RoleSet;

/// Longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 255;

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
    pub fn parse<S: AsRef<str>>(user_type: Option<UserType>, roles: &[S]) -> Result<Self, Invalid> {
        match user_type {
            None => Err(Invalid::new(
                "type",
                "type is required: USER_TYPE_USER (a person, full access) or \
                 USER_TYPE_SERVICE_ACCOUNT (an automated service with roles)",
            )),
            Some(UserType::User) if !roles.is_empty() => Err(Invalid::new(
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
    pub fn parse(field: &'static str, s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.chars().count() > MAX_NAME_CHARS {
            return Err(Invalid::new(
                field,
                format!("{field} must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid::new(
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
