//! Who may do what: roles, keys that keep their roles, expiry, and the metrics of it all.

use crate::*;

async fn roles_decide_what_a_key_may_do(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let (_, ingestor) = stack.service_account_key(&["event_ingestor"]).await;
    let (_, reader) = stack.service_account_key(&["event_reader"]).await;
    let (_, both) = stack
        .service_account_key(&["event_ingestor", "event_reader"])
        .await;

    can_write(&stack, &ingestor).await.unwrap();
    let err = can_read(&stack, &ingestor).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("event:read"), "{err:?}");

    can_read(&stack, &reader).await.unwrap();
    let err = can_write(&stack, &reader).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("event:write"), "{err:?}");

    can_write(&stack, &both).await.unwrap();
    can_read(&stack, &both).await.unwrap();
    can_write(&stack, &stack.admin_key).await.unwrap();
    assert_eq!(stack.list_all(&stack.admin_key, 10).await.unwrap().len(), 3);

    // No key, a malformed key: refused before any lookup.
    let err = stack
        .events()
        .list_events(ev::ListEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("missing"));
    let err = can_read(&stack, "sk_live_nope").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("malformed"));
}

async fn a_key_created_before_a_role_update_keeps_its_roles(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let (account, old_key) = stack.service_account_key(&["event_ingestor"]).await;
    stack
        .users()
        .update_user_roles(with_key(
            &stack.admin_key,
            id::UpdateUserRolesRequest {
                id: account.clone(),
                roles: vec!["event_reader".into()],
            },
        ))
        .await
        .unwrap();
    can_write(&stack, &old_key).await.unwrap();
    assert_eq!(
        can_read(&stack, &old_key).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    let new_key = stack
        .create_key(Some(&account), id::Environment::Unspecified)
        .await
        .api_key;
    can_read(&stack, &new_key).await.unwrap();
    assert_eq!(
        can_write(&stack, &new_key).await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

async fn an_expired_key_is_refused(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let expired = stack.identity.insert_expired_key().await;
    let err = can_read(&stack, &expired).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{err:?}");
}

async fn metrics_reflect_the_traffic(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let (_, ingestor) = stack.service_account_key(&["event_ingestor"]).await;
    for i in 0..5 {
        stack
            .ingest(&ingestor, event("api_call", &format!("c{i}"), 1.0))
            .await
            .unwrap();
    }
    assert_eq!(
        can_read(&stack, &ingestor).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    let events = scrape(stack.events_metrics).await;
    let ingest = r#"method="/tollgate.events.v1.EventService/IngestEvent""#;
    assert_eq!(
        sample(
            &events,
            "tollgate_grpc_requests_total",
            &[ingest, r#"code="Ok""#]
        ),
        5.0,
        "{events}"
    );
    let list = r#"method="/tollgate.events.v1.EventService/ListEvents""#;
    assert_eq!(
        sample(
            &events,
            "tollgate_grpc_requests_total",
            &[list, r#"code="PermissionDenied""#]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &events,
            "tollgate_grpc_request_duration_seconds_count",
            &[ingest]
        ),
        5.0
    );
    assert_eq!(
        sample(
            &events,
            "tollgate_auth_cache_lookups_total",
            &[r#"result="hit""#]
        ),
        4.0
    );
    assert_eq!(
        sample(
            &events,
            "tollgate_auth_cache_lookups_total",
            &[r#"result="miss""#]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &events,
            "tollgate_authorize_calls_total",
            &[r#"outcome="ok""#]
        ),
        2.0
    );
    assert_eq!(
        sample(&events, "tollgate_ingest_commit_events_sum", &[]),
        5.0
    );
    assert!(
        sample(
            &events,
            "tollgate_ingest_commits_total",
            &[r#"result="ok""#]
        ) >= 1.0
    );
    assert!(
        sample(
            &events,
            "tollgate_ingest_commit_duration_seconds_count",
            &[]
        ) >= 1.0
    );
    // On SQLite every commit was synced, and one sync may cover several; PostgreSQL's commits
    // are durable as they return.
    let syncs = sample(&events, "tollgate_ingest_sync_duration_seconds_count", &[]);
    let commits = sample(
        &events,
        "tollgate_ingest_commits_total",
        &[r#"result="ok""#],
    );
    match backend {
        Backend::Sqlite => assert!((1.0..=commits).contains(&syncs), "{syncs} syncs"),
        Backend::Postgres => assert_eq!(syncs, 0.0),
    }
    assert!(sample(&events, "tollgate_db_pool_connections", &[]) >= 1.0);
    assert!(events.contains(r#"service="event-service""#));
    assert!(!events.contains(&ingestor), "no key in metrics");

    let identity = scrape(stack.identity_metrics).await;
    assert_eq!(
        sample(
            &identity,
            "tollgate_authorize_decisions_total",
            &[r#"reason="allowed""#]
        ),
        1.0,
        "{identity}"
    );
    assert_eq!(
        sample(
            &identity,
            "tollgate_authorize_decisions_total",
            &[r#"reason="permission_missing""#]
        ),
        1.0
    );
    let create = r#"method="/tollgate.identity.v1.ApiKeyService/CreateApiKey""#;
    assert_eq!(
        sample(
            &identity,
            "tollgate_grpc_requests_total",
            &[create, r#"code="Ok""#]
        ),
        1.0
    );
    assert!(sample(&identity, "tollgate_key_cache_lookups_total", &[]) >= 3.0);
}

stories!(
    roles_decide_what_a_key_may_do,
    a_key_created_before_a_role_update_keeps_its_roles,
    an_expired_key_is_refused,
    metrics_reflect_the_traffic,
);
