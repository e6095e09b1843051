//! The one error type of identity-service, and its one mapping onto gRPC status codes.

use tollgate::invalid::Invalid;
use tollgate::keys::RandomnessError;
use tonic::Status;

use crate::model::principal::{MissingPermission, OutOfReach};
use crate::store::StoreError;

/// Everything an identity operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Bad input, naming the field (it goes into `google.rpc.BadRequest`).
    #[error(transparent)]
    InvalidArgument(#[from] Invalid),
    /// No key, a malformed key, or an unknown, deleted or expired key.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid key without the needed permission.
    #[error("{0}")]
    PermissionDenied(String),
    /// No such thing in the caller's tenant.
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of thing (`user`, `API key`).
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request is valid but the state forbids it (deleting the last user account).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Not available now; the caller may try again.
    #[error("{0}")]
    Unavailable(String),
    /// The internal credential for `Authorize` and `WatchRevocations` is missing or wrong.
    #[error(
        "this call needs the internal credential: the x-tollgate-internal-token header or a client certificate"
    )]
    InternalCredential,
    /// A fault of ours. The client gets a generic message; the cause is logged.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl IdentityError {
    /// An [`IdentityError::InvalidArgument`] for `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument(Invalid::new(field, message))
    }

    /// An [`IdentityError::NotFound`].
    pub fn not_found(what: &'static str, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// A fault of ours.
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(cause))
    }
}

impl From<StoreError> for IdentityError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %tollgate::telemetry::error_chain(&e), "database unavailable");
            Self::Unavailable("the identity database is unavailable; retry".into())
        } else {
            Self::internal(e)
        }
    }
}

impl From<RandomnessError> for IdentityError {
    fn from(e: RandomnessError) -> Self {
        Self::internal(e)
    }
}

impl From<OutOfReach> for IdentityError {
    fn from(e: OutOfReach) -> Self {
        Self::PermissionDenied(e.to_string())
    }
}

impl From<MissingPermission> for IdentityError {
    fn from(e: MissingPermission) -> Self {
        Self::PermissionDenied(e.to_string())
    }
}

impl From<IdentityError> for Status {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::InvalidArgument(invalid) => invalid.into(),
            IdentityError::Unauthenticated(m) => Status::unauthenticated(m),
            IdentityError::InternalCredential => Status::unauthenticated(e.to_string()),
            IdentityError::PermissionDenied(m) => Status::permission_denied(m),
            IdentityError::NotFound { .. } => Status::not_found(e.to_string()),
            IdentityError::FailedPrecondition(m) => Status::failed_precondition(m),
            IdentityError::Unavailable(m) => Status::unavailable(m),
            IdentityError::Internal(cause) => {
                tracing::error!(error = %tollgate::telemetry::error_chain(cause.as_ref()), "internal error");
                Status::internal("internal error")
            }
        }
    }
}
