//! Two identity-service replicas on one PostgreSQL database: what one issues or revokes, the
//! other knows at once, through the change log (NOTIFY), not after its key-cache TTL.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use identity_service::testing::TestIdentity;
use tollgate::proto::identity::v1 as pb;
use tollgate::testing::{PostgresDatabase, with_key};

async fn two_replicas(database: &PostgresDatabase) -> (TestIdentity, TestIdentity) {
    let url = database.url().clone();
    let spawn = |url: tollgate::database::DatabaseUrl| {
        TestIdentity::spawn_with(move |s| {
            s.database_url = url;
            // Far longer than the test: only the change log can explain a prompt revocation.
            s.key_cache_ttl = Duration::from_secs(600);
        })
    };
    (spawn(url.clone()).await, spawn(url).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL (at build time) to run the PostgreSQL suite"
)]
async fn what_one_replica_issues_or_revokes_the_other_knows_at_once() {
    let database = PostgresDatabase::create().await;
    let (a, b) = two_replicas(&database).await;
    // Issued on A, used through B at once: B's index learns of it on its first miss.
    let key = a.key_for(None).await;
    assert!(b.authorize(&key.api_key, "event:write").await.allowed);
    // B has the record cached now (for 10 minutes); A deletes the key.
    a.keys()
        .delete_api_key(with_key(
            a.admin(),
            pb::DeleteApiKeyRequest { id: key.id.clone() },
        ))
        .await
        .unwrap();
    let deleted = Instant::now();
    loop {
        let decision = b.authorize(&key.api_key, "event:write").await;
        if !decision.allowed {
            assert_eq!(decision.reason, i32::from(pb::AuthorizeReason::KeyNotFound));
            break;
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(5),
            "B still allowed a key A deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "B refused the key {:?} after A deleted it",
        deleted.elapsed()
    );
    // A deleted account's keys likewise.
    let account = a.service_account(&["event_reader"]).await;
    let key = a.key_for(Some(&account)).await;
    assert!(b.authorize(&key.api_key, "event:read").await.allowed);
    a.users()
        .delete_user(with_key(a.admin(), pb::DeleteUserRequest { id: account }))
        .await
        .unwrap();
    let deleted = Instant::now();
    while b.authorize(&key.api_key, "event:read").await.allowed {
        assert!(deleted.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
