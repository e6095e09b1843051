//! event-service: ingests and reads usage events. Every request is authorized by
//! identity-service through a short-lived cache ([`authz`]); the tenant and environment of every
//! read and write come from the authorized key, never from the request.
#![forbid(unsafe_code)]

pub mod authz;
pub mod config;
pub mod error;
pub mod events;
pub mod grpc;
pub mod metrics;
pub mod startup;
pub mod store;

pub use error::EventError;
