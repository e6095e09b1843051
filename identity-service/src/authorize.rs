//! Authorization: deciding whether a key (known by its digest) holds a permission, for
//! `Authorize`, and authenticating the key of a management call.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tollgate::keys::{ApiKeySecret, KeyDigest};
use tollgate::permissions::Permission;

use crate::model::principal::{Decision, DenyReason, Principal};
use crate::store::KeyRecord;
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
        let record = self.store.find_api_key_by_digest(digest).await?;
        let decision = Decision::decide(record.as_ref().map(|r| &r.key), permission, now);
        if let Some(record) = record.as_deref().filter(|r| !r.key.is_expired(now)) {
            self.record_use(record, now).await;
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
            Some(record) if record.key.is_expired(now) => {
                Err(IdentityError::Unauthenticated("expired API key".to_owned()))
            }
            Some(record) => {
                self.record_use(&record, now).await;
                Ok(Principal::of(&record.key))
            }
        }
    }

    /// Writes `last_used_at` when it is older than the resolution, at most once per key per
    /// resolution on this replica (the store's conditional update keeps replicas from writing
    /// it more often). A failure must not fail the request it belongs to: it is logged.
    async fn record_use(&self, record: &KeyRecord, now: DateTime<Utc>) {
        let resolution = chrono::Duration::from_std(LAST_USED_RESOLUTION).unwrap_or_default();
        let stale_before = now - resolution;
        if !record.claim_use(now, stale_before) {
            return;
        }
        if let Err(e) = self
            .store
            .touch_api_key(&record.key.id, now, stale_before)
            .await
        {
            tracing::warn!(key_id = %record.key.id, error = %e, "cannot record API key use");
        }
    }
}
