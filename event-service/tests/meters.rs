//! Meters against a raw recomputation, on SQLite always and PostgreSQL when TEST_DATABASE_URL is
//! set: every aggregation, with and without group-by, per customer and across customers, every
//! window, ranges on and off the rollups' boundaries; duplicates, batches, and meters created
//! before, between and after the events (the backfill). The recomputation here is written apart
//! from the service's own arithmetic, from the events as they were stored.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use event_service::model::meters::{
    Backfill, Meter, MeterAggregation, MeterDefinition, MeterKey, MeterQuery, MeterReport,
    PropertyPath, ReportSource, Window,
};
use event_service::model::{NewEvent, Scope};
use event_service::store::meters::{CreateOutcome, Refused};
use event_service::store::sql::SqlStore;
use event_service::store::{EventStore, MeterStore, StoreError};
use serde_json::{Value, json};
use tollgate::ids::TenantId;
use tollgate::keys::Environment;

/// The store, as both traits see it.
type Store = Arc<SqlStore>;

async fn connect(url: &tollgate::database::DatabaseUrl) -> Result<Store, StoreError> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}

fn scope() -> Scope {
    Scope {
        tenant_id: TenantId::generate(),
        environment: Environment::Production,
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 30, 0, 0, 0).unwrap()
}

/// A small deterministic generator: the same events on every run and both backends.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Events over four days across a month's end, with every kind of value a meter meets: whole
/// numbers (some huge), fractions, strings, nested values, missing ones.
fn events(n: usize, seed: u64) -> Vec<NewEvent> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let value = match rng.below(7) {
                0 => json!(rng.below(1000)),
                1 => json!(8_000_000_000_000_000i64 - rng.below(1000) as i64),
                2 => json!(rng.below(1000) as f64 / 8.0),
                3 => json!(format!("v{}", rng.below(5))),
                4 => json!(-(rng.below(50) as i64)),
                5 => Value::Null,
                _ => json!(rng.below(10)),
            };
            let mut properties =
                json!({ "usage": { "tokens": value }, "user": format!("u{}", rng.below(6)) });
            match rng.below(3) {
                0 => properties["model"] = json!("small"),
                1 => properties["model"] = json!("large"),
                _ => {}
            }
            // A quarter fall on the hour, so that LATEST meets events of the same timestamp.
            let at = if rng.below(4) == 0 {
                t0() + Duration::hours(rng.below(4 * 24) as i64)
            } else {
                t0() + Duration::seconds(rng.below(4 * 86_400) as i64)
            };
            NewEvent {
                event_id: format!("e{}", rng.below(n as u64 * 2)),
                event_name: if rng.below(10) == 0 {
                    "other".into()
                } else {
                    "call".into()
                },
                external_customer_id: format!("c{}", rng.below(4)),
                timestamp: at,
                properties: properties.to_string(),
                source: String::new(),
            }
        })
        .collect()
}

fn definition(key: &str, aggregation: MeterAggregation, group_by: &[&str]) -> MeterDefinition {
    MeterDefinition {
        key: MeterKey::parse("key", key).unwrap(),
        description: String::new(),
        event_name: "call".into(),
        aggregation,
        group_by: group_by
            .iter()
            .map(|p| PropertyPath::parse("group_by", p).unwrap())
            .collect(),
    }
}

fn tokens() -> PropertyPath {
    PropertyPath::parse("property", "usage.tokens").unwrap()
}

fn definitions() -> Vec<MeterDefinition> {
    vec![
        definition("calls", MeterAggregation::Count, &[]),
        definition("calls.by_model", MeterAggregation::Count, &["model"]),
        definition("tokens", MeterAggregation::Sum(tokens()), &[]),
        definition(
            "tokens.by_model_user",
            MeterAggregation::Sum(tokens()),
            &["model", "user"],
        ),
        definition("tokens.min", MeterAggregation::Min(tokens()), &[]),
        definition("tokens.max", MeterAggregation::Max(tokens()), &["model"]),
        definition(
            "users",
            MeterAggregation::CountUnique(PropertyPath::parse("property", "user").unwrap()),
            &[],
        ),
        definition(
            "values.by_model",
            MeterAggregation::CountUnique(tokens()),
            &["model"],
        ),
        definition("tokens.latest", MeterAggregation::Latest(tokens()), &[]),
        definition(
            "tokens.latest.by_model",
            MeterAggregation::Latest(tokens()),
            &["model"],
        ),
    ]
}

