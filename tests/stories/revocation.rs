//! Revocation: a key deleted (alone or with its account) or rotated to an expiry is refused by
//! event-service as soon as identity-service's revocation stream reaches it, however long the
//! decision cache's TTL; a revocation made while the stream was cut, or identity-service was
//! down, is applied when it is back. Without the stream, a deleted key keeps working for at most
//! the TTL after its decision was cached; never past its own expiry; and a denial is cached for
//! the (shorter) denial TTL.
//!
//! The TTL stories use the key while they wait, so a TTL that reset on every use would keep it
//! working and fail them; and each shows the key still worked after the delete, so a cache that
//! was off (refusing at once) would fail them too.

use tollgate_e2e::Via;

use crate::*;

/// A TTL no story waits for: only the revocation stream can explain a prompt refusal.
const LONG_TTL: Duration = Duration::from_secs(3600);
/// How long a story waits for a pushed revocation before calling the stream broken (it takes
/// milliseconds; the stream reconnects within 5 s of being let through).
const PUSH_DEADLINE: Duration = Duration::from_secs(30);

/// Reads with `key` until refused, at most for [`PUSH_DEADLINE`]; the refusal.
async fn refused_soon(stack: &Stack, key: &str) -> tonic::Status {
    let (err, _) = poll_until(Instant::now() + PUSH_DEADLINE, || async {
        can_read(stack, key).await.err()
    })
    .await
    .unwrap_or_else(|| panic!("a revoked key still worked {PUSH_DEADLINE:?} later"));
    err
}

/// A reader's key, used once so that its decision is cached for [`LONG_TTL`]: (account, key).
async fn cached_reader(stack: &Stack) -> (String, String) {
    let (account, key) = stack.service_account_key(&["event_reader"]).await;
    can_read(stack, &key).await.unwrap();
    (account, key)
}

async fn revoked_keys_are_refused_at_once_whatever_the_ttl(backend: Backend) {
    let stack = Stack::start_with(backend, |s| s.auth_cache_ttl = LONG_TTL).await;
    // A key deleted.
    let (_, key) = cached_reader(&stack).await;
    let key_id = key_id_of(&stack, &key).await;
    delete_key(&stack, key_id).await;
    let err = refused_soon(&stack, &key).await;
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("invalid"), "{err:?}");
    // A deleted account's keys.
    let (account, key) = cached_reader(&stack).await;
    stack
        .users()
        .delete_user(with_key(
            &stack.admin_key,
            id::DeleteUserRequest { id: account },
        ))
        .await
        .unwrap();
    assert_eq!(
        refused_soon(&stack, &key).await.code(),
        Code::Unauthenticated
    );
    // A key rotated with no grace: the old one is refused as expired, the new one works.
    let (_, key) = cached_reader(&stack).await;
    let key_id = key_id_of(&stack, &key).await;
    let rotated = stack
        .keys()
        .rotate_api_key(with_key(
            &stack.admin_key,
            id::RotateApiKeyRequest {
                id: key_id,
                grace_period: Some(prost_types::Duration::default()),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let err = refused_soon(&stack, &key).await;
    assert!(err.message().contains("expired"), "{err:?}");
    can_read(&stack, &rotated.key.unwrap().api_key)
        .await
        .unwrap();

    let metrics = scrape(stack.events_metrics).await;
    assert_eq!(sample(&metrics, "tollgate_revocation_stream_up", &[]), 1.0);
    assert!(sample(&metrics, "tollgate_revocations_total", &["kind=\"key\""]) >= 3.0);
}

async fn a_revocation_made_while_the_stream_was_cut_is_applied_when_it_is_back(backend: Backend) {
    let stack = Stack::start_via(backend, Via::Proxy, |s| s.auth_cache_ttl = LONG_TTL).await;
    // Followed first: the stream's first message flushes what was cached before it.
    wait_for_stream(&stack, 1.0).await;
    let (_, key) = cached_reader(&stack).await;
    let key_id = key_id_of(&stack, &key).await;
    let proxy = stack.proxy.as_ref().unwrap();
    proxy.cut();
    wait_for_stream(&stack, 0.0).await;
    // Deleted while event-service cannot hear of it: the cached decision stands (the TTL
    // bound)...
    delete_key(&stack, key_id).await;
    can_read(&stack, &key)
        .await
        .expect("a cached decision stands while the stream is cut");
    // ...until the stream is back: it resumes after the last change it saw, and the key goes.
    proxy.restore();
    assert_eq!(
        refused_soon(&stack, &key).await.code(),
        Code::Unauthenticated
    );
}

async fn a_revocation_made_while_identity_was_down_is_applied_when_it_is_back(backend: Backend) {
    let mut stack = Stack::start_with(backend, |s| s.auth_cache_ttl = LONG_TTL).await;
    wait_for_stream(&stack, 1.0).await;
    let (account, key) = cached_reader(&stack).await;
    let database = stack.identity.database_url.clone();
    stack.stop_identity().await;
    // The account goes while identity-service is down (as another replica would do it).
    let direct = identity_service::Identity::open(&database).await.unwrap();
    let tenant = tollgate::ids::TenantId::parse(&stack.tenant_id).unwrap();
    let outcome = direct
        .store()
        .delete_user(
            &tenant,
            &tollgate::ids::UserId::parse(&account).unwrap(),
            &identity_service::model::audit::Actor::Command("test"),
        )
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        identity_service::store::DeleteUserOutcome::Deleted {
            revoked_api_keys: 1
        }
    ));
    can_read(&stack, &key)
        .await
        .expect("a cached decision stands while identity-service is down");
    stack.start_identity_again().await;
    assert_eq!(
        refused_soon(&stack, &key).await.code(),
        Code::Unauthenticated
    );
}

