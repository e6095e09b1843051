//! Managing API keys: create (the secret is returned once), read, list, revoke.

use tollgate::ids::{ApiKeyId, UserId};
use tollgate::keys::{ApiKeySecret, Environment};
use tollgate::paging::Page;
use tollgate::permissions::Permission;

use crate::model::api_keys::{
    ApiKey, DEFAULT_ROTATION_GRACE, MAX_ROTATION_GRACE, NewApiKey, Rotated,
};
use crate::model::principal::Principal;
use crate::model::users::UserType;
use crate::store::{RotateOutcome, StoreError};
use crate::{Identity, IdentityError};

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
        // A key never creates a key with more reach than its own: not another environment
        // than it reaches, and not a longer life (a key with no expiry asked of an expiring
        // one gets the creator's expiry, and so does a later one).
        let environment = request.environment.unwrap_or(caller.environment);
        caller.require_reach(environment)?;
        let expires_at = match (request.expires_at, caller.expires_at) {
            (Some(asked), Some(cap)) => Some(asked.min(cap)),
            (asked, cap) => asked.or(cap),
        };
        let (key, secret) = ApiKey::issue(&owner, environment, request.name, expires_at, now)?;
        match self.store.insert_api_key(&key, &caller.actor()).await {
            Ok(()) => {}
            // The owner was deleted between the read above and this insert.
            Err(StoreError::ForeignKeyViolation) => {
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
            // What a key cannot reach does not exist for it, as another tenant's keys do not.
            .filter(|key| caller.reaches(key.environment))
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
        let environment = (!caller.reaches(Environment::Production)).then_some(caller.environment);
        let keys = self
            .store
            .list_api_keys(
                &caller.tenant_id,
                owner,
                environment,
                page.after.as_ref(),
                page.probe(),
            )
            .await?;
        Ok(page.split(keys, |k| k.id.clone()))
    }

    /// Replaces a key (see `RotateApiKey`): the new key with its secret, and the old key's
    /// record, expiring after `grace` (default [`DEFAULT_ROTATION_GRACE`]).
    pub async fn rotate_api_key(
        &self,
        caller: &Principal,
        id: &ApiKeyId,
        grace: Option<std::time::Duration>,
    ) -> Result<Rotated, IdentityError> {
        caller.require(Permission::ApiKeysManage)?;
        let grace = grace.unwrap_or(DEFAULT_ROTATION_GRACE);
        if grace > MAX_ROTATION_GRACE {
            return Err(IdentityError::invalid(
                "grace_period",
                format!(
                    "grace_period must be at most {} (0 ends the old key at once)",
                    humantime::format_duration(MAX_ROTATION_GRACE)
                ),
            ));
        }
        // A key out of reach is not found, as everywhere.
        let old = self.get_api_key(caller, id).await?;
        if let Some(by) = &old.replaced_by {
            return Err(already_rotated(id, by));
        }
        let now = tollgate::time::now();
        if old.expires_at.is_some_and(|at| at <= now) {
            // Its successor would be born expired.
            return Err(IdentityError::FailedPrecondition(format!(
                "API key {id} has expired: create a new key instead"
            )));
        }
        let (key, secret) = old.successor(now)?;
        let ends = now + chrono::Duration::from_std(grace).unwrap_or_default();
        match self
            .store
            .rotate_api_key(&caller.tenant_id, id, &key, ends, &caller.actor())
            .await?
        {
            RotateOutcome::Rotated(replaced) => {
                tracing::info!(key_id = %id, replaced_by = %key.id, grace_secs = grace.as_secs(), "API key rotated");
                Ok(Rotated {
                    replaced: *replaced,
                    key,
                    secret,
                })
            }
            RotateOutcome::NotFound => Err(IdentityError::not_found("API key", id)),
            RotateOutcome::AlreadyRotated(by) => Err(already_rotated(id, &by)),
        }
    }

    /// Revokes a key.
    pub async fn delete_api_key(
        &self,
        caller: &Principal,
        id: &ApiKeyId,
    ) -> Result<(), IdentityError> {
        caller.require(Permission::ApiKeysManage)?;
        // A key out of the caller's reach is not found, as in `get_api_key`.
        self.get_api_key(caller, id).await?;
        if self
            .store
            .delete_api_key(&caller.tenant_id, id, &caller.actor())
            .await?
        {
            tracing::info!(key_id = %id, "API key revoked");
            Ok(())
        } else {
            Err(IdentityError::not_found("API key", id))
        }
    }
}

fn already_rotated(id: &ApiKeyId, by: &ApiKeyId) -> IdentityError {
    IdentityError::FailedPrecondition(format!(
        "API key {id} was rotated already, by {by}: rotate {by} instead"
    ))
}
