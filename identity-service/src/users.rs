//! Managing accounts: create, read, list, replace a service account's roles, delete.

use tollgate::ids::UserId;
use tollgate::paging::Page;
use tollgate::permissions::Permission;

use crate::model::principal::Principal;
use crate::model::roles::{ROLE_TABLE, RoleDefinition, RoleSet};
use crate::model::users::{AccountKind, DisplayName, User, UserType};
use crate::store::DeleteUserOutcome;
use crate::{Identity, IdentityError};

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
        self.store.insert_user(&user, &caller.actor()).await?;
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
        let users = self
            .store
            .list_users(&caller.tenant_id, filter, page.after.as_ref(), page.probe())
            .await?;
        Ok(page.split(users, |u| u.id.clone()))
    }

    /// Replaces a service account's roles. Existing keys keep the roles they copied.
    pub async fn update_user_roles(
        &self,
        caller: &Principal,
        id: &UserId,
        roles: RoleSet,
    ) -> Result<User, IdentityError> {
        caller.require(Permission::UsersManage)?;
        caller.require_full_reach()?;
        let existing = self.get_user(caller, id).await?;
        if existing.user_type != UserType::ServiceAccount {
            return Err(IdentityError::invalid(
                "id",
                "roles can only be set on a service account: a user account has full access",
            ));
        }
        let user = self
            .store
            .update_user_roles(
                &caller.tenant_id,
                id,
                &roles,
                tollgate::time::now(),
                &caller.actor(),
            )
            .await?
            .ok_or_else(|| IdentityError::not_found("user", id))?;
        tracing::info!(user_id = %id, roles = %roles.to_storage(), "service account roles replaced");
        Ok(user)
    }

    /// The role table, for people choosing a service account's roles.
    pub fn list_roles(
        &self,
        caller: &Principal,
    ) -> Result<&'static [RoleDefinition], IdentityError> {
        caller.require(Permission::UsersManage)?;
        Ok(ROLE_TABLE)
    }

    /// Deletes an account and, with it, all its API keys. Returns how many keys were revoked.
    pub async fn delete_user(&self, caller: &Principal, id: &UserId) -> Result<u64, IdentityError> {
        caller.require(Permission::UsersManage)?;
        caller.require_full_reach()?;
        match self
            .store
            .delete_user(&caller.tenant_id, id, &caller.actor())
            .await?
        {
            DeleteUserOutcome::Deleted { revoked_api_keys } => {
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
