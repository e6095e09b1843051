//! Test support shared by the services' suites (feature `testing`): a fresh database per test.

use std::path::Path;

use sqlx::{Connection, Executor, PgConnection};

use crate::database::DatabaseUrl;

/// The variable naming a PostgreSQL server the PostgreSQL suites may create databases on.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

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

/// A service binary started by a test, with its log collected on a thread.
#[derive(Debug)]
pub struct ServiceProcess {
    /// The child process.
    pub child: std::process::Child,
    /// The address it announced.
    pub addr: std::net::SocketAddr,
    log: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `command` with JSON logs and waits for the log line whose `message` is
    /// `listening_message`, whose `addr` field is the bound address. The service binds before it
    /// logs that line, so the address is connectable when this returns.
    pub fn start(mut command: std::process::Command, listening_message: &str) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .env("TOLLGATE_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the service binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let wanted = listening_message.to_owned();
        let log = std::thread::spawn(move || {
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["message"] == wanted.as_str() {
                        if let Some(addr) = v["addr"].as_str().and_then(|a| a.parse().ok()) {
                            let _ = addr_tx.send(addr);
                        }
                    }
                }
                log.push(line);
            }
            log
        });
        let Ok(addr) = addr_rx.recv() else {
            let status = child.wait();
            let log = log.join().unwrap_or_default().join("\n");
            panic!("the service exited ({status:?}) before listening:\n{log}");
        };
        Self {
            child,
            addr,
            log: Some(log),
        }
    }

    /// Waits for the process to exit and returns its exit status and every log line.
    pub fn wait(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let status = self.child.wait().expect("wait for the service");
        let log = self
            .log
            .take()
            .and_then(|l| l.join().ok())
            .unwrap_or_default();
        (status, log)
    }
}