async fn create(store: &Store, scope: &Scope, d: &MeterDefinition) -> Meter {
    match store.create_meter(scope, d).await.unwrap() {
        CreateOutcome::Created(meter) => meter,
        CreateOutcome::Exists => panic!("meter {} exists", d.key.as_str()),
    }
}

/// Runs every backfill to its end.
async fn backfill(store: &Store) {
    for id in store.meters_backfilling().await.unwrap() {
        while !store.backfill_meter(id).await.unwrap() {}
    }
}

/// Adds every staged delta to the rollups, as the fold task does.
async fn fold_all(store: &Store) {
    while store.fold_meters().await.unwrap() > 0 {}
}

// The recomputation, from the stored events: first stored wins for a repeated id.

/// A query over the first four days from `t0`, for every customer.
fn first_four_days(by_customer: bool, window: Option<Window>) -> MeterQuery {
    MeterQuery::new(
        Some(t0()),
        Some(t0() + Duration::days(4)),
        None,
        by_customer,
        window,
    )
    .unwrap()
}

fn stored(sent: &[Vec<NewEvent>]) -> Vec<NewEvent> {
    let mut seen = HashSet::new();
    sent.iter()
        .flatten()
        .filter(|e| seen.insert(e.event_id.clone()))
        .cloned()
        .collect()
}

fn path_value<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.as_object()?.get(k))
}

fn window_start(window: Option<Window>, start: i64, ts: i64) -> i64 {
    let t = tollgate::time::from_micros(ts);
    let w = match window {
        None => return start,
        Some(Window::Minute) => t.timestamp() / 60 * 60,
        Some(Window::Hour) => t.timestamp() / 3600 * 3600,
        Some(Window::Day) => t.timestamp() / 86_400 * 86_400,
        Some(Window::Month) => Utc
            .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
            .unwrap()
            .timestamp(),
    };
    (w * 1_000_000).max(start)
}

/// A report row's window start, customer and group.
type RowKey = (i64, Option<String>, String);

#[derive(Debug, Default)]
struct Expected {
    count: i64,
    ints: i128,
    reals: f64,
    any_real: bool,
    min: Option<f64>,
    max: Option<f64>,
    /// The latest number's (timestamp, value): the largest pair.
    latest: Option<(i64, f64)>,
    distinct: HashSet<String>,
}

