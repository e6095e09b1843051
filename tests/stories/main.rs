//! End-to-end stories with both services running on 127.0.0.1:0, each on SQLite and on
//! PostgreSQL, by topic. Each guarantee of the README has a story here that fails when the
//! mechanism behind it is taken away.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod access;
mod events;
mod fail_closed;
mod hostile;
mod http_api;
mod meters;
mod revocation;

use std::time::{Duration, Instant};

pub(crate) use tollgate::proto::events::v1 as ev;
pub(crate) use tollgate::proto::identity::v1 as id;
pub(crate) use tollgate_e2e::{Backend, Stack, event, sample, scrape, stories, with_key};
pub(crate) use tonic::Code;

pub(crate) async fn can_read(stack: &Stack, key: &str) -> Result<(), tonic::Status> {
    stack.list_all(key, 50).await.map(|_| ())
}

pub(crate) async fn can_write(stack: &Stack, key: &str) -> Result<(), tonic::Status> {
    stack
        .ingest(key, event("api_call", "cus_1", 1.0))
        .await
        .map(|_| ())
}

/// The id (`sec_…`) of a key the stack's admin can see, found by its display hint.
pub(crate) async fn key_id_of(stack: &Stack, key: &str) -> String {
    let hint = &key[key.len() - 4..];
    stack
        .keys()
        .list_api_keys(with_key(
            &stack.admin_key,
            id::ListApiKeysRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .find(|k| k.display_hint.ends_with(hint))
        .unwrap()
        .id
}

/// Deletes the key `key_id` as the stack's admin.
pub(crate) async fn delete_key(stack: &Stack, key_id: String) {
    stack
        .keys()
        .delete_api_key(with_key(
            &stack.admin_key,
            id::DeleteApiKeyRequest { id: key_id },
        ))
        .await
        .unwrap();
}

/// Calls `attempt` every 50 ms until it returns `Some`, at most until `deadline`; what it
/// returned and when. Waiting for a published bound to pass, not for readiness.
pub(crate) async fn poll_until<T, F, Fut>(deadline: Instant, mut attempt: F) -> Option<(T, Instant)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    loop {
        if let Some(found) = attempt().await {
            return Some((found, Instant::now()));
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
