//! The event store suite, run against SQLite always and PostgreSQL when TEST_DATABASE_URL is set.
//! Every query of the store is exercised here: runtime queries are not checked at compile time.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use event_service::model::query::{Cursor, ListFilter};
use event_service::model::usage::{Aggregation, PropertyName, UsageQuery, UsageReport};
use event_service::model::{Event, NewEvent, Scope};
use event_service::store::sql::SqlStore;
use event_service::store::{EventStore, StoreError};
use tollgate::ids::TenantId;
use tollgate::keys::Environment;

async fn connect(url: &tollgate::database::DatabaseUrl) -> Result<Arc<dyn EventStore>, StoreError> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}

/// The store's reads without their byte and row bounds, which are tested apart.
trait Unbounded {
    async fn list(
        &self,
        scope: &Scope,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;
    async fn report(&self, scope: &Scope, query: &UsageQuery) -> Result<UsageReport, StoreError>;
}

impl Unbounded for Arc<dyn EventStore> {
    async fn list(
        &self,
        scope: &Scope,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let (events, cut) = self
            .list_events(scope, filter, after, limit, usize::MAX)
            .await?;
        assert!(!cut, "no byte budget to stop at");
        Ok(events)
    }

    async fn report(&self, scope: &Scope, query: &UsageQuery) -> Result<UsageReport, StoreError> {
        Ok(self
            .usage(scope, query, usize::MAX)
            .await?
            .expect("no row bound to exceed"))
    }
}

fn scope() -> Scope {
    Scope {
        tenant_id: TenantId::generate(),
        environment: Environment::Production,
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

fn event(id: &str, name: &str, customer: &str, at: DateTime<Utc>, properties: &str) -> NewEvent {
    NewEvent {
        event_id: id.into(),
        event_name: name.into(),
        external_customer_id: customer.into(),
        timestamp: at,
        properties: properties.into(),
        source: "test".into(),
    }
}

async fn idempotent_inserts(store: Arc<dyn EventStore>) {
    let s = scope();
    let first = [
        event("a", "call", "c1", t0(), r#"{"n":1}"#),
        event("b", "call", "c1", t0(), "{}"),
    ];
    assert_eq!(
        store.insert(&[(&s, &first)]).await.unwrap(),
        vec![vec![true, true]]
    );
    // Re-sent ids are duplicates and leave the stored event unchanged; an id twice in one
    // batch is stored once.
    let again = [
        event("a", "changed", "c9", t0(), r#"{"n":2}"#),
        event("c", "call", "c1", t0(), "{}"),
        event("c", "call", "c1", t0(), "{}"),
    ];
    assert_eq!(
        store.insert(&[(&s, &again)]).await.unwrap(),
        vec![vec![false, true, false]]
    );
    let a = store.get_event(&s, "a").await.unwrap().unwrap();
    assert_eq!(
        (a.event_name.as_str(), a.external_customer_id.as_str()),
        ("call", "c1")
    );
    let props: serde_json::Value = serde_json::from_str(&a.properties).unwrap();
    assert_eq!(props, serde_json::json!({"n": 1}));
    assert_eq!(a.timestamp, t0());
    assert!(a.ingested_at > t0());

    // Ids are unique per scope, not globally: the same id in another tenant or environment is new.
    let other_tenant = scope();
    let sandbox = Scope {
        tenant_id: s.tenant_id.clone(),
        environment: Environment::Sandbox,
    };
    let same_id = [event("a", "call", "c1", t0(), "{}")];
    let results = store
        .insert(&[
            (&other_tenant, &same_id),
            (&sandbox, &same_id),
            (&s, &same_id),
        ])
        .await
        .unwrap();
    assert_eq!(results, vec![vec![true], vec![true], vec![false]]);
    assert!(store.get_event(&other_tenant, "b").await.unwrap().is_none());
    assert!(store.get_event(&sandbox, "b").await.unwrap().is_none());
    assert!(store.get_event(&s, "zzz").await.unwrap().is_none());
}

/// Two writers inserting the same new ids in opposite orders at once (a client resending a
/// reordered batch while the first is in flight) each store or skip every id, and each id is
/// stored once. On PostgreSQL they wait for each other on the idempotency index until the
/// database fails one of them as a deadlock, which must not reach the callers.
async fn reordered_concurrent_batches_store_each_id_once(store: Arc<dyn EventStore>) {
    let s = scope();
    for round in 0..10 {
        let forward: Vec<NewEvent> = (0..300)
            .map(|i| event(&format!("r{round}-{i:03}"), "call", "c1", t0(), "{}"))
            .collect();
        let backward: Vec<NewEvent> = forward.iter().rev().cloned().collect();
        let (one, other) = ([(&s, forward.as_slice())], [(&s, backward.as_slice())]);
        let (a, b) = tokio::join!(store.insert(&one), store.insert(&other));
        let (a, b) = (a.unwrap(), b.unwrap());
        // Each id is new in exactly one of the two.
        for i in 0..300 {
            assert!(a[0][i] ^ b[0][299 - i], "round {round}, event {i}");
        }
    }
    let stored = store
        .list(&s, &ListFilter::default(), None, 10_000)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3000);
}

async fn large_batches_go_in_whole(store: Arc<dyn EventStore>) {
    let s = scope();
    let events: Vec<NewEvent> = (0..2500)
        .map(|i| {
            event(
                &format!("e{i}"),
                "call",
                "c",
                t0() + Duration::seconds(i),
                "{}",
            )
        })
        .collect();
    let results = store.insert(&[(&s, &events)]).await.unwrap();
    assert_eq!(results[0].len(), 2500);
    assert!(results[0].iter().all(|new| *new));
    let listed = store
        .list(&s, &ListFilter::default(), None, 3000)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2500);

    // A retry of part of it, with new events around, spanning several statements: only the
    // stored ids and the repeat are duplicates, and nothing is stored twice.
    let mut retry: Vec<NewEvent> = events[1200..1300].to_vec();
    retry.extend((2500..4000).map(|i| event(&format!("e{i}"), "call", "c", t0(), "{}")));
    retry.push(events[5].clone());
    retry.push(event("e3999", "call", "c", t0(), "{}"));
    let results = store.insert(&[(&s, &retry)]).await.unwrap();
    let duplicates: Vec<usize> = (0..retry.len()).filter(|i| !results[0][*i]).collect();
    let mut expected: Vec<usize> = (0..100).collect();
    expected.extend([1600, 1601]);
    assert_eq!(duplicates, expected);
    let listed = store
        .list(&s, &ListFilter::default(), None, 5000)
        .await
        .unwrap();
    assert_eq!(listed.len(), 4000);

    // A stored id only at the very end: whatever the first attempt wrote before meeting it is
    // undone, so every other event is still reported new (and stored once).
    let mut late: Vec<NewEvent> = (4000..5500)
        .map(|i| event(&format!("e{i}"), "call", "c", t0(), "{}"))
        .collect();
    late.push(events[0].clone());
    let results = store.insert(&[(&s, &late)]).await.unwrap();
    assert!(results[0][..1500].iter().all(|new| *new));
    assert!(!results[0][1500]);
    let listed = store
        .list(&s, &ListFilter::default(), None, 6000)
        .await
        .unwrap();
    assert_eq!(listed.len(), 5500);
}

async fn listing_filters_and_pages(store: Arc<dyn EventStore>) {
    let s = scope();
    let mut events = Vec::new();
    for i in 0..30 {
        // Pairs share a timestamp so that paging must break ties by seq.
        let at = t0() + Duration::seconds(i / 2);
        let (name, customer) = if i % 3 == 0 {
            ("upload", "c2")
        } else {
            ("call", "c1")
        };
        events.push(event(&format!("e{i:02}"), name, customer, at, "{}"));
    }
    store.insert(&[(&s, &events)]).await.unwrap();
    store.insert(&[(&scope(), &events)]).await.unwrap();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(&s, &ListFilter::default(), after, 7)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        let last = page.last().unwrap();
        after = Some(Cursor {
            ts: tollgate::time::to_micros(last.timestamp),
            seq: last.seq,
        });
        seen.extend(page);
    }
    assert_eq!(seen.len(), 30);
    assert!(
        seen.windows(2)
            .all(|w| (w[0].timestamp, w[0].seq) > (w[1].timestamp, w[1].seq))
    );
    let mut ids: Vec<_> = seen.iter().map(|e| e.event_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30);

    let uploads = ListFilter {
        event_name: Some("upload".into()),
        ..Default::default()
    };
    assert_eq!(store.list(&s, &uploads, None, 100).await.unwrap().len(), 10);
    let c1 = ListFilter {
        external_customer_id: Some("c1".into()),
        ..Default::default()
    };
    assert_eq!(store.list(&s, &c1, None, 100).await.unwrap().len(), 20);
    let nowhere = ListFilter {
        source: Some("elsewhere".into()),
        ..Default::default()
    };
    assert!(
        store
            .list(&s, &nowhere, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let window = ListFilter {
        start_time: Some(t0() + Duration::seconds(2)),
        end_time: Some(t0() + Duration::seconds(4)),
        ..Default::default()
    };
    let in_window = store.list(&s, &window, None, 100).await.unwrap();
    assert_eq!(in_window.len(), 4, "seconds 2 and 3, two events each");
}

async fn usage_matches_a_hand_count(store: Arc<dyn EventStore>) {
    let s = scope();
    let hour = |h: i64| t0() + Duration::hours(h);
    let events = [
        event(
            "1",
            "tokens",
            "alice",
            hour(0),
            r#"{"n": 10, "model": "a"}"#,
        ),
        event(
            "2",
            "tokens",
            "alice",
            hour(0) + Duration::minutes(30),
            r#"{"n": 2.5, "model": "b"}"#,
        ),
        event("3", "tokens", "bob", hour(1), r#"{"n": 7, "model": "a"}"#),
        event("4", "tokens", "bob", hour(1), r#"{"n": "not a number"}"#),
        event("5", "tokens", "carol", hour(2), r#"{}"#),
        event("6", "other", "alice", hour(0), r#"{"n": 1000}"#),
        event("7", "tokens", "alice", hour(3), r#"{"n": 99}"#), // outside the range
    ];
    store.insert(&[(&s, &events)]).await.unwrap();
    store.insert(&[(&scope(), &events)]).await.unwrap(); // another tenant: never counted

    let query = |aggregation, window, group| {
        UsageQuery::new(
            "tokens".into(),
            Some(hour(0)),
            Some(hour(3)),
            aggregation,
            window,
            group,
            None,
        )
        .unwrap()
    };
    let n = || PropertyName::parse("n").unwrap();

    let count = store
        .report(&s, &query(Aggregation::Count, None, false))
        .await
        .unwrap();
    assert_eq!(count.total, 5.0);
    assert_eq!(count.rows.len(), 1);
    assert_eq!(count.rows[0].event_count, 5);

    let sum = store
        .report(&s, &query(Aggregation::Sum(n()), None, false))
        .await
        .unwrap();
    assert_eq!(
        sum.total, 19.5,
        "10 + 2.5 + 7; the string and the missing value are ignored"
    );
    assert_eq!(sum.rows[0].event_count, 3);
    assert_eq!(
        store
            .report(&s, &query(Aggregation::Min(n()), None, false))
            .await
            .unwrap()
            .total,
        2.5
    );
    assert_eq!(
        store
            .report(&s, &query(Aggregation::Max(n()), None, false))
            .await
            .unwrap()
            .total,
        10.0
    );
    assert_eq!(
        store
            .report(&s, &query(Aggregation::CountUnique(None), None, false))
            .await
            .unwrap()
            .total,
        3.0
    );
    let models = PropertyName::parse("model").unwrap();
    assert_eq!(
        store
            .report(
                &s,
                &query(Aggregation::CountUnique(Some(models)), None, false)
            )
            .await
            .unwrap()
            .total,
        2.0
    );

    let hourly = query(Aggregation::Sum(n()), Some(3_600_000_000), false);
    let report = store.report(&s, &hourly).await.unwrap();
    let figures: Vec<(i64, f64, i64)> = report
        .rows
        .iter()
        .map(|r| {
            (
                (hourly.span_of(r).0 - hourly.start) / 3_600_000_000,
                r.value,
                r.event_count,
            )
        })
        .collect();
    assert_eq!(
        figures,
        [(0, 12.5, 2), (1, 7.0, 1)],
        "hour 2 has no numeric value and is left out"
    );
    assert_eq!(report.total, 19.5);

    let per_customer = store
        .report(&s, &query(Aggregation::Count, None, true))
        .await
        .unwrap();
    let figures: Vec<(String, f64)> = per_customer
        .rows
        .iter()
        .map(|r| (r.external_customer_id.clone().unwrap(), r.value))
        .collect();
    assert_eq!(
        figures,
        [
            ("alice".into(), 2.0),
            ("bob".into(), 2.0),
            ("carol".into(), 1.0)
        ]
    );
    assert_eq!(per_customer.total, 5.0);

    let max_per_hour_and_customer = store
        .report(&s, &query(Aggregation::Max(n()), Some(3_600_000_000), true))
        .await
        .unwrap();
    assert_eq!(max_per_hour_and_customer.rows.len(), 2);
    assert_eq!(max_per_hour_and_customer.total, 10.0);

    let only_bob = UsageQuery::new(
        "tokens".into(),
        Some(hour(0)),
        Some(hour(3)),
        Aggregation::Count,
        None,
        false,
        Some("bob".into()),
    )
    .unwrap();
    assert_eq!(store.report(&s, &only_bob).await.unwrap().total, 2.0);
    let empty = UsageQuery::new(
        "nothing".into(),
        Some(hour(0)),
        Some(hour(3)),
        Aggregation::Sum(n()),
        None,
        false,
        None,
    )
    .unwrap();
    let report = store.report(&s, &empty).await.unwrap();
    assert!(report.rows.is_empty());
    assert_eq!(report.total, 0.0);
    assert!(store.reachable().await);
}

/// Every field comes back as it was sent: text outside ASCII, a timestamp to the microsecond,
/// nested properties of every JSON type, and a source. (PostgreSQL writes new rows with binary
/// `COPY`, whose encoding of each type is ours.)
async fn values_are_stored_as_sent(store: Arc<dyn EventStore>) {
    let s = scope();
    let at = t0() + Duration::microseconds(123_456_789);
    let properties = serde_json::json!({
        "model": "gpt-ß→😀",
        "tokens": 12.5,
        "big": 9_007_199_254_740_991_i64,
        "nested": {"list": [1, "two", null, true, {"deep": false}]},
        "quote\"and\\backslash": "tab\tnewline\n",
    });
    let mut sent = event(
        "évt-1 ünïcode",
        "call·名前",
        "cus_ø",
        at,
        &properties.to_string(),
    );
    sent.source = "sdk/ruby ✓".into();
    let other = event("plain", "call", "c1", t0(), "{}");
    assert_eq!(
        store.insert(&[(&s, &[sent.clone(), other])]).await.unwrap(),
        vec![vec![true, true]]
    );
    let got = store.get_event(&s, &sent.event_id).await.unwrap().unwrap();
    assert_eq!(got.event_id, sent.event_id);
    assert_eq!(got.event_name, sent.event_name);
    assert_eq!(got.external_customer_id, sent.external_customer_id);
    assert_eq!(got.timestamp, at);
    assert_eq!(got.source, sent.source);
    let stored: serde_json::Value = serde_json::from_str(&got.properties).unwrap();
    assert_eq!(stored, properties);
    let plain = store.get_event(&s, "plain").await.unwrap().unwrap();
    assert_eq!(
        (plain.event_name.as_str(), plain.properties.as_str()),
        ("call", "{}")
    );
    assert_eq!(plain.ingested_at, got.ingested_at);
}

/// Sums are exact past 64 bits when every value is an integer (the exact figure is carried in
/// 128 bits), are doubles otherwise, and are +infinity past the double range: the same on both
/// backends, never an error.
async fn sums_are_exact_past_64_bits(store: Arc<dyn EventStore>) {
    let s = scope();
    let at = t0();
    let sum_of = |name: &'static str| {
        UsageQuery::new(
            name.into(),
            Some(at),
            Some(at + Duration::hours(1)),
            Aggregation::Sum(PropertyName::parse("n").unwrap()),
            None,
            false,
            None,
        )
        .unwrap()
    };
    // 2000 × 8.99e15 = 1.798e19, past i64::MAX (9.22e18).
    let big: Vec<NewEvent> = (0..2000)
        .map(|i| {
            event(
                &format!("b{i}"),
                "big",
                "c",
                at,
                r#"{"n": 8990000000000000}"#,
            )
        })
        .collect();
    store.insert(&[(&s, &big)]).await.unwrap();
    let report = store.report(&s, &sum_of("big")).await.unwrap();
    assert_eq!(report.total_exact, Some(17_980_000_000_000_000_000));
    assert_eq!(report.total, 1.798e19);

    // Negative integers come apart and back together exactly.
    let negative = [
        event("n1", "negative", "c", at, r#"{"n": -1}"#),
        event("n2", "negative", "c", at, r#"{"n": -8990000000000000}"#),
        event("n3", "negative", "c", at, r#"{"n": 4294967296}"#),
    ];
    store.insert(&[(&s, &negative)]).await.unwrap();
    let report = store.report(&s, &sum_of("negative")).await.unwrap();
    assert_eq!(
        report.total_exact,
        Some(-1 - 8_990_000_000_000_000 + 4_294_967_296)
    );

    // A fraction makes the sum a double, with no exact figure.
    let mixed = [
        event("m1", "mixed", "c", at, r#"{"n": 3}"#),
        event("m2", "mixed", "c", at, r#"{"n": 0.5}"#),
        event("m3", "mixed", "c", at, r#"{"n": 1e20}"#),
    ];
    store.insert(&[(&s, &mixed)]).await.unwrap();
    let report = store.report(&s, &sum_of("mixed")).await.unwrap();
    assert_eq!(report.total_exact, None);
    assert_eq!(report.total, 1e20 + 3.5);

    // Past the double range: +infinity, not an error.
    let huge = [
        event("h1", "huge", "c", at, r#"{"n": 1e308}"#),
        event("h2", "huge", "c", at, r#"{"n": 1e308}"#),
    ];
    store.insert(&[(&s, &huge)]).await.unwrap();
    let report = store.report(&s, &sum_of("huge")).await.unwrap();
    assert_eq!(report.total, f64::INFINITY);
    assert_eq!(report.rows[0].event_count, 2);
}

/// What an insert acknowledges is committed: once it has returned (and, where the store syncs
/// apart, once the sync has), a connection of another store on the same database sees every
/// row. An insert that answered before its commit would fail this on PostgreSQL.
async fn acknowledged_rows_are_visible_to_another_connection(url: tollgate::database::DatabaseUrl) {
    let store = connect(&url).await.unwrap();
    let s = scope();
    // Batches large enough for several statements, and a group of several batches.
    let batches: Vec<Vec<NewEvent>> = (0..3)
        .map(|b| {
            (0..1500)
                .map(|i| event(&format!("b{b}-{i}"), "seen", "c", t0(), "{}"))
                .collect()
        })
        .collect();
    let group: Vec<_> = batches.iter().map(|b| (&s, b.as_slice())).collect();
    store.insert(&group).await.unwrap();
    if store.syncs_separately() {
        store.sync().await.unwrap();
    }
    let other = connect(&url).await.unwrap();
    let seen = other
        .list(&s, &ListFilter::default(), None, 10_000)
        .await
        .unwrap();
    assert_eq!(seen.len(), 4500);
}

/// The SQLite writer leaves copying its log to the checkpointer: many commits, none near
/// SQLite's default of 1000 log pages alone, leave far more than 1000 pages in the log, and a
/// checkpoint then copies them all.
#[tokio::test]
async fn sqlite_writer_leaves_its_log_to_the_checkpointer() {
    let dir = tempfile::tempdir().unwrap();
    let store = connect(&tollgate::testing::sqlite_in(dir.path()))
        .await
        .unwrap();
    assert!(store.checkpoints_separately());
    let s = scope();
    let properties = format!(r#"{{"note": "{}"}}"#, "x".repeat(400));
    for batch in 0..30 {
        let events: Vec<NewEvent> = (0..500)
            .map(|i| {
                let id = format!("e{batch}-{i}");
                event(&id, "call", &format!("c{i}"), t0(), &properties)
            })
            .collect();
        store.insert(&[(&s, &events)]).await.unwrap();
    }
    let found = store.checkpoint().await.unwrap().expect("a checkpoint");
    assert!(
        found.log > 2000,
        "the writer checkpointed by itself: {found:?}"
    );
    assert_eq!(found.copied, found.log, "{found:?}");
    // Copied, the log starts over at the next commit.
    store
        .insert(&[(&s, &[event("after", "call", "c", t0(), "{}")])])
        .await
        .unwrap();
    let after = store.checkpoint().await.unwrap().expect("a checkpoint");
    assert!(after.log < 100, "{after:?}");
}

#[tokio::test]
async fn sqlite_acknowledged_rows_are_visible_to_another_connection() {
    let dir = tempfile::tempdir().unwrap();
    acknowledged_rows_are_visible_to_another_connection(tollgate::testing::sqlite_in(dir.path()))
        .await;
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL (at build time) to run the PostgreSQL suite"
)]
async fn postgres_acknowledged_rows_are_visible_to_another_connection() {
    let database = tollgate::testing::PostgresDatabase::create().await;
    acknowledged_rows_are_visible_to_another_connection(database.url().clone()).await;
}

tollgate::store_suite!(
    crate::connect;
    sums_are_exact_past_64_bits,
    idempotent_inserts,
    reordered_concurrent_batches_store_each_id_once,
    large_batches_go_in_whole,
    listing_filters_and_pages,
    usage_matches_a_hand_count,
    values_are_stored_as_sent,
);

/// Rows written under the first schema (tenant and environment in every row) are moved to the
/// scope-keyed schema by migration 0002, and stay readable and idempotent.
async fn migration_keeps_events(url: tollgate::database::DatabaseUrl) {
    async fn old_schema_rows<DB: sqlx::Database>(
        pool: &sqlx::Pool<DB>,
        migrator: &sqlx::migrate::Migrator,
        scope: &Scope,
        insert: &str,
    ) where
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
        DB::Connection: sqlx::migrate::Migrate,
        for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
        for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let mut first = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(migrator.migrations[..1].to_vec()),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        first.set_ignore_missing(true);
        first.run(pool).await.unwrap();
        for (i, id) in ["old-1", "old-2"].into_iter().enumerate() {
            sqlx::query(insert)
                .bind(scope.tenant_id.as_str())
                .bind(scope.environment.as_str())
                .bind(id)
                .bind(tollgate::time::to_micros(t0()) + i as i64)
                .execute(pool)
                .await
                .unwrap();
        }
    }
    let s = scope();
    match &url {
        tollgate::database::DatabaseUrl::Sqlite(path) => {
            let pool = tollgate::database::sqlite_pool(path, 1).await.unwrap();
            let insert = "INSERT INTO events (tenant_id, environment, event_id, event_name, external_customer_id, ts, properties, source, ingested_at) VALUES ($1, $2, $3, 'call', 'c1', $4, '{\"n\":1}', '', $4)";
            old_schema_rows(&pool, &sqlx::migrate!("./migrations/sqlite"), &s, insert).await;
            pool.close().await;
        }
        tollgate::database::DatabaseUrl::Postgres(u) => {
            let pool = tollgate::database::postgres_pool(u, 1, None).await.unwrap();
            let insert = "INSERT INTO events (tenant_id, environment, event_id, event_name, external_customer_id, ts, properties, source, ingested_at) VALUES ($1, $2, $3, 'call', 'c1', $4, '{\"n\":1}'::jsonb, '', $4)";
            old_schema_rows(&pool, &sqlx::migrate!("./migrations/postgres"), &s, insert).await;
            pool.close().await;
        }
    }
    let store = connect(&url).await.unwrap();
    let listed = store
        .list(&s, &ListFilter::default(), None, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["old-2", "old-1"]);
    let props: serde_json::Value = serde_json::from_str(&listed[0].properties).unwrap();
    assert_eq!(props, serde_json::json!({"n": 1}));
    let again = [
        event("old-1", "call", "c1", t0(), "{}"),
        event("new-1", "call", "c1", t0(), "{}"),
    ];
    assert_eq!(
        store.insert(&[(&s, &again)]).await.unwrap(),
        vec![vec![false, true]]
    );
    let newest = store
        .list(&s, &ListFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(
        newest
            .iter()
            .any(|e| e.event_id == "new-1" && e.seq > listed[0].seq),
        "new rows continue after moved ones"
    );
}

#[tokio::test]
async fn sqlite_migration_keeps_events() {
    let dir = tempfile::tempdir().unwrap();
    migration_keeps_events(tollgate::testing::sqlite_in(dir.path())).await;
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL (at build time) to run the PostgreSQL suite"
)]
async fn postgres_migration_keeps_events() {
    let database = tollgate::testing::PostgresDatabase::create().await;
    migration_keeps_events(database.url().clone()).await;
}

/// SQLite keeps which ids are stored in memory, then in a small and a large key table (see
/// `event_service::store::keys`). With limits small enough that a few hundred events flush
/// and merge many times, in parts, every resent id, wherever its key is by then, is a
/// duplicate, every id is stored once and found by `GetEvent`, also after the store reopens
/// with keys still only in memory and in the middle of a flush, and the key tables hold exactly
/// one key per flushed event.
#[tokio::test]
async fn sqlite_ids_stay_unique_through_flushes_merges_and_restarts() {
    use event_service::store::keys::KeyLimits;
    let dir = tempfile::tempdir().unwrap();
    let url = tollgate::testing::sqlite_in(dir.path());
    let tollgate::database::DatabaseUrl::Sqlite(path) = &url else {
        unreachable!("a SQLite URL")
    };
    // About five new keys a round earn ten keys of upkeep, saved up to twelve at once: flushes
    // of twenty and more keys take several parts, and merges get what is left.
    let limits = KeyLimits {
        tail: 20,
        merge: 20,
        pace: 2,
        least: 12,
        most: 12,
    };
    let state = || async {
        let pool = tollgate::database::sqlite_pool(path, 1).await.unwrap();
        let state: (i64, i64, Option<i64>, Option<String>, i64, i64) = sqlx::query_as(
            "SELECT flushed_seq, flushing_seq, flushing_scope_id, flushing_event_id, \
             small_keys, large_keys FROM event_keys_state WHERE id = 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        state
    };
    let mut reopened_mid_flush = 0;
    let open = || async {
        let store: Arc<dyn EventStore> =
            Arc::new(SqlStore::open_sqlite(path, limits).await.unwrap());
        store
    };
    let (s, other) = (scope(), scope());
    // A fixed pseudo-random sequence, so that a failure can be replayed.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as usize
    };
    let mut stored: Vec<String> = Vec::new();
    let mut store = open().await;
    for round in 0..60 {
        if round > 0 && round % 7 == 0 {
            // Some keys are only in memory now, some perhaps half flushed: the reopened store
            // rebuilds the ones and resumes the other.
            drop(store);
            let (flushed, flushing, ..) = state().await;
            if flushing > flushed {
                reopened_mid_flush += 1;
            }
            store = open().await;
        }
        // New ids above every stored one (as time-ordered ids come), and one below them.
        let mut ids: Vec<String> = (0..3).map(|i| format!("k{round:02}-{i}")).collect();
        ids.push(format!("a{round:02}"));
        // Resent ids from any earlier round, and a repeat within the batch.
        for _ in 0..2 {
            if !stored.is_empty() {
                ids.push(stored[next(stored.len())].clone());
            }
        }
        ids.push(ids[0].clone());
        let events: Vec<NewEvent> = ids
            .iter()
            .map(|id| event(id, &format!("name-{id}"), "c", t0(), "{}"))
            .collect();
        let same_ids_elsewhere = [event(&ids[0], "call", "c", t0(), "{}")];
        let new = store
            .insert(&[(&s, &events), (&other, &same_ids_elsewhere)])
            .await
            .unwrap();
        let expected: Vec<bool> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| !stored.contains(id) && !ids[..i].contains(id))
            .collect();
        assert_eq!(new[0], expected, "round {round}: {ids:?}");
        assert_eq!(new[1], vec![true], "round {round}: ids are per scope");
        stored.extend(ids.iter().take(4).cloned());
        store.sync().await.unwrap();
        for _ in 0..3 {
            let id = &stored[next(stored.len())];
            let found = store.get_event(&s, id).await.unwrap();
            let found = found.unwrap_or_else(|| panic!("round {round}: {id} not found"));
            assert_eq!(found.event_name, format!("name-{id}"), "round {round}");
        }
        assert!(store.get_event(&s, "never-sent").await.unwrap().is_none());
    }
    let listed = store
        .list(&s, &ListFilter::default(), None, 10_000)
        .await
        .unwrap();
    let mut listed: Vec<String> = listed.into_iter().map(|e| e.event_id).collect();
    listed.sort();
    let mut expected = stored.clone();
    expected.sort();
    assert_eq!(listed, expected);
    for id in &stored {
        assert!(store.get_event(&s, id).await.unwrap().is_some(), "{id}");
    }
    drop(store);

    assert!(reopened_mid_flush > 0, "no reopen met a flush under way");

    // The key tables agree with their counts, hold each flushed event's key once, and the large
    // one took merges.
    let (flushed, flushing, after_scope, after_id, small, large) = state().await;
    let pool = tollgate::database::sqlite_pool(path, 1).await.unwrap();
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap();
            n
        }
    };
    assert_eq!(
        (
            count("event_keys_small").await,
            count("event_keys_large").await
        ),
        (small, large)
    );
    // The upkeep kept up kept up: only the last few rounds' keys are still only in memory.
    let (in_memory,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events WHERE seq > ?")
        .bind(flushed)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        in_memory <= 3 * limits.tail as i64,
        "{in_memory} keys never left memory"
    );
    assert!(large >= 100, "merged: {large}");
    let (flushed_events, mismatched): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE k.seq IS NOT e.seq) FROM events e \
         LEFT JOIN (SELECT scope_id, event_id, seq FROM event_keys_small UNION ALL \
         SELECT scope_id, event_id, seq FROM event_keys_large) k \
         ON k.scope_id = e.scope_id AND k.event_id = e.event_id WHERE e.seq <= ? \
         OR (e.seq <= ? AND (e.scope_id, e.event_id) <= (?, ?))",
    )
    .bind(flushed)
    .bind(flushing)
    .bind(after_scope)
    .bind(after_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(flushed_events, small + large, "one key per flushed event");
    assert_eq!(mismatched, 0, "each key names its event");
}
