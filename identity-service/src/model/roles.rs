//! The role table. Roles are data: what each one grants is written here once, and every check
//! goes through [`RoleSet::permissions`].

use std::collections::BTreeSet;

use tollgate::invalid::Invalid;
use tollgate::permissions::Permission;

/// A role a service account can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// May send events.
    EventIngestor,
    /// May read events.
    EventReader,
}

/// One row of the role table.
#[derive(Debug)]
pub struct RoleDefinition {
    /// The role.
    pub role: Role,
    /// Its name in requests and storage.
    pub name: &'static str,
    /// What it is for.
    pub description: &'static str,
    /// What it grants.
    pub permissions: &'static [Permission],
}

/// Every role, in the order ListRoles shows them.
pub const ROLE_TABLE: &[RoleDefinition] = &[
    RoleDefinition {
        role: Role::EventIngestor,
        name: "event_ingestor",
        description: "For services that send events: may send events, nothing else.",
        permissions: &[Permission::EventWrite],
    },
    RoleDefinition {
        role: Role::EventReader,
        name: "event_reader",
        description: "For services that read event data: may read events, nothing else.",
        permissions: &[Permission::EventRead],
    },
];

/// The exact error text of the public documentation for a service account without roles.
pub const NO_ROLES_MESSAGE: &str = "Service accounts must have at least one role assigned";

impl Role {
    fn definition(self) -> &'static RoleDefinition {
        // The table has a row for every variant; the tests check it.
        ROLE_TABLE
            .iter()
            .find(|d| d.role == self)
            .unwrap_or(&ROLE_TABLE[0])
    }

    /// The role's name.
    pub fn name(self) -> &'static str {
        self.definition().name
    }

    /// Looks a role up by name.
    pub fn parse(name: &str) -> Option<Self> {
        ROLE_TABLE.iter().find(|d| d.name == name).map(|d| d.role)
    }
}

/// The roles of a service account or of a key. Never empty for a service account; empty for a
/// person's account and its keys, which hold every permission instead.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleSet(BTreeSet<Role>);

impl RoleSet {
    /// Validates the roles requested for a service account: at least one, each in the table.
    /// Duplicates are folded.
    pub fn for_service_account<S: AsRef<str>>(names: &[S]) -> Result<Self, Invalid> {
        if names.is_empty() {
            return Err(Invalid::new("roles", NO_ROLES_MESSAGE));
        }
        names
            .iter()
            .map(|name| {
                let name = name.as_ref();
                Role::parse(name)
                    .ok_or_else(|| Invalid::new("roles", format!("Invalid role: {name}")))
            })
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    /// No roles.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The role names, in table order.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|r| r.name().to_owned()).collect()
    }

    /// The permissions these roles grant.
    pub fn permissions(&self) -> BTreeSet<Permission> {
        self.0
            .iter()
            .flat_map(|r| r.definition().permissions.iter().copied())
            .collect()
    }

    /// The storage form: names joined by commas.
    pub fn to_storage(&self) -> String {
        self.names().join(",")
    }

    /// Reads the storage form; `None` if it names a role this build does not know.
    pub fn from_storage(s: &str) -> Option<Self> {
        s.split(',')
            .filter(|n| !n.is_empty())
            .map(Role::parse)
            .collect::<Option<BTreeSet<_>>>()
            .map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_a_row() {
        for role in [Role::EventIngestor, Role::EventReader] {
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert_eq!(ROLE_TABLE.len(), 2);
    }

    #[test]
    fn validation_uses_the_documented_texts() {
        let empty: [&str; 0] = [];
        let err = RoleSet::for_service_account(&empty).unwrap_err();
        assert_eq!(err.to_string(), NO_ROLES_MESSAGE);
        let err = RoleSet::for_service_account(&["event_reader", "custom_role"]).unwrap_err();
        assert_eq!(err.to_string(), "Invalid role: custom_role");
    }

    #[test]
    fn roles_grant_only_their_permissions() {
        let ingestor = RoleSet::for_service_account(&["event_ingestor"]).expect("valid");
        assert_eq!(
            ingestor.permissions().into_iter().collect::<Vec<_>>(),
            [Permission::EventWrite]
        );
        let both =
            RoleSet::for_service_account(&["event_reader", "event_ingestor", "event_reader"])
                .expect("valid");
        assert_eq!(both.names(), ["event_ingestor", "event_reader"]);
        assert_eq!(RoleSet::from_storage(&both.to_storage()), Some(both));
        assert_eq!(RoleSet::from_storage(""), Some(RoleSet::empty()));
        assert_eq!(RoleSet::from_storage("root"), None);
    }
}
