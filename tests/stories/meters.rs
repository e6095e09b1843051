//! Meters over gRPC, as a tenant uses them: a person defines them, services send events, a
//! reader reads exact usage; keys without the permission, other tenants and bad definitions are
//! refused.

use crate::*;

fn tokens_meter(key: &str) -> ev::CreateMeterRequest {
    ev::CreateMeterRequest {
        key: key.into(),
        description: "tokens by model".into(),
        event_name: "api_call".into(),
        aggregation: ev::MeterAggregation::Sum.into(),
        property: "usage.tokens".into(),
        group_by: vec!["model".into()],
    }
}

fn call(customer: &str, model: &str, tokens: i64, id: &str) -> ev::EventInput {
    let mut e = event("api_call", customer, 0.0);
    e.event_id = id.into();
    e.properties = Some(tollgate::json::map_to_struct(
        serde_json::json!({"usage": {"tokens": tokens}, "model": model})
            .as_object()
            .unwrap()
            .clone(),
    ));
    e
}

fn usage(key: &str, customer: &str, by_customer: bool) -> ev::GetMeterUsageRequest {
    let now = tollgate::time::now();
    ev::GetMeterUsageRequest {
        key: key.into(),
        start_time: Some(tollgate::time::to_proto(now - chrono::Duration::days(1))),
        end_time: Some(tollgate::time::to_proto(now + chrono::Duration::days(1))),
        external_customer_id: customer.into(),
        group_by_customer: by_customer,
        window: ev::MeterWindow::Unspecified.into(),
    }
}