fn recompute(
    events: &[NewEvent],
    d: &MeterDefinition,
    q: &MeterQuery,
) -> (BTreeMap<RowKey, Expected>, Expected) {
    let mut rows: BTreeMap<_, Expected> = BTreeMap::new();
    let mut total = Expected::default();
    for e in events {
        let ts = tollgate::time::to_micros(e.timestamp);
        if e.event_name != d.event_name || ts < q.start || ts >= q.end {
            continue;
        }
        if q.customer
            .as_ref()
            .is_some_and(|c| *c != e.external_customer_id)
        {
            continue;
        }
        let props: Value = serde_json::from_str(&e.properties).unwrap();
        let group = if d.group_by.is_empty() {
            String::new()
        } else {
            let values: Vec<Value> = d
                .group_by
                .iter()
                .map(|p| {
                    path_value(&props, &p.as_string())
                        .cloned()
                        .unwrap_or(Value::Null)
                })
                .collect();
            serde_json::to_string(&values).unwrap()
        };
        let key = (
            window_start(q.window, q.start, ts),
            q.by_customer.then(|| e.external_customer_id.clone()),
            group,
        );
        for target in [rows.entry(key).or_default(), &mut total] {
            match &d.aggregation {
                MeterAggregation::Count => target.count += 1,
                MeterAggregation::CountUnique(p) => {
                    if let Some(v) = path_value(&props, &p.as_string()).filter(|v| !v.is_null()) {
                        if target.distinct.insert(v.to_string()) {
                            target.count += 1;
                        }
                    }
                }
                MeterAggregation::Sum(p) | MeterAggregation::Min(p) | MeterAggregation::Max(p) => {
                    let Some(Value::Number(n)) = path_value(&props, &p.as_string()) else {
                        continue;
                    };
                    target.count += 1;
                    match n.as_i64().filter(|i| i.abs() < 9_000_000_000_000_000) {
                        Some(i) => target.ints += i128::from(i),
                        None => {
                            target.reals += n.as_f64().unwrap();
                            target.any_real = true;
                        }
                    }
                    let f = n.as_f64().unwrap();
                    target.min = Some(target.min.map_or(f, |m| m.min(f)));
                    target.max = Some(target.max.map_or(f, |m| m.max(f)));
                }
                MeterAggregation::Latest(p) => {
                    let Some(Value::Number(n)) = path_value(&props, &p.as_string()) else {
                        continue;
                    };
                    target.count += 1;
                    let candidate = (ts, n.as_f64().unwrap());
                    if target.latest.is_none_or(|l| candidate > l) {
                        target.latest = Some(candidate);
                    }
                }
            }
        }
    }
    rows.retain(|_, e| e.count > 0);
    (rows, total)
}

fn assert_same(report: &MeterReport, events: &[NewEvent], d: &MeterDefinition, q: &MeterQuery) {
    let (rows, total) = recompute(events, d, q);
    let context = format!("meter {} query {q:?}", d.key.as_str());
    assert_eq!(report.rows.len(), rows.len(), "{context}: {report:#?}");
    let check = |value: f64, exact: Option<i128>, count: i64, e: &Expected, what: &str| match &d
        .aggregation
    {
        MeterAggregation::Count | MeterAggregation::CountUnique(_) => {
            assert_eq!(exact, Some(i128::from(e.count)), "{context} {what}");
        }
        MeterAggregation::Sum(_) => {
            if e.any_real {
                let want = e.ints as f64 + e.reals;
                assert!(
                    (value - want).abs() <= want.abs() * 1e-12 + 1e-9,
                    "{context} {what}: {value} != {want}"
                );
                assert_eq!(exact, None, "{context} {what}");
            } else {
                assert_eq!(exact, Some(e.ints), "{context} {what}");
            }
            assert_eq!(count, e.count, "{context} {what} events");
        }
        MeterAggregation::Min(_) => assert_eq!(Some(value), e.min, "{context} {what}"),
        MeterAggregation::Max(_) => assert_eq!(Some(value), e.max, "{context} {what}"),
        MeterAggregation::Latest(_) => {
            assert_eq!(Some(value), e.latest.map(|l| l.1), "{context} {what}");
            assert_eq!(count, e.count, "{context} {what} events");
        }
    };
    for (row, ((start, customer, group), e)) in report.rows.iter().zip(&rows) {
        assert_eq!(row.start, *start, "{context}");
        assert_eq!(&row.customer, customer, "{context}");
        assert_eq!(row.group.clone().unwrap_or_default(), *group, "{context}");
        check(row.value, row.exact, row.events, e, "row");
    }
    if total.count > 0 {
        check(
            report.total,
            report.total_exact,
            total.count,
            &total,
            "total",
        );
    }
}

/// Every query shape over the four days: per customer and across, each window, ranges on the
/// day, hour and minute boundaries and off them.
fn queries() -> Vec<MeterQuery> {
    let day = |n: i64| Some(t0() + Duration::days(n));
    let mut out = Vec::new();
    let ranges = [
        (day(0), day(4)),
        (day(1), day(3)),
        (
            day(0).map(|t| t + Duration::hours(5)),
            day(2).map(|t| t + Duration::hours(7)),
        ),
        (
            day(1).map(|t| t + Duration::minutes(61)),
            day(1).map(|t| t + Duration::minutes(200)),
        ),
        (
            day(2).map(|t| t + Duration::seconds(17)),
            day(3).map(|t| t + Duration::seconds(5)),
        ),
    ];
    for (start, end) in ranges {
        for window in [
            None,
            Some(Window::Minute),
            Some(Window::Hour),
            Some(Window::Day),
            Some(Window::Month),
        ] {
            for (customer, by_customer) in [
                (None, false),
                (None, true),
                (Some("c1".to_owned()), false),
                (Some("c2".to_owned()), true),
            ] {
                out.push(MeterQuery::new(start, end, customer, by_customer, window).unwrap());
            }
        }
    }
    out
}

