//! The client of identity-service's `Authorize`: one lazily connected, long-lived HTTP/2 channel
//! (multiplexed, so it serves every concurrent miss), a timeout on every call, and the internal
//! credential on every call.

use std::sync::Arc;
use std::time::Duration;

use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::{Environment, KeyDigest};
use tollgate::metadata::{INTERNAL_TOKEN_HEADER, InternalToken};
use tollgate::permissions::Permission;
use tollgate::proto::identity::v1 as pb;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::{Decision, Principal};
use crate::metrics::EventMetrics;

/// How often an idle connection is pinged, so that a dead peer is noticed before a request
/// waits on it.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Why no decision could be had. The request fails closed.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// identity-service could not be reached or answered with an error.
    #[error("identity-service call failed: {0}")]
    Call(#[from] tonic::Status),
    /// identity-service answered something this build cannot read.
    #[error("identity-service answered an unreadable decision: {0}")]
    Unreadable(&'static str),
}

/// The `Authorize` client. Its `Debug` leaves the internal token out.
#[derive(Clone)]
pub struct IdentityClient {
    client: pb::authorization_service_client::AuthorizationServiceClient<Channel>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
    metrics: EventMetrics,
}

impl std::fmt::Debug for IdentityClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityClient")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl IdentityClient {
    /// A client of the identity-service at `url`. Connects on first use, so that event-service
    /// can start before identity-service.
    pub fn new(
        url: &url::Url,
        timeout: Duration,
        token: Option<&InternalToken>,
        tls: Option<tonic::transport::ClientTlsConfig>,
        metrics: EventMetrics,
    ) -> Result<Self, String> {
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("invalid identity URL {url}: {e}"))?;
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| format!("invalid identity TLS configuration: {e}"))?;
        }
        let endpoint = endpoint
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_while_idle(true);
        let token = token
            .map(|t| t.expose().parse())
            .transpose()
            .map_err(|_| "the internal token is not a valid header value".to_owned())?;
        Ok(Self {
            client: pb::authorization_service_client::AuthorizationServiceClient::new(
                endpoint.connect_lazy(),
            ),
            token,
            metrics,
        })
    }

    /// How many `Authorize` calls this client has made (read from the calls metric).
    pub fn calls(&self) -> u64 {
        ["ok", "error"]
            .iter()
            .map(|outcome| {
                self.metrics
                    .authorize_calls
                    .with_label_values(&[outcome])
                    .get()
            })
            .sum()
    }

    /// Opens identity-service's revocation stream after the change numbered `after_seq` (0: from
    /// now on).
    pub async fn watch_revocations(
        &self,
        after_seq: i64,
    ) -> Result<tonic::Streaming<pb::WatchRevocationsResponse>, tonic::Status> {
        let mut request = tonic::Request::new(pb::WatchRevocationsRequest { after_seq });
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert(INTERNAL_TOKEN_HEADER, token.clone());
        }
        Ok(self
            .client
            .clone()
            .watch_revocations(request)
            .await?
            .into_inner())
    }

    /// Asks identity-service for a decision.
    pub async fn authorize(
        &self,
        digest: &KeyDigest,
        permission: Permission,
    ) -> Result<Decision, Unavailable> {
        let mut request = tonic::Request::new(pb::AuthorizeRequest {
            key_digest: digest.as_bytes().to_vec(),
            permission: permission.as_str().to_owned(),
        });
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert(INTERNAL_TOKEN_HEADER, token.clone());
        }
        let started = std::time::Instant::now();
        let response = self.client.clone().authorize(request).await;
        let outcome = if response.is_ok() { "ok" } else { "error" };
        self.metrics
            .authorize_calls
            .with_label_values(&[outcome])
            .inc();
        self.metrics
            .authorize_duration
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        decision_from(response?.into_inner(), permission)
    }
}

fn decision_from(
    response: pb::AuthorizeResponse,
    permission: Permission,
) -> Result<Decision, Unavailable> {
    use pb::AuthorizeReason as Reason;
    match Reason::try_from(response.reason) {
        Ok(Reason::Allowed) if response.allowed => {}
        Ok(Reason::KeyNotFound) => return Ok(Decision::UnknownKey),
        Ok(Reason::KeyExpired) => return Ok(Decision::ExpiredKey),
        Ok(Reason::PermissionMissing) => return Ok(Decision::Missing(permission)),
        _ => return Err(Unavailable::Unreadable("reason")),
    }
    let p = response
        .principal
        .ok_or(Unavailable::Unreadable("principal"))?;
    let environment = match pb::Environment::try_from(p.environment) {
        Ok(pb::Environment::Production) => Environment::Production,
        Ok(pb::Environment::Sandbox) => Environment::Sandbox,
        _ => return Err(Unavailable::Unreadable("environment")),
    };
    let expires_at = response
        .expires_at
        .map(|t| tollgate::time::from_proto(&t).ok_or(Unavailable::Unreadable("expires_at")))
        .transpose()?;
    Ok(Decision::Allowed(Arc::new(Principal {
        tenant_id: TenantId::parse(&p.tenant_id)
            .map_err(|_| Unavailable::Unreadable("tenant_id"))?,
        environment,
        user_id: UserId::parse(&p.user_id).map_err(|_| Unavailable::Unreadable("user_id"))?,
        key_id: ApiKeyId::parse(&p.key_id).map_err(|_| Unavailable::Unreadable("key_id"))?,
        expires_at,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_internal_token() {
        let token: InternalToken = "kq0V3bq5fC7eE3n1Yx0bTqWm2hF9sLzP8aR4uJ6dGiM="
            .parse()
            .unwrap();
        let metrics = EventMetrics::register(&prometheus::Registry::new()).unwrap();
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                IdentityClient::new(
                    &"http://127.0.0.1:1".parse().unwrap(),
                    Duration::from_secs(1),
                    Some(&token),
                    None,
                    metrics,
                )
                .unwrap()
            });
        let printed = format!("{client:?}");
        assert!(!printed.contains(token.expose()), "{printed}");
        assert!(printed.contains("***"), "{printed}");
    }
}
