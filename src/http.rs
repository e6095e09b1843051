//! HTTP/JSON beside gRPC: what both services' HTTP adapters share.
//!
//! An HTTP route reads its JSON body (or query string) into the proto request of the RPC it
//! stands for, calls the same service implementation a gRPC call reaches, and writes the answer
//! as JSON. There is therefore one implementation of each operation, one validation and one set
//! of error texts; what differs is only the framing. A refusal is the gRPC status the operation
//! returned, turned into an HTTP status here and nowhere else.
//!
//! The routes are served on the gRPC port (HTTP/1.1 and HTTP/2, over TLS when the service has
//! TLS), behind the same tower layers.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::Code;
use tonic_types::StatusExt;

/// The OpenAPI 3.1 document of every HTTP route of both services, served at [`OPENAPI_PATH`].
pub const OPENAPI: &str = include_str!("openapi.json");

/// Where each service serves [`OPENAPI`].
pub const OPENAPI_PATH: &str = "/openapi.json";

/// An HTTP route and the gRPC code its answer stands for, as the request metrics label it (a
/// bounded set: the route's pattern, never the path a client sent). The adapters put it in the
/// response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteLabel {
    /// The route, e.g. `POST /v1/events`.
    pub route: &'static str,
    /// What the answer stands for.
    pub code: Code,
}

/// The HTTP status a gRPC code stands for. One table for every route of both services.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        // A state that forbids the request (the last user account, a meter still backfilling)
        // or a conflicting one: the request may succeed once the state changes.
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        // tonic's request timeout cancels with CANCELLED ("Timeout expired").
        Code::DeadlineExceeded | Code::Cancelled => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body of every HTTP error: the message the gRPC status carries, under `error` as the
/// product documentation shows it, the gRPC code in snake case, and the field at fault for
/// bad input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The message, exactly as gRPC gives it.
    pub error: String,
    /// The gRPC code, e.g. `invalid_argument`, `permission_denied`.
    pub code: String,
    /// The request field at fault (INVALID_ARGUMENT only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An HTTP error response.
#[derive(Debug, Clone)]
pub struct HttpError {
    status: StatusCode,
    code: Code,
    body: ErrorBody,
}

impl HttpError {
    /// An error with its own HTTP status, for what only HTTP can get wrong (framing).
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            body: ErrorBody {
                error: message.into(),
                code: code_name(code),
                field: None,
            },
        }
    }

    /// Bad input in `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message);
        error.body.field = Some(field.into());
        error
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<tonic::Status> for HttpError {
    fn from(status: tonic::Status) -> Self {
        let field = status
            .get_details_bad_request()
            .and_then(|details| details.field_violations.into_iter().next())
            .map(|violation| violation.field);
        Self {
            status: http_status(status.code()),
            code: status.code(),
            body: ErrorBody {
                error: status.message().to_owned(),
                code: code_name(status.code()),
                field,
            },
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body)
    }
}

/// `NotFound` → `not_found`: the code's name as the JSON error body spells it.
fn code_name(code: Code) -> String {
    let camel = format!("{code:?}");
    let mut name = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// `value` as a JSON response with `status`.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            // Our own types always serialize; if one ever does not, say so without detail.
            tracing::error!(error = %e, "cannot serialize a response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A successful answer: `value` as JSON with `status`, labelled with its route for metrics.
pub fn reply<T: Serialize>(route: &'static str, status: StatusCode, value: &T) -> Response {
    let mut response = json_response(status, value);
    response.extensions_mut().insert(RouteLabel {
        route,
        code: Code::Ok,
    });
    response
}

/// The outcome of a route: its answer, or the refusal, both labelled with the route.
pub fn respond<T: Serialize>(
    route: &'static str,
    status: StatusCode,
    result: Result<T, HttpError>,
) -> Response {
    match result {
        Ok(value) => reply(route, status, &value),
        Err(error) => {
            let code = error.code;
            let mut response = error.into_response();
            response.extensions_mut().insert(RouteLabel { route, code });
            response
        }
    }
}

/// A JSON request body, parsed into `T`. Refuses (415) a body that is not declared as JSON, so
/// that a form-encoded body (curl's default for `--data`) is not misread; refuses (413) one
/// larger than the router's body limit; and names the field at fault when the JSON does not fit
/// `T`. An empty body reads as `{}`.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        let empty = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        if !declared_json && !empty {
            return Err(HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::InvalidArgument,
                "the request body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let status = rejection.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    Code::ResourceExhausted
                } else {
                    Code::InvalidArgument
                };
                HttpError::new(status, code, rejection.body_text())
            })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        parse_json(bytes).map(Json)
    }
}

