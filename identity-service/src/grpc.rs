//! The gRPC adapter: wire types in, domain types to [`Identity`], domain types back out, and
//! [`IdentityError`] to `Status` through its one `From` impl. No logic lives here.

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio_stream::StreamExt;
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::{Environment, KeyDigest};
use tollgate::metadata::{INTERNAL_TOKEN_HEADER, InternalToken, api_key_from_metadata};
use tollgate::paging::{Page, decode_token_with, encode_token, page_size};
use tollgate::permissions::Permission;
use tollgate::proto::identity::v1 as pb;
use tollgate::server::Health;
use tollgate::time::{from_proto, to_proto};
use tonic::{Request, Response, Status};

use crate::model::api_keys::{ApiKey, KeyName, NewApiKey};
use crate::model::audit::{Actor, AuditAction, AuditEvent, AuditFilter};
use crate::model::principal::{DenyReason, Principal};
use crate::model::roles::RoleSet;
use crate::model::users::{AccountKind, DisplayName, User, UserType};
use crate::{Identity, IdentityError};

/// Implements every identity gRPC service over one [`Identity`].
#[derive(Debug, Clone)]
pub struct GrpcApi {
    identity: Identity,
    internal_token: Option<InternalToken>,
    client_names: Arc<[ServerName<'static>]>,
    /// The server's health, whose drain ends the revocation streams.
    health: Option<Health>,
}

impl GrpcApi {
    /// The adapter. `Authorize` is guarded by `internal_token` when set, and by verified client
    /// certificates carrying one of `client_names` when there are any (mutual TLS); either
    /// credential suffices. Names that are not DNS names are left out (settings refuse them).
    pub fn new(
        identity: Identity,
        internal_token: Option<InternalToken>,
        client_names: &[String],
    ) -> Self {
        let client_names = client_names
            .iter()
            .filter_map(|n| ServerName::try_from(n.clone()).ok())
            .collect();
        Self {
            identity,
            internal_token,
            client_names,
            health: None,
        }
    }

    /// Ends the revocation streams when `health` begins to drain (without it they last until
    /// their subscribers leave).
    pub fn ending_streams_with(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// The principal of the key the request presents, with the caller's address.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Principal, IdentityError> {
        let secret = api_key_from_metadata(request.metadata())
            .map_err(|e| IdentityError::Unauthenticated(e.to_string()))?;
        let mut principal = self.identity.authenticate(&secret).await?;
        principal.address = request.remote_addr().map(|a| a.ip().to_string());
        Ok(principal)
    }

