//! Authorization: deciding whether a key (known by its digest) holds a permission, for
//! `Authorize`, and authenticating the key of a management call.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tollgate::keys::{ApiKeySecret, KeyDigest};
use tollgate::permissions::Permission;

use crate::model::api_keys::ApiKey;
use crate::model::principal::{Decision, DenyReason, Principal};
use crate::{Identity, IdentityError};

/// `last_used_at` is written at most once per this period per key, so that a busy key costs
/// one small write a minute rather than one per request.
pub const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

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
        let key = self.store.find_api_key_by_digest(digest).await?;
        let decision = Decision::decide(key.as_deref(), permission, now);
        if let Some(key) = key.as_deref().filter(|k| !k.is_expired(now)) {
            self.record_use(key, now).await;
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
        match self.store.find_api_key_by_digest(&secret.digest()).await? {
            None => Err(IdentityError::Unauthenticated(
                "invalid API key: it does not exist or was revoked".to_owned(),
            )),
            Some(key) if key.is_expired(now) => {
                Err(IdentityError::Unauthenticated("expired API key".to_owned()))
            }
            Some(key) => {
                self.record_use(&key, now).await;
                Ok(Principal::of(&key))
            }
        }
    }

    /// Writes `last_used_at` when it is older than the resolution. A failure must not fail the
    /// request it belongs to: it is logged.
    async fn record_use(&self, key: &ApiKey, now: DateTime<Utc>) {
        let resolution = chrono::Duration::from_std(LAST_USED_RESOLUTION).unwrap_or_default();
        if let Err(e) = self.store.touch_api_key(key, now, now - resolution).await {
            tracing::warn!(key_id = %key.id, error = %e, "cannot record API key use");
        }
    }
}
