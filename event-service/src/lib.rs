//! event-service: ingests and reads usage events. Every request is authorized by
//! identity-service through a short-lived cache ([`authz`]); the tenant and environment of every
//! read and write come from the authorized key, never from the request.
//!
//! Imports run one way: the gRPC adapter ([`grpc`]), and the HTTP/JSON adapter ([`http`]) that
//! frames the same calls as JSON, convert wire types into the domain types of
//! [`model`] and calls [`events::Events`], which validates and hands writes to the group-commit
//! [`writer`] and reads to the [`store`], and [`meters::Meters`], whose figures the store keeps
//! as it writes events.
#![forbid(unsafe_code)]

pub mod authz;
pub mod config;
pub mod error;
pub mod events;
pub mod grpc;
pub mod http;
pub mod meters;
pub mod metrics;
pub mod model;
pub mod startup;
pub mod store;
pub mod writer;

pub use error::EventError;
