//! The tower layer that authorizes every EventService and MeterService request before it
//! reaches a handler.
//!
//! It is a layer rather than a tonic interceptor because deciding needs an async call to
//! identity-service on a cache miss, and interceptors are synchronous. It sits on the whole
//! server, outside routing: requests to health and reflection pass through untouched, requests
//! to EventService and MeterService need a key holding the RPC's permission, and an authorized request reaches
//! its handler with the [`Principal`] in its extensions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use tollgate::metadata::{API_KEY_HEADER, AUTHORIZATION_HEADER, presented_api_key};
use tollgate::permissions::Permission;
use tonic::Status;
use tower::{Layer, Service};

use super::Principal;
use super::cache::{AuthCache, Refusal};

/// The permission each EventService and MeterService RPC needs; `None` for paths that are
/// neither's (health, reflection).
pub fn permission_for(path: &str) -> Option<Permission> {
    if let Some(method) = path.strip_prefix("/tollgate.events.v1.MeterService/") {
        return Some(match method {
            "GetMeterUsage" => Permission::EventRead,
            // Unknown methods too, and then get UNIMPLEMENTED from the router.
            _ => Permission::MetersManage,
        });
    }
    let method = path.strip_prefix("/tollgate.events.v1.EventService/")?;
    Some(match method {
        "IngestEvent" | "IngestEvents" => Permission::EventWrite,
        // Unknown methods need a read key too, and then get UNIMPLEMENTED from the router.
        _ => Permission::EventRead,
    })
}

/// Adds authorization to a service.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    cache: Arc<AuthCache>,
}

impl AuthLayer {
    /// A layer deciding with `cache`.
    pub fn new(cache: Arc<AuthCache>) -> Self {
        Self { cache }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authorized<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorized {
            inner,
            cache: self.cache.clone(),
        }
    }
}

/// A service whose EventService requests are authorized first.
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    inner: S,
    cache: Arc<AuthCache>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authorized<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone is not ready; the ready one goes into the future (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cache = self.cache.clone();
        Box::pin(async move {
            let Some(permission) = permission_for(request.uri().path()) else {
                return inner.call(request).await;
            };
            match authorize(&cache, request.headers(), permission).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// The principal of the key `headers` present, if it holds `permission`: the one decision
/// both gRPC requests (through [`AuthLayer`]) and HTTP requests (in their handlers) go through.
pub async fn authorize(
    cache: &AuthCache,
    headers: &HeaderMap,
    permission: Permission,
) -> Result<Arc<Principal>, Status> {
    let presented = presented_api_key(
        headers.get(API_KEY_HEADER).map(|v| v.as_bytes()),
        headers.get(AUTHORIZATION_HEADER).map(|v| v.as_bytes()),
    );
    let secret = presented.map_err(|e| Status::unauthenticated(e.to_string()))?;
    cache
        .check(&secret, permission)
        .await
        .map_err(|refusal| status_of(&refusal))
}

fn status_of(refusal: &Refusal) -> Status {
    let message = refusal.to_string();
    match refusal {
        Refusal::UnknownKey | Refusal::ExpiredKey => Status::unauthenticated(message),
        Refusal::Missing(_) => Status::permission_denied(message),
        Refusal::Unavailable(_) => Status::unavailable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_maps_to_its_permission() {
        let p = |m: &str| permission_for(&format!("/tollgate.events.v1.EventService/{m}"));
        assert_eq!(p("IngestEvent"), Some(Permission::EventWrite));
        assert_eq!(p("IngestEvents"), Some(Permission::EventWrite));
        for read in ["GetEvent", "ListEvents", "GetUsage"] {
            assert_eq!(p(read), Some(Permission::EventRead));
        }
        let m = |m: &str| permission_for(&format!("/tollgate.events.v1.MeterService/{m}"));
        assert_eq!(m("GetMeterUsage"), Some(Permission::EventRead));
        for manage in [
            "CreateMeter",
            "GetMeter",
            "ListMeters",
            "DeleteMeter",
            "Unknown",
        ] {
            assert_eq!(m(manage), Some(Permission::MetersManage));
        }
        assert_eq!(permission_for("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            permission_for("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            None
        );
    }
}
