//! Test support shared by the services' suites (feature `testing`): a fresh database per test,
//! and the requests every suite makes.
//!
//! PostgreSQL tests carry `#[cfg_attr(not(postgres_tests), ignore = …)]`: the build script of
//! each crate with such tests sets `postgres_tests` when `TEST_DATABASE_URL` is set at build
//! time, so a plain `cargo test` reports them as ignored rather than passing them without
//! running.
#![allow(clippy::expect_used)] // test support fails loudly by design

use std::path::Path;

use sqlx::{Connection, Executor, PgConnection};

use crate::database::DatabaseUrl;

/// The variable naming a PostgreSQL server the PostgreSQL suites may create databases on.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// Why a PostgreSQL test cannot run.
const POSTGRES_TESTS_IGNORED: &str =
    "set TEST_DATABASE_URL (at build time) to run the PostgreSQL suite";

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

/// A database of its own on the server `TEST_DATABASE_URL` names, dropped (with whatever is
/// still connected to it) when this is.
#[derive(Debug)]
pub struct PostgresDatabase {
    url: DatabaseUrl,
    server: String,
    name: String,
}

impl PostgresDatabase {
    /// A new, empty database. Panics if `TEST_DATABASE_URL` is unset: a test that asks for one
    /// must be ignored without it (see the module docs).
    pub async fn create() -> Self {
        let server = std::env::var(TEST_DATABASE_URL)
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| panic!("{POSTGRES_TESTS_IGNORED}"));
        // Names start with a fixed prefix so that .ci/run can drop what a killed run left.
        let name = format!("tollgate_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&server)
            .await
            .expect("connect to TEST_DATABASE_URL");
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create a test database");
        admin.close().await.ok();
        let mut url = url::Url::parse(&server).expect("TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            url: DatabaseUrl::Postgres(url),
            server,
            name,
        }
    }

    /// Its URL.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own
        // with a runtime of its own does the dropping, and is waited for.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await.ok()?;
                admin
                    .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                    .await
                    .ok()
            })
        });
        if !matches!(dropped.join(), Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// Expands each store-suite function (taking the store `$connect` returns) into a SQLite test
/// and a PostgreSQL test, each on a fresh database: one suite, run on both backends. The
/// PostgreSQL tests are ignored unless the crate's build script found `TEST_DATABASE_URL`.
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
                #[cfg_attr(
                    not(postgres_tests),
                    ignore = "set TEST_DATABASE_URL (at build time) to run the PostgreSQL suite"
                )]
                async fn $test() {
                    let database = $crate::testing::PostgresDatabase::create().await;
                    super::$test($connect(database.url()).await.unwrap()).await;
                }
            )*
        }
    };
}