/// `bytes` as `T`, or a 400 naming the field the JSON went wrong at.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        // serde_json's message ends in "at line 1 column 30"; a field name says more.
        let message = inner.to_string();
        let message = match message.rfind(" at line ") {
            Some(at) if !inner.is_syntax() && !inner.is_eof() => message[..at].to_owned(),
            _ => message,
        };
        invalid_at(field, "body", "the request body is not valid JSON", message)
    })
}

/// A 400 naming the `field` serde's path points at, or `whole` (described as `what`) when the
/// path names no field: a syntax error ("?") or input of the wrong kind (".").
fn invalid_at(field: String, whole: &str, what: &str, message: String) -> HttpError {
    if field == "." || field == "?" {
        HttpError::invalid(whole, format!("{what}: {message}"))
    } else {
        HttpError::invalid(field.clone(), format!("{field}: {message}"))
    }
}

/// `application/json`, with or without parameters, or any `+json` type.
fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

/// A query string, parsed into `T`; an unknown or malformed parameter is a 400 naming it.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|e| {
                let field = e.path().to_string();
                invalid_at(field, "query", "query string", e.into_inner().to_string())
            })
    }
}

/// An enum field as JSON spells it (`"service_account"`, `"day"`): each name and the value it
/// stands for.
pub type Names<T> = &'static [(&'static str, T)];

/// The value `text` names, `unset` when absent; any other name is a 400 listing the accepted
/// ones.
pub fn named<T: Copy>(
    field: &str,
    names: Names<T>,
    text: Option<&str>,
    unset: T,
) -> Result<T, HttpError> {
    let Some(text) = text else {
        return Ok(unset);
    };
    names
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let accepted: Vec<String> = names.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            HttpError::invalid(
                field,
                format!(
                    "{field} must be {} (or unset), not {text:?}",
                    accepted.join(", ")
                ),
            )
        })
}

/// The name of proto enum value `value` (as its `i32`), or `"unspecified"`.
pub fn name_of<T: Copy + Into<i32>>(names: Names<T>, value: i32) -> &'static str {
    names
        .iter()
        .find(|(_, v)| (*v).into() == value)
        .map_or("unspecified", |(name, _)| name)
}

/// An optional RFC 3339 field as a proto timestamp, or a 400 naming it.
pub fn timestamp_field(
    field: &str,
    value: Option<&str>,
) -> Result<Option<prost_types::Timestamp>, HttpError> {
    value
        .map(|text| {
            rfc3339::parse(text)
                .map(crate::time::to_proto)
                .map_err(|e| HttpError::invalid(field, format!("{field}: {e}")))
        })
        .transpose()
}

/// An answer without the message it always carries: a fault of ours, said generically.
pub fn missing_in_answer() -> HttpError {
    tracing::error!("an RPC answered without its message");
    tonic::Status::internal("internal error").into()
}

/// An empty page token as absent, as JSON shows it.
pub fn next_token(token: String) -> Option<String> {
    (!token.is_empty()).then_some(token)
}

/// The head of an HTTP request, from which the gRPC request it stands for is made: its headers
/// become metadata (the API key headers among them, read by the same code as for gRPC) and its
/// extensions (the peer's address and certificates, the principal) carry over.
#[derive(Debug, Clone)]
pub struct Head {
    headers: HeaderMap,
    extensions: http::Extensions,
}

