//! Failing closed: with no decision to be had from identity-service (unreachable, stalled,
//! failing, answering nonsense), a request is refused with UNAVAILABLE, never allowed and never
//! called an invalid key; and concurrent misses for one key make one `Authorize` call.

use tollgate::keys::{ApiKeySecret, Environment};
use tollgate_e2e::{FakeAnswer, FakeIdentity};

use crate::*;

async fn with_identity_down_an_uncached_key_fails_closed(backend: Backend) {
    let mut stack = Stack::start_on(backend).await;
    let (_, cached) = stack.service_account_key(&["event_ingestor"]).await;
    let (_, uncached) = stack.service_account_key(&["event_ingestor"]).await;
    can_write(&stack, &cached).await.unwrap();
    stack.identity.shut_down().await;

    for _ in 0..3 {
        let err = can_write(&stack, &uncached).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
    // A well-formed key nobody ever issued is not called invalid either: nobody could check.
    let forged =
        tollgate::keys::ApiKeySecret::generate(tollgate::keys::Environment::Production).unwrap();
    assert_eq!(
        can_write(&stack, forged.expose()).await.unwrap_err().code(),
        Code::Unavailable
    );
    // A decision cached before the outage is honoured until its TTL.
    can_write(&stack, &cached).await.unwrap();
}

/// event-service in front of a fake identity-service answering as told.
async fn in_front_of(backend: Backend, fake: &FakeIdentity, timeout: Duration) -> Stack {
    let url = fake.url.clone();
    Stack::start_with(backend, move |s| {
        s.identity_url = url;
        s.identity_timeout = timeout;
    })
    .await
}

fn any_key() -> String {
    ApiKeySecret::generate(Environment::Production)
        .unwrap()
        .expose()
        .to_owned()
}

async fn a_stalled_identity_fails_closed_at_the_timeout(backend: Backend) {
    let fake = FakeIdentity::start(FakeAnswer::Hang).await;
    let timeout = Duration::from_millis(500);
    let stack = in_front_of(backend, &fake, timeout).await;
    let started = Instant::now();
    let key = any_key();
    let err = tokio::time::timeout(timeout * 10, can_write(&stack, &key))
        .await
        .expect("the request waited on the stalled identity-service past its timeout")
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(started.elapsed() >= timeout, "gave up before the timeout");
    assert_eq!(fake.calls(), 1);
}

async fn a_failing_or_unreadable_identity_fails_closed(backend: Backend) {
    for answer in [FakeAnswer::Internal, FakeAnswer::Unreadable] {
        let fake = FakeIdentity::start(answer.clone()).await;
        let stack = in_front_of(backend, &fake, Duration::from_secs(2)).await;
        for _ in 0..2 {
            let err = can_write(&stack, &any_key()).await.unwrap_err();
            assert_eq!(err.code(), Code::Unavailable, "{answer:?}: {err:?}");
            assert!(!err.message().contains("invalid"), "{err:?}");
        }
        assert!(fake.calls() >= 2, "a failure is not cached: {answer:?}");
    }
}

async fn a_cached_decision_that_expires_while_identity_is_down_fails_closed(backend: Backend) {
    let ttl = Duration::from_secs(2);
    let mut stack = Stack::start_with(backend, |s| s.auth_cache_ttl = ttl).await;
    let (_, key) = stack.service_account_key(&["event_ingestor"]).await;
    can_write(&stack, &key).await.unwrap();
    let cached_by = Instant::now();
    stack.identity.shut_down().await;
    can_write(&stack, &key)
        .await
        .expect("a decision cached before the outage holds until its TTL");
    let (err, _) = poll_until(cached_by + ttl + Duration::from_millis(1500), || async {
        can_write(&stack, &key).await.err()
    })
    .await
    .expect("the cached decision outlived its TTL");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

async fn concurrent_misses_for_one_key_make_one_authorize_call(backend: Backend) {
    // Each call takes long enough that all 32 requests miss while it is in flight: without
    // single flight each would make its own.
    let fake = FakeIdentity::start(FakeAnswer::AllowAfter(Duration::from_millis(500))).await;
    let stack = in_front_of(backend, &fake, Duration::from_secs(5)).await;
    let key = any_key();
    let sends: Vec<_> = (0..32)
        .map(|i| {
            let (mut events, key) = (stack.events(), key.clone());
            tokio::spawn(async move {
                events
                    .ingest_event(with_key(
                        &key,
                        ev::IngestEventRequest {
                            event: Some(event("api_call", &format!("c{i}"), 1.0)),
                        },
                    ))
                    .await
            })
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    assert_eq!(
        fake.calls(),
        1,
        "one Authorize call for 32 concurrent misses"
    );
}

async fn a_decision_answered_before_a_revocation_is_not_kept_after_it(backend: Backend) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let fake = FakeIdentity::start(FakeAnswer::AllowWhen(permits.clone())).await;
    let stack = in_front_of(backend, &fake, Duration::from_secs(60)).await;
    let key = any_key();
    // A request misses, and its Authorize call is held in flight...
    let first = {
        let stack_key = key.clone();
        let mut events = stack.events();
        tokio::spawn(async move {
            events
                .ingest_event(with_key(
                    &stack_key,
                    ev::IngestEventRequest {
                        event: Some(event("api_call", "c1", 1.0)),
                    },
                ))
                .await
        })
    };
    poll_until(Instant::now() + Duration::from_secs(30), || async {
        (fake.calls() == 1).then_some(())
    })
    .await
    .expect("the first request never reached identity-service");
    // ...while a revocation of the key arrives (as the stream delivers it)...
    let secret: ApiKeySecret = key.parse().unwrap();
    stack.auth_cache.revoke(&secret.digest()).await;
    // ...and then the answer, given before the revocation, comes back: it serves the request
    // that raced the revocation, but the next request must ask again.
    permits.add_permits(2);
    first.await.unwrap().unwrap();
    can_write(&stack, &key).await.unwrap();
    assert_eq!(
        fake.calls(),
        2,
        "a decision from before the revocation was cached after it"
    );
}

stories!(
    a_decision_answered_before_a_revocation_is_not_kept_after_it,
    with_identity_down_an_uncached_key_fails_closed,
    a_stalled_identity_fails_closed_at_the_timeout,
    a_failing_or_unreadable_identity_fails_closed,
    a_cached_decision_that_expires_while_identity_is_down_fails_closed,
    concurrent_misses_for_one_key_make_one_authorize_call,
);
