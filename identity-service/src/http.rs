//! The HTTP/JSON adapter: the product documentation's routes (`/v1/users`,
//! `/v1/secrets/api/keys`, `/v1/roles`), each the JSON framing of one RPC. A handler turns the
//! body into the RPC's proto request, calls the same [`GrpcApi`] method a gRPC client reaches,
//! and writes the answer in the documentation's style (snake_case, RFC 3339 times, types and
//! roles spelled as the documentation spells them). No validation lives here beyond framing:
//! what the operation refuses, it refuses with the same text on both paths.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post, put};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tollgate::http::{
    Head, HttpError, Json, Names, Query, answer, missing_in_answer, name_of, named, next_token,
    respond, rfc3339, timestamp_field,
};
use tollgate::proto::identity::v1 as pb;
use tollgate::proto::identity::v1::api_key_service_server::ApiKeyService;
use tollgate::proto::identity::v1::role_service_server::RoleService;
use tollgate::proto::identity::v1::user_service_server::UserService;

use crate::grpc::GrpcApi;

/// The largest body identity-service reads: its requests are a name, a few roles and ids, so
/// a few KiB would do; this bound keeps a client that has no valid key (its key is checked by
/// the operation, after the body is read) from making the service parse megabytes.
pub const MAX_BODY_BYTES: usize = 64 << 10;

/// Every HTTP route of identity-service, over `api`.
pub fn router(api: GrpcApi) -> Router {
    Router::new()
        .route("/v1/users", post(create_user).get(list_users))
        .route("/v1/users/{id}", get(get_user).delete(delete_user))
        .route("/v1/users/{id}/roles", put(update_user_roles))
        .route(
            "/v1/secrets/api/keys",
            post(create_api_key).get(list_api_keys),
        )
        .route(
            "/v1/secrets/api/keys/{id}",
            get(get_api_key).delete(delete_api_key),
        )
        .route("/v1/secrets/api/keys/{id}/rotate", post(rotate_api_key))
        .route("/v1/roles", get(list_roles))
        .with_state(api)
}

/// A user or service account.
#[derive(Debug, Serialize)]
struct UserJson {
    id: String,
    #[serde(rename = "type")]
    user_type: &'static str,
    roles: Vec<String>,
    name: String,
    tenant_id: String,
    created_at: Option<String>,
    updated_at: Option<String>,
}

const USER_TYPES: Names<pb::UserType> = &[
    ("user", pb::UserType::User),
    ("service_account", pb::UserType::ServiceAccount),
];

const ENVIRONMENTS: Names<pb::Environment> = &[
    ("production", pb::Environment::Production),
    ("sandbox", pb::Environment::Sandbox),
];

/// `"user"` or `"service_account"` as the proto enum; absent is UNSPECIFIED, which the
/// operation refuses (or, for a filter, reads as "any") with its own message.
fn user_type_value(field: &str, name: Option<&str>) -> Result<i32, HttpError> {
    named(field, USER_TYPES, name, pb::UserType::Unspecified).map(Into::into)
}

fn user_type_name(value: i32) -> &'static str {
    name_of(USER_TYPES, value)
}

fn environment_name(value: i32) -> &'static str {
    name_of(ENVIRONMENTS, value)
}

