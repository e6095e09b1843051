//! Events: idempotency, all-or-nothing batches, paging, usage, and isolation between tenants and
//! environments.

use crate::*;

async fn resending_is_idempotent_and_a_bad_batch_writes_nothing(backend: Backend) {
    let stack = Stack::start_on(backend).await;
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

async fn keyset_paging_returns_every_event_once_while_events_arrive(backend: Backend) {
    let stack = Stack::start_on(backend).await;
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

async fn usage_figures_match_a_hand_count(backend: Backend) {
    let stack = Stack::start_on(backend).await;
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

/// What one scope (tenant × environment) wrote in the isolation story: the same event ids and
/// names as the others, with figures of its own.
struct Written {
    key: String,
    tokens: Vec<f64>,
    plans: usize,
}

async fn every_read_path_sees_only_its_own_scope(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let sandbox = stack
        .create_key(None, id::Environment::Sandbox)
        .await
        .api_key;
    assert!(sandbox.starts_with("sk_test_"));
    let keys = [
        stack.admin_key.clone(),
        sandbox,
        stack.other_tenant_key().await,
    ];
    // Every scope writes before any reads, with identical ids, names and customers: a read that
    // lost its scope filter would see the others' events.
    let mut scopes = Vec::new();
    for (k, key) in keys.into_iter().enumerate() {
        let n = k + 2;
        let tokens: Vec<f64> = (0..n).map(|i| ((k + 1) * 10 + i) as f64).collect();
        let events = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut e = event("api_call", &format!("cus_{}", i % 2), *t);
                e.event_id = format!("shared-{i}");
                let plan = prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(format!(
                        "p{}",
                        i % (k + 1)
                    ))),
                };
                e.properties
                    .get_or_insert_with(Default::default)
                    .fields
                    .insert("plan".into(), plan);
                e
            })
            .collect();
        stack
            .events()
            .ingest_events(with_key(&key, ev::IngestEventsRequest { events }))
            .await
            .unwrap();
        scopes.push(Written {
            key,
            plans: (k + 1).min(n),
            tokens,
        });
    }
    let tokens_of = |e: &ev::Event| match e.properties.as_ref().unwrap().fields["tokens"].kind {
        Some(prost_types::value::Kind::NumberValue(n)) => n,
        _ => panic!("no tokens"),
    };
    for scope in &scopes {
        let own = &scope.tokens;
        // GetEvent: the scope's own version of the shared id.
        let got = stack
            .events()
            .get_event(with_key(
                &scope.key,
                ev::GetEventRequest {
                    event_id: "shared-0".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .event
            .unwrap();
        assert_eq!(tokens_of(&got), own[0]);
        // ListEvents: exactly its own events.
        let mut listed: Vec<f64> = stack
            .list_all(&scope.key, 2)
            .await
            .unwrap()
            .iter()
            .map(tokens_of)
            .collect();
        listed.sort_by(f64::total_cmp);
        assert_eq!(&listed, own);
        // GetUsage: every aggregation over its own events only.
        let range = |aggregation: ev::Aggregation, property: &str| ev::GetUsageRequest {
            event_name: "api_call".into(),
            start_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            end_time: Some(tollgate::time::to_proto(
                tollgate::time::now() + chrono::Duration::hours(1),
            )),
            aggregation: aggregation.into(),
            property: property.into(),
            ..Default::default()
        };
        let sum: f64 = own.iter().sum();
        let expected = [
            (range(ev::Aggregation::Count, ""), own.len() as f64),
            (range(ev::Aggregation::Sum, "tokens"), sum),
            (range(ev::Aggregation::Min, "tokens"), own[0]),
            (range(ev::Aggregation::Max, "tokens"), own[own.len() - 1]),
            (range(ev::Aggregation::CountUnique, ""), 2.0),
            (
                range(ev::Aggregation::CountUnique, "plan"),
                scope.plans as f64,
            ),
        ];
        for (request, total) in expected {
            let aggregation = request.aggregation;
            let report = stack
                .events()
                .get_usage(with_key(&scope.key, request))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(report.total, total, "aggregation {aggregation}");
        }
        // An id only another scope has is not found here.
        let err = stack
            .events()
            .get_event(with_key(
                &scope.key,
                ev::GetEventRequest {
                    event_id: format!("shared-{}", own.len()),
                },
            ))
            .await
            .map(|_| ());
        if own.len() < 4 {
            assert_eq!(err.unwrap_err().code(), Code::NotFound);
        }
    }
}

async fn concurrent_sends_of_one_event_id_store_it_once(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    // 40 single sends of one id at once, each with its own payload.
    let sends: Vec<_> = (0..40)
        .map(|i| {
            let (mut events, key) = (stack.events(), stack.admin_key.clone());
            tokio::spawn(async move {
                let mut e = event("api_call", "cus_1", f64::from(i));
                e.event_id = "same-id".into();
                let result = events
                    .ingest_event(with_key(&key, ev::IngestEventRequest { event: Some(e) }))
                    .await
                    .unwrap()
                    .into_inner()
                    .result
                    .unwrap();
                (i, result.duplicate)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for send in sends {
        let (i, duplicate) = send.await.unwrap();
        if !duplicate {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one send stored it: {winners:?}");
    let stored = stack
        .events()
        .get_event(with_key(
            &stack.admin_key,
            ev::GetEventRequest {
                event_id: "same-id".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    let tokens = match stored.properties.unwrap().fields["tokens"].kind {
        Some(prost_types::value::Kind::NumberValue(n)) => n,
        _ => panic!("no tokens"),
    };
    assert_eq!(
        tokens,
        f64::from(winners[0]),
        "the stored event is the winner's"
    );

    // Batches that overlap, sent at once: on PostgreSQL they go to parallel writers.
    let batches: Vec<_> = (0..8)
        .map(|b| {
            let (mut events, key) = (stack.events(), stack.admin_key.clone());
            tokio::spawn(async move {
                let batch = (0..50)
                    .map(|i| {
                        let mut e = event("api_call", "cus_1", f64::from(b));
                        e.event_id = format!("overlap-{i}");
                        e
                    })
                    .collect();
                events
                    .ingest_events(with_key(&key, ev::IngestEventsRequest { events: batch }))
                    .await
                    .unwrap()
                    .into_inner()
                    .results
            })
        })
        .collect();
    let mut stored_by = std::collections::HashMap::new();
    for batch in batches {
        for result in batch.await.unwrap() {
            if !result.duplicate {
                *stored_by.entry(result.event_id).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(stored_by.len(), 50);
    assert!(stored_by.values().all(|n| *n == 1), "{stored_by:?}");
    assert_eq!(
        stack.list_all(&stack.admin_key, 1000).await.unwrap().len(),
        51
    );
}

stories!(
    resending_is_idempotent_and_a_bad_batch_writes_nothing,
    keyset_paging_returns_every_event_once_while_events_arrive,
    usage_figures_match_a_hand_count,
    every_read_path_sees_only_its_own_scope,
    concurrent_sends_of_one_event_id_store_it_once,
);
