//! The one error type of event-service, and its one mapping onto gRPC status codes.

use tollgate::invalid::Invalid;
use tonic::Status;

use crate::store::StoreError;

/// Everything an event operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Bad input, naming the field (with the batch index where there is one).
    #[error(transparent)]
    InvalidArgument(#[from] Invalid),
    /// No such event in the caller's tenant and environment.
    #[error("event {0} not found")]
    NotFound(String),
    /// No such meter in the caller's tenant and environment.
    #[error("meter {0} not found")]
    MeterNotFound(String),
    /// A meter with this key exists already.
    #[error("meter {0} exists already in this tenant and environment")]
    MeterExists(String),
    /// The request is valid but the state does not allow an answer yet (a meter's backfill).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A fault of ours. The client gets a generic message; the cause is logged.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database could not be reached; nothing the request asked for can be known to be
    /// done, and the same request may be retried (an event's id makes a resend safe).
    #[error("the event database is unavailable; retry with the same event ids")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The service is shutting down and no longer takes writes.
    #[error("event-service is shutting down; retry on another replica")]
    ShuttingDown,
}

impl EventError {
    /// An [`EventError::InvalidArgument`] for `field`; the message starts with the field's name.
    pub fn invalid(field: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        Self::InvalidArgument(Invalid::field(field, problem))
    }
}

impl EventError {
    /// A store failure carrying `cause`: [`EventError::Unavailable`] if the database could not
    /// be reached (`unavailable`), else a fault of ours.
    pub(crate) fn store(
        unavailable: bool,
        cause: Box<dyn std::error::Error + Send + Sync>,
    ) -> Self {
        if unavailable {
            Self::Unavailable(cause)
        } else {
            Self::Internal(cause)
        }
    }
}

impl From<StoreError> for EventError {
    fn from(e: StoreError) -> Self {
        Self::store(e.is_unavailable(), Box::new(e))
    }
}

impl From<EventError> for Status {
    fn from(e: EventError) -> Self {
        match e {
            EventError::InvalidArgument(invalid) => invalid.into(),
            EventError::NotFound(_) | EventError::MeterNotFound(_) => {
                Status::not_found(e.to_string())
            }
            EventError::MeterExists(_) => Status::already_exists(e.to_string()),
            EventError::FailedPrecondition(m) => Status::failed_precondition(m),
            EventError::ShuttingDown => Status::unavailable(e.to_string()),
            EventError::Unavailable(ref cause) => {
                tracing::warn!(error = %tollgate::telemetry::error_chain(cause.as_ref()), "database unavailable");
                Status::unavailable(e.to_string())
            }
            EventError::Internal(cause) => {
                tracing::error!(error = %tollgate::telemetry::error_chain(cause.as_ref()), "internal error");
                Status::internal("internal error")
            }
        }
    }
}