/// Waits until event-service's revocation stream gauge reads `up` (it follows connections
/// coming and going, which takes as long as the machine takes).
async fn wait_for_stream(stack: &Stack, up: f64) {
    let (_, _) = poll_until(Instant::now() + PUSH_DEADLINE, || async {
        let metrics = scrape(stack.events_metrics).await;
        (sample(&metrics, "tollgate_revocation_stream_up", &[]) == up).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("the revocation stream gauge never read {up}"));
}

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

async fn without_the_stream_a_deleted_key_works_until_the_ttl_ends_and_never_after(
    backend: Backend,
) {
    let stack = Stack::start_via(backend, Via::NoRevocationStream, |s| {
        s.auth_cache_ttl = TTL;
    })
    .await;
    let (_, key) = stack.service_account_key(&["event_ingestor"]).await;
    can_write(&stack, &key).await.unwrap(); // the decision is cached now
    let cached_by = Instant::now();
    let key_id = key_id_of(&stack, &key).await;
    delete_key(&stack, key_id).await;
    // Deleted, and still cached: it works until the TTL ends (the published bound)...
    can_write(&stack, &key)
        .await
        .expect("a cached decision outlives the delete until its TTL");
    // ...and never after, however often it is used meanwhile.
    let err = refused_within_ttl(&stack, &key, cached_by).await;
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("invalid"), "{err:?}");
}

async fn without_the_stream_a_deleted_accounts_cached_key_stops_within_the_ttl(backend: Backend) {
    let stack = Stack::start_via(backend, Via::NoRevocationStream, |s| {
        s.auth_cache_ttl = TTL;
    })
    .await;
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
    revoked_keys_are_refused_at_once_whatever_the_ttl,
    a_revocation_made_while_the_stream_was_cut_is_applied_when_it_is_back,
    a_revocation_made_while_identity_was_down_is_applied_when_it_is_back,
    without_the_stream_a_deleted_key_works_until_the_ttl_ends_and_never_after,
    without_the_stream_a_deleted_accounts_cached_key_stops_within_the_ttl,
    a_cached_decision_never_outlives_the_keys_expiry,
    denials_are_cached_for_the_denial_ttl,
);
