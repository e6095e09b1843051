//! The revocation bound: a deleted key, or a key of a deleted account, keeps working for at most
//! the decision cache's TTL after the decision was cached; never past its own expiry; and a
//! denial is cached for the (shorter) denial TTL.
//!
//! Each story uses the key while it waits, so a TTL that reset on every use would keep it
//! working and fail the story; and each shows the key still worked after the delete, so a cache
//! that was off (refusing at once) would fail it too.

use crate::*;

/// Long enough that the first use right after the delete falls inside it on a slow machine.
const TTL: Duration = Duration::from_secs(3);
/// Scheduling slack allowed past a bound before a story calls it broken.
const SLACK: Duration = Duration::from_millis(1500);

/// Uses `key` every 50 ms until it is refused; asserts that happens within TTL (+ slack) of
/// `cached_by` (when the decision was cached at the latest), and returns the refusal.
async fn refused_within_ttl(stack: &Stack, key: &str, cached_by: Instant) -> tonic::Status {
    let (err, at) = poll_until(cached_by + TTL + SLACK, || async {
        can_write(stack, key).await.err()
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the key still worked {:?} after its decision was cached",
            TTL + SLACK
        )
    });
    assert!(
        at <= cached_by + TTL + SLACK,
        "refused only after {:?}",
        at - cached_by
    );
    err
}

async fn a_deleted_key_works_until_the_ttl_ends_and_never_after(backend: Backend) {
    let stack = Stack::start_with(backend, |s| s.auth_cache_ttl = TTL).await;
    let (_, key) = stack.service_account_key(&["event_ingestor"]).await;
    can_write(&stack, &key).await.unwrap(); // the decision is cached now
    let cached_by = Instant::now();
    let key_id = key_id_of(&stack, &key).await;
    stack
        .keys()
        .delete_api_key(with_key(
            &stack.admin_key,
            id::DeleteApiKeyRequest { id: key_id },
        ))
        .await
        .unwrap();
    // Deleted, and still cached: it works until the TTL ends (the published bound)...
    can_write(&stack, &key)
        .await
        .expect("a cached decision outlives the delete until its TTL");
    // ...and never after, however often it is used meanwhile.
    let err = refused_within_ttl(&stack, &key, cached_by).await;
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("invalid"), "{err:?}");
}

async fn a_deleted_accounts_cached_key_stops_within_the_ttl(backend: Backend) {
    let stack = Stack::start_with(backend, |s| s.auth_cache_ttl = TTL).await;
    let (account, key) = stack.service_account_key(&["event_ingestor"]).await;
    can_write(&stack, &key).await.unwrap();
    let cached_by = Instant::now();
    stack
        .users()
        .delete_user(with_key(
            &stack.admin_key,
            id::DeleteUserRequest { id: account },
        ))
        .await
        .unwrap();
    can_write(&stack, &key)
        .await
        .expect("a cached decision outlives the account until its TTL");
    let err = refused_within_ttl(&stack, &key, cached_by).await;
    assert_eq!(err.code(), Code::Unauthenticated);
    // A key of the deleted account that was never cached is refused at once.
}

async fn a_cached_decision_never_outlives_the_keys_expiry(backend: Backend) {
    // A TTL far longer than the key's life: the key's expiry must bound the cached decision.
    let stack = Stack::start_with(backend, |s| s.auth_cache_ttl = Duration::from_secs(60)).await;
    let account = stack.identity.service_account(&["event_ingestor"]).await;
    let expires_at = tollgate::time::now() + chrono::Duration::seconds(2);
    let key = stack
        .keys()
        .create_api_key(with_key(
            &stack.admin_key,
            id::CreateApiKeyRequest {
                name: "short-lived".into(),
                service_account_id: account,
                expires_at: Some(tollgate::time::to_proto(expires_at)),
                environment: id::Environment::Unspecified.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key;
    can_write(&stack, &key).await.unwrap();
    let calls = stack.auth_cache.identity_calls();
    let expiry = Instant::now()
        + (expires_at - tollgate::time::now())
            .to_std()
            .unwrap_or_default();
    let (err, _) = poll_until(expiry + SLACK, || async {
        can_write(&stack, &key).await.err()
    })
    .await
    .expect("an expired key keeps working");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{err:?}");
    // The cached decision itself ended with the key: the refusal came from asking again, not
    // from a decision that outlived the key in the cache.
    assert!(
        stack.auth_cache.identity_calls() > calls,
        "the decision was still cached after the key expired"
    );
}

async fn denials_are_cached_for_the_denial_ttl(backend: Backend) {
    let denial_ttl = Duration::from_secs(2);
    let stack = Stack::start_with(backend, |s| s.auth_denial_ttl = denial_ttl).await;
    // A well-formed key that does not exist yet: denied, and the denial is cached.
    let (key, secret) = stack.identity.new_key_record(&["event_ingestor"]).await;
    let calls = stack.auth_cache.identity_calls();
    let err = can_write(&stack, secret.expose()).await.unwrap_err();
    let denied_by = Instant::now();
    assert_eq!(err.code(), Code::Unauthenticated);
    // The key now exists (written behind the services' backs); the denial still holds.
    stack.identity.store_key(&key).await;
    assert_eq!(
        can_write(&stack, secret.expose()).await.unwrap_err().code(),
        Code::Unauthenticated,
        "a denial is cached"
    );
    assert_eq!(
        stack.auth_cache.identity_calls() - calls,
        1,
        "the cached denial answered the second request"
    );
    // Once the denial TTL has passed the key is asked about again, and works.
    let (_, at) = poll_until(denied_by + denial_ttl + SLACK, || async {
        can_write(&stack, secret.expose()).await.ok()
    })
    .await
    .expect("the denial outlived its TTL");
    assert!(at >= denied_by, "{at:?}");
}

stories!(
    a_deleted_key_works_until_the_ttl_ends_and_never_after,
    a_deleted_accounts_cached_key_stops_within_the_ttl,
    a_cached_decision_never_outlives_the_keys_expiry,
    denials_are_cached_for_the_denial_ttl,
);
