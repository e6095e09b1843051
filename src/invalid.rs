//! Client input a service refuses, named by the field at fault: INVALID_ARGUMENT with a
//! `google.rpc.BadRequest` detail, whichever service refuses it.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A request field and what is wrong with it, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// The request field at fault, e.g. `roles` or `events[3].event_name`.
    pub field: String,
    /// The whole message the client sees.
    pub message: String,
}

impl Invalid {
    /// `message` as given, about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A message that starts with the field's name: `"{field} {problem}"`.
    pub fn field(field: impl Into<String>, problem: impl std::fmt::Display) -> Self {
        let field = field.into();
        Self {
            message: format!("{field} {problem}"),
            field,
        }
    }
}

impl From<Invalid> for Status {
    fn from(e: Invalid) -> Self {
        let details = ErrorDetails::with_bad_request_violation(e.field, e.message.clone());
        Status::with_error_details(Code::InvalidArgument, e.message, details)
    }
}