async fn check_all(store: &Store, s: &Scope, meters: &[Meter], events: &[NewEvent]) {
    for meter in meters {
        let meter = store
            .get_meter(s, &meter.definition.key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            meter.backfill,
            Backfill::Done,
            "{}",
            meter.definition.key.as_str()
        );
        for q in queries() {
            let report = store
                .meter_usage(s, &meter, &q, 100_000, 1_000_000)
                .await
                .unwrap()
                .unwrap();
            assert_same(&report, events, &meter.definition, &q);
        }
    }
}

async fn meters_match_a_recomputation_of_the_events(store: Store) {
    let s = scope();
    let all = definitions();
    // Half the meters exist before any event (the writer counts everything)...
    let mut meters = Vec::new();
    for d in all.iter().step_by(2) {
        meters.push(create(&store, &s, d).await);
    }
    // ...events arrive in batches of every size, with ids repeated within and across them...
    let sent: Vec<Vec<NewEvent>> = {
        let events = events(1500, 7);
        let mut batches = Vec::new();
        let mut rest = events.as_slice();
        let mut rng = Rng(99);
        while !rest.is_empty() {
            let n = (1 + rng.below(300) as usize).min(rest.len());
            batches.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        batches
    };
    let (first, second) = sent.split_at(sent.len() / 2);
    for batch in first {
        store.insert(&[(&s, batch)]).await.unwrap();
    }
    // (On PostgreSQL, what the writer staged so far is folded into the rollups; what follows
    // stays staged until after the first check, so that it reads both.)
    fold_all(&store).await;
    // ...the other half is created half-way (backfill for the first half, the writer after)...
    for d in all.iter().skip(1).step_by(2) {
        meters.push(create(&store, &s, d).await);
    }
    for batch in second {
        store.insert(&[(&s, batch)]).await.unwrap();
    }
    // ...the first half is sent again, all duplicates now, counted nowhere.
    for batch in first {
        let new = store.insert(&[(&s, batch)]).await.unwrap();
        assert!(new[0].iter().all(|n| !n));
    }
    // A meter created half-way has earlier events to count: not done until its backfill is.
    let half_way = &meters[all.len().div_ceil(2)];
    let before = store
        .get_meter(&s, &half_way.definition.key)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(before.backfill, Backfill::Running { .. }),
        "{before:?}"
    );
    backfill(&store).await;
    let events = stored(&sent);
    check_all(&store, &s, &meters, &events).await;
    // Folded, every figure stays the same.
    fold_all(&store).await;
    check_all(&store, &s, &meters, &events).await;
}

async fn a_meter_created_after_the_events_is_backfilled_exactly(store: Store) {
    let s = scope();
    let sent = [events(2000, 3)];
    store.insert(&[(&s, &sent[0])]).await.unwrap();
    let mut meters = Vec::new();
    for d in definitions() {
        meters.push(create(&store, &s, &d).await);
    }
    // Events keep arriving while the backfill runs, step by step.
    let more = events(700, 11);
    let ids = store.meters_backfilling().await.unwrap();
    assert_eq!(ids.len(), meters.len());
    assert!(
        store.backfill_meter(ids[0]).await.unwrap(),
        "2000 events are one step"
    );
    store.insert(&[(&s, &more)]).await.unwrap();
    let waiting = store
        .get_meter(&s, &meters[1].definition.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        waiting.backfill,
        Backfill::Running {
            done: 0,
            total: None
        }
    );
    backfill(&store).await;
    check_all(&store, &s, &meters, &stored(&[sent[0].clone(), more])).await;
}

