//! Hostile clients: what an attacker, or a careless client, sends, and the clear refusal each
//! gets. Never an escalation, never INTERNAL.

use prost_types::value::Kind;
use prost_types::{Struct, Value};

use crate::*;

fn number(n: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

fn with_property(mut e: ev::EventInput, name: &str, value: Value) -> ev::EventInput {
    e.properties
        .get_or_insert_with(Struct::default)
        .fields
        .insert(name.into(), value);
    e
}

/// Properties nested `depth` levels deep: `{"a": {"a": … {"leaf": 1}}}`.
fn nested(depth: usize) -> Struct {
    let mut s = Struct {
        fields: [("leaf".to_owned(), number(1.0))].into(),
    };
    for _ in 1..depth {
        s = Struct {
            fields: [(
                "a".to_owned(),
                Value {
                    kind: Some(Kind::StructValue(s)),
                },
            )]
            .into(),
        };
    }
    s
}

async fn create_key(
    stack: &Stack,
    as_key: &str,
    environment: id::Environment,
    expires_at: Option<prost_types::Timestamp>,
) -> Result<id::CreateApiKeyResponse, tonic::Status> {
    stack
        .keys()
        .create_api_key(with_key(
            as_key,
            id::CreateApiKeyRequest {
                name: "made by another key".into(),
                service_account_id: String::new(),
                expires_at,
                environment: environment.into(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn a_sandbox_key_reaches_the_sandbox_only(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let sandbox = stack
        .create_key(None, id::Environment::Sandbox)
        .await
        .api_key;
    // No production key from a sandbox key.
    let err = create_key(&stack, &sandbox, id::Environment::Production, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("sandbox"), "{err:?}");
    // A sandbox key makes sandbox keys; a production key makes either.
    let made = create_key(&stack, &sandbox, id::Environment::Unspecified, None)
        .await
        .unwrap();
    assert_eq!(made.environment, i32::from(id::Environment::Sandbox));
    create_key(&stack, &stack.admin_key, id::Environment::Sandbox, None)
        .await
        .unwrap();
    // Production keys do not exist for a sandbox key: not listed, not found, not deletable.
    let listed = stack
        .keys()
        .list_api_keys(with_key(&sandbox, id::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert!(!listed.is_empty());
    assert!(
        listed
            .iter()
            .all(|k| k.environment == i32::from(id::Environment::Sandbox)),
        "{listed:?}"
    );
    let production_key = key_id_of(&stack, &stack.admin_key).await;
    for err in [
        stack
            .keys()
            .get_api_key(with_key(
                &sandbox,
                id::GetApiKeyRequest {
                    id: production_key.clone(),
                },
            ))
            .await
            .unwrap_err(),
        stack
            .keys()
            .delete_api_key(with_key(
                &sandbox,
                id::DeleteApiKeyRequest {
                    id: production_key.clone(),
                },
            ))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    can_write(&stack, &stack.admin_key)
        .await
        .expect("the production key survived");
    // Changing or deleting an account reaches its production keys: not from the sandbox.
    let (account, _) = stack.service_account_key(&["event_ingestor"]).await;
    let err = stack
        .users()
        .update_user_roles(with_key(
            &sandbox,
            id::UpdateUserRolesRequest {
                id: account.clone(),
                roles: vec!["event_reader".into()],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = stack
        .users()
        .delete_user(with_key(&sandbox, id::DeleteUserRequest { id: account }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

async fn a_key_never_outlives_the_key_that_made_it(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let in_an_hour = tollgate::time::now() + chrono::Duration::hours(1);
    let short = create_key(
        &stack,
        &stack.admin_key,
        id::Environment::Unspecified,
        Some(tollgate::time::to_proto(in_an_hour)),
    )
    .await
    .unwrap();
    let cap = Some(tollgate::time::to_proto(in_an_hour));
    // Asked for no expiry, or a later one: capped at the creator's.
    for asked in [
        None,
        Some(tollgate::time::to_proto(
            in_an_hour + chrono::Duration::days(30),
        )),
    ] {
        let made = create_key(&stack, &short.api_key, id::Environment::Unspecified, asked)
            .await
            .unwrap();
        assert_eq!(made.expires_at, cap);
    }
    // An earlier expiry stays as asked.
    let sooner = tollgate::time::to_proto(in_an_hour - chrono::Duration::minutes(5));
    let made = create_key(
        &stack,
        &short.api_key,
        id::Environment::Unspecified,
        Some(sooner),
    )
    .await
    .unwrap();
    assert_eq!(made.expires_at, Some(sooner));
}

async fn usage_sums_are_exact_and_never_internal(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let sum = |name: &str| ev::GetUsageRequest {
        event_name: name.into(),
        start_time: Some(tollgate::time::to_proto(
            tollgate::time::now() - chrono::Duration::hours(1),
        )),
        end_time: Some(tollgate::time::to_proto(
            tollgate::time::now() + chrono::Duration::hours(1),
        )),
        aggregation: ev::Aggregation::Sum.into(),
        property: "n".into(),
        ..Default::default()
    };
    let big = (0..2000)
        .map(|_| with_property(event("big", "c", 0.0), "n", number(8.99e15)))
        .collect::<Vec<_>>();
    for chunk in big.chunks(1000) {
        stack
            .events()
            .ingest_events(with_key(
                &stack.admin_key,
                ev::IngestEventsRequest {
                    events: chunk.to_vec(),
                },
            ))
            .await
            .unwrap();
    }
    let report = stack
        .events()
        .get_usage(with_key(&stack.admin_key, sum("big")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.exact_total, "17980000000000000000");
    assert_eq!(report.total, 1.798e19);
    let huge = vec![
        with_property(event("huge", "c", 0.0), "n", number(1e308)),
        with_property(event("huge", "c", 0.0), "n", number(1e308)),
    ];
    stack
        .events()
        .ingest_events(with_key(
            &stack.admin_key,
            ev::IngestEventsRequest { events: huge },
        ))
        .await
        .unwrap();
    let report = stack
        .events()
        .get_usage(with_key(&stack.admin_key, sum("huge")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.total, f64::INFINITY);
    assert_eq!(report.exact_total, "");
}

async fn properties_no_backend_can_store_are_refused_by_name(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let send = |e: ev::EventInput| {
        let stack = &stack;
        async move { stack.ingest(&stack.admin_key, e).await }
    };
    let string = |s: &str| Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    let cases = [
        (
            with_property(event("x", "c", 1.0), "model", string("a\u{0}b")),
            "event.properties.model",
        ),
        (
            with_property(event("x", "c", 1.0), "bad\u{0}key", number(1.0)),
            "event.properties.bad\\0key",
        ),
        (
            ev::EventInput {
                properties: Some(nested(17)),
                ..event("x", "c", 1.0)
            },
            "event.properties",
        ),
    ];
    for (e, field) in cases {
        let err = send(e).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with(field), "{field}: {err:?}");
    }
    // The deepest allowed nesting is stored.
    send(ev::EventInput {
        properties: Some(nested(16)),
        ..event("x", "c", 1.0)
    })
    .await
    .unwrap();
    // Nested past what can be decoded at all: still the client's fault.
    let err = send(ev::EventInput {
        properties: Some(nested(45)),
        ..event("x", "c", 1.0)
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("cannot be decoded"), "{err:?}");
    // Nothing refused was stored, and the service still takes events.
    assert_eq!(stack.list_all(&stack.admin_key, 50).await.unwrap().len(), 1);
}

async fn a_page_of_large_events_ends_at_the_byte_budget(backend: Backend) {
    let budget = 1 << 20;
    let stack = Stack::start_with(backend, |s| s.max_page_bytes = budget).await;
    let blob = Value {
        kind: Some(Kind::StringValue("x".repeat(60 * 1024))),
    };
    let events: Vec<_> = (0..40)
        .map(|i| with_property(event("big", &format!("c{i}"), 1.0), "blob", blob.clone()))
        .collect();
    stack
        .events()
        .ingest_events(with_key(
            &stack.admin_key,
            ev::IngestEventsRequest { events },
        ))
        .await
        .unwrap();
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = stack
            .events()
            .list_events(with_key(
                &stack.admin_key,
                ev::ListEventsRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let bytes: usize = page.events.iter().map(prost::Message::encoded_len).sum();
        pages.push((page.events.len(), bytes));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(pages.len() > 1, "one page held everything: {pages:?}");
    assert!(
        pages.iter().all(|(_, bytes)| *bytes <= budget + 64 * 1024),
        "{pages:?}"
    );
    assert_eq!(pages.iter().map(|(n, _)| n).sum::<usize>(), 40);
}

async fn unknown_methods_share_one_metric_label(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", stack.events.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for i in 0..50 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path =
            http::uri::PathAndQuery::try_from(format!("/made.up.Service{i}/Method{i}")).unwrap();
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let _ = grpc.unary(tonic::Request::new(()), path, codec).await;
    }
    let metrics = scrape(stack.events_metrics).await;
    assert!(!metrics.contains("made.up"), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "tollgate_grpc_requests_total",
            &[r#"method="unknown""#]
        ),
        50.0
    );
}

async fn requests_past_a_bound_are_refused_naming_it(backend: Backend) {
    let stack = Stack::start_with(backend, |s| {
        s.limits.max_message_size = 256 * 1024;
        s.max_usage_buckets = 100;
    })
    .await;
    // A request larger than the decoder takes.
    let blob = Value {
        kind: Some(Kind::StringValue("x".repeat(60 * 1024))),
    };
    let events: Vec<_> = (0..8)
        .map(|i| with_property(event("big", &format!("c{i}"), 1.0), "blob", blob.clone()))
        .collect();
    let err = stack
        .events()
        .ingest_events(with_key(
            &stack.admin_key,
            ev::IngestEventsRequest { events },
        ))
        .await
        .unwrap_err();
    // tonic reports OUT_OF_RANGE, naming the size and the limit.
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("262144"), "{err:?}");
    // Minute windows over a month: more windows than a report may have.
    let now = tollgate::time::now();
    let usage = |window: ev::WindowSize, start: chrono::DateTime<chrono::Utc>, by: bool| {
        ev::GetUsageRequest {
            event_name: "api_call".into(),
            start_time: Some(tollgate::time::to_proto(start)),
            end_time: Some(tollgate::time::to_proto(now + chrono::Duration::hours(1))),
            aggregation: ev::Aggregation::Count.into(),
            window_size: window.into(),
            group_by_customer: by,
            ..Default::default()
        }
    };
    let err = stack
        .events()
        .get_usage(with_key(
            &stack.admin_key,
            usage(
                ev::WindowSize::Minute,
                now - chrono::Duration::days(30),
                false,
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("window_size"), "{err:?}");
    assert!(err.message().contains("10000"), "{err:?}");
    // More rows (windows × customers) than allowed.
    let events: Vec<_> = (0..120)
        .map(|i| event("api_call", &format!("c{i}"), 1.0))
        .collect();
    stack
        .events()
        .ingest_events(with_key(
            &stack.admin_key,
            ev::IngestEventsRequest { events },
        ))
        .await
        .unwrap();
    let err = stack
        .events()
        .get_usage(with_key(
            &stack.admin_key,
            usage(ev::WindowSize::Hour, now - chrono::Duration::hours(1), true),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("more than 100 buckets"), "{err:?}");
}

/// A flood of made-up keys with valid checksums costs identity-service's database nothing (no
/// digest of theirs is looked up), and a real key nobody has used yet still works during it.
async fn forged_keys_are_answered_without_a_lookup(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let (_, fresh) = stack.service_account_key(&["event_ingestor"]).await;
    let before = scrape(stack.identity_metrics).await;
    let lookups = |text: &str| {
        sample(
            text,
            "tollgate_key_cache_lookups_total",
            &[r#"result="miss""#],
        )
    };
    let forged: Vec<String> = (0..2000)
        .map(|_| {
            tollgate::keys::ApiKeySecret::generate(tollgate::keys::Environment::Production)
                .unwrap()
                .expose()
                .to_owned()
        })
        .collect();
    let flood: Vec<_> = forged
        .chunks(250)
        .map(|keys| {
            let (stack_events, keys) = (stack.events(), keys.to_vec());
            tokio::spawn(async move {
                let mut events = stack_events;
                for key in keys {
                    let err = events
                        .ingest_event(with_key(
                            &key,
                            ev::IngestEventRequest {
                                event: Some(event("api_call", "c", 1.0)),
                            },
                        ))
                        .await
                        .unwrap_err();
                    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
                }
            })
        })
        .collect();
    // During the flood, a real key used for the first time is found.
    can_write(&stack, &fresh).await.unwrap();
    for sender in flood {
        sender.await.unwrap();
    }
    let after = scrape(stack.identity_metrics).await;
    assert_eq!(
        sample(&after, "tollgate_key_lookups_not_issued_total", &[])
            - sample(&before, "tollgate_key_lookups_not_issued_total", &[]),
        2000.0,
        "every forged key answered from the index"
    );
    assert_eq!(
        lookups(&after) - lookups(&before),
        1.0,
        "only the real key was looked up"
    );
}

stories!(
    a_sandbox_key_reaches_the_sandbox_only,
    a_key_never_outlives_the_key_that_made_it,
    usage_sums_are_exact_and_never_internal,
    properties_no_backend_can_store_are_refused_by_name,
    a_page_of_large_events_ends_at_the_byte_budget,
    unknown_methods_share_one_metric_label,
    requests_past_a_bound_are_refused_naming_it,
    forged_keys_are_answered_without_a_lookup,
);
