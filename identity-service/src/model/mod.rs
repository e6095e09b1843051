//! The identity domain's types, below every operation and the store: tenants, accounts, roles,
//! keys and principals, each validated where it is built from client input.

pub mod api_keys;
pub mod audit;
pub mod principal;
pub mod roles;
pub mod tenants;
pub mod users;