async fn meters_are_per_scope_and_bounded(store: Store) {
    let (a, b) = (scope(), scope());
    let d = definition("calls", MeterAggregation::Count, &[]);
    let meter = create(&store, &a, &d).await;
    assert!(matches!(
        store.create_meter(&a, &d).await.unwrap(),
        CreateOutcome::Exists
    ));
    // The same key in another scope is another meter, which a's events do not reach.
    let other = create(&store, &b, &d).await;
    let sent = events(300, 5);
    store.insert(&[(&a, &sent)]).await.unwrap();
    let whole = first_four_days(false, None);
    let report = store
        .meter_usage(&b, &other, &whole, 100, 100)
        .await
        .unwrap()
        .unwrap();
    assert!(report.rows.is_empty());
    let report = store
        .meter_usage(&a, &meter, &whole, 100, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        report.total_exact,
        Some(
            stored(std::slice::from_ref(&sent))
                .iter()
                .filter(|e| e.event_name == "call")
                .count() as i128
        )
    );
    // Too many rows, or (where the rollups do not reach) too many events to read: refused.
    let minutes = first_four_days(true, Some(Window::Minute));
    assert_eq!(
        store
            .meter_usage(&a, &meter, &minutes, 10, 1_000_000)
            .await
            .unwrap(),
        Err(Refused::TooManyRows(10))
    );
    assert_eq!(
        store
            .meter_usage(&a, &meter, &minutes, 1_000_000, 10)
            .await
            .unwrap(),
        Err(Refused::TooManyEvents(10))
    );
    // From the rollups too: a daily report per customer one row over its bound is refused,
    // one at its bound is answered.
    let daily = first_four_days(true, Some(Window::Day));
    let report = store
        .meter_usage(&a, &meter, &daily, 1_000_000, 1_000_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.source, ReportSource::Rollups);
    let rows = report.rows.len();
    assert!(rows >= 2, "{rows} rows");
    assert_eq!(
        store
            .meter_usage(&a, &meter, &daily, rows - 1, 1_000_000)
            .await
            .unwrap(),
        Err(Refused::TooManyRows(rows - 1))
    );
    assert_eq!(
        store
            .meter_usage(&a, &meter, &daily, rows, 1_000_000)
            .await
            .unwrap()
            .unwrap()
            .rows
            .len(),
        rows
    );
    // Listed in key order; deleted with its rollups.
    create(
        &store,
        &a,
        &definition("a.first", MeterAggregation::Count, &[]),
    )
    .await;
    let listed: Vec<String> = store
        .list_meters(&a, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.definition.key.as_str().to_owned())
        .collect();
    assert_eq!(listed, ["a.first", "calls"]);
    // Its deltas are still staged (nothing folded here): deleted with it.
    assert!(store.delete_meter(&a, &d.key).await.unwrap());
    assert!(!store.delete_meter(&a, &d.key).await.unwrap());
    assert_eq!(store.get_meter(&a, &d.key).await.unwrap(), None);
    // Events keep being stored without it.
    store.insert(&[(&a, &events(10, 8))]).await.unwrap();
    // Created again, it starts over from the events (backfilled), not from old rollups.
    let again = create(&store, &a, &d).await;
    backfill(&store).await;
    let again = store
        .get_meter(&a, &again.definition.key)
        .await
        .unwrap()
        .unwrap();
    let all = stored(&[sent, events(10, 8)]);
    let report = store
        .meter_usage(&a, &again, &whole, 100, 100)
        .await
        .unwrap()
        .unwrap();
    assert_same(&report, &all, &again.definition, &whole);
}

