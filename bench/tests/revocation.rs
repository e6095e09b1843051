//! The revocation bound across replicas, measured by `tollgate-bench revocation` itself: a key
//! revoked through one identity-service replica is refused by another replica's event-service
//! within a second, p99, with every cache at its default TTL (10 s), whether the key was
//! deleted, its account deleted, or it was rotated with no grace.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use serde_json::Value;

/// The bound the README states.
const BOUND_MS: f64 = 1000.0;

fn revocation(trials: usize, postgres: Option<&str>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("revocation.json");
    let mut command = tollgate::process::command(env!("CARGO_BIN_EXE_tollgate-bench"));
    command
        .args(["revocation", "--trials", &trials.to_string(), "--out"])
        .arg(&out);
    if let Some(url) = postgres {
        command.args(["--postgres-url", url]);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

fn assert_within_bound(report: &Value, trials: u64) {
    for kind in ["key_deleted", "account_deleted", "key_rotated_grace_0"] {
        let figures = &report["kinds"][kind];
        assert_eq!(figures["trials"].as_u64(), Some(trials), "{report}");
        let p99 = figures["p99_ms"].as_f64().unwrap();
        assert!(
            p99 <= BOUND_MS,
            "{kind}: p99 {p99} ms past the {BOUND_MS} ms bound: {report}"
        );
    }
}

#[test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL (at build time) to run the PostgreSQL suite"
)]
fn two_identity_and_two_event_replicas_on_postgres() {
    let url = std::env::var("TEST_DATABASE_URL").unwrap();
    let report = revocation(50, Some(&url));
    assert_eq!(report["identity_replicas"], 2);
    assert_eq!(report["event_replicas"], 2);
    assert_within_bound(&report, 50);
}

#[test]
fn one_identity_and_two_event_replicas_on_sqlite() {
    let report = revocation(20, None);
    assert_eq!(report["event_replicas"], 2);
    assert_within_bound(&report, 20);
}
