//! Tenants and their bootstrap: a tenant is created with its first user account and a
//! full-access production key, from the command line, on the database directly.

use tollgate::ids::TenantId;
use tollgate::keys::{ApiKeySecret, Environment};

use crate::model::api_keys::{ApiKey, KeyName};
use crate::model::audit::Actor;
use crate::model::tenants::Tenant;
use crate::model::users::{AccountKind, DisplayName, User, UserType};
use crate::{Identity, IdentityError};

/// What bootstrapping a tenant made. Holds the only copy of the first key's secret.
#[derive(Debug)]
pub struct BootstrappedTenant {
    /// The tenant.
    pub tenant: Tenant,
    /// Its first user account.
    pub user: User,
    /// That user's full-access production key.
    pub key: ApiKey,
    /// The key's secret.
    pub secret: ApiKeySecret,
}

impl Identity {
    /// Creates a tenant, its first user account (named `admin_name`) and a full-access
    /// production key, in one transaction; the audit log names `command` as the actor.
    pub async fn bootstrap_tenant(
        &self,
        name: &str,
        admin_name: &str,
        command: &'static str,
    ) -> Result<BootstrappedTenant, IdentityError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(IdentityError::invalid("name", "tenant name is required"));
        }
        let name = DisplayName::parse("name", name)?.as_str().to_owned();
        let now = tollgate::time::now();
        let tenant = Tenant {
            id: TenantId::generate(),
            name,
            created_at: now,
        };
        let user = User::new(
            tenant.id.clone(),
            AccountKind::Person,
            DisplayName::parse("admin_name", admin_name)?,
            now,
        );
        let (key, secret) = ApiKey::issue(
            &user,
            Environment::Production,
            KeyName::parse("bootstrap")?,
            None,
            now,
        )?;
        self.store
            .create_tenant(&tenant, &user, &key, &Actor::Command(command))
            .await?;
        tracing::info!(tenant_id = %tenant.id, user_id = %user.id, key_id = %key.id, "tenant created");
        Ok(BootstrappedTenant {
            tenant,
            user,
            key,
            secret,
        })
    }

    /// Mints a new full-access production key for the oldest user account of the tenant named
    /// `tenant_name`, for operators who have lost theirs (`tollgate dev-key`). Works on the
    /// database directly, like the bootstrap.
    pub async fn issue_admin_key(
        &self,
        tenant_name: &str,
        key_name: &str,
        command: &'static str,
    ) -> Result<(Tenant, User, ApiKey, ApiKeySecret), IdentityError> {
        let tenant = self
            .store
            .find_tenant_by_name(tenant_name)
            .await?
            .ok_or_else(|| IdentityError::not_found("tenant", tenant_name))?;
        let owner = self
            .store
            .list_users(&tenant.id, Some(UserType::User), None, 1)
            .await?
            .pop()
            .ok_or_else(|| IdentityError::not_found("user account of tenant", tenant_name))?;
        let (key, secret) = ApiKey::issue(
            &owner,
            Environment::Production,
            KeyName::parse(key_name)?,
            None,
            tollgate::time::now(),
        )?;
        self.store
            .insert_api_key(&key, &Actor::Command(command))
            .await?;
        tracing::info!(tenant_id = %tenant.id, key_id = %key.id, "admin key issued");
        Ok((tenant, owner, key, secret))
    }
}
