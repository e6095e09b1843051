//! End-to-end stories with both services running on 127.0.0.1:0.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use tollgate::proto::events::v1 as ev;
use tollgate::proto::identity::v1 as id;
use tollgate_e2e::{Stack, event, sample, scrape, with_key};
use tonic::Code;

async fn can_read(stack: &Stack, key: &str) -> Result<(), tonic::Status> {
    stack.list_all(key, 50).await.map(|_| ())
}

async fn can_write(stack: &Stack, key: &str) -> Result<(), tonic::Status> {
    stack
        .ingest(key, event("api_call", "cus_1", 1.0))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn roles_decide_what_a_key_may_do() {
    let stack = Stack::start().await;
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

#[tokio::test]
async fn a_key_created_before_a_role_update_keeps_its_roles() {
    let stack = Stack::start().await;
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

#[tokio::test]
async fn a_deleted_key_stops_working_within_the_cache_ttl() {
    let ttl = Duration::from_millis(400);
    let stack = Stack::start_with_ttl(ttl).await;
    let (_, key) = stack.service_account_key(&["event_ingestor"]).await;
    can_write(&stack, &key).await.unwrap(); // now cached as allowed
    let key_id = {
        let digest_hint = &key[key.len() - 4..];
        let keys = stack
            .keys()
            .list_api_keys(with_key(
                &stack.admin_key,
                id::ListApiKeysRequest::default(),
            ))
            .await
            .unwrap()
            .into_inner()
            .keys;
        keys.into_iter()
            .find(|k| k.display_hint.ends_with(digest_hint))
            .unwrap()
            .id
    };
    stack
        .keys()
        .delete_api_key(with_key(
            &stack.admin_key,
            id::DeleteApiKeyRequest { id: key_id },
        ))
        .await
        .unwrap();
    // Once the TTL has passed since the decision was cached, the key is refused. (Sleeping here
    // waits out the published bound; it does not wait for anything to become ready.)
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let err = can_write(&stack, &key).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("invalid"), "{err:?}");

    // A key of a deleted service account likewise (never cached here, so refused at once).
    let (account, orphan) = stack.service_account_key(&["event_ingestor"]).await;
    stack
        .users()
        .delete_user(with_key(
            &stack.admin_key,
            id::DeleteUserRequest { id: account },
        ))
        .await
        .unwrap();
    assert_eq!(
        can_write(&stack, &orphan).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let stack = Stack::start().await;
    let expired = stack.identity.insert_expired_key().await;
    let err = can_read(&stack, &expired).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{err:?}");
}

#[tokio::test]
async fn with_identity_down_an_uncached_key_fails_closed() {
    let mut stack = Stack::start().await;
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

#[tokio::test]
async fn tenants_and_environments_see_only_their_own_events() {
    let stack = Stack::start().await;
    let sent = stack
        .ingest(&stack.admin_key, event("api_call", "cus_1", 5.0))
        .await
        .unwrap();
    let other = stack.other_tenant_key().await;
    let sandbox = stack
        .create_key(None, id::Environment::Sandbox)
        .await
        .api_key;
    assert!(sandbox.starts_with("sk_test_"));

    for key in [&other, &sandbox] {
        assert!(stack.list_all(key, 50).await.unwrap().is_empty());
        let err = stack
            .events()
            .get_event(with_key(
                key,
                ev::GetEventRequest {
                    event_id: sent.event_id.clone(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let usage = stack
            .events()
            .get_usage(with_key(
                key,
                ev::GetUsageRequest {
                    event_name: "api_call".into(),
                    start_time: Some(prost_types::Timestamp {
                        seconds: 0,
                        nanos: 0,
                    }),
                    end_time: Some(tollgate::time::to_proto(
                        tollgate::time::now() + chrono::Duration::hours(1),
                    )),
                    aggregation: ev::Aggregation::Count.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(usage.total, 0.0);
        // The same id in another scope is a new event, not a duplicate.
        let mut same = event("api_call", "cus_1", 1.0);
        same.event_id = sent.event_id.clone();
        assert!(!stack.ingest(key, same).await.unwrap().duplicate);
    }
    assert_eq!(stack.list_all(&stack.admin_key, 50).await.unwrap().len(), 1);
}

#[tokio::test]
async fn resending_is_idempotent_and_a_bad_batch_writes_nothing() {
    let stack = Stack::start().await;
    let mut first = event("api_call", "cus_1", 1.0);
    first.event_id = "req-1".into();
    assert!(
        !stack
            .ingest(&stack.admin_key, first.clone())
            .await
            .unwrap()
            .duplicate
    );
    let mut changed = first.clone();
    changed.external_customer_id = "cus_2".into();
    assert!(
        stack
            .ingest(&stack.admin_key, changed)
            .await
            .unwrap()
            .duplicate
    );
    let stored = stack
        .events()
        .get_event(with_key(
            &stack.admin_key,
            ev::GetEventRequest {
                event_id: "req-1".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(
        stored.external_customer_id, "cus_1",
        "the stored event is unchanged"
    );

    let mut a = event("api_call", "cus_1", 1.0);
    a.event_id = "batch-a".into();
    let batch = vec![
        a.clone(),
        a.clone(),
        first.clone(),
        event("api_call", "cus_3", 2.0),
    ];
    let results = stack
        .events()
        .ingest_events(with_key(
            &stack.admin_key,
            ev::IngestEventsRequest { events: batch },
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    let dups: Vec<bool> = results.iter().map(|r| r.duplicate).collect();
    assert_eq!(dups, [false, true, true, false]);
    assert_eq!(results[0].event_id, "batch-a");
    assert!(results[3].event_id.starts_with("evt_"));

    let mut bad = event("api_call", "", 1.0);
    bad.event_id = "never".into();
    let batch = vec![
        event("api_call", "cus_4", 1.0),
        bad,
        event("api_call", "cus_5", 1.0),
    ];
    let err = stack
        .events()
        .ingest_events(with_key(
            &stack.admin_key,
            ev::IngestEventsRequest { events: batch },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("events[1].external_customer_id"),
        "{err:?}"
    );
    assert_eq!(
        stack.list_all(&stack.admin_key, 50).await.unwrap().len(),
        3,
        "nothing of the bad batch"
    );

    let empty = stack
        .events()
        .ingest_events(with_key(
            &stack.admin_key,
            ev::IngestEventsRequest { events: vec![] },
        ))
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let too_many = vec![event("x", "c", 1.0); 1001];
    let err = stack
        .events()
        .ingest_events(with_key(
            &stack.admin_key,
            ev::IngestEventsRequest { events: too_many },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn keyset_paging_returns_every_event_once_while_events_arrive() {
    let stack = Stack::start().await;
    let base = tollgate::time::now() - chrono::Duration::hours(1);
    let mut batch = Vec::new();
    for i in 0..95 {
        let mut e = event("api_call", "cus_1", 1.0);
        e.event_id = format!("old-{i:03}");
        // Groups of five share a timestamp: ties must be broken consistently.
        e.timestamp = Some(tollgate::time::to_proto(
            base + chrono::Duration::seconds(i / 5),
        ));
        batch.push(e);
    }
    stack
        .events()
        .ingest_events(with_key(
            &stack.admin_key,
            ev::IngestEventsRequest { events: batch },
        ))
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = stack
            .events()
            .list_events(with_key(
                &stack.admin_key,
                ev::ListEventsRequest {
                    page_size: 10,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.events.into_iter().map(|e| e.event_id));
        // New events arrive between pages; they are newer than the cursor.
        stack
            .ingest(&stack.admin_key, event("api_call", "cus_1", 1.0))
            .await
            .unwrap();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let old: Vec<&String> = seen.iter().filter(|id| id.starts_with("old-")).collect();
    assert_eq!(old.len(), 95);
    let mut unique = old.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 95, "no event twice");
    // Every new event was sent after the first page was read and is newer than any cursor.
    assert_eq!(
        seen.len(),
        95,
        "events that arrived while paging did not shift the pages"
    );
}

#[tokio::test]
async fn usage_figures_match_a_hand_count() {
    let stack = Stack::start().await;
    let day = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        - chrono::Duration::days(1);
    let at = |h: i64| Some(tollgate::time::to_proto(day + chrono::Duration::hours(h)));
    let sends = [
        ("alice", 0, 100.0),
        ("alice", 0, 50.0),
        ("bob", 1, 25.0),
        ("bob", 5, 5.0),
        ("carol", 23, 1.0),
    ];
    let events = sends
        .iter()
        .map(|(c, h, n)| ev::EventInput {
            timestamp: at(*h),
            ..event("tokens", c, *n)
        })
        .collect();
    stack
        .events()
        .ingest_events(with_key(
            &stack.admin_key,
            ev::IngestEventsRequest { events },
        ))
        .await
        .unwrap();

    let usage = |aggregation: ev::Aggregation, window: ev::WindowSize, by_customer: bool| {
        let stack = &stack;
        async move {
            stack
                .events()
                .get_usage(with_key(
                    &stack.admin_key,
                    ev::GetUsageRequest {
                        event_name: "tokens".into(),
                        start_time: at(0),
                        end_time: at(24),
                        aggregation: aggregation.into(),
                        property: if aggregation == ev::Aggregation::Count {
                            String::new()
                        } else {
                            "tokens".into()
                        },
                        window_size: window.into(),
                        group_by_customer: by_customer,
                        external_customer_id: String::new(),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    for (aggregation, total) in [
        (ev::Aggregation::Count, 5.0),
        (ev::Aggregation::Sum, 181.0),
        (ev::Aggregation::Max, 100.0),
        (ev::Aggregation::Min, 1.0),
    ] {
        let report = usage(aggregation, ev::WindowSize::Unspecified, false).await;
        assert_eq!(report.total, total, "{aggregation:?}");
    }
    let hourly = usage(ev::Aggregation::Sum, ev::WindowSize::Hour, false).await;
    let figures: Vec<(i64, f64, u64)> = hourly
        .buckets
        .iter()
        .map(|b| {
            (
                (b.window_start.unwrap().seconds - day.timestamp()) / 3600,
                b.value,
                b.event_count,
            )
        })
        .collect();
    assert_eq!(
        figures,
        [(0, 150.0, 2), (1, 25.0, 1), (5, 5.0, 1), (23, 1.0, 1)]
    );
    let daily = usage(ev::Aggregation::Count, ev::WindowSize::Day, true).await;
    let figures: Vec<(String, f64)> = daily
        .buckets
        .iter()
        .map(|b| (b.external_customer_id.clone(), b.value))
        .collect();
    assert_eq!(
        figures,
        [
            ("alice".into(), 2.0),
            ("bob".into(), 2.0),
            ("carol".into(), 1.0)
        ]
    );
    assert_eq!(
        daily.buckets[0].window_start.unwrap().seconds,
        day.timestamp()
    );

    let err = stack
        .events()
        .get_usage(with_key(
            &stack.admin_key,
            ev::GetUsageRequest {
                event_name: "tokens".into(),
                start_time: at(0),
                end_time: at(24),
                aggregation: ev::Aggregation::Sum.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("property"), "{err:?}");
}

#[tokio::test]
async fn concurrent_misses_for_one_key_make_one_authorize_call() {
    let stack = Stack::start().await;
    let (_, key) = stack.service_account_key(&["event_ingestor"]).await;
    let before = stack.auth_cache.identity_calls();
    let sends = (0..32).map(|i| {
        let events = stack.events();
        let key = key.clone();
        tokio::spawn(async move {
            let mut events = events;
            events
                .ingest_event(with_key(
                    &key,
                    ev::IngestEventRequest {
                        event: Some(event("api_call", &format!("c{i}"), 1.0)),
                    },
                ))
                .await
        })
    });
    for send in sends.collect::<Vec<_>>() {
        send.await.unwrap().unwrap();
    }
    assert_eq!(stack.auth_cache.identity_calls() - before, 1);
    assert_eq!(
        stack.list_all(&stack.admin_key, 100).await.unwrap().len(),
        32
    );
}

#[tokio::test]
async fn metrics_reflect_the_traffic() {
    let stack = Stack::start().await;
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
    // The stack runs on SQLite: every commit was synced, and one sync may cover several.
    let syncs = sample(&events, "tollgate_ingest_sync_duration_seconds_count", &[]);
    assert!(
        (1.0..=sample(
            &events,
            "tollgate_ingest_commits_total",
            &[r#"result="ok""#]
        ))
            .contains(&syncs),
        "{syncs} syncs"
    );
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
