//! Test support shared by the services' suites (feature `testing`): a fresh database per test,
//! and the requests every suite makes.
#![allow(clippy::expect_used)] // test support fails loudly by design

use std::path::Path;

use sqlx::{Connection, Executor, PgConnection};

use crate::database::DatabaseUrl;

/// The variable naming a PostgreSQL server the PostgreSQL suites may create databases on.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// A request carrying `key` in the `x-api-key` header, as clients send it.
pub fn with_key<T>(key: &str, message: T) -> tonic::Request<T> {
    crate::metadata::with_api_key(key, message).expect("a key is a valid header value")
}

/// SHA-256 of a raw key, as event-service sends it to `Authorize`.
pub fn digest(key: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A SQLite database file inside `dir` (a temporary folder the test owns).
pub fn sqlite_in(dir: &Path) -> DatabaseUrl {
    DatabaseUrl::Sqlite(dir.join("test.db"))
}

/// A new, empty database on the server that `TEST_DATABASE_URL` names, or `None` when it is unset
/// (the PostgreSQL tests then pass without running). Under CI (`CI` set) an unset variable is a
/// failure, so that the PostgreSQL suite can never be skipped silently there.
pub async fn fresh_postgres_database() -> Option<DatabaseUrl> {
    let base = match std::env::var(TEST_DATABASE_URL) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {TEST_DATABASE_URL} is not: the PostgreSQL suite must run in CI"
            );
            eprintln!("{TEST_DATABASE_URL} unset: skipping a PostgreSQL test");
            return None;
        }
    };
    // Names start with a fixed prefix so that .ci/run can drop what earlier runs left behind.
    let name = format!("tollgate_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&base)
        .await
        .expect("connect to TEST_DATABASE_URL");
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create a test database");
    admin.close().await.ok();
    let mut url = url::Url::parse(&base).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    Some(DatabaseUrl::Postgres(url))
}

/// Expands each store-suite function (taking the store `$connect` returns) into a SQLite test
/// and a PostgreSQL test, each on a fresh database: one suite, run on both backends.
#[macro_export]
macro_rules! store_suite {
    ($connect:path; $($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = $crate::testing::sqlite_in(dir.path());
                    super::$test($connect(&url).await.unwrap()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(url) = $crate::testing::fresh_postgres_database().await else {
                        return;
                    };
                    super::$test($connect(&url).await.unwrap()).await;
                }
            )*
        }
    };
}