async fn a_meter_created_during_concurrent_ingest_counts_every_event_once(store: Store) {
    let s = scope();
    let batches: Vec<Vec<NewEvent>> = (0..40).map(|i| events(100, 1000 + i)).collect();
    // Four writers send batches while the meters are created among them: every event is
    // counted by exactly one of the writer and the backfill.
    let sends: Vec<_> = batches
        .chunks(10)
        .map(|chunk| {
            let (store, s, chunk) = (store.clone(), s.clone(), chunk.to_vec());
            tokio::spawn(async move {
                for batch in &chunk {
                    store.insert(&[(&s, batch)]).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    // Folds run throughout, as the fold task's would.
    let folding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let folder = {
        let (store, folding) = (store.clone(), folding.clone());
        tokio::spawn(async move {
            while folding.load(std::sync::atomic::Ordering::Relaxed) {
                store.fold_meters().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut meters = Vec::new();
    for d in definitions() {
        meters.push(create(&store, &s, &d).await);
        tokio::task::yield_now().await;
    }
    for send in sends {
        send.await.unwrap();
    }
    folding.store(false, std::sync::atomic::Ordering::Relaxed);
    folder.await.unwrap();
    backfill(&store).await;
    // Which batch won a repeated id depends on the race; what was stored is what counts.
    let (stored_events, _) = store
        .list_events(&s, &Default::default(), None, u32::MAX, usize::MAX)
        .await
        .unwrap();
    let stored_events: Vec<NewEvent> = stored_events
        .into_iter()
        .map(|e| NewEvent {
            event_id: e.event_id,
            event_name: e.event_name,
            external_customer_id: e.external_customer_id,
            timestamp: e.timestamp,
            properties: e.properties,
            source: e.source,
        })
        .collect();
    check_all(&store, &s, &meters, &stored_events).await;
}

async fn usage_is_refused_until_the_backfill_is_done(store: Store) {
    use event_service::EventError;
    use event_service::meters::{MeterLimits, Meters};
    let s = scope();
    store.insert(&[(&s, &events(50, 4))]).await.unwrap();
    let meters = Meters::new(
        store.clone(),
        MeterLimits {
            max_rows: 1000,
            max_events: 1000,
        },
    );
    let d = definition("calls", MeterAggregation::Count, &[]);
    meters.create(&s, d.clone()).await.unwrap();
    let whole = first_four_days(false, None);
    match meters.usage(&s, &d.key, &whole).await {
        Err(EventError::FailedPrecondition(m)) => {
            assert!(
                m.contains("still counting the events stored before it"),
                "{m}"
            );
        }
        other => panic!("answered during the backfill: {other:?}"),
    }
    backfill(&store).await;
    let report = meters.usage(&s, &d.key, &whole).await.unwrap();
    assert!(report.total_exact.is_some_and(|n| n > 0));
    assert!(matches!(
        meters.create(&s, d.clone()).await,
        Err(EventError::MeterExists(_))
    ));
}

async fn a_fold_takes_at_most_its_limit_of_staged_rows(store: Store) {
    use event_service::store::meters::FOLD_ROWS;
    let s = scope();
    let d = definition("calls", MeterAggregation::Count, &[]);
    let meter = create(&store, &s, &d).await;
    backfill(&store).await;
    // One staged row per batch on PostgreSQL (none on SQLite, whose writer adds to the rollups).
    // Each batch's events are new and of the meter's name, so that each batch stages a row.
    let batches: Vec<Vec<NewEvent>> = (0..FOLD_ROWS as u64 + 7)
        .map(|i| {
            let mut batch = events(3, 5000 + i);
            for (j, e) in batch.iter_mut().enumerate() {
                e.event_id = format!("fold-{i}-{j}");
                e.event_name = "call".into();
            }
            batch
        })
        .collect();
    for batch in &batches {
        store.insert(&[(&s, batch)]).await.unwrap();
    }
    let mut takes = Vec::new();
    loop {
        let taken = store.fold_meters().await.unwrap();
        if taken == 0 {
            break;
        }
        takes.push(taken);
    }
    let staged: usize = takes.iter().sum();
    assert!(staged == 0 || staged == batches.len(), "{takes:?}");
    if staged > 0 {
        assert_eq!(takes, [FOLD_ROWS, 7]);
    }
    let whole = MeterQuery::new(
        Some(t0() - Duration::days(1)),
        Some(t0() + Duration::days(40)),
        None,
        false,
        None,
    )
    .unwrap();
    let report = store
        .meter_usage(&s, &meter, &whole, 100, 100)
        .await
        .unwrap()
        .unwrap();
    assert_same(&report, &stored(&batches), &meter.definition, &whole);
}

/// SUM, MIN and MAX of one property, for the same event name and group-by, share one rollup
/// series: a meter created beside a finished one has nothing to backfill and is exact at once;
/// the series outlives any one of its meters, and a meter reading other values gets its own.
async fn meters_reading_the_same_values_share_one_series(store: Store) {
    let s = scope();
    let sum = definition("tokens", MeterAggregation::Sum(tokens()), &[]);
    let first = create(&store, &s, &sum).await;
    let mut sent = vec![events(600, 21)];
    store.insert(&[(&s, &sent[0])]).await.unwrap();
    let max = definition("tokens.peak", MeterAggregation::Max(tokens()), &[]);
    let peak = create(&store, &s, &max).await;
    assert_eq!(peak.series, first.series);
    assert_eq!(
        peak.backfill,
        Backfill::Done,
        "events exist, yet nothing to count"
    );
    // Another group-by, a count or another aggregation's values: not the same rollups.
    let by_model = definition(
        "tokens.min.by_model",
        MeterAggregation::Min(tokens()),
        &["model"],
    );
    let calls = definition("calls", MeterAggregation::Count, &[]);
    let latest = definition("tokens.latest", MeterAggregation::Latest(tokens()), &[]);
    let mut others = Vec::new();
    for d in [&by_model, &calls, &latest] {
        let other = create(&store, &s, d).await;
        assert_ne!(other.series, first.series, "{}", d.key.as_str());
        assert!(matches!(other.backfill, Backfill::Running { .. }));
        others.push(other);
    }
    backfill(&store).await;
    let all: Vec<Meter> = [first.clone(), peak.clone()]
        .into_iter()
        .chain(others.iter().cloned())
        .collect();
    check_all(&store, &s, &all, &stored(&sent)).await;
    // Its first meter deleted, the series stays and keeps counting for the other.
    assert!(store.delete_meter(&s, &sum.key).await.unwrap());
    let mut more = events(400, 22);
    for e in &mut more {
        e.event_id.insert(0, 'b');
    }
    sent.push(more);
    store.insert(&[(&s, &sent[1])]).await.unwrap();
    fold_all(&store).await;
    check_all(&store, &s, std::slice::from_ref(&peak), &stored(&sent)).await;
    // Created again, it reads the series still there, exact at once; events stored while both
    // read it are counted once.
    let again = create(&store, &s, &sum).await;
    assert_eq!(again.series, first.series);
    assert_eq!(again.backfill, Backfill::Done);
    check_all(&store, &s, &[again.clone(), peak.clone()], &stored(&sent)).await;
    let mut last = events(300, 23);
    for e in &mut last {
        e.event_id.insert(0, 'c');
    }
    sent.push(last);
    store.insert(&[(&s, &sent[2])]).await.unwrap();
    check_all(&store, &s, &[again, peak], &stored(&sent)).await;
    // With every meter of the series gone, a new one starts a series of its own.
    assert!(store.delete_meter(&s, &sum.key).await.unwrap());
    assert!(store.delete_meter(&s, &max.key).await.unwrap());
    let fresh = create(&store, &s, &max).await;
    assert_ne!(fresh.series, first.series);
    assert!(matches!(fresh.backfill, Backfill::Running { .. }));
    backfill(&store).await;
    check_all(&store, &s, &[fresh], &stored(&sent)).await;
}

tollgate::store_suite!(
    crate::connect;
    a_fold_takes_at_most_its_limit_of_staged_rows,
    usage_is_refused_until_the_backfill_is_done,
    a_meter_created_during_concurrent_ingest_counts_every_event_once,
    meters_match_a_recomputation_of_the_events,
    a_meter_created_after_the_events_is_backfilled_exactly,
    meters_are_per_scope_and_bounded,
    meters_reading_the_same_values_share_one_series,
);
