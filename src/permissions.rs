//! Permissions: the contract between identity-service, which grants them, and the services
//! that ask for them in `Authorize`.

use std::fmt;

/// Something an API key may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Send usage events (`event:write`).
    EventWrite,
    /// Read usage events and usage figures (`event:read`).
    EventRead,
    /// Create, read, change and delete users and service accounts, and read the role table
    /// (`users:manage`). No role grants it: only a person's account has it.
    UsersManage,
    /// Create, read and delete API keys (`api_keys:manage`). Only a person's account has it.
    ApiKeysManage,
    /// Create, read and delete meters (`meters:manage`). Only a person's account has it.
    MetersManage,
}

impl Permission {
    /// Every permission: what a person's account holds.
    pub const ALL: [Permission; 5] = [
        Permission::EventWrite,
        Permission::EventRead,
        Permission::UsersManage,
        Permission::ApiKeysManage,
        Permission::MetersManage,
    ];

    /// The wire name, e.g. `event:write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::EventWrite => "event:write",
            Permission::EventRead => "event:read",
            Permission::UsersManage => "users:manage",
            Permission::ApiKeysManage => "api_keys:manage",
            Permission::MetersManage => "meters:manage",
        }
    }

    /// Whether a role grants it (a service account may hold it); the others only a person's
    /// account has.
    pub fn granted_by_roles(self) -> bool {
        matches!(self, Permission::EventWrite | Permission::EventRead)
    }

    /// Reads a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
