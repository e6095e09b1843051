//! identity-service's gRPC API on 127.0.0.1:0, by topic: the seed stories and what they leave
//! open.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod accounts;
mod authorization;
mod keys;
mod lifecycle;
mod serving;

pub(crate) use identity_service::testing::TestIdentity;
pub(crate) use tollgate::proto::identity::v1 as pb;
pub(crate) use tollgate::testing::{digest, with_key};
pub(crate) use tonic::Code;
pub(crate) use tonic_types::StatusExt;

pub(crate) fn service_account_request(roles: &[&str]) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        r#type: pb::UserType::ServiceAccount.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        name: String::new(),
    }
}

/// Asserts INVALID_ARGUMENT with `message`, and BadRequest details naming `field`.
pub(crate) fn assert_invalid(status: &tonic::Status, field: &str, message: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), message);
    let bad_request = status
        .get_details_bad_request()
        .expect("BadRequest details");
    assert_eq!(bad_request.field_violations[0].field, field);
    assert_eq!(bad_request.field_violations[0].description, message);
}

/// Asserts INVALID_ARGUMENT naming `field` in its message and its BadRequest details.
pub(crate) fn assert_invalid_field(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(field), "{status:?}");
    let bad_request = status
        .get_details_bad_request()
        .expect("BadRequest details");
    assert_eq!(bad_request.field_violations[0].field, field);
}