async fn a_tenant_meters_its_usage_exactly(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let created = stack
        .meters()
        .create_meter(with_key(&stack.admin_key, tokens_meter("tokens")))
        .await
        .unwrap()
        .into_inner()
        .meter
        .unwrap();
    assert!(created.ready && created.group_by == ["model"]);
    let (_, ingest) = stack.service_account_key(&["event_ingestor"]).await;
    let (_, reader) = stack.service_account_key(&["event_reader"]).await;
    let sent = [
        call("cus_1", "small", 100, "a"),
        call("cus_1", "large", 9_000_000_000_000_000 - 1, "b"),
        call("cus_1", "large", 1, "c"),
        call("cus_2", "small", 5, "d"),
        call("cus_2", "small", 5, "d"), // a duplicate: counted once
    ];
    for e in sent {
        stack.ingest(&ingest, e).await.unwrap();
    }
    let report = stack
        .meters()
        .get_meter_usage(with_key(&reader, usage("tokens", "cus_1", false)))
        .await
        .unwrap()
        .into_inner();
    // Past 2^53 a double is not exact; the exact figure is.
    assert_eq!(report.exact_total, "9000000000000100");
    let groups: Vec<(Vec<String>, String)> = report
        .rows
        .iter()
        .map(|r| (r.group_values.clone(), r.exact_value.clone()))
        .collect();
    assert_eq!(
        groups,
        [
            (vec!["\"large\"".to_owned()], "9000000000000000".to_owned()),
            (vec!["\"small\"".to_owned()], "100".to_owned())
        ]
    );
    let per_customer = stack
        .meters()
        .get_meter_usage(with_key(&reader, usage("tokens", "", true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(per_customer.rows.len(), 3);
    assert_eq!(per_customer.exact_total, "9000000000000105");
    assert_eq!(
        per_customer.source, "events",
        "a range off day boundaries is read from the events"
    );

    // A meter made after the events counts them too, once its backfill is done.
    let mut late = tokens_meter("tokens.late");
    late.group_by.clear();
    stack
        .meters()
        .create_meter(with_key(&stack.admin_key, late))
        .await
        .unwrap();
    let (ready, _) = poll_until(Instant::now() + Duration::from_secs(30), || async {
        let m = stack
            .meters()
            .get_meter(with_key(
                &stack.admin_key,
                ev::GetMeterRequest {
                    key: "tokens.late".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .meter
            .unwrap();
        m.ready.then_some(m)
    })
    .await
    .expect("the backfill never finished");
    assert_eq!(ready.key, "tokens.late");
    let late_total = stack
        .meters()
        .get_meter_usage(with_key(&reader, usage("tokens.late", "", false)))
        .await
        .unwrap()
        .into_inner()
        .exact_total;
    assert_eq!(late_total, "9000000000000105");
}

async fn meters_are_a_persons_to_define_and_a_tenants_own(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    let (_, reader) = stack.service_account_key(&["event_reader"]).await;
    let refused = stack
        .meters()
        .create_meter(with_key(&reader, tokens_meter("tokens")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(
        refused.message(),
        "this API key lacks the permission meters:manage; only a person's key has it"
    );
    let (_, ingest) = stack.service_account_key(&["event_ingestor"]).await;
    let usage_refused = stack
        .meters()
        .get_meter_usage(with_key(&ingest, usage("tokens", "", false)))
        .await
        .unwrap_err();
    assert_eq!(usage_refused.code(), Code::PermissionDenied);

    stack
        .meters()
        .create_meter(with_key(&stack.admin_key, tokens_meter("tokens")))
        .await
        .unwrap();
    let again = stack
        .meters()
        .create_meter(with_key(&stack.admin_key, tokens_meter("tokens")))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    // Another tenant neither sees it nor reads it.
    let other = stack.other_tenant_key().await;
    for status in [
        stack
            .meters()
            .get_meter(with_key(
                &other,
                ev::GetMeterRequest {
                    key: "tokens".into(),
                },
            ))
            .await
            .unwrap_err(),
        stack
            .meters()
            .get_meter_usage(with_key(&other, usage("tokens", "", false)))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(status.message(), "meter tokens not found");
    }
    let listed = stack
        .meters()
        .list_meters(with_key(&other, ev::ListMetersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.meters.is_empty());

    // Bad definitions name their field.
    for (request, field) in [
        (
            ev::CreateMeterRequest {
                key: "Bad Key".into(),
                ..tokens_meter("x")
            },
            "key",
        ),
        (
            ev::CreateMeterRequest {
                property: String::new(),
                ..tokens_meter("x")
            },
            "property",
        ),
        (
            ev::CreateMeterRequest {
                property: "a..b".into(),
                ..tokens_meter("x")
            },
            "property",
        ),
        (
            ev::CreateMeterRequest {
                aggregation: 0,
                ..tokens_meter("x")
            },
            "aggregation",
        ),
        (
            ev::CreateMeterRequest {
                event_name: " ".into(),
                ..tokens_meter("x")
            },
            "event_name",
        ),
        (
            ev::CreateMeterRequest {
                group_by: vec!["a".into(), "b".into(), "c".into(), "d".into()],
                ..tokens_meter("x")
            },
            "group_by",
        ),
        (
            ev::CreateMeterRequest {
                aggregation: ev::MeterAggregation::Count.into(),
                ..tokens_meter("x")
            },
            "property",
        ),
    ] {
        let status = stack
            .meters()
            .create_meter(with_key(&stack.admin_key, request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().starts_with(field), "{field}: {status:?}");
    }
    let bad_range = stack
        .meters()
        .get_meter_usage(with_key(
            &stack.admin_key,
            ev::GetMeterUsageRequest {
                end_time: None,
                ..usage("tokens", "", false)
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_range.code(), Code::InvalidArgument);
    assert!(bad_range.message().starts_with("end_time"), "{bad_range:?}");
    stack
        .meters()
        .delete_meter(with_key(
            &stack.admin_key,
            ev::DeleteMeterRequest {
                key: "tokens".into(),
            },
        ))
        .await
        .unwrap();
    let gone = stack
        .meters()
        .delete_meter(with_key(
            &stack.admin_key,
            ev::DeleteMeterRequest {
                key: "tokens".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

async fn a_latest_meter_reports_the_last_value_of_each_day(backend: Backend) {
    let stack = Stack::start_on(backend).await;
    stack
        .meters()
        .create_meter(with_key(
            &stack.admin_key,
            ev::CreateMeterRequest {
                key: "seats".into(),
                description: "seats in use".into(),
                event_name: "seats_reported".into(),
                aggregation: ev::MeterAggregation::Latest.into(),
                property: "tokens".into(),
                group_by: vec![],
            },
        ))
        .await
        .unwrap();
    let (_, ingest) = stack.service_account_key(&["event_ingestor"]).await;
    let (_, reader) = stack.service_account_key(&["event_reader"]).await;
    let today = tollgate::time::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let (first, second) = (
        today - chrono::Duration::days(2),
        today - chrono::Duration::days(1),
    );
    // Sent out of order: the figure follows the events' timestamps, not their arrival.
    let sent = [
        (first + chrono::Duration::hours(20), 12.0),
        (first + chrono::Duration::hours(3), 40.0),
        (second + chrono::Duration::minutes(5), 7.0),
        (second + chrono::Duration::minutes(1), 9.0),
    ];
    for (at, seats) in sent {
        let mut e = event("seats_reported", "cus_1", seats);
        e.timestamp = Some(tollgate::time::to_proto(at));
        stack.ingest(&ingest, e).await.unwrap();
    }
    let report = stack
        .meters()
        .get_meter_usage(with_key(
            &reader,
            ev::GetMeterUsageRequest {
                key: "seats".into(),
                start_time: Some(tollgate::time::to_proto(first)),
                end_time: Some(tollgate::time::to_proto(today)),
                external_customer_id: "cus_1".into(),
                group_by_customer: false,
                window: ev::MeterWindow::Day.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.source, "rollups");
    let days: Vec<(f64, i64)> = report
        .rows
        .iter()
        .map(|r| (r.value, r.event_count))
        .collect();
    assert_eq!(days, [(12.0, 2), (7.0, 2)]);
    assert_eq!(report.total, 7.0);
}

stories!(
    a_tenant_meters_its_usage_exactly,
    a_latest_meter_reports_the_last_value_of_each_day,
    meters_are_a_persons_to_define_and_a_tenants_own,
);