impl Head {
    /// The head of `parts`.
    pub fn new(parts: http::request::Parts) -> Self {
        Self {
            headers: parts.headers,
            extensions: parts.extensions,
        }
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The request's extensions, e.g. to add the principal.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }

    /// An HTTP request with this head and `body`.
    pub fn with_body<B>(&self, body: B) -> http::Request<B> {
        let mut request = http::Request::new(body);
        *request.headers_mut() = self.headers.clone();
        *request.extensions_mut() = self.extensions.clone();
        request
    }

    /// The gRPC request `message` stands for.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        tonic::Request::from_http(self.with_body(message))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Head {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            headers: parts.headers.clone(),
            extensions: parts.extensions.clone(),
        })
    }
}

/// What a gRPC call answered, as the HTTP route's result.
pub fn answer<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<T, HttpError> {
    result.map(tonic::Response::into_inner).map_err(Into::into)
}

/// `routes` (a service's gRPC routes) with the HTTP router `http` beside them on the same port,
/// plus the OpenAPI document and a JSON 404 for any other `/v1/` path. Bodies are bounded by
/// `body_limit`, the same bound as a gRPC message.
pub fn beside_grpc(
    mut routes: tonic::service::Routes,
    http: axum::Router,
    body_limit: usize,
) -> tonic::service::Routes {
    let http = http
        .route(OPENAPI_PATH, axum::routing::get(openapi))
        .route("/v1/{*rest}", axum::routing::any(no_route))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit));
    let grpc = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = grpc.merge(http);
    routes
}

/// The OpenAPI document, as `GET /openapi.json` serves it.
pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

/// The answer to a path no route serves, as JSON like every other error.
pub async fn no_route() -> Response {
    HttpError::new(
        StatusCode::NOT_FOUND,
        Code::NotFound,
        format!("no such route; the routes are listed at {OPENAPI_PATH}"),
    )
    .into_response()
}

/// Timestamps as the JSON API writes and reads them: RFC 3339, UTC.
pub mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};

    /// `t` as RFC 3339 in UTC, with as many fractional digits as it has (none for whole
    /// seconds), e.g. `2025-11-14T10:00:00Z`.
    pub fn format(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// `text` as a time, or why it is not one.
    pub fn parse(text: &str) -> Result<DateTime<Utc>, String> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                format!("{text:?} is not an RFC 3339 time ({e}), e.g. 2025-11-14T10:00:00Z")
            })
    }

    /// A proto timestamp as RFC 3339, if it is one.
    pub fn from_proto(t: Option<&prost_types::Timestamp>) -> Option<String> {
        t.and_then(crate::time::from_proto).map(format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_its_documented_status() {
        let cases = [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::FailedPrecondition, 409),
            (Code::AlreadyExists, 409),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::Internal, 500),
        ];
        for (code, status) in cases {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
        assert_eq!(code_name(Code::PermissionDenied), "permission_denied");
        assert_eq!(code_name(Code::Ok), "ok");
    }

    #[test]
    fn a_bad_request_detail_becomes_the_field() {
        let status: tonic::Status = crate::invalid::Invalid::new("roles", "Invalid role: x").into();
        let error = HttpError::from(status);
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error.body.field.as_deref(), Some("roles"));
        assert_eq!(error.body.error, "Invalid role: x");
        assert_eq!(error.body.code, "invalid_argument");
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            name: String,
            roles: Vec<String>,
        }
        let e = parse_json::<Body>(br#"{"name":"a","roles":"x"}"#).unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("roles"));
        assert!(
            e.body.error.starts_with("roles: invalid type"),
            "{}",
            e.body.error
        );
        let e = parse_json::<Body>(br#"{"name":"a","roles":[],"rolez":1}"#).unwrap_err();
        assert!(
            e.body.error.contains("unknown field `rolez`"),
            "{}",
            e.body.error
        );
        let e = parse_json::<Body>(b"{not json").unwrap_err();
        assert_eq!(e.body.field.as_deref(), Some("body"));
    }

    #[test]
    fn json_media_types() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json_media_type(yes), "{yes}");
        }
        for no in ["application/x-www-form-urlencoded", "text/plain", ""] {
            assert!(!is_json_media_type(no), "{no}");
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = rfc3339::parse("2025-11-14T11:00:00+01:00").unwrap();
        assert_eq!(rfc3339::format(t), "2025-11-14T10:00:00Z");
        assert!(rfc3339::parse("<string>").is_err());
    }

    #[test]
    fn the_openapi_document_is_json() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    }
}
