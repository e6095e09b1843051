//! Tollgate's shared API crate: the generated gRPC modules and the few types both services share
//! (ids, the API key format, permissions, metadata header names, paging, input errors), and the
//! plumbing both serve with (database URLs and pools, running a statement on either backend,
//! telemetry, health, drain). No business logic and no SQL statement live here: each service
//! writes its own.
#![forbid(unsafe_code)]

pub mod args;
pub mod base62;
pub mod codec;
pub mod database;
pub mod http;
pub mod ids;
pub mod invalid;
pub mod json;
pub mod keys;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod paging;
pub mod permissions;
#[cfg(feature = "testing")]
pub mod process;
pub mod server;
pub mod sql;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod tls;

/// Generated protobuf and gRPC code.
pub mod proto {
    /// `tollgate.identity.v1`: users, service accounts, roles, API keys and Authorize.
    pub mod identity {
        #[allow(missing_docs, clippy::all, missing_debug_implementations)]
        pub mod v1 {
            tonic::include_proto!("tollgate.identity.v1");
        }
    }
    /// `tollgate.events.v1`: usage events.
    pub mod events {
        #[allow(missing_docs, clippy::all, missing_debug_implementations)]
        pub mod v1 {
            tonic::include_proto!("tollgate.events.v1");
        }
    }
}

/// The encoded `FileDescriptorSet` of every Tollgate proto and its imports, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tollgate_descriptor.bin"));