    fn check_internal_credential<T>(&self, request: &Request<T>) -> Result<(), IdentityError> {
        if self.internal_token.is_none() && self.client_names.is_empty() {
            return Ok(());
        }
        // The TLS layer only hands over certificates that chain to the configured client CA;
        // of those, only the ones named for Authorize count.
        let certified = !self.client_names.is_empty()
            && request.peer_certs().is_some_and(|certs| {
                certs.first().is_some_and(|leaf| {
                    webpki::EndEntityCert::try_from(leaf).is_ok_and(|cert| {
                        self.client_names
                            .iter()
                            .any(|name| cert.verify_is_valid_for_subject_name(name).is_ok())
                    })
                })
            });
        let token = self.internal_token.as_ref().is_some_and(|token| {
            request
                .metadata()
                .get(INTERNAL_TOKEN_HEADER)
                .is_some_and(|p| token.matches(p.as_bytes()))
        });
        if certified || token {
            Ok(())
        } else {
            Err(IdentityError::InternalCredential)
        }
    }
}

fn user_type_from_proto(value: i32) -> Option<UserType> {
    match pb::UserType::try_from(value).ok()? {
        pb::UserType::Unspecified => None,
        pb::UserType::User => Some(UserType::User),
        pb::UserType::ServiceAccount => Some(UserType::ServiceAccount),
    }
}

fn user_type_to_proto(t: UserType) -> pb::UserType {
    match t {
        UserType::User => pb::UserType::User,
        UserType::ServiceAccount => pb::UserType::ServiceAccount,
    }
}

fn environment_to_proto(e: Environment) -> pb::Environment {
    match e {
        Environment::Production => pb::Environment::Production,
        Environment::Sandbox => pb::Environment::Sandbox,
    }
}

fn environment_from_proto(value: i32) -> Result<Option<Environment>, IdentityError> {
    match pb::Environment::try_from(value) {
        Ok(pb::Environment::Unspecified) => Ok(None),
        Ok(pb::Environment::Production) => Ok(Some(Environment::Production)),
        Ok(pb::Environment::Sandbox) => Ok(Some(Environment::Sandbox)),
        Err(_) => Err(IdentityError::invalid(
            "environment",
            "environment must be ENVIRONMENT_PRODUCTION or ENVIRONMENT_SANDBOX (or unset)",
        )),
    }
}

fn parse_id<T>(
    field: &'static str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, tollgate::ids::IdFormatError>,
) -> Result<T, IdentityError> {
    if value.is_empty() {
        return Err(IdentityError::invalid(
            field,
            format!("{field} is required"),
        ));
    }
    parse(value).map_err(|e| IdentityError::invalid(field, format!("{field} {e}")))
}

/// A page request from a List call's size and token; the token carries the last id.
fn page<T>(
    size: i32,
    token: &str,
    parse: impl FnOnce(&str) -> Result<T, tollgate::ids::IdFormatError>,
) -> Result<Page<T>, IdentityError> {
    Ok(Page {
        size: page_size(size)?,
        after: decode_token_with(token, parse)?,
    })
}

fn next_page_token(last: Option<&str>) -> String {
    last.map(encode_token).unwrap_or_default()
}

impl From<User> for pb::User {
    fn from(u: User) -> Self {
        pb::User {
            id: u.id.to_string(),
            r#type: user_type_to_proto(u.user_type).into(),
            roles: u.roles.names(),
            name: u.name.as_str().to_owned(),
            tenant_id: u.tenant_id.to_string(),
            created_at: Some(to_proto(u.created_at)),
            updated_at: Some(to_proto(u.updated_at)),
        }
    }
}

impl From<ApiKey> for pb::ApiKey {
    fn from(k: ApiKey) -> Self {
        pb::ApiKey {
            id: k.id.to_string(),
            name: k.name.as_str().to_owned(),
            user_id: k.user_id.to_string(),
            user_type: user_type_to_proto(k.user_type).into(),
            environment: environment_to_proto(k.environment).into(),
            roles: k.roles.names(),
            display_hint: k.display_hint,
            created_at: Some(to_proto(k.created_at)),
            expires_at: k.expires_at.map(to_proto),
            last_used_at: k.last_used_at.map(to_proto),
            replaced_by: k.replaced_by.map(|id| id.to_string()).unwrap_or_default(),
        }
    }
}

/// A new key with its secret, the one time it is shown.
fn issued(key: ApiKey, secret: &tollgate::keys::ApiKeySecret) -> pb::CreateApiKeyResponse {
    pb::CreateApiKeyResponse {
        id: key.id.to_string(),
        name: key.name.as_str().to_owned(),
        api_key: secret.expose().to_owned(),
        roles: key.roles.names(),
        created_at: Some(to_proto(key.created_at)),
        expires_at: key.expires_at.map(to_proto),
        user_id: key.user_id.to_string(),
        environment: environment_to_proto(key.environment).into(),
        display_hint: key.display_hint,
    }
}

fn audit_action_to_proto(a: AuditAction) -> pb::AuditAction {
    match a {
        AuditAction::TenantCreated => pb::AuditAction::TenantCreated,
        AuditAction::UserCreated => pb::AuditAction::UserCreated,
        AuditAction::UserRolesUpdated => pb::AuditAction::UserRolesUpdated,
        AuditAction::UserDeleted => pb::AuditAction::UserDeleted,
        AuditAction::ApiKeyCreated => pb::AuditAction::ApiKeyCreated,
        AuditAction::ApiKeyRotated => pb::AuditAction::ApiKeyRotated,
        AuditAction::ApiKeyDeleted => pb::AuditAction::ApiKeyDeleted,
        AuditAction::ApiKeyRevoked => pb::AuditAction::ApiKeyRevoked,
    }
}

fn audit_action_from_proto(value: i32) -> Result<Option<AuditAction>, IdentityError> {
    let action = pb::AuditAction::try_from(value).ok();
    match action {
        Some(pb::AuditAction::Unspecified) => Ok(None),
        Some(known) => Ok(AuditAction::ALL
            .into_iter()
            .find(|a| audit_action_to_proto(*a) == known)),
        None => Err(IdentityError::invalid(
            "action",
            "action must be one of the AUDIT_ACTION_* values (or unset)",
        )),
    }
}

/// A kind of id a filter accepts: how it is described, and whether a value is one.
type IdKind = (&'static str, fn(&str) -> bool);

/// An id filter of the audit log: one of the given kinds of id, or unset.
fn audit_id_filter(
    field: &'static str,
    value: &str,
    kinds: &[IdKind],
) -> Result<Option<String>, IdentityError> {
    if value.is_empty() {
        return Ok(None);
    }
    if kinds.iter().any(|(_, valid)| valid(value)) {
        return Ok(Some(value.to_owned()));
    }
    let names: Vec<&str> = kinds.iter().map(|(name, _)| *name).collect();
    Err(IdentityError::invalid(
        field,
        format!("{field} must be {} (or unset)", names.join(" or ")),
    ))
}

impl From<AuditEvent> for pb::AuditEvent {
    fn from(e: AuditEvent) -> Self {
        let (actor_key_id, actor_user_id, actor_command, actor_address) = match e.actor {
            Actor::Key {
                key_id,
                user_id,
                address,
                ..
            } => (
                key_id.to_string(),
                user_id.to_string(),
                String::new(),
                address.unwrap_or_default(),
            ),
            Actor::Command(command) => (
                String::new(),
                String::new(),
                command.to_owned(),
                String::new(),
            ),
        };
        pb::AuditEvent {
            id: e.id.to_string(),
            time: Some(to_proto(e.at)),
            action: audit_action_to_proto(e.action).into(),
            actor_key_id,
            actor_user_id,
            actor_command,
            actor_address,
            target_id: e.target_id,
            environment: environment_to_proto(e.environment).into(),
            roles_before: e.roles_before.map(|r| r.names()).unwrap_or_default(),
            roles_after: e.roles_after.map(|r| r.names()).unwrap_or_default(),
            replacement_id: e
                .replacement_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }
    }
}

impl From<Principal> for pb::Principal {
    fn from(p: Principal) -> Self {
        pb::Principal {
            tenant_id: p.tenant_id.to_string(),
            environment: environment_to_proto(p.environment).into(),
            user_id: p.user_id.to_string(),
            user_type: user_type_to_proto(p.user_type).into(),
            key_id: p.key_id.to_string(),
            roles: p.roles.names(),
            permissions: p
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        }
    }
}

#[tonic::async_trait]
impl pb::user_service_server::UserService for GrpcApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let kind = AccountKind::parse(user_type_from_proto(req.r#type), &req.roles)?;
        let name = DisplayName::parse("name", &req.name)?;
        let user = self.identity.create_user(&caller, kind, name).await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user.into()),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = parse_id("id", &request.get_ref().id, UserId::parse)?;
        let user = self.identity.get_user(&caller, &id).await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(user.into()),
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let filter = match pb::UserType::try_from(req.r#type) {
            Ok(_) => user_type_from_proto(req.r#type),
            Err(_) => {
                return Err(IdentityError::invalid(
                    "type",
                    "type must be USER_TYPE_USER, USER_TYPE_SERVICE_ACCOUNT or unset",
                )
                .into());
            }
        };
        let page = page(req.page_size, &req.page_token, UserId::parse)?;
        let (users, next) = self.identity.list_users(&caller, filter, page).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(Into::into).collect(),
            next_page_token: next_page_token(next.as_ref().map(|id| id.as_str())),
        }))
    }

    async fn update_user_roles(
        &self,
        request: Request<pb::UpdateUserRolesRequest>,
    ) -> Result<Response<pb::UpdateUserRolesResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let id = parse_id("id", &req.id, UserId::parse)?;
        let roles = RoleSet::for_service_account(&req.roles)?;
        let user = self.identity.update_user_roles(&caller, &id, roles).await?;
        Ok(Response::new(pb::UpdateUserRolesResponse {
            user: Some(user.into()),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = parse_id("id", &request.get_ref().id, UserId::parse)?;
        let revoked = self.identity.delete_user(&caller, &id).await?;
        Ok(Response::new(pb::DeleteUserResponse {
            revoked_api_keys: i32::try_from(revoked).unwrap_or(i32::MAX),
        }))
    }
}

#[tonic::async_trait]
impl pb::api_key_service_server::ApiKeyService for GrpcApi {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let new = NewApiKey {
            name: KeyName::parse(&req.name)?,
            service_account_id: match req.service_account_id.as_str() {
                "" => None,
                id => Some(parse_id("service_account_id", id, UserId::parse)?),
            },
            expires_at: req
                .expires_at
                .as_ref()
                .map(|t| {
                    from_proto(t).ok_or_else(|| {
                        IdentityError::invalid("expires_at", "expires_at is not a valid time")
                    })
                })
                .transpose()?,
            environment: environment_from_proto(req.environment)?,
        };
        let (key, secret) = self.identity.create_api_key(&caller, new).await?;
        Ok(Response::new(issued(key, &secret)))
    }

    async fn get_api_key(
        &self,
        request: Request<pb::GetApiKeyRequest>,
    ) -> Result<Response<pb::GetApiKeyResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = parse_id("id", &request.get_ref().id, ApiKeyId::parse)?;
        let key = self.identity.get_api_key(&caller, &id).await?;
        Ok(Response::new(pb::GetApiKeyResponse {
            key: Some(key.into()),
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let owner = match req.user_id.as_str() {
            "" => None,
            id => Some(parse_id("user_id", id, UserId::parse)?),
        };
        let page = page(req.page_size, &req.page_token, ApiKeyId::parse)?;
        let (keys, next) = self
            .identity
            .list_api_keys(&caller, owner.as_ref(), page)
            .await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: keys.into_iter().map(Into::into).collect(),
            next_page_token: next_page_token(next.as_ref().map(|id| id.as_str())),
        }))
    }

    async fn delete_api_key(
        &self,
        request: Request<pb::DeleteApiKeyRequest>,
    ) -> Result<Response<pb::DeleteApiKeyResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = parse_id("id", &request.get_ref().id, ApiKeyId::parse)?;
        self.identity.delete_api_key(&caller, &id).await?;
        Ok(Response::new(pb::DeleteApiKeyResponse {}))
    }

    async fn rotate_api_key(
        &self,
        request: Request<pb::RotateApiKeyRequest>,
    ) -> Result<Response<pb::RotateApiKeyResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let id = parse_id("id", &req.id, ApiKeyId::parse)?;
        let grace = req
            .grace_period
            .map(|d| {
                std::time::Duration::try_from(d).map_err(|_| {
                    IdentityError::invalid(
                        "grace_period",
                        "grace_period must be a duration of zero or more",
                    )
                })
            })
            .transpose()?;
        let rotated = self.identity.rotate_api_key(&caller, &id, grace).await?;
        Ok(Response::new(pb::RotateApiKeyResponse {
            key: Some(issued(rotated.key, &rotated.secret)),
            replaced: Some(rotated.replaced.into()),
        }))
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for GrpcApi {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let time = |field: &'static str, t: Option<&prost_types::Timestamp>| {
            t.map(|t| {
                from_proto(t).ok_or_else(|| {
                    IdentityError::invalid(field, format!("{field} is not a valid time"))
                })
            })
            .transpose()
        };
        let filter = AuditFilter {
            actor_id: audit_id_filter(
                "actor_id",
                &req.actor_id,
                &[
                    ("an API key id (sec_...)", |s| ApiKeyId::parse(s).is_ok()),
                    ("a user id (usr_...)", |s| UserId::parse(s).is_ok()),
                ],
            )?,
            target_id: audit_id_filter(
                "target_id",
                &req.target_id,
                &[
                    ("an API key id (sec_...)", |s| ApiKeyId::parse(s).is_ok()),
                    ("a user id (usr_...)", |s| UserId::parse(s).is_ok()),
                    ("a tenant id (ten_...)", |s| TenantId::parse(s).is_ok()),
                ],
            )?,
            action: audit_action_from_proto(req.action)?,
            start: time("start_time", req.start_time.as_ref())?,
            end: time("end_time", req.end_time.as_ref())?,
            environment: None,
        };
        let page = Page {
            size: page_size(req.page_size)?,
            after: decode_token_with(&req.page_token, |s| s.parse::<i64>())?,
        };
        let (events, next) = self
            .identity
            .list_audit_events(&caller, filter, page)
            .await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events.into_iter().map(Into::into).collect(),
            next_page_token: next_page_token(next.map(|seq| seq.to_string()).as_deref()),
        }))
    }
}