impl From<pb::User> for UserJson {
    fn from(u: pb::User) -> Self {
        Self {
            user_type: user_type_name(u.r#type),
            created_at: rfc3339::from_proto(u.created_at.as_ref()),
            updated_at: rfc3339::from_proto(u.updated_at.as_ref()),
            id: u.id,
            roles: u.roles,
            name: u.name,
            tenant_id: u.tenant_id,
        }
    }
}

/// A user from a response that must carry one.
fn user_of(user: Option<pb::User>) -> Result<UserJson, HttpError> {
    user.map(Into::into).ok_or_else(missing_in_answer)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserBody {
    #[serde(rename = "type")]
    user_type: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    name: String,
}

async fn create_user(
    State(api): State<GrpcApi>,
    head: Head,
    body: Result<Json<CreateUserBody>, HttpError>,
) -> Response {
    let result = async {
        let Json(body) = body?;
        let message = pb::CreateUserRequest {
            r#type: user_type_value("type", body.user_type.as_deref())?,
            roles: body.roles,
            name: body.name,
        };
        let created = answer(api.create_user(head.request(message)).await)?;
        user_of(created.user)
    };
    respond("POST /v1/users", StatusCode::CREATED, result.await)
}

#[derive(Debug, Serialize)]
struct UserList {
    users: Vec<UserJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListUsersParams {
    #[serde(rename = "type")]
    user_type: Option<String>,
    #[serde(default)]
    page_size: i32,
    #[serde(default)]
    page_token: String,
}

async fn list_users(
    State(api): State<GrpcApi>,
    head: Head,
    params: Result<Query<ListUsersParams>, HttpError>,
) -> Response {
    let result = async {
        let Query(params) = params?;
        let message = pb::ListUsersRequest {
            page_size: params.page_size,
            page_token: params.page_token,
            r#type: user_type_value("type", params.user_type.as_deref())?,
        };
        let list = answer(api.list_users(head.request(message)).await)?;
        Ok(UserList {
            users: list.users.into_iter().map(Into::into).collect(),
            next_page_token: next_token(list.next_page_token),
        })
    };
    respond("GET /v1/users", StatusCode::OK, result.await)
}

async fn get_user(State(api): State<GrpcApi>, Path(id): Path<String>, head: Head) -> Response {
    let result = async {
        let message = pb::GetUserRequest { id };
        let found = answer(api.get_user(head.request(message)).await)?;
        user_of(found.user)
    };
    respond("GET /v1/users/{id}", StatusCode::OK, result.await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesBody {
    #[serde(default)]
    roles: Vec<String>,
}

async fn update_user_roles(
    State(api): State<GrpcApi>,
    Path(id): Path<String>,
    head: Head,
    body: Result<Json<RolesBody>, HttpError>,
) -> Response {
    let result = async {
        let Json(body) = body?;
        let message = pb::UpdateUserRolesRequest {
            id,
            roles: body.roles,
        };
        let updated = answer(api.update_user_roles(head.request(message)).await)?;
        user_of(updated.user)
    };
    respond("PUT /v1/users/{id}/roles", StatusCode::OK, result.await)
}

#[derive(Debug, Serialize)]
struct DeletedUser {
    revoked_api_keys: i32,
}

async fn delete_user(State(api): State<GrpcApi>, Path(id): Path<String>, head: Head) -> Response {
    let result = async {
        let message = pb::DeleteUserRequest { id };
        let deleted = answer(api.delete_user(head.request(message)).await)?;
        Ok(DeletedUser {
            revoked_api_keys: deleted.revoked_api_keys,
        })
    };
    respond("DELETE /v1/users/{id}", StatusCode::OK, result.await)
}

/// A key as it is shown after creation: never the secret.
#[derive(Debug, Serialize)]
struct ApiKeyJson {
    id: String,
    name: String,
    user_id: String,
    user_type: &'static str,
    environment: &'static str,
    roles: Vec<String>,
    display_hint: String,
    created_at: Option<String>,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replaced_by: Option<String>,
}

impl From<pb::ApiKey> for ApiKeyJson {
    fn from(k: pb::ApiKey) -> Self {
        Self {
            user_type: user_type_name(k.user_type),
            environment: environment_name(k.environment),
            created_at: rfc3339::from_proto(k.created_at.as_ref()),
            expires_at: rfc3339::from_proto(k.expires_at.as_ref()),
            last_used_at: rfc3339::from_proto(k.last_used_at.as_ref()),
            replaced_by: next_token(k.replaced_by),
            id: k.id,
            name: k.name,
            user_id: k.user_id,
            roles: k.roles,
            display_hint: k.display_hint,
        }
    }
}

/// A new key with its secret, the one time it is shown.
#[derive(Debug, Serialize)]
struct IssuedKeyJson {
    id: String,
    name: String,
    api_key: String,
    roles: Vec<String>,
    created_at: Option<String>,
    expires_at: Option<String>,
    user_id: String,
    environment: &'static str,
    display_hint: String,
}

impl From<pb::CreateApiKeyResponse> for IssuedKeyJson {
    fn from(k: pb::CreateApiKeyResponse) -> Self {
        Self {
            environment: environment_name(k.environment),
            created_at: rfc3339::from_proto(k.created_at.as_ref()),
            expires_at: rfc3339::from_proto(k.expires_at.as_ref()),
            id: k.id,
            name: k.name,
            api_key: k.api_key,
            roles: k.roles,
            user_id: k.user_id,
            display_hint: k.display_hint,
        }
    }
}

/// The documentation's body: `name`, `service_account_id`, `expires_at` and `type`, which
/// names the kind of secret and has one value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApiKeyBody {
    #[serde(default)]
    name: String,
    service_account_id: Option<String>,
    expires_at: Option<String>,
    #[serde(rename = "type")]
    secret_type: Option<String>,
    environment: Option<String>,
}

async fn create_api_key(
    State(api): State<GrpcApi>,
    head: Head,
    body: Result<Json<CreateApiKeyBody>, HttpError>,
) -> Response {
    let result = async {
        let Json(body) = body?;
        match body.secret_type.as_deref() {
            None | Some("private_key") => {}
            Some(other) => {
                return Err(HttpError::invalid(
                    "type",
                    format!("type must be \"private_key\" (or unset), not {other:?}"),
                ));
            }
        }
        let message = pb::CreateApiKeyRequest {
            name: body.name,
            service_account_id: body.service_account_id.unwrap_or_default(),
            expires_at: timestamp_field("expires_at", body.expires_at.as_deref())?,
            environment: named(
                "environment",
                ENVIRONMENTS,
                body.environment.as_deref(),
                pb::Environment::Unspecified,
            )?
            .into(),
        };
        let issued = answer(api.create_api_key(head.request(message)).await)?;
        Ok(IssuedKeyJson::from(issued))
    };
    respond(
        "POST /v1/secrets/api/keys",
        StatusCode::CREATED,
        result.await,
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListApiKeysParams {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    page_size: i32,
    #[serde(default)]
    page_token: String,
}

#[derive(Debug, Serialize)]
struct ApiKeyList {
    keys: Vec<ApiKeyJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

async fn list_api_keys(
    State(api): State<GrpcApi>,
    head: Head,
    params: Result<Query<ListApiKeysParams>, HttpError>,
) -> Response {
    let result = async {
        let Query(params) = params?;
        let message = pb::ListApiKeysRequest {
            page_size: params.page_size,
            page_token: params.page_token,
            user_id: params.user_id,
        };
        let list = answer(api.list_api_keys(head.request(message)).await)?;
        Ok(ApiKeyList {
            keys: list.keys.into_iter().map(Into::into).collect(),
            next_page_token: next_token(list.next_page_token),
        })
    };
    respond("GET /v1/secrets/api/keys", StatusCode::OK, result.await)
}

async fn get_api_key(State(api): State<GrpcApi>, Path(id): Path<String>, head: Head) -> Response {
    let result = async {
        let message = pb::GetApiKeyRequest { id };
        let found = answer(api.get_api_key(head.request(message)).await)?;
        found
            .key
            .map(ApiKeyJson::from)
            .ok_or_else(missing_in_answer)
    };
    respond(
        "GET /v1/secrets/api/keys/{id}",
        StatusCode::OK,
        result.await,
    )
}

async fn delete_api_key(
    State(api): State<GrpcApi>,
    Path(id): Path<String>,
    head: Head,
) -> Response {
    let result = async {
        let message = pb::DeleteApiKeyRequest { id };
        answer(api.delete_api_key(head.request(message)).await)?;
        Ok(serde_json::json!({}))
    };
    respond(
        "DELETE /v1/secrets/api/keys/{id}",
        StatusCode::OK,
        result.await,
    )
}

/// How long the old key keeps working, as a duration such as `24h`, `90m` or `0s`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace_period: Option<String>,
}

#[derive(Debug, Serialize)]
struct RotatedJson {
    key: IssuedKeyJson,
    replaced: ApiKeyJson,
}

async fn rotate_api_key(
    State(api): State<GrpcApi>,
    Path(id): Path<String>,
    head: Head,
    body: Result<Json<RotateBody>, HttpError>,
) -> Response {
    let result = async {
        let Json(body) = body?;
        let grace_period = body
            .grace_period
            .map(|text| {
                let duration = tollgate::telemetry::parse_duration(&text).map_err(|e| {
                    HttpError::invalid("grace_period", format!("grace_period: {e}"))
                })?;
                prost_types::Duration::try_from(duration)
                    .map_err(|_| HttpError::invalid("grace_period", "grace_period is too long"))
            })
            .transpose()?;
        let message = pb::RotateApiKeyRequest { id, grace_period };
        let rotated = answer(api.rotate_api_key(head.request(message)).await)?;
        match (rotated.key, rotated.replaced) {
            (Some(key), Some(replaced)) => Ok(RotatedJson {
                key: key.into(),
                replaced: replaced.into(),
            }),
            _ => Err(missing_in_answer()),
        }
    };
    respond(
        "POST /v1/secrets/api/keys/{id}/rotate",
        StatusCode::CREATED,
        result.await,
    )
}

#[derive(Debug, Serialize)]
struct RoleJson {
    name: String,
    description: String,
    permissions: Vec<String>,
}

#[derive(Debug, Serialize)]
struct RoleList {
    roles: Vec<RoleJson>,
    user_permissions: Vec<String>,
}

async fn list_roles(State(api): State<GrpcApi>, head: Head) -> Response {
    let result = async {
        let message = pb::ListRolesRequest {};
        let list = answer(api.list_roles(head.request(message)).await)?;
        Ok(RoleList {
            roles: list
                .roles
                .into_iter()
                .map(|r| RoleJson {
                    name: r.name,
                    description: r.description,
                    permissions: r.permissions,
                })
                .collect(),
            user_permissions: list.user_permissions,
        })
    };
    respond("GET /v1/roles", StatusCode::OK, result.await)
}
