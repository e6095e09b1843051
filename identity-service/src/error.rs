//! The one error type of identity-service, and its one mapping onto gRPC status codes.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::store::StoreError;

/// Everything an identity operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Bad input. `message` is what the client sees; `field` goes into `google.rpc.BadRequest`.
    #[error("{message}")]
    InvalidArgument {
        /// The request field at fault.
        field: &'static str,
        /// What is wrong, in words a person can act on.
        message: String,
    },
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
    /// The internal credential for `Authorize` is missing or wrong.
    #[error(
        "Authorize needs the internal credential: the x-tollgate-internal-token header or a client certificate"
    )]
    InternalCredential,
    /// A fault of ours. The client gets a generic message; the cause is logged.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl IdentityError {
    /// An [`IdentityError::InvalidArgument`] for `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            message: message.into(),
        }
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
        Self::internal(e)
    }
}

impl From<IdentityError> for Status {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::InvalidArgument { field, message } => {
                let details = ErrorDetails::with_bad_request_violation(field, message.clone());
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            IdentityError::Unauthenticated(m) => Status::unauthenticated(m),
            IdentityError::InternalCredential => Status::unauthenticated(e.to_string()),
            IdentityError::PermissionDenied(m) => Status::permission_denied(m),
            IdentityError::NotFound { .. } => Status::not_found(e.to_string()),
            IdentityError::FailedPrecondition(m) => Status::failed_precondition(m),
            IdentityError::Internal(cause) => {
                tracing::error!(error = %tollgate::telemetry::error_chain(cause.as_ref()), "internal error");
                Status::internal("internal error")
            }
        }
    }
}