#[tonic::async_trait]
impl pb::role_service_server::RoleService for GrpcApi {
    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let caller = self.caller(&request).await?;
        let roles = self.identity.list_roles(&caller)?;
        Ok(Response::new(pb::ListRolesResponse {
            roles: roles
                .iter()
                .map(|d| pb::Role {
                    name: d.name.to_owned(),
                    description: d.description.to_owned(),
                    permissions: d
                        .permissions
                        .iter()
                        .map(|p| p.as_str().to_owned())
                        .collect(),
                })
                .collect(),
            user_permissions: Permission::ALL
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl pb::authorization_service_server::AuthorizationService for GrpcApi {
    type WatchRevocationsStream = tonic::codegen::BoxStream<pb::WatchRevocationsResponse>;

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        self.check_internal_credential(&request)?;
        let after = request.get_ref().after_seq;
        if after < 0 {
            return Err(IdentityError::invalid(
                "after_seq",
                "after_seq must be 0 (from now on) or a seq the stream sent",
            )
            .into());
        }
        let until = self.health.as_ref().map(Health::drained);
        let revocations = self.identity.watch_revocations(after, async move {
            match until {
                Some(drained) => drained.await,
                None => std::future::pending().await,
            }
        })?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(revocations).map(|item| {
            item.map(|r| pb::WatchRevocationsResponse {
                seq: r.seq,
                key_digest: r.digest.map(|d| d.as_bytes().to_vec()).unwrap_or_default(),
                flush: r.flush,
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn authorize(
        &self,
        request: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        self.check_internal_credential(&request)?;
        let req = request.into_inner();
        let digest = KeyDigest::from_slice(&req.key_digest).ok_or_else(|| {
            IdentityError::invalid(
                "key_digest",
                "key_digest must be the 32-byte SHA-256 digest of the API key",
            )
        })?;
        let permission = Permission::parse(&req.permission).ok_or_else(|| {
            let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
            IdentityError::invalid(
                "permission",
                format!(
                    "unknown permission {:?}: expected one of {}",
                    req.permission,
                    known.join(", ")
                ),
            )
        })?;
        let decision = self.identity.authorize(&digest, permission).await?;
        let reason = match decision.outcome {
            Ok(()) => pb::AuthorizeReason::Allowed,
            Err(DenyReason::KeyNotFound) => pb::AuthorizeReason::KeyNotFound,
            Err(DenyReason::KeyExpired) => pb::AuthorizeReason::KeyExpired,
            Err(DenyReason::PermissionMissing) => pb::AuthorizeReason::PermissionMissing,
        };
        Ok(Response::new(pb::AuthorizeResponse {
            allowed: decision.outcome.is_ok(),
            reason: reason.into(),
            principal: decision.principal.map(Into::into),
            expires_at: decision.expires_at.map(to_proto),
        }))
    }
}
